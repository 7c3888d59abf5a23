//! Flows (issue 13), end to end with the real binary: dojot's flow API and chapter 9.2's
//! kitchen, fed by `mosquitto_pub`, its outputs read back from history and a live stream;
//! flows survive a restart; a flow that feeds itself is cut off.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::sse::SseReader;
use support::{Api, Server, require_tool};

fn publish(server: &Server, device: &str, secret: &str, payload: &str) {
    let (host, port) = server.mqtt.as_deref().unwrap().rsplit_once(':').unwrap();
    let user = format!("admin:{device}");
    let ok = Command::new("mosquitto_pub")
        .args(["-h", host, "-p", port, "-u", &user, "-P", secret, "-q", "1"])
        .args(["-t", &format!("{user}/attrs"), "-m", payload])
        .status()
        .unwrap();
    assert!(ok.success(), "mosquitto_pub {payload}");
}

#[tokio::test]
async fn the_kitchen_flow_raises_the_alarm_and_survives_a_restart() {
    if !require_tool("mosquitto_pub", "mosquitto-clients") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    let api = Api::admin(&server).await;
    let thermometers = api.thermometer_template().await;
    let alarm_template = api.template("Alarm", &[("message", "string"), ("severity", "integer")]).await;
    let (kitchen1, secret1) = api.device_with_secret(thermometers, "kitchen thermometer").await;
    let (kitchen2, secret2) = api.device_with_secret(thermometers, "oven thermometer").await;
    let (alarm, _) = api.device_with_secret(alarm_template, "kitchen alarm").await;

    let (status, body) = api
        .post("/flows/v1/flow", json!({"name": "kitchen", "flow": support::kitchen_flow(thermometers, &alarm)}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "ok");
    let flow = &body["flow"];
    let id = flow["id"].as_str().unwrap().to_string();
    assert_eq!((flow["name"].as_str(), flow["enabled"].as_bool()), (Some("kitchen"), Some(true)));
    assert_eq!(flow["flow"], support::kitchen_flow(thermometers, &alarm), "the document is kept as sent");
    assert!(flow["created"].as_i64().unwrap() > 0 && flow["created"] == flow["updated"]);

    let mut live = SseReader::open(&api, &format!("/stream/devices/{alarm}"), None).await;
    publish(&server, &kitchen1, &secret1, r#"{"temperature": 30}"#);
    assert_eq!(api.values(&alarm, "message", 1).await, [json!("kitchen OK")]);
    assert_eq!(api.values(&alarm, "severity", 1).await, [json!(4)]);
    publish(&server, &kitchen2, &secret2, r#"{"temperature": 45}"#);
    assert_eq!(api.values(&alarm, "message", 2).await[0], "kitchen on fire");
    assert_eq!(api.values(&alarm, "severity", 2).await[0], 1);
    let (_, first) = live.reading().await;
    assert_eq!(first["attrs"], json!({"message": "kitchen OK", "severity": 4}), "{first}");
    let (_, second) = live.reading().await;
    assert_eq!(second["attrs"]["message"], "kitchen on fire");

    // The flows outlive the process (dojot #2577: "no flows run" after a restart).
    assert!(server.terminate());
    server = Server::start(dir.path(), &[]);
    let api = Api::admin(&server).await;
    publish(&server, &kitchen1, &secret1, r#"{"temperature": 20}"#);
    assert_eq!(api.values(&alarm, "message", 3).await[0], "kitchen OK");

    // Disabled (dojot could not set enabled to false with PUT), it no longer runs.
    let (status, body) = api.put(&format!("/flows/v1/flow/{id}"), json!({"enabled": false})).await;
    assert_eq!((status, body["flow"]["enabled"].as_bool()), (200, Some(false)), "{body}");
    publish(&server, &kitchen1, &secret1, r#"{"temperature": 50}"#);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(api.values(&alarm, "message", 3).await.len(), 3, "a disabled flow does not run");
    let (status, listed) = api.get("/flows/v1/flow").await;
    assert_eq!(status, 200);
    assert_eq!(listed["flows"].as_array().unwrap().len(), 1, "{listed}");
    let (status, gone) = api.delete(&format!("/flows/v1/flow/{id}")).await;
    assert_eq!((status, gone["message"].as_str()), (200, Some("flow removed")), "{gone}");
    let (status, body) = api.get(&format!("/flows/v1/flow/{id}")).await;
    assert_eq!(status, 404);
    assert_eq!(body, json!({"message": format!("Unknown flow: {id}"), "flow": id, "status": 404}));
}

#[tokio::test]
async fn bad_flows_are_refused_in_dojots_words_and_tenants_are_kept_apart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let api = Api::admin(&server).await;
    let cases = [
        (json!({"flow": []}), "Missing mandatory field: name"),
        (json!({"name": "x"}), "Missing mandatory field: flow"),
        (json!({"name": "x", "flow": [{"id": "a"}]}), "Given flow is invalid"),
        (json!({"name": "x", "flow": [{"id": "a", "type": "mystery", "wires": []}]}), "unknown node type 'mystery'"),
        (
            json!({"name": "x", "flow": [{"id": "a", "type": "event device in", "device_id": "d", "wires": [["b"]]}]}),
            "'b'",
        ),
        (json!({"name": "x", "enabled": "yes", "flow": []}), "enabled"),
    ];
    for (body, message) in cases {
        let (status, answer) = api.post("/flows/v1/flow", body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer["message"].as_str().unwrap().contains(message), "{body}: {answer}");
    }
    let (status, made) = api.post("/flows/v1/flow", json!({"name": "empty", "flow": []})).await;
    assert_eq!(status, 200, "{made}");
    let id = made["flow"]["id"].as_str().unwrap();
    let alice = api.tenant_admin("alice", "acme").await;
    assert_eq!(alice.get(&format!("/flows/v1/flow/{id}")).await.0, 404, "tenant isolation");
    assert_eq!(alice.get("/flows/v1/flow").await.1, json!({"flows": []}));
    assert_eq!(alice.delete("/flows/v1/flow").await.1, json!({"message": "All flows removed"}));
    assert_eq!(api.get(&format!("/flows/v1/flow/{id}")).await.0, 200, "alice removed only her own");
    assert_eq!(Api::new(&server.http).get("/flows/v1/flow").await.0, 401);
}

/// A flow whose output is a reading of the device that runs it: dojot spun forever;
/// Ingot stops after `--flow-max-hops` outputs and counts it.
#[tokio::test]
async fn a_flow_that_feeds_itself_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--flow-max-hops", "3"]);
    let api = Api::admin(&server).await;
    let template = api.thermometer_template().await;
    let (id, secret) = api.device_with_secret(template, "echo").await;
    let flow = json!([
        {"id": "in", "type": "event device in", "device_id": id, "event_publish": true, "wires": [["inc"]]},
        {"id": "inc", "type": "change", "rules": [
            {"t": "set", "p": "out.temperature", "to": "payload.data.attrs.temperature", "tot": "msg"}], "wires": [["out"]]},
        {"id": "out", "type": "multi device out", "device_source": "self", "attrs": "out", "wires": []}
    ]);
    assert_eq!(api.post("/flows/v1/flow", json!({"name": "echo", "flow": flow})).await.0, 200);
    assert_eq!(api.send_reading("admin", &id, &secret, json!({"temperature": 7})).await.0, 204);
    // The reading and three echoes, then the loop guard.
    assert_eq!(api.values(&id, "temperature", 4).await.len(), 4);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(api.values(&id, "temperature", 4).await.len(), 4, "no more echoes");
    let metrics = api.request(reqwest::Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l == "ingot_flow_loops_total 1"), "{metrics}");
}

/// The debugger: with a flow's `trace` switch on, each node's last messages in and out and
/// its errors, from `…/trace` and live from `…/trace/stream`.
#[tokio::test]
async fn the_debugger_shows_what_each_node_did() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let api = Api::admin(&server).await;
    let template = api.thermometer_template().await;
    let (id, secret) = api.device_with_secret(template, "traced").await;
    let (sink, _) = api.device_with_secret(template, "sink").await;
    let flow = json!([
        {"id": "in", "type": "event device in", "device_id": id, "event_publish": true, "wires": [["sw"]]},
        {"id": "sw", "type": "switch", "property": "payload.data.attrs.temperature",
         "rules": [{"t": "gt", "v": "10", "vt": "num"}], "wires": [["copy"]]},
        {"id": "copy", "type": "change", "rules": [
            {"t": "set", "p": "out.temperature", "to": "payload.data.attrs.missing", "tot": "msg"}], "wires": [["out"]]},
        {"id": "out", "type": "multi device out", "device_source": "configured", "devices_source_configured": [sink],
         "attrs": "out", "wires": []}
    ]);
    let (status, made) = api.post("/flows/v1/flow", json!({"name": "traced", "flow": flow, "trace": true})).await;
    assert_eq!((status, made["flow"]["trace"].as_bool()), (200, Some(true)), "{made}");
    let flow_id = made["flow"]["id"].as_str().unwrap().to_string();
    let mut live = SseReader::open(&api, &format!("/flows/v1/flow/{flow_id}/trace/stream"), None).await;

    assert_eq!(api.send_reading("admin", &id, &secret, json!({"temperature": 5})).await.0, 204);
    assert_eq!(api.send_reading("admin", &id, &secret, json!({"temperature": 25})).await.0, 204);
    let first = live.next().await;
    assert_eq!(first.event.as_deref(), Some("trace"), "{first:?}");
    let entry: Value = serde_json::from_str(&first.data).unwrap();
    assert_eq!((entry["node"].as_str(), entry["kind"].as_str()), (Some("in"), Some("in")), "{entry}");

    let deadline = Instant::now() + Duration::from_secs(10);
    let trace = loop {
        let (status, trace) = api.get(&format!("/flows/v1/flow/{flow_id}/trace")).await;
        assert_eq!(status, 200, "{trace}");
        if trace["nodes"]["copy"].as_array().is_some_and(|e| e.len() == 2) {
            break trace;
        }
        assert!(Instant::now() < deadline, "the trace of both readings: {trace}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(trace["flow"], flow_id);
    let kinds = |node: &str| -> Vec<String> {
        trace["nodes"][node].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(kinds("sw"), ["in", "in", "out"], "5 stopped at the switch, 25 went on");
    assert_eq!(kinds("copy"), ["in", "error"], "{trace}");
    let error = trace["nodes"]["copy"][1]["error"].as_str().unwrap();
    assert!(error.contains("payload.data.attrs.missing"), "{error}");
    assert_eq!(trace["nodes"]["sw"][0]["message"]["payload"]["data"]["attrs"]["temperature"], 5);

    // Off: nothing is kept, and the live feed says why it is refused.
    assert_eq!(api.put(&format!("/flows/v1/flow/{flow_id}"), json!({"trace": false})).await.0, 200);
    let (_, trace) = api.get(&format!("/flows/v1/flow/{flow_id}/trace")).await;
    assert_eq!((trace["trace"].as_bool(), &trace["nodes"]), (Some(false), &json!({})));
    let (status, refused) = api.get(&format!("/flows/v1/flow/{flow_id}/trace/stream")).await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("trace"), "{refused}");
}

/// A token server as chapter 11.2.1 has one: POST /token with a user and password answers
/// `{"token"}`; it remembers what it was sent (content type and body).
async fn token_server() -> (String, std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>) {
    use axum::routing::post;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/token",
        post(move |headers: axum::http::HeaderMap, body: String| {
            let log = log.clone();
            async move {
                let kind = headers.get("content-type").map_or("", |v| v.to_str().unwrap_or("")).to_string();
                let sent: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                log.lock().unwrap().push((kind, sent.clone()));
                axum::Json(json!({"token": format!("token-of-{}", sent["username"].as_str().unwrap_or("?"))}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/token"), seen)
}

/// Chapter 11.2.1: a device's username and password go to an HTTP server through the http
/// node; the token it answers becomes a reading of a virtual device. The server is on
/// loopback, which flows may reach only when allowed.
#[tokio::test]
async fn the_http_node_example_gets_a_token_and_private_addresses_need_allowing() {
    let (url, seen) = token_server().await;
    for allowed in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let allow: &[&str] = if allowed { &["--flow-http-allow", "127.0.0.1"] } else { &[] };
        let server = Server::start(dir.path(), allow);
        let api = Api::admin(&server).await;
        let template =
            api.template("Login", &[("username", "string"), ("password", "string"), ("token", "string")]).await;
        let (device, secret) = api.device_with_secret(template, "login").await;
        let (virt, _) = api.device_with_secret(template, "token holder").await;
        let flow = json!([
            {"id": "in", "type": "event device in", "device_id": device, "event_publish": true, "wires": [["tpl"]]},
            {"id": "tpl", "type": "template", "field": "req", "fieldType": "msg", "syntax": "mustache", "output": "str",
             "template": "{\"payload\": {\"username\": \"{{payload.data.attrs.username}}\", \"password\": \"{{payload.data.attrs.password}}\"}}",
             "wires": [["http"]]},
            {"id": "http", "type": "http", "method": "POST", "url": url, "body": "req", "response": "res", "ret": "obj",
             "wires": [["chg"]]},
            {"id": "chg", "type": "change", "rules": [{"t": "set", "p": "out.token", "to": "res.payload.token", "tot": "msg"}],
             "wires": [["out"]]},
            {"id": "out", "type": "multi device out", "device_source": "configured", "devices_source_configured": [virt],
             "attrs": "out", "wires": []}
        ]);
        let (status, made) = api.post("/flows/v1/flow", json!({"name": "login", "flow": flow, "trace": true})).await;
        assert_eq!(status, 200, "{made}");
        let flow_id = made["flow"]["id"].as_str().unwrap().to_string();
        let reading = json!({"username": format!("ana{allowed}"), "password": "s3cret"});
        assert_eq!(api.send_reading("admin", &device, &secret, reading).await.0, 204);
        if allowed {
            assert_eq!(api.values(&virt, "token", 1).await, [json!("token-of-anatrue")]);
            let sent = seen.lock().unwrap().clone();
            assert_eq!(sent, [("application/json".to_string(), json!({"username": "anatrue", "password": "s3cret"}))]);
        } else {
            let deadline = Instant::now() + Duration::from_secs(10);
            let error = loop {
                let (_, trace) = api.get(&format!("/flows/v1/flow/{flow_id}/trace")).await;
                if let Some(e) =
                    trace["nodes"]["http"].as_array().and_then(|e| e.iter().find_map(|e| e["error"].as_str()))
                {
                    break e.to_string();
                }
                assert!(Instant::now() < deadline, "the http node's refusal in the trace: {trace}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            assert!(error.contains("not a public address") && error.contains("--flow-http-allow"), "{error}");
            assert_eq!(seen.lock().unwrap().len(), 1, "nothing more reached the server");
        }
    }
}

/// Chapter 11.2.2: a car's position, inside or outside an area (with or without a space
/// after the comma, dojot #2314), sets the status of a virtual device.
#[tokio::test]
async fn the_geofence_example_tells_inside_from_outside() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let api = Api::admin(&server).await;
    let template = api.template("Car", &[("position", "geo:point"), ("status", "string")]).await;
    let (car, secret) = api.device_with_secret(template, "car").await;
    let (virt, _) = api.device_with_secret(template, "car status").await;
    let area = json!([{"latitude": -22.80, "longitude": -47.30}, {"latitude": -22.80, "longitude": -47.24},
                      {"latitude": -22.85, "longitude": -47.24}, {"latitude": -22.85, "longitude": -47.30}]);
    let flow = json!([
        {"id": "in", "type": "event device in", "device_id": car, "event_publish": true, "wires": [["g_in", "g_out"]]},
        {"id": "g_in", "type": "geofence", "name": "in area", "mode": "polyline", "filter": "inside",
         "geopoint": "payload.data.attrs.position", "points": area, "wires": [["t_in"]]},
        {"id": "g_out", "type": "geofence", "name": "out of the area", "mode": "polyline", "filter": "outside",
         "geopoint": "payload.data.attrs.position", "points": area, "wires": [["t_out"]]},
        {"id": "t_in", "type": "template", "field": "out.status", "syntax": "plain", "template": "Car is inside the marked area", "wires": [["out"]]},
        {"id": "t_out", "type": "template", "field": "out.status", "syntax": "plain", "template": "Car is out of the marked area", "wires": [["out"]]},
        {"id": "out", "type": "multi device out", "device_source": "configured", "devices_source_configured": [virt], "attrs": "out", "wires": []}
    ]);
    assert_eq!(api.post("/flows/v1/flow", json!({"name": "car", "flow": flow})).await.0, 200);
    let mut expected = Vec::new();
    for (position, status) in [
        ("-22.820156, -47.2682535", "Car is inside the marked area"),
        ("0,0", "Car is out of the marked area"),
        ("-22.820156,-47.2682535", "Car is inside the marked area"),
    ] {
        assert_eq!(api.send_reading("admin", &car, &secret, json!({"position": position})).await.0, 204);
        expected.insert(0, json!(status));
        assert_eq!(api.values(&virt, "status", expected.len()).await, expected, "{position}");
    }
}

/// Chapter 11.2.3 without its notification (that comes with notifications): a weather
/// station's rain summed over the last hour; past 100 mm the sum goes to an alert device.
#[tokio::test]
async fn cumulative_sum_and_switch_raise_a_rain_alert() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let api = Api::admin(&server).await;
    let template = api.template("Weather", &[("rain", "float"), ("rain60Min", "float")]).await;
    let (station, secret) = api.device_with_secret(template, "station").await;
    let (alert, _) = api.device_with_secret(template, "alert").await;
    let flow = json!([
        {"id": "in", "type": "event device in", "device_id": station, "event_publish": true, "wires": [["cs"]]},
        {"id": "cs", "type": "cumulative sum", "timePeriod": 60, "targetAttribute": "payload.data.attrs.rain",
         "timestamp": "payload.metadata.timestamp", "output": "payload.data.attrs.rain60Min", "wires": [["sw"]]},
        {"id": "sw", "type": "switch", "property": "payload.data.attrs.rain60Min", "propertyType": "msg",
         "rules": [{"t": "gt", "v": "100", "vt": "num"}], "checkall": "true", "outputs": 1, "wires": [["pick"]]},
        {"id": "pick", "type": "change", "rules": [
            {"t": "set", "p": "out.rain60Min", "to": "payload.data.attrs.rain60Min", "tot": "msg"}], "wires": [["out"]]},
        {"id": "out", "type": "multi device out", "device_source": "configured", "devices_source_configured": [alert],
         "attrs": "out", "wires": []}
    ]);
    assert_eq!(api.post("/flows/v1/flow", json!({"name": "rain", "flow": flow})).await.0, 200);
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let start = now_ms - 2 * 3_600_000;
    for i in 0..22 {
        let reading = json!({"rain": 5, "timestamp": start + i * 60_000});
        assert_eq!(api.send_reading("admin", &station, &secret, reading).await.0, 204);
    }
    // 5, 10, … 100 stay quiet; the 21st and 22nd readings make 105 and 110.
    assert_eq!(api.values(&alert, "rain60Min", 2).await, [json!(110), json!(105)]);
    // An hour after the last, the window holds only the newest reading.
    let late = json!({"rain": 5, "timestamp": start + 22 * 60_000 + 3_600_000});
    assert_eq!(api.send_reading("admin", &station, &secret, late).await.0, 204);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = api.values(&alert, "rain60Min", 2).await;
    assert_eq!(after.len(), 2, "5 mm is no alert: {after:?}");
}

/// The value of metric `name` (a line `name value`) in the node's `/metrics`.
async fn metric(api: &Api, name: &str) -> Option<f64> {
    let text = api.request(reqwest::Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// An HTTP server slower than devices: each POST takes 100 ms; it remembers the `n` of
/// every body, in the order they came.
async fn slow_server() -> (String, std::sync::Arc<std::sync::Mutex<Vec<i64>>>) {
    use axum::routing::post;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/slow",
        post(move |body: String| {
            let log = log.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let sent: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                log.lock().unwrap().push(sent["n"].as_i64().unwrap_or(-1));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/slow"), seen)
}

/// On the in-process bus, a flow slower than its device falls behind without slowing
/// it or losing a reading: readings are acknowledged as fast as they come, the flow's
/// lag shows in the metrics, and after a SIGKILL the restarted node runs the flow on
/// every reading it had not reached, in the device's order (a page cut short by the
/// kill runs again: at least once).
#[tokio::test]
async fn a_slow_flow_falls_behind_keeps_every_reading_and_catches_up_after_a_crash() {
    const N: i64 = 40;
    let (url, seen) = slow_server().await;
    let dir = tempfile::tempdir().unwrap();
    let allow = ["--flow-http-allow", "127.0.0.1"];
    let mut server = Server::start(dir.path(), &allow);
    let api = Api::admin(&server).await;
    let template = api.template("Counter", &[("n", "integer")]).await;
    let (device, secret) = api.device_with_secret(template, "counter").await;
    let flow = json!([
        {"id": "in", "type": "event device in", "device_id": device, "event_publish": true, "wires": [["tpl"]]},
        {"id": "tpl", "type": "template", "field": "req", "fieldType": "msg", "syntax": "mustache", "output": "str",
         "template": "{\"payload\": {\"n\": {{payload.data.attrs.n}}}}", "wires": [["http"]]},
        {"id": "http", "type": "http", "method": "POST", "url": url, "body": "req", "response": "res", "ret": "txt",
         "wires": [[]]}
    ]);
    let (status, made) = api.post("/flows/v1/flow", json!({"name": "slow", "flow": flow})).await;
    assert_eq!(status, 200, "{made}");

    for n in 0..N {
        assert_eq!(api.send_reading("admin", &device, &secret, json!({"n": n})).await.0, 204);
    }
    let behind = metric(&api, "ingot_flow_backlog").await.unwrap_or(0.0);
    assert!(behind > 0.0, "the flow is behind the device, and the metric says so");
    assert!(metric(&api, "ingot_flow_lag_seconds").await.is_some());
    assert_eq!(api.values(&device, "n", N as usize).await.len(), N as usize, "every reading was stored at once");

    server.kill9();
    let before = seen.lock().unwrap().clone();
    assert!((before.len() as i64) < N, "the kill came before the flow caught up: {before:?}");
    let server = Server::start(dir.path(), &allow);
    let api = Api::admin(&server).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().len() < before.len() + 1 || !(0..N).all(|n| seen.lock().unwrap().contains(&n)) {
        assert!(Instant::now() < deadline, "every reading reaches the flow: {:?}", seen.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = seen.lock().unwrap()[before.len()..].to_vec();
    assert!(before.windows(2).all(|w| w[0] < w[1]), "in order before the kill: {before:?}");
    assert!(after.windows(2).all(|w| w[0] < w[1]), "in order after the restart: {after:?}");
    assert_eq!(after.last(), Some(&(N - 1)));
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&api, "ingot_flow_backlog").await != Some(0.0) {
        assert!(Instant::now() < deadline, "the backlog empties");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
