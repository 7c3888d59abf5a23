//! fakeiot's contract (seed 000) over HTTPS with Ingot's own CA: tokens, POST /metrics,
//! seat counting, upgrade, and the login reaching history.

mod support;

use reqwest::{Certificate, Client, Method, tls::Version};
use serde_json::{Value, json};
use support::{Api, Server};

fn tls_client(server: &Server, min: Version, max: Version, http1_only: bool) -> Client {
    let ca = std::fs::read(server.data_dir.join("tls/ca.pem")).expect("CA written on first start");
    let mut b = Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(Certificate::from_pem(&ca).unwrap())
        .min_tls_version(min)
        .max_tls_version(max);
    if http1_only {
        b = b.http1_only();
    }
    b.build().unwrap()
}

/// (status, exact Content-Type, body)
async fn post_metrics(client: &Client, url: &str, token: Option<&str>, ct: &str, body: &str) -> (u16, String, Value) {
    let mut rb = client.request(Method::POST, url).header("content-type", ct).body(body.to_string());
    if let Some(t) = token {
        rb = rb.header("authorization", format!("Bearer {t}"));
    }
    let resp = rb.send().await.expect("request");
    let status = resp.status().as_u16();
    let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, ct, resp.json().await.unwrap_or(Value::Null))
}

fn login(account: &str, user: &str) -> String {
    json!({"account_id": account, "user_id": user, "timestamp": "2026-01-31T12:00:00.123456789Z"}).to_string()
}

#[tokio::test]
async fn fakeiot_contract_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let https = server.https.clone().expect("HTTPS address");
    let client = tls_client(&server, Version::TLS_1_2, Version::TLS_1_3, false);
    // The whole API is on the HTTPS listener too.
    let admin = Api::login_with(client.clone(), &https, "admin", support::ADMIN_PASSWORD).await;

    let (status, tok) = admin.post("/auth/tokens", json!({"name": "fakeiot", "scopes": ["metrics"]})).await;
    assert_eq!(status, 201, "{tok}");
    let token = tok["token"].as_str().unwrap().to_string();
    let (_, listed) = admin.get("/auth/tokens").await;
    assert!(!listed.to_string().contains(&token), "listing shows no secret");
    assert_eq!(listed["tokens"][0]["name"], "fakeiot");

    let url = format!("{https}/metrics");
    // fakeiot `test`, in order.
    let cases: Vec<(Option<&str>, &str, String, u16)> = vec![
        (Some(&token), "application/json", login("testacct-0000-0000-0000-000000000000", "testuser-0000"), 200),
        (
            Some(&token),
            "application/json",
            json!({"account_id": "", "user_id": "", "timestamp": "0001-01-01T00:00:00Z"}).to_string(),
            400,
        ),
        (Some(&token), "application/x-www-form-urlencoded", "bad=format".into(), 400),
        (Some(""), "application/json", login("a", "u"), 403),
        (None, "application/json", login("a", "u"), 403),
        (Some("ingot_0000"), "application/json", login("a", "u"), 403),
        // Bad input beyond fakeiot's own test.
        (Some(&token), "application/json", "{\"account_id\":".into(), 400),
        (Some(&token), "application/json", "[]".into(), 400),
        (
            Some(&token),
            "application/json",
            json!({"account_id": 1, "user_id": "u", "timestamp": "2026-01-31T12:00:00Z"}).to_string(),
            400,
        ),
        (
            Some(&token),
            "application/json",
            json!({"account_id": "a", "user_id": "u", "timestamp": "yesterday"}).to_string(),
            400,
        ),
        (
            Some(&token),
            "application/json",
            json!({"account_id": "a", "user_id": "u", "timestamp": "2026-01-31T12:00:00Z", "x": 1}).to_string(),
            400,
        ),
        (Some(&token), "application/json", format!("{{\"account_id\":\"{}\"}}", "x".repeat(2 << 20)), 413),
    ];
    for (i, (tok, ct, body, want)) in cases.into_iter().enumerate() {
        let (status, content_type, resp) = post_metrics(&client, &url, tok, ct, &body).await;
        assert_eq!(status, want, "case {i}: {resp}");
        assert_eq!(content_type, "application/json", "case {i}: exactly application/json, errors included");
    }
    // A trailing slash in fakeiot's --url makes the path //metrics.
    let (status, _, _) =
        post_metrics(&client, &format!("{https}//metrics"), Some(&token), "application/json", &login("x", "y")).await;
    assert_eq!(status, 200);

    // Seats: 120 distinct users, each reported twice, concurrently; over the limit nothing is lost.
    let mut tasks = Vec::new();
    for _round in 0..2 {
        for u in 0..120 {
            let (client, url, token) = (client.clone(), url.clone(), token.clone());
            tasks.push(tokio::spawn(async move {
                post_metrics(&client, &url, Some(&token), "application/json", &login("acme", &format!("user-{u}")))
                    .await
                    .0
            }));
        }
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200, "every login is accepted, past the limit too");
    }
    let (status, acct) = admin.get("/seats/accounts/acme").await;
    assert_eq!(status, 200);
    assert_eq!(
        acct,
        json!({"account_id": "acme", "plan": "Startup Plan", "limit": 100, "users": 120, "over_limit": true})
    );
    let (status, up) = admin.post("/seats/accounts/acme/upgrade", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(
        up,
        json!({"account_id": "acme", "plan": "Enterprise Plan", "limit": 1000, "users": 120, "over_limit": false})
    );
    assert_eq!(admin.get("/seats/accounts/nope").await.0, 404);
    assert_eq!(admin.get("/seats/accounts").await.1["accounts"].as_array().unwrap().len(), 3);

    // Each login is a reading in history (device acct-<hash of account id>).
    let device = model_device_id("acme");
    let (status, hist) = admin.get(&format!("/history/device/{device}/history?attr=login&lastN=1000")).await;
    assert_eq!(status, 200, "{hist}");
    assert_eq!(hist.as_array().unwrap().len(), 240);

    // Revocation is immediate.
    let id = tok["id"].as_str().unwrap();
    assert_eq!(admin.delete(&format!("/auth/tokens/{id}")).await.0, 200);
    let (status, ct, _) = post_metrics(&client, &url, Some(&token), "application/json", &login("acme", "late")).await;
    assert_eq!((status, ct.as_str()), (403, "application/json"));
}

/// The same derivation as `model::seats::account_device_id`, restated so the test checks it.
fn model_device_id(account: &str) -> String {
    use sha2::Digest;
    let hex: String = sha2::Sha256::digest(account.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    format!("acct-{}", &hex[..20])
}

#[tokio::test]
async fn tls_versions_protocols_and_no_sni() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let https = server.https.clone().unwrap();
    for (min, max, h1) in [(Version::TLS_1_2, Version::TLS_1_2, true), (Version::TLS_1_3, Version::TLS_1_3, false)] {
        let c = tls_client(&server, min, max, h1);
        // An IP address as host: the client sends no SNI, as fakeiot does.
        let resp = c.get(format!("{https}/health")).send().await.expect("TLS handshake");
        assert_eq!(resp.status().as_u16(), 200);
        let want = if h1 { reqwest::Version::HTTP_11 } else { reqwest::Version::HTTP_2 };
        assert_eq!(resp.version(), want);
    }
    // localhost is in the certificate too.
    let port = https.rsplit(':').next().unwrap();
    let c = tls_client(&server, Version::TLS_1_2, Version::TLS_1_3, false);
    assert_eq!(c.get(format!("https://localhost:{port}/health")).send().await.unwrap().status().as_u16(), 200);
    // Plain HTTP on the TLS port is refused without harming the listener.
    let plain = Client::new().get(format!("{}/health", https.replace("https://", "http://"))).send().await;
    assert!(plain.is_err() || plain.unwrap().status().as_u16() >= 400);
    assert_eq!(c.get(format!("{https}/health")).send().await.unwrap().status().as_u16(), 200);
}

#[tokio::test]
async fn metrics_are_rate_limited_per_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--metrics-rate-per-token", "5"]);
    let https = server.https.clone().unwrap();
    let client = tls_client(&server, Version::TLS_1_2, Version::TLS_1_3, false);
    let admin = Api::login_with(client.clone(), &https, "admin", support::ADMIN_PASSWORD).await;
    let mut tokens = Vec::new();
    for name in ["a", "b"] {
        let (_, tok) = admin.post("/auth/tokens", json!({"name": name, "scopes": ["metrics"]})).await;
        tokens.push(tok["token"].as_str().unwrap().to_string());
    }
    let url = format!("{https}/metrics");
    let mut statuses = Vec::new();
    for i in 0..8 {
        statuses.push(
            post_metrics(&client, &url, Some(&tokens[0]), "application/json", &login("acct", &format!("u{i}"))).await,
        );
    }
    assert!(statuses[..5].iter().all(|(s, _, _)| *s == 200), "the burst passes");
    let (status, ct, body) = &statuses[7];
    assert_eq!((*status, ct.as_str()), (429, "application/json"), "{body}");
    let (status, _, _) =
        post_metrics(&client, &url, Some(&tokens[1]), "application/json", &login("acct", "other")).await;
    assert_eq!(status, 200, "another token has its own budget");
}

/// fakeiot's own commands (re-implemented as `ingot load fakeiot`) against the server,
/// as the issue runs them: `test`, then `run --users=120`.
#[tokio::test]
async fn fakeiot_client_test_and_run_pass() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let https = server.https.clone().unwrap();
    let client = tls_client(&server, Version::TLS_1_2, Version::TLS_1_3, false);
    let admin = Api::login_with(client.clone(), &https, "admin", support::ADMIN_PASSWORD).await;
    let (_, tok) = admin.post("/auth/tokens", json!({"name": "fakeiot", "scopes": ["metrics"]})).await;
    let token = tok["token"].as_str().unwrap().to_string();
    let ca = dir.path().join("tls/ca.pem");
    let fakeiot = |token: &str, args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ingot"))
            .args(["load", "fakeiot", &format!("--token={token}"), &format!("--url={https}")])
            .arg(format!("--ca-cert={}", ca.display()))
            .args(args)
            .output()
            .unwrap()
    };
    let out = fakeiot(&token, &["test"]);
    assert!(
        out.status.success(),
        "fakeiot test: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = fakeiot("ingot_wrong", &["test"]);
    assert_eq!(out.status.code(), Some(255), "a failed check exits 255");
    let out = fakeiot(&token, &["run", "--users=120", "--period=3s", "--freq=10ms", "--account-id=fleet"]);
    assert!(out.status.success(), "fakeiot run: {}", String::from_utf8_lossy(&out.stderr));
    let (_, acct) = admin.get("/seats/accounts/fleet").await;
    assert_eq!((acct["users"].as_i64(), acct["over_limit"].as_bool()), (Some(120), Some(true)), "{acct}");
}

/// A token creating account after account hits the per-tenant limit: a clear 429, and
/// existing accounts keep working.
#[tokio::test]
async fn account_creation_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--max-seat-accounts", "20"]);
    let https = server.https.clone().unwrap();
    let client = tls_client(&server, Version::TLS_1_2, Version::TLS_1_3, false);
    let admin = Api::login_with(client.clone(), &https, "admin", support::ADMIN_PASSWORD).await;
    let (_, tok) = admin.post("/auth/tokens", json!({"name": "greedy", "scopes": ["metrics"]})).await;
    let token = tok["token"].as_str().unwrap().to_string();
    let url = format!("{https}/metrics");
    let mut refused = 0;
    for i in 0..30 {
        let (status, ct, body) =
            post_metrics(&client, &url, Some(&token), "application/json", &login(&format!("acct-{i}"), "u")).await;
        assert_eq!(ct, "application/json");
        match status {
            200 => assert!(i < 20, "account {i} should have been refused"),
            429 => {
                assert!(body["message"].as_str().unwrap().contains("maximum of 20 accounts"), "{body}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(refused, 10);
    let (status, _, _) =
        post_metrics(&client, &url, Some(&token), "application/json", &login("acct-3", "another")).await;
    assert_eq!(status, 200, "existing accounts still take logins");
    assert_eq!(admin.get("/seats/accounts").await.1["accounts"].as_array().unwrap().len(), 20);
}
