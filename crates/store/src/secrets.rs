//! Installation-wide secrets: the JWT signing secret, the CA's certificate and key. In
//! the store rather than in files of the data directory so that every node of a cluster
//! on one database signs and verifies alike.
//!
//! Stored as given (not encrypted at rest: whoever reads the database can read them, as
//! whoever reads the data directory could read the files before). A value is written
//! once and never changed: [`SecretStore::secret_or_insert`] is how every node agrees on
//! it when several start at once (the first insert wins, the others read it back).

use rusqlite::{OptionalExtension, params};

use crate::{SqliteStore, StoreError, now_ms};

/// Secrets by name, written once.
#[async_trait::async_trait]
pub trait SecretStore: Send + Sync {
    /// The secret `name`, if stored.
    async fn secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stores `candidate` as `name` unless a value is there already; returns the stored
    /// value (`candidate`, or the one another node stored first).
    async fn secret_or_insert(&self, name: &str, candidate: Vec<u8>) -> Result<Vec<u8>, StoreError>;
}

#[async_trait::async_trait]
impl SecretStore for SqliteStore {
    async fn secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let name = name.to_string();
        self.read(move |c| {
            Ok(c.query_row("SELECT value FROM secrets WHERE name = ?1", [name], |r| r.get(0)).optional()?)
        })
        .await
    }

    async fn secret_or_insert(&self, name: &str, candidate: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        let name = name.to_string();
        self.write(move |tx| {
            tx.execute(
                "INSERT OR IGNORE INTO secrets (name, value, created_ms) VALUES (?1, ?2, ?3)",
                params![name, candidate, now_ms()],
            )?;
            Ok(tx.query_row("SELECT value FROM secrets WHERE name = ?1", [name], |r| r.get(0))?)
        })
        .await
    }
}
