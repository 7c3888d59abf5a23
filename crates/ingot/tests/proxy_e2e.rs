//! End-to-end tests of `ingot proxy`: the real binary between a real Foo server and
//! clients (see `support/`), on ephemeral loopback ports.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::foo::{FooServer, answer, exchange, round_trip, split_randomly};
use support::process::{ProxyProcess, scratch_dir};

fn unix_now_f64() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs_f64()
}

fn u(stats: &Value, key: &str) -> u64 {
    stats[key].as_u64().unwrap_or_else(|| panic!("{key} in {stats}"))
}

fn f(stats: &Value, key: &str) -> f64 {
    stats[key].as_f64().unwrap_or_else(|| panic!("{key} in {stats}"))
}

/// A session with everything a client may send: pipelining, `\r\n`, malformed lines,
/// binary garbage, an empty line, seq overflow, a long line and a last line without newline.
fn tricky_session() -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(b"REQ 1 Hey\nREQ 2 Hey there\nREQ 3\r\n");
    s.extend_from_slice(b"garbage\n\n\x00\xff\xfe\x01 binary\n");
    s.extend_from_slice(b"REQ 99999999999999999999999 overflow\n");
    s.extend_from_slice(b"REQ 6 data with  spaces\n");
    s.extend_from_slice(b"REQ 7 ");
    s.extend(std::iter::repeat_n(b'x', 50_000));
    s.extend_from_slice(b"\nREQ 8 tail without newline");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_bytes_unchanged_like_a_direct_connection() {
    let server = FooServer::start().await;
    let dir = scratch_dir("transparent");
    let proxy = ProxyProcess::start(server.addr, &dir.join("recovery.json"), &[]);

    let session = tricky_session();
    for seed in [1, 7, 42] {
        let chunks = split_randomly(&session, seed, 40_000);
        let direct = exchange(server.addr, &chunks).await;
        let proxied = exchange(proxy.listen, &chunks).await;
        assert!(direct.ends_with(b"ACK 8 ok\n"), "the server answers the last line at end of stream");
        assert_eq!(String::from_utf8_lossy(&proxied), String::from_utf8_lossy(&direct), "seed {seed}");
        assert_eq!(proxied, direct);
    }
    // Byte-at-a-time writes.
    let tiny: Vec<Vec<u8>> = b"REQ 10 a\nREQ 11\r\nxx\n".iter().map(|&b| vec![b]).collect();
    assert_eq!(exchange(proxy.listen, &tiny).await, exchange(server.addr, &tiny).await);

    // Per session: REQ 1 2 3 6 7 8 (overflow is malformed), 4 malformed lines, and one
    // answer per line: NAK for 3 and 6 and for the 4 malformed lines, ACK for the rest.
    let stats = proxy.stats().await;
    assert_eq!(u(&stats, "msg_req"), 3 * 6 + 2);
    assert_eq!(u(&stats, "msg_ack"), 3 * 4 + 2);
    assert_eq!(u(&stats, "msg_nak"), 3 * 6 + 1);
    assert_eq!(u(&stats, "msg_malformed"), 3 * 4 + 1);
    assert_eq!(u(&stats, "msg_total"), u(&stats, "msg_req") + u(&stats, "msg_ack") + u(&stats, "msg_nak"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_concurrent_pipelining_clients() {
    let server = FooServer::start().await;
    let dir = scratch_dir("concurrent");
    let proxy = ProxyProcess::start(server.addr, &dir.join("recovery.json"), &[]);

    const CLIENTS: u64 = 300;
    const REQUESTS: u64 = 20;
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let addr = proxy.listen;
        clients.push(tokio::spawn(async move {
            let mut session = Vec::new();
            let mut expected = Vec::new();
            for i in 0..REQUESTS {
                let seq = client * 1000 + i;
                session.extend_from_slice(format!("REQ {seq} from client {client}\n").as_bytes());
                expected.extend(answer(format!("REQ {seq}").as_bytes()));
            }
            let received = exchange(addr, &split_randomly(&session, client + 1, 200)).await;
            assert_eq!(received, expected, "client {client}");
        }));
    }
    for client in clients {
        client.await.expect("client task");
    }
    let stats = proxy.stats().await;
    assert_eq!(u(&stats, "msg_req"), CLIENTS * REQUESTS);
    assert_eq!(u(&stats, "msg_ack") + u(&stats, "msg_nak"), CLIENTS * REQUESTS);
    assert_eq!(u(&stats, "msg_malformed"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rates_match_a_paced_client_within_one_message() {
    let server = FooServer::start().await;
    let dir = scratch_dir("rates");
    let proxy = ProxyProcess::start(server.addr, &dir.join("recovery.json"), &[]);
    let mut stream = TcpStream::connect(proxy.listen).await.expect("connect");

    // 10 requests per second, each at .05, .15, ... .95 of a second, far from the second
    // boundaries, for 3 whole seconds; the client keeps the time of each request.
    const PER_SECOND: u64 = 10;
    let first_second = unix_now_f64().floor() as u64 + 1;
    let mut sent_at = Vec::new();
    let mut checks = Vec::new();
    for second in first_second..first_second + 3 {
        for k in 0..PER_SECOND {
            let target = second as f64 + 0.05 + k as f64 / PER_SECOND as f64;
            let wait = target - unix_now_f64();
            if wait > 0.0 {
                tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            }
            sent_at.push(unix_now_f64().floor() as u64);
            let reply = round_trip(&mut stream, &format!("REQ {} paced\n", sent_at.len())).await;
            assert!(reply.starts_with("ACK") || reply.starts_with("NAK"));
            if k == 5 && second > first_second {
                checks.push((proxy.stats().await, unix_now_f64().floor() as u64));
            }
        }
    }
    tokio::time::sleep(Duration::from_secs_f64(1.5 - unix_now_f64().fract())).await;
    checks.push((proxy.stats().await, unix_now_f64().floor() as u64));

    for (stats, now) in checks {
        let in_range = |from: u64, to: u64| sent_at.iter().filter(|&&s| s >= from && s < to).count() as f64;
        let expected_1s = in_range(now - 1, now);
        let expected_10s = in_range(now - 10, now) / 10.0;
        for kind in ["request", "response"] {
            let got_1s = f(&stats, &format!("{kind}_rate_1s"));
            let got_10s = f(&stats, &format!("{kind}_rate_10s"));
            assert!((got_1s - expected_1s).abs() <= 1.0, "{kind} 1s: {got_1s} vs {expected_1s} in {stats}");
            assert!((got_10s - expected_10s).abs() <= 0.1 + 1e-9, "{kind} 10s: {got_10s} vs {expected_10s} in {stats}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr2_prints_one_json_line_and_survives_a_storm() {
    let server = FooServer::start().await;
    let dir = scratch_dir("sigusr2");
    let mut proxy = ProxyProcess::start(server.addr, &dir.join("recovery.json"), &[]);
    let received = exchange(proxy.listen, &[b"REQ 1\nREQ 2\n".to_vec()]).await;
    assert_eq!(received, b"ACK 1 ok\nACK 2 ok\n");

    proxy.signal("USR2");
    let line = proxy.stdout_line(Duration::from_secs(5)).expect("a stats line on stdout");
    let stats: Value = serde_json::from_str(&line).expect("one JSON object per line");
    // The values are numbers, so every other quoted string is a key, in the printed order.
    let keys: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
    assert_eq!(
        keys,
        [
            "msg_total",
            "msg_req",
            "msg_ack",
            "msg_nak",
            "request_rate_1s",
            "request_rate_10s",
            "response_rate_1s",
            "response_rate_10s",
            "msg_malformed"
        ]
    );
    assert_eq!((u(&stats, "msg_req"), u(&stats, "msg_ack"), u(&stats, "msg_total")), (2, 2, 4));
    assert!(!proxy.stderr_contains("msg_total"), "the report goes to stdout only");

    // A storm of 200 signals: the process lives, answers, prints only JSON lines, and idles.
    let pid = proxy.pid().to_string();
    let status = std::process::Command::new("bash")
        .args(["-c", "for i in $(seq 200); do kill -USR2 \"$1\"; done", "storm", &pid])
        .status()
        .expect("bash");
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(proxy.is_running(), "the proxy survived the storm");
    let mut lines = 0;
    while let Some(line) = proxy.stdout_line(Duration::from_millis(300)) {
        serde_json::from_str::<Value>(&line).expect("JSON line");
        lines += 1;
    }
    assert!((1..=200).contains(&lines), "{lines} reports for 200 signals");
    assert_eq!(proxy.get("/health", None).await.status, 200);

    let before = proxy.cpu_ticks();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = proxy.cpu_ticks() - before;
    assert!(used <= 10, "idle proxy used {used} ticks of CPU in 1 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_after_kill_9_under_load_continues_totals_and_window() {
    let server = FooServer::start().await;
    let dir = scratch_dir("kill9");
    let recovery = dir.join("recovery.json");
    let proxy = ProxyProcess::start(server.addr, &recovery, &[]);

    // Load: a client sending requests continuously until the proxy dies.
    let addr = proxy.listen;
    let load = tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let mut seq = 0u64;
        loop {
            seq += 1;
            let batch: String = (0..10).map(|i| format!("REQ {} load\n", seq * 10 + i)).collect();
            if stream.write_all(batch.as_bytes()).await.is_err() {
                return;
            }
            let mut buf = [0u8; 4096];
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    });
    // Meanwhile the recovery file is always complete JSON (atomic replace).
    let deadline = Instant::now() + Duration::from_millis(2500);
    let mut reads = 0;
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read(&recovery) {
            serde_json::from_slice::<Value>(&text).expect("never a half-written recovery file");
            reads += 1;
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    assert!(reads > 100, "the recovery file was written ({reads} reads)");
    let before = proxy.stats().await;
    assert!(u(&before, "msg_req") > 0);
    proxy.kill_hard();
    load.await.expect("load task");

    let saved: Value = serde_json::from_slice(&std::fs::read(&recovery).expect("recovery file")).expect("JSON");
    let saved_req = saved["totals"]["req"].as_u64().expect("saved req");
    assert!(saved_req > 0 && saved_req <= u(&before, "msg_req") + 2000, "saved {saved_req}");

    // Restart within 10 s: totals are exactly the saved ones, the window still has traffic.
    let proxy = ProxyProcess::start(server.addr, &recovery, &[]);
    let after = proxy.stats().await;
    assert_eq!(u(&after, "msg_req"), saved_req);
    assert_eq!(
        u(&after, "msg_ack") + u(&after, "msg_nak"),
        saved["totals"]["ack"].as_u64().unwrap_or(0) + saved["totals"]["nak"].as_u64().unwrap_or(0)
    );
    assert!(f(&after, "request_rate_10s") > 0.0, "window continues: {after}");
    assert!(f(&after, "response_rate_10s") > 0.0, "window continues: {after}");
    assert!(proxy.stderr_contains("counters restored"));
}

fn recovery_file(age_seconds: u64) -> Value {
    let newest = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() - age_seconds;
    json!({
        "version": 1,
        "saved_at": newest,
        "totals": {"req": 700, "ack": 600, "nak": 100, "malformed": 5},
        "window": {"newest_second": newest, "buckets": vec![json!({"requests": 10, "responses": 10}); 11]},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_keeps_a_fresh_window_drops_a_stale_one_and_survives_a_corrupt_file() {
    let server = FooServer::start().await;
    let dir = scratch_dir("stale");
    let recovery = dir.join("recovery.json");

    // Saved 3 s ago: totals and the window continue (7 of the last 10 s had 10 req/s).
    std::fs::write(&recovery, recovery_file(3).to_string()).expect("write");
    let proxy = ProxyProcess::start(server.addr, &recovery, &[]);
    let stats = proxy.stats().await;
    assert_eq!((u(&stats, "msg_total"), u(&stats, "msg_req"), u(&stats, "msg_malformed")), (1400, 700, 5));
    let rate = f(&stats, "request_rate_10s");
    assert!((6.0..=8.0).contains(&rate), "window restored: {stats}");
    drop(proxy);

    // Saved 30 s ago (a restart after more than 10 s): totals continue, the window is empty.
    std::fs::write(&recovery, recovery_file(30).to_string()).expect("write");
    let proxy = ProxyProcess::start(server.addr, &recovery, &[]);
    let stats = proxy.stats().await;
    assert_eq!(u(&stats, "msg_total"), 1400);
    for key in ["request_rate_1s", "request_rate_10s", "response_rate_1s", "response_rate_10s"] {
        assert_eq!(f(&stats, key), 0.0, "{key} in {stats}");
    }
    drop(proxy);

    // A corrupt file: start from zero, keep the file aside, and write a good one again.
    std::fs::write(&recovery, b"{\"version\":1,\"tot").expect("write");
    let proxy = ProxyProcess::start(server.addr, &recovery, &[]);
    assert_eq!(u(&proxy.stats().await, "msg_total"), 0);
    assert!(dir.join("recovery.json.corrupt").exists());
    let deadline = Instant::now() + Duration::from_secs(3);
    while !recovery.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    serde_json::from_slice::<Value>(&std::fs::read(&recovery).expect("new file")).expect("valid JSON");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_saves_the_counters() {
    let server = FooServer::start().await;
    let dir = scratch_dir("sigterm");
    let recovery = dir.join("recovery.json");
    let mut proxy = ProxyProcess::start(server.addr, &recovery, &[]);
    exchange(proxy.listen, &[b"REQ 1\nREQ 2\nREQ 4\n".to_vec()]).await;
    proxy.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(5);
    while proxy.is_running() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!proxy.is_running(), "SIGTERM stops the proxy");
    let saved: Value = serde_json::from_slice(&std::fs::read(&recovery).expect("file")).expect("JSON");
    assert_eq!(saved["totals"]["req"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_down_closes_clients_cleanly_and_serves_when_it_returns() {
    // A port with nothing listening on it (yet).
    let backend: SocketAddr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
        probe.local_addr().expect("addr")
    };
    let dir = scratch_dir("backend-down");
    let mut proxy = ProxyProcess::start(backend, &dir.join("recovery.json"), &[]);

    for _ in 0..3 {
        let mut stream = TcpStream::connect(proxy.listen).await.expect("the proxy accepts");
        let _ = stream.write_all(b"REQ 1\n").await;
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.expect("closed in time");
        assert_eq!(read.expect("a clean close (FIN), not a reset"), 0);
    }
    assert!(proxy.is_running());
    assert!(proxy.wait_for_log("backend unavailable", Duration::from_secs(2)));
    let metrics = proxy.get("/metrics?format=prometheus", None).await.body;
    assert!(metrics.contains("foo_proxy_backend_unavailable_total 3\n"), "{metrics}");

    let _server = FooServer::start_on(backend).await.expect("backend comes back on the same port");
    let received = exchange(proxy.listen, &[b"REQ 1\n".to_vec()]).await;
    assert_eq!(received, b"ACK 1 ok\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_long_line_closes_only_that_connection() {
    let server = FooServer::start().await;
    let dir = scratch_dir("long-line");
    let proxy = ProxyProcess::start(server.addr, &dir.join("recovery.json"), &["--max-line-bytes", "1024"]);

    let mut good = TcpStream::connect(proxy.listen).await.expect("connect");
    assert_eq!(round_trip(&mut good, "REQ 1\n").await, "ACK 1 ok\n");
    // A line of exactly the limit is fine.
    let at_limit = format!("REQ 2 {}\n", "y".repeat(1024 - 6));
    assert_eq!(round_trip(&mut good, &at_limit).await, "ACK 2 ok\n");

    let mut bad = TcpStream::connect(proxy.listen).await.expect("connect");
    let mut flood = b"REQ 4 complete line first\nREQ 5 ".to_vec();
    flood.extend(std::iter::repeat_n(b'z', 4000));
    let _ = bad.write_all(&flood).await;
    let mut received = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 256];
        loop {
            match bad.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the over-long connection is closed");
    assert!(proxy.wait_for_log("line too long", Duration::from_secs(2)));

    assert_eq!(round_trip(&mut good, "REQ 7\n").await, "ACK 7 ok\n", "other connections are unaffected");
    let metrics = proxy.get("/metrics", Some("text/plain")).await.body;
    assert!(metrics.contains("foo_proxy_line_too_long_total 1\n"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoints_serve_json_prometheus_and_health() {
    let server = FooServer::start().await;
    let dir = scratch_dir("http");
    let proxy = ProxyProcess::start(server.addr, &dir.join("recovery.json"), &[]);
    exchange(proxy.listen, &[b"REQ 1\nbad\n".to_vec()]).await;

    for path in ["/stats", "/metrics"] {
        for accept in [None, Some("*/*"), Some("application/json")] {
            let response = proxy.get(path, accept).await;
            assert_eq!(response.status, 200);
            assert!(response.content_type.starts_with("application/json"), "{path} {accept:?}");
            let stats: Value = serde_json::from_str(&response.body).expect("JSON");
            assert_eq!((u(&stats, "msg_req"), u(&stats, "msg_malformed")), (1, 1));
        }
    }
    for (path, accept) in [
        ("/metrics?format=prometheus", None),
        ("/metrics", Some("text/plain")),
        ("/stats", Some("text/plain;version=0.0.4")),
    ] {
        let response = proxy.get(path, accept).await;
        assert_eq!(response.status, 200);
        assert!(response.content_type.starts_with("text/plain"), "{path}");
        assert!(response.body.contains("foo_proxy_messages_total{type=\"req\"} 1\n"), "{}", response.body);
        assert!(response.body.contains("foo_proxy_messages_total{type=\"nak\"} 1\n"));
    }
    for path in ["/health", "/heartbeat", "/status"] {
        let response = proxy.get(path, None).await;
        assert_eq!((response.status, response.body.as_str()), (200, r#"{"status":"OK!"}"#), "{path}");
    }
    assert_eq!(proxy.get("/nope", None).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_descriptor_or_connection_leak_after_500_connections() {
    let server = FooServer::start().await;
    let dir = scratch_dir("fd-leak");
    let proxy = ProxyProcess::start(server.addr, &dir.join("recovery.json"), &[]);
    // Let the recovery saver and HTTP server settle into their steady descriptors.
    proxy.stats().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let baseline = proxy.open_fds();

    for batch in 0..10u64 {
        let mut tasks = Vec::new();
        for i in 0..50u64 {
            let addr = proxy.listen;
            tasks.push(tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await.expect("connect");
                match (batch * 50 + i) % 4 {
                    // A normal session.
                    0 => {
                        assert_eq!(round_trip(&mut stream, "REQ 1\n").await, "ACK 1 ok\n");
                    }
                    // Abrupt close right after connecting.
                    1 => drop(stream),
                    // Reset (SO_LINGER 0) in the middle of a pipelined burst.
                    2 => {
                        let _ = stream.write_all(b"REQ 1\nREQ 2\nREQ 3\ngarbage").await;
                        // Deprecated because a non-zero linger blocks on drop; zero resets at once.
                        #[allow(deprecated)]
                        stream.set_linger(Some(Duration::ZERO)).expect("linger");
                        drop(stream);
                    }
                    // Half-close without ever reading the replies.
                    _ => {
                        let _ = stream.write_all(b"REQ 1\nREQ 2\n").await;
                        let _ = stream.shutdown().await;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }));
        }
        for task in tasks {
            task.await.expect("client");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut fds = proxy.open_fds();
    while fds > baseline && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        fds = proxy.open_fds();
    }
    assert!(fds <= baseline, "descriptors: {fds} after vs {baseline} before");
    let metrics = proxy.get("/metrics?format=prometheus", None).await.body;
    assert!(metrics.contains("foo_proxy_connections_active 0\n"), "{metrics}");
    assert!(metrics.contains("foo_proxy_connections_accepted_total 500\n"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_never_reads_gets_backpressure_not_memory() {
    let server = FooServer::start().await;
    let dir = scratch_dir("never-reads");
    let proxy = ProxyProcess::start(server.addr, &dir.join("recovery.json"), &[]);
    let rss_before = proxy.rss_kib();

    // Write requests without reading a single reply until the writes stall.
    let mut hog = TcpStream::connect(proxy.listen).await.expect("connect");
    let batch: String = (1..=1000).map(|i| format!("REQ {i} never read\n")).collect();
    let mut written = 0usize;
    while let Ok(Ok(())) = tokio::time::timeout(Duration::from_millis(500), hog.write_all(batch.as_bytes())).await {
        written += batch.len();
        assert!(written < 512 << 20, "writes never stalled: no backpressure");
    }
    let rss_after = proxy.rss_kib();
    assert!(rss_after < rss_before + 20 * 1024, "RSS grew from {rss_before} KiB to {rss_after} KiB");

    // Everyone else is still served.
    let received = exchange(proxy.listen, &[b"REQ 1\n".to_vec()]).await;
    assert_eq!(received, b"ACK 1 ok\n");
    drop(hog);
}

#[test]
fn help_lists_the_flags_with_their_defaults() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ingot"))
        .args(["proxy", "--help"])
        .output()
        .expect("run ingot proxy --help");
    let help = String::from_utf8_lossy(&output.stdout);
    for expected in [
        "--listen",
        "[default: :8002]",
        "--forward",
        "[default: localhost:8001]",
        "--http",
        "[default: 0.0.0.0:8088]",
        "--recovery-path",
        "[default: .data/recovery.json]",
        "--max-line-bytes",
        "[default: 65536]",
    ] {
        assert!(help.contains(expected), "{expected} missing from:\n{help}");
    }
}
