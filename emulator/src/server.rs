//! Running the emulator: the control plane and the router, each on its own listener, until the
//! shutdown token is cancelled. Taking listeners (not ports) is what lets callers bind port 0.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::control::Platform;

/// How long shutdown waits for API requests in flight (a long-polling journal read, say).
const API_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves the API on `api` and the router on `router` until `shutdown` is cancelled; then stops
/// accepting, lets requests in flight finish, and stops every instance (reaping every child).
pub async fn run(
    platform: Platform,
    api: TcpListener,
    router: TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    run_then(platform, api, router, shutdown, || {}).await
}

/// [`run`], calling `ready` once the state is loaded and both listeners are served (when
/// `afemu serve` prints its ready line).
pub async fn run_then(
    platform: Platform,
    api: TcpListener,
    router: TcpListener,
    shutdown: CancellationToken,
    ready: impl FnOnce(),
) -> std::io::Result<()> {
    let state_file = platform.config().state_file.clone();
    if let Some(path) = &state_file {
        crate::control::snapshot::remove_partial_writes(path);
    }
    if let Some(path) = &state_file
        && path.exists()
    {
        let text = std::fs::read_to_string(path)?;
        let document: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| std::io::Error::other(format!("{}: not JSON: {e}", path.display())))?;
        match platform.import_state(&document).await {
            Ok(()) => tracing::info!(path = %path.display(), "state loaded"),
            // Loaded, but an app did not start or a service did not come back: the rest is
            // served (the failure can be seen and fixed through the API), not given up.
            Err(
                error @ (crate::ApiError::StagingFailed(_) | crate::ApiError::ServiceGateway(_)),
            ) => {
                tracing::warn!(path = %path.display(), %error, "state loaded, but not all of it runs");
            }
            Err(error) => {
                return Err(std::io::Error::other(format!(
                    "{}: {error}",
                    path.display()
                )));
            }
        }
    }
    let saver =
        state_file.map(|path| tokio::spawn(save_state(platform.clone(), path, shutdown.clone())));
    if let Ok(addr) = api.local_addr() {
        platform.route_api_through_router(addr);
    }
    let router_task = tokio::spawn(platform.router().clone().serve(router, shutdown.clone()));
    // The router's accept loop is one scheduling away; the API is served below, and its
    // listener already accepts connections (the kernel queues them).
    while !platform.router().is_accepting() && !router_task.is_finished() {
        tokio::task::yield_now().await;
    }
    ready();
    tokio::spawn(reap_crashes(platform.clone(), shutdown.clone()));
    let app = crate::api::api(platform.clone());
    // As every server here: no Nagle delay between a response's head and its body.
    let api = axum::serve::ListenerExt::tap_io(api, |stream| {
        let _ = stream.set_nodelay(true);
    });
    let serve = axum::serve(
        api,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let api_result = tokio::select! {
        result = serve.into_future() => result,
        // The graceful wait starts at cancellation; bound it.
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(API_SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!("API shutdown: requests still open after the grace period");
            Ok(())
        }
    };
    let _ = router_task.await;
    platform.shutdown().await;
    if let Some(saver) = saver {
        // It saves once more on its way out.
        let _ = saver.await;
    }
    api_result
}

/// Keeps the state file up to date: saved after each change (bursts coalesce) and once more at
/// shutdown.
async fn save_state(platform: Platform, path: std::path::PathBuf, shutdown: CancellationToken) {
    loop {
        let stopping = tokio::select! {
            () = platform.changed() => false,
            () = shutdown.cancelled() => true,
        };
        let exported = {
            let platform = platform.clone();
            tokio::task::spawn_blocking(move || platform.export_state()).await
        };
        match exported {
            Ok(Ok(snapshot)) => {
                let path = path.clone();
                let written = tokio::task::spawn_blocking(move || {
                    let bytes =
                        serde_json::to_vec_pretty(&snapshot).map_err(std::io::Error::other)?;
                    crate::control::snapshot::write_atomically(&path, &bytes)
                })
                .await;
                if let Ok(Err(error)) | Err(error) = written.map_err(std::io::Error::other) {
                    tracing::warn!(%error, "cannot save the state");
                }
            }
            Ok(Err(error)) => tracing::warn!(%error, "cannot export the state"),
            Err(error) => tracing::warn!(%error, "cannot export the state"),
        }
        if stopping {
            return;
        }
    }
}

/// v1's crashes reaper: crashed instances' directories and logs go after the retention (an hour),
/// looked at every 30 s (more often when the retention is short).
async fn reap_crashes(platform: Platform, shutdown: CancellationToken) {
    let retention = platform.config().crash_retention;
    let every = (retention / 4).clamp(Duration::from_millis(10), Duration::from_secs(30));
    let mut ticker = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = ticker.tick() => platform.reap_crashes(retention),
            () = shutdown.cancelled() => return,
        }
    }
}
