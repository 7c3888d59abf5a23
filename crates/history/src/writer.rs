//! The history writer: a durable bus consumer with group commit, and its supervisor.
//!
//! Every device acknowledgement waits on this writer, so it must never be silently gone:
//! it runs on a thread of its own under a supervisor thread. If the writer thread dies
//! (a panic: a bug, an injected fault), its bus subscription dies with it, so the bus
//! fails every publish at once (devices get an error, never an ack for a reading nobody
//! stores) and `/health` lists the group (see `bus::Bus::dead_groups`). The supervisor
//! logs the panic, waits (1 s, doubling up to 30 s while it keeps failing) and starts a
//! new writer that subscribes to the same durable group again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bus::{Bus, Delivery, Mode, Subscription};
use model::DeviceData;
use store::SharedStore;

/// The durable group of the history writer on the data topic.
pub const GROUP: &str = "history";

/// First wait before a crashed writer is restarted; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Commits that take this long or longer are logged (at debug level): every device
/// waiting for a PUBACK waits as long.
const SLOW_COMMIT: Duration = Duration::from_millis(20);
/// A writer that ran this long before failing restarts after [`FIRST_BACKOFF`] again.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// Subscribes the history writer to `bus` (before returning, so no reading is
/// acknowledged without it) and runs it, supervised, in batches of at most `max_batch`.
///
/// Its own thread rather than a task plus `spawn_blocking` per batch: every device and
/// request waiting for durability waits on this loop, and each hop between a task and a
/// blocking-pool thread adds a wake-up to that wait.
///
/// A batch is acked only after its transaction committed; if the write fails, the batch
/// is dropped unacked, so every publisher waiting on it gets an error and no device is
/// told its reading was stored.
pub fn spawn(bus: Arc<dyn Bus>, writer: SharedStore, max_batch: usize) -> std::io::Result<()> {
    let sub = bus.subscribe_data(GROUP, Mode::Durable);
    std::thread::Builder::new()
        .name("history-supervisor".into())
        .spawn(move || supervise(bus, sub, writer, max_batch))?;
    Ok(())
}

fn supervise(bus: Arc<dyn Bus>, mut sub: Subscription<DeviceData>, writer: SharedStore, max_batch: usize) {
    let restarts = metrics::counter!("ingot_history_writer_restarts_total");
    let mut backoff = FIRST_BACKOFF;
    loop {
        let started = Instant::now();
        let w = writer.clone();
        let worker = std::thread::Builder::new().name("history-writer".into()).spawn(move || run(sub, w, max_batch));
        let outcome = match worker {
            Ok(handle) => handle.join().map_err(|panic| panic_message(&panic)),
            Err(e) => Err(format!("cannot start a thread: {e}")),
        };
        match outcome {
            Ok(()) => return, // the bus is gone: shutting down
            Err(why) => {
                if started.elapsed() >= STABLE_AFTER {
                    backoff = FIRST_BACKOFF;
                }
                restarts.increment(1);
                tracing::error!(
                    reason = %why, restart_in = ?backoff,
                    "the history writer died; devices get errors until it is back"
                );
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                sub = bus.subscribe_data(GROUP, Mode::Durable);
                tracing::info!("history writer restarted");
            }
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

fn run(sub: Subscription<DeviceData>, writer: SharedStore, max_batch: usize) {
    let latency = metrics::histogram!("ingot_history_write_seconds");
    let batch_size = metrics::histogram!("ingot_history_batch_size");
    let written = metrics::counter!("ingot_history_values_written_total");
    let failures = metrics::counter!("ingot_history_write_failures_total");
    let mut buf: Vec<Delivery<DeviceData>> = Vec::with_capacity(max_batch);
    let mut readings = Vec::with_capacity(max_batch);
    let mut ids = Vec::with_capacity(max_batch);
    // Declared after `buf` on purpose: if a batch panics, locals drop in reverse order,
    // so the subscription (and with it the durable group) is dead before the batch's
    // publishers hear of the failure — by the time a device gets its error, `/health`
    // already says why.
    let mut sub = sub;
    let mut outage = Outage::default();
    loop {
        if sub.blocking_recv_many(&mut buf, max_batch) == 0 {
            tracing::info!("history writer stopped: bus closed");
            return;
        }
        readings.extend(buf.iter().map(|d| d.msg.clone()));
        // A bus that may deliver a reading twice gives ids: stored once (see the store).
        ids.extend(buf.iter().map_while(Delivery::id));
        let once = (ids.len() == buf.len()).then_some(ids.as_slice());
        let started = Instant::now();
        match writer.write_history_blocking(&readings, once) {
            Ok(values) => {
                let took = started.elapsed();
                latency.record(took.as_secs_f64());
                if took >= SLOW_COMMIT {
                    tracing::debug!(took_ms = took.as_millis() as u64, readings = buf.len(), values, "slow commit");
                }
                batch_size.record(buf.len() as f64);
                written.increment(values as u64);
                buf.drain(..).for_each(Delivery::ack);
                outage.ended();
            }
            Err(e) => {
                failures.increment(1);
                outage.failed(&e, buf.len());
                buf.clear();
            }
        }
        readings.clear();
        ids.clear();
    }
}

/// Failed batches come by the hundred per second while the database is away (each
/// refused to its devices at once): the first is logged, then one summary every
/// [`Outage::EVERY`], and the recovery, so the log tells the story without drowning.
#[derive(Default)]
struct Outage {
    since: Option<Instant>,
    last_logged: Option<Instant>,
    batches: u64,
    readings: u64,
}

impl Outage {
    const EVERY: Duration = Duration::from_secs(10);

    fn failed(&mut self, e: &store::StoreError, readings: usize) {
        let now = Instant::now();
        self.since.get_or_insert(now);
        self.batches += 1;
        self.readings += readings as u64;
        if self.last_logged.is_none_or(|t| now.duration_since(t) >= Self::EVERY) {
            tracing::error!(
                error = %e,
                failed_batches = self.batches,
                refused_readings = self.readings,
                "history batches fail; their devices get errors, not acknowledgements"
            );
            self.last_logged = Some(now);
        }
    }

    fn ended(&mut self) {
        if let Some(since) = self.since.take() {
            tracing::warn!(
                after = ?since.elapsed(),
                failed_batches = self.batches,
                refused_readings = self.readings,
                "history batches are stored again"
            );
            *self = Self::default();
        }
    }
}

/// The durable group of the actuation writer on the event topic.
pub const CONFIGURE_GROUP: &str = "history-configure";

/// Subscribes the actuation writer ([`run_configure`]) and runs it as a supervised task:
/// a panic restarts it (after the same backoff as the reading writer) with a new
/// subscription, since a dead durable group makes every event publish fail.
pub fn spawn_configure(bus: Arc<dyn Bus>, writer: SharedStore, max_batch: usize) {
    let mut sub = bus.subscribe_events(CONFIGURE_GROUP, Mode::Durable);
    tokio::spawn(async move {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let task = tokio::spawn(run_configure(sub, writer.clone(), max_batch));
            match task.await {
                Ok(()) => return,
                Err(e) => {
                    metrics::counter!("ingot_history_writer_restarts_total").increment(1);
                    tracing::error!(error = %e, restart_in = ?backoff, "the actuation history writer died");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    sub = bus.subscribe_events(CONFIGURE_GROUP, Mode::Durable);
                }
            }
        }
    });
}

/// Persists actuation (`configure` events) as readings of the device, as dojot's history
/// did: `PUT /device/{id}/actuate {"attrs":{"fan":100}}` appears in the device's history
/// for `fan`. Other events are ignored.
pub async fn run_configure(mut sub: Subscription<model::DeviceEvent>, writer: SharedStore, max_batch: usize) {
    let mut buf = Vec::with_capacity(max_batch);
    loop {
        if sub.recv_many(&mut buf, max_batch).await == 0 {
            return;
        }
        let readings: Vec<_> = buf
            .drain(..)
            .filter_map(|d| {
                let e = &d.msg;
                let (attrs, device_id) = (e.configure_attrs()?, e.device_id()?);
                Some(std::sync::Arc::new(DeviceData::new(&e.tenant, device_id, e.ts, attrs.clone())))
            })
            .collect();
        if readings.is_empty() {
            continue;
        }
        if let Err(e) = writer.write_history(readings).await {
            tracing::error!(error = %e, "could not store actuation history");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bus::{MemoryBus, NatsBus, NatsOptions};
    use chrono::Utc;
    use model::DeviceData;
    use store::history::HistoryQuery;

    use super::*;

    /// A NATS bus with a prefix of its own on the test server, or `None` (SKIPPED; a
    /// failure under CI=true) without one.
    async fn nats() -> Option<Arc<dyn Bus>> {
        let Ok(url) = std::env::var("INGOT_TEST_NATS_URL") else {
            assert!(std::env::var("CI").map_or(true, |v| v != "true"), "CI=true: INGOT_TEST_NATS_URL is not set");
            eprintln!("\n!!!!! SKIPPED the NATS half: INGOT_TEST_NATS_URL is not set; run scripts/test.sh !!!!!\n");
            return None;
        };
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let prefix = format!("writer{}x{nanos:x}", std::process::id());
        let options = NatsOptions { url, prefix, max_bytes: 64 << 20, ..Default::default() };
        Some(Arc::new(NatsBus::connect(options).await.unwrap()))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_writer_stores_every_acknowledged_reading_once_on_each_bus() {
        for engine in store::testing::engines().await {
            // A bus of each kind per store: one history group per bus.
            let mut buses: Vec<(&str, Arc<dyn Bus>)> = vec![("memory", Arc::new(MemoryBus::new(1024)))];
            buses.extend(nats().await.map(|b| ("nats", b)));
            for (bus_name, bus) in buses {
                spawn(bus.clone(), engine.store.clone(), 64).unwrap();
                let publishes = (0..100).map(|i| {
                    let bus = bus.clone();
                    let serde_json::Value::Object(attrs) = serde_json::json!({"seq": i}) else { unreachable!() };
                    let data = DeviceData::new("t", bus_name, Utc::now(), attrs);
                    async move { bus.publish_data(data).await }
                });
                for published in futures_util::future::join_all(publishes).await {
                    published.unwrap();
                }
                let query = HistoryQuery {
                    tenant: "t".into(),
                    device_id: bus_name.into(),
                    attr: "seq".into(),
                    from_ms: None,
                    to_ms: None,
                    newest_first: false,
                    limit: None,
                };
                // On NATS, acknowledged means in the stream: history catches up.
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                let stored = loop {
                    let stored = engine.store.history(query.clone()).await.unwrap().len();
                    if stored >= 100 || std::time::Instant::now() > deadline {
                        break stored;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                };
                let what = format!("{bus_name} bus, {} store", engine.name);
                assert_eq!(stored, 100, "{what}: every reading, once");
                // The NATS bus's ids were recorded with the readings (for redeliveries).
                let ids = engine.store.purge_ingested(store::now_ms() + 1).await.unwrap();
                assert_eq!(ids, if bus_name == "nats" { 100 } else { 0 }, "{what}");
            }
        }
    }
}
