//! The real-time auction API of seed 003 (go-auction-api), served by `ingot serve` beside
//! the platform: users who sign up to it, offers, bids, and a WebSocket that pushes new
//! offers and new highest bids to signed-in sockets.
//!
//! - [`accounts`]: the API's own users (a namespace apart from the platform's: argon2id
//!   passwords, a name taken once, failed logins limited) and its JWTs (their own key and
//!   audience, with an expiry: a platform token is no good here, nor one of these there).
//! - [`service`]: offers and bids, validated (every refusal a 400/403/404/409 with words,
//!   never a 500); bids go through [`bidding`], which places them in batches per offer
//!   shard, each bid decided in the store's transaction against the offer as it then is
//!   (`store::market`), so the highest bid always wins and a bid is answered only once
//!   stored.
//! - [`hub`]: the live sockets, each with a bounded queue; one that falls behind is closed
//!   with a reason instead of slowing the others. Fed through the bus (`market` events),
//!   so every node of a cluster tells its own sockets.
//! - [`ws`]: the socket protocol (`authenticate` first, within a deadline; `get_offer` /
//!   `get_offers`), thin over the service and the hub.
//! - [`page`]: the test page at `/index`.
//!
//! What the original got wrong and this does not: see `../shared/reference/auction.md`
//! and ARCHITECTURE.md.

pub mod accounts;
pub mod bidding;
pub mod hub;
pub mod page;
pub mod service;
pub mod ws;

use std::time::Duration;

pub use accounts::{Accounts, MarketClaims};
pub use hub::Hub;
pub use service::MarketService;

/// Why a market request failed; `api` maps each to a status.
#[derive(Debug, thiserror::Error)]
pub enum MarketError {
    /// Bad input (400).
    #[error("{0}")]
    BadRequest(String),
    /// The signup's name is taken (400, as the original answered).
    #[error("User Already Exist")]
    UserExists,
    /// Unknown user or wrong password (403, as the original answered).
    #[error("wrong user name or password")]
    BadCredentials,
    /// Too many failed logins (429).
    #[error("too many failed logins; retry in {0} s")]
    TooManyAttempts(u64),
    /// No token, or a bad or expired one (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Not the caller's to do (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such offer or bid (404).
    #[error("{0}")]
    NotFound(String),
    /// The offer's state forbids it: sold, or its bidding ended (409).
    #[error("{0}")]
    Conflict(String),
    /// The bid queue is full (503: retry).
    #[error("too many bids waiting; retry")]
    Busy,
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("the market's events could not be published: {0}")]
    Bus(#[from] bus::BusError),
}

/// The market's limits and lifetimes (`ingot serve --market-…`).
#[derive(Debug, Clone)]
pub struct MarketConfig {
    /// How long a token is good for.
    pub token_ttl: Duration,
    /// Bid writers: bids of one offer always go to the same one.
    pub bid_shards: usize,
    /// Bids waiting to be stored, at most, over all writers (beyond: 503).
    pub bid_queue: usize,
    /// Signed-in sockets at most, per node.
    pub max_sockets: usize,
    /// Messages waiting for one socket at most; a socket further behind is closed.
    pub socket_queue: usize,
    /// A socket must authenticate this soon after it opens.
    pub auth_deadline: Duration,
    /// Failed logins per user name or address before a lock-out, and its window.
    pub max_login_failures: u32,
    pub login_window: Duration,
}

impl Default for MarketConfig {
    fn default() -> Self {
        Self {
            token_ttl: Duration::from_secs(3600),
            bid_shards: 4,
            bid_queue: 10_000,
            max_sockets: 10_000,
            socket_queue: 64,
            auth_deadline: Duration::from_secs(10),
            max_login_failures: 10,
            login_window: Duration::from_secs(300),
        }
    }
}

/// Most offers or bids on one page.
pub const MAX_PAGE_SIZE: u64 = 100;

/// A new id: 24 hex digits like the original's MongoDB ObjectIds: 12 of the time in ms,
/// 6 of a counter of this process, 6 random (apart from other processes). So ids sort by
/// time, and the ids one process makes sort in the order it made them.
pub fn new_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let ms = chrono::Utc::now().timestamp_millis().max(0) as u64 & 0xffff_ffff_ffff;
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & 0xff_ffff;
    format!("{ms:012x}{n:06x}{}", model::secret::random_hex(3))
}

/// Whether `id` has the form of one (24 lowercase hex digits).
pub fn valid_id(id: &str) -> bool {
    id.len() == 24 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_original_form_and_grow_with_time() {
        let a = new_id();
        let b = new_id();
        std::thread::sleep(Duration::from_millis(2));
        let c = new_id();
        assert!(valid_id(&a) && valid_id(&b) && valid_id(&c), "{a} {b} {c}");
        assert!(a < b && b < c, "in the order made: {a} {b} {c}");
        for bad in ["", "5ca3414276889736ba1d7ef", "5CA3414276889736BA1D7EFD", "5ca3414276889736ba1d7efg", "../x"] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}
