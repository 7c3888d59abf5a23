//! End-to-end tests of the MQTT device agent against the real binary, with real MQTT
//! clients: the mosquitto command-line tools and a Rust client (rumqttc).

mod support;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::PubAckReason;
use rumqttc::v5::{self, mqttbytes::QoS as QoS5};
use serde_json::json;
use support::{Api, Server, require_tool};

fn host_port(addr: &str) -> (String, u16) {
    let (h, p) = addr.rsplit_once(':').unwrap();
    (h.to_string(), p.parse().unwrap())
}

/// Chapter 10 of dojot's guide, with mosquitto_pub/mosquitto_sub, only host and
/// credentials changed.
#[tokio::test]
async fn chapter_10_with_mosquitto_clients() {
    if !require_tool("mosquitto_pub", "mosquitto-clients") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let (host, port) = host_port(server.mqtt.as_ref().expect("MQTT address"));
    let api = Api::admin(&server).await;
    let template = api.thermometer_template().await;
    let (id, secret) = api.device_with_secret(template, "device").await;
    let user = format!("admin:{id}");
    let port_s = port.to_string();

    let mut sub = Command::new("mosquitto_sub")
        .args([
            "-h",
            &host,
            "-p",
            &port_s,
            "-u",
            &user,
            "-P",
            &secret,
            "-t",
            &format!("admin:{id}/config"),
            "-q",
            "1",
            "-C",
            "1",
            "-W",
            "10",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    for t in ["36.5", "15.6", "10.6"] {
        let ok = Command::new("mosquitto_pub")
            .args(["-h", &host, "-p", &port_s, "-u", &user, "-P", &secret, "-t", &format!("admin:{id}/attrs")])
            .args(["-m", &format!("{{\"temperature\": {t}}}"), "-q", "1"])
            .status()
            .unwrap();
        assert!(ok.success(), "mosquitto_pub");
    }
    let refused = Command::new("mosquitto_pub")
        .args([
            "-h",
            &host,
            "-p",
            &port_s,
            "-u",
            &user,
            "-P",
            "wrong-secret",
            "-t",
            &format!("admin:{id}/attrs"),
            "-m",
            "{}",
            "-q",
            "1",
        ])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!refused.success(), "a wrong secret must be refused");

    let (status, hist) = api.get(&format!("/history/device/{id}/history?lastN=3&attr=temperature")).await;
    assert_eq!(status, 200, "{hist}");
    let values: Vec<f64> = hist.as_array().unwrap().iter().map(|p| p["value"].as_f64().unwrap()).collect();
    assert_eq!(values, [10.6, 15.6, 36.5]);

    // The subscriber needs a moment to be subscribed before actuation is sent.
    let mut delivered = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (status, _) = api.put(&format!("/device/{id}/actuate"), json!({"attrs": {"fan": 100}})).await;
        assert_eq!(status, 200);
        if let Ok(Some(_)) = sub.try_wait() {
            delivered = Some(sub.wait_with_output().unwrap());
            break;
        }
    }
    let out = delivered.expect("mosquitto_sub received nothing on the config topic");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"{"fan":100}"#);
}

/// A v5 Rust client connected as `tenant:device` with its secret.
async fn connect_v5(addr: &str, client_id: &str, user: &str, secret: Option<&str>) -> (v5::AsyncClient, v5::EventLoop) {
    let (host, port) = host_port(addr);
    let mut opts = v5::MqttOptions::new(client_id, host, port);
    opts.set_keep_alive(Duration::from_secs(30));
    if let Some(s) = secret {
        opts.set_credentials(user, s);
    } else {
        opts.set_credentials(user, "");
    }
    v5::AsyncClient::new(opts, 64)
}

/// Polls until the CONNACK; returns its reason code.
async fn connack(ev: &mut v5::EventLoop) -> Result<(), String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ev.poll()).await {
            Ok(Ok(v5::Event::Incoming(v5::mqttbytes::v5::Packet::ConnAck(_)))) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("timeout".into()),
        }
    }
}

/// Polls until the next PUBACK; returns its reason.
async fn next_puback(ev: &mut v5::EventLoop) -> Option<PubAckReason> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ev.poll()).await {
            Ok(Ok(v5::Event::Incoming(v5::mqttbytes::v5::Packet::PubAck(ack)))) => return Some(ack.reason),
            Ok(Ok(_)) => {}
            _ => return None,
        }
    }
}

#[tokio::test]
async fn mqtt_tenant_isolation_and_unsecured_switch() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mqtt = server.mqtt.clone().unwrap();
    let admin = Api::admin(&server).await;
    let template = admin.thermometer_template().await;
    let (victim, _) = admin.device_with_secret(template, "victim").await;
    // A second tenant with its own device.
    let (status, _) = admin
        .post(
            "/auth/user",
            json!({"username": "mallory", "service": "evil", "email": "m@example.com",
                                    "name": "M", "profile": "admin", "passwd": "password-123"}),
        )
        .await;
    assert_eq!(status, 200);
    let evil = Api::login(&server.http, "mallory", "password-123").await;
    let evil_template = evil.thermometer_template().await;
    let (own, own_secret) = evil.device_with_secret(evil_template, "own").await;

    // Connected as its own device, mallory cannot publish into admin's device.
    let (client, mut ev) = connect_v5(&mqtt, "m1", &format!("evil:{own}"), Some(&own_secret)).await;
    connack(&mut ev).await.expect("own device connects");
    for topic in [format!("admin:{victim}/attrs"), format!("/admin/{victim}/attrs")] {
        client.publish(topic.clone(), QoS5::AtLeastOnce, false, r#"{"temperature": 666}"#).await.unwrap();
        assert_eq!(next_puback(&mut ev).await, Some(PubAckReason::NotAuthorized), "{topic}");
    }
    // Nor claim to be admin's device with its own secret.
    let (_c, mut ev2) = connect_v5(&mqtt, "m2", &format!("admin:{victim}"), Some(&own_secret)).await;
    assert!(connack(&mut ev2).await.is_err(), "another tenant's identity must be refused");
    // Its own readings go to its own tenant only.
    client.publish(format!("evil:{own}/attrs"), QoS5::AtLeastOnce, false, r#"{"temperature": 1}"#).await.unwrap();
    assert_eq!(next_puback(&mut ev).await, Some(PubAckReason::Success));
    // The payload's timestamp (ISO 8601, seconds or milliseconds) is the reading's time (dojot #2186).
    for (payload, ts) in [
        (r#"{"temperature": 2, "timestamp": "2020-01-01T00:00:00Z"}"#, "2020-01-01T00:00:00.000000Z"),
        (r#"{"temperature": 3, "timestamp": 1577836801}"#, "2020-01-01T00:00:01.000000Z"),
        (r#"{"temperature": 4, "timestamp": 1577836802500}"#, "2020-01-01T00:00:02.500000Z"),
    ] {
        client.publish(format!("/evil/{own}/attrs"), QoS5::AtLeastOnce, false, payload).await.unwrap();
        assert_eq!(next_puback(&mut ev).await, Some(PubAckReason::Success));
        let (_, hist) = evil.get(&format!("/history/device/{own}/history?attr=temperature&lastN=10")).await;
        assert!(hist.as_array().unwrap().iter().any(|p| p["ts"] == ts), "{ts} not in {hist}");
    }
    client.publish(format!("evil:{own}/attrs"), QoS5::AtLeastOnce, false, "not json").await.unwrap();
    assert_eq!(next_puback(&mut ev).await, Some(PubAckReason::PayloadFormatInvalid), "connection stays up");
    assert_eq!(admin.get(&format!("/history/device/{victim}/history?attr=temperature")).await.0, 404);
    assert_eq!(admin.get(&format!("/history/device/{own}/history")).await.0, 404);
    assert_eq!(evil.get(&format!("/history/device/{own}/history?attr=temperature")).await.0, 200);

    // Username-only (dojot's unsecured mode) is refused until the tenant switches it on.
    let (_c, mut ev3) = connect_v5(&mqtt, "u1", &format!("evil:{own}"), None).await;
    assert!(connack(&mut ev3).await.is_err(), "no secret, secure tenant");
    let (status, _) = evil.put("/tenant/settings", json!({"unsecured_mqtt": true, "history_retention_days": 7})).await;
    assert_eq!(status, 200);
    let (_c, mut ev4) = connect_v5(&mqtt, "u2", &format!("evil:{own}"), None).await;
    connack(&mut ev4).await.expect("unsecured tenant accepts username only");
    // ...but only for its own tenant's devices.
    let (_c, mut ev5) = connect_v5(&mqtt, "u3", &format!("admin:{victim}"), None).await;
    assert!(connack(&mut ev5).await.is_err(), "admin's tenant is still secure");
}

/// QoS 1 publishers; SIGKILL mid-stream; every PUBACKed reading is in history after restart.
#[tokio::test]
async fn mqtt_acknowledged_readings_survive_sigkill() {
    mqtt_sigkill(&[]).await;
}

/// The same with the NATS bus: a PUBACK means JetStream stored the reading.
#[tokio::test]
async fn mqtt_acknowledged_readings_survive_sigkill_on_nats() {
    let Some(nats) = support::nats_args() else { return };
    mqtt_sigkill(&nats.iter().map(String::as_str).collect::<Vec<_>>()).await;
}

async fn mqtt_sigkill(bus: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<&str> = ["--sync-full", "true"].into_iter().chain(bus.iter().copied()).collect();
    let server = Server::start(dir.path(), &args);
    let mqtt = server.mqtt.clone().unwrap();
    let api = Api::admin(&server).await;
    let template = api.thermometer_template().await;
    let mut devices = Vec::new();
    for i in 0..8 {
        devices.push(api.device_with_secret(template, &format!("d{i}")).await);
    }
    let acked: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let mut tasks = Vec::new();
    for (id, secret) in devices.clone() {
        let (mqtt, acked) = (mqtt.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let (client, mut ev) = connect_v5(&mqtt, &format!("c-{id}"), &format!("admin:{id}"), Some(&secret)).await;
            if connack(&mut ev).await.is_err() {
                return;
            }
            for seq in 0..1_000_000i64 {
                let payload = format!(r#"{{"temperature": {seq}}}"#);
                if client.publish(format!("admin:{id}/attrs"), QoS5::AtLeastOnce, false, payload).await.is_err() {
                    return;
                }
                match next_puback(&mut ev).await {
                    Some(PubAckReason::Success) => acked.lock().unwrap().push((id.clone(), seq)),
                    _ => return,
                }
            }
        }));
    }
    support::assert_acked_survive_sigkill(server, bus, &devices, &acked, tasks, "PUBACKed").await;
}

/// Garbage on the MQTT port closes that connection only; the server keeps serving.
#[tokio::test]
async fn garbage_on_the_mqtt_port() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mqtt = server.mqtt.clone().unwrap();
    for junk in [&b"GET / HTTP/1.1\r\n\r\n"[..], &[0xff; 64], &[0x10, 0xff, 0xff, 0xff, 0xff, 0x7f], b"\x10\x00"] {
        let mut s = tokio::net::TcpStream::connect(&mqtt).await.unwrap();
        let _ = s.write_all(junk).await;
        let mut buf = [0u8; 64];
        let r = tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf)).await;
        assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "connection must be closed after garbage {junk:?}: {r:?}");
    }
    let api = Api::admin(&server).await;
    let template = api.thermometer_template().await;
    let (id, secret) = api.device_with_secret(template, "ok").await;
    let (client, mut ev) = connect_v5(&mqtt, "after", &format!("admin:{id}"), Some(&secret)).await;
    connack(&mut ev).await.expect("still serving");
    client.publish(format!("admin:{id}/attrs"), QoS5::AtLeastOnce, false, r#"{"temperature": 2}"#).await.unwrap();
    assert_eq!(next_puback(&mut ev).await, Some(PubAckReason::Success));
}
