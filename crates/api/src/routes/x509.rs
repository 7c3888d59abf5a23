//! dojot's x509-identity-mgmt (`/x509/v1`): the CA, device certificates from CSRs (or
//! from a tenant's own CA), their owners, revocation and the CRL, and the tenant's own
//! trusted CAs. The tenant is the caller's (JWT `service`); another tenant's certificate
//! or CA is "not found".

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pki::certificates::{CertificateFilter, CertificateRecord, Owner};
use pki::trusted::TrustedCaRecord;
use serde_json::{Map, Value, json};

use crate::extract::{Caller, JsonBody, QueryPairs};
use crate::{ApiError, AppState};

/// dojot's default and largest page sizes.
const DEFAULT_LIMIT: u64 = 25;
const MAX_LIMIT: u64 = 250;
/// Largest `page` (and `limit` asked for): bounds the offset the store computes.
const MAX_PAGE: u64 = 1_000_000;

/// `GET /x509/v1/ca`.
pub async fn ca(State(s): State<AppState>, Caller(_): Caller) -> Result<Json<Value>, ApiError> {
    let (fingerprint, pem) = s.certificates.ca()?;
    Ok(Json(json!({"certificateFingerprint": fingerprint, "caPem": pem})))
}

/// `GET /x509/v1/ca/crl`.
pub async fn crl(State(s): State<AppState>, Caller(_): Caller) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"crl": s.certificates.crl().await?})))
}

/// `POST /x509/v1/certificates {"csr", "belongsTo"?}` → 201 with the certificate, or
/// `{"certificatePem", "belongsTo"?}` (one a tenant's trusted CA issued) → 201 with its
/// fingerprint: it is registered.
pub async fn issue(
    State(s): State<AppState>,
    Caller(c): Caller,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let owner = body.get("belongsTo").map(owner).transpose()?;
    let text = |key: &str| body.get(key).and_then(Value::as_str);
    let body = match (text("csr"), text("certificatePem")) {
        (Some(csr), None) => {
            let issued = s.certificates.issue(&c.service, csr, owner).await?;
            json!({"certificateFingerprint": issued.fingerprint, "certificatePem": issued.pem})
        }
        (None, Some(pem)) => {
            json!({"certificateFingerprint": s.certificates.register_external(&c.service, pem, owner).await?})
        }
        _ => {
            return Err(ApiError::BadRequest(
                "the body must be {\"csr\": \"<PEM>\"} or {\"certificatePem\": \"<PEM>\"}, with \"belongsTo\"?: {…}"
                    .into(),
            ));
        }
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `page` (from 1) and `limit` of a listing, as dojot's.
fn paging_params(q: &QueryPairs) -> Result<(u64, u64), ApiError> {
    let number = |key: &str, default: u64| -> Result<u64, ApiError> {
        q.get(key).map_or(Ok(default), |v| {
            v.parse::<u64>()
                .ok()
                .filter(|n| (1..=MAX_PAGE).contains(n))
                .ok_or_else(|| ApiError::BadRequest(format!("{key} must be an integer from 1 to {MAX_PAGE}")))
        })
    };
    Ok((number("page", 1)?, number("limit", DEFAULT_LIMIT)?.min(MAX_LIMIT)))
}

/// A listing's `paging` object.
fn paging(page: u64, limit: u64, total: u64) -> Value {
    let total_pages = total.div_ceil(limit);
    json!({
        "previous": (page > 1).then(|| page - 1),
        "current": page,
        "next": (page < total_pages).then(|| page + 1),
        "totalItems": total,
        "totalPages": total_pages,
        "limitPerPage": limit,
    })
}

/// `GET /x509/v1/certificates?page=&limit=&fields=&fingerprint=&belongsTo.device=`.
pub async fn list(State(s): State<AppState>, Caller(c): Caller, q: QueryPairs) -> Result<Json<Value>, ApiError> {
    let (page, limit) = paging_params(&q)?;
    let filter = CertificateFilter {
        device: q.get("belongsTo.device").map(str::to_string),
        fingerprint: q.get("fingerprint").map(str::to_uppercase),
        revoked: false,
    };
    let found = s.certificates.list(&c.service, &filter, page - 1, limit).await?;
    let fields = fields(&q);
    let certificates: Vec<Value> = found.certificates.iter().map(|r| project(view(r), fields.as_deref())).collect();
    Ok(Json(json!({"paging": paging(page, limit, found.total), "certificates": certificates})))
}

/// `GET /x509/v1/certificates/{fingerprint}?fields=`.
pub async fn get(
    State(s): State<AppState>,
    Caller(c): Caller,
    Path(fp): Path<String>,
    q: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    let cert = s.certificates.get(&c.service, &fp).await?.ok_or_else(|| not_found(&fp))?;
    Ok(Json(project(view(&cert), fields(&q).as_deref())))
}

/// `PATCH /x509/v1/certificates/{fingerprint} {"belongsTo": {"device": id}}` → 204.
pub async fn set_owner(
    State(s): State<AppState>,
    Caller(c): Caller,
    Path(fp): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<StatusCode, ApiError> {
    let owner = body.get("belongsTo").map(owner).transpose()?.ok_or_else(|| {
        ApiError::BadRequest("the body must be {\"belongsTo\": {\"device\": id} or {\"application\": name}}".into())
    })?;
    if let Owner::Device(d) = &owner
        && !s.devices.device_exists(&c.service, d).await
    {
        return Err(ApiError::BadRequest(format!("no device {d} in this tenant")));
    }
    if !s.certificates.set_owner(&c.service, &fp, &owner).await? {
        return Err(not_found(&fp));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /x509/v1/certificates/{fingerprint}` → 204: revoked (on the CRL, refused at
/// every later CONNECT) and its device's live MQTT connections ended.
pub async fn revoke(
    State(s): State<AppState>,
    Caller(c): Caller,
    Path(fp): Path<String>,
) -> Result<StatusCode, ApiError> {
    let cert = s.certificates.revoke(&c.service, &fp).await?.ok_or_else(|| not_found(&fp))?;
    withdrawn(&s, &c.service, &[cert]).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends the live MQTT connections that presented `certs` (on every node).
async fn withdrawn(s: &AppState, tenant: &str, certs: &[CertificateRecord]) {
    for cert in certs {
        if let Some(device) = &cert.device {
            s.devices.certificate_withdrawn(tenant, device, &cert.fingerprint).await;
        }
    }
}

/// `POST /x509/v1/trusted-cas {"caPem", "allowAutoRegistration"?}` → 201 `{"caFingerprint"}`.
pub async fn register_ca(
    State(s): State<AppState>,
    Caller(c): Caller,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let usage =
        || ApiError::BadRequest("the body must be {\"caPem\": \"<PEM>\", \"allowAutoRegistration\"?: bool}".into());
    let obj = body.as_object().ok_or_else(usage)?;
    if obj.keys().any(|k| k != "caPem" && k != "allowAutoRegistration") {
        return Err(usage());
    }
    let pem = obj.get("caPem").and_then(Value::as_str).ok_or_else(usage)?;
    let allow = match obj.get("allowAutoRegistration") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(usage()),
    };
    let fingerprint = s.certificates.register_ca(&c.service, pem, allow).await?;
    Ok((StatusCode::CREATED, Json(json!({"caFingerprint": fingerprint}))).into_response())
}

/// `GET /x509/v1/trusted-cas?page=&limit=&fields=`.
pub async fn list_cas(State(s): State<AppState>, Caller(c): Caller, q: QueryPairs) -> Result<Json<Value>, ApiError> {
    let (page, limit) = paging_params(&q)?;
    let found = s.certificates.trusted_cas(&c.service, page - 1, limit).await?;
    let fields = fields(&q);
    let cas: Vec<Value> = found.cas.iter().map(|r| project(ca_view(r), fields.as_deref())).collect();
    Ok(Json(json!({"paging": paging(page, limit, found.total), "trustedCAs": cas})))
}

/// `GET /x509/v1/trusted-cas/{fingerprint}?fields=`.
pub async fn get_ca(
    State(s): State<AppState>,
    Caller(c): Caller,
    Path(fp): Path<String>,
    q: QueryPairs,
) -> Result<Json<Value>, ApiError> {
    let ca = s.certificates.trusted_ca(&c.service, &fp).await?.ok_or_else(|| ca_not_found(&fp))?;
    Ok(Json(project(ca_view(&ca), fields(&q).as_deref())))
}

/// `PATCH /x509/v1/trusted-cas/{fingerprint} {"allowAutoRegistration": bool}` → 204.
pub async fn set_ca(
    State(s): State<AppState>,
    Caller(c): Caller,
    Path(fp): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<StatusCode, ApiError> {
    let allow = match body.as_object().map(|o| (o.len(), o.get("allowAutoRegistration"))) {
        Some((1, Some(Value::Bool(b)))) => *b,
        _ => return Err(ApiError::BadRequest("the body must be {\"allowAutoRegistration\": bool}".into())),
    };
    if !s.certificates.set_ca_auto_registration(&c.service, &fp, allow).await? {
        return Err(ca_not_found(&fp));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /x509/v1/trusted-cas/{fingerprint}` → 204: no longer trusted; the certificates
/// registered from it go too, and their live MQTT connections end.
pub async fn remove_ca(
    State(s): State<AppState>,
    Caller(c): Caller,
    Path(fp): Path<String>,
) -> Result<StatusCode, ApiError> {
    let gone = s.certificates.remove_ca(&c.service, &fp).await?.ok_or_else(|| ca_not_found(&fp))?;
    withdrawn(&s, &c.service, &gone).await;
    Ok(StatusCode::NO_CONTENT)
}

fn ca_not_found(fp: &str) -> ApiError {
    ApiError::NotFound(format!("no trusted CA with fingerprint {fp}"))
}

/// A trusted CA as dojot's model held it.
fn ca_view(r: &TrustedCaRecord) -> Value {
    let iso = |ms: i64| model::time::format_dojot(&model::time::from_ms(ms));
    json!({
        "caFingerprint": r.fingerprint,
        "caPem": r.pem,
        "subjectDN": r.subject_dn,
        "validity": {"notBefore": iso(r.not_before_ms), "notAfter": iso(r.not_after_ms)},
        "tenant": r.tenant,
        "allowAutoRegistration": r.allow_auto_registration,
        "createdAt": iso(r.created_ms),
        "modifiedAt": iso(r.modified_ms),
    })
}

fn not_found(fp: &str) -> ApiError {
    ApiError::NotFound(format!("no certificate with fingerprint {fp}"))
}

/// dojot's `belongsTo`: `{"device": id}` or `{"application": name}`.
fn owner(v: &Value) -> Result<Owner, ApiError> {
    let bad = || ApiError::BadRequest("belongsTo must be {\"device\": id} or {\"application\": name}".into());
    let obj = v.as_object().filter(|o| o.len() == 1).ok_or_else(bad)?;
    match obj.iter().next() {
        Some((k, Value::String(id))) if k == "device" && !id.is_empty() => Ok(Owner::Device(id.clone())),
        Some((k, Value::String(a))) if k == "application" && !a.is_empty() => Ok(Owner::Application(a.clone())),
        _ => Err(bad()),
    }
}

/// A certificate as dojot listed it.
fn view(r: &CertificateRecord) -> Value {
    let belongs_to = match (&r.device, &r.application) {
        (Some(d), _) => json!({"device": d}),
        (None, Some(a)) => json!({"application": a}),
        _ => json!({}),
    };
    let iso = |ms: i64| model::time::format_dojot(&model::time::from_ms(ms));
    json!({
        "fingerprint": r.fingerprint,
        "pem": r.pem,
        "belongsTo": belongs_to,
        "tenant": r.tenant,
        "issuedByDojotPki": r.issuer.is_none(),
        "autoRegistered": r.auto_registered,
        "createdAt": iso(r.created_ms),
        "validity": {"notAfter": iso(r.not_after_ms)},
        "revokedAt": r.revoked_ms.map(iso),
    })
}

fn fields(q: &QueryPairs) -> Option<Vec<String>> {
    q.get("fields").map(|f| f.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
}

/// Only the top-level `fields` asked for (all without `fields`).
fn project(v: Value, fields: Option<&[String]>) -> Value {
    match (v, fields) {
        (Value::Object(m), Some(keep)) => {
            Value::Object(m.into_iter().filter(|(k, _)| keep.iter().any(|f| f == k)).collect::<Map<_, _>>())
        }
        (v, _) => v,
    }
}
