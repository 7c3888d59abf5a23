//! Two `ingot serve` nodes on one PostgreSQL and one NATS (issue 10, as far as it goes):
//! templates, devices and secrets made through one node are usable on the other within a
//! second, the API of either answers alike, readings taken by one node reach history for
//! both, and an API token revoked on one node is refused by the other within a second.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Api, Server};

/// Two nodes on a new PostgreSQL database and the suite's NATS server (a bus prefix of
/// their own), or `None` after a loud SKIPPED (a failure under CI=true).
struct Cluster {
    a: Server,
    b: Server,
    /// The nodes' data directories, removed when dropped.
    dirs: [tempfile::TempDir; 2],
}

impl Cluster {
    async fn start() -> Option<Cluster> {
        if support::missing("INGOT_TEST_POSTGRES_URL") {
            return None;
        }
        let nats = support::nats_args()?;
        let db = store::testing::TestDb::create().await.expect("checked above").keep();
        let mut args: Vec<&str> = vec!["--store", &db];
        args.extend(nats.iter().map(String::as_str));
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let (a, b) = (Server::start(dirs[0].path(), &args), Server::start(dirs[1].path(), &args));
        Some(Cluster { a, b, dirs })
    }
}

/// Polls `check` until it holds, for at most `limit`.
async fn within(limit: Duration, what: &str, check: impl AsyncFn() -> bool) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn two_nodes_share_devices_secrets_and_history() {
    let Some(Cluster { a, b, dirs }) = Cluster::start().await else { return };
    let (api_a, api_b) = (Api::admin(&a).await, Api::admin(&b).await);
    // A template made on A, used on B within a second; both hand out new template ids.
    let template = api_a.thermometer_template().await;
    within(Duration::from_secs(1), "node B knows the template", async || {
        api_b.get(&format!("/template/{template}")).await.0 == 200
    })
    .await;
    assert_eq!(api_b.thermometer_template().await, template + 1, "no template id handed out twice");
    assert_ne!(
        std::fs::read_to_string(dirs[0].path().join("node.id")).unwrap(),
        std::fs::read_to_string(dirs[1].path().join("node.id")).unwrap(),
        "each node has an id of its own"
    );

    // A device and its secret made through B: node A accepts its readings within a second.
    let (id, secret) = api_b.device_with_secret(template, "made-on-b").await;
    within(Duration::from_secs(1), "node A knows the device", async || {
        api_a.send_reading("admin", &id, &secret, json!({"temperature": 1.5})).await.0 == 204
    })
    .await;
    let (status, device) = api_a.get(&format!("/device/{id}")).await;
    assert_eq!(status, 200, "{device}");
    assert_eq!(device["label"], "made-on-b");

    // A new secret through A: the old one is refused on B within a second.
    let (status, body) = api_a.post(&format!("/device/{id}/secret"), json!({})).await;
    assert_eq!(status, 200, "{body}");
    let new_secret = body["secret"].as_str().unwrap().to_string();
    within(Duration::from_secs(1), "node B refuses the old secret", async || {
        api_b.send_reading("admin", &id, &secret, json!({"temperature": 0.0})).await.0 != 204
    })
    .await;
    for (n, api) in [&api_a, &api_b].into_iter().enumerate() {
        let (status, body) = api.send_reading("admin", &id, &new_secret, json!({"temperature": 10.0 + n as f64})).await;
        assert_eq!(status, 204, "node {n}: {body}");
    }

    // Readings taken by both nodes are in history, read through either.
    for api in [&api_a, &api_b] {
        within(Duration::from_secs(5), "history has the readings of both nodes", async || {
            let (status, hist) = api.get(&format!("/history/device/{id}/history?attr=temperature&firstN=100")).await;
            let values: Vec<f64> = if status == 200 {
                hist.as_array().unwrap().iter().map(|p| p["value"].as_f64().unwrap()).collect()
            } else {
                vec![]
            };
            [1.5, 10.0, 11.0].iter().all(|v| values.contains(v))
        })
        .await;
    }

    // Deleted through B: gone on A within a second.
    assert_eq!(api_b.delete(&format!("/device/{id}")).await.0, 200);
    within(Duration::from_secs(1), "node A forgets the device", async || {
        api_a.get(&format!("/device/{id}")).await.0 == 404
    })
    .await;
    // A template deleted on A is gone on B.
    assert_eq!(api_a.delete(&format!("/template/{}", template + 1)).await.0, 200);
    within(Duration::from_secs(1), "node B forgets the template", async || {
        api_b.get(&format!("/template/{}", template + 1)).await.0 == 404
    })
    .await;

    // An API token made on A works on both (each caches it); revoked on B, A refuses it
    // within a second.
    let (status, made) = api_a.post("/auth/tokens", json!({"name": "scraper", "scopes": ["prometheus"]})).await;
    assert_eq!(status, 201, "{made}");
    let scraper = |server: &Server| Api { jwt: made["token"].as_str().map(String::from), ..Api::new(&server.http) };
    for server in [&a, &b] {
        assert_eq!(scraper(server).get("/metrics").await.0, 200, "the token works on {}", server.http);
    }
    let token_id = made["id"].as_str().expect("token id");
    assert_eq!(api_b.delete(&format!("/auth/tokens/{token_id}")).await.0, 200);
    assert_eq!(scraper(&b).get("/metrics").await.0, 401, "refused at once where it was revoked");
    within(Duration::from_secs(1), "node A refuses the revoked token", async || {
        scraper(&a).get("/metrics").await.0 == 401
    })
    .await;

    // A console session made on A works on B (sessions are in the store); a user removed
    // through B: their session ends within a second (the user cache alone would take up to 5 s).
    let carol = json!({"username": "carol", "service": "admin", "email": "carol@example.com", "name": "Carol",
                       "profile": "user", "passwd": "password-123"});
    let (status, body) = api_b.post("/auth/user", carol).await;
    assert_eq!(status, 200, "{body}");
    let http = reqwest::Client::new();
    let login = http
        .post(format!("{}/console/api/login", a.http))
        .json(&json!({"login": "carol", "password": "password-123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status().as_u16(), 200, "carol signs in on A");
    let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let session_on = async |node: &Server| {
        let resp = http.get(format!("{}/console/api/session", node.http)).header("cookie", &cookie).send().await;
        resp.unwrap().status().as_u16()
    };
    let session = async || session_on(&a).await;
    assert_eq!(session().await, 200);
    assert_eq!(session_on(&b).await, 200, "a browser may reach either node");
    assert_eq!(api_b.delete("/auth/user/carol").await.0, 200);
    within(Duration::from_secs(1), "carol's session on A ends", async || session().await == 401).await;
    assert_eq!(session_on(&b).await, 401, "and on B");
}

/// Reports a fakeiot login to `base` with API token `token`; returns the account as answered.
async fn report(http: &reqwest::Client, base: &str, token: &str, account: &str, user: &str) -> serde_json::Value {
    let body = json!({"account_id": account, "user_id": user, "timestamp": "2026-01-31T12:00:00Z"});
    let resp = http.post(format!("{base}/metrics")).bearer_auth(token).json(&body).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "login of {user} on {base}");
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seat_counts_are_exact_with_logins_spread_over_two_nodes() {
    let Some(Cluster { a, b, dirs: _dirs }) = Cluster::start().await else { return };
    let admin = Api::admin(&a).await;
    let (status, made) = admin.post("/auth/tokens", json!({"name": "fakeiot", "scopes": ["metrics"]})).await;
    assert_eq!(status, 201, "{made}");
    let token = made["token"].as_str().unwrap().to_string();
    let http = reqwest::Client::new();

    // 150 users, each reporting twice, every login on either node, 16 at a time: the
    // database decides each seat once.
    let logins: Vec<(String, String)> =
        (0..300).map(|i| ([&a.http, &b.http][i % 2].clone(), format!("user-{}", (i * 7) % 150))).collect();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = tokio::task::JoinSet::new();
    for (base, user) in logins {
        let (http, token, gate) = (http.clone(), token.clone(), gate.clone());
        tasks.spawn(async move {
            let _turn = gate.acquire().await.unwrap();
            report(&http, &base, &token, "acct", &user).await
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    for server in [&a, &b] {
        let (status, account) =
            Api { jwt: admin.jwt.clone(), ..Api::new(&server.http) }.get("/seats/accounts/acct").await;
        assert_eq!((status, account["users"].as_i64()), (200, Some(150)), "{}: {account}", server.http);
    }

    // A new seat and an upgrade on B show in A's answers to repeated logins (answered
    // from A's memory) within a second.
    report(&http, &b.http, &token, "acct", "user-new").await;
    within(Duration::from_secs(1), "node A counts B's new seat", async || {
        report(&http, &a.http, &token, "acct", "user-0").await["users"] == 151
    })
    .await;
    let on_b = Api { jwt: admin.jwt.clone(), ..Api::new(&b.http) };
    assert_eq!(on_b.post("/seats/accounts/acct/upgrade", json!({})).await.0, 200);
    within(Duration::from_secs(1), "node A shows B's upgrade", async || {
        report(&http, &a.http, &token, "acct", "user-0").await["plan"] == "Enterprise Plan"
    })
    .await;
}

/// One MQTT v5 device that publishes QoS 1 readings 1, 2, 3… to the first node that takes
/// it, moving on to the next when its connection breaks, until `stop`. Records each
/// acknowledged reading with the index of the node that acknowledged it.
async fn roaming_device(
    nodes: Vec<String>,
    (id, secret): (String, String),
    acked: Arc<Mutex<Vec<(String, i64, usize)>>>,
    stop: Arc<AtomicBool>,
) {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let mut seq = 0;
    for (node, addr) in nodes.iter().enumerate() {
        let (host, port) = addr.rsplit_once(':').unwrap();
        let mut opts = MqttOptions::new(format!("c-{id}"), host, port.parse().unwrap());
        opts.set_credentials(format!("admin:{id}"), secret.clone());
        let (client, mut ev) = AsyncClient::new(opts, 16);
        let next = async |ev: &mut rumqttc::v5::EventLoop| loop {
            match tokio::time::timeout(Duration::from_secs(5), ev.poll()).await {
                Ok(Ok(Event::Incoming(p @ (Packet::ConnAck(_) | Packet::PubAck(_))))) => return Some(p),
                Ok(Ok(_)) => {}
                _ => return None,
            }
        };
        if !matches!(next(&mut ev).await, Some(Packet::ConnAck(_))) {
            continue;
        }
        while !stop.load(Ordering::Relaxed) {
            seq += 1;
            let payload = format!(r#"{{"temperature": {seq}}}"#);
            if client.publish(format!("admin:{id}/attrs"), QoS::AtLeastOnce, false, payload).await.is_err() {
                break;
            }
            match next(&mut ev).await {
                Some(Packet::PubAck(ack)) if ack.reason == PubAckReason::Success => {
                    acked.lock().unwrap().push((id.clone(), seq, node))
                }
                _ => break,
            }
        }
    }
}

/// SIGKILL of one of two nodes while its devices publish QoS 1 readings: the devices move
/// to the other node, and every reading either node acknowledged is in history, in the
/// device's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_during_publishing_loses_no_acknowledged_reading() {
    let Some(Cluster { mut a, b, dirs: _dirs }) = Cluster::start().await else { return };
    let (api_a, api_b) = (Api::admin(&a).await, Api::admin(&b).await);
    let template = api_a.thermometer_template().await;
    let mut devices = Vec::new();
    for i in 0..6 {
        devices.push(api_a.device_with_secret(template, &format!("roamer-{i}")).await);
    }
    let last = &devices[devices.len() - 1].0;
    within(Duration::from_secs(1), "node B knows the devices", async || {
        api_b.get(&format!("/device/{last}")).await.0 == 200
    })
    .await;

    let acked: Arc<Mutex<Vec<(String, i64, usize)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let nodes = vec![a.mqtt.clone().unwrap(), b.mqtt.clone().unwrap()];
    let tasks: Vec<_> = devices
        .iter()
        .map(|d| tokio::spawn(roaming_device(nodes.clone(), d.clone(), acked.clone(), stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    a.kill9();
    let killed = Instant::now();
    // Every device is back, on B, acknowledged again.
    within(Duration::from_secs(10), "every device publishes through node B", async || {
        let acked = acked.lock().unwrap();
        devices.iter().all(|(id, _)| acked.iter().any(|(d, _, node)| d == id && *node == 1))
    })
    .await;
    eprintln!("devices moved to node B within {:?}", killed.elapsed());
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let on_a = acked.iter().filter(|(_, _, node)| *node == 0).count();
    assert!(on_a > 50, "node A acknowledged readings before it was killed: {on_a}");

    // What A had taken from JetStream but not written comes back to B after the ack wait.
    let deadline = Instant::now() + Duration::from_secs(20);
    for (id, _) in &devices {
        loop {
            let (status, hist) =
                api_b.get(&format!("/history/device/{id}/history?attr=temperature&firstN=100000")).await;
            let values: Vec<i64> = if status == 200 {
                hist.as_array().unwrap().iter().map(|p| p["value"].as_i64().unwrap()).collect()
            } else {
                vec![]
            };
            let missing: Vec<i64> =
                acked.iter().filter(|(d, s, _)| d == id && !values.contains(s)).map(|(_, s, _)| *s).collect();
            if missing.is_empty() {
                assert!(values.windows(2).all(|w| w[0] < w[1]), "device {id}: history out of order: {values:?}");
                break;
            }
            assert!(Instant::now() < deadline, "device {id}: acknowledged readings lost: {missing:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    eprintln!("{} readings acknowledged ({on_a} by node A before SIGKILL), all in history, in order", acked.len());
}

/// A v5 device connection to `addr`; `persistent`: no clean start, a session of an hour.
async fn device_v5(
    addr: &str,
    (id, secret): &(String, String),
    persistent: bool,
) -> (rumqttc::v5::AsyncClient, rumqttc::v5::EventLoop) {
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let (host, port) = addr.rsplit_once(':').unwrap();
    let mut opts = MqttOptions::new(format!("c-{id}"), host, port.parse().unwrap());
    opts.set_credentials(format!("admin:{id}"), secret.clone());
    if persistent {
        opts.set_clean_start(false);
        opts.set_session_expiry_interval(Some(3600));
    }
    let (client, mut ev) = AsyncClient::new(opts, 16);
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ev.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => return (client, ev),
            Ok(Ok(_)) => {}
            other => panic!("no CONNACK from {addr}: {other:?}"),
        }
    }
}

/// Polls `ev` until a packet `pick` accepts, for at most `limit`.
async fn wait_for<T>(
    ev: &mut rumqttc::v5::EventLoop,
    limit: Duration,
    pick: impl Fn(&rumqttc::v5::mqttbytes::v5::Packet) -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, ev.poll()).await {
            Ok(Ok(rumqttc::v5::Event::Incoming(p))) => {
                if let Some(found) = pick(&p) {
                    return Some(found);
                }
            }
            Ok(Ok(_)) => {}
            _ => return None,
        }
    }
}

/// Actuation through either node reaches the device on the other; a persistent session
/// moves with its device to another node, queued actuation included; and a device's new
/// connection on one node closes its old one on the other (one connection per session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actuation_and_sessions_follow_the_device_across_nodes() {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::{DisconnectReasonCode, Packet};
    let Some(Cluster { a, b, dirs: _dirs }) = Cluster::start().await else { return };
    let (mqtt_a, mqtt_b) = (a.mqtt.clone().unwrap(), b.mqtt.clone().unwrap());
    let (api_a, api_b) = (Api::admin(&a).await, Api::admin(&b).await);
    let template = api_a.thermometer_template().await;
    let device = api_a.device_with_secret(template, "roaming").await;
    let id = device.0.clone();
    within(Duration::from_secs(1), "node B knows the device", async || {
        api_b.get(&format!("/device/{id}")).await.0 == 200
    })
    .await;
    let config = format!("admin:{id}/config");
    let actuation = |fan: i64| json!({"attrs": {"fan": fan}});
    let fan_of = |p: &Packet| match p {
        Packet::Publish(p) => serde_json::from_slice::<serde_json::Value>(&p.payload).ok()?["fan"].as_i64(),
        _ => None,
    };

    // Connected and subscribed on B, actuated through A.
    let (client, mut ev) = device_v5(&mqtt_b, &device, true).await;
    client.subscribe(&config, QoS::AtLeastOnce).await.unwrap();
    wait_for(&mut ev, Duration::from_secs(5), |p| matches!(p, Packet::SubAck(_)).then_some(())).await.expect("SUBACK");
    assert_eq!(api_a.put(&format!("/device/{id}/actuate"), actuation(1)).await.0, 200);
    assert_eq!(wait_for(&mut ev, Duration::from_secs(2), fan_of).await, Some(1), "actuation through A reaches B");

    // Offline, its persistent session on B gets actuation through A; it comes back on A.
    client.disconnect().await.unwrap();
    let _ = wait_for(&mut ev, Duration::from_millis(500), |_| None::<()>).await;
    drop((client, ev));
    assert_eq!(api_a.put(&format!("/device/{id}/actuate"), actuation(2)).await.0, 200);
    tokio::time::sleep(Duration::from_millis(300)).await; // B's relay queues it
    let (_client, mut ev) = device_v5(&mqtt_a, &device, true).await;
    assert_eq!(wait_for(&mut ev, Duration::from_secs(2), fan_of).await, Some(2), "queued on B, delivered on A");
    // And the subscription came along: the next actuation, through B, reaches it on A.
    assert_eq!(api_b.put(&format!("/device/{id}/actuate"), actuation(3)).await.0, 200);
    assert_eq!(wait_for(&mut ev, Duration::from_secs(2), fan_of).await, Some(3));

    // The same session connecting on B closes the connection on A as taken over.
    let (_again, _ev_b) = device_v5(&mqtt_b, &device, true).await;
    let reason = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match ev.poll().await {
                Ok(rumqttc::v5::Event::Incoming(Packet::Disconnect(d))) => return Some(d.reason_code),
                Err(rumqttc::v5::ConnectionError::MqttState(rumqttc::v5::StateError::ServerDisconnect {
                    reason_code,
                    ..
                })) => return Some(reason_code),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    })
    .await
    .ok()
    .flatten();
    assert_eq!(reason, Some(DisconnectReasonCode::SessionTakenOver), "one connection per session across nodes");
}

/// Behind a balancer, a ticket asked of one node may be used on the other, once; and a
/// subscriber on either node sees the readings every node takes, in order per device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_see_every_nodes_readings_and_tickets_work_once_on_any_node() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::{Error, Message};
    let Some(Cluster { a, b, dirs: _dirs }) = Cluster::start().await else { return };
    let (api_a, api_b) = (Api::admin(&a).await, Api::admin(&b).await);
    let template = api_a.thermometer_template().await;
    let (id, secret) = api_a.device_with_secret(template, "d").await;

    let (status, body) = api_a.get("/kafka-ws/v1/ticket").await;
    assert_eq!(status, 200, "{body}");
    let path = format!("/kafka-ws/v1/topics/admin.device-data?ticket={}", body["ticket"].as_str().unwrap());
    let url = |s: &Server| format!("{}{path}", s.http.replacen("http://", "ws://", 1));
    let (mut on_b, _) = tokio_tungstenite::connect_async(url(&b)).await.expect("the ticket of A works on B");
    match tokio_tungstenite::connect_async(url(&a)).await {
        Err(Error::Http(resp)) => assert_eq!(resp.status(), 401, "used on B: refused on A"),
        other => panic!("a used ticket was accepted: {:?}", other.map(|_| ())),
    }

    // Readings taken by A, then by B, alternating: B's subscriber gets all, in order.
    within(Duration::from_secs(2), "the device known on B", async || {
        api_b.get(&format!("/device/{id}")).await.0 == 200
    })
    .await;
    for t in 0..20 {
        let node = if t % 2 == 0 { &api_a } else { &api_b };
        assert_eq!(node.send_reading("admin", &id, &secret, json!({"temperature": t})).await.0, 204);
    }
    for t in 0..20 {
        let msg = tokio::time::timeout(Duration::from_secs(10), on_b.next()).await.expect("within 10 s");
        let Some(Ok(Message::Text(text))) = msg else { panic!("{msg:?}") };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["attrs"]["temperature"], t, "in order");
    }
}

/// A tenant's own CA registered through node A is trusted by node B's MQTTS listener
/// within a second (the `x509.trusted-cas` event), its certificates register themselves
/// at CONNECT on B, and removing it through A cuts B's connection off.
#[tokio::test]
async fn a_trusted_ca_registered_on_one_node_is_trusted_by_the_other() {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
    let Some(Cluster { a, b, dirs: _dirs }) = Cluster::start().await else { return };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let api_a = Api::admin(&a).await;
    let template = api_a.thermometer_template().await;
    let (id, _) = api_a.device_with_secret(template, "own-ca").await;
    // The tenant's CA and a device certificate from it, made with rcgen.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::default();
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Cluster tenant CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).unwrap();
    let device_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, format!("admin:{id}"));
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let device_cert = params.signed_by(&device_key, &issuer).unwrap().pem();

    let (status, body) =
        api_a.post("/x509/v1/trusted-cas", json!({"caPem": ca_pem, "allowAutoRegistration": true})).await;
    assert_eq!(status, 201, "{body}");
    let ca_fp = body["caFingerprint"].as_str().unwrap().to_string();
    let ingot_ca = std::fs::read(a.data_dir.join("tls/ca.pem")).unwrap();
    let (host, port) = b.mqtts.as_ref().unwrap().rsplit_once(':').unwrap();
    let connect = async || {
        let mut options = MqttOptions::new("own-ca", host, port.parse().unwrap());
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
            ca: ingot_ca.clone(),
            alpn: None,
            client_auth: Some((device_cert.clone().into_bytes(), device_key.serialize_pem().into_bytes())),
        }));
        let (client, mut events) = AsyncClient::new(options, 10);
        client.publish(format!("admin:{id}/attrs"), QoS::AtLeastOnce, false, r#"{"temperature": 5}"#).await.unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(5), events.poll()).await {
                Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => return Some((client, events)),
                Ok(Ok(_)) => {}
                _ => return None,
            }
        }
    };
    let started = Instant::now();
    let (_client, mut events) = loop {
        if let Some(connected) = connect().await {
            break connected;
        }
        assert!(started.elapsed() < Duration::from_secs(1), "node B trusts the CA within a second");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("node B trusted the CA registered on A after {:?}", started.elapsed());

    assert_eq!(api_a.delete(&format!("/x509/v1/trusted-cas/{ca_fp}")).await.0, 204);
    let removed = Instant::now();
    while tokio::time::timeout(Duration::from_secs(5), events.poll()).await.expect("cut off within 5 s").is_ok() {}
    eprintln!("node B ended the connection {:?} after the CA was removed on A", removed.elapsed());
    assert!(removed.elapsed() < Duration::from_secs(1), "cut off within a second");
}

/// A flow made through node A runs on readings node B takes (the engine is one durable
/// group across nodes; the definitions follow `flows.changed`), once per reading.
#[tokio::test]
async fn a_flow_made_on_one_node_runs_on_the_others_readings() {
    let Some(Cluster { a, b, dirs: _dirs }) = Cluster::start().await else { return };
    let (api_a, api_b) = (Api::admin(&a).await, Api::admin(&b).await);
    let template = api_a.thermometer_template().await;
    let (sensor, secret) = api_a.device_with_secret(template, "sensor").await;
    let (mirror, _) = api_a.device_with_secret(template, "mirror").await;
    let flow = json!([
        {"id": "in", "type": "event device in", "device_id": sensor, "event_publish": true, "wires": [["c"]]},
        {"id": "c", "type": "change", "rules": [
            {"t": "set", "p": "out.temperature", "to": "payload.data.attrs.temperature", "tot": "msg"}], "wires": [["o"]]},
        {"id": "o", "type": "multi device out", "device_source": "configured", "devices_source_configured": [mirror],
         "attrs": "out", "wires": []}
    ]);
    assert_eq!(api_a.post("/flows/v1/flow", json!({"name": "mirror", "flow": flow})).await.0, 200);
    let started = Instant::now();
    let mut sent = 0.0;
    // Node B may learn of the flow a moment later: readings sent before run no flow.
    while api_a.get(&format!("/history/device/{mirror}/history?attr=temperature&lastN=1")).await.0 != 200 {
        assert!(started.elapsed() < Duration::from_secs(5), "the flow runs on B's readings");
        sent += 1.0;
        assert_eq!(api_b.send_reading("admin", &sensor, &secret, json!({"temperature": sent})).await.0, 204);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("a flow made on A ran on B's readings after {:?}", started.elapsed());
    for t in 100..110 {
        assert_eq!(api_b.send_reading("admin", &sensor, &secret, json!({"temperature": f64::from(t)})).await.0, 204);
    }
    within(Duration::from_secs(5), "ten more mirrored readings", async || {
        let (_, h) = api_b.get(&format!("/history/device/{mirror}/history?attr=temperature&lastN=200")).await;
        h.as_array().is_some_and(|a| a.iter().filter(|p| p["value"].as_f64().unwrap_or(0.0) >= 100.0).count() >= 10)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, h) = api_b.get(&format!("/history/device/{mirror}/history?attr=temperature&lastN=200")).await;
    let mirrored = h.as_array().unwrap().iter().filter(|p| p["value"].as_f64().unwrap_or(0.0) >= 100.0).count();
    assert_eq!(mirrored, 10, "each reading ran the flow once, not once per node");
}

/// POST `body` to `base` + `path` with an optional bearer token: (status, JSON).
async fn post_json(base: &str, path: &str, token: Option<&str>, body: serde_json::Value) -> (u16, serde_json::Value) {
    let mut rb = reqwest::Client::new().post(format!("{base}{path}")).json(&body);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    Api::send(rb).await
}

/// The auction on two nodes: a token from one is good on the other, a socket on B hears
/// of an offer made on A, and bids sent to both nodes at once keep every invariant
/// (exactly one winning bid, the highest, and the offer's price is its).
#[tokio::test]
async fn the_auction_is_one_market_across_nodes() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let Some(Cluster { a, b, dirs: _dirs }) = Cluster::start().await else { return };
    let mut tokens = Vec::new();
    for (i, name) in ["seller", "bidder"].iter().enumerate() {
        let creds = json!({"username": name, "password": format!("{name}-password")});
        assert_eq!(post_json(&a.http, "/v1/signup", None, creds.clone()).await.0, 201);
        let node = if i == 0 { &a.http } else { &b.http };
        let (status, body) = post_json(node, "/v1/login", None, creds).await;
        assert_eq!(status, 200, "a user signed up on A logs in on B: {body}");
        tokens.push(body["token"].as_str().unwrap().to_string());
    }
    let url = format!("{}/v1/stream", b.http.replacen("http", "ws", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let hello = json!({"event": "authenticate", "token": tokens[0]}).to_string();
    ws.send(Message::Text(hello.into())).await.unwrap();
    let (status, offer) =
        post_json(&a.http, "/v1/offer", Some(&tokens[0]), json!({"title": "lamp", "bid_price": 1})).await;
    assert_eq!(status, 201, "{offer}");
    let offer_id = offer["id"].as_str().unwrap().to_string();
    let told = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Text(t) = m {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                if v["event"] == "offerCreated" {
                    return v;
                }
            }
        }
        panic!("the socket closed");
    })
    .await
    .expect("B's socket hears of A's offer within 5 s");
    assert_eq!(told["offer"]["id"], offer["id"]);

    let mut tasks = Vec::new();
    for t in 0..20usize {
        let base = if t % 2 == 0 { a.http.clone() } else { b.http.clone() };
        let (token, offer_id) = (tokens[1].clone(), offer_id.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0..40usize {
                let price = ((t * 37 + n * 11) % 300 + 1) as f64;
                let body = json!({"bid_price": price, "offer_id": offer_id});
                let (status, bid) = post_json(&base, "/v1/bid", Some(&token), body).await;
                assert_eq!(status, 201, "{bid}");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut bids = Vec::new();
    for page in 0..10 {
        let rb = reqwest::Client::new()
            .get(format!("{}/v1/offer/{offer_id}/bids?size=100&page={page}", b.http))
            .bearer_auth(&tokens[0]);
        let (_, got) = Api::send(rb).await;
        bids.extend(got.as_array().unwrap().clone());
    }
    assert_eq!(bids.len(), 800, "every bid stored once");
    let winners: Vec<_> = bids.iter().filter(|b| b["winning"] == true).collect();
    assert_eq!(winners.len(), 1, "exactly one winning bid");
    let top = bids.iter().map(|b| b["bid_price"].as_f64().unwrap()).fold(0.0, f64::max);
    assert_eq!(winners[0]["bid_price"].as_f64(), Some(top));
    let rb = reqwest::Client::new().get(format!("{}/v1/offer/{offer_id}", a.http)).bearer_auth(&tokens[1]);
    assert_eq!(Api::send(rb).await.1["bid_price"].as_f64(), Some(top), "the offer's price is the winning bid's");
}
