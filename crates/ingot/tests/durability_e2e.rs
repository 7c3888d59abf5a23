//! The durability contract: an acknowledged reading survives SIGKILL.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use support::{Api, Server};

/// HTTP devices publish concurrently; the server is SIGKILLed mid-stream; after a
/// restart every reading that got a 2xx must be in history.
#[tokio::test]
async fn http_acknowledged_readings_survive_sigkill() {
    http_sigkill(&[]).await;
}

/// The same with the NATS bus: a 2xx means JetStream stored the reading.
#[tokio::test]
async fn http_acknowledged_readings_survive_sigkill_on_nats() {
    let Some(nats) = support::nats_args() else { return };
    http_sigkill(&nats.iter().map(String::as_str).collect::<Vec<_>>()).await;
}

async fn http_sigkill(bus: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    // Full sync (the default) is what a user runs.
    let args: Vec<&str> = ["--sync-full", "true"].into_iter().chain(bus.iter().copied()).collect();
    let server = Server::start(dir.path(), &args);
    let api = Api::admin(&server).await;
    let template = api.thermometer_template().await;
    let mut devices = Vec::new();
    for i in 0..8 {
        devices.push(api.device_with_secret(template, &format!("d{i}")).await);
    }
    let acked: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let mut tasks = Vec::new();
    for (id, secret) in devices.clone() {
        let (api, acked) = (api.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            for seq in 0..100_000i64 {
                let rb = api
                    .http
                    .post(format!("{}/http-agent/v1/incoming-messages", api.base))
                    .basic_auth(format!("admin:{id}"), Some(&secret))
                    .json(&json!({"data": {"temperature": seq}}))
                    .timeout(Duration::from_secs(5));
                match rb.send().await {
                    Ok(r) if r.status().as_u16() == 204 => acked.lock().unwrap().push((id.clone(), seq)),
                    _ => return, // the server is gone
                }
            }
        }));
    }
    support::assert_acked_survive_sigkill(server, bus, &devices, &acked, tasks, "acknowledged").await;
}
