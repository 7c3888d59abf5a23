//! Ingot as a collector of load-test results: what `ingot agent`s (and go-lo's agent)
//! push to `POST <collector>/push/<job>`, a JSON array of go-lo Outputs
//! (`{"sequenceID", "url", "method", "status", "size", "timestamp", "duration", "error"}`).
//!
//! A push may also carry seconds already summed up, `{"second", "count", "errors",
//! "latency"}` with an encoded histogram (an `ingot agent` MQTT job sends one a second:
//! an Output per reading would load the collector as much as the platform under test).
//!
//! Each push is summed up per second of the Outputs' `timestamp` (RFC 3339; an Output
//! without one counts at the second it arrived): how many, how many failed (an `error`,
//! or a `status` of 400 or more), and a histogram of their `duration` (go-lo's, in ns;
//! kept in µs). Those seconds, and the whole job's totals, are merged into the store's
//! rows ([`store::loadtests`]) by adding histograms, so a second's percentiles are those
//! of every Output of that second from every agent, exactly.
//!
//! Who may push is the API's business (a platform token, or an API token with the
//! `loadtests` scope, which go-lo's agent, sending no header, carries in the collector
//! URL); this service takes the tenant it is given.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use store::SharedStore;
use store::loadtests::{LoadBucket, LoadJob, WHOLE_JOB};

use crate::agent::jobs::valid_name;
use crate::agent::runner::failed;
use crate::report::{histogram_bytes, histogram_from_bytes, latency_histogram};

/// Most Outputs one push may carry.
pub const MAX_OUTPUTS_PER_PUSH: usize = 10_000;
/// Most seconds one request for a job's series returns.
pub const MAX_SERIES_SECONDS: usize = 3_600;
/// Most jobs listed.
pub const MAX_JOBS: usize = 200;

/// Why a collector request failed.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error("{0}")]
    BadRequest(String),
    #[error("no load test {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// One second (or the whole job), as the console charts it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Second {
    /// Unix seconds (absent for the whole job).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub second: Option<i64>,
    pub count: i64,
    pub errors: i64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl From<&LoadBucket> for Second {
    fn from(b: &LoadBucket) -> Self {
        let ms = |us: i64| us as f64 / 1000.0;
        Self {
            second: (b.second != WHOLE_JOB).then_some(b.second),
            count: b.count,
            errors: b.errors,
            p50_ms: ms(b.p50_us),
            p90_ms: ms(b.p90_us),
            p99_ms: ms(b.p99_us),
            max_ms: ms(b.max_us),
        }
    }
}

/// A job: its name, its first and last second, its totals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobView {
    pub name: String,
    pub first_second: i64,
    pub last_second: i64,
    pub updated_ms: i64,
    pub totals: Second,
}

impl From<&LoadJob> for JobView {
    fn from(j: &LoadJob) -> Self {
        Self {
            name: j.job.clone(),
            first_second: j.first_second,
            last_second: j.last_second,
            updated_ms: j.totals.updated_ms,
            totals: Second::from(&j.totals),
        }
    }
}

/// The collector service.
pub struct Collector {
    store: SharedStore,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A bucket from a histogram and counts.
fn bucket(second: i64, count: i64, errors: i64, h: &hdrhistogram::Histogram<u64>, updated_ms: i64) -> LoadBucket {
    let q = |q: f64| if h.is_empty() { 0 } else { h.value_at_quantile(q) as i64 };
    LoadBucket {
        second,
        count,
        errors,
        p50_us: q(0.5),
        p90_us: q(0.9),
        p99_us: q(0.99),
        max_us: if h.is_empty() { 0 } else { h.max() as i64 },
        latency: histogram_bytes(h),
        updated_ms,
    }
}

/// One push's results of one second (or of the whole push).
struct Tally {
    count: i64,
    errors: i64,
    latency: hdrhistogram::Histogram<u64>,
}

impl Default for Tally {
    fn default() -> Self {
        Self { count: 0, errors: 0, latency: latency_histogram() }
    }
}

impl Tally {
    fn bucket(&self, second: i64, updated_ms: i64) -> LoadBucket {
        bucket(second, self.count, self.errors, &self.latency, updated_ms)
    }
}

/// Adds a stored row and new results of the same second: counts, and histograms exactly.
fn merge(old: &LoadBucket, new: &LoadBucket) -> Result<LoadBucket, String> {
    let mut h = histogram_from_bytes(&old.latency)?;
    h.add(histogram_from_bytes(&new.latency)?).map_err(|e| format!("histogram: {e:?}"))?;
    Ok(bucket(new.second, old.count + new.count, old.errors + new.errors, &h, new.updated_ms.max(old.updated_ms)))
}

/// A second's summary (an `ingot agent` MQTT job's): `{"second", "count", "errors",
/// "latency"}`, the latency an encoded histogram ([`crate::report::encode_histogram`]).
fn summary(
    i: usize,
    item: &Value,
    latency: &Value,
) -> Result<(i64, i64, i64, hdrhistogram::Histogram<u64>), CollectorError> {
    let bad = |m: &str| CollectorError::BadRequest(format!("item {i}: {m}"));
    let h = latency
        .as_str()
        .ok_or_else(|| bad("latency must be an encoded histogram"))
        .and_then(|t| crate::report::decode_histogram(t).map_err(|e| bad(&e)))?;
    let second = item
        .get("second")
        .and_then(Value::as_i64)
        .filter(|s| *s >= 0)
        .ok_or_else(|| bad("second must be a Unix time"))?;
    let count = item.get("count").and_then(Value::as_i64).ok_or_else(|| bad("count must be a whole number"))?;
    let errors = item.get("errors").and_then(Value::as_i64).unwrap_or(0);
    if errors < 0 || count < errors || (count as u64) < h.len() {
        return Err(bad("count must be at least errors and the histogram's samples"));
    }
    Ok((second, count, errors, h))
}

impl Collector {
    pub fn new(store: SharedStore) -> Self {
        Self { store }
    }

    fn check_name(job: &str) -> Result<(), CollectorError> {
        if valid_name(job) {
            Ok(())
        } else {
            Err(CollectorError::BadRequest(format!(
                "job name {job:?} must be 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'"
            )))
        }
    }

    /// Stores a push of Outputs for `tenant`'s job `job`; how many were taken.
    pub async fn push(&self, tenant: &str, job: &str, outputs: &Value) -> Result<usize, CollectorError> {
        Self::check_name(job)?;
        let Some(outputs) = outputs.as_array() else {
            return Err(CollectorError::BadRequest("expected a JSON array of Outputs".into()));
        };
        if outputs.len() > MAX_OUTPUTS_PER_PUSH {
            return Err(CollectorError::BadRequest(format!("at most {MAX_OUTPUTS_PER_PUSH} Outputs per push")));
        }
        if outputs.is_empty() {
            return Ok(0);
        }
        let now = now_ms();
        let mut seconds: BTreeMap<i64, Tally> = BTreeMap::new();
        let mut whole = Tally::default();
        for (i, output) in outputs.iter().enumerate() {
            if !output.is_object() {
                return Err(CollectorError::BadRequest(format!("Output {i} is not a JSON object")));
            }
            if let Some(latency) = output.get("latency") {
                let (second, count, errors, h) = summary(i, output, latency)?;
                for tally in [seconds.entry(second).or_default(), &mut whole] {
                    tally.count += count;
                    tally.errors += errors;
                    tally
                        .latency
                        .add(&h)
                        .map_err(|e| CollectorError::BadRequest(format!("item {i}: latency: {e:?}")))?;
                }
                continue;
            }
            let second = match output.get("timestamp").and_then(Value::as_str) {
                Some(ts) => chrono::DateTime::parse_from_rfc3339(ts)
                    .map_err(|e| CollectorError::BadRequest(format!("Output {i}: timestamp {ts:?}: {e}")))?
                    .timestamp(),
                None => now / 1000,
            };
            let duration_us = match output.get("duration") {
                None | Some(Value::Null) => None,
                Some(d) => Some(
                    d.as_u64().ok_or_else(|| {
                        CollectorError::BadRequest(format!("Output {i}: duration must be whole nanoseconds"))
                    })? / 1000,
                ),
            };
            let error = i64::from(failed(output));
            for tally in [seconds.entry(second).or_default(), &mut whole] {
                tally.count += 1;
                tally.errors += error;
                if let Some(us) = duration_us {
                    tally.latency.saturating_record(us.max(1));
                }
            }
        }
        let mut buckets: Vec<LoadBucket> = seconds.iter().map(|(&second, t)| t.bucket(second, now)).collect();
        buckets.push(whole.bucket(WHOLE_JOB, now));
        self.store.add_load_results(tenant, job, buckets, merge).await?;
        Ok(outputs.len())
    }

    /// The tenant's jobs, the most recently pushed to first.
    pub async fn jobs(&self, tenant: &str) -> Result<Vec<JobView>, CollectorError> {
        Ok(self.store.load_jobs(tenant, MAX_JOBS).await?.iter().map(JobView::from).collect())
    }

    /// A job's totals and its seconds from `since` on (at most [`MAX_SERIES_SECONDS`]).
    pub async fn job(&self, tenant: &str, job: &str, since: i64) -> Result<(JobView, Vec<Second>), CollectorError> {
        Self::check_name(job)?;
        let found = self.store.load_job(tenant, job).await?.ok_or_else(|| CollectorError::NotFound(job.into()))?;
        let series = self.store.load_series(tenant, job, since, MAX_SERIES_SECONDS).await?;
        Ok((JobView::from(&found), series.iter().map(Second::from).collect()))
    }

    /// Forgets a job's results.
    pub async fn delete(&self, tenant: &str, job: &str) -> Result<(), CollectorError> {
        Self::check_name(job)?;
        if self.store.delete_load_job(tenant, job).await? { Ok(()) } else { Err(CollectorError::NotFound(job.into())) }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn output(ts: &str, ms: u64, status: u16) -> Value {
        json!({"sequenceID": 1, "url": "http://x/", "method": "GET", "status": status, "size": 2,
            "timestamp": ts, "duration": ms * 1_000_000, "error": null})
    }

    #[tokio::test]
    async fn pushes_from_two_agents_merge_exactly_per_second() {
        for engine in &store::testing::engines().await {
            let c = Collector::new(engine.store.clone());
            let a: Vec<_> = (1..=100).map(|ms| output("2026-12-05T10:00:00.5Z", ms, 200)).collect();
            let mut b: Vec<_> = (101..=200).map(|ms| output("2026-12-05T10:00:00.9Z", ms, 200)).collect();
            b.push(output("2026-12-05T10:00:01Z", 7, 503));
            assert_eq!(c.push("t", "smoke", &json!(a)).await.unwrap(), 100);
            assert_eq!(c.push("t", "smoke", &json!(b)).await.unwrap(), 101);
            let (job, series) = c.job("t", "smoke", 0).await.unwrap();
            assert_eq!((job.totals.count, job.totals.errors), (201, 1), "{}", engine.name);
            let t0 = 1_796_464_800;
            assert_eq!((job.first_second, job.last_second), (t0, t0 + 1));
            assert_eq!(series.len(), 2);
            // 1..=200 ms in one second: the median of both agents' Outputs, not of either.
            let first = &series[0];
            assert_eq!((first.second, first.count, first.errors), (Some(t0), 200, 0));
            assert!((first.p50_ms - 100.0).abs() < 0.2, "{first:?}");
            assert!((first.p99_ms - 198.0).abs() < 0.3 && (first.max_ms - 200.0).abs() < 0.3, "{first:?}");
            assert_eq!((series[1].count, series[1].errors), (1, 1));
            assert_eq!(c.job("t", "smoke", t0 + 1).await.unwrap().1.len(), 1, "since");
            assert!(matches!(c.job("u", "smoke", 0).await, Err(CollectorError::NotFound(_))), "tenants apart");

            // A second already summed up (an MQTT job's), merged into the same row.
            let mut h = latency_histogram();
            for us in [150_000, 250_000] {
                h.record(us).unwrap();
            }
            let item =
                json!({"second": t0 + 1, "count": 3, "errors": 1, "latency": crate::report::encode_histogram(&h)});
            assert_eq!(c.push("t", "smoke", &json!([item])).await.unwrap(), 1);
            let (job, series) = c.job("t", "smoke", t0 + 1).await.unwrap();
            assert_eq!((job.totals.count, job.totals.errors), (204, 2));
            assert_eq!((series[0].count, series[0].errors, series[0].max_ms.round()), (4, 2, 250.0));
            let wrong = [
                json!({"second": t0, "count": 1, "latency": "???"}),
                json!({"second": -5, "count": 3, "latency": crate::report::encode_histogram(&h)}),
                json!({"second": t0, "count": 1, "latency": crate::report::encode_histogram(&h)}),
            ];
            for bad in wrong {
                assert!(
                    matches!(c.push("t", "smoke", &json!([bad])).await, Err(CollectorError::BadRequest(_))),
                    "{bad}"
                );
            }

            for bad in [json!({"a": 1}), json!([1]), json!([{"timestamp": "yesterday"}]), json!([{"duration": -1}])] {
                assert!(matches!(c.push("t", "smoke", &bad).await, Err(CollectorError::BadRequest(_))), "{bad}");
            }
            assert!(matches!(c.push("t", "../x", &json!([])).await, Err(CollectorError::BadRequest(_))));
            let many = json!(vec![json!({}); MAX_OUTPUTS_PER_PUSH + 1]);
            assert!(matches!(c.push("t", "smoke", &many).await, Err(CollectorError::BadRequest(_))));
            assert_eq!(c.jobs("t").await.unwrap()[0].totals.count, 204, "bad pushes left nothing");

            c.delete("t", "smoke").await.unwrap();
            assert!(c.jobs("t").await.unwrap().is_empty());
        }
    }
}
