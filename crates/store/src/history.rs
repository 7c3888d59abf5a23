//! Readings over time: one row per (series, ts), a series being (tenant, device, attribute).
//!
//! SQLite writes them to an append-only log first, kept in memory too, and moves them
//! into `history` in sorted slices (`history::stage`); readers read both, and time
//! buckets are summed up as the values are read (`Summing`), on PostgreSQL in SQL.

mod stage;

pub use stage::{DEFAULT_STAGE_SECS, DEFAULT_STAGE_VALUES};
pub(crate) use stage::{Stage, Staged};

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use model::DeviceData;
use rusqlite::{OptionalExtension, Transaction, params};
use serde_json::Value;

use crate::{SqliteStore, StoreError};

/// One stored value.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub attr: String,
    pub ts_ms: i64,
    pub value: Value,
}

/// Which readings a history query wants.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub tenant: String,
    pub device_id: String,
    pub attr: String,
    /// Inclusive bounds, ms since the epoch.
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub newest_first: bool,
    pub limit: Option<u32>,
}

/// How the readings of one time bucket are summed up ([`HistoryStore::history_buckets`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// Mean of the numeric values.
    Avg,
    /// Smallest numeric value.
    Min,
    /// Largest numeric value.
    Max,
    /// Sum of the numeric values.
    Sum,
    /// Number of readings, of any type.
    Count,
}

impl Aggregate {
    /// The aggregate's SQL (of a column `num`, a number or NULL), and what it counts.
    fn sql(self) -> (&'static str, &'static str) {
        match self {
            Self::Avg => ("avg(num)", "count(num)"),
            Self::Min => ("min(num)", "count(num)"),
            Self::Max => ("max(num)", "count(num)"),
            Self::Sum => ("sum(num)", "count(num)"),
            Self::Count => ("count(*)", "count(*)"),
        }
    }

    /// The aggregate's column as JSON: an integer for count, a float otherwise.
    pub(crate) fn value<E>(
        self,
        int: impl FnOnce() -> Result<i64, E>,
        float: impl FnOnce() -> Result<f64, E>,
    ) -> Result<Value, E> {
        Ok(match self {
            Self::Count => Value::from(int()?),
            _ => serde_json::Number::from_f64(float()?).map_or(Value::Null, Value::Number),
        })
    }
}

/// One time bucket of a series ([`HistoryStore::history_buckets`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    /// The bucket's start, ms since the epoch (a multiple of its length).
    pub start_ms: i64,
    /// The aggregate: a float for avg, min, max and sum, an integer for count.
    pub value: Value,
    /// Readings it summed up (numeric ones, but for count).
    pub count: u64,
}

/// A bus's id for one reading it may deliver more than once (NATS JetStream redelivers
/// what a crashed consumer did not acknowledge): see [`HistoryStore::write_history_blocking`].
pub type ReadingId = u128;

/// How long ids of stored readings are kept to recognise a redelivery: far beyond any
/// redelivery delay (JetStream's ack wait is seconds).
pub const INGESTED_KEEP_MS: i64 = 24 * 3600 * 1000;

/// Default bound of the series cache, in series.
pub const DEFAULT_SERIES_CACHE: usize = 100_000;

/// Series ids the writer has seen, bounded: tenant → device → attribute → id.
///
/// Nested so that a lookup (once per stored value, the writer's hot path) borrows the
/// reading's strings instead of allocating a key. Beyond `max` series, a whole device's
/// entries are evicted (an arbitrary one: no bookkeeping on the hot path); a miss costs
/// two indexed statements, so eviction only costs time, never correctness.
///
/// It lives in the store, not in the writer, because it must change in the same
/// transaction as the `series` rows: deleting a device or purging empty series evicts
/// them here too, so no id in the cache ever names a deleted series.
#[derive(Debug)]
pub(crate) struct SeriesCache {
    map: HashMap<String, HashMap<String, HashMap<String, i64>>>,
    len: usize,
    max: usize,
}

impl SeriesCache {
    pub(crate) fn new(max: usize) -> Self {
        Self { map: HashMap::new(), len: 0, max: max.max(1) }
    }

    pub(crate) fn get(&self, tenant: &str, device: &str, attr: &str) -> Option<i64> {
        self.map.get(tenant)?.get(device)?.get(attr).copied()
    }

    pub(crate) fn insert(&mut self, tenant: &str, device: &str, attr: &str, id: i64) {
        while self.len >= self.max && self.evict_one_device() {}
        let attrs = self.map.entry(tenant.to_string()).or_default().entry(device.to_string()).or_default();
        if attrs.insert(attr.to_string(), id).is_none() {
            self.len += 1;
        }
    }

    fn evict_one_device(&mut self) -> bool {
        let Some(tenant) = self.map.keys().next().cloned() else { return false };
        let devices = self.map.get_mut(&tenant).expect("key just seen");
        if let Some(device) = devices.keys().next().cloned() {
            self.len -= devices.remove(&device).map_or(0, |a| a.len());
        }
        if devices.is_empty() {
            self.map.remove(&tenant);
        }
        metrics::counter!("ingot_history_series_cache_evictions_total").increment(1);
        true
    }

    pub(crate) fn forget_device(&mut self, tenant: &str, device: &str) {
        if let Some(devices) = self.map.get_mut(tenant) {
            self.len -= devices.remove(device).map_or(0, |a| a.len());
        }
    }

    pub(crate) fn forget(&mut self, tenant: &str, device: &str, attr: &str) {
        if let Some(attrs) = self.map.get_mut(tenant).and_then(|d| d.get_mut(device))
            && attrs.remove(attr).is_some()
        {
            self.len -= 1;
        }
    }

    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.len = 0;
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn set_max(&mut self, max: usize) {
        self.max = max.max(1);
    }
}

/// Locks a series cache; a panic while it was held leaves at worst ids of rolled-back
/// series behind, so a poisoned cache is cleared, not trusted.
pub(crate) fn lock_cache(cache: &std::sync::Mutex<SeriesCache>) -> std::sync::MutexGuard<'_, SeriesCache> {
    cache.lock().unwrap_or_else(|poisoned| {
        cache.clear_poison();
        let mut guard = poisoned.into_inner();
        guard.clear();
        guard
    })
}

/// Stores every attribute of every reading in one transaction on the calling thread,
/// skipping readings whose id (`ids[i]` for `batch[i]`) was stored before.
fn write_batch(store: &SqliteStore, batch: &[Arc<DeviceData>], ids: Option<&[ReadingId]>) -> Result<usize, StoreError> {
    write_batch_then(store, batch, ids, |_| ())
}

/// [`write_batch`], calling `committed` with what the transaction changed once it has
/// committed, before the staged values in memory change (tests: what readers see then).
fn write_batch_then(
    store: &SqliteStore,
    batch: &[Arc<DeviceData>],
    ids: Option<&[ReadingId]>,
    committed: impl FnOnce(&stage::Plan),
) -> Result<usize, StoreError> {
    let inner = &store.inner;
    store
        .write_blocking_then(
            |tx| {
                let mut cache = inner.series_cache();
                let mut stage = inner.stage();
                let mut n = stage.begin(tx, &inner.staged)?;
                let mut plan = stage::Plan::default();
                let mut log =
                    tx.prepare_cached("INSERT INTO history_log (n, series, ts, value) VALUES (?1, ?2, ?3, ?4)")?;
                let mut seen = tx.prepare_cached("INSERT OR IGNORE INTO ingested (id, ms) VALUES (?1, ?2)")?;
                let now = crate::now_ms();
                for (i, data) in batch.iter().enumerate() {
                    if let Some(id) = ids.and_then(|ids| ids.get(i))
                        && seen.execute(params![id.to_be_bytes().as_slice(), now])? == 0
                    {
                        continue; // stored before: a redelivery
                    }
                    let ts = data.ts.timestamp_millis();
                    for (attr, value) in &data.attrs {
                        let id = series_id(tx, &mut cache, &data.tenant, &data.device_id, attr)?;
                        let value = value.to_string();
                        log.execute(params![n, id, ts, value])?;
                        plan.logged(id, ts, n, value);
                        n += 1;
                    }
                }
                stage.end(tx, &inner.staged, &mut plan)?;
                fail::fail_point!("history-write-batch", |_| Err(StoreError::Task("injected failure".into())));
                Ok(plan)
            },
            |plan| {
                committed(&plan);
                let written = plan.written();
                inner.stage().apply(&inner.staged, plan);
                written
            },
        )
        .inspect_err(|_| {
            // A failed transaction may have rolled back series rows the cache now names,
            // and log rows the stage counted.
            inner.series_cache().clear();
            inner.stage().invalidate();
        })
}

/// Registers `ingot_staged(series)` on the writer's connection `c`: whether the series
/// has staged values (SQL of write transactions only: the writer's view is exact there).
pub(crate) fn register_functions(
    c: &rusqlite::Connection,
    staged: &Arc<std::sync::RwLock<Staged>>,
) -> Result<(), StoreError> {
    let staged = staged.clone();
    c.create_scalar_function("ingot_staged", 1, rusqlite::functions::FunctionFlags::SQLITE_UTF8, move |ctx| {
        Ok(stage::read(&staged).has(ctx.get::<i64>(0)?))
    })?;
    Ok(())
}

impl crate::Inner {
    fn series_cache(&self) -> std::sync::MutexGuard<'_, SeriesCache> {
        lock_cache(&self.series)
    }

    /// The staging table's state; a panic while it was held leaves it unknown, so it is
    /// reloaded.
    fn stage(&self) -> std::sync::MutexGuard<'_, stage::Stage> {
        self.stage.lock().unwrap_or_else(|poisoned| {
            self.stage.clear_poison();
            let mut guard = poisoned.into_inner();
            guard.invalidate();
            guard
        })
    }
}

fn series_id(
    tx: &Transaction<'_>,
    cache: &mut SeriesCache,
    tenant: &str,
    device: &str,
    attr: &str,
) -> Result<i64, StoreError> {
    if let Some(id) = cache.get(tenant, device, attr) {
        return Ok(id);
    }
    tx.prepare_cached("INSERT OR IGNORE INTO series (tenant, device_id, attr) VALUES (?1, ?2, ?3)")?
        .execute(params![tenant, device, attr])?;
    let id = tx
        .prepare_cached("SELECT id FROM series WHERE tenant = ?1 AND device_id = ?2 AND attr = ?3")?
        .query_row(params![tenant, device, attr], |r| r.get(0))?;
    cache.insert(tenant, device, attr, id);
    Ok(id)
}

/// Starts a read transaction on `c` for `q`'s series: its id and what `take` takes of
/// its staged values (under the read lock), or `None` if it never had a reading.
fn begin_series<'c, T>(
    c: &'c rusqlite::Connection,
    inner: &crate::Inner,
    q: &HistoryQuery,
    take: impl FnOnce(&Staged, i64, stage::Moved) -> T,
) -> Result<Option<(Transaction<'c>, i64, T)>, StoreError> {
    let (tx, taken) = stage::begin_read(c, &inner.staged, |tx, staged, moved| {
        let id = series_named(tx, &q.tenant, &q.device_id, &q.attr)?;
        Ok(id.map(|id| (id, take(staged, id, moved))))
    })?;
    Ok(taken.map(|(id, taken)| (tx, id, taken)))
}

/// The id of a series, if it has ever had a reading.
fn series_named(c: &rusqlite::Connection, tenant: &str, device: &str, attr: &str) -> Result<Option<i64>, StoreError> {
    Ok(c.prepare_cached("SELECT id FROM series WHERE tenant = ?1 AND device_id = ?2 AND attr = ?3")?
        .query_row(params![tenant, device, attr], |r| r.get(0))
        .optional()?)
}

/// Deletes a device's series and evicts them from the cache, inside the caller's write
/// transaction. Its readings are left for retention to remove in chunks (listed in
/// `dead_series`), so deleting a device with millions of readings stays one quick
/// transaction; series ids are never reused (AUTOINCREMENT), so they cannot resurface.
pub(crate) fn forget_device(
    inner: &crate::Inner,
    tx: &Transaction<'_>,
    tenant: &str,
    device: &str,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO dead_series (id) SELECT id FROM series WHERE tenant = ?1 AND device_id = ?2",
    )?
    .execute(params![tenant, device])?;
    tx.prepare_cached("DELETE FROM series WHERE tenant = ?1 AND device_id = ?2")?.execute(params![tenant, device])?;
    inner.series_cache().forget_device(tenant, device);
    Ok(())
}

/// Readings over time, one series per (tenant, device, attribute).
#[async_trait::async_trait]
pub trait HistoryStore: Send + Sync {
    /// Stores every attribute of every reading in one transaction (group commit); returns
    /// the number of values written. An `Ok` means committed.
    async fn write_history(&self, batch: Vec<Arc<DeviceData>>) -> Result<usize, StoreError>;

    /// [`Self::write_history`] for a thread of its own (the history writer), which it
    /// blocks; never call it from an async task. With `ids` (one per reading of `batch`,
    /// from a bus that may deliver a reading twice), a reading whose id was stored in the
    /// last [`INGESTED_KEEP_MS`] is skipped, in the same transaction, so a redelivery is
    /// never stored twice.
    fn write_history_blocking(&self, batch: &[Arc<DeviceData>], ids: Option<&[ReadingId]>)
    -> Result<usize, StoreError>;

    /// Forgets the ids of readings stored before `cutoff_ms`; returns how many.
    async fn purge_ingested(&self, cutoff_ms: i64) -> Result<usize, StoreError>;

    /// The attributes a device has history for, sorted.
    async fn history_attrs(&self, tenant: &str, device_id: &str) -> Result<Vec<String>, StoreError>;

    /// Readings of one attribute, per `q`.
    async fn history(&self, q: HistoryQuery) -> Result<Vec<Point>, StoreError>;

    /// Readings of one attribute per `q` (bounds, order; `limit` counts buckets) summed
    /// up in buckets of `bucket_ms` aligned on the epoch; buckets without readings to sum
    /// up (for avg, min, max and sum: without a numeric value) are left out.
    async fn history_buckets(
        &self,
        q: HistoryQuery,
        bucket_ms: i64,
        aggregate: Aggregate,
    ) -> Result<Vec<Bucket>, StoreError>;

    /// The newest value of every attribute of a device.
    async fn latest(&self, tenant: &str, device_id: &str) -> Result<Vec<Point>, StoreError>;

    /// Deletes a tenant's readings older than `cutoff_ms`; returns how many. Works in
    /// chunks so that device writes are not held up behind one huge transaction.
    async fn purge_history(&self, tenant: &str, cutoff_ms: i64) -> Result<usize, StoreError>;

    /// Deletes the readings of deleted devices (series listed in `dead_series`); returns
    /// how many.
    async fn purge_orphan_history(&self) -> Result<usize, StoreError>;

    /// Deletes series that have no readings left (all expired, or never written), so
    /// labels a device sent once do not stay forever; returns how many.
    async fn purge_empty_series(&self) -> Result<usize, StoreError>;

    /// Bounds the writer's cache of series ids to `max` series.
    fn set_series_cache_limit(&self, max: usize);

    /// Series in that cache now (for tests and metrics).
    fn series_cached(&self) -> usize;
}

#[async_trait::async_trait]
impl HistoryStore for SqliteStore {
    async fn write_history(&self, batch: Vec<Arc<DeviceData>>) -> Result<usize, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || write_batch(&store, &batch, None))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    fn write_history_blocking(
        &self,
        batch: &[Arc<DeviceData>],
        ids: Option<&[ReadingId]>,
    ) -> Result<usize, StoreError> {
        write_batch(self, batch, ids)
    }

    async fn purge_ingested(&self, cutoff_ms: i64) -> Result<usize, StoreError> {
        self.delete_in_chunks(move |tx, chunk| {
            Ok(tx.execute(
                "DELETE FROM ingested WHERE id IN (SELECT id FROM ingested WHERE ms < ?1 LIMIT ?2)",
                params![cutoff_ms, chunk],
            )?)
        })
        .await
    }

    async fn history_attrs(&self, tenant: &str, device_id: &str) -> Result<Vec<String>, StoreError> {
        let (tenant, device_id) = (tenant.to_string(), device_id.to_string());
        self.read(move |c| {
            let mut st =
                c.prepare_cached("SELECT attr FROM series WHERE tenant = ?1 AND device_id = ?2 ORDER BY attr")?;
            Ok(st.query_map(params![tenant, device_id], |r| r.get(0))?.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn history(&self, q: HistoryQuery) -> Result<Vec<Point>, StoreError> {
        let inner = self.inner.clone();
        self.read(move |c| {
            let ((from, to), limit) = (q.bounds(), q.limit.map(i64::from).unwrap_or(-1));
            let take = |staged: &Staged, id, moved| staged.values(id, (from, to), moved, q.newest_first, limit);
            let Some((tx, id, staged)) = begin_series(c, &inner, &q, take)? else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            for (ts_ms, value) in stage::read_series(&tx, id, staged, from, to, q.newest_first, limit)? {
                out.push(Point { attr: q.attr.clone(), ts_ms, value: serde_json::from_str(&value)? });
            }
            Ok(out)
        })
        .await
    }

    async fn history_buckets(
        &self,
        q: HistoryQuery,
        bucket_ms: i64,
        aggregate: Aggregate,
    ) -> Result<Vec<Bucket>, StoreError> {
        let inner = self.inner.clone();
        self.read(move |c| {
            let ((from, to), limit) = (q.bounds(), q.limit.map(i64::from).unwrap_or(-1));
            let bucket_ms = bucket_ms.max(1); // the service asks for 1 s and up; never divide by 0
            // The staged values are summed up in place, per bucket, under the read lock
            // (neither copied nor handed to SQLite), then merged with `history`'s sums.
            let take =
                |staged: &Staged, id, moved| staged.buckets(id, (from, to), moved, Summing::new(bucket_ms, aggregate));
            let Some((tx, id, mut sums)) = begin_series(c, &inner, &q, take)? else {
                return Ok(Vec::new());
            };
            // `history`'s rows, in the order asked, summed up alike (cheaper than SQL's
            // GROUP BY, which sorts), as far as its first `limit` buckets: any later one
            // has `limit` buckets before it.
            let order = if q.newest_first { "DESC" } else { "ASC" };
            let sql = format!(
                "SELECT ts, value FROM history WHERE series = ?1 AND ts >= ?2 AND ts <= ?3 ORDER BY ts {order}"
            );
            let mut st = tx.prepare_cached(&sql)?;
            let mut rows = st.query(params![id, from, to])?;
            let (mut stored, most) = (Summing::new(bucket_ms, aggregate), usize::try_from(limit).unwrap_or(usize::MAX));
            while let Some(r) = rows.next()? {
                let value = r.get_ref(1)?.as_str().map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
                })?;
                stored.add(r.get(0)?, value);
                if stored.answered >= most {
                    break; // the bucket just begun comes after `limit` others
                }
            }
            for (start, part) in stored.finish() {
                sums.entry(start).or_default().merge(&part);
            }
            let buckets = sums.into_iter().filter_map(|(start, sums)| sums.bucket(start, aggregate));
            Ok(if q.newest_first { buckets.rev().take(most).collect() } else { buckets.take(most).collect() })
        })
        .await
    }

    async fn latest(&self, tenant: &str, device_id: &str) -> Result<Vec<Point>, StoreError> {
        let (tenant, device_id) = (tenant.to_string(), device_id.to_string());
        let inner = self.inner.clone();
        self.read(move |c| {
            let (tx, series) = stage::begin_read(c, &inner.staged, |tx, staged, moved| {
                let mut st = tx
                    .prepare_cached("SELECT attr, id FROM series WHERE tenant = ?1 AND device_id = ?2 ORDER BY attr")?;
                let series = st.query_map(params![tenant, device_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
                series
                    .map(|row| {
                        let (attr, id): (String, i64) = row?;
                        Ok((attr, id, staged.values(id, (i64::MIN, i64::MAX), moved, true, 1)))
                    })
                    .collect::<Result<Vec<_>, StoreError>>()
            })?;
            let mut out = Vec::new();
            for (attr, id, staged) in series {
                if let Some((ts_ms, value)) = stage::read_series(&tx, id, staged, i64::MIN, i64::MAX, true, 1)?.pop() {
                    out.push(Point { attr, ts_ms, value: serde_json::from_str(&value)? });
                }
            }
            Ok(out)
        })
        .await
    }

    async fn purge_history(&self, tenant: &str, cutoff_ms: i64) -> Result<usize, StoreError> {
        let (tenant, of) = (tenant.to_string(), tenant.to_string());
        self.purge_by_series(
            move |tx, from| series_from(tx, TENANT_SERIES, params![of, from, PURGE_SERIES]),
            move |tx, (lo, hi)| {
                Ok(tx.prepare_cached(EXPIRED)?.execute(params![lo, hi, tenant, cutoff_ms, PURGE_ROWS])?)
            },
            move |ts| ts < cutoff_ms,
        )
        .await
    }

    async fn purge_orphan_history(&self) -> Result<usize, StoreError> {
        let n = self
            .purge_by_series(
                |tx, from| {
                    series_from(
                        tx,
                        "SELECT id FROM dead_series WHERE id >= ?1 ORDER BY id LIMIT ?2",
                        params![from, PURGE_SERIES],
                    )
                },
                |tx, (lo, hi)| Ok(tx.prepare_cached(ORPHANS)?.execute(params![lo, hi, PURGE_ROWS])?),
                |_| true,
            )
            .await?;
        self.write(|tx| {
            Ok(tx.execute(&format!("DELETE FROM dead_series WHERE {}", no_readings("dead_series.id")), [])?)
        })
        .await?;
        Ok(n)
    }

    async fn purge_empty_series(&self) -> Result<usize, StoreError> {
        let inner = self.inner.clone();
        self.purge_by_series(
            |tx, from| {
                series_from(
                    tx,
                    "SELECT id FROM series WHERE id >= ?1 ORDER BY id LIMIT ?2",
                    params![from, PURGE_SERIES],
                )
            },
            move |tx, (lo, hi)| {
                let mut st = tx.prepare_cached(&format!(
                    "DELETE FROM series WHERE id BETWEEN ?1 AND ?2 AND {} RETURNING tenant, device_id, attr",
                    no_readings("series.id")
                ))?;
                let mut rows = st.query(params![lo, hi])?;
                let mut cache = inner.series_cache();
                let mut n = 0;
                while let Some(r) = rows.next()? {
                    cache.forget(&r.get::<_, String>(0)?, &r.get::<_, String>(1)?, &r.get::<_, String>(2)?);
                    n += 1;
                }
                Ok(n)
            },
            // An empty series has nothing staged.
            |_| false,
        )
        .await
    }

    fn set_series_cache_limit(&self, max: usize) {
        self.inner.series_cache().set_max(max);
    }

    fn series_cached(&self) -> usize {
        self.inner.series_cache().len()
    }
}

impl HistoryQuery {
    /// The inclusive bounds, open ends as the extreme values.
    pub(crate) fn bounds(&self) -> (i64, i64) {
        (self.from_ms.unwrap_or(i64::MIN), self.to_ms.unwrap_or(i64::MAX))
    }
}

/// The query of [`HistoryStore::history_buckets`] on PostgreSQL: `rows` selects
/// (ts, value) of the series within the bounds, `num` is a value as a number or NULL,
/// `bucket` the bucket length's parameter. Columns: start, aggregate, count.
pub(crate) fn bucket_sql(rows: &str, num: &str, bucket: &str, aggregate: Aggregate, newest_first: bool) -> String {
    let order = if newest_first { "DESC" } else { "ASC" };
    let (value, counted) = aggregate.sql();
    format!(
        "SELECT start, {value}, {counted} FROM (
           SELECT ts - (((ts % {bucket}) + {bucket}) % {bucket}) AS start, {num} AS num FROM ({rows}) AS readings
         ) AS b GROUP BY start HAVING {counted} > 0 ORDER BY start {order}"
    )
}

/// What a bucket's aggregate is made of, in a form that adds up across two sets of
/// readings (on SQLite: those in `history` and those staged).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Sums {
    /// Readings, of any type.
    all: i64,
    /// Numeric readings, and their sum, least and greatest.
    counted: i64,
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
}

impl Sums {
    /// Adds a value as stored (JSON): a number when it starts with a digit or a minus
    /// sign, as PostgreSQL's SQL decides too.
    fn add(&mut self, value: &str) {
        self.all += 1;
        if value.starts_with(|c: char| c.is_ascii_digit() || c == '-')
            && let Ok(num) = value.parse::<f64>()
        {
            self.merge(&Self { all: 0, counted: 1, sum: num, min: Some(num), max: Some(num) });
        }
    }

    fn merge(&mut self, other: &Self) {
        self.all += other.all;
        self.counted += other.counted;
        self.sum += other.sum;
        self.min = [self.min, other.min].into_iter().flatten().reduce(f64::min);
        self.max = [self.max, other.max].into_iter().flatten().reduce(f64::max);
    }

    /// How many of the bucket's readings `aggregate` sums up: all for count, the numeric
    /// ones otherwise (0: no bucket).
    fn count(&self, aggregate: Aggregate) -> i64 {
        if aggregate == Aggregate::Count { self.all } else { self.counted }
    }

    /// The bucket starting at `start`, or `None` if `aggregate` has nothing in it to sum
    /// up.
    fn bucket(&self, start: i64, aggregate: Aggregate) -> Option<Bucket> {
        let count = self.count(aggregate);
        if count == 0 {
            return None;
        }
        let float = match aggregate {
            Aggregate::Avg => self.sum / self.counted as f64,
            Aggregate::Min => self.min.unwrap_or(f64::NAN),
            Aggregate::Max => self.max.unwrap_or(f64::NAN),
            Aggregate::Sum | Aggregate::Count => self.sum,
        };
        let Ok(value) = aggregate.value(|| Ok::<_, std::convert::Infallible>(self.all), || Ok(float));
        Some(Bucket { start_ms: start, value, count: count as u64 })
    }
}

/// Readings summed up in buckets of `bucket_ms` aligned on the epoch, by start; fed in
/// any order, fastest in time order (a series' readings mostly come so).
pub(crate) struct Summing {
    bucket_ms: i64,
    aggregate: Aggregate,
    buckets: BTreeMap<i64, Sums>,
    last: Option<(i64, Sums)>,
    /// Of readings fed in time order: buckets complete that `aggregate` answers with.
    answered: usize,
}

impl Summing {
    pub(crate) fn new(bucket_ms: i64, aggregate: Aggregate) -> Self {
        Self { bucket_ms, aggregate, buckets: BTreeMap::new(), last: None, answered: 0 }
    }

    /// Adds a value (as stored) read at `ts`.
    pub(crate) fn add(&mut self, ts: i64, value: &str) {
        let start = ts - ts.rem_euclid(self.bucket_ms);
        if let Some((at, sums)) = &mut self.last
            && *at == start
        {
            sums.add(value);
            return;
        }
        self.flush();
        let mut sums = Sums::default();
        sums.add(value);
        self.last = Some((start, sums));
    }

    fn flush(&mut self) {
        if let Some((at, sums)) = self.last.take() {
            let answers = sums.count(self.aggregate) > 0;
            match self.buckets.entry(at) {
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(sums);
                    self.answered += usize::from(answers);
                }
                std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().merge(&sums),
            }
        }
    }

    /// The buckets with readings, by start.
    pub(crate) fn finish(mut self) -> BTreeMap<i64, Sums> {
        self.flush();
        self.buckets
    }
}

/// At most `?3` of tenant `?1`'s series from `?2`, in order. `+`: by the primary key from
/// `?2`, not all the tenant's series by its index on `tenant`, then sorted, every chunk.
const TENANT_SERIES: &str = "SELECT id FROM series WHERE +tenant = ?1 AND id >= ?2 ORDER BY id LIMIT ?3";

/// Deletes at most `?5` readings older than `?4` of tenant `?3`'s series within `?1..=?2`.
/// `CROSS JOIN`: the range's series are the outer loop, one index seek each; `+` keeps
/// SQLite from reading all the tenant's series by its index on `tenant` instead.
const EXPIRED: &str = "DELETE FROM history WHERE rowid IN (
    SELECT h.rowid FROM series s CROSS JOIN history h ON h.series = s.id
    WHERE s.id BETWEEN ?1 AND ?2 AND +s.tenant = ?3 AND h.ts < ?4 LIMIT ?5)";

/// Deletes at most `?3` readings of deleted devices whose series are within `?1..=?2`.
/// `CROSS JOIN` keeps `dead_series` the outer loop: without statistics SQLite chose to
/// scan all of `history`'s index and look each row up in `dead_series` (0.8 s over 10 M
/// readings, with the writer's lock held, at every retention pass, even with no device
/// deleted).
const ORPHANS: &str = "DELETE FROM history WHERE rowid IN (
    SELECT h.rowid FROM dead_series d CROSS JOIN history h ON h.series = d.id
    WHERE d.id BETWEEN ?1 AND ?2 LIMIT ?3)";

/// Series per transaction of a purge ([`SqliteStore::purge_by_series`]), and rows deleted
/// per transaction at most. Issue 16: a retention pass over 20,000 series in one
/// transaction held the writer's lock ~95 ms, and more with more series, while every
/// device waited for its PUBACK. Small in tests, so that every purge takes several.
const PURGE_SERIES: i64 = if cfg!(test) { 2 } else { 1_000 };
const PURGE_ROWS: i64 = if cfg!(test) { 3 } else { 10_000 };
/// The pause between two chunks of a purge.
const PURGE_PAUSE: std::time::Duration = std::time::Duration::from_millis(2);

/// The series ids `sql` lists with `params` (a purge's next chunk).
fn series_from(tx: &Transaction<'_>, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<Vec<i64>> {
    tx.prepare_cached(sql)?.query_map(params, |r| r.get(0))?.collect()
}

/// SQL true when series `id` has no reading left, stored or staged (in the writer's
/// transactions only: see [`register_functions`]).
fn no_readings(id: &str) -> String {
    format!("NOT EXISTS (SELECT 1 FROM history h WHERE h.series = {id}) AND NOT ingot_staged({id})")
}

impl SqliteStore {
    /// Bounds the values a staging table takes before it moves into `history`
    /// ([`DEFAULT_STAGE_VALUES`]); small in tests, so that moves happen.
    pub fn set_history_stage_limit(&self, values: usize) {
        self.inner.stage().set_limit(values);
    }

    /// A purge over a set of series, [`PURGE_SERIES`] at a time from the lowest id, each
    /// chunk in a writer transaction of its own, so that a pass over many series holds the
    /// writer's lock for short spells. `ids(tx, from)`: the set's next ids from `from`, in
    /// order, at most [`PURGE_SERIES`]. Each chunk's staged values whose timestamp
    /// `doomed` picks go, then `stored(tx, (lowest, highest))` deletes what it must of the
    /// set's series in that range, at most [`PURGE_ROWS`]; a chunk that reached it runs
    /// again. Returns how many were deleted in all.
    async fn purge_by_series(
        &self,
        ids: impl Fn(&Transaction<'_>, i64) -> rusqlite::Result<Vec<i64>> + Send + Sync + 'static,
        stored: impl Fn(&Transaction<'_>, (i64, i64)) -> Result<usize, StoreError> + Send + Sync + 'static,
        doomed: impl Fn(i64) -> bool + Send + Sync + 'static,
    ) -> Result<usize, StoreError> {
        let purge = Arc::new((ids, stored, doomed));
        let (mut from, mut total) = (i64::MIN, 0);
        loop {
            let (store, purge) = (self.clone(), purge.clone());
            let (n, next) = crate::run_blocking(self.inner.runtime.as_ref(), move || {
                let inner = &store.inner;
                let (ids, stored, doomed) = &*purge;
                let picks = |value: &stage::Value| doomed(value.0);
                store
                    .write_blocking_then(
                        |tx| {
                            let chunk = ids(tx, from)?;
                            let (Some(&lo), Some(&hi)) = (chunk.first(), chunk.last()) else {
                                return Ok((0, None, chunk));
                            };
                            let staged = inner.stage().delete(tx, &inner.staged, &chunk, picks)?;
                            let deleted = stored(tx, (lo, hi))?;
                            let next = if deleted as i64 >= PURGE_ROWS {
                                Some(lo)
                            } else {
                                (chunk.len() as i64 == PURGE_SERIES).then_some(hi.saturating_add(1))
                            };
                            Ok((staged + deleted, next, chunk))
                        },
                        |(n, next, chunk)| {
                            inner.stage().forget(&inner.staged, &chunk, picks);
                            (n, next)
                        },
                    )
                    .inspect_err(|_| inner.stage().invalidate())
            })
            .await?;
            total += n;
            match next {
                Some(next) => from = next,
                None => return Ok(total),
            }
            // The history writer, woken when this chunk let go of the lock, takes it
            // before the next chunk does (a chunk follows at once otherwise, and the
            // lock is not fair: in a pass over 20,000 series the writer waited up to
            // 35 ms behind a run of chunks, issue 16).
            tokio::time::sleep(PURGE_PAUSE).await;
        }
    }

    /// Runs `delete(tx, chunk)` in transactions of its own until it deletes fewer than a
    /// chunk; returns the total.
    async fn delete_in_chunks(
        &self,
        delete: impl Fn(&Transaction<'_>, i64) -> Result<usize, StoreError> + Send + Sync + 'static,
    ) -> Result<usize, StoreError> {
        const CHUNK: i64 = 10_000;
        let delete = Arc::new(delete);
        let mut total = 0;
        loop {
            let delete = delete.clone();
            let n = self.write(move |tx| delete(tx, CHUNK)).await?;
            total += n;
            if (n as i64) < CHUNK {
                return Ok(total);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreOptions;
    use crate::contract::{query, reading, reading_of};
    use serde_json::json;

    fn open(dir: &std::path::Path) -> SqliteStore {
        SqliteStore::open(dir, StoreOptions { readers: 1, sync_full: false, ..Default::default() }).unwrap()
    }

    #[tokio::test]
    async fn a_panicking_write_leaves_a_working_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let w = store.clone();
        let s = store.clone();
        let panicked = std::thread::spawn(move || {
            s.write_blocking(|tx| -> Result<(), StoreError> {
                tx.execute("INSERT INTO series (tenant, device_id, attr) VALUES ('t', 'x', 'y')", [])?;
                panic!("a bug in a write");
            })
        })
        .join();
        assert!(panicked.is_err());
        w.write_history(vec![reading("d", 1, serde_json::json!({"a": 1}))]).await.unwrap();
        assert_eq!(store.history(query("d", "a")).await.unwrap().len(), 1);
        assert!(store.history_attrs("t", "x").await.unwrap().is_empty(), "the panicked transaction rolled back");
    }

    /// Retention reads `history` by the series of a chunk (an index seek each), never all
    /// of it: for deleted devices' readings, from `dead_series`.
    #[tokio::test]
    async fn the_purges_read_history_by_their_chunks_series_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let plan = |sql: &'static str, args: Vec<rusqlite::types::Value>| {
            store.write(move |tx| {
                let mut st = tx.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                let rows = st.query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
        };
        let seek = "SEARCH h USING COVERING INDEX history_series_ts";
        let orphans = plan(ORPHANS, vec![1.into(), 2.into(), 3.into()]).await.unwrap();
        assert!(orphans.iter().any(|step| step.starts_with("SEARCH d USING INTEGER PRIMARY KEY")), "{orphans:?}");
        assert!(orphans.iter().any(|step| step.starts_with(seek)), "{orphans:?}");
        let expired =
            plan(EXPIRED, vec![1.into(), 2.into(), "t".to_string().into(), 3.into(), 4.into()]).await.unwrap();
        assert!(expired.iter().any(|step| step.starts_with("SEARCH s USING INTEGER PRIMARY KEY")), "{expired:?}");
        assert!(expired.iter().any(|step| step.starts_with(seek)), "{expired:?}");
        let series = plan(TENANT_SERIES, vec!["t".to_string().into(), 1.into(), 2.into()]).await.unwrap();
        assert_eq!(series, ["SEARCH series USING INTEGER PRIMARY KEY (rowid>?)"]);
    }

    /// A purge goes chunk by chunk ([`PURGE_SERIES`] series, [`PURGE_ROWS`] rows each, small
    /// in tests): every expired value goes, stored or staged, whichever chunk its series
    /// falls in, and a series with more than a chunk's rows is finished in the next.
    #[tokio::test]
    async fn a_purge_in_chunks_deletes_every_expired_value_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.set_history_stage_limit(8);
        // Seven series over two devices, each with more expired values than a chunk takes;
        // with a stage of 8 values, most move into `history`, the newest stay staged.
        let mut batch = Vec::new();
        for ts in 1..=8 {
            batch.push(reading("d1", ts * 1000, json!({"a": ts, "b": ts, "c": ts})));
            batch.push(reading("d2", ts * 1000, json!({"a": ts, "b": ts, "c": ts, "d": ts})));
        }
        for chunk in batch.chunks(2) {
            store.write_history(chunk.to_vec()).await.unwrap();
        }
        store.write_history(vec![reading_of("u", "d1", 1000, json!({"a": 0}))]).await.unwrap();
        let rows = |table: &'static str| {
            store.write(move |tx| {
                Ok(tx.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get::<_, i64>(0))?)
            })
        };
        let (stored, logged) = (rows("history").await.unwrap(), rows("history_log").await.unwrap());
        assert!(stored > 0 && logged > 0, "values both in history ({stored}) and staged ({logged})");
        // Before 5 s: four values of each of the seven series.
        assert_eq!(store.purge_history("t", 5000).await.unwrap(), 7 * 4);
        for (device, attr) in [("d1", "a"), ("d1", "c"), ("d2", "a"), ("d2", "d")] {
            let left: Vec<i64> = store.history(query(device, attr)).await.unwrap().iter().map(|p| p.ts_ms).collect();
            assert_eq!(left, [5000, 6000, 7000, 8000], "{device}/{attr}");
        }
        let u = HistoryQuery { tenant: "u".into(), ..query("d1", "a") };
        assert_eq!(store.history(u).await.unwrap().len(), 1, "another tenant's values stay");
        assert_eq!(store.purge_history("t", 5000).await.unwrap(), 0);
    }
}
