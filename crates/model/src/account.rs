//! The auth API's request bodies (`/auth`, `/auth/user`, `/auth/password/update`,
//! `/auth/tokens`, `/tenant/settings`) and the rules they must follow.
//!
//! Pure functions, no I/O: the routes and the auth service call them, and so do the fuzz
//! targets and `tests/garbage.rs`, so what is fuzzed is exactly what the API runs. What
//! needs the database or the caller (permissions, uniqueness, the old password) stays in
//! the `auth` crate.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why a request body was refused; the API answers 400 with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BodyError(pub String);

fn bad(msg: impl Into<String>) -> BodyError {
    BodyError(msg.into())
}

/// Profiles (dojot "groups") and their numeric ids, which appear in the JWT `groups` claim.
pub const PROFILES: &[(&str, i64)] = &[("admin", 1), ("user", 2)];

/// The numeric group id of a profile.
pub fn group_id(profile: &str) -> Option<i64> {
    PROFILES.iter().find(|(p, _)| *p == profile).map(|(_, id)| *id)
}

/// Scopes an API token may carry: `metrics` (fakeiot's POST /metrics), `prometheus`
/// (scraping GET /metrics; honoured only for tokens of the bootstrap tenant, since the
/// exposition covers every tenant).
pub const SCOPES: &[&str] = &["metrics", "prometheus", "loadtests"];

/// Longest password accepted, in bytes (argon2 hashes whatever it gets; this bounds the work).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Longest user name, in bytes.
pub const MAX_USERNAME_BYTES: usize = 50;

/// Longest e-mail address, in bytes (RFC 5321's path limit).
pub const MAX_EMAIL_BYTES: usize = 254;

/// Longest API token name, in characters.
pub const MAX_TOKEN_NAME_CHARS: usize = 64;

/// Most days of history a tenant may keep.
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// A struct from a JSON body, with serde's explanation on failure.
fn from_json<T: DeserializeOwned>(body: Value, what: &str) -> Result<T, BodyError> {
    serde_json::from_value(body).map_err(|e| bad(format!("invalid {what}: {e}")))
}

/// A required string member of an object body.
fn str_member<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str)
}

/// `POST /auth` `{"username","passwd"}`; `username` may also be an e-mail address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRequest {
    pub username: String,
    pub passwd: String,
}

impl LoginRequest {
    pub fn parse(body: &Value) -> Result<Self, BodyError> {
        let username = str_member(body, "username").filter(|u| !u.is_empty()).ok_or_else(|| bad("missing username"))?;
        let passwd = str_member(body, "passwd").ok_or_else(|| bad("missing password"))?;
        Ok(Self { username: username.to_string(), passwd: passwd.to_string() })
    }
}

/// `POST /auth/password/update` `{"oldpasswd","newpasswd"}`. The new password is checked
/// with [`validate_password`] once the old one is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordChange {
    pub oldpasswd: String,
    pub newpasswd: String,
}

impl PasswordChange {
    pub fn parse(body: &Value) -> Result<Self, BodyError> {
        let old = str_member(body, "oldpasswd").ok_or_else(|| bad("missing oldpasswd"))?;
        let new = str_member(body, "newpasswd").ok_or_else(|| bad("missing newpasswd"))?;
        Ok(Self { oldpasswd: old.to_string(), newpasswd: new.to_string() })
    }
}

/// `POST /auth/user` body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub username: String,
    pub service: String,
    pub email: String,
    pub name: String,
    pub profile: String,
    #[serde(default)]
    pub passwd: Option<String>,
}

impl NewUser {
    pub fn from_json(body: Value) -> Result<Self, BodyError> {
        from_json(body, "request body")
    }

    /// Every rule a new user must follow that needs neither the caller nor the database.
    pub fn validate(&self, min_password_len: usize) -> Result<(), BodyError> {
        validate_username(&self.username)?;
        validate_email(&self.email)?;
        crate::ids::validate_id("service", &self.service).map_err(|e| bad(e.to_string()))?;
        validate_name(&self.name)?;
        validate_profile(&self.profile)?;
        if let Some(p) = &self.passwd {
            validate_password(p, min_password_len)?;
        }
        Ok(())
    }
}

/// `PUT /auth/user/{id}` body: fields to change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    pub email: Option<String>,
    pub name: Option<String>,
    pub profile: Option<String>,
    pub passwd: Option<String>,
    /// Accepted for dojot compatibility; must equal the current values if given.
    pub username: Option<String>,
    pub service: Option<String>,
}

impl UserUpdate {
    pub fn from_json(body: Value) -> Result<Self, BodyError> {
        from_json(body, "request body")
    }

    /// The rules of the fields that change (the unchangeable `username` and `service` are
    /// compared with the stored user by the auth service).
    pub fn validate(&self, min_password_len: usize) -> Result<(), BodyError> {
        if let Some(email) = &self.email {
            validate_email(email)?;
        }
        if let Some(name) = &self.name {
            validate_name(name)?;
        }
        if let Some(profile) = &self.profile {
            validate_profile(profile)?;
        }
        if let Some(p) = &self.passwd {
            validate_password(p, min_password_len)?;
        }
        Ok(())
    }
}

/// `POST /auth/tokens` `{"name","scopes"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub name: String,
    pub scopes: Vec<String>,
}

impl NewToken {
    pub fn from_json(body: Value) -> Result<Self, BodyError> {
        from_json(body, "request body")
    }

    /// The name as stored: trimmed, 1 to [`MAX_TOKEN_NAME_CHARS`] characters; scopes a
    /// non-empty subset of [`SCOPES`].
    pub fn validate(&self) -> Result<&str, BodyError> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > MAX_TOKEN_NAME_CHARS {
            return Err(bad(format!("name must have 1 to {MAX_TOKEN_NAME_CHARS} characters")));
        }
        if self.scopes.is_empty() || self.scopes.iter().any(|s| !SCOPES.contains(&s.as_str())) {
            return Err(bad(format!("scopes must be a non-empty subset of: {}", SCOPES.join(", "))));
        }
        Ok(name)
    }
}

/// A tenant's settings as the API shows (`GET /tenant/settings`) and takes them (`PUT`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSettings {
    /// Optional in a `PUT` (what `GET` showed can be sent back); must be the caller's.
    #[serde(default)]
    pub tenant: String,
    /// dojot's unsecured mode: devices may connect with `tenant:device` and no secret.
    pub unsecured_mqtt: bool,
    pub history_retention_days: u32,
}

impl TenantSettings {
    pub fn from_json(body: Value) -> Result<Self, BodyError> {
        from_json(body, "settings")
    }

    /// `tenant`: the caller's (the settings changed are always the caller's tenant's).
    pub fn validate(&self, tenant: &str) -> Result<(), BodyError> {
        if !self.tenant.is_empty() && self.tenant != tenant {
            return Err(bad("tenant cannot be changed"));
        }
        if self.history_retention_days == 0 || self.history_retention_days > MAX_RETENTION_DAYS {
            return Err(bad(format!("history_retention_days must be between 1 and {MAX_RETENTION_DAYS}")));
        }
        Ok(())
    }
}

/// dojot: `^[a-z]+[a-z0-9_]`; Ingot also caps the length.
pub fn validate_username(u: &str) -> Result<(), BodyError> {
    let mut chars = u.chars();
    let ok = u.len() <= MAX_USERNAME_BYTES
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "invalid username: lowercase letters, digits and '_', starting with a letter, at most {MAX_USERNAME_BYTES}"
        )))
    }
}

pub fn validate_email(e: &str) -> Result<(), BodyError> {
    let ok = e.len() <= MAX_EMAIL_BYTES
        && !e.chars().any(char::is_whitespace)
        && e.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.contains('@') && (domain.contains('.') || domain == "localhost")
        });
    if ok { Ok(()) } else { Err(bad("invalid email address")) }
}

/// A user's display name: anything but blank.
pub fn validate_name(n: &str) -> Result<(), BodyError> {
    if n.trim().is_empty() { Err(bad("missing name")) } else { Ok(()) }
}

pub fn validate_profile(p: &str) -> Result<(), BodyError> {
    if group_id(p).is_some() {
        Ok(())
    } else {
        let known: Vec<&str> = PROFILES.iter().map(|(p, _)| *p).collect();
        Err(bad(format!("profile must be one of: {}", known.join(", "))))
    }
}

/// A new password: at least `min_len` characters, at most [`MAX_PASSWORD_BYTES`] bytes.
pub fn validate_password(p: &str, min_len: usize) -> Result<(), BodyError> {
    if p.chars().count() < min_len {
        return Err(bad(format!("password must have at least {min_len} characters")));
    }
    if p.len() > MAX_PASSWORD_BYTES {
        return Err(bad("password is too long"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn login_and_password_bodies() {
        let l = LoginRequest::parse(&json!({"username": "admin", "passwd": "x"})).unwrap();
        assert_eq!((l.username.as_str(), l.passwd.as_str()), ("admin", "x"));
        assert_eq!(LoginRequest::parse(&json!({"username": "", "passwd": "x"})).unwrap_err().0, "missing username");
        assert_eq!(LoginRequest::parse(&json!({"username": "a"})).unwrap_err().0, "missing password");
        assert!(LoginRequest::parse(&json!([1])).is_err());
        assert!(PasswordChange::parse(&json!({"oldpasswd": "a", "newpasswd": "b"})).is_ok());
        assert_eq!(PasswordChange::parse(&json!({"newpasswd": "b"})).unwrap_err().0, "missing oldpasswd");
    }

    #[test]
    fn new_user_rules() {
        let ok = json!({"username": "bob_1", "service": "acme", "email": "b@x.io", "name": "Bob", "profile": "user"});
        NewUser::from_json(ok.clone()).unwrap().validate(8).unwrap();
        let with = |k: &str, v: Value| {
            let mut b = ok.clone();
            b[k] = v;
            NewUser::from_json(b).and_then(|u| u.validate(8))
        };
        assert!(with("username", json!("Bob")).is_err());
        assert!(with("username", json!("b".repeat(51))).is_err());
        assert!(with("email", json!("b@x")).is_err());
        assert!(with("email", json!("b @x.io")).is_err());
        assert!(with("service", json!("a/b")).is_err());
        assert!(with("name", json!("  ")).is_err());
        assert!(with("profile", json!("root")).is_err());
        assert!(with("passwd", json!("short")).is_err());
        assert!(with("passwd", json!("p".repeat(1025))).is_err());
        assert!(with("extra", json!(1)).is_err(), "unknown fields are refused");
    }

    /// Found by fuzz/auth_bodies (FUZZING.md): what `GET /tenant/settings` answers, `PUT`
    /// refused ("unknown field `tenant`"), so a client could not send back what it read.
    #[test]
    fn tenant_settings_shown_are_accepted_back() {
        let put = TenantSettings::from_json(json!({"unsecured_mqtt": false, "history_retention_days": 7})).unwrap();
        let shown = TenantSettings { tenant: "acme".into(), ..put.clone() };
        let back = TenantSettings::from_json(serde_json::to_value(&shown).unwrap()).unwrap();
        back.validate("acme").unwrap();
        assert_eq!(back, shown);
        // Another tenant's name is not a way to change tenants.
        assert_eq!(back.validate("other").unwrap_err().0, "tenant cannot be changed");
    }

    /// Found by fuzz/auth_bodies (FUZZING.md): `PUT /auth/user/{id}` took an empty name,
    /// which `POST /auth/user` refuses, leaving a user that could not have been created.
    #[test]
    fn update_cannot_blank_the_name() {
        let crash = br#"{"email":"b@x.io","name":"","passwd":"ger password","username":"55555555555555555555555555555555555555555555555555555555555555555555555555555555555555555b_1","service":"a555b_1","service":"acmacme"}"#;
        let update = UserUpdate::from_json(serde_json::from_slice(crash).unwrap()).unwrap();
        assert_eq!(update.validate(8).unwrap_err().0, "missing name");
        let blank = UserUpdate { name: Some(" \t".into()), ..UserUpdate::default() };
        assert!(blank.validate(8).is_err());
        let renamed = UserUpdate { name: Some("Robert".into()), ..UserUpdate::default() };
        assert!(renamed.validate(8).is_ok());
    }

    #[test]
    fn token_and_settings_rules() {
        let t = NewToken::from_json(json!({"name": " fakeiot ", "scopes": ["metrics"]})).unwrap();
        assert_eq!(t.validate().unwrap(), "fakeiot");
        assert!(NewToken::from_json(json!({"name": "x", "scopes": ["admin"]})).unwrap().validate().is_err());
        assert!(NewToken::from_json(json!({"name": " ", "scopes": ["metrics"]})).unwrap().validate().is_err());
        let s = TenantSettings::from_json(json!({"unsecured_mqtt": true, "history_retention_days": 7})).unwrap();
        s.validate("acme").unwrap();
        assert!(
            TenantSettings::from_json(json!({"unsecured_mqtt": true, "history_retention_days": 0}))
                .unwrap()
                .validate("acme")
                .is_err()
        );
    }
}
