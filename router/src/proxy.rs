//! The proxy: accepts HTTP/1.1 connections, routes each request by its `Host` to one backend of
//! the current route table, streams the request and the response through, and records the outcome
//! in the journal. Backend connections are pooled and kept alive.
//!
//! What it deliberately does not do, as v1 did not: retry on another instance, buffer bodies,
//! follow redirects. What it adds over v1: `X-Afemu-Router-Error` on its own pages.
//!
//! # How it works
//!
//! One task per client connection does everything, in order: read a request head, route it, write
//! the head (edited: hop-by-hop headers out, forwarding headers in) to a pooled connection to the
//! chosen backend, stream the request body while waiting for the response head, write the response
//! head (edited the same way) and stream the body back, record the request, and go round again.
//! Heads are parsed with `httparse` straight out of the read buffers and written out as bytes;
//! bodies are not decoded, only measured (`http1.rs`), so they pass through byte for byte. This
//! is how nginx proxies; it does per request about half the work of a general-purpose HTTP server
//! and client (hyper) put back to back, which is what it takes to be as fast as nginx
//! (docs/PERFORMANCE.md).
//!
//! # Limits
//!
//! Every buffer is bounded (a request head, a response head, interim responses, one read of a
//! body) and every phase has its deadline: the idle keep-alive time, the request head, each read
//! of a request body, the connection to the app, the response head, each read of a response body
//! and each write to the client ([`RouterConfig`]). A side that does not take what it is sent
//! stops the other side being read; a client that goes away releases its app connection at once.
//! A timer is armed only when a read or write has to wait, so the common exchange costs no more
//! than before. Refused requests are journaled with the reason. docs/ROUTER-THREATS.md is the
//! threat model this holds to.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Buf, BytesMut};
use http::Method;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::balance::Balance;
use crate::error_page::{ErrorPages, ROUTER_ERROR_HEADER, RouterError};
use crate::host::{DEFAULT_DEV_SUFFIX, normalise_host};
use crate::http1::{
    self, ChunkError, ChunkScanner, ConnectionOptions, Framing, FramingHeaders, Kind, MAX_HEADERS,
    MAX_REQUEST_HEAD, MAX_RESPONSE_HEAD,
};
use crate::journal::{Journal, NewEntry, Refused};
use crate::pool::{self, Connection};
use crate::table::{Backend, HostRoute, Routes};

/// How the router behaves; every field has v1's value (or afemu's documented choice) by default.
///
/// Every phase of an exchange has a limit of its own (`docs/ROUTER-THREATS.md`), so that no client
/// and no app can hold a connection, a file descriptor or memory for longer than these say.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    pub balance: Balance,
    /// Stripped from hosts before lookup (default `.localhost`); empty to keep hosts as they are.
    pub dev_suffix: String,
    pub error_pages: ErrorPages,
    /// How long a backend may take to send its response head, from the moment the request has
    /// been sent whole: v1's router v2 waited 120 s; never below 75 s by default, since clients of
    /// the time expected that much.
    pub backend_timeout: Duration,
    /// How long to wait for a backend to accept the connection (router v2: 10 s).
    pub connect_timeout: Duration,
    /// A request carrying `X-Vcap-Trace: <trace_key>` gets `X-Vcap-Backend`/`X-Vcap-Router` back.
    /// Empty (the default): no request does. v1's default key, "22", was public.
    pub trace_key: String,
    /// How long a client may take to send a request head, from its first byte; a client that
    /// does not finish in time is disconnected.
    pub header_read_timeout: Duration,
    /// How long an idle keep-alive client connection is kept open waiting for the next request
    /// (router v2's nginx: 75 s).
    pub keep_alive_timeout: Duration,
    /// How long each read of a request body from the client (and each write of it to the app)
    /// may take before the request is given up with 408 (nginx's `client_body_timeout`: 60 s).
    pub request_body_timeout: Duration,
    /// How long each read of a response body from the app may take once its head has been
    /// passed on (router v2's `proxy_read_timeout`: 120 s).
    pub response_body_timeout: Duration,
    /// How long each write to the client may take: a client that stops reading is disconnected
    /// (nginx's `send_timeout`: 60 s).
    pub client_write_timeout: Duration,
    /// How long an idle pooled connection to an app is kept (the router's 60 s of old); idle
    /// connections are looked at in the background, so one the app has closed is closed too.
    pub pool_idle_timeout: Duration,
    /// How long shutdown waits for requests in flight before closing their connections.
    pub shutdown_grace: Duration,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            balance: Balance::RoundRobin,
            dev_suffix: DEFAULT_DEV_SUFFIX.into(),
            error_pages: ErrorPages::appfog(),
            backend_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
            trace_key: String::new(),
            header_read_timeout: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(75),
            request_body_timeout: Duration::from_secs(60),
            response_body_timeout: Duration::from_secs(120),
            client_write_timeout: Duration::from_secs(60),
            pool_idle_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

struct Shared {
    config: RouterConfig,
    routes: Routes,
    journal: Journal,
    accepting: AtomicBool,
}

/// The router: clone it freely, serve it on as many listeners as you like.
#[derive(Clone)]
pub struct Router {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Router {
    pub fn new(config: RouterConfig, routes: Routes, journal: Journal) -> Router {
        Router {
            shared: Arc::new(Shared {
                config,
                routes,
                journal,
                accepting: AtomicBool::new(false),
            }),
        }
    }

    pub fn routes(&self) -> &Routes {
        &self.shared.routes
    }

    pub fn journal(&self) -> &Journal {
        &self.shared.journal
    }

    /// Whether an accept loop is running (the health check's "the router accepts connections").
    pub fn is_accepting(&self) -> bool {
        self.shared.accepting.load(Ordering::Acquire)
    }

    /// Serves connections from `listener` until `shutdown` is cancelled, then stops accepting,
    /// lets requests in flight finish (up to the configured grace) and returns.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) {
        let router_ip: Arc<str> = listener
            .local_addr()
            .map(|addr| addr.ip().to_string())
            .unwrap_or_default()
            .into();
        let connections = TaskTracker::new();
        let sweeper = tokio::spawn(sweep_pools(self.shared.clone(), shutdown.clone()));
        let mut accept_errors = AcceptErrors::default();
        self.shared.accepting.store(true, Ordering::Release);
        loop {
            let (stream, peer) = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors, or a connection reset before accept: not
                        // fatal. Trying again at once would spin (the error stays until a
                        // descriptor is freed), so wait, longer each time in a row.
                        let (pause, _logged) = accept_errors.failed(&error);
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            () = tokio::time::sleep(pause) => continue,
                        }
                    }
                },
            };
            accept_errors.succeeded();
            let _ = stream.set_nodelay(true);
            let client = ClientConnection {
                shared: self.shared.clone(),
                stream,
                buffer: BytesMut::with_capacity(BUFFER),
                scanned: 0,
                out: Vec::with_capacity(BUFFER),
                interim: Vec::new(),
                path: String::new(),
                // Formatted once per connection, not per request.
                client_ip: peer.ip().to_string().into(),
                router_ip: router_ip.clone(),
            };
            // A token of its own: an idle connection waits on it for the shutdown, and waiting on
            // the shared one would take that token's lock on every request of every connection.
            connections.spawn(client.run(shutdown.child_token()));
        }
        self.shared.accepting.store(false, Ordering::Release);
        drop(listener);
        connections.close();
        if tokio::time::timeout(self.shared.config.shutdown_grace, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!("router shutdown: connections still open after the grace period");
        }
        sweeper.abort();
    }
}

/// The first pause after a failed accept, and the longest.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MOST: Duration = Duration::from_millis(500);
/// Failed accepts are logged at most once in this long (with how many were not).
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(5);

/// Failed accepts in a row: how long to pause, and when to say so. On tokio's clock, so that a
/// test can run it on paused time.
#[derive(Debug)]
struct AcceptErrors {
    pause: Duration,
    last_warned: Option<tokio::time::Instant>,
    unlogged: u64,
}

impl Default for AcceptErrors {
    fn default() -> Self {
        AcceptErrors {
            pause: ACCEPT_BACKOFF_FIRST,
            last_warned: None,
            unlogged: 0,
        }
    }
}

impl AcceptErrors {
    /// Records a failed accept; returns how long to pause before the next, and whether it was
    /// logged.
    fn failed(&mut self, error: &std::io::Error) -> (Duration, bool) {
        let now = tokio::time::Instant::now();
        let log = self
            .last_warned
            .is_none_or(|at| now.duration_since(at) >= ACCEPT_WARN_EVERY);
        if log {
            tracing::warn!(
                %error,
                not_logged = self.unlogged,
                "router accept failed; backing off (at most one such line every {ACCEPT_WARN_EVERY:?})"
            );
            self.last_warned = Some(now);
            self.unlogged = 0;
        } else {
            self.unlogged += 1;
        }
        let pause = self.pause;
        self.pause = (self.pause * 2).min(ACCEPT_BACKOFF_MOST);
        (pause, log)
    }

    fn succeeded(&mut self) {
        self.pause = ACCEPT_BACKOFF_FIRST;
    }
}

/// Sweeps every backend's pool of idle connections, so that they expire on time and those the
/// app has closed are closed at once rather than when the pool is next used.
async fn sweep_pools(shared: Arc<Shared>, shutdown: CancellationToken) {
    let idle_timeout = shared.config.pool_idle_timeout;
    let every = (idle_timeout / 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let table = shared.routes.load();
        for route in table.hosts() {
            for backend in route.backends() {
                backend.pool().reap(idle_timeout);
            }
        }
    }
}

/// The read and write buffers a client connection starts with.
const BUFFER: usize = 8 * 1024;

/// How long a connection closed with request bytes still unread keeps reading (and discarding)
/// them, so that the kernel does not answer them with a reset that destroys the response before
/// the client has read it (nginx's lingering close).
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 4 << 20;

/// A deadline that is never reached in practice: where an idle timer starts.
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The most interim (1xx) response bytes held for a client that is not taking them: beyond
/// this, the app is not read from until the client has taken them (plus at most one more head).
const MAX_INTERIM: usize = 64 * 1024;

/// One client connection and everything it reuses from request to request.
struct ClientConnection {
    shared: Arc<Shared>,
    stream: TcpStream,
    /// What was read from the client and not passed on yet.
    buffer: BytesMut,
    /// How much of `buffer` has been looked at for the end of a head that is not complete yet.
    scanned: usize,
    /// The next head to write (to the backend, then to the client).
    out: Vec<u8>,
    /// Interim (1xx) responses from the backend, on their way to the client (bounded by
    /// [`MAX_INTERIM`]), always written before the final head of the same exchange.
    interim: Vec<u8>,
    /// The current request's path, for the journal.
    path: String,
    client_ip: Box<str>,
    router_ip: Arc<str>,
}

/// The connection's timers, each one allocated once and pushed forward as needed (a lock-free
/// update when it moves later, not a new timer).
struct Timers<'a> {
    /// The keep-alive idle time, then the request head; during an exchange, the request body.
    head: Pin<&'a mut Sleep>,
    /// The backend: connection and response head, then each read of the response body.
    backend: Pin<&'a mut Sleep>,
    /// Each write to the client.
    write: Pin<&'a mut Sleep>,
}

/// What becomes of the client connection after a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum After {
    KeepAlive,
    Close,
    /// Close, but read what the client still sends for a while first (see [`LINGER`]).
    Linger,
}

/// The request being served, as far as the journal and the response need to know it.
struct Exchange {
    start: SystemTime,
    started: Instant,
    method: Method,
    http10: bool,
    head_request: bool,
    /// Whether the client lets the connection carry another request.
    keep_alive: bool,
    body: Framing,
    trace: bool,
    /// The client waits for `100 Continue` before it sends the body.
    expect_continue: bool,
}

/// Where a routed request goes.
enum Destination {
    Backend {
        backend: Arc<Backend>,
        host: Arc<str>,
        version: u64,
    },
    Page {
        error: RouterError,
        host: Arc<str>,
        version: u64,
        /// Why, when the router refuses the request rather than failing to route it.
        refused: Option<Refused>,
    },
}

/// Why a request got no response from its backend.
#[derive(Debug, thiserror::Error)]
enum ForwardError {
    #[error(transparent)]
    Connect(#[from] pool::ConnectError),
    #[error("writing to the app: {0}")]
    Write(std::io::Error),
    #[error("reading from the app: {0}")]
    Read(std::io::Error),
    #[error("the app closed the connection before answering")]
    Closed,
    #[error("the app's response head is malformed")]
    Malformed,
    #[error("the app's response head is over {MAX_RESPONSE_HEAD} bytes")]
    TooLarge,
    #[error("the app's response: {0}")]
    Framing(#[from] http1::FramingError),
    /// The client's chunked request body broke the framing: the client's doing.
    #[error("the request body is a malformed chunked body")]
    MalformedBody,
    /// The client stopped sending its request body.
    #[error("the client sent no more of its request body in time")]
    BodyTimeout,
    #[error("the app did not answer in time")]
    Timeout,
    /// The client went away before the response head came (or in the middle of its body).
    #[error("the client went away")]
    ClientGone,
}

impl ForwardError {
    fn blame(&self) -> RouterError {
        match self {
            ForwardError::MalformedBody | ForwardError::BodyTimeout => RouterError::BadRequest,
            ForwardError::Timeout => RouterError::Timeout,
            _ => RouterError::BadGateway,
        }
    }
}

/// A response head from the backend, as it is being passed on.
struct ResponseHead {
    status: u16,
    body: Framing,
    /// A body delimited by the close goes to an HTTP/1.1 client re-chunked, so that its
    /// connection stays open.
    rechunk: bool,
    /// A chunked body goes to an HTTP/1.0 client decoded (it cannot read chunks), delimited by
    /// the close.
    dechunk: bool,
    /// Whether the backend connection can carry another request once the body has ended.
    backend_keep_alive: bool,
    after: After,
}

/// What the journal is told of a request the router refuses.
struct RefusedRequest<'a> {
    start: SystemTime,
    started: Instant,
    method: &'a Method,
    host: &'a Arc<str>,
    version: u64,
    backend: Option<&'a Arc<Backend>>,
}

impl ClientConnection {
    async fn run(mut self, shutdown: CancellationToken) {
        let head = tokio::time::sleep(FAR);
        let backend = tokio::time::sleep(FAR);
        let write = tokio::time::sleep(FAR);
        let stop = shutdown.cancelled();
        tokio::pin!(head, backend, write, stop);
        let mut timers = Timers {
            head: head.as_mut(),
            backend: backend.as_mut(),
            write: write.as_mut(),
        };
        let after = loop {
            let after = self.serve_one(&mut timers, stop.as_mut(), &shutdown).await;
            if after != After::KeepAlive {
                break after;
            }
        };
        if after == After::Linger {
            linger_close(self.stream).await;
        } else {
            let _ = self.stream.shutdown().await;
        }
    }

    /// Reads one request and answers it; says whether the connection carries on.
    async fn serve_one(
        &mut self,
        timers: &mut Timers<'_>,
        mut stop: Pin<&mut tokio_util::sync::WaitForCancellationFuture<'_>>,
        shutdown: &CancellationToken,
    ) -> After {
        // An idle connection has the keep-alive time for the next request to begin; once it
        // has, the client has the head timeout to finish the head (from its first byte, or
        // from now for a head already begun).
        let config = &self.shared.config;
        let mut idle = self.buffer.is_empty();
        let (keep_alive_timeout, head_timeout) =
            (config.keep_alive_timeout, config.header_read_timeout);
        let first_wait = if idle {
            keep_alive_timeout
        } else {
            head_timeout
        };
        timers
            .head
            .as_mut()
            .reset((Instant::now() + first_wait).into());
        let (exchange, destination) = loop {
            if !self.buffer.is_empty() {
                // A head that came in pieces is parsed again only once it may be complete.
                let may_end = self.scanned == 0 || http1::head_may_end(&self.buffer, self.scanned);
                let parsed = if may_end {
                    self.parse_request()
                } else if self.buffer.len() >= MAX_REQUEST_HEAD {
                    Err(Refused::HeadTooLarge)
                } else {
                    Ok(None)
                };
                match parsed {
                    Ok(Some((head_len, exchange, destination))) => {
                        self.buffer.advance(head_len);
                        self.scanned = 0;
                        break (exchange, destination);
                    }
                    Ok(None) => {
                        self.scanned = self.buffer.len();
                        if idle {
                            // Only a head that does not come whole costs a second timer reset.
                            idle = false;
                            timers
                                .head
                                .as_mut()
                                .reset((Instant::now() + head_timeout).into());
                        }
                    }
                    Err(refused) => return self.refuse(refused, None, timers).await,
                }
            }
            reserve(&mut self.buffer);
            let waiting = self.buffer.is_empty();
            tokio::select! {
                biased;
                read = self.stream.read_buf(&mut self.buffer) => match read {
                    Ok(0) | Err(_) => return After::Close,
                    Ok(_) => {}
                },
                () = timers.head.as_mut() => {
                    if waiting {
                        return After::Close;
                    }
                    // A head begun and not finished: closed without an answer, as nginx and
                    // hyper do, but journaled.
                    tracing::debug!("client sent no complete request head in time");
                    self.journal_refusal(Refused::HeadTimeout, None);
                    return After::Close;
                }
                () = stop.as_mut(), if waiting => return After::Close,
            }
        };
        match destination {
            Destination::Page {
                error,
                host,
                version,
                refused,
            } => {
                // A small body that came with the head is dropped, so that the connection can
                // carry on; one still on its way is not waited for.
                let mut unread = Progress::new(exchange.body);
                if let Ok(taken) = unread.take(&self.buffer)
                    && unread.is_done()
                {
                    self.buffer.advance(taken);
                }
                let after = if unread.is_done() {
                    self.page_after(&exchange, shutdown)
                } else {
                    After::Linger
                };
                let page = Page {
                    error,
                    host: &host,
                    version,
                    backend: None,
                    refused,
                };
                self.answer_with_page(&exchange, page, after, timers).await
            }
            Destination::Backend {
                backend,
                host,
                version,
            } => {
                self.proxy(exchange, backend, host, version, timers, shutdown)
                    .await
            }
        }
    }

    /// What happens to the connection after a request whose body has been read whole.
    fn page_after(&self, exchange: &Exchange, shutdown: &CancellationToken) -> After {
        if exchange.keep_alive && !shutdown.is_cancelled() {
            After::KeepAlive
        } else {
            After::Close
        }
    }

    /// Parses the request head at the start of the buffer, routes it, and writes the head for the
    /// backend into `out`. `Ok(None)`: the head is not complete yet.
    fn parse_request(&mut self) -> Result<Option<(usize, Exchange, Destination)>, Refused> {
        parse_request(
            &self.shared,
            &self.buffer,
            &mut self.out,
            &mut self.path,
            &self.client_ip,
        )
    }

    /// Journals a request the router refused. `request` is what is known of it, when its head
    /// could be read; otherwise the method is the request line's first word (or `-`) and the
    /// host is empty.
    fn journal_refusal(&mut self, refused: Refused, request: Option<RefusedRequest<'_>>) {
        let unknown_host: Arc<str>;
        let unknown_method: Method;
        let request = match request {
            Some(request) => request,
            None => {
                self.path.clear();
                unknown_host = Arc::from("");
                unknown_method = method_of(&self.buffer);
                RefusedRequest {
                    start: SystemTime::now(),
                    started: Instant::now(),
                    method: &unknown_method,
                    host: &unknown_host,
                    version: self.shared.routes.load().version(),
                    backend: None,
                }
            }
        };
        self.shared.journal.record(NewEntry {
            start: request.start,
            end: request.start + request.started.elapsed(),
            host: request.host,
            method: request.method,
            path: &self.path,
            status: refused.status(),
            route_table_version: request.version,
            app: request.backend.map(|b| b.app()),
            instance: request.backend.map(|b| b.instance_index()),
            version: request.backend.map(|b| b.version()),
            router_error: Some(RouterError::BadRequest),
            aborted: false,
            refused: Some(refused),
        });
    }

    /// Refuses a request with a bare answer (or none, for HTTP/2), journals it, and closes the
    /// connection after it.
    async fn refuse(
        &mut self,
        refused: Refused,
        request: Option<RefusedRequest<'_>>,
        timers: &mut Timers<'_>,
    ) -> After {
        tracing::debug!(?refused, "refused a request");
        self.journal_refusal(refused, request);
        let status = match refused {
            Refused::Http2Preface | Refused::HeadTimeout => return After::Close,
            Refused::HeadTooLarge => "431 Request Header Fields Too Large",
            Refused::BodyTimeout => "408 Request Timeout",
            _ => "400 Bad Request",
        };
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\ndate: {}\r\n\r\n",
            httpdate::fmt_http_date(SystemTime::now())
        );
        let limit = self.shared.config.client_write_timeout;
        let _ = write_timed(
            &mut self.stream,
            answer.as_bytes(),
            timers.write.as_mut(),
            limit,
        )
        .await;
        After::Linger
    }

    /// Sends one of the router's own pages and journals it.
    async fn answer_with_page(
        &mut self,
        exchange: &Exchange,
        page: Page<'_>,
        mut after: After,
        timers: &mut Timers<'_>,
    ) -> After {
        let error = page.error;
        if error == RouterError::BadRequest && after == After::KeepAlive {
            after = After::Close;
        }
        let rendered = self.shared.config.error_pages.page(error);
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(if exchange.http10 {
            b"HTTP/1.0 "
        } else {
            b"HTTP/1.1 "
        });
        out.extend_from_slice(error.status().to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(error.reason().as_bytes());
        out.extend_from_slice(b"\r\n");
        http1::push_header(out, "content-type", rendered.content_type.as_bytes());
        http1::push_header(out, ROUTER_ERROR_HEADER, error.as_str().as_bytes());
        http1::push_header(out, "cache-control", b"no-store");
        http1::push_header(
            out,
            "content-length",
            rendered.body.len().to_string().as_bytes(),
        );
        http1::push_header(
            out,
            "date",
            httpdate::fmt_http_date(SystemTime::now()).as_bytes(),
        );
        push_connection(out, exchange.http10, after);
        out.extend_from_slice(b"\r\n");
        if !exchange.head_request {
            out.extend_from_slice(&rendered.body);
        }
        let limit = self.shared.config.client_write_timeout;
        let written = write_timed(&mut self.stream, &self.out, timers.write.as_mut(), limit).await;
        self.shared.journal.record(NewEntry {
            start: exchange.start,
            end: exchange.start + exchange.started.elapsed(),
            host: page.host,
            method: &exchange.method,
            path: &self.path,
            status: error.status(),
            route_table_version: page.version,
            app: page.backend.map(|b| b.app()),
            instance: page.backend.map(|b| b.instance_index()),
            version: page.backend.map(|b| b.version()),
            router_error: Some(error),
            aborted: written.is_err(),
            refused: page.refused,
        });
        if written.is_err() {
            After::Close
        } else {
            after
        }
    }

    /// Forwards a routed request to its backend and streams the response back.
    async fn proxy(
        &mut self,
        exchange: Exchange,
        backend: Arc<Backend>,
        host: Arc<str>,
        version: u64,
        timers: &mut Timers<'_>,
        shutdown: &CancellationToken,
    ) -> After {
        let config = &self.shared.config;
        let (backend_timeout, connect_timeout, body_timeout, pool_idle_timeout) = (
            config.backend_timeout,
            config.connect_timeout,
            config.request_body_timeout,
            config.pool_idle_timeout,
        );
        // The app has this long to answer: connection, request and response head (pushed
        // forward once the request body, if it streams, has been sent whole).
        timers
            .backend
            .as_mut()
            .reset((exchange.started + backend_timeout).into());
        // Nothing of an earlier exchange is passed on in this one.
        self.interim.clear();
        // The part of the body that came with the head goes out with the head.
        let mut sender = BodySender::new(exchange.body);
        let first = match sender.take(&self.buffer) {
            Ok(first) => first,
            Err(error) => {
                let page = Page {
                    error: error.blame(),
                    host: &host,
                    version,
                    backend: Some(&backend),
                    refused: Some(Refused::MalformedBody),
                };
                return self
                    .answer_with_page(&exchange, page, After::Linger, timers)
                    .await;
            }
        };
        self.out.extend_from_slice(&self.buffer[..first]);
        self.buffer.advance(first);
        let whole_request_in_head = sender.is_done();
        if !whole_request_in_head {
            // The client has this long for each part of its body.
            timers
                .head
                .as_mut()
                .reset((Instant::now() + body_timeout).into());
            if exchange.expect_continue {
                // Written as soon as the exchange starts, by the loop that passes interim
                // responses on.
                self.interim
                    .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
        }
        let context = ResponseContext {
            http10: exchange.http10,
            head_request: exchange.head_request,
            trace: exchange.trace.then(|| (backend.addr(), &*self.router_ip)),
            backend: &backend,
        };
        let keep_alive = exchange.keep_alive;

        let mut retried = false;
        let outcome = loop {
            // A request sent again goes on a new connection, not on another idle one that may
            // have been closed just the same.
            let pooled = if retried {
                None
            } else {
                backend.pool().checkout(pool_idle_timeout)
            };
            let mut connection = match pooled {
                Some(connection) => connection,
                None => {
                    let connecting = pool::connect(backend.addr(), connect_timeout);
                    tokio::select! {
                        biased;
                        connected = connecting => match connected {
                            Ok(connection) => connection,
                            Err(error) => break Err(ForwardError::Connect(error)),
                        },
                        () = timers.backend.as_mut() => break Err(ForwardError::Timeout),
                    }
                }
            };
            let mut body_sent = sender.is_done();
            let written = tokio::select! {
                biased;
                written = connection.stream.write_all(&self.out) => written.map_err(ForwardError::Write),
                () = timers.backend.as_mut() => Err(ForwardError::Timeout),
            };
            let answered = match written {
                Err(error) => Err(error),
                Ok(()) => {
                    let (client, buffer, out, interim) = (
                        &mut self.stream,
                        &mut self.buffer,
                        &mut self.out,
                        &mut self.interim,
                    );
                    let (body_timer, backend_timer) =
                        (timers.head.as_mut(), timers.backend.as_mut());
                    let (mut body_timer, mut backend_timer) = (body_timer, backend_timer);
                    let mut scanned = 0;
                    std::future::poll_fn(|cx| {
                        // Keep-alive is decided when the head comes: a request body the app did
                        // not wait for is left unread, and the client's connection closes.
                        let after = if !body_sent {
                            After::Linger
                        } else if keep_alive && !shutdown.is_cancelled() {
                            After::KeepAlive
                        } else {
                            After::Close
                        };
                        loop {
                            // Interim responses (100 Continue, 103 Early Hints) go on to the
                            // client at once, as far as its socket takes them (a full socket
                            // registers for when it is not).
                            while !interim.is_empty() {
                                match Pin::new(&mut *client).poll_write(cx, interim) {
                                    Poll::Ready(Ok(n)) if n > 0 => {
                                        interim.drain(..n);
                                    }
                                    Poll::Ready(_) => {
                                        return Poll::Ready(Err(ForwardError::ClientGone));
                                    }
                                    Poll::Pending => break,
                                }
                            }
                            if interim.len() >= MAX_INTERIM {
                                // The client is not taking them: the app waits until it does.
                                break;
                            }
                            match poll_response_head(
                                cx,
                                &mut connection,
                                &context,
                                after,
                                out,
                                interim,
                                &mut scanned,
                            ) {
                                Poll::Ready(Ok(Some(head))) => return Poll::Ready(Ok(head)),
                                // Interim responses to pass on before reading more.
                                Poll::Ready(Ok(None)) => continue,
                                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                                Poll::Pending => break,
                            }
                        }
                        if !body_sent {
                            match sender.poll_send(cx, client, buffer, &mut connection.stream) {
                                Poll::Ready(Ok(())) => {
                                    body_sent = true;
                                    // The app's time to answer starts now the request is whole.
                                    backend_timer
                                        .as_mut()
                                        .reset((Instant::now() + backend_timeout).into());
                                }
                                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                                Poll::Pending => {
                                    if sender.take_progress() {
                                        body_timer
                                            .as_mut()
                                            .reset((Instant::now() + body_timeout).into());
                                    }
                                    if body_timer.as_mut().poll(cx).is_ready() {
                                        return Poll::Ready(Err(ForwardError::BodyTimeout));
                                    }
                                }
                            }
                        }
                        if body_sent && poll_client_gone(cx, client, buffer).is_ready() {
                            return Poll::Ready(Err(ForwardError::ClientGone));
                        }
                        if backend_timer.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(Err(ForwardError::Timeout));
                        }
                        Poll::Pending
                    })
                    .await
                }
            };
            match answered {
                // A kept-alive connection the app closed just as it was taken: nothing reached
                // the app, so a request that can be sent again whole goes out once more, on a
                // new connection (RFC 9110 §9.2.2).
                Err(error)
                    if connection.reused
                        && !retried
                        && whole_request_in_head
                        && connection.buffer.is_empty()
                        && exchange.method.is_idempotent()
                        && error.is_closed_connection() =>
                {
                    tracing::debug!(%error, "kept-alive connection was closed; sending again");
                    retried = true;
                }
                Err(error) => break Err(error),
                Ok(head) => break Ok((head, connection, body_sent)),
            }
        };

        let (head, mut connection, body_sent) = match outcome {
            Ok(answered) => answered,
            Err(ForwardError::ClientGone) => {
                self.journal_proxied(
                    &exchange,
                    &host,
                    version,
                    &backend,
                    CLIENT_CLOSED_REQUEST,
                    true,
                );
                backend.request_finished();
                return After::Close;
            }
            Err(ForwardError::BodyTimeout) => {
                let request = RefusedRequest {
                    start: exchange.start,
                    started: exchange.started,
                    method: &exchange.method,
                    host: &host,
                    version,
                    backend: Some(&backend),
                };
                let after = self
                    .refuse(Refused::BodyTimeout, Some(request), timers)
                    .await;
                backend.request_finished();
                return after;
            }
            Err(error) => {
                tracing::debug!(%error, backend = %backend.addr(), "forwarding failed");
                backend.request_finished();
                let after = if sender.is_done() {
                    self.page_after(&exchange, shutdown)
                } else {
                    After::Linger
                };
                let refused =
                    matches!(error, ForwardError::MalformedBody).then_some(Refused::MalformedBody);
                let page = Page {
                    error: error.blame(),
                    host: &host,
                    version,
                    backend: Some(&backend),
                    refused,
                };
                return self.answer_with_page(&exchange, page, after, timers).await;
            }
        };

        if !self.interim.is_empty() {
            // Interim responses that came in the same read as the final head go out before it,
            // in this exchange and not the next.
            self.interim.extend_from_slice(&self.out);
            std::mem::swap(&mut self.interim, &mut self.out);
            self.interim.clear();
        }
        let limits = RelayLimits {
            read: self.shared.config.response_body_timeout,
            write: self.shared.config.client_write_timeout,
        };
        let relayed = relay_body(
            &mut connection,
            &mut self.stream,
            &mut self.buffer,
            &mut self.out,
            &head,
            timers,
            limits,
        )
        .await;
        let completed = relayed.is_ok();
        if let Err(error) = relayed {
            tracing::debug!(%error, backend = %backend.addr(), "response cut short");
        }
        if completed && head.backend_keep_alive && body_sent && connection.buffer.is_empty() {
            backend.pool().checkin(connection);
        }
        self.journal_proxied(&exchange, &host, version, &backend, head.status, !completed);
        backend.request_finished();
        if completed { head.after } else { After::Close }
    }

    fn journal_proxied(
        &self,
        exchange: &Exchange,
        host: &Arc<str>,
        version: u64,
        backend: &Arc<Backend>,
        status: u16,
        aborted: bool,
    ) {
        self.shared.journal.record(NewEntry {
            start: exchange.start,
            end: exchange.start + exchange.started.elapsed(),
            host,
            method: &exchange.method,
            path: &self.path,
            status,
            route_table_version: version,
            app: Some(backend.app()),
            instance: Some(backend.instance_index()),
            version: Some(backend.version()),
            router_error: None,
            aborted,
            refused: None,
        });
    }
}

/// One of the router's own pages, and what the journal says of it.
struct Page<'a> {
    error: RouterError,
    host: &'a Arc<str>,
    version: u64,
    backend: Option<&'a Arc<Backend>>,
    refused: Option<Refused>,
}

/// The method a refused request named, for the journal: the request line's first word when it
/// is a method at all, else `-`.
fn method_of(buffer: &[u8]) -> Method {
    let word = buffer.split(|&b| b == b' ').next().unwrap_or_default();
    (word.len() <= 32)
        .then(|| Method::from_bytes(word).ok())
        .flatten()
        .unwrap_or_else(|| Method::from_bytes(b"-").unwrap_or_default())
}

/// Writes all of `bytes` to the client; gives up when a write makes no progress for `limit`
/// (nginx's `send_timeout`). The timer is armed only when the socket is full.
async fn write_timed(
    stream: &mut TcpStream,
    mut bytes: &[u8],
    mut timer: Pin<&mut Sleep>,
    limit: Duration,
) -> std::io::Result<()> {
    let mut armed = false;
    std::future::poll_fn(|cx| {
        while !bytes.is_empty() {
            match Pin::new(&mut *stream).poll_write(cx, bytes) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(written)) => {
                    bytes = &bytes[written..];
                    armed = false;
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => {
                    if !armed {
                        timer.as_mut().reset((Instant::now() + limit).into());
                        armed = true;
                    }
                    if timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "the client took nothing for the client write timeout",
                        )));
                    }
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Ok(()))
    })
    .await
}

/// Parses the request head at the start of `buffer`, routes it, and writes the head for the
/// backend into `out` and the request's path into `path`. `Ok(None)`: the head is not complete
/// yet.
fn parse_request(
    shared: &Shared,
    buffer: &[u8],
    out: &mut Vec<u8>,
    path: &mut String,
    client_ip: &str,
) -> Result<Option<(usize, Exchange, Destination)>, Refused> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(buffer) {
        Ok(httparse::Status::Complete(length)) if length <= MAX_REQUEST_HEAD => length,
        Ok(httparse::Status::Complete(_)) | Err(httparse::Error::TooManyHeaders) => {
            return Err(Refused::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) if buffer.len() >= MAX_REQUEST_HEAD => {
            return Err(Refused::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::Version) if buffer.starts_with(b"PRI * HTTP/2.0") => {
            return Err(Refused::Http2Preface);
        }
        Err(_) => return Err(Refused::MalformedHead),
    };
    let start = SystemTime::now();
    let started = Instant::now();
    let (Some(method), Some(target), Some(minor)) = (request.method, request.path, request.version)
    else {
        return Err(Refused::MalformedHead);
    };
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| Refused::MalformedHead)?;
    let http10 = minor == 0;

    // What the headers say, in one pass.
    let mut host = None;
    let mut hosts = 0;
    let mut framing = FramingHeaders::default();
    let mut connection = ConnectionOptions::default();
    let mut trace = false;
    let mut expect_continue = false;
    let mut sticky = None;
    for header in request.headers.iter() {
        match http1::classify(header.name) {
            Kind::Host => {
                hosts += 1;
                host = visible_ascii(header.value);
            }
            Kind::ContentLength => framing.request_content_length(header.value),
            Kind::TransferEncoding => framing.transfer_encoding(header.value),
            Kind::Connection => connection.add(header.value),
            Kind::XVcapTrace => {
                // No key configured: no value matches, not even an empty one.
                let key = shared.config.trace_key.as_bytes();
                trace |= !key.is_empty() && header.value == key;
            }
            Kind::Cookie if sticky.is_none() => sticky = sticky_id(header.value),
            Kind::Expect => expect_continue |= header.value.eq_ignore_ascii_case(b"100-continue"),
            _ => {}
        }
    }
    let body = framing.request(http10).map_err(|_| Refused::BadFraming)?;
    // An HTTP/1.0 client cannot take an interim response; without a body there is nothing to
    // wait for.
    let expect_continue = expect_continue && !http10 && body != Framing::Length(0);

    // The target: origin-form as a rule; an absolute-form target names the host instead of
    // the Host header (RFC 9112 §3.2.2), and the app gets it in origin-form.
    let (authority, target) = if target.starts_with('/') || target == "*" {
        (None, target)
    } else if method == Method::CONNECT {
        return Err(Refused::BadTarget);
    } else {
        let uri: http::Uri = target.parse().map_err(|_| Refused::BadTarget)?;
        let authority = uri.authority().ok_or(Refused::BadTarget)?.as_str();
        // The authority follows the scheme's "://"; the rest is the origin-form target.
        let at = target.find("://").ok_or(Refused::BadTarget)? + 3;
        let rest = target[at..]
            .strip_prefix(authority)
            .ok_or(Refused::BadTarget)?;
        (Some(&target[at..at + authority.len()]), rest)
    };
    // "http://a.com" and "http://a.com?q" have an empty path: it is "/" (RFC 9112 §3.2.2).
    let slash = if target.starts_with(['/', '*']) {
        ""
    } else {
        "/"
    };
    path.clear();
    path.push_str(slash);
    path.push_str(http1::path_of(target));

    let exchange = Exchange {
        start,
        started,
        head_request: method == Method::HEAD,
        method,
        http10,
        keep_alive: if http10 {
            connection.keep_alive && !connection.close
        } else {
            !connection.close
        },
        body,
        trace,
        expect_continue,
    };

    // Routing.
    let raw_host = if authority.is_some() {
        authority
    } else if hosts == 1 {
        host
    } else {
        None
    };
    // What the request is routed by is what the app is told, so a `Host` must be a host and a
    // port and nothing else: `a.com:80@b.com` would route to `a.com` and name `b.com`.
    let Some(host_key) = raw_host
        .filter(|raw| http1::is_host_and_port(raw))
        .and_then(|raw| normalise_host(raw, &shared.config.dev_suffix))
    else {
        let page = Destination::Page {
            error: RouterError::BadRequest,
            host: Arc::from(""),
            version: 0,
            refused: Some(Refused::BadHost),
        };
        return Ok(Some((head_len, exchange, page)));
    };
    let table = shared.routes.load();
    let version = table.version();
    let Some(route) = table.lookup(&host_key) else {
        let page = Destination::Page {
            error: RouterError::NoRoute,
            host: Arc::from(&*host_key),
            version,
            refused: None,
        };
        return Ok(Some((head_len, exchange, page)));
    };
    let backend = choose(shared.config.balance, route, sticky).clone();
    let host = route.host().clone();
    drop(table);

    // The head the app gets: the client's, with the hop-by-hop headers left out and the
    // forwarding headers added (RFC 9110 §7.6).
    out.clear();
    out.extend_from_slice(exchange.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(slash.as_bytes());
    out.extend_from_slice(target.as_bytes());
    // An HTTP/1.0 client cannot take a chunked response: the app is asked in 1.0 too.
    out.extend_from_slice(if http10 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    if let Some(authority) = authority {
        http1::push_header(out, "Host", authority.as_bytes());
    }
    let mut forwarded_for: Option<Vec<u8>> = None;
    for header in request.headers.iter() {
        match http1::classify(header.name) {
            Kind::Host if authority.is_some() => continue,
            Kind::Connection | Kind::HopByHop => continue,
            // One `Content-Length` goes on, however many the client sent (below).
            Kind::ContentLength => continue,
            // The scheme is the router's to say: it is plain HTTP whatever a client claims.
            Kind::XForwardedProto => continue,
            Kind::XForwardedFor => {
                let value = header.value.trim_ascii();
                if !value.is_empty() {
                    let list = forwarded_for.get_or_insert_with(Vec::new);
                    if !list.is_empty() {
                        list.extend_from_slice(b", ");
                    }
                    list.extend_from_slice(value);
                }
                continue;
            }
            // The router says `100 Continue` itself when it starts on the body, as hyper
            // and nginx do, so the app is not asked to.
            Kind::Expect if exchange.expect_continue => continue,
            Kind::Other if connection.lists(header.name) => continue,
            _ => {}
        }
        http1::push_header(out, header.name, header.value);
    }
    match forwarded_for {
        Some(mut list) => {
            list.extend_from_slice(b", ");
            list.extend_from_slice(client_ip.as_bytes());
            http1::push_header(out, "X-Forwarded-For", &list);
        }
        None => http1::push_header(out, "X-Forwarded-For", client_ip.as_bytes()),
    }
    http1::push_header(out, "X-Forwarded-Proto", b"http");
    if let Some(length) = framing.length() {
        http1::push_content_length(out, length);
    }
    out.extend_from_slice(b"\r\n");
    let destination = Destination::Backend {
        backend,
        host,
        version,
    };
    Ok(Some((head_len, exchange, destination)))
}

impl ForwardError {
    /// The connection turned out closed before anything came back.
    fn is_closed_connection(&self) -> bool {
        use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
        match self {
            ForwardError::Closed => true,
            ForwardError::Write(error) | ForwardError::Read(error) => {
                matches!(
                    error.kind(),
                    BrokenPipe | ConnectionReset | ConnectionAborted
                )
            }
            _ => false,
        }
    }
}

/// What the response head needs to know of the request.
struct ResponseContext<'a> {
    http10: bool,
    head_request: bool,
    /// The backend's and the router's addresses, when the request asked for them.
    trace: Option<(std::net::SocketAddr, &'a str)>,
    backend: &'a Backend,
}

/// Reads the response head from the backend and writes the head for the client into `out`.
/// Interim responses are added to `interim` as they are parsed; `Ready(Ok(None))` says that
/// `interim` has reached [`MAX_INTERIM`] and must be passed on before the app is read further.
/// `scanned` is how much of a head that is not complete yet has been looked at (see
/// [`http1::head_may_end`]).
fn poll_response_head(
    cx: &mut Context<'_>,
    connection: &mut Connection,
    context: &ResponseContext<'_>,
    after: After,
    out: &mut Vec<u8>,
    interim: &mut Vec<u8>,
    scanned: &mut usize,
) -> Poll<Result<Option<ResponseHead>, ForwardError>> {
    loop {
        if !connection.buffer.is_empty() {
            if *scanned == 0 || http1::head_may_end(&connection.buffer, *scanned) {
                match response_head(&connection.buffer, context, after, out, interim) {
                    Ok(Some((length, head))) => {
                        connection.buffer.advance(length);
                        *scanned = 0;
                        match head {
                            Some(head) => return Poll::Ready(Ok(Some(head))),
                            None if interim.len() >= MAX_INTERIM => return Poll::Ready(Ok(None)),
                            None => continue,
                        }
                    }
                    Ok(None) => {}
                    Err(error) => return Poll::Ready(Err(error)),
                }
            }
            *scanned = connection.buffer.len();
            if connection.buffer.len() >= MAX_RESPONSE_HEAD {
                return Poll::Ready(Err(ForwardError::TooLarge));
            }
        }
        reserve(&mut connection.buffer);
        let read = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut connection.stream),
            cx,
            &mut connection.buffer
        ));
        match read {
            Ok(0) if connection.buffer.is_empty() => return Poll::Ready(Err(ForwardError::Closed)),
            Ok(0) => return Poll::Ready(Err(ForwardError::Malformed)),
            Ok(_) => {}
            Err(error) => return Poll::Ready(Err(ForwardError::Read(error))),
        }
    }
}

/// Parses a response head at the start of `buffer`: `Ok(None)` when it is not complete yet,
/// `Ok(Some((length, None)))` for an interim response (added to `interim` for an HTTP/1.1
/// client), and `Ok(Some((length, Some(head))))` for the response, whose head for the client is
/// then in `out`.
fn response_head(
    buffer: &[u8],
    context: &ResponseContext<'_>,
    mut after: After,
    out: &mut Vec<u8>,
    interim: &mut Vec<u8>,
) -> Result<Option<(usize, Option<ResponseHead>)>, ForwardError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let length = match response.parse(buffer) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ForwardError::TooLarge),
        Err(_) => return Err(ForwardError::Malformed),
    };
    let (Some(status), Some(minor)) = (response.code, response.version) else {
        return Err(ForwardError::Malformed);
    };
    // Three digits, but no class below 1xx (RFC 9110 §15): found by the differential test, where
    // hyper refuses "004" and the router passed it on.
    if status < 100 {
        return Err(ForwardError::Malformed);
    }
    let reason = response.reason.unwrap_or("");
    let mut connection = ConnectionOptions::default();
    let mut framing = FramingHeaders::default();
    let mut session = false;
    for header in response.headers.iter() {
        match http1::classify(header.name) {
            Kind::Connection => connection.add(header.value),
            Kind::ContentLength => framing.content_length(header.value),
            Kind::TransferEncoding => framing.transfer_encoding(header.value),
            // v1's routers pinned a client that got a JSESSIONID to its instance.
            Kind::SetCookie => {
                session |= header
                    .value
                    .windows(10)
                    .any(|window| window.eq_ignore_ascii_case(b"JSESSIONID"));
            }
            _ => {}
        }
    }
    let interim_response = (100..200).contains(&status) && status != 101;
    if interim_response {
        if !context.http10 {
            push_status_line(interim, false, status, reason);
            push_end_to_end(interim, response.headers, &connection, false);
            interim.extend_from_slice(b"\r\n");
        }
        return Ok(Some((length, None)));
    }

    // A 101 cannot happen (Upgrade is not passed on); if an app sends one anyway, the exchange
    // ends with its head.
    let bodiless = http1::response_is_bodiless(context.head_request, status);
    let body = if bodiless {
        Framing::Length(0)
    } else {
        framing.response(minor == 0)?
    };
    // A response with no body whose head announces one (a HEAD answered with a length, a 204
    // with a coding) comes from an app that may send that body anyway, later: its bytes would
    // be taken as the next request's response, so the connection is not used again.
    let backend_keep_alive = status != 101
        && body != Framing::UntilClose
        && !connection.close
        && (minor == 1 || connection.keep_alive)
        && !(bodiless && framing.announces_body());
    let rechunk = body == Framing::UntilClose && !context.http10;
    // An HTTP/1.0 client cannot read chunks: an app that sends them anyway has its body decoded.
    let dechunk = body == Framing::Chunked && context.http10;
    if (context.http10 && matches!(body, Framing::UntilClose | Framing::Chunked)) || status == 101 {
        // Delimited by the close, for a client that cannot take chunks.
        after = After::Close.max_with(after);
    }

    out.clear();
    push_status_line(out, context.http10, status, reason);
    push_end_to_end(
        out,
        response.headers,
        &connection,
        body == Framing::Chunked && !dechunk,
    );
    // One `Content-Length`, however many the app sent (for a response without a body it is
    // the length the app announces, and goes on only if valid); none on a 204, which must not
    // carry one (RFC 9110 §8.6), lest a client take the next response for its body.
    if let Some(length) = framing.length().filter(|_| status != 204) {
        http1::push_content_length(out, length);
    }
    if rechunk {
        http1::push_header(out, "transfer-encoding", b"chunked");
    }
    if let Some((backend_addr, router_ip)) = context.trace {
        http1::push_header(out, "x-vcap-backend", backend_addr.to_string().as_bytes());
        http1::push_header(out, "x-vcap-router", router_ip.as_bytes());
    }
    if session {
        let cookie = format!(
            "__VCAP_ID__={}; Path=/",
            context.backend.private_instance_id()
        );
        http1::push_header(out, "set-cookie", cookie.as_bytes());
    }
    push_connection(out, context.http10, after);
    out.extend_from_slice(b"\r\n");
    let head = ResponseHead {
        status,
        body,
        rechunk,
        dechunk,
        backend_keep_alive,
        after,
    };
    Ok(Some((length, Some(head))))
}

impl After {
    /// The more final of two.
    fn max_with(self, other: After) -> After {
        match (self, other) {
            (After::Linger, _) | (_, After::Linger) => After::Linger,
            (After::Close, _) | (_, After::Close) => After::Close,
            _ => After::KeepAlive,
        }
    }
}

fn push_status_line(out: &mut Vec<u8>, http10: bool, status: u16, reason: &str) {
    out.extend_from_slice(if http10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
    // httparse took exactly three digits.
    out.extend_from_slice(&[
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
        b' ',
    ]);
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The headers of a response that are for the client: all but the hop-by-hop ones, and
/// `Content-Length`, which the caller adds once. `Transfer-Encoding` stays when the body is
/// passed through chunked as it came.
fn push_end_to_end(
    out: &mut Vec<u8>,
    headers: &[httparse::Header<'_>],
    connection: &ConnectionOptions<'_>,
    chunked: bool,
) {
    for header in headers {
        match http1::classify(header.name) {
            Kind::Connection | Kind::HopByHop | Kind::ContentLength => continue,
            Kind::TransferEncoding if !chunked => continue,
            Kind::Other if connection.lists(header.name) => continue,
            _ => {}
        }
        http1::push_header(out, header.name, header.value);
    }
}

/// Says what becomes of the client's connection where its default would be wrong.
fn push_connection(out: &mut Vec<u8>, http10: bool, after: After) {
    match (http10, after) {
        (true, After::KeepAlive) => http1::push_header(out, "connection", b"keep-alive"),
        (false, After::Close | After::Linger) => http1::push_header(out, "connection", b"close"),
        _ => {}
    }
}

/// How much of a body is left.
#[derive(Debug)]
enum Progress {
    Length(u64),
    Chunked(ChunkScanner),
    UntilClose,
    Done,
}

impl Progress {
    fn new(framing: Framing) -> Progress {
        match framing {
            Framing::Length(0) => Progress::Done,
            Framing::Length(length) => Progress::Length(length),
            Framing::Chunked => Progress::Chunked(ChunkScanner::default()),
            Framing::UntilClose => Progress::UntilClose,
        }
    }

    fn is_done(&self) -> bool {
        matches!(self, Progress::Done)
    }

    /// [`take`](Self::take), handing what the body carries (decoded, for a chunked one) to
    /// `data`.
    fn take_with(
        &mut self,
        input: &[u8],
        mut data: impl FnMut(&[u8]),
    ) -> Result<usize, ChunkError> {
        if let Progress::Chunked(scanner) = self {
            let taken = scanner.scan_with(input, data)?;
            if scanner.is_done() {
                *self = Progress::Done;
            }
            return Ok(taken);
        }
        let taken = self.take(input)?;
        data(&input[..taken]);
        Ok(taken)
    }

    /// How many bytes at the start of `input` belong to the body (and takes them).
    fn take(&mut self, input: &[u8]) -> Result<usize, ChunkError> {
        let taken = match self {
            Progress::Length(left) => {
                let taken = (*left).min(input.len() as u64);
                *left -= taken;
                if *left == 0 {
                    *self = Progress::Done;
                }
                taken as usize
            }
            Progress::Chunked(scanner) => {
                let taken = scanner.scan(input)?;
                if scanner.is_done() {
                    *self = Progress::Done;
                }
                taken
            }
            Progress::UntilClose => input.len(),
            Progress::Done => 0,
        };
        Ok(taken)
    }
}

/// The request body on its way to the app, read from the client as the app takes it.
struct BodySender {
    progress: Progress,
    /// Bytes at the start of the client's buffer that belong to the body and are not written yet.
    pending: usize,
    /// Whether bytes moved (from the client or to the app) since the last look: what pushes
    /// the request body timeout forward.
    moved: bool,
}

impl BodySender {
    fn new(framing: Framing) -> BodySender {
        BodySender {
            progress: Progress::new(framing),
            pending: 0,
            moved: false,
        }
    }

    fn is_done(&self) -> bool {
        self.progress.is_done() && self.pending == 0
    }

    /// Whether bytes moved since the last call.
    fn take_progress(&mut self) -> bool {
        std::mem::take(&mut self.moved)
    }

    /// Takes the part of the body in `buffer` to go out with the head.
    fn take(&mut self, buffer: &[u8]) -> Result<usize, ForwardError> {
        self.progress
            .take(buffer)
            .map_err(|_| ForwardError::MalformedBody)
    }

    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        client: &mut TcpStream,
        buffer: &mut BytesMut,
        backend: &mut TcpStream,
    ) -> Poll<Result<(), ForwardError>> {
        loop {
            while self.pending > 0 {
                let written =
                    ready!(Pin::new(&mut *backend).poll_write(cx, &buffer[..self.pending]))
                        .map_err(ForwardError::Write)?;
                if written == 0 {
                    return Poll::Ready(Err(ForwardError::Write(
                        std::io::ErrorKind::WriteZero.into(),
                    )));
                }
                buffer.advance(written);
                self.pending -= written;
                self.moved = true;
            }
            if self.progress.is_done() {
                return Poll::Ready(Ok(()));
            }
            if buffer.is_empty() {
                reserve(buffer);
                match ready!(tokio_util::io::poll_read_buf(
                    Pin::new(&mut *client),
                    cx,
                    buffer
                )) {
                    // A client that leaves in the middle of its body is gone, not refused.
                    Ok(0) | Err(_) => return Poll::Ready(Err(ForwardError::ClientGone)),
                    Ok(_) => self.moved = true,
                }
            }
            self.pending = self.take(buffer)?;
        }
    }
}

/// Reads ahead from a client that is waiting for its response (it may pipeline its next request);
/// `Ready` once the client has gone.
fn poll_client_gone(
    cx: &mut Context<'_>,
    client: &mut TcpStream,
    buffer: &mut BytesMut,
) -> Poll<()> {
    loop {
        if buffer.len() >= MAX_REQUEST_HEAD {
            // Enough read ahead: the rest waits in the kernel.
            return Poll::Pending;
        }
        reserve(buffer);
        match ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut *client),
            cx,
            buffer
        )) {
            Ok(0) | Err(_) => return Poll::Ready(()),
            Ok(_) => {}
        }
    }
}

/// Why a response body was cut short.
#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("the app's connection ended in the middle of the body")]
    BackendClosed,
    #[error("reading from the app: {0}")]
    Backend(std::io::Error),
    #[error("the app sent nothing more of the body for the response body timeout")]
    BackendTimeout,
    #[error("the app's chunked body is malformed")]
    Chunked,
    #[error("writing to the client: {0}")]
    Client(std::io::Error),
    #[error("the client went away")]
    ClientGone,
}

/// How long each step of a response body may take.
#[derive(Clone, Copy, Debug)]
struct RelayLimits {
    /// Each read from the app.
    read: Duration,
    /// Each write to the client.
    write: Duration,
}

/// Writes the response head in `out` and streams the body after it, as it was framed (or
/// re-chunked, or decoded for an HTTP/1.0 client). Every read from the app and every write to
/// the client has its timeout, and a client that goes away while the app is silent ends the
/// exchange at once.
async fn relay_body(
    connection: &mut Connection,
    client: &mut TcpStream,
    client_buffer: &mut BytesMut,
    out: &mut Vec<u8>,
    head: &ResponseHead,
    timers: &mut Timers<'_>,
    limits: RelayLimits,
) -> Result<(), RelayError> {
    /// Bigger reads go to the client straight from the read buffer, not copied after the head.
    const DIRECT: usize = 4096;
    let mut progress = Progress::new(head.body);
    loop {
        if !progress.is_done() && !connection.buffer.is_empty() {
            if head.dechunk {
                let taken = progress
                    .take_with(&connection.buffer, |data| out.extend_from_slice(data))
                    .map_err(|_| RelayError::Chunked)?;
                connection.buffer.advance(taken);
            } else {
                let taken = progress
                    .take(&connection.buffer)
                    .map_err(|_| RelayError::Chunked)?;
                let data = &connection.buffer[..taken];
                if head.rechunk {
                    http1::push_chunk(out, data);
                } else if out.is_empty() && taken >= DIRECT {
                    write_timed(client, data, timers.write.as_mut(), limits.write)
                        .await
                        .map_err(RelayError::Client)?;
                } else {
                    out.extend_from_slice(data);
                }
                connection.buffer.advance(taken);
            }
        }
        if !out.is_empty() {
            write_timed(client, out, timers.write.as_mut(), limits.write)
                .await
                .map_err(RelayError::Client)?;
            out.clear();
        }
        if progress.is_done() {
            return Ok(());
        }
        let read = read_body(
            connection,
            client,
            client_buffer,
            timers.backend.as_mut(),
            limits.read,
        )
        .await?;
        if read == 0 {
            if !matches!(progress, Progress::UntilClose) {
                return Err(RelayError::BackendClosed);
            }
            progress = Progress::Done;
            if head.rechunk {
                out.extend_from_slice(http1::LAST_CHUNK);
            }
        }
    }
}

/// Reads more of a response body from the app, for at most `limit`, watching the client the
/// while: if it goes away, the app's connection is released at once rather than when the app
/// next sends something.
async fn read_body(
    connection: &mut Connection,
    client: &mut TcpStream,
    client_buffer: &mut BytesMut,
    mut timer: Pin<&mut Sleep>,
    limit: Duration,
) -> Result<usize, RelayError> {
    reserve(&mut connection.buffer);
    let mut armed = false;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(read) = tokio_util::io::poll_read_buf(
            Pin::new(&mut connection.stream),
            cx,
            &mut connection.buffer,
        ) {
            return Poll::Ready(read.map_err(RelayError::Backend));
        }
        if poll_client_gone(cx, client, client_buffer).is_ready() {
            return Poll::Ready(Err(RelayError::ClientGone));
        }
        if !armed {
            timer.as_mut().reset((Instant::now() + limit).into());
            armed = true;
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(RelayError::BackendTimeout));
        }
        Poll::Pending
    })
    .await
}

/// Makes room to read into, reusing the buffer's space once what it held has been passed on.
fn reserve(buffer: &mut BytesMut) {
    if buffer.capacity() - buffer.len() < 1024 {
        buffer.reserve(BUFFER);
    }
}

/// Closes a connection whose client may still be sending: our side first, then what arrives is
/// read and dropped for a while, so that the answer already written is not lost to a reset.
async fn linger_close(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let _ = tokio::time::timeout(LINGER, async {
        let mut sink = [0u8; 4096];
        let mut total = 0;
        while total < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(read) => total += read,
            }
        }
    })
    .await;
}

/// Picks the backend: the one named by a valid `__VCAP_ID__` sticky cookie, else the balancer's.
fn choose<'a>(balance: Balance, route: &'a HostRoute, sticky: Option<&str>) -> &'a Arc<Backend> {
    let backends = route.backends();
    if let Some(id) = sticky
        && let Some(backend) = backends.iter().find(|b| b.private_instance_id() == id)
    {
        return backend;
    }
    &backends[balance.pick_index(route.next_request(), backends.len())]
}

/// The `__VCAP_ID__` value in a `Cookie` header, if any.
fn sticky_id(cookies: &[u8]) -> Option<&str> {
    let cookies = std::str::from_utf8(cookies).ok()?;
    cookies
        .split(';')
        .find_map(|cookie| cookie.trim().strip_prefix("__VCAP_ID__="))
        .filter(|id| !id.is_empty())
}

/// A header value as text, when it is all visible ASCII (as `http::HeaderValue::to_str` has it).
fn visible_ascii(value: &[u8]) -> Option<&str> {
    value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
}

/// The status journaled for a request whose client went away before the backend's response head
/// came (nginx's "client closed request"): the client got no status at all.
pub const CLIENT_CLOSED_REQUEST: u16 = 499;

/// Entry points for the `wire` fuzz target (`fuzz/`): what the router makes of any request head,
/// response head or chunked body, checked against what it promises. Not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    use std::sync::LazyLock;

    use super::*;
    use crate::table::BackendSpec;

    static BACKEND: LazyLock<Arc<Backend>> = LazyLock::new(|| {
        Backend::new(BackendSpec {
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
            app: "a".into(),
            instance_index: 0,
            instance_id: "a0".into(),
            private_instance_id: "a0private".into(),
            version: "v".into(),
        })
    });

    static SHARED: LazyLock<Shared> = LazyLock::new(|| {
        let routes = Routes::new();
        routes.publish([(Arc::from("a.com"), BACKEND.clone())]);
        Shared {
            config: RouterConfig::default(),
            routes,
            journal: Journal::new(16),
            accepting: AtomicBool::new(false),
        }
    });

    /// The framing a message's headers give it.
    fn framing_of(headers: &[httparse::Header<'_>]) -> FramingHeaders {
        let mut framing = FramingHeaders::default();
        for header in headers {
            match http1::classify(header.name) {
                Kind::ContentLength => framing.content_length(header.value),
                Kind::TransferEncoding => framing.transfer_encoding(header.value),
                _ => {}
            }
        }
        framing
    }

    /// A request head routed to a backend becomes, for the app, one complete and well-formed
    /// HTTP/1.x head: an origin-form target, exactly one `Host`, no hop-by-hop header, and the
    /// body framing the router itself measures the body by.
    pub fn request_head(data: &[u8]) {
        let (mut out, mut path) = (Vec::new(), String::new());
        let Ok(Some((length, exchange, destination))) =
            parse_request(&SHARED, data, &mut out, &mut path, "127.0.0.1")
        else {
            return;
        };
        assert!(length <= data.len());
        assert!(path.starts_with(['/', '*']), "journaled path {path:?}");
        let Destination::Backend { .. } = destination else {
            return;
        };
        let shown = String::from_utf8_lossy(&out).into_owned();
        let mut headers = vec![httparse::EMPTY_HEADER; MAX_HEADERS + 3];
        let mut forwarded = httparse::Request::new(&mut headers);
        assert_eq!(
            forwarded.parse(&out),
            Ok(httparse::Status::Complete(out.len())),
            "{shown}"
        );
        let target = forwarded.path.unwrap_or_default();
        assert!(target.starts_with(['/', '*']), "{shown}");
        let hosts = forwarded
            .headers
            .iter()
            .filter(|header| http1::classify(header.name) == Kind::Host)
            .count();
        assert_eq!(hosts, 1, "{shown}");
        for header in forwarded.headers.iter() {
            let kind = http1::classify(header.name);
            assert!(
                !matches!(kind, Kind::Connection | Kind::HopByHop),
                "{shown}"
            );
        }
        assert_eq!(
            framing_of(forwarded.headers).request(forwarded.version == Some(0)),
            Ok(exchange.body),
            "{shown}"
        );
    }

    /// Whatever an app sends, the head the client gets is one complete and well-formed response
    /// head whose framing is the one the router sends the body in, with no hop-by-hop header
    /// other than those that framing and the connection's fate need.
    pub fn response_head(data: &[u8], http10: bool, head_request: bool) {
        let context = ResponseContext {
            http10,
            head_request,
            trace: Some((BACKEND.addr(), "127.0.0.1")),
            backend: &BACKEND,
        };
        let (mut out, mut interim) = (Vec::new(), Vec::new());
        let Ok(Some((length, head))) =
            super::response_head(data, &context, After::KeepAlive, &mut out, &mut interim)
        else {
            return;
        };
        assert!(length <= data.len());
        let Some(head) = head else {
            if !http10 {
                let mut headers = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut parsed = httparse::Response::new(&mut headers);
                assert_eq!(
                    parsed.parse(&interim),
                    Ok(httparse::Status::Complete(interim.len()))
                );
                assert!(parsed.code.is_some_and(|code| (100..200).contains(&code)));
            }
            return;
        };
        let shown = String::from_utf8_lossy(&out).into_owned();
        let mut headers = vec![httparse::EMPTY_HEADER; MAX_HEADERS + 4];
        let mut parsed = httparse::Response::new(&mut headers);
        assert_eq!(
            parsed.parse(&out),
            Ok(httparse::Status::Complete(out.len())),
            "{shown}"
        );
        assert_eq!(parsed.code, Some(head.status), "{shown}");
        assert_eq!(parsed.version, Some(if http10 { 0 } else { 1 }), "{shown}");
        let mut connection = ConnectionOptions::default();
        for header in parsed.headers.iter() {
            match http1::classify(header.name) {
                Kind::Connection => connection.add(header.value),
                Kind::HopByHop => panic!("{shown}"),
                _ => {}
            }
        }
        assert!(connection.listed.is_empty(), "{shown}");
        let client_keeps_it = if http10 {
            connection.keep_alive
        } else {
            !connection.close
        };
        assert_eq!(client_keeps_it, head.after == After::KeepAlive, "{shown}");
        if !http1::response_is_bodiless(head_request, head.status) {
            let expected = if head.rechunk {
                Framing::Chunked
            } else if head.dechunk {
                Framing::UntilClose
            } else {
                head.body
            };
            assert_eq!(
                framing_of(parsed.headers).response(http10),
                Ok(expected),
                "{shown}"
            );
            if expected == Framing::UntilClose {
                assert_ne!(head.after, After::KeepAlive, "{shown}");
            }
        }
    }

    /// One message as a parser frames it: what the differential target compares.
    #[derive(Clone, Debug)]
    pub struct Message {
        /// The request's method and path (without the query), or the response's status.
        pub start: String,
        /// The body as the message carries it, decoded when it is chunked.
        pub body: Vec<u8>,
        /// The request target as it was sent (not compared: it tells why a parser refused).
        pub target: String,
    }

    impl PartialEq for Message {
        fn eq(&self, other: &Message) -> bool {
            self.start == other.start && self.body == other.body
        }
    }

    /// How a byte stream ended for a parser, after the messages it framed.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Ending {
        /// After a whole message, with nothing left.
        Clean,
        /// The connection would be closed here by rule (`Connection: close`, a body delimited
        /// by the close, a response the router does not reuse the connection after): what
        /// follows is not read as messages.
        Stopped,
        /// In the middle of a message: more bytes would be needed.
        Incomplete,
        /// Refused: the bytes cannot be a message.
        Refused,
    }

    /// The requests the router frames in what a client sends on one connection, with the
    /// router's own code: its head parser and body framing (whatever the route).
    pub fn frame_requests(stream: &[u8]) -> (Vec<Message>, Ending) {
        let (mut out, mut path) = (Vec::new(), String::new());
        let mut messages = Vec::new();
        let mut at = 0;
        loop {
            // Empty lines before a request line are skipped (RFC 9112 §2.2), by httparse as by
            // hyper: a stream that ends with them ends cleanly.
            let mut blank = &stream[at..];
            while let Some(rest) = blank
                .strip_prefix(b"\r\n")
                .or_else(|| blank.strip_prefix(b"\n"))
            {
                blank = rest;
            }
            // A blank line cut short at its CR begins no message either (hyper ends cleanly).
            if blank.is_empty() || blank == b"\r" {
                return (messages, Ending::Clean);
            }
            let rest = &stream[at..];
            let (head_len, exchange) =
                match parse_request(&SHARED, rest, &mut out, &mut path, "127.0.0.1") {
                    Ok(Some((head_len, exchange, _))) => (head_len, exchange),
                    Ok(None) => return (messages, Ending::Incomplete),
                    Err(_) => return (messages, Ending::Refused),
                };
            let mut progress = Progress::new(exchange.body);
            let mut body = Vec::new();
            let Ok(taken) =
                progress.take_with(&rest[head_len..], |data| body.extend_from_slice(data))
            else {
                return (messages, Ending::Refused);
            };
            if !progress.is_done() {
                return (messages, Ending::Incomplete);
            }
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut request = httparse::Request::new(&mut headers);
            let _ = request.parse(rest);
            let target = request.path.unwrap_or_default().to_owned();
            at += head_len + taken;
            // A fragment (which has no place in a request target) is dropped by hyper and passed
            // on by the router: not a framing matter, so not compared.
            let path = path.split('#').next().unwrap_or_default();
            messages.push(Message {
                start: format!("{} {path}", exchange.method),
                body,
                target,
            });
            if !exchange.keep_alive {
                return (messages, Ending::Stopped);
            }
        }
    }

    /// The responses the router frames in what an app sends on one connection, for requests
    /// that are HEAD (`true`) or GET, from an HTTP/1.1 client: interim responses are skipped,
    /// bodies decoded.
    pub fn frame_responses(stream: &[u8], head_requests: &[bool]) -> (Vec<Message>, Ending) {
        let (mut out, mut interim) = (Vec::new(), Vec::new());
        let mut messages = Vec::new();
        let mut at = 0;
        for &head_request in head_requests {
            let context = ResponseContext {
                http10: false,
                head_request,
                trace: None,
                backend: &BACKEND,
            };
            let head = loop {
                match super::response_head(
                    &stream[at..],
                    &context,
                    After::KeepAlive,
                    &mut out,
                    &mut interim,
                ) {
                    Ok(Some((length, Some(head)))) => {
                        at += length;
                        break head;
                    }
                    Ok(Some((length, None))) => at += length,
                    Ok(None) => return (messages, Ending::Incomplete),
                    Err(_) => return (messages, Ending::Refused),
                }
            };
            let mut progress = Progress::new(head.body);
            let mut body = Vec::new();
            let Ok(taken) = progress.take_with(&stream[at..], |data| body.extend_from_slice(data))
            else {
                return (messages, Ending::Refused);
            };
            at += taken;
            let message = Message {
                start: head.status.to_string(),
                body,
                target: String::new(),
            };
            match progress {
                // Delimited by the close: everything was body.
                Progress::UntilClose => {
                    messages.push(message);
                    return (messages, Ending::Stopped);
                }
                Progress::Done => messages.push(message),
                _ => return (messages, Ending::Incomplete),
            }
            if !head.backend_keep_alive {
                return (messages, Ending::Stopped);
            }
        }
        let ending = if at == stream.len() {
            Ending::Clean
        } else {
            // Bytes no request asked for: the router drops such a connection.
            Ending::Stopped
        };
        (messages, ending)
    }

    /// The chunk scanner finds the same end (or the same fault) however the body is cut in two.
    pub fn chunked(data: &[u8], cut: usize) {
        let cut = cut.min(data.len());
        let mut whole = ChunkScanner::default();
        let at_once = whole.scan(data).map(|used| (used, whole.is_done()));
        let mut parts = ChunkScanner::default();
        let in_two = parts.scan(&data[..cut]).and_then(|first| {
            if parts.is_done() {
                return Ok(first);
            }
            parts.scan(&data[cut..]).map(|second| first + second)
        });
        let in_two = in_two.map(|used| (used, parts.is_done()));
        assert_eq!(at_once, in_two, "cut at {cut}");
        if let Ok((used, _)) = at_once {
            assert!(used <= data.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 14: out of file descriptors, accept fails at once every time; the router backs off
    /// (5 ms doubling to 500 ms) and logs at most one line in 5 s, not one every 5 ms.
    #[tokio::test(start_paused = true)]
    async fn failed_accepts_back_off_and_are_logged_at_a_bounded_rate() {
        let mut errors = AcceptErrors::default();
        let error = std::io::Error::from_raw_os_error(24); // EMFILE
        let started = tokio::time::Instant::now();
        let (mut attempts, mut logged, mut pauses) = (0, 0, Vec::new());
        while started.elapsed() < Duration::from_secs(60) {
            let (pause, log) = errors.failed(&error);
            attempts += 1;
            logged += usize::from(log);
            pauses.push(pause);
            tokio::time::advance(pause).await;
        }
        assert_eq!(&pauses[..4], &[5, 10, 20, 40].map(Duration::from_millis));
        assert!(pauses.iter().all(|pause| *pause <= ACCEPT_BACKOFF_MOST));
        assert!(attempts < 150, "{attempts} attempts in a minute");
        assert!((12..=13).contains(&logged), "{logged} lines in a minute");
        // A success starts the pauses again from the shortest.
        errors.succeeded();
        assert_eq!(errors.failed(&error).0, ACCEPT_BACKOFF_FIRST);
    }

    /// Found by the differential test against hyper: what the router took and hyper refuses.
    #[test]
    fn divergences_from_hyper_found_by_the_differential_test_are_refused() {
        use fuzzing::{Ending, frame_requests, frame_responses};
        // A status below 100 has no class.
        let status_004 = frame_responses(b"HTTP/1.1 004 X\r\nContent-Length: 0\r\n\r\n", &[false]);
        assert_eq!(status_004.1, Ending::Refused);
        // Transfer-Encoding in an HTTP/1.0 response is faulty framing (RFC 9112 §6.1).
        let chunked_10 = frame_responses(
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            &[false],
        );
        assert_eq!(chunked_10.1, Ending::Refused);
        // An empty coding in a Transfer-Encoding list.
        let empty_coding = frame_requests(
            b"PUT / HTTP/1.1\r\nHost: a.com\r\nTransfer-Encoding: chunked,\r\n\r\n0\r\n\r\n",
        );
        assert_eq!(empty_coding.1, Ending::Refused);
        // A Content-Length list in a request.
        let length_list =
            frame_requests(b"PUT / HTTP/1.1\r\nHost: a.com\r\nContent-Length: 1, 1\r\n\r\nx");
        assert_eq!(length_list.1, Ending::Refused);
        // Blank lines before a request line are skipped, as hyper skips them.
        let blank = frame_requests(b"GET / HTTP/1.1\r\nHost: a.com\r\n\r\n\r\n");
        assert_eq!((blank.0.len(), blank.1), (1, Ending::Clean));
    }
}
