//! End-to-end tests of the HTTP API against the real binary.

mod support;

use serde_json::{Value, json};
use support::{ADMIN_PASSWORD, Api, Server};

#[tokio::test]
async fn tutorial_over_http_agent_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    let api = Api::admin(&server).await;
    let template = api.thermometer_template().await;
    let (status, created) = api.post("/device", json!({"templates": [template.to_string()], "label": "device"})).await;
    assert_eq!(status, 200);
    assert_eq!(created["message"], "devices created");
    let id = created["devices"][0]["id"].as_str().unwrap().to_string();
    assert!((5..=6).contains(&id.len()) && id.chars().all(|c| c.is_ascii_hexdigit()), "dojot-style id: {id}");

    let (status, list) = api.get("/device").await;
    assert_eq!(status, 200);
    assert_eq!(list["pagination"], json!({"page": 1, "total": 1, "has_next": false, "next_page": null}));
    let dev = &list["devices"][0];
    assert_eq!(dev["templates"], json!([template]));
    assert_eq!(dev["attrs"][template.to_string()][0]["label"], "temperature");

    let (status, secret) = api.post(&format!("/device/{id}/secret"), json!({})).await;
    assert_eq!(status, 200);
    let secret = secret["secret"].as_str().unwrap().to_string();
    for t in [36.5, 15.6, 10.6] {
        assert_eq!(api.send_reading("admin", &id, &secret, json!({"temperature": t})).await.0, 204);
    }
    let path = format!("/history/device/{id}/history?lastN=3&attr=temperature");
    let (status, hist) = api.get(&path).await;
    assert_eq!(status, 200, "{hist}");
    let values: Vec<f64> = hist.as_array().unwrap().iter().map(|p| p["value"].as_f64().unwrap()).collect();
    assert_eq!(values, [10.6, 15.6, 36.5], "newest first");
    let p = &hist[0];
    assert_eq!((p["device_id"].as_str(), p["attr"].as_str()), (Some(id.as_str()), Some("temperature")));
    assert!(p["ts"].as_str().unwrap().ends_with('Z') && p["ts"].as_str().unwrap().len() == 27, "{}", p["ts"]);

    let (status, body) = api.put(&format!("/device/{id}/actuate"), json!({"attrs": {"fan": 100}})).await;
    assert_eq!((status, body), (200, json!({" status": "configuration sent to device"})));
    // Actuation is kept in history, as dojot did.
    let mut fan = Value::Null;
    for _ in 0..50 {
        let (status, h) = api.get(&format!("/history/device/{id}/history?attr=fan")).await;
        if status == 200 {
            fan = h;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(fan[0]["value"], json!(100), "actuation in history: {fan}");
    let (status, body) = api.put(&format!("/device/{id}/actuate"), json!({"attrs": {"temperature": 1}})).await;
    assert_eq!((status, &body["attrs"]), (403, &json!(["temperature"])));

    let (status, latest) = api.get(&format!("/device/{id}/latest")).await;
    assert_eq!(status, 200);
    let value_of =
        |attr: &str| latest.as_array().unwrap().iter().find(|p| p["attr"] == attr).map(|p| p["value"].clone());
    assert_eq!((value_of("temperature"), value_of("fan")), (Some(json!(10.6)), Some(json!(100))));

    assert!(server.terminate(), "SIGTERM must stop ingot cleanly");
    let server = Server::start(dir.path(), &[]);
    assert!(!server.stdout.iter().any(|l| l.contains("password")), "no new admin on restart");
    let api = Api::admin(&server).await;
    assert_eq!(api.get(&format!("/device/{id}")).await.0, 200);
    assert_eq!(api.get(&path).await.1.as_array().map(Vec::len), Some(3));
    assert_eq!(api.send_reading("admin", &id, &secret, json!({"temperature": 1.0})).await.0, 204, "secret kept");
}

#[tokio::test]
async fn first_start_prints_a_random_admin_password_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(dir.path(), &[], &[]);
    let line = server.stdout.iter().find(|l| l.contains("with password: ")).expect("password line");
    let password = line.rsplit("with password: ").next().unwrap().trim().to_string();
    assert!(password.len() >= 16);
    Api::login(&server.http, "admin", &password).await;
    let (status, _) = Api::new(&server.http).post("/auth", json!({"username": "admin", "passwd": "admin"})).await;
    assert_eq!(status, 401, "dojot's admin/admin must not work");
}

#[tokio::test]
async fn no_route_reveals_another_tenants_data() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let admin = Api::admin(&server).await;
    let template = admin.thermometer_template().await;
    let (id, secret) = admin.device_with_secret(template, "secret-device").await;
    assert_eq!(admin.send_reading("admin", &id, &secret, json!({"temperature": 1.5})).await.0, 204);

    let alice = admin.tenant_admin("alice", "acme").await;
    // Templates
    assert_eq!(alice.get("/template").await.1["templates"], json!([]));
    for path in [format!("/template/{template}")] {
        assert_eq!(alice.get(&path).await.0, 404);
        assert_eq!(alice.put(&path, json!({"label": "x", "attrs": []})).await.0, 404);
        assert_eq!(alice.delete(&path).await.0, 404);
    }
    // Devices
    assert_eq!(alice.get("/device").await.1["devices"], json!([]));
    assert_eq!(alice.get("/device?idsOnly=true").await.1, json!([]));
    assert_eq!(alice.get(&format!("/device/template/{template}")).await.1["devices"], json!([]));
    assert_eq!(alice.get(&format!("/device/{id}")).await.0, 404);
    assert_eq!(alice.put(&format!("/device/{id}"), json!({"label": "x", "templates": []})).await.0, 404);
    assert_eq!(alice.put(&format!("/device/{id}/actuate"), json!({"attrs": {"fan": 1}})).await.0, 404);
    assert_eq!(alice.post(&format!("/device/{id}/secret"), json!({})).await.0, 404);
    assert_eq!(alice.delete(&format!("/device/{id}")).await.0, 404);
    assert_eq!(alice.delete("/device").await.1["removed_devices"], json!([]));
    // History
    assert_eq!(alice.get(&format!("/history/device/{id}/history?attr=temperature")).await.0, 404);
    assert_eq!(alice.get(&format!("/history/device/{id}/history")).await.0, 404);
    assert_eq!(alice.get(&format!("/device/{id}/latest")).await.0, 404);
    // Users
    let (_, users) = alice.get("/auth/user").await;
    assert_eq!(users["users"].as_array().unwrap().len(), 1);
    assert_eq!(alice.get("/auth/user/admin").await.0, 404);
    assert_eq!(alice.get("/auth/user/1").await.0, 404);
    assert_eq!(alice.delete("/auth/user/1").await.0, 404);
    assert_eq!(alice.put("/auth/user/1", json!({"profile": "user"})).await.0, 404);
    assert_eq!(admin.get("/auth/user/admin").await.1["user"]["profile"], "admin", "untouched");
    // Seat accounts: admin's account is not alice's.
    let (_, fakeiot) = admin.post("/auth/tokens", json!({"name": "fakeiot", "scopes": ["metrics"]})).await;
    let (token_id, fakeiot) = (fakeiot["id"].as_str().unwrap(), fakeiot["token"].as_str().unwrap());
    let report = || {
        let login = json!({"account_id": "globex", "user_id": "u1", "timestamp": "2026-01-31T12:00:00Z"});
        Api::send(admin.http.post(format!("{}/metrics", admin.base)).bearer_auth(fakeiot).json(&login))
    };
    assert_eq!(report().await.0, 200);
    assert_eq!(alice.get("/seats/accounts").await.1, json!({"accounts": []}));
    assert_eq!(alice.get("/seats/accounts/globex").await.0, 404);
    assert_eq!(alice.post("/seats/accounts/globex/upgrade", json!({})).await.0, 404);
    assert_eq!(admin.get("/seats/accounts/globex").await.1["plan"], "Startup Plan", "not upgraded");
    // API tokens: alice can neither see nor revoke admin's.
    assert_eq!(alice.get("/auth/tokens").await.1, json!({"tokens": []}));
    assert_eq!(alice.delete(&format!("/auth/tokens/{token_id}")).await.0, 404);
    assert_eq!(report().await.0, 200, "admin's token still works");
    // Tenant settings: only the caller's own tenant is ever read or changed.
    let (status, own) = alice.get("/tenant/settings").await;
    assert_eq!((status, own["tenant"].as_str()), (200, Some("acme")));
    let (status, own) =
        alice.put("/tenant/settings", json!({"unsecured_mqtt": true, "history_retention_days": 30})).await;
    assert_eq!((status, own["tenant"].as_str(), own["unsecured_mqtt"].as_bool()), (200, Some("acme"), Some(true)));
    let aimed = json!({"tenant": "admin", "unsecured_mqtt": true, "history_retention_days": 1});
    let (status, body) = alice.put("/tenant/settings", aimed).await;
    assert!(status == 400 || body["tenant"] == "acme", "{status} {body}");
    let (_, theirs) = admin.get("/tenant/settings").await;
    assert_eq!(theirs, json!({"tenant": "admin", "unsecured_mqtt": false, "history_retention_days": 7}), "untouched");
    // Metrics name every tenant: operators only.
    assert_eq!(Api::new(&server.http).get("/metrics").await.0, 401);
    assert_eq!(alice.get("/metrics").await.0, 403, "another tenant's admin");
    let (_, acme_token) = alice.post("/auth/tokens", json!({"name": "scraper", "scopes": ["prometheus"]})).await;
    let scraper = Api { jwt: acme_token["token"].as_str().map(String::from), ..Api::new(&server.http) };
    assert_eq!(scraper.get("/metrics").await.0, 403, "a tenant's own scraper token does not cover every tenant");
    let (_, op_token) = admin.post("/auth/tokens", json!({"name": "scraper", "scopes": ["prometheus"]})).await;
    let operator = Api { jwt: op_token["token"].as_str().map(String::from), ..Api::new(&server.http) };
    let resp = operator.request(reqwest::Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.text().await.unwrap().contains("ingot_messages_in_total"));
    assert_eq!(admin.request(reqwest::Method::GET, "/metrics").send().await.unwrap().status().as_u16(), 200);
    // Device agent: another tenant's device with the right secret is refused.
    assert_eq!(alice.send_reading("acme", &id, &secret, json!({"temperature": 9})).await.0, 401);
    // Alice's own catalog numbers from 1 and does not touch admin's.
    assert_eq!(alice.thermometer_template().await, 1);
    assert_eq!(admin.get(&format!("/device/{id}")).await.0, 200);
    let (_, hist) = admin.get(&format!("/history/device/{id}/history?attr=temperature")).await;
    assert_eq!(hist.as_array().unwrap().len(), 1);
}

fn sign(secret: &[u8], claims: Value) -> String {
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &jsonwebtoken::EncodingKey::from_secret(secret))
        .unwrap()
}

#[tokio::test]
async fn bad_input_gets_clear_4xx_never_5xx() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--max-body-bytes", "2048"]);
    let api = Api::admin(&server).await;
    let template = api.thermometer_template().await;
    let (id, secret) = api.device_with_secret(template, "d").await;
    let raw = |method: reqwest::Method, path: &str, ct: &str, body: &str| {
        api.request(method, path).header("content-type", ct).body(body.to_string())
    };
    use reqwest::Method as M;
    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        ("malformed JSON", raw(M::POST, "/template", "application/json", "{\"label\": "), 400),
        ("wrong content type", raw(M::POST, "/template", "text/plain", "{\"label\":\"x\"}"), 400),
        ("charset suffix (dojot quirk)", raw(M::POST, "/device", "application/json; charset=utf-8", "{}"), 400),
        (
            "oversize body",
            raw(M::POST, "/template", "application/json", &format!("{{\"label\":\"{}\"}}", "x".repeat(5000))),
            413,
        ),
        ("unknown field", raw(M::POST, "/template", "application/json", "{\"label\":\"x\",\"colour\":1}"), 400),
        ("wrong value type", raw(M::POST, "/template", "application/json", "{\"label\":5}"), 400),
        ("array body", raw(M::POST, "/device", "application/json", "[1,2]"), 400),
        (
            "bad attr label",
            raw(
                M::POST,
                "/template",
                "application/json",
                "{\"label\":\"x\",\"attrs\":[{\"label\":\"a b\",\"type\":\"dynamic\",\"value_type\":\"float\"}]}",
            ),
            400,
        ),
        ("unknown template", raw(M::POST, "/device", "application/json", "{\"label\":\"x\",\"templates\":[999]}"), 400),
        (
            "PUT device without templates",
            raw(M::PUT, &format!("/device/{id}"), "application/json", "{\"label\":\"x\"}"),
            400,
        ),
        ("page_num=abc", api.request(M::GET, "/device?page_num=abc"), 400),
        ("page_num=0", api.request(M::GET, "/device?page_num=0"), 400),
        ("page_size=0", api.request(M::GET, "/template?page_size=0"), 400),
        ("page_size huge", api.request(M::GET, "/device?page_size=100000"), 400),
        ("count=abc", raw(M::POST, "/device?count=abc", "application/json", "{\"label\":\"x\",\"templates\":[]}"), 400),
        (
            "count too large",
            raw(M::POST, "/device?count=1000000", "application/json", "{\"label\":\"x\",\"templates\":[]}"),
            400,
        ),
        (
            "verbose with count",
            raw(M::POST, "/device?count=2&verbose=true", "application/json", "{\"label\":\"x\",\"templates\":[]}"),
            400,
        ),
        ("lastN=abc", api.request(M::GET, &format!("/history/device/{id}/history?lastN=abc")), 400),
        ("dateFrom garbage", api.request(M::GET, &format!("/history/device/{id}/history?dateFrom=soon")), 400),
        ("actuate without attrs", raw(M::PUT, &format!("/device/{id}/actuate"), "application/json", "{}"), 400),
        ("unknown device", api.request(M::GET, "/device/zzzzzz"), 404),
        ("unknown route", api.request(M::GET, "/nothing/here"), 404),
        ("wrong method", api.request(M::PATCH, "/device"), 405),
    ];
    for (what, rb, want) in cases {
        let (status, body) = Api::send(rb).await;
        assert_eq!(status, want, "{what}: {body}");
        assert!(body.is_object(), "{what}: JSON error body expected, got {body}");
    }

    // JWTs: missing, garbage, forged, expired, alg=none.
    let key = support::jwt_secret(dir.path()).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let claims = |exp: i64| {
        json!({"iss": "ingot", "iat": now - 1000, "exp": exp, "profile": "admin", "groups": [1], "userid": 1,
               "jti": "x", "service": "admin", "username": "admin"})
    };
    let valid = sign(&key, claims(now + 100));
    let parts: Vec<&str> = valid.split('.').collect();
    let tokens = [
        ("garbage", "not-a-jwt".to_string()),
        ("forged", sign(b"some other secret of enough length!!", claims(now + 100))),
        ("expired", sign(&key, claims(now - 100))),
        ("alg none", format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1])),
        ("tampered", format!("{}.{}.{}", parts[0], parts[1].replace('A', "B"), parts[2])),
    ];
    let anonymous = Api::new(&server.http);
    assert_eq!(anonymous.get("/device").await.0, 401, "missing token");
    for (what, token) in tokens {
        let rb = anonymous.request(M::GET, "/device").bearer_auth(token);
        assert_eq!(Api::send(rb).await.0, 401, "{what}");
    }
    let rb = anonymous.request(M::GET, "/device").bearer_auth(valid);
    assert_eq!(Api::send(rb).await.0, 200, "a correctly signed token works");

    // Login errors.
    assert_eq!(anonymous.post("/auth", json!({"username": "admin"})).await.0, 400);
    assert_eq!(anonymous.post("/auth", json!({"passwd": "x"})).await.0, 400);
    assert_eq!(
        Api::send(anonymous.request(M::POST, "/auth").header("content-type", "text/plain").body("x")).await.0,
        400
    );
    assert_eq!(anonymous.post("/auth", json!({"username": "admin", "passwd": "wrong"})).await.0, 401);
    assert_eq!(anonymous.post("/auth", json!({"username": "nobody", "passwd": "wrong"})).await.0, 401);

    // Device agent.
    assert_eq!(api.send_reading("admin", &id, &secret, json!(5)).await.0, 400, "data not an object");
    assert_eq!(api.send_reading("admin", &id, &secret, json!({})).await.0, 400, "no attributes");
    assert_eq!(api.send_reading("admin", &id, "wrong", json!({"temperature": 1})).await.0, 401);
    assert_eq!(api.send_reading("admin", "nodev", &secret, json!({"temperature": 1})).await.0, 401);
    let rb = api.http.post(format!("{}/http-agent/v1/incoming-messages", server.http)).json(&json!({"data": {"t": 1}}));
    assert_eq!(Api::send(rb).await.0, 401, "no credentials");
    // The server is still fine.
    assert_eq!(api.get("/health").await.0, 200);
}

/// The HTTP device agent checks the device's credentials before it reads a byte of the
/// body, and then reads at most --max-payload-bytes of it.
#[tokio::test]
async fn http_agent_authenticates_first_and_reads_at_most_the_payload_limit() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--max-payload-bytes", "1024", "--max-body-bytes", "65536"]);
    let api = Api::admin(&server).await;
    let template = api.thermometer_template().await;
    let (id, secret) = api.device_with_secret(template, "capped").await;
    let url = format!("{}/http-agent/v1/incoming-messages", server.http);
    let refused = (401, json!({"message": "invalid device credentials", "status": 401}));
    let too_large = (413, json!({"message": "payload larger than 1024 bytes", "status": 413}));

    // Wrong credentials: 401, even with a body larger than every limit (not 413).
    let huge = json!({"data": {"temperature": 1, "pad": "x".repeat(100_000)}});
    let rb = api.http.post(&url).basic_auth(format!("admin:{id}"), Some("wrong")).json(&huge);
    assert_eq!(Api::send(rb).await, refused);
    // ... without waiting for the body: one that never ends still gets its answer at once.
    let (tx, body) = support::channel_body();
    tx.send(bytes::Bytes::from_static(b"{\"data\": {\"temperature\": ")).await.unwrap();
    let rb = api
        .http
        .post(&url)
        .basic_auth(format!("admin:{id}"), Some("wrong"))
        .header("content-type", "application/json")
        .body(body);
    let started = Instant::now();
    let reply = tokio::time::timeout(Duration::from_secs(5), Api::send(rb)).await;
    assert_eq!(reply.expect("answered without reading the endless body"), refused);
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    drop(tx);

    // Right credentials: the body is read up to --max-payload-bytes, 413 beyond.
    let over = json!({"data": {"temperature": 2, "pad": "x".repeat(2000)}});
    let rb = api.http.post(&url).basic_auth(format!("admin:{id}"), Some(secret.as_str())).json(&over);
    assert_eq!(Api::send(rb).await, too_large);
    // ... and no further: an endless body is refused once past the limit.
    let (tx, body) = support::channel_body();
    tx.send(bytes::Bytes::from(format!("{{\"data\": {{\"pad\": \"{}", "x".repeat(2000)))).await.unwrap();
    let rb = api
        .http
        .post(&url)
        .basic_auth(format!("admin:{id}"), Some(secret.as_str()))
        .header("content-type", "application/json")
        .body(body);
    let reply = tokio::time::timeout(Duration::from_secs(5), Api::send(rb)).await;
    assert_eq!(reply.expect("refused at the payload limit"), too_large);
    drop(tx);
    // The Content-Type is still checked.
    let rb = api
        .http
        .post(&url)
        .basic_auth(format!("admin:{id}"), Some(secret.as_str()))
        .header("content-type", "text/plain")
        .body(json!({"data": {"temperature": 3}}).to_string());
    assert_eq!(Api::send(rb).await.0, 400);

    // A reading within the limit is stored.
    assert_eq!(api.send_reading("admin", &id, &secret, json!({"temperature": 21.5})).await.0, 204);
    let (status, hist) = api.get(&format!("/history/device/{id}/history?attr=temperature")).await;
    assert_eq!(status, 200, "{hist}");
    let values: Vec<f64> = hist.as_array().unwrap().iter().map(|p| p["value"].as_f64().unwrap()).collect();
    assert_eq!(values, [21.5], "only the reading within the limit");
}

#[tokio::test]
async fn failed_logins_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--max-failed-logins", "3"]);
    let anon = Api::new(&server.http);
    // A login no user could have is refused first, in dojot's error shape, and not counted.
    for _ in 0..5 {
        let (status, body) = anon.post("/auth", json!({"username": "a".repeat(10_000), "passwd": "x"})).await;
        assert_eq!((status, body["status"].as_u64()), (400, Some(400)), "{body}");
        assert!(body["message"].as_str().unwrap().contains("too long"), "{body}");
    }
    for _ in 0..3 {
        assert_eq!(anon.post("/auth", json!({"username": "admin", "passwd": "wrong"})).await.0, 401);
    }
    let resp =
        anon.request(reqwest::Method::POST, "/auth").json(&json!({"username": "admin", "passwd": ADMIN_PASSWORD}));
    let resp = resp.send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 429, "locked out even with the right password");
    assert!(resp.headers().get("retry-after").is_some());
}

#[tokio::test]
async fn bulk_creation_filters_and_pagination() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let api = Api::admin(&server).await;
    let template = api.thermometer_template().await;
    let (status, body) = api.post("/device?count=1000", json!({"label": "bulk", "templates": [template]})).await;
    assert_eq!(status, 200);
    let devices = body["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1000);
    assert_eq!(devices[0]["label"], "bulk_0000");
    let (_, page) = api.get("/device?page_size=300&page_num=4&sortBy=label").await;
    assert_eq!(page["pagination"], json!({"page": 4, "total": 4, "has_next": false, "next_page": null}));
    assert_eq!(page["devices"].as_array().unwrap().len(), 100);
    assert_eq!(page["devices"][0]["label"], "bulk_0900");
    let (_, ids) = api.get("/device?idsOnly=true&label=bulk_00").await;
    assert_eq!(ids.as_array().unwrap().len(), 100);
    let (_, removed) = api.delete("/device").await;
    assert_eq!(removed["removed_devices"].as_array().unwrap().len(), 1000);
    assert_eq!(api.delete(&format!("/template/{template}")).await.0, 200);
}

#[tokio::test]
async fn expired_history_is_removed_by_tenant_retention() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--retention-interval-secs", "1"]);
    let api = Api::admin(&server).await;
    let (status, settings) =
        api.put("/tenant/settings", json!({"unsecured_mqtt": false, "history_retention_days": 2})).await;
    assert_eq!((status, settings["history_retention_days"].as_u64()), (200, Some(2)));
    // What GET shows, PUT takes back (fuzz/auth_bodies found it refused: FUZZING.md).
    let (_, shown) = api.get("/tenant/settings").await;
    assert_eq!(shown["tenant"], "admin");
    assert_eq!(api.put("/tenant/settings", shown).await.0, 200);
    let template = api.thermometer_template().await;
    let (id, secret) = api.device_with_secret(template, "d").await;
    let old =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64 - 3 * 86_400_000;
    assert_eq!(api.send_reading("admin", &id, &secret, json!({"temperature": 1.0, "timestamp": old})).await.0, 204);
    assert_eq!(api.send_reading("admin", &id, &secret, json!({"temperature": 2.0})).await.0, 204);
    let path = format!("/history/device/{id}/history?attr=temperature");
    for _ in 0..50 {
        let (_, hist) = api.get(&path).await;
        if hist.as_array().map(Vec::len) == Some(1) {
            assert_eq!(hist[0]["value"], json!(2.0));
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the 3-day-old reading was not removed under a 2-day retention");
}
