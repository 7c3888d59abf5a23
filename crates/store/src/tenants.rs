//! Tenants: the isolation unit. Every user, template, device and reading belongs to one.

use rusqlite::{OptionalExtension, Row, params};

use crate::{SqliteStore, StoreError, now_ms};

/// A tenant and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRecord {
    pub name: String,
    pub created_ms: i64,
    /// dojot's "unsecured mode": devices may connect with a username and no secret.
    pub unsecured_mqtt: bool,
    /// How long readings are kept.
    pub retention_days: u32,
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<TenantRecord> {
    Ok(TenantRecord { name: r.get(0)?, created_ms: r.get(1)?, unsecured_mqtt: r.get(2)?, retention_days: r.get(3)? })
}

const COLUMNS: &str = "name, created_ms, unsecured_mqtt, retention_days";

/// Tenants and their settings.
#[async_trait::async_trait]
pub trait TenantStore: Send + Sync {
    /// Creates the tenant if it does not exist; `true` if it was created.
    async fn ensure_tenant(&self, name: &str, retention_days: u32) -> Result<bool, StoreError>;

    /// One tenant by name.
    async fn tenant(&self, name: &str) -> Result<Option<TenantRecord>, StoreError>;

    /// Every tenant.
    async fn tenants(&self) -> Result<Vec<TenantRecord>, StoreError>;

    /// Saves a tenant's settings.
    async fn update_tenant(&self, t: TenantRecord) -> Result<(), StoreError>;
}

#[async_trait::async_trait]
impl TenantStore for SqliteStore {
    async fn ensure_tenant(&self, name: &str, retention_days: u32) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.write(move |tx| {
            let n = tx.execute(
                "INSERT OR IGNORE INTO tenants (name, created_ms, retention_days) VALUES (?1, ?2, ?3)",
                params![name, now_ms(), retention_days],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn tenant(&self, name: &str) -> Result<Option<TenantRecord>, StoreError> {
        let name = name.to_string();
        self.read(move |c| {
            Ok(c.query_row(&format!("SELECT {COLUMNS} FROM tenants WHERE name = ?1"), [name], from_row).optional()?)
        })
        .await
    }

    async fn tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare(&format!("SELECT {COLUMNS} FROM tenants ORDER BY name"))?;
            Ok(st.query_map([], from_row)?.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn update_tenant(&self, t: TenantRecord) -> Result<(), StoreError> {
        self.write(move |tx| {
            tx.execute(
                "UPDATE tenants SET unsecured_mqtt = ?2, retention_days = ?3 WHERE name = ?1",
                params![t.name, t.unsecured_mqtt, t.retention_days],
            )?;
            Ok(())
        })
        .await
    }
}
