//! The coordinator's side of `ingot load … --agents h1,h2`: one scenario spread over
//! several `ingot agent`s, and their results merged.
//!
//! Each agent is queued one job with its share (`POST /queue`, a built-in job: no
//! upload), under one name for the whole run. This side then polls `GET /jobs/<name>`
//! on every agent once a second, drawing a progress bar and a live summary, until every
//! job ended, and returns the agents' results. Latency histograms come back in
//! hdrhistogram's V2 encoding, which keeps every bucket's count: merged by adding them,
//! the percentiles are those of one histogram of every sample (exact, not an average of
//! percentiles). Times are the agents' clocks (µs since the Unix epoch): agents on other
//! hosts need synchronised clocks for the windows to mean anything.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::LoadError;
use crate::agent::runner::JobResult;

/// The agents of one run.
pub struct Agents {
    bases: Vec<String>,
    http: reqwest::Client,
    token: Option<String>,
}

/// How long an agent may take to answer one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long past its duration a job may take before the run gives up on it (connecting,
/// draining PUBACKs, a queue ahead of it).
const GRACE: Duration = Duration::from_secs(120);

impl Agents {
    /// `host:port` or `http://host:port` each.
    pub fn new(list: &[String], token: Option<&str>) -> Result<Self, LoadError> {
        let bases = list
            .iter()
            .map(|a| {
                let a = a.trim().trim_end_matches('/');
                let base = if a.contains("://") { a.to_string() } else { format!("http://{a}") };
                reqwest::Url::parse(&base)
                    .map(|_| base)
                    .map_err(|e| LoadError::Args(format!("--agents: {a:?} is not host:port ({e})")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if bases.is_empty() {
            return Err(LoadError::Args("--agents needs at least one host:port".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|source| LoadError::Http { context: "building the HTTP client".into(), source })?;
        Ok(Self { bases, http, token: token.filter(|t| !t.is_empty()).map(str::to_string) })
    }

    pub fn len(&self) -> usize {
        self.bases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bases.is_empty()
    }

    fn request(&self, method: reqwest::Method, agent: usize, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.bases[agent]));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn send(&self, agent: usize, what: &str, r: reqwest::RequestBuilder) -> Result<(u16, Value), LoadError> {
        let context = format!("agent {} ({what})", self.bases[agent]);
        let resp = r.send().await.map_err(|source| LoadError::Http { context: context.clone(), source })?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|source| LoadError::Http { context, source })?;
        Ok((status, serde_json::from_slice(&body).unwrap_or_else(|_| json!(String::from_utf8_lossy(&body)))))
    }

    /// Queues `job` (a `POST /queue` body) on agent `agent`.
    pub async fn queue(&self, agent: usize, job: &Value) -> Result<(), LoadError> {
        let (status, body) =
            self.send(agent, "queue", self.request(reqwest::Method::POST, agent, "/queue").json(job)).await?;
        if status != 201 {
            return Err(LoadError::Api {
                context: format!("queueing on agent {}", self.bases[agent]),
                status,
                body: body.to_string(),
            });
        }
        Ok(())
    }

    /// Polls every agent's job `name` until all ended, a progress line a second (`label`
    /// says what `done` counts); their results, in agent order. A job that failed is an
    /// error that says which agent and why.
    pub async fn wait(&self, name: &str, duration: Duration, label: &str) -> Result<Vec<JobResult>, LoadError> {
        let started = Instant::now();
        let mut results: Vec<Option<JobResult>> = (0..self.len()).map(|_| None).collect();
        let (mut last_done, mut last_line) = (0, started);
        loop {
            let (mut done, mut errors, mut running, mut queued) = (0u64, 0u64, 0, 0);
            for (agent, slot) in results.iter_mut().enumerate() {
                if let Some(r) = slot {
                    done += r.summary.outputs;
                    errors += r.summary.errors;
                    continue;
                }
                let path = format!("/jobs/{name}");
                let (status, body) =
                    self.send(agent, "job status", self.request(reqwest::Method::GET, agent, &path)).await?;
                match (status, body["state"].as_str()) {
                    (200, Some("queued")) => queued += 1,
                    (200, Some("running")) => {
                        running += 1;
                        done += body["done"].as_u64().unwrap_or(0);
                        errors += body["errors"].as_u64().unwrap_or(0);
                    }
                    (200, Some("done" | "failed")) => {
                        let r: JobResult = serde_json::from_value(body).map_err(|e| LoadError::Api {
                            context: format!("agent {}'s result", self.bases[agent]),
                            status,
                            body: e.to_string(),
                        })?;
                        if r.state == "failed" {
                            return Err(LoadError::Check(format!(
                                "the job on agent {} failed: {} (see its logs, <logs>/{name}/err.log)",
                                self.bases[agent],
                                r.error.as_deref().unwrap_or("no reason given")
                            )));
                        }
                        done += r.summary.outputs;
                        errors += r.summary.errors;
                        *slot = Some(r);
                    }
                    _ => {
                        return Err(LoadError::Api {
                            context: format!("job {name} on agent {}", self.bases[agent]),
                            status,
                            body: body.to_string(),
                        });
                    }
                }
            }
            let finished = results.iter().filter(|r| r.is_some()).count();
            let since = last_line.elapsed();
            if since >= Duration::from_secs(1) || finished == self.len() {
                let per_sec = (done.saturating_sub(last_done) as f64 / since.as_secs_f64().max(0.001)) as u64;
                let counts = (finished, running, queued, self.len());
                eprintln!("{}", progress_line(started.elapsed(), duration, label, done, per_sec, errors, counts));
                (last_done, last_line) = (done, Instant::now());
            }
            if finished == self.len() {
                return Ok(results.into_iter().flatten().collect());
            }
            if started.elapsed() > duration + GRACE {
                return Err(LoadError::Check(format!(
                    "{} of {} agents did not finish job {name} within {:?} of its end",
                    self.len() - finished,
                    self.len(),
                    GRACE
                )));
            }
            // Once the time is up, look often: the end of the run is measured from here.
            let pause = if started.elapsed() < duration { Duration::from_secs(1) } else { Duration::from_millis(100) };
            tokio::time::sleep(pause).await;
        }
    }
}

/// `[########------------]  40%`.
pub fn bar(fraction: f64) -> String {
    const WIDTH: usize = 20;
    let fraction = if fraction.is_finite() { fraction.clamp(0.0, 1.0) } else { 1.0 };
    let filled = (fraction * WIDTH as f64).round() as usize;
    format!("[{}{}] {:>3.0}%", "#".repeat(filled), "-".repeat(WIDTH - filled), fraction * 100.0)
}

/// `[########------------]  40%  12.0s/30s`: elapsed time against the run's duration.
pub fn progress_bar(elapsed: Duration, duration: Duration) -> String {
    let fraction = if duration.is_zero() { 1.0 } else { elapsed.as_secs_f64() / duration.as_secs_f64() };
    format!("{} {:>5.1}s/{:.0}s", bar(fraction), elapsed.as_secs_f64(), duration.as_secs_f64())
}

fn progress_line(
    elapsed: Duration,
    duration: Duration,
    label: &str,
    done: u64,
    per_sec: u64,
    errors: u64,
    (finished, running, queued, agents): (usize, usize, usize, usize),
) -> String {
    format!(
        "load: {}  {label} {done} (+{per_sec}/s), errors {errors}; agents: {running} running, {queued} queued, {finished}/{agents} done",
        progress_bar(elapsed, duration)
    )
}

/// A job name for this run: the label's safe characters and a random suffix.
pub fn job_name(label: &str) -> String {
    let safe: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '-' })
        .take(40)
        .collect();
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    format!("{}-{suffix}", safe.trim_start_matches('-').trim_start_matches('.'))
}

/// `total` split into `parts` nearly equal shares (the first ones larger by one).
pub fn shares(total: usize, parts: usize) -> Vec<usize> {
    (0..parts).map(|i| total / parts + usize::from(i < total % parts)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_and_names_are_safe() {
        assert_eq!(shares(10, 3), vec![4, 3, 3]);
        assert_eq!(shares(2, 3), vec![1, 1, 0]);
        assert_eq!(shares(9, 3).iter().sum::<usize>(), 9);
        let name = job_name("../mqtt 1k");
        assert!(crate::agent::jobs::valid_name(&name), "{name}");
        assert!(name.starts_with("mqtt-1k-"), "{name}");
    }

    #[test]
    fn the_progress_bar_follows_the_clock() {
        let bar = progress_bar(Duration::from_secs(5), Duration::from_secs(10));
        assert!(bar.starts_with("[##########----------]  50%"), "{bar}");
        assert!(progress_bar(Duration::from_secs(50), Duration::from_secs(10)).contains("100%"));
        assert!(Agents::new(&["not a host:port:x".into()], None).is_err());
        assert!(Agents::new(&[], None).is_err());
    }
}
