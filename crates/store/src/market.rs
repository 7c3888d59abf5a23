//! The auction market (seed 003): its own users (the API's own signup, apart from the
//! platform's), offers and bids, in `market_users`, `market_offers` and `market_bids`.
//! One marketplace for the installation: the auction API has no tenants.
//!
//! Bids are placed in batches ([`MarketStore::place_bids`]), each bid decided in order
//! inside the batch's transaction against the offer's row as it is then (on PostgreSQL,
//! locked `FOR UPDATE`, offers in id order so that two batches never deadlock): whether
//! it may be placed at all (the offer exists, is not sold nor expired, is not the
//! bidder's own, and the price reaches the starting price), and whether it is the new
//! highest bid. So the highest bid always wins, the offer's price is always its winning
//! bid's, and exactly one bid of an offer is winning, whatever runs concurrently on any
//! node; and a bid is answered only once its batch has committed.

use rusqlite::{OptionalExtension, Transaction, params};

use crate::{SqliteStore, StoreError};

/// A user of the auction API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketUser {
    pub username: String,
    /// argon2id, PHC string.
    pub password_hash: String,
    pub created_ms: i64,
}

/// An offer.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferRecord {
    /// 24 hex digits.
    pub id: String,
    pub title: String,
    /// The price bids start from.
    pub start_price: f64,
    /// The current price: the winning bid's, or the starting price before any bid.
    pub bid_price: f64,
    pub go_live_ms: i64,
    /// Seconds bids are taken after `go_live_ms`; 0: no end.
    pub lifetime_s: i64,
    pub photo_url: String,
    pub created_by: String,
    pub sold: bool,
    /// The winning bid's id.
    pub winning_bid: Option<String>,
}

impl OfferRecord {
    /// Whether bidding on it has ended at `now_ms`.
    pub fn expired(&self, now_ms: i64) -> bool {
        self.lifetime_s > 0 && now_ms >= self.go_live_ms.saturating_add(self.lifetime_s.saturating_mul(1000))
    }
}

/// A bid.
#[derive(Debug, Clone, PartialEq)]
pub struct BidRecord {
    /// 24 hex digits.
    pub id: String,
    pub offer_id: String,
    pub username: String,
    pub bid_price: f64,
    pub ts_ms: i64,
    /// The offer's highest bid now.
    pub winning: bool,
    /// Accepted by the offer's creator (the offer is then sold).
    pub accepted: bool,
}

/// How offers are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferOrder {
    /// Newest first.
    GoLive,
    /// Highest price first.
    BidPrice,
    /// A to Z.
    Title,
}

impl OfferOrder {
    pub(crate) fn sql(self) -> &'static str {
        match self {
            OfferOrder::GoLive => "go_live_ms DESC, id DESC",
            OfferOrder::BidPrice => "bid_price DESC, id",
            OfferOrder::Title => "title, id",
        }
    }
}

/// What became of a bid.
#[derive(Debug, Clone, PartialEq)]
pub enum BidPlacement {
    /// Stored; `bid.winning` says whether it is the offer's highest now.
    Placed(BidRecord),
    NoSuchOffer,
    Sold,
    Expired,
    /// On the bidder's own offer.
    OwnOffer,
    /// Under the offer's starting price.
    BelowStart(f64),
}

/// What became of an acceptance.
#[derive(Debug, Clone, PartialEq)]
pub enum Acceptance {
    /// The bid is accepted and its offer sold.
    Accepted(BidRecord),
    NoSuchBid,
    /// The caller did not create the bid's offer.
    NotTheSeller,
    /// The offer was sold already.
    Sold,
}

#[async_trait::async_trait]
pub trait MarketStore: Send + Sync {
    /// Adds a user; false if the name is taken.
    async fn insert_market_user(&self, user: MarketUser) -> Result<bool, StoreError>;
    async fn market_user(&self, username: &str) -> Result<Option<MarketUser>, StoreError>;
    async fn insert_offer(&self, offer: OfferRecord) -> Result<(), StoreError>;
    async fn offer(&self, id: &str) -> Result<Option<OfferRecord>, StoreError>;
    /// A page of offers.
    async fn offers(&self, order: OfferOrder, offset: u64, limit: u64) -> Result<Vec<OfferRecord>, StoreError>;
    /// Places `bids` in order, in one transaction (see the module docs), at `now_ms`.
    async fn place_bids(&self, bids: Vec<BidRecord>, now_ms: i64) -> Result<Vec<BidPlacement>, StoreError>;
    /// The offer's creator `seller` accepts bid `id`: the bid is accepted, the offer sold.
    async fn accept_bid(&self, id: &str, seller: &str) -> Result<Acceptance, StoreError>;
    async fn bid(&self, id: &str) -> Result<Option<BidRecord>, StoreError>;
    /// A page of an offer's bids, by time (ids break ties: they grow with time too).
    async fn bids(&self, offer_id: &str, offset: u64, limit: u64) -> Result<Vec<BidRecord>, StoreError>;
}

pub(crate) const OFFER_COLUMNS: &str =
    "id, title, start_price, bid_price, go_live_ms, lifetime_s, photo_url, created_by, sold, winning_bid";
pub(crate) const BID_COLUMNS: &str = "id, offer_id, username, bid_price, ts_ms, winning, accepted";

fn offer(r: &rusqlite::Row<'_>) -> rusqlite::Result<OfferRecord> {
    Ok(OfferRecord {
        id: r.get(0)?,
        title: r.get(1)?,
        start_price: r.get(2)?,
        bid_price: r.get(3)?,
        go_live_ms: r.get(4)?,
        lifetime_s: r.get(5)?,
        photo_url: r.get(6)?,
        created_by: r.get(7)?,
        sold: r.get(8)?,
        winning_bid: r.get(9)?,
    })
}

fn bid(r: &rusqlite::Row<'_>) -> rusqlite::Result<BidRecord> {
    Ok(BidRecord {
        id: r.get(0)?,
        offer_id: r.get(1)?,
        username: r.get(2)?,
        bid_price: r.get(3)?,
        ts_ms: r.get(4)?,
        winning: r.get(5)?,
        accepted: r.get(6)?,
    })
}

/// The decision for one bid against its offer as it stands (no I/O): the placement, and
/// whether the offer must take it as its winning bid. Both engines use it.
pub(crate) fn decide(offer: Option<&OfferRecord>, mut bid: BidRecord, now_ms: i64) -> BidPlacement {
    let Some(offer) = offer else { return BidPlacement::NoSuchOffer };
    if offer.sold {
        return BidPlacement::Sold;
    }
    if offer.expired(now_ms) {
        return BidPlacement::Expired;
    }
    if offer.created_by == bid.username {
        return BidPlacement::OwnOffer;
    }
    if bid.bid_price < offer.start_price {
        return BidPlacement::BelowStart(offer.start_price);
    }
    bid.winning = offer.winning_bid.is_none() || bid.bid_price > offer.bid_price;
    bid.accepted = false;
    BidPlacement::Placed(bid)
}

fn place_bid(tx: &Transaction<'_>, bid: BidRecord, now_ms: i64) -> Result<BidPlacement, StoreError> {
    let current = tx
        .prepare_cached(&format!("SELECT {OFFER_COLUMNS} FROM market_offers WHERE id = ?1"))?
        .query_row([&bid.offer_id], offer)
        .optional()?;
    let placement = decide(current.as_ref(), bid, now_ms);
    if let BidPlacement::Placed(b) = &placement {
        if b.winning {
            if let Some(previous) = current.as_ref().and_then(|o| o.winning_bid.as_ref()) {
                tx.prepare_cached("UPDATE market_bids SET winning = 0 WHERE id = ?1")?.execute([previous])?;
            }
            tx.prepare_cached("UPDATE market_offers SET bid_price = ?2, winning_bid = ?3 WHERE id = ?1")?
                .execute(params![b.offer_id, b.bid_price, b.id])?;
        }
        tx.prepare_cached(&format!("INSERT INTO market_bids ({BID_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"))?
            .execute(params![b.id, b.offer_id, b.username, b.bid_price, b.ts_ms, b.winning, b.accepted])?;
    }
    Ok(placement)
}

#[async_trait::async_trait]
impl MarketStore for SqliteStore {
    async fn insert_market_user(&self, u: MarketUser) -> Result<bool, StoreError> {
        self.write(move |tx| {
            Ok(tx
                .prepare_cached(
                    "INSERT INTO market_users (username, password_hash, created_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (username) DO NOTHING",
                )?
                .execute(params![u.username, u.password_hash, u.created_ms])?
                == 1)
        })
        .await
    }

    async fn market_user(&self, username: &str) -> Result<Option<MarketUser>, StoreError> {
        let username = username.to_string();
        self.read(move |c| {
            Ok(c.prepare_cached("SELECT username, password_hash, created_ms FROM market_users WHERE username = ?1")?
                .query_row([username], |r| {
                    Ok(MarketUser { username: r.get(0)?, password_hash: r.get(1)?, created_ms: r.get(2)? })
                })
                .optional()?)
        })
        .await
    }

    async fn insert_offer(&self, o: OfferRecord) -> Result<(), StoreError> {
        self.write(move |tx| {
            tx.prepare_cached(&format!(
                "INSERT INTO market_offers ({OFFER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ))?
            .execute(params![
                o.id,
                o.title,
                o.start_price,
                o.bid_price,
                o.go_live_ms,
                o.lifetime_s,
                o.photo_url,
                o.created_by,
                o.sold,
                o.winning_bid
            ])?;
            Ok(())
        })
        .await
    }

    async fn offer(&self, id: &str) -> Result<Option<OfferRecord>, StoreError> {
        let id = id.to_string();
        self.read(move |c| {
            Ok(c.prepare_cached(&format!("SELECT {OFFER_COLUMNS} FROM market_offers WHERE id = ?1"))?
                .query_row([id], offer)
                .optional()?)
        })
        .await
    }

    async fn offers(&self, order: OfferOrder, offset: u64, limit: u64) -> Result<Vec<OfferRecord>, StoreError> {
        self.read(move |c| {
            let sql = format!("SELECT {OFFER_COLUMNS} FROM market_offers ORDER BY {} LIMIT ?1 OFFSET ?2", order.sql());
            Ok(c.prepare_cached(&sql)?
                .query_map(params![limit as i64, offset as i64], offer)?
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn place_bids(&self, bids: Vec<BidRecord>, now_ms: i64) -> Result<Vec<BidPlacement>, StoreError> {
        self.write(move |tx| bids.into_iter().map(|b| place_bid(tx, b, now_ms)).collect()).await
    }

    async fn accept_bid(&self, id: &str, seller: &str) -> Result<Acceptance, StoreError> {
        let (id, seller) = (id.to_string(), seller.to_string());
        self.write(move |tx| {
            let Some(mut b) = tx
                .prepare_cached(&format!("SELECT {BID_COLUMNS} FROM market_bids WHERE id = ?1"))?
                .query_row([&id], bid)
                .optional()?
            else {
                return Ok(Acceptance::NoSuchBid);
            };
            let o = tx
                .prepare_cached(&format!("SELECT {OFFER_COLUMNS} FROM market_offers WHERE id = ?1"))?
                .query_row([&b.offer_id], offer)?;
            if o.created_by != seller {
                return Ok(Acceptance::NotTheSeller);
            }
            if o.sold {
                return Ok(Acceptance::Sold);
            }
            tx.prepare_cached("UPDATE market_bids SET accepted = 1 WHERE id = ?1")?.execute([&id])?;
            tx.prepare_cached("UPDATE market_offers SET sold = 1 WHERE id = ?1")?.execute([&b.offer_id])?;
            b.accepted = true;
            Ok(Acceptance::Accepted(b))
        })
        .await
    }

    async fn bid(&self, id: &str) -> Result<Option<BidRecord>, StoreError> {
        let id = id.to_string();
        self.read(move |c| {
            Ok(c.prepare_cached(&format!("SELECT {BID_COLUMNS} FROM market_bids WHERE id = ?1"))?
                .query_row([id], bid)
                .optional()?)
        })
        .await
    }

    async fn bids(&self, offer_id: &str, offset: u64, limit: u64) -> Result<Vec<BidRecord>, StoreError> {
        let offer_id = offer_id.to_string();
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {BID_COLUMNS} FROM market_bids WHERE offer_id = ?1 ORDER BY ts_ms, id LIMIT ?2 OFFSET ?3"
            ))?
            .query_map(params![offer_id, limit as i64, offset as i64], bid)?
            .collect::<Result<_, _>>()?)
        })
        .await
    }
}
