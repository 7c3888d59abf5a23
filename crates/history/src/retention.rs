//! Retention: readings older than their tenant's `retention_days` are deleted
//! periodically (dojot #735/#2251: its expiry setting was ineffective), and so are the
//! leftovers that would otherwise grow forever: readings of deleted devices, and series
//! (attribute labels) with no readings left.

use std::time::Duration;

use store::prelude::*;

/// Runs forever, purging every `every`.
pub async fn run(store: SharedStore, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let started = std::time::Instant::now();
        match purge_once(&store, chrono::Utc::now().timestamp_millis()).await {
            Ok(n) => {
                let took_ms = started.elapsed().as_millis() as u64;
                if n > 0 {
                    tracing::info!(deleted = n, took_ms, "expired history removed");
                } else {
                    tracing::debug!(took_ms, "history retention pass: nothing to remove");
                }
            }
            Err(e) => tracing::warn!(error = %e, "history retention pass failed"),
        }
    }
}

/// One pass over every tenant as of `now_ms`; returns the number of values deleted.
pub async fn purge_once(store: &SharedStore, now_ms: i64) -> Result<usize, store::StoreError> {
    let mut total = 0;
    for t in store.tenants().await? {
        let cutoff = now_ms - i64::from(t.retention_days) * 86_400_000;
        total += store.purge_history(&t.name, cutoff).await?;
    }
    metrics::counter!("ingot_history_values_expired_total").increment(total as u64);
    let orphans = store.purge_orphan_history().await?;
    metrics::counter!("ingot_history_values_orphaned_total").increment(orphans as u64);
    let series = store.purge_empty_series().await?;
    metrics::counter!("ingot_history_series_purged_total").increment(series as u64);
    if series > 0 {
        tracing::info!(series, "history series without readings removed");
    }
    // Ids of stored readings, kept to recognise a bus's redelivery, not for ever.
    store.purge_ingested(now_ms - store::history::INGESTED_KEEP_MS).await?;
    Ok(total + orphans)
}
