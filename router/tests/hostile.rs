//! The router against apps and clients that misbehave on purpose (issue 14): endless interim
//! responses, clients that stop reading, apps that stall in the middle of a body or send bytes
//! nobody asked for, idle connections nobody closes, framing and hosts that only look right.
//! Each test is a raw-socket reproduction of one finding, and waits for an event (a close, a
//! journal entry, a socket state), never for a while; the timeouts it relies on are set short.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use afemu_router::{Backend, BackendSpec, Journal, Refused, Router, RouterConfig, Routes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long a test waits for an event that must happen (far longer than any timeout set here).
const WAIT: Duration = Duration::from_secs(20);
/// The timeouts a test shortens, so that the event it waits for comes soon.
const SHORT: Duration = Duration::from_millis(300);

struct Harness {
    addr: SocketAddr,
    routes: Routes,
    journal: Journal,
    shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn router_with(config: RouterConfig) -> Harness {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = Routes::new();
    let journal = Journal::new(1024);
    let shutdown = CancellationToken::new();
    let router = Router::new(config, routes.clone(), journal.clone());
    tokio::spawn(router.serve(listener, shutdown.clone()));
    Harness {
        addr,
        routes,
        journal,
        shutdown,
    }
}

impl Harness {
    fn map(&self, hosts: &[(&str, SocketAddr)]) {
        let entries: Vec<_> = hosts
            .iter()
            .map(|(host, addr)| {
                let backend = Backend::new(BackendSpec {
                    addr: *addr,
                    app: "app".into(),
                    instance_index: 0,
                    instance_id: "app0".into(),
                    private_instance_id: "app0private".into(),
                    version: "v".into(),
                });
                (Arc::<str>::from(*host), backend)
            })
            .collect();
        self.routes.publish(entries);
    }

    async fn connect(&self) -> Client {
        Client {
            stream: TcpStream::connect(self.addr).await.unwrap(),
            buffer: Vec::new(),
        }
    }

    /// A client whose receive buffer is as small as the kernel allows, so that it stops taking
    /// bytes soon once it stops reading.
    async fn connect_small(&self) -> Client {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        Client {
            stream: socket.connect(self.addr).await.unwrap(),
            buffer: Vec::new(),
        }
    }
}

/// An app: each connection it accepts goes to `serve`; `accepted` counts them.
struct App {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

async fn app<F, Fut>(serve: F) -> App
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let socket = TcpSocket::new_v4().unwrap();
    // Accepted connections inherit it: an app whose writes block early.
    socket.set_send_buffer_size(16 * 1024).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(64).unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let serve = Arc::new(serve);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(stream));
        }
    });
    App { addr, accepted }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads up to the end of a head; the head (and what came after it stays in `buffer`). `None`
/// when the peer closed first.
async fn read_head(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(at) = find(buffer, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..at + 4]).into_owned();
            buffer.drain(..at + 4);
            return Some(head);
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Waits until the peer closes `stream` (reading and dropping whatever comes first).
async fn until_closed(stream: &mut TcpStream) {
    let mut sink = [0u8; 65536];
    tokio::time::timeout(WAIT, async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the router closes the connection");
}

/// A raw client.
struct Client {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Client {
    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 65536];
        match tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
            .await
            .expect("the router answers in time")
        {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next head (a 1xx or a final one).
    async fn head(&mut self) -> String {
        loop {
            if let Some(at) = find(&self.buffer, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buffer[..at + 4]).into_owned();
                self.buffer.drain(..at + 4);
                return head;
            }
            assert!(self.fill().await, "closed before a head: {:?}", self.text());
        }
    }

    /// Exactly `length` body bytes.
    async fn body(&mut self, length: usize) -> Vec<u8> {
        while self.buffer.len() < length {
            assert!(self.fill().await, "closed in the body");
        }
        self.buffer.drain(..length).collect()
    }

    /// Everything until the router closes the connection.
    async fn rest(&mut self) -> Vec<u8> {
        while self.fill().await {}
        std::mem::take(&mut self.buffer)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer).into_owned()
    }
}

fn status(head: &str) -> u16 {
    head.split(' ').nth(1).unwrap().parse().unwrap()
}

fn header(head: &str, name: &str) -> Vec<String> {
    head.lines()
        .filter_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
        .collect()
}

/// Finding 1: an app that sends interim responses without end, to a client that does not read,
/// must not make the router buffer them without end. The app tries to write 128 MiB of `103`s;
/// the router may take only what the sockets hold plus its own bound before it stops reading,
/// so the app's write cannot complete; it ends in an error when the router gives up at the
/// backend timeout and closes the app's connection.
#[tokio::test]
async fn an_endless_stream_of_1xx_to_a_client_that_does_not_read_is_not_buffered() {
    const TOTAL: usize = 128 << 20;
    let (done, mut written) = mpsc::unbounded_channel::<Result<(), usize>>();
    let app = app(move |mut stream| {
        let done = done.clone();
        async move {
            let mut buffer = Vec::new();
            read_head(&mut stream, &mut buffer).await.unwrap();
            let hint = format!(
                "HTTP/1.1 103 Early Hints\r\nLink: <{}>\r\n\r\n",
                "x".repeat(8000)
            );
            let mut sent = 0;
            while sent < TOTAL {
                if stream.write_all(hint.as_bytes()).await.is_err() {
                    let _ = done.send(Err(sent));
                    return;
                }
                sent += hint.len();
            }
            let _ = done.send(Ok(()));
        }
    })
    .await;
    let router = router_with(RouterConfig {
        backend_timeout: Duration::from_secs(1),
        client_write_timeout: SHORT,
        ..RouterConfig::default()
    })
    .await;
    router.map(&[("a.com", app.addr)]);
    let mut client = router.connect_small().await;
    client.send(b"GET / HTTP/1.1\r\nHost: a.com\r\n\r\n").await;
    // The client reads nothing from here on.
    let outcome = tokio::time::timeout(WAIT, written.recv())
        .await
        .expect("the app's write ends")
        .unwrap();
    match outcome {
        Ok(()) => panic!("the router took all {TOTAL} bytes of interim responses"),
        Err(sent) => assert!(sent < TOTAL / 2, "the router took {sent} bytes"),
    }
}

/// Finding 2: a 1xx that arrives in the same read as the final head goes to the client before
/// that head, and never to the next request on the connection.
#[tokio::test]
async fn a_1xx_read_with_the_final_head_goes_out_with_it_and_not_to_the_next_request() {
    let app = app(|mut stream| async move {
        let mut buffer = Vec::new();
        let mut first = true;
        while read_head(&mut stream, &mut buffer).await.is_some() {
            let answer: &[u8] = if first {
                b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
                  HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond"
            };
            first = false;
            stream.write_all(answer).await.unwrap();
        }
    })
    .await;
    let router = router_with(RouterConfig::default()).await;
    router.map(&[("a.com", app.addr)]);
    let mut client = router.connect().await;
    client.send(b"GET /1 HTTP/1.1\r\nHost: a.com\r\n\r\n").await;
    let hint = client.head().await;
    assert_eq!(status(&hint), 103, "{hint}");
    assert_eq!(header(&hint, "link"), ["</style.css>; rel=preload"]);
    let response = client.head().await;
    assert_eq!(status(&response), 200, "{response}");
    assert_eq!(client.body(5).await, b"first");
    client.send(b"GET /2 HTTP/1.1\r\nHost: a.com\r\n\r\n").await;
    let response = client.head().await;
    assert_eq!(
        status(&response),
        200,
        "the previous request's 103 came back: {response}"
    );
    assert_eq!(client.body(6).await, b"second");
}

/// An app that sends a body far larger than the sockets hold.
async fn big_body_app(released: mpsc::UnboundedSender<()>) -> App {
    app(move |mut stream| {
        let released = released.clone();
        async move {
            let mut buffer = Vec::new();
            read_head(&mut stream, &mut buffer).await.unwrap();
            let total = 256 << 20;
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n");
            stream.write_all(head.as_bytes()).await.unwrap();
            let block = vec![b'x'; 1 << 16];
            let mut sent = 0;
            while sent < total {
                if stream.write_all(&block).await.is_err() {
                    break;
                }
                sent += block.len();
            }
            // The router closed its side (a write failed) or took everything.
            let _ = released.send(());
        }
    })
    .await
}

/// Finding 3: a client that stops reading a large body is disconnected after the client write
/// timeout, and its app connection is released: the request is journaled as aborted.
#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_and_its_app_connection_released() {
    let (released, mut app_released) = mpsc::unbounded_channel();
    let app = big_body_app(released).await;
    let router = router_with(RouterConfig {
        client_write_timeout: SHORT,
        ..RouterConfig::default()
    })
    .await;
    router.map(&[("a.com", app.addr)]);
    let mut client = router.connect_small().await;
    client.send(b"GET / HTTP/1.1\r\nHost: a.com\r\n\r\n").await;
    let head = client.head().await;
    assert_eq!(status(&head), 200);
    // From here on the client reads nothing.
    let entry = router
        .journal
        .wait_for(0, WAIT, |_| true)
        .await
        .expect("the request ends, cut short");
    assert!(entry.aborted, "{entry:?}");
    tokio::time::timeout(WAIT, app_released.recv())
        .await
        .expect("the app's connection is closed")
        .unwrap();
}

/// Finding 3: an app that stalls in the middle of a body is given up after the response body
/// timeout; the client's connection is closed (it cannot be told otherwise) and the request
/// journaled as aborted.
#[tokio::test]
async fn an_app_that_stalls_mid_body_is_given_up_after_the_body_timeout() {
    let app = app(|mut stream| async move {
        let mut buffer = Vec::new();
        read_head(&mut stream, &mut buffer).await.unwrap();
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
            .await
            .unwrap();
        // Stalls: holds the connection open without a byte more.
        let _ = stream.read(&mut [0u8; 1]).await;
    })
    .await;
    let router = router_with(RouterConfig {
        response_body_timeout: SHORT,
        ..RouterConfig::default()
    })
    .await;
    router.map(&[("a.com", app.addr)]);
    let mut client = router.connect().await;
    client.send(b"GET / HTTP/1.1\r\nHost: a.com\r\n\r\n").await;
    assert_eq!(status(&client.head().await), 200);
    assert_eq!(client.rest().await, b"only part");
    let entry = router.journal.wait_for(0, WAIT, |_| true).await.unwrap();
    assert!(entry.aborted, "{entry:?}");
}

/// Finding 3: a client that goes away while the app stalls mid-body releases the app's
/// connection at once (the timeouts here are the defaults: minutes).
#[tokio::test]
async fn a_client_that_leaves_while_the_app_stalls_mid_body_releases_the_app_at_once() {
    let (released, mut app_released) = mpsc::unbounded_channel();
    let app = app(move |mut stream| {
        let released = released.clone();
        async move {
            let mut buffer = Vec::new();
            read_head(&mut stream, &mut buffer).await.unwrap();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
                .await
                .unwrap();
            // Stalls until the router closes the connection.
            until_closed(&mut stream).await;
            let _ = released.send(());
        }
    })
    .await;
    let router = router_with(RouterConfig::default()).await;
    router.map(&[("a.com", app.addr)]);
    let mut client = router.connect().await;
    client.send(b"GET / HTTP/1.1\r\nHost: a.com\r\n\r\n").await;
    assert_eq!(status(&client.head().await), 200);
    assert_eq!(client.body(9).await, b"only part");
    drop(client);
    tokio::time::timeout(WAIT, app_released.recv())
        .await
        .expect("the app's connection is closed once the client has gone")
        .unwrap();
    let entry = router.journal.wait_for(0, WAIT, |_| true).await.unwrap();
    assert!(entry.aborted, "{entry:?}");
}

/// Finding 3: a client that stops sending its request body gets 408 after the request body
/// timeout; the request is journaled as refused for it.
#[tokio::test]
async fn a_client_that_stops_sending_its_body_gets_408() {
    let app = app(|mut stream| async move {
        until_closed(&mut stream).await;
    })
    .await;
    let router = router_with(RouterConfig {
        request_body_timeout: SHORT,
        ..RouterConfig::default()
    })
    .await;
    router.map(&[("a.com", app.addr)]);
    let mut client = router.connect().await;
    client
        .send(b"POST / HTTP/1.1\r\nHost: a.com\r\nContent-Length: 10\r\n\r\nabc")
        .await;
    let head = client.head().await;
    assert_eq!(status(&head), 408, "{head}");
    client.rest().await;
    let entry = router.journal.wait_for(0, WAIT, |_| true).await.unwrap();
    assert_eq!(
        (entry.status, entry.refused),
        (408, Some(Refused::BodyTimeout))
    );
}

/// Finding 3: an idle keep-alive connection is closed after the keep-alive timeout, which is
/// not the request head timeout.
#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout() {
    let router = router_with(RouterConfig {
        keep_alive_timeout: SHORT,
        header_read_timeout: Duration::from_secs(3600),
        ..RouterConfig::default()
    })
    .await;
    let mut client = router.connect().await;
    client
        .send(b"GET / HTTP/1.1\r\nHost: nowhere.com\r\n\r\n")
        .await;
    assert_eq!(status(&client.head().await), 404);
    client.rest().await;
}

/// Finding 3: a request head that is begun and not finished in time is journaled as refused.
#[tokio::test]
async fn a_request_head_not_finished_in_time_is_closed_and_journaled() {
    let router = router_with(RouterConfig {
        header_read_timeout: SHORT,
        ..RouterConfig::default()
    })
    .await;
    let mut client = router.connect().await;
    client.send(b"GET / HTTP/1.1\r\nHost: a.c").await;
    assert!(client.rest().await.is_empty(), "closed without an answer");
    let entry = router.journal.wait_for(0, WAIT, |_| true).await.unwrap();
    assert_eq!(
        (entry.status, entry.refused),
        (408, Some(Refused::HeadTimeout))
    );
}

/// Finding 4: an idle pooled connection that the app closes is closed by the router too, without
/// waiting for the next request to that app (no CLOSE-WAIT left behind).
#[tokio::test]
async fn a_pooled_connection_the_app_closed_is_closed_by_the_router() {
    let (closed, mut router_closed) = mpsc::unbounded_channel();
    let app = app(move |mut stream| {
        let closed = closed.clone();
        async move {
            let mut buffer = Vec::new();
            read_head(&mut stream, &mut buffer).await.unwrap();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await
                .unwrap();
            // The app closes its side of the kept-alive connection, then waits for the router's.
            stream.shutdown().await.unwrap();
            until_closed(&mut stream).await;
            let _ = closed.send(());
        }
    })
    .await;
    let router = router_with(RouterConfig::default()).await;
    router.map(&[("a.com", app.addr)]);
    let mut client = router.connect().await;
    client.send(b"GET / HTTP/1.1\r\nHost: a.com\r\n\r\n").await;
    assert_eq!(status(&client.head().await), 200);
    tokio::time::timeout(WAIT, router_closed.recv())
        .await
        .expect("the router closes its end")
        .unwrap();
}

/// Finding 4: an idle pooled connection is closed after the pool's idle timeout, whether or not
/// another request comes.
#[tokio::test]
async fn an_idle_pooled_connection_expires_without_another_request() {
    let (closed, mut router_closed) = mpsc::unbounded_channel();
    let app = app(move |mut stream| {
        let closed = closed.clone();
        async move {
            let mut buffer = Vec::new();
            read_head(&mut stream, &mut buffer).await.unwrap();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await
                .unwrap();
            until_closed(&mut stream).await;
            let _ = closed.send(());
        }
    })
    .await;
    let router = router_with(RouterConfig {
        pool_idle_timeout: SHORT,
        ..RouterConfig::default()
    })
    .await;
    router.map(&[("a.com", app.addr)]);
    let mut client = router.connect().await;
    client.send(b"GET / HTTP/1.1\r\nHost: a.com\r\n\r\n").await;
    assert_eq!(status(&client.head().await), 200);
    tokio::time::timeout(WAIT, router_closed.recv())
        .await
        .expect("the router closes the idle connection")
        .unwrap();
}

/// An app that echoes each request head it gets as its body.
async fn echo_head_app() -> App {
    app(|mut stream| async move {
        let mut buffer = Vec::new();
        while let Some(head) = read_head(&mut stream, &mut buffer).await {
            // Whatever body came is ignored: these requests have none the app needs.
            buffer.clear();
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{head}",
                head.len()
            );
            if stream.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await
}

/// Finding 5: chunked bodies are held to RFC 9112 §7.1: no white space after a chunk size unless
/// an extension follows, extensions and trailer fields well-formed, and the trailer limit
/// counts every byte (one-byte lines and line ends included).
#[tokio::test]
async fn chunked_request_bodies_that_break_rfc_9112_are_refused() {
    // An app that never answers, so that any answer is the router's.
    let silent = app(|mut stream| async move { until_closed(&mut stream).await }).await;
    let echo = echo_head_app().await;
    let router = router_with(RouterConfig::default()).await;
    router.map(&[("a.com", silent.addr), ("ok.com", echo.addr)]);
    let many_short_trailers = "a:\r\n".repeat(6000);
    let broken: Vec<(&str, String)> = vec![
        ("a space inside the size", "3 4\r\nabc\r\n0\r\n\r\n".into()),
        ("a tab after the size", "3\t\r\nabc\r\n0\r\n\r\n".into()),
        (
            "a control byte in an extension",
            "3;a\x01\r\nabc\r\n0\r\n\r\n".into(),
        ),
        (
            "an extension without a name",
            "3;=x\r\nabc\r\n0\r\n\r\n".into(),
        ),
        (
            "a trailer line without a colon",
            "0\r\nnot a field\r\n\r\n".into(),
        ),
        ("a folded trailer line", "0\r\nA: b\r\n c\r\n\r\n".into()),
        (
            "24 KB of four-byte trailer lines",
            format!("0\r\n{many_short_trailers}\r\n"),
        ),
    ];
    for (what, body) in &broken {
        let mut client = router.connect().await;
        client
            .send(b"POST / HTTP/1.1\r\nHost: a.com\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await;
        client.send(body.as_bytes()).await;
        let head = client.head().await;
        assert_eq!(status(&head), 400, "{what}: {head}");
    }
    let refused = router.journal.since(0);
    assert_eq!(refused.len(), broken.len());
    assert!(
        refused
            .iter()
            .all(|entry| entry.refused == Some(Refused::MalformedBody)),
        "{refused:?}"
    );
    // What the RFC allows still passes: white space before an extension, quoted values.
    let mut client = router.connect().await;
    client
        .send(b"POST / HTTP/1.1\r\nHost: ok.com\r\nTransfer-Encoding: chunked\r\n\r\n3 ;a=b ; c=\"d;\\\"e\"\r\nabc\r\n0\r\nX-T: 1\r\n\r\n")
        .await;
    assert_eq!(status(&client.head().await), 200);
}

/// Finding 5: requests the router refuses before they reach an app are journaled with the
/// reason, and counted.
#[tokio::test]
async fn refused_requests_are_journaled_with_the_reason_and_counted() {
    let app = echo_head_app().await;
    let router = router_with(RouterConfig::default()).await;
    router.map(&[("a.com", app.addr)]);
    let cases: [(&[u8], u16, Refused); 5] = [
        (b"NOT HTTP\r\n\r\n", 400, Refused::MalformedHead),
        (
            b"POST / HTTP/1.1\r\nHost: a.com\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            Refused::BadFraming,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a.com\r\nHost: b.com\r\n\r\n",
            400,
            Refused::BadHost,
        ),
        (
            b"CONNECT a.com:443 HTTP/1.1\r\nHost: a.com:443\r\n\r\n",
            400,
            Refused::BadTarget,
        ),
        (b"", 431, Refused::HeadTooLarge),
    ];
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: a.com\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    for (bytes, expected, _) in &cases {
        let bytes = if bytes.is_empty() {
            huge.as_bytes()
        } else {
            bytes
        };
        let mut client = router.connect().await;
        let _ = client.stream.write_all(bytes).await;
        let head = client.head().await;
        assert_eq!(status(&head), *expected, "{head}");
    }
    let mut seen = Vec::new();
    let mut since = 0;
    while seen.len() < cases.len() {
        let entry = router
            .journal
            .wait_for(since, WAIT, |_| true)
            .await
            .expect("every refusal is journaled");
        since = entry.seq;
        seen.push((entry.status, entry.refused));
    }
    let expected: Vec<_> = cases
        .iter()
        .map(|(_, status, reason)| (*status, Some(*reason)))
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(router.journal.refused(), cases.len() as u64);
    assert_eq!(
        app.accepted.load(Ordering::SeqCst),
        0,
        "nothing reached the app"
    );
}

/// Finding 5: a `Host` that routes to one host while naming another (`a.com:80@evil.com`,
/// `a.com/../x`) is refused, not passed to the app as it came.
#[tokio::test]
async fn a_host_that_is_not_a_host_and_port_is_refused() {
    let app = echo_head_app().await;
    let router = router_with(RouterConfig::default()).await;
    router.map(&[("a.com", app.addr)]);
    for host in [
        "a.com:80@evil.com",
        "a.com/../x",
        "a.com:80/x",
        "a.com:8o",
        "a.com\\x",
        "[::1",
    ] {
        let mut client = router.connect().await;
        client
            .send(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
            .await;
        let head = client.head().await;
        assert_eq!(status(&head), 400, "{host}: {head}");
    }
    let mut client = router.connect().await;
    client
        .send(b"GET http://a.com:80@evil.com/ HTTP/1.1\r\nHost: a.com\r\n\r\n")
        .await;
    assert_eq!(status(&client.head().await), 400, "userinfo in the target");
    assert_eq!(
        app.accepted.load(Ordering::SeqCst),
        0,
        "nothing reached the app"
    );
    // Hosts as they should be still route.
    for host in ["a.com", "A.com:9080", "a.com.", "a.com:"] {
        let mut client = router.connect().await;
        client
            .send(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
            .await;
        assert_eq!(status(&client.head().await), 200, "{host}");
    }
}

/// Finding 5: what the app is told about the request is the router's word, not the client's:
/// `X-Forwarded-Proto` is the router's, and one `Content-Length` goes on however many came.
#[tokio::test]
async fn the_app_gets_the_routers_forwarded_proto_and_one_content_length() {
    let app = echo_head_app().await;
    let router = router_with(RouterConfig::default()).await;
    router.map(&[("a.com", app.addr)]);
    let mut client = router.connect().await;
    client
        .send(
            b"POST / HTTP/1.1\r\nHost: a.com\r\nX-Forwarded-Proto: https\r\n\
              Content-Length: 2\r\nContent-Length: 2\r\n\r\nhi",
        )
        .await;
    let head = client.head().await;
    let length: usize = header(&head, "content-length")[0].parse().unwrap();
    let seen = String::from_utf8(client.body(length).await).unwrap();
    assert_eq!(header(&seen, "x-forwarded-proto"), ["http"], "{seen}");
    assert_eq!(header(&seen, "content-length"), ["2"], "{seen}");
}

/// Finding 5: with the default settings no trace key is known, so `X-Vcap-Trace: 22` (v1's
/// public default) reveals nothing.
#[tokio::test]
async fn the_default_trace_key_is_not_a_public_value() {
    let app = echo_head_app().await;
    let router = router_with(RouterConfig::default()).await;
    router.map(&[("a.com", app.addr)]);
    for key in ["22", ""] {
        let mut client = router.connect().await;
        client
            .send(
                format!("GET / HTTP/1.1\r\nHost: a.com\r\nX-Vcap-Trace: {key}\r\n\r\n").as_bytes(),
            )
            .await;
        let head = client.head().await;
        assert!(
            header(&head, "x-vcap-backend").is_empty(),
            "{key:?}: {head}"
        );
    }
}

/// Finding 5: an HTTP/1.0 client cannot read chunks; an app that chunks anyway has its body
/// passed on decoded, delimited by the close.
#[tokio::test]
async fn an_http_1_0_client_never_gets_a_chunked_body() {
    let app = app(|mut stream| async move {
        let mut buffer = Vec::new();
        read_head(&mut stream, &mut buffer).await.unwrap();
        let _ = stream
            .write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                  5;x=y\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n",
            )
            .await;
        until_closed(&mut stream).await;
    })
    .await;
    let router = router_with(RouterConfig::default()).await;
    router.map(&[("a.com", app.addr)]);
    let mut client = router.connect().await;
    client.send(b"GET / HTTP/1.0\r\nHost: a.com\r\n\r\n").await;
    let head = client.head().await;
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert!(header(&head, "transfer-encoding").is_empty(), "{head}");
    assert_eq!(client.rest().await, b"hello, world");
}

/// Finding 5: bytes an app sends after a response that has no body (here, the body of a HEAD
/// it should not have sent, late) never reach the next client of that app.
#[tokio::test]
async fn bytes_sent_after_a_bodiless_response_never_reach_the_next_client() {
    let app = app(|mut stream| async move {
        let mut buffer = Vec::new();
        let mut after_head = false;
        while let Some(head) = read_head(&mut stream, &mut buffer).await {
            let answer: &[u8] = if head.starts_with("HEAD") {
                after_head = true;
                b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n"
            } else if after_head {
                // The HEAD's body, late, then a whole response of its own.
                b"EVILHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood"
            };
            if stream.write_all(answer).await.is_err() {
                return;
            }
        }
    })
    .await;
    let router = router_with(RouterConfig::default()).await;
    router.map(&[("a.com", app.addr)]);
    let mut first = router.connect().await;
    first.send(b"HEAD / HTTP/1.1\r\nHost: a.com\r\n\r\n").await;
    assert_eq!(status(&first.head().await), 200);
    let mut next = router.connect().await;
    next.send(b"GET / HTTP/1.1\r\nHost: a.com\r\n\r\n").await;
    let head = next.head().await;
    assert_eq!(status(&head), 200, "{head}");
    assert_eq!(next.body(4).await, b"good");
}
