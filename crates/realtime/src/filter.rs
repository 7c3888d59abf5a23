//! dojot kafka-ws's `fields` and `where` query parameters: which messages a subscriber
//! gets (`where`) and which parts of them (`fields`). No I/O: a [`Filter`] is parsed once
//! per subscription and applied to each message as a `serde_json::Value`.
//!
//! The grammar is kafka-ws's (its README and `WhereProcessing/`); what its code got wrong
//! is fixed, and said where:
//! - `where` is applied before `fields`, as its README says (the code masked first, so a
//!   condition on a field not selected never matched);
//! - a value of `0` (or `false`, or `""`) can match (the code tested truthiness first), and
//!   `0` is a number in a condition (its number rule left it out);
//! - a message passes on as it was, not flattened into `{"a.b": …}` keys;
//! - `in`/`nin` test plain string containment, not a regular expression built from the URL;
//! - a message with nothing left after `fields` (no value anywhere) is not sent; the code
//!   only skipped a top-level `{}`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Why a `fields` or `where` parameter was refused: kafka-ws's WebSocket close codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("invalid syntax: {0}")]
    Syntax(String),
    #[error("invalid operator '{0}': use in, nin, eq, neq, gt, gte, lt, lte or bool")]
    Operator(String),
    #[error("invalid escape '\\{0}': use \\b, \\f, \\n, \\r, \\t or an escaped symbol")]
    Escape(String),
    #[error("operator '{0}' takes {1} value(s), got {2}")]
    Arity(&'static str, &'static str, usize),
    #[error("operator '{0}' cannot take the value '{1}'")]
    Value(&'static str, String),
}

impl FilterError {
    /// The WebSocket close code kafka-ws used for this error.
    pub fn close_code(&self) -> u16 {
        match self {
            Self::Syntax(_) => 4000,
            Self::Operator(_) => 4001,
            Self::Escape(_) => 4002,
            Self::Arity(..) => 4003,
            Self::Value(..) => 4004,
        }
    }
}

/// Longest `fields` or `where` accepted, in bytes (a URL rarely holds more).
pub const MAX_FILTER_LEN: usize = 4096;

/// A subscription's `where` conditions and `fields` selection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    conditions: Vec<Condition>,
    fields: Option<Mask>,
}

impl Filter {
    /// Parses the query parameters (absent or empty ones select everything).
    pub fn parse(fields: Option<&str>, conditions: Option<&str>) -> Result<Self, FilterError> {
        for p in [fields, conditions].into_iter().flatten() {
            if p.len() > MAX_FILTER_LEN {
                return Err(FilterError::Syntax(format!("longer than {MAX_FILTER_LEN} bytes")));
            }
        }
        Ok(Self {
            conditions: conditions.map(parse_where).transpose()?.unwrap_or_default(),
            fields: fields.filter(|f| !f.is_empty()).map(parse_fields).transpose()?,
        })
    }

    /// Whether this filter lets every message through whole.
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty() && self.fields.is_none()
    }

    /// The text a message's device id must contain for this filter to pass, when a
    /// condition says so with one value (`metadata.deviceid=in:<text>;`): the hub files
    /// such streams under it instead of testing them against every reading.
    pub fn device_part(&self) -> Option<&str> {
        self.conditions.iter().find_map(|c| match &c.test {
            Test::In(values) if values.len() == 1 && c.path == ["metadata", "deviceid"] => Some(values[0].as_str()),
            _ => None,
        })
    }

    /// The message as this subscriber gets it, or `None` if it gets nothing.
    pub fn apply(&self, message: &Value) -> Option<Value> {
        if !self.conditions.iter().all(|c| c.holds(message)) {
            return None;
        }
        let out = match &self.fields {
            None => message.clone(),
            Some(mask) => mask.select(message),
        };
        has_value(&out).then_some(out)
    }
}

/// Whether a value holds anything but empty objects and arrays.
fn has_value(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.values().any(has_value),
        Value::Array(a) => a.iter().any(has_value),
        _ => true,
    }
}

// ---- fields: `a,b` · `a/b` · `a(b,c)` · `a/*/c` (json-mask's syntax) ----

/// Selected keys, each with what to select below it (`None`: all of it). `*`: every key.
#[derive(Debug, Clone, Default, PartialEq)]
struct Mask(BTreeMap<String, Option<Mask>>);

impl Mask {
    fn insert(&mut self, key: String, sub: Option<Mask>) {
        match self.0.get_mut(&key) {
            None => {
                self.0.insert(key, sub);
            }
            Some(existing) => match (existing.as_mut(), sub) {
                (Some(a), Some(b)) => b.0.into_iter().for_each(|(k, s)| a.insert(k, s)),
                // One of them selects the whole value: so does the union.
                _ => *existing = None,
            },
        }
    }

    fn select(&self, v: &Value) -> Value {
        match v {
            Value::Object(obj) => {
                let mut out = Map::new();
                for (key, sub) in &self.0 {
                    let mut take = |k: &String, val: &Value| {
                        out.insert(k.clone(), sub.as_ref().map_or_else(|| val.clone(), |m| m.select(val)));
                    };
                    if key == "*" {
                        obj.iter().for_each(|(k, val)| take(k, val));
                    } else if let Some(val) = obj.get(key) {
                        take(key, val);
                    }
                }
                Value::Object(out)
            }
            // json-mask applies a mask to each element of an array.
            Value::Array(items) => Value::Array(items.iter().map(|i| self.select(i)).collect()),
            // Keys below a scalar select nothing from it.
            _ => Value::Object(Map::new()),
        }
    }
}

fn parse_fields(text: &str) -> Result<Mask, FilterError> {
    let mut p = FieldsParser { s: text.as_bytes(), i: 0 };
    let mask = p.list()?;
    if p.i != p.s.len() {
        return Err(FilterError::Syntax(format!("unexpected '{}' in fields at {}", p.s[p.i] as char, p.i)));
    }
    Ok(mask)
}

struct FieldsParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl FieldsParser<'_> {
    /// list → item (',' item)*
    fn list(&mut self) -> Result<Mask, FilterError> {
        let mut mask = Mask::default();
        loop {
            let (key, sub) = self.item()?;
            mask.insert(key, sub);
            if self.s.get(self.i) != Some(&b',') {
                return Ok(mask);
            }
            self.i += 1;
        }
    }

    /// item → name ('/' item | '(' list ')')?
    fn item(&mut self) -> Result<(String, Option<Mask>), FilterError> {
        let start = self.i;
        while self.i < self.s.len() && !matches!(self.s[self.i], b',' | b'/' | b'(' | b')') {
            self.i += 1;
        }
        if self.i == start {
            return Err(FilterError::Syntax(format!("empty field name in fields at {start}")));
        }
        let name = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
        let sub = match self.s.get(self.i) {
            Some(b'/') => {
                self.i += 1;
                let (k, s) = self.item()?;
                let mut m = Mask::default();
                m.insert(k, s);
                Some(m)
            }
            Some(b'(') => {
                self.i += 1;
                let m = self.list()?;
                if self.s.get(self.i) != Some(&b')') {
                    return Err(FilterError::Syntax("unbalanced '(' in fields".into()));
                }
                self.i += 1;
                Some(m)
            }
            _ => None,
        };
        Ok((name, sub))
    }
}

// ---- where: `selector=(operator:)?values;` repeated ----

#[derive(Debug, Clone, PartialEq)]
struct Condition {
    /// Keys from the message's root (`attrs.temperature` → ["attrs", "temperature"]).
    path: Vec<String>,
    test: Test,
}

#[derive(Debug, Clone, PartialEq)]
enum Test {
    In(Vec<String>),
    Nin(Vec<String>),
    Eq(f64),
    Neq(f64),
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
    Bool(bool),
}

impl Condition {
    fn holds(&self, message: &Value) -> bool {
        let found = self.path.iter().try_fold(message, |v, k| v.get(k));
        let number = || {
            found.and_then(|v| match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
                _ => None,
            })
        };
        // Borrowed for strings (the common case: a device id, a status): a condition is
        // tested for every message of a tenant, per stream.
        let text = || {
            found.map(|v| match v {
                Value::String(s) => std::borrow::Cow::Borrowed(s.as_str()),
                other => std::borrow::Cow::Owned(other.to_string()),
            })
        };
        match &self.test {
            Test::In(values) => text().is_some_and(|t| values.iter().any(|v| t.contains(v.as_str()))),
            Test::Nin(values) => !text().is_some_and(|t| values.iter().any(|v| t.contains(v.as_str()))),
            Test::Eq(x) => number().is_some_and(|n| n == *x),
            Test::Neq(x) => number().is_some_and(|n| n != *x),
            Test::Gt(x) => number().is_some_and(|n| n > *x),
            Test::Gte(x) => number().is_some_and(|n| n >= *x),
            Test::Lt(x) => number().is_some_and(|n| n < *x),
            Test::Lte(x) => number().is_some_and(|n| n <= *x),
            Test::Bool(b) => found.is_some_and(|v| match v {
                Value::Bool(v) => v == b,
                Value::String(s) => parse_bool(s) == Some(*b),
                _ => false,
            }),
        }
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// kafka-ws's number rule, with `0` and `-0.5` admitted.
fn parse_number(s: &str) -> Option<f64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let ok = int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && (!int.is_empty() || !frac.is_empty());
    ok.then(|| s.parse().ok()).flatten()
}

fn parse_where(text: &str) -> Result<Vec<Condition>, FilterError> {
    let mut conditions = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (condition, after) = parse_condition(rest)?;
        conditions.push(condition);
        rest = after;
    }
    Ok(conditions)
}

fn is_selector_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ' ' | '_' | '-')
}

/// One `selector=(operator:)?values;` at the start of `text`, and what follows it. The
/// last condition's `;` may be left out.
fn parse_condition(text: &str) -> Result<(Condition, &str), FilterError> {
    let eq = text.find('=').ok_or_else(|| FilterError::Syntax(format!("missing '=' in '{}'", clip(text))))?;
    let selector = &text[..eq];
    let path: Vec<String> = selector.split('.').map(str::to_string).collect();
    if path.iter().any(|k| k.is_empty() || !k.chars().all(is_selector_char)) {
        return Err(FilterError::Syntax(format!("bad selector '{}'", clip(selector))));
    }
    let mut rest = &text[eq + 1..];
    // An operator is lower-case letters and ':' before any value.
    let op_len = rest.bytes().take_while(u8::is_ascii_lowercase).count();
    let operator = if op_len > 0 && rest.as_bytes().get(op_len) == Some(&b':') {
        let op = &rest[..op_len];
        rest = &rest[op_len + 1..];
        op
    } else {
        "eq"
    };
    let (values, after) = split_values(rest)?;
    if values.is_empty() {
        return Err(FilterError::Syntax(format!("no value for '{}'", clip(selector))));
    }
    let one = |name: &'static str, what: &'static str| -> Result<&String, FilterError> {
        match values.as_slice() {
            [v] => Ok(v),
            _ => Err(FilterError::Arity(name, what, values.len())),
        }
    };
    let number = |name: &'static str| -> Result<f64, FilterError> {
        let v = one(name, "1")?;
        parse_number(v).ok_or_else(|| FilterError::Value(name, clip(v)))
    };
    let test = match operator {
        "in" => Test::In(values.clone()),
        "nin" => Test::Nin(values.clone()),
        "eq" => Test::Eq(number("eq")?),
        "neq" => Test::Neq(number("neq")?),
        "gt" => Test::Gt(number("gt")?),
        "gte" => Test::Gte(number("gte")?),
        "lt" => Test::Lt(number("lt")?),
        "lte" => Test::Lte(number("lte")?),
        "bool" => {
            let v = one("bool", "1")?;
            Test::Bool(parse_bool(v).ok_or_else(|| FilterError::Value("bool", clip(v)))?)
        }
        other => return Err(FilterError::Operator(clip(other))),
    };
    Ok((Condition { path, test }, after))
}

/// The comma-separated values up to an unquoted `;` (or the end), unescaped, and what
/// follows the `;`. A value in double quotes may hold `,`, `;` and escapes.
fn split_values(text: &str) -> Result<(Vec<String>, &str), FilterError> {
    let mut values = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' if quoted => match chars.next() {
                None => return Err(FilterError::Escape(String::new())),
                Some((_, e)) if e.is_ascii_alphabetic() => current.push(match e {
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    other => return Err(FilterError::Escape(other.to_string())),
                }),
                Some((_, e)) => current.push(e),
            },
            ',' if !quoted => values.push(std::mem::take(&mut current)),
            ';' if !quoted => {
                values.push(current);
                return Ok((values.into_iter().filter(|v| !v.is_empty()).collect(), &text[i + 1..]));
            }
            c => current.push(c),
        }
    }
    if quoted {
        return Err(FilterError::Syntax("unterminated quote".into()));
    }
    values.push(current);
    Ok((values.into_iter().filter(|v| !v.is_empty()).collect(), ""))
}

/// At most 40 characters of user input, for an error message (a close reason is short).
fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn msg() -> Value {
        json!({"metadata": {"deviceid": "abc", "tenant": "admin", "timestamp": 1},
               "attrs": {"temperature": 20, "rain": 10.5, "status": "failed", "on": false, "zero": 0}})
    }

    fn apply(fields: Option<&str>, cond: Option<&str>) -> Option<Value> {
        Filter::parse(fields, cond).unwrap().apply(&msg())
    }

    #[test]
    fn fields_select_as_kafka_ws_documents() {
        let m = json!({"attrs": {"temperature": 20, "rain": 10.5}, "metadata": {"tenant": "admin"}});
        let f = |s: &str| Filter::parse(Some(s), None).unwrap().apply(&m);
        assert_eq!(f("attrs,metadata"), Some(m.clone()));
        assert_eq!(f("metadata/tenant"), Some(json!({"metadata": {"tenant": "admin"}})));
        assert_eq!(f("attrs(temperature,rain)"), Some(json!({"attrs": {"temperature": 20, "rain": 10.5}})));
        assert_eq!(f("attrs/*"), Some(json!({"attrs": {"temperature": 20, "rain": 10.5}})));
        // Nothing selected: nothing sent (kafka-ws sent `{"attrs": {}}`).
        assert_eq!(f("attrs/humidity"), None);
        assert_eq!(f("attrs/temperature,attrs/rain"), f("attrs(temperature,rain)"));
        assert_eq!(f("*/tenant"), Some(json!({"attrs": {}, "metadata": {"tenant": "admin"}})));
        let arr = json!({"a": [{"b": 1, "c": 2}, {"b": 3}]});
        assert_eq!(Filter::parse(Some("a/b"), None).unwrap().apply(&arr), Some(json!({"a": [{"b": 1}, {"b": 3}]})));
    }

    #[test]
    fn bad_fields_are_syntax_errors() {
        for bad in ["a(b", "a,,b", "a/", "(a)", "a)b", "a/(b)"] {
            let e = Filter::parse(Some(bad), None).unwrap_err();
            assert_eq!(e.close_code(), 4000, "{bad}: {e}");
        }
    }

    #[test]
    fn conditions_compare_numbers_strings_and_booleans() {
        assert!(apply(None, Some("attrs.temperature=gte:5.0;attrs.temperature=lt:30;")).is_some());
        assert!(apply(None, Some("attrs.temperature=gt:20;")).is_none());
        assert!(apply(None, Some("attrs.temperature=20;")).is_some(), "eq is the default");
        assert!(apply(None, Some("attrs.temperature=neq:20;")).is_none());
        assert!(apply(None, Some("attrs.rain=lte:10.5")).is_some(), "the last ';' may be left out");
        assert!(apply(None, Some("attrs.zero=eq:0;")).is_some(), "0 is a value and a number");
        assert!(apply(None, Some("attrs.status=in:fail,stopped;")).is_some(), "containment");
        assert!(apply(None, Some("attrs.status=nin:fail,stopped;")).is_none());
        assert!(apply(None, Some("attrs.status=nin:ok;")).is_some());
        assert!(apply(None, Some("attrs.on=bool:false;")).is_some());
        assert!(apply(None, Some("attrs.on=bool:true;")).is_none());
        assert!(apply(None, Some("attrs.missing=neq:1;")).is_none(), "an absent value matches no comparison");
        assert!(apply(None, Some("metadata.deviceid=in:\"ab\";")).is_some());
        assert!(apply(None, Some("attrs.status=in:\"x,y\",fai;")).is_some(), "quoted commas");
    }

    #[test]
    fn where_applies_before_fields() {
        // kafka-ws's code masked first: a condition on an unselected field never held.
        let out = apply(Some("attrs/rain"), Some("attrs.temperature=gt:10;"));
        assert_eq!(out, Some(json!({"attrs": {"rain": 10.5}})));
    }

    #[test]
    fn each_error_has_its_close_code() {
        let code = |w: &str| Filter::parse(None, Some(w)).unwrap_err().close_code();
        assert_eq!(code("temperature"), 4000);
        assert_eq!(code("a.=1;"), 4000);
        assert_eq!(code("a=\"x;"), 4000);
        assert_eq!(code("a=;"), 4000);
        assert_eq!(code("a=like:1;"), 4001);
        assert_eq!(code("a=in:\"\\q\";"), 4002);
        assert_eq!(code("a=in:\"x\\"), 4002);
        assert_eq!(code("a=gt:1,2;"), 4003);
        assert_eq!(code("a=bool:true,false;"), 4003);
        assert_eq!(code("a=gt:abc;"), 4004);
        assert_eq!(code("a=gt:1.2.3;"), 4004);
        assert_eq!(code("a=bool:yes;"), 4004);
        assert_eq!(Filter::parse(None, Some(&"a".repeat(5000))).unwrap_err().close_code(), 4000);
    }

    #[test]
    fn escapes_in_quoted_values() {
        let m = json!({"a": "x\ty;z"});
        let f = Filter::parse(None, Some("a=in:\"\\t\";")).unwrap();
        assert!(f.apply(&m).is_some());
        let f = Filter::parse(None, Some("a=in:\"y;z\";")).unwrap();
        assert!(f.apply(&m).is_some());
    }

    #[test]
    fn numbers_as_kafka_ws_with_zero() {
        for ok in ["0", "-0", "1", "-12", "3.5", ".5", "-0.25", "10."] {
            assert!(parse_number(ok).is_some(), "{ok}");
        }
        for bad in ["", "-", ".", "1e3", "0x10", "1.2.3", " 1", "inf", "NaN"] {
            assert!(parse_number(bad).is_none(), "{bad}");
        }
    }
}
