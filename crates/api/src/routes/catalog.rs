//! `/template` and `/device`: dojot's device-manager.

use axum::Json;
use axum::extract::{Path, State};
use devices::{CreatedDevices, ListQuery, Page};
use model::catalog::{AttrFormat, CatalogError};
use serde_json::{Map, Value, json};

use crate::extract::{Caller, JsonBody, QueryPairs, StrictJson};
use crate::{ApiError, AppState};

type JsonResult = Result<Json<Value>, ApiError>;

fn list_query(q: &QueryPairs) -> Result<ListQuery, ApiError> {
    Ok(ListQuery::from_pairs(&q.0, &[]).map_err(devices::DeviceError::from)?)
}

fn attr_format(q: &QueryPairs) -> Result<AttrFormat, ApiError> {
    match q.get("attr_format") {
        None => Ok(AttrFormat::Both),
        Some(f) => {
            AttrFormat::parse(f).ok_or_else(|| ApiError::BadRequest("attr_format must be both, single or split".into()))
        }
    }
}

fn bool_param(q: &QueryPairs, name: &str) -> Result<bool, ApiError> {
    match q.get(name).map(str::to_ascii_lowercase).as_deref() {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(_) => Err(ApiError::BadRequest(format!("{name} must be true or false"))),
    }
}

fn page_json(key: &str, page: Page) -> Value {
    json!({key: page.items, "pagination": page.pagination})
}

pub async fn create_template(State(s): State<AppState>, Caller(c): Caller, JsonBody(body): StrictJson) -> JsonResult {
    let t = s.devices.create_template(&c.service, &body).await?;
    Ok(Json(json!({"result": "ok", "template": t})))
}

pub async fn list_templates(State(s): State<AppState>, Caller(c): Caller, q: QueryPairs) -> JsonResult {
    let page = s.devices.list_templates(&c.service, &list_query(&q)?, attr_format(&q)?).await;
    Ok(Json(page_json("templates", page)))
}

pub async fn get_template(
    State(s): State<AppState>,
    Caller(c): Caller,
    Path(id): Path<String>,
    q: QueryPairs,
) -> JsonResult {
    Ok(Json(s.devices.get_template(&c.service, &id, attr_format(&q)?).await?))
}

pub async fn update_template(
    State(s): State<AppState>,
    Caller(c): Caller,
    Path(id): Path<String>,
    JsonBody(body): StrictJson,
) -> JsonResult {
    let t = s.devices.update_template(&c.service, &id, &body).await?;
    Ok(Json(json!({"result": "ok", "updated": t})))
}

pub async fn delete_template(State(s): State<AppState>, Caller(c): Caller, Path(id): Path<String>) -> JsonResult {
    let t = s.devices.delete_template(&c.service, &id).await?;
    Ok(Json(json!({"result": "ok", "removed": t})))
}

pub async fn delete_templates(State(s): State<AppState>, Caller(c): Caller) -> JsonResult {
    let removed = s.devices.delete_all_templates(&c.service).await?;
    Ok(Json(json!({"result": "ok", "removed": removed})))
}

/// `POST /device?count=&verbose=`.
pub async fn create_devices(
    State(s): State<AppState>,
    Caller(c): Caller,
    q: QueryPairs,
    JsonBody(body): StrictJson,
) -> JsonResult {
    let count = match q.get("count") {
        None => 1,
        Some(n) => n.trim().parse::<usize>().map_err(|_| {
            ApiError::from(devices::DeviceError::from(CatalogError::BadRequest(
                "If provided, count must be integer".into(),
            )))
        })?,
    };
    let verbose = bool_param(&q, "verbose")?;
    Ok(Json(match s.devices.create_devices(&c.service, &body, count, verbose).await? {
        CreatedDevices::Brief(devices) => json!({"message": "devices created", "devices": devices}),
        CreatedDevices::Verbose(device) => json!({"message": "device created", "devices": [device]}),
    }))
}

/// `GET /device`; `idsOnly=true` answers a bare array of ids.
pub async fn list_devices(State(s): State<AppState>, Caller(c): Caller, q: QueryPairs) -> JsonResult {
    let ids_only = bool_param(&q, "idsOnly")?;
    let page = s.devices.list_devices(&c.service, &list_query(&q)?, ids_only).await?;
    Ok(Json(if ids_only { Value::Array(page.items) } else { page_json("devices", page) }))
}

pub async fn devices_of_template(
    State(s): State<AppState>,
    Caller(c): Caller,
    Path(tid): Path<String>,
    q: QueryPairs,
) -> JsonResult {
    let page = s.devices.devices_of_template(&c.service, &tid, &list_query(&q)?).await?;
    Ok(Json(page_json("devices", page)))
}

pub async fn get_device(State(s): State<AppState>, Caller(c): Caller, Path(id): Path<String>) -> JsonResult {
    Ok(Json(s.devices.get_device(&c.service, &id).await?))
}

pub async fn update_device(
    State(s): State<AppState>,
    Caller(c): Caller,
    Path(id): Path<String>,
    JsonBody(body): StrictJson,
) -> JsonResult {
    let d = s.devices.update_device(&c.service, &id, &body).await?;
    Ok(Json(json!({"message": "device updated", "device": d})))
}

pub async fn delete_device(State(s): State<AppState>, Caller(c): Caller, Path(id): Path<String>) -> JsonResult {
    let d = s.devices.delete_device(&c.service, &id).await?;
    Ok(Json(json!({"result": "ok", "removed_device": d})))
}

pub async fn delete_devices(State(s): State<AppState>, Caller(c): Caller) -> JsonResult {
    let removed = s.devices.delete_all_devices(&c.service).await?;
    Ok(Json(json!({"result": "ok", "removed_devices": removed})))
}

pub async fn add_template(
    State(s): State<AppState>,
    Caller(c): Caller,
    Path((id, tid)): Path<(String, String)>,
) -> JsonResult {
    let d = s.devices.set_device_template(&c.service, &id, &tid, true).await?;
    Ok(Json(json!({"message": "device updated", "device": d})))
}

pub async fn remove_template(
    State(s): State<AppState>,
    Caller(c): Caller,
    Path((id, tid)): Path<(String, String)>,
) -> JsonResult {
    let d = s.devices.set_device_template(&c.service, &id, &tid, false).await?;
    Ok(Json(json!({"message": "device updated", "device": d})))
}

/// `PUT /device/{id}/actuate` `{"attrs":{…}}` → `{" status": …}` (dojot's leading space).
pub async fn actuate(
    State(s): State<AppState>,
    Caller(c): Caller,
    Path(id): Path<String>,
    JsonBody(body): StrictJson,
) -> JsonResult {
    let attrs: Map<String, Value> = match body.get("attrs") {
        Some(Value::Object(a)) => a.clone(),
        _ => {
            let mut errors = std::collections::BTreeMap::new();
            errors.insert("attrs".to_string(), vec!["Missing data for required field.".to_string()]);
            return Err(devices::DeviceError::from(CatalogError::Schema(errors)).into());
        }
    };
    s.devices.actuate(&c.service, &id, attrs).await?;
    Ok(Json(json!({" status": "configuration sent to device"})))
}

/// `POST /device/{id}/secret` → `{"secret"}`: shown once, stored hashed.
pub async fn new_secret(State(s): State<AppState>, Caller(c): Caller, Path(id): Path<String>) -> JsonResult {
    let secret = s.devices.new_secret(&c.service, &id).await?;
    Ok(Json(json!({"secret": secret})))
}
