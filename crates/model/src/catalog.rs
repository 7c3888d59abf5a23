//! Templates and devices as dojot's device-manager defines them, and their rules.
//!
//! Stored forms ([`Template`], [`Device`]) plus the request parsing and the rendering to
//! dojot's JSON shapes (reference/dojot-api.md §1). No I/O: the `devices` service owns
//! ids, persistence and events.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Longest `type` / `value_type` (dojot: String(32)).
pub const MAX_TYPE_LEN: usize = 32;
/// Longest attribute or template/device label.
pub const MAX_LABEL_LEN: usize = 128;

/// A metadata entry of an attribute (e.g. a unit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub id: i64,
    pub label: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub value_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub static_value: Option<Value>,
    pub created: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated: Option<String>,
}

/// A template attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attr {
    pub id: i64,
    pub label: String,
    /// Semantic type: `dynamic`, `static`, `actuator`, `meta`, … (free string, as in dojot).
    #[serde(rename = "type")]
    pub kind: String,
    pub value_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub static_value: Option<Value>,
    pub template_id: String,
    pub created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<Meta>,
}

impl Attr {
    /// Data attributes are what devices send or have; the rest (e.g. `meta`) configure.
    pub fn is_data(&self) -> bool {
        matches!(self.kind.as_str(), "static" | "dynamic" | "actuator")
    }
}

/// A template: a named set of attributes devices are built from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    pub id: i64,
    pub label: String,
    pub created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<String>,
    pub attrs: Vec<Attr>,
}

/// A device's override of a template attribute's static value (or metadata values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Override {
    pub attr_id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub static_value: Option<Value>,
    /// metadata id → value
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<i64, Value>,
}

/// A device: an instance of one or more templates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub id: String,
    pub label: String,
    pub created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<String>,
    pub templates: Vec<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<Override>,
}

/// Why a catalog request was refused. The API maps each to dojot's status and body.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CatalogError {
    /// Field-level errors, dojot's `{"message":"failed to parse input","errors":{…}}`.
    #[error("failed to parse input")]
    Schema(BTreeMap<String, Vec<String>>),
    #[error("{0}")]
    BadRequest(String),
    #[error("Template attribute constraints are violated by the request")]
    DuplicateTemplateAttr,
    #[error("a device can not have repeated attributes")]
    RepeatedDeviceAttrs(String),
    #[error("No such template: {0}")]
    UnknownTemplate(String),
    #[error("Unknown attribute {0} in override list")]
    UnknownOverride(i64),
    #[error("No such template: {0}")]
    NoSuchTemplate(String),
    #[error("No such device: {0}")]
    NoSuchDevice(String),
    #[error("Templates cannot be removed as they are being used by devices")]
    TemplateInUse,
    #[error("some of the attributes are not configurable")]
    NotConfigurable(Vec<String>),
}

/// Collects field errors the way marshmallow reported them.
#[derive(Default)]
struct Errors(BTreeMap<String, Vec<String>>);

impl Errors {
    fn add(&mut self, field: impl Into<String>, msg: &str) {
        self.0.entry(field.into()).or_default().push(msg.to_string());
    }
    fn finish(self) -> Result<(), CatalogError> {
        if self.0.is_empty() { Ok(()) } else { Err(CatalogError::Schema(self.0)) }
    }
}

const MISSING: &str = "Missing data for required field.";
const NOT_STRING: &str = "Not a valid string.";
const UNKNOWN: &str = "Unknown field.";

fn reject_unknown(obj: &Map<String, Value>, allowed: &[&str], prefix: &str, errors: &mut Errors) {
    for k in obj.keys().filter(|k| !allowed.contains(&k.as_str())) {
        errors.add(format!("{prefix}{k}"), UNKNOWN);
    }
}

fn string_field(obj: &Map<String, Value>, key: &str, prefix: &str, max: usize, errors: &mut Errors) -> String {
    match obj.get(key) {
        None | Some(Value::Null) => errors.add(format!("{prefix}{key}"), MISSING),
        Some(Value::String(s)) if s.trim().is_empty() => {
            errors.add(format!("{prefix}{key}"), "Field may not be empty.")
        }
        Some(Value::String(s)) if s.chars().count() > max => {
            errors.add(format!("{prefix}{key}"), &format!("Longer than maximum length {max}."))
        }
        Some(Value::String(s)) => return s.clone(),
        Some(_) => errors.add(format!("{prefix}{key}"), NOT_STRING),
    }
    String::new()
}

/// Whether `s` may be a template attribute's label: letters, digits, `_` and `-` (its
/// length is checked against [`MAX_LABEL_LEN`] apart).
pub fn is_attr_label(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn as_object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, CatalogError> {
    v.as_object().ok_or_else(|| CatalogError::BadRequest(format!("{what} must be a JSON object")))
}

/// A template attribute as requested (before ids are assigned).
#[derive(Debug, Clone, PartialEq)]
pub struct AttrRequest {
    pub label: String,
    pub kind: String,
    pub value_type: String,
    pub static_value: Option<Value>,
    pub metadata: Vec<MetaRequest>,
}

/// A metadata entry as requested.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaRequest {
    pub label: String,
    pub kind: String,
    pub value_type: String,
    pub static_value: Option<Value>,
}

/// `POST /template` / `PUT /template/{id}` body.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateRequest {
    pub label: String,
    pub attrs: Vec<AttrRequest>,
}

impl TemplateRequest {
    /// How many attribute and metadata ids creating (or applying) this request may take.
    pub fn id_count(&self) -> usize {
        self.attrs.iter().map(|a| 1 + a.metadata.len()).sum()
    }

    pub fn parse(body: &Value) -> Result<Self, CatalogError> {
        let obj = as_object(body, "template")?;
        let mut errors = Errors::default();
        reject_unknown(
            obj,
            &["label", "attrs", "id", "created", "updated", "data_attrs", "config_attrs"],
            "",
            &mut errors,
        );
        let label = string_field(obj, "label", "", MAX_LABEL_LEN, &mut errors);
        let mut attrs = Vec::new();
        match obj.get("attrs") {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => {
                for (i, a) in list.iter().enumerate() {
                    let prefix = format!("attrs.{i}.");
                    let Some(a) = a.as_object() else {
                        errors.add(format!("attrs.{i}"), "Invalid input type.");
                        continue;
                    };
                    if let Some(attr) = parse_attr(a, &prefix, &mut errors) {
                        attrs.push(attr);
                    }
                }
            }
            Some(_) => errors.add("attrs", "Not a valid list."),
        }
        errors.finish()?;
        let mut seen = HashSet::new();
        if !attrs.iter().all(|a| seen.insert((a.kind.clone(), a.label.clone()))) {
            return Err(CatalogError::DuplicateTemplateAttr);
        }
        Ok(Self { label, attrs })
    }
}

const ATTR_FIELDS: &[&str] =
    &["label", "type", "value_type", "static_value", "metadata", "id", "template_id", "created", "updated"];

fn parse_attr(a: &Map<String, Value>, prefix: &str, errors: &mut Errors) -> Option<AttrRequest> {
    let before = errors.0.len();
    reject_unknown(a, ATTR_FIELDS, prefix, errors);
    let label = string_field(a, "label", prefix, MAX_LABEL_LEN, errors);
    if !label.is_empty() && !is_attr_label(&label) {
        errors.add(format!("{prefix}label"), "Labels must contain letters, numbers or dashes(-_)");
    }
    let kind = string_field(a, "type", prefix, MAX_TYPE_LEN, errors);
    let value_type = string_field(a, "value_type", prefix, MAX_TYPE_LEN, errors);
    let static_value = a.get("static_value").filter(|v| !v.is_null()).cloned();
    let mut metadata = Vec::new();
    match a.get("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (j, m) in list.iter().enumerate() {
                let mp = format!("{prefix}metadata.{j}.");
                let Some(m) = m.as_object() else {
                    errors.add(format!("{prefix}metadata.{j}"), "Invalid input type.");
                    continue;
                };
                reject_unknown(
                    m,
                    &["label", "type", "value_type", "static_value", "id", "created", "updated"],
                    &mp,
                    errors,
                );
                metadata.push(MetaRequest {
                    label: string_field(m, "label", &mp, MAX_LABEL_LEN, errors),
                    kind: string_field(m, "type", &mp, MAX_TYPE_LEN, errors),
                    value_type: string_field(m, "value_type", &mp, MAX_TYPE_LEN, errors),
                    static_value: m.get("static_value").filter(|v| !v.is_null()).cloned(),
                });
            }
        }
        Some(_) => errors.add(format!("{prefix}metadata"), "Not a valid list."),
    }
    (errors.0.len() == before).then_some(AttrRequest { label, kind, value_type, static_value, metadata })
}

/// An attribute override in a device request.
#[derive(Debug, Clone, PartialEq)]
pub struct OverrideRequest {
    pub attr_id: i64,
    pub template_id: Option<String>,
    pub static_value: Option<Value>,
    /// (metadata id, value)
    pub metadata: Vec<(i64, Value)>,
}

/// `POST /device` / `PUT /device/{id}` body.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRequest {
    pub label: String,
    pub templates: Vec<i64>,
    pub overrides: Vec<OverrideRequest>,
}

/// dojot accepted template ids as numbers or numeric strings.
fn parse_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl DeviceRequest {
    pub fn parse(body: &Value) -> Result<Self, CatalogError> {
        let obj = as_object(body, "device")?;
        let mut errors = Errors::default();
        reject_unknown(obj, &["label", "templates", "attrs", "id", "created", "updated"], "", &mut errors);
        let label = string_field(obj, "label", "", MAX_LABEL_LEN, &mut errors);
        let mut templates = Vec::new();
        match obj.get("templates") {
            None | Some(Value::Null) => errors.add("templates", MISSING),
            Some(Value::Array(list)) => {
                for (i, t) in list.iter().enumerate() {
                    match parse_int(t) {
                        Some(id) if !templates.contains(&id) => templates.push(id),
                        Some(_) => {}
                        None => errors.add(format!("templates.{i}"), "Not a valid integer."),
                    }
                }
            }
            Some(_) => errors.add("templates", "Not a valid list."),
        }
        let mut overrides = Vec::new();
        match obj.get("attrs") {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => {
                for (i, a) in list.iter().enumerate() {
                    let prefix = format!("attrs.{i}.");
                    let Some(a) = a.as_object() else {
                        errors.add(format!("attrs.{i}"), "Invalid input type.");
                        continue;
                    };
                    reject_unknown(a, ATTR_FIELDS, &prefix, &mut errors);
                    let Some(attr_id) = a.get("id").and_then(parse_int) else {
                        errors.add(format!("{prefix}id"), MISSING);
                        continue;
                    };
                    let mut metadata = Vec::new();
                    if let Some(Value::Array(ms)) = a.get("metadata") {
                        for m in ms {
                            if let (Some(id), Some(v)) = (m.get("id").and_then(parse_int), m.get("static_value")) {
                                metadata.push((id, v.clone()));
                            }
                        }
                    }
                    overrides.push(OverrideRequest {
                        attr_id,
                        template_id: a.get("template_id").map(|t| match t {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        }),
                        static_value: a.get("static_value").filter(|v| !v.is_null()).cloned(),
                        metadata,
                    });
                }
            }
            Some(_) => errors.add("attrs", "Not a valid list."),
        }
        errors.finish()?;
        let mut seen = HashSet::new();
        if let Some(dup) = overrides.iter().find(|o| !seen.insert(o.attr_id)) {
            return Err(CatalogError::RepeatedDeviceAttrs(dup.attr_id.to_string()));
        }
        Ok(Self { label, templates, overrides })
    }
}

/// Builds a new template's attributes, taking ids from `next_id`.
pub fn new_attrs(template_id: i64, reqs: Vec<AttrRequest>, now: &str, next_id: &mut impl FnMut() -> i64) -> Vec<Attr> {
    reqs.into_iter().map(|r| new_attr(template_id, r, now, next_id)).collect()
}

fn new_attr(template_id: i64, r: AttrRequest, now: &str, next_id: &mut impl FnMut() -> i64) -> Attr {
    Attr {
        id: next_id(),
        label: r.label,
        kind: r.kind,
        value_type: r.value_type,
        static_value: r.static_value,
        template_id: template_id.to_string(),
        created: now.to_string(),
        updated: None,
        metadata: r.metadata.into_iter().map(|m| new_meta(m, now, next_id)).collect(),
    }
}

fn new_meta(m: MetaRequest, now: &str, next_id: &mut impl FnMut() -> i64) -> Meta {
    Meta {
        id: next_id(),
        label: m.label,
        kind: m.kind,
        value_type: m.value_type,
        static_value: m.static_value,
        created: now.to_string(),
        updated: None,
    }
}

impl Template {
    /// `PUT /template/{id}`: attributes matched by (label, type) keep their id; absent ones
    /// are deleted; new ones get new ids.
    pub fn apply_update(&mut self, req: TemplateRequest, now: &str, next_id: &mut impl FnMut() -> i64) {
        let mut old: Vec<Attr> = std::mem::take(&mut self.attrs);
        for r in req.attrs {
            let found = old.iter().position(|a| a.label == r.label && a.kind == r.kind);
            let attr = match found {
                Some(i) => {
                    let mut a = old.swap_remove(i);
                    let changed = a.value_type != r.value_type || a.static_value != r.static_value;
                    a.value_type = r.value_type;
                    a.static_value = r.static_value;
                    a.metadata = r.metadata.into_iter().map(|m| new_meta(m, now, next_id)).collect();
                    if changed {
                        a.updated = Some(now.to_string());
                    }
                    a
                }
                None => new_attr(self.id, r, now, next_id),
            };
            self.attrs.push(attr);
        }
        self.label = req.label;
        self.updated = Some(now.to_string());
    }

    /// dojot's T. `attr_format`: `both` (default), `single` (attrs only) or `split`
    /// (data_attrs and config_attrs only).
    pub fn render(&self, attr_format: AttrFormat) -> Value {
        let mut t = json!({"id": self.id, "label": self.label, "created": self.created});
        if let Some(u) = &self.updated {
            t["updated"] = json!(u);
        }
        if attr_format != AttrFormat::Split {
            t["attrs"] = json!(self.attrs);
        }
        if attr_format != AttrFormat::Single {
            let (data, config): (Vec<&Attr>, Vec<&Attr>) = self.attrs.iter().partition(|a| a.is_data());
            t["data_attrs"] = json!(data);
            t["config_attrs"] = json!(config);
        }
        t
    }

    pub fn attr(&self, id: i64) -> Option<&Attr> {
        self.attrs.iter().find(|a| a.id == id)
    }
}

/// How a template's attributes are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttrFormat {
    #[default]
    Both,
    Single,
    Split,
}

impl AttrFormat {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "both" => Some(Self::Both),
            "single" => Some(Self::Single),
            "split" => Some(Self::Split),
            _ => None,
        }
    }
}

/// Checks a device request against the templates it names and turns its overrides into
/// stored form. `lookup` finds a template of the tenant by id.
pub fn resolve_device<'a>(
    req: &DeviceRequest,
    lookup: impl Fn(i64) -> Option<&'a Template>,
) -> Result<Vec<Override>, CatalogError> {
    let mut templates = Vec::with_capacity(req.templates.len());
    for id in &req.templates {
        templates.push(lookup(*id).ok_or_else(|| CatalogError::UnknownTemplate(id.to_string()))?);
    }
    // One label per device: two templates defining the same label would make readings ambiguous.
    let mut labels = HashSet::new();
    for a in templates.iter().flat_map(|t| t.attrs.iter()) {
        if !labels.insert(a.label.as_str()) {
            return Err(CatalogError::BadRequest(format!(
                "attribute '{}' is defined by more than one of the device's templates",
                a.label
            )));
        }
    }
    req.overrides
        .iter()
        .map(|o| {
            let attr = templates
                .iter()
                .filter(|t| o.template_id.as_deref().is_none_or(|tid| tid == t.id.to_string()))
                .find_map(|t| t.attr(o.attr_id))
                .ok_or(CatalogError::UnknownOverride(o.attr_id))?;
            let mut metadata = BTreeMap::new();
            for (mid, v) in &o.metadata {
                if !attr.metadata.iter().any(|m| m.id == *mid) {
                    return Err(CatalogError::UnknownOverride(*mid));
                }
                metadata.insert(*mid, v.clone());
            }
            Ok(Override { attr_id: o.attr_id, static_value: o.static_value.clone(), metadata })
        })
        .collect()
}

impl Device {
    /// dojot's D: the device with its templates' attributes, overrides applied.
    pub fn render<'a>(&self, lookup: impl Fn(i64) -> Option<&'a Template>) -> Value {
        let mut attrs = Map::new();
        for tid in &self.templates {
            let Some(t) = lookup(*tid) else { continue };
            let list: Vec<Value> = t
                .attrs
                .iter()
                .map(|a| {
                    let mut v = json!(a);
                    if let Some(o) = self.overrides.iter().find(|o| o.attr_id == a.id) {
                        if let Some(sv) = &o.static_value {
                            v["static_value"] = sv.clone();
                            v["is_static_overridden"] = json!(true);
                        }
                        if let Some(Value::Array(ms)) = v.get_mut("metadata") {
                            for m in ms {
                                let id = m.get("id").and_then(Value::as_i64);
                                if let Some(val) = id.and_then(|id| o.metadata.get(&id)) {
                                    m["static_value"] = val.clone();
                                    m["is_static_overridden"] = json!(true);
                                }
                            }
                        }
                    }
                    v
                })
                .collect();
            attrs.insert(tid.to_string(), Value::Array(list));
        }
        let mut d = json!({
            "id": self.id, "label": self.label, "created": self.created,
            "templates": self.templates, "attrs": attrs,
        });
        if let Some(u) = &self.updated {
            d["updated"] = json!(u);
        }
        d
    }

    /// The effective static value of an attribute (override first), for `attr=label=value`.
    pub fn static_value<'a>(&'a self, attr: &'a Attr) -> Option<&'a Value> {
        self.overrides
            .iter()
            .find(|o| o.attr_id == attr.id)
            .and_then(|o| o.static_value.as_ref())
            .or(attr.static_value.as_ref())
    }
}

/// dojot's timestamp format for `created` / `updated`: `2018-01-25T12:30:42.164695+00:00`.
pub fn catalog_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// dojot's device id: `'%05x' % randrange(16**6)`, from a random number.
pub fn device_id_from(random: u32) -> String {
    format!("{:05x}", random % (1 << 24))
}

/// Labels for `count` devices: `label` alone for one, else `label_i` zero-padded to the
/// width of `count` (count=10 → `x_00` … `x_09`).
pub fn indexed_labels(label: &str, count: usize) -> Vec<String> {
    if count == 1 {
        return vec![label.to_string()];
    }
    let width = count.to_string().len();
    (0..count).map(|i| format!("{label}_{i:0width$}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thermometer() -> Template {
        let req = TemplateRequest::parse(&json!({
            "label": "Thermometer Template",
            "attrs": [
                {"label": "temperature", "type": "dynamic", "value_type": "float"},
                {"label": "fan", "type": "actuator", "value_type": "float"},
                {"label": "unit", "type": "meta", "value_type": "string", "static_value": "C"}
            ]
        }))
        .unwrap();
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        Template {
            id: 1,
            label: req.label,
            created: "c".into(),
            updated: None,
            attrs: new_attrs(1, req.attrs, "c", &mut next),
        }
    }

    #[test]
    fn template_render_formats() {
        let t = thermometer();
        let both = t.render(AttrFormat::Both);
        assert_eq!(both["attrs"].as_array().unwrap().len(), 3);
        assert_eq!(both["data_attrs"].as_array().unwrap().len(), 2);
        assert_eq!(both["config_attrs"][0]["label"], "unit");
        assert_eq!(both["attrs"][0]["template_id"], "1");
        assert!(both["attrs"][0].get("static_value").is_none(), "nulls are dropped");
        assert!(t.render(AttrFormat::Single).get("data_attrs").is_none());
        assert!(t.render(AttrFormat::Split).get("attrs").is_none());
    }

    #[test]
    fn template_schema_errors() {
        let e =
            TemplateRequest::parse(&json!({"attrs": [{"label": "a b", "type": "dynamic"}], "bogus": 1})).unwrap_err();
        let CatalogError::Schema(errors) = e else { panic!("{e:?}") };
        assert_eq!(errors["label"], [MISSING]);
        assert!(errors.contains_key("attrs.0.label"));
        assert_eq!(errors["attrs.0.value_type"], [MISSING]);
        assert_eq!(errors["bogus"], [UNKNOWN]);
        let dup = json!({"label": "x", "attrs": [
            {"label": "a", "type": "dynamic", "value_type": "float"},
            {"label": "a", "type": "dynamic", "value_type": "int"}]});
        assert_eq!(TemplateRequest::parse(&dup).unwrap_err(), CatalogError::DuplicateTemplateAttr);
        assert!(matches!(TemplateRequest::parse(&json!([1])), Err(CatalogError::BadRequest(_))));
    }

    #[test]
    fn update_keeps_matched_ids() {
        let mut t = thermometer();
        let req = TemplateRequest::parse(&json!({"label": "T2", "attrs": [
            {"label": "temperature", "type": "dynamic", "value_type": "integer"},
            {"label": "humidity", "type": "dynamic", "value_type": "float"}]}))
        .unwrap();
        let mut next = || 100;
        t.apply_update(req, "u", &mut next);
        assert_eq!(
            t.attrs.iter().map(|a| (a.label.as_str(), a.id)).collect::<Vec<_>>(),
            [("temperature", 1), ("humidity", 100)]
        );
        assert_eq!(t.attrs[0].value_type, "integer");
    }

    #[test]
    fn device_overrides_and_render() {
        let t = thermometer();
        let req = DeviceRequest::parse(&json!({"label": "d", "templates": ["1"], "attrs": [
            {"id": 3, "template_id": "1", "static_value": "F"}]}))
        .unwrap();
        let overrides = resolve_device(&req, |id| (id == 1).then_some(&t)).unwrap();
        let d = Device {
            id: "0998".into(),
            label: "d".into(),
            created: "c".into(),
            updated: None,
            templates: vec![1],
            overrides,
        };
        let r = d.render(|id| (id == 1).then_some(&t));
        assert_eq!(r["templates"], json!([1]));
        assert_eq!(r["attrs"]["1"][2]["static_value"], "F");
        assert_eq!(r["attrs"]["1"][2]["is_static_overridden"], true);
        assert_eq!(d.static_value(&t.attrs[2]), Some(&json!("F")));

        let bad =
            DeviceRequest::parse(&json!({"label": "d", "templates": [1], "attrs": [{"id": 99, "static_value": 1}]}))
                .unwrap();
        assert_eq!(resolve_device(&bad, |_| Some(&t)), Err(CatalogError::UnknownOverride(99)));
        let missing = DeviceRequest::parse(&json!({"label": "d", "templates": [7]})).unwrap();
        assert!(matches!(resolve_device(&missing, |_| None), Err(CatalogError::UnknownTemplate(_))));
        assert!(matches!(DeviceRequest::parse(&json!({"label": "d"})), Err(CatalogError::Schema(_))));
        let rep = json!({"label": "d", "templates": [1], "attrs": [{"id": 3}, {"id": 3}]});
        assert!(matches!(DeviceRequest::parse(&rep), Err(CatalogError::RepeatedDeviceAttrs(_))));
    }

    #[test]
    fn ids_and_labels() {
        assert_eq!(device_id_from(0x998), "00998");
        assert_eq!(device_id_from(0xffffff), "ffffff");
        assert_eq!(indexed_labels("x", 1), ["x"]);
        assert_eq!(indexed_labels("x", 10)[0], "x_00");
        assert_eq!(indexed_labels("x", 10)[9], "x_09");
    }
}
