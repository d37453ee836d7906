//! The proxy: accepts HTTP/1.1 connections, routes each request by its `Host` to one backend of
//! the current route table, streams the request and the response through, and records the outcome
//! in the journal. Backend connections are pooled and kept alive.
//!
//! What it deliberately does not do, as v1 did not: retry on another instance, buffer bodies,
//! follow redirects. What it adds over v1: `X-Afemu-Router-Error` on its own pages.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::balance::Balance;
use crate::error_page::{ErrorPages, ROUTER_ERROR_HEADER, RouterError};
use crate::host::{DEFAULT_DEV_SUFFIX, normalise_host};
use crate::journal::{Journal, NewEntry};
use crate::pool::{self, Connection, ConnectionPool};
use crate::table::{Backend, HostRoute, Routes};

/// How the router behaves; every field has v1's value (or afemu's documented choice) by default.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    pub balance: Balance,
    /// Stripped from hosts before lookup (default `.localhost`); empty to keep hosts as they are.
    pub dev_suffix: String,
    pub error_pages: ErrorPages,
    /// How long a backend may take to send its response head: v1's router v2 waited 120 s; never
    /// below 75 s by default, since clients of the time expected that much.
    pub backend_timeout: Duration,
    /// How long to wait for a backend to accept the connection (router v2: 10 s).
    pub connect_timeout: Duration,
    /// A request carrying `X-Vcap-Trace: <trace_key>` gets `X-Vcap-Backend`/`X-Vcap-Router` back.
    pub trace_key: String,
    /// How long a client may take to send a request head before the connection is dropped.
    pub header_read_timeout: Duration,
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
            trace_key: "22".into(),
            header_read_timeout: Duration::from_secs(30),
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
        let local_ip = listener
            .local_addr()
            .map(|addr| addr.ip().to_string())
            .unwrap_or_default();
        let router_ip = HeaderValue::from_str(&local_ip).unwrap_or(HeaderValue::from_static(""));
        let graceful = GracefulShutdown::new();
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.shared.config.header_read_timeout)
            .keep_alive(true);
        self.shared.accepting.store(true, Ordering::Release);
        loop {
            let (stream, peer) = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors or a connection reset before accept: not fatal.
                        tracing::warn!(%error, "router accept failed");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let shared = self.shared.clone();
            // Formatted once per connection, not per request.
            let connection = Peers {
                client_ip: HeaderValue::from_str(&peer.ip().to_string())
                    .unwrap_or(HeaderValue::from_static("")),
                router_ip: router_ip.clone(),
            };
            let service = service_fn(move |request| {
                let shared = shared.clone();
                let connection = connection.clone();
                async move { Ok::<_, Infallible>(handle(&shared, request, connection).await) }
            });
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, %peer, "router connection ended with an error");
                }
            });
        }
        self.shared.accepting.store(false, Ordering::Release);
        drop(listener);
        if tokio::time::timeout(self.shared.config.shutdown_grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("router shutdown: connections still open after the grace period");
        }
    }
}

/// The two ends of a client connection, as headers.
#[derive(Clone)]
struct Peers {
    client_ip: HeaderValue,
    router_ip: HeaderValue,
}

/// What every request carries into the journal.
struct RequestFacts {
    start: SystemTime,
    started: Instant,
    method: Method,
    /// The request target as the client sent it; shares hyper's buffer, so it costs no copy.
    target: Option<PathAndQuery>,
}

impl RequestFacts {
    fn path(&self) -> &str {
        self.target.as_ref().map_or("", PathAndQuery::path)
    }
}

async fn handle(
    shared: &Shared,
    mut request: Request<Incoming>,
    peers: Peers,
) -> Response<RouterBody> {
    let facts = RequestFacts {
        start: SystemTime::now(),
        started: Instant::now(),
        method: request.method().clone(),
        target: request.uri().path_and_query().cloned(),
    };
    // An absolute-form target names the host; otherwise the Host header does (RFC 9112 §3.2.2).
    let raw_host = match request.uri().authority() {
        Some(authority) => Some(authority.as_str()),
        None => request
            .headers()
            .get(header::HOST)
            .and_then(|value| value.to_str().ok()),
    };
    let host_key = raw_host.and_then(|raw| normalise_host(raw, &shared.config.dev_suffix));
    let Some(host_key) = host_key else {
        return router_page(
            shared,
            facts,
            Arc::from(""),
            0,
            None,
            RouterError::BadRequest,
        );
    };

    let table = shared.routes.load();
    let version = table.version();
    let Some(route) = table.lookup(&host_key) else {
        let host = Arc::from(&*host_key);
        drop(table);
        return router_page(shared, facts, host, version, None, RouterError::NoRoute);
    };
    let backend = choose(shared.config.balance, route, request.headers()).clone();
    let host = route.host().clone();
    drop(table);
    drop(host_key);

    let trace = request
        .headers()
        .get("x-vcap-trace")
        .is_some_and(|value| value.as_bytes() == shared.config.trace_key.as_bytes());

    prepare_for_backend(&mut request, &peers.client_ip);
    let abandoned = Abandoned {
        journal: &shared.journal,
        facts: &facts,
        host: &host,
        version,
        backend: &backend,
    };
    let sent = tokio::time::timeout(
        shared.config.backend_timeout,
        forward(&backend, request, shared.config.connect_timeout),
    )
    .await;
    abandoned.disarm();
    let (mut response, connection) = match sent {
        Ok(Ok(answered)) => answered,
        Ok(Err(error)) => {
            tracing::debug!(%error, backend = %backend.addr(), "forwarding failed");
            backend.request_finished();
            return router_page(shared, facts, host, version, Some(&backend), error.blame());
        }
        Err(_elapsed) => {
            backend.request_finished();
            return router_page(
                shared,
                facts,
                host,
                version,
                Some(&backend),
                RouterError::Timeout,
            );
        }
    };

    let status = response.status();
    // The client's hop is the router's, not the app's: an app answering in HTTP/1.0 must not
    // cost the client its keep-alive connection (RFC 9110 §6.2; hyper still answers a 1.0
    // client in 1.0).
    *response.version_mut() = http::Version::HTTP_11;
    let headers = response.headers_mut();
    remove_hop_by_hop(headers);
    if trace {
        if let Ok(value) = HeaderValue::from_str(&backend.addr().to_string()) {
            headers.insert(HeaderName::from_static("x-vcap-backend"), value);
        }
        headers.insert(HeaderName::from_static("x-vcap-router"), peers.router_ip);
    }
    add_sticky_cookie(headers, &backend);

    let (parts, body) = response.into_parts();
    let pending = PendingEntry {
        journal: shared.journal.clone(),
        facts,
        host,
        status: status.as_u16(),
        version,
        backend,
        connection: Some(connection),
        completed: false,
    };
    Response::from_parts(
        parts,
        RouterBody::Proxied {
            inner: body,
            pending: Some(pending),
        },
    )
}

/// The request as the backend gets it: origin-form target, HTTP/1.1, hop-by-hop headers removed,
/// forwarding headers added, the client's `Host` kept (apps see their public host, as on v1).
fn prepare_for_backend(request: &mut Request<Incoming>, client_ip: &HeaderValue) {
    if request.uri().authority().is_some() {
        // An absolute-form target: the request was routed by its authority, so that is the Host
        // the app gets, whatever Host header came with it (RFC 9112 §3.2.2).
        let authority = request.uri().authority().map(|a| a.as_str().to_owned());
        if let Some(host) = authority.and_then(|a| HeaderValue::from_str(&a).ok()) {
            request.headers_mut().insert(header::HOST, host);
        }
        let path_and_query = request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *request.uri_mut() = Uri::from(path_and_query);
    }
    *request.version_mut() = http::Version::HTTP_11;
    let headers = request.headers_mut();
    remove_hop_by_hop(headers);
    append_forwarded_for(headers, client_ip);
    if !headers.contains_key(X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
}

/// Sends the request to the backend on a pooled keep-alive connection, or a new one. A pooled
/// connection that turns out to be closed before the request was written to it (the backend
/// closed it while idle) is not an answer from the app: the request goes out again on another
/// connection to the same instance. Nothing that reached the app is ever sent twice.
async fn forward(
    backend: &Backend,
    mut request: Request<Incoming>,
    connect_timeout: Duration,
) -> Result<(Response<Incoming>, Connection), ForwardError> {
    loop {
        let (mut connection, pooled) = match backend.pool().checkout() {
            Some(connection) => (connection, true),
            None => (
                pool::connect(backend.addr(), connect_timeout)
                    .await
                    .map_err(ForwardError::Connect)?,
                false,
            ),
        };
        if let Err(error) = connection.ready().await {
            if pooled {
                continue;
            }
            return Err(ForwardError::Exchange(error));
        }
        match connection.send(request).await {
            Ok(response) => return Ok((response, connection)),
            Err(mut error) => match error.take_message() {
                Some(unsent) if pooled => request = unsent,
                _ => return Err(ForwardError::Exchange(error.into_error())),
            },
        }
    }
}

/// Why a request got no response from its backend.
#[derive(Debug, thiserror::Error)]
enum ForwardError {
    #[error(transparent)]
    Connect(#[from] pool::ConnectError),
    #[error("{0}")]
    Exchange(hyper::Error),
}

impl ForwardError {
    /// Whose fault it was. hyper calls an error of the request's own body (a broken chunked
    /// upload, a client that went away mid-upload) a user error: that is the client's doing, a
    /// 400, not a bad gateway; everything else is the backend's.
    fn blame(&self) -> RouterError {
        match self {
            ForwardError::Exchange(error) if error.is_user() => RouterError::BadRequest,
            _ => RouterError::BadGateway,
        }
    }
}

/// Picks the backend: the one named by a valid `__VCAP_ID__` sticky cookie, else the balancer's.
fn choose<'a>(balance: Balance, route: &'a HostRoute, headers: &HeaderMap) -> &'a Arc<Backend> {
    let backends = route.backends();
    if let Some(id) = sticky_id(headers)
        && let Some(backend) = backends.iter().find(|b| b.private_instance_id() == id)
    {
        return backend;
    }
    &backends[balance.pick_index(route.next_request(), backends.len())]
}

/// The `__VCAP_ID__` value from the request's cookies, if any.
fn sticky_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .find_map(|cookie| cookie.trim().strip_prefix("__VCAP_ID__="))
        .filter(|id| !id.is_empty())
}

/// When the app sets `JSESSIONID`, pin the client to this instance, as v1's routers did.
fn add_sticky_cookie(headers: &mut HeaderMap, backend: &Backend) {
    let sets_session = headers.get_all(header::SET_COOKIE).iter().any(|value| {
        value
            .as_bytes()
            .windows(10)
            .any(|window| window.eq_ignore_ascii_case(b"JSESSIONID"))
    });
    if sets_session
        && let Ok(cookie) = HeaderValue::from_str(&format!(
            "__VCAP_ID__={}; Path=/",
            backend.private_instance_id()
        ))
    {
        headers.append(header::SET_COOKIE, cookie);
    }
}

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1), plus any the
/// `Connection` header names.
///
/// Most messages carry none of them, or only `Connection: keep-alive`: one pass over the names
/// finds out which are there, and only those are removed (a lookup per absent name was the
/// router's single most expensive step of its own).
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = [false; 7];
    let mut any = false;
    for name in headers.keys() {
        if let Some(index) = HOP_BY_HOP.iter().position(|hop| hop == name) {
            present[index] = true;
            any = true;
        }
    }
    if !any {
        return;
    }
    if present[0] {
        // Connection: each value is a list of header names to drop along with it.
        let mut listed = Vec::new();
        for value in headers.get_all(header::CONNECTION) {
            let Ok(value) = value.to_str() else { continue };
            for token in value.split(',').map(str::trim) {
                // The usual values name no header worth a lookup.
                if token.is_empty()
                    || token.eq_ignore_ascii_case("close")
                    || token.eq_ignore_ascii_case("keep-alive")
                {
                    continue;
                }
                if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                    listed.push(name);
                }
            }
        }
        for name in listed {
            headers.remove(name);
        }
    }
    for (name, present) in HOP_BY_HOP.iter().zip(present) {
        if present {
            // `remove` drops every value of a repeated header.
            headers.remove(name);
        }
    }
}

/// The hop-by-hop headers, `Connection` first.
static HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

fn append_forwarded_for(headers: &mut HeaderMap, client_ip: &HeaderValue) {
    let name = X_FORWARDED_FOR;
    let appended = match headers.get(&name).and_then(|v| v.to_str().ok()) {
        Some(existing) if !existing.trim().is_empty() => {
            let ip = client_ip.to_str().unwrap_or_default();
            HeaderValue::from_str(&format!("{existing}, {ip}")).ok()
        }
        _ => None,
    };
    headers.insert(name, appended.unwrap_or_else(|| client_ip.clone()));
}

fn router_page(
    shared: &Shared,
    facts: RequestFacts,
    host: Arc<str>,
    version: u64,
    backend: Option<&Arc<Backend>>,
    error: RouterError,
) -> Response<RouterBody> {
    let page = shared.config.error_pages.page(error);
    shared.journal.record(NewEntry {
        start: facts.start,
        end: facts.start + facts.started.elapsed(),
        host: &host,
        method: &facts.method,
        path: facts.path(),
        status: error.status(),
        route_table_version: version,
        app: backend.map(|b| b.app()),
        instance: backend.map(|b| b.instance_index()),
        router_error: Some(error),
        aborted: false,
    });
    let mut response = Response::new(RouterBody::Page(Full::new(page.body.clone())));
    *response.status_mut() = StatusCode::from_u16(error.status()).expect("valid status");
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(page.content_type),
    );
    headers.insert(
        HeaderName::from_static(ROUTER_ERROR_HEADER),
        HeaderValue::from_static(error.as_str()),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if error == RouterError::BadRequest {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The status journaled for a request whose client went away before the backend's response head
/// came (nginx's "client closed request"): the client got no status at all.
pub const CLIENT_CLOSED_REQUEST: u16 = 499;

/// A request on its way to its backend. When the client goes away before the response head
/// comes back, hyper drops the handler at its `await`: dropping this then journals the request
/// (aborted, [`CLIENT_CLOSED_REQUEST`]) and releases the backend, so that no request goes
/// unaccounted and a drain does not wait for it.
struct Abandoned<'a> {
    journal: &'a Journal,
    facts: &'a RequestFacts,
    host: &'a Arc<str>,
    version: u64,
    backend: &'a Arc<Backend>,
}

impl Abandoned<'_> {
    /// The handler got past the `await`: it accounts for the request itself.
    fn disarm(self) {
        std::mem::forget(self);
    }
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        let facts = self.facts;
        self.journal.record(NewEntry {
            start: facts.start,
            end: facts.start + facts.started.elapsed(),
            host: self.host,
            method: &facts.method,
            path: facts.path(),
            status: CLIENT_CLOSED_REQUEST,
            route_table_version: self.version,
            app: Some(self.backend.app()),
            instance: Some(self.backend.instance_index()),
            router_error: None,
            aborted: true,
        });
        self.backend.request_finished();
    }
}

/// A proxied response that has not ended yet. Dropping it records the journal entry, whether the
/// body ended, failed, or the client went away, and releases the backend (see `Backend::drain`).
struct PendingEntry {
    journal: Journal,
    facts: RequestFacts,
    host: Arc<str>,
    status: u16,
    version: u64,
    backend: Arc<Backend>,
    /// The keep-alive connection the response came on, back to the pool when the body ends.
    connection: Option<Connection>,
    completed: bool,
}

impl Drop for PendingEntry {
    fn drop(&mut self) {
        // Only a connection whose exchange ended can carry another; a cut one is closed.
        if let Some(connection) = self.connection.take()
            && self.completed
        {
            ConnectionPool::checkin(&self.backend, connection);
        }
        let facts = &self.facts;
        self.journal.record(NewEntry {
            start: facts.start,
            end: facts.start + facts.started.elapsed(),
            host: &self.host,
            method: &facts.method,
            path: facts.path(),
            status: self.status,
            route_table_version: self.version,
            app: Some(self.backend.app()),
            instance: Some(self.backend.instance_index()),
            router_error: None,
            aborted: !self.completed,
        });
        self.backend.request_finished();
    }
}

/// The body of every response the router sends: a backend's, streamed, or one of its own pages.
enum RouterBody {
    Proxied {
        inner: Incoming,
        pending: Option<PendingEntry>,
    },
    Page(Full<Bytes>),
}

impl Body for RouterBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RouterBody::Proxied { inner, pending } => {
                let mut polled = Pin::new(&mut *inner).poll_frame(cx);
                if polled.is_pending()
                    && let Some(connection) = pending.as_mut().and_then(|p| p.connection.as_mut())
                {
                    // Nothing buffered yet: move the backend's socket along (the body asked
                    // for more just now), then look again.
                    let _ = connection.poll_drive(cx);
                    polled = Pin::new(&mut *inner).poll_frame(cx);
                }
                match &polled {
                    Poll::Ready(None) => {
                        if let Some(mut done) = pending.take() {
                            done.completed = true;
                        }
                    }
                    Poll::Ready(Some(Err(_))) => {
                        // Recorded as aborted.
                        pending.take();
                    }
                    _ => {}
                }
                polled
            }
            RouterBody::Page(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never: Infallible| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RouterBody::Proxied { inner, .. } => inner.is_end_stream(),
            RouterBody::Page(full) => full.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RouterBody::Proxied { inner, .. } => inner.size_hint(),
            RouterBody::Page(full) => full.size_hint(),
        }
    }
}

impl Drop for RouterBody {
    fn drop(&mut self) {
        // A body that was empty from the start (a HEAD, a 204, `Content-Length: 0`) may never be
        // polled; it still completed.
        if let RouterBody::Proxied { inner, pending } = self
            && inner.is_end_stream()
            && let Some(pending) = pending
        {
            pending.completed = true;
        }
    }
}

impl std::fmt::Debug for RouterBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouterBody::Proxied { .. } => f.write_str("RouterBody::Proxied"),
            RouterBody::Page(_) => f.write_str("RouterBody::Page"),
        }
    }
}
