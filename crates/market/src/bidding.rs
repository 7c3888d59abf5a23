//! Bids on their way to the store: a few writers (`bid_shards`), each taking the bids of
//! its offers (an offer always goes to the same one, so its bids keep their order) from a
//! bounded queue and placing whatever has piled up in one transaction
//! (`MarketStore::place_bids`: each bid decided in order against the offer as it then
//! is). The writer gives each bid its id and time, in that order, so that an offer's bids
//! list in the order they were decided. A caller is answered when its batch has committed: a 201 means stored. Bids on
//! different offers are not serialised by one another (beyond the database's own
//! writer), and the queue bound (`bid_queue`) makes a flood a 503 rather than memory.

use std::hash::{Hash, Hasher};

use store::SharedStore;
use store::market::{BidPlacement, BidRecord};
use tokio::sync::{mpsc, oneshot};

use crate::{MarketError, new_id};

/// Most bids in one transaction.
const MAX_BATCH: usize = 512;

type Reply = oneshot::Sender<Result<BidPlacement, String>>;

/// The bid writers.
pub struct Bidders {
    shards: Vec<mpsc::Sender<(BidRecord, Reply)>>,
}

impl Bidders {
    /// Starts `shards` writers over `store`, with `queue` bids waiting at most in all.
    pub fn start(store: SharedStore, shards: usize, queue: usize) -> Self {
        let shards = shards.clamp(1, 64);
        let per_shard = (queue / shards).max(1);
        let senders = (0..shards)
            .map(|_| {
                let (tx, rx) = mpsc::channel(per_shard);
                tokio::spawn(write(store.clone(), rx));
                tx
            })
            .collect();
        Self { shards: senders }
    }

    /// Places `bid`, once its batch is stored.
    pub async fn place(&self, bid: BidRecord) -> Result<BidPlacement, MarketError> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bid.offer_id.hash(&mut h);
        let shard = &self.shards[(h.finish() % self.shards.len() as u64) as usize];
        let (tx, rx) = oneshot::channel();
        shard.try_send((bid, tx)).map_err(|_| MarketError::Busy)?;
        metrics::gauge!("ingot_market_bids_waiting").increment(1.0);
        match rx.await {
            Ok(Ok(placement)) => Ok(placement),
            Ok(Err(e)) => Err(MarketError::Store(store::StoreError::Task(e))),
            Err(_) => Err(MarketError::Busy),
        }
    }
}

/// One writer: batches of what is waiting, one transaction each.
async fn write(store: SharedStore, mut rx: mpsc::Receiver<(BidRecord, Reply)>) {
    let mut waiting = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut waiting, MAX_BATCH).await > 0 {
        let (mut bids, replies): (Vec<BidRecord>, Vec<Reply>) = waiting.drain(..).unzip();
        metrics::gauge!("ingot_market_bids_waiting").decrement(bids.len() as f64);
        metrics::histogram!("ingot_market_bid_batch").record(bids.len() as f64);
        // Stamped here, in the order they are placed: a bid's time and id order it among
        // its offer's bids as it was decided (the first of equal bids is the one that won).
        let now_ms = chrono::Utc::now().timestamp_millis();
        for bid in &mut bids {
            bid.id = new_id();
            bid.ts_ms = now_ms;
        }
        match store.place_bids(bids, now_ms).await {
            Ok(placements) => {
                for (reply, placement) in replies.into_iter().zip(placements) {
                    let _ = reply.send(Ok(placement));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, bids = replies.len(), "bids could not be stored; refused");
                for reply in replies {
                    let _ = reply.send(Err(e.to_string()));
                }
            }
        }
    }
}
