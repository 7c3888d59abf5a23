//! The debugger: for a flow whose `trace` switch is on, the last messages into and out of
//! each node and each node's errors, readable at `GET /flows/v1/flow/{id}/trace` and live
//! at `…/trace/stream`. Bounded everywhere: [`PER_NODE`] entries per node, messages cut to
//! [`MAX_MESSAGE_BYTES`], at most [`RATE`] entries a second per flow (the rest are
//! counted, not kept), and the live feed is a broadcast channel that drops for a reader
//! that falls behind. It is written by the engine's worker, never on the ingest path.
//! Each node of a cluster traces the runs it made.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// Entries kept per node.
pub const PER_NODE: usize = 20;
/// Longest message kept whole, in bytes of JSON.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Entries a second per flow, on average (bursts of one second's worth).
pub const RATE: f64 = 200.0;

/// One thing a node did.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// When, ms since the epoch.
    pub ts: i64,
    pub node: String,
    /// `in`, `out` or `error`.
    pub kind: &'static str,
    /// For `out`: the output port (0 for the first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A flow's trace.
pub struct Trace {
    nodes: Mutex<HashMap<String, VecDeque<Entry>>>,
    bucket: Mutex<(f64, Instant)>,
    dropped: AtomicU64,
    live: broadcast::Sender<Entry>,
}

impl std::fmt::Debug for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trace").field("dropped", &self.dropped.load(Ordering::Relaxed)).finish_non_exhaustive()
    }
}

impl Default for Trace {
    fn default() -> Self {
        Self {
            nodes: Mutex::new(HashMap::new()),
            bucket: Mutex::new((RATE, Instant::now())),
            dropped: AtomicU64::new(0),
            live: broadcast::channel(256).0,
        }
    }
}

/// `msg` as kept: whole if small, else its start as text.
fn kept(msg: &Value) -> Value {
    let text = msg.to_string();
    if text.len() <= MAX_MESSAGE_BYTES {
        return msg.clone();
    }
    let mut cut = 1024;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    json!({"truncated": true, "bytes": text.len(), "start": &text[..cut]})
}

impl Trace {
    /// Whether the rate allows one more entry now.
    fn admit(&self) -> bool {
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * RATE).min(RATE);
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            true
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// Records a message into (`port: None`, `kind: "in"`) or out of a node, or its error.
    pub fn record(
        &self,
        node: &str,
        kind: &'static str,
        port: Option<usize>,
        message: Option<&Value>,
        error: Option<String>,
    ) {
        if !self.admit() {
            return;
        }
        let entry = Entry {
            ts: chrono::Utc::now().timestamp_millis(),
            node: node.to_string(),
            kind,
            port,
            message: message.map(kept),
            error,
        };
        let _ = self.live.send(entry.clone());
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        let q = nodes.entry(node.to_string()).or_default();
        if q.len() == PER_NODE {
            q.pop_front();
        }
        q.push_back(entry);
    }

    /// Every node's entries, oldest first, and how many were not kept for the rate.
    pub fn snapshot(&self) -> Value {
        let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        let by_node: serde_json::Map<String, Value> =
            nodes.iter().map(|(id, q)| (id.clone(), json!(q.iter().collect::<Vec<_>>()))).collect();
        json!({"nodes": by_node, "dropped": self.dropped.load(Ordering::Relaxed)})
    }

    /// Entries from now on (a reader that falls behind loses some, and is told).
    pub fn subscribe(&self) -> broadcast::Receiver<Entry> {
        self.live.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_per_node_cut_and_rate_limited() {
        let t = Trace::default();
        for i in 0..(PER_NODE + 5) {
            t.record("a", "in", None, Some(&json!({"n": i})), None);
        }
        let big = json!({"s": "x".repeat(10_000)});
        t.record("b", "out", Some(1), Some(&big), None);
        t.record("b", "error", None, None, Some("boom".into()));
        let snap = t.snapshot();
        let a = snap["nodes"]["a"].as_array().unwrap();
        assert_eq!((a.len(), &a[0]["message"]["n"]), (PER_NODE, &json!(5)), "the oldest went");
        assert_eq!(snap["nodes"]["b"][0]["message"]["truncated"], true);
        assert_eq!(snap["nodes"]["b"][0]["port"], 1);
        assert_eq!(snap["nodes"]["b"][1]["error"], "boom");
        for _ in 0..1000 {
            t.record("c", "in", None, None, None);
        }
        let dropped = t.snapshot()["dropped"].as_u64().unwrap();
        assert!(dropped >= 1000 - RATE as u64, "{dropped}: at most a second's worth kept at once");
    }
}
