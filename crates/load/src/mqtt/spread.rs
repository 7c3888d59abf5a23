//! `ingot load mqtt --agents h1,h2`: the devices spread over `ingot agent`s.
//!
//! This command keeps what needs the platform's password: it logs in and provisions every
//! device (as a local run does), gives each agent a contiguous share of them with their
//! secrets and the rate in proportion (a built-in `mqtt` job, see
//! `agent::jobs::MqttSpec`), waits for the agents ([`crate::agents`]), and then sweeps
//! history for every device's last acknowledged seq, as a local run does. The report is
//! the same as a local run's, from the merged shares: counts added, PUBACK histograms
//! added (exact), the window from the earliest first publish to the latest PUBACK over
//! all agents. publish→visible is not sampled (it would need every agent to query the
//! API); the final sweep still proves every acknowledged reading reached history.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Phase, Stats, progress, provision, sweep};
use crate::agents::{Agents, job_name, shares};
use crate::api::Api;
use crate::report::{Latency, Report, decode_histogram, latency_histogram};
use crate::{LoadError, MqttArgs, procfs};

/// Runs `args` on `args.agents`; the merged report.
pub(super) async fn run(args: &MqttArgs, server_pid: Option<String>) -> Result<Report, LoadError> {
    if args.idle || args.tls_ca.is_some() {
        return Err(LoadError::Args("--agents spreads publishing runs with secrets: not --idle, not --tls-ca".into()));
    }
    let agents = Agents::new(&args.agents, args.agent_token.as_deref())?;
    let split = shares(args.devices, agents.len());
    if split.contains(&0) {
        return Err(LoadError::Args(format!("{} devices cannot be spread over {} agents", args.devices, agents.len())));
    }
    let stats = Arc::new(Stats::new(Duration::ZERO));
    let ticker = tokio::spawn(progress(stats.clone(), server_pid.clone(), args.devices, args.duration));
    let result = run_inner(args, &agents, &split, &stats, server_pid.as_deref()).await;
    stats.set_phase(Phase::Done, 0);
    ticker.abort();
    result
}

async fn run_inner(
    args: &MqttArgs,
    agents: &Agents,
    split: &[usize],
    stats: &Arc<Stats>,
    server_pid: Option<&str>,
) -> Result<Report, LoadError> {
    let api = Arc::new(Api::login(&args.target.http, &args.target.user, &args.target.password).await?);
    let devices = Arc::new(provision(&api, args.devices, None, false, stats).await?);
    let server_rss_before = server_pid.and_then(procfs::memory).map(|m| m.rss);

    // Each agent's share: contiguous devices, the rate in proportion.
    let name = job_name(&args.label);
    let mut offset = 0;
    let mut offsets = Vec::new();
    for (agent, &n) in split.iter().enumerate() {
        let mine: Vec<_> = devices[offset..offset + n]
            .iter()
            .map(|d| match &d.credential {
                super::Credential::Secret(secret) => json!([d.id, secret]),
                super::Credential::Certificate { .. } | super::Credential::Anonymous => {
                    unreachable!("--tls-ca and --plain-broker are refused with --agents")
                }
            })
            .collect();
        let job = json!({
            "name": name, "users": n, "duration": args.duration.as_secs().max(1),
            "mqtt": {
                "mqtt": args.target.mqtt, "tenant": args.target.tenant, "devices": mine,
                "rate": args.rate * n as f64 / args.devices as f64, "inflight": args.inflight,
                "duration_ms": args.duration.as_millis() as u64, "keep_alive_secs": args.keep_alive.as_secs(),
                "drain_timeout_secs": args.drain_timeout.as_secs().max(1),
            }
        });
        agents.queue(agent, &job).await?;
        offsets.push(offset);
        offset += n;
    }
    eprintln!("load: job {name} queued on {} agents ({split:?} devices)", agents.len());

    stats.server_rss_max.store(0, Ordering::Relaxed);
    stats.set_phase(Phase::OnAgents, 0);
    let cpu_before = (server_pid.and_then(procfs::cpu_seconds), Instant::now());
    let results = agents.wait(&name, args.duration, "acknowledged").await?;
    let cpu_after = (server_pid.and_then(procfs::cpu_seconds), Instant::now());

    let mut report = Report {
        label: args.label.clone(),
        devices: args.devices,
        rate: (args.rate > 0.0).then_some(args.rate),
        inflight: args.inflight,
        duration: args.duration,
        ..Report::default()
    };
    let (mut puback, mut from_due) = (latency_histogram(), latency_histogram());
    let (mut first_us, mut last_us) = (None::<u64>, None::<u64>);
    let mut targets = Vec::new();
    for (result, offset) in results.iter().zip(&offsets) {
        let share = result
            .mqtt
            .as_ref()
            .ok_or_else(|| LoadError::Check(format!("job {name}: a result without MQTT measurements")))?;
        report.connected += share.connected;
        report.connect_errors += share.connect_errors;
        report.connect_time = report.connect_time.max(Duration::from_millis(share.connect_ms));
        report.connection_errors += share.connection_errors;
        report.published += share.published;
        report.acked += share.acked;
        report.unacked += share.unacked;
        let add = |into: &mut hdrhistogram::Histogram<u64>, text: &str| {
            let h = decode_histogram(text).map_err(LoadError::Check)?;
            into.add(h).map_err(|e| LoadError::Check(format!("merging histograms: {e:?}")))
        };
        add(&mut puback, &share.puback)?;
        add(&mut from_due, &share.puback_from_due)?;
        first_us = match (first_us, share.first_publish_us) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        last_us = last_us.max(share.last_ack_us);
        targets.extend(share.last_acked.iter().map(|&(i, seq)| (offset + i, seq)));
        if let Some(e) = &share.first_error {
            stats.error(e.clone());
        }
    }
    report.puback = Latency::from_histogram(&puback);
    report.puback_from_due = Latency::from_histogram(&from_due);
    if let (Some(first), Some(last)) = (first_us, last_us) {
        report.ack_window = Duration::from_micros(last.saturating_sub(first));
    }
    let wall = cpu_after.1.duration_since(cpu_before.1).as_secs_f64();
    report.resources.server_cores = cpu_before.0.zip(cpu_after.0).map(|(a, b)| (b - a) / wall);

    stats.set_phase(Phase::Sweeping, targets.len());
    let sweep_started = Instant::now();
    let (last_visible, not_visible) = sweep(&api, &devices, targets, args.drain_timeout, stats).await;
    report.sweep_time = sweep_started.elapsed();
    report.not_visible = not_visible;
    if let Some(first) = first_us {
        let seen_us = last_visible.map(|t| stats.base_epoch_us + t.duration_since(stats.base).as_micros() as u64);
        let end = seen_us.max(last_us).unwrap_or(first);
        report.e2e_window = Duration::from_micros(end.saturating_sub(first));
    }
    let max_sampled = stats.server_rss_max.load(Ordering::Relaxed);
    report.resources.server_rss_before = server_rss_before;
    report.resources.server_rss_max_sampled = (max_sampled > 0).then_some(max_sampled);
    report.resources.server_hwm = server_pid.and_then(procfs::memory).map(|m| m.hwm);
    report.http_errors = stats.http_errors.load(Ordering::Acquire);
    if let Some(e) = stats.first_error.lock().expect("error lock").as_ref() {
        eprintln!("load: first error: {e}");
    }
    Ok(report)
}
