//! JWTs: HS256 with a per-installation secret kept in the store (so that every node of a
//! cluster on one database signs and verifies alike).

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use store::SharedStore;

use crate::AuthError;

/// dojot's claims (`auth/controller/AuthenticationController.py`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
    pub profile: String,
    /// Numeric group ids, as dojot sent them.
    pub groups: Vec<i64>,
    pub userid: i64,
    pub jti: String,
    /// The tenant.
    pub service: String,
    pub username: String,
}

impl Claims {
    pub fn is_admin(&self) -> bool {
        self.profile == "admin"
    }
}

/// Signing and verification keys.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

const ISSUER: &str = "ingot";
/// The secret's name in the store.
const SECRET_NAME: &str = "jwt.secret";

impl JwtKeys {
    /// The installation's secret, from the store: created on first start (32 random bytes,
    /// hex), or imported from `legacy`, the `jwt.secret` file Ingot kept in its data
    /// directory before the secret moved into the store, so tokens already issued stay
    /// valid. When several nodes start at once, all use the first one stored.
    pub async fn load(store: &SharedStore, legacy: Option<&Path>) -> Result<Self, AuthError> {
        let secret = match store.secret(SECRET_NAME).await? {
            Some(secret) => secret,
            None => {
                let candidate = match legacy.map(std::fs::read) {
                    Some(Ok(old)) if old.len() >= 32 => {
                        tracing::info!(path = %legacy.unwrap_or(Path::new("")).display(), "moved the JWT secret into the store");
                        old
                    }
                    _ => model::secret::random_hex(32).into_bytes(),
                };
                store.secret_or_insert(SECRET_NAME, candidate).await?
            }
        };
        if secret.len() < 32 {
            return Err(AuthError::KeyFile(std::io::Error::other(
                "the stored JWT secret is shorter than 32 bytes; the store was changed by hand",
            )));
        }
        Ok(Self::from_secret(&secret))
    }

    pub fn from_secret(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iat", "iss"]);
        validation.leeway = 5;
        Self { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret), validation }
    }

    pub fn issuer() -> &'static str {
        ISSUER
    }

    pub fn sign(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding).unwrap_or_default()
    }

    /// Verifies signature, algorithm, issuer and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map(|d| d.claims).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            AuthError::Unauthorized(match e.kind() {
                ErrorKind::ExpiredSignature => "token expired".into(),
                ErrorKind::InvalidSignature => "token signature is invalid".into(),
                _ => "invalid token".into(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            iss: ISSUER.into(),
            iat: 0,
            exp,
            profile: "admin".into(),
            groups: vec![1],
            userid: 1,
            jti: "j".into(),
            service: "admin".into(),
            username: "admin".into(),
        }
    }

    #[test]
    fn sign_verify_expiry_forgery() {
        let k = JwtKeys::from_secret(b"0123456789abcdef0123456789abcdef");
        let now = chrono::Utc::now().timestamp();
        let t = k.sign(&claims(now + 60));
        assert_eq!(k.verify(&t).unwrap().service, "admin");
        assert!(k.verify(&k.sign(&claims(now - 60))).is_err(), "expired");
        let other = JwtKeys::from_secret(b"another secret another secret!!!");
        assert!(k.verify(&other.sign(&claims(now + 60))).is_err(), "forged");
        // dojot's services accepted unsigned tokens: alg=none must fail.
        let parts: Vec<&str> = t.split('.').collect();
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]);
        assert!(k.verify(&none).is_err(), "alg none");
        assert!(k.verify("garbage").is_err());
    }

    #[tokio::test]
    async fn the_secret_is_made_once_per_store_and_an_old_key_file_is_imported() {
        for engine in store::testing::engines().await {
            let a = JwtKeys::load(&engine.store, None).await.unwrap();
            let b = JwtKeys::load(&engine.reopen().await, None).await.unwrap();
            let t = a.sign(&claims(chrono::Utc::now().timestamp() + 60));
            assert!(b.verify(&t).is_ok(), "{}: a restart (or another node) verifies", engine.name);

            // An installation from before: its file's secret becomes the stored one.
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("jwt.secret");
            std::fs::write(&file, b"0123456789abcdef0123456789abcdef").unwrap();
            let old = JwtKeys::from_secret(b"0123456789abcdef0123456789abcdef");
            let upgraded = store::testing::Engine::sqlite();
            let keys = JwtKeys::load(&upgraded.store, Some(&file)).await.unwrap();
            assert!(keys.verify(&old.sign(&claims(chrono::Utc::now().timestamp() + 60))).is_ok());
            let again = JwtKeys::load(&upgraded.reopen().await, None).await.unwrap();
            assert!(again.verify(&t).is_err(), "{}: another installation's token", engine.name);
            assert!(again.verify(&old.sign(&claims(chrono::Utc::now().timestamp() + 60))).is_ok());
        }
    }
}
