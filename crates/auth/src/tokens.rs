//! API tokens: bearer tokens for machines (e.g. fakeiot devices reporting logins).
//! 256 random bits, shown once, stored as SHA-256, revocable at once.

use model::account::NewToken;
use model::secret::hash_secret;
use serde::Serialize;
use store::tokens::TokenRecord;

use crate::AuthError;
use crate::jwt::Claims;
use crate::service::{AuthService, random_token, require_admin};

/// Most valid tokens remembered in memory.
const TOKEN_CACHE_MAX: usize = 10_000;

/// Prefix that makes Ingot tokens recognisable (e.g. by secret scanners).
const TOKEN_PREFIX: &str = "ingot_";

/// A token as listed (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub created: String,
    pub created_by: String,
}

impl From<TokenRecord> for TokenView {
    fn from(t: TokenRecord) -> Self {
        Self {
            id: t.id,
            name: t.name,
            scopes: t.scopes.split(',').filter(|s| !s.is_empty()).map(String::from).collect(),
            created: model::time::format_dojot(&model::time::from_ms(t.created_ms)),
            created_by: t.created_by,
        }
    }
}

/// Who a valid API token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPrincipal {
    pub token_id: String,
    pub tenant: String,
    pub scopes: Vec<String>,
}

impl AuthService {
    /// `POST /auth/tokens`: returns the listing and the token itself (shown once).
    /// Scopes: see [`model::account::SCOPES`].
    pub async fn create_token(&self, caller: &Claims, req: &NewToken) -> Result<(TokenView, String), AuthError> {
        require_admin(caller)?;
        let name = req.validate()?;
        let token = format!("{TOKEN_PREFIX}{}", random_token(32));
        let record = TokenRecord {
            id: random_token(8),
            tenant: caller.service.clone(),
            name: name.to_string(),
            scopes: req.scopes.join(","),
            token_hash: hash_secret(token.as_bytes()),
            created_ms: chrono::Utc::now().timestamp_millis(),
            created_by: caller.username.clone(),
        };
        self.store().insert_token(record.clone()).await?;
        Ok((record.into(), token))
    }

    /// `GET /auth/tokens`: the caller's tenant's tokens, without secrets.
    pub async fn list_tokens(&self, caller: &Claims) -> Result<Vec<TokenView>, AuthError> {
        require_admin(caller)?;
        Ok(self.store().tokens_of(&caller.service).await?.into_iter().map(TokenView::from).collect())
    }

    /// `DELETE /auth/tokens/{id}`: the token stops working at once.
    pub async fn revoke_token(&self, caller: &Claims, id: &str) -> Result<(), AuthError> {
        require_admin(caller)?;
        if self.store().delete_token(&caller.service, id).await? {
            // Immediate: the cache forgets it in the same call.
            self.token_cache().write().expect("token cache lock").retain(|_, p| p.token_id != id);
            Ok(())
        } else {
            Err(AuthError::NotFound("No such token".into()))
        }
    }

    /// Checks a bearer token for `scope`. The lookup is by hash, so no comparison of the
    /// secret itself can leak timing.
    pub async fn verify_api_token(&self, token: &str, scope: &str) -> Result<Option<TokenPrincipal>, AuthError> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        let hash = hash_secret(token.as_bytes());
        let cached = self.token_cache().read().expect("token cache lock").get(&hash).cloned();
        let principal = match cached {
            Some(p) => p,
            None => {
                let Some(t) = self.store().token_by_hash(&hash).await? else { return Ok(None) };
                let p = TokenPrincipal {
                    token_id: t.id,
                    tenant: t.tenant,
                    scopes: t.scopes.split(',').map(String::from).collect(),
                };
                // Only valid tokens are cached, so random tokens cannot fill it; the bound
                // is a backstop.
                let mut cache = self.token_cache().write().expect("token cache lock");
                if cache.len() >= TOKEN_CACHE_MAX {
                    cache.clear();
                }
                cache.insert(hash, p.clone());
                p
            }
        };
        Ok(principal.scopes.iter().any(|s| s == scope).then_some(principal))
    }
}
