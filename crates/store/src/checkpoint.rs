//! The WAL checkpoint, off the writer's commit path.
//!
//! SQLite checkpoints automatically inside the commit that takes the WAL past 1,000 pages:
//! that commit then also copies the WAL's pages into the database file and syncs it, and
//! every reading of its batch waits. Issue 2's profile put that at 12% of the server's CPU
//! at full ingest, all of it on the one writer thread that bounds throughput. So the
//! writer's connection runs with `wal_autocheckpoint = 0`, and a thread of its own, with
//! its own connection, runs a PASSIVE checkpoint every [`EVERY`]: PASSIVE never waits for
//! the writer or a reader, so the copying overlaps the next batches on another core, and a
//! page written many times between two checkpoints is copied once.
//!
//! Durability does not move: a commit is durable once its WAL frames are (synced with
//! `synchronous = FULL`); a checkpoint only moves committed pages into the database file.
//! If the WAL still grows past [`WAL_LIMIT_PAGES`] (a reader holding an old snapshot kept
//! checkpoints from finishing), a RESTART checkpoint waits for readers (not for the
//! writer's queue, only its current transaction) and bounds the file. The thread ends
//! when the store it serves is dropped.

use std::path::PathBuf;
use std::sync::Weak;
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

/// Starts the checkpointer of the store whose inner state `alive` points to.
pub(crate) fn spawn<T: Send + Sync + 'static>(conn: Connection, alive: Weak<T>, path: PathBuf) {
    let spawned = std::thread::Builder::new().name("ingot-checkpoint".into()).spawn(move || {
        let mut last_warning: Option<Instant> = None;
        loop {
            std::thread::sleep(EVERY);
            if alive.upgrade().is_none() {
                return;
            }
            let outcome = checkpoint(&conn, "PASSIVE").and_then(|(busy, log, done)| {
                if log > WAL_LIMIT_PAGES && (busy != 0 || done < log) {
                    tracing::info!(pages = log, "the WAL is large: a checkpoint waits for readers");
                    checkpoint(&conn, "RESTART")?;
                }
                Ok(())
            });
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
        let autocheckpoint: i64 = store
            .write(|tx| Ok(tx.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))?))
            .await
            .unwrap();
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
}
