//! What subscribers receive, in dojot's shapes: readings as `device-data` messages and
//! device-manager's lifecycle events. Only dojot's own event kinds leave Ingot; the kinds
//! Ingot's nodes use among themselves (sessions, tokens, seats…) are not for subscribers.

use model::{DeviceData, DeviceEvent, EventKind};
use serde_json::{Value, json};

/// dojot's `device-data` message: `{"metadata":{"deviceid","tenant","timestamp"},"attrs"}`
/// (timestamp in ms since the epoch).
pub fn device_data(d: &DeviceData) -> Value {
    json!({
        "metadata": {"deviceid": d.device_id, "tenant": d.tenant, "timestamp": d.ts.timestamp_millis()},
        "attrs": d.attrs,
    })
}

/// The lifecycle message of `<tenant>.dojot.device-manager.device`
/// (`{"event","data","meta":{"service"}}`, `meta.timestamp` on configure), or `None` for
/// an event dojot would not have published there.
pub fn lifecycle(e: &DeviceEvent) -> Option<Value> {
    let mut meta = json!({"service": e.tenant});
    match e.kind {
        EventKind::Create | EventKind::Update | EventKind::Remove | EventKind::TemplateUpdate => {}
        EventKind::Configure => meta["timestamp"] = json!(e.ts.timestamp_millis()),
        _ => return None,
    }
    Some(json!({"event": e.kind.as_str(), "data": e.data, "meta": meta}))
}

/// An actuation request in the device-data shape, as data-broker's socket.io sent it.
pub fn actuation_as_device_data(e: &DeviceEvent) -> Option<Value> {
    if e.kind != EventKind::Configure {
        return None;
    }
    Some(json!({
        "metadata": {"deviceid": e.device_id()?, "tenant": e.tenant, "timestamp": e.ts.timestamp_millis()},
        "attrs": e.data.get("attrs").cloned().unwrap_or_else(|| json!({})),
    }))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    #[test]
    fn shapes_are_dojots() {
        let ts = chrono::Utc.timestamp_millis_opt(1_700_000_000_123).unwrap();
        let attrs = json!({"temperature": 21}).as_object().unwrap().clone();
        let d = DeviceData::new("admin", "a1", ts, attrs.clone());
        assert_eq!(
            device_data(&d),
            json!({"metadata": {"deviceid": "a1", "tenant": "admin", "timestamp": 1_700_000_000_123i64},
                   "attrs": {"temperature": 21}})
        );
        let conf = DeviceEvent::configure("admin", "a1", attrs, ts);
        assert_eq!(lifecycle(&conf).unwrap()["meta"], json!({"service": "admin", "timestamp": 1_700_000_000_123i64}));
        assert_eq!(actuation_as_device_data(&conf).unwrap()["metadata"]["deviceid"], "a1");
        let create = DeviceEvent { kind: EventKind::Create, tenant: "admin".into(), data: json!({"id": "a1"}), ts };
        assert_eq!(
            lifecycle(&create).unwrap(),
            json!({"event": "create", "data": {"id": "a1"}, "meta": {"service": "admin"}})
        );
        let own = [
            EventKind::TokenRevoked,
            EventKind::MqttSession,
            EventKind::Credentials,
            EventKind::SeatAccount,
            EventKind::TrustedCas,
            EventKind::FlowsChanged,
        ];
        for kind in own {
            let e = DeviceEvent { kind, tenant: "admin".into(), data: json!({}), ts };
            assert_eq!(lifecycle(&e), None, "{kind:?}");
        }
    }
}
