//! The live sockets of this node and what they are told: each signed-in socket has a
//! bounded queue (`socket_queue` messages); a broadcast never waits for a socket, and a
//! socket whose queue is full is dropped from the hub, its task then closing it with a
//! reason ("too slow"), so one stalled reader never holds up the others (the original's
//! hub blocked on every client in turn). At most `max_sockets` are signed in at once.
//!
//! Messages reach the hub through the bus (`market` events, one lossy subscription per
//! node), so a bid placed on one node of a cluster is told to the sockets of all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bus::{Bus, Mode};
use model::EventKind;
use tokio::sync::mpsc;

/// A socket's feed: text frames, already serialised once for all.
pub type Feed = mpsc::Receiver<Arc<str>>;

pub struct Hub {
    sockets: Mutex<HashMap<u64, mpsc::Sender<Arc<str>>>>,
    next: AtomicU64,
    max_sockets: usize,
    queue: usize,
}

impl Hub {
    pub fn new(max_sockets: usize, queue: usize) -> Arc<Self> {
        Arc::new(Self {
            sockets: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            max_sockets,
            queue: queue.max(1),
        })
    }

    /// Signs a socket in: its id and feed, or `None` when the hub is full.
    pub fn join(&self) -> Option<(u64, Feed)> {
        let mut sockets = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        if sockets.len() >= self.max_sockets {
            return None;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.queue);
        sockets.insert(id, tx);
        metrics::gauge!("ingot_market_sockets").set(sockets.len() as f64);
        Some((id, rx))
    }

    /// A socket leaves.
    pub fn leave(&self, id: u64) {
        let mut sockets = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        sockets.remove(&id);
        metrics::gauge!("ingot_market_sockets").set(sockets.len() as f64);
    }

    /// Sends `text` to every signed-in socket; drops those that are too far behind (their
    /// feed ends, and they close).
    pub fn broadcast(&self, text: &str) {
        let text: Arc<str> = Arc::from(text);
        let mut sockets = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        let before = sockets.len();
        sockets.retain(|_, tx| tx.try_send(text.clone()).is_ok());
        let dropped = before - sockets.len();
        if dropped > 0 {
            metrics::counter!("ingot_market_sockets_dropped_total").increment(dropped as u64);
            metrics::gauge!("ingot_market_sockets").set(sockets.len() as f64);
        }
    }

    /// How many sockets are signed in.
    pub fn len(&self) -> usize {
        self.sockets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Follows the bus's `market` events, broadcasting each (as `{"event", …}`), for as
    /// long as the hub lives.
    pub fn follow(self: &Arc<Self>, bus: &dyn Bus) {
        let mut events = bus.subscribe_events("market-hub", Mode::Lossy);
        let hub = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(delivery) = events.recv().await {
                let Some(hub) = hub.upgrade() else { return };
                if delivery.msg.kind == EventKind::Market {
                    hub.broadcast(&delivery.msg.data.to_string());
                }
                delivery.ack();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slow_socket_is_dropped_and_the_others_go_on() {
        let hub = Hub::new(3, 2);
        let (_, mut fast) = hub.join().unwrap();
        let (_, mut slow) = hub.join().unwrap();
        let (gone, _) = hub.join().unwrap();
        hub.leave(gone);
        assert_eq!(hub.len(), 2);
        for i in 0..5 {
            hub.broadcast(&format!("m{i}"));
            assert_eq!(fast.recv().await.as_deref(), Some(format!("m{i}").as_str()), "the fast socket gets all");
        }
        assert_eq!(hub.len(), 1, "the slow one was dropped");
        assert_eq!(slow.recv().await.as_deref(), Some("m0"));
        assert_eq!(slow.recv().await.as_deref(), Some("m1"));
        assert_eq!(slow.recv().await, None, "its feed ends: it is closed as too slow");
    }

    #[test]
    fn the_hub_has_a_size() {
        let hub = Hub::new(1, 1);
        assert!(hub.join().is_some());
        assert!(hub.join().is_none(), "full");
    }
}
