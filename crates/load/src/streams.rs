//! `ingot load streams`: real-time fan-out, measured from the subscribers' side.
//!
//! Method:
//! 1. Log in, create a template and one device with a secret.
//! 2. Open `--subscribers` streams, `--connect-concurrency` at a time: kafka-ws
//!    WebSockets on `<tenant>.device-data` (each with its own single-use ticket) or, with
//!    `--transport sse`, `GET /stream/devices/{id}` Server-Sent Events. With
//!    `--device-filter`, WebSockets select the device with a `where` condition (every
//!    reading of the tenant is then evaluated per subscriber, kafka-ws's only way).
//! 3. The server's RSS is read before and after the streams opened: the difference per
//!    stream is the server's memory per subscriber (with the client's own on the side).
//! 4. One MQTT connection (rumqttc, QoS 1) publishes `{"seq": k, "sent_us": t}` at
//!    `--rate` readings/s for `--duration` (due times fixed in advance, so a late
//!    publisher does not hide latency). Each subscriber records now − `sent_us` of every
//!    message (one clock: loopback only) into one histogram, and counts.
//!    `--rate 0` publishes nothing and only holds the streams (to run beside
//!    `ingot load mqtt` and see what the streams cost ingest).
//! 5. After the duration and a 2 s drain: deliveries/s, the share of expected deliveries
//!    received, latency percentiles, streams the server closed, memory and CPU.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::api::Api;
use crate::report::Latency;
use crate::{LoadError, pacing, procfs};

/// Most subscribers one run may open (this process has at most 20,000 files here).
pub const MAX_SUBSCRIBERS: usize = 15_000;

/// How subscribers connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// kafka-ws WebSockets.
    Ws,
    /// Server-Sent Events.
    Sse,
}

/// Settings of `ingot load streams`.
#[derive(Args, Debug, Clone)]
pub struct StreamsArgs {
    #[command(flatten)]
    pub target: crate::Target,
    /// Streams to open.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    #[arg(long, value_enum, default_value_t = Transport::Ws)]
    pub transport: Transport,
    /// WebSockets select the device with `where=metadata.deviceid=in:<id>;`.
    #[arg(long)]
    pub device_filter: bool,
    /// Readings/s the one device publishes; 0: publish nothing, hold the streams.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// How long to publish (or hold).
    #[arg(long, default_value = "10s", value_parser = pacing::parse_duration)]
    pub duration: Duration,
    /// Streams being opened at once (a user may hold 64 unused tickets).
    #[arg(long, default_value_t = 32)]
    pub connect_concurrency: usize,
    /// Process id of the server (same machine), for its memory and CPU.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Name of this run in the report and the summary row.
    #[arg(long, default_value = "streams")]
    pub label: String,
    /// Append the result as one Markdown table row to this file.
    #[arg(long)]
    pub summary: Option<std::path::PathBuf>,
}

/// What every subscriber adds to.
#[derive(Default)]
struct Tally {
    delivered: AtomicU64,
    closed_by_server: AtomicU64,
    latency: Mutex<Option<Histogram<u64>>>,
}

impl Tally {
    fn record(&self, text: &str) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        let Ok(v) = serde_json::from_str::<Value>(text) else { return };
        let Some(sent) = v["attrs"]["sent_us"].as_u64() else { return };
        let now = chrono::Utc::now().timestamp_micros() as u64;
        if let Some(h) = self.latency.lock().expect("histogram").as_mut() {
            let _ = h.record(now.saturating_sub(sent).max(1));
        }
    }
}

/// Runs the fan-out measurement and prints its report.
pub async fn run(args: StreamsArgs) -> Result<(), LoadError> {
    if args.subscribers == 0 || args.subscribers > MAX_SUBSCRIBERS {
        return Err(LoadError::Args(format!("--subscribers must be between 1 and {MAX_SUBSCRIBERS}")));
    }
    if !args.rate.is_finite() || args.rate < 0.0 || args.connect_concurrency == 0 {
        return Err(LoadError::Args("--rate must be ≥ 0 and --connect-concurrency ≥ 1".into()));
    }
    // One device publishes: through the first MQTT address given.
    let mqtt = args.target.addrs()?.0[0];

    let api = Arc::new(Api::login(&args.target.http, &args.target.user, &args.target.password).await?);
    let template = api.create_template().await?;
    let device = api.create_devices(&template, 1).await?.remove(0);
    let secret = api.new_secret(&device).await?;

    let pid = args.server_pid.map(|p| p.to_string());
    let memory = || pid.as_deref().and_then(procfs::memory);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = memory();

    let tally = Arc::new(Tally {
        latency: Mutex::new(Some(Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"))),
        ..Tally::default()
    });
    eprintln!("opening {} {:?} streams…", args.subscribers, args.transport);
    let opened_at = Instant::now();
    let gate = Arc::new(Semaphore::new(args.connect_concurrency));
    let mut opening = Vec::with_capacity(args.subscribers);
    for _ in 0..args.subscribers {
        let permit = gate.clone().acquire_owned().await.expect("semaphore");
        let (api, tally, args, device) = (api.clone(), tally.clone(), args.clone(), device.clone());
        opening.push(tokio::spawn(async move {
            let opened = subscribe(&api, &args, &device).await;
            drop(permit);
            let sub = opened?;
            tokio::spawn(sub.pump(tally));
            Ok::<(), LoadError>(())
        }));
    }
    let mut failed = 0;
    let mut first_error = None;
    for o in opening {
        if let Err(e) = o.await.expect("subscriber task") {
            failed += 1;
            first_error.get_or_insert(e.to_string());
        }
    }
    let open = args.subscribers - failed;
    eprintln!(
        "{open} streams open in {:.1} s ({failed} failed{})",
        opened_at.elapsed().as_secs_f64(),
        first_error.map(|e| format!(": {e}")).unwrap_or_default()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = memory();
    let cpu_start = pid.as_deref().and_then(procfs::cpu_seconds);

    // A progress bar and the deliveries so far, once a second.
    let ticker = {
        let (tally, duration) = (tally.clone(), args.duration);
        tokio::spawn(async move {
            let (started, mut last) = (Instant::now(), 0);
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let delivered = tally.delivered.load(Ordering::Relaxed);
                let bar = crate::agents::progress_bar(started.elapsed(), duration);
                eprintln!("load: {bar}  delivered {delivered} (+{}/s)", delivered - last);
                last = delivered;
            }
        })
    };
    let published = if args.rate > 0.0 {
        publish(mqtt, &args, &device, &secret).await
    } else {
        eprintln!("holding the streams for {:?}…", args.duration);
        tokio::time::sleep(args.duration).await;
        Ok(0)
    };
    ticker.abort();
    let published = published?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = cpu_start.zip(pid.as_deref().and_then(procfs::cpu_seconds)).map(|(a, b)| b - a);

    let delivered = tally.delivered.load(Ordering::Relaxed);
    let latency = tally.latency.lock().expect("histogram").as_ref().map(Latency::from_histogram).unwrap_or_default();
    let expected = published * open as u64;
    let per_sub = before.zip(after).map(|(b, a)| a.rss.saturating_sub(b.rss) / open.max(1) as u64);
    let secs = args.duration.as_secs_f64();
    let text = format!(
        "{label}: {open} {transport:?} subscribers{filter}, {published} readings at {rate}/s for {secs:.0} s\n\
         delivered {delivered} of {expected} ({share:.2}%), {dps:.0} deliveries/s\n\
         publish→delivery ms p50/p99/max: {lat}\n\
         streams closed by the server: {closed}\n\
         server RSS per subscriber: {per_sub}; server CPU in the run: {cpu}",
        label = args.label,
        transport = args.transport,
        filter = if args.device_filter { " (device where-filter)" } else { "" },
        rate = args.rate,
        share = if expected == 0 { 100.0 } else { delivered as f64 * 100.0 / expected as f64 },
        dps = delivered as f64 / secs,
        lat = latency.short(),
        closed = tally.closed_by_server.load(Ordering::Relaxed),
        per_sub = per_sub.map_or("—".into(), |b| format!("{:.1} KiB", b as f64 / 1024.0)),
        cpu = cpu.map_or("—".into(), |c| format!("{c:.2} s ({:.0}% of a core)", c * 100.0 / secs)),
    );
    println!("{text}");
    if let Some(path) = &args.summary {
        let row = format!(
            "| {} | {open} | {:?} | {} | {delivered}/{expected} | {:.0} | {} | {} | {} |\n",
            args.label,
            args.transport,
            args.rate,
            delivered as f64 / secs,
            latency.short(),
            per_sub.map_or("—".into(), |b| format!("{:.1} KiB", b as f64 / 1024.0)),
            cpu.map_or("—".into(), |c| format!("{:.0}%", c * 100.0 / secs)),
        );
        use std::io::Write as _;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(row.as_bytes()))
            .map_err(|source| LoadError::Io { path: path.clone(), source })?;
    }
    Ok(())
}

/// An open stream.
enum Sub {
    Ws(tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>),
    Sse(reqwest::Response),
}

async fn subscribe(api: &Api, args: &StreamsArgs, device: &str) -> Result<Sub, LoadError> {
    match args.transport {
        Transport::Ws => {
            let ticket = api.ticket().await?;
            let filter =
                if args.device_filter { format!("&where=metadata.deviceid=in:{device};") } else { String::new() };
            let url = format!(
                "{}/kafka-ws/v1/topics/{}.device-data?ticket={ticket}{filter}",
                args.target.http.trim_end_matches('/').replacen("http://", "ws://", 1),
                args.target.tenant
            );
            let (ws, _) =
                tokio_tungstenite::connect_async(url).await.map_err(|e| LoadError::Args(format!("WebSocket: {e}")))?;
            Ok(Sub::Ws(ws))
        }
        Transport::Sse => Ok(Sub::Sse(api.open_stream(&format!("/stream/devices/{device}")).await?)),
    }
}

impl Sub {
    async fn pump(self, tally: Arc<Tally>) {
        match self {
            Sub::Ws(mut ws) => {
                while let Some(msg) = ws.next().await {
                    match msg {
                        Ok(Message::Text(t)) => tally.record(&t),
                        Ok(Message::Close(_)) => {
                            tally.closed_by_server.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            }
            Sub::Sse(mut resp) => {
                let mut buf = String::new();
                while let Ok(Some(chunk)) = resp.chunk().await {
                    buf.push_str(&String::from_utf8_lossy(&chunk));
                    while let Some(end) = buf.find("\n\n") {
                        let block: String = buf.drain(..end + 2).collect();
                        if block.contains("event: close") {
                            tally.closed_by_server.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                            tally.record(data);
                        }
                    }
                }
            }
        }
    }
}

/// Publishes at the fixed rate for the duration; returns how many readings were acknowledged.
async fn publish(mqtt: std::net::SocketAddr, args: &StreamsArgs, device: &str, secret: &str) -> Result<u64, LoadError> {
    let mut options = MqttOptions::new(format!("load-streams-{device}"), mqtt.ip().to_string(), mqtt.port());
    options.set_credentials(format!("{}:{device}", args.target.tenant), secret).set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(options, 64);
    let acked = Arc::new(AtomicU64::new(0));
    let counter = acked.clone();
    let poller = tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => return e.to_string(),
            }
        }
    });
    let topic = format!("{}:{device}/attrs", args.target.tenant);
    let total = (args.rate * args.duration.as_secs_f64()).floor() as u64;
    eprintln!("publishing {total} readings at {}/s…", args.rate);
    let start = tokio::time::Instant::now();
    for k in 0..total {
        tokio::time::sleep_until(start + Duration::from_secs_f64(k as f64 / args.rate)).await;
        let payload = json!({"seq": k, "sent_us": chrono::Utc::now().timestamp_micros()}).to_string();
        client
            .publish(&topic, QoS::AtLeastOnce, false, payload)
            .await
            .map_err(|e| LoadError::NoConnection(e.to_string()))?;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while acked.load(Ordering::Relaxed) < total && Instant::now() < deadline {
        if poller.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    poller.abort();
    Ok(acked.load(Ordering::Relaxed))
}
