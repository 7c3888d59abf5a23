//! The agent's jobs and uploads, on disk so that both survive a restart (the original
//! kept uploads in /tmp and its queue in memory).
//!
//! - An upload is `<data>/binaries/<uuid>` (mode 0700), written to a temporary name and
//!   renamed when complete, so a half-written file is never run.
//! - The queue is `<data>/queue.json`: the job running (if any) and those waiting, in
//!   order, rewritten whole (temporary file, fsync, rename) at every change. A job found
//!   running at start was cut off by a crash or a kill: it is reported, not run again (a
//!   load test that silently runs twice is worse than one that says it was cut off).
//! - A queue request is checked before it is taken: its name is safe in a path, its users
//!   and duration are within bounds, its binary was uploaded here.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Notify;

use super::AgentError;

/// A queued load test, as `POST /queue` takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub name: String,
    /// Iterations in flight at once.
    pub users: u64,
    /// Seconds it runs.
    pub duration: u64,
    /// The upload's id ("" for a built-in job).
    pub binary: String,
    /// How the agent talks to it: `gob` (go-lo's net/rpc) or `lines` (see `runner`), or
    /// `http` for the built-in HTTP load test.
    #[serde(default = "lines")]
    pub protocol: String,
    /// The built-in HTTP load test's request, when `protocol` is `http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSpec>,
    /// A share of a spread `ingot load mqtt` run, when `protocol` is `mqtt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<MqttSpec>,
}

/// One agent's share of `ingot load mqtt --agents`: these devices connect and publish
/// from here. Their secrets are in the queue file (mode 0600) until the job ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSpec {
    /// Ingot's MQTT addresses, `host:port`, comma-separated (loopback only, as `ingot load`).
    pub mqtt: String,
    pub tenant: String,
    /// `[id, secret]` of each device.
    pub devices: Vec<(String, String)>,
    /// Messages/s over this share's devices; 0 = as fast as acknowledged.
    #[serde(default)]
    pub rate: f64,
    pub inflight: u16,
    pub duration_ms: u64,
    #[serde(default = "keep_alive")]
    pub keep_alive_secs: u64,
    #[serde(default = "drain_timeout")]
    pub drain_timeout_secs: u64,
}

fn keep_alive() -> u64 {
    60
}

fn drain_timeout() -> u64 {
    60
}

impl MqttSpec {
    fn parse(v: &Value, max_duration: u64) -> Result<Self, AgentError> {
        let bad = |m: String| AgentError::BadRequest(format!("mqtt: {m}"));
        let spec: Self = serde_json::from_value(v.clone()).map_err(|e| bad(e.to_string()))?;
        if spec.devices.is_empty() || spec.devices.len() > crate::MAX_DEVICES {
            return Err(bad(format!("devices must list 1 to {} [id, secret] pairs", crate::MAX_DEVICES)));
        }
        if !spec.rate.is_finite() || spec.rate < 0.0 {
            return Err(bad("rate must be 0 (as fast as acknowledged) or positive".into()));
        }
        if spec.inflight == 0 || spec.duration_ms == 0 || spec.duration_ms > max_duration.saturating_mul(1000) {
            return Err(bad(format!("inflight must be at least 1 and duration_ms from 1 to {}", max_duration * 1000)));
        }
        spec.args("check").mqtt_addrs().map_err(|e| bad(e.to_string()))?;
        Ok(spec)
    }

    /// The `ingot load mqtt` settings this share runs with.
    pub fn args(&self, label: &str) -> crate::MqttArgs {
        let secs = std::time::Duration::from_secs;
        crate::MqttArgs {
            target: crate::Target {
                http: String::new(),
                mqtt: self.mqtt.clone(),
                user: String::new(),
                password: String::new(),
                tenant: self.tenant.clone(),
            },
            devices: self.devices.len(),
            rate: self.rate,
            duration: std::time::Duration::from_millis(self.duration_ms),
            idle: false,
            tls_ca: None,
            tls_key_pem: None,
            inflight: self.inflight,
            connect_concurrency: 256,
            keep_alive: secs(self.keep_alive_secs),
            sample_interval: std::time::Duration::ZERO,
            drain_timeout: secs(self.drain_timeout_secs),
            server_pid: Vec::new(),
            label: label.into(),
            summary: None,
            agents: Vec::new(),
            plain_broker: false,
            agent_token: None,
        }
    }
}

/// The request a built-in HTTP job sends, over and over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpSpec {
    pub url: String,
    pub method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// Longest body of a built-in HTTP job's request.
pub const MAX_HTTP_BODY: usize = 64 * 1024;

impl HttpSpec {
    pub(crate) fn parse(v: &Value) -> Result<Self, AgentError> {
        let bad = |m: &str| AgentError::BadRequest(format!("http: {m}"));
        let url = v.get("url").and_then(Value::as_str).unwrap_or_default();
        if !(url.starts_with("http://") || url.starts_with("https://")) || reqwest::Url::parse(url).is_err() {
            return Err(bad("url must be an http:// or https:// URL"));
        }
        let method = v.get("method").and_then(Value::as_str).unwrap_or("GET").to_ascii_uppercase();
        if !["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"].contains(&method.as_str()) {
            return Err(bad("method must be GET, POST, PUT, PATCH, DELETE or HEAD"));
        }
        let body = match v.get("body") {
            None | Some(Value::Null) => None,
            Some(Value::String(b)) if b.len() <= MAX_HTTP_BODY => Some(b.clone()),
            Some(_) => return Err(bad(&format!("body must be a string of at most {MAX_HTTP_BODY} bytes"))),
        };
        Ok(Self { url: url.into(), method, body })
    }
}

fn lines() -> String {
    "lines".into()
}

/// What a queue request may ask for at most.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_users: u64,
    pub max_duration: u64,
}

/// A job's name is safe in a path: 1 to 64 of `A-Z a-z 0-9 . _ -`, not starting with a dot.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// An upload id has the form of a UUID.
fn valid_binary(id: &str) -> bool {
    id.len() == 36 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

#[derive(Default, Serialize, Deserialize)]
struct Saved {
    running: Option<Job>,
    queued: VecDeque<Job>,
}

/// Uploads and the queue.
pub struct Jobs {
    dir: PathBuf,
    state: Mutex<Saved>,
    /// Rings when a job is queued.
    pub queued: Notify,
}

impl Jobs {
    /// Opens (or makes) the agent's data directory; returns the jobs and the job a crash
    /// cut off, if any.
    pub fn open(dir: &Path) -> Result<(Self, Option<Job>), AgentError> {
        std::fs::create_dir_all(dir.join("binaries")).map_err(|e| AgentError::Io(dir.to_path_buf(), e))?;
        let file = dir.join("queue.json");
        let mut saved: Saved = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| AgentError::Io(file.clone(), std::io::Error::other(e.to_string())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved::default(),
            Err(e) => return Err(AgentError::Io(file, e)),
        };
        let cut_off = saved.running.take();
        let jobs = Self { dir: dir.to_path_buf(), state: Mutex::new(saved), queued: Notify::new() };
        jobs.save(&jobs.state.lock().unwrap_or_else(|p| p.into_inner()))?;
        Ok((jobs, cut_off))
    }

    fn save(&self, state: &Saved) -> Result<(), AgentError> {
        let file = self.dir.join("queue.json");
        let tmp = self.dir.join("queue.json.tmp");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                // MQTT shares carry device secrets.
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut f = options.open(&tmp)?;
            f.write_all(&serde_json::to_vec_pretty(state).unwrap_or_default())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &file)
        };
        write().map_err(|e| AgentError::Io(file, e))
    }

    /// Where upload `id` is.
    pub fn binary_path(&self, id: &str) -> PathBuf {
        self.dir.join("binaries").join(id)
    }

    /// Where a new upload is written before it is complete.
    pub fn upload_path(&self, id: &str) -> PathBuf {
        self.dir.join("binaries").join(format!(".{id}.part"))
    }

    /// Checks a `POST /queue` body and queues it: an upload's job (`binary`), or a
    /// built-in HTTP one (`http: {"url", "method"?, "body"?}`).
    pub fn queue(&self, body: &Value, limits: Limits) -> Result<Job, AgentError> {
        let bad = |m: String| AgentError::BadRequest(m);
        let name = body.get("name").and_then(Value::as_str).unwrap_or_default();
        if !valid_name(name) {
            return Err(bad(format!(
                "name {name:?} must be 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'"
            )));
        }
        if let Some(spec) = body.get("mqtt") {
            // Built in: a share of a spread MQTT run; its devices are its users.
            let spec = MqttSpec::parse(spec, limits.max_duration)?;
            let (users, duration) = (spec.devices.len() as u64, spec.duration_ms.div_ceil(1000));
            let job = Job {
                name: name.into(),
                users,
                duration,
                binary: String::new(),
                protocol: "mqtt".into(),
                http: None,
                mqtt: Some(spec),
            };
            return self.push(job);
        }
        let number = |key: &str, max: u64| match body.get(key).and_then(Value::as_u64) {
            Some(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(bad(format!("{key} must be a whole number from 1 to {max}"))),
        };
        let users = number("users", limits.max_users)?;
        let duration = number("duration", limits.max_duration)?;
        if let Some(spec) = body.get("http") {
            // Built in: no upload runs, the agent sends the request itself.
            let http = Some(HttpSpec::parse(spec)?);
            let job = Job {
                name: name.into(),
                users,
                duration,
                binary: String::new(),
                protocol: "http".into(),
                http,
                mqtt: None,
            };
            return self.push(job);
        }
        let binary = body.get("binary").and_then(Value::as_str).unwrap_or_default();
        if !valid_binary(binary) || !self.binary_path(binary).is_file() {
            return Err(bad(format!("{binary} is an invalid binary")));
        }
        // A script (`#!`) speaks the line protocol, any other program go-lo's net/rpc
        // (`gob`), unless the request says which.
        let script = {
            use std::io::Read;
            let mut start = [0u8; 2];
            std::fs::File::open(self.binary_path(binary)).and_then(|mut f| f.read_exact(&mut start)).is_ok()
                && &start == b"#!"
        };
        let protocol = match body.get("protocol").and_then(Value::as_str) {
            Some(p @ ("lines" | "gob")) => p,
            None if script => "lines",
            None => "gob",
            Some(other) => return Err(bad(format!("protocol {other:?} must be gob or lines"))),
        };
        let job = Job {
            name: name.into(),
            users,
            duration,
            binary: binary.into(),
            protocol: protocol.into(),
            http: None,
            mqtt: None,
        };
        self.push(job)
    }

    fn push(&self, job: Job) -> Result<Job, AgentError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.queued.push_back(job.clone());
        self.save(&state)?;
        drop(state);
        self.queued.notify_one();
        Ok(job)
    }

    /// Takes the next job, marked running; `None` when none waits.
    pub fn start_next(&self) -> Result<Option<Job>, AgentError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(job) = state.queued.pop_front() else { return Ok(None) };
        state.running = Some(job.clone());
        self.save(&state)?;
        Ok(Some(job))
    }

    /// The running job is over.
    pub fn finish(&self) -> Result<(), AgentError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.running = None;
        self.save(&state)
    }

    /// `{"running": job|null, "queued": [jobs]}`, without device secrets (an MQTT share
    /// shows its device count).
    pub fn view(&self) -> Value {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let shown = |job: &Job| {
            let mut v = serde_json::to_value(job).unwrap_or_default();
            if let Some(spec) = v.get_mut("mqtt").and_then(Value::as_object_mut) {
                spec.remove("devices");
                spec.insert("device_count".into(), job.users.into());
            }
            v
        };
        serde_json::json!({"running": state.running.as_ref().map(shown), "queued": state.queued.iter().map(shown).collect::<Vec<_>>()})
    }

    /// `running` or `queued` for a job of this name (the running one first), or None.
    pub fn state_of(&self, name: &str) -> Option<&'static str> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.running.as_ref().is_some_and(|j| j.name == name) {
            Some("running")
        } else if state.queued.iter().any(|j| j.name == name) {
            Some("queued")
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names_are_safe_in_paths() {
        for good in ["smoke", "api-test_2", "v1.2"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", ".", "..", "../etc", "a/b", "a b", ".hidden", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn queue_requests_are_checked_and_the_queue_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits { max_users: 100, max_duration: 600 };
        let (jobs, cut) = Jobs::open(dir.path()).unwrap();
        assert_eq!(cut, None);
        let id = "0b7c6f1e-0000-4000-8000-000000000001";
        std::fs::write(jobs.binary_path(id), b"#!/bin/sh\n").unwrap();
        for bad in [
            json!({"name": "../x", "users": 1, "duration": 1, "binary": id}),
            json!({"name": "a", "users": 0, "duration": 1, "binary": id}),
            json!({"name": "a", "users": 101, "duration": 1, "binary": id}),
            json!({"name": "a", "users": 1, "duration": -1, "binary": id}),
            json!({"name": "a", "users": 1, "duration": "10", "binary": id}),
            json!({"name": "a", "users": 1, "duration": 1, "binary": "0b7c6f1e-0000-4000-8000-000000000002"}),
            json!({"name": "a", "users": 1, "duration": 1, "binary": "../../bin/sh"}),
        ] {
            assert!(matches!(jobs.queue(&bad, limits), Err(AgentError::BadRequest(_))), "{bad}");
        }
        jobs.queue(&json!({"name": "first", "users": 2, "duration": 5, "binary": id}), limits).unwrap();
        jobs.queue(&json!({"name": "second", "users": 1, "duration": 1, "binary": id}), limits).unwrap();
        assert_eq!(jobs.start_next().unwrap().unwrap().name, "first");
        drop(jobs);

        // A restart: the running job was cut off; the other still waits.
        let (jobs, cut) = Jobs::open(dir.path()).unwrap();
        assert_eq!(cut.map(|j| j.name).as_deref(), Some("first"));
        assert_eq!(jobs.start_next().unwrap().unwrap().name, "second");
        jobs.finish().unwrap();
        assert_eq!(jobs.start_next().unwrap(), None);

        // Built in: an HTTP request, checked.
        for bad in [
            json!({"url": "ftp://x"}),
            json!({"url": "http://x", "method": "BREW"}),
            json!({"url": "http://x", "body": 5}),
        ] {
            let job = json!({"name": "h", "users": 1, "duration": 1, "http": bad});
            assert!(matches!(jobs.queue(&job, limits), Err(AgentError::BadRequest(_))), "{job}");
        }
        let job =
            json!({"name": "h", "users": 1, "duration": 1, "http": {"url": "http://127.0.0.1:9/x", "method": "post"}});
        let queued = jobs.queue(&job, limits).unwrap();
        assert_eq!((queued.protocol.as_str(), queued.http.unwrap().method.as_str()), ("http", "POST"));

        // Built in: an MQTT share, checked; its secrets are not shown.
        let share = |spec: Value| json!({"name": "m", "users": 1, "duration": 1, "mqtt": spec});
        let good = json!({"mqtt": "127.0.0.1:1883", "tenant": "admin", "devices": [["d1", "s1"], ["d2", "s2"]],
            "rate": 10.0, "inflight": 4, "duration_ms": 1500});
        for (key, value) in [
            ("mqtt", json!("192.0.2.1:1883")),
            ("devices", json!([])),
            ("rate", json!(-1)),
            ("inflight", json!(0)),
            ("duration_ms", json!(601_000)),
            ("extra", json!(1)),
        ] {
            let mut spec = good.clone();
            spec[key] = value;
            assert!(matches!(jobs.queue(&share(spec), limits), Err(AgentError::BadRequest(_))), "{key}");
        }
        let queued = jobs.queue(&share(good), limits).unwrap();
        assert_eq!((queued.protocol.as_str(), queued.users, queued.duration), ("mqtt", 2, 2));
        let view = jobs.view().to_string();
        assert!(view.contains("\"device_count\":2") && !view.contains("s1"), "{view}");
        assert_eq!(jobs.state_of("m"), Some("queued"));
    }
}
