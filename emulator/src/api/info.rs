//! `/info`: who the platform is and, for a logged-in user, their usage and limits and the
//! frameworks on offer. A missing or bad token is not an error here: `af` tells "Login Required"
//! from "Not Authorized" by the absence of `user` in a 200.

use axum::extract::{Request, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

use crate::control::Platform;

pub(super) fn routes() -> Router<Platform> {
    Router::new()
        .route("/info", get(info))
        .route("/info/infras", get(infras))
        .route("/info/runtimes", get(runtimes))
}

async fn info(State(platform): State<Platform>, request: Request) -> Json<Value> {
    let (parts, _) = request.into_parts();
    let user = super::extract::token(&parts).and_then(|token| {
        let proxy = parts
            .headers
            .get("proxy-user")
            .and_then(|v| v.to_str().ok());
        platform.authenticate(token, proxy).ok()
    });
    Json(platform.info(user.as_deref()).await)
}

async fn runtimes(State(platform): State<Platform>) -> Json<Value> {
    Json(platform.runtimes().await)
}

async fn infras(State(platform): State<Platform>) -> Json<Value> {
    Json(platform.infras())
}
