//! Services: the catalog (`/info/services` for af, `/services/v1/offerings` for cfoundry) and
//! the user's provisioned services.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

use super::{AuthUser, V1Json};
use crate::control::Platform;
use crate::control::catalog;
use crate::error::ApiError;

pub(super) fn routes() -> Router<Platform> {
    Router::new()
        .route(
            "/info/services",
            get(|| async { Json(catalog::info_services()) }),
        )
        .route(
            "/services/v1/offerings",
            get(|| async { Json(catalog::offerings()) }),
        )
        .route("/services", get(list).post(create))
        .route("/services/{name}", get(read).delete(delete))
        // afemu's own, for `af tunnel`: the user's token decides, as for `/services` (the
        // admin guard of the other `/_afemu/` endpoints does not apply: it is their service).
        .route("/_afemu/tunnel/services/{name}", get(tunnel))
}

async fn list(State(platform): State<Platform>, AuthUser(user): AuthUser) -> Json<Vec<Value>> {
    Json(platform.list_services(&user))
}

async fn read(
    State(platform): State<Platform>,
    AuthUser(user): AuthUser,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    platform.service_document(&user, &name).map(Json)
}

/// The service's credentials as this machine reaches it, for `af tunnel`.
async fn tunnel(
    State(platform): State<Platform>,
    AuthUser(user): AuthUser,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    platform.tunnel_info(&user, &name).map(Json)
}

/// 200 with the new service's document: cfoundry wants JSON back and raises on a 201.
async fn create(
    State(platform): State<Platform>,
    AuthUser(user): AuthUser,
    V1Json(body): V1Json,
) -> Result<Json<Value>, ApiError> {
    platform.create_service(&user, &body).await.map(Json)
}

async fn delete(
    State(platform): State<Platform>,
    AuthUser(user): AuthUser,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    platform.delete_service(&user, &name).await?;
    Ok(StatusCode::OK)
}
