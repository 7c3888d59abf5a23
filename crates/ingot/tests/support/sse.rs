//! Server-Sent Events read from a response, as a browser's EventSource would.

use std::time::Duration;

use serde_json::Value;

use super::Api;

/// One Server-Sent Event.
#[derive(Debug, Default)]
pub struct Sse {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// Reads SSE events from a response body.
pub struct SseReader {
    resp: reqwest::Response,
    buf: String,
}

impl SseReader {
    pub async fn open(api: &Api, path: &str, last_event_id: Option<&str>) -> Self {
        let mut rb = api.request(reqwest::Method::GET, path);
        if let Some(id) = last_event_id {
            rb = rb.header("Last-Event-ID", id);
        }
        let resp = rb.send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        Self { resp, buf: String::new() }
    }

    /// The next event (keep-alive comments skipped), within 10 s.
    pub async fn next(&mut self) -> Sse {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut e = Sse::default();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        e.id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        e.event = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        e.data.push_str(v.trim_start());
                    }
                }
                if e.event.is_some() || !e.data.is_empty() {
                    return e;
                }
                continue;
            }
            let chunk =
                tokio::time::timeout(Duration::from_secs(10), self.resp.chunk()).await.expect("an event in 10 s");
            self.buf.push_str(&String::from_utf8_lossy(&chunk.unwrap().expect("the stream ended")));
        }
    }

    pub async fn reading(&mut self) -> (String, Value) {
        let e = self.next().await;
        assert_eq!(e.event.as_deref(), Some("device-data"), "{e:?}");
        (e.id.expect("an id"), serde_json::from_str(&e.data).unwrap())
    }
}
