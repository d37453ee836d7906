//! hyper as the reference the router's HTTP/1.1 framing is held to: the same byte stream goes to
//! the router's framing code (`afemu_router::fuzzing::frame_requests`/`frame_responses`) and to
//! hyper (its server for requests, its client for responses, both fed from memory), and the two
//! must find the same messages, or the router must refuse where hyper does.
//!
//! Shared by the property test (`router/tests/differential.rs`) and the `differential` fuzz
//! target (`fuzz/`), so that both hold the router to the same rules ([`agree`]).
//!
//! hyper is independent of the router where it matters: its message framing (`Content-Length`,
//! `Transfer-Encoding`, chunk decoding, what a response to HEAD or a 304 carries, when a
//! connection persists) is its own code; only the parsing of a head's lines is `httparse` in
//! both.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use afemu_router::fuzzing::{Ending, Message};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection fed from memory: reads give at most `step` bytes at a time, then end of file;
/// writes are taken and dropped. `handed` counts the bytes read. With `after_a_write`, reads
/// wait until something has been written (a client's response comes after its request).
struct Feed {
    data: Vec<u8>,
    step: usize,
    handed: Arc<AtomicUsize>,
    after_a_write: bool,
    reader: Option<std::task::Waker>,
}

impl Feed {
    fn new(data: &[u8], step: usize, after_a_write: bool) -> Feed {
        Feed {
            data: data.to_vec(),
            step,
            handed: Arc::default(),
            after_a_write,
            reader: None,
        }
    }
}

impl AsyncRead for Feed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.after_a_write {
            self.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let at = self.handed.load(Ordering::Relaxed);
        let n = self.step.min(self.data.len() - at).min(buf.remaining());
        buf.put_slice(&self.data[at..at + n]);
        self.handed.fetch_add(n, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Feed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.after_a_write = false;
        if let Some(reader) = self.reader.take() {
            reader.wake();
        }
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
}

/// The path of a request as the router's journal has it: no query, `/` when empty.
fn path_of(uri: &hyper::Uri) -> &str {
    match uri.path() {
        "" => "/",
        path => path,
    }
}

/// The requests hyper's server reads from `stream`, sent by a client on one connection.
pub(crate) fn hyper_requests(stream: &[u8]) -> (Vec<Message>, Ending) {
    let seen: Arc<Mutex<Vec<Option<Message>>>> = Arc::default();
    let record = seen.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let record = record.clone();
        async move {
            let start = format!("{} {}", request.method(), path_of(request.uri()));
            let target = request.uri().to_string();
            let body = request.into_body().collect().await;
            let message = body.ok().map(|body| Message {
                start,
                body: body.to_bytes().to_vec(),
                target,
            });
            record.lock().unwrap().push(message);
            Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
        }
    });
    let feed = Feed::new(stream, usize::MAX, false);
    let served = runtime().block_on(
        hyper::server::conn::http1::Builder::new()
            // The stream ends where the client stopped sending, not where it stopped reading:
            // a request whose end is the end of the stream is still answered.
            .half_close(true)
            .serve_connection(TokioIo::new(feed), service),
    );
    let mut messages = Vec::new();
    for message in seen.lock().unwrap().drain(..) {
        match message {
            Some(message) => messages.push(message),
            // The body broke off or broke the framing.
            None => return (messages, Ending::Refused),
        }
    }
    let ending = match served {
        Ok(()) => Ending::Clean,
        Err(error) if error.is_incomplete_message() => Ending::Incomplete,
        Err(_) => Ending::Refused,
    };
    (messages, ending)
}

/// The responses hyper's client reads from `stream`, one per request (HEAD when `true`, else
/// GET). Each response is read by a client of its own on what is left of the stream, fed a
/// byte at a time, so that where hyper ends a response is exactly where its next one begins
/// (hyper's client refuses bytes that come before it has sent the next request).
pub(crate) fn hyper_responses(stream: &[u8], head_requests: &[bool]) -> (Vec<Message>, Ending) {
    let runtime = runtime();
    let mut messages = Vec::new();
    let mut at = 0;
    for &head_request in head_requests {
        let rest = &stream[at..];
        let feed = Feed::new(rest, 1, true);
        let handed = feed.handed.clone();
        let (answered, connection) = runtime.block_on(async {
            let (mut sender, connection) =
                match hyper::client::conn::http1::handshake(TokioIo::new(feed)).await {
                    Ok(handshake) => handshake,
                    Err(_) => return (None, None),
                };
            let method = if head_request { "HEAD" } else { "GET" };
            let request = Request::builder()
                .method(method)
                .uri("/")
                .header("host", "a.com")
                .body(Empty::<Bytes>::new())
                .expect("a valid request");
            let exchange = async move {
                let response = sender.send_request(request).await?;
                let status = response.status().as_u16();
                let body = response.into_body().collect().await?;
                Ok::<_, hyper::Error>((status, body.to_bytes().to_vec()))
            };
            let (connection, answered) = tokio::join!(connection, exchange);
            (Some(answered), Some(connection))
        });
        let Some(answered) = answered else {
            return (messages, Ending::Refused);
        };
        let ran_out = handed.load(Ordering::Relaxed) == rest.len();
        let (status, body) = match answered {
            Ok(answered) => answered,
            Err(error) if error.is_incomplete_message() || ran_out => {
                return (messages, Ending::Incomplete);
            }
            Err(_) => return (messages, Ending::Refused),
        };
        messages.push(Message {
            start: status.to_string(),
            body,
            target: String::new(),
        });
        let mut used = handed.load(Ordering::Relaxed);
        match connection {
            // The connection went on to read the next message before a request asked for it
            // (one byte, then it gave up): that byte is the next response's.
            Some(Err(error)) if error.to_string().contains("unexpected message") => used -= 1,
            // hyper ended the connection by rule (the close, a body delimited by it, an
            // upgrade): what follows is not a message of this connection.
            Some(Ok(())) if used < rest.len() => {
                return (messages, Ending::Stopped);
            }
            _ => {}
        }
        at += used;
        if status == 101 {
            return (messages, Ending::Stopped);
        }
    }
    let ending = if at == stream.len() {
        Ending::Clean
    } else {
        Ending::Stopped
    };
    (messages, ending)
}

/// Whether the router's framing of a stream agrees with the reference's: the messages both
/// found are the same, in the same order, and where they part ways the router is the stricter
/// (it refuses, or stops reading the connection by rule). The router never finds a message the
/// reference did not, never needs more bytes where the reference found a message complete, and
/// never takes past what the reference refused.
///
/// `excused` says whether a refusal of the reference for a message the router accepted is for
/// something other than framing (hyper refuses request targets that `http::Uri` does not take,
/// which the router passes on to the app as they came).
pub(crate) fn agree(
    router: &(Vec<Message>, Ending),
    reference: &(Vec<Message>, Ending),
    excused: impl Fn(&Message) -> bool,
) -> Result<(), String> {
    let (routed, router_ending) = router;
    let (expected, reference_ending) = reference;
    let shown = || format!("router: {router:?}\nreference: {reference:?}");
    for (at, (mine, theirs)) in routed.iter().zip(expected).enumerate() {
        if mine != theirs {
            return Err(format!("message {at} differs\n{}", shown()));
        }
    }
    let (r, h) = (routed.len(), expected.len());
    if r > h {
        if *reference_ending == Ending::Refused && excused(&routed[h]) {
            return Ok(());
        }
        return Err(format!(
            "the router found message {h}, the reference did not\n{}",
            shown()
        ));
    }
    if r < h {
        return match router_ending {
            Ending::Refused | Ending::Stopped => Ok(()),
            _ => Err(format!(
                "the router did not find message {r} ({router_ending:?})\n{}",
                shown()
            )),
        };
    }
    let fine = match reference_ending {
        Ending::Refused | Ending::Incomplete => *router_ending != Ending::Clean,
        Ending::Clean | Ending::Stopped => *router_ending != Ending::Incomplete,
    };
    if fine {
        Ok(())
    } else {
        Err(format!(
            "the streams end differently ({router_ending:?} against {reference_ending:?})\n{}",
            shown()
        ))
    }
}

/// A refusal of hyper's that is about the request target, not the framing.
pub(crate) fn target_refused_by_hyper(message: &Message) -> bool {
    message.target.parse::<hyper::Uri>().is_err()
}

/// The router against hyper for what a client sends on one connection.
pub(crate) fn check_requests(stream: &[u8]) -> Result<(), String> {
    let router = afemu_router::fuzzing::frame_requests(stream);
    let reference = hyper_requests(stream);
    agree(&router, &reference, target_refused_by_hyper)
}

/// The router against hyper for what an app sends on one connection.
pub(crate) fn check_responses(stream: &[u8], head_requests: &[bool]) -> Result<(), String> {
    let router = afemu_router::fuzzing::frame_responses(stream, head_requests);
    let reference = hyper_responses(stream, head_requests);
    agree(&router, &reference, |_| false)
}
