//! Stream tickets on PostgreSQL (see [`crate::tickets`]).

use super::PgStore;
use crate::StoreError;
use crate::tickets::{TicketRecord, TicketStore};

#[async_trait::async_trait]
impl TicketStore for PgStore {
    async fn insert_ticket(&self, t: TicketRecord, now_ms: i64, max_per_user: usize) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("DELETE FROM stream_tickets WHERE expires_ms <= $1", &[&now_ms]).await?;
        // One user's ticket requests on several nodes take turns, so the cap is exact.
        let holder = format!("tickets:{}:{}", t.tenant, t.user_id);
        tx.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", &[&holder]).await?;
        let held: i64 = tx
            .query_one(
                "SELECT count(*) FROM stream_tickets WHERE tenant = $1 AND user_id = $2",
                &[&t.tenant, &t.user_id],
            )
            .await?
            .try_get(0)?;
        if held as usize >= max_per_user {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO stream_tickets (hash, tenant, user_id, username, expires_ms) VALUES ($1, $2, $3, $4, $5)",
            &[&t.hash, &t.tenant, &t.user_id, &t.username, &t.expires_ms],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn take_ticket(&self, hash: &str, now_ms: i64) -> Result<Option<TicketRecord>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "DELETE FROM stream_tickets WHERE hash = $1 RETURNING hash, tenant, user_id, username, expires_ms",
                &[&hash],
            )
            .await?;
        let Some(r) = row else { return Ok(None) };
        let t = TicketRecord {
            hash: r.try_get(0)?,
            tenant: r.try_get(1)?,
            user_id: r.try_get(2)?,
            username: r.try_get(3)?,
            expires_ms: r.try_get(4)?,
        };
        Ok(Some(t).filter(|t| t.expires_ms > now_ms))
    }
}
