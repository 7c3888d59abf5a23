//! Flow context: values flows keep between messages. Three layers, as flowbroker's
//! context manager had: a **tenant**'s (shared by its flows), a **flow**'s, and a
//! **node**'s own (the running state of `merge data` and `cumulative sum`). `change`
//! writes tenant and flow values (rules with `pt: "tenant"` or `"flow"`; flowbroker had
//! no node that did), `get context` reads them.
//!
//! Kept in memory by the engine of each Ingot node, bounded ([`MAX_KEYS`] keys, values up
//! to [`MAX_VALUE_BYTES`]); it does not survive a restart, and in a cluster each node
//! has its own (readings of one device go to the node that takes them). A flow's values
//! go when the flow is removed.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde_json::Value;

use crate::FlowError;

/// Most keys kept, all tenants together.
pub const MAX_KEYS: usize = 100_000;
/// Largest value kept, in bytes of JSON.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Which context a value is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Tenant,
    Flow,
    Node,
}

impl Layer {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "tenant" | "global" => Some(Self::Tenant),
            "flow" => Some(Self::Flow),
            "node" => Some(Self::Node),
            _ => None,
        }
    }
}

/// Where a run is: whose context a node reads and writes.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub tenant: &'a str,
    pub flow: &'a str,
    pub node: &'a str,
}

impl Scope<'_> {
    fn key(&self, layer: Layer, name: &str) -> String {
        match layer {
            Layer::Tenant => format!("{}\u{0}{name}", self.tenant),
            Layer::Flow => format!("{}\u{0}{}\u{0}{name}", self.tenant, self.flow),
            Layer::Node => format!("{}\u{0}{}\u{0}{}\u{0}{name}", self.tenant, self.flow, self.node),
        }
    }
}

/// A time window of (ms, value) entries (`cumulative sum`'s state).
pub type Window = VecDeque<(i64, f64)>;

#[derive(Debug, Default)]
pub struct Contexts {
    values: Mutex<HashMap<String, Value>>,
    windows: Mutex<HashMap<String, Window>>,
}

impl Contexts {
    pub fn get(&self, scope: Scope<'_>, layer: Layer, name: &str) -> Option<Value> {
        self.values.lock().unwrap_or_else(|p| p.into_inner()).get(&scope.key(layer, name)).cloned()
    }

    pub fn set(&self, scope: Scope<'_>, layer: Layer, name: &str, value: Value) -> Result<(), FlowError> {
        let size = value.to_string().len();
        if size > MAX_VALUE_BYTES {
            return Err(FlowError::Node(format!("a context value of {size} bytes is over {MAX_VALUE_BYTES}")));
        }
        let mut values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        let key = scope.key(layer, name);
        if values.len() >= MAX_KEYS && !values.contains_key(&key) {
            return Err(FlowError::Node(format!("flow contexts hold {MAX_KEYS} values already")));
        }
        values.insert(key, value);
        Ok(())
    }

    /// Runs `f` on the node's time window (made empty the first time).
    pub fn window<R>(&self, scope: Scope<'_>, f: impl FnOnce(&mut Window) -> R) -> Result<R, FlowError> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let key = scope.key(Layer::Node, "window");
        if windows.len() >= MAX_KEYS && !windows.contains_key(&key) {
            return Err(FlowError::Node(format!("flow contexts hold {MAX_KEYS} windows already")));
        }
        Ok(f(windows.entry(key).or_default()))
    }

    /// Forgets a flow's values (and its nodes').
    pub fn forget_flow(&self, tenant: &str, flow: &str) {
        let prefix = format!("{tenant}\u{0}{flow}\u{0}");
        self.values.lock().unwrap_or_else(|p| p.into_inner()).retain(|k, _| !k.starts_with(&prefix));
        self.windows.lock().unwrap_or_else(|p| p.into_inner()).retain(|k, _| !k.starts_with(&prefix));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn layers_are_apart_and_a_removed_flow_takes_its_values() {
        let c = Contexts::default();
        let here = Scope { tenant: "acme", flow: "f1", node: "n1" };
        let other_flow = Scope { flow: "f2", ..here };
        c.set(here, Layer::Tenant, "x", json!(1)).unwrap();
        c.set(here, Layer::Flow, "x", json!(2)).unwrap();
        c.set(here, Layer::Node, "x", json!(3)).unwrap();
        assert_eq!(c.get(other_flow, Layer::Tenant, "x"), Some(json!(1)), "the tenant's is shared");
        assert_eq!(c.get(other_flow, Layer::Flow, "x"), None);
        assert_eq!(c.get(Scope { tenant: "globex", ..here }, Layer::Tenant, "x"), None, "tenants apart");
        assert_eq!(c.get(here, Layer::Node, "x"), Some(json!(3)));
        c.forget_flow("acme", "f1");
        assert_eq!((c.get(here, Layer::Flow, "x"), c.get(here, Layer::Node, "x")), (None, None));
        assert_eq!(c.get(here, Layer::Tenant, "x"), Some(json!(1)));
        assert!(c.set(here, Layer::Flow, "big", json!("x".repeat(MAX_VALUE_BYTES))).is_err());
    }
}
