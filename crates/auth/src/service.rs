//! [`AuthService`]: logins, users and tenant settings, with the permission rules.
//!
//! Permission rules (dojot used a PAP/PDP; Ingot keeps the profiles it shipped):
//! - only the `admin` profile manages users, and only within its own tenant;
//! - admins of the bootstrap tenant (`admin`) may also create users in a new or other
//!   tenant — that is how tenants are created;
//! - a user of another tenant is "not found", never "forbidden", so ids do not leak.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use model::account::{NewUser, TenantSettings, UserUpdate, validate_password};
use serde::Serialize;
use store::users::UserRecord;
use store::{Store, StoreError};

use crate::jwt::{Claims, JwtKeys};
use crate::limiter::LoginLimiter;
use crate::password::{decoy_hash, hash_password, verify_password};
use crate::{AuthError, group_id};

/// Settings of the auth room.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// JWT lifetime; dojot's default was 420 s.
    pub token_ttl: Duration,
    /// Failed logins per user name or address before a lock-out.
    pub max_failed_logins: u32,
    pub failed_login_window: Duration,
    /// History retention of newly created tenants.
    pub default_retention_days: u32,
    /// Shortest password accepted for new passwords.
    pub min_password_len: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            token_ttl: Duration::from_secs(420),
            max_failed_logins: 10,
            failed_login_window: Duration::from_secs(300),
            default_retention_days: 7,
            min_password_len: 8,
        }
    }
}

/// The tenant created on first start; its admins may create other tenants.
pub const BOOTSTRAP_TENANT: &str = "admin";

/// A user as the API shows it (no password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserView {
    pub id: i64,
    pub username: String,
    pub service: String,
    pub email: String,
    pub name: String,
    pub profile: String,
    pub created_date: String,
    pub created_by: String,
}

impl From<UserRecord> for UserView {
    fn from(u: UserRecord) -> Self {
        Self {
            id: u.id,
            username: u.username,
            service: u.service,
            email: u.email,
            name: u.name,
            profile: u.profile,
            created_date: u.created_date,
            created_by: u.created_by,
        }
    }
}

/// Logins, users and tenant settings.
pub struct AuthService {
    store: Store,
    keys: JwtKeys,
    limiter: LoginLimiter,
    config: AuthConfig,
    /// Valid API tokens by hash (see `tokens`): requests skip the database. One process
    /// owns the tokens table, so revocation clears it directly.
    token_cache: std::sync::RwLock<std::collections::HashMap<String, crate::TokenPrincipal>>,
}

impl AuthService {
    /// `key_path`: where the JWT secret lives (created on first start).
    pub fn new(store: Store, key_path: &Path, config: AuthConfig) -> Result<Self, AuthError> {
        let keys = JwtKeys::load_or_create(key_path)?;
        let limiter = LoginLimiter::new(config.max_failed_logins, config.failed_login_window);
        Ok(Self { store, keys, limiter, config, token_cache: Default::default() })
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn token_cache(&self) -> &std::sync::RwLock<std::collections::HashMap<String, crate::TokenPrincipal>> {
        &self.token_cache
    }

    /// On an empty database: creates tenant `admin` and user `admin` with `password`, or a
    /// random one, which is returned so the caller can show it once.
    pub async fn bootstrap(&self, password: Option<String>) -> Result<Option<String>, AuthError> {
        if self.store.count_users().await? > 0 {
            return Ok(None);
        }
        let generated = password.is_none();
        let password = password.unwrap_or_else(|| random_token(12));
        self.store.ensure_tenant(BOOTSTRAP_TENANT, self.config.default_retention_days).await?;
        let to_hash = password.clone();
        let hash = blocking(move || hash_password(&to_hash)).await?;
        self.store
            .insert_user(UserRecord {
                id: 0,
                username: "admin".into(),
                service: BOOTSTRAP_TENANT.into(),
                email: "admin@localhost".into(),
                name: "Administrator".into(),
                profile: "admin".into(),
                password_hash: hash,
                created_date: now_string(),
                created_by: "ingot".into(),
            })
            .await?;
        Ok(generated.then_some(password))
    }

    /// `POST /auth`: checks credentials and returns a signed JWT. `login` is a user name
    /// or an e-mail address. Unknown users and wrong passwords get the same answer in the
    /// same time (dojot answered 401 vs 403, which told attackers which names exist).
    pub async fn login(&self, login: &str, password: &str, client: IpAddr) -> Result<String, AuthError> {
        if let Err(retry_after_secs) = self.limiter.check(login, client) {
            return Err(AuthError::TooManyAttempts { retry_after_secs });
        }
        let user = self.store.user_by_login(login).await?;
        let stored = user.as_ref().map(|u| u.password_hash.clone()).unwrap_or_else(|| decoy_hash().to_string());
        let password = password.to_string();
        let ok = blocking(move || verify_password(&password, &stored)).await?;
        match user {
            Some(user) if ok => {
                self.limiter.record_success(login);
                Ok(self.issue_token(&user))
            }
            _ => {
                self.limiter.record_failure(login, client);
                tracing::info!(login = %login, %client, "failed login");
                Err(AuthError::InvalidCredentials)
            }
        }
    }

    fn issue_token(&self, user: &UserRecord) -> String {
        let iat = chrono::Utc::now().timestamp();
        self.keys.sign(&Claims {
            iss: JwtKeys::issuer().into(),
            iat,
            exp: iat + self.config.token_ttl.as_secs() as i64,
            profile: user.profile.clone(),
            groups: group_id(&user.profile).into_iter().collect(),
            userid: user.id,
            jti: random_token(16),
            service: user.service.clone(),
            username: user.username.clone(),
        })
    }

    /// Verifies a bearer token (signature, issuer, expiry).
    pub fn verify_token(&self, token: &str) -> Result<Claims, AuthError> {
        self.keys.verify(token)
    }

    /// `POST /auth/user`. Returns the user and, if no `passwd` was given, the generated
    /// temporary password (shown once).
    pub async fn create_user(&self, caller: &Claims, new: NewUser) -> Result<(UserView, Option<String>), AuthError> {
        require_admin(caller)?;
        new.validate(self.config.min_password_len)?;
        if new.service != caller.service && caller.service != BOOTSTRAP_TENANT {
            return Err(AuthError::Forbidden("users can only be created in your own tenant".into()));
        }
        let generated = new.passwd.is_none();
        let password = new.passwd.unwrap_or_else(|| random_token(12));
        self.store.ensure_tenant(&new.service, self.config.default_retention_days).await?;
        let to_hash = password.clone();
        let hash = blocking(move || hash_password(&to_hash)).await?;
        let user = self
            .store
            .insert_user(UserRecord {
                id: 0,
                username: new.username,
                service: new.service,
                email: new.email,
                name: new.name,
                profile: new.profile,
                password_hash: hash,
                created_date: now_string(),
                created_by: caller.username.clone(),
            })
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => AuthError::Conflict("username or e-mail already in use".into()),
                e => e.into(),
            })?;
        Ok((user.into(), generated.then_some(password)))
    }

    /// `GET /auth/user[?username=]`: the caller's tenant only.
    pub async fn list_users(&self, caller: &Claims, username: Option<&str>) -> Result<Vec<UserView>, AuthError> {
        require_admin(caller)?;
        Ok(self.store.users_of(&caller.service, username).await?.into_iter().map(UserView::from).collect())
    }

    /// `GET /auth/user/{id or name}` within the caller's tenant.
    pub async fn get_user(&self, caller: &Claims, id_or_name: &str) -> Result<UserView, AuthError> {
        require_admin(caller)?;
        Ok(self.find_user(caller, id_or_name).await?.into())
    }

    async fn find_user(&self, caller: &Claims, id_or_name: &str) -> Result<UserRecord, AuthError> {
        let user = match id_or_name.parse::<i64>() {
            Ok(id) => self.store.user_by_id(id).await?,
            Err(_) if id_or_name.contains('@') => None,
            Err(_) => self.store.user_by_login(id_or_name).await?,
        };
        user.filter(|u| u.service == caller.service).ok_or_else(|| AuthError::NotFound("No such user".into()))
    }

    /// `PUT /auth/user/{id}`.
    pub async fn update_user(&self, caller: &Claims, id_or_name: &str, update: UserUpdate) -> Result<(), AuthError> {
        require_admin(caller)?;
        let mut user = self.find_user(caller, id_or_name).await?;
        if update.username.as_ref().is_some_and(|u| *u != user.username) {
            return Err(AuthError::BadRequest("username cannot be changed".into()));
        }
        if update.service.as_ref().is_some_and(|s| *s != user.service) {
            return Err(AuthError::BadRequest("service cannot be changed".into()));
        }
        update.validate(self.config.min_password_len)?;
        if let Some(email) = update.email {
            user.email = email;
        }
        if let Some(name) = update.name {
            user.name = name;
        }
        if let Some(profile) = update.profile {
            user.profile = profile;
        }
        if let Some(p) = update.passwd {
            user.password_hash = blocking(move || hash_password(&p)).await?;
        }
        self.store.update_user(user).await.map_err(|e| match e {
            StoreError::Conflict(_) => AuthError::Conflict("e-mail already in use".into()),
            e => e.into(),
        })
    }

    /// `DELETE /auth/user/{id}`. An admin cannot delete itself (the tenant would be orphaned).
    pub async fn delete_user(&self, caller: &Claims, id_or_name: &str) -> Result<(), AuthError> {
        require_admin(caller)?;
        let user = self.find_user(caller, id_or_name).await?;
        if user.id == caller.userid {
            return Err(AuthError::BadRequest("you cannot remove yourself".into()));
        }
        self.store.delete_user(user.id).await?;
        Ok(())
    }

    /// `POST /auth/password/update`: any user, for itself.
    pub async fn change_password(&self, caller: &Claims, old: &str, new: &str) -> Result<(), AuthError> {
        let mut user = self.store.user_by_id(caller.userid).await?.ok_or(AuthError::InvalidCredentials)?;
        let (old, stored) = (old.to_string(), user.password_hash.clone());
        if !blocking(move || verify_password(&old, &stored)).await? {
            return Err(AuthError::Forbidden("old password does not match".into()));
        }
        validate_password(new, self.config.min_password_len)?;
        let new = new.to_string();
        user.password_hash = blocking(move || hash_password(&new)).await?;
        Ok(self.store.update_user(user).await?)
    }

    /// The caller's tenant settings.
    pub async fn tenant_settings(&self, tenant: &str) -> Result<TenantSettings, AuthError> {
        let t = self.store.tenant(tenant).await?.ok_or_else(|| AuthError::NotFound("No such tenant".into()))?;
        Ok(TenantSettings {
            tenant: t.name,
            unsecured_mqtt: t.unsecured_mqtt,
            history_retention_days: t.retention_days,
        })
    }

    /// Changes the caller's tenant settings (admin profile).
    pub async fn update_tenant_settings(
        &self,
        caller: &Claims,
        s: TenantSettings,
    ) -> Result<TenantSettings, AuthError> {
        require_admin(caller)?;
        s.validate(&caller.service)?;
        let mut t =
            self.store.tenant(&caller.service).await?.ok_or_else(|| AuthError::NotFound("No such tenant".into()))?;
        t.unsecured_mqtt = s.unsecured_mqtt;
        t.retention_days = s.history_retention_days;
        self.store.update_tenant(t).await?;
        self.tenant_settings(&caller.service).await
    }
}

pub(crate) fn require_admin(caller: &Claims) -> Result<(), AuthError> {
    if caller.is_admin() { Ok(()) } else { Err(AuthError::Forbidden("admin profile required".into())) }
}

/// `n` random bytes, hex-encoded.
pub(crate) fn random_token(n: usize) -> String {
    let mut b = vec![0u8; n];
    OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn now_string() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, AuthError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| AuthError::Store(StoreError::Task(e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::StoreOptions;

    async fn service() -> (AuthService, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions { readers: 1, sync_full: false }).unwrap();
        let cfg = AuthConfig { max_failed_logins: 3, ..AuthConfig::default() };
        (AuthService::new(store, &dir.path().join("jwt.secret"), cfg).unwrap(), dir)
    }

    fn new_token(name: &str, scope: &str) -> model::account::NewToken {
        model::account::NewToken { name: name.into(), scopes: vec![scope.into()] }
    }

    fn ip() -> IpAddr {
        "127.0.0.1".parse().unwrap()
    }

    #[tokio::test]
    async fn bootstrap_login_and_claims() {
        let (auth, _dir) = service().await;
        let pw = auth.bootstrap(None).await.unwrap().expect("generated password");
        assert!(auth.bootstrap(None).await.unwrap().is_none(), "only once");
        let jwt = auth.login("admin", &pw, ip()).await.unwrap();
        let c = auth.verify_token(&jwt).unwrap();
        assert_eq!((c.service.as_str(), c.username.as_str(), c.groups.as_slice()), ("admin", "admin", &[1][..]));
        assert_eq!(c.exp - c.iat, 420);
        assert!(matches!(auth.login("admin", "nope", ip()).await, Err(AuthError::InvalidCredentials)));
        assert!(matches!(auth.login("ghost", "nope", ip()).await, Err(AuthError::InvalidCredentials)));
        // Also by e-mail.
        assert!(auth.login("admin@localhost", &pw, ip()).await.is_ok());
    }

    #[tokio::test]
    async fn lockout_after_failures() {
        let (auth, _dir) = service().await;
        auth.bootstrap(Some("right password".into())).await.unwrap();
        for _ in 0..3 {
            let _ = auth.login("admin", "wrong", ip()).await;
        }
        assert!(matches!(auth.login("admin", "right password", ip()).await, Err(AuthError::TooManyAttempts { .. })));
    }

    #[tokio::test]
    async fn api_tokens_are_shown_once_scoped_and_revocable() {
        let (auth, _dir) = service().await;
        auth.bootstrap(Some("admin password".into())).await.unwrap();
        let root = auth.verify_token(&auth.login("admin", "admin password", ip()).await.unwrap()).unwrap();
        let (view, token) = auth.create_token(&root, &new_token("fakeiot", "metrics")).await.unwrap();
        assert!(token.len() > 64 && token.starts_with("ingot_"));
        let p = auth.verify_api_token(&token, "metrics").await.unwrap().unwrap();
        assert_eq!((p.tenant.as_str(), p.token_id.as_str()), ("admin", view.id.as_str()));
        assert!(auth.verify_api_token(&token, "other").await.unwrap().is_none(), "scope");
        assert!(auth.verify_api_token(&format!("{token}x"), "metrics").await.unwrap().is_none());
        assert!(auth.verify_api_token("", "metrics").await.unwrap().is_none());
        let listed = auth.list_tokens(&root).await.unwrap();
        assert_eq!(listed, vec![view.clone()]);
        assert!(matches!(auth.create_token(&root, &new_token("x", "admin")).await, Err(AuthError::BadRequest(_))));
        auth.revoke_token(&root, &view.id).await.unwrap();
        assert!(auth.verify_api_token(&token, "metrics").await.unwrap().is_none(), "revoked at once");
        assert!(matches!(auth.revoke_token(&root, &view.id).await, Err(AuthError::NotFound(_))));
    }

    #[tokio::test]
    async fn users_are_tenant_scoped() {
        let (auth, _dir) = service().await;
        auth.bootstrap(Some("admin password".into())).await.unwrap();
        let root = auth.verify_token(&auth.login("admin", "admin password", ip()).await.unwrap()).unwrap();
        let new = |username: &str, service: &str, profile: &str| NewUser {
            username: username.into(),
            service: service.into(),
            email: format!("{username}@example.com"),
            name: username.into(),
            profile: profile.into(),
            passwd: Some("password1".into()),
        };
        auth.create_user(&root, new("alice", "acme", "admin")).await.unwrap();
        let alice = auth.verify_token(&auth.login("alice", "password1", ip()).await.unwrap()).unwrap();
        assert_eq!(alice.service, "acme");
        // alice cannot create users elsewhere, nor see admin's users.
        assert!(matches!(auth.create_user(&alice, new("eve", "admin", "admin")).await, Err(AuthError::Forbidden(_))));
        let (bob, temp) = auth.create_user(&alice, new("bob", "acme", "user")).await.unwrap();
        assert!(temp.is_none());
        let names: Vec<_> = auth.list_users(&alice, None).await.unwrap().into_iter().map(|u| u.username).collect();
        assert_eq!(names, ["alice", "bob"]);
        assert!(matches!(auth.get_user(&alice, &root.userid.to_string()).await, Err(AuthError::NotFound(_))));
        assert!(matches!(auth.get_user(&root, &bob.id.to_string()).await, Err(AuthError::NotFound(_))));
        // Non-admins cannot manage users.
        let bob_c = auth.verify_token(&auth.login("bob", "password1", ip()).await.unwrap()).unwrap();
        assert!(matches!(auth.list_users(&bob_c, None).await, Err(AuthError::Forbidden(_))));
        // Duplicates and bad input.
        assert!(matches!(auth.create_user(&alice, new("bob", "acme", "user")).await, Err(AuthError::Conflict(_))));
        assert!(matches!(auth.create_user(&alice, new("Bob", "acme", "user")).await, Err(AuthError::BadRequest(_))));
        assert!(matches!(auth.create_user(&alice, new("carl", "acme", "root")).await, Err(AuthError::BadRequest(_))));
    }
}
