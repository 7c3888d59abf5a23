//! Console dashboards on PostgreSQL (see [`crate::dashboards`]).

use super::PgStore;
use crate::StoreError;
use crate::dashboards::{DashboardRecord, DashboardStore};

#[async_trait::async_trait]
impl DashboardStore for PgStore {
    async fn dashboard(&self, tenant: &str, user_id: i64) -> Result<Option<DashboardRecord>, StoreError> {
        let client = self.client().await?;
        let st = client
            .prepare_cached("SELECT layout, updated_ms FROM console_dashboards WHERE tenant = $1 AND user_id = $2")
            .await?;
        let row = client.query_opt(&st, &[&tenant, &user_id]).await?;
        row.map(|r| Ok(DashboardRecord { layout: r.try_get(0)?, updated_ms: r.try_get(1)? })).transpose()
    }

    async fn save_dashboard(&self, tenant: &str, user_id: i64, record: DashboardRecord) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO console_dashboards (tenant, user_id, layout, updated_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (tenant, user_id) DO UPDATE SET layout = excluded.layout, updated_ms = excluded.updated_ms",
                &[&tenant, &user_id, &record.layout, &record.updated_ms],
            )
            .await?;
        Ok(())
    }

    async fn delete_dashboard(&self, tenant: &str, user_id: i64) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let deleted = client
            .execute("DELETE FROM console_dashboards WHERE tenant = $1 AND user_id = $2", &[&tenant, &user_id])
            .await?;
        Ok(deleted > 0)
    }
}
