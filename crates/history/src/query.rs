//! dojot's history query (`history@v0.5.2:history/api/models.py`), parameter for parameter.
//!
//! - `attr`: one or more labels (comma list or repeated). One label → a bare array, 404
//!   when empty; several or none → an object keyed by label (empty lists allowed).
//! - `firstN` (ascending) beats `lastN` (descending) beats `hLimit` (descending); with none
//!   of them every reading is returned, newest first, up to the configured maximum.
//! - `dateFrom` / `dateTo`: inclusive ISO 8601 bounds.
//! - Ingot's addition, `bucket` (`90s`, `5m`, `1h`, `1d`, or seconds) with `agg` (`avg`, the
//!   default, `min`, `max`, `sum`, `count`): one point per bucket that has readings,
//!   buckets aligned on the epoch, `ts` the bucket's start, `metadata` saying what was
//!   summed up (`{"bucket": "60s", "agg": "avg", "count": n}`); avg, min, max and sum
//!   take the numeric values only. The limits above then count buckets. A day of one
//!   reading a second is 1,440 points by the minute instead of 86,400.
//!
//! One answer holds at most the configured maximum of points over all its attributes
//! (each of N attributes gets at most maximum / N): a device with many labels must not
//! turn one request into labels × maximum rows.
//!
//! [`range`] is the console's query (charts over a time range, the CSV report): typed
//! points, oldest first, under the same bound, saying whether older ones were left out.

use model::time::{format_dojot, from_ms, parse_iso};
use serde_json::{Map, Value, json};
use store::history::{Aggregate, Bucket, HistoryQuery, Point};
use store::prelude::*;

use crate::HistoryError;

/// Parsed query parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryParams {
    pub attrs: Vec<String>,
    pub first_n: Option<u32>,
    pub last_n: Option<u32>,
    pub h_limit: Option<u32>,
    pub date_from: Option<i64>,
    pub date_to: Option<i64>,
    /// Summed up in buckets of this many ms, with this aggregate.
    pub bucket: Option<(i64, Aggregate)>,
}

/// The longest bucket: a year.
const MAX_BUCKET_MS: i64 = 366 * 24 * 3600 * 1000;

impl HistoryParams {
    /// From raw `(key, value)` pairs; non-integer limits and bad dates are 400s.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<Self, HistoryError> {
        let mut p = Self::default();
        let (mut bucket, mut agg) = (None, None);
        for (k, v) in pairs {
            match k.as_str() {
                "attr" => p.attrs.extend(v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from)),
                "firstN" => p.first_n = Some(int(k, v)?),
                "lastN" => p.last_n = Some(int(k, v)?),
                "hLimit" => p.h_limit = Some(int(k, v)?),
                "dateFrom" => p.date_from = Some(date(k, v)?),
                "dateTo" => p.date_to = Some(date(k, v)?),
                "bucket" => bucket = Some(bucket_ms(v)?),
                "agg" => agg = Some(aggregate(v)?),
                _ => {}
            }
        }
        p.bucket = match (bucket, agg) {
            (Some(ms), agg) => Some((ms, agg.unwrap_or(Aggregate::Avg))),
            (None, Some(_)) => {
                return Err(HistoryError::BadRequest("agg needs a bucket, e.g. bucket=1m&agg=avg".into()));
            }
            (None, None) => None,
        };
        p.attrs.dedup();
        Ok(p)
    }

    /// (newest first, limit) after dojot's precedence, capped at `max_points`.
    fn order_and_limit(&self, max_points: u32) -> (bool, u32) {
        let (newest_first, limit) = match (self.first_n, self.last_n, self.h_limit) {
            (Some(n), _, _) => (false, n),
            (None, Some(n), _) => (true, n),
            (None, None, Some(n)) => (true, n),
            (None, None, None) => (true, max_points),
        };
        (newest_first, limit.min(max_points))
    }
}

/// The console's history query: some attributes of a device between two times.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RangeQuery {
    /// Labels; none means every attribute of the device.
    pub attrs: Vec<String>,
    /// Inclusive bounds, ms since the epoch.
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// Most points in the answer, over all attributes (never above the service's maximum).
    pub limit: Option<u32>,
}

impl RangeQuery {
    /// From `attr` (comma list or repeated), `from` and `to` (ISO 8601) and `limit`;
    /// other keys are ignored. A `to` before `from`, a bad date or limit is a 400.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<Self, HistoryError> {
        let mut q = Self::default();
        for (k, v) in pairs {
            match k.as_str() {
                "attr" => q.attrs.extend(v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from)),
                "from" if !v.trim().is_empty() => q.from_ms = Some(date(k, v)?),
                "to" if !v.trim().is_empty() => q.to_ms = Some(date(k, v)?),
                "limit" => q.limit = Some(int(k, v)?),
                _ => {}
            }
        }
        if let (Some(from), Some(to)) = (q.from_ms, q.to_ms)
            && to < from
        {
            return Err(HistoryError::BadRequest("the end of the range (to) is before its start (from)".into()));
        }
        q.attrs.dedup();
        Ok(q)
    }
}

/// What [`range`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    /// Oldest first; readings of one millisecond in the order they were written.
    pub points: Vec<Point>,
    /// Some attribute had more readings in the range than its share of the bound: the
    /// oldest of them were left out.
    pub truncated: bool,
}

/// A bucket length: `90s`, `5m`, `1h`, `1d`, or a number of seconds; 1 s to 366 days.
fn bucket_ms(v: &str) -> Result<i64, HistoryError> {
    let v = v.trim();
    let (digits, unit_ms) = match v.char_indices().last() {
        Some((i, 's')) => (&v[..i], 1_000),
        Some((i, 'm')) => (&v[..i], 60_000),
        Some((i, 'h')) => (&v[..i], 3_600_000),
        Some((i, 'd')) => (&v[..i], 86_400_000),
        _ => (v, 1_000),
    };
    digits
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_ms))
        .filter(|ms| (1_000..=MAX_BUCKET_MS).contains(ms))
        .ok_or_else(|| {
            HistoryError::BadRequest(
                "bucket must be a whole number of seconds (90s), minutes (5m), hours (1h) or days (1d), from 1s to 366d"
                    .into(),
            )
        })
}

/// The aggregates by their names in `agg=`.
const AGGREGATES: [(&str, Aggregate); 5] = [
    ("avg", Aggregate::Avg),
    ("min", Aggregate::Min),
    ("max", Aggregate::Max),
    ("sum", Aggregate::Sum),
    ("count", Aggregate::Count),
];

fn aggregate(v: &str) -> Result<Aggregate, HistoryError> {
    AGGREGATES
        .iter()
        .find(|(name, _)| *name == v.trim())
        .map(|&(_, a)| a)
        .ok_or_else(|| HistoryError::BadRequest("agg must be avg, min, max, sum or count".into()))
}

fn aggregate_name(a: Aggregate) -> &'static str {
    AGGREGATES.iter().find(|(_, x)| *x == a).map_or("avg", |(name, _)| name)
}

fn int(k: &str, v: &str) -> Result<u32, HistoryError> {
    v.trim().parse().map_err(|_| HistoryError::BadRequest(format!("{k} must be a non-negative integer")))
}

fn date(k: &str, v: &str) -> Result<i64, HistoryError> {
    parse_iso(v.trim())
        .map(|t| t.timestamp_millis())
        .ok_or_else(|| HistoryError::BadRequest(format!("{k} must be an ISO 8601 date, e.g. 2024-01-31T12:00:00Z")))
}

/// What a history query found.
#[derive(Debug, Clone, PartialEq)]
pub enum HistoryResult {
    /// One attribute was asked for: a bare array.
    Single(Value),
    /// One attribute, no data: dojot's 404 "Attr not found".
    AttrNotFound,
    /// Several (or all) attributes: `{"label": [...]}`.
    Many(Value),
}

fn point_json(device_id: &str, p: Point) -> Value {
    json!({"device_id": device_id, "ts": format_dojot(&from_ms(p.ts_ms)), "value": p.value, "attr": p.attr, "metadata": {}})
}

fn bucket_json(device_id: &str, attr: &str, (bucket_ms, agg): (i64, Aggregate), b: Bucket) -> Value {
    json!({
        "device_id": device_id, "ts": format_dojot(&from_ms(b.start_ms)), "value": b.value, "attr": attr,
        "metadata": {"bucket": format!("{}s", bucket_ms / 1000), "agg": aggregate_name(agg), "count": b.count},
    })
}

/// Runs a history query. `all_labels` are the labels used when `attr` is absent (the
/// device's data attributes plus any label it has history for).
pub async fn history(
    store: &SharedStore,
    tenant: &str,
    device_id: &str,
    params: &HistoryParams,
    all_labels: Vec<String>,
    max_points: u32,
) -> Result<HistoryResult, HistoryError> {
    let (newest_first, limit) = params.order_and_limit(max_points);
    let single = params.attrs.len() == 1;
    let labels = if params.attrs.is_empty() { all_labels } else { params.attrs.clone() };
    let limit = limit.min(share(max_points, labels.len())?);
    let mut out = Map::new();
    for attr in labels {
        let q = HistoryQuery {
            tenant: tenant.to_string(),
            device_id: device_id.to_string(),
            attr: attr.clone(),
            from_ms: params.date_from,
            to_ms: params.date_to,
            newest_first,
            limit: Some(limit),
        };
        let points: Vec<Value> = match params.bucket {
            Some(bucket) => store
                .history_buckets(q, bucket.0, bucket.1)
                .await?
                .into_iter()
                .map(|b| bucket_json(device_id, &attr, bucket, b))
                .collect(),
            None => store.history(q).await?.into_iter().map(|p| point_json(device_id, p)).collect(),
        };
        if single {
            return Ok(if points.is_empty() {
                HistoryResult::AttrNotFound
            } else {
                HistoryResult::Single(json!(points))
            });
        }
        out.insert(attr, Value::Array(points));
    }
    Ok(HistoryResult::Many(Value::Object(out)))
}

/// Each attribute's share of an answer of at most `max_points` over `labels` attributes:
/// the bound is for the whole answer, not per attribute.
fn share(max_points: u32, labels: usize) -> Result<u32, HistoryError> {
    match u32::try_from(labels) {
        Ok(n) if n <= max_points.max(1) => Ok(max_points / n.max(1)),
        _ => Err(HistoryError::BadRequest(format!(
            "at most {max_points} attributes in one query; ask for fewer with attr="
        ))),
    }
}

/// The console's query (see [`RangeQuery`]): the newest readings of each attribute in
/// the range, returned oldest first. Each attribute gets its share of `max_points` (or
/// of the query's smaller limit; at least one reading), so the answer holds at most
/// `max_points`. `all_labels` are used when the query names no attribute.
pub async fn range(
    store: &SharedStore,
    tenant: &str,
    device_id: &str,
    q: &RangeQuery,
    all_labels: Vec<String>,
    max_points: u32,
) -> Result<Range, HistoryError> {
    let labels = if q.attrs.is_empty() { all_labels } else { q.attrs.clone() };
    let max = q.limit.map_or(max_points, |l| l.min(max_points));
    let per_attr = share(max, labels.len())?.max(1);
    let (mut points, mut truncated) = (Vec::new(), false);
    for attr in labels {
        let query = HistoryQuery {
            tenant: tenant.to_string(),
            device_id: device_id.to_string(),
            attr,
            from_ms: q.from_ms,
            to_ms: q.to_ms,
            newest_first: true,
            // One more than the share tells whether some were left out.
            limit: Some(per_attr + 1),
        };
        let mut found = store.history(query).await?;
        if found.len() > per_attr as usize {
            found.truncate(per_attr as usize);
            truncated = true;
        }
        points.extend(found.into_iter().rev());
    }
    // Stable: readings of one millisecond keep their written order within an attribute.
    points.sort_by_key(|p| p.ts_ms);
    Ok(Range { points, truncated })
}

/// The newest value of each attribute of a device, as an array of history points.
pub async fn latest(store: &SharedStore, tenant: &str, device_id: &str) -> Result<Value, HistoryError> {
    let points = store.latest(tenant, device_id).await?;
    Ok(Value::Array(points.into_iter().map(|p| point_json(device_id, p)).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use model::DeviceData;
    use std::sync::Arc;

    fn pairs(s: &[(&str, &str)]) -> Vec<(String, String)> {
        s.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn precedence_and_errors() {
        let p = HistoryParams::from_pairs(&pairs(&[("lastN", "3"), ("firstN", "2"), ("attr", "a,b"), ("attr", "c")]))
            .unwrap();
        assert_eq!(p.attrs, ["a", "b", "c"]);
        assert_eq!(p.order_and_limit(100), (false, 2));
        let p = HistoryParams::from_pairs(&pairs(&[("hLimit", "5"), ("lastN", "3")])).unwrap();
        assert_eq!(p.order_and_limit(100), (true, 3));
        assert_eq!(HistoryParams::default().order_and_limit(100), (true, 100));
        for (k, v) in [("lastN", "x"), ("firstN", "-1"), ("hLimit", "1.5"), ("dateFrom", "yesterday")] {
            assert!(HistoryParams::from_pairs(&pairs(&[(k, v)])).is_err(), "{k}={v}");
        }
    }

    #[tokio::test]
    async fn shapes() {
        for engine in store::testing::engines().await {
            let store = engine.store.clone();
            let w = store.clone();
            let batch = [10.6, 36.5, 15.6]
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let mut attrs = Map::new();
                    attrs.insert("temperature".into(), json!(t));
                    let ts = chrono::Utc.timestamp_millis_opt(1_000 * (i as i64 + 1)).unwrap();
                    Arc::new(DeviceData::new("admin", "0998", ts, attrs))
                })
                .collect();
            w.write_history(batch).await.unwrap();
            let p = HistoryParams::from_pairs(&pairs(&[("lastN", "2"), ("attr", "temperature")])).unwrap();
            let HistoryResult::Single(v) = history(&store, "admin", "0998", &p, vec![], 1000).await.unwrap() else {
                panic!()
            };
            assert_eq!(
                v,
                json!([
                    {"device_id": "0998", "ts": "1970-01-01T00:00:03.000000Z", "value": 15.6, "attr": "temperature", "metadata": {}},
                    {"device_id": "0998", "ts": "1970-01-01T00:00:02.000000Z", "value": 36.5, "attr": "temperature", "metadata": {}}
                ])
            );
            let p = HistoryParams::from_pairs(&pairs(&[("attr", "humidity")])).unwrap();
            assert_eq!(history(&store, "admin", "0998", &p, vec![], 1000).await.unwrap(), HistoryResult::AttrNotFound);
            let p = HistoryParams::from_pairs(&pairs(&[("firstN", "1")])).unwrap();
            let HistoryResult::Many(v) =
                history(&store, "admin", "0998", &p, vec!["temperature".into(), "fan".into()], 1000).await.unwrap()
            else {
                panic!()
            };
            assert_eq!(v["temperature"][0]["value"], json!(10.6));
            assert_eq!(v["fan"], json!([]));
            // Tenant isolation: same device id, other tenant.
            let p = HistoryParams::from_pairs(&pairs(&[("attr", "temperature")])).unwrap();
            assert_eq!(history(&store, "evil", "0998", &p, vec![], 1000).await.unwrap(), HistoryResult::AttrNotFound);
            assert_eq!(latest(&store, "admin", "0998").await.unwrap()[0]["value"], json!(15.6));

            // Buckets of 2 s: (10.6) at 0 s, (36.5, 15.6) at 2 s; newest first by default.
            let p = HistoryParams::from_pairs(&pairs(&[("attr", "temperature"), ("bucket", "2s"), ("agg", "max")]))
                .unwrap();
            let HistoryResult::Single(v) = history(&store, "admin", "0998", &p, vec![], 1000).await.unwrap() else {
                panic!()
            };
            let meta = |n| json!({"bucket": "2s", "agg": "max", "count": n});
            assert_eq!(
                v,
                json!([
                    {"device_id": "0998", "ts": "1970-01-01T00:00:02.000000Z", "value": 36.5, "attr": "temperature", "metadata": meta(2)},
                    {"device_id": "0998", "ts": "1970-01-01T00:00:00.000000Z", "value": 10.6, "attr": "temperature", "metadata": meta(1)}
                ]),
                "{}",
                engine.name
            );
            let p = HistoryParams::from_pairs(&pairs(&[("attr", "temperature"), ("bucket", "1m"), ("firstN", "5")]))
                .unwrap();
            let HistoryResult::Single(v) = history(&store, "admin", "0998", &p, vec![], 1000).await.unwrap() else {
                panic!()
            };
            let avg = v[0]["value"].as_f64().unwrap();
            assert!((avg - (10.6 + 36.5 + 15.6) / 3.0).abs() < 1e-9, "{}: {v}", engine.name);
            assert_eq!(v[0]["metadata"], json!({"bucket": "60s", "agg": "avg", "count": 3}));
        }
    }

    #[test]
    fn buckets_and_their_errors() {
        let bucket = |v: &str| HistoryParams::from_pairs(&pairs(&[("bucket", v)])).map(|p| p.bucket);
        assert_eq!(bucket("90s").unwrap(), Some((90_000, Aggregate::Avg)));
        assert_eq!(bucket("5m").unwrap(), Some((300_000, Aggregate::Avg)));
        assert_eq!(bucket(" 1h").unwrap(), Some((3_600_000, Aggregate::Avg)));
        assert_eq!(bucket("1d").unwrap(), Some((86_400_000, Aggregate::Avg)));
        assert_eq!(bucket("30").unwrap(), Some((30_000, Aggregate::Avg)));
        for bad in ["0s", "1.5m", "abc", "367d", "", "-5s", "99999999999999999d"] {
            let err = bucket(bad).unwrap_err();
            assert!(err.to_string().contains("bucket must be"), "{bad}: {err}");
        }
        let p = HistoryParams::from_pairs(&pairs(&[("agg", "count"), ("bucket", "1m")])).unwrap();
        assert_eq!(p.bucket, Some((60_000, Aggregate::Count)));
        let err = HistoryParams::from_pairs(&pairs(&[("agg", "avg")])).unwrap_err();
        assert!(err.to_string().contains("agg needs a bucket"), "{err}");
        let err = HistoryParams::from_pairs(&pairs(&[("agg", "median"), ("bucket", "1m")])).unwrap_err();
        assert!(err.to_string().contains("agg must be"), "{err}");
    }

    #[test]
    fn range_queries_parse_and_refuse_a_backwards_range() {
        let q = RangeQuery::from_pairs(&pairs(&[
            ("attr", "a,b"),
            ("attr", "c"),
            ("from", "2024-01-01T00:00:00Z"),
            ("to", "2024-01-01T00:00:01.5Z"),
            ("limit", "7"),
            ("ignored", "x"),
        ]))
        .unwrap();
        assert_eq!(q.attrs, ["a", "b", "c"]);
        assert_eq!((q.from_ms, q.to_ms, q.limit), (Some(1_704_067_200_000), Some(1_704_067_201_500), Some(7)));
        let empty = RangeQuery::from_pairs(&pairs(&[("from", ""), ("to", " ")])).unwrap();
        assert_eq!((empty.from_ms, empty.to_ms), (None, None), "empty inputs of a form mean no bound");
        for bad in [&[("from", "2024-01-02"), ("to", "2024-01-01")][..], &[("from", "yesterday")], &[("limit", "-3")]] {
            assert!(RangeQuery::from_pairs(&pairs(bad)).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_range_is_oldest_first_bounded_and_says_when_it_left_readings_out() {
        for engine in store::testing::engines().await {
            let store = engine.store.clone();
            let batch = (0..10)
                .map(|t| {
                    let mut attrs = Map::new();
                    attrs.insert("a".into(), json!(t));
                    if t % 2 == 0 {
                        attrs.insert("b".into(), json!(format!("b{t}")));
                    }
                    let ts = chrono::Utc.timestamp_millis_opt(1_000 * t).unwrap();
                    Arc::new(DeviceData::new("t", "d", ts, attrs))
                })
                .collect();
            store.write_history(batch).await.unwrap();
            let labels = vec!["a".to_string(), "b".to_string()];
            let all = range(&store, "t", "d", &RangeQuery::default(), labels.clone(), 100).await.unwrap();
            assert!(!all.truncated, "{}", engine.name);
            assert_eq!(all.points.len(), 15);
            assert!(all.points.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms), "oldest first");
            assert_eq!((all.points[0].attr.as_str(), all.points[1].attr.as_str()), ("a", "b"), "ties keep label order");

            // From 2 s to 7 s inclusive, at most 4 points over two attributes: the newest 2 of each.
            let q = RangeQuery { from_ms: Some(2_000), to_ms: Some(7_000), limit: Some(4), ..RangeQuery::default() };
            let r = range(&store, "t", "d", &q, labels.clone(), 100).await.unwrap();
            let got: Vec<(String, i64)> = r.points.iter().map(|p| (p.attr.clone(), p.ts_ms)).collect();
            assert_eq!(
                got,
                [("b".into(), 4_000), ("a".into(), 6_000), ("b".into(), 6_000), ("a".into(), 7_000)],
                "{}",
                engine.name
            );
            assert!(r.truncated);

            // The service's maximum wins over a larger limit; named attributes only.
            let q = RangeQuery { attrs: vec!["a".into()], limit: Some(1_000), ..RangeQuery::default() };
            let r = range(&store, "t", "d", &q, labels.clone(), 3).await.unwrap();
            assert_eq!(r.points.iter().map(|p| p.value.clone()).collect::<Vec<_>>(), [json!(7), json!(8), json!(9)]);
            assert!(r.truncated);
            // Exactly as many as the share: nothing left out.
            let q = RangeQuery { attrs: vec!["b".into()], limit: Some(5), ..RangeQuery::default() };
            assert!(!range(&store, "t", "d", &q, vec![], 100).await.unwrap().truncated);
            // Tenant isolation.
            assert!(range(&store, "other", "d", &RangeQuery::default(), labels, 100).await.unwrap().points.is_empty());
        }
    }

    #[tokio::test]
    async fn one_answer_is_bounded_over_all_attributes() {
        for engine in store::testing::engines().await {
            let store = engine.store.clone();
            let w = store.clone();
            let labels: Vec<String> = (0..10).map(|i| format!("a{i}")).collect();
            let batch = (0..20)
                .map(|t| {
                    let attrs = labels.iter().map(|l| (l.clone(), json!(t))).collect();
                    let ts = chrono::Utc.timestamp_millis_opt(1_000 * t).unwrap();
                    Arc::new(DeviceData::new("t", "d", ts, attrs))
                })
                .collect();
            w.write_history(batch).await.unwrap();
            let HistoryResult::Many(v) =
                history(&store, "t", "d", &HistoryParams::default(), labels.clone(), 50).await.unwrap()
            else {
                panic!()
            };
            let total: usize = v.as_object().unwrap().values().map(|a| a.as_array().unwrap().len()).sum();
            assert_eq!(total, 50, "10 attributes × 5 points, not 10 × 50");
            let p = HistoryParams::from_pairs(&pairs(&[("attr", "a1")])).unwrap();
            let HistoryResult::Single(v) = history(&store, "t", "d", &p, vec![], 50).await.unwrap() else { panic!() };
            assert_eq!(v.as_array().unwrap().len(), 20, "one attribute gets the whole maximum");
            assert!(history(&store, "t", "d", &HistoryParams::default(), labels, 5).await.is_err());
        }
    }
}
