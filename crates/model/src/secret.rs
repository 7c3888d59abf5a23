//! Machine-generated secrets (device credentials, API tokens, session ids): making them
//! and hashing them, in one place so every room draws from the same source.
//!
//! These secrets are 256-bit random values, so a fast hash is enough: there is nothing to
//! brute-force. (Human passwords use argon2id in the `auth` crate.) Comparison is constant-time.

use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// `bytes` random bytes from the operating system's generator, hex-encoded
/// (`2 * bytes` characters).
pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// Hex SHA-256 of a secret, the form stored.
pub fn hash_secret(secret: &[u8]) -> String {
    hex::encode(Sha256::digest(secret))
}

/// A certificate's fingerprint as dojot printed it: SHA-256 of its DER, upper-case hex
/// pairs joined by `:`. The certificate registry's key, computed alike by the CA and by
/// the MQTT agent from the certificate a device presents.
pub fn certificate_fingerprint(der: &[u8]) -> String {
    Sha256::digest(der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
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

    #[test]
    fn random_hex_has_the_asked_length_and_differs() {
        let (a, b) = (random_hex(32), random_hex(32));
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_eq!(random_hex(0), "");
    }
}
