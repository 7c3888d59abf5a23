//! Flows on PostgreSQL (see [`crate::flows`]).

use super::PgStore;
use crate::StoreError;
use crate::flows::{COLUMNS, FlowRecord, FlowStore, PendingReading};

fn record(r: &tokio_postgres::Row) -> Result<FlowRecord, StoreError> {
    Ok(FlowRecord {
        tenant: r.try_get(0)?,
        id: r.try_get(1)?,
        label: r.try_get(2)?,
        enabled: r.try_get(3)?,
        trace: r.try_get(4)?,
        flow: r.try_get(5)?,
        created_ms: r.try_get(6)?,
        updated_ms: r.try_get(7)?,
    })
}

#[async_trait::async_trait]
impl FlowStore for PgStore {
    async fn insert_flow(&self, f: FlowRecord, max_per_tenant: u64) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // One insertion per tenant at a time, so two cannot both pass the count.
        tx.execute("SELECT pg_advisory_xact_lock(hashtext('flows:' || $1))", &[&f.tenant]).await?;
        let count: i64 =
            tx.query_one("SELECT count(*) FROM flows WHERE tenant = $1", &[&f.tenant]).await?.try_get(0)?;
        if count as u64 >= max_per_tenant {
            return Ok(false);
        }
        tx.execute(
            &format!("INSERT INTO flows ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"),
            &[&f.tenant, &f.id, &f.label, &f.enabled, &f.trace, &f.flow, &f.created_ms, &f.updated_ms],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn flow(&self, tenant: &str, id: &str) -> Result<Option<FlowRecord>, StoreError> {
        let client = self.client().await?;
        let query = format!("SELECT {COLUMNS} FROM flows WHERE tenant = $1 AND id = $2");
        client.query_opt(&query, &[&tenant, &id]).await?.as_ref().map(record).transpose()
    }

    async fn flows(&self, tenant: &str) -> Result<Vec<FlowRecord>, StoreError> {
        let client = self.client().await?;
        let query = format!("SELECT {COLUMNS} FROM flows WHERE tenant = $1 ORDER BY created_ms, id");
        client.query(&query, &[&tenant]).await?.iter().map(record).collect()
    }

    async fn all_flows(&self) -> Result<Vec<FlowRecord>, StoreError> {
        let client = self.client().await?;
        let query = format!("SELECT {COLUMNS} FROM flows ORDER BY tenant, created_ms, id");
        client.query(&query, &[]).await?.iter().map(record).collect()
    }

    async fn update_flow(&self, f: FlowRecord) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE flows SET label = $3, enabled = $4, trace = $5, flow = $6, updated_ms = $7
                 WHERE tenant = $1 AND id = $2",
                &[&f.tenant, &f.id, &f.label, &f.enabled, &f.trace, &f.flow, &f.updated_ms],
            )
            .await?;
        Ok(n > 0)
    }

    async fn delete_flow(&self, tenant: &str, id: &str) -> Result<Option<FlowRecord>, StoreError> {
        let client = self.client().await?;
        let query = format!("DELETE FROM flows WHERE tenant = $1 AND id = $2 RETURNING {COLUMNS}");
        client.query_opt(&query, &[&tenant, &id]).await?.as_ref().map(record).transpose()
    }

    async fn delete_flows(&self, tenant: &str) -> Result<u64, StoreError> {
        let client = self.client().await?;
        Ok(client.execute("DELETE FROM flows WHERE tenant = $1", &[&tenant]).await?)
    }

    async fn push_backlog(&self, readings: Vec<(String, String, String)>) -> Result<(), StoreError> {
        let client = self.client().await?;
        let mut tenants = Vec::with_capacity(readings.len());
        let mut devices = Vec::with_capacity(readings.len());
        let mut bodies = Vec::with_capacity(readings.len());
        for (tenant, device, reading) in readings {
            tenants.push(tenant);
            devices.push(device);
            bodies.push(reading);
        }
        // One statement; ids in the order given.
        client
            .execute(
                "INSERT INTO flow_backlog (tenant, device, reading)
                 SELECT t, d, r FROM UNNEST($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS u(t, d, r, n)
                 ORDER BY n",
                &[&tenants, &devices, &bodies],
            )
            .await?;
        Ok(())
    }

    async fn backlog(&self, limit: usize) -> Result<Vec<PendingReading>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT id, tenant, device, reading FROM flow_backlog ORDER BY id LIMIT $1", &[&(limit as i64)])
            .await?;
        rows.iter()
            .map(|r| {
                Ok(PendingReading {
                    id: r.try_get(0)?,
                    tenant: r.try_get(1)?,
                    device: r.try_get(2)?,
                    reading: r.try_get(3)?,
                })
            })
            .collect()
    }

    async fn trim_backlog(&self, upto: i64) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.execute("DELETE FROM flow_backlog WHERE id <= $1", &[&upto]).await?;
        Ok(())
    }

    async fn backlog_len(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        Ok(client.query_one("SELECT count(*) FROM flow_backlog", &[]).await?.try_get::<_, i64>(0)? as u64)
    }
}
