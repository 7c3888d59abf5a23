//! Request bodies that a handler leaves unread are drained, within bounds, after it
//! has answered.
//!
//! Why: a handler that refuses a request early (a wrong token, bad device credentials)
//! answers without reading the body. Over HTTP/2, hyper's h2 then ends the stream with
//! `RST_STREAM(NO_ERROR)` right after the response (RFC 9113 §8.1 allows it, and RFC-abiding
//! clients keep the response), but older clients such as curl 7.88 (Debian 12) report
//! "Stream error in the HTTP/2 framing layer" and drop the response they were sent. Over
//! HTTP/1.1, hyper closes the connection instead, and a client still uploading can see a
//! TCP reset before it reads the answer. Reading the rest of the body lets the exchange
//! end the normal way: the client finishes its upload, the stream closes cleanly.
//!
//! The answer is not held back: the body is handed to a task of its own when the handler
//! drops it, while hyper sends the response. The task reads at most
//! [`DrainLimits::max_bytes`] more bytes for at most [`DrainLimits::timeout`], discarding
//! them (memory stays bounded by the flow-control window); past either bound it drops the
//! body, and hyper resets the stream (h2) or closes the connection (HTTP/1.1) as before.
//! A request sent with `Expect: 100-continue` is not drained: its client waits for the
//! go-ahead before uploading, and a refusal tells it not to.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::header::EXPECT;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

/// How long an unread body is drained after the answer, at most.
pub const UNREAD_BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// Bounds of the drain of one unread request body.
#[derive(Debug, Clone, Copy)]
pub struct DrainLimits {
    /// Most bytes read (and discarded) after the handler stopped reading.
    pub max_bytes: usize,
    /// Longest time spent reading them.
    pub timeout: Duration,
}

impl DrainLimits {
    /// Up to `max_bytes` (the API's body limit) within [`UNREAD_BODY_TIMEOUT`].
    pub fn new(max_bytes: usize) -> Self {
        Self { max_bytes, timeout: UNREAD_BODY_TIMEOUT }
    }
}

/// Wraps every request body of `router` so that what its handler leaves unread is drained.
pub fn drain_unread_bodies(router: Router, limits: DrainLimits) -> Router {
    router.layer(tower::util::MapRequestLayer::new(move |req: Request| {
        let expects_continue =
            req.headers().get(EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if expects_continue { req } else { req.map(|body| Body::new(DrainOnDrop::new(body, limits))) }
    }))
}

/// A request body that, dropped before its end, drains the rest on a task of its own.
pub struct DrainOnDrop {
    /// `None` only once dropped.
    body: Option<Body>,
    /// The end (or an error) was seen: nothing left to drain.
    finished: bool,
    limits: DrainLimits,
}

impl DrainOnDrop {
    pub fn new(body: Body, limits: DrainLimits) -> Self {
        Self { body: Some(body), finished: false, limits }
    }
}

impl HttpBody for DrainOnDrop {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let Some(body) = this.body.as_mut() else { return Poll::Ready(None) };
        let polled = Pin::new(body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            this.finished = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.finished || self.body.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body.as_ref().map(HttpBody::size_hint).unwrap_or_default()
    }
}

impl Drop for DrainOnDrop {
    fn drop(&mut self) {
        if self.is_end_stream() {
            return;
        }
        let (Some(body), Ok(runtime)) = (self.body.take(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        runtime.spawn(drain(body, self.limits));
    }
}

/// Reads and discards `body` within `limits`; returns whether it reached its end.
pub async fn drain(mut body: Body, limits: DrainLimits) -> bool {
    let read = async {
        let mut left = limits.max_bytes;
        while let Some(frame) = body.frame().await {
            // An error ends the body too (the client reset or went away).
            let Ok(frame) = frame else { return true };
            if let Some(data) = frame.data_ref() {
                let Some(l) = left.checked_sub(data.len()) else { return false };
                left = l;
            }
        }
        true
    };
    match tokio::time::timeout(limits.timeout, read).await {
        Ok(true) => true,
        Ok(false) => {
            tracing::debug!(max_bytes = limits.max_bytes, "unread request body too large to drain; resetting");
            false
        }
        Err(_) => {
            tracing::debug!(timeout = ?limits.timeout, "unread request body not done in time; resetting");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A body of `chunks` chunks of `size` bytes that counts what was read of it and
    /// then, when `endless`, never ends.
    struct Counted {
        read: Arc<AtomicUsize>,
        chunks: usize,
        size: usize,
        endless: bool,
    }

    impl HttpBody for Counted {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if self.chunks == 0 {
                return if self.endless { Poll::Pending } else { Poll::Ready(None) };
            }
            self.chunks -= 1;
            self.read.fetch_add(self.size, Ordering::SeqCst);
            Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![0; self.size])))))
        }
    }

    fn counted(chunks: usize, size: usize, endless: bool) -> (Body, Arc<AtomicUsize>) {
        let read = Arc::new(AtomicUsize::new(0));
        (Body::new(Counted { read: read.clone(), chunks, size, endless }), read)
    }

    const LIMITS: DrainLimits = DrainLimits { max_bytes: 10_000, timeout: Duration::from_millis(200) };

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    #[tokio::test]
    async fn an_unread_body_is_read_to_its_end_after_drop() {
        let (body, read) = counted(5, 1000, false);
        drop(DrainOnDrop::new(body, LIMITS));
        settle().await;
        assert_eq!(read.load(Ordering::SeqCst), 5000);
    }

    #[tokio::test]
    async fn the_drain_stops_at_its_byte_limit() {
        let (body, read) = counted(1000, 1000, false);
        assert!(!drain(body, LIMITS).await);
        assert_eq!(read.load(Ordering::SeqCst), 11_000, "stops at the first chunk past the limit");
    }

    #[tokio::test]
    async fn the_drain_stops_at_its_timeout() {
        let (body, _) = counted(1, 10, true);
        let started = std::time::Instant::now();
        assert!(!drain(body, LIMITS).await);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
