//! Where SQLite's history writer puts readings first, and how they reach `history`.
//!
//! **Why.** `history` is indexed by (series, ts). A commit of readings from 2,000 series
//! adds one entry to each of ~2,000 index leaf pages, far apart, and each dirty page is
//! a 4 KB frame in the WAL: the writer's time went into writing, checksumming and
//! syncing those frames (issue 16, `history_bench`: 25 µs per value). A staging table
//! clustered by series (issue 16, lever 2) took most of that off, but each commit still
//! rewrote a page of it per few series touched: at 17,000 msg/s over 20,000 series, 8–9
//! pages a commit and 54 MB/s of WAL (likely a page per value had devices published in
//! random order, not measured), and the p99 of PUBACKs followed the checkpoints of
//! those pages (lever 5).
//!
//! **How.** New readings are appended to `history_log` (its rowid is `n`, the order
//! written), so a commit writes the log's last page or two whichever series it touches,
//! and are kept in memory by series ([`Staged`]) for readers and for the move. Once the
//! *active* generation holds [`Stage::limit`] values, or is [`DEFAULT_STAGE_SECS`] old, it
//! is *sealed*, and the next commits each move a slice of it, whole series in series
//! order, from memory into `history` sorted by (series, ts, n): each series' index page
//! in `history` is written once per move, not once per commit. When all of it is in `history`, its log rows are deleted,
//! a chunk per commit (a range of rowids), and only then may the next generation seal.
//!
//! **What readers see.** The one row of `history_log_moving`, written in the same
//! transactions as the moves, says which logged values are in `history` already: those
//! with `n < below_n` and `series < below_series` ([`Moved`]). A reader starts its read
//! transaction (reading that row) and copies its series' staged values under one read
//! lock of [`Staged`] ([`begin_read`]); the writer changes [`Staged`] only after its
//! commit, under the write lock. So the values the reader copies are every value
//! committed before its snapshot (but those committed and not yet in memory, which are
//! not acknowledged yet), and those it skips as moved are in its snapshot of `history`:
//! a moving slice is read once, never twice or not at all.
//!
//! **Order.** `n` grows with every value written (the writer counts on from the largest
//! one logged, or the moving generation's bound, when it opens). All of a series' values
//! in a generation move in one transaction, and a generation seals only once the one
//! before is moved, so every staged value of a series is newer than every row of it in
//! `history`. Readers take `history` first and then the staged values in `n` order, for
//! readings of one millisecond; `history`'s own rowids follow the order of the moves.
//!
//! **Restart.** The store reads the log back into memory when it opens, before any
//! reader, and the writer again after a failed transaction ([`Stage::begin`]).
//!
//! PostgreSQL does not need this: its writer sends batches with `COPY` and its index
//! pages are written back by its own checkpointer, not once per commit.

use std::collections::{BTreeMap, HashMap};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use rusqlite::{Connection, Transaction, params};

use super::{Summing, Sums};
use crate::StoreError;

/// Values the active generation takes before it seals, by default. With 20,000 series
/// that is ~50 values per series per move, so a page of `history` written per ~50 values
/// moved, and a move every ~30 s at 34,000 values/s. Issue 16 (lever 5), 10,000 devices
/// at 17,000 msg/s: 262,144 (a move every ~8 s) gave a per-second PUBACK p99 at p90 of
/// 50–118 ms, this 22–38 ms. Two generations at most are in memory, ~90 bytes a value.
pub const DEFAULT_STAGE_VALUES: usize = 1 << 20;

/// Seconds after its first value that the active generation seals, however few values it
/// holds, by default: so that a quiet installation does not keep hours of readings in
/// memory and in the log (1 M values take 87 minutes to come at 200 a second), each one
/// merged into every query of its series and read back at every start.
pub const DEFAULT_STAGE_SECS: u64 = 600;

/// Values moved per commit at least, and per value the commit wrote (so the sealed
/// generation is moved well before the active one fills), and at most, so that no commit
/// carries a large move (one costs ~5 µs per value once `history` outgrows the page
/// cache). Issue 16, at 17,000 msg/s (34,000 values/s): moving 4 values per value
/// written, at least 2,048, made commits of 100–400 ms after each stall (a large batch
/// then moved four times as much); spreading the move evenly over every commit until the
/// next seal gave a worse PUBACK p99 (median per-second p99 22 ms in minute 3, against 4)
/// than moving at most 2,048 values per commit right after it.
const SLICE_MIN: usize = 256;
const SLICE_PER_WRITTEN: usize = 2;
const SLICE_MAX: usize = 2_048;
/// Log rows of a moved generation deleted per commit.
const DELETE_CHUNK: i64 = 8_192;

/// One staged value: (ts, n, value as stored).
pub(super) type Value = (i64, i64, String);

/// Which logged values are in `history` already, as of a snapshot (`history_log_moving`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Moved {
    below_n: i64,
    below_series: i64,
}

impl Moved {
    fn read(c: &Connection) -> Result<Self, StoreError> {
        Ok(c.query_row("SELECT below_n, below_series FROM history_log_moving", [], |r| {
            Ok(Self { below_n: r.get(0)?, below_series: r.get(1)? })
        })?)
    }

    fn covers(&self, series: i64, n: i64) -> bool {
        n < self.below_n && series < self.below_series
    }
}

/// The staged values in memory, shared by the writer and the readers (see the module's
/// doc for who changes it when).
#[derive(Debug, Default)]
pub(crate) struct Staged {
    /// The generation taking new values, by series, each in `n` order.
    active: HashMap<i64, Vec<Value>>,
    active_values: usize,
    /// The sealed generation's series not yet moved, each in (ts, n) order once sealed.
    moving: HashMap<i64, Vec<Value>>,
    /// `moving`'s series, in order, and how many of them have moved.
    order: Vec<i64>,
    moved: usize,
}

impl Staged {
    fn clear(&mut self) {
        *self = Self::default();
    }

    /// `series`' staged values within `[from, to]` that `moved` does not place in
    /// `history`, in no particular order.
    fn in_range(&self, series: i64, (from, to): (i64, i64), moved: Moved) -> impl Iterator<Item = &Value> {
        [self.moving.get(&series), self.active.get(&series)]
            .into_iter()
            .flatten()
            .flatten()
            .filter(move |(ts, n, _)| (from..=to).contains(ts) && !moved.covers(series, *n))
    }

    /// [`Self::in_range`]'s values by (ts, n), oldest or newest first, at most `limit`
    /// (-1: all): only those are copied, under the caller's read lock.
    pub(super) fn values(
        &self,
        series: i64,
        bounds: (i64, i64),
        moved: Moved,
        newest_first: bool,
        limit: i64,
    ) -> Vec<Value> {
        let mut found: Vec<&Value> = self.in_range(series, bounds, moved).collect();
        found.sort_unstable_by_key(|(ts, n, _)| (*ts, *n));
        if newest_first {
            found.reverse();
        }
        found.into_iter().take(usize::try_from(limit).unwrap_or(usize::MAX)).cloned().collect()
    }

    /// [`Self::in_range`]'s values summed up by `summing`: nothing is copied.
    pub(super) fn buckets(
        &self,
        series: i64,
        bounds: (i64, i64),
        moved: Moved,
        mut summing: Summing,
    ) -> BTreeMap<i64, Sums> {
        self.in_range(series, bounds, moved).for_each(|(ts, _, value)| summing.add(*ts, value));
        summing.finish()
    }

    /// Whether `series` has a staged value (`ingot_staged(series)` in the writer's SQL).
    pub(crate) fn has(&self, series: i64) -> bool {
        self.active.contains_key(&series) || self.moving.contains_key(&series)
    }

    /// The staged values of `series`, in no particular order.
    fn of<'a>(&'a self, series: &'a [i64]) -> impl Iterator<Item = &'a Value> + 'a {
        series.iter().flat_map(|s| [self.active.get(s), self.moving.get(s)]).flatten().flatten()
    }

    /// Removes the values of `series` that `doomed` picks (purges), after their log rows
    /// were deleted.
    fn remove(&mut self, series: &[i64], doomed: impl Fn(&Value) -> bool) -> usize {
        let mut removed = 0;
        for (map, active) in [(&mut self.active, true), (&mut self.moving, false)] {
            for s in series {
                let Some(values) = map.get_mut(s) else { continue };
                let before = values.len();
                values.retain(|v| !doomed(v));
                let gone = before - values.len();
                if values.is_empty() {
                    map.remove(s);
                }
                removed += gone;
                if active {
                    self.active_values -= gone;
                }
            }
        }
        removed
    }

    /// How many values are staged (tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.active_values + self.moving.values().map(Vec::len).sum::<usize>()
    }
}

/// Locks for reading; a writer that panicked with the lock left at worst values the
/// store reloads before its next write.
pub(crate) fn read(staged: &RwLock<Staged>) -> RwLockReadGuard<'_, Staged> {
    staged.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(staged: &RwLock<Staged>) -> RwLockWriteGuard<'_, Staged> {
    staged.write().unwrap_or_else(PoisonError::into_inner)
}

/// Starts a read transaction on `c` and, in the same read lock of `staged`, runs `take`
/// (which copies the staged values it needs, looking series up in the transaction):
/// the only way readers see staged values (see the module's doc).
pub(super) fn begin_read<'c, T>(
    c: &'c Connection,
    staged: &RwLock<Staged>,
    take: impl FnOnce(&Transaction<'c>, &Staged, Moved) -> Result<T, StoreError>,
) -> Result<(Transaction<'c>, T), StoreError> {
    let staged = read(staged);
    let tx = c.unchecked_transaction()?;
    let moved = Moved::read(&tx)?;
    let taken = take(&tx, &staged, moved)?;
    Ok((tx, taken))
}

/// What a committed transaction changes in [`Staged`] and [`Stage`] ([`Stage::apply`]).
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// The values the transaction logged, by series.
    logged: Vec<(i64, Value)>,
    /// `moving`'s series moved, as a count of `order`.
    moved_to: Option<usize>,
    /// The log's rows deleted below this.
    deleted_to: Option<i64>,
    /// The active generation sealed, its values below this `n`.
    sealed_below: Option<i64>,
}

impl Plan {
    /// A value logged by the transaction, `n` in order.
    pub(crate) fn logged(&mut self, series: i64, ts: i64, n: i64, value: String) {
        self.logged.push((series, (ts, n, value)));
    }

    /// Values logged.
    pub(crate) fn written(&self) -> usize {
        self.logged.len()
    }
}

/// The writer's view of the log: changed only while the writer's lock is held; after a
/// failed transaction it is reloaded from the database.
#[derive(Debug)]
pub(crate) struct Stage {
    /// The next value's `n`.
    next_n: i64,
    /// See [`DEFAULT_STAGE_VALUES`].
    limit: usize,
    /// See [`DEFAULT_STAGE_SECS`].
    max_age: Duration,
    /// When the active generation took its first value (or was read back), if it has one.
    active_since: Option<Instant>,
    /// The sealed generation's values are those below this `n` (0: none yet).
    below_n: i64,
    /// Its log rows from this `n` up are yet to be deleted, once it has moved.
    deleted_to: i64,
    /// `false` until loaded, and after a transaction that may have changed the log failed.
    known: bool,
}

impl Stage {
    pub(crate) fn new() -> Self {
        Self {
            next_n: 0,
            limit: DEFAULT_STAGE_VALUES,
            max_age: Duration::from_secs(DEFAULT_STAGE_SECS),
            active_since: None,
            below_n: 0,
            deleted_to: 0,
            known: false,
        }
    }

    pub(crate) fn set_limit(&mut self, values: usize) {
        self.limit = values.max(1);
    }

    pub(crate) fn set_max_age(&mut self, age: Duration) {
        self.max_age = age;
    }

    /// Forgets what it knew: reloaded before the next write.
    pub(crate) fn invalidate(&mut self) {
        self.known = false;
    }

    /// Reads the log back into `staged`, if not known: the values not yet in `history`,
    /// the next `n`, and what is left to move and delete.
    fn load(&mut self, tx: &Transaction<'_>, staged: &RwLock<Staged>) -> Result<(), StoreError> {
        if self.known {
            return Ok(());
        }
        let moved = Moved::read(tx)?;
        let mut staged = write(staged);
        staged.clear();
        let (mut newest, mut oldest_moved) = (None::<i64>, None::<i64>);
        let mut st = tx.prepare("SELECT n, series, ts, value FROM history_log ORDER BY n")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let (n, series): (i64, i64) = (r.get(0)?, r.get(1)?);
            newest = Some(n);
            if n < moved.below_n {
                oldest_moved.get_or_insert(n);
                if moved.covers(series, n) {
                    continue;
                }
            }
            let value = (r.get(2)?, n, r.get(3)?);
            if n < moved.below_n {
                staged.moving.entry(series).or_default().push(value);
            } else {
                staged.active.entry(series).or_default().push(value);
                staged.active_values += 1;
            }
        }
        staged.moving.values_mut().for_each(|values| values.sort_unstable_by_key(|(ts, n, _)| (*ts, *n)));
        staged.order = staged.moving.keys().copied().collect();
        staged.order.sort_unstable();
        self.active_since = (staged.active_values > 0).then(Instant::now);
        self.next_n = newest.map_or(0, |n| n + 1).max(moved.below_n);
        self.below_n = moved.below_n;
        self.deleted_to = oldest_moved.unwrap_or(moved.below_n);
        self.known = true;
        Ok(())
    }

    /// Before a batch: the first `n` to give.
    pub(crate) fn begin(&mut self, tx: &Transaction<'_>, staged: &RwLock<Staged>) -> Result<i64, StoreError> {
        self.load(tx, staged)?;
        Ok(self.next_n)
    }

    /// After a batch logged `plan`'s values: moves a slice of the sealed generation, or
    /// deletes a chunk of its log rows once it has moved, or seals the active one.
    pub(crate) fn end(&self, tx: &Transaction<'_>, staged: &RwLock<Staged>, plan: &mut Plan) -> Result<(), StoreError> {
        let staged = read(staged);
        let next_n = self.next_n + plan.written() as i64;
        if staged.moved < staged.order.len() {
            // Small generations (tests) move in several slices too.
            let most = SLICE_MAX.min(self.limit / 4).max(1);
            let slice = (plan.written() * SLICE_PER_WRITTEN).clamp(SLICE_MIN.min(most), most);
            let mut insert = tx.prepare_cached("INSERT INTO history (series, ts, value) VALUES (?1, ?2, ?3)")?;
            let (mut at, mut moved) = (staged.moved, 0);
            // Whole series: past a series longer than a slice, the slice is that series.
            while moved < slice && at < staged.order.len() {
                let series = staged.order[at];
                for (ts, _, value) in staged.moving.get(&series).into_iter().flatten() {
                    insert.execute(params![series, ts, value])?;
                    moved += 1;
                }
                at += 1;
            }
            let below_series = staged.order.get(at).copied().unwrap_or(i64::MAX);
            tx.prepare_cached("UPDATE history_log_moving SET below_series = ?1")?.execute([below_series])?;
            metrics::counter!("ingot_history_staged_moved_total").increment(moved as u64);
            plan.moved_to = Some(at);
        } else if self.deleted_to < self.below_n {
            let to = (self.deleted_to + DELETE_CHUNK).min(self.below_n);
            tx.prepare_cached("DELETE FROM history_log WHERE n >= ?1 AND n < ?2")?.execute([self.deleted_to, to])?;
            plan.deleted_to = Some(to);
        } else if self.seals(staged.active_values + plan.written()) {
            tx.prepare_cached("UPDATE history_log_moving SET below_n = ?1, below_series = ?2")?
                .execute([next_n, i64::MIN])?;
            plan.sealed_below = Some(next_n);
        }
        Ok(())
    }

    /// Whether an active generation of `values` seals now: full, or old.
    fn seals(&self, values: usize) -> bool {
        values >= self.limit || (values > 0 && self.active_since.is_some_and(|since| since.elapsed() >= self.max_age))
    }

    /// After the transaction of `plan` committed: its values join the active generation,
    /// and what it moved leaves memory (readers that began before see it as moved).
    pub(crate) fn apply(&mut self, staged: &RwLock<Staged>, plan: Plan) {
        let mut staged = write(staged);
        self.next_n += plan.written() as i64;
        if staged.active_values == 0 && !plan.logged.is_empty() {
            self.active_since = Some(Instant::now());
        }
        staged.active_values += plan.logged.len();
        for (series, value) in plan.logged {
            staged.active.entry(series).or_default().push(value);
        }
        if let Some(to) = plan.moved_to {
            let staged = &mut *staged;
            for series in &staged.order[staged.moved..to] {
                staged.moving.remove(series);
            }
            staged.moved = to;
            if to == staged.order.len() {
                staged.order = Vec::new();
                staged.moved = 0;
            }
        }
        if let Some(to) = plan.deleted_to {
            self.deleted_to = to;
        }
        if let Some(below) = plan.sealed_below {
            let started = Instant::now();
            let staged = &mut *staged;
            staged.moving = std::mem::take(&mut staged.active);
            staged.active_values = 0;
            staged.moving.values_mut().for_each(|values| values.sort_unstable_by_key(|(ts, n, _)| (*ts, *n)));
            staged.order = staged.moving.keys().copied().collect();
            staged.order.sort_unstable();
            staged.moved = 0;
            self.active_since = None;
            self.below_n = below;
            tracing::debug!(
                series = staged.order.len(),
                took_ms = started.elapsed().as_millis() as u64,
                "history's active generation sealed"
            );
        }
    }

    /// Deletes the staged values of `series` that `doomed` picks (purges), in the writer's
    /// transaction `tx`; `staged` is changed when the caller's [`Self::forget`] runs after
    /// the commit.
    pub(crate) fn delete(
        &mut self,
        tx: &Transaction<'_>,
        staged: &RwLock<Staged>,
        series: &[i64],
        doomed: impl Fn(&Value) -> bool,
    ) -> Result<usize, StoreError> {
        self.load(tx, staged)?;
        let picked: Vec<i64> = read(staged).of(series).filter(|v| doomed(v)).map(|v| v.1).collect();
        let mut delete = tx.prepare_cached("DELETE FROM history_log WHERE n = ?1")?;
        for n in &picked {
            delete.execute([n])?;
        }
        Ok(picked.len())
    }

    /// After [`Self::delete`]'s transaction committed.
    pub(crate) fn forget(&mut self, staged: &RwLock<Staged>, series: &[i64], doomed: impl Fn(&Value) -> bool) -> usize {
        write(staged).remove(series, doomed)
    }
}

/// The values of one series within `[from, to]`, oldest or newest first, at most `limit`
/// (-1: all): `history`'s rows in the read transaction `tx`, then `staged` (the series'
/// staged values, as [`Staged::values`] took them, in the same order and limit, when `tx`
/// began), for readings of one millisecond.
pub(super) fn read_series(
    tx: &Connection,
    series: i64,
    staged: Vec<Value>,
    from: i64,
    to: i64,
    newest_first: bool,
    limit: i64,
) -> Result<Vec<Row>, StoreError> {
    let order = if newest_first { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT ts, value FROM history WHERE series = ?1 AND ts >= ?2 AND ts <= ?3 ORDER BY ts {order}, rowid {order} LIMIT ?4"
    );
    let mut st = tx.prepare_cached(&sql)?;
    let stored =
        st.query_map(params![series, from, to, limit], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
    let stored: Vec<Row> = stored.collect::<Result<_, _>>()?;
    let staged = staged.into_iter().map(|(ts, _, value)| (ts, value));
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    Ok(merge(stored, staged, limit, newest_first))
}

/// Merges `stored` and `staged`, each in the order asked for, into the first `limit`.
/// Of readings of one millisecond, `history`'s were written first.
fn merge(stored: Vec<Row>, staged: impl Iterator<Item = Row>, limit: usize, newest_first: bool) -> Vec<Row> {
    let mut staged = staged.peekable();
    let mut stored = stored.into_iter().peekable();
    let mut out = Vec::new();
    while out.len() < limit {
        let take_staged = match (stored.peek(), staged.peek()) {
            (None, None) => break,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some(a), Some(b)) if newest_first => b.0 >= a.0,
            (Some(a), Some(b)) => b.0 < a.0,
        };
        out.extend(if take_staged { staged.next() } else { stored.next() });
    }
    out
}

/// One stored value as read: (ts, value as stored).
pub(super) type Row = (i64, String);

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use serde_json::json;

    use super::DEFAULT_STAGE_SECS;
    use crate::contract::{query, reading};
    use crate::history::{Aggregate, HistoryQuery, HistoryStore};
    use crate::{SqliteStore, StoreOptions};

    fn open(dir: &std::path::Path, limit: usize) -> SqliteStore {
        let store =
            SqliteStore::open(dir, StoreOptions { readers: 2, sync_full: false, ..Default::default() }).unwrap();
        store.set_history_stage_limit(limit);
        store
    }

    fn count(store: &SqliteStore, table: &'static str) -> i64 {
        let c = store.inner.writer.lock().unwrap();
        c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).unwrap()
    }

    /// Values staged in memory.
    fn staged(store: &SqliteStore) -> i64 {
        super::read(&store.inner.staged).len() as i64
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
        let (stored, staged) = (count(&store, "history"), staged(&store));
        assert_eq!(stored + staged, 2 * i, "every value once");
        assert!(stored > 1_000 && staged > 0, "moved {stored}, staged {staged}");
    }

    /// A store reopened once every value of a series has moved and the mover's log rows
    /// are gone: readings of one millisecond still read in the order written,
    /// `history`'s before the staged ones.
    #[tokio::test]
    async fn readings_of_one_millisecond_keep_their_order_after_a_reopen() {
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
        assert_eq!(staged(&store), 0);
        assert_eq!(count(&store, "history"), 20);
        drop(store);
        let store = open(dir.path(), 4);
        write(&store, "d", 21);
        assert_eq!(ints(store.history(query("d", "v")).await.unwrap()), (1..=21).collect::<Vec<_>>());
        let newest = HistoryQuery { newest_first: true, limit: Some(1), ..query("d", "v") };
        assert_eq!(ints(store.history(newest).await.unwrap()), [21]);
    }

    /// The store reopens in every state of a move (just sealed, partly moved, moved with
    /// its log rows not yet deleted): every reading is read once, in order.
    #[tokio::test]
    async fn a_reopen_at_any_point_of_a_move_loses_and_repeats_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path(), 40);
        let mut want: Vec<Vec<i64>> = vec![Vec::new(); 5];
        for i in 0..200_i64 {
            let device = (i % 5) as usize;
            want[device].push(i);
            let (writer, batch) = (store.clone(), vec![reading(&format!("d{device}"), i, json!({"v": i}))]);
            tokio::task::spawn_blocking(move || writer.write_history_blocking(&batch, None)).await.unwrap().unwrap();
            drop(store);
            store = open(dir.path(), 40);
            for (device, want) in want.iter().enumerate() {
                assert_eq!(ints(store.history(query(&format!("d{device}"), "v")).await.unwrap()), *want, "after {i}");
            }
        }
        assert_eq!(count(&store, "history") + staged(&store), 200);
        assert!(count(&store, "history_log") < 120, "moved generations' log rows are deleted");
    }

    /// A database from before the log (schema 15, readings in both parts of the staging
    /// table) opens with every reading kept, in the order written.
    #[tokio::test]
    async fn readings_staged_before_the_log_are_kept_in_order() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = rusqlite::Connection::open(dir.path().join("ingot.db")).unwrap();
            for step in &crate::migrate::STEPS[..15] {
                c.execute_batch(step).unwrap();
            }
            c.pragma_update(None, "user_version", 15).unwrap();
            c.execute_batch(
                "INSERT INTO series (id, tenant, device_id, attr) VALUES (1, 't', 'd', 'v');
                 INSERT INTO history (series, ts, value) VALUES (1, 1, '1'), (1, 2, '2');
                 INSERT INTO history_stage (part, series, ts, n, value)
                   VALUES (0, 1, 2, 5, '3'), (1, 1, 3, 9, '5'), (0, 1, 3, 7, '4');",
            )
            .unwrap();
        }
        let store = open(dir.path(), 100);
        assert_eq!(ints(store.history(query("d", "v")).await.unwrap()), [1, 2, 3, 4, 5]);
        let (writer, batch) = (store.clone(), vec![reading("d", 3, json!({"v": 6}))]);
        tokio::task::spawn_blocking(move || writer.write_history_blocking(&batch, None)).await.unwrap().unwrap();
        assert_eq!(ints(store.history(query("d", "v")).await.unwrap()), [1, 2, 3, 4, 5, 6]);
        let newest = HistoryQuery { newest_first: true, limit: Some(3), ..query("d", "v") };
        assert_eq!(ints(store.history(newest).await.unwrap()), [6, 5, 4]);
    }

    /// A reader running while slices move sees each device's readings as a whole prefix
    /// of what was written: never a value twice, never one missing before a later one.
    #[tokio::test]
    async fn a_generation_seals_once_old_however_few_its_values() {
        for (secs, moves) in [(DEFAULT_STAGE_SECS, false), (0, true)] {
            let dir = tempfile::tempdir().unwrap();
            let options = StoreOptions { readers: 2, sync_full: false, stage_secs: secs, ..Default::default() };
            let store = SqliteStore::open(dir.path(), options).unwrap();
            for i in 0..10 {
                store.write_history(vec![reading("d", i, json!({"v": i}))]).await.unwrap();
            }
            assert_eq!(count(&store, "history") > 0, moves, "generations of {secs} s");
            assert_eq!(ints(store.history(query("d", "v")).await.unwrap()), (0..10).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_reader_between_a_moves_commit_and_its_apply_sees_each_value_once() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), 50);
        let mut checked = 0;
        for i in 0..100_i64 {
            let batch: Vec<_> = (0..20).map(|d| reading(&format!("d{d}"), i, json!({"v": i}))).collect();
            // Between the commit of a move and its apply: `history` has the slice, and so
            // has memory. Batch `i`'s own values are not in memory yet (nor acknowledged).
            super::super::write_batch_then(&store, &batch, None, |plan| {
                if plan.moved_to.is_none() {
                    return;
                }
                checked += 1;
                for d in 0..20 {
                    let q = query(&format!("d{d}"), "v");
                    let read = ints(runtime.block_on(store.history(q.clone())).unwrap());
                    assert_eq!(read, (0..i).collect::<Vec<_>>(), "batch {i}, d{d}: read");
                    let buckets = runtime.block_on(store.history_buckets(q, 1, Aggregate::Count)).unwrap();
                    assert!(buckets.iter().all(|b| b.count == 1), "batch {i}, d{d}: {buckets:?}");
                    let starts: Vec<i64> = buckets.iter().map(|b| b.start_ms).collect();
                    assert_eq!(starts, (0..i).collect::<Vec<_>>(), "batch {i}, d{d}: summed up");
                }
            })
            .unwrap();
        }
        assert!(checked > 20, "{checked} moves checked");
    }

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
            let q = query(&format!("d{}", reads % 20), "v");
            // Every other read sums the readings up by the millisecond: one per bucket.
            let got = if reads % 2 == 0 {
                ints(store.history(q).await.unwrap())
            } else {
                let buckets = store.history_buckets(q, 1, Aggregate::Count).await.unwrap();
                assert!(buckets.iter().all(|b| b.count == 1), "read {reads}: {buckets:?}");
                buckets.iter().map(|b| b.start_ms).collect()
            };
            assert_eq!(got, (0..got.len() as i64).collect::<Vec<_>>(), "read {reads}");
            reads += 1;
        }
        writer.join().unwrap();
        assert!(reads > 10, "{reads} reads while writing");
        assert_eq!(ints(store.history(query("d7", "v")).await.unwrap()).len(), 600);
    }
}
