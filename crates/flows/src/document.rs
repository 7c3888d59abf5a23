//! A flow document (dojot's: node-red objects `{id, type, z, name, wires, x, y, …}`)
//! compiled into a [`Graph`] the engine runs. A flow exported from dojot 0.5 imports
//! unchanged: `tab` and `comment` nodes are ignored, editor fields (`x`, `y`, `z`) are
//! kept in the document but not needed here.
//!
//! Stricter than flowbroker, which saved anything with a `type`: an unknown node type, a
//! bad setting, a wire to a node that does not exist or a duplicate id makes the whole
//! flow invalid (400, saying which node and why), instead of a branch that silently never
//! runs.

use std::collections::HashMap;

use serde_json::Value;

use crate::FlowError;
use crate::nodes::{Head, Kind};

/// Most nodes in one flow.
pub const MAX_NODES: usize = 1000;

/// A compiled flow.
#[derive(Debug)]
pub struct Graph {
    pub nodes: Vec<GraphNode>,
    /// Indexes of the head nodes.
    pub heads: Vec<usize>,
}

#[derive(Debug)]
pub struct GraphNode {
    pub id: String,
    pub kind: Kind,
    /// Per output port, the indexes of the nodes it feeds.
    pub wires: Vec<Vec<usize>>,
}

impl Graph {
    /// The head nodes, with their indexes.
    pub fn heads(&self) -> impl Iterator<Item = (usize, &Head)> {
        self.heads.iter().filter_map(|&i| match &self.nodes[i].kind {
            Kind::Head(h) => Some((i, h)),
            _ => None,
        })
    }
}

fn invalid(detail: impl std::fmt::Display) -> FlowError {
    FlowError::Invalid(format!("Given flow is invalid: {detail}"))
}

/// Compiles `flow` (the document's `flow` list).
pub fn compile(flow: &Value) -> Result<Graph, FlowError> {
    let items = flow.as_array().ok_or_else(|| invalid("flow must be a list of nodes"))?;
    let mut kept = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let node = item.as_object().ok_or_else(|| invalid(format!("element {i} is not a node object")))?;
        let ty = node.get("type").and_then(Value::as_str).ok_or_else(|| invalid(format!("element {i} has no type")))?;
        if matches!(ty, "tab" | "comment") {
            continue;
        }
        let id = match node.get("id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(invalid(format!("a '{ty}' node has no id"))),
        };
        kept.push((id, ty, node));
    }
    if kept.len() > MAX_NODES {
        return Err(invalid(format!("more than {MAX_NODES} nodes")));
    }
    let mut index = HashMap::new();
    for (i, (id, _, _)) in kept.iter().enumerate() {
        if index.insert(id.as_str(), i).is_some() {
            return Err(invalid(format!("two nodes have the id '{id}'")));
        }
    }
    let mut nodes = Vec::with_capacity(kept.len());
    for (id, ty, node) in &kept {
        let kind = Kind::parse(ty, node).map_err(|e| invalid(format!("node '{id}' ({ty}): {e}")))?;
        let ports = match node.get("wires") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(ports)) => ports.clone(),
            Some(_) => return Err(invalid(format!("node '{id}': wires must be a list of lists"))),
        };
        let mut wires = Vec::with_capacity(ports.len());
        for (port, targets) in ports.iter().enumerate() {
            let targets =
                targets.as_array().ok_or_else(|| invalid(format!("node '{id}': wires must be a list of lists")))?;
            if port >= kind.outputs() && !targets.is_empty() {
                return Err(invalid(format!(
                    "node '{id}' ({ty}) has {} output(s) but wires on output {}",
                    kind.outputs(),
                    port + 1
                )));
            }
            let to = targets
                .iter()
                .map(|t| {
                    let t = t.as_str().unwrap_or_default();
                    index
                        .get(t)
                        .copied()
                        .ok_or_else(|| invalid(format!("node '{id}' is wired to '{t}', which is not in the flow")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            wires.push(to);
        }
        nodes.push(GraphNode { id: id.clone(), kind, wires });
    }
    let heads = nodes.iter().enumerate().filter(|(_, n)| matches!(n.kind, Kind::Head(_))).map(|(i, _)| i).collect();
    Ok(Graph { nodes, heads })
}

#[cfg(test)]
pub(crate) mod tests_support {
    use serde_json::Value;

    /// Chapter 9.2's kitchen flow, as dojot's editor exports it (`testdata/kitchen.json`,
    /// also read by the end-to-end test).
    pub(crate) fn kitchen(template: &str, alarm: &str) -> Value {
        let text = include_str!("../testdata/kitchen.json").replace("$TEMPLATE", template).replace("$ALARM", alarm);
        serde_json::from_str(&text).expect("testdata/kitchen.json is JSON")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::document::tests_support::kitchen;

    #[test]
    fn a_dojot_export_compiles() {
        let g = compile(&kitchen("1", "alarm01")).unwrap();
        assert_eq!(g.nodes.len(), 5, "the tab is left out");
        assert_eq!(g.heads().count(), 1);
        let sw = g.nodes.iter().position(|n| n.id == "sw").unwrap();
        assert_eq!(g.nodes[sw].wires.len(), 2);
    }

    #[test]
    fn invalid_flows_say_which_node_and_why() {
        let cases = [
            (json!({}), "list of nodes"),
            (json!([{"id": "a"}]), "no type"),
            (json!([{"id": "a", "type": "mystery", "wires": []}]), "unknown node type 'mystery'"),
            (json!([{"id": "a", "type": "notification", "wires": []}]), "not supported by Ingot yet"),
            (json!([{"id": "a", "type": "event device in", "device_id": "d", "wires": [["ghost"]]}]), "'ghost'"),
            (
                json!([{"id": "a", "type": "event device in", "device_id": "d"}, {"id": "a", "type": "event device in", "device_id": "e"}]),
                "two nodes",
            ),
            (
                json!([{"id": "a", "type": "switch", "rules": [{"t": "regex", "v": "("}], "wires": [[]]}]),
                "node 'a' (switch)",
            ),
            (json!([{"id": "a", "type": "event device in", "wires": []}]), "device_id is required"),
            (
                json!([{"id": "a", "type": "multi device out", "device_source": "self", "attrs": "x"},
                    {"id": "b", "type": "event device in", "device_id": "d", "wires": [["a"]]},
                    {"id": "c", "type": "change", "rules": [], "wires": [["a"], ["a"]]}]),
                "1 output(s)",
            ),
        ];
        for (flow, why) in cases {
            let e = compile(&flow).unwrap_err().to_string();
            assert!(e.starts_with("Given flow is invalid") && e.contains(why), "{flow}: {e}");
        }
    }
}
