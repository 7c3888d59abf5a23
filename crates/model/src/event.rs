//! Device lifecycle events: dojot's `<tenant>.dojot.device-manager.device` messages.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// What happened to a device (or template).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    #[serde(rename = "create")]
    Create,
    #[serde(rename = "update")]
    Update,
    #[serde(rename = "remove")]
    Remove,
    /// Actuation: new values for a device's actuator attributes.
    #[serde(rename = "configure")]
    Configure,
    /// A template changed; sent after one `update` per affected device (dojot #923).
    #[serde(rename = "template.update")]
    TemplateUpdate,
    /// Ingot's own: a template was created; `data`: the template. How the other nodes of
    /// a cluster learn of it.
    #[serde(rename = "template.create")]
    TemplateCreate,
    /// Ingot's own: a template was deleted; `data`: the template as it was.
    #[serde(rename = "template.remove")]
    TemplateRemove,
    /// Ingot's own: an API token was revoked; `data`: `{"token": id}`. Every node forgets it.
    #[serde(rename = "token.revoked")]
    TokenRevoked,
    /// Ingot's own: a user changed or was removed; `data`: `{"user": id, "removed": bool}`.
    /// Every node re-reads it (and ends a removed user's console sessions).
    #[serde(rename = "user.changed")]
    UserChanged,
    /// Ingot's own: a seat account got a new user or another plan; `data`:
    /// `{"account","node"}`. Every other node re-reads it (mirror, live views).
    #[serde(rename = "seat.account")]
    SeatAccount,
    /// Ingot's own: a node bound an MQTT connection to session (device, client id);
    /// `data`: `{"device","client","node","clean"}`. Another node holding that session
    /// closes its connection (taken over) and hands the session's state over.
    #[serde(rename = "mqtt.session")]
    MqttSession,
    /// Ingot's own: a persistent session's state for the node that took it over (`node`);
    /// `data`: `{"device","client","node","state":{"subscriptions":[[form, qos]],"queue":[[topic, qos, payload]]}}`.
    #[serde(rename = "mqtt.session.state")]
    MqttSessionState,
    /// Ingot's own: a credential of the device was withdrawn. `data`: `{"id"}` when it got
    /// a new secret (connections that authenticated with a secret must end), or
    /// `{"id", "certificate": fingerprint}` when that certificate was revoked or its CA is
    /// no longer trusted (connections that authenticated with it must end).
    #[serde(rename = "credentials")]
    Credentials,
    /// Ingot's own: the tenant left dojot's unsecured mode; connections that
    /// authenticated without a secret must end. `data`: `{}`.
    #[serde(rename = "tenant.secured")]
    TenantSecured,
    /// Ingot's own: the tenant's trusted CAs changed (`/x509/v1/trusted-cas`); `data`:
    /// `{"ca": fingerprint}`. Every node reloads the CAs its MQTTS listener trusts.
    #[serde(rename = "x509.trusted-cas")]
    TrustedCas,
    /// Ingot's own: the tenant's flows changed; `data`: `{}`. Every node reloads them.
    #[serde(rename = "flows.changed")]
    FlowsChanged,
    /// Ingot's own: the auction market (seed 003), which has no tenants (`tenant` is
    /// `market`). `data`: `{"event": "offerCreated", "offer"}` or `{"event":
    /// "highestBid", "bid"}` or `{"event": "offerSold", "offer", "bid"}`; every node
    /// sends it to its authenticated sockets.
    #[serde(rename = "market")]
    Market,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Remove => "remove",
            Self::Configure => "configure",
            Self::TemplateUpdate => "template.update",
            Self::TemplateCreate => "template.create",
            Self::TemplateRemove => "template.remove",
            Self::TokenRevoked => "token.revoked",
            Self::UserChanged => "user.changed",
            Self::SeatAccount => "seat.account",
            Self::MqttSession => "mqtt.session",
            Self::MqttSessionState => "mqtt.session.state",
            Self::Credentials => "credentials",
            Self::TenantSecured => "tenant.secured",
            Self::TrustedCas => "x509.trusted-cas",
            Self::FlowsChanged => "flows.changed",
            Self::Market => "market",
        }
    }
}

/// A lifecycle event as published on the bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceEvent {
    pub kind: EventKind,
    pub tenant: String,
    /// For create/update/remove: the device as the API shows it. For configure:
    /// `{"id", "attrs"}`. For template.update: `{"affected", "template"}`; for
    /// template.create and template.remove: the template.
    pub data: Value,
    pub ts: DateTime<Utc>,
}

impl DeviceEvent {
    /// An actuation request for `device_id`.
    pub fn configure(tenant: &str, device_id: &str, attrs: Map<String, Value>, ts: DateTime<Utc>) -> Self {
        Self { kind: EventKind::Configure, tenant: tenant.into(), data: json!({"id": device_id, "attrs": attrs}), ts }
    }

    /// A device's secret changed.
    pub fn credentials(tenant: &str, device_id: &str, ts: DateTime<Utc>) -> Self {
        Self { kind: EventKind::Credentials, tenant: tenant.into(), data: json!({"id": device_id}), ts }
    }

    /// For a `credentials` event: the certificate it withdraws, if it is about one.
    pub fn certificate(&self) -> Option<&str> {
        self.data.get("certificate").and_then(Value::as_str)
    }

    /// The tenant left unsecured mode.
    pub fn tenant_secured(tenant: &str, ts: DateTime<Utc>) -> Self {
        Self { kind: EventKind::TenantSecured, tenant: tenant.into(), data: json!({}), ts }
    }

    /// The device this event is about, when it is about one device.
    pub fn device_id(&self) -> Option<&str> {
        self.data.get("id").and_then(Value::as_str)
    }

    /// The template this event is about, for the template events.
    pub fn template_id(&self) -> Option<i64> {
        let template = match self.kind {
            EventKind::TemplateCreate | EventKind::TemplateRemove => &self.data,
            EventKind::TemplateUpdate => self.data.get("template")?,
            _ => return None,
        };
        template.get("id").and_then(Value::as_i64)
    }

    /// For configure events: the attributes to send to the device.
    pub fn configure_attrs(&self) -> Option<&Map<String, Value>> {
        if self.kind != EventKind::Configure {
            return None;
        }
        self.data.get("attrs").and_then(Value::as_object)
    }

    /// dojot's envelope: `{"event","data","meta":{"service"[,"timestamp"]}}`.
    pub fn to_dojot_json(&self) -> Value {
        let mut meta = json!({"service": self.tenant});
        if self.kind == EventKind::Configure {
            meta["timestamp"] = json!(self.ts.timestamp_millis());
        }
        json!({"event": self.kind.as_str(), "data": self.data, "meta": meta})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configure_envelope() {
        let mut attrs = Map::new();
        attrs.insert("fan".into(), json!(100));
        let e = DeviceEvent::configure("admin", "0998", attrs, DateTime::UNIX_EPOCH);
        assert_eq!(e.device_id(), Some("0998"));
        assert_eq!(e.configure_attrs().unwrap()["fan"], json!(100));
        assert_eq!(
            e.to_dojot_json(),
            json!({"event":"configure","data":{"id":"0998","attrs":{"fan":100}},"meta":{"service":"admin","timestamp":0}})
        );
        assert_eq!(e.template_id(), None);
    }

    #[test]
    fn template_events_name_their_template_and_no_device() {
        let event = |kind, data| DeviceEvent { kind, tenant: "t".into(), data, ts: DateTime::UNIX_EPOCH };
        let created = event(EventKind::TemplateCreate, json!({"id": 4, "label": "x"}));
        assert_eq!((created.template_id(), created.device_id()), (Some(4), None));
        let updated = event(EventKind::TemplateUpdate, json!({"affected": ["a1"], "template": {"id": 5}}));
        assert_eq!((updated.template_id(), updated.device_id()), (Some(5), None));
        assert_eq!(event(EventKind::Update, json!({"id": "a1"})).template_id(), None);
    }
}
