//! API tokens on PostgreSQL (see [`crate::tokens`]).

use tokio_postgres::Row;

use super::{PgStore, conflict};
use crate::StoreError;
use crate::tokens::{TokenRecord, TokenStore};

const COLUMNS: &str = "id, tenant, name, scopes, token_hash, created_ms, created_by";

fn from_row(r: &Row) -> Result<TokenRecord, StoreError> {
    Ok(TokenRecord {
        id: r.try_get(0)?,
        tenant: r.try_get(1)?,
        name: r.try_get(2)?,
        scopes: r.try_get(3)?,
        token_hash: r.try_get(4)?,
        created_ms: r.try_get(5)?,
        created_by: r.try_get(6)?,
    })
}

#[async_trait::async_trait]
impl TokenStore for PgStore {
    async fn insert_token(&self, t: TokenRecord) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                &format!("INSERT INTO api_tokens ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
                &[&t.id, &t.tenant, &t.name, &t.scopes, &t.token_hash, &t.created_ms, &t.created_by],
            )
            .await
            .map_err(conflict)?;
        Ok(())
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let client = self.client().await?;
        let st = client.prepare_cached(&format!("SELECT {COLUMNS} FROM api_tokens WHERE token_hash = $1")).await?;
        client.query_opt(&st, &[&hash]).await?.as_ref().map(from_row).transpose()
    }

    async fn tokens_of(&self, tenant: &str) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(&format!("SELECT {COLUMNS} FROM api_tokens WHERE tenant = $1 ORDER BY created_ms, id"), &[&tenant])
            .await?;
        rows.iter().map(from_row).collect()
    }

    async fn delete_token(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let n = self
            .client()
            .await?
            .execute("DELETE FROM api_tokens WHERE tenant = $1 AND id = $2", &[&tenant, &id])
            .await?;
        Ok(n == 1)
    }
}
