//! Headless Chromium for the end-to-end tests, driven through chromedriver
//! (fantoccini): start a browser with its own profile, find, click, fill and wait for
//! what the page shows, read the browser's log (CSP violations are among its entries).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

pub struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Headless Chromium with its profile in `profile`; downloads go to `profile/downloads`
/// ([`downloads`]), and the browser's console log is kept ([`browser_log`]).
pub async fn browser(profile: &Path) -> (Driver, Client) {
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
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": args,
            "prefs": {
                "download.default_directory": downloads(profile),
                "download.prompt_for_download": false,
                // The certificate button saves three files; a user allows that once.
                "profile.default_content_setting_values.automatic_downloads": 1,
            },
        },
        "goog:loggingPrefs": {"browser": "ALL"},
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

pub fn downloads(profile: &Path) -> PathBuf {
    profile.join("downloads")
}

/// chromedriver's browser log since the last call (`POST /session/{id}/se/log`): each
/// entry `{"level", "message", "source", "timestamp"}`; CSP violations are among them.
#[derive(Debug)]
pub struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(json!({"type": "browser"}).to_string()))
    }
}

pub async fn browser_log(c: &Client) -> Vec<Value> {
    match c.issue_cmd(BrowserLog).await.expect("chromedriver's browser log") {
        Value::Array(entries) => entries,
        other => panic!("the browser log is not a list: {other}"),
    }
}

/// Waits until the element's text equals `want` (10 s).
pub async fn wait_text(c: &Client, css: &str, want: &str) {
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

pub async fn displayed(c: &Client, css: &str) -> bool {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.is_displayed().await.unwrap_or(false),
        Err(_) => false,
    }
}

/// Finds `css`, waiting up to 10 s for it to appear.
pub async fn find(c: &Client, css: &str) -> fantoccini::elements::Element {
    for _ in 0..100 {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css} did not appear");
}

pub async fn click(c: &Client, css: &str) {
    find(c, css).await.click().await.unwrap_or_else(|e| panic!("click {css}: {e}"));
}

pub async fn fill(c: &Client, css: &str, text: &str) {
    let e = find(c, css).await;
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

/// Selects `value` in the `<select>` at `css`, once the page has put that option in it
/// (lists are filled from the API after the page shows).
pub async fn choose(c: &Client, css: &str, value: &str) {
    find(c, &format!("{css} option[value='{value}']")).await;
    find(c, css).await.select_by_value(value).await.unwrap_or_else(|e| panic!("{css} = {value}: {e}"));
}

/// Nothing the page did broke its Content-Security-Policy or threw. (The log also has
/// network errors: the 401 of the first look for a session, before sign-in, and the
/// refusals a test provokes.) A line the test writes to the log first shows the log is
/// really read.
pub async fn assert_no_page_errors(c: &Client) {
    c.execute("console.warn('ingot-test: reading the log');", vec![]).await.unwrap();
    let log = browser_log(c).await;
    let marked = log.iter().any(|e| e["message"].as_str().is_some_and(|m| m.contains("ingot-test: reading the log")));
    assert!(marked, "the browser log is read: {log:?}");
    let bad: Vec<&Value> = log
        .iter()
        .filter(|e| {
            e["message"].as_str().is_some_and(|m| m.contains("Content Security Policy") || m.contains("Uncaught"))
        })
        .collect();
    assert!(bad.is_empty(), "CSP violations or uncaught errors: {bad:#?}");
}

/// How many elements match `css`.
pub async fn count(c: &Client, css: &str) -> usize {
    c.find_all(Locator::Css(css)).await.map(|v| v.len()).unwrap_or(0)
}

/// Waits (10 s) until `css` matches `want` elements.
pub async fn wait_count(c: &Client, css: &str, want: usize) {
    let mut last = 0;
    for _ in 0..100 {
        last = count(c, css).await;
        if last == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shot = c.screenshot().await.unwrap_or_default();
    let _ = std::fs::write(std::env::temp_dir().join("ingot-console-failure.png"), shot);
    panic!("{css}: {last} elements, wanted {want}");
}

/// Waits (10 s) until the text of `css` contains `part`; returns the text.
pub async fn wait_contains(c: &Client, css: &str, part: &str) -> String {
    let mut last = String::new();
    for _ in 0..100 {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            last = e.text().await.unwrap_or_default();
            if last.contains(part) {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css}: wanted text with {part:?}, last saw {last:?}");
}
