//! The WAL checkpoint, mostly off the writer's commit path.
//!
//! SQLite checkpoints automatically inside the commit that takes the WAL past 1,000 pages:
//! that commit then also copies the WAL's pages into the database file and syncs it, and
//! every reading of its batch waits. Issue 2's profile put that at 12% of the server's CPU
//! at full ingest, all of it on the one writer thread that bounds throughput. So the
//! writer's connection runs with `wal_autocheckpoint = 0`, and a thread of its own, with
//! its own connection, checkpoints every [`EVERY`]:
//!
//! 1. a PASSIVE checkpoint, which never waits for the writer or a reader, copies the bulk
//!    of the WAL while the writer goes on committing on the other core (a page written
//!    many times since the last round is copied once);
//! 2. then, holding the writer's lock (the writer waits), another PASSIVE checkpoint copies
//!    the few frames committed during step 1. The whole WAL is then in the database file,
//!    so the writer's next transaction starts the WAL over from its beginning.
//!
//! Step 2 is what keeps the WAL bounded. Without it, under continuous ingest a checkpoint
//! never catches up with the writer, SQLite never restarts the WAL, and the file grows
//! without end: a 10-minute run at full rate filled the disk with a 16 GB WAL after 200 s
//! (found while measuring issue 16; `the_wal_stays_bounded_under_continuous_writes`
//! guards it). A reader holding an old snapshot can still delay a restart; a RESTART
//! checkpoint, which waits for readers, bounds the file past [`WAL_LIMIT_PAGES`].
//!
//! Durability does not move: a commit is durable once its WAL frames are (synced with
//! `synchronous = FULL`); a checkpoint only moves committed pages into the database file.
//! The thread ends when the store it serves is dropped.

use std::path::PathBuf;
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// How often the checkpointer runs.
pub(crate) const EVERY: Duration = Duration::from_millis(200);
/// WAL pages (4 KB) past which a checkpoint waits for readers: 256 MB.
pub(crate) const WAL_LIMIT_PAGES: i64 = 65_536;

/// `(busy, WAL pages, pages checkpointed)` of a checkpoint in `mode`.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(i64, i64, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
}

/// What the checkpointer needs of the store: its writer's lock.
pub(crate) trait Writer: Send + Sync + 'static {
    fn writer(&self) -> &Mutex<Connection>;
}

/// One round: the bulk beside the writer, the rest with the writer waiting.
fn round<W: Writer>(conn: &Connection, store: &W) -> rusqlite::Result<()> {
    checkpoint(conn, "PASSIVE")?;
    let _writer = store.writer().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let (busy, log, done) = checkpoint(conn, "PASSIVE")?;
    if log > WAL_LIMIT_PAGES && (busy != 0 || done < log) {
        tracing::info!(pages = log, "the WAL is large: a checkpoint waits for readers");
        checkpoint(conn, "RESTART")?;
    }
    Ok(())
}

/// Starts the checkpointer of the store `alive` points to.
pub(crate) fn spawn<W: Writer>(conn: Connection, alive: Weak<W>, path: PathBuf) {
    let spawned = std::thread::Builder::new().name("ingot-checkpoint".into()).spawn(move || {
        let mut last_warning: Option<Instant> = None;
        loop {
            std::thread::sleep(EVERY);
            let Some(store) = alive.upgrade() else { return };
            let outcome = round(&conn, &*store);
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

    /// The writer commits without a pause, batches of readings of 1,000 devices (each
    /// commit dirties ~1,000 pages, ~4 MB of WAL); the WAL still starts over, again and
    /// again, instead of growing. Without the checkpointer's second step it never did
    /// (SQLite restarts the WAL only when a write begins with all of it checkpointed).
    #[test]
    fn the_wal_stays_bounded_under_continuous_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), StoreOptions { readers: 1, sync_full: false }).unwrap();
        let wal = dir.path().join("ingot.db-wal");
        // The WAL header's salt changes each time the WAL starts over.
        let salt = || std::fs::read(&wal).ok().filter(|h| h.len() >= 24).map(|h| h[16..24].to_vec());
        // Made beforehand, so that commits follow one another without a pause, as the
        // history writer's do at full ingest.
        let batches: Vec<Vec<_>> = (0..60)
            .map(|b| {
                (0..1000).map(|d| crate::contract::reading(&format!("d{d}"), b * 1000 + d, json!({"t": d}))).collect()
            })
            .collect();
        let (mut restarts, mut last_salt, mut written) = (0, None, 0);
        let started = std::time::Instant::now();
        while written < batches.len() || started.elapsed() < std::time::Duration::from_millis(1500) {
            store.write_history_blocking(&batches[written % batches.len()], None).unwrap();
            written += 1;
            let now = salt();
            if last_salt.is_some() && now != last_salt {
                restarts += 1;
            }
            last_salt = now;
        }
        // One start-over per checkpoint round (200 ms): 7 in 1.5 s; without step 2, 1 or 2.
        assert!(restarts >= 5, "the WAL started over {restarts} times in {written} batches");
        let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        assert!(size <= 64 << 20, "the WAL file is kept to journal_size_limit: {size} bytes");
    }
}
