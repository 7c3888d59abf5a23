//! Crash recovery of the counters: a small JSON file rewritten every second.
//!
//! Writes are atomic: the snapshot goes to a temporary file in the same directory, is
//! fsynced, then renamed over the old file (and the directory fsynced), so a reader or a
//! restart after `kill -9` sees either the previous or the new snapshot, never half of one.
//!
//! On start the totals always continue from the file; the window is moved to the current
//! second, which empties every bucket older than 10 s (so a state older than that brings
//! back no rate, see [`crate::stats::Window::from_saved`]).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::stats::{Counters, SavedWindow, Totals, Window};

/// Bumped if the layout changes; a file with another version is ignored.
pub const FORMAT_VERSION: u32 = 1;

/// The recovery file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    /// Unix second of the save.
    pub saved_at: u64,
    pub totals: Totals,
    pub window: SavedWindow,
}

impl Snapshot {
    pub fn of(counters: &Counters, now: u64) -> Self {
        Snapshot { version: FORMAT_VERSION, saved_at: now, totals: counters.totals, window: counters.window.to_saved() }
    }

    /// Counters to continue from at second `now`.
    pub fn restore(&self, now: u64) -> Counters {
        Counters { totals: self.totals, window: Window::from_saved(&self.window, now) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} is not a valid recovery file: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Reads the snapshot at `path`; `Ok(None)` when there is none yet.
pub fn load(path: &Path) -> Result<Option<Snapshot>, RecoveryError> {
    let text = match fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(RecoveryError::Read { path: path.to_owned(), source }),
    };
    let invalid = |reason: String| RecoveryError::Invalid { path: path.to_owned(), reason };
    let snapshot: Snapshot = serde_json::from_slice(&text).map_err(|e| invalid(e.to_string()))?;
    if snapshot.version != FORMAT_VERSION {
        return Err(invalid(format!("format version {} (expected {FORMAT_VERSION})", snapshot.version)));
    }
    Ok(Some(snapshot))
}

/// Writes `snapshot` to `path` atomically (temp file + fsync + rename + directory fsync).
/// Blocking: call it from a blocking thread.
pub fn save(path: &Path, snapshot: &Snapshot) -> Result<(), RecoveryError> {
    let write_err = |source: io::Error| RecoveryError::Write { path: path.to_owned(), source };
    let json = serde_json::to_vec(snapshot).map_err(|e| write_err(io::Error::other(e)))?;
    let temp = temp_path(path);
    let result = (|| {
        let mut file = File::create(&temp)?;
        file.write_all(&json)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, path)?;
        // The rename itself must survive a power cut, not only the data.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map_err(write_err)
}

/// Moves an unreadable recovery file aside (`<name>.corrupt`) so that it is kept for a look
/// but no longer read; the next save writes a fresh one.
pub fn set_aside(path: &Path) -> io::Result<PathBuf> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(".corrupt");
    let aside = PathBuf::from(aside);
    fs::rename(path, &aside)?;
    Ok(aside)
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_owned()).unwrap_or_else(|| "recovery.json".into());
    name.push(format!(".tmp.{}", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scanner::Tally;

    const T0: u64 = 1_700_000_000;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("proxy-recovery-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create temp dir");
        dir
    }

    fn busy_counters() -> Counters {
        let mut counters = Counters::new(T0);
        for s in 0..5 {
            counters.add(&Tally { req: 10, ack: 9, nak: 1, malformed: 1 }, T0 + s);
        }
        counters
    }

    #[test]
    fn save_then_load_continues_totals_and_window() {
        let dir = temp_dir("roundtrip");
        let path = dir.join("recovery.json");
        let counters = busy_counters();
        save(&path, &Snapshot::of(&counters, T0 + 4)).expect("save");
        let snapshot = load(&path).expect("load").expect("present");
        let mut restored = snapshot.restore(T0 + 6);
        assert_eq!(restored.totals, counters.totals);
        let report = restored.report(T0 + 6);
        assert_eq!(report.msg_req, 50);
        assert_eq!(report.request_rate_10s, 5.0, "5 s of 10 req within the last 10 s");
        assert!(fs::read_dir(&dir).expect("list").all(|e| e.expect("entry").file_name() == "recovery.json"));
        fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn stale_snapshot_restores_totals_with_an_empty_window() {
        let counters = busy_counters();
        let mut restored = Snapshot::of(&counters, T0 + 4).restore(T0 + 4 + 11);
        let report = restored.report(T0 + 4 + 11);
        assert_eq!(report.msg_total, 100);
        assert_eq!((report.request_rate_10s, report.response_rate_10s), (0.0, 0.0));
    }

    #[test]
    fn missing_corrupt_and_foreign_files() {
        let dir = temp_dir("corrupt");
        let path = dir.join("recovery.json");
        assert!(load(&path).expect("missing is fine").is_none());
        fs::write(&path, b"{\"version\":1,\"saved_at\":").expect("write");
        assert!(matches!(load(&path), Err(RecoveryError::Invalid { .. })));
        fs::write(&path, b"\x00\xffnot json").expect("write");
        assert!(matches!(load(&path), Err(RecoveryError::Invalid { .. })));
        let mut other = Snapshot::of(&busy_counters(), T0);
        other.version = 99;
        fs::write(&path, serde_json::to_vec(&other).expect("json")).expect("write");
        assert!(matches!(load(&path), Err(RecoveryError::Invalid { .. })));
        let aside = set_aside(&path).expect("set aside");
        assert!(aside.exists() && !path.exists());
        fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn save_into_a_missing_directory_fails_without_leaving_a_temp_file() {
        let dir = temp_dir("missing-dir");
        let path = dir.join("no/such/dir/recovery.json");
        assert!(matches!(save(&path, &Snapshot::of(&busy_counters(), T0)), Err(RecoveryError::Write { .. })));
        fs::remove_dir_all(dir).ok();
    }
}
