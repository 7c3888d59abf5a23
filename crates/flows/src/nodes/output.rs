//! Output nodes: `multi device out` (and the deprecated `device out`) publish a
//! property of the message as a reading of one or more devices; `multi actuate` (and
//! `actuate`) send it to them as actuation. They produce [`Effect`]s, which the engine
//! carries out after the run (devices are checked to exist in the tenant then).
//!
//! Targets: `self` (the device whose reading started the flow), `configured` (a list of
//! ids), `dynamic` (ids read from the message). The deprecated nodes' older fields
//! (`_device_id`, `device_source_msg`) are read too, so old flows load. Fixed from
//! flowbroker: the value must be an object of attributes (it published anything, and a
//! number there made dojot's persister a zombie, dojot #1130), and empty ids are skipped.

use serde_json::{Map, Value};

use super::{Outputs, opt_str};
use crate::{Effect, FlowError, path};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A reading of the target devices.
    Publish,
    /// Actuation of the target devices.
    Actuate,
}

#[derive(Debug)]
pub struct Output {
    action: Action,
    targets: Targets,
    attrs: String,
}

#[derive(Debug)]
enum Targets {
    Originator,
    Configured(Vec<String>),
    Dynamic(String),
}

impl Output {
    pub fn parse(node: &Map<String, Value>, action: Action) -> Result<Self, String> {
        let attrs = opt_str(node, "attrs")
            .filter(|a| !a.is_empty())
            .ok_or("attrs (the message property to send) is required")?;
        let configured = || -> Vec<String> {
            let mut ids: Vec<String> = match node.get("devices_source_configured") {
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
                _ => Vec::new(),
            };
            if let Some(id) = opt_str(node, "_device_id") {
                ids.push(id.to_string());
            }
            ids.retain(|id| !id.is_empty());
            ids
        };
        let targets = match opt_str(node, "device_source").unwrap_or("configured") {
            "self" => Targets::Originator,
            "configured" => {
                let ids = configured();
                if ids.is_empty() {
                    return Err("device_source is 'configured' but no device is configured".into());
                }
                Targets::Configured(ids)
            }
            "dynamic" => Targets::Dynamic(
                opt_str(node, "devices_source_dynamic")
                    .or_else(|| opt_str(node, "device_source_msg"))
                    .filter(|p| !p.is_empty())
                    .ok_or("device_source is 'dynamic' but no message property names the devices")?
                    .to_string(),
            ),
            other => return Err(format!("device_source '{other}' is not one of self, configured, dynamic")),
        };
        Ok(Self { action, targets, attrs: attrs.to_string() })
    }

    pub fn run(&self, msg: Value, originator: &str, effects: &mut Vec<Effect>) -> Result<Outputs, FlowError> {
        let attrs = match path::get(&msg, &self.attrs)? {
            Value::Object(m) => m.clone(),
            other => {
                return Err(FlowError::Node(format!("{} must be an object of attributes, not {other}", self.attrs)));
            }
        };
        let mut ids: Vec<String> = match &self.targets {
            Targets::Originator => vec![originator.to_string()],
            Targets::Configured(ids) => ids.clone(),
            Targets::Dynamic(p) => match path::lookup(&msg, p)? {
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
                Some(Value::String(s)) => vec![s.clone()],
                _ => Vec::new(),
            },
        };
        ids.retain(|id| !id.is_empty());
        let mut seen = std::collections::HashSet::new();
        ids.retain(|id| seen.insert(id.clone()));
        if ids.is_empty() {
            return Err(FlowError::Node("could not define target devices".into()));
        }
        for device in ids {
            effects.push(match self.action {
                Action::Publish => Effect::Publish { device, attrs: attrs.clone() },
                Action::Actuate => Effect::Actuate { device, attrs: attrs.clone() },
            });
        }
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn output(node: Value) -> Result<Output, String> {
        Output::parse(node.as_object().unwrap(), Action::Publish)
    }

    #[test]
    fn targets_self_configured_and_dynamic() {
        let msg = json!({"out": {"message": "hi"}, "targets": ["a", "a", "b", ""]});
        let mut effects = Vec::new();
        let dynamic = output(json!({"device_source": "dynamic", "devices_source_dynamic": "targets", "attrs": "out"}));
        dynamic.unwrap().run(msg.clone(), "origin", &mut effects).unwrap();
        let this = output(json!({"device_source": "self", "attrs": "out"})).unwrap();
        this.run(msg.clone(), "origin", &mut effects).unwrap();
        // An old `device out`, saved with `_device_id`.
        let old = output(json!({"device_source": "configured", "_device_id": "alarm", "attrs": "out"})).unwrap();
        old.run(msg.clone(), "origin", &mut effects).unwrap();
        let devices: Vec<&str> = effects
            .iter()
            .map(|e| match e {
                Effect::Publish { device, .. } => device.as_str(),
                Effect::Actuate { .. } => "?",
            })
            .collect();
        assert_eq!(devices, ["a", "b", "origin", "alarm"]);
        let none = output(json!({"device_source": "dynamic", "devices_source_dynamic": "nobody", "attrs": "out"}));
        assert!(none.unwrap().run(msg.clone(), "o", &mut effects).is_err());
        let number = json!({"out": 3});
        assert!(this.run(number, "o", &mut effects).is_err(), "attrs must be an object (dojot #1130)");
    }

    #[test]
    fn bad_settings_are_refused_when_the_flow_is_saved() {
        for node in [
            json!({"device_source": "self"}),
            json!({"device_source": "configured", "devices_source_configured": [""], "attrs": "out"}),
            json!({"device_source": "dynamic", "attrs": "out"}),
            json!({"device_source": "everyone", "attrs": "out"}),
        ] {
            assert!(output(node.clone()).is_err(), "{node}");
        }
    }
}
