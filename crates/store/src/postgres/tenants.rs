//! Tenants on PostgreSQL (see [`crate::tenants`]).

use tokio_postgres::Row;

use super::PgStore;
use crate::tenants::{TenantRecord, TenantStore};
use crate::{StoreError, now_ms};

const COLUMNS: &str = "name, created_ms, unsecured_mqtt, retention_days";

fn from_row(r: &Row) -> Result<TenantRecord, StoreError> {
    Ok(TenantRecord {
        name: r.try_get(0)?,
        created_ms: r.try_get(1)?,
        unsecured_mqtt: r.try_get(2)?,
        retention_days: u32::try_from(r.try_get::<_, i64>(3)?).unwrap_or(u32::MAX),
    })
}

#[async_trait::async_trait]
impl TenantStore for PgStore {
    async fn ensure_tenant(&self, name: &str, retention_days: u32) -> Result<bool, StoreError> {
        let n = self
            .client()
            .await?
            .execute(
                "INSERT INTO tenants (name, created_ms, retention_days) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&name, &now_ms(), &i64::from(retention_days)],
            )
            .await?;
        Ok(n == 1)
    }

    async fn tenant(&self, name: &str) -> Result<Option<TenantRecord>, StoreError> {
        let client = self.client().await?;
        let st = client.prepare_cached(&format!("SELECT {COLUMNS} FROM tenants WHERE name = $1")).await?;
        client.query_opt(&st, &[&name]).await?.as_ref().map(from_row).transpose()
    }

    async fn tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
        let rows = self.client().await?.query(&format!("SELECT {COLUMNS} FROM tenants ORDER BY name"), &[]).await?;
        rows.iter().map(from_row).collect()
    }

    async fn update_tenant(&self, t: TenantRecord) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "UPDATE tenants SET unsecured_mqtt = $2, retention_days = $3 WHERE name = $1",
                &[&t.name, &t.unsecured_mqtt, &i64::from(t.retention_days)],
            )
            .await?;
        Ok(())
    }
}
