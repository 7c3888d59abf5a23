//! `merge data`: merges an object of the message into what this node has merged so far
//! (its node context) and puts the result on the message: readings that arrive apart
//! become one object. Objects merge key by key, deeply; arrays by index (lodash's
//! `merge`, as flowbroker used). Fixed: a failure is an error, not the text
//! "Failed to retrieve context." sent on as the message.

use serde_json::{Map, Value};

use super::{Outputs, RunContext, field};
use crate::context::Layer;
use crate::{FlowError, path};

#[derive(Debug)]
pub struct MergeData {
    target: String,
    merged: String,
}

/// lodash's `merge` of `from` into `into`.
fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, v) in b.iter().enumerate() {
                match a.get_mut(i) {
                    Some(slot) => merge(slot, v),
                    None => a.push(v.clone()),
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

impl MergeData {
    pub fn parse(node: &Map<String, Value>) -> Result<Self, String> {
        Ok(Self { target: field(node, "targetData")?.to_string(), merged: field(node, "mergedData")?.to_string() })
    }

    pub fn run(&self, mut msg: Value, ctx: &RunContext<'_>) -> Result<Outputs, FlowError> {
        let target = path::get(&msg, &self.target)?;
        if !target.is_object() {
            return Err(FlowError::Node(format!("{} must be an object to merge", self.target)));
        }
        let mut merged = ctx.contexts.get(ctx.scope, Layer::Node, "data").unwrap_or(Value::Object(Map::new()));
        merge(&mut merged, target);
        ctx.contexts.set(ctx.scope, Layer::Node, "data", merged.clone())?;
        path::set(&mut msg, &self.merged, merged)?;
        Ok(vec![Some(msg)])
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn readings_that_arrive_apart_become_one() {
        let node =
            MergeData::parse(json!({"targetData": "payload.data.attrs", "mergedData": "all"}).as_object().unwrap())
                .unwrap();
        let mut h = crate::nodes::testing::Harness::new();
        let at = |attrs: Value, h: &mut crate::nodes::testing::Harness| {
            node.run(json!({"payload": {"data": {"attrs": attrs}}}), &h.ctx(0)).unwrap().remove(0).unwrap()["all"]
                .clone()
        };
        assert_eq!(at(json!({"t": 20}), &mut h), json!({"t": 20}));
        assert_eq!(at(json!({"h": 40}), &mut h), json!({"t": 20, "h": 40}));
        assert!(node.run(json!({"payload": {"data": {"attrs": 3}}}), &h.ctx(0)).is_err());
    }

    #[test]
    fn merges_deeply_like_lodash() {
        let mut a = json!({"t": 1, "deep": {"x": 1}, "list": [1, {"a": 1}]});
        merge(&mut a, &json!({"h": 2, "deep": {"y": 2}, "list": [9, {"b": 2}, 3]}));
        assert_eq!(a, json!({"t": 1, "h": 2, "deep": {"x": 1, "y": 2}, "list": [9, {"a": 1, "b": 2}, 3]}));
    }
}
