//! JWTs: HS256 with a per-installation secret kept in the data directory.

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

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

impl JwtKeys {
    /// Reads the secret from `path`, creating it (32 random bytes, mode 0600) on first start.
    pub fn load_or_create(path: &Path) -> Result<Self, AuthError> {
        let secret = match std::fs::read(path) {
            Ok(s) if s.len() >= 32 => s,
            Ok(_) | Err(_) if !path.exists() => {
                let hex = model::secret::random_hex(32).into_bytes();
                pki::write_private(path, &hex).map_err(AuthError::KeyFile)?;
                hex
            }
            Ok(_) => {
                return Err(AuthError::KeyFile(std::io::Error::other(format!(
                    "{} is shorter than 32 bytes; delete it to generate a new one",
                    path.display()
                ))));
            }
            Err(e) => return Err(AuthError::KeyFile(e)),
        };
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

    #[test]
    fn key_file_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("jwt.secret");
        let a = JwtKeys::load_or_create(&p).unwrap();
        let b = JwtKeys::load_or_create(&p).unwrap();
        let t = a.sign(&claims(chrono::Utc::now().timestamp() + 60));
        assert!(b.verify(&t).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
