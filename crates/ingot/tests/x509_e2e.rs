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

/// A Rust client (rumqttc over rustls) with `files`, connected as `device` and past one
/// acknowledged reading.
async fn rust_client(
    server: &Server,
    ca: &Path,
    files: &DeviceFiles,
    device: &str,
) -> (rumqttc::AsyncClient, rumqttc::EventLoop) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
    let (host, port) = server.mqtts.as_ref().unwrap().rsplit_once(':').unwrap();
    let mut options = MqttOptions::new("rust-client", host, port.parse().unwrap());
    options.set_keep_alive(Duration::from_secs(30));
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
        ca: std::fs::read(ca).unwrap(),
        alpn: None,
        client_auth: Some((std::fs::read(&files.cert).unwrap(), std::fs::read(&files.key).unwrap())),
    }));
    let (client, mut events) = AsyncClient::new(options, 10);
    client.publish(format!("{device}/attrs"), QoS::AtLeastOnce, false, r#"{"temperature": 21}"#).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.poll()).await.expect("an event").unwrap() {
            Event::Incoming(Packet::PubAck(_)) => return (client, events),
            Event::Incoming(Packet::ConnAck(ack)) => assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success),
            _ => {}
        }
    }
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
    if !require_tool("openssl", "openssl") {
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Setup { _dir: _keep, files, server, api, device: id, ca, .. } = Setup::new().await;
    let (files_d, fp) = certify(&api, &files, &id, true).await;

    let (_client, mut events) = rust_client(&server, &ca, &files_d, &format!("admin:{id}")).await;
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
        r#"ingot_mqtt_connections_refused_total{reason="certificate_unregistered"} 1"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
}

/// A CA of one's own made with OpenSSL (a root: `req -x509`), in `dir` as `<name>.crt`
/// and `<name>.key`.
fn own_ca(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (crt, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        crt.to_str().unwrap(),
        "-subj",
        &format!("/O=Example/CN={name}"),
        "-days",
        "30",
    ]);
    (crt, key)
}

/// A device key and certificate for CN `cn` (`tenant:device`: an own CA writes the CN
/// itself), signed by an own CA with `openssl x509 -req`, as `<name>.key`, `<name>.crt`.
fn sign_with(dir: &Path, (ca_crt, ca_key): &(PathBuf, PathBuf), cn: &str, name: &str) -> DeviceFiles {
    let path = |ext: &str| dir.join(format!("{name}.{ext}"));
    let (key, csr, cert, ext) = (path("key"), path("csr"), path("crt"), path("ext"));
    let subj = format!("/CN={cn}");
    let p256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut args = vec!["req", "-new"];
    args.extend_from_slice(&p256);
    args.extend_from_slice(&["-keyout", key.to_str().unwrap(), "-out", csr.to_str().unwrap(), "-subj", &subj]);
    openssl(&args);
    std::fs::write(&ext, "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n").unwrap();
    let (ca_crt, ca_key) = (ca_crt.to_str().unwrap(), ca_key.to_str().unwrap());
    openssl(&[
        "x509",
        "-req",
        "-in",
        csr.to_str().unwrap(),
        "-CA",
        ca_crt,
        "-CAkey",
        ca_key,
        "-CAcreateserial",
        "-days",
        "5",
        "-extfile",
        ext.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
    DeviceFiles { key, cert }
}

fn metric_lines(metrics: &str, wanted: &[&str]) {
    for line in wanted {
        assert!(metrics.lines().any(|l| l == *line), "{line} in {metrics}");
    }
}

/// A tenant's own CA (`/x509/v1/trusted-cas`): its certificates are refused until it is
/// trusted, then need registering (or register themselves at their first CONNECT when
/// the CA allows it); another tenant's CA cannot speak for this tenant's devices; and
/// when the CA is removed, live connections of its certificates end and new ones fail.
#[tokio::test]
async fn a_tenants_own_ca_is_trusted_registered_and_removed() {
    if !require_tool("mosquitto_pub", "mosquitto-clients") || !require_tool("openssl", "openssl") {
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Setup { _dir: _keep, files, server, api, template, device: a, ca, .. } = Setup::new().await;
    let (b, _) = api.device_with_secret(template, "b").await;
    let own = own_ca(&files, "Admin Devices CA");
    let own_pem = std::fs::read_to_string(&own.0).unwrap();
    let device_a = sign_with(&files, &own, &format!("admin:{a}"), "device-a");
    let topic_a = format!("admin:{a}/attrs");

    assert!(!publish(&server, &ca, &device_a, &topic_a, &[]), "an unknown CA: refused at TLS");
    let (status, body) = api.post("/x509/v1/trusted-cas", json!({"caPem": own_pem})).await;
    assert_eq!(status, 201, "{body}");
    let ca_fp = body["caFingerprint"].as_str().unwrap().to_string();
    assert_eq!(ca_fp.split(':').count(), 32, "{ca_fp}");
    let (status, listed) = api.get("/x509/v1/trusted-cas").await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["paging"]["totalItems"], 1, "{listed}");
    let entry = &listed["trustedCAs"][0];
    assert_eq!(
        (entry["caFingerprint"].as_str(), entry["allowAutoRegistration"].as_bool()),
        (Some(&*ca_fp), Some(false))
    );
    assert!(entry["subjectDN"].as_str().unwrap().contains("Admin Devices CA"), "{entry}");
    assert_eq!(api.get(&format!("/x509/v1/trusted-cas/{ca_fp}")).await.1["caPem"], entry["caPem"]);

    // Refusals, each with a message: not a CA, not PEM, Ingot's own CA, twice, bad fields.
    let ingot_ca = std::fs::read_to_string(&ca).unwrap();
    let not_a_ca = std::fs::read_to_string(&device_a.cert).unwrap();
    for (body, status) in [
        (json!({"caPem": not_a_ca}), 400),
        (json!({"caPem": "garbage"}), 400),
        (json!({"caPem": ingot_ca}), 400),
        (json!({"caPem": own_pem, "allowAutoRegistration": "yes"}), 400),
        (json!({"caPem": own_pem, "extra": 1}), 400),
        (json!({"caPem": own_pem}), 409),
    ] {
        let (got, answer) = api.post("/x509/v1/trusted-cas", body.clone()).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert!(answer["message"].is_string(), "{answer}");
    }

    // Trusted, but this certificate is not registered and the CA does not register them.
    assert!(!publish(&server, &ca, &device_a, &topic_a, &[]), "unregistered: refused at CONNECT");
    let cert_pem = std::fs::read_to_string(&device_a.cert).unwrap();
    let (status, body) = api.post("/x509/v1/certificates", json!({"certificatePem": cert_pem})).await;
    assert_eq!(status, 201, "{body}");
    let fp_a = body["certificateFingerprint"].as_str().unwrap().to_string();
    assert_eq!(api.post("/x509/v1/certificates", json!({"certificatePem": cert_pem})).await.0, 409);
    assert!(publish(&server, &ca, &device_a, &topic_a, &[]), "registered: accepted");
    let (_, cert) = api.get(&format!("/x509/v1/certificates/{fp_a}")).await;
    assert_eq!((cert["issuedByDojotPki"].as_bool(), cert["autoRegistered"].as_bool()), (Some(false), Some(false)));
    assert_eq!(cert["belongsTo"], json!({"device": a}));

    // Auto-registration: device b's certificate registers itself at its first CONNECT.
    let patch =
        |allow: Value| api.request(reqwest::Method::PATCH, &format!("/x509/v1/trusted-cas/{ca_fp}")).json(&allow);
    assert_eq!(Api::send(patch(json!({"allowAutoRegistration": true}))).await.0, 204);
    assert_eq!(Api::send(patch(json!({"allowAutoRegistration": 1}))).await.0, 400);
    let device_b = sign_with(&files, &own, &format!("admin:{b}"), "device-b");
    let (_, listed) = api.get(&format!("/x509/v1/certificates?belongsTo.device={b}")).await;
    assert_eq!(listed["paging"]["totalItems"], 0, "{listed}");

    // Another tenant's CA, which auto-registers, signs CN admin:<a>: it cannot speak for admin.
    let alice = api.tenant_admin("alice", "acme").await;
    let theirs = own_ca(&files, "Acme CA");
    let body = json!({"caPem": std::fs::read_to_string(&theirs.0).unwrap(), "allowAutoRegistration": true});
    let (status, answer) = alice.post("/x509/v1/trusted-cas", body).await;
    assert_eq!(status, 201, "{answer}");
    let impostor = sign_with(&files, &theirs, &format!("admin:{b}"), "impostor");
    assert!(!publish(&server, &ca, &impostor, &format!("admin:{b}/attrs"), &[]), "another tenant's CA");
    assert_eq!(alice.get(&format!("/x509/v1/trusted-cas/{ca_fp}")).await.0, 404, "tenant isolation");
    assert_eq!(alice.delete(&format!("/x509/v1/trusted-cas/{ca_fp}")).await.0, 404);
    assert_eq!(alice.get("/x509/v1/trusted-cas").await.1["paging"]["totalItems"], 1);

    // Device b, with a Rust client: connects (auto-registered), publishes, and is cut off
    // when its CA is removed.
    let (_client, mut events) = rust_client(&server, &ca, &device_b, &format!("admin:{b}")).await;
    assert_eq!(readings(&api, &b).await, 1);
    let (_, listed) = api.get(&format!("/x509/v1/certificates?belongsTo.device={b}")).await;
    assert_eq!(listed["certificates"][0]["autoRegistered"], true, "{listed}");
    assert_eq!(listed["certificates"][0]["issuedByDojotPki"], false, "{listed}");

    assert_eq!(api.delete(&format!("/x509/v1/trusted-cas/{ca_fp}")).await.0, 204);
    let removed_at = Instant::now();
    while tokio::time::timeout(Duration::from_secs(10), events.poll()).await.expect("disconnected within 10 s").is_ok()
    {
    }
    eprintln!("device b was disconnected {:?} after its CA was removed", removed_at.elapsed());
    assert!(!publish(&server, &ca, &device_a, &topic_a, &[]), "its CA is no longer trusted");
    assert_eq!(api.get(&format!("/x509/v1/certificates/{fp_a}")).await.0, 404, "its certificates went with it");
    assert_eq!(api.get("/x509/v1/trusted-cas").await.1["trustedCAs"], json!([]));
    assert_eq!(readings(&api, &a).await, 1);

    let metrics = api.request(reqwest::Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    metric_lines(
        &metrics,
        &[
            r#"ingot_mqtt_connections_refused_total{reason="certificate_unregistered"} 1"#,
            r#"ingot_mqtt_connections_refused_total{reason="certificate_wrong_ca"} 1"#,
        ],
    );
}

/// An ECDSA P-521 key (dojot accepted them): its CSR is signed, and mosquitto connects
/// with it (the handshake's P-521 signature is checked by the MQTTS listener).
#[tokio::test]
async fn a_p521_device_key_is_certified_and_connects() {
    if !require_tool("mosquitto_pub", "mosquitto-clients") || !require_tool("openssl", "openssl") {
        return;
    }
    let Setup { _dir: _keep, files, server, api, device: id, ca, .. } = Setup::new().await;
    let (key, csr, cert) = (files.join("p521.key"), files.join("p521.csr"), files.join("p521.pem"));
    let subj = format!("/CN={id}");
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:secp521r1",
        "-nodes",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        csr.to_str().unwrap(),
        "-subj",
        &subj,
    ]);
    let body = json!({"csr": std::fs::read_to_string(&csr).unwrap()});
    let (status, answer) = api.post("/x509/v1/certificates", body).await;
    assert_eq!(status, 201, "{answer}");
    std::fs::write(&cert, answer["certificatePem"].as_str().unwrap()).unwrap();
    let device = DeviceFiles { key, cert };
    assert!(publish(&server, &ca, &device, &format!("admin:{id}/attrs"), &[]), "TLS 1.3");
    assert!(publish(&server, &ca, &device, &format!("admin:{id}/attrs"), &["--tls-version", "tlsv1.2"]), "TLS 1.2");
    assert_eq!(readings(&api, &id).await, 2);
}
