//! The admin API under `/_afemu/`, for tests in any language: health, the journal as JSON lines
//! (optionally waiting for new entries), the route table and the counters.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::control::Platform;
use crate::error::ApiError;

pub(super) fn routes(platform: &Platform) -> Router<Platform> {
    // A snapshot carries every app's bits.
    let state_limit = platform.config().max_upload.saturating_mul(4).max(64 << 20);
    // What changes the platform, or shows its secrets (passwords and tokens are in a
    // snapshot), is for the administrator.
    let guarded = Router::new()
        .route("/faults", axum::routing::put(set_faults))
        .route("/reset", axum::routing::post(reset))
        .route("/events", axum::routing::post(record_event))
        // A server's log may quote a statement with a password in it.
        .route("/services/{server}/log", get(service_log))
        // The dashboard and its feed show every request and app: for the administrator too.
        .route("/live", get(super::live::live))
        .route("/", get(dashboard))
        .route(
            "/state",
            get(export_state)
                .put(import_state)
                .layer(axum::extract::DefaultBodyLimit::max(state_limit)),
        )
        .layer(axum::middleware::from_fn_with_state(
            platform.clone(),
            admin_only,
        ));
    Router::new()
        .route("/health", get(health))
        .route("/journal", get(journal))
        .route("/routes", get(routes_table))
        .route("/counters", get(counters))
        .route("/faults", get(faults))
        .route("/services", get(services))
        .merge(guarded)
}

/// The admin token a request carries, in `Authorization`. (Never in the URL: the router
/// journals paths, and the journal is readable.)
fn token_of(request: &axum::extract::Request) -> Option<String> {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().trim_start_matches("Bearer ").trim().to_owned())
}

/// Lets a request through when it comes straight from this machine (a loopback peer, and not
/// relayed by the router, which adds `X-Forwarded-For`), or carries the admin token.
pub(super) async fn admin_only(
    State(platform): State<Platform>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let direct_local = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .is_some_and(|info| info.0.ip().is_loopback())
        && !request.headers().contains_key("x-forwarded-for");
    let token = token_of(&request);
    // A read cannot be forged usefully (another site's page cannot see the answer); a change can.
    let reads = matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    if !reads && cross_site(request.headers()) {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({
                "code": 200,
                "description": "Operation not permitted: a page from another site may not change afemu (its Origin is not this host)",
            })),
        )
            .into_response();
    }
    if direct_local || token.as_deref() == Some(platform.config().admin_token.as_str()) {
        next.run(request).await
    } else {
        (
            StatusCode::FORBIDDEN,
            Json(json!({
                "code": 200,
                "description": "Operation not permitted: this /_afemu/ endpoint needs the admin token afemu serve printed (AUTHORIZATION), or a direct loopback client",
            })),
        )
            .into_response()
    }
}

/// `GET /_afemu/`: the dashboard, a page fed by `/_afemu/live` (served from the binary: no
/// build step, nothing fetched from elsewhere).
pub(super) async fn dashboard() -> Response {
    static PAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    // The timeline drawing is the one `afemu rehearse --html` uses, put in at the first request.
    let page = PAGE.get_or_init(|| {
        include_str!("dashboard.html").replace("/*TIMELINE_JS*/", crate::timeline::TIMELINE_JS)
    });
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        page.as_str(),
    )
        .into_response()
}

/// `GET /_afemu/services`: each vendor (real or a record, and why), its database servers (state,
/// port, log, restarts) and the services provisioned.
async fn services(State(platform): State<Platform>) -> Json<serde_json::Value> {
    Json(platform.services_status())
}

/// `GET /_afemu/services/{server}/log`: a database server's log (`postgresql`, `mysql`,
/// `redis <name>`), as text.
async fn service_log(
    State(platform): State<Platform>,
    axum::extract::Path(server): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    let path = platform
        .service_server_log(&server)
        .ok_or_else(|| ApiError::FileNotFound(format!("no database server named {server:?}")))?;
    let text = tokio::fs::read(&path)
        .await
        .map_err(|e| ApiError::FileError(format!("{}: {e}", path.display())))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// Whether a browser sent this request from a page of another site (cross-site request
/// forgery: a page anywhere could otherwise POST to a loopback afemu). Browsers say where a
/// request comes from in `Origin` (and `Sec-Fetch-Site`); clients that are not browsers send
/// neither and are not affected.
fn cross_site(headers: &axum::http::HeaderMap) -> bool {
    if headers
        .get("sec-fetch-site")
        .is_some_and(|site| site.as_bytes() == b"cross-site" || site.as_bytes() == b"same-site")
    {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest.trim_end_matches('/'));
    match (origin_host, host) {
        (Some(origin), Some(host)) => !origin.eq_ignore_ascii_case(host),
        _ => true,
    }
}

/// `POST /_afemu/events {"event": "step", "detail": {…}}`: an event of the caller's on the
/// journal's timeline (a rehearsal marks each step of its runbook so, and the dashboard shows
/// it where it happened). The name is a short word; the detail an object of at most 4 KiB.
async fn record_event(
    State(platform): State<Platform>,
    super::V1Json(body): super::V1Json,
) -> Result<Json<serde_json::Value>, ApiError> {
    let event = body
        .get("event")
        .and_then(serde_json::Value::as_str)
        .filter(|e| {
            (1..=32).contains(&e.len())
                && e.bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'-' || b == b'_')
        })
        .ok_or_else(|| {
            ApiError::BadRequest(
                "event must be a short lower-case word (a-z, '-', '_', at most 32)".into(),
            )
        })?;
    let detail = body.get("detail").cloned().unwrap_or_else(|| json!({}));
    if !detail.is_object() || detail.to_string().len() > 4096 {
        return Err(ApiError::BadRequest(
            "detail must be a JSON object of at most 4 KiB".into(),
        ));
    }
    // The platform's own events keep their names: a caller cannot forge a crash or a fault.
    if ["app", "crash", "fault", "reset", "service"].contains(&event) {
        return Err(ApiError::BadRequest(format!(
            "{event:?} is the platform's own event"
        )));
    }
    let recorded = platform.journal().record_event(event, detail);
    Ok(Json(json!({"seq": recorded.seq})))
}

/// `POST /_afemu/reset`: a clean slate (no apps, users, services; an empty journal).
async fn reset(State(platform): State<Platform>) -> StatusCode {
    platform.reset().await;
    StatusCode::OK
}

/// `GET /_afemu/state`: everything set up, as one JSON document.
async fn export_state(
    State(platform): State<Platform>,
) -> Result<Json<crate::control::snapshot::Snapshot>, ApiError> {
    tokio::task::spawn_blocking(move || platform.export_state())
        .await
        .map_err(|e| ApiError::System(e.to_string()))?
        .map(Json)
}

/// `PUT /_afemu/state`: replace everything with a snapshot; the apps it says are started are
/// staged and started (the answer comes once they have been launched).
async fn import_state(
    State(platform): State<Platform>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let document: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the state is not valid JSON: {e}")))?;
    platform.import_state(&document).await?;
    Ok(StatusCode::OK)
}

async fn faults(State(platform): State<Platform>) -> Json<serde_json::Value> {
    Json(platform.faults_document())
}

/// `PUT /_afemu/faults`: `{"route_delay": "0..50ms", "crash": {"app": "web", "index": 0,
/// "after_requests": 10}, "hang": {"app": "web"}, "slow_start": {"app": "web", "delay": "2s"},
/// "fail_staging": {"app": "web"}, "stop": "hard", "seed": 7}` — any of these.
async fn set_faults(
    State(platform): State<Platform>,
    super::V1Json(body): super::V1Json,
) -> Result<Json<serde_json::Value>, ApiError> {
    platform.apply_faults(&body).map(Json)
}

/// 200 once the control plane answers (it does, if this runs) and the router accepts
/// connections; 503 before.
async fn health(State(platform): State<Platform>) -> Response {
    let routes = platform.routes().version();
    if platform.router().is_accepting() {
        Json(json!({"status": "ok", "route_table_version": routes})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "starting", "route_table_version": routes})),
        )
            .into_response()
    }
}

#[derive(Debug, Deserialize)]
struct JournalQuery {
    #[serde(default)]
    since: u64,
    /// Wait up to this long (e.g. `5s`) for an entry after `since` when there is none yet.
    wait: Option<String>,
    /// Only entries for this host (normalised).
    host: Option<String>,
    /// With the platform's events (a fault, a crash, a map) too, in the same sequence; never
    /// with `host`, since an event has none.
    #[serde(default)]
    events: bool,
}

/// `GET /_afemu/journal?since=SEQ[&wait=5s][&host=H][&events=true]`: entries after `since`, one
/// JSON object per line, oldest first: requests, and with `events=true` (and no host filter) the
/// platform's events — a fault applied, a crash, a map — in the same sequence (a line with
/// `event` and no `host`). The wait ends at the first new request, or event when they are asked
/// for.
async fn journal(
    State(platform): State<Platform>,
    query: Result<Query<JournalQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let journal = platform.journal();
    if let Some(wait) = &query.wait {
        let wait = humantime::parse_duration(wait)
            .map_err(|e| ApiError::BadRequest(format!("wait: {e}")))?
            .min(Duration::from_secs(60));
        let host = query.host.clone();
        if query.events && host.is_none() {
            journal
                .wait_for_entry_or_event(query.since, wait, |_| true)
                .await;
        } else {
            journal
                .wait_for(query.since, wait, |entry| {
                    host.as_deref().is_none_or(|h| &*entry.host == h)
                })
                .await;
        }
    }
    let (entries, events) = if query.events && query.host.is_none() {
        journal.since_with_events(query.since)
    } else {
        (journal.since(query.since), Vec::new())
    };
    // Both are in sequence order: merged, they are the journal's one sequence.
    let mut lines: Vec<(u64, String)> = Vec::with_capacity(entries.len() + events.len());
    let json = |value: Result<String, serde_json::Error>| {
        value.map_err(|e| ApiError::System(e.to_string()))
    };
    for entry in entries {
        if query.host.as_deref().is_some_and(|h| &*entry.host != h) {
            continue;
        }
        lines.push((entry.seq, json(serde_json::to_string(&*entry))?));
    }
    for event in events {
        lines.push((event.seq, json(serde_json::to_string(&*event))?));
    }
    lines.sort_by_key(|(seq, _)| *seq);
    let mut text = String::new();
    for (_, line) in lines {
        text.push_str(&line);
        text.push('\n');
    }
    let lines = text;
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], lines).into_response())
}

async fn routes_table(State(platform): State<Platform>) -> Json<serde_json::Value> {
    Json(platform.routes_document())
}

async fn counters(State(platform): State<Platform>) -> Json<serde_json::Value> {
    Json(json!({
        "last_seq": platform.journal().last_seq(),
        "hosts": platform.journal().counters(),
    }))
}
