//! Raw bytes into the real MQTT agent (`ingest::mqtt`, 3.1.1 and 5), over TCP.
//!
//! One server per fuzzing process, started on first use on 127.0.0.1:0 with a small
//! in-memory device directory and a `MemoryBus` whose durable consumer acks (as
//! crates/ingest/tests/mqtt.rs does). For each input:
//! - the first byte's low 2 bits pick a prefix written before the rest: 0 none (the fuzzer
//!   writes CONNECT itself), 1 a valid v3.1.1 CONNECT of `acme:dev1`, 2 the same in v5,
//!   3 a v3.1.1 CONNECT of the unsecured `open:dev9` by client id (mosca style); so the
//!   rest reaches PUBLISH / SUBSCRIBE / … handling after authentication. Bit 2 also sends
//!   an actuation to `acme:dev1` (exercises the outbound path of a subscribed connection);
//! - the bytes are written, the client half-closes, and the server must close the
//!   connection within [`CLOSE_WITHIN`];
//! - then a fresh connection's valid CONNECT must get its CONNACK within [`ALIVE_WITHIN`].
//!
//! A panic anywhere (libFuzzer's hook aborts on panics in any thread, the server's too), a
//! connection the server keeps open, or a server that stops answering is a finding.
#![no_main]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bus::{Bus, MemoryBus, Mode};
use ingest::mqtt::{MqttConfig, MqttServer};
use ingest::{DeviceAuth, DeviceAuthError, DeviceDirectory, IngestService};
use libfuzzer_sys::fuzz_target;
use model::data::PayloadLimits;
use model::{DeviceEvent, DeviceRef};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// How long the server may take to close a connection its client half-closed.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);
/// How long a fresh CONNECT may wait for its CONNACK.
const ALIVE_WITHIN: Duration = Duration::from_secs(5);
const MAX_PAYLOAD: usize = 4096;

/// Devices and secrets; tenant `open` is in unsecured mode (no secret needed).
struct Directory(HashMap<&'static str, &'static str>);

#[async_trait::async_trait]
impl DeviceDirectory for Directory {
    async fn verify_device(&self, device: &DeviceRef, secret: Option<&[u8]>) -> Result<DeviceAuth, DeviceAuthError> {
        let known = self.0.get(device.to_string().as_str()).ok_or(DeviceAuthError::UnknownDevice)?;
        match secret {
            None if device.tenant == "open" => Ok(DeviceAuth::Unsecured),
            None => Err(DeviceAuthError::SecretRequired),
            Some(s) if s == known.as_bytes() => Ok(DeviceAuth::Secret),
            Some(_) => Err(DeviceAuthError::BadSecret),
        }
    }

    async fn check_device(&self, device: &DeviceRef) -> Result<(), DeviceAuthError> {
        self.0.get(device.to_string().as_str()).map(|_| ()).ok_or(DeviceAuthError::UnknownDevice)
    }

    /// No device has history here: every label counts against a fresh budget.
    async fn stored_attrs(&self, _device: &DeviceRef) -> Result<Vec<String>, DeviceAuthError> {
        Ok(Vec::new())
    }
}

struct Harness {
    rt: tokio::runtime::Runtime,
    addr: SocketAddr,
    bus: Arc<MemoryBus>,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let bus = Arc::new(MemoryBus::new(1024));
        let addr = rt.block_on(async {
            let directory =
                Directory([("acme:dev1", "s3cret"), ("acme:dev2", "other"), ("open:dev9", "unused")].into());
            let ingest =
                Arc::new(IngestService::new(bus.clone(), Arc::new(directory), PayloadLimits::default(), MAX_PAYLOAD));
            // The durable consumer (the history writer in Ingot): acks everything.
            let mut readings = bus.subscribe_data("history", Mode::Durable);
            tokio::spawn(async move {
                while let Some(d) = readings.recv().await {
                    d.ack();
                }
            });
            let config = MqttConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                workers: 1,
                max_keep_alive_secs: 60,
                ..MqttConfig::default()
            };
            let server = MqttServer::start(config, ingest).await.expect("MQTT server starts");
            let addr = server.local_addr();
            // Runs for the life of the process.
            std::mem::forget(server);
            addr
        });
        Harness { rt, addr, bus }
    })
}

fn string(s: &str) -> Vec<u8> {
    [&(s.len() as u16).to_be_bytes()[..], s.as_bytes()].concat()
}

/// A CONNECT: protocol level 4 (3.1.1) or 5, clean session, keep-alive 60 s.
fn connect(level: u8, client_id: &str, login: Option<(&str, &str)>) -> Vec<u8> {
    let flags = 0x02 | if login.is_some() { 0xC0 } else { 0 };
    let mut body = [&string("MQTT")[..], &[level, flags, 0, 60]].concat();
    if level == 5 {
        body.push(0); // no properties
    }
    body.extend(string(client_id));
    if let Some((user, password)) = login {
        body.extend(string(user));
        body.extend(string(password));
    }
    [&[0x10, body.len() as u8][..], &body].concat()
}

async fn run(h: &Harness, mode: u8, rest: &[u8]) {
    let prefix = match mode & 3 {
        0 => Vec::new(),
        1 => connect(4, "fuzz", Some(("acme:dev1", "s3cret"))),
        2 => connect(5, "fuzz", Some(("acme:dev1", "s3cret"))),
        _ => connect(4, "open:dev9", None),
    };
    let mut s = TcpStream::connect(h.addr).await.expect("connect");
    s.set_nodelay(true).unwrap();
    // The server may close at any point (bad packet): later writes may fail, that's fine.
    if s.write_all(&prefix).await.is_ok() && s.write_all(rest).await.is_ok() {
        if mode & 4 != 0 {
            let attrs = serde_json::json!({"led": "on"}).as_object().unwrap().clone();
            let _ = h.bus.publish_event(DeviceEvent::configure("acme", "dev1", attrs, chrono::Utc::now())).await;
        }
        let _ = s.shutdown().await;
    }
    let mut answer = Vec::new();
    if timeout(CLOSE_WITHIN, s.read_to_end(&mut answer)).await.is_err() {
        panic!("the server kept a half-closed connection open for {CLOSE_WITHIN:?}");
    }
    drop(s);

    let mut probe = TcpStream::connect(h.addr).await.expect("the server accepts connections");
    probe.write_all(&connect(4, "probe", Some(("acme:dev2", "other")))).await.expect("write CONNECT");
    let mut connack = [0u8; 4];
    match timeout(ALIVE_WITHIN, probe.read_exact(&mut connack)).await {
        Ok(Ok(_)) => assert_eq!(connack, [0x20, 2, 0, 0], "CONNACK accepted"),
        Ok(Err(e)) => panic!("no CONNACK: {e}"),
        Err(_) => panic!("no CONNACK within {ALIVE_WITHIN:?}: the server is stuck"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let h = harness();
    h.rt.block_on(run(h, mode, rest));
});
