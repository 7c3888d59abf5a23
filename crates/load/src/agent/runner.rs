//! Running a job, with go-lo's protocol or the line protocol.
//!
//! **go-lo's** (`run_gob`): the program is started once with no arguments and serves Go's
//! `net/rpc` on `127.0.0.1:<--rpc-port>` (go-lo's library: 9999; `GOLO_RPC_ADDR` says
//! where, for programs that read it); the agent dials it (retrying while it starts) and
//! keeps `users` calls of `Server.Run` in flight until `duration` seconds have passed;
//! each call makes it print one Output line. A port already in use is an error before
//! anything starts (the original's second job on a host would have called the first).
//!
//! **Built in** (`run_http`): no program at all; the agent sends one HTTP request over
//! and over from `users` loops, and makes the Outputs itself.
//!
//! The **line protocol** (`run_lines`), which a load test in any language can speak:
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
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::AgentError;
use super::jobs::Job;

/// Outputs per push to the collector.
pub const BATCH: usize = 256;
/// Pushes of one batch before it is given up (once one was, the next get one try each
/// until a push succeeds again).
const PUSH_TRIES: u32 = 3;
/// How long one push may take.
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// Batches waiting for the collector, at most.
const PENDING_BATCHES: usize = 1024;

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Outputs with an `error` or a `status` of 400 or more.
    pub errors: u64,
}

/// The running job's counters, for `GET /jobs/<name>` while it runs.
#[derive(Clone, Default)]
pub struct Live {
    /// Outputs read (an MQTT share: PUBACKs).
    pub done: Arc<AtomicU64>,
    pub errors: Arc<AtomicU64>,
}

impl Live {
    pub fn reset(&self) {
        self.done.store(0, Ordering::Relaxed);
        self.errors.store(0, Ordering::Relaxed);
    }
}

/// A finished job, in `<logs>/<job>/result.json`, served by `GET /jobs/<name>`. Times are
/// µs since the Unix epoch; histograms are [`crate::report::encode_histogram`]'s.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JobResult {
    pub name: String,
    /// `done`, or `failed` with `error`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub started_us: u64,
    pub ended_us: u64,
    #[serde(flatten)]
    pub summary: Summary,
    /// Every Output's `duration` (go-lo's, in ns), in µs.
    pub latency: String,
    /// An MQTT share's measurements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<crate::mqtt::Share>,
}

/// µs since the Unix epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_micros() as u64
}

impl JobResult {
    fn path(logs: &Path, name: &str) -> PathBuf {
        logs.join(name).join("result.json")
    }

    /// Writes it next to the job's logs (temporary file, then rename).
    pub fn save(&self, logs: &Path) -> Result<(), AgentError> {
        let path = Self::path(logs, &self.name);
        let tmp = path.with_extension("json.tmp");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| AgentError::Io(dir.to_path_buf(), e))?;
        }
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).unwrap_or_default())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| AgentError::Io(path, e))
    }

    /// The result of job `name`, if it ended.
    pub fn load(logs: &Path, name: &str) -> Option<Self> {
        serde_json::from_slice(&std::fs::read(Self::path(logs, name)).ok()?).ok()
    }
}

/// What running a job gave: its summary, its Outputs' latency, an MQTT share's measurements.
pub struct Ran {
    pub summary: Summary,
    pub latency: hdrhistogram::Histogram<u64>,
    pub mqtt: Option<crate::mqtt::Share>,
}

impl Ran {
    fn outputs((summary, latency): (Summary, hdrhistogram::Histogram<u64>)) -> Self {
        Self { summary, latency, mqtt: None }
    }
}

/// Whether an Output says its iteration failed.
pub(crate) fn failed(output: &Value) -> bool {
    output.get("error").and_then(Value::as_str).is_some_and(|e| !e.is_empty())
        || output.get("status").and_then(Value::as_u64).is_some_and(|s| s >= 400)
}

/// Where a job's results go.
#[derive(Clone)]
pub struct Collector {
    pub url: String,
    pub http: reqwest::Client,
}

impl Collector {
    async fn push(&self, job: &str, batch: &[Value], tries: u32) -> bool {
        let url = format!("{}/push/{job}", self.url.trim_end_matches('/'));
        // The collector URL may hold its token as a password: never in the log.
        let shown = match reqwest::Url::parse(&url) {
            Ok(mut u) => {
                let _ = u.set_password(None);
                u.to_string()
            }
            Err(_) => "(the collector URL)".into(),
        };
        for attempt in 0..tries {
            match self.http.post(&url).timeout(PUSH_TIMEOUT).json(batch).send().await {
                Ok(r) if r.status().is_success() => return true,
                Ok(r) => tracing::warn!(url = %shown, status = %r.status(), attempt, "the collector refused a batch"),
                Err(e) => {
                    let e = e.without_url();
                    tracing::warn!(url = %shown, error = %e, attempt, "the collector could not be reached")
                }
            }
            if attempt + 1 < tries {
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
        }
        false
    }
}

/// What reached the collector, in results. Once a batch was given up, the next ones get
/// one try each until a push succeeds again.
#[derive(Default)]
struct Delivery {
    pushed: u64,
    lost: u64,
    failing: bool,
}

impl Delivery {
    /// Pushes `batch`, which carries `results` results.
    async fn send(&mut self, collector: &Collector, job: &str, batch: &[Value], results: u64) {
        let tries = if self.failing { 1 } else { PUSH_TRIES };
        self.failing = !collector.push(job, batch, tries).await;
        if self.failing {
            self.lost += results;
        } else {
            self.pushed += results;
        }
    }
}

/// The job's log directory, made if needed.
pub fn log_dir(logs: &Path, job: &Job) -> Result<PathBuf, AgentError> {
    let dir = logs.join(&job.name);
    std::fs::create_dir_all(&dir).map_err(|e| AgentError::Io(dir.clone(), e))?;
    Ok(dir)
}

/// Opens the job's logs: (directory, out.log, err.log).
fn open_logs(logs: &Path, job: &Job) -> Result<(PathBuf, std::fs::File, std::fs::File), AgentError> {
    let dir = log_dir(logs, job)?;
    let open = |name: &str| {
        let path = dir.join(name);
        std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| AgentError::Io(path, e))
    };
    let (out, err) = (open("out.log")?, open("err.log")?);
    Ok((dir, out, err))
}

fn note(err_log: &std::fs::File, what: &str) {
    use std::io::Write;
    let _ = writeln!(&*err_log, "ingot agent: {what}");
}

/// Runs `job` (its program at `exe`) with go-lo's `net/rpc` protocol on `port`.
pub async fn run_gob(
    job: &Job,
    exe: &Path,
    logs: &Path,
    collector: &Collector,
    port: u16,
    live: &Live,
) -> Result<Ran, AgentError> {
    let (dir, out_log, err_log) = open_logs(logs, job)?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    // Free now, or another program would answer this job's calls.
    if std::net::TcpListener::bind(addr).is_err() {
        let busy = AgentError::PortBusy(port);
        note(&err_log, &busy.to_string());
        return Err(busy);
    }
    let mut child = tokio::process::Command::new(exe)
        .env("GOLO_RPC_ADDR", addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err_log.try_clone().map_err(|e| AgentError::Io(dir.join("err.log"), e))?)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| AgentError::Spawn(exe.to_path_buf(), e))?;
    let (tx, pusher) = start_pusher(job, collector, out_log, live);
    let stdout = child.stdout.take();
    let reader = tokio::spawn(async move {
        let Some(stdout) = stdout else { return };
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).await.is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(job.duration);
    let calls = call_until(&mut child, addr, job.users, deadline).await;
    let _ = child.start_kill();
    let _ = child.wait().await;
    let _ = reader.await;
    let mut ran = pushed(pusher).await;
    match calls {
        Ok((answered, errors)) => {
            if errors > 0 {
                note(&err_log, &format!("{errors} of {answered} calls returned an error"));
            }
        }
        Err(e) => {
            note(&err_log, &e);
            ran.summary.ended_early = 1;
        }
    }
    Ok(ran)
}

/// Dials the program (while it starts, up to 10 s) and keeps `users` calls in flight until
/// `deadline`: (calls answered, calls that returned an error).
async fn call_until(
    child: &mut tokio::process::Child,
    addr: std::net::SocketAddr,
    users: u64,
    deadline: Instant,
) -> Result<(u64, u64), String> {
    let dial_until = Instant::now() + Duration::from_secs(10);
    let mut client = loop {
        match super::rpc::Client::connect(addr).await {
            Ok(c) => break c,
            Err(e) => {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("the load test exited ({status}) before serving {addr}"));
                }
                if Instant::now() > dial_until {
                    return Err(format!("the load test did not serve {addr} within 10 s: {e}"));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let (mut answered, mut errors) = (0, 0);
    for _ in 0..users {
        client.call().await.map_err(|e| e.to_string())?;
    }
    loop {
        match tokio::time::timeout_at(deadline, client.answer()).await {
            Err(_) => return Ok((answered, errors)),
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok((_, error))) => {
                answered += 1;
                errors += u64::from(error.is_some());
                if Instant::now() < deadline {
                    client.call().await.map_err(|e| e.to_string())?;
                }
            }
        }
    }
}

/// Runs a built-in HTTP job: `users` loops sending `spec`'s request until the time is up,
/// each answer an Output (`status` 0 and `error` when none came). Answers in flight at
/// the end are not waited for.
pub async fn run_http(
    job: &Job,
    spec: &super::jobs::HttpSpec,
    logs: &Path,
    collector: &Collector,
    live: &Live,
) -> Result<Ran, AgentError> {
    let (_, out_log, _) = open_logs(logs, job)?;
    let deadline = Instant::now() + Duration::from_secs(job.duration);
    let (tx, pusher) = start_pusher(job, collector, out_log, live);
    let loops = http_loops(&collector.http, spec, job.users, deadline, tx);
    for l in loops {
        let _ = l.await;
    }
    Ok(pushed(pusher).await)
}

/// `users` loops sending `spec`'s request until `deadline`, each answer an Output line
/// on `tx` (`status` 0 and `error` when none came). Answers in flight at the deadline are
/// not waited for. Shared by the agent's built-in job and `ingot load http`.
pub(crate) fn http_loops(
    http: &reqwest::Client,
    spec: &super::jobs::HttpSpec,
    users: u64,
    deadline: Instant,
    tx: mpsc::Sender<String>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let method = reqwest::Method::from_bytes(spec.method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut loops = Vec::new();
    for user in 0..users {
        let (http, tx, spec, method, users) = (http.clone(), tx.clone(), spec.clone(), method.clone(), users);
        loops.push(tokio::spawn(async move {
            let mut seq = user;
            while Instant::now() < deadline {
                let mut request = http.request(method.clone(), &spec.url);
                if let Some(body) = &spec.body {
                    request = request.body(body.clone());
                }
                let started = std::time::Instant::now();
                let timestamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
                let answer = async {
                    let resp = request.send().await?;
                    let status = resp.status().as_u16();
                    let size = resp.bytes().await?.len();
                    Ok::<_, reqwest::Error>((status, size))
                };
                let (status, size, error) = match tokio::time::timeout_at(deadline, answer).await {
                    Err(_) => break,
                    Ok(Ok((status, size))) => (status, size, None),
                    Ok(Err(e)) => (0, 0, Some(e.to_string())),
                };
                let output = json!({"sequenceID": seq, "url": spec.url, "method": method.as_str(), "status": status,
                    "size": size, "timestamp": timestamp, "duration": started.elapsed().as_nanos() as u64,
                    "error": error});
                if tx.send(output.to_string()).await.is_err() {
                    break;
                }
                seq += users;
            }
        }));
    }
    loops
}

/// Runs an MQTT share (`ingot load mqtt --agents`): its devices connect and publish from
/// here; the measurements go into the job's result for the coordinator to merge.
pub async fn run_mqtt(
    job: &Job,
    spec: &super::jobs::MqttSpec,
    logs: &Path,
    collector: &Collector,
    live: &Live,
) -> Result<Ran, AgentError> {
    let (_, _, err_log) = open_logs(logs, job)?;
    // Each second's PUBACKs go to the collector as one summary (an Output per reading
    // would be as much load on it as on the platform under test).
    let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
    let pusher = {
        let (collector, name) = (collector.clone(), job.name.clone());
        tokio::spawn(async move {
            let mut delivery = Delivery::default();
            while let Some(item) = rx.recv().await {
                let mut batch = vec![item];
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                }
                let results = batch.iter().map(|i| i["count"].as_u64().unwrap_or(0)).sum();
                delivery.send(&collector, &name, &batch, results).await;
            }
            (delivery.pushed, delivery.lost)
        })
    };
    let share = crate::mqtt::run_share(&spec.args(&job.name), spec.devices.clone(), &live.done, tx).await;
    let (pushed, lost) = pusher.await.unwrap_or_default();
    let share = share.map_err(|e| {
        note(&err_log, &e.to_string());
        AgentError::BadRequest(e.to_string())
    })?;
    if let Some(e) = &share.first_error {
        note(&err_log, &format!("first error: {e}"));
    }
    let summary = Summary { outputs: share.acked, errors: share.unacked, pushed, lost, ..Summary::default() };
    Ok(Ran { summary, latency: crate::report::latency_histogram(), mqtt: Some(share) })
}

/// Runs `job` (its program at `exe`) with the line protocol.
pub async fn run_lines(
    job: &Job,
    exe: &Path,
    logs: &Path,
    collector: &Collector,
    live: &Live,
) -> Result<Ran, AgentError> {
    let (dir, out_log, err_log) = open_logs(logs, job)?;
    let deadline = Instant::now() + Duration::from_secs(job.duration);
    let (tx, pusher) = start_pusher(job, collector, out_log, live);
    let mut users = Vec::new();
    for user in 0..job.users {
        let child = tokio::process::Command::new(exe)
            .env("GOLO_PROTOCOL", "lines")
            .env("GOLO_USER", user.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err_log.try_clone().map_err(|e| AgentError::Io(dir.join("err.log"), e))?)
            .kill_on_drop(true)
            .spawn();
        match child {
            Ok(child) => users.push(tokio::spawn(one_user(child, user, job.users, deadline, tx.clone()))),
            // None started: the job fails, said in its log. Some did: they go on, fewer.
            Err(e) => {
                let e = AgentError::Spawn(exe.to_path_buf(), e);
                note(&err_log, &format!("user {user}: {e}"));
                if users.is_empty() {
                    return Err(e);
                }
                break;
            }
        }
    }
    drop(tx);
    let mut ended_early = 0;
    for user in users {
        if user.await.unwrap_or(true) {
            ended_early += 1;
        }
    }
    let mut ran = pushed(pusher).await;
    ran.summary.ended_early = ended_early;
    if ended_early > 0 {
        note(&err_log, &format!("{ended_early} user(s) ended before the time was up"));
    }
    Ok(ran)
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
async fn push_all(
    job: String,
    mut rx: mpsc::Receiver<String>,
    collector: Collector,
    log: std::fs::File,
    live: Live,
) -> (Summary, hdrhistogram::Histogram<u64>) {
    use std::io::Write;
    let mut log = std::io::BufWriter::new(log);
    let mut summary = Summary::default();
    let mut latency = crate::report::latency_histogram();
    // Pushing runs beside reading, so a slow or absent collector never slows the load
    // test down; past PENDING_BATCHES waiting, batches are given up (still in out.log).
    let (batches, mut to_push) = mpsc::channel::<Vec<Value>>(PENDING_BATCHES);
    let sender = tokio::spawn(async move {
        let mut delivery = Delivery::default();
        while let Some(batch) = to_push.recv().await {
            delivery.send(&collector, &job, &batch, batch.len() as u64).await;
        }
        (delivery.pushed, delivery.lost)
    });
    let mut given_up = 0u64;
    let mut batch = Vec::with_capacity(BATCH);
    let mut hand_over = |batch: &mut Vec<Value>| {
        if batch.is_empty() {
            return;
        }
        let full = std::mem::replace(batch, Vec::with_capacity(BATCH));
        if let Err(e) = batches.try_send(full) {
            let n = e.into_inner().len() as u64;
            if given_up == 0 {
                tracing::warn!(
                    "the collector is behind by {PENDING_BATCHES} batches: giving batches up (kept in out.log)"
                );
            }
            given_up += n;
        }
    };
    while let Some(line) = rx.recv().await {
        let _ = writeln!(log, "{line}");
        summary.outputs += 1;
        live.done.fetch_add(1, Ordering::Relaxed);
        match serde_json::from_str::<Value>(&line) {
            Ok(v @ Value::Object(_)) => {
                if failed(&v) {
                    summary.errors += 1;
                    live.errors.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(ns) = v.get("duration").and_then(Value::as_u64) {
                    latency.saturating_record((ns / 1000).max(1));
                }
                batch.push(v);
            }
            _ => summary.bad_lines += 1,
        }
        if batch.len() == BATCH {
            hand_over(&mut batch);
        }
    }
    hand_over(&mut batch);
    drop(batches);
    let _ = log.flush();
    let (pushed, lost) = sender.await.unwrap_or_default();
    summary.pushed = pushed;
    summary.lost = lost + given_up;
    (summary, latency)
}

/// Starts [`push_all`] for `job`: the sender its Output lines go to, and its handle.
fn start_pusher(
    job: &Job,
    collector: &Collector,
    out_log: std::fs::File,
    live: &Live,
) -> (mpsc::Sender<String>, tokio::task::JoinHandle<(Summary, hdrhistogram::Histogram<u64>)>) {
    let (tx, rx) = mpsc::channel::<String>(4 * BATCH);
    (tx, tokio::spawn(push_all(job.name.clone(), rx, collector.clone(), out_log, live.clone())))
}

/// The pusher's result, or an empty one if it panicked.
async fn pushed(pusher: tokio::task::JoinHandle<(Summary, hdrhistogram::Histogram<u64>)>) -> Ran {
    Ran::outputs(pusher.await.unwrap_or_else(|_| (Summary::default(), crate::report::latency_histogram())))
}
