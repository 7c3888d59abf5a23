//! Seat metering (fakeiot): login events, plans, and how a login becomes a reading.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::DeviceData;
use crate::secret::hash_secret;

/// Longest account or user id accepted.
pub const MAX_ID_LEN: usize = 256;

/// A plan and its seat limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Stored key.
    pub key: &'static str,
    /// What people see.
    pub name: &'static str,
    pub limit: i64,
    pub monthly_usd: u32,
}

pub const STARTUP: Plan = Plan { key: "startup", name: "Startup Plan", limit: 100, monthly_usd: 100 };
pub const ENTERPRISE: Plan = Plan { key: "enterprise", name: "Enterprise Plan", limit: 1000, monthly_usd: 1000 };

impl Plan {
    pub fn by_key(key: &str) -> Plan {
        if key == ENTERPRISE.key { ENTERPRISE } else { STARTUP }
    }
}

/// `POST /metrics` body: a user logged in to an account.
#[derive(Debug, Clone, PartialEq)]
pub struct LoginEvent {
    pub account_id: String,
    pub user_id: String,
    pub timestamp: DateTime<Utc>,
}

impl LoginEvent {
    /// Parses fakeiot's body: exactly `account_id`, `user_id` (opaque non-empty strings)
    /// and `timestamp` (RFC 3339). The error says what is wrong.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let v: Value = serde_json::from_slice(body).map_err(|e| format!("body is not valid JSON: {e}"))?;
        let Value::Object(obj) = v else { return Err("body must be a JSON object".into()) };
        if let Some(k) = obj.keys().find(|k| !matches!(k.as_str(), "account_id" | "user_id" | "timestamp")) {
            return Err(format!("unknown field '{k}'"));
        }
        let id = |k: &str| -> Result<String, String> {
            match obj.get(k) {
                Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_ID_LEN => Ok(s.clone()),
                Some(Value::String(s)) if s.is_empty() => Err(format!("{k} must not be empty")),
                Some(Value::String(_)) => Err(format!("{k} is longer than {MAX_ID_LEN} bytes")),
                Some(_) => Err(format!("{k} must be a string")),
                None => Err(format!("{k} is required")),
            }
        };
        let (account_id, user_id) = (id("account_id")?, id("user_id")?);
        let timestamp = match obj.get("timestamp") {
            Some(Value::String(s)) => crate::time::parse_rfc3339(s).ok_or_else(|| {
                "timestamp must be RFC 3339 (years 0000 to 9999), e.g. 2024-01-31T12:00:00Z".to_string()
            })?,
            Some(_) => return Err("timestamp must be a string".into()),
            None => return Err("timestamp is required".into()),
        };
        Ok(Self { account_id, user_id, timestamp })
    }

    /// The reading this login becomes on the bus (documented in README.md):
    /// device `acct-<first 20 hex of SHA-256(account_id)>` of the token's tenant (account
    /// ids are opaque strings, device ids are not), time = the login's timestamp, one
    /// attribute `login` = `{"account_id","user_id","new_user"}` (one history row per login).
    pub fn to_device_data(&self, tenant: &str, new_user: bool) -> DeviceData {
        let mut attrs = Map::new();
        attrs.insert(
            "login".into(),
            json!({"account_id": self.account_id, "user_id": self.user_id, "new_user": new_user}),
        );
        DeviceData::new(tenant, &account_device_id(&self.account_id), self.timestamp, attrs)
    }
}

/// The device id under which an account's logins are recorded.
pub fn account_device_id(account_id: &str) -> String {
    format!("acct-{}", &hash_secret(account_id.as_bytes())[..20])
}

/// Whether `id` is an [`account_device_id`] (history for it exists without a device in
/// the catalog).
pub fn is_account_device_id(id: &str) -> bool {
    id.strip_prefix("acct-").is_some_and(|h| h.len() == 20 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_device_ids_are_recognised() {
        assert!(is_account_device_id(&account_device_id("testacct")));
        for id in ["acct-", "acct-xyz", "0998", "acct-0123456789abcdef0123x"] {
            assert!(!is_account_device_id(id), "{id}");
        }
    }

    #[test]
    fn parses_fakeiot_bodies() {
        let e = LoginEvent::parse(br#"{"account_id":"testacct-0000-0000-0000-000000000000","user_id":"u","timestamp":"2024-01-31T12:00:00.123456789Z"}"#)
            .unwrap();
        assert_eq!(e.account_id, "testacct-0000-0000-0000-000000000000");
        assert_eq!(e.timestamp.timestamp_subsec_nanos(), 123_456_789);
        for bad in [
            &br#"{"account_id":"","user_id":"","timestamp":"0001-01-01T00:00:00Z"}"#[..],
            b"bad=format",
            b"[]",
            br#"{"account_id":"a","user_id":"u"}"#,
            br#"{"account_id":"a","user_id":"u","timestamp":"2024-01-31 12:00"}"#,
            // A year RFC 3339 cannot write once in UTC (-0001-12-31T23:59:00Z).
            br#"{"account_id":"a","user_id":"u","timestamp":"0000-01-01T00:00:00+00:01"}"#,
            br#"{"account_id":1,"user_id":"u","timestamp":"2024-01-31T12:00:00Z"}"#,
            br#"{"account_id":"a","user_id":"u","timestamp":"2024-01-31T12:00:00Z","x":1}"#,
            br#"{"account_id":"a","user_id":"u","timestamp":"2024-01-31T12:00:00Z"#,
        ] {
            assert!(LoginEvent::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn device_mapping_is_stable_and_valid() {
        let e = LoginEvent::parse(
            br#"{"account_id":"weird/id with spaces","user_id":"u","timestamp":"2024-01-31T12:00:00Z"}"#,
        )
        .unwrap();
        let d = e.to_device_data("admin", true);
        assert!(crate::ids::validate_id("device", &d.device_id).is_ok());
        assert_eq!(d.device_id, account_device_id("weird/id with spaces"));
        assert_eq!(d.attrs["login"]["new_user"], json!(true));
        assert_eq!(d.attrs.len(), 1, "one history row per login");
    }
}
