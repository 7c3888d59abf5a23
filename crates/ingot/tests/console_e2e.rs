//! The seats dashboard in a real browser (headless Chromium driven through chromedriver):
//! sign in, watch the counter move as fakeiot-style metrics arrive, alert at the limit,
//! upgrade, success message; the session is HttpOnly/Secure/SameSite and ends on logout.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use support::{Api, Server, require_tool};

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn browser(profile: &std::path::Path) -> (Driver, Client) {
    // Several TLS crypto backends are linked into the test; name the one to use.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver(child);
    let args = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--window-size=1000,900",
    ];
    let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    let caps = json!({
        // Chromium does not know Ingot's CA; the test trusts the certificate, not the browser.
        "acceptInsecureCerts": true,
        "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}
    });
    let caps = caps.as_object().unwrap().clone();
    for _ in 0..100 {
        if let Ok(c) = ClientBuilder::rustls()
            .expect("rustls")
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            return (driver, c);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start");
}

/// Waits until the element's text equals `want` (10 s).
async fn wait_text(c: &Client, css: &str, want: &str) {
    let mut last = String::new();
    for _ in 0..100 {
        if let Ok(e) = c.find(Locator::Css(css)).await
            && let Ok(t) = e.text().await
        {
            if t == want {
                return;
            }
            last = t;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shot = c.screenshot().await.unwrap_or_default();
    let _ = std::fs::write(std::env::temp_dir().join("ingot-console-failure.png"), shot);
    panic!("{css}: wanted {want:?}, last saw {last:?}");
}

async fn displayed(c: &Client, css: &str) -> bool {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.is_displayed().await.unwrap_or(false),
        Err(_) => false,
    }
}

async fn report_logins(api: &Api, token: &str, account: &str, users: std::ops::Range<usize>) {
    for u in users {
        let body = json!({"account_id": account, "user_id": format!("user-{u}"), "timestamp": "2026-01-31T12:00:00Z"});
        let resp = api.http.post(format!("{}/metrics", api.base)).bearer_auth(token).json(&body).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
    }
}

#[tokio::test]
async fn seats_dashboard_in_headless_chromium() {
    if !require_tool("chromedriver", "chromium-driver") || !require_tool("chromium", "chromium") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let https = server.https.clone().unwrap();
    let ca = std::fs::read(dir.path().join("tls/ca.pem")).unwrap();
    let http = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    let api = Api::login_with(http.clone(), &https, "admin", support::ADMIN_PASSWORD).await;
    let (_, tok) = api.post("/auth/tokens", json!({"name": "fakeiot", "scopes": ["metrics"]})).await;
    let token = tok["token"].as_str().unwrap().to_string();

    let profile = tempfile::tempdir().unwrap();
    let (_driver, c) = browser(profile.path()).await;
    c.goto(&format!("{https}/console/")).await.unwrap();
    // Sign in with the e-mail address.
    wait_text(&c, "#login-view h1", "Sign in").await;
    c.find(Locator::Css("#login")).await.unwrap().send_keys("admin@localhost").await.unwrap();
    c.find(Locator::Css("#password")).await.unwrap().send_keys("wrong password").await.unwrap();
    c.find(Locator::Css("#login-submit")).await.unwrap().click().await.unwrap();
    wait_text(&c, "#login-error", "Wrong user name or password.").await;
    let pw = c.find(Locator::Css("#password")).await.unwrap();
    pw.clear().await.unwrap();
    pw.send_keys(support::ADMIN_PASSWORD).await.unwrap();
    c.find(Locator::Css("#login-submit")).await.unwrap().click().await.unwrap();
    wait_text(&c, "#dashboard-view h1", "User Management Dashboard").await;

    // The session cookie: HttpOnly, Secure (HTTPS), SameSite=Strict.
    let cookie = c.get_named_cookie("ingot_session").await.expect("session cookie");
    assert_eq!((cookie.http_only(), cookie.secure()), (Some(true), Some(true)));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");
    let session_id = cookie.value().to_string();

    // Logins arrive; the new account appears in the list by server push.
    report_logins(&api, &token, "acme", 0..50).await;
    let mut found = false;
    for _ in 0..100 {
        if c.find(Locator::Css("#account option[value='acme']")).await.is_ok() {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(found, "the account was pushed to the page");
    c.find(Locator::Css("#account")).await.unwrap().select_by_value("acme").await.unwrap();
    wait_text(&c, "#plan", "Startup Plan").await;
    wait_text(&c, "#users", "Users: 50/100").await;
    assert!(!displayed(&c, "#limit-alert").await);

    // The counter moves live, without a reload, and the alert appears at the limit.
    report_logins(&api, &token, "acme", 50..75).await;
    wait_text(&c, "#users", "Users: 75/100").await;
    report_logins(&api, &token, "acme", 75..110).await;
    wait_text(&c, "#users", "Users: 110/100").await;
    wait_text(
        &c,
        "#limit-alert",
        "You have exceeded the maximum number of users for your account, please upgrade your plan to increase the limit.",
    )
    .await;
    wait_text(&c, "#upgrade", "Upgrade to Enterprise Plan").await;
    let shot = c.screenshot().await.unwrap();
    std::fs::write(std::env::temp_dir().join("ingot-console-limit.png"), shot).unwrap();

    c.find(Locator::Css("#upgrade")).await.unwrap().click().await.unwrap();
    wait_text(&c, "#upgrade-success", "Your account has been upgraded successfully!").await;
    wait_text(&c, "#plan", "Enterprise Plan").await;
    wait_text(&c, "#users", "Users: 110/1000").await;
    assert!(!displayed(&c, "#upgrade").await);
    let shot = c.screenshot().await.unwrap();
    std::fs::write(std::env::temp_dir().join("ingot-console-upgraded.png"), shot).unwrap();

    // Output is escaped: an account id that is HTML stays text.
    let evil = "<img src=x id=pwned>";
    report_logins(&api, &token, evil, 0..1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(c.find(Locator::Css("#pwned")).await.is_err(), "account ids must not be parsed as HTML");

    // Logout ends the session on the server: the old cookie is worthless.
    c.find(Locator::Css("#logout")).await.unwrap().click().await.unwrap();
    wait_text(&c, "#login-view h1", "Sign in").await;
    let resp = http
        .get(format!("{https}/console/api/session"))
        .header("cookie", format!("ingot_session={session_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    c.close().await.unwrap();
}

/// Without the browser: CSRF, forged cookies and the idle timeout.
#[tokio::test]
async fn console_sessions_csrf_and_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--console-idle-timeout-secs", "1"]);
    let http = reqwest::Client::new();
    let base = &server.http;
    let login = http
        .post(format!("{base}/console/api/login"))
        .json(&json!({"login": "admin", "password": support::ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status().as_u16(), 200);
    let set_cookie = login.headers().get("set-cookie").unwrap().to_str().unwrap().to_string();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
    assert!(!set_cookie.contains("Secure"), "plain HTTP: no Secure flag");
    let session: serde_json::Value = login.json().await.unwrap();
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let csrf = session["csrf"].as_str().unwrap();

    let post = |path: &str, csrf: Option<&str>, cookie: &str| {
        let mut rb = http.post(format!("{base}{path}")).header("cookie", cookie.to_string()).json(&json!({}));
        if let Some(t) = csrf {
            rb = rb.header("x-csrf-token", t);
        }
        rb.send()
    };
    assert_eq!(
        post("/console/api/accounts/acme/upgrade", None, &cookie).await.unwrap().status().as_u16(),
        403,
        "no CSRF token"
    );
    assert_eq!(
        post("/console/api/accounts/acme/upgrade", Some("forged"), &cookie).await.unwrap().status().as_u16(),
        403
    );
    assert_eq!(
        post("/console/api/accounts/acme/upgrade", Some(csrf), &cookie).await.unwrap().status().as_u16(),
        404,
        "CSRF ok, no such account"
    );
    assert_eq!(
        post("/console/api/accounts/acme/upgrade", Some(csrf), "ingot_session=forged").await.unwrap().status().as_u16(),
        401
    );
    let resp =
        http.get(format!("{base}/console/api/accounts")).header("cookie", "ingot_session=forged").send().await.unwrap();
    assert_eq!((resp.status().as_u16(), resp.headers()["content-type"].to_str().unwrap()), (401, "application/json"));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let resp = http.get(format!("{base}/console/api/session")).header("cookie", cookie).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401, "idle timeout");
}

/// A signed-in console user, over plain HTTP with the session cookie.
struct ConsoleUser {
    http: reqwest::Client,
    base: String,
    cookie: String,
    csrf: String,
}

impl ConsoleUser {
    async fn sign_in(base: &str, login: &str, password: &str) -> Self {
        let http = reqwest::Client::new();
        let resp = http
            .post(format!("{base}/console/api/login"))
            .json(&json!({"login": login, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "console sign-in as {login}");
        let set_cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
        let cookie = set_cookie.split(';').next().unwrap().to_string();
        let session: serde_json::Value = resp.json().await.unwrap();
        Self { http, base: base.to_string(), cookie, csrf: session["csrf"].as_str().unwrap().to_string() }
    }

    async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let resp = self.http.get(format!("{}{path}", self.base)).header("cookie", &self.cookie).send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap_or_default())
    }

    async fn post(&self, path: &str) -> u16 {
        let rb = self.http.post(format!("{}{path}", self.base)).header("cookie", &self.cookie);
        rb.header("x-csrf-token", &self.csrf).json(&json!({})).send().await.unwrap().status().as_u16()
    }
}

/// A removed admin's console session is refused at once; a demoted admin keeps the
/// session but loses admin actions at once; sessions have an absolute lifetime.
#[tokio::test]
async fn console_sessions_follow_user_removal_and_demotion() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--console-session-max-secs", "5"]);
    let admin = Api::admin(&server).await;
    for name in ["carol", "dave"] {
        let user = json!({"username": name, "service": "admin", "email": format!("{name}@example.com"),
                          "name": name, "profile": "admin", "passwd": "password-123"});
        assert_eq!(admin.post("/auth/user", user).await.0, 200);
    }
    let (_, tok) = admin.post("/auth/tokens", json!({"name": "fakeiot", "scopes": ["metrics"]})).await;
    report_logins(&admin, tok["token"].as_str().unwrap(), "acme", 0..1).await;

    let carol = ConsoleUser::sign_in(&server.http, "carol", "password-123").await;
    let dave = ConsoleUser::sign_in(&server.http, "dave", "password-123").await;
    for user in [&carol, &dave] {
        let (status, session) = user.get("/console/api/session").await;
        assert_eq!((status, session["profile"].as_str()), (200, Some("admin")));
        assert_eq!(user.get("/console/api/accounts").await.0, 200);
    }
    assert_eq!(carol.post("/console/api/accounts/acme/upgrade").await, 200, "an admin may upgrade");

    // Demoted: still signed in, no longer an admin, at once.
    assert_eq!(admin.put("/auth/user/carol", json!({"profile": "user"})).await.0, 200);
    assert_eq!(carol.post("/console/api/accounts/acme/upgrade").await, 403, "admin-only action refused");
    let (status, session) = carol.get("/console/api/session").await;
    assert_eq!((status, session["profile"].as_str()), (200, Some("user")));
    assert_eq!(carol.get("/console/api/accounts/acme").await.0, 200, "what users may see stays");

    // Removed: the session is over at once, for reads and writes alike.
    assert_eq!(admin.delete("/auth/user/dave").await.0, 200);
    assert_eq!(dave.get("/console/api/session").await.0, 401);
    assert_eq!(dave.get("/console/api/accounts").await.0, 401);
    assert_eq!(dave.post("/console/api/accounts/acme/upgrade").await, 401);
    let events = dave.http.get(format!("{}/console/api/events", dave.base)).header("cookie", &dave.cookie);
    assert_eq!(events.send().await.unwrap().status().as_u16(), 401);

    // However busy, a session ends at its absolute lifetime (5 s here; idle timeout 30 min).
    let started = std::time::Instant::now();
    let mut answers = vec![];
    while started.elapsed() < Duration::from_secs(15) && answers.last() != Some(&401) {
        answers.push(carol.get("/console/api/session").await.0);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(answers.first(), Some(&200), "alive while used");
    assert_eq!(answers.last(), Some(&401), "the session outlived its absolute lifetime");
}
