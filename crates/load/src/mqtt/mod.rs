//! `ingot load mqtt`: the MQTT load run.
//!
//! Method:
//! 1. Log in, create a template (`seq`, `temperature`), `POST /device?count=N`, and one
//!    `POST /device/{id}/secret` per device (32 at a time).
//! 2. Open one MQTT 3.1.1 connection per device (rumqttc, clean session, user
//!    `tenant:device`, the secret as password), `--connect-concurrency` at a time, each
//!    waiting for its CONNACK. 3.1.1 because it is what most devices (and dojot's
//!    agents) speak and rumqttc's most used client; Ingot serves v5 on the same port.
//! 3. Publish QoS 1 `{"seq": k, "temperature": x}` to `tenant:device/attrs` for
//!    `--duration`: with `--rate R` message k of connection i is due at (k·N + i)/R s
//!    (see [`crate::pacing`]); with no rate each connection keeps `--inflight`
//!    publishes unacknowledged, as fast as PUBACKs come back.
//! 4. publish→PUBACK is measured per message from the moment rumqttc wrote the PUBLISH
//!    (its `Outgoing::Publish` event) to the PUBACK event (packet ids matched).
//!    With a fixed rate it is also measured from the message's due time, which counts
//!    any wait behind schedule (no coordinated omission). hdrhistogram, µs.
//! 5. publish→visible is sampled: at most once per `--sample-interval`, a message just
//!    written is handed to one of 2 samplers, which polls
//!    `GET /history/device/{id}/history?attr=seq&lastN=1` (2 ms apart) until the newest
//!    `seq` is ≥ k, and records the time until that answer arrived (an upper bound;
//!    one connection's readings are stored in order, so a later seq implies k).
//!    Samples arriving while all samplers are busy are skipped.
//! 6. After the duration, wait for outstanding PUBACKs (`--drain-timeout`), then sweep
//!    every device (32 requests at a time) until its history shows its last acknowledged
//!    seq. End to end = acknowledged messages / (first publish → last such answer).
//!
//! With `--server-pid` the server's VmRSS is sampled every second, its VmHWM read at the
//! end and its CPU time compared across the measured phase; the same for this process.
//!
//! Two variants: `--plain-broker` skips steps 1, 5 and 6 (a broker such as Mosquitto, to
//! compare with: anonymous connections, the same publishes, measured up to the PUBACKs);
//! `--agents` (`spread`) does steps 1 and 6 here and has `ingot agent`s do 2–4 with
//! their share of the devices (`run_share`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rumqttc::{AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::{Semaphore, mpsc};

use crate::agents::{bar, progress_bar};
use crate::api::Api;
use crate::pacing::{due_offset, messages_in_window};
use crate::procfs;
use crate::report::{Latency, Report};
use crate::{LoadError, MqttArgs};

mod spread;

/// Concurrent HTTP requests while provisioning and in the final sweep.
const HTTP_CONCURRENCY: usize = 32;
/// Concurrent publish→visible samplers. Their polling is HTTP load on the server (a
/// profile showed 4 samplers polling every 1 ms costing ~10% of its CPU); 2 polling
/// every 2 ms keep it to a few percent.
const SAMPLERS: usize = 2;
/// Pause between two polls of one sample.
const SAMPLE_POLL: Duration = Duration::from_millis(2);
/// How long one connection may take to get its CONNACK.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A device: its secret, or (mutual TLS) its certificate and key (PEM), or nothing (a
/// plain broker's connection).
struct Device {
    id: String,
    credential: Credential,
}

enum Credential {
    Secret(String),
    Certificate {
        cert: Vec<u8>,
        key: Vec<u8>,
    },
    /// A plain broker's connection (`--plain-broker`): no user name, no password.
    Anonymous,
}

/// What the progress line says we are doing.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    Provisioning,
    Connecting,
    Publishing,
    Holding,
    Draining,
    Sweeping,
    /// Spread over agents, which report their own progress.
    OnAgents,
    Done,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Provisioning => "provisioning",
            Phase::Connecting => "connecting",
            Phase::Publishing => "publishing",
            Phase::Holding => "holding idle connections",
            Phase::Draining => "waiting for PUBACKs",
            Phase::Sweeping => "checking history",
            Phase::OnAgents => "on the agents",
            Phase::Done => "done",
        }
    }

    fn from_u8(v: u8) -> Self {
        [
            Phase::Provisioning,
            Phase::Connecting,
            Phase::Publishing,
            Phase::Holding,
            Phase::Draining,
            Phase::Sweeping,
            Phase::OnAgents,
            Phase::Done,
        ]
        .get(v as usize)
        .copied()
        .unwrap_or(Phase::Done)
    }
}

struct Histograms {
    puback: Histogram<u64>,
    puback_from_due: Histogram<u64>,
    visible: Histogram<u64>,
    /// PUBACK latency since it was last taken: each second, by the progress line (a run
    /// here) or for the collector (an agent's share).
    interval: Histogram<u64>,
    /// Each publishing second's p99 of `interval` (µs), as the progress line took it.
    second_p99s: Vec<u64>,
}

fn histogram() -> Histogram<u64> {
    crate::report::latency_histogram()
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record((d.as_micros() as u64).max(1));
}

/// Counters shared by every task of a run.
struct Stats {
    base: Instant,
    /// `base` as µs since the Unix epoch (a share's times are compared across agents).
    base_epoch_us: u64,
    phase: AtomicU8,
    /// When the phase began (µs since `base` + 1).
    phase_us: AtomicU64,
    /// Phase-dependent progress counter (devices provisioned, connections opened, devices swept).
    step: AtomicUsize,
    steps: AtomicUsize,
    published: AtomicU64,
    acked: AtomicU64,
    /// µs since `base` + 1 (0 = not yet).
    first_publish_us: AtomicU64,
    last_ack_us: AtomicU64,
    next_sample_us: AtomicU64,
    sample_interval_us: u64,
    connection_errors: AtomicUsize,
    first_error: Mutex<Option<String>>,
    http_errors: AtomicU64,
    server_rss_max: AtomicU64,
    hist: Mutex<Histograms>,
    /// The publish→visible samplers' queue while they run.
    samples: Mutex<Option<mpsc::Sender<Sample>>>,
}

impl Stats {
    fn new(sample_interval: Duration) -> Self {
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Self {
            base: Instant::now(),
            base_epoch_us: since_epoch.as_micros() as u64,
            phase: AtomicU8::new(Phase::Provisioning as u8),
            phase_us: AtomicU64::new(1),
            step: AtomicUsize::new(0),
            steps: AtomicUsize::new(0),
            published: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            first_publish_us: AtomicU64::new(0),
            last_ack_us: AtomicU64::new(0),
            next_sample_us: AtomicU64::new(0),
            sample_interval_us: sample_interval.as_micros() as u64,
            connection_errors: AtomicUsize::new(0),
            first_error: Mutex::new(None),
            http_errors: AtomicU64::new(0),
            server_rss_max: AtomicU64::new(0),
            hist: Mutex::new(Histograms {
                puback: histogram(),
                puback_from_due: histogram(),
                visible: histogram(),
                interval: histogram(),
                second_p99s: Vec::new(),
            }),
            samples: Mutex::new(None),
        }
    }

    fn set_phase(&self, phase: Phase, steps: usize) {
        self.phase_us.store(self.us(Instant::now()), Ordering::Relaxed);
        self.step.store(0, Ordering::Relaxed);
        self.steps.store(steps, Ordering::Relaxed);
        self.phase.store(phase as u8, Ordering::Release);
    }

    fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    fn us(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_micros() as u64 + 1
    }

    fn at(&self, us: u64) -> Option<Instant> {
        (us > 0).then(|| self.base + Duration::from_micros(us - 1))
    }

    fn error(&self, msg: String) {
        self.first_error.lock().expect("error lock").get_or_insert(msg);
    }

    /// The PUBACKs since the last call (`interval`, which only a share's ticker reads) as
    /// one second's results for the collector, `errors` more counted as failed.
    fn second_summary(&self, second: i64, errors: u64) -> Option<serde_json::Value> {
        let h = {
            let mut hist = self.hist.lock().expect("histogram lock");
            let h = hist.interval.clone();
            hist.interval.reset();
            h
        };
        (h.len() + errors > 0).then(|| {
            serde_json::json!({"second": second, "count": h.len() + errors, "errors": errors,
                "latency": crate::report::encode_histogram(&h)})
        })
    }

    /// Whether a message written at `now` should be a publish→visible sample.
    fn take_sample_slot(&self, now: Instant) -> bool {
        if self.sample_interval_us == 0 {
            return false;
        }
        let now_us = self.us(now);
        let next = self.next_sample_us.load(Ordering::Relaxed);
        now_us >= next
            && self
                .next_sample_us
                .compare_exchange(next, now_us + self.sample_interval_us, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// One connection's counters.
#[derive(Default)]
struct ConnState {
    published: AtomicU64,
    acked: AtomicU64,
    /// Last acknowledged seq + 1 (0 = none).
    last_acked: AtomicU64,
    /// The driver ended (error or disconnect).
    ended: AtomicBool,
    /// We are disconnecting: an error now is not a failure.
    closing: AtomicBool,
}

/// A message handed to rumqttc, waiting for its `Outgoing::Publish` event.
struct Pending {
    seq: u64,
    due: Option<Instant>,
}

/// A publish→visible sample: device index, seq, when it was written.
struct Sample {
    device: usize,
    seq: u64,
    written: Instant,
}

struct Conn {
    index: usize,
    client: AsyncClient,
    pending: mpsc::UnboundedSender<Pending>,
    state: Arc<ConnState>,
    driver: tokio::task::JoinHandle<()>,
}

impl Conn {
    /// This connection's last acknowledged seq, if any.
    fn last_acked(&self) -> Option<u64> {
        self.state.last_acked.load(Ordering::Acquire).checked_sub(1)
    }
}

/// Runs `ingot load mqtt`.
pub async fn run(args: MqttArgs) -> Result<(), LoadError> {
    let (mqtt_addr, _) = args.validate()?;
    let pids: Vec<String> = args.server_pid.iter().map(u32::to_string).collect();
    let server_pid = (!pids.is_empty()).then(|| pids.join(","));
    let report = if args.agents.is_empty() {
        let stats = Arc::new(Stats::new(args.sample_interval));
        let progress = tokio::spawn(progress(stats.clone(), server_pid.clone(), args.devices, args.duration));
        let result = run_inner(&args, mqtt_addr, &stats, server_pid.as_deref()).await;
        stats.set_phase(Phase::Done, 0);
        progress.abort();
        result?
    } else {
        spread::run(&args, server_pid).await?
    };
    println!("{}", report.text());
    if let Some(path) = &args.summary {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| LoadError::Io { path: path.clone(), source })?;
        let io = |source| LoadError::Io { path: path.clone(), source };
        if f.metadata().map_err(io)?.len() == 0 {
            writeln!(f, "{}", Report::MARKDOWN_HEADER).map_err(io)?;
        }
        writeln!(f, "{}", report.markdown_row()).map_err(io)?;
    }
    Ok(())
}

async fn run_inner(
    args: &MqttArgs,
    mqtt_addr: Vec<SocketAddr>,
    stats: &Arc<Stats>,
    server_pid: Option<&str>,
) -> Result<Report, LoadError> {
    if args.plain_broker {
        let devices = (0..args.devices).map(|i| Device { id: format!("d{i}"), credential: Credential::Anonymous });
        let devices = Arc::new(devices.collect());
        let server_rss_before = server_pid.and_then(procfs::memory).map(|m| m.rss);
        let session = connect_and_publish(args, mqtt_addr, None, &devices, stats, server_pid).await?;
        let mut report = session.report;
        report.plain_broker = true;
        finish(&mut report, stats, server_pid, server_rss_before);
        disconnect_all(session.conns).await;
        return Ok(report);
    }
    let api = Arc::new(Api::login(&args.target.http, &args.target.user, &args.target.password).await?);
    let tls_key = tls_setup(args)?;
    let devices = Arc::new(provision(&api, args.devices, tls_key, args.tls_ca.is_some(), stats).await?);
    if mqtt_addr.len() > 1 {
        // Devices were made through one node: the others learn of them within moments.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let server_rss_before = server_pid.and_then(procfs::memory).map(|m| m.rss);
    let session = connect_and_publish(args, mqtt_addr, Some(&api), &devices, stats, server_pid).await?;
    let mut report = session.report;
    if !args.idle {
        let targets = session.conns.iter().filter_map(|c| c.last_acked().map(|seq| (c.index, seq))).collect();
        stats.set_phase(Phase::Sweeping, session.conns.len());
        let sweep_started = Instant::now();
        let first = stats.at(stats.first_publish_us.load(Ordering::Acquire));
        let last_ack = stats.at(stats.last_ack_us.load(Ordering::Acquire));
        let (last_visible, not_visible) = sweep(&api, &devices, targets, args.drain_timeout, stats).await;
        report.sweep_time = sweep_started.elapsed();
        report.not_visible = not_visible;
        if let (Some(first), Some(last_ack)) = (first, last_ack) {
            report.e2e_window = last_visible.unwrap_or(last_ack).max(last_ack).duration_since(first);
        }
    }
    finish(&mut report, stats, server_pid, server_rss_before);
    disconnect_all(session.conns).await;
    Ok(report)
}

/// The report's memory figures and error count, once the run is over.
fn finish(report: &mut Report, stats: &Stats, server_pid: Option<&str>, server_rss_before: Option<u64>) {
    let server_mem = server_pid.and_then(procfs::memory);
    let max_sampled = stats.server_rss_max.load(Ordering::Relaxed);
    report.resources.server_rss_before = server_rss_before;
    report.resources.server_rss_max_sampled = (max_sampled > 0).then_some(max_sampled);
    report.resources.server_hwm = server_mem.map(|m| m.hwm);
    report.resources.client_hwm = procfs::memory("self").map(|m| m.hwm);
    report.http_errors = stats.http_errors.load(Ordering::Acquire);
    if let Some(e) = stats.first_error.lock().expect("error lock").as_ref() {
        eprintln!("load: first error: {e}");
    }
}

/// Checks the CA file and chooses rustls's crypto provider for MQTT over mutual TLS;
/// reads `--tls-key-pem`.
fn tls_setup(args: &MqttArgs) -> Result<Option<Arc<rcgen::KeyPair>>, LoadError> {
    if let Some(path) = &args.tls_ca {
        std::fs::metadata(path).map_err(|source| LoadError::Io { path: path.clone(), source })?;
        // rustls needs its crypto provider chosen; several are linked into this binary.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    match &args.tls_key_pem {
        Some(path) => {
            let pem = std::fs::read_to_string(path).map_err(|source| LoadError::Io { path: path.clone(), source })?;
            let key = rcgen::KeyPair::from_pem(&pem).map_err(|e| LoadError::Args(format!("--tls-key-pem: {e}")))?;
            Ok(Some(Arc::new(key)))
        }
        None => Ok(None),
    }
}

/// Connections after publishing (or holding), and what was measured so far: everything
/// but the history sweep and memory.
struct Session {
    report: Report,
    conns: Vec<Conn>,
}

/// Connects every device, publishes (or holds) for `--duration`, waits for the PUBACKs.
/// Without `api` no publish→visible samples are taken.
async fn connect_and_publish(
    args: &MqttArgs,
    mqtt_addr: Vec<SocketAddr>,
    api: Option<&Arc<Api>>,
    devices: &Arc<Vec<Device>>,
    stats: &Arc<Stats>,
    server_pid: Option<&str>,
) -> Result<Session, LoadError> {
    stats.set_phase(Phase::Connecting, devices.len());
    let connect_started = Instant::now();
    let (conns, connect_errors) = connect_all(args, mqtt_addr, devices, stats).await;
    let connect_time = connect_started.elapsed();
    if conns.is_empty() {
        let first = stats.first_error.lock().expect("error lock").clone().unwrap_or_default();
        return Err(LoadError::NoConnection(first));
    }

    let cpu_before = (server_pid.and_then(procfs::cpu_seconds), procfs::cpu_seconds("self"), Instant::now());
    let mut report = Report {
        label: args.label.clone(),
        devices: devices.len(),
        rate: (args.rate > 0.0).then_some(args.rate),
        idle: args.idle,
        inflight: args.inflight,
        duration: args.duration,
        connected: conns.len(),
        connect_errors,
        connect_time,
        ..Report::default()
    };
    if args.idle {
        stats.server_rss_max.store(0, Ordering::Relaxed);
        stats.set_phase(Phase::Holding, conns.len());
        tokio::time::sleep(args.duration).await;
        if let Some(m) = server_pid.and_then(procfs::memory) {
            stats.server_rss_max.fetch_max(m.rss, Ordering::Relaxed);
        }
    } else {
        let sample_interval = if api.is_some() { args.sample_interval } else { Duration::ZERO };
        publish_phase(args, sample_interval, api, devices, &conns, stats).await;
    }
    let cpu_after = (server_pid.and_then(procfs::cpu_seconds), procfs::cpu_seconds("self"), Instant::now());
    let wall = cpu_after.2.duration_since(cpu_before.2).as_secs_f64();
    let cores = |a: Option<f64>, b: Option<f64>| Some((b? - a?) / wall);
    report.resources.server_cores = cores(cpu_before.0, cpu_after.0);
    report.resources.client_cores = cores(cpu_before.1, cpu_after.1);

    if let (Some(first), Some(last_ack)) =
        (stats.at(stats.first_publish_us.load(Ordering::Acquire)), stats.at(stats.last_ack_us.load(Ordering::Acquire)))
    {
        report.ack_window = last_ack.duration_since(first);
        report.e2e_window = report.ack_window;
    }
    report.published = stats.published.load(Ordering::Acquire);
    report.acked = stats.acked.load(Ordering::Acquire);
    report.unacked = conns
        .iter()
        .map(|c| c.state.published.load(Ordering::Acquire).saturating_sub(c.state.acked.load(Ordering::Acquire)))
        .sum();
    report.connection_errors = stats.connection_errors.load(Ordering::Acquire);
    {
        let h = stats.hist.lock().expect("histogram lock");
        report.puback = Latency::from_histogram(&h.puback);
        report.puback_from_due = Latency::from_histogram(&h.puback_from_due);
        report.visible = Latency::from_histogram(&h.visible);
        report.puback_p99_by_second = h.second_p99s.clone();
    }
    Ok(Session { report, conns })
}

/// One agent's share of a spread run (`ingot load mqtt --agents`): its devices connect
/// and publish here; the coordinator sweeps history and merges the shares.
pub(crate) async fn run_share(
    args: &MqttArgs,
    devices: Vec<(String, String)>,
    live: &Arc<AtomicU64>,
    seconds: mpsc::UnboundedSender<serde_json::Value>,
) -> Result<Share, LoadError> {
    let mqtt_addr = args.mqtt_addrs()?;
    let stats = Arc::new(Stats::new(Duration::ZERO));
    let devices: Arc<Vec<Device>> = Arc::new(
        devices.into_iter().map(|(id, secret)| Device { id, credential: Credential::Secret(secret) }).collect(),
    );
    // The running count for `GET /jobs/<name>`, and each second's PUBACKs for the collector.
    let ticker = {
        let (stats, live, seconds) = (stats.clone(), live.clone(), seconds.clone());
        tokio::spawn(async move {
            loop {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                let next = Duration::from_secs(now.as_secs() + 1);
                for _ in 0..5 {
                    live.store(stats.acked.load(Ordering::Relaxed), Ordering::Relaxed);
                    tokio::time::sleep((next.saturating_sub(now)) / 5).await;
                }
                if let Some(item) = stats.second_summary(now.as_secs() as i64, 0) {
                    let _ = seconds.send(item);
                }
            }
        })
    };
    let session = connect_and_publish(args, mqtt_addr, None, &devices, &stats, None).await;
    ticker.abort();
    if let Ok(s) = &session {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        // The last partial second; readings never acknowledged count as its errors.
        if let Some(item) = stats.second_summary(now.as_secs() as i64, s.report.unacked) {
            let _ = seconds.send(item);
        }
    }
    drop(seconds);
    let session = session?;
    live.store(stats.acked.load(Ordering::Relaxed), Ordering::Relaxed);
    let epoch = |us: u64| stats.at(us).map(|_| stats.base_epoch_us + us - 1);
    let (puback, puback_from_due) = {
        let hist = stats.hist.lock().expect("histogram lock");
        (crate::report::encode_histogram(&hist.puback), crate::report::encode_histogram(&hist.puback_from_due))
    };
    let share = Share {
        devices: devices.len(),
        connected: session.report.connected,
        connect_errors: session.report.connect_errors,
        connect_ms: session.report.connect_time.as_millis() as u64,
        connection_errors: session.report.connection_errors,
        published: session.report.published,
        acked: session.report.acked,
        unacked: session.report.unacked,
        first_publish_us: epoch(stats.first_publish_us.load(Ordering::Acquire)),
        last_ack_us: epoch(stats.last_ack_us.load(Ordering::Acquire)),
        puback,
        puback_from_due,
        last_acked: session.conns.iter().filter_map(|c| c.last_acked().map(|seq| (c.index, seq))).collect(),
        first_error: stats.first_error.lock().expect("error lock").clone(),
    };
    disconnect_all(session.conns).await;
    Ok(share)
}

/// What one agent's devices did (see [`run_share`]); times are µs since the Unix epoch.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Share {
    pub devices: usize,
    pub connected: usize,
    pub connect_errors: usize,
    pub connect_ms: u64,
    pub connection_errors: usize,
    pub published: u64,
    pub acked: u64,
    pub unacked: u64,
    pub first_publish_us: Option<u64>,
    pub last_ack_us: Option<u64>,
    /// publish written → PUBACK, µs ([`crate::report::encode_histogram`]).
    pub puback: String,
    /// due time → PUBACK, µs (fixed-rate runs).
    pub puback_from_due: String,
    /// (device index within the share, its last acknowledged seq).
    pub last_acked: Vec<(usize, u64)>,
    pub first_error: Option<String>,
}

/// Template, devices, one secret each.
async fn provision(
    api: &Arc<Api>,
    count: usize,
    tls_key: Option<Arc<rcgen::KeyPair>>,
    tls: bool,
    stats: &Arc<Stats>,
) -> Result<Vec<Device>, LoadError> {
    stats.set_phase(Phase::Provisioning, count);
    let template = api.create_template().await?;
    let ids = api.create_devices(&template, count).await?;
    let ids = Arc::new(ids);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..HTTP_CONCURRENCY.min(count) {
        let (api, ids, next, stats, tls_key) = (api.clone(), ids.clone(), next.clone(), stats.clone(), tls_key.clone());
        workers.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(id) = ids.get(i) else { return Ok::<_, LoadError>(mine) };
                let credential = if tls {
                    let key = match &tls_key {
                        Some(k) => k.clone(),
                        None => Arc::new(
                            rcgen::KeyPair::generate().map_err(|e| LoadError::Args(format!("key generation: {e}")))?,
                        ),
                    };
                    let cert = api.certificate(id, &key).await?;
                    Credential::Certificate { cert: cert.into_bytes(), key: key.serialize_pem().into_bytes() }
                } else {
                    Credential::Secret(api.new_secret(id).await?)
                };
                mine.push((i, credential));
                stats.step.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let mut credentials: Vec<Option<Credential>> = (0..count).map(|_| None).collect();
    while let Some(joined) = workers.join_next().await {
        for (i, c) in joined.expect("provisioning worker panicked")? {
            credentials[i] = Some(c);
        }
    }
    Ok(ids
        .iter()
        .zip(credentials)
        .map(|(id, credential)| Device {
            id: id.clone(),
            credential: credential.expect("every device got a credential"),
        })
        .collect())
}

/// Opens every connection, `connect_concurrency` at a time; returns the open ones
/// (in device order) and how many failed.
async fn connect_all(
    args: &MqttArgs,
    addrs: Vec<SocketAddr>,
    devices: &Arc<Vec<Device>>,
    stats: &Arc<Stats>,
) -> (Vec<Conn>, usize) {
    let limit = Arc::new(Semaphore::new(args.connect_concurrency));
    // Read once: every TLS connection trusts the same CA (checked readable in `run`).
    let ca: Option<Arc<[u8]>> = args.tls_ca.as_ref().and_then(|p| std::fs::read(p).ok()).map(Arc::from);
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..devices.len() {
        let (limit, devices, stats) = (limit.clone(), devices.clone(), stats.clone());
        let (tenant, keep_alive, inflight) = (args.target.tenant.clone(), args.keep_alive, args.inflight);
        let ca = ca.clone();
        let addr = addrs[index % addrs.len()];
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("semaphore open");
            let device = &devices[index];
            let mut opts = MqttOptions::new(format!("ingot-load-{index}"), addr.ip().to_string(), addr.port());
            match &device.credential {
                Credential::Secret(secret) => {
                    opts.set_credentials(format!("{tenant}:{}", device.id), secret.clone());
                }
                Credential::Anonymous => {}
                Credential::Certificate { cert, key } => {
                    opts.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Simple {
                        ca: ca.as_ref().expect("a CA with certificates").to_vec(),
                        alpn: None,
                        client_auth: Some((cert.clone(), key.clone())),
                    }));
                }
            }
            opts.set_keep_alive(keep_alive).set_inflight(inflight).set_clean_session(true);
            let (client, mut eventloop) = AsyncClient::new(opts, usize::from(inflight));
            let connack = tokio::time::timeout(CONNECT_TIMEOUT, eventloop.poll()).await;
            let outcome = match connack {
                Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) if ack.code == ConnectReturnCode::Success => Ok(()),
                Ok(Ok(other)) => Err(format!("expected CONNACK, got {other:?}")),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no CONNACK within {CONNECT_TIMEOUT:?}")),
            };
            stats.step.fetch_add(1, Ordering::Relaxed);
            match outcome {
                Ok(()) => {
                    let (tx, rx) = mpsc::unbounded_channel();
                    let state = Arc::new(ConnState::default());
                    Ok((index, client, tx, state, eventloop, rx))
                }
                Err(e) => {
                    stats.error(format!("connection {index}: {e}"));
                    Err(())
                }
            }
        });
    }
    let mut opened = Vec::with_capacity(devices.len());
    let mut failed = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("connect task panicked") {
            Ok(c) => opened.push(c),
            Err(()) => failed += 1,
        }
    }
    opened.sort_by_key(|c| c.0);
    let conns = opened
        .into_iter()
        .map(|(index, client, pending, state, eventloop, rx)| {
            let driver = tokio::spawn(drive(index, eventloop, rx, state.clone(), stats.clone()));
            Conn { index, client, pending, state, driver }
        })
        .collect();
    (conns, failed)
}

/// Polls one connection's event loop: matches PUBLISH writes with PUBACKs.
async fn drive(
    index: usize,
    mut eventloop: EventLoop,
    mut pending: mpsc::UnboundedReceiver<Pending>,
    state: Arc<ConnState>,
    stats: Arc<Stats>,
) {
    let mut sent: HashMap<u16, (Pending, Instant)> = HashMap::new();
    loop {
        match eventloop.poll().await {
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                let now = Instant::now();
                if let Ok(p) = pending.try_recv() {
                    if stats.take_sample_slot(now)
                        && let Some(tx) = stats.samples.lock().expect("samples lock").as_ref()
                    {
                        // Skipped when every sampler is busy.
                        let _ = tx.try_send(Sample { device: index, seq: p.seq, written: now });
                    }
                    sent.insert(pkid, (p, now));
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                let now = Instant::now();
                if let Some((p, written)) = sent.remove(&ack.pkid) {
                    {
                        let mut h = stats.hist.lock().expect("histogram lock");
                        let latency = now.duration_since(written);
                        record(&mut h.puback, latency);
                        record(&mut h.interval, latency);
                        if let Some(due) = p.due {
                            record(&mut h.puback_from_due, now.saturating_duration_since(due));
                        }
                    }
                    state.last_acked.store(p.seq + 1, Ordering::Release);
                    state.acked.fetch_add(1, Ordering::AcqRel);
                    stats.acked.fetch_add(1, Ordering::Relaxed);
                    stats.last_ack_us.fetch_max(stats.us(now), Ordering::AcqRel);
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
            Ok(_) => {}
            Err(e) => {
                if !state.closing.load(Ordering::Acquire) {
                    stats.connection_errors.fetch_add(1, Ordering::Relaxed);
                    stats.error(format!("connection {index} lost: {e}"));
                }
                break;
            }
        }
    }
    state.ended.store(true, Ordering::Release);
}

/// The reading a device sends as message `seq`.
fn payload(seq: u64) -> String {
    format!(r#"{{"seq": {seq}, "temperature": {:.1}}}"#, 20.0 + (seq % 100) as f64 / 10.0)
}

/// Publishes for `--duration`, then waits for the outstanding PUBACKs.
async fn publish_phase(
    args: &MqttArgs,
    sample_interval: Duration,
    api: Option<&Arc<Api>>,
    devices: &Arc<Vec<Device>>,
    conns: &[Conn],
    stats: &Arc<Stats>,
) {
    let mut samplers = tokio::task::JoinSet::new();
    if let Some(api) = api.filter(|_| !sample_interval.is_zero()) {
        let (tx, rx) = mpsc::channel(SAMPLERS);
        *stats.samples.lock().expect("samples lock") = Some(tx);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..SAMPLERS {
            samplers.spawn(sampler(api.clone(), devices.clone(), rx.clone(), stats.clone(), args.drain_timeout));
        }
    }

    stats.server_rss_max.store(0, Ordering::Relaxed);
    stats.set_phase(Phase::Publishing, conns.len());
    let start = Instant::now();
    stats.first_publish_us.store(stats.us(start), Ordering::Release);
    let rate = (args.rate > 0.0).then_some(args.rate);
    let mut publishers = tokio::task::JoinSet::new();
    for c in conns {
        let plan = Plan {
            index: c.index,
            conns: conns.len(),
            rate,
            start,
            duration: args.duration,
            topic: format!("{}:{}/attrs", args.target.tenant, devices[c.index].id),
        };
        publishers.spawn(publish(plan, c.client.clone(), c.pending.clone(), c.state.clone(), stats.clone()));
    }
    while publishers.join_next().await.is_some() {}

    stats.set_phase(Phase::Draining, 0);
    let deadline = Instant::now() + args.drain_timeout;
    let outstanding = |c: &Conn| {
        !c.state.ended.load(Ordering::Acquire)
            && c.state.acked.load(Ordering::Acquire) < c.state.published.load(Ordering::Acquire)
    };
    while Instant::now() < deadline && conns.iter().any(outstanding) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // No new samples; let the samplers finish the ones they hold.
    stats.samples.lock().expect("samples lock").take();
    let _ = tokio::time::timeout_at(deadline.into(), async { while samplers.join_next().await.is_some() {} }).await;
    samplers.abort_all();
}

/// What one publisher does.
struct Plan {
    index: usize,
    conns: usize,
    rate: Option<f64>,
    start: Instant,
    duration: Duration,
    topic: String,
}

async fn publish(
    plan: Plan,
    client: AsyncClient,
    pending: mpsc::UnboundedSender<Pending>,
    state: Arc<ConnState>,
    stats: Arc<Stats>,
) {
    let end = plan.start + plan.duration;
    let count = plan.rate.map(|r| messages_in_window(plan.index, plan.conns, r, plan.duration));
    for seq in 0.. {
        let due = match (plan.rate, count) {
            (Some(rate), Some(count)) => {
                if seq >= count {
                    break;
                }
                let due = plan.start + due_offset(plan.index, seq, plan.conns, rate);
                tokio::time::sleep_until(due.into()).await;
                Some(due)
            }
            _ => {
                if Instant::now() >= end {
                    break;
                }
                None
            }
        };
        if state.ended.load(Ordering::Acquire) || pending.send(Pending { seq, due }).is_err() {
            break;
        }
        if client.publish(plan.topic.as_str(), QoS::AtLeastOnce, false, payload(seq)).await.is_err() {
            break;
        }
        state.published.fetch_add(1, Ordering::AcqRel);
        stats.published.fetch_add(1, Ordering::Relaxed);
    }
}

/// Takes publish→visible samples until the queue closes.
async fn sampler(
    api: Arc<Api>,
    devices: Arc<Vec<Device>>,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Sample>>>,
    stats: Arc<Stats>,
    give_up: Duration,
) {
    loop {
        let next = rx.lock().await.recv().await;
        let Some(sample) = next else { return };
        let id = &devices[sample.device].id;
        loop {
            match api.last_seq(id).await {
                Ok(Some(seen)) if seen >= sample.seq => {
                    let mut h = stats.hist.lock().expect("histogram lock");
                    record(&mut h.visible, sample.written.elapsed());
                    break;
                }
                Ok(_) if sample.written.elapsed() > give_up => {
                    stats.http_errors.fetch_add(1, Ordering::Relaxed);
                    stats.error(format!("device {id}: seq {} not in history after {give_up:?}", sample.seq));
                    break;
                }
                Ok(_) => tokio::time::sleep(SAMPLE_POLL).await,
                Err(e) => {
                    stats.http_errors.fetch_add(1, Ordering::Relaxed);
                    stats.error(e.to_string());
                    break;
                }
            }
        }
    }
}

/// Polls every device (index, last acknowledged seq) until its history shows that seq. Returns when
/// the last one was seen and how many never showed up within `timeout`.
async fn sweep(
    api: &Arc<Api>,
    devices: &Arc<Vec<Device>>,
    targets: Vec<(usize, u64)>,
    timeout: Duration,
    stats: &Arc<Stats>,
) -> (Option<Instant>, usize) {
    let targets = Arc::new(targets);
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + timeout;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..HTTP_CONCURRENCY {
        let (api, devices, targets, next, stats) =
            (api.clone(), devices.clone(), targets.clone(), next.clone(), stats.clone());
        workers.spawn(async move {
            let (mut last_seen, mut missing) = (None::<Instant>, 0usize);
            while let Some(&(device, expected)) = targets.get(next.fetch_add(1, Ordering::Relaxed)) {
                let id = &devices[device].id;
                loop {
                    match api.last_seq(id).await {
                        Ok(Some(seen)) if seen >= expected => {
                            let now = Instant::now();
                            last_seen = Some(last_seen.map_or(now, |t| t.max(now)));
                            break;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            stats.http_errors.fetch_add(1, Ordering::Relaxed);
                            stats.error(e.to_string());
                        }
                    }
                    if Instant::now() >= deadline {
                        stats.error(format!("device {id}: seq {expected} acknowledged but not in history"));
                        missing += 1;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                stats.step.fetch_add(1, Ordering::Relaxed);
            }
            (last_seen, missing)
        });
    }
    let (mut last_seen, mut missing) = (None::<Instant>, 0);
    while let Some(joined) = workers.join_next().await {
        let (seen, m) = joined.expect("sweep worker panicked");
        missing += m;
        last_seen = match (last_seen, seen) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    (last_seen, missing)
}

/// DISCONNECT every connection; connections that do not end within 5 s are dropped.
async fn disconnect_all(conns: Vec<Conn>) {
    for c in &conns {
        c.state.closing.store(true, Ordering::Release);
        let _ = c.client.try_disconnect();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    for mut c in conns {
        if tokio::time::timeout_at(deadline, &mut c.driver).await.is_err() {
            c.driver.abort();
        }
    }
}

/// One progress line on stderr per second, with a progress bar of the phase (its steps,
/// or its time out of `duration`); samples the server's RSS.
async fn progress(stats: Arc<Stats>, server_pid: Option<String>, devices: usize, duration: Duration) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last_acked = 0;
    loop {
        tick.tick().await;
        let phase = stats.phase();
        let (step, steps) = (stats.step.load(Ordering::Relaxed), stats.steps.load(Ordering::Relaxed));
        let bar = match phase {
            Phase::Provisioning => bar(step as f64 / devices.max(1) as f64),
            Phase::Connecting | Phase::Sweeping => bar(step as f64 / steps.max(1) as f64),
            Phase::Publishing | Phase::Holding => {
                let since = stats.at(stats.phase_us.load(Ordering::Relaxed)).map_or(Duration::ZERO, |t| t.elapsed());
                progress_bar(since, duration)
            }
            _ => String::new(),
        };
        let mut line = format!("load: {:>6.1}s {bar} {}", stats.base.elapsed().as_secs_f64(), phase.name());
        match phase {
            Phase::Provisioning => line += &format!(": {step}/{devices} device credentials"),
            Phase::Connecting => line += &format!(": {step}/{steps} connections tried"),
            Phase::Sweeping => line += &format!(": {step}/{steps} devices checked"),
            Phase::Holding => line += &format!(": {steps} connections"),
            Phase::Publishing | Phase::Draining => {
                let (published, acked) = (stats.published.load(Ordering::Relaxed), stats.acked.load(Ordering::Relaxed));
                let (n, p99) = {
                    let mut h = stats.hist.lock().expect("histogram lock");
                    let r = (h.interval.len(), h.interval.value_at_quantile(0.99));
                    h.interval.reset();
                    if phase == Phase::Publishing && r.0 > 0 {
                        h.second_p99s.push(r.1);
                    }
                    r
                };
                line += &format!(
                    ": published {published}, acknowledged {acked} (+{}/s), PUBACK p99 {}",
                    acked - last_acked,
                    if n > 0 { format!("{:.2} ms", p99 as f64 / 1000.0) } else { "—".into() }
                );
                last_acked = acked;
            }
            Phase::Done => {}
            // The agents' poller draws this phase's line.
            Phase::OnAgents => {
                if let Some(m) = server_pid.as_deref().and_then(procfs::memory) {
                    stats.server_rss_max.fetch_max(m.rss, Ordering::Relaxed);
                }
                continue;
            }
        }
        if let Some(m) = server_pid.as_deref().and_then(procfs::memory) {
            if matches!(phase, Phase::Publishing | Phase::Holding | Phase::Draining) {
                stats.server_rss_max.fetch_max(m.rss, Ordering::Relaxed);
            }
            line += &format!(", server RSS {:.1} MB", m.rss as f64 / (1024.0 * 1024.0));
        }
        let errors = stats.connection_errors.load(Ordering::Relaxed) as u64 + stats.http_errors.load(Ordering::Relaxed);
        if errors > 0 {
            line += &format!(", errors {errors}");
        }
        eprintln!("{line}");
    }
}
