//! API tokens: bearer tokens for machines (e.g. fakeiot devices reporting logins).
//! 256 random bits, shown once, stored as SHA-256, revocable at once.
//!
//! Valid tokens are cached in memory by hash, so requests skip the database. Revocation
//! deletes the row, then invalidates the cache; the cache ([`crate::cache`]) makes sure a
//! verification that read the row before the delete cannot put the token back after the
//! invalidation, so a revoked token stops working at once in every interleaving.

use model::account::NewToken;
use model::secret::{hash_secret, random_hex};
use serde::Serialize;
use store::tokens::TokenRecord;

use crate::AuthError;
use crate::jwt::Claims;
use crate::service::{AuthService, require_admin};

/// Most valid tokens remembered in memory.
pub(crate) const TOKEN_CACHE_MAX: usize = 10_000;

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
        let token = format!("{TOKEN_PREFIX}{}", random_hex(32));
        let record = TokenRecord {
            id: random_hex(8),
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
            // After the commit: from here on no verification can cache the token again.
            self.token_cache().invalidate(|_, p| p.token_id == id);
            self.tell_token_revoked(&caller.service, id).await;
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
        let principal = self
            .token_cache()
            .get_or_load(hash.clone(), || async {
                Ok::<_, AuthError>(self.store().token_by_hash(&hash).await?.map(|t| TokenPrincipal {
                    token_id: t.id,
                    tenant: t.tenant,
                    scopes: t.scopes.split(',').map(String::from).collect(),
                }))
            })
            .await?;
        Ok(principal.filter(|p| p.scopes.iter().any(|s| s == scope)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::service::tests::{ip, services};

    /// A verification reads the token, then a revocation commits and clears the cache,
    /// then the verification goes on to cache what it read: the token must stay revoked.
    #[tokio::test]
    async fn revocation_wins_against_a_verification_in_flight() {
        for (auth, _engine) in services().await {
            let auth = Arc::new(auth);
            auth.bootstrap(Some("admin password".into())).await.unwrap();
            let root = auth.verify_token(&auth.login("admin", "admin password", ip()).await.unwrap()).unwrap();
            let (view, token) = auth
                .create_token(
                    &root,
                    &model::account::NewToken { name: "fakeiot".into(), scopes: vec!["metrics".into()] },
                )
                .await
                .unwrap();

            let (read_tx, read) = tokio::sync::oneshot::channel();
            let (go_on, go_on_rx) = tokio::sync::oneshot::channel();
            auth.token_cache().pause_next_load((read_tx, go_on_rx));
            let in_flight = tokio::spawn({
                let (auth, token) = (auth.clone(), token.clone());
                async move { auth.verify_api_token(&token, "metrics").await.unwrap() }
            });
            read.await.unwrap(); // the verification has read the (still valid) token
            auth.revoke_token(&root, &view.id).await.unwrap();
            go_on.send(()).unwrap();
            assert_eq!(in_flight.await.unwrap(), None, "the verification in flight sees the revocation");
            assert_eq!(auth.verify_api_token(&token, "metrics").await.unwrap(), None, "and did not cache the token");
        }
    }
}
