//! Ingot on a PostgreSQL server that goes away and comes back: while it is down, device
//! readings are refused in each protocol's terms (HTTP 503, MQTT v5 PUBACK 0x80), never
//! acknowledged; when it is back, Ingot recovers by itself, and every reading it did
//! acknowledge is in history.
//!
//! The server is a private one of this test (scripts/postgres.sh start/down/up/stop), not
//! the suite's shared one, since this test crashes it.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use serde_json::json;
use support::{Api, Server};

/// A private PostgreSQL server, stopped and removed when dropped.
struct Postgres {
    dir: PathBuf,
    url: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/postgres.sh")
}

impl Postgres {
    /// Starts one, or `None` (SKIPPED, a failure under CI=true) where PostgreSQL is not
    /// available: the suite's server (INGOT_TEST_POSTGRES_URL) says it is.
    fn start() -> Option<Postgres> {
        if std::env::var("INGOT_TEST_POSTGRES_URL").is_err() {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "CI=true: no PostgreSQL (INGOT_TEST_POSTGRES_URL is not set); run scripts/test.sh"
            );
            eprintln!(
                "\n!!!!! SKIPPED: no PostgreSQL (INGOT_TEST_POSTGRES_URL is not set); run scripts/test.sh !!!!!\n"
            );
            return None;
        }
        let dir = tempfile::Builder::new().prefix("ingot-pg-restart").tempdir().unwrap().keep();
        let out = Command::new("bash").arg(script()).arg("start").arg(&dir).output().unwrap();
        assert!(out.status.success(), "postgres.sh start: {}", String::from_utf8_lossy(&out.stderr));
        let url = String::from_utf8(out.stdout).unwrap().lines().last().unwrap().to_string();
        Some(Postgres { dir, url })
    }

    fn run(&self, verb: &str) {
        let out = Command::new("bash").arg(script()).arg(verb).arg(&self.dir).output().unwrap();
        assert!(out.status.success(), "postgres.sh {verb}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(script()).arg("stop").arg(&self.dir).output();
    }
}

/// What the publishers saw.
#[derive(Default)]
struct Outcomes {
    /// (device, value) acknowledged: HTTP 204, PUBACK Success.
    acked: Vec<(String, i64)>,
    /// HTTP statuses and PUBACK reasons of refusals, with whether they came during the outage.
    refused: Vec<String>,
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

#[tokio::test]
async fn readings_are_refused_while_postgres_is_down_and_accepted_again_when_it_is_back() {
    let Some(pg) = Postgres::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--store", &pg.url, "--sync-full", "true"]);
    let api = Api::admin(&server).await;
    let template = api.thermometer_template().await;
    let http_device = api.device_with_secret(template, "over-http").await;
    let mqtt_device = api.device_with_secret(template, "over-mqtt").await;

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
        let addr = server.mqtt.clone().unwrap();
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

    pg.run("down");
    down.store(true, Ordering::Relaxed);
    let acked_at_down = outcomes.lock().unwrap().acked.len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, health) = Api::new(&server.http).get("/health").await;
    assert_eq!(status, 503, "health says the store is gone: {health}");
    {
        let o = outcomes.lock().unwrap();
        // A batch already committed when the server went down may still be acknowledged
        // (a few readings); nothing written after.
        assert!(
            o.acked.len() <= acked_at_down + 64,
            "{} readings acknowledged with PostgreSQL down",
            o.acked.len() - acked_at_down
        );
        assert!(o.refused.iter().any(|r| r.starts_with("http 503 down=true")), "{:?}", o.refused);
        assert!(o.refused.iter().any(|r| r.starts_with("mqtt 0x80 down=true")), "{:?}", o.refused);
    }
    let acked_during_outage = outcomes.lock().unwrap().acked.len();

    pg.run("up");
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
        assert!(back.elapsed() < Duration::from_secs(45), "Ingot did not recover by itself within 45 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("recovered {:?} after PostgreSQL came back", back.elapsed());
    let (status, health) = Api::new(&server.http).get("/health").await;
    assert_eq!(status, 200, "{health}");
    stop.store(true, Ordering::Relaxed);
    http.await.unwrap();
    mqtt.await.unwrap();

    let o = std::mem::take(&mut *outcomes.lock().unwrap());
    for (id, _) in [&http_device, &mqtt_device] {
        let (status, hist) = api.get(&format!("/history/device/{id}/history?attr=temperature&firstN=100000")).await;
        assert_eq!(status, 200, "{hist}");
        let stored: std::collections::BTreeSet<i64> =
            hist.as_array().unwrap().iter().map(|p| p["value"].as_i64().unwrap()).collect();
        let lost: Vec<i64> = o.acked.iter().filter(|(d, s)| d == id && !stored.contains(s)).map(|(_, s)| *s).collect();
        assert!(lost.is_empty(), "device {id}: acknowledged readings lost across the PostgreSQL restart: {lost:?}");
    }
    eprintln!("{} acknowledged, all stored; {} refused", o.acked.len(), o.refused.len());
}
