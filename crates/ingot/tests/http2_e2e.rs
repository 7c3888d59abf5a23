//! Early refusals over HTTPS: a request refused from its headers alone (a wrong token, a
//! bad JWT, wrong device credentials) gets its whole 401/403 answer over HTTP/2 and
//! HTTP/1.1 alike, from the real curl (Debian 12's 7.88, which reports a stream reset as
//! "Stream error in the HTTP/2 framing layer" instead of showing the answer) and from a
//! Rust client, whether the body was sent at once or was still being uploaded.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use reqwest::{Certificate, Client, Version};
use serde_json::{Value, json};
use support::{Api, Server, channel_body, require_tool};
use tokio::io::AsyncWriteExt;

/// A request the server refuses from its headers, and the answer it must give.
struct Refusal {
    path: String,
    authorization: String,
    status: u16,
    body: Value,
}

/// How the request body is sent.
#[derive(Debug, Clone, Copy)]
enum Upload {
    /// All at once, with a Content-Length, of about this many bytes.
    Whole(usize),
    /// Half of it, a pause, then the rest, with no length announced.
    Streamed,
}

const SMALL: Upload = Upload::Whole(40);
/// Larger than one HTTP/2 frame and than curl's upload buffer.
const LARGE: Upload = Upload::Whole(200_000);
/// Long enough for the answer to be sent while the upload is still going on.
const PAUSE: Duration = Duration::from_millis(300);
/// The refusal race (answer before the body arrived) is timing-dependent: try it often.
const TRIES: usize = 5;

/// A JSON body of about `size` bytes.
fn payload(size: usize) -> Vec<u8> {
    json!({"data": {"temperature": 1, "pad": "x".repeat(size.saturating_sub(40))}}).to_string().into_bytes()
}

/// The parts of a streamed upload: the first half, then the rest.
fn halves() -> (Vec<u8>, Vec<u8>) {
    let mut first = payload(4000);
    let rest = first.split_off(first.len() / 2);
    (first, rest)
}

fn https_client(ca: &[u8], version: Version) -> Client {
    let b = Client::builder().tls_built_in_root_certs(false).add_root_certificate(Certificate::from_pem(ca).unwrap());
    let b = if version == Version::HTTP_2 { b.http2_prior_knowledge() } else { b.http1_only() };
    b.build().unwrap()
}

/// Starts the server; returns it, its HTTPS base URL and the refusals to check.
async fn setup() -> (tempfile::TempDir, Server, String, Vec<Refusal>) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let https = server.https.clone().expect("HTTPS address");
    let ca = std::fs::read(server.data_dir.join("tls/ca.pem")).unwrap();
    let admin = Api::login_with(https_client(&ca, Version::HTTP_11), &https, "admin", support::ADMIN_PASSWORD).await;
    let template = admin.thermometer_template().await;
    let (id, _secret) = admin.device_with_secret(template, "refused").await;
    let basic = |user: &str, secret: &str| {
        use base64::Engine;
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}")))
    };
    let refusals = vec![
        Refusal {
            path: "/metrics".into(),
            authorization: "Bearer not-a-token".into(),
            status: 403,
            body: json!({"message": "access denied: invalid or revoked token", "status": 403}),
        },
        Refusal {
            path: "/device".into(),
            authorization: "Bearer not.a.jwt".into(),
            status: 401,
            body: json!({"message": "invalid token", "status": 401}),
        },
        Refusal {
            path: "/http-agent/v1/incoming-messages".into(),
            authorization: basic(&format!("admin:{id}"), "wrong-secret"),
            status: 401,
            body: json!({"message": "invalid device credentials", "status": 401}),
        },
    ];
    (dir, server, https, refusals)
}

/// Sends `r` with reqwest; returns the status, JSON body and protocol version.
async fn send_reqwest(client: &Client, base: &str, r: &Refusal, upload: Upload) -> (u16, Value, Version) {
    let rb = client
        .post(format!("{base}{}", r.path))
        .header("authorization", &r.authorization)
        .header("content-type", "application/json");
    let rb = match upload {
        Upload::Whole(size) => rb.body(payload(size)),
        Upload::Streamed => {
            let (tx, body) = channel_body();
            let (first, rest) = halves();
            tokio::spawn(async move {
                let _ = tx.send(Bytes::from(first)).await;
                tokio::time::sleep(PAUSE).await;
                let _ = tx.send(Bytes::from(rest)).await;
            });
            rb.body(body)
        }
    };
    let resp = tokio::time::timeout(Duration::from_secs(10), rb.send())
        .await
        .unwrap_or_else(|_| panic!("{} ({upload:?}): no answer in 10 s", r.path))
        .unwrap_or_else(|e| panic!("{} ({upload:?}): {e:?}", r.path));
    let version = resp.version();
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap_or_else(|e| panic!("{} ({upload:?}) body: {e:?}", r.path));
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null), version)
}

/// Sends `r` with the curl command (`--http2` or `--http1.1`); returns the status, JSON
/// body and the protocol version curl reports. Panics if curl fails.
async fn send_curl(
    ca: &Path,
    base: &str,
    protocol: &str,
    r: &Refusal,
    upload: Upload,
    tmp: &Path,
) -> (u16, Value, String) {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-sS", protocol, "--cacert"])
        .arg(ca)
        .args(["-H", &format!("authorization: {}", r.authorization), "-H", "content-type: application/json"])
        .args(["-o", "-", "-w", "\n%{http_code} %{http_version}"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match upload {
        Upload::Whole(size) => {
            let file: PathBuf = tmp.join(format!("body-{size}"));
            std::fs::write(&file, payload(size)).unwrap();
            cmd.arg("--data-binary").arg(format!("@{}", file.display())).stdin(Stdio::null());
        }
        // `-T -` uploads stdin as it comes (`--data @-` would read it all first).
        Upload::Streamed => {
            cmd.args(["-X", "POST", "-T", "-"]).stdin(Stdio::piped());
        }
    }
    cmd.arg(format!("{base}{}", r.path));
    let mut child = cmd.spawn().expect("run curl");
    if let Some(mut stdin) = child.stdin.take() {
        let (first, rest) = halves();
        // curl may stop reading once it has the answer: write errors are expected then.
        let _ = stdin.write_all(&first).await;
        let _ = stdin.flush().await;
        tokio::time::sleep(PAUSE).await;
        let _ = stdin.write_all(&rest).await;
    }
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("curl {protocol} {} ({upload:?}) did not finish in 20 s", r.path))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl {protocol} POST {} ({upload:?}) failed ({}): {}; output: {stdout}",
        r.path,
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let (body, trailer) = stdout.rsplit_once('\n').expect("curl's -w line");
    let (status, version) = trailer.split_once(' ').unwrap();
    (status.parse().unwrap(), serde_json::from_str(body).unwrap_or(Value::Null), version.to_string())
}

fn uploads() -> Vec<Upload> {
    let mut all = vec![SMALL; TRIES];
    all.extend([LARGE, Upload::Streamed]);
    all
}

#[tokio::test]
async fn refusals_are_whole_answers_for_curl_over_h2_and_http1() {
    if !require_tool("curl", "curl") {
        return;
    }
    let (dir, server, https, refusals) = setup().await;
    let ca = server.data_dir.join("tls/ca.pem");
    for (protocol, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        for r in &refusals {
            for upload in uploads() {
                let got = send_curl(&ca, &https, protocol, r, upload, dir.path()).await;
                let want = (r.status, r.body.clone(), version.to_string());
                assert_eq!(got, want, "curl {protocol} POST {} ({upload:?})", r.path);
            }
        }
    }
}

#[tokio::test]
async fn refusals_are_whole_answers_for_a_rust_client_over_h2_and_http1() {
    let (_dir, server, https, refusals) = setup().await;
    let ca = std::fs::read(server.data_dir.join("tls/ca.pem")).unwrap();
    for version in [Version::HTTP_2, Version::HTTP_11] {
        let client = https_client(&ca, version);
        for r in &refusals {
            for upload in uploads() {
                let got = send_reqwest(&client, &https, r, upload).await;
                assert_eq!(got, (r.status, r.body.clone(), version), "{version:?} POST {} ({upload:?})", r.path);
            }
        }
        // The connection is still fine for the next request.
        let resp = client.get(format!("{https}/health")).send().await.unwrap();
        assert_eq!((resp.status().as_u16(), resp.version()), (200, version));
    }
    // Plain HTTP/1.1 too.
    let plain = Client::new();
    for r in &refusals {
        for upload in uploads() {
            let got = send_reqwest(&plain, &server.http, r, upload).await;
            assert_eq!(got, (r.status, r.body.clone(), Version::HTTP_11), "plain POST {} ({upload:?})", r.path);
        }
    }
}
