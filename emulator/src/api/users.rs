//! Users and tokens: `POST /users/:email/tokens` logs in (the first login of an email registers
//! it), `GET /users/:email` tells who you are and whether you are an admin.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{AuthUser, V1Json};
use crate::error::ApiError;
use crate::platform::Platform;

pub(super) fn routes() -> Router<Platform> {
    Router::new()
        .route("/users/{email}/tokens", post(login))
        .route("/users/{email}", get(user))
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
