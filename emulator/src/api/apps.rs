//! Apps: list, create, read, update (the whole document: state, uris, instances, memory, env,
//! name), delete; the bits upload; instances, stats and crashes.

use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{AuthUser, V1Json};
use crate::control::Platform;
use crate::control::packages;
use crate::error::ApiError;

pub(super) fn routes(platform: &Platform) -> Router<Platform> {
    // Multipart framing adds a little to the upload itself.
    let upload_limit = platform.config().max_upload.saturating_add(64 * 1024);
    Router::new()
        .route("/apps", get(list).post(create))
        .route("/apps/{name}", get(read).put(update).delete(delete))
        .route(
            "/apps/{name}/application",
            // af POSTs with `_method=put` (Rack's method override); others PUT.
            post(upload)
                .put(upload)
                .get(download)
                .layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/apps/{name}/instances", get(instances))
        .route("/apps/{name}/stats", get(stats))
        .route("/apps/{name}/crashes", get(crashes))
        .route("/apps/{name}/history", get(history))
        .route("/apps/{name}/diff", get(diff))
        .route("/resources", post(resources))
}

async fn list(State(platform): State<Platform>, AuthUser(user): AuthUser) -> Json<Vec<Value>> {
    Json(platform.list_apps(&user))
}

/// v1 answered a create with 302 and the app's URL (CC `apps_controller#create`).
async fn create(
    State(platform): State<Platform>,
    AuthUser(user): AuthUser,
    headers: HeaderMap,
    V1Json(body): V1Json,
) -> Result<Response, ApiError> {
    let name = platform.create_app(&user, &body).await?;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let url = format!("http://{host}/apps/{name}");
    Ok((
        StatusCode::FOUND,
        [(header::LOCATION, url.clone())],
        Json(json!({"result": "success", "redirect": url})),
    )
        .into_response())
}

async fn read(
    State(platform): State<Platform>,
    AuthUser(user): AuthUser,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    platform.app_document(&user, &name).map(Json)
}

async fn update(
    State(platform): State<Platform>,
    AuthUser(user): AuthUser,
    Path(name): Path<String>,
    V1Json(body): V1Json,
) -> Result<StatusCode, ApiError> {
    platform.update_app(&user, &name, &body).await?;
    Ok(StatusCode::OK)
}

async fn delete(
    State(platform): State<Platform>,
    AuthUser(user): AuthUser,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    platform.delete_app(&user, &name).await?;
    Ok(StatusCode::OK)
}

/// The multipart upload: `_method`, `application` (the zip), `resources` (JSON), in any order.
/// The zip is streamed to a file under the data directory, never held in memory.
async fn upload(
    State(platform): State<Platform>,
    AuthUser(user): AuthUser,
    Path(name): Path<String>,
    headers: HeaderMap,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<StatusCode, ApiError> {
    // AppFog's af (2014) labels each upload and sends a hash of the bits, for `af history`.
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let release = (
        header("label").unwrap_or_default(),
        header("hash").filter(|h| !h.is_empty()),
    );
    let mut multipart = multipart.map_err(|e| {
        ApiError::BadRequest(format!(
            "the upload must be multipart/form-data: {}",
            e.body_text()
        ))
    })?;
    // Unknown apps are refused before any bytes are stored.
    platform.app_document(&user, &name)?;
    let mut zip: Option<tempfile::NamedTempFile> = None;
    let mut resources = Vec::new();
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name().unwrap_or_default() {
            "application" => {
                use std::io::Write;
                let mut file = tempfile::NamedTempFile::new_in(platform.data_dir().join("tmp"))
                    .map_err(|e| ApiError::System(e.to_string()))?;
                // The body limit allows for the multipart framing; the zip itself is held to
                // `max_upload` exactly.
                let limit = platform.config().max_upload;
                let mut received = 0usize;
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    received = received.saturating_add(chunk.len());
                    if received > limit {
                        return Err(ApiError::TooLarge(format!(
                            "the application is over the upload limit of {limit} bytes"
                        )));
                    }
                    file.write_all(&chunk)
                        .map_err(|e| ApiError::System(e.to_string()))?;
                }
                zip = Some(file);
            }
            "resources" => {
                let bytes = field.bytes().await.map_err(multipart_error)?;
                resources = packages::parse_resources(&bytes)?;
            }
            // `_method=put` and anything else a client adds.
            _ => {}
        }
    }
    let zip =
        zip.ok_or_else(|| ApiError::BadRequest("the upload has no 'application' part".into()))?;
    platform
        .upload(&user, &name, zip, resources, release)
        .await?;
    Ok(StatusCode::OK)
}

fn multipart_error(error: axum::extract::multipart::MultipartError) -> ApiError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge(format!("the upload is too large: {}", error.body_text()))
    } else {
        ApiError::BadRequest(format!(
            "the upload is not valid multipart: {}",
            error.body_text()
        ))
    }
}

async fn download(
    State(platform): State<Platform>,
    AuthUser(user): AuthUser,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let path = platform.package_path(&user, &name)?;
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| ApiError::System(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "application/zip")], bytes).into_response())
}

async fn instances(
    State(platform): State<Platform>,
    AuthUser(user): AuthUser,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    platform.instances(&user, &name).map(Json)
}

async fn stats(
    State(platform): State<Platform>,
    AuthUser(user): AuthUser,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    platform.stats(&user, &name).await.map(Json)
}

async fn crashes(
    State(platform): State<Platform>,
    AuthUser(user): AuthUser,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    platform.crashes(&user, &name).map(Json)
}

async fn history(
    State(platform): State<Platform>,
    AuthUser(user): AuthUser,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    platform.history(&user, &name).map(Json)
}

async fn diff(
    State(platform): State<Platform>,
    AuthUser(user): AuthUser,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    platform.diff(&user, &name).map(Json)
}

/// `POST /resources`: the subset of `[{size, sha1, fn}]` the server already has.
async fn resources(
    State(platform): State<Platform>,
    AuthUser(_user): AuthUser,
    V1Json(body): V1Json,
) -> Result<Json<Vec<Value>>, ApiError> {
    let Value::Array(wanted) = body else {
        return Err(ApiError::BadRequest(
            "resources must be a JSON array of {size, sha1, fn}".into(),
        ));
    };
    Ok(Json(platform.known_resources(&wanted)))
}
