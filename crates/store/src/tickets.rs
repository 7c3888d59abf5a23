//! Stream tickets: the single-use, short-lived credentials of kafka-ws
//! (`GET /kafka-ws/v1/ticket`) and of the socket.io and SSE streams. A ticket is asked for
//! with a JWT and used on a WebSocket or EventSource, which cannot send one; behind a
//! balancer the two requests may reach different nodes, so tickets live in the store and
//! are taken with one atomic delete: a ticket works once, on whichever node. Only the
//! ticket's SHA-256 is kept, as for API tokens.

use rusqlite::{OptionalExtension, params};

use crate::{SqliteStore, StoreError};

/// One outstanding ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketRecord {
    pub hash: String,
    pub tenant: String,
    pub user_id: i64,
    pub username: String,
    pub expires_ms: i64,
}

/// Outstanding tickets by the hash of their value.
#[async_trait::async_trait]
pub trait TicketStore: Send + Sync {
    /// Stores a ticket unless its user already holds `max_per_user` unexpired ones
    /// (returns false then). Expired tickets are removed on the way.
    async fn insert_ticket(&self, ticket: TicketRecord, now_ms: i64, max_per_user: usize) -> Result<bool, StoreError>;
    /// Takes (deletes and returns) a ticket that has not expired at `now_ms`: a second
    /// take of the same ticket, on any node, finds nothing.
    async fn take_ticket(&self, hash: &str, now_ms: i64) -> Result<Option<TicketRecord>, StoreError>;
}

#[async_trait::async_trait]
impl TicketStore for SqliteStore {
    async fn insert_ticket(&self, t: TicketRecord, now_ms: i64, max_per_user: usize) -> Result<bool, StoreError> {
        self.write(move |tx| {
            tx.prepare_cached("DELETE FROM stream_tickets WHERE expires_ms <= ?1")?.execute([now_ms])?;
            let held: i64 = tx
                .prepare_cached("SELECT count(*) FROM stream_tickets WHERE tenant = ?1 AND user_id = ?2")?
                .query_row(params![t.tenant, t.user_id], |r| r.get(0))?;
            if held as usize >= max_per_user {
                return Ok(false);
            }
            tx.prepare_cached(
                "INSERT INTO stream_tickets (hash, tenant, user_id, username, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![t.hash, t.tenant, t.user_id, t.username, t.expires_ms])?;
            Ok(true)
        })
        .await
    }

    async fn take_ticket(&self, hash: &str, now_ms: i64) -> Result<Option<TicketRecord>, StoreError> {
        let hash = hash.to_string();
        self.write(move |tx| {
            let taken = tx
                .prepare_cached(
                    "DELETE FROM stream_tickets WHERE hash = ?1
                     RETURNING hash, tenant, user_id, username, expires_ms",
                )?
                .query_row([hash], |r| {
                    Ok(TicketRecord {
                        hash: r.get(0)?,
                        tenant: r.get(1)?,
                        user_id: r.get(2)?,
                        username: r.get(3)?,
                        expires_ms: r.get(4)?,
                    })
                })
                .optional()?;
            Ok(taken.filter(|t| t.expires_ms > now_ms))
        })
        .await
    }
}
