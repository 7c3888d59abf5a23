//! The history writer: a durable bus consumer with group commit.

use std::time::Instant;

use bus::{Delivery, Subscription};
use model::DeviceData;
use store::history::HistoryWriter;

/// Starts the history writer on a thread of its own, consuming `sub` until the bus closes,
/// in batches of at most `max_batch` readings.
///
/// Its own thread rather than a task plus `spawn_blocking` per batch: every device and
/// request waiting for durability waits on this loop, and each hop between a task and a
/// blocking-pool thread adds a wake-up to that wait.
///
/// A batch is acked only after its transaction committed; if the write fails, the batch
/// is dropped unacked, so every publisher waiting on it gets an error and no device is
/// told its reading was stored.
pub fn spawn(sub: Subscription<DeviceData>, writer: HistoryWriter, max_batch: usize) -> std::io::Result<()> {
    std::thread::Builder::new().name("history-writer".into()).spawn(move || run(sub, writer, max_batch))?;
    Ok(())
}

fn run(mut sub: Subscription<DeviceData>, writer: HistoryWriter, max_batch: usize) {
    let latency = metrics::histogram!("ingot_history_write_seconds");
    let batch_size = metrics::histogram!("ingot_history_batch_size");
    let written = metrics::counter!("ingot_history_values_written_total");
    let failures = metrics::counter!("ingot_history_write_failures_total");
    let mut buf: Vec<Delivery<DeviceData>> = Vec::with_capacity(max_batch);
    let mut readings = Vec::with_capacity(max_batch);
    loop {
        if sub.blocking_recv_many(&mut buf, max_batch) == 0 {
            tracing::info!("history writer stopped: bus closed");
            return;
        }
        readings.extend(buf.iter().map(|d| d.msg.clone()));
        let started = Instant::now();
        match writer.write_batch_blocking(&readings) {
            Ok(values) => {
                latency.record(started.elapsed().as_secs_f64());
                batch_size.record(buf.len() as f64);
                written.increment(values as u64);
                buf.drain(..).for_each(Delivery::ack);
            }
            Err(e) => {
                failures.increment(1);
                tracing::error!(error = %e, readings = buf.len(), "history batch failed; devices will not be acked");
                buf.clear();
            }
        }
        readings.clear();
    }
}

/// Persists actuation (`configure` events) as readings of the device, as dojot's history
/// did: `PUT /device/{id}/actuate {"attrs":{"fan":100}}` appears in the device's history
/// for `fan`. Other events are ignored.
pub async fn run_configure(mut sub: Subscription<model::DeviceEvent>, writer: HistoryWriter, max_batch: usize) {
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
                Some(std::sync::Arc::new(DeviceData {
                    tenant: e.tenant.clone(),
                    device_id: device_id.to_string(),
                    ts: e.ts,
                    attrs: attrs.clone(),
                }))
            })
            .collect();
        if readings.is_empty() {
            continue;
        }
        if let Err(e) = writer.write_batch(readings).await {
            tracing::error!(error = %e, "could not store actuation history");
        }
    }
}
