//! The history writer: a durable bus consumer with group commit.

use std::time::Instant;

use bus::{Delivery, Subscription};
use model::DeviceData;
use store::history::HistoryWriter;

/// Consumes `sub` until the bus closes, writing batches of at most `max_batch` readings.
///
/// A batch is acked only after its transaction committed; if the write fails, the batch
/// is dropped unacked, so every publisher waiting on it gets an error and no device is
/// told its reading was stored.
pub async fn run(mut sub: Subscription<DeviceData>, writer: HistoryWriter, max_batch: usize) {
    let latency = metrics::histogram!("ingot_history_write_seconds");
    let batch_size = metrics::histogram!("ingot_history_batch_size");
    let written = metrics::counter!("ingot_history_values_written_total");
    let failures = metrics::counter!("ingot_history_write_failures_total");
    let mut buf: Vec<Delivery<DeviceData>> = Vec::with_capacity(max_batch);
    loop {
        if sub.recv_many(&mut buf, max_batch).await == 0 {
            tracing::info!("history writer stopped: bus closed");
            return;
        }
        let readings = buf.iter().map(|d| d.msg.clone()).collect();
        let started = Instant::now();
        match writer.write_batch(readings).await {
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
    }
}
