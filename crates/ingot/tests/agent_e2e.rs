//! `ingot agent` (seed 004, go-lo agent v0.3.1's API) against the real binary: a
//! load test written as a shell script (the line protocol) is uploaded and queued over
//! HTTP as go-lo's CLI does it; it runs with its users; every result reaches a collector
//! (the last partial batch too) and its logs land in `<logs>/<job>/`; a go-lo-style load
//! test (this test binary, serving Go's net/rpc over gob) is called as go-lo's agent
//! calls one, and a busy port is an error; every bad input is refused with a status and
//! words; the agent wants a token off loopback; and a queued job survives a SIGKILL of
//! the agent, while the one cut off is reported, not rerun. `ingot load http` and
//! `ingot load mqtt` spread over two agents against a real `ingot serve`, which is also
//! their collector: the merged histograms are exactly the agents' added, and the
//! collector's totals agree with them.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const TOKEN: &str = "agent-test-token-1";

/// A load test in the line protocol: one Output line per line read.
const SCRIPT: &str = r#"#!/bin/sh
while read -r line; do
  seq=$(echo "$line" | tr -cd '0-9')
  printf '{"sequenceID":%s,"url":"http://example.com/","method":"GET","status":200,"size":12,"timestamp":"2026-12-05T12:00:00Z","duration":1000,"error":null}\n' "$seq"
done
"#;

/// A running `ingot agent`.
struct Agent {
    child: Child,
    base: String,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Agent {
    fn start(data: &Path, logs: &Path, collector: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ingot"))
            .args(["agent", "--listen", "127.0.0.1:0", "--token", TOKEN, "--collector", collector])
            .arg("--data-dir")
            .arg(data)
            .arg("--logs")
            .arg(logs)
            .args(extra)
            .env("INGOT_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start ingot agent");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines.next().expect("the agent says where it listens").unwrap();
        let base = line.strip_prefix("ingot agent: listening on ").expect(&line).to_string();
        std::thread::spawn(move || for _ in lines {});
        Self { child, base }
    }

    fn http(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new().request(method, format!("{}{path}", self.base)).bearer_auth(TOKEN)
    }

    async fn upload(&self, name: &str, bytes: Vec<u8>) -> (u16, Value) {
        let form = reqwest::multipart::Form::new()
            .part("file", reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()));
        reply(self.http(reqwest::Method::POST, "/upload").multipart(form)).await
    }

    async fn queue(&self, job: Value) -> (u16, Value) {
        reply(self.http(reqwest::Method::POST, "/queue").json(&job)).await
    }

    async fn jobs(&self) -> Value {
        reply(self.http(reqwest::Method::GET, "/jobs")).await.1
    }
}

async fn reply(rb: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = rb.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A collector: `POST /push/{job}` with a JSON array, remembered per job.
async fn collector() -> (String, Arc<Mutex<HashMap<String, Vec<Vec<Value>>>>>) {
    use axum::extract::Path as P;
    let seen: Arc<Mutex<HashMap<String, Vec<Vec<Value>>>>> = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/push/{job}",
        axum::routing::post(move |P(job): P<String>, axum::Json(batch): axum::Json<Vec<Value>>| {
            let log = log.clone();
            async move {
                log.lock().unwrap().entry(job).or_default().push(batch);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

/// Waits (`limit`) until the agent runs nothing and has nothing queued.
async fn idle(agent: &Agent, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let jobs = agent.jobs().await;
        if jobs["running"].is_null() && jobs["queued"].as_array().is_some_and(Vec::is_empty) {
            return;
        }
        assert!(Instant::now() < deadline, "the agent is still busy: {jobs}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn off_loopback_the_agent_wants_a_token() {
    let out = Command::new(env!("CARGO_BIN_EXE_ingot"))
        .args(["agent", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(tempfile::tempdir().unwrap().path())
        .env_remove("INGOT_AGENT_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("needs a token") && said.contains("SSH tunnel"), "{said}");
}

#[tokio::test]
async fn a_script_load_test_runs_and_every_result_reaches_the_collector() {
    let (url, pushed) = collector().await;
    let (data, logs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let agent = Agent::start(data.path(), logs.path(), &url, &["--max-upload-bytes", "4096", "--max-users", "50"]);

    // The token, the methods, the refusals.
    let anon = reqwest::Client::new().post(format!("{}/queue", agent.base)).json(&json!({}));
    assert_eq!(reply(anon).await.0, 401);
    assert_eq!(reply(agent.http(reqwest::Method::GET, "/upload")).await.0, 405);
    assert_eq!(reply(agent.http(reqwest::Method::GET, "/nope")).await.0, 404);
    let empty = reqwest::multipart::Form::new().text("other", "x");
    let (status, said) = reply(agent.http(reqwest::Method::POST, "/upload").multipart(empty)).await;
    assert_eq!((status, said["message"].as_str()), (400, Some("http: no such file")));
    assert_eq!(agent.upload("big", vec![b'x'; 10_000]).await.0, 413);
    let (status, up) = agent.upload("load.sh", SCRIPT.as_bytes().to_vec()).await;
    assert_eq!(status, 200, "{up}");
    let binary = up["binary"].as_str().unwrap().to_string();
    let (_, elf) = agent.upload("a.out", vec![0x7f, b'E', b'L', b'F', 0, 0]).await;
    let bad_json = agent.http(reqwest::Method::POST, "/queue").body("{not json");
    assert_eq!(reply(bad_json).await.0, 400);
    for (job, words) in [
        (json!({"name": "../x", "users": 1, "duration": 1, "binary": binary}), "name"),
        (json!({"name": "a", "users": 0, "duration": 1, "binary": binary}), "users"),
        (json!({"name": "a", "users": 51, "duration": 1, "binary": binary}), "users"),
        (json!({"name": "a", "users": 1, "duration": 0, "binary": binary}), "duration"),
        (
            json!({"name": "a", "users": 1, "duration": 1, "binary": "0b7c6f1e-0000-4000-8000-000000000009"}),
            "invalid binary",
        ),
        (
            json!({"name": "a", "users": 1, "duration": 1, "binary": elf["binary"], "protocol": "pigeon"}),
            "gob or lines",
        ),
    ] {
        let (status, said) = agent.queue(job.clone()).await;
        assert_eq!(status, 400, "{job}");
        assert!(said["message"].as_str().unwrap_or_default().contains(words), "{job}: {said}");
    }

    // go-lo's CLI's request: 3 users for 2 s.
    let (status, queued) = agent.queue(json!({"name": "smoke", "users": 3, "duration": 2, "binary": binary})).await;
    assert_eq!((status, queued), (201, json!({"queued": true})));
    idle(&agent, Duration::from_secs(15)).await;
    let batches = pushed.lock().unwrap().get("smoke").cloned().unwrap_or_default();
    let results: Vec<&Value> = batches.iter().flatten().collect();
    let out_log = std::fs::read_to_string(logs.path().join("smoke/out.log")).unwrap();
    assert!(results.len() > 10, "iterations ran: {}", results.len());
    assert_eq!(
        results.len(),
        out_log.lines().count(),
        "every result reached the collector, the last partial batch too"
    );
    assert!(batches.iter().all(|b| b.len() <= 256), "batches of at most 256");
    let mut seqs: Vec<u64> = results.iter().map(|r| r["sequenceID"].as_u64().unwrap()).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), results.len(), "each iteration has its own sequence id");
    assert!(results.iter().all(|r| r["status"] == 200 && r["method"] == "GET"));
    assert!(logs.path().join("smoke/err.log").exists());
}

#[tokio::test]
async fn a_queued_job_survives_a_kill_and_the_one_cut_off_is_reported() {
    let (url, pushed) = collector().await;
    let (data, logs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let agent = Agent::start(data.path(), logs.path(), &url, &[]);
    let (_, up) = agent.upload("load.sh", SCRIPT.as_bytes().to_vec()).await;
    let binary = up["binary"].as_str().unwrap().to_string();
    assert_eq!(agent.queue(json!({"name": "long", "users": 1, "duration": 60, "binary": binary})).await.0, 201);
    assert_eq!(agent.queue(json!({"name": "after", "users": 2, "duration": 1, "binary": binary})).await.0, 201);
    let deadline = Instant::now() + Duration::from_secs(10);
    while agent.jobs().await["running"]["name"] != "long" {
        assert!(Instant::now() < deadline, "the first job starts");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(agent); // SIGKILL

    let agent = Agent::start(data.path(), logs.path(), &url, &[]);
    idle(&agent, Duration::from_secs(15)).await;
    assert!(pushed.lock().unwrap().get("after").is_some_and(|b| !b.is_empty()), "the queued job ran after the restart");
    let err = std::fs::read_to_string(logs.path().join("long/err.log")).unwrap();
    assert!(err.contains("cut off by a restart"), "{err}");
    // The upload survived too: it can be queued again.
    assert_eq!(agent.queue(json!({"name": "again", "users": 1, "duration": 1, "binary": binary})).await.0, 201);
}

/// Not a test: the go-lo-style load test that `a_go_lo_load_test_is_called_over_net_rpc`
/// uploads (a script that runs this test binary again with `--ignored --exact
/// golo_fixture`). Like a program built with go-lo's library, it serves `Server.Run`
/// over Go's net/rpc with gob (`load::agent::rpc::serve`) and prints one Output line per
/// call.
#[tokio::test]
#[ignore = "the agent runs it as a load test"]
async fn golo_fixture() {
    let Ok(addr) = std::env::var("GOLO_RPC_ADDR") else { return };
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("the RPC address");
    let (stream, _) = listener.accept().await.unwrap();
    load::agent::rpc::serve(stream, |seq| async move {
        let output = json!({"sequenceID": seq, "url": "http://fixture.test/", "method": "POST", "status": 201,
                            "size": 2, "timestamp": "2026-12-05T12:00:00Z", "duration": 5000, "error": null});
        println!("{output}");
        Ok(())
    })
    .await
    .unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn a_go_lo_load_test_is_called_over_net_rpc() {
    let (url, pushed) = collector().await;
    let (data, logs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let port = free_port();
    let agent = Agent::start(data.path(), logs.path(), &url, &["--rpc-port", &port.to_string()]);
    let me = std::env::current_exe().unwrap();
    let script = format!("#!/bin/sh\nexec '{}' golo_fixture --exact --ignored --nocapture\n", me.display());
    let (_, up) = agent.upload("golo", script.into_bytes()).await;
    let binary = up["binary"].as_str().unwrap().to_string();
    let job = json!({"name": "rpc", "users": 4, "duration": 2, "binary": binary, "protocol": "gob"});
    assert_eq!(agent.queue(job).await.0, 201);
    idle(&agent, Duration::from_secs(20)).await;
    let results: Vec<Value> = pushed.lock().unwrap().get("rpc").cloned().unwrap_or_default().concat();
    assert!(results.len() > 10, "calls were made: {}", results.len());
    let out_log = std::fs::read_to_string(logs.path().join("rpc/out.log")).unwrap();
    let printed = out_log.lines().filter(|l| l.starts_with('{')).count();
    assert_eq!(results.len(), printed, "every Output the load test printed reached the collector");
    let mut seqs: Vec<u64> = results.iter().map(|r| r["sequenceID"].as_u64().unwrap()).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>(), "one call per sequence number, none lost");
    assert!(results.iter().all(|r| r["status"] == 201 && r["method"] == "POST"));

    // The port taken by someone else: the job says so and the agent goes on. Another
    // test of this binary may hold it already (it was free when picked, not reserved):
    // busy either way.
    let squatter = std::net::TcpListener::bind(("127.0.0.1", port));
    if let Err(e) = &squatter {
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}");
    }
    let job = json!({"name": "busy", "users": 1, "duration": 1, "binary": binary, "protocol": "gob"});
    assert_eq!(agent.queue(job).await.0, 201);
    idle(&agent, Duration::from_secs(10)).await;
    drop(squatter);
    let err = std::fs::read_to_string(logs.path().join("busy/err.log")).unwrap_or_default();
    assert!(err.contains(&format!("port {port} is busy")), "{err:?}");
}

/// A built-in HTTP job, no upload at all: `users` loops send the request until the time
/// is up, and every answer is an Output at the collector.
#[tokio::test]
async fn a_built_in_http_job_needs_no_program() {
    let served = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = served.clone();
    let app = axum::Router::new().route(
        "/target",
        axum::routing::post(move |body: String| {
            let count = count.clone();
            async move {
                assert_eq!(body, "ping");
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                "pong!"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = format!("http://{}/target", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (url, pushed) = collector().await;
    let (data, logs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let agent = Agent::start(data.path(), logs.path(), &url, &[]);
    let bad = json!({"name": "h", "users": 1, "duration": 1, "http": {"url": "file:///etc/passwd"}});
    assert_eq!(agent.queue(bad).await.0, 400);
    let job = json!({"name": "builtin", "users": 5, "duration": 2, "http": {"url": target, "method": "POST", "body": "ping"}});
    assert_eq!(agent.queue(job).await, (201, json!({"queued": true})));
    idle(&agent, Duration::from_secs(15)).await;
    let results: Vec<Value> = pushed.lock().unwrap().get("builtin").cloned().unwrap_or_default().concat();
    let served = served.load(std::sync::atomic::Ordering::Relaxed);
    assert!(results.len() > 10, "requests were made: {}", results.len());
    assert!(
        results.len() as u64 <= served && served <= results.len() as u64 + 5,
        "an Output per answered request ({} Outputs, {served} served; at most one per user in flight at the end)",
        results.len()
    );
    assert!(
        results.iter().all(|r| r["status"] == 200 && r["size"] == 5 && r["method"] == "POST" && r["error"].is_null())
    );
    assert!(results.iter().all(|r| r["duration"].as_u64().is_some_and(|d| d > 0)));
}

/// Runs `ingot load …` to its end: (success, stdout, stderr).
fn ingot_load(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out =
        Command::new(env!("CARGO_BIN_EXE_ingot")).arg("load").args(args).envs(env.iter().copied()).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// The job name `ingot load … --agents` gave its run (its "job … queued" line).
fn queued_job(stderr: &str) -> String {
    let line = stderr.lines().find(|l| l.starts_with("load: job ")).unwrap_or_else(|| panic!("{stderr}"));
    line.split_whitespace().nth(2).unwrap().to_string()
}

/// The number after `key` in `text` (e.g. "requests 6021").
fn number_after(text: &str, key: &str) -> f64 {
    let rest = text.split(key).nth(1).unwrap_or_else(|| panic!("no {key:?} in {text}"));
    rest.split_whitespace().next().unwrap().trim_end_matches(',').parse().unwrap()
}

/// `ingot load http` and `ingot load mqtt` spread over two agents against a real Ingot,
/// which collects the agents' results (an API token with the `loadtests` scope in the
/// collector URL, as go-lo's agent, sending no header, needs it): the merged report is
/// the agents' results added (latency histograms exactly), the collector holds the same
/// totals, the MQTT run's every acknowledged reading is in history; and the collector's
/// refusals.
#[tokio::test]
async fn scenarios_spread_over_two_agents_merge_exactly_and_reach_the_collector() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::Server::start(dir.path(), &[]);
    let api = support::Api::admin(&server).await;
    let (status, token) = api.post("/auth/tokens", json!({"name": "agents", "scopes": ["loadtests"]})).await;
    assert_eq!(status, 201, "{token}");
    let token = token["token"].as_str().unwrap().to_string();
    // The token as the collector URL's password: what go-lo's agent can carry too.
    let collector = server.http.replacen("http://", &format!("http://agents:{token}@"), 1);
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let agents = [
        Agent::start(dirs[0].path(), dirs[1].path(), &collector, &[]),
        Agent::start(dirs[2].path(), dirs[3].path(), &collector, &[]),
    ];
    let list = agents.iter().map(|a| a.base.trim_start_matches("http://").to_string()).collect::<Vec<_>>().join(",");

    // HTTP: 4 users on two agents for 2 s.
    let url = format!("{}/ping", server.http);
    let (ok, out, err) = ingot_load(
        &["http", "--url", &url, "--users", "4", "--duration", "2s", "--label", "ping", "--agents", &list],
        &[("INGOT_AGENT_TOKEN", TOKEN)],
    );
    assert!(ok, "{out}\n{err}");
    assert!(err.contains("] 100%") && err.contains("agents: "), "a progress bar and a live summary: {err}");
    let job = queued_job(&err);
    let requests = number_after(&out, "requests ") as u64;
    assert!(requests > 20 && out.contains("errors 0 "), "{out}");
    let (mut outputs, mut merged) = (0, load::report::latency_histogram());
    for agent in &agents {
        let (status, result) = reply(agent.http(reqwest::Method::GET, &format!("/jobs/{job}"))).await;
        assert_eq!((status, result["state"].as_str()), (200, Some("done")), "{result}");
        assert!(result["summary"].is_null() && result["outputs"].as_u64().unwrap() > 0, "{result}");
        outputs += result["outputs"].as_u64().unwrap();
        merged.add(load::report::decode_histogram(result["latency"].as_str().unwrap()).unwrap()).unwrap();
    }
    assert_eq!(outputs, requests, "the report adds the agents' results");
    let ms = |us: u64| format!("{:.2}", us as f64 / 1000.0);
    let (p50, p99, max) = (merged.value_at_quantile(0.5), merged.value_at_quantile(0.99), merged.max());
    let line = format!("latency p50 {} ms, p99 {} ms", ms(p50), ms(p99));
    assert!(out.contains(&line), "percentiles of the agents' histograms added: {line:?} in {out}");
    assert_eq!(merged.len(), requests);

    // The collector got every result, and its totals are the same histogram's.
    let (status, got) = api.get(&format!("/loadtests/{job}")).await;
    assert_eq!(status, 200, "{got}");
    let totals = &got["job"]["totals"];
    assert_eq!((totals["count"].as_u64(), totals["errors"].as_u64()), (Some(requests), Some(0)), "{got}");
    assert_eq!(totals["p99_ms"].as_f64(), Some(p99 as f64 / 1000.0), "{got}");
    assert_eq!(totals["max_ms"].as_f64(), Some(max as f64 / 1000.0), "{got}");
    let per_second: u64 = got["seconds"].as_array().unwrap().iter().map(|s| s["count"].as_u64().unwrap()).sum();
    assert_eq!(per_second, requests);
    let (_, listed) = api.get("/loadtests").await;
    assert_eq!(listed["jobs"][0]["name"].as_str(), Some(job.as_str()));

    // The same scenario here, without agents; and the refusals of a spread run.
    let (ok, out, err) = ingot_load(&["http", "--url", &url, "--users", "2", "--duration", "1s"], &[]);
    assert!(ok && out.contains("(here)") && number_after(&out, "requests ") > 5.0, "{out}\n{err}");
    let (ok, _, err) =
        ingot_load(&["http", "--url", &url, "--duration", "1s", "--agents", &list], &[("INGOT_AGENT_TOKEN", "wrong")]);
    assert!(!ok && err.contains("HTTP 401") && err.contains("queueing on agent"), "{err}");
    let (ok, _, err) = ingot_load(&["http", "--url", &url, "--duration", "1s", "--agents", "127.0.0.1:1"], &[]);
    assert!(!ok && err.contains("agent http://127.0.0.1:1 (queue)"), "{err}");
    let (ok, _, err) = ingot_load(&["http", "--url", &url, "--duration", "1500ms", "--agents", &list], &[]);
    assert!(!ok && err.contains("whole seconds"), "{err}");
    let (ok, _, err) = ingot_load(&["http", "--url", "http://192.0.2.1/", "--agents", &list], &[]);
    assert!(!ok && err.contains("not loopback"), "{err}");

    // MQTT: 20 devices, provisioned here, connected and publishing from the agents.
    let mqtt = server.mqtt.as_deref().unwrap();
    let load_mqtt = |devices: &str, label: &str, more: &[&str]| {
        let mut args = vec!["mqtt", "--http", &server.http, "--mqtt", mqtt, "--devices", devices];
        args.extend(["--duration", "2s", "--label", label]);
        args.extend_from_slice(more);
        ingot_load(&args, &[("INGOT_LOAD_PASSWORD", support::ADMIN_PASSWORD)])
    };
    let (ok, out, err) = load_mqtt("20", "spread-mqtt", &["--agents", &list, "--agent-token", TOKEN]);
    assert!(ok, "{out}\n{err}");
    let acked = number_after(&out, "acknowledged ") as u64;
    assert!(acked > 20, "{out}");
    assert_eq!(number_after(&out, "published ") as u64, acked, "{out}");
    assert!(out.contains("connected 20 ") && out.contains("unacknowledged 0"), "{out}");
    assert!(out.contains(", 0 devices not visible)"), "every acknowledged reading is in history: {out}");
    assert!(out.contains(&format!("({acked} samples)")), "one PUBACK latency per acknowledged reading: {out}");
    let mqtt_job = queued_job(&err);
    // Here, without agents: the report also sums up each second's PUBACK p99.
    let (ok, here, err) = load_mqtt("5", "here-mqtt", &[]);
    assert!(ok && here.contains("unacknowledged 0"), "{here}\n{err}");
    assert!(here.contains("PUBACK p99 by second median "), "{here}");
    for agent in &agents {
        let (_, result) = reply(agent.http(reqwest::Method::GET, &format!("/jobs/{mqtt_job}"))).await;
        assert_eq!(result["mqtt"]["devices"], 10, "{result}");
        assert!(!result.to_string().contains("secret"), "no device secret in a result");
    }
    // The agents sent the collector one summary a second: the same PUBACKs, the same p99.
    let (_, got) = api.get(&format!("/loadtests/{mqtt_job}")).await;
    let totals = &got["job"]["totals"];
    assert_eq!((totals["count"].as_u64(), totals["errors"].as_u64()), (Some(acked), Some(0)), "{got}");
    let p99 = format!("p99 {:.2} ms", totals["p99_ms"].as_f64().unwrap());
    assert!(
        out.contains(&format!("publish→PUBACK       p50 {:.2} ms, {p99}", totals["p50_ms"].as_f64().unwrap())),
        "{p99} in {out}"
    );

    // The collector's refusals.
    let push = |path: &str, auth: Option<&str>, body: &str| {
        let mut r = reqwest::Client::new()
            .post(format!("{}{path}", server.http))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = auth {
            r = r.bearer_auth(t);
        }
        reply(r)
    };
    let one = r#"[{"timestamp": "2026-12-05T10:00:00Z", "duration": 1000000, "status": 200}]"#;
    assert_eq!(push("/push/x", None, one).await.0, 401);
    let (_, metrics) = api.post("/auth/tokens", json!({"name": "fakeiot", "scopes": ["metrics"]})).await;
    assert_eq!(push("/push/x", metrics["token"].as_str(), one).await.0, 401, "a token without the scope");
    assert_eq!(push("/push/x?token=ingot_nope", None, one).await.0, 401);
    assert_eq!(push(&format!("/push/x?token={token}"), None, one).await.0, 200, "the token in the query");
    // go-lo's agent: no Content-Type, one Output, Basic auth from the URL.
    let golo = reqwest::Client::new()
        .post(format!("{}/push/golo", server.http))
        .basic_auth("agents", Some(&token))
        .body(r#"{"sequenceID": 1, "status": 200, "duration": 1000}"#);
    assert_eq!(reply(golo).await, (200, json!({"taken": 1})));
    let typed = reqwest::Client::new().post(format!("{}/push/golo", server.http)).bearer_auth(&token);
    assert_eq!(reply(typed.header("content-type", "text/plain").body("[]")).await.0, 400, "another declared type");
    assert_eq!(push("/push/x", Some(&token), one).await, (200, json!({"taken": 1})), "the token in the header");
    assert_eq!(push("/push/x", Some(api.jwt.as_deref().unwrap()), one).await.0, 200, "a platform token");
    for (body, words) in [
        ("{not json", "valid JSON"),
        ("5", "JSON array"),
        (r#"[{"timestamp": "yesterday"}]"#, "timestamp"),
        (r#"[{"duration": -5}]"#, "duration"),
    ] {
        let (status, said) = push("/push/x", Some(&token), body).await;
        assert_eq!(status, 400, "{body}");
        assert!(said["message"].as_str().unwrap_or_default().contains(words), "{body}: {said}");
    }
    assert_eq!(push("/push/a%20b", Some(&token), one).await.0, 400, "an unsafe job name");
    assert_eq!(api.get("/loadtests/nope").await.0, 404);
    let other = api.tenant_admin("olga", "othertenant").await;
    assert_eq!(other.get(&format!("/loadtests/{job}")).await.0, 404, "tenants apart");
    assert_eq!(other.get("/loadtests").await.1["jobs"], json!([]));
    assert_eq!(api.delete(&format!("/loadtests/{job}")).await.0, 204);
    assert_eq!(api.get(&format!("/loadtests/{job}")).await.0, 404);
}
