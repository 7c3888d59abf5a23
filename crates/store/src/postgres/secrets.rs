//! Installation-wide secrets on PostgreSQL (see [`crate::secrets`]).

use super::PgStore;
use crate::secrets::SecretStore;
use crate::{StoreError, now_ms};

#[async_trait::async_trait]
impl SecretStore for PgStore {
    async fn secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = self.client().await?.query_opt("SELECT value FROM secrets WHERE name = $1", &[&name]).await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    async fn secret_or_insert(&self, name: &str, candidate: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        let client = self.client().await?;
        // Another node's concurrent insert of the same name makes ours wait for its
        // commit and then do nothing; the SELECT (a new snapshot) then sees its value.
        client
            .execute(
                "INSERT INTO secrets (name, value, created_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&name, &candidate, &now_ms()],
            )
            .await?;
        Ok(client.query_one("SELECT value FROM secrets WHERE name = $1", &[&name]).await?.try_get(0)?)
    }
}
