//! `ingot migrate`: an installation on SQLite, copied by the real binary into PostgreSQL,
//! serves the same users, tokens, catalog, seats and history from there.

mod support;

use std::process::{Command, Output};

use serde_json::json;
use support::{ADMIN_PASSWORD, Api, Server};

fn migrate(from: &str, to: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ingot"))
        .args(["migrate", "--from", from, "--to", to])
        .env("INGOT_LOG", "warn")
        .env_remove("INGOT_MIGRATE_TO")
        .output()
        .expect("run ingot migrate")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// The SQLite and PostgreSQL counts printed for `table` in the final table.
fn counts(stdout: &str, table: &str) -> (String, String) {
    let line = stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(table))
        .unwrap_or_else(|| panic!("no count for {table} in:\n{stdout}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words.len(), 3, "{line}");
    (words[1].to_string(), words[2].to_string())
}

/// POST /metrics with an API token: one fakeiot login.
async fn seat_login(api: &Api, token: &str, user: &str) -> u16 {
    let body = json!({"account_id": "acct", "user_id": user, "timestamp": "2026-01-31T12:00:00Z"});
    let rb = api.http.post(format!("{}/metrics", api.base)).bearer_auth(token).json(&body);
    Api::send(rb).await.0
}

#[tokio::test]
async fn an_installation_moves_from_sqlite_to_postgres() {
    let Some(db) = store::testing::TestDb::create().await else { return };
    let data = tempfile::tempdir().unwrap();
    // On SQLite whatever store the rest of the suite runs on (INGOT_TEST_STORE).
    let sqlite = format!("sqlite://{}", data.path().join("ingot.db").display());
    let mut server = Server::start(data.path(), &["--store", &sqlite]);
    let admin = Api::admin(&server).await;
    let (status, body) = admin
        .post(
            "/auth/user",
            json!({"username": "alice", "service": "admin", "email": "alice@example.com",
                   "name": "Alice", "profile": "user", "passwd": "alice-password-1"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let alice = Api::login(&server.http, "alice", "alice-password-1").await;
    let template = admin.thermometer_template().await;
    let (device, secret) = admin.device_with_secret(template, "kitchen").await;
    for t in [21.5, 22.0, 22.5] {
        assert_eq!(admin.send_reading("admin", &device, &secret, json!({"temperature": t})).await.0, 204);
    }
    let (status, token) = admin.post("/auth/tokens", json!({"name": "fakeiot", "scopes": ["metrics"]})).await;
    assert_eq!(status, 201, "{token}");
    let token = token["token"].as_str().unwrap().to_string();
    for user in ["u1", "u2"] {
        assert_eq!(seat_login(&admin, &token, user).await, 200);
    }

    let history_path = format!("/history/device/{device}/history?attr=temperature");
    let pages = ["/device", "/template", "/auth/user", "/auth/tokens", "/seats/accounts/acct", &history_path];
    let mut before = Vec::new();
    for page in pages {
        let (status, body) = admin.get(page).await;
        assert_eq!(status, 200, "{page}: {body}");
        before.push(body);
    }
    assert_eq!(before[4]["users"], 2, "{}", before[4]);
    assert_eq!(before[5].as_array().map(Vec::len), Some(3), "{}", before[5]);
    assert!(server.terminate(), "ingot serve stops cleanly");

    let from = format!("sqlite://{}", data.path().join("ingot.db").display());
    let out = migrate(&from, &db.url);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "ingot migrate failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("verified"), "{stdout}");
    // Three readings and the two seat logins (which reach history too).
    assert!(stdout.contains("history: 5 rows copied"), "a line per table without a terminal:\n{stdout}");
    assert_eq!(counts(&stdout, "history"), ("5".into(), "5".into()));
    assert_eq!(counts(&stdout, "users"), ("2".into(), "2".into()));
    assert_eq!(
        counts(&stdout, "secrets"),
        ("3".into(), "3".into()),
        "the JWT secret, the CA and the auction's JWT secret"
    );

    // A fresh data directory: whatever the server finds comes from PostgreSQL.
    let fresh = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(fresh.path(), &["--store", &db.url], &[]);
    let ca = |dir: &std::path::Path| std::fs::read_to_string(dir.join("tls/ca.pem")).unwrap();
    assert_eq!(ca(fresh.path()), ca(data.path()), "the CA moved with the data: clients keep trusting it");
    assert!(server.stdout.iter().all(|l| !l.contains("created tenant 'admin'")), "{:?}", server.stdout);
    // The JWTs issued on SQLite are still good: the secret came along.
    let old_admin = Api { base: server.http.clone(), ..admin.clone() };
    for (page, want) in pages.iter().zip(&before) {
        let (status, body) = old_admin.get(page).await;
        assert_eq!(status, 200, "{page}: {body}");
        assert_eq!(&body, want, "{page} reads the same");
    }
    let old_alice = Api { base: server.http.clone(), ..alice.clone() };
    assert_eq!(old_alice.get("/device").await, (200, before[0].clone()), "a user's JWT too");
    // Passwords, device secrets and API tokens still work.
    Api::login(&server.http, "alice", "alice-password-1").await;
    let admin = Api::login(&server.http, "admin", ADMIN_PASSWORD).await;
    assert_eq!(admin.send_reading("admin", &device, &secret, json!({"temperature": 23.0})).await.0, 204);
    let (_, history) = admin.get(&history_path).await;
    let values: Vec<f64> = history.as_array().unwrap().iter().map(|p| p["value"].as_f64().unwrap()).collect();
    assert_eq!(values, [23.0, 22.5, 22.0, 21.5], "newest first, old and new");
    assert_eq!(seat_login(&admin, &token, "u3").await, 200);
    assert_eq!(admin.get("/seats/accounts/acct").await.1["users"], 3);
    // New rows get new ids: a new user's does not collide with the copied ones.
    let (status, body) = admin
        .post(
            "/auth/user",
            json!({"username": "bob", "service": "admin", "email": "bob@example.com",
                   "name": "Bob", "profile": "user", "passwd": "bob-password-12"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    drop(server);

    // Not twice: the database has data now.
    let again = migrate(&from, &db.url);
    assert!(!again.status.success());
    let stderr = text(&again.stderr);
    assert!(stderr.contains("is not empty") && stderr.contains("nothing was copied"), "{stderr}");
}

#[test]
fn each_side_must_be_its_engine() {
    let out = migrate("postgres://ingot@127.0.0.1:1/ingot", "postgres://ingot@127.0.0.1:1/other");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--from is the SQLite database to copy"), "{}", text(&out.stderr));
    let out = migrate("sqlite://ingot-data/ingot.db", "sqlite://elsewhere.db");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--to is the PostgreSQL database"), "{}", text(&out.stderr));
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("ingot.db");
    let out = migrate(&format!("sqlite://{}", missing.display()), "postgres://ingot@127.0.0.1:1/ingot");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("there is no SQLite database at"), "{}", text(&out.stderr));
    assert!(!missing.exists(), "not created");
}
