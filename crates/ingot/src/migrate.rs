//! `ingot migrate`: copies an installation's data from its SQLite database into an empty
//! PostgreSQL database (`store::copy`), with a progress bar, then prints the row counts
//! of both, verified equal.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use store::StoreUrl;

/// Settings of `ingot migrate`.
#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// The SQLite database to copy: sqlite://PATH (`ingot serve` keeps it in
    /// <data-dir>/ingot.db). It may be in use: the copy reads one consistent snapshot,
    /// and whatever is written after that stays behind, so stop `ingot serve` first.
    #[arg(long, value_name = "sqlite://PATH", value_parser = sqlite_path)]
    pub from: PathBuf,
    /// The PostgreSQL database to copy into, which must be empty (Ingot creates its
    /// tables): postgres://USER[:PASSWORD]@HOST[:PORT]/DB.
    #[arg(long, value_name = "postgres://…", env = "INGOT_MIGRATE_TO", value_parser = postgres_url)]
    pub to: String,
}

fn sqlite_path(s: &str) -> Result<PathBuf, String> {
    match s.parse::<StoreUrl>()? {
        StoreUrl::Sqlite(path) => Ok(path),
        StoreUrl::Postgres(_) => Err("--from is the SQLite database to copy, sqlite://PATH (e.g. \
                                      sqlite://ingot-data/ingot.db); a copy from PostgreSQL is not supported"
            .into()),
    }
}

fn postgres_url(s: &str) -> Result<String, String> {
    match s.parse::<StoreUrl>()? {
        StoreUrl::Postgres(url) => Ok(url),
        StoreUrl::Sqlite(_) => Err("--to is the PostgreSQL database to copy into, \
                                    postgres://USER[:PASSWORD]@HOST[:PORT]/DB; a copy to SQLite is not supported"
            .into()),
    }
}

pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let (from, to) = (StoreUrl::Sqlite(args.from.clone()), StoreUrl::Postgres(args.to.clone()));
    println!("ingot migrate: copying {from} to {to}");
    let started = Instant::now();
    let bar = TableBar::new();
    let copied =
        store::copy::copy_sqlite_to_postgres(&args.from, &args.to, &|t, done, total| bar.show(t, done, total)).await;
    bar.clear();
    let report = copied.with_context(|| format!("cannot migrate {from} to {to}; nothing was copied"))?;
    let elapsed = started.elapsed();

    let width = report.tables.iter().map(|t| t.table.len()).max().unwrap_or(0).max("total".len());
    println!();
    println!("{:<width$}  {:>13}  {:>13}", "table", "SQLite", "PostgreSQL");
    for t in &report.tables {
        println!("{:<width$}  {:>13}  {:>13}", t.table, thousands(t.sqlite), thousands(t.postgres));
    }
    let sqlite_rows = report.tables.iter().map(|t| t.sqlite).sum();
    println!("{:<width$}  {:>13}  {:>13}", "total", thousands(sqlite_rows), thousands(report.rows()));
    println!();
    println!(
        "verified: each of the {} tables has as many rows in PostgreSQL as in the SQLite snapshot \
         ({} rows in {})",
        report.tables.len(),
        thousands(report.rows()),
        seconds(elapsed)
    );
    if !report.identities.is_empty() {
        let starts: Vec<String> =
            report.identities.iter().map(|i| format!("{} after {}", i.table, i.last_id)).collect();
        println!("new ids continue: {}", starts.join(", "));
    }
    // The CA is in the store (copied); a new --data-dir only gets a new server certificate from it.
    println!("next: ingot serve --store {to}");
    Ok(())
}

/// One progress bar, for the table being copied; a line per table copied. indicatif
/// hides the bar when stdout is not a terminal; the lines are printed anyway.
struct TableBar {
    bar: ProgressBar,
    table: Mutex<String>,
}

impl TableBar {
    fn new() -> Self {
        let style =
            ProgressStyle::with_template("{msg:>14} [{bar:40}] {human_pos}/{human_len} rows, {rate}, {eta} left")
                .expect("a valid template")
                .with_key("rate", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{}/s", thousands(state.per_sec() as u64));
                })
                .progress_chars("=> ");
        // Hidden until the first table starts (the connection and its log lines come first).
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden()).with_style(style);
        Self { bar, table: Mutex::new(String::new()) }
    }

    /// `store::copy`'s progress: for each table, calls with `done < total`, then one with
    /// `done == total`.
    fn show(&self, table: &str, done: u64, total: u64) {
        let mut current = self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if *current != table {
            self.bar.reset();
            self.bar.set_length(total);
            self.bar.set_message(table.to_string());
            if current.is_empty() {
                self.bar.set_draw_target(ProgressDrawTarget::stdout());
            }
            *current = table.to_string();
        }
        self.bar.set_position(done);
        if done == total {
            let rows = if total == 1 { "row" } else { "rows" };
            self.bar.suspend(|| println!("  {table}: {} {rows} copied", thousands(total)));
        }
    }

    fn clear(&self) {
        self.bar.finish_and_clear();
    }
}

/// 1234567 as "1,234,567".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated() {
        let cases = [(0, "0"), (999, "999"), (1000, "1,000"), (1_000_000, "1,000,000"), (12_345_678, "12,345,678")];
        for (n, want) in cases {
            assert_eq!(thousands(n), want);
        }
    }

    #[test]
    fn each_side_takes_only_its_engine() {
        assert_eq!(sqlite_path("sqlite://ingot-data/ingot.db"), Ok(PathBuf::from("ingot-data/ingot.db")));
        assert!(sqlite_path("postgres://u@h/d").unwrap_err().contains("--from is the SQLite database"));
        assert_eq!(postgres_url("postgresql://u@h/d").as_deref(), Ok("postgresql://u@h/d"));
        assert!(postgres_url("sqlite://x.db").unwrap_err().contains("--to is the PostgreSQL database"));
        assert!(postgres_url("mysql://x").unwrap_err().contains("postgres://"));
    }
}
