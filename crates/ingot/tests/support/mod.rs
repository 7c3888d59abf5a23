//! Test support: start the real `ingot` binary on ephemeral ports and talk to it over
//! the network, as a user would.
#![allow(dead_code)] // each test file uses a different part of the support code

/// Headless Chromium through chromedriver (console and auction page tests).
pub mod browser;
/// A Foo server and client (proxy tests).
pub mod foo;
/// A backend (PostgreSQL, NATS) going away while devices publish.
pub mod outage;
/// A handle on a real `ingot proxy` process (proxy tests).
pub mod process;
/// Server-Sent Events (stream and flow tests).
pub mod sse;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

pub const ADMIN_PASSWORD: &str = "admin-password-1";

/// The store the end-to-end tests run `ingot serve` on: `INGOT_TEST_STORE=postgres` runs
/// them on PostgreSQL (scripts/test.sh does, after the SQLite run), anything else on the
/// embedded SQLite. The same tests, not copies: see [`store_url`].
pub fn on_postgres() -> bool {
    std::env::var("INGOT_TEST_STORE").is_ok_and(|v| v == "postgres")
}

/// The `--store` of the server on `data_dir`: its SQLite file, or on PostgreSQL a
/// database of its own (on the server of `INGOT_TEST_POSTGRES_URL`), created on the
/// first start and named in `data_dir/.test-store` so that a restart on the same data
/// directory finds the same data. Those databases are kept until the test server stops.
pub fn store_url(data_dir: &Path) -> String {
    if !on_postgres() {
        return format!("sqlite://{}", data_dir.join("ingot.db").display());
    }
    let file = data_dir.join(".test-store");
    if let Ok(url) = std::fs::read_to_string(&file) {
        return url;
    }
    // `TestDb::create` is async and this may run inside a test's runtime: a thread and
    // a runtime of its own.
    let db = std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(store::testing::TestDb::create())
    })
    .join()
    .unwrap()
    .expect("INGOT_TEST_STORE=postgres needs INGOT_TEST_POSTGRES_URL (scripts/test.sh sets both)");
    let url = db.keep();
    std::fs::create_dir_all(data_dir).unwrap();
    std::fs::write(&file, &url).unwrap();
    url
}

/// Whether `var` (a test server's URL that scripts/test.sh sets) is missing: then says
/// SKIPPED loudly and returns `true`; under CI=true it fails instead.
pub fn missing(var: &str) -> bool {
    if std::env::var(var).is_ok_and(|v| !v.is_empty()) {
        return false;
    }
    let test = std::thread::current().name().unwrap_or("a test").to_string();
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "{test}: CI=true and {var} is not set; run scripts/test.sh"
    );
    eprintln!("\n!!!!! SKIPPED {test}: {var} is not set; run scripts/test.sh !!!!!\n");
    true
}

/// `ingot serve` flags for the suite's NATS server (`INGOT_TEST_NATS_URL`, started by
/// scripts/test.sh) with a prefix of its own (servers of other tests share the NATS
/// server), or `None` after a loud SKIPPED; a failure under CI=true.
pub fn nats_args() -> Option<Vec<String>> {
    let url = match std::env::var("INGOT_TEST_NATS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            let test = std::thread::current().name().unwrap_or("a NATS test").to_string();
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "{test}: CI=true and INGOT_TEST_NATS_URL is not set; scripts/test.sh starts a NATS server"
            );
            eprintln!(
                "\n!!!!! SKIPPED {test}: INGOT_TEST_NATS_URL is not set (no nats-server); run scripts/test.sh !!!!!\n"
            );
            return None;
        }
    };
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let prefix = format!("e2e{}x{nanos:x}x{n}", std::process::id());
    // Small streams: each reserves its size on the server.
    // What a killed node held comes back after the ack wait: short, to keep tests short.
    let args = ["--bus", &url, "--bus-prefix", &prefix, "--bus-max-bytes", "67108864", "--bus-ack-wait-secs", "2"];
    Some(args.iter().map(|a| a.to_string()).collect())
}

/// The server's JWT secret, read from its store (to forge tokens in tests).
pub async fn jwt_secret(data_dir: &Path) -> Vec<u8> {
    stored_secret(data_dir, "jwt.secret").await
}

/// One of the server's installation secrets (`jwt.secret`, `ca`), read from its store.
pub async fn stored_secret(data_dir: &Path, name: &str) -> Vec<u8> {
    let url: store::StoreUrl = store_url(data_dir).parse().unwrap();
    let store = url.open(store::StoreOptions::default(), store::postgres::PgOptions::default()).await.unwrap();
    store.secret(name).await.unwrap().expect("the server made its secret")
}

/// A running `ingot serve`.
pub struct Server {
    child: Child,
    pub http: String,
    pub mqtt: Option<String>,
    pub https: Option<String>,
    /// The mutual-TLS MQTT listener, host:port.
    pub mqtts: Option<String>,
    pub data_dir: PathBuf,
    pub stdout: Vec<String>,
}

impl Server {
    /// Starts `ingot serve` on `data_dir` with ephemeral ports and the given extra flags.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(data_dir, extra, &[("INGOT_ADMIN_PASSWORD", ADMIN_PASSWORD)])
    }

    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn(data_dir, extra, env, Stdio::inherit())
    }

    /// Like [`Server::start`], logging at `filter` (`INGOT_LOG`) into the file `log`.
    pub fn start_logging(data_dir: &Path, extra: &[&str], filter: &str, log: &Path) -> Self {
        let file = std::fs::File::create(log).expect("log file");
        Self::spawn(data_dir, extra, &[("INGOT_ADMIN_PASSWORD", ADMIN_PASSWORD), ("INGOT_LOG", filter)], file.into())
    }

    fn spawn(data_dir: &Path, extra: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ingot"));
        cmd.args(["serve", "--data-dir"])
            .arg(data_dir)
            .env("INGOT_STORE", store_url(data_dir))
            .args(["--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0", "--https", "127.0.0.1:0"])
            .args(["--mqtts", "127.0.0.1:0"])
            .args(extra)
            .env_remove("INGOT_ADMIN_PASSWORD")
            // Tests survive process crashes, not power loss: skip fsync unless a test asks.
            .env("INGOT_SYNC_FULL", "false")
            .env("INGOT_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start ingot");
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            http: String::new(),
            mqtt: None,
            https: None,
            mqtts: None,
            data_dir: data_dir.to_path_buf(),
            stdout: vec![],
        };
        while server.http.is_empty() || server.https.is_none() {
            let line = rx.recv_timeout(Duration::from_secs(30)).expect("ingot did not report its HTTP address in 30 s");
            if let Some(addr) = line.strip_prefix("ingot: HTTP API listening on ") {
                server.http = addr.trim().to_string();
            }
            if let Some(rest) = line.strip_prefix("ingot: HTTPS listening on ") {
                server.https = rest.split_whitespace().next().map(str::to_string);
            }
            if let Some(addr) = line.strip_prefix("ingot: MQTT listening on ") {
                server.mqtt = Some(addr.trim().to_string());
            }
            if let Some(addr) = line.strip_prefix("ingot: MQTTS (mutual TLS) listening on ") {
                server.mqtts = Some(addr.trim().to_string());
            }
            server.stdout.push(line);
        }
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        for _ in 0..100 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client, optionally holding a JWT.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    pub jwt: Option<String>,
}

/// Status and JSON body (Null when the body is empty or not JSON).
pub type Reply = (u16, Value);

impl Api {
    pub fn new(base: &str) -> Self {
        Self { base: base.to_string(), http: reqwest::Client::new(), jwt: None }
    }

    /// Logs in and returns a client carrying the JWT.
    pub async fn login(base: &str, user: &str, password: &str) -> Self {
        Self::login_with(reqwest::Client::new(), base, user, password).await
    }

    /// Like [`Api::login`] with a given HTTP client (e.g. one trusting Ingot's CA).
    pub async fn login_with(http: reqwest::Client, base: &str, user: &str, password: &str) -> Self {
        let mut api = Self { base: base.to_string(), http, jwt: None };
        let (status, body) = api.post("/auth", json!({"username": user, "passwd": password})).await;
        assert_eq!(status, 200, "login as {user}: {body}");
        api.jwt = Some(body["jwt"].as_str().expect("jwt").to_string());
        api
    }

    pub async fn admin(server: &Server) -> Self {
        Self::login(&server.http, "admin", ADMIN_PASSWORD).await
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, format!("{}{}", self.base, path));
        match &self.jwt {
            Some(j) => rb.bearer_auth(j),
            None => rb,
        }
    }

    pub async fn send(rb: reqwest::RequestBuilder) -> Reply {
        let resp = rb.send().await.expect("HTTP request");
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap_or_default();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> Reply {
        Self::send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        Self::send(self.request(reqwest::Method::DELETE, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        Self::send(self.request(reqwest::Method::POST, path).json(&body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        Self::send(self.request(reqwest::Method::PUT, path).json(&body)).await
    }

    /// Creates an admin user of another tenant (which makes the tenant; this client must
    /// be an admin of tenant `admin`) and logs in as them.
    pub async fn tenant_admin(&self, username: &str, tenant: &str) -> Api {
        let (status, body) = self
            .post(
                "/auth/user",
                json!({"username": username, "service": tenant, "email": format!("{username}@example.com"),
                       "name": username, "profile": "admin", "passwd": "password-123"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body[1], 200, "dojot's [result, 200] shape");
        assert_eq!(body[0]["message"], "user created");
        Api::login(&self.base, username, "password-123").await
    }

    /// Creates a template of dynamic attributes `(label, value type)`; returns its id.
    pub async fn template(&self, label: &str, attrs: &[(&str, &str)]) -> i64 {
        let attrs: Vec<Value> =
            attrs.iter().map(|(l, t)| json!({"label": l, "type": "dynamic", "value_type": t})).collect();
        self.template_of(json!({"label": label, "attrs": attrs})).await
    }

    async fn template_of(&self, body: Value) -> i64 {
        let (status, body) = self.post("/template", body).await;
        assert_eq!(status, 200, "{body}");
        body["template"]["id"].as_i64().expect("template id")
    }

    /// Creates the tutorial's Thermometer Template; returns its id.
    pub async fn thermometer_template(&self) -> i64 {
        self.template_of(json!({"label": "Thermometer Template", "attrs": [
            {"label": "temperature", "type": "dynamic", "value_type": "float"},
            {"label": "fan", "type": "actuator", "value_type": "float"}]}))
            .await
    }

    /// Creates a device on `template`; returns (id, secret).
    pub async fn device_with_secret(&self, template: i64, label: &str) -> (String, String) {
        let (status, body) = self.post("/device", json!({"label": label, "templates": [template.to_string()]})).await;
        assert_eq!(status, 200, "{body}");
        let id = body["devices"][0]["id"].as_str().expect("device id").to_string();
        let (status, body) = self.post(&format!("/device/{id}/secret"), json!({})).await;
        assert_eq!(status, 200, "{body}");
        (id, body["secret"].as_str().expect("secret").to_string())
    }

    /// A device's values of `attr` in history, newest first, once there are `n` (10 s).
    pub async fn values(&self, device: &str, attr: &str, n: usize) -> Vec<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (status, body) = self.get(&format!("/history/device/{device}/history?attr={attr}&lastN=100")).await;
            if status == 200 && body.as_array().is_some_and(|a| a.len() >= n) {
                return body.as_array().unwrap().iter().map(|p| p["value"].clone()).collect();
            }
            assert!(std::time::Instant::now() < deadline, "{n} values of {attr} in history: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends a reading over the HTTP device agent.
    pub async fn send_reading(&self, tenant: &str, device: &str, secret: &str, data: Value) -> Reply {
        let rb = self
            .http
            .post(format!("{}/http-agent/v1/incoming-messages", self.base))
            .basic_auth(format!("{tenant}:{device}"), Some(secret))
            .json(&json!({"data": data}));
        Self::send(rb).await
    }
}

/// Chapter 9.2's kitchen flow, as dojot's flow editor exports it (a `tab`, `x`/`y`,
/// wires; `crates/flows/testdata/kitchen.json`), for the thermometers' template and the
/// alarm device.
pub fn kitchen_flow(template: i64, alarm: &str) -> Value {
    let text = include_str!("../../../flows/testdata/kitchen.json")
        .replace("$TEMPLATE", &template.to_string())
        .replace("$ALARM", alarm);
    serde_json::from_str(&text).unwrap()
}

/// A request body fed through a channel, for uploads that pause or never end: each
/// `Bytes` sent is a chunk of it, and it ends when the sender is dropped.
pub fn channel_body() -> (tokio::sync::mpsc::Sender<bytes::Bytes>, reqwest::Body) {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    (tx, reqwest::Body::wrap(ChannelBody(rx)))
}

struct ChannelBody(tokio::sync::mpsc::Receiver<bytes::Bytes>);

impl http_body::Body for ChannelBody {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|b| Ok(http_body::Frame::data(b))))
    }
}

/// Whether an external command exists. In CI (`CI=true`) a missing prerequisite fails
/// the test; elsewhere it is reported loudly and the caller skips.
pub fn require_tool(tool: &str, package: &str) -> bool {
    let found =
        Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{tool} is missing (Debian package {package}); scripts/test.sh installs it");
        }
        eprintln!(
            "\n!!!!! SKIPPED: {tool} not installed (Debian package {package}); run scripts/test.sh to install it !!!!!\n"
        );
    }
    found
}

/// The durability check: SIGKILLs `server` after the load has run for a while, restarts
/// it on the same data (with `restart_args`) and asserts that every acknowledged
/// `(device, value)` reading of attribute `temperature` is in history, waiting up to 20 s
/// for it to get there. `acked` is filled by the load while it runs.
pub async fn assert_acked_survive_sigkill(
    mut server: Server,
    restart_args: &[&str],
    devices: &[(String, String)],
    acked: &std::sync::Mutex<Vec<(String, i64)>>,
    load: Vec<tokio::task::JoinHandle<()>>,
    what: &str,
) {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill9();
    for t in load {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 50, "the load should have produced acknowledged readings, got {}", acked.len());
    let server = Server::start(&server.data_dir.clone(), restart_args);
    let api = Api::admin(&server).await;
    // On a NATS bus, acknowledged means in JetStream: history catches up after the restart
    // (what the killed process had pulled comes back after the bus's ack wait).
    let restarted = std::time::Instant::now();
    let deadline = restarted + Duration::from_secs(20);
    for (id, _) in devices {
        loop {
            let (status, hist) = api.get(&format!("/history/device/{id}/history?attr=temperature&firstN=100000")).await;
            let stored: std::collections::BTreeSet<i64> = if status == 200 {
                hist.as_array().unwrap().iter().map(|p| p["value"].as_i64().unwrap()).collect()
            } else {
                Default::default()
            };
            let missing: Vec<i64> =
                acked.iter().filter(|(d, s)| d == id && !stored.contains(s)).map(|(_, s)| *s).collect();
            if missing.is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "device {id}: {what} readings lost after SIGKILL: {missing:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    eprintln!(
        "durability: {} {what} readings, all present after SIGKILL ({:?} after the restart)",
        acked.len(),
        restarted.elapsed()
    );
}
