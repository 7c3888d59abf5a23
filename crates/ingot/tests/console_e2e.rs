//! The console in a real browser (headless Chromium driven through chromedriver): the
//! seats dashboard (sign in, watch the counter move as fakeiot-style metrics arrive,
//! alert at the limit, upgrade; the session is HttpOnly/Secure/SameSite and ends on
//! logout), and the device pages (a template and a device made in the UI, readings over
//! MQTT shown live, actuation received by mosquitto_sub, the CSV report, a dashboard
//! kept on the server); and, without the browser, the console endpoints' CSRF, tenant
//! isolation and refusals.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, Locator};
use serde_json::{Value, json};
use support::browser::*;
use support::{Api, Server, require_tool};

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
    wait_text(&c, "#devices-view h1", "Devices").await;
    c.find(Locator::Css("#nav a[data-page='seats']")).await.unwrap().click().await.unwrap();
    wait_text(&c, "#seats-view h1", "User Management Dashboard").await;

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
        self.send(reqwest::Method::POST, path, Some(json!({})), true).await.0
    }

    /// A request with the session cookie, and its CSRF token if `csrf`.
    fn request(&self, method: reqwest::Method, path: &str, csrf: bool) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, format!("{}{path}", self.base)).header("cookie", &self.cookie);
        if csrf { rb.header("x-csrf-token", &self.csrf) } else { rb }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>, csrf: bool) -> (u16, Value) {
        let mut rb = self.request(method, path, csrf);
        if let Some(body) = body {
            rb = rb.json(&body);
        }
        Api::send(rb).await
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

/// The `data-points` of a chart container: how many values it draws.
async fn chart_points(c: &Client, css: &str) -> u64 {
    let points = find(c, css).await.attr("data-points").await.unwrap();
    points.and_then(|p| p.parse().ok()).unwrap_or(0)
}

/// Waits (10 s) until the chart `css` draws more than `than` values; returns how many.
async fn wait_points_above(c: &Client, css: &str, than: u64) -> u64 {
    let mut last = 0;
    for _ in 0..100 {
        last = chart_points(c, css).await;
        if last > than {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css}: still {last} points, wanted more than {than}");
}

fn mosquitto_args(mqtt: &str, tenant: &str, device: &str, secret: &str) -> Vec<String> {
    let (host, port) = mqtt.rsplit_once(':').unwrap();
    let user = format!("{tenant}:{device}");
    ["-h", host, "-p", port, "-u", &user, "-P", secret, "-q", "1"].iter().map(|s| s.to_string()).collect()
}

fn publish(mqtt: &str, tenant: &str, device: &str, secret: &str, payload: &str) {
    let ok = Command::new("mosquitto_pub")
        .args(mosquitto_args(mqtt, tenant, device, secret))
        .args(["-t", &format!("{tenant}:{device}/attrs"), "-m", payload])
        .status()
        .unwrap();
    assert!(ok.success(), "mosquitto_pub {payload}");
}

/// Whether chromedriver, Chromium and mosquitto_pub are here (said loudly if not).
fn browser_and_mosquitto() -> bool {
    require_tool("chromedriver", "chromium-driver")
        && require_tool("chromium", "chromium")
        && require_tool("mosquitto_pub", "mosquitto-clients")
}

/// Signs in to the console at `https` as the admin, in the browser.
async fn sign_in_as_admin(c: &Client, https: &str) {
    c.goto(&format!("{https}/console/")).await.unwrap();
    fill(c, "#login", "admin").await;
    fill(c, "#password", support::ADMIN_PASSWORD).await;
    click(c, "#login-submit").await;
    wait_text(c, "#devices-view h1", "Devices").await;
}

/// The device pages, end to end in Chromium: a template (a dynamic float `temperature`
/// and an actuator `target`) and a device made in the UI, its secret read from the page,
/// readings published with mosquitto_pub shown as latest values and in the live chart
/// without a reload, actuation from the UI received by mosquitto_sub, the history chart,
/// the CSV report downloaded, a dashboard tile kept across a reload; no CSP violation.
#[tokio::test]
async fn device_console_in_headless_chromium() {
    if !browser_and_mosquitto() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let https = server.https.clone().unwrap();
    let mqtt = server.mqtt.clone().unwrap();
    let profile = tempfile::tempdir().unwrap();
    let (_driver, c) = browser(profile.path()).await;
    sign_in_as_admin(&c, &https).await;

    // A template, in the UI.
    click(&c, "#nav a[data-page='templates']").await;
    click(&c, "#template-new").await;
    fill(&c, "#template-label", "Thermostat").await;
    let row = |n: usize, part: &str| format!("#template-attrs tbody tr:nth-child({n}) .{part}");
    fill(&c, &row(1, "attr-label"), "temperature").await;
    choose(&c, &row(1, "attr-type"), "dynamic").await;
    choose(&c, &row(1, "attr-value-type"), "float").await;
    click(&c, "#template-add-attr").await;
    fill(&c, &row(2, "attr-label"), "target").await;
    choose(&c, &row(2, "attr-type"), "actuator").await;
    choose(&c, &row(2, "attr-value-type"), "float").await;
    click(&c, "#template-save").await;
    wait_text(&c, "#templates-table tbody tr:first-child td:nth-child(2)", "Thermostat").await;
    wait_text(
        &c,
        "#templates-table tbody tr:first-child td:nth-child(3)",
        "temperature (dynamic, float), target (actuator, float)",
    )
    .await;

    // Edited in the UI: a static attribute with its value.
    click(&c, "#templates-table tbody tr:first-child button.secondary").await;
    wait_text(&c, "#template-form-title", "Edit template Thermostat").await;
    click(&c, "#template-add-attr").await;
    fill(&c, &row(3, "attr-label"), "model").await;
    choose(&c, &row(3, "attr-type"), "static").await;
    choose(&c, &row(3, "attr-value-type"), "string").await;
    fill(&c, &row(3, "attr-static"), "TX-1").await;
    click(&c, "#template-save").await;
    wait_text(
        &c,
        "#templates-table tbody tr:first-child td:nth-child(3)",
        "temperature (dynamic, float), target (actuator, float), model (static, string)",
    )
    .await;

    // A device from it, in the UI: the page goes to the new device.
    click(&c, "#nav a[data-page='devices']").await;
    fill(&c, "#device-label", "boiler").await;
    click(&c, "#device-templates input[type='checkbox']").await;
    click(&c, "#device-create").await;
    let title = find(&c, "#device-title").await;
    let mut device = String::new();
    for _ in 0..100 {
        let text = title.text().await.unwrap();
        if let Some(id) = text.strip_prefix("boiler (").and_then(|t| t.strip_suffix(')')) {
            device = id.to_string();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!device.is_empty(), "the device page shows the new device");
    wait_text(&c, "#device-mqtt-user", &format!("admin:{device}")).await;
    wait_text(&c, "#device-attrs tr[data-attr='model'] .latest", "TX-1").await;

    // Its secret, shown once, with the warning.
    click(&c, "#secret-generate").await;
    wait_text(&c, "#secret-box .alert", "Copy this secret now: it will not be shown again.").await;
    let secret = find(&c, "#secret-value").await.text().await.unwrap();
    assert_eq!(secret.len(), 64, "a 256-bit secret in hex: {secret:?}");

    // Readings over MQTT: the latest value and the live chart follow without a reload.
    c.execute("window.notReloaded = true;", vec![]).await.unwrap();
    wait_text(&c, "#live-status", "Live: new readings appear as they arrive.").await;
    publish(&mqtt, "admin", &device, &secret, r#"{"temperature": 21.5}"#);
    wait_text(&c, "#device-attrs tr[data-attr='temperature'] .latest", "21.5").await;
    let first = wait_points_above(&c, "#live-chart", 0).await;
    publish(&mqtt, "admin", &device, &secret, r#"{"temperature": 23}"#);
    wait_text(&c, "#device-attrs tr[data-attr='temperature'] .latest", "23").await;
    let second = wait_points_above(&c, "#live-chart", first).await;
    assert_eq!(second, first + 1);
    let canvas = c
        .execute(
            "const k = document.querySelector('#live-chart canvas'); \
             return k ? [k.width, k.height, window.notReloaded === true] : null;",
            vec![],
        )
        .await
        .unwrap();
    let canvas = canvas.as_array().expect("the live chart draws on a canvas");
    assert!(canvas[0].as_u64().unwrap() > 0 && canvas[1].as_u64().unwrap() > 0, "{canvas:?}");
    assert_eq!(canvas[2], json!(true), "the page was not reloaded");

    // Actuation from the UI reaches the device's config topic.
    let mut sub = Command::new("mosquitto_sub")
        .args(mosquitto_args(&mqtt, "admin", &device, &secret))
        .args(["-t", &format!("admin:{device}/config"), "-C", "1", "-W", "15"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    fill(&c, "#actuate-target", "30").await;
    let mut delivered = None;
    // The subscriber needs a moment to be subscribed: send until it has something.
    for _ in 0..50 {
        click(&c, "#actuate-send").await;
        wait_text(&c, "#actuate-done", "Sent to the device: target = 30.").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Ok(Some(_)) = sub.try_wait() {
            delivered = Some(sub.wait_with_output().unwrap());
            break;
        }
    }
    let out = delivered.expect("mosquitto_sub received nothing on the config topic");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"{"target":30}"#);

    // The history chart over the last hour (the form's default range).
    click(&c, "#history-show").await;
    let points = wait_points_above(&c, "#history-chart", 2).await;
    assert!(points >= 3, "2 temperatures and at least one target: {points}");
    let shot = c.screenshot().await.unwrap();
    std::fs::write(std::env::temp_dir().join("ingot-console-device.png"), shot).unwrap();

    // The report of the temperature (target unticked), downloaded by the browser as a file.
    click(&c, "#history-attrs input[value='target']").await;
    click(&c, "#report-download").await;
    let file = downloads(profile.path()).join(format!("history-{device}.csv"));
    let mut csv = String::new();
    for _ in 0..100 {
        if let Ok(text) = std::fs::read_to_string(&file)
            && text.ends_with("\r\n")
        {
            csv = text;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.first(), Some(&vec!["timestamp", "attribute", "value"]), "{csv:?}");
    let values: Vec<(&str, &str)> = rows[1..].iter().map(|r| (r[1], r[2])).collect();
    assert_eq!(values, [("temperature", "21.5"), ("temperature", "23")], "{csv:?}");
    assert!(rows[1][0].ends_with('Z') && rows[1][0] < rows[2][0], "timestamps, oldest first: {csv:?}");

    // The certificate files for MQTT over TLS: three downloads from one click.
    click(&c, "#certificate-generate").await;
    let names = [format!("{device}-cert.pem"), format!("{device}-private.key"), "ca.pem".to_string()];
    for name in &names {
        let file = downloads(profile.path()).join(name);
        let mut text = String::new();
        for _ in 0..100 {
            text = std::fs::read_to_string(&file).unwrap_or_default();
            if text.trim_end().ends_with("-----") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(text.starts_with("-----BEGIN "), "{name}: {text:?}");
    }

    // The dashboard: a tile and a chart of the temperature, live, reordered and removed,
    // kept on the server across reloads.
    click(&c, "#nav a[data-page='dashboard']").await;
    wait_text(&c, "#dashboard-page h1", "Dashboard").await;
    choose(&c, "#widget-type", "tile").await;
    choose(&c, "#widget-device", &device).await;
    choose(&c, "#widget-attr", "temperature").await;
    click(&c, "#widget-add").await;
    let tile = format!("#widgets .widget[data-type='tile'][data-device='{device}'][data-attrs='temperature']");
    wait_text(&c, &format!("{tile} .value"), "23").await;
    choose(&c, "#widget-type", "chart").await;
    find(&c, "#widget-attr[multiple] option[value='temperature']:checked").await;
    click(&c, "#widget-add").await;
    let chart = format!("#widgets .widget[data-type='chart'][data-device='{device}'][data-attrs='temperature']");
    let before = wait_points_above(&c, &format!("{chart} .chart"), 1).await;
    click(&c, &format!("{chart} button[aria-label='Move up']")).await;
    find(&c, "#widgets .widget:first-child[data-type='chart']").await;
    c.refresh().await.unwrap();
    find(&c, "#widgets .widget:first-child[data-type='chart']").await;
    wait_text(&c, &format!("{tile} .value"), "23").await;
    assert_eq!(wait_points_above(&c, &format!("{chart} .chart"), before - 1).await, before, "the same history");
    publish(&mqtt, "admin", &device, &secret, r#"{"temperature": 24.5}"#);
    wait_text(&c, &format!("{tile} .value"), "24.5").await;
    wait_points_above(&c, &format!("{chart} .chart"), before).await;
    let shot = c.screenshot().await.unwrap();
    std::fs::write(std::env::temp_dir().join("ingot-console-dashboard.png"), shot).unwrap();
    click(&c, &format!("{tile} button[aria-label='Remove']")).await;
    for reload in [false, true] {
        if reload {
            c.refresh().await.unwrap();
            find(&c, &chart).await;
        }
        let mut widgets = 0;
        for _ in 0..50 {
            widgets = c.find_all(Locator::Css("#widgets .widget")).await.unwrap().len();
            if widgets == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(widgets, 1, "the tile was removed (reloaded: {reload})");
    }

    assert_no_page_errors(&c).await;
    c.close().await.unwrap();
}

/// Reads a streamed body until `enough` holds for what was read, or it ends, or 5 s pass.
async fn read_events(resp: &mut reqwest::Response, enough: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !enough(&text) {
        match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(Ok(None)) | Ok(Err(_)) => break,
            Err(_) => panic!("the stream neither ended nor sent what was awaited in 5 s: {text:?}"),
        }
    }
    text
}

/// The console's device endpoints without a browser: every change needs the CSRF token,
/// another tenant's device is "not found" everywhere, the report is an attachment with
/// formula-safe cells and refuses a range larger than one answer, live readings stop
/// with the session, a dashboard layout is kept per user and refused, with the reason,
/// when it is not one the console knows; uPlot is cached for good, the console's own
/// files not at all.
#[tokio::test]
async fn device_console_endpoints_csrf_tenants_report_and_layout() {
    use reqwest::Method as M;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--max-history-points", "4"]);
    let admin = Api::admin(&server).await;
    let mallory = json!({"username": "mallory", "service": "globex", "email": "mallory@example.com",
                         "name": "Mallory", "profile": "admin", "passwd": "password-123"});
    assert_eq!(admin.post("/auth/user", mallory).await.0, 200);
    let me = ConsoleUser::sign_in(&server.http, "admin", support::ADMIN_PASSWORD).await;
    let other = ConsoleUser::sign_in(&server.http, "mallory", "password-123").await;

    let template = json!({"label": "Thermostat", "attrs": [
        {"label": "temperature", "type": "dynamic", "value_type": "float"},
        {"label": "target", "type": "actuator", "value_type": "float"}]});
    let (status, _) = me.send(M::POST, "/console/api/templates", Some(template.clone()), false).await;
    assert_eq!(status, 403, "no CSRF token");
    let (status, t) = me.send(M::POST, "/console/api/templates", Some(template), true).await;
    assert_eq!(status, 200, "{t}");
    let tid = t["id"].as_i64().unwrap();
    let bad = json!({"label": "", "attrs": [{"label": "a b", "type": "dynamic", "value_type": "float"}]});
    let (status, refused) = me.send(M::POST, "/console/api/templates", Some(bad), true).await;
    assert_eq!(status, 400);
    assert_eq!(
        refused["error"],
        "attrs.0.label: Labels must contain letters, numbers or dashes(-_); label: Field may not be empty."
    );

    let body = json!({"label": "boiler", "templates": [tid]});
    assert_eq!(me.send(M::POST, "/console/api/devices", Some(body.clone()), false).await.0, 403);
    let (status, created) = me.send(M::POST, "/console/api/devices", Some(body), true).await;
    assert_eq!(status, 200, "{created}");
    let id = created["devices"][0]["id"].as_str().unwrap().to_string();
    let (status, found) = me.get("/console/api/devices?label=oil&page_size=5").await;
    assert_eq!((status, found["devices"].as_array().unwrap().len()), (200, 1), "search by part of the label");
    let (_, none) = me.get("/console/api/devices?label=nothing").await;
    assert_eq!(none["devices"], json!([]));
    for label in ["pump", "boiler 2"] {
        let body = json!({"label": label, "templates": [tid]});
        assert_eq!(me.send(M::POST, "/console/api/devices", Some(body), true).await.0, 200);
    }
    let (_, page) = me.get("/console/api/devices?page_size=2&page_num=2&sortBy=label").await;
    let labels: Vec<&str> = page["devices"].as_array().unwrap().iter().map(|d| d["label"].as_str().unwrap()).collect();
    assert_eq!((labels, &page["pagination"]["total"]), (vec!["pump"], &json!(2)), "{page}");

    // Templates: edited (attributes matched by label and type keep their id), deleted when unused.
    let edited = json!({"label": "Thermostat", "attrs": [
        {"label": "temperature", "type": "dynamic", "value_type": "float"},
        {"label": "target", "type": "actuator", "value_type": "float"},
        {"label": "model", "type": "static", "value_type": "string", "static_value": "TX-1"}]});
    let path = format!("/console/api/templates/{tid}");
    assert_eq!(me.send(M::PUT, &path, Some(edited.clone()), false).await.0, 403);
    let (status, t) = me.send(M::PUT, &path, Some(edited), true).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["attrs"][2]["static_value"], "TX-1");
    let (_, d) = me.get(&format!("/console/api/devices/{id}")).await;
    let attrs = d["attrs"][tid.to_string()].as_array().unwrap();
    assert_eq!(
        attrs.iter().map(|a| a["label"].as_str().unwrap()).collect::<Vec<_>>(),
        ["temperature", "target", "model"]
    );
    let (status, refused) = me.send(M::DELETE, &path, None, true).await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (400, Some("Templates cannot be removed as they are being used by devices"))
    );
    let spare = json!({"label": "Spare", "attrs": []});
    let (_, spare) = me.send(M::POST, "/console/api/templates", Some(spare), true).await;
    let spare = format!("/console/api/templates/{}", spare["id"]);
    assert_eq!(me.send(M::DELETE, &spare, None, false).await.0, 403);
    assert_eq!(me.send(M::DELETE, &spare, None, true).await.0, 200);
    assert_eq!(me.send(M::DELETE, &spare, None, true).await.0, 404);
    assert_eq!(me.send(M::POST, &format!("/console/api/devices/{id}/secret"), None, false).await.0, 403);
    let (status, secret) = me.send(M::POST, &format!("/console/api/devices/{id}/secret"), None, true).await;
    assert_eq!(status, 200);
    let secret = secret["secret"].as_str().unwrap().to_string();

    // Readings, one a text a spreadsheet would run.
    let formula = r#"=HYPERLINK("http://evil.example","click")"#;
    let (status, _) = admin.send_reading("admin", &id, &secret, json!({"temperature": -1.5, "note": formula})).await;
    assert_eq!(status, 204);
    let resp = me.request(M::GET, &format!("/console/api/devices/{id}/report.csv?attr=note,temperature"), false);
    let resp = resp.send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(resp.headers()["content-disposition"], format!("attachment; filename=\"history-{id}.csv\"").as_str());
    let csv = resp.text().await.unwrap();
    let lines: Vec<&str> = csv.split("\r\n").collect();
    assert_eq!(lines.len(), 4, "{csv:?}");
    assert_eq!(lines[0], "timestamp,attribute,value");
    assert!(lines[1].ends_with(r#",note,"'=HYPERLINK(""http://evil.example"",""click"")""#), "{csv:?}");
    assert!(lines[2].ends_with(",temperature,-1.5"), "a negative number stays a number: {csv:?}");

    // Actuation: actuators only; CSRF needed.
    let actuate = format!("/console/api/devices/{id}/actuate");
    assert_eq!(me.send(M::PUT, &actuate, Some(json!({"attrs": {"target": 20}})), false).await.0, 403);
    assert_eq!(me.send(M::PUT, &actuate, Some(json!({"attrs": {"target": 20}})), true).await.0, 200);
    let (status, refused) = me.send(M::PUT, &actuate, Some(json!({"attrs": {"temperature": 20}})), true).await;
    assert_eq!((status, refused["error"].as_str()), (400, Some("not actuator attributes of this device: temperature")));

    // More readings than one answer holds (4): the chart says so, the report refuses.
    for t in 0..4 {
        admin.send_reading("admin", &id, &secret, json!({"temperature": t})).await;
    }
    let (status, range) = me.get(&format!("/console/api/devices/{id}/history?attr=temperature")).await;
    assert_eq!((status, range["truncated"].as_bool()), (200, Some(true)), "{range}");
    let values: Vec<&Value> = range["points"].as_array().unwrap().iter().map(|p| &p["value"]).collect();
    assert_eq!(values, [&json!(0), &json!(1), &json!(2), &json!(3)], "the newest, oldest first");
    let (status, refused) = me.get(&format!("/console/api/devices/{id}/report.csv?attr=temperature")).await;
    assert_eq!(status, 400);
    assert!(refused["error"].as_str().unwrap().contains("choose a shorter range"), "{refused}");
    let (status, refused) = me.get(&format!("/console/api/devices/{id}/history?from=2024-02-01&to=2024-01-01")).await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (400, Some("the end of the range (to) is before its start (from)"))
    );

    // Another tenant's device is not found, whatever the endpoint; its lists are its own.
    for path in ["", "/latest", "/history", "/report.csv", "/stream"] {
        assert_eq!(other.get(&format!("/console/api/devices/{id}{path}")).await.0, 404, "GET {path}");
    }
    assert_eq!(other.send(M::PUT, &actuate, Some(json!({"attrs": {"target": 1}})), true).await.0, 404);
    assert_eq!(other.send(M::POST, &format!("/console/api/devices/{id}/secret"), None, true).await.0, 404);
    assert_eq!(other.send(M::DELETE, &format!("/console/api/devices/{id}"), None, true).await.0, 404);
    assert_eq!(other.send(M::DELETE, &format!("/console/api/templates/{tid}"), None, true).await.0, 404);
    assert_eq!(other.get("/console/api/devices").await.1["devices"], json!([]));
    assert_eq!(other.get("/console/api/templates").await.1["templates"], json!([]));
    assert_eq!(me.get(&format!("/console/api/devices/{id}")).await.0, 200, "still there");

    // Dashboards: per user, validated, CSRF needed.
    let layout = json!({"widgets": [{"type": "tile", "device": id, "attr": "temperature"},
                                    {"type": "chart", "device": id, "attrs": ["temperature", "target"]}]});
    assert_eq!(me.get("/console/api/dashboard").await, (200, json!({"widgets": []})));
    assert_eq!(me.send(M::PUT, "/console/api/dashboard", Some(layout.clone()), false).await.0, 403);
    assert_eq!(me.send(M::PUT, "/console/api/dashboard", Some(layout.clone()), true).await, (200, layout.clone()));
    assert_eq!(me.get("/console/api/dashboard").await, (200, layout.clone()));
    assert_eq!(other.get("/console/api/dashboard").await, (200, json!({"widgets": []})), "another user's own");
    let tile = json!({"type": "tile", "device": id, "attr": "temperature"});
    let too_many = json!({"widgets": vec![tile; 65]});
    let (status, refused) = me.send(M::PUT, "/console/api/dashboard", Some(too_many), true).await;
    assert_eq!((status, refused["error"].as_str()), (400, Some("a dashboard holds at most 64 widgets")));
    let unknown = json!({"widgets": [{"type": "map", "device": id}]});
    let (status, refused) = me.send(M::PUT, "/console/api/dashboard", Some(unknown), true).await;
    assert_eq!(status, 400);
    assert!(refused["error"].as_str().unwrap().contains("unknown variant `map`"), "{refused}");
    assert_eq!(me.get("/console/api/dashboard").await, (200, layout), "a refused layout changes nothing");

    // Live readings: the device's own, as SSE; they stop once the session is over.
    let viewer = ConsoleUser::sign_in(&server.http, "admin", support::ADMIN_PASSWORD).await;
    let mut live = viewer.request(M::GET, &format!("/console/api/devices/{id}/stream"), false).send().await.unwrap();
    assert_eq!(live.status().as_u16(), 200);
    assert_eq!(live.headers()["content-type"], "text/event-stream");
    admin.send_reading("admin", &id, &secret, json!({"temperature": 7})).await;
    let seen = read_events(&mut live, |text| text.contains("\"temperature\":7")).await;
    assert!(seen.contains("event: device-data\n"), "{seen:?}");
    assert!(seen.contains(&format!("\"deviceid\":\"{id}\"")) && seen.contains("\"tenant\":\"admin\""), "{seen:?}");
    assert_eq!(viewer.post("/console/api/logout").await, 204);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    admin.send_reading("admin", &id, &secret, json!({"temperature": 8})).await;
    let rest = read_events(&mut live, |_| false).await;
    assert!(!rest.contains("\"temperature\":8"), "a signed-out session's stream goes on: {rest:?}");

    // Files: the vendored chart library is cached for good (its version is in its path).
    for (path, cache, kind) in [
        ("/console/vendor/uplot-1.6.32/uPlot.iife.min.js", "public, max-age=31536000, immutable", "text/javascript"),
        ("/console/js/app.js", "no-store", "text/javascript"),
        ("/console/", "no-store", "text/html"),
    ] {
        let resp = reqwest::get(format!("{}{path}", server.http)).await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        assert_eq!(resp.headers()["cache-control"], cache, "{path}");
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with(kind), "{path}");
        assert!(resp.headers()["content-security-policy"].to_str().unwrap().contains("script-src 'self';"));
    }

    // Deleting the device (CSRF needed) ends its pages.
    assert_eq!(me.send(M::DELETE, &format!("/console/api/devices/{id}"), None, false).await.0, 403);
    assert_eq!(me.send(M::DELETE, &format!("/console/api/devices/{id}"), None, true).await.0, 200);
    assert_eq!(me.get(&format!("/console/api/devices/{id}/latest")).await.0, 404);
}

/// The device page's "certificate files": a certificate, its key (made on the server,
/// handed over once) and the CA, which mosquitto uses as they are on the MQTTS port.
#[tokio::test]
async fn device_console_hands_out_certificate_files_that_mosquitto_uses() {
    use reqwest::Method as M;
    if !require_tool("mosquitto_pub", "mosquitto-clients") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let admin = Api::admin(&server).await;
    let template = admin.thermometer_template().await;
    let (id, _) = admin.device_with_secret(template, "d").await;
    let me = ConsoleUser::sign_in(&server.http, "admin", support::ADMIN_PASSWORD).await;
    let path = format!("/console/api/devices/{id}/certificate");
    assert_eq!(me.send(M::POST, &path, Some(json!({})), false).await.0, 403, "CSRF");
    assert_eq!(me.send(M::POST, "/console/api/devices/nosuch/certificate", Some(json!({})), true).await.0, 404);
    let (status, files) = me.send(M::POST, &path, Some(json!({})), true).await;
    assert_eq!(status, 200, "{files}");
    let write = |name: &str, key: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, files[key].as_str().unwrap()).unwrap();
        p
    };
    let (cert, key, ca) = (write("cert.pem", "certificate"), write("private.key", "privateKey"), write("ca.pem", "ca"));
    let (host, port) = server.mqtts.as_ref().unwrap().rsplit_once(':').unwrap();
    let ok = Command::new("mosquitto_pub")
        .args(["-h", host, "-p", port, "--cafile", ca.to_str().unwrap(), "--cert", cert.to_str().unwrap()])
        .args([
            "--key",
            key.to_str().unwrap(),
            "-t",
            &format!("admin:{id}/attrs"),
            "-m",
            r#"{"temperature": 5}"#,
            "-q",
            "1",
        ])
        .status()
        .unwrap();
    assert!(ok.success(), "mosquitto_pub with the console's files");
    let (_, listed) = admin.get(&format!("/x509/v1/certificates/{}", files["fingerprint"].as_str().unwrap())).await;
    assert_eq!(listed["belongsTo"], json!({"device": id}));
}

/// Drags with the mouse from element `from` to element `to` (a wire in the flow editor).
async fn drag(c: &Client, from: &str, to: &str) {
    use fantoccini::actions::{InputSource, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
    let (from, to) = (find(c, from).await, find(c, to).await);
    let at = |element| PointerAction::MoveToElement { element, duration: None, x: 0.0, y: 0.0 };
    let mouse = MouseActions::new("mouse".into())
        .then(at(from))
        .then(PointerAction::Down { button: MOUSE_BUTTON_LEFT })
        .then(PointerAction::MoveBy { duration: Some(Duration::from_millis(100)), x: 5.0, y: 5.0 })
        .then(at(to))
        .then(PointerAction::Up { button: MOUSE_BUTTON_LEFT });
    c.perform_actions(mouse).await.expect("drag");
}

/// The flows page in Chromium: chapter 9.2's kitchen flow, as dojot exports it, imported
/// into the visual editor (five nodes, five wires drawn); a node's settings changed in its
/// panel; saved with the debugger on; a reading over MQTT runs it, the alarm's history
/// gets the changed words, and the trace shows on the nodes and in the panel, live; a
/// node added from the palette with a missing setting is refused, pointed at and
/// removed; a wire drawn with the mouse is saved; the export is dojot's JSON; the list's
/// switch disables the flow; no CSP violation.
#[tokio::test]
async fn flows_editor_in_headless_chromium() {
    if !browser_and_mosquitto() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let (https, mqtt) = (server.https.clone().unwrap(), server.mqtt.clone().unwrap());
    let api = Api::admin(&server).await;
    let thermometers = api.thermometer_template().await;
    let alarm_template = api.template("Alarm", &[("message", "string"), ("severity", "integer")]).await;
    let (kitchen, secret) = api.device_with_secret(thermometers, "kitchen thermometer").await;
    let (alarm, _) = api.device_with_secret(alarm_template, "kitchen alarm").await;

    let profile = tempfile::tempdir().unwrap();
    let (_driver, c) = browser(profile.path()).await;
    sign_in_as_admin(&c, &https).await;
    click(&c, "#nav a[data-page='flows']").await;
    wait_text(&c, "#flows-view h1", "Flows").await;
    assert!(displayed(&c, "#flows-empty").await);

    // Import: dojot's export, pasted.
    click(&c, "#flow-import-open").await;
    let export = support::kitchen_flow(thermometers, &alarm).to_string();
    find(&c, "#flow-import-text").await.send_keys(&export).await.unwrap();
    click(&c, "#flow-import-submit").await;
    wait_count(&c, "#flow-canvas .drawflow-node", 5).await;
    wait_count(&c, "#flow-canvas svg.connection", 5).await;
    assert_eq!(find(&c, "#flow-name").await.prop("value").await.unwrap().as_deref(), Some("Flow 1"), "the tab's label");
    wait_text(&c, "#flow-canvas [data-node-id='sw'] .flow-node-name", "switch").await;
    wait_text(&c, "#flow-canvas [data-node-id='out'] .flow-node-name", "alarm").await;

    // A node's settings, in its panel.
    click(&c, "#flow-canvas [data-node-id='ok'] .drawflow_content_node").await;
    wait_text(&c, "#node-title", "change").await;
    let settings = find(&c, "#node-settings").await.prop("value").await.unwrap().unwrap();
    assert!(settings.contains("kitchen OK"), "{settings}");
    fill(&c, "#node-settings", &settings.replace("kitchen OK", "kitchen fine")).await;
    fill(&c, "#node-name", "all fine").await;
    click(&c, "#node-apply").await;
    wait_text(&c, "#flow-canvas [data-node-id='ok'] .flow-node-name", "all fine").await;
    fill(&c, "#flow-name", "kitchen").await;
    click(&c, "#flow-trace").await;
    click(&c, "#flow-save").await;
    wait_contains(&c, "#flow-status", "Saved at").await;
    wait_text(&c, "#flows-table tbody tr td:first-child", "kitchen").await;
    let (status, body) = api.get("/flows/v1/flow").await;
    assert_eq!(status, 200);
    let saved = body["flows"][0].clone();
    let id = saved["id"].as_str().unwrap().to_string();
    assert_eq!(
        (saved["name"].as_str(), saved["enabled"].as_bool(), saved["trace"].as_bool()),
        (Some("kitchen"), Some(true), Some(true))
    );
    let ok = saved["flow"].as_array().unwrap().iter().find(|n| n["id"] == "ok").unwrap().clone();
    assert_eq!((ok["name"].as_str(), ok["rules"][0]["to"].as_str()), (Some("all fine"), Some("kitchen fine")));
    assert_eq!(ok["wires"], json!([["out"]]));
    assert_eq!((ok["x"].as_i64(), ok["y"].as_i64()), (Some(480), Some(60)), "positions kept");
    wait_contains(&c, "#flow-trace-status", "Tracing").await;

    // A reading runs it; the trace shows on the nodes, live.
    publish(&mqtt, "admin", &kitchen, &secret, r#"{"temperature": 30}"#);
    assert_eq!(api.values(&alarm, "message", 1).await, [json!("kitchen fine")]);
    wait_text(&c, "#flow-canvas [data-node-id='sw'] .flow-node-trace", "in 1 · out 1").await;
    wait_text(&c, "#flow-canvas [data-node-id='out'] .flow-node-trace", "in 1 · out 0").await;
    click(&c, "#flow-canvas [data-node-id='sw'] .drawflow_content_node").await;
    let traced = wait_contains(&c, "#node-trace", "out 1").await;
    assert!(traced.contains("\"temperature\":30"), "{traced}");

    // From the palette: a head without its device is refused, and pointed at.
    click(&c, "#flow-palette button[data-type='event device in']").await;
    wait_count(&c, "#flow-canvas .drawflow-node", 6).await;
    wait_text(&c, "#node-title", "event device in").await;
    click(&c, "#flow-save").await;
    let said = wait_contains(&c, "#flow-editor-error", "Given flow is invalid").await;
    assert!(said.contains("device_id is required"), "{said}");
    wait_count(&c, "#flow-canvas .drawflow-node.invalid", 1).await;
    click(&c, "#node-remove").await;
    wait_count(&c, "#flow-canvas .drawflow-node", 5).await;

    // A template node wired in with the mouse, after the switch's second output.
    click(&c, "#flow-palette button[data-type='template']").await;
    wait_count(&c, "#flow-canvas .drawflow-node", 6).await;
    let drawn = c.find_all(Locator::Css("#flow-canvas .drawflow-node")).await.unwrap();
    let template = drawn.last().unwrap().attr("data-node-id").await.unwrap().unwrap();
    drag(
        &c,
        "#flow-canvas [data-node-id='sw'] .output_2",
        &format!("#flow-canvas [data-node-id='{template}'] .input_1"),
    )
    .await;
    wait_count(&c, "#flow-canvas svg.connection", 6).await;
    click(&c, "#flow-save").await;
    wait_contains(&c, "#flow-status", "Saved at").await;
    let (_, body) = api.get(&format!("/flows/v1/flow/{id}")).await;
    let sw = body["flow"]["flow"].as_array().unwrap().iter().find(|n| n["id"] == "sw").unwrap().clone();
    assert_eq!(sw["wires"], json!([["ok"], ["fire", template]]), "the drawn wire is saved");

    // Export: dojot's JSON, in a file.
    click(&c, "#flow-export").await;
    let file = downloads(profile.path()).join("kitchen.json");
    for _ in 0..100 {
        if file.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let exported: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(exported["name"], "kitchen");
    let nodes = exported["flow"].as_array().unwrap();
    assert_eq!(nodes.len(), 7, "the tab and six nodes: {exported}");
    assert!(nodes.iter().any(|n| n["type"] == "tab" && n["id"] == "t1"), "the tab is kept");
    assert!(nodes.iter().all(|n| n["type"] == "tab" || n["z"] == "t1"));

    // The list's switch disables it: the next reading runs nothing.
    click(&c, "#flows-table tbody tr input.flow-enabled").await;
    for _ in 0..100 {
        if api.get(&format!("/flows/v1/flow/{id}")).await.1["flow"]["enabled"] == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(api.get(&format!("/flows/v1/flow/{id}")).await.1["flow"]["enabled"], false);
    assert!(!find(&c, "#flow-enabled").await.is_selected().await.unwrap(), "the editor follows the list");

    assert_no_page_errors(&c).await;
    c.close().await.unwrap();
}

/// The flows page's endpoints without the browser: changes need the CSRF token, the
/// server's refusals come back in plain words (a bad flow, an unknown one, the live
/// trace while the switch is off), and another tenant's user sees none of the flows.
#[tokio::test]
async fn flows_console_endpoints_csrf_refusals_and_tenants() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let api = Api::admin(&server).await;
    let template = api.thermometer_template().await;
    let (alarm, _) = api.device_with_secret(template, "alarm").await;
    api.tenant_admin("olga", "other").await;
    let admin = ConsoleUser::sign_in(&server.http, "admin", support::ADMIN_PASSWORD).await;
    let other = ConsoleUser::sign_in(&server.http, "olga", "password-123").await;

    let body = json!({"name": "kitchen", "flow": support::kitchen_flow(template, &alarm)});
    let (status, _) = admin.send(Method::POST, "/console/api/flows", Some(body.clone()), false).await;
    assert_eq!(status, 403, "no CSRF token");
    let (status, flow) = admin.send(Method::POST, "/console/api/flows", Some(body), true).await;
    assert_eq!(status, 200, "{flow}");
    let id = flow["id"].as_str().unwrap().to_string();
    assert_eq!((flow["enabled"].as_bool(), flow["trace"].as_bool()), (Some(true), Some(false)));
    let (status, listed) = admin.get("/console/api/flows").await;
    assert_eq!((status, listed["flows"][0]["id"].as_str()), (200, Some(id.as_str())));

    let bad = json!({"flow": [{"id": "x", "type": "no such type", "wires": []}]});
    let (status, said) = admin.send(Method::PUT, &format!("/console/api/flows/{id}"), Some(bad), true).await;
    assert_eq!(status, 400);
    assert_eq!(said["error"], "Given flow is invalid: node 'x' (no such type): unknown node type 'no such type'");
    let (status, said) = admin.get(&format!("/console/api/flows/{id}/trace/stream")).await;
    assert_eq!(status, 409, "{said}");
    assert!(said["error"].as_str().unwrap().contains("tracing is off"), "{said}");
    let (status, trace) = admin.get(&format!("/console/api/flows/{id}/trace")).await;
    assert_eq!((status, trace["trace"].as_bool()), (200, Some(false)));

    // Another tenant: an empty list, and 404 for the flow, whatever the method.
    assert_eq!(other.get("/console/api/flows").await.1, json!({"flows": []}));
    let path = format!("/console/api/flows/{id}");
    assert_eq!(other.get(&path).await.0, 404);
    assert_eq!(other.get(&format!("{path}/trace")).await.0, 404);
    assert_eq!(other.send(Method::PUT, &path, Some(json!({"enabled": false})), true).await.0, 404);
    assert_eq!(other.send(Method::DELETE, &path, None, true).await.0, 404);

    let (status, gone) = admin.send(Method::DELETE, &path, None, true).await;
    assert_eq!((status, gone["removed"].as_str()), (200, Some(id.as_str())));
    let (status, said) = admin.get(&path).await;
    assert_eq!((status, said["error"].as_str()), (404, Some(format!("Unknown flow: {id}").as_str())));
}

/// The load tests page in Chromium: results pushed to the collector (an API token with
/// the `loadtests` scope) are listed; a job's throughput, error-rate and latency charts
/// fill in live as more are pushed, without a reload; its totals are the collector's;
/// deleting it empties the list; no CSP violation.
#[tokio::test]
async fn load_test_charts_fill_in_live_in_headless_chromium() {
    if !(require_tool("chromedriver", "chromium-driver") && require_tool("chromium", "chromium")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let https = server.https.clone().unwrap();
    let api = Api::admin(&server).await;
    let (_, token) = api.post("/auth/tokens", json!({"name": "agents", "scopes": ["loadtests"]})).await;
    let token = token["token"].as_str().unwrap().to_string();
    // Outputs without a timestamp count at the second they arrive.
    let push = |n: usize, status: u16| {
        let outputs: Vec<Value> = (0..n)
            .map(|i| json!({"sequenceID": i, "status": status, "duration": (i as u64 + 1) * 1_000_000, "error": null}))
            .collect();
        let url = format!("{}/push/soak", server.http);
        let token = token.clone();
        async move {
            let resp =
                reqwest::Client::new().post(url).basic_auth("agents", Some(token)).json(&outputs).send().await.unwrap();
            assert_eq!(resp.status(), 200);
        }
    };
    push(50, 200).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    push(30, 500).await;

    let profile = tempfile::tempdir().unwrap();
    let (_driver, c) = browser(profile.path()).await;
    sign_in_as_admin(&c, &https).await;
    click(&c, "#nav a[data-page='loadtests']").await;
    wait_text(&c, "#loadtests-table tbody tr td:first-child", "soak").await;
    wait_contains(&c, "#loadtests-collector", "://agents:<API token>@").await;
    click(&c, "#loadtests-table tbody tr td:first-child a").await;
    wait_text(&c, "#loadtest-title", "soak").await;
    wait_contains(&c, "#loadtest-state", "Running").await;
    wait_contains(&c, "#loadtest-totals", "80 results, 30 errors (37.50 %)").await;
    wait_count(&c, "#loadtest-throughput[data-points='2']", 1).await;
    wait_count(&c, "#loadtest-errors[data-points='2']", 1).await;
    wait_count(&c, "#loadtest-latency[data-points='6']", 1).await;

    // A new second's results appear without a reload.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    push(20, 200).await;
    wait_count(&c, "#loadtest-throughput[data-points='3']", 1).await;
    wait_contains(&c, "#loadtest-totals", "100 results, 30 errors").await;
    let (_, got) = api.get("/loadtests/soak").await;
    assert_eq!(got["job"]["totals"]["count"], 100);

    click(&c, "#loadtest-delete").await;
    wait_text(&c, "#loadtests-view h1", "Load tests").await;
    wait_count(&c, "#loadtests-table tbody tr", 0).await;
    assert!(displayed(&c, "#loadtests-empty").await);
    assert_eq!(api.get("/loadtests/soak").await.0, 404);
    assert_no_page_errors(&c).await;
}
