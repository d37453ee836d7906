//! The built-in static server: what runs an app that has an `index.html` and no start command, so
//! a downtime page or a "v1"/"v2" test app needs no language runtime. It is a real HTTP server on
//! its own loopback port, routed to like any other instance.

use std::path::PathBuf;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::services::ServeDir;

/// Serves `root` on `listener` until `stop` is cancelled; requests in flight then finish.
pub(crate) async fn serve(listener: TcpListener, root: PathBuf, stop: CancellationToken) {
    let files = ServeDir::new(root).append_index_html_on_directories(true);
    let app = axum::Router::new().fallback_service(files);
    if let Err(error) = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        tracing::warn!(%error, "static server failed");
    }
}
