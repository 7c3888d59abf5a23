//! `ingot load http`: `--users` loops sending one HTTP request over and over for
//! `--duration`, here or (`--agents`) spread over `ingot agent`s, with a report of
//! requests/s, errors and latency percentiles.
//!
//! The loops are the agent's built-in HTTP job's (`agent::runner::http_loops`), so a
//! local run and a spread one measure the same thing: from sending the request to the
//! whole answer read. An answer of 400 or more, or none (a connection error), is an
//! error. Spread, each agent runs `--users` divided among them, and their latency
//! histograms are added exactly ([`crate::agents`]).

use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::agent::jobs::HttpSpec;
use crate::agents::{Agents, job_name, progress_bar, shares};
use crate::report::{Latency, decode_histogram, latency_histogram};
use crate::{LoadError, loopback_addr, pacing};

/// Settings of `ingot load http`.
#[derive(Args, Debug, Clone)]
pub struct HttpArgs {
    /// The request's URL (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8000/ping")]
    pub url: String,
    /// GET, POST, PUT, PATCH, DELETE or HEAD.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// The request's body.
    #[arg(long)]
    pub body: Option<String>,
    /// Loops sending at once (each waits for its answer before the next request).
    #[arg(long, default_value_t = 10)]
    pub users: u64,
    /// How long: 500ms, 15s, 2m (whole seconds with --agents).
    #[arg(long, default_value = "10s", value_parser = pacing::parse_duration)]
    pub duration: Duration,
    /// Spread the users over these `ingot agent`s (`host:port`, comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub agents: Vec<String>,
    /// The agents' token (`ingot agent --token`).
    #[arg(long, env = "INGOT_AGENT_TOKEN")]
    pub agent_token: Option<String>,
    /// Name of this run in the report (and of its jobs on the agents).
    #[arg(long, default_value = "http")]
    pub label: String,
}

/// Most loops of one run.
const MAX_USERS: u64 = 10_000;

/// What a run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpReport {
    pub requests: u64,
    pub errors: u64,
    pub window: Duration,
    pub latency: Latency,
    pub agents: usize,
}

impl HttpReport {
    pub fn text(&self, args: &HttpArgs) -> String {
        let rate = if self.window.is_zero() { 0.0 } else { self.requests as f64 / self.window.as_secs_f64() };
        let on = if self.agents == 0 { "here".to_string() } else { format!("on {} agents", self.agents) };
        format!(
            "== ingot load http: {} ==\n{} {}  users {}  duration {:.1}s  ({on})\nrequests {}  errors {} ({:.2}%)  requests/s {rate:.0}\nlatency {}\n",
            args.label,
            args.method.to_ascii_uppercase(),
            args.url,
            args.users,
            args.duration.as_secs_f64(),
            self.requests,
            self.errors,
            if self.requests == 0 { 0.0 } else { 100.0 * self.errors as f64 / self.requests as f64 },
            if self.latency.count == 0 {
                "no samples".to_string()
            } else {
                format!(
                    "p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms ({} samples)",
                    self.latency.p50_us as f64 / 1000.0,
                    self.latency.p99_us as f64 / 1000.0,
                    self.latency.p999_us as f64 / 1000.0,
                    self.latency.max_us as f64 / 1000.0,
                    self.latency.count
                )
            }
        )
    }
}

/// Runs `ingot load http`.
pub async fn run(args: HttpArgs) -> Result<(), LoadError> {
    let report = measure(&args).await?;
    println!("{}", report.text(&args));
    Ok(())
}

/// The checked request.
fn spec(args: &HttpArgs) -> Result<HttpSpec, LoadError> {
    let url = reqwest::Url::parse(&args.url).map_err(|e| LoadError::Args(format!("--url: {e}")))?;
    let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default().unwrap_or(80);
    let hostport = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    loopback_addr("HTTP", &hostport)?;
    if args.users == 0 || args.users > MAX_USERS {
        return Err(LoadError::Args(format!("--users must be between 1 and {MAX_USERS}")));
    }
    if args.duration.is_zero() || args.duration > crate::MAX_DURATION {
        return Err(LoadError::Args("--duration must be between 1ms and 1h".into()));
    }
    let job = json!({"url": args.url, "method": args.method, "body": args.body});
    HttpSpec::parse(&job).map_err(|e| LoadError::Args(e.to_string()))
}

/// Runs the load here or on the agents; what it measured.
pub async fn measure(args: &HttpArgs) -> Result<HttpReport, LoadError> {
    let spec = spec(args)?;
    if args.agents.is_empty() { locally(args, &spec).await } else { spread(args, &spec).await }
}

async fn locally(args: &HttpArgs, spec: &HttpSpec) -> Result<HttpReport, LoadError> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.users as usize)
        .build()
        .map_err(|source| LoadError::Http { context: "building the HTTP client".into(), source })?;
    let started = Instant::now();
    let (tx, mut rx) = mpsc::channel::<String>(1024);
    let loops = crate::agent::runner::http_loops(&http, spec, args.users, started + args.duration, tx);
    let mut latency = latency_histogram();
    let (mut requests, mut errors, mut last) = (0u64, 0u64, 0u64);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tokio::select! {
            line = rx.recv() => {
                let Some(line) = line else { break };
                let Ok(output) = serde_json::from_str::<Value>(&line) else { continue };
                requests += 1;
                errors += u64::from(crate::agent::runner::failed(&output));
                if let Some(ns) = output["duration"].as_u64() {
                    latency.saturating_record((ns / 1000).max(1));
                }
            }
            _ = tick.tick() => {
                eprintln!("load: {}  requests {requests} (+{}/s), errors {errors}",
                    progress_bar(started.elapsed(), args.duration), requests - last);
                last = requests;
            }
        }
    }
    for l in loops {
        let _ = l.await;
    }
    Ok(HttpReport { requests, errors, window: args.duration, latency: Latency::from_histogram(&latency), agents: 0 })
}

async fn spread(args: &HttpArgs, spec: &HttpSpec) -> Result<HttpReport, LoadError> {
    if args.duration.subsec_nanos() != 0 {
        return Err(LoadError::Args("with --agents, --duration is whole seconds (the agents' jobs are)".into()));
    }
    let agents = Agents::new(&args.agents, args.agent_token.as_deref())?;
    let split = shares(args.users as usize, agents.len());
    if split.contains(&0) {
        return Err(LoadError::Args(format!("{} users cannot be spread over {} agents", args.users, agents.len())));
    }
    let name = job_name(&args.label);
    for (agent, &users) in split.iter().enumerate() {
        let job = json!({"name": name, "users": users, "duration": args.duration.as_secs(), "http": spec});
        agents.queue(agent, &job).await?;
    }
    eprintln!("load: job {name} queued on {} agents ({split:?} users)", agents.len());
    let results = agents.wait(&name, args.duration, "requests").await?;
    let mut latency = latency_histogram();
    let mut report = HttpReport {
        requests: 0,
        errors: 0,
        window: Duration::ZERO,
        latency: Latency::default(),
        agents: agents.len(),
    };
    // Each agent sent for the duration; if they did not start together the rate is still
    // the sum of theirs, but not one moment's.
    let starts = results.iter().map(|r| r.started_us);
    if starts.clone().max().unwrap_or(0) - starts.min().unwrap_or(0) > 1_000_000 {
        eprintln!(
            "load: the agents started more than a second apart (a job queued ahead?): requests/s adds their rates"
        );
    }
    report.window = args.duration;
    for r in &results {
        report.requests += r.summary.outputs;
        report.errors += r.summary.errors;
        latency
            .add(decode_histogram(&r.latency).map_err(LoadError::Check)?)
            .map_err(|e| LoadError::Check(format!("{e:?}")))?;
    }
    report.latency = Latency::from_histogram(&latency);
    Ok(report)
}
