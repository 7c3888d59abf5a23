//! Templates and devices on PostgreSQL (see [`crate::catalog`]).

use serde_json::Value;

use super::PgStore;
use crate::StoreError;
use crate::catalog::{CatalogChange, CatalogConflict, CatalogRows, CatalogStore};

#[async_trait::async_trait]
impl CatalogStore for PgStore {
    async fn load_catalog(&self) -> Result<CatalogRows, StoreError> {
        let client = self.client().await?;
        let mut rows = CatalogRows::default();
        for r in client.query("SELECT tenant, id, doc FROM templates ORDER BY tenant, id", &[]).await? {
            rows.templates.push((r.try_get(0)?, r.try_get(1)?, serde_json::from_str(r.try_get(2)?)?));
        }
        for r in client.query("SELECT tenant, id, doc, secret_hash FROM devices ORDER BY tenant, id", &[]).await? {
            rows.devices.push((r.try_get(0)?, r.try_get(1)?, serde_json::from_str(r.try_get(2)?)?, r.try_get(3)?));
        }
        for r in client.query("SELECT tenant, name, value FROM counters", &[]).await? {
            rows.counters.push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?));
        }
        Ok(rows)
    }

    async fn catalog_device(&self, tenant: &str, id: &str) -> Result<Option<(Value, Option<String>)>, StoreError> {
        let client = self.client().await?;
        let st = client.prepare_cached("SELECT doc, secret_hash FROM devices WHERE tenant = $1 AND id = $2").await?;
        match client.query_opt(&st, &[&tenant, &id]).await? {
            Some(r) => Ok(Some((serde_json::from_str(r.try_get(0)?)?, r.try_get(1)?))),
            None => Ok(None),
        }
    }

    async fn catalog_template(&self, tenant: &str, id: i64) -> Result<Option<Value>, StoreError> {
        let client = self.client().await?;
        let st = client.prepare_cached("SELECT doc FROM templates WHERE tenant = $1 AND id = $2").await?;
        match client.query_opt(&st, &[&tenant, &id]).await? {
            Some(r) => Ok(Some(serde_json::from_str(r.try_get(0)?)?)),
            None => Ok(None),
        }
    }

    async fn allocate_ids(&self, tenant: &str, name: &str, count: i64) -> Result<i64, StoreError> {
        let client = self.client().await?;
        let st = client
            .prepare_cached(
                "INSERT INTO counters (tenant, name, value) VALUES ($1, $2, $3)
                 ON CONFLICT (tenant, name) DO UPDATE SET value = counters.value + EXCLUDED.value RETURNING value",
            )
            .await?;
        let last: i64 = client.query_one(&st, &[&tenant, &name, &count]).await?.try_get(0)?;
        Ok(last - count + 1)
    }

    async fn save_catalog(&self, tenant: &str, change: CatalogChange) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        if !change.remove_devices.is_empty() {
            // Deleting series: wait for history batches in flight (see `history`).
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&super::lock::SERIES]).await?;
        }
        let put = tx.prepare_cached("INSERT INTO templates (tenant, id, doc) VALUES ($1, $2, $3)").await?;
        for (id, doc) in &change.new_templates {
            tx.execute(&put, &[&tenant, id, &doc_text(doc)]).await?;
        }
        let put = tx.prepare_cached("UPDATE templates SET doc = $3 WHERE tenant = $1 AND id = $2").await?;
        for (id, doc) in &change.templates {
            if tx.execute(&put, &[&tenant, id, &doc_text(doc)]).await? == 0 {
                return Err(CatalogConflict::NoSuchTemplate(*id).into());
            }
        }
        let put = tx
            .prepare_cached(
                "INSERT INTO devices (tenant, id, doc, secret_hash) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .await?;
        for d in &change.new_devices {
            if tx.execute(&put, &[&tenant, &d.id, &doc_text(&d.doc), &d.secret_hash]).await? == 0 {
                return Err(CatalogConflict::DeviceExists(d.id.clone()).into());
            }
        }
        let put =
            tx.prepare_cached("UPDATE devices SET doc = $3, secret_hash = $4 WHERE tenant = $1 AND id = $2").await?;
        for d in &change.devices {
            if tx.execute(&put, &[&tenant, &d.id, &doc_text(&d.doc), &d.secret_hash]).await? == 0 {
                return Err(CatalogConflict::NoSuchDevice(d.id.clone()).into());
            }
        }
        // FOR SHARE: a concurrent removal of one of these templates waits for this
        // transaction, then finds the device that uses it (see below).
        let mut used: Vec<i64> =
            change.new_devices.iter().chain(&change.devices).flat_map(|d| d.templates.clone()).collect();
        used.sort_unstable();
        used.dedup();
        if !used.is_empty() {
            let st = tx.prepare_cached("SELECT id FROM templates WHERE tenant = $1 AND id = ANY($2) FOR SHARE").await?;
            let found: Vec<i64> =
                tx.query(&st, &[&tenant, &used]).await?.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?;
            if let Some(missing) = used.iter().find(|id| !found.contains(id)) {
                return Err(CatalogConflict::NoSuchTemplate(*missing).into());
            }
        }
        let del = tx.prepare_cached("DELETE FROM devices WHERE tenant = $1 AND id = $2").await?;
        let dead = tx
            .prepare_cached(
                "INSERT INTO dead_series (id) SELECT id FROM series WHERE tenant = $1 AND device_id = $2
                 ON CONFLICT DO NOTHING",
            )
            .await?;
        let forget = tx.prepare_cached("DELETE FROM series WHERE tenant = $1 AND device_id = $2").await?;
        for id in &change.remove_devices {
            tx.execute(&del, &[&tenant, id]).await?;
            tx.execute(&dead, &[&tenant, id]).await?;
            tx.execute(&forget, &[&tenant, id]).await?;
        }
        // The row lock taken by DELETE waits for writers of devices that use the template
        // (FOR SHARE above); the check after it, with a fresh snapshot, sees their devices.
        let del = tx.prepare_cached("DELETE FROM templates WHERE tenant = $1 AND id = $2").await?;
        let user = tx
            .prepare_cached(
                "SELECT id FROM devices WHERE tenant = $1 AND doc::jsonb -> 'templates' @> to_jsonb($2::bigint) LIMIT 1",
            )
            .await?;
        for id in &change.remove_templates {
            tx.execute(&del, &[&tenant, id]).await?;
            if let Some(row) = tx.query_opt(&user, &[&tenant, id]).await? {
                return Err(CatalogConflict::TemplateInUse { template: *id, device: row.try_get(0)? }.into());
            }
        }
        tx.commit().await?;
        // After the commit: until then the old ids were valid. A batch that checked its
        // ids before this commit finished before it (the lock); one that checks after
        // finds them gone.
        let mut cache = self.series_cache();
        for id in &change.remove_devices {
            cache.forget_device(tenant, id);
        }
        Ok(())
    }
}

fn doc_text(doc: &Value) -> String {
    doc.to_string()
}
