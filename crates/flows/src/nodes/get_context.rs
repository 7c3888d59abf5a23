//! `get context`: copies a tenant or flow context value (see [`crate::context`]) into the
//! message. Settings: `contextLayer` (`tenant` or `flow`), `contextName` (or, with
//! `contextNameType: "msg"`, the property holding the name), `contextContent` (the
//! property to write). A value never set reads as `{}`, as flowbroker's did.

use serde_json::{Map, Value, json};

use super::{Outputs, RunContext, field, opt_str};
use crate::context::Layer;
use crate::{FlowError, path};

#[derive(Debug)]
pub struct GetContext {
    layer: Layer,
    name: Name,
    content: String,
}

#[derive(Debug)]
enum Name {
    Fixed(String),
    FromMessage(String),
}

impl GetContext {
    pub fn parse(node: &Map<String, Value>) -> Result<Self, String> {
        let layer = match opt_str(node, "contextLayer").unwrap_or("flow") {
            l @ ("tenant" | "flow") => Layer::parse(l).expect("listed"),
            other => return Err(format!("contextLayer '{other}' is not tenant or flow")),
        };
        let name = field(node, "contextName")?.to_string();
        let name = match opt_str(node, "contextNameType").unwrap_or("str") {
            "msg" => Name::FromMessage(name),
            _ => Name::Fixed(name),
        };
        Ok(Self { layer, name, content: field(node, "contextContent")?.to_string() })
    }

    pub fn run(&self, mut msg: Value, ctx: &RunContext<'_>) -> Result<Outputs, FlowError> {
        let name = match &self.name {
            Name::Fixed(n) => n.clone(),
            Name::FromMessage(p) => match path::get(&msg, p)? {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        };
        let value = ctx.contexts.get(ctx.scope, self.layer, &name).unwrap_or_else(|| json!({}));
        path::set(&mut msg, &self.content, value)?;
        Ok(vec![Some(msg)])
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::context::Scope;
    use crate::nodes::testing::Harness;

    #[test]
    fn reads_a_tenant_or_flow_value_or_an_empty_object() {
        let mut h = Harness::new();
        let scope = Scope { tenant: "acme", flow: "f", node: "other" };
        h.contexts.set(scope, Layer::Flow, "limits", json!({"max": 40})).unwrap();
        let node = |layer: &str, name_type: &str| {
            let settings = json!({"contextLayer": layer, "contextName": "payload.which", "contextNameType": name_type,
                                  "contextContent": "ctx"});
            GetContext::parse(settings.as_object().unwrap()).unwrap()
        };
        let msg = json!({"payload": {"which": "limits"}});
        let read =
            |g: GetContext, h: &mut Harness| g.run(msg.clone(), &h.ctx(0)).unwrap().remove(0).unwrap()["ctx"].clone();
        assert_eq!(read(node("flow", "msg"), &mut h), json!({"max": 40}));
        assert_eq!(read(node("tenant", "msg"), &mut h), json!({}), "never set");
        assert!(
            GetContext::parse(
                json!({"contextLayer": "device", "contextName": "a", "contextContent": "b"}).as_object().unwrap()
            )
            .is_err()
        );
    }
}
