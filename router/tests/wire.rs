//! The router on the wire, byte for byte: body framing both ways (lengths, chunks, bodies that end
//! with the connection), pipelining, interim responses, apps that answer early or badly, and the
//! framing tricks that smuggle requests. Clients and apps here are raw sockets, so that what is
//! tested is exactly what crosses the wire.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use afemu_router::{Backend, BackendSpec, Journal, Router, RouterConfig, Routes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

/// What a scripted app answers to one request (its head and body, as received).
type Script = fn(&Received) -> Reply;

#[derive(Debug, Clone)]
struct Received {
    head: String,
    body: Vec<u8>,
}

impl Received {
    fn path(&self) -> &str {
        self.head.split(' ').nth(1).unwrap_or("")
    }
}

struct Reply {
    bytes: Vec<u8>,
    /// Close the connection after the reply.
    close: bool,
    /// Answer as soon as the head is in, without reading the body.
    early: bool,
}

fn reply(bytes: &[u8]) -> Reply {
    Reply {
        bytes: bytes.to_vec(),
        close: false,
        early: false,
    }
}

/// An app that reads requests (heads, and bodies by `Content-Length` or to the last chunk) and
/// answers each as its script says; every request it received goes to the channel.
struct App {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    received: mpsc::UnboundedReceiver<Received>,
}

async fn app(script: Script) -> App {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let (sent, received) = mpsc::unbounded_channel();
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve_script(stream, script, sent.clone()));
        }
    });
    App {
        addr,
        accepted,
        received,
    }
}

async fn serve_script(
    mut stream: TcpStream,
    script: Script,
    sent: mpsc::UnboundedSender<Received>,
) {
    let mut buffer = Vec::new();
    loop {
        let head_end = loop {
            if let Some(at) = find(&buffer, b"\r\n\r\n") {
                break at + 4;
            }
            if !read_more(&mut stream, &mut buffer).await {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        buffer.drain(..head_end);
        let lower = head.to_ascii_lowercase();
        let probe = Received {
            head: head.clone(),
            body: Vec::new(),
        };
        let answer = script(&probe);
        if answer.early {
            let _ = sent.send(probe);
            let _ = stream.write_all(&answer.bytes).await;
            // Holds the connection without reading, as a busy app would.
            tokio::time::sleep(WAIT).await;
            return;
        }
        let body = if let Some(length) = header(&lower, "content-length") {
            let length: usize = length.parse().unwrap();
            while buffer.len() < length {
                if !read_more(&mut stream, &mut buffer).await {
                    return;
                }
            }
            buffer.drain(..length).collect()
        } else if header(&lower, "transfer-encoding").is_some() {
            // The last chunk ("0"), then its trailers up to the empty line (test data only:
            // no chunk here holds "\r\n0\r\n").
            let end = loop {
                let last = if buffer.starts_with(b"0\r\n") {
                    Some(0)
                } else {
                    find(&buffer, b"\r\n0\r\n").map(|at| at + 2)
                };
                if let Some(at) = last
                    .and_then(|last| find(&buffer[last..], b"\r\n\r\n").map(|end| last + end + 4))
                {
                    break at;
                }
                if !read_more(&mut stream, &mut buffer).await {
                    return;
                }
            };
            buffer.drain(..end).collect()
        } else {
            Vec::new()
        };
        let received = Received { head, body };
        let answer = script(&received);
        let _ = sent.send(received);
        if stream.write_all(&answer.bytes).await.is_err() || answer.close {
            return;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The value of a header in a lower-cased head.
fn header<'a>(lower_head: &'a str, name: &str) -> Option<&'a str> {
    lower_head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        (n.trim() == name).then(|| v.trim())
    })
}

async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buffer.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

struct Harness {
    addr: SocketAddr,
    routes: Routes,
    journal: Journal,
    shutdown: CancellationToken,
    /// The router's `serve`, which returns once it has shut down.
    served: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn router() -> Harness {
    router_with(RouterConfig::default()).await
}

async fn router_with(config: RouterConfig) -> Harness {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = Routes::new();
    let journal = Journal::new(1024);
    let shutdown = CancellationToken::new();
    let router = Router::new(config, routes.clone(), journal.clone());
    let served = tokio::spawn(router.serve(listener, shutdown.clone()));
    Harness {
        addr,
        routes,
        journal,
        shutdown,
        served: Some(served),
    }
}

impl Harness {
    fn map(&self, host: &str, addr: SocketAddr) {
        let backend = Backend::new(BackendSpec {
            addr,
            app: "app".into(),
            instance_index: 0,
            instance_id: "app0".into(),
            private_instance_id: "app0private".into(),
            version: "v".into(),
        });
        self.routes.publish([(host.into(), backend)]);
    }

    async fn connect(&self) -> Client {
        Client {
            stream: TcpStream::connect(self.addr).await.unwrap(),
            buffer: Vec::new(),
        }
    }
}

/// A raw client connection that reads responses one at a time.
struct Client {
    stream: TcpStream,
    buffer: Vec<u8>,
}

#[derive(Debug)]
struct Response {
    head: String,
    body: Vec<u8>,
}

impl Response {
    fn status(&self) -> u16 {
        self.head.split(' ').nth(1).unwrap().parse().unwrap()
    }

    fn header(&self, name: &str) -> Option<String> {
        header(&self.head.to_ascii_lowercase(), name).map(str::to_owned)
    }
}

impl Client {
    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    async fn fill(&mut self) -> bool {
        tokio::time::timeout(WAIT, read_more(&mut self.stream, &mut self.buffer))
            .await
            .expect("the router answers in time")
    }

    /// Reads one response, decoding its framing as a client would; `head_request` for a HEAD.
    async fn response(&mut self, head_request: bool) -> Response {
        let head_end = loop {
            if let Some(at) = find(&self.buffer, b"\r\n\r\n") {
                break at + 4;
            }
            assert!(
                self.fill().await,
                "closed before a response head: {:?}",
                self.text()
            );
        };
        let head = String::from_utf8_lossy(&self.buffer[..head_end]).into_owned();
        self.buffer.drain(..head_end);
        let lower = head.to_ascii_lowercase();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        let body = if head_request || status == 204 || status == 304 || status < 200 {
            Vec::new()
        } else if header(&lower, "transfer-encoding") == Some("chunked") {
            let mut body = Vec::new();
            loop {
                let line_end = loop {
                    if let Some(at) = find(&self.buffer, b"\r\n") {
                        break at;
                    }
                    assert!(self.fill().await, "closed in a chunk size");
                };
                let size = std::str::from_utf8(&self.buffer[..line_end]).unwrap();
                let size = usize::from_str_radix(size.split(';').next().unwrap(), 16).unwrap();
                self.buffer.drain(..line_end + 2);
                while self.buffer.len() < size + 2 {
                    assert!(self.fill().await, "closed in a chunk");
                }
                body.extend(self.buffer.drain(..size));
                assert_eq!(&self.buffer[..2], b"\r\n");
                self.buffer.drain(..2);
                if size == 0 {
                    break;
                }
            }
            body
        } else if let Some(length) = header(&lower, "content-length") {
            let length: usize = length.parse().unwrap();
            while self.buffer.len() < length {
                assert!(self.fill().await, "closed in the body");
            }
            self.buffer.drain(..length).collect()
        } else {
            while self.fill().await {}
            std::mem::take(&mut self.buffer)
        };
        Response { head, body }
    }

    /// Whether the router closes the connection (with nothing more to say).
    async fn closed(&mut self) -> bool {
        !self.fill().await && self.buffer.is_empty()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer).into_owned()
    }
}

fn ok_with_length(_: &Received) -> Reply {
    reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
}

fn echo_path_and_body(received: &Received) -> Reply {
    let body = [received.path().as_bytes(), b" ", &received.body].concat();
    let mut bytes =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    bytes.extend(body);
    reply(&bytes)
}

#[tokio::test]
async fn a_chunked_request_body_reaches_the_app_byte_for_byte() {
    let router = router().await;
    let mut app = app(echo_path_and_body).await;
    router.map("a.com", app.addr);
    let mut client = router.connect().await;
    let chunked = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n";
    client
        .send(b"POST /up HTTP/1.1\r\nHost: a.com\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await;
    // In pieces, cut inside the framing.
    for piece in chunked.chunks(7) {
        client.send(piece).await;
    }
    let response = client.response(false).await;
    assert_eq!(response.status(), 200);
    let seen = app.received.recv().await.unwrap();
    assert_eq!(
        seen.body, chunked,
        "the app got the chunks as they were sent"
    );
    assert!(
        seen.head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked\r\n"),
        "{}",
        seen.head
    );
    // The connection carries on after the last chunk.
    client
        .send(b"GET /next HTTP/1.1\r\nHost: a.com\r\n\r\n")
        .await;
    assert_eq!(client.response(false).await.body, b"/next ");
}

#[tokio::test]
async fn a_chunked_response_passes_through_and_both_connections_stay_open() {
    fn chunked(_: &Received) -> Reply {
        reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    }
    let router = router().await;
    let app = app(chunked).await;
    router.map("a.com", app.addr);
    let mut client = router.connect().await;
    for _ in 0..3 {
        client.send(b"GET / HTTP/1.1\r\nHost: a.com\r\n\r\n").await;
        let response = client.response(false).await;
        assert_eq!(response.body, b"hello");
        assert_eq!(
            response.header("transfer-encoding").as_deref(),
            Some("chunked")
        );
    }
    assert_eq!(
        app.accepted.load(Ordering::SeqCst),
        1,
        "the app connection was reused"
    );
}

#[tokio::test]
async fn a_body_that_ends_with_the_connection_is_rechunked_for_http_1_1_and_closes_http_1_0() {
    fn until_close(_: &Received) -> Reply {
        Reply {
            bytes: b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nthe whole body".to_vec(),
            close: true,
            early: false,
        }
    }
    let router = router().await;
    let app = app(until_close).await;
    router.map("a.com", app.addr);

    let mut client = router.connect().await;
    for _ in 0..2 {
        client.send(b"GET / HTTP/1.1\r\nHost: a.com\r\n\r\n").await;
        let response = client.response(false).await;
        assert_eq!(
            response.header("transfer-encoding").as_deref(),
            Some("chunked")
        );
        assert_eq!(response.body, b"the whole body");
        assert_eq!(response.header("connection"), None, "{}", response.head);
    }

    let mut old = router.connect().await;
    old.send(b"GET / HTTP/1.0\r\nHost: a.com\r\nConnection: keep-alive\r\n\r\n")
        .await;
    let response = old.response(false).await;
    assert!(
        response.head.starts_with("HTTP/1.0 200"),
        "{}",
        response.head
    );
    assert_eq!(response.header("transfer-encoding"), None);
    assert_eq!(response.body, b"the whole body");
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let router = router().await;
    let app = app(echo_path_and_body).await;
    router.map("a.com", app.addr);
    let mut client = router.connect().await;
    client
        .send(
            b"GET /1 HTTP/1.1\r\nHost: a.com\r\n\r\n\
              POST /2 HTTP/1.1\r\nHost: a.com\r\nContent-Length: 4\r\n\r\nbody\
              GET /3 HTTP/1.1\r\nHost: a.com\r\n\r\n",
        )
        .await;
    assert_eq!(client.response(false).await.body, b"/1 ");
    assert_eq!(client.response(false).await.body, b"/2 body");
    assert_eq!(client.response(false).await.body, b"/3 ");
}

#[tokio::test]
async fn a_client_that_expects_100_continue_gets_it_and_the_app_gets_the_body() {
    let router = router().await;
    let mut app = app(echo_path_and_body).await;
    router.map("a.com", app.addr);
    let mut client = router.connect().await;
    client
        .send(
            b"PUT /up HTTP/1.1\r\nHost: a.com\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        )
        .await;
    // The client sends its body only once it is told to go on.
    let interim = client.response(false).await;
    assert_eq!(interim.status(), 100, "{}", interim.head);
    client.send(b"hello").await;
    let response = client.response(false).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.body, b"/up hello");
    let seen = app.received.recv().await.unwrap();
    assert!(
        !seen.head.to_ascii_lowercase().contains("expect"),
        "the router answered the expectation itself: {}",
        seen.head
    );
}

#[tokio::test]
async fn an_app_that_answers_before_reading_the_body_gets_the_client_connection_closed() {
    fn too_large(_: &Received) -> Reply {
        Reply {
            bytes: b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n".to_vec(),
            close: false,
            early: true,
        }
    }
    let router = router().await;
    let app = app(too_large).await;
    router.map("a.com", app.addr);
    let mut client = router.connect().await;
    client
        .send(b"POST / HTTP/1.1\r\nHost: a.com\r\nContent-Length: 10000000\r\n\r\nthe start")
        .await;
    let response = client.response(false).await;
    assert_eq!(response.status(), 413);
    assert_eq!(response.header("connection").as_deref(), Some("close"));
    assert!(
        client.closed().await,
        "the unread body must not be taken as a request"
    );
    let entry = router
        .journal
        .wait_for(0, WAIT, |_| true)
        .await
        .expect("journaled");
    assert_eq!((entry.status, entry.router_error), (413, None));
}

#[tokio::test]
async fn a_malformed_or_oversized_response_is_a_bad_gateway() {
    fn garbage(received: &Received) -> Reply {
        if received.path() == "/big" {
            let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
            for n in 0..50 {
                head.extend(format!("X-Big-{n}: {}\r\n", "a".repeat(8000)).as_bytes());
            }
            head.extend(b"Content-Length: 0\r\n\r\n");
            return reply(&head);
        }
        if received.path() == "/both" {
            return reply(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
        }
        reply(b"SMTP ready\r\n\r\n")
    }
    let router = router().await;
    let app = app(garbage).await;
    router.map("a.com", app.addr);
    for path in ["/garbage", "/big", "/both"] {
        let mut client = router.connect().await;
        client
            .send(format!("GET {path} HTTP/1.1\r\nHost: a.com\r\n\r\n").as_bytes())
            .await;
        let response = client.response(false).await;
        assert_eq!(response.status(), 502, "{path}: {}", response.head);
        assert_eq!(
            response.header("x-afemu-router-error").as_deref(),
            Some("bad-gateway")
        );
    }
    assert_eq!(router.journal.host_counters("a.com").bad_gateway, 3);
}

#[tokio::test]
async fn framing_that_could_smuggle_a_request_is_refused_before_the_app() {
    let router = router().await;
    let app = app(ok_with_length).await;
    router.map("a.com", app.addr);
    for attack in [
        &b"POST / HTTP/1.1\r\nHost: a.com\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a.com\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: a.com\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a.com\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.0\r\nHost: a.com\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a.com\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        b"POST / HTTP/1.1\r\nHost: a.com\r\nContent-Length: 0x4\r\n\r\nabcd",
        b"POST / HTTP/1.1\r\nHost: a.com\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.com\r\nHost: b.com\r\n\r\n",
    ] {
        let mut client = router.connect().await;
        client.send(attack).await;
        let response = client.response(false).await;
        assert_eq!(response.status(), 400, "{:?}", String::from_utf8_lossy(attack));
        assert!(client.closed().await, "{:?}", String::from_utf8_lossy(attack));
    }
    assert_eq!(
        app.accepted.load(Ordering::SeqCst),
        0,
        "nothing reached the app"
    );
}

#[tokio::test]
async fn a_response_cut_short_is_journaled_as_aborted_and_the_client_connection_closed() {
    fn short(_: &Received) -> Reply {
        Reply {
            bytes: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".to_vec(),
            close: true,
            early: false,
        }
    }
    let router = router().await;
    let app = app(short).await;
    router.map("a.com", app.addr);
    let mut client = router.connect().await;
    client.send(b"GET / HTTP/1.1\r\nHost: a.com\r\n\r\n").await;
    while find(&client.buffer, b"abc").is_none() {
        assert!(
            client.fill().await,
            "closed before the body: {}",
            client.text()
        );
    }
    while client.fill().await {}
    assert!(client.text().ends_with("\r\n\r\nabc"), "{}", client.text());
    let entry = router.journal.wait_for(0, WAIT, |_| true).await.unwrap();
    assert!(entry.aborted);
    assert_eq!(entry.status, 200);
}

#[tokio::test]
async fn bodiless_responses_end_at_their_head_whatever_they_announce() {
    fn announces(received: &Received) -> Reply {
        if received.path() == "/nothing" {
            return reply(b"HTTP/1.1 204 No Content\r\n\r\n");
        }
        if received.path() == "/announced" {
            // A 204 that says it has a length (and an app that may then send it).
            return reply(b"HTTP/1.1 204 No Content\r\nContent-Length: 4\r\n\r\n");
        }
        reply(b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n")
    }
    let router = router().await;
    let app = app(announces).await;
    router.map("a.com", app.addr);
    let mut client = router.connect().await;
    client.send(b"HEAD / HTTP/1.1\r\nHost: a.com\r\n\r\n").await;
    let response = client.response(true).await;
    assert_eq!(response.header("content-length").as_deref(), Some("42"));
    client
        .send(b"GET /nothing HTTP/1.1\r\nHost: a.com\r\n\r\n")
        .await;
    assert_eq!(client.response(false).await.status(), 204);
    client.send(b"HEAD / HTTP/1.1\r\nHost: a.com\r\n\r\n").await;
    assert_eq!(client.response(true).await.status(), 200);
    // A HEAD answered with a length is not followed by another request on that app connection
    // (the app may send the body anyway: `hostile.rs`); the 204 left its connection for the
    // second HEAD.
    assert_eq!(app.accepted.load(Ordering::SeqCst), 2);
    let entries = router.journal.wait_for(2, WAIT, |_| true).await.unwrap();
    assert!(!entries.aborted);
    // A 204 reaches the client without the length its app announced (RFC 9110 §8.6).
    client
        .send(b"GET /announced HTTP/1.1\r\nHost: a.com\r\n\r\n")
        .await;
    let response = client.response(false).await;
    assert_eq!(response.status(), 204);
    assert_eq!(response.header("content-length"), None);
}

#[tokio::test]
async fn shutdown_closes_idle_keep_alive_connections_and_finishes_requests_in_flight() {
    let mut harness = router_with(RouterConfig {
        // Far longer than the test waits: returning at all means nothing waited for it.
        shutdown_grace: Duration::from_secs(3600),
        ..RouterConfig::default()
    })
    .await;
    let served = harness.served.take().unwrap();
    // An app that answers only once told to.
    let (release, mut released) = mpsc::channel::<()>(1);
    let (arrive, mut arrived) = mpsc::channel::<()>(1);
    let slow = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow_addr = slow.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = slow.accept().await.unwrap();
        let mut buffer = Vec::new();
        while find(&buffer, b"\r\n\r\n").is_none() {
            assert!(read_more(&mut stream, &mut buffer).await);
        }
        arrive.send(()).await.unwrap();
        released.recv().await;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate")
            .await
            .unwrap();
    });
    harness.map("a.com", slow_addr);

    let mut idle = harness.connect().await;
    idle.send(b"GET / HTTP/1.1\r\nHost: nowhere.com\r\n\r\n")
        .await;
    assert_eq!(idle.response(false).await.status(), 404);
    let mut busy = harness.connect().await;
    busy.send(b"GET / HTTP/1.1\r\nHost: a.com\r\n\r\n").await;
    // The request is with the app when the shutdown begins.
    arrived.recv().await.unwrap();
    harness.shutdown.cancel();
    assert!(idle.closed().await, "the idle connection is closed at once");
    release.send(()).await.unwrap();
    let response = busy.response(false).await;
    assert_eq!(response.body, b"late", "the request in flight finished");
    assert_eq!(response.header("connection").as_deref(), Some("close"));
    tokio::time::timeout(WAIT, served)
        .await
        .expect("serve returns once its connections are done")
        .unwrap();
}
