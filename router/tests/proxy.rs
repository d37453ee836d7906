//! The router over real sockets: backends are tiny HTTP servers on loopback, clients speak HTTP/1.1
//! to the router's listener, and every answer is checked against the journal.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use afemu_router::{
    Backend, BackendSpec, Journal, Router, RouterConfig, RouterError, Routes, error_page,
};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A backend that answers `<name>` and reflects what it was sent in `x-seen-*` headers.
async fn backend(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| async move {
                    let seen = |name: &str| {
                        request
                            .headers()
                            .get(name)
                            .map(|v| v.to_str().unwrap().to_owned())
                            .unwrap_or_default()
                    };
                    let mut response = Response::builder()
                        .header("x-seen-host", seen("host"))
                        .header("x-seen-forwarded-for", seen("x-forwarded-for"))
                        .header("x-seen-forwarded-proto", seen("x-forwarded-proto"))
                        .header("x-seen-connection", seen("connection"))
                        .header("x-seen-private", seen("x-private"))
                        .header("x-seen-te", seen("te"))
                        .header("x-seen-path", request.uri().to_string());
                    if request.uri().path() == "/hop" {
                        // Hop-by-hop headers of the backend's own hop, for the router to drop.
                        response = response
                            .header("connection", "x-hop-reply")
                            .header("x-hop-reply", "for the router only")
                            .header("keep-alive", "timeout=5")
                            .header("x-end-to-end", "for the client");
                    }
                    if request.uri().path() == "/session" {
                        response = response.header("set-cookie", "JSESSIONID=abc; Path=/");
                    }
                    if request.uri().path() == "/echo" {
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        return Ok::<_, Infallible>(response.body(Full::new(body)).unwrap());
                    }
                    Ok(response.body(Full::new(Bytes::from(name))).unwrap())
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A backend that accepts connections and never answers.
async fn silent_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            held.push(stream);
        }
    });
    addr
}

/// An address nobody listens on.
async fn refusing_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

fn spec(app: &str, index: u32, addr: SocketAddr) -> Arc<Backend> {
    Backend::new(BackendSpec {
        addr,
        app: app.into(),
        instance_index: index,
        instance_id: format!("{app}{index}").into(),
        private_instance_id: format!("{app}{index}private").into(),
        version: "v".into(),
    })
}

struct Harness {
    addr: SocketAddr,
    routes: Routes,
    journal: Journal,
    client: Client<HttpConnector, Full<Bytes>>,
    shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start(config: RouterConfig) -> Harness {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = Routes::new();
    let journal = Journal::new(1024);
    let router = Router::new(config, routes.clone(), journal.clone());
    let shutdown = CancellationToken::new();
    tokio::spawn(router.serve(listener, shutdown.clone()));
    let client = Client::builder(TokioExecutor::new()).build_http();
    Harness {
        addr,
        routes,
        journal,
        client,
        shutdown,
    }
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

impl Harness {
    async fn send(&self, request: http::request::Builder, body: &'static str) -> Answer {
        let request = request
            .uri(format!("http://{}{}", self.addr, "/"))
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        self.send_request(request).await
    }

    async fn send_request(&self, mut request: Request<Full<Bytes>>) -> Answer {
        if request.uri().authority().is_none() {
            let path = request.uri().path().to_owned();
            *request.uri_mut() = format!("http://{}{}", self.addr, path).parse().unwrap();
        }
        let response = self.client.request(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    async fn get(&self, host: &str, path: &str) -> Answer {
        let request = Request::get(format!("http://{}{}", self.addr, path))
            .header("host", host)
            .body(Full::new(Bytes::new()))
            .unwrap();
        self.send_request(request).await
    }

    /// Raw bytes in, raw bytes out, for what a well-behaved client would never send.
    async fn raw(&self, bytes: &[u8]) -> String {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }
}

fn router_error(answer: &Answer) -> Option<&str> {
    answer
        .headers
        .get(error_page::ROUTER_ERROR_HEADER)
        .map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn unknown_host_gets_the_no_route_page() {
    let router = start(RouterConfig::default()).await;
    let answer = router.get("nowhere.example.com", "/x").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(router_error(&answer), Some("no-route"));
    assert!(answer.body.contains("404 Not Found"), "{}", answer.body);
    let entries = router.journal.since(0);
    assert_eq!(entries.len(), 1);
    assert_eq!(&*entries[0].host, "nowhere.example.com");
    assert_eq!(entries[0].path, "/x");
    assert_eq!(entries[0].router_error, Some(RouterError::NoRoute));
    assert!(entries[0].is_default_error_page());
}

#[tokio::test]
async fn refused_backend_gets_bad_gateway_without_retry() {
    let router = start(RouterConfig::default()).await;
    let good = backend("good").await;
    let dead = refusing_addr().await;
    router.routes.publish([
        ("a.com".into(), spec("dead", 0, dead)),
        ("a.com".into(), spec("good", 0, good)),
    ]);
    let first = router.get("a.com", "/").await;
    let second = router.get("a.com", "/").await;
    // Round-robin: the dead instance first, then the good one; no retry in between.
    assert_eq!(first.status, StatusCode::BAD_GATEWAY);
    assert_eq!(router_error(&first), Some("bad-gateway"));
    assert!(first.body.contains("502 Bad Gateway"));
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.body, "good");
    let entries = router.journal.since(0);
    assert_eq!(entries[0].app.as_deref(), Some("dead"));
    assert_eq!(entries[0].router_error, Some(RouterError::BadGateway));
    assert!(entries[1].served_by("good"));
}

#[tokio::test]
async fn silent_backend_times_out_with_504() {
    let router = start(RouterConfig {
        backend_timeout: Duration::from_millis(200),
        ..RouterConfig::default()
    })
    .await;
    router
        .routes
        .publish([("slow.com".into(), spec("slow", 0, silent_backend().await))]);
    let answer = router.get("slow.com", "/").await;
    assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(router_error(&answer), Some("timeout"));
    assert!(answer.body.contains("504 Gateway Timeout"));
}

#[tokio::test]
async fn round_robin_over_every_instance_of_every_app() {
    let router = start(RouterConfig::default()).await;
    let blue0 = backend("blue0").await;
    let blue1 = backend("blue1").await;
    let green = backend("green").await;
    router.routes.publish([
        ("www.a.com".into(), spec("blue", 0, blue0)),
        ("www.a.com".into(), spec("blue", 1, blue1)),
        ("www.a.com".into(), spec("green", 0, green)),
    ]);
    let mut bodies = Vec::new();
    for _ in 0..9 {
        bodies.push(router.get("WWW.A.com:9080", "/").await.body);
    }
    let mut counts = std::collections::BTreeMap::new();
    for body in &bodies {
        *counts.entry(body.as_str()).or_insert(0) += 1;
    }
    assert_eq!(
        counts,
        [("blue0", 3), ("blue1", 3), ("green", 3)].into(),
        "{bodies:?}"
    );
    let counters = router.journal.host_counters("www.a.com");
    assert_eq!(counters.served_by.get("blue"), Some(&6));
    assert_eq!(counters.served_by.get("green"), Some(&3));
}

#[tokio::test]
async fn dev_suffix_is_stripped() {
    let router = start(RouterConfig::default()).await;
    router
        .routes
        .publish([("example.com".into(), spec("app", 0, backend("app").await))]);
    assert_eq!(
        router.get("example.com.localhost:1234", "/").await.body,
        "app"
    );
}

#[tokio::test]
async fn forwarding_headers_and_host_reach_the_backend() {
    let router = start(RouterConfig::default()).await;
    router
        .routes
        .publish([("a.com".into(), spec("app", 0, backend("app").await))]);
    let answer = router
        .send(
            Request::get("/")
                .header("host", "A.com:9080")
                .header("x-forwarded-for", "10.1.1.1")
                .header("connection", "keep-alive, x-private")
                .header("x-private", "hop"),
            "",
        )
        .await;
    let seen = |name: &str| {
        answer
            .headers
            .get(name)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(seen("x-seen-host"), "A.com:9080");
    assert_eq!(seen("x-seen-forwarded-for"), "10.1.1.1, 127.0.0.1");
    assert_eq!(seen("x-seen-forwarded-proto"), "http");
    assert_eq!(seen("x-seen-path"), "/");
    // Hop-by-hop: what `Connection` names is the client's hop only, and `Connection` itself is
    // the router's business with the backend.
    assert_eq!(seen("x-seen-private"), "");
    assert!(!seen("x-seen-connection").contains("x-private"));
    // No trace requested: no trace headers.
    assert!(answer.headers.get("x-vcap-backend").is_none());
}

#[tokio::test]
async fn trace_headers_only_with_the_trace_key() {
    // No key by default (v1's was the public "22"): one is configured here.
    let router = start(RouterConfig {
        trace_key: "22".into(),
        ..RouterConfig::default()
    })
    .await;
    let addr = backend("app").await;
    router
        .routes
        .publish([("a.com".into(), spec("app", 0, addr))]);
    let traced = router
        .send(
            Request::get("/")
                .header("host", "a.com")
                .header("x-vcap-trace", "22"),
            "",
        )
        .await;
    assert_eq!(
        traced.headers.get("x-vcap-backend").unwrap(),
        addr.to_string().as_str()
    );
    assert_eq!(traced.headers.get("x-vcap-router").unwrap(), "127.0.0.1");
    let wrong_key = router
        .send(
            Request::get("/")
                .header("host", "a.com")
                .header("x-vcap-trace", "nope"),
            "",
        )
        .await;
    assert!(wrong_key.headers.get("x-vcap-backend").is_none());
}

#[tokio::test]
async fn sticky_sessions_follow_vcap_id() {
    let router = start(RouterConfig::default()).await;
    router.routes.publish([
        ("a.com".into(), spec("one", 0, backend("one").await)),
        ("a.com".into(), spec("two", 0, backend("two").await)),
    ]);
    let first = router.get("a.com", "/session").await;
    let cookies: Vec<_> = first
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let vcap = cookies
        .iter()
        .find(|c| c.starts_with("__VCAP_ID__="))
        .expect("sticky cookie");
    assert_eq!(
        vcap,
        &format!(
            "__VCAP_ID__={}private; Path=/",
            first.body.replace("one", "one0").replace("two", "two0")
        )
    );
    let id = vcap
        .trim_start_matches("__VCAP_ID__=")
        .trim_end_matches("; Path=/");
    for _ in 0..4 {
        let again = router
            .send(
                Request::get("/")
                    .header("host", "a.com")
                    .header("cookie", format!("JSESSIONID=abc; __VCAP_ID__={id}")),
                "",
            )
            .await;
        assert_eq!(again.body, first.body);
    }
    // A stale id falls back to the balancer.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let stale = router
            .send(
                Request::get("/")
                    .header("host", "a.com")
                    .header("cookie", "__VCAP_ID__=gone"),
                "",
            )
            .await;
        seen.insert(stale.body);
    }
    assert_eq!(seen.len(), 2);
}

#[tokio::test]
async fn bodies_stream_both_ways() {
    let router = start(RouterConfig::default()).await;
    router
        .routes
        .publish([("a.com".into(), spec("app", 0, backend("app").await))]);
    let big: String = "0123456789abcdef".repeat(64 * 1024);
    let request = Request::post("/echo")
        .header("host", "a.com")
        .body(Full::new(Bytes::from(big.clone())))
        .unwrap();
    let answer = router.send_request(request).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body.len(), big.len());
    assert!(answer.body == big);
    let entry = router.journal.since(0).pop().unwrap();
    assert_eq!(entry.method, http::Method::POST);
    assert!(!entry.aborted);
}

#[tokio::test]
async fn head_requests_are_not_recorded_as_aborted() {
    let router = start(RouterConfig::default()).await;
    router
        .routes
        .publish([("a.com".into(), spec("app", 0, backend("app").await))]);
    let answer = router
        .send(Request::head("/").header("host", "a.com"), "")
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let entry = router
        .journal
        .wait_for(0, Duration::from_secs(10), |_| true)
        .await
        .unwrap();
    assert!(!entry.aborted, "{entry:?}");
}

#[tokio::test]
async fn requests_without_host_get_400_not_a_hang() {
    let router = start(RouterConfig::default()).await;
    let answer = router.raw(b"GET / HTTP/1.0\r\n\r\n").await;
    // hyper answers an HTTP/1.0 request in HTTP/1.0.
    assert!(answer.starts_with("HTTP/1.0 400"), "{answer}");
    assert!(
        answer.contains("x-afemu-router-error: bad-request"),
        "{answer}"
    );
}

#[tokio::test]
async fn garbage_gets_400_not_a_hang() {
    let router = start(RouterConfig::default()).await;
    for garbage in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
        b"GET / HTTP/1.1\r\nHost a.com\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
    ] {
        let answer = router.raw(garbage).await;
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{garbage:?} → {answer:?}"
        );
    }
    // And it still serves.
    assert_eq!(router.get("x.com", "/").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn giant_headers_are_refused_not_a_hang() {
    let router = start(RouterConfig::default()).await;
    let mut request = b"GET / HTTP/1.1\r\nHost: a.com\r\nX-Big: ".to_vec();
    request.extend(std::iter::repeat_n(b'a', 1024 * 1024));
    request.extend(b"\r\n\r\n");
    let answer = router.raw(&request).await;
    assert!(
        answer.starts_with("HTTP/1.1 431") || answer.starts_with("HTTP/1.1 400"),
        "{answer:.100}"
    );
}

#[tokio::test]
async fn a_swap_is_all_or_nothing_for_concurrent_requests() {
    // While tables that always hold a backend for the host are swapped in a loop, no request
    // on that host may see the no-route page.
    let router = Arc::new(start(RouterConfig::default()).await);
    let one = spec("one", 0, backend("one").await);
    let two = spec("two", 0, backend("two").await);
    router.routes.publish([("a.com".into(), one.clone())]);
    let stop = CancellationToken::new();
    let swapper = {
        let routes = router.routes.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut flips = 0u64;
            while !stop.is_cancelled() {
                let next = if flips.is_multiple_of(2) { &two } else { &one };
                routes.publish([
                    ("a.com".into(), next.clone()),
                    ("b.com".into(), one.clone()),
                ]);
                flips += 1;
                tokio::task::yield_now().await;
            }
            flips
        })
    };
    for _ in 0..200 {
        let answer = router.get("a.com", "/").await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    stop.cancel();
    assert!(swapper.await.unwrap() > 0);
    assert_eq!(router.journal.host_counters("a.com").default_error_pages, 0);
}

/// A raw HTTP/1.1 backend that answers `ok` with a length to each request and counts the
/// connections it accepted; with `close_after_one`, it closes each connection after its first
/// answer (as a backend whose keep-alive timeout ran out would), and reports each close.
async fn counting_backend(
    close_after_one: bool,
) -> (
    SocketAddr,
    Arc<std::sync::atomic::AtomicUsize>,
    tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (closed_tx, closed_rx) = tokio::sync::mpsc::unbounded_channel();
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let closed = closed_tx.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // One request head at a time (the tests send no bodies).
                    while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buffer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    buffer.drain(..end);
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                    if close_after_one {
                        drop(stream);
                        let _ = closed.send(());
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted, closed_rx)
}

#[tokio::test]
async fn backend_connections_are_kept_alive_and_reused() {
    let router = start(RouterConfig::default()).await;
    let (addr, accepted, _closed) = counting_backend(false).await;
    router
        .routes
        .publish([("a.com".into(), spec("app", 0, addr))]);
    for n in 1..=10 {
        assert_eq!(router.get("a.com", "/").await.body, "ok");
        // The connection goes back to the pool when the response ends, as the entry is written.
        router
            .journal
            .wait_for(n - 1, Duration::from_secs(10), |_| true)
            .await
            .expect("the request is journaled");
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_idle_connection_the_backend_closed_is_not_a_bad_gateway() {
    let router = start(RouterConfig::default()).await;
    let (addr, accepted, mut closed) = counting_backend(true).await;
    router
        .routes
        .publish([("a.com".into(), spec("app", 0, addr))]);
    for n in 1..=5 {
        let answer = router.get("a.com", "/").await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (StatusCode::OK, "ok"),
            "request {n}"
        );
        router
            .journal
            .wait_for(n - 1, Duration::from_secs(10), |_| true)
            .await
            .expect("the request is journaled");
        // The pooled connection is now closed by the backend: the next request must not fail.
        closed.recv().await.expect("the backend closed it");
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 5);
    assert_eq!(router.journal.host_counters("a.com").bad_gateway, 0);
}

#[tokio::test]
async fn an_app_answering_in_http_1_0_does_not_cost_the_client_its_keep_alive() {
    let router = start(RouterConfig::default()).await;
    // A backend of the python BaseHTTPServer kind: HTTP/1.0, one answer per connection.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut chunk = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            });
        }
    });
    router
        .routes
        .publish([("a.com".into(), spec("old", 0, addr))]);
    let mut client = TcpStream::connect(router.addr).await.unwrap();
    for n in 0..2 {
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: a.com\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let mut chunk = [0u8; 1024];
        while !answer.ends_with(b"ok") {
            let read = client.read(&mut chunk).await.unwrap();
            assert!(read > 0, "request {n}: the router closed the connection");
            answer.extend_from_slice(&chunk[..read]);
        }
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    }
}

#[tokio::test]
async fn hop_by_hop_headers_stay_on_their_hop_both_ways() {
    let router = start(RouterConfig::default()).await;
    router
        .routes
        .publish([("a.com".into(), spec("app", 0, backend("app").await))]);
    let request = Request::get("/hop")
        .header("host", "a.com")
        .header("te", "trailers")
        .header("connection", "te, x-private")
        .header("x-private", "hop")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = router.send_request(request).await;
    assert_eq!(
        answer.headers.get("x-seen-path").unwrap(),
        "/hop",
        "the request went elsewhere"
    );
    assert_eq!(answer.status, StatusCode::OK);
    let seen = |name: &str| {
        answer
            .headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(
        seen("x-seen-private").as_deref(),
        Some(""),
        "x-private reached the app"
    );
    assert_eq!(seen("x-seen-te").as_deref(), Some(""), "te reached the app");
    assert_eq!(
        seen("x-hop-reply"),
        None,
        "the backend's hop header reached the client"
    );
    assert_eq!(seen("keep-alive"), None);
    assert_eq!(seen("x-end-to-end").as_deref(), Some("for the client"));
}

/// A backend that reads a request, tells the test so, and never answers.
async fn swallowing_backend() -> (SocketAddr, tokio::sync::mpsc::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (arrived, arrivals) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "the router closed before sending the request head");
                head.extend_from_slice(&buf[..n]);
            }
            arrived.send(()).await.unwrap();
            held.push(stream);
        }
    });
    (addr, arrivals)
}

#[tokio::test]
async fn a_client_that_leaves_before_the_answer_is_journaled_and_releases_the_backend() {
    let router = start(RouterConfig::default()).await;
    let (addr, mut arrivals) = swallowing_backend().await;
    let backend = spec("app", 0, addr);
    router.routes.publish([("a.com".into(), backend.clone())]);

    let mut client = TcpStream::connect(router.addr).await.unwrap();
    client
        .write_all(b"GET /waiting HTTP/1.1\r\nHost: a.com\r\n\r\n")
        .await
        .unwrap();
    arrivals.recv().await.expect("the request reached the app");
    drop(client);

    let entry = router
        .journal
        .wait_for(0, Duration::from_secs(10), |_| true)
        .await
        .expect("the abandoned request is in the journal");
    assert_eq!(entry.path, "/waiting");
    assert_eq!(entry.status, afemu_router::CLIENT_CLOSED_REQUEST);
    assert!(entry.aborted);
    assert_eq!(entry.app.as_deref(), Some("app"));
    assert!(!entry.is_default_error_page());

    // Nothing holds the backend any more: unmapped, it drains at once.
    router.routes.publish([]);
    assert_eq!(backend.drain(Duration::from_secs(10)).await, 0);
}

#[tokio::test]
async fn an_absolute_form_target_routes_and_names_the_host_the_app_sees() {
    let router = start(RouterConfig::default()).await;
    router.routes.publish([
        ("a.com".into(), spec("a", 0, backend("a").await)),
        ("b.com".into(), spec("b", 0, backend("b").await)),
    ]);
    let answer = router
        .raw(b"GET http://a.com/x?y=1 HTTP/1.1\r\nHost: b.com\r\nConnection: close\r\n\r\n")
        .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("x-seen-host: a.com\r\n"), "{answer}");
    assert!(lower.contains("x-seen-path: /x?y=1\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\na"), "{answer}");
}
