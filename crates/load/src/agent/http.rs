//! The agent's HTTP API, go-lo agent v0.3.1's, so that its CLI works unchanged:
//! `POST /upload` (multipart, field `file`) → 200 `{"binary": "<uuid>"}`, and
//! `POST /queue {"name", "users", "duration", "binary"}` → 201 `{"queued": true}`.
//! Ingot adds `GET /jobs` (the running job and the queue) and `GET /jobs/<name>` (a job's
//! state, and its result once it ended: what `ingot load --agents` merges). Refusals are a status and
//! `{"message"}`: 400 for a missing file or a bad job, 401 without the token, 405 for
//! another method, 413 for an upload over `--max-upload-bytes`.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::io::AsyncWriteExt;

use super::AgentError;
use super::jobs::{Jobs, Limits};

#[derive(Clone)]
pub struct Agent {
    pub jobs: Arc<Jobs>,
    /// Where finished jobs' results are (`<logs>/<job>/result.json`).
    pub logs: std::path::PathBuf,
    /// The running job's counters.
    pub live: super::runner::Live,
    pub limits: Limits,
    pub token: Option<String>,
    pub max_upload: usize,
}

impl IntoResponse for AgentError {
    fn into_response(self) -> Response {
        let status = match &self {
            AgentError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AgentError::Unauthorized => StatusCode::UNAUTHORIZED,
            AgentError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AgentError::NotFound(_) => StatusCode::NOT_FOUND,
            _ => {
                tracing::error!(error = %self, "agent request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        (status, Json(json!({"message": self.to_string()}))).into_response()
    }
}

pub fn router(agent: Agent) -> Router {
    let max_upload = agent.max_upload;
    Router::new()
        .route("/upload", post(upload))
        .route("/queue", post(queue))
        .route("/jobs", get(jobs))
        .route("/jobs/{name}", get(job))
        .method_not_allowed_fallback(|| async {
            (StatusCode::METHOD_NOT_ALLOWED, Json(json!({"message": "method not allowed"})))
        })
        .fallback(|| async { (StatusCode::NOT_FOUND, Json(json!({"message": "no such endpoint"}))) })
        .layer(axum::middleware::from_fn_with_state(agent.clone(), require_token))
        // The form around the file needs a little room beyond the file itself.
        .layer(DefaultBodyLimit::max(max_upload + 64 * 1024))
        .with_state(agent)
}

/// With a token set, every request must carry it (`Authorization: Bearer <token>`).
async fn require_token(State(agent): State<Agent>, req: Request, next: Next) -> Result<Response, AgentError> {
    if let Some(token) = &agent.token {
        let sent = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let ok = sent.strip_prefix("Bearer ").is_some_and(|t| bool::from(t.as_bytes().ct_eq(token.as_bytes())));
        if !ok {
            return Err(AgentError::Unauthorized);
        }
    }
    Ok(next.run(req).await)
}

/// `POST /upload`: the field `file`, stored under a new id, executable.
async fn upload(State(agent): State<Agent>, mut form: Multipart) -> Result<Json<Value>, AgentError> {
    let bad = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AgentError::TooLarge(agent.max_upload)
        } else {
            AgentError::BadRequest(e.body_text())
        }
    };
    while let Some(mut field) = form.next_field().await.map_err(bad)? {
        if field.name() != Some("file") {
            continue;
        }
        let id = uuid::Uuid::new_v4().to_string();
        let part = agent.jobs.upload_path(&id);
        let io = |e| AgentError::Io(part.clone(), e);
        let mut file = tokio::fs::File::create(&part).await.map_err(io)?;
        let mut size = 0usize;
        while let Some(chunk) = field.chunk().await.map_err(bad)? {
            size += chunk.len();
            if size > agent.max_upload {
                drop(file);
                let _ = tokio::fs::remove_file(&part).await;
                return Err(AgentError::TooLarge(agent.max_upload));
            }
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.sync_all().await.map_err(io)?;
        drop(file);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            tokio::fs::set_permissions(&part, std::fs::Permissions::from_mode(0o700)).await.map_err(io)?;
        }
        tokio::fs::rename(&part, agent.jobs.binary_path(&id)).await.map_err(io)?;
        tracing::info!(binary = %id, bytes = size, "load test uploaded");
        return Ok(Json(json!({"binary": id})));
    }
    Err(AgentError::BadRequest("http: no such file".into()))
}

/// `POST /queue`.
async fn queue(State(agent): State<Agent>, body: axum::body::Bytes) -> Result<Response, AgentError> {
    let body: Value = serde_json::from_slice(&body).map_err(|e| AgentError::BadRequest(e.to_string()))?;
    let job = agent.jobs.queue(&body, agent.limits)?;
    tracing::info!(job = %job.name, users = job.users, duration = job.duration, "load test queued");
    Ok((StatusCode::CREATED, Json(json!({"queued": true}))).into_response())
}

/// `GET /jobs/<name>`: `{"state": "queued"}`, `{"state": "running", "done", "errors"}`
/// (so far), or the finished job's result (`state` `done` or `failed`); 404 if unknown.
async fn job(State(agent): State<Agent>, Path(name): Path<String>) -> Result<Json<Value>, AgentError> {
    use std::sync::atomic::Ordering;
    match agent.jobs.state_of(&name) {
        Some("running") => Ok(Json(json!({"name": name, "state": "running",
            "done": agent.live.done.load(Ordering::Relaxed), "errors": agent.live.errors.load(Ordering::Relaxed)}))),
        Some(state) => Ok(Json(json!({"name": name, "state": state}))),
        None if super::jobs::valid_name(&name) => match super::runner::JobResult::load(&agent.logs, &name) {
            Some(result) => Ok(Json(serde_json::to_value(result).unwrap_or_default())),
            None => Err(AgentError::NotFound(name)),
        },
        None => Err(AgentError::NotFound(name)),
    }
}

/// `GET /jobs`.
async fn jobs(State(agent): State<Agent>) -> Json<Value> {
    Json(agent.jobs.view())
}
