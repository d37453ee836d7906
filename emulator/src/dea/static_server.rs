//! The built-in static server: what runs an app that has an `index.html` and no start command, so
//! a downtime page or a "v1"/"v2" test app needs no language runtime. It is a real HTTP server on
//! its own loopback port, routed to like any other instance.

use std::path::PathBuf;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::services::ServeDir;

/// Serves `root` on `listener` until `stop` is cancelled; requests in flight then finish. Once
/// `hanging` turns true (the hang fault), every request is held without an answer.
pub(crate) async fn serve(
    listener: TcpListener,
    root: PathBuf,
    stop: CancellationToken,
    hanging: tokio::sync::watch::Receiver<bool>,
) {
    let files = ServeDir::new(root).append_index_html_on_directories(true);
    let app = axum::Router::new()
        .fallback_service(files)
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let hanging = *hanging.borrow();
                async move {
                    if hanging {
                        std::future::pending::<()>().await;
                    }
                    next.run(request).await
                }
            },
        ));
    // The body follows the head in a second write; without TCP_NODELAY it waits for the head's
    // ACK, which a kept-alive peer (the router's pooled connection) delays by 40 ms.
    let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
        let _ = stream.set_nodelay(true);
    });
    if let Err(error) = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        tracing::warn!(%error, "static server failed");
    }
}
