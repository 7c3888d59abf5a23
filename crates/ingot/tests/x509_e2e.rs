//! Device certificates as dojot's chapter 12 has users make them: a key and CSR with
//! plain OpenSSL, signed through `/x509/v1/certificates`, then `mosquitto_pub` and
//! `mosquitto_sub` over mutual TLS on the MQTTS port with nothing but the certificate;
//! revocation takes effect on live connections; every refusal case.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Api, Server, require_tool};

/// A device's files, as dojot's certreq made them.
struct DeviceFiles {
    key: PathBuf,
    cert: PathBuf,
}

fn openssl(args: &[&str]) -> Output {
    let out = Command::new("openssl").args(args).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// A key (RSA 2048 or EC P-256) and a CSR for CN `cn`; returns (key path, CSR PEM).
fn key_and_csr(dir: &Path, cn: &str, ec: bool) -> (PathBuf, String) {
    let (key, csr) = (dir.join(format!("{cn}-{ec}.key")), dir.join(format!("{cn}-{ec}.csr")));
    let (key_s, csr_s) = (key.to_str().unwrap(), csr.to_str().unwrap());
    let subj = format!("/CN={cn}");
    let newkey: &[&str] =
        if ec { &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"] } else { &["-newkey", "rsa:2048"] };
    let mut args = vec!["req", "-new"];
    args.extend_from_slice(newkey);
    args.extend_from_slice(&["-nodes", "-keyout", key_s, "-out", csr_s, "-subj", &subj]);
    openssl(&args);
    (key, std::fs::read_to_string(&csr).unwrap())
}

/// Signs a CSR for `cn` through the API and writes the device's files.
async fn certify(api: &Api, dir: &Path, cn: &str, ec: bool) -> (DeviceFiles, String) {
    let (key, csr) = key_and_csr(dir, cn, ec);
    let (status, body) = api.post("/x509/v1/certificates", json!({"csr": csr})).await;
    assert_eq!(status, 201, "{body}");
    let cert = dir.join(format!("{cn}-{ec}.pem"));
    std::fs::write(&cert, body["certificatePem"].as_str().unwrap()).unwrap();
    (DeviceFiles { key, cert }, body["certificateFingerprint"].as_str().unwrap().to_string())
}

fn tls_args<'a>(ca: &'a Path, files: &'a DeviceFiles) -> Vec<&'a str> {
    vec!["--cafile", ca.to_str().unwrap(), "--cert", files.cert.to_str().unwrap(), "--key", files.key.to_str().unwrap()]
}

/// `mosquitto_pub` over mutual TLS; whether it succeeded.
fn publish(server: &Server, ca: &Path, files: &DeviceFiles, topic: &str, extra: &[&str]) -> bool {
    let (host, port) = server.mqtts.as_ref().unwrap().rsplit_once(':').unwrap();
    Command::new("mosquitto_pub")
        .args(["-h", host, "-p", port])
        .args(tls_args(ca, files))
        .args(["-t", topic, "-m", r#"{"temperature": 20}"#, "-q", "1"])
        .args(extra)
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

async fn readings(api: &Api, device: &str) -> usize {
    let (status, body) = api.get(&format!("/history/device/{device}/history?attr=temperature&lastN=100")).await;
    if status == 404 { 0 } else { body.as_array().map_or(0, Vec::len) }
}

/// A server with the tutorial's template and one device, a folder for files, and the
/// CA certificate saved there as `ca.pem`.
struct Setup {
    _dir: tempfile::TempDir,
    data: PathBuf,
    files: PathBuf,
    server: Server,
    api: Api,
    template: i64,
    device: String,
    ca: PathBuf,
}

impl Setup {
    async fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let (data, files) = (dir.path().join("data"), dir.path().join("files"));
        std::fs::create_dir_all(&files).unwrap();
        let server = Server::start(&data, &[]);
        let api = Api::admin(&server).await;
        let template = api.thermometer_template().await;
        let (device, _) = api.device_with_secret(template, "thermometer").await;
        let (status, body) = api.get("/x509/v1/ca").await;
        assert_eq!(status, 200, "{body}");
        let fp = body["certificateFingerprint"].as_str().unwrap();
        assert_eq!(fp.split(':').count(), 32, "SHA-256 as AB:CD:…: {fp}");
        let ca = files.join("ca.pem");
        std::fs::write(&ca, body["caPem"].as_str().unwrap()).unwrap();
        Setup { _dir: dir, data, files, server, api, template, device, ca }
    }
}

#[tokio::test]
async fn chapter_12_with_openssl_and_mosquitto_then_revocation() {
    if !require_tool("mosquitto_pub", "mosquitto-clients") || !require_tool("openssl", "openssl") {
        return;
    }
    // 1. The CA (saved by Setup).
    let Setup { _dir: _keep, files: files_dir, server, api, device: id, ca, .. } = Setup::new().await;

    // 2. RSA and EC CSRs from OpenSSL; the CN becomes tenant:device.
    let (rsa, rsa_fp) = certify(&api, &files_dir, &id, false).await;
    let (ec, _) = certify(&api, &files_dir, &id, true).await;
    let subject = openssl(&["x509", "-noout", "-subject", "-in", rsa.cert.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&subject.stdout).contains(&format!("admin:{id}")), "{subject:?}");

    // 3. The certificate alone identifies the device: readings stored, actuation received.
    let (host, port) =
        server.mqtts.clone().unwrap().rsplit_once(':').map(|(h, p)| (h.to_string(), p.to_string())).unwrap();
    let sub = Command::new("mosquitto_sub")
        .args(["-h", &host, "-p", &port])
        .args(tls_args(&ca, &ec))
        .args(["-t", &format!("admin:{id}/config"), "-q", "1", "-C", "1", "-W", "20"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let topic = format!("admin:{id}/attrs");
    assert!(publish(&server, &ca, &rsa, &topic, &[]), "RSA certificate");
    assert!(publish(&server, &ca, &ec, &topic, &["-u", &format!("admin:{id}")]), "EC, with a username that agrees");
    assert_eq!(readings(&api, &id).await, 2);
    tokio::time::sleep(Duration::from_millis(500)).await; // the subscription is in place
    assert_eq!(api.put(&format!("/device/{id}/actuate"), json!({"attrs": {"fan": 7}})).await.0, 200);
    let out = sub.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"{"fan":7}"#);

    // 4. Listing, one, owner.
    for bad in ["page=0", "page=18446744073709551615", "limit=x"] {
        assert_eq!(api.get(&format!("/x509/v1/certificates?{bad}")).await.0, 400, "{bad}");
    }
    let (status, list) = api.get("/x509/v1/certificates?limit=1").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["paging"]["totalItems"], 2);
    assert_eq!((list["paging"]["current"].as_u64(), list["paging"]["next"].as_u64()), (Some(1), Some(2)));
    let (status, one) = api.get(&format!("/x509/v1/certificates/{rsa_fp}?fields=fingerprint,belongsTo")).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one, json!({"fingerprint": rsa_fp, "belongsTo": {"device": id}}));
    let path = format!("/x509/v1/certificates/{rsa_fp}");
    let patch = |body: Value| Api::send(api.request(reqwest::Method::PATCH, &path).json(&body));
    assert_eq!(patch(json!({"belongsTo": {"device": id}})).await.0, 204);
    assert_eq!(patch(json!({"belongsTo": {"device": "nosuch"}})).await.0, 400);

    // 5. Revocation: a live connection with the certificate ends, new ones are refused,
    //    the CRL lists it; the other certificate still works.
    let mut live = Command::new("mosquitto_sub")
        .args(["-h", &host, "-p", &port])
        .args(tls_args(&ca, &rsa))
        .args(["-t", &format!("admin:{id}/config"), "-q", "1"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(live.try_wait().unwrap().is_none(), "connected");
    assert_eq!(api.delete(&path).await.0, 204);
    let revoked_at = Instant::now();
    let deadline = revoked_at + Duration::from_secs(10);
    while live.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the revoked certificate's connection is still up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("connection with the revoked certificate ended {:?} after the DELETE", revoked_at.elapsed());
    assert!(!publish(&server, &ca, &rsa, &topic, &[]), "refused after revocation");
    assert!(publish(&server, &ca, &ec, &topic, &[]), "the other certificate still works");
    assert_eq!(api.delete(&path).await.0, 204, "revoking twice is harmless");
    let (_, crl) = api.get("/x509/v1/ca/crl").await;
    let crl_file = files_dir.join("crl.pem");
    std::fs::write(&crl_file, crl["crl"].as_str().unwrap()).unwrap();
    let crl_text =
        String::from_utf8_lossy(&openssl(&["crl", "-noout", "-text", "-in", crl_file.to_str().unwrap()]).stdout)
            .to_string();
    let serial =
        String::from_utf8_lossy(&openssl(&["x509", "-noout", "-serial", "-in", rsa.cert.to_str().unwrap()]).stdout)
            .to_string();
    let serial = serial.trim().trim_start_matches("serial=").to_uppercase();
    assert!(crl_text.to_uppercase().contains(&serial), "CRL lists {serial}: {crl_text}");
    let (_, list) = api.get("/x509/v1/certificates").await;
    assert_eq!(list["paging"]["totalItems"], 1, "revoked ones are not listed");
}

#[tokio::test]
async fn certificates_that_are_not_the_devices_are_refused() {
    if !require_tool("mosquitto_pub", "mosquitto-clients") || !require_tool("openssl", "openssl") {
        return;
    }
    let Setup { _dir: _keep, files, server, api, template, device: a, ca, .. } = Setup::new().await;
    let (b, _) = api.device_with_secret(template, "b").await;
    let (cert_a, fp_a) = certify(&api, &files, &a, true).await;

    // Another device's topic, or a username naming another device.
    assert!(publish(&server, &ca, &cert_a, &format!("admin:{a}/attrs"), &[]));
    assert!(!publish(&server, &ca, &cert_a, &format!("admin:{a}/attrs"), &["-u", &format!("admin:{b}")]));
    // A certificate for a device that does not exist.
    let (ghost, _) = certify(&api, &files, "ghost1", true).await;
    assert!(!publish(&server, &ca, &ghost, "admin:ghost1/attrs", &[]));
    // Another tenant's certificate for a device id of this tenant: CN acme:<a>.
    let alice = api.tenant_admin("alice", "acme").await;
    let (foreign, foreign_fp) = certify(&alice, &files, &a, false).await;
    assert!(!publish(&server, &ca, &foreign, &format!("admin:{a}/attrs"), &[]));
    assert_eq!(api.get(&format!("/x509/v1/certificates/{foreign_fp}")).await.0, 404, "tenant isolation");
    assert_eq!(alice.get(&format!("/x509/v1/certificates/{fp_a}")).await.0, 404);
    assert_eq!(alice.delete(&format!("/x509/v1/certificates/{fp_a}")).await.0, 404);
    // A certificate from another CA (self-signed): refused by TLS.
    let (key, _) = key_and_csr(&files, "selfsigned", true);
    let self_signed = files.join("self.pem");
    openssl(&[
        "req",
        "-new",
        "-x509",
        "-key",
        key.to_str().unwrap(),
        "-out",
        self_signed.to_str().unwrap(),
        "-subj",
        &format!("/CN=admin:{a}"),
        "-days",
        "1",
    ]);
    assert!(!publish(&server, &ca, &DeviceFiles { key, cert: self_signed }, &format!("admin:{a}/attrs"), &[]));
    // No client certificate at all: refused by TLS.
    let (host, port) = server.mqtts.as_ref().unwrap().rsplit_once(':').unwrap();
    let plain = Command::new("mosquitto_pub")
        .args(["-h", host, "-p", port, "--cafile", ca.to_str().unwrap(), "-t", &format!("admin:{a}/attrs"), "-m", "{}"])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!plain.success());
    assert_eq!(readings(&api, &a).await, 1, "only the valid publish was stored");

    // Bad CSRs: 400 with a message.
    let bad = [
        json!({"csr": "garbage"}),
        json!({}),
        json!({"csr": key_and_csr(&files, "x", false).1, "belongsTo": {"device": "y"}}),
        json!({"csr": key_and_csr(&files, "x", true).1, "belongsTo": {"nothing": "y"}}),
    ];
    for body in bad {
        let (status, answer) = api.post("/x509/v1/certificates", body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer["message"].is_string(), "{answer}");
    }
    let weak = files.join("weak.csr");
    let weak_key = files.join("weak.key");
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "rsa:1024",
        "-nodes",
        "-keyout",
        weak_key.to_str().unwrap(),
        "-out",
        weak.to_str().unwrap(),
        "-subj",
        "/CN=weak",
    ]);
    let (status, answer) =
        api.post("/x509/v1/certificates", json!({"csr": std::fs::read_to_string(&weak).unwrap()})).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("2048"), "{answer}");
    assert_eq!(Api::new(&server.http).get("/x509/v1/ca").await.0, 401);
}

/// A Rust client (rumqttc over rustls) with a device certificate: publishes, and is
/// disconnected when the certificate is revoked, without reconnecting.
#[tokio::test]
async fn a_rust_client_with_a_certificate_is_cut_off_when_it_is_revoked() {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
    if !require_tool("openssl", "openssl") {
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Setup { _dir: _keep, files, server, api, device: id, ca, .. } = Setup::new().await;
    let (files_d, fp) = certify(&api, &files, &id, true).await;

    let (host, port) = server.mqtts.as_ref().unwrap().rsplit_once(':').unwrap();
    let mut options = MqttOptions::new("rust-client", host, port.parse().unwrap());
    options.set_keep_alive(Duration::from_secs(30));
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
        ca: std::fs::read(&ca).unwrap(),
        alpn: None,
        client_auth: Some((std::fs::read(&files_d.cert).unwrap(), std::fs::read(&files_d.key).unwrap())),
    }));
    let (client, mut events) = AsyncClient::new(options, 10);
    client.publish(format!("admin:{id}/attrs"), QoS::AtLeastOnce, false, r#"{"temperature": 21}"#).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.poll()).await.expect("an event").unwrap() {
            Event::Incoming(Packet::PubAck(_)) => break,
            Event::Incoming(Packet::ConnAck(ack)) => assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success),
            _ => {}
        }
    }
    assert_eq!(readings(&api, &id).await, 1);

    assert_eq!(api.delete(&format!("/x509/v1/certificates/{fp}")).await.0, 204);
    let revoked_at = Instant::now();
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(10), events.poll()).await.expect("disconnected within 10 s") {
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    eprintln!("the Rust client was disconnected {:?} after the DELETE ({ended})", revoked_at.elapsed());
    // Reconnecting with the revoked certificate is refused at CONNECT.
    let refused = tokio::time::timeout(Duration::from_secs(10), events.poll()).await.expect("an answer");
    assert!(
        matches!(refused, Err(rumqttc::ConnectionError::ConnectionRefused(rumqttc::ConnectReturnCode::NotAuthorized))),
        "{refused:?}"
    );
}

/// `ingot cert request` (dojot's certreq): files in certreq's layout that mosquitto uses
/// as they are; `ingot cert ca` and `ingot cert server` for a PKI of one's own.
#[tokio::test]
async fn ingot_cert_request_writes_what_mosquitto_needs() {
    if !require_tool("mosquitto_pub", "mosquitto-clients") || !require_tool("openssl", "openssl") {
        return;
    }
    let Setup { _dir: _keep, files: out, server, api, template, device: a, .. } = Setup::new().await;
    let (b, _) = api.device_with_secret(template, "b").await;
    let cert = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ingot"))
            .arg("cert")
            .args(args)
            .env("INGOT_CERT_PASSWORD", support::ADMIN_PASSWORD)
            .output()
            .unwrap()
    };
    let run = cert(&["request", "--url", &server.http, "--user", "admin", "--all", "--out", out.to_str().unwrap()]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let ca = out.join("ca/ca.pem");
    for device in [&a, &b] {
        let files = DeviceFiles {
            key: out.join(format!("cert_{device}/private.key")),
            cert: out.join(format!("cert_{device}/cert.pem")),
        };
        assert!(publish(&server, &ca, &files, &format!("admin:{device}/attrs"), &[]), "{device}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&files.key).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
    let (_, list) = api.get("/x509/v1/certificates").await;
    assert_eq!(list["paging"]["totalItems"], 2);
    let wrong = cert(&[
        "request",
        "--url",
        &server.http,
        "--user",
        "admin",
        "--device",
        &a,
        "--out",
        out.to_str().unwrap(),
        "--password",
        "nope",
    ]);
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("cannot log in"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );

    let pki = out.join("pki");
    assert!(cert(&["ca", "--out", pki.to_str().unwrap()]).status.success());
    assert!(!cert(&["ca", "--out", pki.to_str().unwrap()]).status.success(), "never overwrites a CA");
    let made = cert(&[
        "server",
        "--ca-dir",
        pki.to_str().unwrap(),
        "--out",
        pki.to_str().unwrap(),
        "--name",
        "mqtt.example,127.0.0.1",
    ]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let ca_file = pki.join("ca.pem");
    let server_file = pki.join("server.pem");
    openssl(&["verify", "-CAfile", ca_file.to_str().unwrap(), server_file.to_str().unwrap()]);
}

/// Certificates signed by the CA but expired, or never issued through the API (as with a
/// stolen CA key): refused at the TLS handshake and at CONNECT respectively.
#[tokio::test]
async fn expired_and_unregistered_certificates_are_refused() {
    if !require_tool("mosquitto_pub", "mosquitto-clients") {
        return;
    }
    let Setup { _dir: _keep, data, files, server, api, device: id, ca, .. } = Setup::new().await;
    // The CA as the server keeps it (certificate, then key), to sign outside the API.
    let bundle = String::from_utf8(support::stored_secret(&data, "ca").await).unwrap();
    let at = bundle.find("-----BEGIN PRIVATE KEY-----").unwrap();
    let (ca_pem, ca_key) = (&bundle[..at], &bundle[at..]);
    let issuer = rcgen::Issuer::from_ca_cert_pem(ca_pem, rcgen::KeyPair::from_pem(ca_key).unwrap()).unwrap();
    let sign = |name: &str, days: std::ops::Range<i64>| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(rcgen::DnType::CommonName, format!("admin:{id}"));
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(days.start);
        params.not_after = now + time::Duration::days(days.end);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let files = DeviceFiles { key: files.join(format!("{name}.key")), cert: files.join(format!("{name}.pem")) };
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        std::fs::write(&files.cert, cert.pem()).unwrap();
        files
    };
    let topic = format!("admin:{id}/attrs");
    assert!(!publish(&server, &ca, &sign("expired", -30..-1), &topic, &[]), "expired: refused at TLS");
    assert!(!publish(&server, &ca, &sign("unregistered", -1..30), &topic, &[]), "never issued: refused at CONNECT");
    let (issued, _) = certify(&api, &files, &id, true).await;
    assert!(publish(&server, &ca, &issued, &topic, &[]), "the API's certificate works");
    assert_eq!(readings(&api, &id).await, 1);
    // Each refusal is counted with its reason.
    let metrics = api.request(reqwest::Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    for line in [
        r#"ingot_client_certificates_refused_total{reason="expired"} 1"#,
        r#"ingot_mqtt_connections_refused_total{reason="bad_certificate"} 1"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
}
