//! Templates and devices on PostgreSQL (see [`crate::catalog`]).

use serde_json::Value;

use super::PgStore;
use crate::StoreError;
use crate::catalog::{CatalogChange, CatalogRows, CatalogStore};

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

    async fn save_catalog(&self, tenant: &str, change: CatalogChange) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        if !change.remove_devices.is_empty() {
            // Deleting series: wait for history batches in flight (see `history`).
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&super::lock::SERIES]).await?;
        }
        let put = tx
            .prepare_cached(
                "INSERT INTO templates (tenant, id, doc) VALUES ($1, $2, $3)
                 ON CONFLICT (tenant, id) DO UPDATE SET doc = EXCLUDED.doc",
            )
            .await?;
        for (id, doc) in &change.put_templates {
            tx.execute(&put, &[&tenant, id, &doc_text(doc)]).await?;
        }
        let del = tx.prepare_cached("DELETE FROM templates WHERE tenant = $1 AND id = $2").await?;
        for id in &change.remove_templates {
            tx.execute(&del, &[&tenant, id]).await?;
        }
        let put = tx
            .prepare_cached(
                "INSERT INTO devices (tenant, id, doc, secret_hash) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (tenant, id) DO UPDATE SET doc = EXCLUDED.doc, secret_hash = EXCLUDED.secret_hash",
            )
            .await?;
        for d in &change.put_devices {
            tx.execute(&put, &[&tenant, &d.id, &doc_text(&d.doc), &d.secret_hash]).await?;
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
        let ctr = tx
            .prepare_cached(
                "INSERT INTO counters (tenant, name, value) VALUES ($1, $2, $3)
                 ON CONFLICT (tenant, name) DO UPDATE SET value = EXCLUDED.value",
            )
            .await?;
        for (name, value) in &change.counters {
            tx.execute(&ctr, &[&tenant, name, value]).await?;
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
