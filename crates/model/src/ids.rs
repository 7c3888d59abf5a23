//! Names of tenants and devices, and how a device is identified on the wire.

use std::fmt;

/// Why a tenant or device name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("{what} is longer than {max} characters")]
    TooLong { what: &'static str, max: usize },
    #[error("{what} may only contain letters, digits, '_' and '-'")]
    BadCharacter { what: &'static str },
}

/// Longest tenant or device name accepted anywhere.
pub const MAX_ID_LEN: usize = 64;

/// Checks a tenant or device name: `[A-Za-z0-9_-]{1,64}`.
///
/// Both appear inside MQTT topics, metric labels and SQL values, so the alphabet is
/// kept to characters that need no escaping in any of them.
pub fn validate_id(what: &'static str, s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { what });
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { what, max: MAX_ID_LEN });
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(IdError::BadCharacter { what });
    }
    Ok(())
}

/// A device within its tenant: the identity a device agent authenticates.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceRef {
    pub tenant: String,
    pub device_id: String,
}

impl DeviceRef {
    pub fn new(tenant: impl Into<String>, device_id: impl Into<String>) -> Result<Self, IdError> {
        let (tenant, device_id) = (tenant.into(), device_id.into());
        validate_id("tenant", &tenant)?;
        validate_id("device id", &device_id)?;
        Ok(Self { tenant, device_id })
    }

    /// Parses dojot's `tenant:device` form (MQTT username, TLS certificate CN).
    pub fn parse_colon(s: &str) -> Result<Self, IdError> {
        let (tenant, device) = s.split_once(':').ok_or(IdError::BadCharacter { what: "tenant:device" })?;
        Self::new(tenant, device)
    }
}

impl fmt::Display for DeviceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.tenant, self.device_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colon_form_round_trips() {
        let d = DeviceRef::parse_colon("admin:0998").unwrap();
        assert_eq!(d.tenant, "admin");
        assert_eq!(d.device_id, "0998");
        assert_eq!(d.to_string(), "admin:0998");
    }

    #[test]
    fn rejects_bad_names() {
        assert!(DeviceRef::parse_colon("admin").is_err());
        assert!(DeviceRef::parse_colon(":x").is_err());
        assert!(DeviceRef::parse_colon("a:b/c").is_err());
        assert!(DeviceRef::parse_colon("a:b:c").is_err());
        assert!(DeviceRef::new("a".repeat(65), "x").is_err());
    }
}
