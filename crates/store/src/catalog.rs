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
    /// The templates the device is made of: each must exist when the row is written.
    pub templates: Vec<i64>,
}

/// One atomic change to a tenant's catalog. Every node of a cluster keeps the catalog in
/// memory, and a node's copy may be a moment behind another node's writes: so the change
/// states what it expects (new ids are new, changed rows still exist, templates in use
/// stay) and the store refuses it whole with a [`CatalogConflict`] when that no longer holds.
#[derive(Debug, Default)]
pub struct CatalogChange {
    /// New templates; their ids come from [`CatalogStore::allocate_ids`].
    pub new_templates: Vec<(i64, Value)>,
    /// Changed templates: each must still exist.
    pub templates: Vec<(i64, Value)>,
    /// Refused while a stored device uses one of them.
    pub remove_templates: Vec<i64>,
    /// New devices: refused if one of the ids is taken.
    pub new_devices: Vec<DeviceRow>,
    /// Changed devices: each must still exist.
    pub devices: Vec<DeviceRow>,
    pub remove_devices: Vec<String>,
}

/// Why the store refused a [`CatalogChange`]: the catalog is not what the writer thought
/// (another node changed it a moment ago). Nothing of the change was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogConflict {
    #[error("device {0} already exists")]
    DeviceExists(String),
    #[error("device {0} does not exist")]
    NoSuchDevice(String),
    #[error("template {0} does not exist")]
    NoSuchTemplate(i64),
    #[error("template {template} is used by device {device}")]
    TemplateInUse { template: i64, device: String },
}

/// Templates and devices as the JSON documents the devices service keeps in memory.
#[async_trait::async_trait]
pub trait CatalogStore: Send + Sync {
    /// Loads every tenant's templates and devices.
    async fn load_catalog(&self) -> Result<CatalogRows, StoreError>;

    /// One device's document and secret hash, as stored now: how a node learns of a
    /// change another node made (cluster mode).
    async fn catalog_device(&self, tenant: &str, id: &str) -> Result<Option<(Value, Option<String>)>, StoreError>;

    /// One template's document, as stored now (see [`Self::catalog_device`]).
    async fn catalog_template(&self, tenant: &str, id: i64) -> Result<Option<Value>, StoreError>;

    /// Takes `count` (≥ 1) fresh ids from the tenant's counter `name` and returns the
    /// first: no id is handed out twice, by any node; unused ones are gaps.
    async fn allocate_ids(&self, tenant: &str, name: &str, count: i64) -> Result<i64, StoreError>;

    /// Writes one tenant's change in one transaction, or nothing and
    /// [`StoreError::Catalog`] when it conflicts (see [`CatalogChange`]). A removed device's
    /// history goes with it: its series are deleted at once (its readings later, by retention).
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

    async fn catalog_template(&self, tenant: &str, id: i64) -> Result<Option<Value>, StoreError> {
        let tenant = tenant.to_string();
        self.read(move |c| {
            let doc = c
                .prepare_cached("SELECT doc FROM templates WHERE tenant = ?1 AND id = ?2")?
                .query_row(params![tenant, id], |r| r.get::<_, String>(0))
                .optional()?;
            doc.map(|doc| Ok(serde_json::from_str(&doc)?)).transpose()
        })
        .await
    }

    async fn allocate_ids(&self, tenant: &str, name: &str, count: i64) -> Result<i64, StoreError> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        self.write(move |tx| {
            let last: i64 = tx
                .prepare_cached(
                    "INSERT INTO counters (tenant, name, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT (tenant, name) DO UPDATE SET value = value + excluded.value RETURNING value",
                )?
                .query_row(params![tenant, name, count], |r| r.get(0))?;
            Ok(last - count + 1)
        })
        .await
    }

    async fn save_catalog(&self, tenant: &str, change: CatalogChange) -> Result<(), StoreError> {
        let tenant = tenant.to_string();
        let inner = self.inner.clone();
        self.write(move |tx| {
            let mut put = tx.prepare_cached("INSERT INTO templates (tenant, id, doc) VALUES (?1, ?2, ?3)")?;
            for (id, doc) in &change.new_templates {
                put.execute(params![tenant, id, doc.to_string()])?;
            }
            let mut put = tx.prepare_cached("UPDATE templates SET doc = ?3 WHERE tenant = ?1 AND id = ?2")?;
            for (id, doc) in &change.templates {
                if put.execute(params![tenant, id, doc.to_string()])? == 0 {
                    return Err(CatalogConflict::NoSuchTemplate(*id).into());
                }
            }
            let mut put = tx.prepare_cached(
                "INSERT INTO devices (tenant, id, doc, secret_hash) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
            )?;
            for d in &change.new_devices {
                if put.execute(params![tenant, d.id, d.doc.to_string(), d.secret_hash])? == 0 {
                    return Err(CatalogConflict::DeviceExists(d.id.clone()).into());
                }
            }
            let mut put =
                tx.prepare_cached("UPDATE devices SET doc = ?3, secret_hash = ?4 WHERE tenant = ?1 AND id = ?2")?;
            for d in &change.devices {
                if put.execute(params![tenant, d.id, d.doc.to_string(), d.secret_hash])? == 0 {
                    return Err(CatalogConflict::NoSuchDevice(d.id.clone()).into());
                }
            }
            let mut exists = tx.prepare_cached("SELECT 1 FROM templates WHERE tenant = ?1 AND id = ?2")?;
            for template in change.new_devices.iter().chain(&change.devices).flat_map(|d| &d.templates) {
                if !exists.exists(params![tenant, template])? {
                    return Err(CatalogConflict::NoSuchTemplate(*template).into());
                }
            }
            let mut del = tx.prepare_cached("DELETE FROM devices WHERE tenant = ?1 AND id = ?2")?;
            for id in &change.remove_devices {
                del.execute(params![tenant, id])?;
                crate::history::forget_device(&inner, tx, &tenant, id)?;
            }
            let mut del = tx.prepare_cached("DELETE FROM templates WHERE tenant = ?1 AND id = ?2")?;
            let mut user = tx.prepare_cached(
                "SELECT d.id FROM devices d, json_each(d.doc, '$.templates') t
                 WHERE d.tenant = ?1 AND t.value = ?2 LIMIT 1",
            )?;
            for id in &change.remove_templates {
                del.execute(params![tenant, id])?;
                if let Some(device) = user.query_row(params![tenant, id], |r| r.get(0)).optional()? {
                    return Err(CatalogConflict::TemplateInUse { template: *id, device }.into());
                }
            }
            Ok(())
        })
        .await
    }
}
