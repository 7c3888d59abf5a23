//! Message counters: lifetime totals and a sliding window of one-second buckets.
//!
//! All counters live behind one mutex so that a report is a consistent snapshot
//! (`msg_total == msg_req + msg_ack + msg_nak` always holds). The relay adds a whole
//! chunk's [`Tally`] at once, so the lock is taken once per read, not once per message.
//!
//! Rates are messages per second over the last *completed* 1 s and 10 s: the bucket of
//! the current second is still filling and would make the rate read low. A report is
//! therefore up to one second behind, and exact for a steady client.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::scanner::Tally;

/// Completed seconds the long rate averages over.
pub const WINDOW_SECONDS: u64 = 10;
/// Buckets kept: the completed window plus the second in progress.
pub const SLOTS: usize = WINDOW_SECONDS as usize + 1;

/// Lifetime message totals (both directions).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub req: u64,
    pub ack: u64,
    pub nak: u64,
    pub malformed: u64,
}

/// One second of traffic.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// REQ messages.
    pub requests: u64,
    /// ACK and NAK messages.
    pub responses: u64,
}

/// Ring of one-second buckets indexed by Unix second; `newest_second` is the second the
/// newest bucket belongs to, and the ring holds `newest_second - 10 ..= newest_second`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    slots: [Bucket; SLOTS],
    newest_second: u64,
}

impl Window {
    pub fn new(now: u64) -> Self {
        Window { slots: [Bucket::default(); SLOTS], newest_second: now }
    }

    /// Moves the window forward to `now`, zeroing the buckets of seconds that went by.
    /// A clock that went backwards leaves the window where it is.
    pub fn advance(&mut self, now: u64) {
        if now <= self.newest_second {
            return;
        }
        let elapsed = now - self.newest_second;
        if elapsed >= SLOTS as u64 {
            self.slots = [Bucket::default(); SLOTS];
        } else {
            for second in self.newest_second + 1..=now {
                self.slots[slot_of(second)] = Bucket::default();
            }
        }
        self.newest_second = now;
    }

    /// Adds traffic seen at second `now` (into the newest bucket if the clock went back).
    pub fn record(&mut self, now: u64, requests: u64, responses: u64) {
        self.advance(now);
        let bucket = &mut self.slots[slot_of(self.newest_second)];
        bucket.requests += requests;
        bucket.responses += responses;
    }

    fn bucket(&self, second: u64) -> Bucket {
        let oldest = self.newest_second.saturating_sub(WINDOW_SECONDS);
        if second < oldest || second > self.newest_second {
            return Bucket::default();
        }
        self.slots[slot_of(second)]
    }

    /// `(requests/s, responses/s)` averaged over the `seconds` completed seconds before `now`.
    pub fn rates(&mut self, now: u64, seconds: u64) -> (f64, f64) {
        self.advance(now);
        let (mut requests, mut responses) = (0u64, 0u64);
        for second in now.saturating_sub(seconds)..now {
            let bucket = self.bucket(second);
            requests += bucket.requests;
            responses += bucket.responses;
        }
        (requests as f64 / seconds as f64, responses as f64 / seconds as f64)
    }

    /// Buckets oldest first, ending with `newest_second`: the recovery file's form.
    pub fn to_saved(&self) -> SavedWindow {
        let first = self.newest_second - WINDOW_SECONDS.min(self.newest_second);
        let buckets = (first..=self.newest_second).map(|second| self.bucket(second)).collect();
        SavedWindow { newest_second: self.newest_second, buckets }
    }

    /// Rebuilds a window from its saved form, then moves it to `now`: buckets older than
    /// the window are dropped, so a state older than 10 s comes back empty. A saved window
    /// from the future (clock set back since) is dropped rather than trusted.
    pub fn from_saved(saved: &SavedWindow, now: u64) -> Self {
        let mut window = Window::new(now);
        if saved.newest_second > now {
            return window;
        }
        window.newest_second = saved.newest_second;
        let count = saved.buckets.len() as u64;
        let first = saved.newest_second.saturating_sub(count.saturating_sub(1));
        for (second, bucket) in (first..).zip(&saved.buckets) {
            if second <= saved.newest_second && second + WINDOW_SECONDS >= saved.newest_second {
                window.slots[slot_of(second)] = *bucket;
            }
        }
        window.advance(now);
        window
    }
}

fn slot_of(second: u64) -> usize {
    (second % SLOTS as u64) as usize
}

/// The sliding window as stored in the recovery file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedWindow {
    /// Unix second of the last bucket.
    pub newest_second: u64,
    /// One bucket per second, oldest first, the last one being `newest_second`.
    pub buckets: Vec<Bucket>,
}

/// The stats report, fields in the order of the original proxy's JSON; `msg_malformed`
/// (lines that are no Foo message) is an addition, placed last so the original keys keep
/// their positions. `msg_total` counts REQ + ACK + NAK.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    pub msg_total: u64,
    pub msg_req: u64,
    pub msg_ack: u64,
    pub msg_nak: u64,
    pub request_rate_1s: f64,
    pub request_rate_10s: f64,
    pub response_rate_1s: f64,
    pub response_rate_10s: f64,
    pub msg_malformed: u64,
}

impl StatsReport {
    pub fn to_json(&self) -> String {
        // A struct of numbers always serialises; the fallback only satisfies the type.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

/// Totals and window together: what is saved and restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counters {
    pub totals: Totals,
    pub window: Window,
}

impl Counters {
    pub fn new(now: u64) -> Self {
        Counters { totals: Totals::default(), window: Window::new(now) }
    }

    pub fn add(&mut self, tally: &Tally, now: u64) {
        self.totals.req += tally.req;
        self.totals.ack += tally.ack;
        self.totals.nak += tally.nak;
        self.totals.malformed += tally.malformed;
        self.window.record(now, tally.req, tally.ack + tally.nak);
    }

    pub fn report(&mut self, now: u64) -> StatsReport {
        let (request_rate_1s, response_rate_1s) = self.window.rates(now, 1);
        let (request_rate_10s, response_rate_10s) = self.window.rates(now, WINDOW_SECONDS);
        let t = self.totals;
        StatsReport {
            msg_total: t.req + t.ack + t.nak,
            msg_req: t.req,
            msg_ack: t.ack,
            msg_nak: t.nak,
            request_rate_1s,
            request_rate_10s,
            response_rate_1s,
            response_rate_10s,
            msg_malformed: t.malformed,
        }
    }
}

/// Connection events; process-local (not recovered), exposed in the Prometheus form.
#[derive(Debug, Default)]
pub struct ConnectionCounters {
    pub accepted: AtomicU64,
    pub active: AtomicU64,
    pub backend_unavailable: AtomicU64,
    pub line_too_long: AtomicU64,
}

/// Shared by every connection, the HTTP server, the signal handler and the recovery saver.
#[derive(Debug)]
pub struct Stats {
    counters: Mutex<Counters>,
    pub connections: ConnectionCounters,
}

impl Default for Stats {
    fn default() -> Self {
        Self::with_counters(Counters::new(unix_now()))
    }
}

impl Stats {
    pub fn with_counters(counters: Counters) -> Self {
        Stats { counters: Mutex::new(counters), connections: ConnectionCounters::default() }
    }

    fn lock(&self) -> MutexGuard<'_, Counters> {
        // Nothing panics while holding the lock; if it ever did, the counts are still usable.
        self.counters.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn record(&self, tally: &Tally) {
        if !tally.is_empty() {
            self.lock().add(tally, unix_now());
        }
    }

    pub fn report(&self) -> StatsReport {
        self.lock().report(unix_now())
    }

    pub fn counters(&self) -> Counters {
        let mut counters = self.lock();
        counters.window.advance(unix_now());
        counters.clone()
    }

    /// Prometheus text exposition (format 0.0.4) of the same counters plus connection events.
    pub fn prometheus(&self) -> String {
        let report = self.report();
        let c = &self.connections;
        let load = |v: &AtomicU64| v.load(Ordering::Relaxed);
        format!(
            "# HELP foo_proxy_messages_total Foo lines seen by the proxy in both directions, by type.\n\
             # TYPE foo_proxy_messages_total counter\n\
             foo_proxy_messages_total{{type=\"req\"}} {}\n\
             foo_proxy_messages_total{{type=\"ack\"}} {}\n\
             foo_proxy_messages_total{{type=\"nak\"}} {}\n\
             foo_proxy_messages_total{{type=\"malformed\"}} {}\n\
             # HELP foo_proxy_request_rate REQ messages per second over the last completed window.\n\
             # TYPE foo_proxy_request_rate gauge\n\
             foo_proxy_request_rate{{window=\"1s\"}} {}\n\
             foo_proxy_request_rate{{window=\"10s\"}} {}\n\
             # HELP foo_proxy_response_rate ACK and NAK messages per second over the last completed window.\n\
             # TYPE foo_proxy_response_rate gauge\n\
             foo_proxy_response_rate{{window=\"1s\"}} {}\n\
             foo_proxy_response_rate{{window=\"10s\"}} {}\n\
             # HELP foo_proxy_connections_accepted_total Client connections accepted.\n\
             # TYPE foo_proxy_connections_accepted_total counter\n\
             foo_proxy_connections_accepted_total {}\n\
             # HELP foo_proxy_connections_active Client connections open now.\n\
             # TYPE foo_proxy_connections_active gauge\n\
             foo_proxy_connections_active {}\n\
             # HELP foo_proxy_backend_unavailable_total Client connections closed because the backend could not be reached.\n\
             # TYPE foo_proxy_backend_unavailable_total counter\n\
             foo_proxy_backend_unavailable_total {}\n\
             # HELP foo_proxy_line_too_long_total Connections closed for a line over the maximum length.\n\
             # TYPE foo_proxy_line_too_long_total counter\n\
             foo_proxy_line_too_long_total {}\n",
            report.msg_req,
            report.msg_ack,
            report.msg_nak,
            report.msg_malformed,
            report.request_rate_1s,
            report.request_rate_10s,
            report.response_rate_1s,
            report.response_rate_10s,
            load(&c.accepted),
            load(&c.active),
            load(&c.backend_unavailable),
            load(&c.line_too_long),
        )
    }
}

/// Current Unix time in whole seconds (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000;

    fn tally(req: u64, ack: u64, nak: u64, malformed: u64) -> Tally {
        Tally { req, ack, nak, malformed }
    }

    #[test]
    fn report_keys_are_in_the_reference_order() {
        let json = Counters::new(T0).report(T0).to_json();
        let keys: Vec<&str> = json.split('"').skip(1).step_by(2).collect();
        assert_eq!(
            keys,
            [
                "msg_total",
                "msg_req",
                "msg_ack",
                "msg_nak",
                "request_rate_1s",
                "request_rate_10s",
                "response_rate_1s",
                "response_rate_10s",
                "msg_malformed"
            ]
        );
    }

    #[test]
    fn totals_count_every_type_and_malformed_separately() {
        let mut c = Counters::new(T0);
        c.add(&tally(10, 8, 2, 3), T0);
        let r = c.report(T0);
        assert_eq!((r.msg_total, r.msg_req, r.msg_ack, r.msg_nak, r.msg_malformed), (20, 10, 8, 2, 3));
    }

    #[test]
    fn rates_are_per_second_over_completed_seconds() {
        let mut c = Counters::new(T0);
        // A steady client: 5 requests and 5 responses every second for 12 seconds.
        for s in 0..12 {
            c.add(&tally(5, 4, 1, 0), T0 + s);
        }
        // The current second (T0+11) is excluded; the last complete ones are full.
        let r = c.report(T0 + 11);
        assert_eq!((r.request_rate_1s, r.request_rate_10s), (5.0, 5.0));
        assert_eq!((r.response_rate_1s, r.response_rate_10s), (5.0, 5.0));
        // Three seconds of silence: 1 s rate drops to 0; 8 of the last 10 s had traffic.
        let r = c.report(T0 + 14);
        assert_eq!((r.request_rate_1s, r.request_rate_10s), (0.0, 4.0));
        // After more than the window, nothing is left.
        let r = c.report(T0 + 30);
        assert_eq!((r.request_rate_1s, r.request_rate_10s, r.response_rate_10s), (0.0, 0.0, 0.0));
        assert_eq!(r.msg_req, 60, "totals are kept");
    }

    #[test]
    fn rate_over_a_partial_history() {
        let mut c = Counters::new(T0);
        c.add(&tally(20, 0, 0, 0), T0);
        c.add(&tally(10, 0, 0, 0), T0 + 1);
        let r = c.report(T0 + 2);
        assert_eq!((r.request_rate_1s, r.request_rate_10s), (10.0, 3.0));
    }

    #[test]
    fn clock_going_backwards_keeps_counting() {
        let mut c = Counters::new(T0 + 5);
        c.add(&tally(1, 0, 0, 0), T0 + 5);
        c.add(&tally(1, 0, 0, 0), T0 + 3);
        assert_eq!(c.report(T0 + 6).request_rate_1s, 2.0);
    }

    #[test]
    fn saved_window_round_trips_and_ages() {
        let mut c = Counters::new(T0);
        for s in 0..15 {
            c.add(&tally(s, s, 0, 0), T0 + s);
        }
        let saved = c.window.to_saved();
        assert_eq!(saved.buckets.len(), SLOTS);
        assert_eq!(saved.newest_second, T0 + 14);
        assert_eq!(saved.buckets.last(), Some(&Bucket { requests: 14, responses: 14 }));

        let mut same = Window::from_saved(&saved, T0 + 14);
        assert_eq!(same, c.window);
        // Restored 3 s later: the seconds in between are empty, older ones still count.
        let mut later = Window::from_saved(&saved, T0 + 17);
        assert_eq!(later.rates(T0 + 17, 1), (0.0, 0.0));
        assert_eq!(later.rates(T0 + 17, 10).0, (7..=14).sum::<u64>() as f64 / 10.0);
        // Restored more than 10 s later: empty.
        let mut stale = Window::from_saved(&saved, T0 + 14 + 11);
        assert_eq!(stale.rates(T0 + 25, 10), (0.0, 0.0));
        assert_eq!(same.rates(T0 + 14, 1), (13.0, 13.0));
    }

    #[test]
    fn saved_window_from_the_future_or_oversized_is_handled() {
        let saved = SavedWindow { newest_second: T0 + 100, buckets: vec![Bucket { requests: 9, responses: 9 }] };
        let mut w = Window::from_saved(&saved, T0);
        assert_eq!(w.rates(T0 + 1, 10), (0.0, 0.0));
        // More buckets than slots (hand-edited file): only the last 11 seconds are taken.
        let saved = SavedWindow { newest_second: T0, buckets: vec![Bucket { requests: 1, responses: 2 }; 50] };
        let mut w = Window::from_saved(&saved, T0);
        assert_eq!(w.rates(T0 + 1, 10), (1.0, 2.0));
        let saved = SavedWindow { newest_second: 3, buckets: vec![Bucket::default(); 20] };
        let _ = Window::from_saved(&saved, 5);
    }

    #[test]
    fn prometheus_exposition_has_the_counters() {
        let stats = Stats::default();
        stats.record(&tally(3, 2, 1, 4));
        let text = stats.prometheus();
        assert!(text.contains("foo_proxy_messages_total{type=\"req\"} 3\n"));
        assert!(text.contains("foo_proxy_messages_total{type=\"malformed\"} 4\n"));
        assert!(text.contains("# TYPE foo_proxy_request_rate gauge\n"));
    }
}
