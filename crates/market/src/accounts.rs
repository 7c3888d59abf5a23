//! The auction API's own users and tokens, apart from the platform's: a user signs up to
//! the market (`POST /v1/signup`), not to a tenant, and its token opens the market's
//! routes only.
//!
//! - Passwords are argon2id (hashed and checked off the async threads); an unknown user
//!   takes as long to refuse as a wrong password (a decoy hash is checked).
//! - A name is taken once: the store's unique key decides a signup race, not a lookup
//!   first (the original looked, then inserted).
//! - Failed logins are limited per name and per address (`auth::LoginLimiter`).
//! - Tokens are HS256 JWTs with the market's own secret (kept in the store, so every node
//!   signs alike), audience [`AUDIENCE`], and an expiry (the original's had none): a
//!   platform token fails here on its signature, and a market token fails on platform
//!   routes the same way.

use std::net::IpAddr;
use std::sync::Arc;

use auth::LoginLimiter;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use store::SharedStore;
use store::market::MarketUser;

use crate::{MarketConfig, MarketError};

/// The `aud` of market tokens.
pub const AUDIENCE: &str = "ingot-market";
const ISSUER: &str = "ingot";
/// The market's signing secret's name in the store.
const SECRET_NAME: &str = "market.jwt.secret";
/// Longest user name, in bytes.
pub const MAX_USERNAME_LEN: usize = 64;
/// Shortest and longest password, in characters and bytes.
pub const MIN_PASSWORD_LEN: usize = 8;
pub const MAX_PASSWORD_LEN: usize = 256;

/// What a market token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketClaims {
    pub iss: String,
    pub aud: String,
    /// The user name.
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
}

pub struct Accounts {
    store: SharedStore,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    limiter: LoginLimiter,
    ttl_secs: i64,
}

impl Accounts {
    /// The market's users over `store`, with its signing secret (made on first start).
    pub async fn load(store: SharedStore, config: &MarketConfig) -> Result<Self, MarketError> {
        let secret = match store.secret(SECRET_NAME).await? {
            Some(secret) => secret,
            None => store.secret_or_insert(SECRET_NAME, model::secret::random_hex(32).into_bytes()).await?,
        };
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 5;
        Ok(Self {
            store,
            encoding: EncodingKey::from_secret(&secret),
            decoding: DecodingKey::from_secret(&secret),
            validation,
            limiter: LoginLimiter::new(config.max_login_failures, config.login_window, 100_000),
            ttl_secs: config.token_ttl.as_secs().max(1) as i64,
        })
    }

    /// `POST /v1/signup`.
    pub async fn signup(&self, username: &str, password: &str) -> Result<(), MarketError> {
        check_username(username)?;
        check_password(password)?;
        let password = password.to_string();
        let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
            .await
            .map_err(|e| MarketError::Store(store::StoreError::Task(e.to_string())))?;
        let user = MarketUser {
            username: username.to_string(),
            password_hash: hash,
            created_ms: chrono::Utc::now().timestamp_millis(),
        };
        if !self.store.insert_market_user(user).await? {
            return Err(MarketError::UserExists);
        }
        tracing::info!(user = %username, "market user signed up");
        Ok(())
    }

    /// `POST /v1/login` from `peer`: a token.
    pub async fn login(self: &Arc<Self>, username: &str, password: &str, peer: IpAddr) -> Result<String, MarketError> {
        if username.len() > MAX_USERNAME_LEN || password.len() > MAX_PASSWORD_LEN {
            return Err(MarketError::BadCredentials);
        }
        self.limiter.check(username, peer).map_err(MarketError::TooManyAttempts)?;
        let stored = self.store.market_user(username).await?;
        let known = stored.is_some();
        let hash = stored.map_or_else(|| auth::decoy_hash().to_string(), |u| u.password_hash);
        let password = password.to_string();
        let matches = tokio::task::spawn_blocking(move || auth::verify_password(&password, &hash))
            .await
            .map_err(|e| MarketError::Store(store::StoreError::Task(e.to_string())))?;
        if !(known && matches) {
            self.limiter.record_failure(username, peer);
            return Err(MarketError::BadCredentials);
        }
        self.limiter.record_success(username);
        Ok(self.token(username))
    }

    /// A token for `username`.
    pub fn token(&self, username: &str) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = MarketClaims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: username.into(),
            iat: now,
            exp: now + self.ttl_secs,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).unwrap_or_default()
    }

    /// The claims of a good token (signature, audience, expiry).
    pub fn verify(&self, token: &str) -> Result<MarketClaims, MarketError> {
        jsonwebtoken::decode::<MarketClaims>(token, &self.decoding, &self.validation).map(|d| d.claims).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            MarketError::Unauthorized(match e.kind() {
                ErrorKind::ExpiredSignature => "token expired: log in again".into(),
                ErrorKind::InvalidAudience | ErrorKind::InvalidSignature => {
                    "not a token of this API: log in with POST /v1/login".into()
                }
                _ => "invalid token".into(),
            })
        })
    }
}

fn check_username(name: &str) -> Result<(), MarketError> {
    if name.trim().is_empty() || name.len() > MAX_USERNAME_LEN || name.chars().any(char::is_control) {
        return Err(MarketError::BadRequest(format!(
            "username must be 1 to {MAX_USERNAME_LEN} bytes of printable characters"
        )));
    }
    Ok(())
}

fn check_password(password: &str) -> Result<(), MarketError> {
    if password.chars().count() < MIN_PASSWORD_LEN || password.len() > MAX_PASSWORD_LEN {
        return Err(MarketError::BadRequest(format!(
            "password must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use serde_json::json;

    use super::*;

    async fn accounts() -> (store::testing::Engine, Arc<Accounts>) {
        let t = store::testing::Engine::sqlite();
        let a = Accounts::load(t.store.clone(), &MarketConfig { max_login_failures: 3, ..Default::default() }).await;
        (t, Arc::new(a.unwrap()))
    }

    #[tokio::test]
    async fn signup_once_login_and_tokens_of_this_api_only() {
        let (_t, a) = accounts().await;
        let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
        a.signup("Azerbaijan", "baku-baku").await.unwrap();
        assert!(matches!(a.signup("Azerbaijan", "other-password").await, Err(MarketError::UserExists)));
        assert!(matches!(a.signup("", "baku-baku").await, Err(MarketError::BadRequest(_))));
        assert!(matches!(a.signup("x", "short").await, Err(MarketError::BadRequest(_))));
        let token = a.login("Azerbaijan", "baku-baku", peer).await.unwrap();
        let claims = a.verify(&token).unwrap();
        assert_eq!((claims.sub.as_str(), claims.aud.as_str()), ("Azerbaijan", AUDIENCE));
        assert!(claims.exp > claims.iat, "tokens expire");
        assert!(matches!(a.login("Azerbaijan", "wrong-password", peer).await, Err(MarketError::BadCredentials)));
        assert!(matches!(a.login("nobody", "baku-baku", peer).await, Err(MarketError::BadCredentials)));

        // A token of another key (the platform's, say: the end-to-end test sends a real
        // one), or without the audience, is refused, and so is a tampered one.
        let now = chrono::Utc::now().timestamp();
        let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "Azerbaijan", "iat": now, "exp": now + 60});
        let other_key =
            jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(&[7u8; 32])).unwrap();
        assert!(matches!(a.verify(&other_key), Err(MarketError::Unauthorized(_))));
        assert!(matches!(a.verify(&format!("{token}x")), Err(MarketError::Unauthorized(_))));
    }

    #[tokio::test]
    async fn failed_logins_are_limited() {
        let (_t, a) = accounts().await;
        let peer = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));
        a.signup("ana", "correct-horse").await.unwrap();
        for _ in 0..3 {
            assert!(matches!(a.login("ana", "wrong-horse", peer).await, Err(MarketError::BadCredentials)));
        }
        assert!(matches!(a.login("ana", "correct-horse", peer).await, Err(MarketError::TooManyAttempts(_))));
    }
}
