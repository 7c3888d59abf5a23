//! The result of a run and its two renderings: a text report and one Markdown table row.

use std::fmt::Write as _;
use std::time::Duration;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Latency {
    pub fn from_histogram(h: &hdrhistogram::Histogram<u64>) -> Self {
        Self {
            count: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }

    fn ms(us: u64) -> String {
        format!("{:.2}", us as f64 / 1000.0)
    }

    /// `p50 / p99 / max` in ms, or "—" without samples.
    pub fn short(&self) -> String {
        if self.count == 0 {
            return "—".into();
        }
        format!("{} / {} / {}", Self::ms(self.p50_us), Self::ms(self.p99_us), Self::ms(self.max_us))
    }

    fn long(&self) -> String {
        if self.count == 0 {
            return "no samples".into();
        }
        format!(
            "p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms ({} samples)",
            Self::ms(self.p50_us),
            Self::ms(self.p99_us),
            Self::ms(self.p999_us),
            Self::ms(self.max_us),
            self.count
        )
    }
}

/// Server (and client) resources over the measured phase.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Resources {
    /// Server VmRSS before any MQTT connection was opened (after provisioning).
    pub server_rss_before: Option<u64>,
    /// Largest server VmRSS sampled (every second) while connected.
    pub server_rss_max_sampled: Option<u64>,
    /// Server VmHWM (peak RSS since it started) at the end of the run.
    pub server_hwm: Option<u64>,
    /// Server CPU seconds / wall seconds over the publishing (or holding) phase.
    pub server_cores: Option<f64>,
    /// The same for this load generator.
    pub client_cores: Option<f64>,
    /// This load generator's VmHWM.
    pub client_hwm: Option<u64>,
}

/// Everything a run measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub label: String,
    pub devices: usize,
    /// Target rate (None: as fast as acknowledged).
    pub rate: Option<f64>,
    pub idle: bool,
    pub inflight: u16,
    pub duration: Duration,
    pub connected: usize,
    pub connect_errors: usize,
    pub connect_time: Duration,
    /// Connections lost during the run.
    pub connection_errors: usize,
    pub published: u64,
    pub acked: u64,
    /// Published but never acknowledged (connection lost, or drain timeout).
    pub unacked: u64,
    /// From the first publish to the last PUBACK.
    pub ack_window: Duration,
    /// From the first publish to the moment the last device's last acknowledged reading
    /// was seen in history.
    pub e2e_window: Duration,
    /// How long the final history sweep took.
    pub sweep_time: Duration,
    /// Devices whose last acknowledged reading never showed up in history.
    pub not_visible: usize,
    /// HTTP errors while sampling or sweeping.
    pub http_errors: u64,
    /// publish written → PUBACK.
    pub puback: Latency,
    /// due time → PUBACK (fixed-rate runs: includes any wait behind the schedule).
    pub puback_from_due: Latency,
    /// publish → seen in history (sampled).
    pub visible: Latency,
    /// Each second's publish→PUBACK p99 (µs) while publishing, as the progress line showed
    /// it: a whole run's p99 can hide single slow seconds.
    pub puback_p99_by_second: Vec<u64>,
    pub resources: Resources,
    /// Against a plain broker (`--plain-broker`): no history, end to end is the PUBACKs.
    pub plain_broker: bool,
}

/// A histogram's bytes: hdrhistogram's V2 encoding (every bucket's count, so histograms
/// decoded and added elsewhere are merged exactly).
pub fn histogram_bytes(h: &hdrhistogram::Histogram<u64>) -> Vec<u8> {
    use hdrhistogram::serialization::{Serializer as _, V2Serializer};
    let mut bytes = Vec::new();
    V2Serializer::new().serialize(h, &mut bytes).expect("a histogram serializes into memory");
    bytes
}

/// The inverse of [`histogram_bytes`].
pub fn histogram_from_bytes(bytes: &[u8]) -> Result<hdrhistogram::Histogram<u64>, String> {
    hdrhistogram::serialization::Deserializer::new().deserialize(&mut &*bytes).map_err(|e| format!("histogram: {e:?}"))
}

/// [`histogram_bytes`] in base64, for a job's result (JSON).
pub fn encode_histogram(h: &hdrhistogram::Histogram<u64>) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(histogram_bytes(h))
}

/// The inverse of [`encode_histogram`].
pub fn decode_histogram(text: &str) -> Result<hdrhistogram::Histogram<u64>, String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(text).map_err(|e| format!("histogram: {e}"))?;
    histogram_from_bytes(&bytes)
}

/// 1 µs to 10 min, 3 significant digits: every latency histogram of a run.
pub fn latency_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / (1024.0 * 1024.0))
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "—".into())
}

fn per_sec(n: u64, window: Duration) -> f64 {
    if window.is_zero() { 0.0 } else { n as f64 / window.as_secs_f64() }
}

impl Report {
    /// Acknowledged messages/s from the first publish to the last PUBACK.
    pub fn acked_rate(&self) -> f64 {
        per_sec(self.acked, self.ack_window)
    }

    /// Acknowledged messages/s from the first publish to the last reading visible in history.
    pub fn e2e_rate(&self) -> f64 {
        per_sec(self.acked, self.e2e_window)
    }

    /// Server memory per held connection: (RSS while connected − RSS before) / connections.
    pub fn bytes_per_connection(&self) -> Option<u64> {
        let (before, during) = (self.resources.server_rss_before?, self.resources.server_rss_max_sampled?);
        (self.connected > 0).then(|| during.saturating_sub(before) / self.connected as u64)
    }

    pub fn errors(&self) -> u64 {
        (self.connect_errors + self.connection_errors + self.not_visible) as u64 + self.unacked + self.http_errors
    }

    /// The seconds' PUBACK p99s summed up: median, worst, how many over 20 and 100 ms.
    pub fn seconds_summary(&self) -> Option<String> {
        let mut p99s = self.puback_p99_by_second.clone();
        if p99s.is_empty() {
            return None;
        }
        p99s.sort_unstable();
        let ms = |us: u64| us as f64 / 1000.0;
        let over = |limit_ms: u64| p99s.iter().filter(|&&us| us > limit_ms * 1000).count();
        Some(format!(
            "median {:.2} ms, worst {:.2} ms; over 20 ms in {} of {} s, over 100 ms in {}",
            ms(p99s[p99s.len() / 2]),
            ms(p99s[p99s.len() - 1]),
            over(20),
            p99s.len(),
            over(100)
        ))
    }

    fn mode(&self) -> String {
        match (self.idle, self.rate) {
            (true, _) => "idle".into(),
            (false, Some(r)) => format!("{r:.0} msg/s"),
            (false, None) => "max".into(),
        }
    }

    /// The human-readable report.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let r = &self.resources;
        let _ = writeln!(s, "== ingot load mqtt: {} ==", self.label);
        let _ = writeln!(
            s,
            "devices/connections {}  mode {}  duration {:.1}s  QoS 1, MQTT 3.1.1, inflight {}",
            self.devices,
            self.mode(),
            self.duration.as_secs_f64(),
            self.inflight
        );
        let _ = writeln!(
            s,
            "connected {} in {:.2}s ({} failed, {} lost later)",
            self.connected,
            self.connect_time.as_secs_f64(),
            self.connect_errors,
            self.connection_errors
        );
        if !self.idle {
            let _ = writeln!(
                s,
                "published {}  acknowledged {}  unacknowledged {}",
                self.published, self.acked, self.unacked
            );
            let _ = writeln!(
                s,
                "acknowledged msg/s   {:>10.0}  (first publish → last PUBACK, {:.2}s)",
                self.acked_rate(),
                self.ack_window.as_secs_f64()
            );
            if self.plain_broker {
                let _ = writeln!(
                    s,
                    "end-to-end msg/s     {:>10.0}  (a plain broker: nothing stored, the PUBACKs)",
                    self.e2e_rate()
                );
            } else {
                let _ = writeln!(
                    s,
                    "end-to-end msg/s     {:>10.0}  (first publish → last reading seen in history, {:.2}s; final sweep {:.2}s, {} devices not visible)",
                    self.e2e_rate(),
                    self.e2e_window.as_secs_f64(),
                    self.sweep_time.as_secs_f64(),
                    self.not_visible
                );
            }
            let _ = writeln!(s, "publish→PUBACK       {}", self.puback.long());
            if let Some(seconds) = self.seconds_summary() {
                let _ = writeln!(s, "PUBACK p99 by second {seconds}");
            }
            if self.rate.is_some() {
                let _ = writeln!(s, "due time→PUBACK      {}", self.puback_from_due.long());
            }
            let _ = writeln!(s, "publish→visible      {} (sampled)", self.visible.long());
            let _ = writeln!(s, "HTTP errors          {}", self.http_errors);
        }
        let _ = writeln!(
            s,
            "server RSS: before connecting {}, max sampled while connected {}, peak (VmHWM) {}",
            opt(r.server_rss_before, mb),
            opt(r.server_rss_max_sampled, mb),
            opt(r.server_hwm, mb)
        );
        if self.idle {
            let _ = writeln!(
                s,
                "server memory per idle connection: {}",
                opt(self.bytes_per_connection(), |b| format!("{:.1} KB", b as f64 / 1024.0))
            );
        }
        let _ = writeln!(
            s,
            "CPU (cores busy, of {}): server {}, load generator {}; load generator peak RSS {}",
            std::thread::available_parallelism().map_or(0, usize::from),
            opt(r.server_cores, |c| format!("{c:.2}")),
            opt(r.client_cores, |c| format!("{c:.2}")),
            opt(r.client_hwm, mb)
        );
        s
    }

    pub const MARKDOWN_HEADER: &str = "| scenario | conns | mode | acked msg/s | end-to-end msg/s | PUBACK p50 / p99 / max (ms) | publish→visible p50 / p99 / max (ms, sampled) | server peak RSS | RSS per conn | CPU server / client (cores) | errors |\n|---|---|---|---|---|---|---|---|---|---|---|";

    /// One row under [`Report::MARKDOWN_HEADER`].
    pub fn markdown_row(&self) -> String {
        let r = &self.resources;
        let dash = || "—".to_string();
        let (acked, e2e, puback, visible) = if self.idle {
            (dash(), dash(), dash(), dash())
        } else {
            (
                format!("{:.0}", self.acked_rate()),
                format!("{:.0}", self.e2e_rate()),
                self.puback.short(),
                format!("{} (n={})", self.visible.short(), self.visible.count),
            )
        };
        let per_conn = if self.idle {
            opt(self.bytes_per_connection(), |b| format!("{:.1} KB", b as f64 / 1024.0))
        } else {
            dash()
        };
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} |",
            self.label,
            self.connected,
            self.mode(),
            acked,
            e2e,
            puback,
            visible,
            opt(r.server_hwm, mb),
            per_conn,
            opt(r.server_cores, |c| format!("{c:.2}")),
            opt(r.client_cores, |c| format!("{c:.2}")),
            self.errors()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report {
            label: "max-200".into(),
            devices: 200,
            rate: None,
            inflight: 4,
            duration: Duration::from_secs(15),
            connected: 200,
            published: 30_000,
            acked: 30_000,
            ack_window: Duration::from_secs(15),
            e2e_window: Duration::from_secs(20),
            puback: Latency { count: 30_000, p50_us: 1_500, p99_us: 12_340, p999_us: 20_000, max_us: 31_000 },
            visible: Latency { count: 100, p50_us: 2_000, p99_us: 15_000, p999_us: 15_000, max_us: 15_000 },
            resources: Resources {
                server_hwm: Some(50 * 1024 * 1024),
                server_cores: Some(1.2),
                client_cores: Some(0.75),
                ..Resources::default()
            },
            ..Report::default()
        }
    }

    #[test]
    fn histograms_survive_encoding_and_merge_exactly() {
        let (mut a, mut b, mut both) = (latency_histogram(), latency_histogram(), latency_histogram());
        for v in [1, 7, 250, 1_000, 33_333, 1_000_000] {
            a.record(v).unwrap();
            both.record(v).unwrap();
        }
        for v in [3, 250, 999_999, 5_000_000] {
            b.record_n(v, 3).unwrap();
            both.record_n(v, 3).unwrap();
        }
        let mut merged = decode_histogram(&encode_histogram(&a)).unwrap();
        merged.add(decode_histogram(&encode_histogram(&b)).unwrap()).unwrap();
        assert_eq!(merged, both);
        assert_eq!(merged.len(), 18);
        assert!(decode_histogram("not base64!").is_err());
        assert!(decode_histogram("aGVsbG8=").is_err());
    }

    #[test]
    fn rates_and_markdown_row() {
        let r = sample();
        assert_eq!(r.acked_rate(), 2000.0);
        assert_eq!(r.e2e_rate(), 1500.0);
        assert_eq!(
            r.markdown_row(),
            "| max-200 | 200 | max | 2000 | 1500 | 1.50 / 12.34 / 31.00 | 2.00 / 15.00 / 15.00 (n=100) | 50.0 MB | — | 1.20 / 0.75 | 0 |"
        );
        let columns = |s: &str| s.matches('|').count();
        assert_eq!(columns(&r.markdown_row()), columns(Report::MARKDOWN_HEADER.lines().next().unwrap()));
        assert!(r.text().contains("end-to-end msg/s           1500"));
        assert!(!r.text().contains("by second"), "no seconds, no line");
    }

    #[test]
    fn single_slow_seconds_are_reported() {
        let r = Report { puback_p99_by_second: vec![150_000, 1_000, 25_000, 5_000, 20_000], ..sample() };
        assert!(
            r.text().contains(
                "PUBACK p99 by second median 20.00 ms, worst 150.00 ms; over 20 ms in 2 of 5 s, over 100 ms in 1\n"
            ),
            "{}",
            r.text()
        );
    }

    #[test]
    fn idle_row_reports_memory_per_connection() {
        let r = Report {
            label: "idle-10k".into(),
            idle: true,
            connected: 10_000,
            connect_errors: 2,
            resources: Resources {
                server_rss_before: Some(20 * 1024 * 1024),
                server_rss_max_sampled: Some(20 * 1024 * 1024 + 10_000 * 8 * 1024),
                server_hwm: Some(120 * 1024 * 1024),
                ..Resources::default()
            },
            ..Report::default()
        };
        assert_eq!(r.bytes_per_connection(), Some(8 * 1024));
        assert_eq!(r.markdown_row(), "| idle-10k | 10000 | idle | — | — | — | — | 120.0 MB | 8.0 KB | — / — | 2 |");
        assert!(r.text().contains("per idle connection: 8.0 KB"));
    }
}
