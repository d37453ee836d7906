//! What every handler needs from a request: the user behind the token, and a JSON body read
//! within the configured limit. Failures are v1 errors, never axum's plain-text rejections.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde_json::Value;

use crate::control::Platform;
use crate::error::ApiError;

/// The user a request acts as: from the raw token in `AUTHORIZATION` (v1 sent no "Bearer"), or the
/// `PROXY-USER` an admin names.
#[derive(Debug, Clone)]
pub(crate) struct AuthUser(pub(crate) String);

impl FromRequestParts<Platform> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, platform: &Platform) -> Result<Self, ApiError> {
        let token = token(parts).ok_or(ApiError::Forbidden)?;
        let proxy = parts
            .headers
            .get("proxy-user")
            .and_then(|v| v.to_str().ok());
        platform.authenticate(token, proxy).map(AuthUser)
    }
}

/// The token of a request, if it carries one: raw, or after `Bearer ` as later clients sent it.
pub(crate) fn token(parts: &Parts) -> Option<&str> {
    let raw = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let token = raw
        .strip_prefix("Bearer ")
        .or_else(|| raw.strip_prefix("bearer "))
        .unwrap_or(raw);
    (!token.is_empty()).then_some(token)
}

/// A JSON request body, at most `max_json_body` bytes. An empty body reads as `null`.
#[derive(Debug)]
pub(crate) struct V1Json(pub(crate) Value);

impl FromRequest<Platform> for V1Json {
    type Rejection = ApiError;

    async fn from_request(request: Request<Body>, platform: &Platform) -> Result<Self, ApiError> {
        let limit = platform.config().max_json_body;
        let bytes = axum::body::to_bytes(request.into_body(), limit)
            .await
            .map_err(|_| {
                ApiError::TooLarge(format!(
                    "the request body is over the limit of {limit} bytes"
                ))
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(V1Json(Value::Null));
        }
        serde_json::from_slice(&bytes)
            .map(V1Json)
            .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))
    }
}
