//! Server-Sent Events: a stream as `text/event-stream`, for browsers (`EventSource`) and
//! curl. Each message is `id: <EventId>`, `event: device-data` (or the stream's event
//! name) and `data: <json>`; the client's `Last-Event-ID` on reconnection resumes after it
//! (the hub's replay window). Two events of Ingot's own say what happened:
//! `gap` (`{"message"}`: messages were missed; history has them) and `close`
//! (`{"reason"}`: the server ends the stream: the client was too slow, the stream reached
//! its lifetime, or the server stops). Keep-alive comments go every 15 s, so proxies do not
//! time an idle stream out.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream as FuturesStream;
use serde_json::json;
use tokio::time::Instant;

use crate::hub::{Item, Stream};

/// The SSE response of `stream`, ended after `max_life`; `event` names its messages.
pub fn response(
    stream: Stream,
    event: &'static str,
    max_life: Duration,
) -> Sse<impl FuturesStream<Item = Result<Event, Infallible>> + use<>> {
    let deadline = Instant::now() + max_life;
    let events = futures_util::stream::unfold(Some(stream), move |state| async move {
        let mut stream = state?;
        let next = tokio::select! {
            item = stream.next() => item,
            _ = tokio::time::sleep_until(deadline) => {
                let close = json!({"reason": "the stream reached its lifetime; reconnect with Last-Event-ID"});
                return Some((Ok(Event::default().event("close").data(close.to_string())), None));
            }
        };
        let event = match next {
            Some(Item::Message(m)) => Event::default().id(m.id.to_string()).event(event).data(&*m.json),
            Some(Item::Gap) => {
                let gap = json!({"message": "messages were missed before the next one (beyond the replay window); read them from history"});
                Event::default().event("gap").data(gap.to_string())
            }
            None => {
                let close = json!({"reason": stream.end().reason()});
                return Some((Ok(Event::default().event("close").data(close.to_string())), None));
            }
        };
        Some((Ok(event), Some(stream)))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
