//! The control plane's HTTP surface: the AppFog v1 cloud-controller API as `af` 0.3.22 and the
//! other v1 clients use it (spec/af-api.md §3), plus the admin API under `/_afemu/`. One module per
//! resource, each with its routes next to its handlers; this file puts them together.

mod admin;
mod apps;
mod extract;
mod files;
mod info;
mod live;
mod services;
mod users;

use axum::Router;
use axum::http::StatusCode;

use crate::control::Platform;

pub(crate) use extract::{AuthUser, V1Json};

/// The whole API as one router, ready to serve.
pub fn api(platform: Platform) -> Router {
    Router::new()
        .merge(info::routes())
        .merge(users::routes())
        .merge(apps::routes(&platform))
        .merge(files::routes())
        .merge(services::routes())
        .nest("/_afemu", admin::routes(&platform))
        .route(
            "/_afemu/",
            axum::routing::get(admin::dashboard).layer(axum::middleware::from_fn_with_state(
                platform.clone(),
                admin::admin_only,
            )),
        )
        .route("/", axum::routing::get(root))
        // v1's `default#route_not_found`: 404 with an empty body.
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(axum::middleware::from_fn_with_state(
            platform.clone(),
            note_changes,
        ))
        .with_state(platform)
}

/// `GET /`: a browser is sent to the dashboard; a client of the v1 API gets v1's empty 404.
async fn root(headers: axum::http::HeaderMap) -> axum::response::Response {
    use axum::response::IntoResponse;
    let browser = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if browser {
        axum::response::Redirect::to("/_afemu/").into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

/// Every successful request that is not a read may have changed what a snapshot shows.
async fn note_changes(
    axum::extract::State(platform): axum::extract::State<Platform>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let reads = matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    let response = next.run(request).await;
    if !reads && response.status().as_u16() < 400 {
        platform.mark_changed();
    }
    response
}
