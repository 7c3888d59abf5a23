//! Load-test results on PostgreSQL (see [`crate::loadtests`]).

use super::PgStore;
use crate::StoreError;
use crate::loadtests::{BUCKET_COLUMNS, LoadBucket, LoadJob, LoadMerge, LoadTestStore, jobs_query};

fn bucket(r: &tokio_postgres::Row, at: usize) -> Result<LoadBucket, StoreError> {
    Ok(LoadBucket {
        second: r.try_get(at)?,
        count: r.try_get(at + 1)?,
        errors: r.try_get(at + 2)?,
        p50_us: r.try_get(at + 3)?,
        p90_us: r.try_get(at + 4)?,
        p99_us: r.try_get(at + 5)?,
        max_us: r.try_get(at + 6)?,
        latency: r.try_get(at + 7)?,
        updated_ms: r.try_get(at + 8)?,
    })
}

#[async_trait::async_trait]
impl LoadTestStore for PgStore {
    async fn add_load_results(
        &self,
        tenant: &str,
        job: &str,
        mut buckets: Vec<LoadBucket>,
        merge: LoadMerge,
    ) -> Result<(), StoreError> {
        // Rows locked in second order: two pushes of one job never wait on each other in a circle.
        buckets.sort_by_key(|b| b.second);
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let select = tx
            .prepare_cached(&format!(
                "SELECT {BUCKET_COLUMNS} FROM load_results WHERE tenant = $1 AND job = $2 AND second = $3 FOR UPDATE"
            ))
            .await?;
        let insert = tx
            .prepare_cached(&format!(
                "INSERT INTO load_results (tenant, job, {BUCKET_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 ON CONFLICT (tenant, job, second) DO NOTHING"
            ))
            .await?;
        let update = tx
            .prepare_cached(
                "UPDATE load_results SET count = $4, errors = $5, p50_us = $6, p90_us = $7, p99_us = $8, max_us = $9,
                   latency = $10, updated_ms = $11 WHERE tenant = $1 AND job = $2 AND second = $3",
            )
            .await?;
        for new in buckets {
            loop {
                let old = tx.query_opt(&select, &[&tenant, &job, &new.second]).await?;
                let (row, statement) = match old {
                    Some(old) => (merge(&bucket(&old, 0)?, &new).map_err(StoreError::Task)?, &update),
                    None => (new.clone(), &insert),
                };
                let written = tx
                    .execute(
                        statement,
                        &[
                            &tenant,
                            &job,
                            &row.second,
                            &row.count,
                            &row.errors,
                            &row.p50_us,
                            &row.p90_us,
                            &row.p99_us,
                            &row.max_us,
                            &row.latency,
                            &row.updated_ms,
                        ],
                    )
                    .await?;
                // 0: another transaction inserted this second meanwhile; merge with its row.
                if written > 0 {
                    break;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn find_load_jobs(&self, tenant: &str, job: Option<&str>, limit: usize) -> Result<Vec<LoadJob>, StoreError> {
        let client = self.client().await?;
        let st = client.prepare_cached(&jobs_query(|i| format!("${i}"), "::text")).await?;
        let rows = client.query(&st, &[&tenant, &job, &(limit as i64)]).await?;
        rows.iter()
            .map(|r| {
                Ok(LoadJob {
                    job: r.try_get(0)?,
                    first_second: r.try_get::<_, Option<i64>>(1)?.unwrap_or(0),
                    last_second: r.try_get::<_, Option<i64>>(2)?.unwrap_or(0),
                    totals: bucket(r, 3)?,
                })
            })
            .collect()
    }

    async fn load_series(
        &self,
        tenant: &str,
        job: &str,
        since: i64,
        limit: usize,
    ) -> Result<Vec<LoadBucket>, StoreError> {
        let client = self.client().await?;
        let st = client
            .prepare_cached(&format!(
                "SELECT {BUCKET_COLUMNS} FROM load_results WHERE tenant = $1 AND job = $2 AND second >= $3
                 ORDER BY second LIMIT $4"
            ))
            .await?;
        let rows = client.query(&st, &[&tenant, &job, &since.max(0), &(limit as i64)]).await?;
        rows.iter().map(|r| bucket(r, 0)).collect()
    }

    async fn delete_load_job(&self, tenant: &str, job: &str) -> Result<bool, StoreError> {
        let client = self.client().await?;
        Ok(client.execute("DELETE FROM load_results WHERE tenant = $1 AND job = $2", &[&tenant, &job]).await? > 0)
    }
}
