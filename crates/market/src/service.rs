//! [`MarketService`]: offers and bids as the auction API shows them, every input checked
//! before anything is stored, every refusal a [`MarketError`] with words.
//!
//! Shapes are the original's: an offer `{"id", "bid_price", "go_live", "lifetime",
//! "photo_url", "title", "created_by", "sold"}`, a bid `{"id", "bid_price", "username",
//! "offer_id", "timestamp", "accepted"}` (times RFC 3339). Ingot adds `winning` to a bid
//! (whether it is the offer's highest) and `start_price` to an offer.
//!
//! Rules the original lacked: prices are finite and positive, titles are not empty,
//! lifetimes are not negative; a bid must reach the starting price, and is refused on a
//! sold offer, an offer whose bidding ended (`lifetime` seconds after `go_live`; 0: no
//! end) and the bidder's own offer; only an offer's creator accepts one of its bids, once.

use std::sync::Arc;

use bus::Bus;
use chrono::{TimeZone, Utc};
use model::{DeviceEvent, EventKind};
use serde::Deserialize;
use serde_json::{Value, json};
use store::SharedStore;
use store::market::{Acceptance, BidPlacement, BidRecord, OfferOrder, OfferRecord};

use crate::accounts::Accounts;
use crate::bidding::Bidders;
use crate::hub::Hub;
use crate::{MAX_PAGE_SIZE, MarketConfig, MarketError, new_id, valid_id};

/// Highest price taken (beyond, floating point stops counting cents).
pub const MAX_PRICE: f64 = 1e12;
/// Longest title and photo URL, in bytes.
pub const MAX_TITLE_LEN: usize = 200;
pub const MAX_URL_LEN: usize = 2048;
/// Longest lifetime, in seconds (ten years).
pub const MAX_LIFETIME_S: i64 = 10 * 365 * 86_400;

pub struct MarketService {
    store: SharedStore,
    pub accounts: Arc<Accounts>,
    bidders: Bidders,
    bus: Arc<dyn Bus>,
    pub hub: Arc<Hub>,
    pub config: MarketConfig,
}

/// `POST /v1/offer`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOffer {
    bid_price: Option<Value>,
    title: Option<Value>,
    lifetime: Option<Value>,
    photo_url: Option<Value>,
}

/// `POST /v1/bid`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBid {
    bid_price: Option<Value>,
    offer_id: Option<Value>,
}

fn bad(message: impl Into<String>) -> MarketError {
    MarketError::BadRequest(message.into())
}

fn rfc3339(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// An offer as the API shows it.
pub fn offer_view(o: &OfferRecord) -> Value {
    json!({"id": o.id, "bid_price": o.bid_price, "go_live": rfc3339(o.go_live_ms), "lifetime": o.lifetime_s,
           "photo_url": o.photo_url, "title": o.title, "created_by": o.created_by, "sold": o.sold,
           "start_price": o.start_price})
}

/// A bid as the API shows it.
pub fn bid_view(b: &BidRecord) -> Value {
    json!({"id": b.id, "bid_price": b.bid_price, "username": b.username, "offer_id": b.offer_id,
           "timestamp": rfc3339(b.ts_ms), "accepted": b.accepted, "winning": b.winning})
}

/// A price: a finite number above 0 and at most [`MAX_PRICE`].
fn price(v: Option<&Value>) -> Result<f64, MarketError> {
    let v = v.ok_or_else(|| bad("bid_price is required"))?;
    match v.as_f64() {
        Some(p) if p.is_finite() && p > 0.0 && p <= MAX_PRICE => Ok(p),
        Some(_) => Err(bad(format!("bid_price must be above 0 and at most {MAX_PRICE}"))),
        None => Err(bad("bid_price must be a number")),
    }
}

/// An id of the original's form, named `what` in the refusal.
fn id(v: &str, what: &str) -> Result<(), MarketError> {
    if valid_id(v) { Ok(()) } else { Err(bad(format!("{what} is not an id (24 hex digits): {v:?}"))) }
}

/// A page: `page` from 0, `size` 1 to [`MAX_PAGE_SIZE`] (10 when absent).
pub fn page(page: Option<&str>, size: Option<&str>) -> Result<(u64, u64), MarketError> {
    let page = match page {
        None | Some("") => 0,
        Some(p) => {
            p.parse::<u64>().ok().filter(|p| *p <= 1_000_000).ok_or_else(|| bad("page must be a page number from 0"))?
        }
    };
    let size = match size {
        None | Some("") => 10,
        Some(s) => s
            .parse::<u64>()
            .ok()
            .filter(|s| (1..=MAX_PAGE_SIZE).contains(s))
            .ok_or_else(|| bad(format!("size must be 1 to {MAX_PAGE_SIZE}")))?,
    };
    Ok((page * size, size))
}

/// `sortKey`: `golive` (newest first, the default), `bid_price` (highest first), `title`.
pub fn order(key: Option<&str>) -> Result<OfferOrder, MarketError> {
    match key.unwrap_or("") {
        "" | "golive" | "go_live" => Ok(OfferOrder::GoLive),
        "bid_price" => Ok(OfferOrder::BidPrice),
        "title" => Ok(OfferOrder::Title),
        other => Err(bad(format!("sortKey must be golive, bid_price or title, not {other:?}"))),
    }
}

impl MarketService {
    /// The market over `store`; its events go through `bus` to every node's hub.
    pub async fn start(store: SharedStore, bus: Arc<dyn Bus>, config: MarketConfig) -> Result<Arc<Self>, MarketError> {
        let accounts = Arc::new(Accounts::load(store.clone(), &config).await?);
        let bidders = Bidders::start(store.clone(), config.bid_shards, config.bid_queue);
        let hub = Hub::new(config.max_sockets, config.socket_queue);
        hub.follow(bus.as_ref());
        Ok(Arc::new(Self { store, accounts, bidders, bus, hub, config }))
    }

    /// Tells every node's sockets (best effort: the change is stored already).
    async fn tell(&self, data: Value) {
        let event = DeviceEvent { kind: EventKind::Market, tenant: "market".into(), data, ts: Utc::now() };
        if let Err(e) = self.bus.publish_event(event).await {
            tracing::warn!(error = %e, "a market event could not be sent to the sockets");
        }
    }

    /// `POST /v1/offer` by `user`: the offer, stored and told to the sockets.
    pub async fn create_offer(&self, user: &str, body: Value) -> Result<Value, MarketError> {
        let new: NewOffer = serde_json::from_value(body).map_err(|e| bad(format!("bad offer: {e}")))?;
        let start_price = price(new.bid_price.as_ref())?;
        let title = match new.title {
            Some(Value::String(t)) if !t.trim().is_empty() && t.len() <= MAX_TITLE_LEN => t,
            Some(Value::String(_)) => return Err(bad(format!("title must be 1 to {MAX_TITLE_LEN} bytes, not blank"))),
            Some(_) => return Err(bad("title must be a string")),
            None => return Err(bad("title is required")),
        };
        let lifetime_s = match new.lifetime {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_i64()
                .filter(|l| (0..=MAX_LIFETIME_S).contains(l))
                .ok_or_else(|| bad(format!("lifetime must be whole seconds from 0 (no end) to {MAX_LIFETIME_S}")))?,
        };
        let photo_url = match new.photo_url {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(u)) if u.is_empty() => u,
            Some(Value::String(u))
                if u.len() <= MAX_URL_LEN && (u.starts_with("https://") || u.starts_with("http://")) =>
            {
                u
            }
            Some(_) => return Err(bad(format!("photo_url must be an http(s) URL of at most {MAX_URL_LEN} bytes"))),
        };
        let offer = OfferRecord {
            id: new_id(),
            title,
            start_price,
            bid_price: start_price,
            go_live_ms: Utc::now().timestamp_millis(),
            lifetime_s,
            photo_url,
            created_by: user.to_string(),
            sold: false,
            winning_bid: None,
        };
        self.store.insert_offer(offer.clone()).await?;
        metrics::counter!("ingot_market_offers_total").increment(1);
        let view = offer_view(&offer);
        self.tell(json!({"event": "offerCreated", "offer": view})).await;
        Ok(view)
    }

    /// `GET /v1/offer`: a page of offers (an empty page is `[]`).
    pub async fn offers(&self, order: OfferOrder, offset: u64, limit: u64) -> Result<Value, MarketError> {
        let offers = self.store.offers(order, offset, limit).await?;
        Ok(Value::Array(offers.iter().map(offer_view).collect()))
    }

    /// `GET /v1/offer/{id}`.
    pub async fn offer(&self, offer_id: &str) -> Result<Value, MarketError> {
        id(offer_id, "the offer id")?;
        let offer = self.store.offer(offer_id).await?.ok_or_else(|| no_offer(offer_id))?;
        Ok(offer_view(&offer))
    }

    /// `GET /v1/offer/{id}/bids`: a page of its bids, by time.
    pub async fn bids(&self, offer_id: &str, offset: u64, limit: u64) -> Result<Value, MarketError> {
        id(offer_id, "the offer id")?;
        self.store.offer(offer_id).await?.ok_or_else(|| no_offer(offer_id))?;
        let bids = self.store.bids(offer_id, offset, limit).await?;
        Ok(Value::Array(bids.iter().map(bid_view).collect()))
    }

    /// `POST /v1/bid` by `user`: the bid, once stored; a new highest bid is told to the
    /// sockets.
    pub async fn place_bid(&self, user: &str, body: Value) -> Result<Value, MarketError> {
        let new: NewBid = serde_json::from_value(body).map_err(|e| bad(format!("bad bid: {e}")))?;
        let bid_price = price(new.bid_price.as_ref())?;
        let offer_id = match new.offer_id {
            Some(Value::String(o)) => o,
            Some(_) => return Err(bad("offer_id must be a string")),
            None => return Err(bad("offer_id is required")),
        };
        id(&offer_id, "offer_id")?;
        // Its id and time are given when it is placed (`bidding`).
        let bid = BidRecord {
            id: String::new(),
            offer_id: offer_id.clone(),
            username: user.to_string(),
            bid_price,
            ts_ms: 0,
            winning: false,
            accepted: false,
        };
        let placed = match self.bidders.place(bid).await? {
            BidPlacement::Placed(b) => b,
            BidPlacement::NoSuchOffer => return Err(no_offer(&offer_id)),
            BidPlacement::Sold => return Err(MarketError::Conflict(format!("offer {offer_id} is sold"))),
            BidPlacement::Expired => {
                return Err(MarketError::Conflict(format!("bidding on offer {offer_id} has ended")));
            }
            BidPlacement::OwnOffer => return Err(MarketError::Forbidden("you cannot bid on your own offer".into())),
            BidPlacement::BelowStart(start) => {
                return Err(bad(format!("bid_price must be at least the offer's starting price, {start}")));
            }
        };
        metrics::counter!("ingot_market_bids_total", "winning" => placed.winning.to_string()).increment(1);
        let view = bid_view(&placed);
        if placed.winning {
            self.tell(json!({"event": "highestBid", "bid": view})).await;
        }
        Ok(view)
    }

    /// `PUT /v1/bid/{id}` by `user`: the offer's creator accepts the bid; the offer is sold.
    pub async fn accept_bid(&self, user: &str, bid_id: &str) -> Result<Value, MarketError> {
        id(bid_id, "the bid id")?;
        match self.store.accept_bid(bid_id, user).await? {
            Acceptance::Accepted(b) => {
                let view = bid_view(&b);
                let offer = self.store.offer(&b.offer_id).await?.map(|o| offer_view(&o));
                self.tell(json!({"event": "offerSold", "offer": offer, "bid": view})).await;
                Ok(view)
            }
            Acceptance::NoSuchBid => Err(MarketError::NotFound(format!("no bid {bid_id}"))),
            Acceptance::NotTheSeller => {
                Err(MarketError::Forbidden("only the offer's creator may accept its bids".into()))
            }
            Acceptance::Sold => Err(MarketError::Conflict("the offer is sold already".into())),
        }
    }
}

fn no_offer(offer_id: &str) -> MarketError {
    MarketError::NotFound(format!("no offer {offer_id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_sort_keys() {
        assert_eq!(page(None, None).unwrap(), (0, 10));
        assert_eq!(page(Some("2"), Some("25")).unwrap(), (50, 25), "page is a page number, not a skip");
        for (p, s) in [(Some("-1"), None), (Some("x"), None), (None, Some("0")), (None, Some("101"))] {
            assert!(matches!(page(p, s), Err(MarketError::BadRequest(_))), "{p:?} {s:?}");
        }
        assert_eq!(order(None).unwrap(), OfferOrder::GoLive);
        assert_eq!(order(Some("bid_price")).unwrap(), OfferOrder::BidPrice);
        assert!(order(Some("price; DROP TABLE")).is_err());
    }

    #[tokio::test]
    async fn offers_and_bids_follow_the_rules_on_every_engine() {
        for engine in &store::testing::engines().await {
            let bus: Arc<dyn Bus> = Arc::new(bus::MemoryBus::new(1024));
            let m = MarketService::start(engine.store.clone(), bus, MarketConfig::default()).await.unwrap();
            let name = engine.name;
            for bad_offer in [
                json!({"title": "x"}),
                json!({"bid_price": -1, "title": "x"}),
                json!({"bid_price": 0, "title": "x"}),
                json!({"bid_price": "12", "title": "x"}),
                json!({"bid_price": 1, "title": "  "}),
                json!({"bid_price": 1}),
                json!({"bid_price": 1, "title": "x", "lifetime": -5}),
                json!({"bid_price": 1, "title": "x", "lifetime": 1.5}),
                json!({"bid_price": 1, "title": "x", "photo_url": "javascript:alert(1)"}),
                json!({"bid_price": 1, "title": "x", "colour": "red"}),
            ] {
                let got = m.create_offer("ana", bad_offer.clone()).await;
                assert!(matches!(got, Err(MarketError::BadRequest(_))), "{name}: {bad_offer}: {got:?}");
            }
            let offer = m.create_offer("ana", json!({"bid_price": 12.34, "title": "Swiss Shales"})).await.unwrap();
            let offer_id = offer["id"].as_str().unwrap().to_string();
            assert_eq!((offer["sold"].as_bool(), offer["lifetime"].as_i64()), (Some(false), Some(0)), "{name}");
            assert_eq!(offer["created_by"], "ana");

            let bid = |price: Value| json!({"bid_price": price, "offer_id": offer_id});
            assert!(matches!(m.place_bid("ana", bid(json!(20))).await, Err(MarketError::Forbidden(_))), "{name}");
            assert!(matches!(m.place_bid("bob", bid(json!(12))).await, Err(MarketError::BadRequest(_))), "{name}");
            assert!(matches!(m.place_bid("bob", bid(json!(-3))).await, Err(MarketError::BadRequest(_))), "{name}");
            let unknown = json!({"bid_price": 20, "offer_id": "000000000000000000000000"});
            assert!(matches!(m.place_bid("bob", unknown).await, Err(MarketError::NotFound(_))), "{name}");
            let malformed = json!({"bid_price": 20, "offer_id": "../etc"});
            assert!(matches!(m.place_bid("bob", malformed).await, Err(MarketError::BadRequest(_))), "{name}");
            let first = m.place_bid("bob", bid(json!(20))).await.unwrap();
            assert_eq!((first["winning"].as_bool(), first["accepted"].as_bool()), (Some(true), Some(false)));
            let lower = m.place_bid("cid", bid(json!(15))).await.unwrap();
            assert_eq!(lower["winning"], false, "{name}: a lower bid is kept, and does not win");
            assert_eq!(m.offer(&offer_id).await.unwrap()["bid_price"], 20.0, "{name}");

            let lower_id = lower["id"].as_str().unwrap();
            assert!(matches!(m.accept_bid("bob", lower_id).await, Err(MarketError::Forbidden(_))), "{name}");
            let accepted = m.accept_bid("ana", lower_id).await.unwrap();
            assert_eq!(accepted["accepted"], true, "{name}: the seller may accept any bid of the offer");
            assert!(matches!(m.accept_bid("ana", lower_id).await, Err(MarketError::Conflict(_))), "{name}");
            assert!(matches!(m.place_bid("cid", bid(json!(99))).await, Err(MarketError::Conflict(_))), "{name}");
            let bids = m.bids(&offer_id, 0, 10).await.unwrap();
            assert_eq!(bids.as_array().unwrap().len(), 2, "{name}: {bids}");
            assert_eq!(m.offers(OfferOrder::GoLive, 10, 10).await.unwrap(), json!([]), "{name}: empty is []");
        }
    }
}
