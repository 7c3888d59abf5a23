//! `ingot agent`: a load-test agent with go-lo agent v0.3.1's HTTP API (seed 004), so
//! that go-lo's CLI can upload a load test and queue jobs on it, and the jobs' results
//! go to a collector as go-lo's did (`POST <collector>/push/<job>`).
//!
//! - [`http`]: the API (`/upload`, `/queue`, and Ingot's `/jobs`, `/jobs/<name>`).
//! - [`jobs`]: uploads and the queue, kept on disk, checked on the way in.
//! - [`runner`]: runs a job, with go-lo's protocol (Go's `net/rpc` over gob: [`rpc`],
//!   [`gob`]) or the line protocol, which a load test in any language speaks (a script is
//!   enough); watches its programs, logs them, and delivers every result, the last
//!   partial batch too.
//!
//! Jobs run one after another, in the order queued, without the original's pause.
//! Running uploaded executables is remote code execution by design: the agent refuses to
//! listen on a non-loopback address without `--token`, and with one every request must
//! carry it.

pub mod gob;
pub mod http;
pub mod jobs;
pub mod rpc;
pub mod runner;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

/// Why the agent or one of its requests failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    BadRequest(String),
    #[error("no job {0:?} here")]
    NotFound(String),
    #[error("this agent needs its token: Authorization: Bearer <token>")]
    Unauthorized,
    #[error("uploads are limited to {0} bytes (--max-upload-bytes)")]
    TooLarge(usize),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("cannot start {0}: {1}")]
    Spawn(PathBuf, std::io::Error),
    #[error(
        "ingot agent runs the executables it is sent: on {0}, which is not a loopback address, it needs a token \
         (--token or INGOT_AGENT_TOKEN), which every request must then carry. For go-lo's CLI, which sends none, \
         listen on 127.0.0.1:8081 and reach the agent through an SSH tunnel"
    )]
    NeedsToken(SocketAddr),
    #[error("port {0} is busy: another program or job holds it (--rpc-port)")]
    PortBusy(u16),
    #[error("--listen {0}: expected host:port or :port")]
    BadListen(String),
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
}

/// `ingot agent`.
#[derive(Args, Debug)]
pub struct AgentArgs {
    /// Where the API listens (`:8081`, go-lo's CLI's port, is every address).
    #[arg(long, env = "INGOT_AGENT_LISTEN", default_value = ":8081")]
    pub listen: String,
    /// Where results go: `POST <collector>/push/<job>`. An Ingot node is one, with an API
    /// token of scope `loadtests` as the URL's password: `http://agents:<token>@host:8000`.
    #[arg(long, env = "INGOT_AGENT_COLLECTOR", default_value = "http://localhost:8082")]
    pub collector: String,
    /// Accept invalid certificates: the collector's, and built-in HTTP jobs' targets'.
    #[arg(long)]
    pub insecure: bool,
    /// Per job, `<logs>/<job>/out.log` (results) and `err.log` (the program's stderr).
    #[arg(long, env = "INGOT_AGENT_LOGS", default_value = "ingot-agent/logs")]
    pub logs: PathBuf,
    /// Uploads and the queue (kept across restarts).
    #[arg(long, env = "INGOT_AGENT_DATA_DIR", default_value = "ingot-agent")]
    pub data_dir: PathBuf,
    /// The token every request must carry; required on a non-loopback address.
    #[arg(long, env = "INGOT_AGENT_TOKEN")]
    pub token: Option<String>,
    /// Largest upload, in bytes.
    #[arg(long, default_value_t = 100 * 1024 * 1024)]
    pub max_upload_bytes: usize,
    /// Most users (iterations in flight) a job may ask for.
    #[arg(long, default_value_t = 1000)]
    pub max_users: u64,
    /// Longest job, in seconds.
    #[arg(long, default_value_t = 86_400)]
    pub max_duration_secs: u64,
    /// The loopback port go-lo load tests serve net/rpc on (go-lo's library: 9999).
    #[arg(long, default_value_t = 9999)]
    pub rpc_port: u16,
}

fn listen_addr(listen: &str) -> Result<SocketAddr, AgentError> {
    let full = if listen.starts_with(':') { format!("0.0.0.0{listen}") } else { listen.to_string() };
    full.parse().map_err(|_| AgentError::BadListen(listen.into()))
}

/// Runs the agent until the process ends.
pub async fn run(args: AgentArgs) -> Result<(), AgentError> {
    let addr = listen_addr(&args.listen)?;
    let token = args.token.filter(|t| !t.is_empty());
    if token.is_none() && !addr.ip().is_loopback() {
        return Err(AgentError::NeedsToken(addr));
    }
    let (jobs, cut_off) = jobs::Jobs::open(&args.data_dir)?;
    let jobs = Arc::new(jobs);
    if let Some(job) = cut_off {
        tracing::warn!(job = %job.name, "a job was cut off by a restart; it is not run again");
        if let Ok(dir) = runner::log_dir(&args.logs, &job) {
            use std::io::Write;
            let err = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("err.log"));
            if let Ok(mut f) = err {
                let _ = writeln!(f, "ingot agent: cut off by a restart of the agent; not run again");
            }
        }
    }
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(args.insecure)
        .build()
        .map_err(|e| AgentError::BadRequest(e.to_string()))?;
    let collector = runner::Collector { url: args.collector.clone(), http };
    let live = runner::Live::default();
    tokio::spawn(run_jobs(jobs.clone(), args.logs.clone(), collector, args.rpc_port, live.clone()));
    let agent = http::Agent {
        jobs,
        logs: args.logs.clone(),
        live,
        limits: jobs::Limits { max_users: args.max_users, max_duration: args.max_duration_secs },
        token,
        max_upload: args.max_upload_bytes,
    };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| AgentError::Listen(addr, e))?;
    let bound = listener.local_addr().map_err(|e| AgentError::Listen(addr, e))?;
    println!("ingot agent: listening on http://{bound}");
    axum::serve(listener, http::router(agent)).await.map_err(|e| AgentError::Listen(bound, e))
}

/// Runs the queued jobs, one at a time, for as long as the agent runs; each one's result
/// is kept in `<logs>/<job>/result.json`.
async fn run_jobs(
    jobs: Arc<jobs::Jobs>,
    logs: PathBuf,
    collector: runner::Collector,
    rpc_port: u16,
    live: runner::Live,
) {
    loop {
        let job = match jobs.start_next() {
            Ok(Some(job)) => job,
            Ok(None) => {
                jobs.queued.notified().await;
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot take the next job; retrying in a second");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        tracing::info!(job = %job.name, users = job.users, duration = job.duration, "job started");
        live.reset();
        let started_us = runner::now_us();
        let exe = jobs.binary_path(&job.binary);
        let ran = match (&job.http, &job.mqtt, job.protocol.as_str()) {
            (Some(spec), _, _) => runner::run_http(&job, spec, &logs, &collector, &live).await,
            (_, Some(spec), _) => runner::run_mqtt(&job, spec, &logs, &collector, &live).await,
            (None, None, "lines") => runner::run_lines(&job, &exe, &logs, &collector, &live).await,
            (None, None, _) => runner::run_gob(&job, &exe, &logs, &collector, rpc_port, &live).await,
        };
        let mut result =
            runner::JobResult { name: job.name.clone(), started_us, ended_us: runner::now_us(), ..Default::default() };
        match ran {
            Ok(ran) => {
                let s = &ran.summary;
                tracing::info!(job = %job.name, outputs = s.outputs, errors = s.errors, pushed = s.pushed,
                    lost = s.lost, bad_lines = s.bad_lines, ended_early = s.ended_early, "job done");
                result.state = "done".into();
                result.latency = crate::report::encode_histogram(&ran.latency);
                result.summary = ran.summary;
                result.mqtt = ran.mqtt;
            }
            Err(e) => {
                tracing::error!(job = %job.name, error = %e, "job failed");
                result.state = "failed".into();
                result.error = Some(e.to_string());
                result.latency = crate::report::encode_histogram(&crate::report::latency_histogram());
            }
        }
        if let Err(e) = result.save(&logs) {
            tracing::error!(job = %job.name, error = %e, "cannot keep the job's result");
        }
        if let Err(e) = jobs.finish() {
            tracing::error!(error = %e, "cannot record the end of a job");
        }
    }
}
