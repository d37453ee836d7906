//! Keep-alive connections to one backend: a small stack of idle HTTP/1.1 connections, most recently
//! used first, each driven by whoever is using it rather than by a task of its own.
//!
//! Hand-rolled over `hyper::client::conn::http1` rather than hyper-util's legacy `Client`, which
//! was the router's largest cost after the sockets themselves: that client keeps one pool for all
//! backends, keyed by URI authority behind one lock, wants an absolute URI per request, and spawns
//! a task per request to wait until the connection is idle again. Here the pool hangs off its
//! [`Backend`](crate::Backend), so there is no key and no hashing, idle connections go away with
//! the backend when it is unregistered, and a connection is put back the moment the response body
//! it carried ends.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::TrySendError;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::table::Backend;

/// The most idle connections kept per backend.
const MAX_IDLE: usize = 1024;

/// How long an idle connection is kept (hyper-util's default was 90 s; the router's was 60 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a finished exchange may take to leave its connection ready for the next one before
/// the connection is given up (a request body still streaming, say).
const READY_WAIT: Duration = Duration::from_secs(5);

/// One keep-alive connection to a backend: hyper's sending half and the future that drives the
/// socket. No task of its own: whoever uses the connection drives it (the request's task while
/// it waits for the response head, the response body while it streams), so one exchange wakes
/// one task, not three.
pub(crate) struct Connection {
    sender: SendRequest<Incoming>,
    driver: Pin<Box<http1::Connection<TokioIo<TcpStream>, Incoming>>>,
    /// The driver has finished: the connection is closed.
    ended: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("ended", &self.ended)
            .finish()
    }
}

impl Connection {
    /// Moves the socket along (writes what is queued, reads what came); `Ready` once the
    /// connection has closed.
    pub(crate) fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.ended {
            return Poll::Ready(());
        }
        match self.driver.as_mut().poll(cx) {
            Poll::Ready(result) => {
                if let Err(error) = result {
                    tracing::debug!(%error, "backend connection ended with an error");
                }
                self.ended = true;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Drives the connection until it can take a request.
    pub(crate) async fn ready(&mut self) -> Result<(), hyper::Error> {
        std::future::poll_fn(|cx| {
            let _ = self.poll_drive(cx);
            self.sender.poll_ready(cx)
        })
        .await
    }

    /// Sends the request and drives the connection until the response head is in. Gives the
    /// request back when it was never written (the connection had closed).
    pub(crate) async fn send(
        &mut self,
        request: Request<Incoming>,
    ) -> Result<Response<Incoming>, TrySendError<Request<Incoming>>> {
        let mut response = std::pin::pin!(self.sender.try_send_request(request));
        std::future::poll_fn(|cx| {
            if let Poll::Ready(answer) = response.as_mut().poll(cx) {
                return Poll::Ready(answer);
            }
            // Driving may have read the response head just now (or found the connection gone,
            // which fails the request at once): look again rather than wait to be woken.
            let _ = self.poll_drive(cx);
            response.as_mut().poll(cx)
        })
        .await
    }

    /// Whether it can take another request now, after driving it once (without waking anyone
    /// later: an idle connection is looked at again when it is checked out).
    fn settle(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let _ = self.poll_drive(&mut cx);
        !self.ended && self.sender.is_ready()
    }
}

#[derive(Debug, Default)]
pub(crate) struct ConnectionPool {
    /// Oldest at the bottom, most recently used on top.
    idle: Mutex<Vec<(Connection, Instant)>>,
}

impl ConnectionPool {
    /// The most recently used idle connection that is still open, if any.
    pub(crate) fn checkout(&self) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((mut connection, since)) = idle.pop() {
            if since.elapsed() > IDLE_TIMEOUT {
                // The newest is too old, so all of them are.
                idle.clear();
                return None;
            }
            if connection.settle() {
                return Some(connection);
            }
            // Closed by the backend while idle: drop it and look further down.
        }
        None
    }

    /// Puts back a connection whose response has ended. Its task usually has seen the end of the
    /// exchange already; when it has not, a small task waits for that (briefly) and puts it
    /// back then, holding the backend only weakly so that a drain is not held up.
    pub(crate) fn checkin(backend: &Arc<Backend>, mut connection: Connection) {
        if connection.settle() {
            backend.pool().push(connection);
        } else if !connection.ended
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let backend = Arc::downgrade(backend);
            runtime.spawn(async move {
                let ready = tokio::time::timeout(READY_WAIT, connection.ready()).await;
                if matches!(ready, Ok(Ok(())))
                    && let Some(backend) = backend.upgrade()
                {
                    backend.pool().push(connection);
                }
            });
        }
    }

    fn push(&self, connection: Connection) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        // Connections left at the bottom by a past burst expire here, one per check-in.
        if idle
            .first()
            .is_some_and(|(_, since)| now.duration_since(*since) > IDLE_TIMEOUT)
        {
            idle.remove(0);
        }
        if idle.len() < MAX_IDLE {
            idle.push((connection, now));
        }
    }
}

/// Why a new connection could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("connect to {0}: {1}")]
    Io(SocketAddr, std::io::Error),
    #[error("connect to {0}: no answer within {1:?}")]
    Timeout(SocketAddr, Duration),
    #[error("HTTP/1.1 handshake with {0}: {1}")]
    Handshake(SocketAddr, hyper::Error),
}

/// Opens a new keep-alive connection to `addr`; it closes when dropped.
pub(crate) async fn connect(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<Connection, ConnectError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(ConnectError::Io(addr, error)),
        Err(_elapsed) => return Err(ConnectError::Timeout(addr, timeout)),
    };
    let _ = stream.set_nodelay(true);
    let (sender, driver) = http1::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|error| ConnectError::Handshake(addr, error))?;
    Ok(Connection {
        sender,
        driver: Box::pin(driver),
        ended: false,
    })
}
