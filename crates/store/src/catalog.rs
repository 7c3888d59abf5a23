//! Templates and devices, stored as JSON documents (the devices service owns their shape
//! and keeps them in memory; this is the write-through copy).

use rusqlite::{OptionalExtension, params};
use serde_json::Value;

use crate::{SqliteStore, StoreError};

/// Everything stored for one tenant's catalog, as loaded at start.
#[derive(Debug, Default)]
pub struct CatalogRows {
    /// (tenant, id, document)
    pub templates: Vec<(String, i64, Value)>,
    /// (tenant, id, document, secret hash)
    pub devices: Vec<(String, String, Value, Option<String>)>,
    /// (tenant, counter name, last value)
    pub counters: Vec<(String, String, i64)>,
}

/// A device to write.
#[derive(Debug, Clone)]
pub struct DeviceRow {
    pub id: String,
    pub doc: Value,
    pub secret_hash: Option<String>,
}

/// Templates and devices as the JSON documents the devices service keeps in memory.
#[async_trait::async_trait]
pub trait CatalogStore: Send + Sync {
    /// Loads every tenant's templates and devices.
    async fn load_catalog(&self) -> Result<CatalogRows, StoreError>;

    /// One device's document and secret hash, as stored now: how a node learns of a
    /// change another node made (cluster mode).
    async fn catalog_device(&self, tenant: &str, id: &str) -> Result<Option<(Value, Option<String>)>, StoreError>;

    /// Writes templates and devices of one tenant in one transaction, deleting the ids
    /// listed in `remove_*`, and saving `counters`. A removed device's history goes with
    /// it: its series are deleted at once (its readings later, by retention).
    async fn save_catalog(&self, tenant: &str, change: CatalogChange) -> Result<(), StoreError>;
}

#[async_trait::async_trait]
impl CatalogStore for SqliteStore {
    async fn load_catalog(&self) -> Result<CatalogRows, StoreError> {
        self.read(|c| {
            let mut rows = CatalogRows::default();
            let mut st = c.prepare("SELECT tenant, id, doc FROM templates ORDER BY tenant, id")?;
            let mut q = st.query([])?;
            while let Some(r) = q.next()? {
                rows.templates.push((r.get(0)?, r.get(1)?, serde_json::from_str(&r.get::<_, String>(2)?)?));
            }
            let mut st = c.prepare("SELECT tenant, id, doc, secret_hash FROM devices ORDER BY tenant, id")?;
            let mut q = st.query([])?;
            while let Some(r) = q.next()? {
                rows.devices.push((r.get(0)?, r.get(1)?, serde_json::from_str(&r.get::<_, String>(2)?)?, r.get(3)?));
            }
            let mut st = c.prepare("SELECT tenant, name, value FROM counters")?;
            rows.counters = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn catalog_device(&self, tenant: &str, id: &str) -> Result<Option<(Value, Option<String>)>, StoreError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.read(move |c| {
            let row = c
                .prepare_cached("SELECT doc, secret_hash FROM devices WHERE tenant = ?1 AND id = ?2")?
                .query_row(params![tenant, id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)))
                .optional()?;
            row.map(|(doc, secret)| Ok((serde_json::from_str(&doc)?, secret))).transpose()
        })
        .await
    }

    async fn save_catalog(&self, tenant: &str, change: CatalogChange) -> Result<(), StoreError> {
        let tenant = tenant.to_string();
        let inner = self.inner.clone();
        self.write(move |tx| {
            {
                let mut put =
                    tx.prepare_cached("INSERT OR REPLACE INTO templates (tenant, id, doc) VALUES (?1, ?2, ?3)")?;
                for (id, doc) in &change.put_templates {
                    put.execute(params![tenant, id, doc.to_string()])?;
                }
                let mut del = tx.prepare_cached("DELETE FROM templates WHERE tenant = ?1 AND id = ?2")?;
                for id in &change.remove_templates {
                    del.execute(params![tenant, id])?;
                }
                let mut put = tx.prepare_cached(
                    "INSERT OR REPLACE INTO devices (tenant, id, doc, secret_hash) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for d in &change.put_devices {
                    put.execute(params![tenant, d.id, d.doc.to_string(), d.secret_hash])?;
                }
                let mut del = tx.prepare_cached("DELETE FROM devices WHERE tenant = ?1 AND id = ?2")?;
                for id in &change.remove_devices {
                    del.execute(params![tenant, id])?;
                    crate::history::forget_device(&inner, tx, &tenant, id)?;
                }
                let mut ctr =
                    tx.prepare_cached("INSERT OR REPLACE INTO counters (tenant, name, value) VALUES (?1, ?2, ?3)")?;
                for (name, value) in &change.counters {
                    ctr.execute(params![tenant, name, value])?;
                }
            }
            Ok(())
        })
        .await
    }
}

/// One atomic change to a tenant's catalog.
#[derive(Debug, Default)]
pub struct CatalogChange {
    pub put_templates: Vec<(i64, Value)>,
    pub remove_templates: Vec<i64>,
    pub put_devices: Vec<DeviceRow>,
    pub remove_devices: Vec<String>,
    pub counters: Vec<(String, i64)>,
}
