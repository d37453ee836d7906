//! `GET /apps/:name/instances/:instance/files/PATH`: an instance's files and logs. The path comes
//! either as one `%2F`-escaped segment (as af sends it) or as plain segments; the instance is an
//! index or an instance id (a crashed one too, until it is reaped). Files honour `Range`.

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::AuthUser;
use crate::control::Platform;
use crate::dea::files::{self, Resolved};
use crate::error::ApiError;

pub(super) fn routes() -> Router<Platform> {
    Router::new()
        .route("/apps/{name}/instances/{instance}/files", get(root))
        .route("/apps/{name}/instances/{instance}/files/", get(root))
        .route("/apps/{name}/instances/{instance}/files/{*path}", get(file))
}

async fn root(
    State(platform): State<Platform>,
    AuthUser(user): AuthUser,
    Path((name, instance)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    serve(&platform, &user, &name, &instance, "", request).await
}

async fn file(
    State(platform): State<Platform>,
    AuthUser(user): AuthUser,
    Path((name, instance, path)): Path<(String, String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    serve(&platform, &user, &name, &instance, &path, request).await
}

async fn serve(
    platform: &Platform,
    user: &str,
    name: &str,
    instance: &str,
    path: &str,
    request: Request,
) -> Result<Response, ApiError> {
    let dir = match platform.instance_dir(user, name, instance) {
        Ok(dir) => dir,
        // No instance (its staging failed, or it is stopped): the last staging log is still
        // there to say why, at the path v1 kept it.
        Err(ApiError::InstanceNotFound(_))
            if path.trim_matches('/') == "logs/staging.log"
                && let Some(log) = platform.staging_log(user, name)? =>
        {
            return serve_file(log, path, request).await;
        }
        Err(error) => return Err(error),
    };
    let requested = path.to_owned();
    let resolved = tokio::task::spawn_blocking(move || files::resolve(&dir, &requested))
        .await
        .map_err(|e| ApiError::System(e.to_string()))?;
    match resolved {
        Resolved::Directory { path: dir, is_root } => {
            let listing = tokio::task::spawn_blocking(move || files::listing(&dir, is_root))
                .await
                .map_err(|e| ApiError::System(e.to_string()))?
                .map_err(|_| ApiError::FileError(path.to_owned()))?;
            Ok(([(header::CONTENT_TYPE, "text/plain")], listing).into_response())
        }
        Resolved::File(file) => serve_file(file, path, request).await,
        Resolved::NotFound => Ok((
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain")],
            "Entity not found.\n",
        )
            .into_response()),
        Resolved::Forbidden => Ok((
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain")],
            "Not accessible\n",
        )
            .into_response()),
    }
}

/// A file, with range requests (206 with the exact bytes), content types and the rest.
async fn serve_file(
    file: std::path::PathBuf,
    path: &str,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, _) = request.into_parts();
    let request = Request::from_parts(parts, axum::body::Body::empty());
    let response = ServeFile::new(file)
        .oneshot(request)
        .await
        .map_err(|e| ApiError::FileError(format!("{path}: {e}")))?;
    Ok(response.map(axum::body::Body::new))
}
