//! Hashing of machine-generated secrets (device credentials, API tokens).
//!
//! These secrets are 256-bit random values, so a fast hash is enough: there is nothing to
//! brute-force. (Human passwords use argon2id in the `auth` crate.) Comparison is constant-time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Hex SHA-256 of a secret, the form stored.
pub fn hash_secret(secret: &[u8]) -> String {
    hex::encode(Sha256::digest(secret))
}

/// Whether `secret` hashes to `stored_hash`, compared in constant time.
pub fn secret_matches(secret: &[u8], stored_hash: &str) -> bool {
    let computed = hash_secret(secret);
    computed.as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_the_same_secret() {
        let h = hash_secret(b"s3cret");
        assert!(secret_matches(b"s3cret", &h));
        assert!(!secret_matches(b"s3cre", &h));
        assert!(!secret_matches(b"", &h));
        assert_ne!(h, "s3cret");
    }
}
