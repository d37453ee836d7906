//! The emulator as a library, for tests: start one on free ports in a few milliseconds, drive it
//! with a typed v1 client, send requests through its router, ask its journal what they saw.
//! Dropping the handle shuts it down.
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! # let app = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/apps/hello-v1");
//! let emu = afemu_emulator::Emulator::start().await;   // free ports, ready when it returns
//! let client = emu.client();                             // a logged-in v1 client
//! client.push("blue", &app, &["example.com"], Duration::from_secs(30)).await?;
//! let answer = emu.get("example.com", "/").await;        // through the router
//! assert_eq!(answer.status, 200);
//! assert!(emu.journal().default_error_pages("example.com").is_empty());
//! emu.shutdown().await;                                  // or just drop it
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use afemu_cli::V1Client;
use afemu_router::{Journal, RouterError, Routes, error_page::ROUTER_ERROR_HEADER};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Profile};
use crate::control::Platform;

/// The user `Emulator::client` is logged in as.
pub const TEST_USER: &str = "tester@afemu.local";
const TEST_PASSWORD: &str = "afemu";

/// How to start an emulator.
#[derive(Debug, Clone)]
pub struct EmulatorBuilder {
    config: Config,
    api_addr: SocketAddr,
    router_addr: SocketAddr,
}

impl Default for EmulatorBuilder {
    fn default() -> Self {
        EmulatorBuilder {
            config: Config::default(),
            api_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            router_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

impl EmulatorBuilder {
    /// A timing profile (default `fast`).
    pub fn profile(mut self, profile: Profile) -> Self {
        self.config.profile = profile;
        self.config.timing = profile.timing();
        self
    }

    /// Any other setting.
    pub fn configure(mut self, change: impl FnOnce(&mut Config)) -> Self {
        change(&mut self.config);
        self
    }

    /// The seed of every random choice (the balancer's, if random, and the faults').
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.faults.seed = seed;
        if let afemu_router::Balance::Random { .. } = self.config.router.balance {
            self.config.router.balance = afemu_router::Balance::Random { seed };
        }
        self
    }

    /// Faults in force from the start.
    pub fn faults(mut self, faults: crate::config::Faults) -> Self {
        self.config.faults = faults;
        self
    }

    /// Keep files here instead of in a temporary directory.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.data_dir = Some(dir.into());
        self
    }

    /// Fixed addresses instead of free ports.
    pub fn addresses(mut self, api: SocketAddr, router: SocketAddr) -> Self {
        self.api_addr = api;
        self.router_addr = router;
        self
    }

    /// Binds both listeners and returns once both accept connections.
    pub async fn start(self) -> std::io::Result<Emulator> {
        let (data_dir, temporary) = match &self.config.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                (dir.clone(), None)
            }
            None => {
                let temp = tempfile::Builder::new().prefix("afemu-").tempdir()?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        let api = TcpListener::bind(self.api_addr).await?;
        let router = TcpListener::bind(self.router_addr).await?;
        let api_addr = api.local_addr()?;
        let router_addr = router.local_addr()?;
        let platform = Platform::new(self.config, &data_dir)?;
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(crate::server::run(
            platform.clone(),
            api,
            router,
            shutdown.clone(),
        ));
        // Both listeners are bound, so connections are already accepted by the kernel; wait for
        // the router's accept loop so the health check is honest from the first call.
        while !platform.router().is_accepting() {
            tokio::task::yield_now().await;
        }
        let token = platform
            .login(TEST_USER, TEST_PASSWORD)
            .map_err(std::io::Error::other)?;
        Ok(Emulator {
            platform,
            api_addr,
            router_addr,
            shutdown,
            server: Some(server),
            token,
            http: Client::builder(TokioExecutor::new()).build_http(),
            _data_dir: temporary,
        })
    }
}

/// A running emulator. Dropping it shuts it down (children are killed as the runtime drops the
/// supervisors); `shutdown().await` does it gracefully and waits.
#[derive(Debug)]
pub struct Emulator {
    platform: Platform,
    api_addr: SocketAddr,
    router_addr: SocketAddr,
    shutdown: CancellationToken,
    server: Option<JoinHandle<std::io::Result<()>>>,
    token: String,
    http: Client<HttpConnector, Empty<Bytes>>,
    _data_dir: Option<tempfile::TempDir>,
}

/// What a request through the router got.
#[derive(Debug, Clone)]
pub struct RouterAnswer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
    /// Set when the router answered with its own page.
    pub router_error: Option<String>,
}

impl RouterAnswer {
    pub fn is_default_error_page(&self) -> bool {
        self.router_error
            .as_deref()
            .is_some_and(|e| e != RouterError::BadRequest.as_str())
    }
}

impl Emulator {
    /// An emulator with the `fast` profile on free ports. Panics if it cannot start (a test
    /// cannot go on without it); use [`Emulator::builder`] to handle the error.
    pub async fn start() -> Emulator {
        Emulator::builder()
            .start()
            .await
            .expect("the emulator starts on free loopback ports")
    }

    pub fn builder() -> EmulatorBuilder {
        EmulatorBuilder::default()
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }
    pub fn router_addr(&self) -> SocketAddr {
        self.router_addr
    }
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_addr)
    }
    pub fn router_url(&self) -> String {
        format!("http://{}", self.router_addr)
    }
    pub fn platform(&self) -> &Platform {
        &self.platform
    }
    pub fn journal(&self) -> &Journal {
        self.platform.journal()
    }
    pub fn routes(&self) -> &Routes {
        self.platform.routes()
    }

    /// A v1 client logged in as [`TEST_USER`], polling every 10 ms where af polls every second.
    pub fn client(&self) -> V1Client {
        V1Client::new(&self.api_url())
            .with_token(self.token.clone())
            .with_poll_interval(Duration::from_millis(10))
    }

    /// `GET http://<host><path>` through the router.
    pub async fn get(&self, host: &str, path: &str) -> RouterAnswer {
        let request = http::Request::get(format!("http://{}{path}", self.router_addr))
            .header(http::header::HOST, host)
            .body(Empty::new())
            .expect("a valid request");
        let response = self
            .http
            .request(request)
            .await
            .expect("the router answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        let router_error = headers
            .get(ROUTER_ERROR_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        RouterAnswer {
            status,
            headers,
            body,
            router_error,
        }
    }

    /// A clean slate, as `POST /_afemu/reset` makes it, with [`TEST_USER`] logged in again (the
    /// next [`Emulator::client`] has the new token).
    pub async fn reset(&mut self) {
        self.platform.reset().await;
        self.token = self
            .platform
            .login(TEST_USER, TEST_PASSWORD)
            .expect("the test user can log in");
    }

    /// Applies faults now, as `PUT /_afemu/faults` does (see [`Platform::apply_faults`]).
    pub fn inject(&self, faults: serde_json::Value) -> Result<serde_json::Value, crate::ApiError> {
        self.platform.apply_faults(&faults)
    }

    /// Stops the emulator gracefully: requests in flight finish, every instance is stopped.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
