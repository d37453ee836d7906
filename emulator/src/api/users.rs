//! Users and tokens: `POST /users/:email/tokens` logs in (the first login of an email registers
//! it), `GET /users/:email` tells who you are and whether you are an admin; registration, password
//! changes and, for admins, listing and deleting users.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{AuthUser, V1Json};
use crate::control::Platform;
use crate::error::ApiError;

pub(super) fn routes() -> Router<Platform> {
    Router::new()
        .route("/users/{email}/tokens", post(login))
        .route("/users/{email}", get(user).put(update).delete(delete))
        .route("/users", get(list).post(register))
}

async fn register(
    State(platform): State<Platform>,
    V1Json(body): V1Json,
) -> Result<StatusCode, ApiError> {
    platform.register(&body)?;
    Ok(StatusCode::OK)
}

async fn list(
    State(platform): State<Platform>,
    AuthUser(asking): AuthUser,
) -> Result<Json<Vec<Value>>, ApiError> {
    platform.list_users(&asking).map(Json)
}

async fn update(
    State(platform): State<Platform>,
    AuthUser(asking): AuthUser,
    Path(email): Path<String>,
    V1Json(body): V1Json,
) -> Result<StatusCode, ApiError> {
    platform.update_user(&asking, &email, &body)?;
    Ok(StatusCode::OK)
}

/// 200 with an empty body: cfoundry raises on a 204 here.
async fn delete(
    State(platform): State<Platform>,
    AuthUser(asking): AuthUser,
    Path(email): Path<String>,
) -> Result<StatusCode, ApiError> {
    platform.delete_user(&asking, &email).await?;
    Ok(StatusCode::OK)
}

async fn login(
    State(platform): State<Platform>,
    Path(email): Path<String>,
    V1Json(body): V1Json,
) -> Result<Json<Value>, ApiError> {
    let password = match body.get("password") {
        Some(Value::String(password)) => password,
        Some(_) => return Err(ApiError::BadRequest("password must be a string".into())),
        None => return Err(ApiError::BadRequest("a password is required".into())),
    };
    let token = platform.login(&email, password)?;
    Ok(Json(json!({"token": token})))
}

async fn user(
    State(platform): State<Platform>,
    AuthUser(asking): AuthUser,
    Path(email): Path<String>,
) -> Result<Json<Value>, ApiError> {
    platform.user_document(&asking, &email).map(Json)
}
