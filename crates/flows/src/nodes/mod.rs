//! The node types of dojot's flows, each parsed from its node-red object when a flow is
//! saved (so a bad setting is a 400 then, not a silent dead branch later) and run on a
//! message. A node returns one optional message per output port; output nodes return
//! none and add [`crate::Effect`]s. No I/O here: the engine does it.

pub mod change;
pub mod cumulative_sum;
pub mod geofence;
pub mod get_context;
pub mod http;
pub mod merge_data;
pub mod output;
pub mod switch;
pub mod template;

use serde_json::{Map, Value};

use crate::{Effect, FlowError};

/// What a node sends on: one optional message per output port.
pub type Outputs = Vec<Option<Value>>;

/// Which lifecycle events an event head reacts to (`event_publish`, `event_configure`, …).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Events {
    pub publish: bool,
    pub configure: bool,
    pub create: bool,
    pub update: bool,
    pub remove: bool,
}

impl Events {
    fn parse(node: &Map<String, Value>) -> Self {
        let on = |k: &str| match node.get(k) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s == "true",
            _ => false,
        };
        Self {
            publish: on("event_publish"),
            configure: on("event_configure"),
            create: on("event_create"),
            update: on("event_update"),
            remove: on("event_remove"),
        }
    }
}

/// Where a flow starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// `event device in`: one device's events; the message is the whole event.
    EventDevice { device: String, events: Events },
    /// `event template in`: the events of every device of a template.
    EventTemplate { template: String, events: Events },
    /// `device in` (deprecated): one device's readings; the message payload is its attributes.
    Device { device: String },
    /// `device template in` (deprecated): the readings of every device of a template.
    DeviceTemplate { template: String },
}

impl Head {
    /// The device id an old flow saved in several forms.
    fn id_field(node: &Map<String, Value>, keys: &[&str]) -> Option<String> {
        keys.iter().find_map(|k| match node.get(*k) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::Object(o)) => o.get("id").and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }),
            _ => None,
        })
    }
}

/// A node of a flow.
#[derive(Debug)]
pub enum Kind {
    Head(Head),
    Switch(switch::Switch),
    Change(change::Change),
    Template(template::Template),
    Geofence(geofence::Geofence),
    Output(output::Output),
    Http(http::Http),
    GetContext(get_context::GetContext),
    MergeData(merge_data::MergeData),
    CumulativeSum(cumulative_sum::CumulativeSum),
}

/// Node types dojot had that Ingot does not run yet: a flow with one is refused, with this
/// said, rather than saved with a branch that never runs.
const NOT_YET: &[&str] = &["notification", "cron", "cron-batch", "email", "ftp", "publish-ftp"];

impl Kind {
    /// Parses a node by its `type`.
    pub fn parse(ty: &str, node: &Map<String, Value>) -> Result<Self, String> {
        Ok(match ty {
            "event device in" => Kind::Head(Head::EventDevice {
                device: Head::id_field(node, &["device_id"]).ok_or("device_id is required")?,
                events: Events::parse(node),
            }),
            "event template in" => Kind::Head(Head::EventTemplate {
                template: Head::id_field(node, &["template_id"]).ok_or("template_id is required")?,
                events: Events::parse(node),
            }),
            "device in" => Kind::Head(Head::Device {
                device: Head::id_field(node, &["_device_id", "device_id", "device"]).ok_or("_device_id is required")?,
            }),
            "device template in" => Kind::Head(Head::DeviceTemplate {
                template: Head::id_field(node, &["device_template_id", "device_template"])
                    .ok_or("device_template_id is required")?,
            }),
            "switch" => Kind::Switch(switch::Switch::parse(node)?),
            "change" => Kind::Change(change::Change::parse(node)?),
            "template" => Kind::Template(template::Template::parse(node)?),
            "geofence" => Kind::Geofence(geofence::Geofence::parse(node)?),
            "http" => Kind::Http(http::Http::parse(node)?),
            "get context" => Kind::GetContext(get_context::GetContext::parse(node)?),
            "merge data" => Kind::MergeData(merge_data::MergeData::parse(node)?),
            "cumulative sum" => Kind::CumulativeSum(cumulative_sum::CumulativeSum::parse(node)?),
            "multi device out" | "device out" => Kind::Output(output::Output::parse(node, output::Action::Publish)?),
            "multi actuate" | "actuate" => Kind::Output(output::Output::parse(node, output::Action::Actuate)?),
            t if NOT_YET.contains(&t) => return Err(format!("node type '{t}' is not supported by Ingot yet")),
            t => return Err(format!("unknown node type '{t}'")),
        })
    }

    /// How many output ports the node has.
    pub fn outputs(&self) -> usize {
        match self {
            Kind::Switch(s) => s.outputs(),
            Kind::Output(_) => 0,
            _ => 1,
        }
    }

    /// Runs the node on `msg`.
    pub async fn run(&self, msg: Value, ctx: &mut RunContext<'_>) -> Result<Outputs, FlowError> {
        match self {
            Kind::Http(h) => h.run(msg, &ctx.http.policy, &ctx.http.client).await,
            // A head passes the message it was given on.
            Kind::Head(_) => Ok(vec![Some(msg)]),
            Kind::Switch(s) => s.run(msg),
            Kind::Change(c) => c.run(msg, ctx),
            Kind::GetContext(g) => g.run(msg, ctx),
            Kind::MergeData(m) => m.run(msg, ctx),
            Kind::CumulativeSum(c) => c.run(msg, ctx),
            Kind::Template(t) => t.run(msg),
            Kind::Geofence(g) => g.run(msg),
            Kind::Output(o) => o.run(msg, ctx.originator, ctx.effects),
        }
    }
}

/// What the http node runs with: its fence and one shared client.
#[derive(Debug, Clone)]
pub struct HttpEnv {
    pub policy: http::HttpPolicy,
    pub client: reqwest::Client,
}

impl HttpEnv {
    pub fn new(policy: http::HttpPolicy) -> Self {
        Self { client: http::client(&policy), policy }
    }
}

/// What a node may know of the run it is part of.
pub struct RunContext<'a> {
    pub http: &'a HttpEnv,
    /// The flow contexts, and which tenant, flow and node this is.
    pub contexts: &'a crate::context::Contexts,
    pub scope: crate::context::Scope<'a>,
    /// The device whose event started the flow.
    pub originator: &'a str,
    pub now_ms: i64,
    /// What output nodes ask the engine to do.
    pub effects: &'a mut Vec<Effect>,
}

/// A node's settings, as saved.
pub(crate) type Settings = Map<String, Value>;

/// A node's `rules` (switch, change), each an object, with its index for messages.
pub(crate) fn rules(node: &Settings) -> Result<Vec<(usize, &Settings)>, String> {
    let list = node.get("rules").and_then(Value::as_array).ok_or("rules must be a list")?;
    list.iter()
        .enumerate()
        .map(|(i, r)| r.as_object().map(|o| (i, o)).ok_or(format!("rule {i} is not an object")))
        .collect()
}

/// A required string setting.
pub(crate) fn field<'a>(node: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    opt_str(node, key).ok_or(format!("{key} is required"))
}

/// A number as JavaScript's `Number(text)` gives it, written as an integer when it is one
/// (JSON has no other way to tell 4 from 4.0).
pub(crate) fn js_number(text: &str) -> Option<Value> {
    let text = text.trim();
    if let Ok(i) = text.parse::<i64>() {
        return Some(Value::from(i));
    }
    let f: f64 = text.parse().ok()?;
    if f.fract() == 0.0 && f.abs() < 9e15 {
        return Some(Value::from(f as i64));
    }
    serde_json::Number::from_f64(f).map(Value::Number)
}

/// An optional string setting.
pub(crate) fn opt_str<'a>(node: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    node.get(key).and_then(Value::as_str)
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::context::{Contexts, Scope};

    /// What a node runs with, for unit tests: tenant `acme`, flow `f`, node `n`.
    pub(crate) struct Harness {
        pub http: HttpEnv,
        pub contexts: Contexts,
        pub effects: Vec<Effect>,
    }

    impl Harness {
        pub fn new() -> Self {
            Self { http: HttpEnv::new(http::HttpPolicy::default()), contexts: Contexts::default(), effects: Vec::new() }
        }

        pub fn ctx(&mut self, now_ms: i64) -> RunContext<'_> {
            RunContext {
                http: &self.http,
                contexts: &self.contexts,
                scope: Scope { tenant: "acme", flow: "f", node: "n" },
                originator: "dev",
                now_ms,
                effects: &mut self.effects,
            }
        }
    }
}
