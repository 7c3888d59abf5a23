//! Running a job with the **line protocol**, which a load test in any language can speak:
//! the agent starts the program `users` times, each with `GOLO_PROTOCOL=lines` and
//! `GOLO_USER=<n>` in its environment, and for each iteration writes one line to its
//! stdin, `{"sequenceID": <n>}`; the program does one iteration and prints one Output
//! line on stdout (go-lo's: `{"sequenceID", "url", "method", "status", "size",
//! "timestamp", "duration", "error"}`; any JSON object is passed on). So `users`
//! iterations are in flight at once, until `duration` seconds have passed; then the
//! programs' stdin closes and they are killed.
//!
//! - The children are watched, not probed (the original sent SIGUSR1 every second, which
//!   kills a program that does not handle it): a child that exits or closes its stdout
//!   ends its user's loop, said in `err.log`.
//! - Their stdout lines go to `<logs>/<job>/out.log` and their stderr to `err.log`.
//! - Outputs go to `POST <collector>/push/<job>` in batches of [`BATCH`], and the last,
//!   partial batch too (the original never sent it). A push that fails is retried, then
//!   counted as lost in the summary.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::AgentError;
use super::jobs::Job;

/// Outputs per push to the collector.
pub const BATCH: usize = 256;
/// Pushes of one batch before it is given up.
const PUSH_TRIES: u32 = 3;

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Output lines read.
    pub outputs: u64,
    /// Lines that were not JSON objects (kept in out.log, not pushed).
    pub bad_lines: u64,
    /// Outputs the collector took.
    pub pushed: u64,
    /// Outputs given up after failed pushes.
    pub lost: u64,
    /// Users whose program ended before the time was up.
    pub ended_early: u64,
}

/// Where a job's results go.
#[derive(Clone)]
pub struct Collector {
    pub url: String,
    pub http: reqwest::Client,
}

impl Collector {
    async fn push(&self, job: &str, batch: &[Value]) -> bool {
        let url = format!("{}/push/{job}", self.url.trim_end_matches('/'));
        for attempt in 0..PUSH_TRIES {
            match self.http.post(&url).json(batch).send().await {
                Ok(r) if r.status().is_success() => return true,
                Ok(r) => tracing::warn!(%url, status = %r.status(), attempt, "the collector refused a batch"),
                Err(e) => tracing::warn!(%url, error = %e, attempt, "the collector could not be reached"),
            }
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
        false
    }
}

/// The job's log directory, made if needed.
pub fn log_dir(logs: &Path, job: &Job) -> Result<PathBuf, AgentError> {
    let dir = logs.join(&job.name);
    std::fs::create_dir_all(&dir).map_err(|e| AgentError::Io(dir.clone(), e))?;
    Ok(dir)
}

/// Runs `job` (its program at `exe`) with the line protocol.
pub async fn run_lines(job: &Job, exe: &Path, logs: &Path, collector: &Collector) -> Result<Summary, AgentError> {
    let dir = log_dir(logs, job)?;
    let open = |name: &str| {
        let path = dir.join(name);
        std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| AgentError::Io(path, e))
    };
    let (out_log, err_log) = (open("out.log")?, open("err.log")?);
    let deadline = Instant::now() + Duration::from_secs(job.duration);
    let (tx, rx) = mpsc::channel::<String>(4 * BATCH);
    let pusher = tokio::spawn(push_all(job.name.clone(), rx, collector.clone(), out_log));
    let mut users = Vec::new();
    for user in 0..job.users {
        let child = tokio::process::Command::new(exe)
            .env("GOLO_PROTOCOL", "lines")
            .env("GOLO_USER", user.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err_log.try_clone().map_err(|e| AgentError::Io(dir.join("err.log"), e))?)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| AgentError::Spawn(exe.to_path_buf(), e))?;
        users.push(tokio::spawn(one_user(child, user, job.users, deadline, tx.clone())));
    }
    drop(tx);
    let mut ended_early = 0;
    for user in users {
        if user.await.unwrap_or(true) {
            ended_early += 1;
        }
    }
    let mut summary = pusher.await.unwrap_or_default();
    summary.ended_early = ended_early;
    if ended_early > 0 {
        use std::io::Write;
        let _ = writeln!(&err_log, "ingot agent: {ended_early} user(s) ended before the time was up");
    }
    Ok(summary)
}

/// One user: iterations one after another until the deadline; whether its program ended
/// early.
async fn one_user(
    mut child: tokio::process::Child,
    user: u64,
    users: u64,
    deadline: Instant,
    tx: mpsc::Sender<String>,
) -> bool {
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else { return true };
    let mut lines = BufReader::new(stdout).lines();
    let mut seq = user;
    let mut early = false;
    while Instant::now() < deadline {
        let line = format!("{}\n", json!({"sequenceID": seq}));
        if stdin.write_all(line.as_bytes()).await.is_err() {
            early = true;
            break;
        }
        match tokio::time::timeout_at(deadline, lines.next_line()).await {
            Ok(Ok(Some(out))) => {
                if tx.send(out).await.is_err() {
                    break;
                }
            }
            Ok(_) => {
                early = true;
                break;
            }
            // Time is up in the middle of an iteration.
            Err(_) => break,
        }
        seq += users;
    }
    drop(stdin);
    let _ = child.start_kill();
    let _ = child.wait().await;
    early
}

/// Logs every line and pushes the Outputs in batches, the last partial one included.
async fn push_all(job: String, mut rx: mpsc::Receiver<String>, collector: Collector, log: std::fs::File) -> Summary {
    use std::io::Write;
    let mut log = std::io::BufWriter::new(log);
    let mut summary = Summary::default();
    let mut batch = Vec::with_capacity(BATCH);
    let flush = async |batch: &mut Vec<Value>, summary: &mut Summary| {
        if batch.is_empty() {
            return;
        }
        if collector.push(&job, batch).await {
            summary.pushed += batch.len() as u64;
        } else {
            summary.lost += batch.len() as u64;
        }
        batch.clear();
    };
    while let Some(line) = rx.recv().await {
        let _ = writeln!(log, "{line}");
        summary.outputs += 1;
        match serde_json::from_str::<Value>(&line) {
            Ok(v @ Value::Object(_)) => batch.push(v),
            _ => summary.bad_lines += 1,
        }
        if batch.len() == BATCH {
            flush(&mut batch, &mut summary).await;
        }
    }
    flush(&mut batch, &mut summary).await;
    let _ = log.flush();
    summary
}
