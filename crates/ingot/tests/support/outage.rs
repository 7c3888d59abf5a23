//! A backend going away while devices publish, and coming back: readings are refused in
//! each protocol's terms (HTTP 503 with a JSON body, MQTT v5 PUBACK 0x80) while it is
//! down, never acknowledged; once it is back the server recovers by itself, and every
//! reading it acknowledged is in history. Used with PostgreSQL and with NATS.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use serde_json::json;

use super::{Api, Server};

/// A private server of a backend made by one of the project's scripts
/// (`scripts/postgres.sh`, `scripts/nats.sh`: start/down/up/stop DIR), stopped and
/// removed when dropped.
pub struct Backend {
    script: &'static str,
    dir: PathBuf,
    /// The URL the script printed.
    pub url: String,
}

impl Backend {
    /// Starts one with `scripts/<script>`.
    pub fn start(script: &'static str) -> Backend {
        let dir = tempfile::Builder::new().prefix("ingot-outage").tempdir().unwrap().keep();
        let out = Command::new("bash").arg(path(script)).arg("start").arg(&dir).output().unwrap();
        assert!(out.status.success(), "{script} start: {}", String::from_utf8_lossy(&out.stderr));
        let url = String::from_utf8(out.stdout).unwrap().lines().last().unwrap().to_string();
        Backend { script, dir, url }
    }

    /// `down` (as a crash) or `up` (again, same port and data).
    pub fn run(&self, verb: &str) {
        let out = Command::new("bash").arg(path(self.script)).arg(verb).arg(&self.dir).output().unwrap();
        assert!(out.status.success(), "{} {verb}: {}", self.script, String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(path(self.script)).arg("stop").arg(&self.dir).output();
    }
}

fn path(script: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts").join(script)
}

/// What the publishers saw.
#[derive(Default)]
pub struct Outcomes {
    /// (device, value) acknowledged: HTTP 204, PUBACK Success.
    pub acked: Vec<(String, i64)>,
    /// HTTP statuses and PUBACK reasons of refusals, with whether they came during the outage.
    pub refused: Vec<String>,
}

async fn connect(addr: &str, id: &str, secret: &str) -> (AsyncClient, EventLoop) {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let mut opts = MqttOptions::new(format!("c-{id}"), host, port.parse().unwrap());
    opts.set_credentials(format!("admin:{id}"), secret);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut ev) = AsyncClient::new(opts, 16);
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ev.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => return (client, ev),
            Ok(Ok(_)) => {}
            other => panic!("no CONNACK: {other:?}"),
        }
    }
}

async fn puback(ev: &mut EventLoop) -> Option<PubAckReason> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ev.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(ack)))) => return Some(ack.reason),
            Ok(Ok(_)) => {}
            _ => return None,
        }
    }
}

/// Publishes over HTTP to the first of `servers` and over MQTT v5 to the last (the nodes
/// of one cluster, or one server), on two new devices; takes `backend` down for `outage`
/// and up again, and checks the contract in the module docs on every server. `health`
/// says whether `/health` must answer 503 during the outage.
pub async fn assert_refused_while_down_then_recovered(
    servers: &[&Server],
    backend: &Backend,
    outage: Duration,
    health: bool,
) {
    let (server, mqtt_server) = (servers[0], servers[servers.len() - 1]);
    let api = Api::admin(server).await;
    let template = api.thermometer_template().await;
    let http_device = api.device_with_secret(template, "over-http").await;
    let mqtt_device = api.device_with_secret(template, "over-mqtt").await;
    // Made on the first node: the last one knows the device within moments.
    let last = Api::admin(mqtt_server).await;
    let known = Instant::now();
    while last.get(&format!("/device/{}", mqtt_device.0)).await.0 != 200 {
        assert!(known.elapsed() < Duration::from_secs(1), "the MQTT node does not know the device");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let outcomes: Arc<Mutex<Outcomes>> = Arc::default();
    let down = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));

    let http = {
        let (api, outcomes, stop, down) = (api.clone(), outcomes.clone(), stop.clone(), down.clone());
        let (id, secret) = http_device.clone();
        tokio::spawn(async move {
            let mut seq = 0;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                let (status, body) = api.send_reading("admin", &id, &secret, json!({"temperature": seq})).await;
                assert!(status == 204 || body.is_object(), "{body}");
                match status {
                    204 => outcomes.lock().unwrap().acked.push((id.clone(), seq)),
                    503 => {
                        outcomes.lock().unwrap().refused.push(format!("http 503 down={}", down.load(Ordering::Relaxed)))
                    }
                    other => panic!("HTTP {other} {body}: a refusal is 503 with a JSON body"),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mqtt = {
        let (outcomes, stop, down) = (outcomes.clone(), stop.clone(), down.clone());
        let (id, secret) = mqtt_device.clone();
        let addr = mqtt_server.mqtt.clone().unwrap();
        tokio::spawn(async move {
            let (client, mut ev) = connect(&addr, &id, &secret).await;
            let mut seq = 0;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                let payload = format!(r#"{{"temperature": {seq}}}"#);
                client.publish(format!("admin:{id}/attrs"), QoS::AtLeastOnce, false, payload).await.unwrap();
                let reason = puback(&mut ev).await.expect("a PUBACK for every publish, success or not");
                match reason {
                    PubAckReason::Success => outcomes.lock().unwrap().acked.push((id.clone(), seq)),
                    PubAckReason::UnspecifiedError => outcomes
                        .lock()
                        .unwrap()
                        .refused
                        .push(format!("mqtt 0x80 down={}", down.load(Ordering::Relaxed))),
                    other => panic!("PUBACK {other:?}: a refusal for want of storage is 0x80"),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = outcomes.lock().unwrap().acked.len();
    assert!(before > 10, "readings are acknowledged while PostgreSQL is up: {before}");

    backend.run("down");
    down.store(true, Ordering::Relaxed);
    let acked_at_down = outcomes.lock().unwrap().acked.len();
    tokio::time::sleep(outage).await;
    if health {
        for server in servers {
            let (status, body) = Api::new(&server.http).get("/health").await;
            assert_eq!(status, 503, "health says the backend is gone: {body}");
        }
    }
    {
        let o = outcomes.lock().unwrap();
        // A batch already committed when the server went down may still be acknowledged
        // (a few readings); nothing written after.
        assert!(
            o.acked.len() <= acked_at_down + 64,
            "{} readings acknowledged with the backend down",
            o.acked.len() - acked_at_down
        );
        assert!(o.refused.iter().any(|r| r.starts_with("http 503 down=true")), "{:?}", o.refused);
        assert!(o.refused.iter().any(|r| r.starts_with("mqtt 0x80 down=true")), "{:?}", o.refused);
    }
    let acked_during_outage = outcomes.lock().unwrap().acked.len();

    backend.run("up");
    down.store(false, Ordering::Relaxed);
    let back = Instant::now();
    loop {
        let both = {
            let o = outcomes.lock().unwrap();
            let after = &o.acked[acked_during_outage.min(o.acked.len())..];
            after.iter().any(|(d, _)| *d == http_device.0) && after.iter().any(|(d, _)| *d == mqtt_device.0)
        };
        if both {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(60), "Ingot did not recover by itself within 45 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("recovered {:?} after the backend came back", back.elapsed());
    for server in servers {
        let (status, health) = Api::new(&server.http).get("/health").await;
        assert_eq!(status, 200, "{health}");
    }
    stop.store(true, Ordering::Relaxed);
    http.await.unwrap();
    mqtt.await.unwrap();

    let o = std::mem::take(&mut *outcomes.lock().unwrap());
    for ((id, _), api) in [&http_device, &mqtt_device].into_iter().zip([&api, &last]) {
        let (status, hist) = api.get(&format!("/history/device/{id}/history?attr=temperature&firstN=100000")).await;
        assert_eq!(status, 200, "{hist}");
        let stored: std::collections::BTreeSet<i64> =
            hist.as_array().unwrap().iter().map(|p| p["value"].as_i64().unwrap()).collect();
        let lost: Vec<i64> = o.acked.iter().filter(|(d, s)| d == id && !stored.contains(s)).map(|(_, s)| *s).collect();
        assert!(lost.is_empty(), "device {id}: acknowledged readings lost across the outage: {lost:?}");
    }
    eprintln!("{} acknowledged, all stored; {} refused", o.acked.len(), o.refused.len());
}
