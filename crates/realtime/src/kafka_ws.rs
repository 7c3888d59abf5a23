//! dojot kafka-ws's WebSocket (`/kafka-ws/v1/topics/:topic`): one topic, filtered with
//! `fields`/`where`, each message one text frame. The route (in `api`) takes the ticket
//! before the upgrade; everything after it is answered with kafka-ws's close codes, and
//! every close is a real handshake: the server sends its Close frame and waits (briefly)
//! for the client's, so clients see the code and reason (dojot #2025: kafka-ws dropped
//! the TCP connection, and clients saw 1006).
//!
//! Close codes: 4000–4004 (`fields`/`where`, see [`crate::filter`]), 4403 (another
//! tenant's topic), 4408 (the connection's lifetime is over), and Ingot's own 4404 (no
//! such topic: dojot silently sent nothing), 4429 (too many streams), 4008 (the client
//! did not read fast enough), 1001 (the server is shutting down).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use tokio::time::{Instant, timeout};

use crate::filter::Filter;
use crate::hub::{End, Hub, HubError, Item, Request, Topic};

/// Who holds the ticket the socket was opened with.
#[derive(Debug, Clone)]
pub struct Holder {
    pub tenant: String,
    pub user_id: i64,
}

/// A socket's request: its topic and filters, as in the URL.
#[derive(Debug, Clone, Default)]
pub struct Subscription {
    pub topic: String,
    pub fields: Option<String>,
    pub conditions: Option<String>,
}

/// Longest a frame may wait for a client that does not read before the socket is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server waits for the client's Close frame after sending its own.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// The data topics of a tenant, by their name after `<tenant>.`.
fn topic_of(name: &str, tenant: &str) -> Result<Topic, (u16, String)> {
    let prefix = format!("{}.", tenant.to_lowercase());
    let lower = name.to_lowercase();
    let Some(rest) = lower.strip_prefix(&prefix) else {
        return Err((4403, format!("topic '{}' is not tenant {tenant}'s", clip(name))));
    };
    match rest {
        "device-data" => Ok(Topic::DeviceData),
        "dojot.device-manager.device" => Ok(Topic::Lifecycle),
        _ => Err((
            4404,
            format!("no topic '{}': use {tenant}.device-data or {tenant}.dojot.device-manager.device", clip(name)),
        )),
    }
}

fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Serves one upgraded socket until it closes.
pub async fn serve(mut socket: WebSocket, hub: Arc<Hub>, holder: Holder, sub: Subscription, max_life: Duration) {
    let topic = match topic_of(&sub.topic, &holder.tenant) {
        Ok(t) => t,
        Err((code, reason)) => return close(socket, code, &reason).await,
    };
    let filter = match Filter::parse(sub.fields.as_deref(), sub.conditions.as_deref()) {
        Ok(f) => f,
        Err(e) => return close(socket, e.close_code(), &e.to_string()).await,
    };
    let request = Request { tenant: holder.tenant, user_id: holder.user_id, topic, device: None, filter, resume: None };
    let mut stream = match hub.subscribe(request) {
        Ok(s) => s,
        Err(e @ (HubError::UserLimit(_) | HubError::Full(_))) => return close(socket, 4429, &e.to_string()).await,
        Err(e @ HubError::ShuttingDown) => return close(socket, 1001, &e.to_string()).await,
    };
    let deadline = Instant::now() + max_life;
    loop {
        tokio::select! {
            item = stream.next() => match item {
                Some(Item::Message(m)) => {
                    match timeout(SEND_TIMEOUT, socket.send(WsMessage::Text(m.json.to_string().into()))).await {
                        Ok(Ok(())) => {}
                        // Gone, or not reading at all: no handshake is possible.
                        _ => return,
                    }
                }
                // kafka-ws streams do not resume: there is never a gap to report.
                Some(Item::Gap) => {}
                None => {
                    let end = stream.end();
                    drop(stream);
                    let code = if end == End::Slow { 4008 } else { 1001 };
                    return close(socket, code, end.reason()).await;
                }
            },
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) => return,
                // The client closes: reading on lets the library send the answering
                // Close frame before the connection ends.
                Some(Ok(WsMessage::Close(_))) => {
                    let _ = timeout(CLOSE_WAIT, async { while socket.recv().await.is_some() {} }).await;
                    return;
                }
                // Clients have nothing to say on this socket; pings are answered by the library.
                Some(Ok(_)) => {}
            },
            _ = tokio::time::sleep_until(deadline) => {
                // The stream is released now, not after the handshake: it counts
                // towards its user's limit.
                drop(stream);
                return close(socket, 4408, "connection lifetime is over").await;
            }
        }
    }
}

/// Sends a Close frame and waits for the client's answer (or [`CLOSE_WAIT`]).
async fn close(mut socket: WebSocket, code: u16, reason: &str) {
    // A close reason is at most 123 bytes.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame { code, reason: reason[..end].to_string().into() };
    if timeout(SEND_TIMEOUT, socket.send(WsMessage::Close(Some(frame)))).await.is_err() {
        return;
    }
    let _ = timeout(CLOSE_WAIT, async {
        while let Some(Ok(m)) = socket.recv().await {
            if matches!(m, WsMessage::Close(_)) {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_the_tenants_own() {
        assert_eq!(topic_of("admin.device-data", "admin"), Ok(Topic::DeviceData));
        assert_eq!(topic_of("ADMIN.Device-Data", "admin"), Ok(Topic::DeviceData), "case-insensitive, as dojot");
        assert_eq!(topic_of("admin.dojot.device-manager.device", "admin"), Ok(Topic::Lifecycle));
        assert_eq!(topic_of("other.device-data", "admin").unwrap_err().0, 4403);
        assert_eq!(topic_of("admindevice-data", "admin").unwrap_err().0, 4403);
        assert_eq!(topic_of("admin.nothing", "admin").unwrap_err().0, 4404);
    }
}
