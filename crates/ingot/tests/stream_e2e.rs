//! Real-time streams against the real binary: kafka-ws with a Rust WebSocket client
//! (tokio-tungstenite), data-broker's socket.io with the npm `socket.io-client` 2.x,
//! and Server-Sent Events with a plain HTTP client. Readings come from `mosquitto_pub`
//! and from the HTTP agent.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use support::sse::SseReader;
use support::{Api, Server, require_tool};
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What a WebSocket connection attempt gave: the socket, or the HTTP status refusing it.
async fn ws(server: &Server, path: &str) -> Result<Ws, u16> {
    let url = format!("{}{path}", server.http.replacen("http://", "ws://", 1));
    match tokio_tungstenite::connect_async(url).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("WebSocket connection failed: {e}"),
    }
}

async fn ticket(api: &Api) -> String {
    let (status, body) = api.get("/kafka-ws/v1/ticket").await;
    assert_eq!(status, 200, "{body}");
    let t = body["ticket"].as_str().unwrap().to_string();
    assert!(t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()), "64 hex: {t}");
    t
}

/// Opens a kafka-ws socket on `topic` with a new ticket and the given query suffix.
async fn topic(server: &Server, api: &Api, topic: &str, query: &str) -> Ws {
    let t = ticket(api).await;
    ws(server, &format!("/kafka-ws/v1/topics/{topic}?ticket={t}{query}")).await.expect("upgrade")
}

/// The next text message as JSON, within 10 s.
async fn next_json(ws: &mut Ws) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("a message within 10 s") {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// Reads until the server's Close frame (skipping data) and returns its code and reason.
/// A socket dropped without a Close frame fails the test (dojot #2025).
async fn close_of(ws: &mut Ws) -> (u16, String) {
    loop {
        match tokio::time::timeout(Duration::from_secs(15), ws.next()).await.expect("a close within 15 s") {
            Some(Ok(Message::Close(Some(frame)))) => return (u16::from(frame.code), frame.reason.to_string()),
            Some(Ok(Message::Close(None))) => panic!("a Close frame without a code"),
            Some(Ok(_)) => {}
            other => panic!("the socket ended without a Close frame: {other:?}"),
        }
    }
}

fn mosquitto_pub(server: &Server, device: &str, secret: &str, payload: &Value) {
    let (host, port) = server.mqtt.as_ref().unwrap().rsplit_once(':').unwrap();
    let ok = Command::new("mosquitto_pub")
        .args(["-h", host, "-p", port, "-u", &format!("admin:{device}"), "-P", secret])
        .args(["-t", &format!("admin:{device}/attrs"), "-m", &payload.to_string(), "-q", "1"])
        .status()
        .unwrap();
    assert!(ok.success(), "mosquitto_pub");
}

#[tokio::test]
async fn kafka_ws_streams_filtered_readings_in_order_and_lifecycle_events() {
    if !require_tool("mosquitto_pub", "mosquitto-clients") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let api = Api::admin(&server).await;
    let template = api.thermometer_template().await;
    let (id, secret) = api.device_with_secret(template, "kitchen").await;

    let query = "&fields=metadata/deviceid,attrs/temperature&where=attrs.temperature=gte:20;";
    let mut hot = topic(&server, &api, "admin.device-data", query).await;
    let mut all = topic(&server, &api, "admin.device-data", "").await;
    let mut life = topic(&server, &api, "admin.dojot.device-manager.device", "").await;
    // Another tenant's subscriber sees none of it.
    let alice = api.tenant_admin("alice", "acme").await;
    let mut foreign = topic(&server, &alice, "acme.device-data", "").await;

    mosquitto_pub(&server, &id, &secret, &json!({"temperature": 15}));
    mosquitto_pub(&server, &id, &secret, &json!({"temperature": 25, "fan": 0}));
    let first = next_json(&mut all).await;
    assert_eq!(first["attrs"], json!({"temperature": 15}));
    assert_eq!(first["metadata"]["deviceid"], id.as_str());
    assert_eq!(first["metadata"]["tenant"], "admin");
    assert!(first["metadata"]["timestamp"].as_i64().unwrap() > 1_600_000_000_000, "ms: {first}");
    assert_eq!(next_json(&mut all).await["attrs"], json!({"temperature": 25, "fan": 0}));
    // Filtered: 15 was not sent (not an empty message), 25 was, projected.
    assert_eq!(next_json(&mut hot).await, json!({"metadata": {"deviceid": id}, "attrs": {"temperature": 25}}));

    // Per-device order, readings one after another over the HTTP agent.
    for t in 100..130 {
        assert_eq!(api.send_reading("admin", &id, &secret, json!({"temperature": t})).await.0, 204);
    }
    for t in 100..130 {
        assert_eq!(next_json(&mut hot).await["attrs"]["temperature"], t, "in order");
    }

    // Lifecycle: actuation and an update, as device-manager published them.
    let (status, body) = api.put(&format!("/device/{id}/actuate"), json!({"attrs": {"fan": 1}})).await;
    assert_eq!(status, 200, "{body}");
    let configure = next_json(&mut life).await;
    assert_eq!(configure["event"], "configure");
    assert_eq!(configure["data"], json!({"id": id, "attrs": {"fan": 1}}));
    assert_eq!(configure["meta"]["service"], "admin");
    assert!(configure["meta"]["timestamp"].is_i64());
    let (status, body) =
        api.put(&format!("/device/{id}"), json!({"label": "kitchen 2", "templates": [template]})).await;
    assert_eq!(status, 200, "{body}");
    let update = next_json(&mut life).await;
    assert_eq!((update["event"].as_str(), update["data"]["label"].as_str()), (Some("update"), Some("kitchen 2")));

    let quiet = tokio::time::timeout(Duration::from_millis(300), foreign.next()).await;
    assert!(quiet.is_err(), "another tenant's stream got {quiet:?}");

    // The client closes: the server answers the handshake.
    all.close(None).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), all.next()).await.expect("the server's answer") {
            Some(Ok(Message::Close(_))) | None => break,
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("{e}"),
        }
    }
}

#[tokio::test]
async fn kafka_ws_refusals_use_its_codes_and_always_close_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let api = Api::admin(&server).await;

    // Before the upgrade: not a WebSocket, no ticket, a bad or used ticket, no JWT.
    let (status, body) = api.get("/kafka-ws/v1/topics/admin.device-data").await;
    assert_eq!(status, 426, "{body}");
    assert!(body["message"].as_str().unwrap().contains("WebSocket"), "{body}");
    assert_eq!(ws(&server, "/kafka-ws/v1/topics/admin.device-data").await.err(), Some(401));
    assert_eq!(
        ws(&server, &format!("/kafka-ws/v1/topics/admin.device-data?ticket={}", "ab".repeat(32))).await.err(),
        Some(401)
    );
    let t = ticket(&api).await;
    let path = format!("/kafka-ws/v1/topics/admin.device-data?ticket={t}");
    drop(ws(&server, &path).await.expect("first use"));
    assert_eq!(ws(&server, &path).await.err(), Some(401), "single use");
    assert_eq!(Api::new(&server.http).get("/kafka-ws/v1/ticket").await.0, 401);

    // After it: close codes, each with a Close frame.
    let cases = [
        ("acme.device-data", "", 4403),
        ("ADMIN.device-data", "&where=temperature", 4000),
        ("admin.device-data", "&where=attrs.t=like:1;", 4001),
        ("admin.device-data", "&where=attrs.t=in:%22%5Cq%22;", 4002),
        ("admin.device-data", "&where=attrs.t=gt:1,2;", 4003),
        ("admin.device-data", "&where=attrs.t=gt:warm;", 4004),
        ("admin.device-data", "&fields=attrs(t", 4000),
        ("admin.notifications", "", 4404),
    ];
    for (name, query, code) in cases {
        let mut socket = topic(&server, &api, name, query).await;
        let (got, reason) = close_of(&mut socket).await;
        assert_eq!(got, code, "{name}{query}: {reason}");
        assert!(!reason.is_empty(), "a reason for {code}");
    }
}

#[tokio::test]
async fn streams_are_limited_in_number_life_and_queue_and_end_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let flags =
        ["--ticket-ttl-secs", "1", "--stream-max-life-secs", "3", "--max-streams-per-user", "2", "--stream-queue", "8"];
    let mut server = Server::start(dir.path(), &flags);
    let api = Api::admin(&server).await;
    let template = api.thermometer_template().await;
    let (id, secret) = api.device_with_secret(template, "d").await;

    // An expired ticket.
    let t = ticket(&api).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(ws(&server, &format!("/kafka-ws/v1/topics/admin.device-data?ticket={t}")).await.err(), Some(401));

    // Lifetime: 4408.
    let mut old = topic(&server, &api, "admin.device-data", "").await;
    assert_eq!(close_of(&mut old).await.0, 4408);
    drop(old);

    // At most 2 streams per user: the third is closed with 4429 (and SSE answers 429).
    let a = topic(&server, &api, "admin.device-data", "").await;
    let mut slow = topic(&server, &api, "admin.device-data", "").await;
    let mut third = topic(&server, &api, "admin.device-data", "").await;
    assert_eq!(close_of(&mut third).await.0, 4429);
    assert_eq!(api.get("/stream/devices").await.0, 429);
    drop(a);

    // A client that does not read: once its queue (8) is full it is closed with 4008,
    // and the rest of the server goes on. 30 KB readings fill the socket buffers fast.
    let blob = "x".repeat(30_000);
    for t in 0..300 {
        let (status, body) = api.send_reading("admin", &id, &secret, json!({"temperature": t, "blob": blob})).await;
        assert_eq!(status, 204, "{body}");
    }
    let (code, reason) = close_of(&mut slow).await;
    assert_eq!(code, 4008, "{reason}");
    let (status, _) = api.get(&format!("/history/device/{id}/history?lastN=1&attr=temperature")).await;
    assert_eq!(status, 200, "ingest went on");

    // SIGTERM: an open WebSocket gets 1001 and an open SSE stream ends; the server exits.
    let mut open = topic(&server, &api, "admin.device-data", "").await;
    let mut sse = api.request(reqwest::Method::GET, "/stream/devices").send().await.unwrap();
    assert_eq!(sse.status(), 200);
    assert!(server.terminate(), "a clean exit with streams open");
    assert_eq!(close_of(&mut open).await.0, 1001);
    let mut rest = Vec::new();
    while let Ok(Some(chunk)) = sse.chunk().await {
        rest.extend_from_slice(&chunk);
    }
    assert!(String::from_utf8_lossy(&rest).contains("event: close"), "{}", String::from_utf8_lossy(&rest));
}

#[tokio::test]
async fn sse_streams_filter_and_resume_with_last_event_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--stream-replay", "5"]);
    let api = Api::admin(&server).await;
    let template = api.thermometer_template().await;
    let (a, secret_a) = api.device_with_secret(template, "a").await;
    let (b, secret_b) = api.device_with_secret(template, "b").await;

    let mut one = SseReader::open(&api, &format!("/stream/devices/{a}?where=attrs.temperature=lt:50;"), None).await;
    let mut tenant = SseReader::open(&api, "/stream/devices?fields=attrs", None).await;
    for (dev, secret, t) in [(&a, &secret_a, 10), (&b, &secret_b, 11), (&a, &secret_a, 99), (&a, &secret_a, 12)] {
        assert_eq!(api.send_reading("admin", dev, secret, json!({"temperature": t})).await.0, 204);
    }
    let (_, first) = one.reading().await;
    assert_eq!((first["metadata"]["deviceid"].as_str(), first["attrs"]["temperature"].as_i64()), (Some(&*a), Some(10)));
    let (last_id, second) = one.reading().await;
    assert_eq!(second["attrs"]["temperature"], 12, "b's reading and 99 were filtered out");
    for t in [10, 11, 99, 12] {
        assert_eq!(tenant.reading().await.1, json!({"attrs": {"temperature": t}}), "fields=attrs");
    }

    // Disconnected, two readings missed; resuming gets exactly them, then live ones.
    drop(one);
    for t in [13, 14] {
        assert_eq!(api.send_reading("admin", &a, &secret_a, json!({"temperature": t})).await.0, 204);
    }
    assert_eq!(tenant.reading().await.1["attrs"]["temperature"], 13);
    assert_eq!(tenant.reading().await.1["attrs"]["temperature"], 14);
    let mut resumed = SseReader::open(&api, &format!("/stream/devices/{a}"), Some(&last_id)).await;
    assert_eq!(resumed.reading().await.1["attrs"]["temperature"], 13);
    assert_eq!(resumed.reading().await.1["attrs"]["temperature"], 14);
    assert_eq!(api.send_reading("admin", &a, &secret_a, json!({"temperature": 15})).await.0, 204);
    assert_eq!(resumed.reading().await.1["attrs"]["temperature"], 15);

    // Beyond the window (5 kept per tenant): a gap event first, then live.
    for t in 16..24 {
        assert_eq!(api.send_reading("admin", &b, &secret_b, json!({"temperature": t})).await.0, 204);
    }
    let mut late = SseReader::open(&api, &format!("/stream/devices/{a}"), Some(&last_id)).await;
    assert_eq!(late.next().await.event.as_deref(), Some("gap"));

    // A ticket instead of a JWT (EventSource cannot send headers), once; errors as JSON.
    let t = ticket(&api).await;
    let anonymous = Api::new(&server.http);
    let path = format!("/stream/devices/{a}?ticket={t}");
    let resp = anonymous.request(reqwest::Method::GET, &path).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(anonymous.get(&path).await.0, 401, "single use");
    assert_eq!(anonymous.get("/stream/devices").await.0, 401);
    assert_eq!(api.get("/stream/devices/nosuch").await.0, 404);
    let (status, body) = api.get("/stream/devices?where=attrs.t=gt:warm;").await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn socket_io_2_clients_receive_device_and_all_events() {
    if !require_tool("mosquitto_pub", "mosquitto-clients") || !require_tool("node", "nodejs") {
        return;
    }
    let client = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/socketio_listen.js");
    let modules = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/node_modules/socket.io-client");
    if !std::path::Path::new(modules).exists() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "socket.io-client is missing: scripts/test.sh runs npm ci"
        );
        eprintln!("\n!!!!! SKIPPED: socket.io-client not installed; scripts/test.sh runs npm ci !!!!!\n");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let api = Api::admin(&server).await;
    let template = api.thermometer_template().await;
    let (id, secret) = api.device_with_secret(template, "d").await;

    let token = |api: Api| async move {
        let (status, body) = api.get("/stream/socketio").await;
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().unwrap().to_string()
    };
    let listen = |token: String| {
        let mut child = tokio::process::Command::new("node")
            .args([client, &server.http, &token])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node");
        let lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        (child, lines)
    };
    async fn line(lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>) -> Value {
        let l = tokio::time::timeout(Duration::from_secs(15), lines.next_line()).await.expect("a line in 15 s");
        serde_json::from_str(&l.unwrap().expect("the client ended")).unwrap()
    }

    let used = token(api.clone()).await;
    let (_child, mut lines) = listen(used.clone());
    assert_eq!(line(&mut lines).await, json!({"connected": true}));
    mosquitto_pub(&server, &id, &secret, &json!({"temperature": 21.5}));
    let seen = [line(&mut lines).await, line(&mut lines).await];
    let mut names: Vec<&str> = seen.iter().map(|e| e["event"].as_str().unwrap()).collect();
    names.sort();
    let mut expected = vec!["all", id.as_str()];
    expected.sort();
    assert_eq!(names, expected, "events <device id> and all");
    for e in &seen {
        assert_eq!(e["data"]["attrs"], json!({"temperature": 21.5}));
        assert_eq!(e["data"]["metadata"]["deviceid"], id.as_str());
    }
    // Actuation arrives normalised to the same shape, as data-broker sent it.
    assert_eq!(api.put(&format!("/device/{id}/actuate"), json!({"attrs": {"fan": 2}})).await.0, 200);
    let e = line(&mut lines).await;
    assert_eq!(e["data"]["attrs"], json!({"fan": 2}), "{e}");

    // A used token, a made-up one: refused with a reason.
    for bad in [used, "ab".repeat(32)] {
        let (_c, mut l) = listen(bad);
        let e = line(&mut l).await;
        assert!(e["error"].as_str().is_some_and(|m| m.contains("invalid token")), "{e}");
    }
}

#[tokio::test]
async fn tickets_and_tokens_never_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let server = Server::start_logging(&dir.path().join("data"), &[], "debug", &log);
    let api = Api::admin(&server).await;
    let mut secrets = vec![api.jwt.clone().unwrap()];
    // A ticket used on a WebSocket, one refused, one used for SSE, a socket.io token.
    let used = ticket(&api).await;
    let path = format!("/kafka-ws/v1/topics/admin.device-data?ticket={used}&where=attrs.t=gt:1;");
    let mut socket = ws(&server, &path).await.unwrap();
    socket.close(None).await.unwrap();
    assert_eq!(ws(&server, &path).await.err(), Some(401));
    secrets.push(used);
    let t = ticket(&api).await;
    secrets.push(t.clone());
    let resp = Api::new(&server.http)
        .request(reqwest::Method::GET, &format!("/stream/devices?ticket={t}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);
    let (_, body) = api.get("/stream/socketio").await;
    let token = body["token"].as_str().unwrap().to_string();
    let url =
        format!("{}/socket.io/?EIO=3&transport=websocket&token={token}", server.http.replacen("http://", "ws://", 1));
    drop(tokio_tungstenite::connect_async(url).await);
    secrets.push(token);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("/stream/devices"), "the debug log names requests: {}", &text[..text.len().min(2000)]);
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()), "a secret in the log");
    }
}
