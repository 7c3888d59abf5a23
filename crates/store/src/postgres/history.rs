//! History on PostgreSQL (see [`crate::history`]).
//!
//! ## Writing a batch (the history writer's group commit)
//!
//! One transaction per batch, committed before the writer acknowledges any of its
//! readings:
//! 1. `pg_advisory_xact_lock_shared(SERIES)`: whatever deletes series (a device's
//!    deletion, the purge of empty series) takes that lock exclusively, so no series can
//!    disappear between step 2 and the commit.
//! 2. Series ids: those in the cache are checked in one statement (`id = ANY($1)`), since
//!    another process may have deleted them; the rest are created with one
//!    `INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING` (keys sorted, so two
//!    writers creating the same new series cannot deadlock) and read back with one join.
//! 3. The readings go in with one binary `COPY history (series, ts, value) FROM STDIN`,
//!    the fastest bulk path measured (BENCHMARKS.md: 4,096 readings in ~11 ms committed).
//!
//! A batch therefore costs five round trips whatever its size. New ids enter the cache
//! only after the commit (a rolled-back series must not be remembered).

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use model::DeviceData;
use tokio_postgres::Row;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use super::{PgStore, lock};
use crate::StoreError;
use crate::history::{HistoryQuery, HistoryStore, Point};

/// Rows deleted per statement (and transaction) by the purges.
const CHUNK: i64 = 10_000;

type Key<'a> = (&'a str, &'a str, &'a str);

impl PgStore {
    async fn write_batch(&self, batch: &[Arc<DeviceData>]) -> Result<usize, StoreError> {
        let keys: BTreeSet<Key<'_>> = batch
            .iter()
            .flat_map(|d| d.attrs.keys().map(move |a| (d.tenant.as_str(), d.device_id.as_str(), a.as_str())))
            .collect();
        let mut ids: std::collections::HashMap<Key<'_>, i64> = {
            let cache = self.series_cache();
            keys.iter().filter_map(|k| cache.get(k.0, k.1, k.2).map(|id| (*k, id))).collect()
        };

        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(&tx.prepare_cached("SELECT pg_advisory_xact_lock_shared($1)").await?, &[&lock::SERIES]).await?;
        if !ids.is_empty() {
            let cached: Vec<i64> = ids.values().copied().collect();
            let st = tx.prepare_cached("SELECT id FROM series WHERE id = ANY($1)").await?;
            let alive: HashSet<i64> = tx.query(&st, &[&cached]).await?.iter().map(|r| r.get(0)).collect();
            if alive.len() < cached.len() {
                let mut cache = self.series_cache();
                ids.retain(|k, id| {
                    let keep = alive.contains(id);
                    if !keep {
                        cache.forget(k.0, k.1, k.2);
                    }
                    keep
                });
            }
        }
        let missing: Vec<Key<'_>> = keys.iter().filter(|k| !ids.contains_key(*k)).copied().collect();
        if !missing.is_empty() {
            let tenants: Vec<&str> = missing.iter().map(|k| k.0).collect();
            let devices: Vec<&str> = missing.iter().map(|k| k.1).collect();
            let attrs: Vec<&str> = missing.iter().map(|k| k.2).collect();
            let params: [&(dyn ToSql + Sync); 3] = [&tenants, &devices, &attrs];
            let create = tx
                .prepare_cached(
                    "INSERT INTO series (tenant, device_id, attr)
                     SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING",
                )
                .await?;
            tx.execute(&create, &params).await?;
            let read = tx
                .prepare_cached(
                    "SELECT s.id, k.i FROM series s
                     JOIN unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS k (tenant, device_id, attr, i)
                       ON s.tenant = k.tenant AND s.device_id = k.device_id AND s.attr = k.attr",
                )
                .await?;
            for r in tx.query(&read, &params).await? {
                // Ordinals count from 1.
                let i = usize::try_from(r.try_get::<_, i64>(1)? - 1).ok().filter(|i| *i < missing.len());
                let key = i.map(|i| missing[i]).ok_or_else(|| StoreError::Task("a series of no key asked".into()))?;
                ids.insert(key, r.try_get(0)?);
            }
        }

        let sink = tx.copy_in("COPY history (series, ts, value) FROM STDIN BINARY").await?;
        let writer = BinaryCopyInWriter::new(sink, &[Type::INT8, Type::INT8, Type::TEXT]);
        let mut writer = std::pin::pin!(writer);
        let mut n = 0;
        for data in batch {
            let ts = data.ts.timestamp_millis();
            for (attr, value) in &data.attrs {
                let key = (data.tenant.as_str(), data.device_id.as_str(), attr.as_str());
                let id = ids.get(&key).ok_or_else(|| StoreError::Task(format!("no series id for {key:?}")))?;
                writer.as_mut().write(&[id, &ts, &value.to_string()]).await?;
                n += 1;
            }
        }
        writer.finish().await?;
        fail::fail_point!("history-write-batch", |_| Err(StoreError::Task("injected failure".into())));
        tx.commit().await?;

        let mut cache = self.series_cache();
        for (k, id) in ids {
            if cache.get(k.0, k.1, k.2).is_none() {
                cache.insert(k.0, k.1, k.2, id);
            }
        }
        Ok(n)
    }

    /// Runs `sql` (whose last parameter is the chunk size) as statements of its own
    /// until one deletes fewer than a chunk; with `series`, each in a transaction holding
    /// the series lock, forgetting the `(tenant, device_id, attr)` rows it returns.
    async fn delete_in_chunks(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        series: bool,
    ) -> Result<usize, StoreError> {
        let mut all: Vec<&(dyn ToSql + Sync)> = params.to_vec();
        all.push(&CHUNK);
        let mut total = 0;
        loop {
            let mut client = self.client().await?;
            let n = if series {
                let tx = client.transaction().await?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock::SERIES]).await?;
                let rows = tx.query(sql, &all).await?;
                tx.commit().await?;
                let mut cache = self.series_cache();
                for r in &rows {
                    cache.forget(r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
                }
                rows.len()
            } else {
                client.execute(sql, &all).await? as usize
            };
            total += n;
            if (n as i64) < CHUNK {
                return Ok(total);
            }
        }
    }
}

fn point(attr: String, r: &Row, ts: usize) -> Result<Point, StoreError> {
    Ok(Point { attr, ts_ms: r.try_get(ts)?, value: serde_json::from_str(r.try_get(ts + 1)?)? })
}

#[async_trait::async_trait]
impl HistoryStore for PgStore {
    async fn write_history(&self, batch: Vec<Arc<DeviceData>>) -> Result<usize, StoreError> {
        self.write_batch(&batch).await
    }

    fn write_history_blocking(&self, batch: &[Arc<DeviceData>]) -> Result<usize, StoreError> {
        self.runtime.block_on(self.write_batch(batch))
    }

    async fn history_attrs(&self, tenant: &str, device_id: &str) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        let st =
            client.prepare_cached("SELECT attr FROM series WHERE tenant = $1 AND device_id = $2 ORDER BY attr").await?;
        client.query(&st, &[&tenant, &device_id]).await?.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    async fn history(&self, q: HistoryQuery) -> Result<Vec<Point>, StoreError> {
        let client = self.client().await?;
        let st =
            client.prepare_cached("SELECT id FROM series WHERE tenant = $1 AND device_id = $2 AND attr = $3").await?;
        let Some(series) = client.query_opt(&st, &[&q.tenant, &q.device_id, &q.attr]).await? else {
            return Ok(Vec::new());
        };
        let series: i64 = series.try_get(0)?;
        let order = if q.newest_first { "DESC" } else { "ASC" };
        let st = client
            .prepare_cached(&format!(
                "SELECT ts, value FROM history WHERE series = $1 AND ts >= $2 AND ts <= $3
                 ORDER BY ts {order}, id {order} LIMIT $4"
            ))
            .await?;
        let limit = q.limit.map(i64::from);
        let (from, to) = (q.from_ms.unwrap_or(i64::MIN), q.to_ms.unwrap_or(i64::MAX));
        let rows = client.query(&st, &[&series, &from, &to, &limit]).await?;
        rows.iter().map(|r| point(q.attr.clone(), r, 0)).collect()
    }

    async fn latest(&self, tenant: &str, device_id: &str) -> Result<Vec<Point>, StoreError> {
        let client = self.client().await?;
        let st = client
            .prepare_cached(
                "SELECT s.attr, h.ts, h.value FROM series s
                 CROSS JOIN LATERAL (SELECT ts, value FROM history WHERE series = s.id ORDER BY ts DESC, id DESC LIMIT 1) h
                 WHERE s.tenant = $1 AND s.device_id = $2 ORDER BY s.attr",
            )
            .await?;
        let rows = client.query(&st, &[&tenant, &device_id]).await?;
        rows.iter().map(|r| point(r.try_get(0)?, r, 1)).collect()
    }

    async fn purge_history(&self, tenant: &str, cutoff_ms: i64) -> Result<usize, StoreError> {
        self.delete_in_chunks(
            "DELETE FROM history WHERE ctid = ANY(ARRAY(
               SELECT h.ctid FROM series s JOIN history h ON h.series = s.id
               WHERE s.tenant = $1 AND h.ts < $2 LIMIT $3))",
            &[&tenant, &cutoff_ms],
            false,
        )
        .await
    }

    fn set_series_cache_limit(&self, max: usize) {
        self.series_cache().set_max(max);
    }

    fn series_cached(&self) -> usize {
        self.series_cache().len()
    }

    async fn purge_orphan_history(&self) -> Result<usize, StoreError> {
        let n = self
            .delete_in_chunks(
                "DELETE FROM history WHERE ctid = ANY(ARRAY(
                   SELECT h.ctid FROM dead_series d JOIN history h ON h.series = d.id LIMIT $1))",
                &[],
                false,
            )
            .await?;
        self.client()
            .await?
            .execute("DELETE FROM dead_series d WHERE NOT EXISTS (SELECT 1 FROM history h WHERE h.series = d.id)", &[])
            .await?;
        Ok(n)
    }

    async fn purge_empty_series(&self) -> Result<usize, StoreError> {
        self.delete_in_chunks(
            "DELETE FROM series WHERE id IN (
               SELECT s.id FROM series s WHERE NOT EXISTS (SELECT 1 FROM history h WHERE h.series = s.id) LIMIT $1)
             RETURNING tenant, device_id, attr",
            &[],
            true,
        )
        .await
    }
}
