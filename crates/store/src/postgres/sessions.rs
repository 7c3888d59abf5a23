//! Console sessions on PostgreSQL (see [`crate::sessions`]).

use super::PgStore;
use crate::StoreError;
use crate::sessions::{SessionRecord, SessionStore};

const COLUMNS: &str = "id_hash, tenant, user_id, username, profile, csrf, created_ms, last_seen_ms";

fn record(r: &tokio_postgres::Row) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        id_hash: r.try_get(0)?,
        tenant: r.try_get(1)?,
        user_id: r.try_get(2)?,
        username: r.try_get(3)?,
        profile: r.try_get(4)?,
        csrf: r.try_get(5)?,
        created_ms: r.try_get(6)?,
        last_seen_ms: r.try_get(7)?,
    })
}

#[async_trait::async_trait]
impl SessionStore for PgStore {
    async fn insert_session(&self, s: SessionRecord, max: usize) -> Result<(), StoreError> {
        let client = self.client().await?;
        let insert = format!("INSERT INTO console_sessions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)");
        client
            .execute(
                &insert,
                &[&s.id_hash, &s.tenant, &s.user_id, &s.username, &s.profile, &s.csrf, &s.created_ms, &s.last_seen_ms],
            )
            .await?;
        client
            .execute(
                "DELETE FROM console_sessions WHERE id_hash IN
                 (SELECT id_hash FROM console_sessions ORDER BY last_seen_ms DESC, id_hash OFFSET $1)",
                &[&(max as i64)],
            )
            .await?;
        Ok(())
    }

    async fn session(&self, id_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        let client = self.client().await?;
        let st = client.prepare_cached(&format!("SELECT {COLUMNS} FROM console_sessions WHERE id_hash = $1")).await?;
        client.query_opt(&st, &[&id_hash]).await?.as_ref().map(record).transpose()
    }

    async fn touch_session(&self, id_hash: &str, last_seen_ms: i64) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE console_sessions SET last_seen_ms = GREATEST(last_seen_ms, $2) WHERE id_hash = $1",
                &[&id_hash, &last_seen_ms],
            )
            .await?;
        Ok(())
    }

    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        self.client().await?.execute("DELETE FROM console_sessions WHERE id_hash = $1", &[&id_hash]).await?;
        Ok(())
    }

    async fn delete_user_sessions(&self, tenant: &str, user_id: i64) -> Result<u64, StoreError> {
        let client = self.client().await?;
        Ok(client
            .execute("DELETE FROM console_sessions WHERE tenant = $1 AND user_id = $2", &[&tenant, &user_id])
            .await?)
    }

    async fn purge_sessions(&self, idle_before_ms: i64, created_before_ms: i64) -> Result<u64, StoreError> {
        let client = self.client().await?;
        Ok(client
            .execute(
                "DELETE FROM console_sessions WHERE last_seen_ms < $1 OR created_ms < $2",
                &[&idle_before_ms, &created_before_ms],
            )
            .await?)
    }
}
