//! [`AuthService`]: logins, users and tenant settings, with the permission rules.
//!
//! Permission rules (dojot used a PAP/PDP; Ingot keeps the profiles it shipped):
//! - only the `admin` profile manages users, and only within its own tenant;
//! - admins of the bootstrap tenant (`admin`) may also create users in a new or other
//!   tenant — that is how tenants are created;
//! - a user of another tenant is "not found", never "forbidden", so ids do not leak;
//!   every user query is scoped by tenant in the store itself, except the lookup at
//!   login, where the tenant is not known yet (names and e-mails are unique).
//!
//! Changes to users are announced ([`AuthService::on_user_change`]) and invalidate the
//! cache behind [`AuthService::current_user`], so long-lived identities (console
//! sessions) follow a deletion or a demotion at once.

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use model::account::{NewUser, TenantSettings, UserUpdate, validate_password};
use model::secret::{hash_secret, random_hex};
use serde::Serialize;
use store::StoreError;
use store::prelude::*;
use store::users::UserRecord;

use crate::cache::Cache;
use crate::jwt::{Claims, JwtKeys};
use crate::limiter::LoginLimiter;
use crate::password::{decoy_hash, hash_password, verify_password};
use crate::tokens::TOKEN_CACHE_MAX;
use crate::{AuthError, TokenPrincipal, group_id};

/// Settings of the auth room.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// JWT lifetime; dojot's default was 420 s.
    pub token_ttl: Duration,
    /// Failed logins per user name or address before a lock-out.
    pub max_failed_logins: u32,
    pub failed_login_window: Duration,
    /// Most user names and addresses the failed-login limiter tracks at once.
    pub max_tracked_logins: usize,
    /// How long [`AuthService::current_user`] may answer from memory. Changes made through
    /// the service invalidate at once; this bounds only what bypasses it.
    pub user_recheck_ttl: Duration,
    /// How long a valid API token may be answered from memory. `None` (one node): until
    /// revoked, since every revocation goes through this process. With several nodes, a
    /// revocation reaches the others as an event within milliseconds; this bounds what a
    /// node that missed the event (bus down) keeps accepting.
    pub token_recheck_ttl: Option<Duration>,
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
            max_tracked_logins: 50_000,
            user_recheck_ttl: Duration::from_secs(5),
            token_recheck_ttl: None,
            default_retention_days: 7,
            min_password_len: 8,
        }
    }
}

/// The tenant created on first start; its admins may create other tenants.
pub const BOOTSTRAP_TENANT: &str = "admin";

/// Longest user name a user can have (dojot had no cap; Ingot's creation rule).
pub const MAX_USERNAME_LEN: usize = model::account::MAX_USERNAME_BYTES;
/// Longest e-mail address a user can have (RFC 5321's path limit). A login is a user name
/// or, when it holds '@', an e-mail address; anything longer is refused before any lookup.
pub const MAX_EMAIL_LEN: usize = model::account::MAX_EMAIL_BYTES;

/// Most users remembered by [`AuthService::current_user`].
const USER_CACHE_MAX: usize = 10_000;

/// A change to a user made through [`AuthService`], as its listeners see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserChange {
    /// E-mail, name, profile or password changed.
    Updated {
        tenant: String,
        user_id: i64,
    },
    Removed {
        tenant: String,
        user_id: i64,
    },
}

impl UserChange {
    /// The tenant and id of the user changed.
    pub fn user(&self) -> (&str, i64) {
        match self {
            Self::Updated { tenant, user_id } | Self::Removed { tenant, user_id } => (tenant, *user_id),
        }
    }
}

type UserListener = Box<dyn Fn(&UserChange) + Send + Sync>;

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
    store: SharedStore,
    keys: JwtKeys,
    limiter: LoginLimiter,
    config: AuthConfig,
    /// Valid API tokens by hash (see `tokens`): requests skip the database. One process
    /// owns the tokens table, so revocation clears it directly.
    token_cache: Cache<String, TokenPrincipal>,
    /// Current users by (tenant, id), for [`Self::current_user`].
    user_cache: Cache<(String, i64), UserView>,
    user_listeners: RwLock<Vec<UserListener>>,
    /// Set on a node of a cluster ([`Self::follow`]): where changes are told to the others.
    pub(crate) bus: OnceLock<Arc<dyn bus::Bus>>,
}

impl AuthService {
    /// The service on `store`, whose JWT secret it loads (see [`JwtKeys::load`]; `legacy_key`:
    /// the data directory's `jwt.secret` of an older installation, imported if present).
    pub async fn open(store: SharedStore, legacy_key: Option<&Path>, config: AuthConfig) -> Result<Self, AuthError> {
        let keys = JwtKeys::load(&store, legacy_key).await?;
        let limiter =
            LoginLimiter::new(config.max_failed_logins, config.failed_login_window, config.max_tracked_logins);
        Ok(Self {
            store,
            keys,
            limiter,
            token_cache: Cache::new(TOKEN_CACHE_MAX, config.token_recheck_ttl),
            user_cache: Cache::new(USER_CACHE_MAX, Some(config.user_recheck_ttl)),
            user_listeners: RwLock::default(),
            bus: OnceLock::new(),
            config,
        })
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    pub(crate) fn store(&self) -> &SharedStore {
        &self.store
    }

    pub(crate) fn token_cache(&self) -> &Cache<String, TokenPrincipal> {
        &self.token_cache
    }

    /// Calls `listener` after every change to a user made through this service (after
    /// the change committed), e.g. to end a removed user's console sessions.
    pub fn on_user_change(&self, listener: impl Fn(&UserChange) + Send + Sync + 'static) {
        self.user_listeners.write().expect("user listeners lock").push(Box::new(listener));
    }

    /// The user `user_id` of `tenant` as it is now, `None` if it no longer exists: for
    /// identities that outlive a request (console sessions). Answered from memory for up
    /// to `user_recheck_ttl`; a change through this service invalidates at once, and
    /// wins against a concurrent load (see `cache`).
    pub async fn current_user(&self, tenant: &str, user_id: i64) -> Result<Option<UserView>, AuthError> {
        self.user_cache
            .get_or_load((tenant.to_string(), user_id), || async {
                Ok::<_, AuthError>(self.store.user_by_id(tenant, user_id).await?.map(UserView::from))
            })
            .await
    }

    /// After a user change committed: forget the cached user, tell the listeners, then
    /// the other nodes.
    async fn user_changed(&self, change: UserChange) {
        self.forget_user(&change);
        self.tell_user_changed(&change).await;
    }

    /// Forgets the cached user and tells the listeners.
    pub(crate) fn forget_user(&self, change: &UserChange) {
        let (tenant, id) = change.user();
        self.user_cache.invalidate(|(t, i), _| t == tenant && *i == id);
        for listener in self.user_listeners.read().expect("user listeners lock").iter() {
            listener(change);
        }
    }

    /// On an empty database: creates tenant `admin` and user `admin` with `password`, or a
    /// random one, which is returned so the caller can show it once.
    pub async fn bootstrap(&self, password: Option<String>) -> Result<Option<String>, AuthError> {
        if self.store.count_users().await? > 0 {
            return Ok(None);
        }
        let generated = password.is_none();
        let password = password.unwrap_or_else(|| random_hex(12));
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
    /// A login longer than any user could have is refused first (400), before it is
    /// looked up, counted or logged.
    pub async fn login(&self, login: &str, password: &str, client: IpAddr) -> Result<String, AuthError> {
        check_login_length(login)?;
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
                // A name nobody has is often a password typed into the wrong field: it is
                // logged only as a short hash, enough to correlate attempts.
                match &user {
                    Some(u) => tracing::info!(user = %u.username, %client, "failed login"),
                    None => tracing::info!(login_sha256 = %log_hash(login), %client, "failed login: unknown user"),
                }
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
            jti: random_hex(16),
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
        let password = new.passwd.unwrap_or_else(|| random_hex(12));
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

    /// A user of the caller's tenant, by id or user name (the store scopes both).
    async fn find_user(&self, caller: &Claims, id_or_name: &str) -> Result<UserRecord, AuthError> {
        let user = match id_or_name.parse::<i64>() {
            Ok(id) => self.store.user_by_id(&caller.service, id).await?,
            Err(_) if id_or_name.contains('@') => None,
            Err(_) => self.store.users_of(&caller.service, Some(id_or_name)).await?.pop(),
        };
        user.ok_or_else(|| AuthError::NotFound("No such user".into()))
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
        let id = user.id;
        let found = self.store.update_user(&caller.service, user).await.map_err(|e| match e {
            StoreError::Conflict(_) => AuthError::Conflict("e-mail already in use".into()),
            e => e.into(),
        })?;
        if !found {
            return Err(AuthError::NotFound("No such user".into()));
        }
        self.user_changed(UserChange::Updated { tenant: caller.service.clone(), user_id: id }).await;
        Ok(())
    }

    /// `DELETE /auth/user/{id}`. An admin cannot delete itself (the tenant would be orphaned).
    pub async fn delete_user(&self, caller: &Claims, id_or_name: &str) -> Result<(), AuthError> {
        require_admin(caller)?;
        let user = self.find_user(caller, id_or_name).await?;
        if user.id == caller.userid {
            return Err(AuthError::BadRequest("you cannot remove yourself".into()));
        }
        if !self.store.delete_user(&caller.service, user.id).await? {
            return Err(AuthError::NotFound("No such user".into()));
        }
        self.user_changed(UserChange::Removed { tenant: caller.service.clone(), user_id: user.id }).await;
        Ok(())
    }

    /// `POST /auth/password/update`: any user, for itself.
    pub async fn change_password(&self, caller: &Claims, old: &str, new: &str) -> Result<(), AuthError> {
        let mut user =
            self.store.user_by_id(&caller.service, caller.userid).await?.ok_or(AuthError::InvalidCredentials)?;
        let (old, stored) = (old.to_string(), user.password_hash.clone());
        if !blocking(move || verify_password(&old, &stored)).await? {
            return Err(AuthError::Forbidden("old password does not match".into()));
        }
        validate_password(new, self.config.min_password_len)?;
        let new = new.to_string();
        user.password_hash = blocking(move || hash_password(&new)).await?;
        if !self.store.update_user(&caller.service, user).await? {
            return Err(AuthError::InvalidCredentials);
        }
        self.user_changed(UserChange::Updated { tenant: caller.service.clone(), user_id: caller.userid }).await;
        Ok(())
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

/// A login (user name, or e-mail address when it holds '@') no user could have is refused.
fn check_login_length(login: &str) -> Result<(), AuthError> {
    let max = if login.contains('@') { MAX_EMAIL_LEN } else { MAX_USERNAME_LEN };
    if login.len() > max {
        return Err(AuthError::BadRequest(format!(
            "login too long: a user name has at most {MAX_USERNAME_LEN} characters, an e-mail address at most \
             {MAX_EMAIL_LEN}"
        )));
    }
    Ok(())
}

/// How a login no user has appears in the logs: the first 12 hex digits of its SHA-256.
fn log_hash(login: &str) -> String {
    hash_secret(login.as_bytes())[..12].to_string()
}

fn now_string() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, AuthError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| AuthError::Store(StoreError::Task(e.to_string())))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The service on a store of each engine (see `store::testing`), with what keeps its data.
    pub(crate) async fn services() -> Vec<(AuthService, store::testing::Engine)> {
        let mut all = Vec::new();
        for engine in store::testing::engines().await {
            let cfg = AuthConfig { max_failed_logins: 3, ..AuthConfig::default() };
            all.push((AuthService::open(engine.store.clone(), None, cfg).await.unwrap(), engine));
        }
        all
    }

    fn new_token(name: &str, scope: &str) -> model::account::NewToken {
        model::account::NewToken { name: name.into(), scopes: vec![scope.into()] }
    }

    pub(crate) fn ip() -> IpAddr {
        "127.0.0.1".parse().unwrap()
    }

    #[tokio::test]
    async fn bootstrap_login_and_claims() {
        for (auth, _engine) in services().await {
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
    }

    #[tokio::test]
    async fn over_long_logins_are_refused_before_anything_else() {
        for (auth, _engine) in services().await {
            auth.bootstrap(Some("admin password".into())).await.unwrap();
            let too_long = [
                "a".repeat(MAX_USERNAME_LEN + 1),
                format!("{}@example.com", "a".repeat(MAX_EMAIL_LEN)),
                "x".repeat(1 << 20),
            ];
            for login in &too_long {
                assert!(matches!(auth.login(login, "password", ip()).await, Err(AuthError::BadRequest(_))));
            }
            assert_eq!(auth.limiter.tracked(), 0, "nothing was counted for them");
            // The longest logins a user can have are checked as usual.
            let longest_email = format!("{}@example.com", "a".repeat(MAX_EMAIL_LEN - "@example.com".len()));
            for login in ["a".repeat(MAX_USERNAME_LEN), longest_email] {
                assert!(matches!(auth.login(&login, "password", ip()).await, Err(AuthError::InvalidCredentials)));
            }
            assert_eq!(auth.limiter.tracked(), 3, "two names and one address");
        }
    }

    #[tokio::test]
    async fn current_user_follows_changes_at_once() {
        for (auth, _engine) in services().await {
            auth.bootstrap(Some("admin password".into())).await.unwrap();
            let root = auth.verify_token(&auth.login("admin", "admin password", ip()).await.unwrap()).unwrap();
            let new = NewUser {
                username: "bob".into(),
                service: "admin".into(),
                email: "bob@example.com".into(),
                name: "Bob".into(),
                profile: "admin".into(),
                passwd: Some("password1".into()),
            };
            let (bob, _) = auth.create_user(&root, new).await.unwrap();
            let seen = std::sync::Arc::new(std::sync::Mutex::new(vec![]));
            auth.on_user_change({
                let seen = seen.clone();
                move |c| seen.lock().unwrap().push(c.clone())
            });
            assert_eq!(auth.current_user("admin", bob.id).await.unwrap().unwrap().profile, "admin");
            assert_eq!(auth.current_user("acme", bob.id).await.unwrap(), None, "scoped by tenant");
            let demote = UserUpdate { profile: Some("user".into()), ..UserUpdate::default() };
            auth.update_user(&root, "bob", demote).await.unwrap();
            assert_eq!(auth.current_user("admin", bob.id).await.unwrap().unwrap().profile, "user", "not a stale copy");
            auth.delete_user(&root, &bob.id.to_string()).await.unwrap();
            assert_eq!(auth.current_user("admin", bob.id).await.unwrap(), None);
            let (tenant, user_id) = ("admin".to_string(), bob.id);
            assert_eq!(
                *seen.lock().unwrap(),
                [UserChange::Updated { tenant: tenant.clone(), user_id }, UserChange::Removed { tenant, user_id }]
            );
        }
    }

    #[tokio::test]
    async fn lockout_after_failures() {
        for (auth, _engine) in services().await {
            auth.bootstrap(Some("right password".into())).await.unwrap();
            for _ in 0..3 {
                let _ = auth.login("admin", "wrong", ip()).await;
            }
            assert!(matches!(
                auth.login("admin", "right password", ip()).await,
                Err(AuthError::TooManyAttempts { .. })
            ));
        }
    }

    #[tokio::test]
    async fn api_tokens_are_shown_once_scoped_and_revocable() {
        for (auth, _engine) in services().await {
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
    }

    #[tokio::test]
    async fn users_are_tenant_scoped() {
        for (auth, _engine) in services().await {
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
            assert!(matches!(
                auth.create_user(&alice, new("eve", "admin", "admin")).await,
                Err(AuthError::Forbidden(_))
            ));
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
            assert!(matches!(
                auth.create_user(&alice, new("Bob", "acme", "user")).await,
                Err(AuthError::BadRequest(_))
            ));
            assert!(matches!(
                auth.create_user(&alice, new("carl", "acme", "root")).await,
                Err(AuthError::BadRequest(_))
            ));
        }
    }
}
