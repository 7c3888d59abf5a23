//! Console dashboards (dojot GUI, chapter 9.7): each user's layout of charts and value
//! tiles, kept on the server so that it follows the user to any browser and any node of
//! a cluster. The layout is a JSON document the console validated and bounded (see
//! `console::dashboard`); the store keeps it whole, as text, keyed by (tenant, user).

use rusqlite::{OptionalExtension, params};

use crate::{SqliteStore, StoreError};

/// A user's saved layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardRecord {
    /// The layout, JSON.
    pub layout: String,
    pub updated_ms: i64,
}

/// One dashboard layout per user, every query scoped by tenant and user.
#[async_trait::async_trait]
pub trait DashboardStore: Send + Sync {
    /// The layout of user `user_id` of `tenant`, if one was saved.
    async fn dashboard(&self, tenant: &str, user_id: i64) -> Result<Option<DashboardRecord>, StoreError>;
    /// Saves (replaces) the layout of user `user_id` of `tenant`.
    async fn save_dashboard(&self, tenant: &str, user_id: i64, record: DashboardRecord) -> Result<(), StoreError>;
    /// Forgets the layout of a removed user; whether there was one.
    async fn delete_dashboard(&self, tenant: &str, user_id: i64) -> Result<bool, StoreError>;
}

#[async_trait::async_trait]
impl DashboardStore for SqliteStore {
    async fn dashboard(&self, tenant: &str, user_id: i64) -> Result<Option<DashboardRecord>, StoreError> {
        let tenant = tenant.to_string();
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT layout, updated_ms FROM console_dashboards WHERE tenant = ?1 AND user_id = ?2",
            )?
            .query_row(params![tenant, user_id], |r| Ok(DashboardRecord { layout: r.get(0)?, updated_ms: r.get(1)? }))
            .optional()?)
        })
        .await
    }

    async fn save_dashboard(&self, tenant: &str, user_id: i64, record: DashboardRecord) -> Result<(), StoreError> {
        let tenant = tenant.to_string();
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO console_dashboards (tenant, user_id, layout, updated_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (tenant, user_id) DO UPDATE SET layout = excluded.layout, updated_ms = excluded.updated_ms",
            )?
            .execute(params![tenant, user_id, record.layout, record.updated_ms])?;
            Ok(())
        })
        .await
    }

    async fn delete_dashboard(&self, tenant: &str, user_id: i64) -> Result<bool, StoreError> {
        let tenant = tenant.to_string();
        self.write(move |tx| {
            Ok(tx.execute(
                "DELETE FROM console_dashboards WHERE tenant = ?1 AND user_id = ?2",
                params![tenant, user_id],
            )? > 0)
        })
        .await
    }
}
