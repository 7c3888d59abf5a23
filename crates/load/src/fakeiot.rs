//! `ingot load fakeiot`: fakeiot's client (seed 000), re-implemented from its documented
//! behaviour (`shared/reference/fakeiot.md`), plus a benchmark mode for `POST /metrics`.
//!
//! Like the original: `--url` plus `/metrics` (so a trailing slash gives `//metrics`);
//! with `--ca-cert` only the *first* certificate of the file is trusted; TLS 1.2 or newer;
//! HTTP/1.1; no SNI when the host is an IP address (rustls sends none for IPs); every
//! answer's Content-Type must be exactly `application/json`, checked before its status.
//! `test` runs the compliance checks in the original's order; `run` sends one login per
//! tick, cycling through `--users` random user ids, and stops at the first bad answer.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use hdrhistogram::Histogram;
use reqwest::{Client, StatusCode};
use serde_json::json;

use crate::LoadError;
use crate::pacing::parse_duration;

/// `ingot load fakeiot …` (flags as fakeiot's: `--token --url --ca-cert` before the command).
#[derive(Args, Debug)]
pub struct FakeiotArgs {
    /// Bearer token (from `POST /auth/tokens`).
    #[arg(long, env = "FAKEIOT_TOKEN")]
    pub token: String,
    /// Base URL of the metrics server, e.g. https://127.0.0.1:8443.
    #[arg(long)]
    pub url: String,
    /// PEM file whose first certificate is the only one trusted.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    #[command(subcommand)]
    pub command: FakeiotCommand,
}

#[derive(Subcommand, Debug)]
pub enum FakeiotCommand {
    /// The compliance checks (exit code 255 on the first failure).
    Test,
    /// Report logins of `--users` users, one per `--freq`, for `--period`.
    Run {
        #[arg(long, default_value_t = 100)]
        users: usize,
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        period: Duration,
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        freq: Duration,
        /// Account to report for (default: a new random UUID).
        #[arg(long)]
        account_id: Option<String>,
    },
    /// Benchmark: `--connections` keep-alive connections send POST /metrics (or hit
    /// `--path`, e.g. /ping, the bare handler) for `--duration`, optionally at a total
    /// `--rate` per second; reports requests/s and latency percentiles.
    Bench {
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// Total requests per second; 0 = as fast as answered.
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// Path to request: /metrics (a login per request) or another path (GET).
        #[arg(long, default_value = "/metrics")]
        path: String,
        /// Distinct users the logins cycle through (per connection).
        #[arg(long, default_value_t = 1000)]
        users: usize,
    },
}

fn client(ca_cert: Option<&PathBuf>) -> Result<Client, LoadError> {
    let mut b = Client::builder()
        .http1_only()
        .min_tls_version(reqwest::tls::Version::TLS_1_2)
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(1024);
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path).map_err(|e| LoadError::Args(format!("cannot read {}: {e}", path.display())))?;
        let first = first_certificate(&pem)
            .ok_or_else(|| LoadError::Args(format!("{} holds no certificate", path.display())))?;
        let cert = reqwest::Certificate::from_pem(&first).map_err(|e| LoadError::Args(e.to_string()))?;
        b = b.tls_built_in_root_certs(false).add_root_certificate(cert);
    }
    b.build().map_err(|e| LoadError::Args(e.to_string()))
}

/// The first PEM certificate block of `pem` (fakeiot trusts only that one).
fn first_certificate(pem: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(pem).ok()?;
    let start = text.find("-----BEGIN CERTIFICATE-----")?;
    let end_marker = "-----END CERTIFICATE-----";
    let end = text[start..].find(end_marker)? + start + end_marker.len();
    Some(text.as_bytes()[start..end].to_vec())
}

fn login_body(account: &str, user: &str) -> String {
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    json!({"account_id": account, "user_id": user, "timestamp": ts}).to_string()
}

/// One request as fakeiot makes it; the answer is judged by Content-Type first.
async fn send(client: &Client, url: &str, auth: &str, content_type: &str, body: String) -> Result<StatusCode, String> {
    let resp = client
        .post(url)
        .header("authorization", auth)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    if ct != "application/json" {
        return Err(format!("Content-Type is {ct:?}, want exactly \"application/json\""));
    }
    Ok(resp.status())
}

/// Runs a fakeiot command. Test failures are [`LoadError::Check`].
pub async fn run(args: FakeiotArgs) -> Result<(), LoadError> {
    let client = client(args.ca_cert.as_ref())?;
    let url = format!("{}/metrics", args.url);
    let auth = format!("Bearer {}", args.token);
    match args.command {
        FakeiotCommand::Test => test(&client, &url, &auth).await,
        FakeiotCommand::Run { users, period, freq, account_id } => {
            run_traffic(&client, &url, &auth, users, period, freq, account_id).await
        }
        FakeiotCommand::Bench { connections, duration, rate, path, users } => {
            let host = reqwest::Url::parse(&args.url).map_err(|e| LoadError::Args(format!("--url: {e}")))?;
            let port = host.port_or_known_default().unwrap_or(443);
            crate::loopback_addr("--url", &format!("{}:{port}", host.host_str().unwrap_or("")))?;
            let url = format!("{}{}", args.url, path);
            bench(client, url, auth, connections, duration, rate, path == "/metrics", users).await
        }
    }
}

async fn test(client: &Client, url: &str, auth: &str) -> Result<(), LoadError> {
    let good = login_body("testacct-0000-0000-0000-000000000000", "testuser-0000-0000-0000-000000000000");
    let empty = json!({"account_id": "", "user_id": "", "timestamp": "0001-01-01T00:00:00Z"}).to_string();
    // (what is checked, Authorization header, Content-Type, body, expected status)
    type Check<'a> = (&'a str, String, &'a str, String, fn(StatusCode) -> bool);
    let checks: [Check; 5] = [
        ("valid login is accepted", auth.to_string(), "application/json", good.clone(), |s| s.is_success()),
        ("empty ids are a bad request", auth.to_string(), "application/json", empty, |s| s == StatusCode::BAD_REQUEST),
        (
            "a form body is a bad request",
            auth.to_string(),
            "application/x-www-form-urlencoded",
            "bad=format".into(),
            |s| s == StatusCode::BAD_REQUEST,
        ),
        ("'Bearer' without a token is denied", "Bearer".into(), "application/json", good.clone(), |s| {
            s == StatusCode::FORBIDDEN
        }),
        ("'Bearer ' with an empty token is denied", "Bearer ".into(), "application/json", good, |s| {
            s == StatusCode::FORBIDDEN
        }),
    ];
    for (what, auth, ct, body, ok) in checks {
        match send(client, url, &auth, ct, body).await {
            Ok(status) if ok(status) => println!("ok: {what} ({status})"),
            Ok(status) => return Err(LoadError::Check(format!("{what}: got {status}"))),
            Err(e) => return Err(LoadError::Check(format!("{what}: {e}"))),
        }
    }
    println!("all checks passed");
    Ok(())
}

async fn run_traffic(
    client: &Client,
    url: &str,
    auth: &str,
    users: usize,
    period: Duration,
    freq: Duration,
    account_id: Option<String>,
) -> Result<(), LoadError> {
    let account = account_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let users: Vec<String> = (0..users.max(1)).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    println!("account {account}: {} users, one login every {freq:?} for {period:?}", users.len());
    let mut tick = tokio::time::interval(freq.max(Duration::from_millis(1)));
    let started = Instant::now();
    let mut sent = 0usize;
    let mut last_report = Instant::now();
    while started.elapsed() < period {
        tick.tick().await;
        let user = &users[sent % users.len()];
        match send(client, url, auth, "application/json", login_body(&account, user)).await {
            Ok(status) if status.is_success() => sent += 1,
            Ok(status) => return Err(LoadError::Check(format!("login {sent} answered {status}"))),
            Err(e) => return Err(LoadError::Check(format!("login {sent}: {e}"))),
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            eprintln!("fakeiot: {sent} logins sent, {:.0?} left", period.saturating_sub(started.elapsed()));
            last_report = Instant::now();
        }
    }
    println!("sent {sent} logins for account {account}");
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn bench(
    client: Client,
    url: String,
    auth: String,
    connections: usize,
    duration: Duration,
    rate: f64,
    logins: bool,
    users: usize,
) -> Result<(), LoadError> {
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let per_conn_interval = (rate > 0.0).then(|| Duration::from_secs_f64(connections as f64 / rate));
    let mut tasks = Vec::new();
    for c in 0..connections.max(1) {
        let (client, url, auth, ok, errors) = (client.clone(), url.clone(), auth.clone(), ok.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
            let account = format!("bench-{}", c % 16);
            let mut tick = per_conn_interval.map(tokio::time::interval);
            let mut i = 0usize;
            while Instant::now() < deadline {
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                let started = Instant::now();
                let result = if logins {
                    send(
                        &client,
                        &url,
                        &auth,
                        "application/json",
                        login_body(&account, &format!("u{c}-{}", i % users.max(1))),
                    )
                    .await
                } else {
                    client.get(&url).send().await.map(|r| r.status()).map_err(|e| e.to_string())
                };
                match result {
                    Ok(s) if s.is_success() => {
                        let _ = hist.record(started.elapsed().as_micros() as u64);
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i += 1;
            }
            hist
        }));
    }
    let started = Instant::now();
    let progress = {
        let ok = ok.clone();
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = ok.load(Ordering::Relaxed);
                eprintln!("fakeiot bench: {} req/s", now - last);
                last = now;
            }
        })
    };
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    for t in tasks {
        if let Ok(h) = t.await {
            let _ = total.add(h);
        }
    }
    progress.abort();
    let secs = started.elapsed().as_secs_f64();
    let n = ok.load(Ordering::Relaxed);
    println!(
        "{{\"path\":{:?},\"connections\":{connections},\"target_rate\":{rate},\"requests\":{n},\"errors\":{},\"req_per_s\":{:.0},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3}}}",
        url.rsplit_once('/').map(|(_, p)| format!("/{p}")).unwrap_or_default(),
        errors.load(Ordering::Relaxed),
        n as f64 / secs,
        total.value_at_quantile(0.5) as f64 / 1000.0,
        total.value_at_quantile(0.99) as f64 / 1000.0,
        total.max() as f64 / 1000.0,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_certificate_is_taken() {
        let pem = b"junk\n-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n";
        let first = String::from_utf8(first_certificate(pem).unwrap()).unwrap();
        assert!(first.contains("AAA") && !first.contains("BBB"));
        assert!(first_certificate(b"nothing").is_none());
    }

    #[test]
    fn login_bodies_are_rfc3339_utc() {
        let v: serde_json::Value = serde_json::from_str(&login_body("a", "u")).unwrap();
        let ts = v["timestamp"].as_str().unwrap();
        assert!(ts.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(ts).is_ok());
    }
}
