//! Console sessions (`console::session`), in the store so that every node of a cluster
//! knows every session: a browser may reach any node. The cookie's value is never stored,
//! only its SHA-256 (`id_hash`), as for API tokens.

use rusqlite::{OptionalExtension, params};

use crate::{SqliteStore, StoreError};

/// One console session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id_hash: String,
    pub tenant: String,
    pub user_id: i64,
    pub username: String,
    /// The profile at sign-in (requests re-check the user's current one).
    pub profile: String,
    pub csrf: String,
    pub created_ms: i64,
    /// Written at most every so often (the console decides), not on every request.
    pub last_seen_ms: i64,
}

/// Console sessions by the hash of their id.
#[async_trait::async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a new session; beyond `max` sessions, the least recently seen go.
    async fn insert_session(&self, session: SessionRecord, max: usize) -> Result<(), StoreError>;
    async fn session(&self, id_hash: &str) -> Result<Option<SessionRecord>, StoreError>;
    async fn touch_session(&self, id_hash: &str, last_seen_ms: i64) -> Result<(), StoreError>;
    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError>;
    /// Ends every session of a user (removed); returns how many there were.
    async fn delete_user_sessions(&self, tenant: &str, user_id: i64) -> Result<u64, StoreError>;
    /// Removes sessions last seen before `idle_before_ms` or created before
    /// `created_before_ms`; returns how many.
    async fn purge_sessions(&self, idle_before_ms: i64, created_before_ms: i64) -> Result<u64, StoreError>;
}

const COLUMNS: &str = "id_hash, tenant, user_id, username, profile, csrf, created_ms, last_seen_ms";

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        id_hash: r.get(0)?,
        tenant: r.get(1)?,
        user_id: r.get(2)?,
        username: r.get(3)?,
        profile: r.get(4)?,
        csrf: r.get(5)?,
        created_ms: r.get(6)?,
        last_seen_ms: r.get(7)?,
    })
}

#[async_trait::async_trait]
impl SessionStore for SqliteStore {
    async fn insert_session(&self, s: SessionRecord, max: usize) -> Result<(), StoreError> {
        self.write(move |tx| {
            tx.prepare_cached(&format!(
                "INSERT INTO console_sessions ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ))?
            .execute(params![
                s.id_hash,
                s.tenant,
                s.user_id,
                s.username,
                s.profile,
                s.csrf,
                s.created_ms,
                s.last_seen_ms
            ])?;
            tx.prepare_cached(
                "DELETE FROM console_sessions WHERE id_hash IN
                 (SELECT id_hash FROM console_sessions ORDER BY last_seen_ms DESC, id_hash LIMIT -1 OFFSET ?1)",
            )?
            .execute([max as i64])?;
            Ok(())
        })
        .await
    }

    async fn session(&self, id_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        let id_hash = id_hash.to_string();
        self.read(move |c| {
            Ok(c.prepare_cached(&format!("SELECT {COLUMNS} FROM console_sessions WHERE id_hash = ?1"))?
                .query_row([id_hash], record)
                .optional()?)
        })
        .await
    }

    async fn touch_session(&self, id_hash: &str, last_seen_ms: i64) -> Result<(), StoreError> {
        let id_hash = id_hash.to_string();
        self.write(move |tx| {
            tx.prepare_cached("UPDATE console_sessions SET last_seen_ms = max(last_seen_ms, ?2) WHERE id_hash = ?1")?
                .execute(params![id_hash, last_seen_ms])?;
            Ok(())
        })
        .await
    }

    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        let id_hash = id_hash.to_string();
        self.write(move |tx| {
            tx.execute("DELETE FROM console_sessions WHERE id_hash = ?1", [id_hash])?;
            Ok(())
        })
        .await
    }

    async fn delete_user_sessions(&self, tenant: &str, user_id: i64) -> Result<u64, StoreError> {
        let tenant = tenant.to_string();
        self.write(move |tx| {
            Ok(tx
                .execute("DELETE FROM console_sessions WHERE tenant = ?1 AND user_id = ?2", params![tenant, user_id])?
                as u64)
        })
        .await
    }

    async fn purge_sessions(&self, idle_before_ms: i64, created_before_ms: i64) -> Result<u64, StoreError> {
        self.write(move |tx| {
            Ok(tx.execute(
                "DELETE FROM console_sessions WHERE last_seen_ms < ?1 OR created_ms < ?2",
                params![idle_before_ms, created_before_ms],
            )? as u64)
        })
        .await
    }
}
