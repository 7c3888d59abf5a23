//! Which SQLite history layout writes fastest? Commits of 1,000 values spread over many
//! series (fsync on, checkpoints in the commit path as SQLite's default), into a
//! database that already holds 2 M values, each layout in a directory of its own:
//! directly into `history`, or staged and moved (whole, or in slices: what
//! `history::stage` does). `CACHE_KB` sets the page cache. Results in BENCHMARKS.md
//! (issue 16, lever 2).
//!
//! A measurement, not a check, so ignored by default:
//!
//! ```text
//! cargo test --release -p store history_layouts -- --ignored --nocapture
//! ```

use std::time::{Duration, Instant};

use rusqlite::{Connection, params};

#[derive(Clone, Copy, Debug)]
enum Layout {
    /// Today: every value into `history`, indexed (series, ts).
    Direct,
    /// Values into a small indexed table; every `move_every` commits its rows move into
    /// `history` sorted by (series, ts), then it is emptied (two tables in turn).
    Staged { move_every: usize },
    /// Values into a small table clustered by (series, ts, n); once it holds `at` values
    /// the other takes the writes and it moves into `history` a slice of `slice` values
    /// per commit, lowest series first.
    Sliced { at: usize, slice: usize },
}

fn open(dir: &std::path::Path) -> Connection {
    let c = Connection::open(dir.join("h.db")).unwrap();
    if let Ok(kb) = std::env::var("CACHE_KB") {
        c.pragma_update(None, "cache_size", -kb.parse::<i64>().unwrap()).unwrap();
    }
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    c.pragma_update(None, "synchronous", "FULL").unwrap();
    c.execute_batch(
        "CREATE TABLE history (series INTEGER NOT NULL, ts INTEGER NOT NULL, value TEXT NOT NULL);
         CREATE INDEX history_series_ts ON history (series, ts);
         CREATE TABLE recent0 (series INTEGER NOT NULL, ts INTEGER NOT NULL, value TEXT NOT NULL);
         CREATE INDEX recent0_series_ts ON recent0 (series, ts);
         CREATE TABLE recent1 (series INTEGER NOT NULL, ts INTEGER NOT NULL, value TEXT NOT NULL);
         CREATE INDEX recent1_series_ts ON recent1 (series, ts);
         CREATE TABLE stage0 (series INTEGER NOT NULL, ts INTEGER NOT NULL, n INTEGER NOT NULL, value TEXT NOT NULL, PRIMARY KEY (series, ts, n)) WITHOUT ROWID;
         CREATE TABLE stage1 (series INTEGER NOT NULL, ts INTEGER NOT NULL, n INTEGER NOT NULL, value TEXT NOT NULL, PRIMARY KEY (series, ts, n)) WITHOUT ROWID;",
    )
    .unwrap();
    c
}

/// Fills `history` with `per_series` readings of each series, sorted (quick).
fn prefill(c: &mut Connection, series: i64, per_series: i64) {
    let tx = c.transaction().unwrap();
    {
        let mut st = tx.prepare("INSERT INTO history VALUES (?1, ?2, ?3)").unwrap();
        for s in 0..series {
            for t in 0..per_series {
                st.execute(params![s, t, "12.5"]).unwrap();
            }
        }
    }
    tx.commit().unwrap();
}

fn run(layout: Layout, series: i64, prefill_per_series: i64, dur: Duration) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut c = open(dir.path());
    prefill(&mut c, series, prefill_per_series);
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut ts = prefill_per_series;
    let (mut values, mut commits, mut active) = (0u64, 0usize, 0usize);
    let (mut in_active, mut in_old) = (0usize, 0usize);
    let mut times = Vec::new();
    let start = Instant::now();
    while start.elapsed() < dur {
        let t0 = Instant::now();
        let tx = c.transaction().unwrap();
        {
            let sql = match layout {
                Layout::Direct => "INSERT INTO history VALUES (?1, ?2, ?3)".to_string(),
                Layout::Staged { .. } => format!("INSERT INTO recent{active} VALUES (?1, ?2, ?3)"),
                Layout::Sliced { .. } => format!("INSERT INTO stage{active} VALUES (?1, ?2, ?2, ?3)"),
            };
            let mut st = tx.prepare_cached(&sql).unwrap();
            for _ in 0..1000 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                st.execute(params![(rng % series as u64) as i64, ts, "12.5"]).unwrap();
                ts += 1;
            }
        }
        in_active += 1000;
        if let Layout::Sliced { at, slice } = layout {
            let old = 1 - active;
            if in_old > 0 {
                let bound: Option<i64> = tx
                    .query_row(
                        &format!("SELECT series FROM stage{old} ORDER BY series, ts, n LIMIT 1 OFFSET ?1"),
                        [slice as i64],
                        |r| r.get(0),
                    )
                    .ok();
                let bound = bound.unwrap_or(i64::MAX);
                let bound = if bound == i64::MAX { bound } else { bound.max(1) };
                let moved = tx
                    .execute(
                        &format!(
                            "INSERT INTO history SELECT series, ts, value FROM stage{old} WHERE series < ?1 ORDER BY series, ts, n"
                        ),
                        [bound],
                    )
                    .unwrap();
                tx.execute(&format!("DELETE FROM stage{old} WHERE series < ?1"), [bound]).unwrap();
                in_old = in_old.saturating_sub(moved);
                if bound == i64::MAX {
                    in_old = 0;
                }
            } else if in_active >= at {
                active = old;
                in_old = in_active;
                in_active = 0;
            }
        }
        values += 1000;
        commits += 1;
        if let Layout::Staged { move_every } = layout
            && commits.is_multiple_of(move_every)
        {
            active = 1 - active;
            let old = 1 - active;
            tx.execute_batch(&format!(
                "INSERT INTO history SELECT series, ts, value FROM recent{old} ORDER BY series, ts;
                 DELETE FROM recent{old};"
            ))
            .unwrap();
        }
        tx.commit().unwrap();
        times.push(t0.elapsed());
    }
    let rate = values as f64 / start.elapsed().as_secs_f64();
    let wal = std::fs::metadata(dir.path().join("h.db-wal")).map(|m| m.len()).unwrap_or(0);
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    println!(
        "{layout:?} series={series}: {rate:.0} values/s ({commits} commits, WAL {} MB), commit ms p50 {:.1} p99 {:.1} max {:.1}",
        wal >> 20,
        at(0.5),
        at(0.99),
        at(1.0)
    );
    rate
}

#[test]
#[ignore = "a measurement: cargo test --release -p store history_layouts -- --ignored --nocapture"]
fn history_layouts() {
    let dur = Duration::from_secs(8);
    for series in [2_000, 20_000] {
        let per = 2_000_000 / series;
        for layout in [
            Layout::Direct,
            Layout::Staged { move_every: 25 },
            Layout::Sliced { at: 25_000, slice: 2_000 },
            Layout::Sliced { at: 50_000, slice: 4_000 },
        ] {
            run(layout, series, per, dur);
        }
    }
}
