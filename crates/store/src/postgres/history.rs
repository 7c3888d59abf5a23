//! History on PostgreSQL (see [`crate::history`]).
//!
//! ## Writing a batch (the history writer's group commit)
//!
//! One transaction per batch, committed before the writer acknowledges any of its
//! readings, in four round trips whatever its size:
//! 1. Pipelined (sent together, run in order): `BEGIN`; `pg_advisory_xact_lock_shared`
//!    (whatever deletes series, a device's deletion or the purge of empty series, takes
//!    it exclusively, so no series can disappear until the commit); a check that the
//!    series ids the cache gave still exist (`id = ANY($1)`: another process may have
//!    deleted them); the creation of the missing series (`INSERT … SELECT FROM unnest(…)
//!    ON CONFLICT DO NOTHING`, keys sorted so two writers cannot deadlock) and the read of
//!    their ids. A cached id found dead costs one more round trip, rarely.
//! 2. and 3. One binary `COPY history (series, ts, value) FROM STDIN` of the readings,
//!    the fastest bulk path measured (BENCHMARKS.md: 4,096 readings in ~11 ms committed).
//! 4. `COMMIT`.
//!
//! New ids enter the cache only after the commit. Any error drops the connection (never
//! returned to a pool inside a transaction); the server rolls back.
//!
//! ## The writer's own connection
//!
//! [`HistoryStore::write_history_blocking`], the history writer thread's path, does not
//! use the pool: the thread keeps a connection of its own, driven by a current-thread
//! runtime of its own, as the SQLite writer has its own connection. Through the pool, the
//! connection's I/O task runs on the server's runtime, and under load (MQTT connections
//! keeping both cores busy) every round trip waited for a worker: the measured average
//! was 1–2.5 ms per round trip, 11 ms per batch before any data was sent (BENCHMARKS.md).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use model::DeviceData;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, Row, Statement};

use super::{PgStore, lock};
use crate::StoreError;
use crate::history::{Aggregate, Bucket, HistoryQuery, HistoryStore, Point, ReadingId};

/// Rows deleted per statement (and transaction) by the purges.
const CHUNK: i64 = 10_000;

type Key<'a> = (&'a str, &'a str, &'a str);

const LOCK_SQL: &str = "SELECT pg_advisory_xact_lock_shared($1)";
const CHECK_SQL: &str = "SELECT id FROM series WHERE id = ANY($1)";
const CREATE_SQL: &str = "INSERT INTO series (tenant, device_id, attr)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING";
const INGESTED_SQL: &str = "INSERT INTO ingested (id, ms) SELECT unnest($1::bytea[]), $2
     ON CONFLICT DO NOTHING RETURNING id";
const READ_SQL: &str = "SELECT s.id, k.i FROM series s
     JOIN unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS k (tenant, device_id, attr, i)
       ON s.tenant = k.tenant AND s.device_id = k.device_id AND s.attr = k.attr";

/// The statements of a batch, prepared on the connection that runs it.
pub(crate) struct BatchStatements {
    lock: Statement,
    check: Statement,
    create: Statement,
    read: Statement,
    ingested: Statement,
}

impl BatchStatements {
    async fn prepare(client: &Client) -> Result<Self, StoreError> {
        let (lock, check, create, read, ingested) = tokio::try_join!(
            client.prepare(LOCK_SQL),
            client.prepare(CHECK_SQL),
            client.prepare(CREATE_SQL),
            client.prepare(READ_SQL),
            client.prepare(INGESTED_SQL)
        )?;
        Ok(Self { lock, check, create, read, ingested })
    }
}

/// The history writer thread's connection (see the module docs); reconnected after any
/// error.
#[derive(Default)]
pub(crate) struct WriterConnection {
    /// Made on first use, on the writer's thread.
    runtime: Option<tokio::runtime::Runtime>,
    open: Option<(Client, BatchStatements)>,
}

impl Drop for WriterConnection {
    fn drop(&mut self) {
        // The store may be dropped inside async code, where a runtime may not block.
        self.open = None;
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl PgStore {
    /// A batch through the writer's own connection, on the calling thread.
    fn write_batch_blocking(&self, batch: &[Arc<DeviceData>], ids: Option<&[ReadingId]>) -> Result<usize, StoreError> {
        let mut writer = self.writer.lock().unwrap_or_else(|poisoned| {
            self.writer.clear_poison();
            let mut w = poisoned.into_inner();
            w.open = None; // whatever state a panic left it in
            w
        });
        let WriterConnection { runtime, open } = &mut *writer;
        if runtime.is_none() {
            let made = tokio::runtime::Builder::new_current_thread().enable_all().build();
            *runtime = Some(made.map_err(|e| StoreError::Task(format!("cannot start the writer's runtime: {e}")))?);
        }
        runtime.as_ref().expect("made above").block_on(async {
            // This runtime runs only during a batch: let the connection's task see what
            // came while it was idle (a server restart ended it), and start afresh if it
            // did, rather than failing the batch on a connection known to be dead.
            // (A few turns: one for the I/O driver to see the socket, one for the task to
            // read it.)
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            if open.as_ref().is_some_and(|(client, _)| client.is_closed()) {
                *open = None;
            }
            if open.is_none() {
                let (client, connection) = self.config.connect(NoTls).await.map_err(|e| self.unreachable(e))?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %super::describe(&e), "history writer connection ended");
                    }
                });
                let statements = BatchStatements::prepare(&client).await?;
                *open = Some((client, statements));
            }
            let (client, statements) = open.as_ref().expect("opened above");
            let result = self.write_batch_on(client, statements, batch, ids).await;
            if result.is_err() {
                *open = None;
            }
            result
        })
    }

    /// A batch through a pooled connection (the async path).
    async fn write_batch_pooled(&self, batch: &[Arc<DeviceData>]) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let (lock, check, create, read, ingested) = tokio::try_join!(
            client.prepare_cached(LOCK_SQL),
            client.prepare_cached(CHECK_SQL),
            client.prepare_cached(CREATE_SQL),
            client.prepare_cached(READ_SQL),
            client.prepare_cached(INGESTED_SQL)
        )?;
        let statements = BatchStatements { lock, check, create, read, ingested };
        let result = self.write_batch_on(&client, &statements, batch, None).await;
        if result.is_err() {
            // Maybe inside a transaction still: never back to the pool.
            drop(deadpool_postgres::Object::take(client));
        }
        result
    }

    /// One batch in one transaction on `client` (see the module docs).
    async fn write_batch_on(
        &self,
        client: &Client,
        st: &BatchStatements,
        batch: &[Arc<DeviceData>],
        reading_ids: Option<&[ReadingId]>,
    ) -> Result<usize, StoreError> {
        let keys: BTreeSet<Key<'_>> = batch
            .iter()
            .flat_map(|d| d.attrs.keys().map(move |a| (d.tenant.as_str(), d.device_id.as_str(), a.as_str())))
            .collect();
        let mut ids: HashMap<Key<'_>, i64> = {
            let cache = self.series_cache();
            keys.iter().filter_map(|k| cache.get(k.0, k.1, k.2).map(|id| (*k, id))).collect()
        };
        let cached: Vec<i64> = ids.values().copied().collect();
        let missing: Vec<Key<'_>> = keys.iter().filter(|k| !ids.contains_key(*k)).copied().collect();

        // Round trip 1, pipelined: tokio-postgres sends each request as its future is
        // first polled, and the server runs them in that order.
        let columns = key_columns(&missing);
        let (lock_params, check_params): ([&(dyn ToSql + Sync); 1], [&(dyn ToSql + Sync); 1]) =
            ([&lock::SERIES], [&cached]);
        let id_bytes: Vec<[u8; 16]> = reading_ids.unwrap_or_default().iter().map(|id| id.to_be_bytes()).collect();
        let id_refs: Vec<&[u8]> = id_bytes.iter().map(|b| b.as_slice()).collect();
        let now = crate::now_ms();
        let ingested_params: [&(dyn ToSql + Sync); 2] = [&id_refs, &now];
        let (_, _, alive, created, fresh) = tokio::try_join!(
            client.batch_execute("BEGIN"),
            client.execute(&st.lock, &lock_params),
            client.query(&st.check, &check_params),
            create_series(client, st, &columns),
            async {
                match reading_ids {
                    Some(_) => client.query(&st.ingested, &ingested_params).await.map(Some),
                    None => Ok(None),
                }
            },
        )?;
        // Readings stored before (redelivered) are skipped.
        let fresh: Option<HashSet<Vec<u8>>> = fresh.map(|rows| rows.iter().map(|r| r.get::<_, Vec<u8>>(0)).collect());
        let keep = |i: usize| match (&fresh, id_bytes.get(i)) {
            (Some(fresh), Some(id)) => fresh.contains(id.as_slice()),
            _ => true,
        };
        let alive: HashSet<i64> = alive.iter().map(|r| r.get(0)).collect();
        learn_ids(&mut ids, &missing, &created)?;
        if alive.len() < cached.len() {
            // Deleted since this process cached them: forget, and make them anew.
            let mut dead = Vec::new();
            {
                let mut cache = self.series_cache();
                ids.retain(|k, id| {
                    let keep = alive.contains(id) || !cached.contains(id);
                    if !keep {
                        cache.forget(k.0, k.1, k.2);
                        dead.push(*k);
                    }
                    keep
                });
            }
            dead.sort_unstable();
            let created = create_series(client, st, &key_columns(&dead)).await?;
            learn_ids(&mut ids, &dead, &created)?;
        }

        // Round trips 2 and 3.
        let sink = client.copy_in("COPY history (series, ts, value) FROM STDIN BINARY").await?;
        let writer = BinaryCopyInWriter::new(sink, &[Type::INT8, Type::INT8, Type::TEXT]);
        let mut writer = std::pin::pin!(writer);
        let mut n = 0;
        for (i, data) in batch.iter().enumerate() {
            if !keep(i) {
                continue;
            }
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
        // Round trip 4.
        client.batch_execute("COMMIT").await?;

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

/// (tenants, devices, attributes) of `keys`, as the three arrays the series statements take.
fn key_columns<'a>(keys: &[Key<'a>]) -> [Vec<&'a str>; 3] {
    [keys.iter().map(|k| k.0).collect(), keys.iter().map(|k| k.1).collect(), keys.iter().map(|k| k.2).collect()]
}

/// Creates the series of `columns` that do not exist and reads back every one's id with
/// its ordinal in `columns` (nothing to do, no round trip, when there are none).
async fn create_series(
    client: &Client,
    st: &BatchStatements,
    columns: &[Vec<&str>; 3],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    if columns[0].is_empty() {
        return Ok(Vec::new());
    }
    let params: [&(dyn ToSql + Sync); 3] = [&columns[0], &columns[1], &columns[2]];
    let (_, rows) = tokio::try_join!(client.execute(&st.create, &params), client.query(&st.read, &params))?;
    Ok(rows)
}

/// Adds the ids `rows` (id, 1-based ordinal in `keys`) name.
fn learn_ids<'a>(ids: &mut HashMap<Key<'a>, i64>, keys: &[Key<'a>], rows: &[Row]) -> Result<(), StoreError> {
    for r in rows {
        let i = usize::try_from(r.try_get::<_, i64>(1)? - 1).ok().filter(|i| *i < keys.len());
        let key = i.map(|i| keys[i]).ok_or_else(|| StoreError::Task("a series of no key asked".into()))?;
        ids.insert(key, r.try_get(0)?);
    }
    if rows.len() < keys.len() {
        return Err(StoreError::Task(format!("{} of {} new series have no id", keys.len() - rows.len(), keys.len())));
    }
    Ok(())
}

fn point(attr: String, r: &Row, ts: usize) -> Result<Point, StoreError> {
    Ok(Point { attr, ts_ms: r.try_get(ts)?, value: serde_json::from_str(r.try_get(ts + 1)?)? })
}

#[async_trait::async_trait]
impl HistoryStore for PgStore {
    async fn write_history(&self, batch: Vec<Arc<DeviceData>>) -> Result<usize, StoreError> {
        self.write_batch_pooled(&batch).await
    }

    fn write_history_blocking(
        &self,
        batch: &[Arc<DeviceData>],
        reading_ids: Option<&[ReadingId]>,
    ) -> Result<usize, StoreError> {
        self.write_batch_blocking(batch, reading_ids)
    }

    async fn purge_ingested(&self, cutoff_ms: i64) -> Result<usize, StoreError> {
        self.delete_in_chunks(
            "DELETE FROM ingested WHERE ctid = ANY(ARRAY(SELECT ctid FROM ingested WHERE ms < $1 LIMIT $2))",
            &[&cutoff_ms],
            false,
        )
        .await
    }

    async fn history_attrs(&self, tenant: &str, device_id: &str) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        let st =
            client.prepare_cached("SELECT attr FROM series WHERE tenant = $1 AND device_id = $2 ORDER BY attr").await?;
        client.query(&st, &[&tenant, &device_id]).await?.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    async fn history(&self, q: HistoryQuery) -> Result<Vec<Point>, StoreError> {
        let client = self.client().await?;
        let Some(series) = series_of(&client, &q).await? else { return Ok(Vec::new()) };
        let order = if q.newest_first { "DESC" } else { "ASC" };
        let st = client
            .prepare_cached(&format!(
                "SELECT ts, value FROM history WHERE series = $1 AND ts >= $2 AND ts <= $3
                 ORDER BY ts {order}, id {order} LIMIT $4"
            ))
            .await?;
        let ((from, to), limit) = (q.bounds(), q.limit.map(i64::from));
        let rows = client.query(&st, &[&series, &from, &to, &limit]).await?;
        rows.iter().map(|r| point(q.attr.clone(), r, 0)).collect()
    }

    async fn history_buckets(
        &self,
        q: HistoryQuery,
        bucket_ms: i64,
        aggregate: Aggregate,
    ) -> Result<Vec<Bucket>, StoreError> {
        let client = self.client().await?;
        let Some(series) = series_of(&client, &q).await? else { return Ok(Vec::new()) };
        // A JSON value is a number when it starts with a digit or a minus sign.
        let num = "CASE WHEN value ~ '^-?[0-9]' THEN value::float8 END";
        let sql = crate::history::bucket_sql(
            "SELECT ts, value FROM history WHERE series = $1 AND ts >= $2 AND ts <= $3",
            num,
            "$4::int8",
            aggregate,
            q.newest_first,
        ) + " LIMIT $5";
        let st = client.prepare_cached(&sql).await?;
        let ((from, to), limit) = (q.bounds(), q.limit.map(i64::from));
        let rows = client.query(&st, &[&series, &from, &to, &bucket_ms, &limit]).await?;
        rows.iter()
            .map(|r| {
                let value = aggregate.value(|| r.try_get(1), || r.try_get(1))?;
                Ok(Bucket { start_ms: r.try_get(0)?, value, count: r.try_get::<_, i64>(2)? as u64 })
            })
            .collect()
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

/// The id of the series `q` names, if it exists.
async fn series_of(client: &deadpool_postgres::Object, q: &HistoryQuery) -> Result<Option<i64>, StoreError> {
    let st = client.prepare_cached("SELECT id FROM series WHERE tenant = $1 AND device_id = $2 AND attr = $3").await?;
    match client.query_opt(&st, &[&q.tenant, &q.device_id, &q.attr]).await? {
        Some(row) => Ok(Some(row.try_get(0)?)),
        None => Ok(None),
    }
}
