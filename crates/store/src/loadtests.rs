//! Load-test results: what agents push to Ingot as a collector (`POST /push/<job>`, go-lo
//! Outputs), kept per tenant and job as one row per second of the Outputs' timestamps
//! and one for the whole job (`second` = [`WHOLE_JOB`]). Each row holds the count, the
//! errors, a few latency percentiles and the latency histogram itself, an opaque blob
//! (the `load` crate's encoding), in `load_results`.
//!
//! A push merges into the rows it touches, in one transaction, with the caller's
//! [`LoadMerge`] (which adds histograms and recomputes the percentiles): charts read one
//! small row per second, and a job's totals one row, however many agents pushed and
//! however often. On PostgreSQL the rows are locked (`FOR UPDATE`, in second order) so
//! that two nodes merging pushes of one job at once lose nothing.

use rusqlite::{OptionalExtension, params};

use crate::{SqliteStore, StoreError};

/// The `second` of a job's totals row.
pub const WHOLE_JOB: i64 = -1;

/// Results of one second (or the whole job) of one load test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBucket {
    /// Unix seconds, or [`WHOLE_JOB`].
    pub second: i64,
    pub count: i64,
    pub errors: i64,
    pub p50_us: i64,
    pub p90_us: i64,
    pub p99_us: i64,
    pub max_us: i64,
    /// The latency histogram, as the caller encodes it.
    pub latency: Vec<u8>,
    pub updated_ms: i64,
}

/// A job and its totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadJob {
    pub job: String,
    /// The first and last second with results.
    pub first_second: i64,
    pub last_second: i64,
    pub totals: LoadBucket,
}

/// Merges a stored row (first) with new results of the same second (second).
pub type LoadMerge = fn(&LoadBucket, &LoadBucket) -> Result<LoadBucket, String>;

/// Load-test results, every query scoped by tenant.
#[async_trait::async_trait]
pub trait LoadTestStore: Send + Sync {
    /// Adds `buckets` (one per second, and the whole job's) to job `job` of `tenant`,
    /// merging each with the row of its second if there is one; all or nothing.
    async fn add_load_results(
        &self,
        tenant: &str,
        job: &str,
        buckets: Vec<LoadBucket>,
        merge: LoadMerge,
    ) -> Result<(), StoreError>;
    /// The tenant's jobs (or only `job`), the most recently updated first.
    async fn find_load_jobs(&self, tenant: &str, job: Option<&str>, limit: usize) -> Result<Vec<LoadJob>, StoreError>;
    /// The tenant's jobs, the most recently updated first.
    async fn load_jobs(&self, tenant: &str, limit: usize) -> Result<Vec<LoadJob>, StoreError> {
        self.find_load_jobs(tenant, None, limit).await
    }
    /// One job (with its totals), if it has results.
    async fn load_job(&self, tenant: &str, job: &str) -> Result<Option<LoadJob>, StoreError> {
        Ok(self.find_load_jobs(tenant, Some(job), 1).await?.pop())
    }
    /// A job's seconds from `since` on, oldest first, at most `limit`.
    async fn load_series(
        &self,
        tenant: &str,
        job: &str,
        since: i64,
        limit: usize,
    ) -> Result<Vec<LoadBucket>, StoreError>;
    /// Forgets a job's results; whether it had any.
    async fn delete_load_job(&self, tenant: &str, job: &str) -> Result<bool, StoreError>;
}

pub(crate) const BUCKET_COLUMNS: &str = "second, count, errors, p50_us, p90_us, p99_us, max_us, latency, updated_ms";

fn bucket(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<LoadBucket> {
    Ok(LoadBucket {
        second: r.get(at)?,
        count: r.get(at + 1)?,
        errors: r.get(at + 2)?,
        p50_us: r.get(at + 3)?,
        p90_us: r.get(at + 4)?,
        p99_us: r.get(at + 5)?,
        max_us: r.get(at + 6)?,
        latency: r.get(at + 7)?,
        updated_ms: r.get(at + 8)?,
    })
}

/// The jobs query, for one job or all (`job` NULL); `text` casts the job's placeholder
/// (PostgreSQL cannot tell the type of a parameter only compared with NULL).
pub(crate) fn jobs_query(placeholder: impl Fn(usize) -> String, text: &str) -> String {
    let (tenant, job, limit) = (placeholder(1), format!("{}{text}", placeholder(2)), placeholder(3));
    format!(
        "SELECT t.job,
            (SELECT MIN(s.second) FROM load_results s WHERE s.tenant = t.tenant AND s.job = t.job AND s.second >= 0),
            (SELECT MAX(s.second) FROM load_results s WHERE s.tenant = t.tenant AND s.job = t.job AND s.second >= 0),
            {}
         FROM load_results t WHERE t.tenant = {tenant} AND t.second = -1 AND ({job} IS NULL OR t.job = {job})
         ORDER BY t.updated_ms DESC, t.job LIMIT {limit}",
        BUCKET_COLUMNS.split(", ").map(|c| format!("t.{c}")).collect::<Vec<_>>().join(", ")
    )
}

#[async_trait::async_trait]
impl LoadTestStore for SqliteStore {
    async fn add_load_results(
        &self,
        tenant: &str,
        job: &str,
        buckets: Vec<LoadBucket>,
        merge: LoadMerge,
    ) -> Result<(), StoreError> {
        let (tenant, job) = (tenant.to_string(), job.to_string());
        self.write(move |tx| {
            for new in buckets {
                let old = tx
                    .prepare_cached(&format!(
                        "SELECT {BUCKET_COLUMNS} FROM load_results WHERE tenant = ?1 AND job = ?2 AND second = ?3"
                    ))?
                    .query_row(params![tenant, job, new.second], |r| bucket(r, 0))
                    .optional()?;
                let row = match old {
                    Some(old) => merge(&old, &new).map_err(StoreError::Task)?,
                    None => new,
                };
                tx.prepare_cached(&format!(
                    "INSERT INTO load_results (tenant, job, {BUCKET_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT (tenant, job, second) DO UPDATE SET count = excluded.count, errors = excluded.errors,
                       p50_us = excluded.p50_us, p90_us = excluded.p90_us, p99_us = excluded.p99_us,
                       max_us = excluded.max_us, latency = excluded.latency, updated_ms = excluded.updated_ms"
                ))?
                .execute(params![
                    tenant,
                    job,
                    row.second,
                    row.count,
                    row.errors,
                    row.p50_us,
                    row.p90_us,
                    row.p99_us,
                    row.max_us,
                    row.latency,
                    row.updated_ms
                ])?;
            }
            Ok(())
        })
        .await
    }

    async fn find_load_jobs(&self, tenant: &str, job: Option<&str>, limit: usize) -> Result<Vec<LoadJob>, StoreError> {
        let (tenant, job) = (tenant.to_string(), job.map(str::to_string));
        self.read(move |c| {
            let mut st = c.prepare_cached(&jobs_query(|i| format!("?{i}"), ""))?;
            let rows = st.query_map(params![tenant, job, limit as i64], |r| {
                Ok(LoadJob {
                    job: r.get(0)?,
                    first_second: r.get::<_, Option<i64>>(1)?.unwrap_or(0),
                    last_second: r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                    totals: bucket(r, 3)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn load_series(
        &self,
        tenant: &str,
        job: &str,
        since: i64,
        limit: usize,
    ) -> Result<Vec<LoadBucket>, StoreError> {
        let (tenant, job) = (tenant.to_string(), job.to_string());
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {BUCKET_COLUMNS} FROM load_results WHERE tenant = ?1 AND job = ?2 AND second >= ?3
                 ORDER BY second LIMIT ?4"
            ))?;
            let rows = st.query_map(params![tenant, job, since.max(0), limit as i64], |r| bucket(r, 0))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn delete_load_job(&self, tenant: &str, job: &str) -> Result<bool, StoreError> {
        let (tenant, job) = (tenant.to_string(), job.to_string());
        self.write(move |tx| {
            Ok(tx.execute("DELETE FROM load_results WHERE tenant = ?1 AND job = ?2", params![tenant, job])? > 0)
        })
        .await
    }
}
