//! [`DeviceData`]: a reading from one device, the unit that flows through the bus.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ids::DeviceRef;
use crate::time::{format_dojot, parse_device_timestamp};

/// One reading: attribute values a device reported at one instant.
///
/// dojot's `device-data` message. Every agent (MQTT, HTTP, TCP) produces it; history,
/// real-time streams and flows consume it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceData {
    pub tenant: String,
    pub device_id: String,
    /// When the reading was taken: the payload's `timestamp` if it had one, else arrival time.
    pub ts: DateTime<Utc>,
    pub attrs: Map<String, Value>,
    /// How many flow outputs led to this reading: 0 from a device, 1 from a flow that a
    /// device's reading ran, and so on. Flows stop at a limit, so that a flow writing to
    /// a device whose readings run it cannot loop forever.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hops: u8,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

/// Limits applied when turning a device payload into [`DeviceData`].
#[derive(Debug, Clone, Copy)]
pub struct PayloadLimits {
    /// Most attributes in one message.
    pub max_attrs: usize,
    /// Longest attribute label, in bytes.
    pub max_label_len: usize,
    /// Deepest JSON nesting inside a value.
    pub max_depth: usize,
}

impl Default for PayloadLimits {
    fn default() -> Self {
        Self { max_attrs: 256, max_label_len: 128, max_depth: 16 }
    }
}

/// Why a device payload was not accepted as a reading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("payload is not valid JSON: {0}")]
    NotJson(String),
    #[error("payload must be a JSON object of attribute values")]
    NotObject,
    #[error("payload has no attributes")]
    NoAttrs,
    #[error("payload has more than {0} attributes")]
    TooManyAttrs(usize),
    #[error("attribute label is empty or longer than {0} bytes")]
    BadLabel(usize),
    #[error("attribute value nests deeper than {0} levels")]
    TooDeep(usize),
    #[error("timestamp must be seconds or milliseconds since the epoch, or an ISO 8601 string")]
    BadTimestamp,
    #[error("body must be {{\"data\": {{attributes}}, \"ts\"?: timestamp}}")]
    NotAgentBody,
    #[error("unknown field '{0}': the body is {{\"data\": {{…}}, \"ts\"?: …}}")]
    UnknownAgentField(String),
    #[error("'data' must be a JSON object of attribute values")]
    AgentDataNotObject,
}

/// The attributes of an HTTP agent body, dojot's `{"data": {attributes}, "ts"?: timestamp}`:
/// `ts` becomes the `timestamp` member that [`DeviceData::from_attrs`] reads.
pub fn http_agent_attrs(body: Value) -> Result<Map<String, Value>, PayloadError> {
    let Value::Object(mut body) = body else { return Err(PayloadError::NotAgentBody) };
    if let Some(k) = body.keys().find(|k| !matches!(k.as_str(), "data" | "ts")) {
        return Err(PayloadError::UnknownAgentField(k.clone()));
    }
    let Some(Value::Object(mut attrs)) = body.remove("data") else {
        return Err(PayloadError::AgentDataNotObject);
    };
    if let Some(ts) = body.remove("ts") {
        attrs.insert("timestamp".into(), ts);
    }
    Ok(attrs)
}

impl DeviceData {
    /// A reading of `device_id` taken at `ts`, straight from a device (no flow made it).
    pub fn new(tenant: &str, device_id: &str, ts: DateTime<Utc>, attrs: Map<String, Value>) -> Self {
        Self { tenant: tenant.to_string(), device_id: device_id.to_string(), ts, attrs, hops: 0 }
    }

    /// Parses a device's payload (a flat JSON object of attribute values).
    ///
    /// A `timestamp` member (seconds, milliseconds or ISO 8601) becomes the reading's
    /// time and is removed from the attributes; without one the reading is stamped
    /// `received_at`.
    pub fn from_payload(
        device: &DeviceRef,
        payload: &[u8],
        received_at: DateTime<Utc>,
        limits: &PayloadLimits,
    ) -> Result<Self, PayloadError> {
        let value: Value = serde_json::from_slice(payload).map_err(|e| PayloadError::NotJson(e.to_string()))?;
        let Value::Object(attrs) = value else {
            return Err(PayloadError::NotObject);
        };
        Self::from_attrs(device, attrs, received_at, limits)
    }

    /// Like [`DeviceData::from_payload`] for an already parsed object.
    pub fn from_attrs(
        device: &DeviceRef,
        mut attrs: Map<String, Value>,
        received_at: DateTime<Utc>,
        limits: &PayloadLimits,
    ) -> Result<Self, PayloadError> {
        let ts = match attrs.remove("timestamp") {
            Some(v) => parse_device_timestamp(&v).ok_or(PayloadError::BadTimestamp)?,
            None => received_at,
        };
        if attrs.is_empty() {
            return Err(PayloadError::NoAttrs);
        }
        if attrs.len() > limits.max_attrs {
            return Err(PayloadError::TooManyAttrs(limits.max_attrs));
        }
        for (label, value) in &attrs {
            if label.is_empty() || label.len() > limits.max_label_len {
                return Err(PayloadError::BadLabel(limits.max_label_len));
            }
            if depth(value) > limits.max_depth {
                return Err(PayloadError::TooDeep(limits.max_depth));
            }
        }
        Ok(Self { tenant: device.tenant.clone(), device_id: device.device_id.clone(), ts, attrs, hops: 0 })
    }

    /// dojot's wire form: `{"metadata":{"deviceid","tenant","timestamp"},"attrs":{…}}`.
    pub fn to_dojot_json(&self) -> Value {
        serde_json::json!({
            "metadata": {
                "deviceid": self.device_id,
                "tenant": self.tenant,
                "timestamp": self.ts.timestamp_millis(),
            },
            "attrs": self.attrs,
        })
    }

    /// The reading's time in dojot's history format.
    pub fn ts_string(&self) -> String {
        format_dojot(&self.ts)
    }
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn dev() -> DeviceRef {
        DeviceRef::new("admin", "0998").unwrap()
    }

    fn now() -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_000).unwrap()
    }

    #[test]
    fn flat_object_becomes_reading() {
        let d =
            DeviceData::from_payload(&dev(), br#"{"temperature": 10.6}"#, now(), &PayloadLimits::default()).unwrap();
        assert_eq!(d.attrs["temperature"], serde_json::json!(10.6));
        assert_eq!(d.ts, now());
        assert_eq!(d.to_dojot_json()["metadata"]["deviceid"], "0998");
    }

    #[test]
    fn payload_timestamp_wins_and_is_removed() {
        let d = DeviceData::from_payload(
            &dev(),
            br#"{"t": 1, "timestamp": "2020-01-01T00:00:00Z"}"#,
            now(),
            &PayloadLimits::default(),
        )
        .unwrap();
        assert_eq!(d.ts_string(), "2020-01-01T00:00:00.000000Z");
        assert!(!d.attrs.contains_key("timestamp"));
    }

    #[test]
    fn http_agent_body() {
        let attrs = http_agent_attrs(serde_json::json!({"data": {"t": 1}, "ts": 5})).unwrap();
        assert_eq!(Value::Object(attrs), serde_json::json!({"t": 1, "timestamp": 5}));
        for (body, want) in [
            (serde_json::json!([1]), PayloadError::NotAgentBody),
            (serde_json::json!({"data": {}, "x": 1}), PayloadError::UnknownAgentField("x".into())),
            (serde_json::json!({"data": 1}), PayloadError::AgentDataNotObject),
            (serde_json::json!({"ts": 1}), PayloadError::AgentDataNotObject),
        ] {
            assert_eq!(http_agent_attrs(body).unwrap_err(), want);
        }
    }

    #[test]
    fn rejections() {
        let l = PayloadLimits { max_attrs: 2, max_label_len: 3, max_depth: 2 };
        let cases: &[(&[u8], PayloadError)] = &[
            (b"\xff\xfe", PayloadError::NotJson(String::new())),
            (b"[1,2]", PayloadError::NotObject),
            (b"10.6", PayloadError::NotObject),
            (b"{}", PayloadError::NoAttrs),
            (br#"{"timestamp": 5}"#, PayloadError::NoAttrs),
            (br#"{"a":1,"b":2,"c":3}"#, PayloadError::TooManyAttrs(2)),
            (br#"{"abcd":1}"#, PayloadError::BadLabel(3)),
            (br#"{"a":[[[1]]]}"#, PayloadError::TooDeep(2)),
            (br#"{"a":1,"timestamp":"soon"}"#, PayloadError::BadTimestamp),
        ];
        for (payload, want) in cases {
            let got = DeviceData::from_payload(&dev(), payload, now(), &l).unwrap_err();
            assert_eq!(
                std::mem::discriminant(&got),
                std::mem::discriminant(want),
                "{}",
                String::from_utf8_lossy(payload)
            );
        }
    }
}
