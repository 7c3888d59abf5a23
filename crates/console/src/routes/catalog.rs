//! Templates and devices for the console's pages: the devices service's own calls (the
//! same rules and answers as `/template` and `/device`), with the session's tenant.

use axum::extract::{Path, State};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use devices::{CreatedDevices, ListQuery, Page};
use model::catalog::AttrFormat;
use serde_json::{Value, json};

use super::{Body, ConsoleState, Csrf, Pairs, SignedIn};
use crate::ConsoleError;

type JsonResult = Result<Json<Value>, ConsoleError>;

pub(super) fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/console/api/templates", get(list_templates).post(create_template))
        .route("/console/api/templates/{id}", put(update_template).delete(delete_template))
        .route("/console/api/devices", get(list_devices).post(create_device))
        .route("/console/api/devices/{id}", get(device).delete(delete_device))
        .route("/console/api/devices/{id}/secret", post(new_secret))
        .route("/console/api/devices/{id}/certificate", post(new_certificate))
        .route("/console/api/devices/{id}/actuate", put(actuate))
}

/// dojot's listing parameters: `label` (a part of it), `page_num`, `page_size`, `sortBy`.
fn list_query(pairs: &Pairs) -> Result<ListQuery, ConsoleError> {
    Ok(ListQuery::from_pairs(&pairs.0, &[]).map_err(devices::DeviceError::from)?)
}

fn page_json(key: &str, page: Page) -> Json<Value> {
    Json(json!({key: page.items, "pagination": page.pagination}))
}

async fn list_templates(State(s): State<ConsoleState>, me: SignedIn, q: Pairs) -> JsonResult {
    let page = s.app.devices.list_templates(&me.session.tenant, &list_query(&q)?, AttrFormat::Single).await;
    Ok(page_json("templates", page))
}

async fn create_template(State(s): State<ConsoleState>, Csrf(me): Csrf, Body(body): Body<Value>) -> JsonResult {
    Ok(Json(s.app.devices.create_template(&me.session.tenant, &body).await?))
}

async fn update_template(
    State(s): State<ConsoleState>,
    Csrf(me): Csrf,
    Path(id): Path<String>,
    Body(body): Body<Value>,
) -> JsonResult {
    Ok(Json(s.app.devices.update_template(&me.session.tenant, &id, &body).await?))
}

async fn delete_template(State(s): State<ConsoleState>, Csrf(me): Csrf, Path(id): Path<String>) -> JsonResult {
    Ok(Json(s.app.devices.delete_template(&me.session.tenant, &id).await?))
}

async fn list_devices(State(s): State<ConsoleState>, me: SignedIn, q: Pairs) -> JsonResult {
    let page = s.app.devices.list_devices(&me.session.tenant, &list_query(&q)?, false).await?;
    Ok(page_json("devices", page))
}

/// One device from `{"label", "templates": [ids]}`: `{"devices": [{"id", "label"}]}`.
async fn create_device(State(s): State<ConsoleState>, Csrf(me): Csrf, Body(body): Body<Value>) -> JsonResult {
    let devices = match s.app.devices.create_devices(&me.session.tenant, &body, 1, false).await? {
        CreatedDevices::Brief(devices) => devices,
        CreatedDevices::Verbose(device) => vec![device],
    };
    Ok(Json(json!({"devices": devices})))
}

/// The device as dojot shows it: its attributes by template, static values resolved.
async fn device(State(s): State<ConsoleState>, me: SignedIn, Path(id): Path<String>) -> JsonResult {
    Ok(Json(s.app.devices.get_device(&me.session.tenant, &id).await?))
}

async fn delete_device(State(s): State<ConsoleState>, Csrf(me): Csrf, Path(id): Path<String>) -> JsonResult {
    Ok(Json(s.app.devices.delete_device(&me.session.tenant, &id).await?))
}

/// A new device secret, `{"secret"}`: shown once (only its hash is kept); the old one
/// stops working at once.
async fn new_secret(State(s): State<ConsoleState>, Csrf(me): Csrf, Path(id): Path<String>) -> JsonResult {
    let secret = s.app.devices.new_secret(&me.session.tenant, &id).await?;
    Ok(Json(json!({"secret": secret})))
}

/// A certificate for MQTT over mutual TLS with a key made on the server (no CSR tooling
/// in the browser): `{"fingerprint", "certificate", "privateKey", "ca"}`, the key shown
/// this once and never stored. (`POST /x509/v1/certificates` takes a CSR from a key that
/// never leaves its owner's machine; `ingot cert request` makes one.)
async fn new_certificate(State(s): State<ConsoleState>, Csrf(me): Csrf, Path(id): Path<String>) -> JsonResult {
    let tenant = &me.session.tenant;
    s.app.devices.get_device(tenant, &id).await?;
    let (issued, key) = s.app.certificates.issue_with_new_key(tenant, &id).await?;
    let (_, ca) = s.app.certificates.ca()?;
    Ok(Json(json!({"fingerprint": issued.fingerprint, "certificate": issued.pem, "privateKey": key, "ca": ca})))
}

/// `{"attrs": {"label": value, …}}` to the device's actuator attributes, as
/// `PUT /device/{id}/actuate`.
async fn actuate(
    State(s): State<ConsoleState>,
    Csrf(me): Csrf,
    Path(id): Path<String>,
    Body(body): Body<Value>,
) -> JsonResult {
    let Some(Value::Object(attrs)) = body.get("attrs") else {
        return Err(ConsoleError::BadRequest("the body must be {\"attrs\": {\"label\": value, …}}".into()));
    };
    s.app.devices.actuate(&me.session.tenant, &id, attrs.clone()).await?;
    Ok(Json(json!({"sent": attrs})))
}
