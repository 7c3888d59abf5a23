//! The MQTT agent over real sockets: rumqttc (v3.1.1 and v5) and mosquitto clients against
//! a server on an ephemeral port, with a real `IngestService` and `MemoryBus`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus::{Bus, Delivery, MemoryBus, Mode};
use chrono::Utc;
use ingest::mqtt::{MqttConfig, MqttError, MqttHandle, MqttServer};
use ingest::{DeviceAuth, DeviceAuthError, DeviceDirectory, IngestService};
use model::data::PayloadLimits;
use model::{DeviceData, DeviceEvent, DeviceRef, EventKind};
use rumqttc::v5::mqttbytes::v5 as p5;
use rumqttc::{self as r3};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);
const MAX_PAYLOAD: usize = 4096;

/// Devices and secrets; tenant "open" is in unsecured mode (no secret needed), tenant
/// "down" simulates a directory outage. Counts the lookups of stored attributes.
struct Directory(HashMap<String, &'static str>, Arc<AtomicUsize>);

#[async_trait::async_trait]
impl DeviceDirectory for Directory {
    async fn verify_device(&self, device: &DeviceRef, secret: Option<&[u8]>) -> Result<DeviceAuth, DeviceAuthError> {
        if device.tenant == "down" {
            return Err(DeviceAuthError::Unavailable);
        }
        let known = self.0.get(&device.to_string()).ok_or(DeviceAuthError::UnknownDevice)?;
        match secret {
            None if device.tenant == "open" => Ok(DeviceAuth::Unsecured),
            None => Err(DeviceAuthError::SecretRequired),
            Some(s) if s == known.as_bytes() => Ok(DeviceAuth::Secret),
            Some(_) => Err(DeviceAuthError::BadSecret),
        }
    }

    async fn check_device(&self, device: &DeviceRef) -> Result<(), DeviceAuthError> {
        self.0.get(&device.to_string()).map(|_| ()).ok_or(DeviceAuthError::UnknownDevice)
    }

    /// No device has history yet in these tests.
    async fn stored_attrs(&self, _device: &DeviceRef) -> Result<Vec<String>, DeviceAuthError> {
        self.1.fetch_add(1, Ordering::SeqCst);
        Ok(Vec::new())
    }
}

struct Harness {
    bus: Arc<MemoryBus>,
    server: MqttHandle,
    /// The durable consumer's task: aborting it kills the consumer.
    consumer: tokio::task::JoinHandle<()>,
    readings: mpsc::UnboundedReceiver<DeviceData>,
    /// While set, the durable subscriber keeps deliveries instead of acking them.
    withhold: Arc<AtomicBool>,
    held: Arc<Mutex<Vec<Delivery<DeviceData>>>>,
    /// How often the directory was asked for a device's stored attributes.
    attrs_asked: Arc<AtomicUsize>,
}

impl Harness {
    async fn start() -> Self {
        Self::with(|_| {}).await
    }

    async fn with(tweak: impl FnOnce(&mut MqttConfig)) -> Self {
        Self::with_service(|s| s, tweak).await
    }

    async fn with_service(
        service: impl FnOnce(IngestService) -> IngestService,
        tweak: impl FnOnce(&mut MqttConfig),
    ) -> Self {
        let bus = Arc::new(MemoryBus::new(1024));
        let devices = [("acme:dev1", "s3cret"), ("acme:dev2", "other"), ("open:dev9", "unused")];
        let attrs_asked = Arc::new(AtomicUsize::new(0));
        let directory = Directory(devices.iter().map(|(d, s)| (d.to_string(), *s)).collect(), attrs_asked.clone());
        let ingest = Arc::new(service(IngestService::new(
            bus.clone(),
            Arc::new(directory),
            PayloadLimits::default(),
            MAX_PAYLOAD,
        )));
        // The durable consumer (the history writer in Ingot): acks unless told to withhold.
        let mut sub = bus.subscribe_data("history", Mode::Durable);
        let (tx, readings) = mpsc::unbounded_channel();
        let withhold = Arc::new(AtomicBool::new(false));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (w, h) = (withhold.clone(), held.clone());
        let consumer = tokio::spawn(async move {
            while let Some(d) = sub.recv().await {
                let _ = tx.send((*d.msg).clone());
                if w.load(Ordering::SeqCst) { h.lock().unwrap().push(d) } else { d.ack() }
            }
        });
        let mut config =
            MqttConfig { listen: "127.0.0.1:0".parse().unwrap(), max_keep_alive_secs: 60, ..MqttConfig::default() };
        tweak(&mut config);
        let server = MqttServer::start(config, ingest).await.expect("server starts");
        Self { bus, server, consumer, readings, withhold, held, attrs_asked }
    }

    fn port(&self) -> u16 {
        self.server.local_addr().port()
    }

    async fn reading(&mut self) -> DeviceData {
        timeout(WAIT, self.readings.recv()).await.expect("a reading in time").expect("bus open")
    }

    async fn no_reading(&mut self) {
        if let Ok(Some(d)) = timeout(Duration::from_millis(300), self.readings.recv()).await {
            panic!("unexpected reading {d:?}");
        }
    }

    async fn event(&self, event: DeviceEvent) {
        self.bus.publish_event(event).await.unwrap();
    }

    async fn actuate(&self, tenant: &str, device: &str, attrs: Value) {
        let attrs = attrs.as_object().unwrap().clone();
        self.bus.publish_event(DeviceEvent::configure(tenant, device, attrs, Utc::now())).await.unwrap();
    }
}

// ---------- rumqttc helpers ----------

fn v3_options(h: &Harness, client_id: &str, creds: Option<(&str, &str)>) -> r3::MqttOptions {
    let mut o = r3::MqttOptions::new(client_id, "127.0.0.1", h.port());
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(1 << 20, 1 << 20);
    if let Some((u, p)) = creds {
        o.set_credentials(u, p);
    }
    o
}

fn v5_options(h: &Harness, client_id: &str, creds: Option<(&str, &str)>) -> rumqttc::v5::MqttOptions {
    let mut o = rumqttc::v5::MqttOptions::new(client_id, "127.0.0.1", h.port());
    o.set_keep_alive(Duration::from_secs(30));
    if let Some((u, p)) = creds {
        o.set_credentials(u, p);
    }
    o
}

/// Next incoming v3 packet (outgoing notifications skipped).
async fn next3(el: &mut r3::EventLoop) -> Result<r3::Packet, r3::ConnectionError> {
    timeout(WAIT, async {
        loop {
            if let r3::Event::Incoming(p) = el.poll().await? {
                return Ok(p);
            }
        }
    })
    .await
    .expect("an MQTT v3 packet in time")
}

async fn next5(el: &mut rumqttc::v5::EventLoop) -> Result<p5::Packet, rumqttc::v5::ConnectionError> {
    timeout(WAIT, async {
        loop {
            if let rumqttc::v5::Event::Incoming(p) = el.poll().await? {
                return Ok(p);
            }
        }
    })
    .await
    .expect("an MQTT v5 packet in time")
}

async fn connect3(h: &Harness, id: &str, creds: Option<(&str, &str)>) -> (r3::AsyncClient, r3::EventLoop) {
    connect3_with(v3_options(h, id, creds)).await
}

async fn connect3_with(o: r3::MqttOptions) -> (r3::AsyncClient, r3::EventLoop) {
    let (c, mut el) = r3::AsyncClient::new(o, 64);
    match next3(&mut el).await {
        Ok(r3::Packet::ConnAck(ack)) => assert_eq!(ack.code, r3::ConnectReturnCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    (c, el)
}

async fn connect5(
    h: &Harness,
    id: &str,
    creds: Option<(&str, &str)>,
) -> (rumqttc::v5::AsyncClient, rumqttc::v5::EventLoop) {
    let (c, mut el) = rumqttc::v5::AsyncClient::new(v5_options(h, id, creds), 64);
    match next5(&mut el).await {
        Ok(p5::Packet::ConnAck(ack)) => assert_eq!(ack.code, p5::ConnectReturnCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    (c, el)
}

async fn refused3(h: &Harness, id: &str, creds: Option<(&str, &str)>) -> r3::ConnectReturnCode {
    let (_c, mut el) = r3::AsyncClient::new(v3_options(h, id, creds), 8);
    match next3(&mut el).await {
        Err(r3::ConnectionError::ConnectionRefused(code)) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn refused5(h: &Harness, id: &str, creds: Option<(&str, &str)>) -> p5::ConnectReturnCode {
    let (_c, mut el) = rumqttc::v5::AsyncClient::new(v5_options(h, id, creds), 8);
    match next5(&mut el).await {
        Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The reason code of the DISCONNECT the server sends next (rumqttc reports it as an error).
async fn server_disconnect(el: &mut rumqttc::v5::EventLoop) -> p5::DisconnectReasonCode {
    match next5(el).await {
        Ok(p5::Packet::Disconnect(d)) => d.reason_code,
        Err(rumqttc::v5::ConnectionError::MqttState(rumqttc::v5::StateError::ServerDisconnect {
            reason_code, ..
        })) => reason_code,
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
}

const DEV1: Option<(&str, &str)> = Some(("acme:dev1", "s3cret"));

// ---------- tests ----------

#[tokio::test]
async fn v3_connack_codes() {
    let h = Harness::start().await;
    connect3(&h, "c1", DEV1).await;
    connect3(&h, "open:dev9", None).await; // mosca form: identity from the client id, unsecured tenant
    assert_eq!(refused3(&h, "c2", Some(("acme:dev1", "wrong"))).await, r3::ConnectReturnCode::BadUserNamePassword);
    assert_eq!(refused3(&h, "acme:dev1", None).await, r3::ConnectReturnCode::BadUserNamePassword);
    assert_eq!(refused3(&h, "c3", Some(("acme:nobody", "x"))).await, r3::ConnectReturnCode::NotAuthorized);
    assert_eq!(refused3(&h, "no-colon", None).await, r3::ConnectReturnCode::NotAuthorized);
    assert_eq!(refused3(&h, "c4", Some(("down:dev1", "x"))).await, r3::ConnectReturnCode::ServiceUnavailable);
}

#[tokio::test]
async fn v5_connack_codes() {
    let h = Harness::start().await;
    connect5(&h, "c1", DEV1).await;
    assert_eq!(refused5(&h, "c2", Some(("acme:dev1", "wrong"))).await, p5::ConnectReturnCode::BadUserNamePassword);
    assert_eq!(refused5(&h, "c3", Some(("acme:nobody", "x"))).await, p5::ConnectReturnCode::NotAuthorized);
    assert_eq!(refused5(&h, "no-colon", None).await, p5::ConnectReturnCode::ClientIdentifierNotValid);
    assert_eq!(refused5(&h, "c4", Some(("down:dev1", "x"))).await, p5::ConnectReturnCode::ServerUnavailable);
}

#[tokio::test]
async fn max_connections_refuses_with_quota_exceeded() {
    let h = Harness::with(|c| c.max_connections = 1).await;
    let (_c, _el) = connect5(&h, "first", DEV1).await;
    assert_eq!(refused5(&h, "second", Some(("acme:dev2", "other"))).await, p5::ConnectReturnCode::QuotaExceeded);
    assert_eq!(refused3(&h, "third", Some(("acme:dev2", "other"))).await, r3::ConnectReturnCode::ServiceUnavailable);
}

/// A device's attribute budget is loaded when it connects, not by its first reading:
/// with 10,000 devices connecting at once, their first readings waited a second for the
/// store (issue 16).
#[tokio::test]
async fn a_devices_stored_attributes_are_read_when_it_connects() {
    let mut h = Harness::start().await;
    let (c, mut el) = connect3(&h, "c1", DEV1).await;
    assert_eq!(h.attrs_asked.load(Ordering::SeqCst), 1, "read at CONNECT");
    c.publish("acme:dev1/attrs", r3::QoS::AtLeastOnce, false, json!({"n": 1}).to_string()).await.unwrap();
    let driver = tokio::spawn(async move { while el.poll().await.is_ok() {} });
    assert_eq!(h.reading().await.attrs["n"], json!(1));
    assert_eq!(h.attrs_asked.load(Ordering::SeqCst), 1, "not again for the reading");
    driver.abort();
}

#[tokio::test]
async fn v3_publishes_reach_the_bus_in_order() {
    let mut h = Harness::start().await;
    let (c, mut el) = connect3(&h, "c1", DEV1).await;
    let driver = tokio::spawn(async move {
        let mut acks = 0;
        while acks < 40 {
            if let r3::Event::Incoming(r3::Packet::PubAck(_)) = el.poll().await.unwrap() {
                acks += 1;
            }
        }
    });
    // Pipelined, both topic forms, both QoS levels.
    for n in 0..60 {
        let (topic, qos) = match n % 3 {
            0 => ("acme:dev1/attrs", r3::QoS::AtLeastOnce),
            1 => ("/acme/dev1/attrs", r3::QoS::AtLeastOnce),
            _ => ("acme:dev1/attrs", r3::QoS::AtMostOnce),
        };
        c.publish(topic, qos, false, json!({"n": n}).to_string()).await.unwrap();
    }
    for n in 0..60 {
        let d = h.reading().await;
        assert_eq!((d.tenant.as_str(), d.device_id.as_str(), &d.attrs["n"]), ("acme", "dev1", &json!(n)));
    }
    timeout(WAIT, driver).await.expect("40 PUBACKs").unwrap();
}

#[tokio::test]
async fn puback_waits_until_the_reading_is_durable() {
    let mut h = Harness::start().await;
    h.withhold.store(true, Ordering::SeqCst);
    let (c, mut el) = connect5(&h, "c1", DEV1).await;
    c.publish("acme:dev1/attrs", rumqttc::v5::mqttbytes::QoS::AtLeastOnce, false, r#"{"t":1}"#).await.unwrap();
    // Polling the event loop sends the PUBLISH; no PUBACK may come while the ack is withheld.
    let early = timeout(Duration::from_millis(400), async {
        loop {
            if let Ok(rumqttc::v5::Event::Incoming(p5::Packet::PubAck(_))) = el.poll().await {
                return;
            }
        }
    })
    .await;
    assert!(early.is_err(), "PUBACK before the durable consumer acked");
    assert_eq!(h.reading().await.attrs["t"], json!(1));
    let delivery = h.held.lock().unwrap().pop().expect("held delivery");
    delivery.ack();
    match next5(&mut el).await {
        Ok(p5::Packet::PubAck(ack)) => assert_eq!(ack.reason, p5::PubAckReason::Success),
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

/// Polls the event loop for a while so queued requests are sent; returns incoming packets.
async fn drive5(el: &mut rumqttc::v5::EventLoop, for_: Duration) -> Vec<p5::Packet> {
    let mut got = Vec::new();
    let _ = timeout(for_, async {
        while let Ok(event) = el.poll().await {
            if let rumqttc::v5::Event::Incoming(p) = event {
                got.push(p);
            }
        }
    })
    .await;
    got
}

#[tokio::test]
async fn storage_failure_v5_gets_unspecified_error_v3_is_closed_unacked() {
    let mut h = Harness::start().await;
    h.withhold.store(true, Ordering::SeqCst);

    let (c5, mut el5) = connect5(&h, "c5", DEV1).await;
    c5.publish("acme:dev1/attrs", rumqttc::v5::mqttbytes::QoS::AtLeastOnce, false, r#"{"a":1}"#).await.unwrap();
    let early = drive5(&mut el5, Duration::from_millis(200)).await;
    assert!(early.is_empty(), "{early:?}");
    h.reading().await;
    h.held.lock().unwrap().clear(); // dropped unacked: the store failed
    match next5(&mut el5).await {
        Ok(p5::Packet::PubAck(ack)) => assert_eq!(ack.reason, p5::PubAckReason::UnspecifiedError),
        other => panic!("expected PUBACK, got {other:?}"),
    }

    let (c3, mut el3) = connect3(&h, "c3", Some(("acme:dev2", "other"))).await;
    c3.publish("acme:dev2/attrs", r3::QoS::AtLeastOnce, false, r#"{"a":1}"#).await.unwrap();
    let reader = async {
        h.reading().await;
        h.held.lock().unwrap().clear();
    };
    let conn = async {
        loop {
            match el3.poll().await {
                Ok(r3::Event::Incoming(r3::Packet::PubAck(_))) => panic!("a failed store must not be acknowledged"),
                Ok(_) => {}
                Err(_) => return,
            }
        }
    };
    let ((), ()) = timeout(WAIT, async { tokio::join!(reader, conn) }).await.expect("v3 connection closed");
}

/// Waits until the v3 connection ends; a PUBACK before that is a failure.
async fn closed_without_puback(el: &mut r3::EventLoop) {
    let closed = async {
        loop {
            match el.poll().await {
                Ok(r3::Event::Incoming(r3::Packet::PubAck(_))) => panic!("nothing may be acknowledged here"),
                Ok(_) => {}
                Err(_) => return,
            }
        }
    };
    timeout(WAIT, closed).await.expect("the v3 connection is closed");
}

#[tokio::test]
async fn a_dead_durable_consumer_fails_publishes_instead_of_acking_them() {
    let mut h = Harness::start().await;
    let (c5, mut el5) = connect5(&h, "c5", DEV1).await;
    let (c3, mut el3) = connect3(&h, "c3", Some(("acme:dev2", "other"))).await;
    h.consumer.abort(); // the history writer dies: nobody will store anything
    let _ = (&mut h.consumer).await;
    assert_eq!(h.bus.dead_groups(), ["device-data/history"]);

    c5.publish("acme:dev1/attrs", rumqttc::v5::mqttbytes::QoS::AtLeastOnce, false, r#"{"a":1}"#).await.unwrap();
    match next5(&mut el5).await {
        Ok(p5::Packet::PubAck(ack)) => assert_eq!(ack.reason, p5::PubAckReason::UnspecifiedError),
        other => panic!("expected an error PUBACK, got {other:?}"),
    }
    c3.publish("acme:dev2/attrs", r3::QoS::AtLeastOnce, false, r#"{"a":1}"#).await.unwrap();
    closed_without_puback(&mut el3).await;
}

#[tokio::test]
async fn deleted_or_rekeyed_devices_are_disconnected_as_not_authorized() {
    let h = Harness::start().await;
    let qos1 = rumqttc::v5::mqttbytes::QoS::AtLeastOnce;
    let now = Utc::now;

    // Deleted (dojot's `remove` event): v5 hears why, v3 is closed; within a second.
    let (_c5, mut el5) = connect5(&h, "c5", DEV1).await;
    let (c3, mut el3) = connect3(&h, "c3", DEV1).await;
    let removed =
        DeviceEvent { kind: EventKind::Remove, tenant: "acme".into(), data: json!({"id": "dev1"}), ts: now() };
    let started = std::time::Instant::now();
    h.event(removed).await;
    assert_eq!(server_disconnect(&mut el5).await, p5::DisconnectReasonCode::NotAuthorized);
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
    let _ = c3.publish("acme:dev1/attrs", r3::QoS::AtLeastOnce, false, "{}").await;
    closed_without_puback(&mut el3).await;

    // A new secret: every connection of that device goes; other devices stay.
    let (c5, mut el5) = connect5(&h, "c5", DEV1).await;
    let (other, mut other_el) = connect5(&h, "other", Some(("acme:dev2", "other"))).await;
    h.event(DeviceEvent::credentials("acme", "dev1", now())).await;
    assert_eq!(server_disconnect(&mut el5).await, p5::DisconnectReasonCode::NotAuthorized);
    drop(c5);
    other.publish("acme:dev2/attrs", qos1, false, r#"{"still":1}"#).await.unwrap();
    assert!(matches!(next5(&mut other_el).await, Ok(p5::Packet::PubAck(a)) if a.reason == p5::PubAckReason::Success));

    // The tenant leaves unsecured mode: the device that came in without a secret goes.
    let (_open, mut open_el) = connect5(&h, "open:dev9", None).await;
    h.event(DeviceEvent::tenant_secured("acme", now())).await;
    other.publish("acme:dev2/attrs", qos1, false, "{}").await.unwrap();
    assert!(matches!(next5(&mut other_el).await, Ok(p5::Packet::PubAck(_))), "a device with a secret stays");
    h.event(DeviceEvent::tenant_secured("open", now())).await;
    assert_eq!(server_disconnect(&mut open_el).await, p5::DisconnectReasonCode::NotAuthorized);
}

#[tokio::test]
async fn distinct_attributes_per_device_are_capped() {
    let mut h = Harness::with_service(|s| s.with_max_attrs_per_device(3), |_| {}).await;
    let (c, mut el) = connect5(&h, "c1", DEV1).await;
    let qos1 = rumqttc::v5::mqttbytes::QoS::AtLeastOnce;
    let cases = [
        (r#"{"a":1,"b":2}"#, p5::PubAckReason::Success),
        (r#"{"c":1,"d":2}"#, p5::PubAckReason::QuotaExceeded),
        (r#"{"a":3,"c":1}"#, p5::PubAckReason::Success),
        (r#"{"x1":1}"#, p5::PubAckReason::QuotaExceeded),
        (r#"{"a":4,"b":5,"c":6}"#, p5::PubAckReason::Success),
    ];
    for (payload, expected) in cases {
        c.publish("acme:dev1/attrs", qos1, false, payload).await.unwrap();
        match next5(&mut el).await {
            Ok(p5::Packet::PubAck(ack)) => assert_eq!(ack.reason, expected, "{payload}"),
            other => panic!("expected PUBACK for {payload}, got {other:?}"),
        }
    }
    for _ in 0..3 {
        h.reading().await;
    }
    h.no_reading().await;
    // Another device has a budget of its own.
    let (c2, mut el2) = connect5(&h, "c2", Some(("acme:dev2", "other"))).await;
    c2.publish("acme:dev2/attrs", qos1, false, r#"{"x1":1,"x2":2,"x3":3}"#).await.unwrap();
    assert!(matches!(next5(&mut el2).await, Ok(p5::Packet::PubAck(a)) if a.reason == p5::PubAckReason::Success));
}

#[tokio::test]
async fn sessions_per_device_are_capped() {
    let h = Harness::with(|c| c.max_sessions_per_device = 2).await;
    let persistent = |id: &str| {
        let mut o = v5_options(&h, id, DEV1);
        o.set_clean_start(false);
        o.set_session_expiry_interval(Some(3600));
        o
    };
    let connect = |o: rumqttc::v5::MqttOptions| async move {
        let (c, mut el) = rumqttc::v5::AsyncClient::new(o, 8);
        let ack = match next5(&mut el).await {
            Ok(p5::Packet::ConnAck(ack)) => Ok(ack),
            Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => Err(code),
            other => panic!("expected CONNACK, got {other:?}"),
        };
        (c, el, ack)
    };
    // "a" goes offline; "b" and "c" connect: "a" (offline longest) is evicted for "c".
    let (a, mut a_el, _) = connect(persistent("a")).await;
    a.disconnect().await.unwrap();
    let _ = drive5(&mut a_el, Duration::from_millis(100)).await;
    let (_b, _b_el, b_ack) = connect(persistent("b")).await;
    assert!(b_ack.is_ok());
    let (_c, _c_el, c_ack) = connect(persistent("c")).await;
    assert!(c_ack.is_ok());
    // Both sessions are live: a third client id is refused, and "a" is gone.
    let (_d, _d_el, d_ack) = connect(persistent("d")).await;
    assert_eq!(d_ack.unwrap_err(), p5::ConnectReturnCode::QuotaExceeded);
    drop((_b, _b_el));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_a, _a_el, a_ack) = connect(persistent("a")).await;
    assert!(!a_ack.unwrap().session_present, "a's session was evicted");
}

#[tokio::test]
async fn v5_refused_publishes_get_reason_codes_and_the_connection_stays() {
    let mut h = Harness::start().await;
    let (c, mut el) = connect5(&h, "c1", DEV1).await;
    let qos1 = rumqttc::v5::mqttbytes::QoS::AtLeastOnce;
    let cases = [
        ("acme:dev2/attrs", "{}".to_string(), p5::PubAckReason::NotAuthorized),
        ("acme:dev1/other", "{}".to_string(), p5::PubAckReason::TopicNameInvalid),
        ("acme:dev1/attrs", "not json".to_string(), p5::PubAckReason::PayloadFormatInvalid),
        ("acme:dev1/attrs", "[1,2]".to_string(), p5::PubAckReason::PayloadFormatInvalid),
        ("acme:dev1/attrs", format!(r#"{{"x":"{}"}}"#, "a".repeat(MAX_PAYLOAD)), p5::PubAckReason::QuotaExceeded),
        ("acme:dev1/attrs", r#"{"ok":true}"#.to_string(), p5::PubAckReason::Success),
    ];
    for (topic, payload, expected) in cases {
        c.publish(topic, qos1, false, payload).await.unwrap();
        match next5(&mut el).await {
            Ok(p5::Packet::PubAck(ack)) => assert_eq!(ack.reason, expected, "{topic}"),
            other => panic!("expected PUBACK for {topic}, got {other:?}"),
        }
    }
    assert_eq!(h.reading().await.attrs["ok"], json!(true));
    h.no_reading().await;
}

#[tokio::test]
async fn v5_qos2_publish_is_refused_with_qos_not_supported() {
    let mut h = Harness::start().await;
    let (c, mut el) = connect5(&h, "c1", DEV1).await;
    c.publish("acme:dev1/attrs", rumqttc::v5::mqttbytes::QoS::ExactlyOnce, false, "{}").await.unwrap();
    assert_eq!(server_disconnect(&mut el).await, p5::DisconnectReasonCode::QoSNotSupported);
    h.no_reading().await;
}

#[tokio::test]
async fn v3_refused_publishes_are_acked_and_dropped() {
    let mut h = Harness::start().await;
    let (c, mut el) = connect3(&h, "c1", DEV1).await;
    for (topic, payload) in
        [("acme:dev2/attrs", "{}"), ("/acme/dev1/attrs", "not json"), ("acme:dev1/attrs", r#"{"ok":1}"#)]
    {
        c.publish(topic, r3::QoS::AtLeastOnce, false, payload).await.unwrap();
        assert!(matches!(next3(&mut el).await, Ok(r3::Packet::PubAck(_))), "{topic}");
    }
    assert_eq!(h.reading().await.attrs["ok"], json!(1));
    h.no_reading().await;
}

#[tokio::test]
async fn v3_subscribe_own_config_and_receive_actuation() {
    let h = Harness::start().await;
    let (c, mut el) = connect3(&h, "c1", DEV1).await;
    c.subscribe("acme:dev1/config", r3::QoS::AtLeastOnce).await.unwrap();
    c.subscribe("acme:dev2/config", r3::QoS::AtLeastOnce).await.unwrap();
    c.subscribe("#", r3::QoS::AtMostOnce).await.unwrap();
    let mut codes = Vec::new();
    while codes.len() < 3 {
        if let Ok(r3::Packet::SubAck(ack)) = next3(&mut el).await {
            codes.extend(ack.return_codes);
        }
    }
    use r3::SubscribeReasonCode as S;
    assert_eq!(codes, [S::Success(r3::QoS::AtLeastOnce), S::Failure, S::Failure]);
    h.actuate("acme", "dev1", json!({"fan": 100})).await;
    h.actuate("acme", "dev2", json!({"fan": 1})).await; // not ours
    match next3(&mut el).await {
        Ok(r3::Packet::Publish(p)) => {
            assert_eq!((p.topic.as_str(), p.qos), ("acme:dev1/config", r3::QoS::AtLeastOnce));
            assert_eq!(serde_json::from_slice::<Value>(&p.payload).unwrap(), json!({"fan": 100}));
        }
        other => panic!("expected actuation, got {other:?}"),
    }
}

#[tokio::test]
async fn v5_subscribe_refusal_and_mosca_actuation() {
    let h = Harness::start().await;
    let (c, mut el) = connect5(&h, "c1", DEV1).await;
    let qos0 = rumqttc::v5::mqttbytes::QoS::AtMostOnce;
    c.subscribe("/acme/dev1/config", qos0).await.unwrap();
    c.subscribe("/acme/dev2/config", qos0).await.unwrap();
    let mut codes = Vec::new();
    while codes.len() < 2 {
        if let Ok(p5::Packet::SubAck(ack)) = next5(&mut el).await {
            codes.extend(ack.return_codes);
        }
    }
    assert_eq!(codes, [p5::SubscribeReasonCode::Success(qos0), p5::SubscribeReasonCode::NotAuthorized]);
    h.actuate("acme", "dev1", json!({"led": "on"})).await;
    match next5(&mut el).await {
        Ok(p5::Packet::Publish(p)) => {
            assert_eq!((&p.topic[..], p.qos), (&b"/acme/dev1/config"[..], qos0));
            assert_eq!(serde_json::from_slice::<Value>(&p.payload).unwrap(), json!({"led": "on"}));
        }
        other => panic!("expected actuation, got {other:?}"),
    }
}

#[tokio::test]
async fn persistent_session_keeps_subscriptions_and_queues_while_offline() {
    let h = Harness::start().await;
    let mut o = v3_options(&h, "keeper", DEV1);
    o.set_clean_session(false);
    let (c, mut el) = connect3_with(o.clone()).await;
    c.subscribe("acme:dev1/config", r3::QoS::AtLeastOnce).await.unwrap();
    assert!(matches!(next3(&mut el).await, Ok(r3::Packet::SubAck(_))));
    c.disconnect().await.unwrap();
    while el.poll().await.is_ok() {}

    h.actuate("acme", "dev1", json!({"n": 1})).await;
    h.actuate("acme", "dev1", json!({"n": 2})).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let (_c, mut el) = r3::AsyncClient::new(o, 8);
    match next3(&mut el).await {
        Ok(r3::Packet::ConnAck(ack)) => assert!(ack.session_present, "session resumed"),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    for n in 1..=2 {
        match next3(&mut el).await {
            Ok(r3::Packet::Publish(p)) => {
                assert_eq!(serde_json::from_slice::<Value>(&p.payload).unwrap(), json!({"n": n}))
            }
            other => panic!("expected queued actuation {n}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_second_connection_with_the_same_client_id_takes_over() {
    let h = Harness::start().await;
    let (_a, mut a_el) = connect5(&h, "same", DEV1).await;
    let (_b, _b_el) = connect5(&h, "same", DEV1).await;
    assert_eq!(server_disconnect(&mut a_el).await, p5::DisconnectReasonCode::SessionTakenOver);
}

#[tokio::test]
async fn will_is_stored_after_an_abnormal_disconnect_only() {
    let mut h = Harness::start().await;
    let mut o = v3_options(&h, "willing", DEV1);
    o.set_last_will(r3::LastWill::new("acme:dev1/attrs", r#"{"online":false}"#, r3::QoS::AtLeastOnce, false));
    let (_c, el) = connect3_with(o.clone()).await;
    drop(el); // the TCP connection goes away without DISCONNECT
    assert_eq!(h.reading().await.attrs["online"], json!(false));

    let (c, mut el) = connect3_with(o).await;
    c.disconnect().await.unwrap();
    while el.poll().await.is_ok() {}
    h.no_reading().await;
}

/// A hand-made MQTT 3.1.1 CONNECT.
fn raw_connect(client_id: &str, username: &str, password: &str, keep_alive: u16) -> Vec<u8> {
    raw_connect_level(4, client_id, username, password, keep_alive)
}

/// A hand-made CONNECT of protocol level 4 (3.1.1) or 5 (no properties).
fn raw_connect_level(level: u8, client_id: &str, username: &str, password: &str, keep_alive: u16) -> Vec<u8> {
    let field = |s: &str| [&(s.len() as u16).to_be_bytes()[..], s.as_bytes()].concat();
    let mut body = [&field("MQTT")[..], &[level, 0b1100_0010], &keep_alive.to_be_bytes()].concat();
    if level == 5 {
        body.push(0);
    }
    body.extend(field(client_id));
    body.extend(field(username));
    body.extend(field(password));
    [&[0x10, body.len() as u8][..], &body].concat()
}

/// The server makes a runtime of its own before it binds: failing after that must be an
/// error, not a panic (a runtime cannot be dropped in async code).
#[tokio::test]
async fn a_port_in_use_is_a_clear_error() {
    let h = Harness::start().await;
    let directory = Directory(HashMap::new(), Arc::new(AtomicUsize::new(0)));
    let ingest = Arc::new(IngestService::new(
        Arc::new(MemoryBus::new(16)),
        Arc::new(directory),
        PayloadLimits::default(),
        MAX_PAYLOAD,
    ));
    let config = MqttConfig { listen: h.server.local_addr(), ..MqttConfig::default() };
    match MqttServer::start(config, ingest).await {
        Err(MqttError::Bind { addr, .. }) => assert_eq!(addr, h.server.local_addr()),
        Err(e) => panic!("expected a bind error, got {e}"),
        Ok(_) => panic!("two servers on one port"),
    }
}

#[tokio::test]
async fn keep_alive_is_enforced() {
    let h = Harness::start().await;
    let mut s = tokio::net::TcpStream::connect(h.server.local_addr()).await.unwrap();
    s.write_all(&raw_connect("idle", "acme:dev1", "s3cret", 1)).await.unwrap();
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack).await.unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0]);
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let closed = timeout(Duration::from_secs(4), s.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "server must close a silent connection");
    assert!(started.elapsed() >= Duration::from_millis(900), "not before the keep-alive");
}

#[tokio::test]
async fn garbage_closes_that_connection_only() {
    let mut h = Harness::start().await;
    let mut s = tokio::net::TcpStream::connect(h.server.local_addr()).await.unwrap();
    s.write_all(b"\xff\xff\xff\xff\xffGET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut rest = Vec::new();
    timeout(WAIT, s.read_to_end(&mut rest)).await.expect("closed").ok();
    let (c, _el) = connect3(&h, "after", DEV1).await;
    c.publish("acme:dev1/attrs", r3::QoS::AtMostOnce, false, r#"{"still":"up"}"#).await.unwrap();
    let mut el = _el;
    tokio::spawn(async move { while el.poll().await.is_ok() {} });
    assert_eq!(h.reading().await.attrs["still"], json!("up"));
}

/// Found by the `mqtt_server` fuzz target (FUZZING.md): a PUBLISH whose topic length (and,
/// in v5, property length) claims more bytes than its remaining length. ntex-mqtt 8.2.1,
/// used before, subtracted one from the other unchecked: a panic where overflow checks
/// are on, and otherwise a payload length near 4 GiB that the connection would buffer
/// whole, beyond any packet limit. The connection must be closed, nothing stored, the
/// server kept up.
#[tokio::test]
async fn publish_header_longer_than_its_packet_closes_the_connection() {
    let mut h = Harness::start().await;
    // v3.1.1 QoS 1: remaining length 2, but topic length 5 (+ 2 for the packet id).
    let v3: &[u8] = &[0x32, 0x02, 0x00, 0x05];
    // v5 QoS 0: remaining length 4, topic "a", then a property length of 18.
    let v5: &[u8] = &[0x30, 0x04, 0x00, 0x01, b'a', 0x12];
    for (level, publish) in [(4, v3), (5, v5)] {
        let mut s = tokio::net::TcpStream::connect(h.server.local_addr()).await.unwrap();
        s.write_all(&raw_connect_level(level, "bad", "acme:dev1", "s3cret", 60)).await.unwrap();
        let mut connack = [0u8; 2];
        s.read_exact(&mut connack).await.unwrap();
        let mut rest = vec![0u8; usize::from(connack[1])];
        s.read_exact(&mut rest).await.unwrap();
        assert_eq!((connack[0], rest[1]), (0x20, 0), "v{level} CONNACK accepted");
        s.write_all(publish).await.unwrap();
        // What the broken framing takes for the rest of the header and the payload: 4 MiB,
        // far beyond the 4 KiB payload limit.
        let filler = vec![b' '; 64 * 1024];
        let closed = timeout(WAIT, async {
            for _ in 0..64 {
                if s.write_all(&filler).await.is_err() {
                    break;
                }
            }
            let mut answer = Vec::new();
            let _ = s.read_to_end(&mut answer).await;
        })
        .await;
        assert!(closed.is_ok(), "v{level}: the connection must be closed");
    }
    h.no_reading().await;
    let (c, mut el) = connect3(&h, "after", DEV1).await;
    c.publish("acme:dev1/attrs", r3::QoS::AtMostOnce, false, r#"{"still":"up"}"#).await.unwrap();
    tokio::spawn(async move { while el.poll().await.is_ok() {} });
    assert_eq!(h.reading().await.attrs["still"], json!("up"));
}

/// Found in ntex-mqtt 8.2.1, used before (FUZZING.md): its v5 codec waited for a
/// PUBLISH's whole property section before comparing it with the packet's remaining
/// length, so a header claiming 256 MiB of properties made the server buffer up to that
/// much for one connection, whatever the packet limit. A packet is read within its frame.
#[tokio::test]
async fn publish_property_length_beyond_its_packet_is_not_buffered() {
    let h = Harness::start().await;
    let mut s = raw_session(&h, 5, "props", 60).await;
    // QoS 0, remaining length 8, topic "a", property length 268 435 455.
    s.write_all(&[0x30, 0x08, 0x00, 0x01, b'a', 0xff, 0xff, 0xff, 0x7f]).await.unwrap();
    let filler = vec![0u8; 1 << 20];
    let closed = timeout(WAIT, async {
        for _ in 0..64 {
            if s.write_all(&filler).await.is_err() {
                return true;
            }
        }
        let mut answer = [0u8; 1];
        matches!(s.read(&mut answer).await, Ok(0) | Err(_))
    })
    .await;
    assert_eq!(closed, Ok(true), "the connection must be closed, not fed 64 MiB");
}

/// A raw connection of `acme:dev1` past its CONNACK (v3.1.1 or v5, keep-alive in seconds).
async fn raw_session(h: &Harness, level: u8, client_id: &str, keep_alive: u16) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(h.server.local_addr()).await.unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(&raw_connect_level(level, client_id, "acme:dev1", "s3cret", keep_alive)).await.unwrap();
    let mut connack = [0u8; 2];
    s.read_exact(&mut connack).await.unwrap();
    let mut rest = vec![0u8; usize::from(connack[1])];
    s.read_exact(&mut rest).await.unwrap();
    assert_eq!((connack[0], rest[1]), (0x20, 0), "v{level} CONNACK accepted");
    s
}

/// A QoS 1 PUBLISH to `acme:dev1/attrs` with packet id 1, cut after its header.
fn publish_qos1_parts(level: u8, payload: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut header = vec![0x32, 0, 0, 15];
    header.extend_from_slice(b"acme:dev1/attrs\x00\x01");
    if level == 5 {
        header.push(0); // no properties
    }
    header[1] = (header.len() - 2 + payload.len()) as u8;
    (header, payload.to_vec())
}

/// Found by the `mqtt_server` fuzz target (FUZZING.md): when a PUBLISH's payload arrives
/// after its header (a later TCP segment: any payload bigger than one on a real network),
/// ntex-mqtt, used before, handed the header over and streamed the payload after it, and
/// Ingot's in-order middleware kept it from decoding that payload while the handler
/// waited for it: never acknowledged, never stored, the connection stuck.
#[tokio::test]
async fn publish_whose_payload_comes_after_its_header_is_stored() {
    let mut h = Harness::start().await;
    for level in [4, 5] {
        let mut s = raw_session(&h, level, "split", 60).await;
        let (header, payload) = publish_qos1_parts(level, format!(r#"{{"split":{level}}}"#).as_bytes());
        s.write_all(&header).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.write_all(&payload).await.unwrap();
        let mut puback = [0u8; 2];
        timeout(WAIT, s.read_exact(&mut puback)).await.expect("a PUBACK in time").unwrap();
        let mut rest = vec![0u8; usize::from(puback[1])];
        s.read_exact(&mut rest).await.unwrap();
        assert_eq!((puback[0], &rest[..2]), (0x40, &[0, 1][..]), "v{level} PUBACK of packet 1");
        assert_eq!(rest.get(2).copied().unwrap_or(0), 0, "v{level}: success");
        assert_eq!(h.reading().await.attrs["split"], json!(level));
        // The connection goes on, in order.
        let (header, payload) = publish_qos1_parts(level, br#"{"after":1}"#);
        s.write_all(&[header, payload].concat()).await.unwrap();
        assert_eq!(h.reading().await.attrs["after"], json!(1));
    }
}

/// The fuzzer's input: a PUBLISH cut short, then end of stream; and the same without end
/// of stream, which keep-alive must end. Both connections used to stay open.
#[tokio::test]
async fn publish_cut_short_does_not_hold_the_connection() {
    let mut h = Harness::start().await;
    let crash: &[u8] = b"\x30\x4b\x00\x0facme:dev1/a\x00\x00\x00\x00\x00\x00\x00\x00ttrs{\"temperature\": 21.5, \"times\x00\x00N12:00:00Z\"}";
    for _ in 0..5 {
        let mut s = raw_session(&h, 4, "fuzz", 60).await;
        s.write_all(crash).await.unwrap();
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        timeout(WAIT, s.read_to_end(&mut rest)).await.expect("closed after end of stream").ok();
    }
    let mut s = raw_session(&h, 4, "silent", 1).await;
    let (header, payload) = publish_qos1_parts(4, br#"{"never":"complete"}"#);
    s.write_all(&[&header[..], &payload[..5]].concat()).await.unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    timeout(WAIT, s.read_to_end(&mut rest)).await.expect("closed by keep-alive").ok();
    assert!(started.elapsed() >= Duration::from_millis(900), "not before the keep-alive");
    h.no_reading().await;
    assert_eq!(h.server.connections(), 0);
}

#[tokio::test]
async fn oversize_packet_closes_the_connection() {
    let mut h = Harness::start().await;
    let (c, mut el) = connect3(&h, "big", DEV1).await;
    let huge = format!(r#"{{"x":"{}"}}"#, "a".repeat(MAX_PAYLOAD + 4096));
    c.publish("acme:dev1/attrs", r3::QoS::AtLeastOnce, false, huge).await.unwrap();
    let closed = timeout(WAIT, async {
        loop {
            if el.poll().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "connection must be closed");
    h.no_reading().await;
}

#[tokio::test]
async fn shutdown_disconnects_clients() {
    let h = Harness::start().await;
    let (_c, mut el) = connect5(&h, "c1", DEV1).await;
    let shutdown = tokio::spawn(h.server.shutdown());
    assert_eq!(server_disconnect(&mut el).await, p5::DisconnectReasonCode::ServerShuttingDown);
    timeout(Duration::from_secs(10), shutdown).await.expect("shutdown completes").unwrap();
}

/// The real mosquitto command-line clients (Debian `mosquitto-clients`).
#[tokio::test]
async fn mosquitto_clients_publish_and_receive_actuation() {
    if std::process::Command::new("mosquitto_pub").arg("--help").output().is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "mosquitto-clients must be installed in CI");
        eprintln!("SKIPPED: mosquitto-clients not installed (apt-get install mosquitto-clients)");
        return;
    }
    let mut h = Harness::start().await;
    let port = h.port().to_string();
    let status = tokio::process::Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port, "-q", "1", "-i", "mpub", "-u", "acme:dev1", "-P", "s3cret"])
        .args(["-t", "acme:dev1/attrs", "-m", r#"{"temp":21.5}"#])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    assert_eq!(h.reading().await.attrs["temp"], json!(21.5));

    let sub = tokio::process::Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port, "-q", "1", "-i", "msub", "-u", "acme:dev1", "-P", "s3cret"])
        .args(["-t", "acme:dev1/config", "-C", "1", "-W", "5"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Actuate until the subscription is in place (mosquitto_sub prints once it gets one).
    let out = tokio::spawn(sub.wait_with_output());
    for _ in 0..40 {
        if out.is_finished() {
            break;
        }
        h.actuate("acme", "dev1", json!({"fan": 3})).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = out.await.unwrap().unwrap();
    assert!(out.status.success(), "mosquitto_sub failed: {out:?}");
    let line = String::from_utf8(out.stdout).unwrap();
    assert_eq!(serde_json::from_str::<Value>(line.trim()).unwrap(), json!({"fan": 3}));
}
