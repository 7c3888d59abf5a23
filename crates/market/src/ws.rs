//! The auction's WebSocket (`/v1/stream`, also `/ws`): JSON text messages
//! `{"event", "token", …}`.
//!
//! - The first message must be `{"event": "authenticate", "token"}` with a market token,
//!   within `auth_deadline` of the upgrade; the answer is `{"event": "authenticated",
//!   "username", "expires"}`. Anything else closes the socket (the original took any
//!   socket into its broadcast list, authenticated or not).
//! - `{"event": "get_offer" | "get_offers", "page", "size", "sort_key"}` answers
//!   `{"event": "offers", "offers": [...]}` (numbers may come as strings, as the original
//!   page sent them). A bad request answers `{"event": "error", "message"}` and the
//!   socket stays open.
//! - The hub's broadcasts follow: `offerCreated`, `highestBid`, `offerSold`.
//! - A message carrying a token must carry a good one; `authenticate` again with a fresh
//!   token extends the socket's life, which otherwise ends when its token expires.
//!
//! Close codes, in kafka-ws's style (4000 + an HTTP status where one fits): 4400 not a
//! JSON message, 4401 not authenticated (missing, bad or expired token, or another first
//! event), 4408 no authentication in time, 4008 too slow (the hub dropped the socket),
//! 4429 too many sockets, 1003 binary data.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::{Instant, timeout};

use crate::MarketService;
use crate::accounts::MarketClaims;
use crate::service::{order, page};

/// How long a send to a socket may take before the socket is given up.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
struct SocketMessage {
    event: String,
    token: Option<String>,
    page: Option<Value>,
    size: Option<Value>,
    sort_key: Option<Value>,
}

/// A number or a numeric string, as text.
fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => Some(String::from("?")),
    }
}

/// Why a socket ends, as its close frame says.
struct Ending(u16, String);

impl Ending {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Self(code, reason.into())
    }
}

/// Serves one upgraded socket until it closes.
pub async fn serve(mut socket: WebSocket, market: Arc<MarketService>) {
    let ending = match run(&mut socket, &market).await {
        Ok(()) => return,
        Err(e) => e,
    };
    // A close reason is at most 123 bytes.
    let mut end = ending.1.len().min(123);
    while !ending.1.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame { code: ending.0, reason: ending.1[..end].to_string().into() };
    if timeout(SEND_TIMEOUT, socket.send(Message::Close(Some(frame)))).await.is_ok() {
        // Wait a little for the client's answering Close.
        let _ = timeout(Duration::from_secs(1), async { while let Some(Ok(_)) = socket.recv().await {} }).await;
    }
}

async fn send(socket: &mut WebSocket, value: &Value) -> Result<(), Ending> {
    match timeout(SEND_TIMEOUT, socket.send(Message::Text(value.to_string().into()))).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(Ending::new(4008, "too slow: a send timed out")),
    }
}

/// The next text message, or the ending a binary message or a closed socket makes.
async fn next_text(socket: &mut WebSocket) -> Result<Option<String>, Ending> {
    loop {
        match socket.recv().await {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Ok(None),
            Some(Ok(Message::Text(t))) => return Ok(Some(t.to_string())),
            Some(Ok(Message::Binary(_))) => return Err(Ending::new(1003, "messages are JSON text")),
            // Pings are answered by the library.
            Some(Ok(_)) => {}
        }
    }
}

fn parse(text: &str) -> Result<SocketMessage, Ending> {
    serde_json::from_str(text).map_err(|_| Ending::new(4400, "messages are JSON objects with an event"))
}

fn authenticate(market: &MarketService, m: &SocketMessage) -> Result<MarketClaims, Ending> {
    let token = m.token.as_deref().ok_or_else(|| Ending::new(4401, "authenticate needs a token"))?;
    market.accounts.verify(token).map_err(|e| Ending::new(4401, e.to_string()))
}

fn authenticated(claims: &MarketClaims) -> Value {
    let expires = chrono::DateTime::from_timestamp(claims.exp, 0).unwrap_or_default().to_rfc3339();
    json!({"event": "authenticated", "username": claims.sub, "expires": expires})
}

/// When the token of `claims` expires.
fn expiry(claims: &MarketClaims) -> Instant {
    let left = claims.exp - chrono::Utc::now().timestamp();
    Instant::now() + Duration::from_secs(left.max(0) as u64)
}

async fn run(socket: &mut WebSocket, market: &Arc<MarketService>) -> Result<(), Ending> {
    let first = match timeout(market.config.auth_deadline, next_text(socket)).await {
        Err(_) => return Err(Ending::new(4408, "authenticate first: no authenticate message in time")),
        Ok(first) => first?,
    };
    let Some(first) = first else { return Ok(()) };
    let first = parse(&first)?;
    if first.event != "authenticate" {
        return Err(Ending::new(4401, "the first message must be authenticate"));
    }
    let claims = authenticate(market, &first)?;
    let Some((id, mut feed)) = market.hub.join() else {
        return Err(Ending::new(4429, "too many sockets; retry later"));
    };
    let result = signed_in(socket, market, claims, &mut feed).await;
    market.hub.leave(id);
    result
}

async fn signed_in(
    socket: &mut WebSocket,
    market: &Arc<MarketService>,
    claims: MarketClaims,
    feed: &mut crate::hub::Feed,
) -> Result<(), Ending> {
    send(socket, &authenticated(&claims)).await?;
    let mut expires = expiry(&claims);
    loop {
        tokio::select! {
            told = feed.recv() => match told {
                Some(text) => {
                    match timeout(SEND_TIMEOUT, socket.send(Message::Text(text.to_string().into()))).await {
                        Ok(Ok(())) => {}
                        _ => return Err(Ending::new(4008, "too slow: a send timed out")),
                    }
                }
                None => return Err(Ending::new(4008, "too slow: the socket fell behind the market's messages")),
            },
            incoming = next_text(socket) => {
                let Some(text) = incoming? else { return Ok(()) };
                let m = parse(&text)?;
                if m.token.is_some() || m.event == "authenticate" {
                    let claims = authenticate(market, &m)?;
                    if m.event == "authenticate" {
                        expires = expiry(&claims);
                        send(socket, &authenticated(&claims)).await?;
                        continue;
                    }
                }
                let answer = match m.event.as_str() {
                    "get_offer" | "get_offers" => match offers(market, &m).await {
                        Ok(offers) => json!({"event": "offers", "offers": offers}),
                        Err(e) => json!({"event": "error", "message": e.to_string()}),
                    },
                    other => json!({"event": "error", "message": format!("unknown event {other:?}: get_offers or authenticate")}),
                };
                send(socket, &answer).await?;
            }
            _ = tokio::time::sleep_until(expires) => {
                return Err(Ending::new(4401, "token expired: authenticate again with a new one"));
            }
        }
    }
}

async fn offers(market: &MarketService, m: &SocketMessage) -> Result<Value, crate::MarketError> {
    let (offset, limit) = page(text(m.page.as_ref()).as_deref(), text(m.size.as_ref()).as_deref())?;
    let order = order(text(m.sort_key.as_ref()).as_deref())?;
    market.offers(order, offset, limit).await
}
