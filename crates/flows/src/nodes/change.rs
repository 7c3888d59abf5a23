//! `change`: sets, changes, deletes or moves message properties, rule by rule
//! (node-red's change node). flowbroker ran only `set` and silently skipped the rest;
//! Ingot runs all four. Value types (`tot`): `str`, `num`, `bool`, `json`, `msg` (another
//! property), `flow` and `tenant` (a context value), `date` (now, ms). No JSONata. `set`
//! and `delete` may also write a flow or tenant context value (`pt: "flow"` or
//! `"tenant"`; see [`crate::context`]), which `get context` reads. A rule that fails
//! stops the branch.

use regex::Regex;
use serde_json::{Map, Value};

use super::{Outputs, RunContext, field, js_number, opt_str, rules};
use crate::context::Layer;
use crate::{FlowError, path};

#[derive(Debug)]
pub struct Change {
    rules: Vec<Rule>,
}

#[derive(Debug)]
enum Rule {
    Set {
        path: String,
        to: To,
    },
    /// Writes a context value (`None`: deletes it).
    SetContext {
        layer: Layer,
        name: String,
        to: Option<To>,
    },
    /// Replaces `from` in the string at `path` (or the whole value when it equals `from`).
    Change {
        path: String,
        from: From,
        to: To,
    },
    Delete {
        path: String,
    },
    Move {
        path: String,
        to: String,
    },
}

#[derive(Debug)]
enum To {
    Value(Value),
    Msg(String),
    Context(Layer, String),
    Now,
}

#[derive(Debug)]
enum From {
    Text(String),
    Regex(Regex),
    Value(Value),
}

fn to(rule: &Map<String, Value>, i: usize) -> Result<To, String> {
    let raw = rule.get("to").cloned().unwrap_or(Value::String(String::new()));
    let text = match &raw {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Ok(match opt_str(rule, "tot").unwrap_or("str") {
        "str" => To::Value(Value::String(text)),
        "num" => To::Value(js_number(&text).ok_or(format!("rule {i}: '{text}' is not a number"))?),
        "bool" | "boolean" => To::Value(Value::Bool(matches!(text.to_lowercase().as_str(), "true" | "1"))),
        "json" => To::Value(serde_json::from_str(&text).map_err(|e| format!("rule {i}: '{text}' is not JSON: {e}"))?),
        "msg" => To::Msg(text),
        "flow" => To::Context(Layer::Flow, text),
        "tenant" | "global" => To::Context(Layer::Tenant, text),
        "date" => To::Now,
        other => {
            return Err(format!("rule {i}: value type '{other}' is not supported (str, num, bool, json, msg, date)"));
        }
    })
}

impl Change {
    pub fn parse(node: &Map<String, Value>) -> Result<Self, String> {
        let rules = rules(node)?
            .into_iter()
            .map(|(i, r)| {
                let path = field(r, "p").map_err(|e| format!("rule {i}: {e}"))?.to_string();
                let t = field(r, "t").map_err(|e| format!("rule {i}: {e}"))?;
                match opt_str(r, "pt").unwrap_or("msg") {
                    "msg" => {}
                    pt @ ("flow" | "tenant" | "global") => {
                        let layer = Layer::parse(pt).expect("listed");
                        return match t {
                            "set" => Ok(Rule::SetContext { layer, name: path, to: Some(to(r, i)?) }),
                            "delete" => Ok(Rule::SetContext { layer, name: path, to: None }),
                            other => Err(format!("rule {i}: a {pt} value can be set or deleted, not {other}d")),
                        };
                    }
                    pt => return Err(format!("rule {i}: '{pt}' is not msg, flow or tenant")),
                }
                Ok(match t {
                    "set" => Rule::Set { path, to: to(r, i)? },
                    "change" => {
                        let from_text = match r.get("from") {
                            Some(Value::String(s)) => s.clone(),
                            Some(other) => other.to_string(),
                            None => String::new(),
                        };
                        let from = match opt_str(r, "fromt").unwrap_or("str") {
                            "re" => {
                                From::Regex(Regex::new(&from_text).map_err(|e| format!("rule {i}: bad regex: {e}"))?)
                            }
                            "num" | "bool" | "json" => From::Value(
                                serde_json::from_str(&from_text)
                                    .map_err(|_| format!("rule {i}: '{from_text}' is not a value"))?,
                            ),
                            _ => From::Text(from_text),
                        };
                        Rule::Change { path, from, to: to(r, i)? }
                    }
                    "delete" => Rule::Delete { path },
                    "move" => {
                        Rule::Move { path, to: field(r, "to").map_err(|e| format!("rule {i}: {e}"))?.to_string() }
                    }
                    other => return Err(format!("rule {i}: unknown rule type '{other}'")),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self { rules })
    }

    pub fn run(&self, mut msg: Value, ctx: &RunContext<'_>) -> Result<Outputs, FlowError> {
        for rule in &self.rules {
            match rule {
                Rule::Set { path, to } => {
                    let value = resolve(to, &msg, ctx)?;
                    path::set(&mut msg, path, value)?;
                }
                Rule::SetContext { layer, name, to } => {
                    let value = match to {
                        Some(to) => resolve(to, &msg, ctx)?,
                        None => Value::Null,
                    };
                    ctx.contexts.set(ctx.scope, *layer, name, value)?;
                }
                Rule::Change { path, from, to } => {
                    let Some(current) = path::lookup(&msg, path)?.cloned() else { continue };
                    let replacement = resolve(to, &msg, ctx)?;
                    let changed = match (from, &current) {
                        (From::Text(f), Value::String(s)) if !f.is_empty() => {
                            Some(Value::String(s.replace(f.as_str(), &plain(&replacement))))
                        }
                        (From::Regex(re), Value::String(s)) => {
                            Some(Value::String(re.replace_all(s, plain(&replacement).as_str()).into_owned()))
                        }
                        (From::Value(v), current) if v == current => Some(replacement),
                        (From::Text(f), current) if !current.is_string() && plain(current) == *f => Some(replacement),
                        _ => None,
                    };
                    if let Some(v) = changed {
                        path::set(&mut msg, path, v)?;
                    }
                }
                Rule::Delete { path } => {
                    path::delete(&mut msg, path)?;
                }
                Rule::Move { path, to } => {
                    let value = path::delete(&mut msg, path)?
                        .ok_or_else(|| FlowError::Node(format!("unknown property {path} requested")))?;
                    path::set(&mut msg, to, value)?;
                }
            }
        }
        Ok(vec![Some(msg)])
    }
}

fn resolve(to: &To, msg: &Value, ctx: &RunContext<'_>) -> Result<Value, FlowError> {
    Ok(match to {
        To::Value(v) => v.clone(),
        To::Msg(p) => path::get(msg, p)?.clone(),
        To::Context(layer, name) => ctx.contexts.get(ctx.scope, *layer, name).unwrap_or(Value::Null),
        To::Now => Value::from(ctx.now_ms),
    })
}

/// A value as text inside a string.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::nodes::testing::Harness;

    fn change(rules: Value) -> Change {
        Change::parse(json!({"rules": rules}).as_object().unwrap()).unwrap()
    }

    #[test]
    fn set_change_delete_and_move() {
        let kitchen = change(json!([
            {"t": "set", "p": "output.message", "pt": "msg", "to": "kitchen OK", "tot": "str"},
            {"t": "set", "p": "output.severity", "pt": "msg", "to": "4", "tot": "num"},
            {"t": "set", "p": "output.t", "to": "payload.t", "tot": "msg"},
            {"t": "set", "p": "output.at", "tot": "date"},
            {"t": "set", "p": "output.raw", "to": "{\"a\":[1]}", "tot": "json"},
            {"t": "set", "p": "output.on", "to": "true", "tot": "bool"}
        ]));
        let mut h = Harness::new();
        let out = kitchen.run(json!({"payload": {"t": 30}}), &h.ctx(7)).unwrap().remove(0).unwrap();
        assert_eq!(
            out["output"],
            json!({"message": "kitchen OK", "severity": 4, "t": 30, "at": 7, "raw": {"a": [1]}, "on": true})
        );
        let edit = change(json!([
            {"t": "change", "p": "payload.s", "from": "cat", "fromt": "str", "to": "dog", "tot": "str"},
            {"t": "change", "p": "payload.r", "from": "[0-9]+", "fromt": "re", "to": "#", "tot": "str"},
            {"t": "change", "p": "payload.n", "from": "3", "fromt": "num", "to": "4", "tot": "num"},
            {"t": "delete", "p": "payload.gone"},
            {"t": "move", "p": "payload.old", "to": "payload.new"}
        ]));
        let msg = json!({"payload": {"s": "cat and cat", "r": "a1b22", "n": 3, "gone": 1, "old": "x"}});
        let out = edit.run(msg, &h.ctx(0)).unwrap().remove(0).unwrap();
        assert_eq!(out["payload"], json!({"s": "dog and dog", "r": "a#b#", "n": 4, "new": "x"}));
        assert!(change(json!([{"t": "set", "p": "a", "to": "nope", "tot": "msg"}])).run(json!({}), &h.ctx(0)).is_err());
        assert!(change(json!([{"t": "move", "p": "a", "to": "b"}])).run(json!({}), &h.ctx(0)).is_err());
    }

    #[test]
    fn context_values_are_set_read_and_deleted() {
        let mut h = Harness::new();
        let write = change(json!([
            {"t": "set", "p": "limit", "pt": "flow", "to": "payload.limit", "tot": "msg"},
            {"t": "set", "p": "site", "pt": "tenant", "to": "kitchen", "tot": "str"}
        ]));
        write.run(json!({"payload": {"limit": 40}}), &h.ctx(0)).unwrap();
        let read = change(json!([
            {"t": "set", "p": "l", "to": "limit", "tot": "flow"},
            {"t": "set", "p": "s", "to": "site", "tot": "tenant"}
        ]));
        let out = read.run(json!({}), &h.ctx(0)).unwrap().remove(0).unwrap();
        assert_eq!(out, json!({"l": 40, "s": "kitchen"}));
        change(json!([{"t": "delete", "p": "limit", "pt": "flow"}])).run(json!({}), &h.ctx(0)).unwrap();
        assert_eq!(read.run(json!({}), &h.ctx(0)).unwrap().remove(0).unwrap()["l"], Value::Null);
        let moved =
            Change::parse(json!({"rules": [{"t": "move", "p": "a", "pt": "flow", "to": "b"}]}).as_object().unwrap());
        assert!(moved.is_err(), "a context value is set or deleted only");
    }

    #[test]
    fn bad_rules_are_refused_when_the_flow_is_saved() {
        for rules in [
            json!([{"t": "set", "p": "a", "to": "x", "tot": "jsonata"}]),
            json!([{"t": "set", "p": "a", "to": "x", "tot": "num"}]),
            json!([{"t": "set", "p": "a", "pt": "device", "to": "1"}]),
            json!([{"t": "change", "p": "a", "from": "(", "fromt": "re", "to": "x"}]),
            json!([{"t": "shuffle", "p": "a"}]),
            json!([{"t": "set"}]),
        ] {
            assert!(Change::parse(json!({"rules": rules}).as_object().unwrap()).is_err(), "{rules}");
        }
    }
}
