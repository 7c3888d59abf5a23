//! Where SQLite's history writer puts readings first, and how they reach `history`.
//!
//! **Why.** `history` is indexed by (series, ts). A commit of readings from 2,000 series
//! adds one entry to each of ~2,000 index leaf pages, far apart, and each dirty page is
//! a 4 KB frame in the WAL: the writer's time went into writing, checksumming and
//! syncing those frames (issue 16, `history_bench`: 25 µs per value).
//!
//! **How.** New readings go to a small staging table, `history_stage`, clustered by
//! (part, series, ts, n) (`WITHOUT ROWID`, so one B-tree and no separate index), which
//! stays small enough (~10 MB a part) for its pages to stay cached. It has two parts, 0
//! and 1:
//! - the *active* part takes the writes until it holds [`Stage::limit`] values;
//! - then the other part, empty by then, takes over, and the full one is *moved*: each
//!   later commit also copies a slice of it, whole series in series order, into
//!   `history` sorted by (series, ts, n) and deletes them, in the same transaction.
//!   So each series' index page in `history` is written once per move, not once per
//!   commit, and no commit waits for a whole table to move.
//!
//! `history_bench` measured 2.7–3.4× the values per second of writing `history`
//! directly, commits of 1,000 values over 2,000 or 20,000 series, p99 commit time no
//! worse.
//!
//! **Order.** `n` grows with every value written (the writer counts on from the
//! largest one stored when it opens). All of a series' rows in one staging table move
//! in one transaction, and the parts only swap once the moved one is empty, so every
//! staged row of a series is newer than every row of it in `history`. Readers take
//! `history` first and then the staged rows in `n` order, for readings of one
//! millisecond; `history`'s own rowids follow the order of the moves.
//!
//! **Readers** read both tables in one statement ([`read_series`]), so one snapshot:
//! a slice is in `history` or staged, never both, never neither.
//!
//! PostgreSQL does not need this: its writer sends batches with `COPY` and its index
//! pages are written back by its own checkpointer, not once per commit.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::StoreError;

/// Values a part of the staging table takes before the other part takes over, by
/// default: with 20,000 series that is ~13 values per series per move, so a page of
/// `history` written per ~13 values moved (65,536 values gave ~3, and the checkpointer
/// could not keep up with those pages at 34,000 values/s: issue 16). A part is ~10 MB.
pub const DEFAULT_STAGE_VALUES: usize = 262_144;

/// Values moved per commit at least, and per value the commit wrote (so the moved part
/// empties well before the active one fills), and at most, so that no commit carries a
/// large move (one costs ~5 µs per value once `history` outgrows the page cache; with
/// batches larger than the most, the active part may take more than its limit before the
/// parts swap). Issue 16, at 17,000 msg/s (34,000 values/s): moving 4 values per value
/// written, at least 2,048, made commits of 100–400 ms after each stall (a large batch
/// then moved four times as much); spreading the move evenly over every commit until the
/// next swap gave a worse PUBACK p99 (median per-second p99 22 ms in minute 3, against 4)
/// than moving at most 2,048 values per commit right after the swap.
const SLICE_MIN: usize = 256;
const SLICE_PER_WRITTEN: usize = 2;
const SLICE_MAX: usize = 2_048;

/// The writer's view of the staging table. Changed only while the writer's lock is
/// held, in the transaction whose rows it counts; after a failed transaction it is
/// reloaded from the database.
#[derive(Debug)]
pub(crate) struct Stage {
    /// The part taking writes (0 or 1).
    active: usize,
    /// Values in each part. Exact after a load; purges may leave it high (a part
    /// counted non-empty that is empty is found so by the next slice).
    rows: [usize; 2],
    /// The next value's `n`.
    next_n: i64,
    /// See [`DEFAULT_STAGE_VALUES`].
    limit: usize,
    /// `false` until loaded, and after a transaction that may have changed the table
    /// failed.
    known: bool,
}

impl Stage {
    pub(crate) fn new() -> Self {
        Self { active: 0, rows: [0; 2], next_n: 0, limit: DEFAULT_STAGE_VALUES, known: false }
    }

    pub(crate) fn set_limit(&mut self, values: usize) {
        self.limit = values.max(1);
    }

    /// Forgets what it knew: reloaded before the next write.
    pub(crate) fn invalidate(&mut self) {
        self.known = false;
    }

    /// Reads the counts, which part is active (the one with the newest row) and the
    /// next `n`, if not known.
    fn load(&mut self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        if self.known {
            return Ok(());
        }
        let mut newest = [None::<i64>; 2];
        for (part, (rows, newest)) in self.rows.iter_mut().zip(&mut newest).enumerate() {
            (*rows, *newest) =
                tx.query_row("SELECT count(*), max(n) FROM history_stage WHERE part = ?1", [part as i64], |r| {
                    Ok((r.get::<_, i64>(0)? as usize, r.get(1)?))
                })?;
        }
        self.active = usize::from(newest[1] > newest[0]);
        self.next_n = newest[0].max(newest[1]).map_or(0, |n| n + 1);
        self.known = true;
        Ok(())
    }

    /// Before a batch: the part to stage values in (`INSERT INTO history_stage (part,
    /// series, ts, n, value)`), and the first `n` to give.
    pub(crate) fn begin(&mut self, tx: &Transaction<'_>) -> Result<(i64, i64), StoreError> {
        self.load(tx)?;
        Ok((self.active as i64, self.next_n))
    }

    /// After a batch staged `written` values (`n` up to `next_n` excluded): moves a
    /// slice of the full part, or hands the writes over to the empty one.
    pub(crate) fn end(&mut self, tx: &Transaction<'_>, written: usize, next_n: i64) -> Result<(), StoreError> {
        self.next_n = next_n;
        self.rows[self.active] += written;
        let full = 1 - self.active;
        if self.rows[full] > 0 {
            let slice = (written * SLICE_PER_WRITTEN).clamp(SLICE_MIN, SLICE_MAX);
            self.rows[full] = move_slice(tx, full as i64, self.rows[full], slice)?;
        } else if self.rows[self.active] >= self.limit {
            self.active = full;
        }
        Ok(())
    }
}

/// Moves the rows of the lowest series of `part` (about `slice` rows, whole series)
/// into `history`; returns how many rows `part` is left with (at least 1 if any).
fn move_slice(tx: &Transaction<'_>, part: i64, rows: usize, slice: usize) -> Result<usize, StoreError> {
    let first: Option<i64> =
        tx.prepare_cached("SELECT min(series) FROM history_stage WHERE part = ?1")?.query_row([part], |r| r.get(0))?;
    let Some(first) = first else { return Ok(0) };
    let at: Option<i64> = tx
        .prepare_cached("SELECT series FROM history_stage WHERE part = ?1 ORDER BY series, ts, n LIMIT 1 OFFSET ?2")?
        .query_row([part, slice as i64], |r| r.get(0))
        .optional()?;
    // A series is never split: past a series longer than a slice, the bound is the next one.
    let bound = at.map_or(i64::MAX, |s| s.max(first + 1));
    let moved = tx
        .prepare_cached(
            "INSERT INTO history (series, ts, value)
             SELECT series, ts, value FROM history_stage WHERE part = ?1 AND series < ?2 ORDER BY series, ts, n",
        )?
        .execute([part, bound])?;
    tx.prepare_cached("DELETE FROM history_stage WHERE part = ?1 AND series < ?2")?.execute([part, bound])?;
    metrics::counter!("ingot_history_staged_moved_total").increment(moved as u64);
    Ok(if at.is_none() { 0 } else { rows.saturating_sub(moved).max(1) })
}

/// One stored value as read: (ts, value as stored).
pub(super) type Row = (i64, String);

/// Which series [`read_series`] reads.
pub(super) enum Series<'a> {
    /// By id (the caller looked it up in the same read transaction).
    Id(i64),
    /// By (tenant, device, attribute), looked up in the same statement.
    Named(&'a str, &'a str, &'a str),
}

/// The values of one series within `[from, to]`, oldest or newest first, at most
/// `limit` (-1: all), from `history` and the staging table, in one statement, so in one
/// snapshot. SQLite merges the two ordered sources (`MERGE (UNION ALL)`), sorting only
/// readings of one millisecond, and stops at the limit.
pub(super) fn read_series(
    c: &Connection,
    series: Series<'_>,
    from: i64,
    to: i64,
    newest_first: bool,
    limit: i64,
) -> Result<Vec<Row>, StoreError> {
    let order = if newest_first { "DESC" } else { "ASC" };
    let id = match series {
        Series::Id(_) => "?4",
        Series::Named(..) => "(SELECT id FROM series WHERE tenant = ?4 AND device_id = ?5 AND attr = ?6)",
    };
    // Columns: ts, value, which table (history first), tie-break (rowid, then n).
    let sql = format!(
        "SELECT ts, value, 0, rowid FROM history WHERE series = {id} AND ts >= ?1 AND ts <= ?2
         UNION ALL
         SELECT ts, value, 1, n FROM history_stage WHERE part IN (0, 1) AND series = {id} AND ts >= ?1 AND ts <= ?2
         ORDER BY 1 {order}, 3 {order}, 4 {order} LIMIT ?3"
    );
    let mut st = c.prepare_cached(&sql)?;
    let row = |r: &rusqlite::Row<'_>| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?));
    let rows = match series {
        Series::Id(id) => st.query_map(params![from, to, limit, id], row)?,
        Series::Named(tenant, device, attr) => st.query_map(params![from, to, limit, tenant, device, attr], row)?,
    };
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use serde_json::json;

    use crate::contract::{query, reading};
    use crate::history::{HistoryQuery, HistoryStore};
    use crate::{SqliteStore, StoreOptions};

    fn open(dir: &std::path::Path, limit: usize) -> SqliteStore {
        let store = SqliteStore::open(dir, StoreOptions { readers: 2, sync_full: false }).unwrap();
        store.set_history_stage_limit(limit);
        store
    }

    fn count(store: &SqliteStore, table: &'static str) -> i64 {
        let c = store.inner.writer.lock().unwrap();
        c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).unwrap()
    }

    fn ints(points: Vec<crate::history::Point>) -> Vec<i64> {
        points.into_iter().map(|p| p.value.as_i64().unwrap()).collect()
    }

    /// Readings of 30 devices, 2 attributes, 3 readings per millisecond, written in
    /// batches of varied size through moves and a restart: every query reads them in the
    /// order written, whichever table they are in.
    #[tokio::test]
    async fn readings_read_the_same_in_order_before_during_and_after_their_move() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path(), 100);
        let mut want: Vec<Vec<i64>> = vec![Vec::new(); 30];
        let mut i = 0;
        for round in 0..120 {
            if round == 60 {
                drop(store);
                store = open(dir.path(), 100);
            }
            let batch: Vec<_> = (0..1 + round % 17)
                .map(|k| {
                    let device = (round * 7 + k * 13) % 30;
                    i += 1;
                    want[device].push(i);
                    reading(&format!("d{device}"), i / 3, json!({"v": i, "w": -i}))
                })
                .collect();
            let writer = store.clone();
            tokio::task::spawn_blocking(move || writer.write_history_blocking(&batch, None)).await.unwrap().unwrap();
            if round % 10 == 9 {
                for (device, want) in want.iter().enumerate() {
                    let device = format!("d{device}");
                    assert_eq!(ints(store.history(query(&device, "v")).await.unwrap()), *want, "{device}");
                    let newest = HistoryQuery { newest_first: true, limit: Some(2), ..query(&device, "v") };
                    let last2: Vec<i64> = want.iter().rev().take(2).copied().collect();
                    assert_eq!(ints(store.history(newest).await.unwrap()), last2, "{device}");
                    let latest = store.latest("t", &device).await.unwrap();
                    if let Some(&last) = want.last() {
                        assert_eq!(latest[0].value, json!(last), "{device}");
                        assert_eq!(latest[1].value, json!(-last), "{device}");
                    }
                }
            }
        }
        let (stored, staged) = (count(&store, "history"), count(&store, "history_stage"));
        assert_eq!(stored + staged, 2 * i, "every value once");
        assert!(stored > 1_000 && staged > 0, "moved {stored}, staged {staged}");
    }

    /// `n` starts over when a store opens with the staging table empty: readings of one
    /// millisecond still read in the order written, `history`'s before the staged ones.
    #[tokio::test]
    async fn readings_of_one_millisecond_keep_their_order_when_n_starts_over() {
        use crate::catalog::{CatalogChange, CatalogStore};
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), 4);
        let write = |store: &SqliteStore, device: &str, v: i64| {
            let (store, batch) = (store.clone(), vec![reading(device, 1, json!({"v": v}))]);
            std::thread::spawn(move || store.write_history_blocking(&batch, None).unwrap()).join().unwrap();
        };
        for v in 1..=20 {
            write(&store, "d", v);
        }
        // Other readings until every one of d has moved, then those are deleted.
        for v in 0..12 {
            write(&store, "x", v);
        }
        store
            .save_catalog("t", CatalogChange { remove_devices: vec!["x".into()], ..Default::default() })
            .await
            .unwrap();
        store.purge_orphan_history().await.unwrap();
        assert_eq!(count(&store, "history_stage"), 0);
        assert_eq!(count(&store, "history"), 20);
        drop(store);
        let store = open(dir.path(), 4);
        write(&store, "d", 21);
        assert_eq!(ints(store.history(query("d", "v")).await.unwrap()), (1..=21).collect::<Vec<_>>());
        let newest = HistoryQuery { newest_first: true, limit: Some(1), ..query("d", "v") };
        assert_eq!(ints(store.history(newest).await.unwrap()), [21]);
    }

    /// A reader running while slices move sees each device's readings as a whole prefix
    /// of what was written: never a value twice, never one missing before a later one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reader_never_sees_a_moving_slice_twice_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), 50);
        let done = Arc::new(AtomicBool::new(false));
        let writer = {
            let (store, done) = (store.clone(), done.clone());
            std::thread::spawn(move || {
                for i in 0..600_i64 {
                    let batch: Vec<_> = (0..20).map(|d| reading(&format!("d{d}"), i, json!({"v": i}))).collect();
                    store.write_history_blocking(&batch, None).unwrap();
                }
                done.store(true, Ordering::SeqCst);
            })
        };
        let mut reads = 0;
        while !done.load(Ordering::SeqCst) {
            let got = ints(store.history(query(&format!("d{}", reads % 20), "v")).await.unwrap());
            assert_eq!(got, (0..got.len() as i64).collect::<Vec<_>>(), "read {reads}");
            reads += 1;
        }
        writer.join().unwrap();
        assert!(reads > 10, "{reads} reads while writing");
        assert_eq!(ints(store.history(query("d7", "v")).await.unwrap()).len(), 600);
    }
}
