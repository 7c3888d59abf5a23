//! The WAL checkpoint, mostly off the writer's commit path.
//!
//! SQLite checkpoints automatically inside the commit that takes the WAL past 1,000 pages:
//! that commit then also copies the WAL's pages into the database file and syncs it, and
//! every reading of its batch waits. Issue 2's profile put that at 12% of the server's CPU
//! at full ingest, all of it on the one writer thread that bounds throughput. So the
//! writer's connection runs with `wal_autocheckpoint = 0`, and a thread of its own, with
//! its own connection, checkpoints every [`EVERY`]:
//!
//! 1. PASSIVE checkpoints, which never wait for the writer or a reader, copy the WAL into
//!    the database file while the writer goes on committing on the other core (a page
//!    written many times since the last round is copied once). Each pass copies what was
//!    committed during the one before, so a few passes leave little behind;
//! 2. once the WAL holds [`RESTART_PAGES`] or more after those passes, the checkpointer
//!    asks the writer to finish: before its next transaction, on its own connection, the
//!    writer runs one more PASSIVE checkpoint ([`finish`]), which copies the few frames
//!    committed since the last pass. No frame is then left, so that transaction starts
//!    the WAL over from its beginning. Before it asks, the checkpointer syncs the
//!    database file itself: SQLite syncs it only in a checkpoint that copies the whole
//!    WAL, so the finish would otherwise wait for every page the passes wrote since the
//!    last one (tens of MB while history moves a generation: 20–40 ms, up to 150 ms,
//!    with every device waiting; 0–14 ms once synced beforehand, issue 16).
//!
//! Step 2 is what keeps the WAL bounded. Without it, under continuous ingest a checkpoint
//! never catches up with the writer, SQLite never restarts the WAL, and the file grows
//! without end: a 10-minute run at full rate filled the disk with a 16 GB WAL after 200 s
//! (found while measuring issue 16; `the_wal_stays_bounded_under_continuous_writes`
//! guards it). A reader holding an old snapshot can still delay a restart; past
//! [`WAL_LIMIT_PAGES`] the checkpointer takes the writer's lock and runs a RESTART
//! checkpoint, which waits for readers.
//!
//! Every device waiting for a PUBACK waits while the writer finishes a checkpoint, so it
//! does so rarely, and with little to copy. Issue 16 measured the alternatives under a
//! steady 17,000 msg/s: with step 2 every round (5 per second), run by the checkpointer
//! holding the writer's lock, PUBACK p99 was hundreds of ms. The checkpointer waited for
//! the lock behind several commits, then copied their frames and synced both files while
//! the writer waited (30 ms median, 120 ms p90, even with the WAL fully copied just before).
//!
//! Durability does not move: a commit is durable once its WAL frames are (synced with
//! `synchronous = FULL`); a checkpoint only moves committed pages into the database file.
//! The thread ends when the store it serves is dropped.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// How often the checkpointer runs.
pub(crate) const EVERY: Duration = Duration::from_millis(200);
/// WAL pages (4 KB) past which a checkpoint waits for readers: 256 MB.
pub(crate) const WAL_LIMIT_PAGES: i64 = 65_536;
/// WAL pages (4 KB) from which a round asks the writer to [`finish`], so that the WAL
/// starts over: 32 MB, below `journal_size_limit` (64 MB), so the file is not truncated
/// each time.
pub(crate) const RESTART_PAGES: i64 = 8_192;
/// PASSIVE passes per round at most, and pages left uncopied below which one more pass is
/// not worth it: the writer then waits for at most those and what came since.
const PASSES: usize = 8;
const LEFT_PAGES: i64 = 256;

/// `(busy, WAL pages, pages checkpointed)` of a checkpoint in `mode`.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(i64, i64, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
}

/// What the checkpointer needs of the store.
pub(crate) trait Writer: Send + Sync + 'static {
    /// The writer's connection, behind its lock.
    fn writer(&self) -> &Mutex<Connection>;
    /// Set to ask the writer to [`finish`] a checkpoint before its next transaction.
    fn finish_due(&self) -> &AtomicBool;
}

/// One round: passes beside the writer; then, if the WAL is large, the writer is asked to
/// finish (or, past [`WAL_LIMIT_PAGES`], made to wait for readers).
fn round<W: Writer>(conn: &Connection, store: &W, db: Option<&std::fs::File>) -> rusqlite::Result<()> {
    let (mut busy, mut log, mut done) = checkpoint(conn, "PASSIVE")?;
    for _ in 1..PASSES {
        if busy != 0 || log - done <= LEFT_PAGES {
            break;
        }
        (busy, log, done) = checkpoint(conn, "PASSIVE")?;
    }
    if log > WAL_LIMIT_PAGES {
        let _writer = store.writer().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        tracing::info!(pages = log, "the WAL is large: a checkpoint waits for readers");
        checkpoint(conn, "RESTART")?;
    } else if log >= RESTART_PAGES {
        // The passes wrote pages into the database file without syncing it (see the
        // module's doc): synced here, off the writer's lock, the finish syncs only what
        // its own pass copies.
        if let Some(db) = db {
            let started = Instant::now();
            if let Err(e) = db.sync_data() {
                tracing::warn!(error = %e, "cannot sync the database file; the writer's checkpoint will");
            }
            tracing::debug!(took_ms = started.elapsed().as_millis() as u64, "database file synced");
        }
        store.finish_due().store(true, Ordering::Release);
    }
    Ok(())
}

/// Step 2, on the writer's connection `conn` (between transactions) if `due` is set.
pub(crate) fn finish(conn: &Connection, due: &AtomicBool) {
    if !due.swap(false, Ordering::AcqRel) {
        return;
    }
    let started = Instant::now();
    match checkpoint(conn, "PASSIVE") {
        Ok((_, log, done)) => {
            let took = started.elapsed();
            metrics::histogram!("ingot_wal_checkpoint_finish_seconds").record(took.as_secs_f64());
            tracing::debug!(pages = log, copied = done, took_ms = took.as_millis() as u64, "WAL checkpoint finished");
        }
        // The checkpointer asks again next round.
        Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed on the writer's connection"),
    }
}

/// Starts the checkpointer of the store `alive` points to.
pub(crate) fn spawn<W: Writer>(conn: Connection, alive: Weak<W>, path: PathBuf) {
    let spawned = std::thread::Builder::new().name("ingot-checkpoint".into()).spawn(move || {
        let mut last_warning: Option<Instant> = None;
        let db = std::fs::File::open(&path)
            .inspect_err(
                |e| tracing::warn!(path = %path.display(), error = %e, "cannot open the database file to sync it"),
            )
            .ok();
        loop {
            std::thread::sleep(EVERY);
            let Some(store) = alive.upgrade() else { return };
            let outcome = round(&conn, &*store, db.as_ref());
            drop(store);
            if let Err(e) = outcome
                && last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60))
            {
                tracing::warn!(path = %path.display(), error = %e, "WAL checkpoint failed; retrying");
                last_warning = Some(Instant::now());
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the WAL checkpointer; checkpoints stay in commits");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use crate::history::HistoryStore;
    use crate::{SqliteStore, StoreOptions};

    /// The writer never checkpoints (`wal_autocheckpoint = 0`), yet committed pages reach
    /// the database file within moments: the checkpointer's work.
    #[tokio::test]
    async fn committed_pages_reach_the_database_file_off_the_commit_path() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), StoreOptions::default()).unwrap();
        let autocheckpoint: i64 =
            store.write(|tx| Ok(tx.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))?)).await.unwrap();
        assert_eq!(autocheckpoint, 0, "the writer does not checkpoint in its commits");
        let file = dir.path().join("ingot.db");
        let before = std::fs::metadata(&file).unwrap().len();
        let readings: Vec<_> =
            (0..3000).map(|i| crate::contract::reading(&format!("d{}", i % 300), i, json!({"t": i}))).collect();
        store.write_history(readings).await.unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::metadata(&file).unwrap().len() <= before {
            assert!(std::time::Instant::now() < deadline, "no checkpoint moved the WAL into {}", file.display());
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let store = Arc::new(store);
        assert_eq!(store.history(crate::contract::query("d7", "t")).await.unwrap().len(), 10);
    }

    /// The writer commits without a pause, batches of readings of 1,000 devices; the WAL
    /// still starts over, again and again, once it holds [`RESTART_PAGES`], instead of
    /// growing. Without the checkpointer's second step it never did (SQLite restarts the
    /// WAL only when a write begins with all of it checkpointed).
    #[test]
    fn the_wal_stays_bounded_under_continuous_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            SqliteStore::open(dir.path(), StoreOptions { readers: 1, sync_full: false, ..Default::default() }).unwrap();
        let wal = dir.path().join("ingot.db-wal");
        // The WAL header's salt changes each time the WAL starts over.
        let salt = || {
            use std::io::Read;
            let mut header = [0u8; 24];
            let mut file = std::fs::File::open(&wal).ok()?;
            file.read_exact(&mut header).ok().map(|()| header[16..24].to_vec())
        };
        // Made beforehand, so that commits follow one another without a pause, as the
        // history writer's do at full ingest.
        let batches: Vec<Vec<_>> = (0..60)
            .map(|b| {
                (0..1000).map(|d| crate::contract::reading(&format!("d{d}"), b * 1000 + d, json!({"t": d}))).collect()
            })
            .collect();
        let (mut restarts, mut last_salt, mut written, mut largest) = (0, None, 0, 0);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while restarts < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "the WAL started over {restarts} times in {written} batches (30 s); it is {largest} bytes"
            );
            store.write_history_blocking(&batches[written % batches.len()], None).unwrap();
            written += 1;
            let now = salt();
            if last_salt.is_some() && now != last_salt {
                restarts += 1;
            }
            last_salt = now;
            largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
        }
        // It starts over at RESTART_PAGES (32 MB), plus what came during the round.
        assert!(largest <= 96 << 20, "the WAL grew to {largest} bytes");
    }
}
