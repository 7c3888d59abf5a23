//! API tokens: long random bearer tokens for machines, stored as hashes.

use rusqlite::{OptionalExtension, Row, params};

use crate::{SqliteStore, StoreError};

/// A stored token (its hash, never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub tenant: String,
    pub name: String,
    /// Comma-separated.
    pub scopes: String,
    pub token_hash: String,
    pub created_ms: i64,
    pub created_by: String,
}

const COLUMNS: &str = "id, tenant, name, scopes, token_hash, created_ms, created_by";

fn from_row(r: &Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        id: r.get(0)?,
        tenant: r.get(1)?,
        name: r.get(2)?,
        scopes: r.get(3)?,
        token_hash: r.get(4)?,
        created_ms: r.get(5)?,
        created_by: r.get(6)?,
    })
}

/// API tokens (stored by hash).
#[async_trait::async_trait]
pub trait TokenStore: Send + Sync {
    /// Stores a new token (by hash).
    async fn insert_token(&self, t: TokenRecord) -> Result<(), StoreError>;

    /// The token with this hash, in any tenant: the authentication lookup.
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError>;

    /// A tenant's tokens.
    async fn tokens_of(&self, tenant: &str) -> Result<Vec<TokenRecord>, StoreError>;

    /// Deletes a tenant's token; `true` if it existed.
    async fn delete_token(&self, tenant: &str, id: &str) -> Result<bool, StoreError>;
}

#[async_trait::async_trait]
impl TokenStore for SqliteStore {
    async fn insert_token(&self, t: TokenRecord) -> Result<(), StoreError> {
        self.write(move |tx| {
            tx.execute(
                &format!("INSERT INTO api_tokens ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                params![t.id, t.tenant, t.name, t.scopes, t.token_hash, t.created_ms, t.created_by],
            )?;
            Ok(())
        })
        .await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let hash = hash.to_string();
        self.read(move |c| {
            Ok(c.prepare_cached(&format!("SELECT {COLUMNS} FROM api_tokens WHERE token_hash = ?1"))?
                .query_row([hash], from_row)
                .optional()?)
        })
        .await
    }

    async fn tokens_of(&self, tenant: &str) -> Result<Vec<TokenRecord>, StoreError> {
        let tenant = tenant.to_string();
        self.read(move |c| {
            let mut st =
                c.prepare(&format!("SELECT {COLUMNS} FROM api_tokens WHERE tenant = ?1 ORDER BY created_ms, id"))?;
            Ok(st.query_map([tenant], from_row)?.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn delete_token(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.write(move |tx| {
            Ok(tx.execute("DELETE FROM api_tokens WHERE tenant = ?1 AND id = ?2", params![tenant, id])? == 1)
        })
        .await
    }
}
