//! A real `ingot proxy` process on ephemeral ports, and a minimal HTTP client for it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct ProxyProcess {
    child: Child,
    pub listen: SocketAddr,
    pub http: SocketAddr,
    stdout_lines: Receiver<String>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh directory for one test's recovery file, removed when dropped.
pub fn scratch_dir(test: &str) -> ScratchDir {
    let dir = std::env::temp_dir().join(format!("ingot-proxy-e2e-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    ScratchDir(dir)
}

/// See [`scratch_dir`].
pub struct ScratchDir(PathBuf);

impl std::ops::Deref for ScratchDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl ProxyProcess {
    /// Starts `ingot proxy` forwarding to `forward`, listening on ephemeral loopback ports,
    /// and waits for its "ready" log line.
    pub fn start(forward: SocketAddr, recovery: &Path, extra_args: &[&str]) -> ProxyProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ingot"))
            .args(["proxy", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--forward"])
            .arg(forward.to_string())
            .arg("--recovery-path")
            .arg(recovery)
            .args(extra_args)
            .env("NO_COLOR", "1")
            .env("INGOT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ingot proxy");

        let (stdout_tx, stdout_lines) = channel();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if stdout_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr_log = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = channel();
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::clone(&stderr_log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let line = strip_ansi(&line);
                if line.contains("foo proxy ready") {
                    let _ = ready_tx.send(line.clone());
                }
                log.lock().expect("log lock").push(line);
            }
        });
        let ready = match ready_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => line,
            Err(_) => panic!("proxy did not start; stderr: {:?}", stderr_log.lock().expect("log lock")),
        };
        let field = |name: &str| -> SocketAddr {
            let prefix = format!("{name}=");
            ready
                .split_whitespace()
                .find_map(|word| word.strip_prefix(&prefix))
                .and_then(|addr| addr.parse().ok())
                .unwrap_or_else(|| panic!("no {name}= in {ready:?}"))
        };
        ProxyProcess { listen: field("listen"), http: field("http"), child, stdout_lines, stderr: stderr_log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.pid().to_string()).status().expect("kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// `kill -9` and reap.
    pub fn kill_hard(mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
    }

    /// Next line the proxy printed on stdout.
    pub fn stdout_line(&self, timeout: Duration) -> Option<String> {
        self.stdout_lines.recv_timeout(timeout).ok()
    }

    pub fn stderr_contains(&self, needle: &str) -> bool {
        self.stderr.lock().expect("log lock").iter().any(|line| line.contains(needle))
    }

    /// Waits until some stderr line contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.stderr_contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub async fn get(&self, path: &str, accept: Option<&str>) -> HttpResponse {
        http_get(self.http, path, accept).await
    }

    pub async fn stats(&self) -> serde_json::Value {
        let response = self.get("/stats", None).await;
        assert_eq!(response.status, 200);
        serde_json::from_str(&response.body).expect("stats JSON")
    }

    /// Open file descriptors of the proxy process.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).expect("proc fd").count()
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// User + system CPU time in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("proc stat");
        // Fields after the command name, which is in parentheses and may contain spaces.
        let after = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
    }
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

pub struct HttpResponse {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

/// `GET path` over HTTP/1.1 with `Connection: close`.
pub async fn http_get(addr: SocketAddr, path: &str, accept: Option<&str>) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect http");
    let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{accept}\r\n");
    stream.write_all(request.as_bytes()).await.expect("write http");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
        .await
        .expect("http response within 5 s")
        .expect("read http");
    let text = String::from_utf8(raw).expect("utf-8 http");
    let (head, body) = text.split_once("\r\n\r\n").expect("http head");
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status");
    let content_type = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type:").map(|v| v.trim().to_owned()))
        .unwrap_or_default();
    HttpResponse { status, content_type, body: body.to_owned() }
}
