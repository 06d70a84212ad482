//! The HTTP side: routes, bearer-token auth, limits, 429s, request logs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::engine::{Job, JobError};
use crate::json::{parse_body, BadRequest};
use crate::metrics::Metrics;
use crate::requests::{esm3_job, esmc_job};
use crate::worker::{Queue, Submit, Work};
use crate::{ServerConfig, INF_MARKER, NAN_MARKER, NEG_INF_MARKER};

/// A served model as the router sees it.
pub struct Route {
    pub kind: &'static str,
    pub queue: Queue,
    /// The name it is known by in logs and metrics (its first name).
    pub name: String,
}

pub struct AppState {
    pub config: ServerConfig,
    /// Every accepted model name → its route.
    pub models: HashMap<String, Arc<Route>>,
    /// Distinct routes, for metrics.
    pub routes: Vec<Arc<Route>>,
    pub metrics: Arc<Metrics>,
    pub ready: AtomicBool,
    pub next_id: AtomicU64,
}

pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/health", get(|| async { json_response(StatusCode::OK, &json!({"status": "ok"})) }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/api/v1/{*endpoint}", post(api))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such route: the API is POST /api/v1/<endpoint>; also GET /health, /ready, /metrics",
            )
        })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn ready(State(s): State<Arc<AppState>>) -> Response {
    if s.ready.load(Ordering::SeqCst) {
        json_response(StatusCode::OK, &json!({"status": "ready"}))
    } else {
        error(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
    }
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    let queues: Vec<(String, usize, usize)> = s
        .routes
        .iter()
        .map(|r| (r.name.clone(), r.queue.depth(), r.queue.capacity))
        .collect();
    let mut r = s.metrics.render(&queues).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

/// The body every error has: FastAPI's `{"detail": …}`, which the client prints.
fn error(status: StatusCode, message: &str) -> Response {
    json_response(status, &json!({ "detail": message }))
}

/// JSON with exactly `Content-Type: application/json` (the client refuses any parameter on
/// it, spec §9.2), non-finite markers written as the bare tokens the client parses.
fn json_response(status: StatusCode, value: &Value) -> Response {
    let mut text = value.to_string();
    if text.contains("__esm3_") {
        text = text
            .replace(&format!("\"{INF_MARKER}\""), "Infinity")
            .replace(&format!("\"{NEG_INF_MARKER}\""), "-Infinity")
            .replace(&format!("\"{NAN_MARKER}\""), "NaN");
    }
    let mut r = (status, text).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Compares in time independent of where the strings differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn authorize(config: &ServerConfig, headers: &HeaderMap) -> Result<(), Response> {
    let Some(tokens) = &config.tokens else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match given {
        None | Some("") => {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "missing bearer token: send `Authorization: Bearer <token>` (the client's token=…)",
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Err(r)
        }
        Some(t) if tokens.iter().any(|k| same(k.as_bytes(), t.as_bytes())) => Ok(()),
        Some(_) => Err(error(
            StatusCode::FORBIDDEN,
            "the bearer token is not valid for this server",
        )),
    }
}

async fn api(
    State(s): State<Arc<AppState>>,
    Path(endpoint): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64 && v.chars().all(|c| c.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| format!("req-{:08x}", s.next_id.fetch_add(1, Ordering::Relaxed)));
    let (mut response, model, residues) = handle(&s, &endpoint, &headers, &body, &request_id).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    s.metrics.observe_request(&endpoint, status, elapsed);
    tracing::info!(
        request_id = %request_id,
        endpoint = %endpoint,
        model = %model,
        status,
        residues,
        ms = elapsed.as_millis() as u64,
        "request"
    );
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

/// The response, the model name (for the log) and the residues of the request.
async fn handle(
    s: &AppState,
    endpoint: &str,
    headers: &HeaderMap,
    body: &[u8],
    request_id: &str,
) -> (Response, String, usize) {
    let fail = |status, msg: &str| (error(status, msg), String::new(), 0);
    if let Err(r) = authorize(&s.config, headers) {
        return (r, String::new(), 0);
    }
    if !s.ready.load(Ordering::SeqCst) {
        return fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        );
    }
    let body = match parse_body(body) {
        Ok(b) => b,
        Err(BadRequest(m)) => return fail(StatusCode::BAD_REQUEST, &m),
    };
    let route = match pick_model(s, endpoint, &body) {
        Ok(r) => r,
        Err(r) => return (r, String::new(), 0),
    };
    let model = route.name.clone();
    let job = match job_for(route.kind, endpoint, &body) {
        Ok(j) => j,
        Err(r) => return (r, model, 0),
    };
    let residues = job.residues();
    if residues > s.config.max_length {
        let msg = format!(
            "{residues} residues is longer than this server's limit of {} (ESM3's context)",
            s.config.max_length
        );
        return (error(StatusCode::PAYLOAD_TOO_LARGE, &msg), model, residues);
    }
    if s.config.log_sequences {
        if let Some(seq) = sequence_of(&job) {
            tracing::info!(request_id = %request_id, sequence = %seq, "request sequence");
        }
    }
    let (tx, rx) = oneshot::channel();
    let work = Work {
        job,
        reply: tx,
        request_id: request_id.to_string(),
    };
    if let Err(r) = enqueue(s, &route, work) {
        return (r, model, residues);
    }
    (await_reply(rx).await, model, residues)
}

/// The job a request body asks of a model of `kind`; an unknown endpoint is 404, a malformed
/// body 400.
fn job_for(kind: &str, endpoint: &str, body: &Value) -> Result<Job, Response> {
    let job = match kind {
        "esm3" => esm3_job(endpoint, body),
        _ => esmc_job(endpoint, body),
    };
    job.map_err(|BadRequest(m)| {
        let status = if m.starts_with("no endpoint") {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::BAD_REQUEST
        };
        error(status, &m)
    })
}

/// Puts `work` on the route's queue: 429 with `Retry-After` when it is full, 503 when its
/// worker has stopped.
fn enqueue(s: &AppState, route: &Route, work: Work) -> Result<(), Response> {
    match route.queue.submit(work) {
        Submit::Queued => Ok(()),
        Submit::Full(_) => {
            s.metrics.rejected_full.fetch_add(1, Ordering::Relaxed);
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "the queue of {} is full ({} jobs); retry later",
                    route.name, route.queue.capacity
                ),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Err(r)
        }
        Submit::Closed(_) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the model worker has stopped",
        )),
    }
}

/// The worker's answer as a response. If the client disconnects, the request's future is
/// dropped with `rx`, and the worker skips the job.
async fn await_reply(rx: oneshot::Receiver<Result<Value, JobError>>) -> Response {
    match rx.await {
        Ok(Ok(v)) => json_response(StatusCode::OK, &v),
        Ok(Err(e)) => error(
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &e.message,
        ),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the model worker dropped the job",
        ),
    }
}

fn sequence_of(job: &Job) -> Option<String> {
    match job {
        Job::Encode(p) | Job::Generate { protein: p, .. } => p.sequence.clone(),
        Job::Fold { sequence } | Job::EsmcEncode { sequence } => Some(sequence.clone()),
        _ => None,
    }
}

/// The route of the request's `model`. `fold` and `inverse_fold` may leave it out (the
/// client's structure endpoints do not always send one): the first ESM3 model serves them.
fn pick_model(s: &AppState, endpoint: &str, body: &Value) -> Result<Arc<Route>, Response> {
    // The structure client sends `"model": ""` unless told otherwise.
    let name = body
        .get("model")
        .and_then(Value::as_str)
        .filter(|n| !(n.is_empty() && matches!(endpoint, "fold" | "inverse_fold")));
    let known = || {
        let mut names: Vec<&str> = s.models.keys().map(String::as_str).collect();
        names.sort_unstable();
        names.join(", ")
    };
    match name {
        Some(n) => s.models.get(n).cloned().ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                &format!("unknown model `{n}`; this server has: {}", known()),
            )
        }),
        None if matches!(endpoint, "fold" | "inverse_fold") => s
            .routes
            .iter()
            .find(|r| r.kind == "esm3")
            .cloned()
            .ok_or_else(|| error(StatusCode::NOT_FOUND, "this server has no ESM3 model")),
        None => Err(error(
            StatusCode::BAD_REQUEST,
            &format!("the request has no `model`; this server has: {}", known()),
        )),
    }
}
