//! data-broker's socket.io stream, on socketioxide (the Engine.IO v3 / socket.io 2
//! protocol that dojot's GUI and `socket.io-client` 2.x speak, with its `v4` feature).
//!
//! A client asks `GET /stream/socketio` for a token (the route is in `api`), then
//! connects with `io(base, {query: "token=…", transports: ["websocket"]})`. The token is
//! a single-use ticket, taken by the connect middleware: a missing, used or expired one,
//! or a user over the stream limit, is refused with a socket.io `error` packet naming
//! why. A connected socket gets every reading (and actuation request) of its tenant
//! twice, as data-broker sent them: as event `<device id>` and as event `all`.
//!
//! Each socket is one hub stream with its bounded queue, pumped by a task into the
//! socket; socketioxide's own buffer is bounded too. A socket that cannot keep up (either
//! full) is disconnected and counted.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use serde_json::value::RawValue;
use socketioxide::SocketIo;
use socketioxide::extract::SocketRef;
use socketioxide::handler::ConnectHandler;
use socketioxide::layer::SocketIoLayer;
use tokio::sync::Notify;

use crate::filter::Filter;
use crate::hub::{Hub, Item, Request, Stream, Topic};
use crate::kafka_ws::Holder;

/// Takes a token: who it was issued to, if it is valid.
pub type Redeem = Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = Option<Holder>> + Send>> + Send + Sync>;

/// Why a socket.io connection was refused, as its `error` packet says.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The stream a middleware opened, for the handler to pump (extensions must be `Clone`).
#[derive(Clone)]
struct Opened(Arc<Mutex<Option<Stream>>>);

/// The socket.io layer (requests under `/socket.io/`) to put on the router.
pub fn layer(hub: Arc<Hub>, redeem: Redeem) -> SocketIoLayer {
    let (layer, io) = SocketIo::builder().max_buffer_size(hub.config().queue.max(2)).build_layer();
    let middleware = move |s: SocketRef| {
        let (hub, redeem) = (hub.clone(), redeem.clone());
        async move {
            let token = s.req_parts().uri.query().and_then(|q| url_param(q, "token")).ok_or_else(|| {
                Refused("a token is required: GET /stream/socketio, then connect with query token=…".into())
            })?;
            let holder =
                redeem(token).await.ok_or_else(|| Refused("invalid token: unknown, expired or already used".into()))?;
            let request = Request {
                tenant: holder.tenant,
                user_id: holder.user_id,
                topic: Topic::DeviceDataAndActuation,
                device: None,
                filter: Filter::default(),
                resume: None,
            };
            let stream = hub.subscribe(request).map_err(|e| Refused(e.to_string()))?;
            s.extensions.insert(Opened(Arc::new(Mutex::new(Some(stream)))));
            Ok::<(), Refused>(())
        }
    };
    io.ns("/", connected.with(middleware));
    layer
}

/// A connected socket: pumps its stream into it until either ends.
async fn connected(s: SocketRef) {
    let Some(stream) = s.extensions.get::<Opened>().and_then(|o| o.0.lock().expect("opened").take()) else {
        return;
    };
    let gone = Arc::new(Notify::new());
    let on_gone = gone.clone();
    s.on_disconnect(async move || on_gone.notify_one());
    tokio::spawn(pump(s, stream, gone));
}

async fn pump(s: SocketRef, mut stream: Stream, gone: Arc<Notify>) {
    loop {
        let item = tokio::select! {
            item = stream.next() => item,
            _ = gone.notified() => return,
        };
        match item {
            Some(Item::Message(m)) => {
                let Ok(raw) = RawValue::from_string(m.json.to_string()) else { continue };
                let sent = s.emit(&*m.device, &raw).and_then(|()| s.emit("all", &raw));
                if let Err(e) = sent {
                    if s.connected() {
                        metrics::counter!("realtime_slow_closed_total").increment(1);
                        tracing::info!(error = %e, "a socket.io client did not keep up; disconnecting it");
                        let _ = s.disconnect();
                    }
                    return;
                }
            }
            Some(Item::Gap) => {}
            None => {
                let _ = s.disconnect();
                return;
            }
        }
    }
}

/// A query parameter's value (percent-decoding the few characters a token never has is
/// not needed: tokens are hex).
fn url_param(query: &str, name: &str) -> Option<String> {
    query.split('&').filter_map(|p| p.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
}
