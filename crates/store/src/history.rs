//! Readings over time: one row per (series, ts), a series being (tenant, device, attribute).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use model::DeviceData;
use rusqlite::{OptionalExtension, Transaction, params};
use serde_json::Value;

use crate::{Store, StoreError};

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

/// tenant → device → attribute → series id. Nested so that a lookup (once per stored
/// value, the writer's hot path) borrows the reading's strings instead of allocating a key.
type SeriesCache = HashMap<String, HashMap<String, HashMap<String, i64>>>;

/// Writes batches of readings, remembering series ids between batches.
#[derive(Clone)]
pub struct HistoryWriter {
    store: Store,
    series: Arc<Mutex<SeriesCache>>,
}

impl HistoryWriter {
    pub fn new(store: Store) -> Self {
        Self { store, series: Arc::default() }
    }

    /// Stores every attribute of every reading in one transaction (group commit).
    /// Returns the number of values written.
    pub async fn write_batch(&self, batch: Vec<Arc<DeviceData>>) -> Result<usize, StoreError> {
        let writer = self.clone();
        tokio::task::spawn_blocking(move || writer.write_batch_blocking(&batch))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// [`Self::write_batch`] on the calling thread (see [`Store::write_blocking`]).
    pub fn write_batch_blocking(&self, batch: &[Arc<DeviceData>]) -> Result<usize, StoreError> {
        self.store
            .write_blocking(|tx| {
                let mut cache = self.series.lock().expect("series cache lock");
                let mut insert = tx.prepare_cached("INSERT INTO history (series, ts, value) VALUES (?1, ?2, ?3)")?;
                let mut n = 0;
                for data in batch {
                    let ts = data.ts.timestamp_millis();
                    for (attr, value) in &data.attrs {
                        let id = series_id(tx, &mut cache, &data.tenant, &data.device_id, attr)?;
                        insert.execute(params![id, ts, value.to_string()])?;
                        n += 1;
                    }
                }
                Ok(n)
            })
            .inspect_err(|_| {
                // A failed transaction may have rolled back series rows the cache now names.
                self.series.lock().expect("series cache lock").clear();
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
    if let Some(id) = cache.get(tenant).and_then(|d| d.get(device)).and_then(|a| a.get(attr)) {
        return Ok(*id);
    }
    tx.prepare_cached("INSERT OR IGNORE INTO series (tenant, device_id, attr) VALUES (?1, ?2, ?3)")?
        .execute(params![tenant, device, attr])?;
    let id = tx
        .prepare_cached("SELECT id FROM series WHERE tenant = ?1 AND device_id = ?2 AND attr = ?3")?
        .query_row(params![tenant, device, attr], |r| r.get(0))?;
    cache.entry(tenant.to_string()).or_default().entry(device.to_string()).or_default().insert(attr.to_string(), id);
    Ok(id)
}

impl Store {
    /// The attributes a device has history for, sorted.
    pub async fn history_attrs(&self, tenant: &str, device_id: &str) -> Result<Vec<String>, StoreError> {
        let (tenant, device_id) = (tenant.to_string(), device_id.to_string());
        self.read(move |c| {
            let mut st =
                c.prepare_cached("SELECT attr FROM series WHERE tenant = ?1 AND device_id = ?2 ORDER BY attr")?;
            Ok(st.query_map(params![tenant, device_id], |r| r.get(0))?.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Readings of one attribute, per `q`.
    pub async fn history(&self, q: HistoryQuery) -> Result<Vec<Point>, StoreError> {
        self.read(move |c| {
            let series: Option<i64> = c
                .prepare_cached("SELECT id FROM series WHERE tenant = ?1 AND device_id = ?2 AND attr = ?3")?
                .query_row(params![q.tenant, q.device_id, q.attr], |r| r.get(0))
                .optional()?;
            let Some(series) = series else { return Ok(Vec::new()) };
            let order = if q.newest_first { "DESC" } else { "ASC" };
            let sql = format!(
                "SELECT ts, value FROM history WHERE series = ?1 AND ts >= ?2 AND ts <= ?3 ORDER BY ts {order}, rowid {order} LIMIT ?4"
            );
            let limit = q.limit.map(i64::from).unwrap_or(-1);
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(
                params![series, q.from_ms.unwrap_or(i64::MIN), q.to_ms.unwrap_or(i64::MAX), limit],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
            )?;
            let mut out = Vec::new();
            for row in rows {
                let (ts_ms, value) = row?;
                out.push(Point { attr: q.attr.clone(), ts_ms, value: serde_json::from_str(&value)? });
            }
            Ok(out)
        })
        .await
    }

    /// The newest value of every attribute of a device.
    pub async fn latest(&self, tenant: &str, device_id: &str) -> Result<Vec<Point>, StoreError> {
        let (tenant, device_id) = (tenant.to_string(), device_id.to_string());
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT s.attr, h.ts, h.value FROM series s
                 JOIN history h ON h.rowid = (SELECT rowid FROM history WHERE series = s.id ORDER BY ts DESC, rowid DESC LIMIT 1)
                 WHERE s.tenant = ?1 AND s.device_id = ?2 ORDER BY s.attr",
            )?;
            let rows = st.query_map(params![tenant, device_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (attr, ts_ms, value) = row?;
                out.push(Point { attr, ts_ms, value: serde_json::from_str(&value)? });
            }
            Ok(out)
        })
        .await
    }

    /// Deletes a tenant's readings older than `cutoff_ms`; returns how many. Works in
    /// chunks so that device writes are not held up behind one huge transaction.
    pub async fn purge_history(&self, tenant: &str, cutoff_ms: i64) -> Result<usize, StoreError> {
        const CHUNK: i64 = 10_000;
        let mut total = 0;
        loop {
            let tenant = tenant.to_string();
            let n = self
                .write(move |tx| {
                    Ok(tx.execute(
                        "DELETE FROM history WHERE rowid IN (
                           SELECT h.rowid FROM series s JOIN history h ON h.series = s.id
                           WHERE s.tenant = ?1 AND h.ts < ?2 LIMIT ?3)",
                        params![tenant, cutoff_ms, CHUNK],
                    )?)
                })
                .await?;
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
    use chrono::{TimeZone, Utc};
    use model::DeviceRef;

    fn reading(device: &str, ts: i64, attrs: Value) -> Arc<DeviceData> {
        let d = DeviceRef::new("t", device).unwrap();
        let Value::Object(attrs) = attrs else { unreachable!() };
        Arc::new(DeviceData {
            tenant: d.tenant,
            device_id: d.device_id,
            ts: Utc.timestamp_millis_opt(ts).unwrap(),
            attrs,
        })
    }

    #[tokio::test]
    async fn write_query_latest_purge() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions { readers: 2, sync_full: false }).unwrap();
        let w = HistoryWriter::new(store.clone());
        let batch = (1..=5).map(|i| reading("d1", i * 1000, serde_json::json!({"t": i, "s": "x"}))).collect();
        assert_eq!(w.write_batch(batch).await.unwrap(), 10);
        w.write_batch(vec![reading("d2", 1, serde_json::json!({"t": 99}))]).await.unwrap();

        let q = |newest_first, limit, from_ms, to_ms| HistoryQuery {
            tenant: "t".into(),
            device_id: "d1".into(),
            attr: "t".into(),
            from_ms,
            to_ms,
            newest_first,
            limit,
        };
        let vals = |pts: Vec<Point>| pts.into_iter().map(|p| p.value.as_i64().unwrap()).collect::<Vec<_>>();
        assert_eq!(vals(store.history(q(true, Some(3), None, None)).await.unwrap()), [5, 4, 3]);
        assert_eq!(vals(store.history(q(false, Some(2), None, None)).await.unwrap()), [1, 2]);
        assert_eq!(vals(store.history(q(false, None, Some(2000), Some(4000))).await.unwrap()), [2, 3, 4]);
        assert_eq!(store.history_attrs("t", "d1").await.unwrap(), ["s", "t"]);
        let latest = store.latest("t", "d1").await.unwrap();
        assert_eq!(latest.len(), 2);
        assert_eq!(latest[1].value, serde_json::json!(5));
        assert_eq!(store.purge_history("t", 3000).await.unwrap(), 4 + 1);
        assert_eq!(vals(store.history(q(false, None, None, None)).await.unwrap()), [3, 4, 5]);
        // Another tenant's device with the same id sees nothing.
        let other = HistoryQuery { tenant: "u".into(), ..q(false, None, None, None) };
        assert!(store.history(other).await.unwrap().is_empty());
    }
}
