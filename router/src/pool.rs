//! Keep-alive connections to one backend: a small stack of idle connections, most recently used
//! first, kept with their [`Backend`](crate::Backend), so there is no global pool and no key, and
//! idle connections close when the instance is unregistered.
//!
//! A connection is a socket and its read buffer; it goes back on the stack only when the exchange
//! it carried ended cleanly with nothing left over, and is looked at once more when it is taken
//! (an app may close an idle connection at any time).

use std::net::SocketAddr;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::net::TcpStream;

/// The most idle connections kept per backend.
const MAX_IDLE: usize = 1024;

/// How long an idle connection is kept (hyper-util's default was 90 s; the router's was 60 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The read buffer a backend connection starts with.
const BUFFER: usize = 8 * 1024;

/// One keep-alive connection to a backend.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) stream: TcpStream,
    /// What was read from the app and not passed on yet.
    pub(crate) buffer: BytesMut,
    /// Taken from the pool rather than opened for this request.
    pub(crate) reused: bool,
}

impl Connection {
    /// Whether the app has closed the connection (or sent something unasked) while it was idle.
    /// Costs no system call unless the socket has become readable.
    fn is_closed(&self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => false,
            Poll::Ready(Err(_)) => true,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                match self.stream.try_read(&mut probe) {
                    Err(error) => error.kind() != std::io::ErrorKind::WouldBlock,
                    // The close, or bytes no request asked for: unusable either way.
                    Ok(_) => true,
                }
            }
        }
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
            if !connection.is_closed() {
                connection.reused = true;
                return Some(connection);
            }
            // Closed by the backend while idle: drop it and look further down.
        }
        None
    }

    /// Puts back a connection whose exchange ended cleanly.
    pub(crate) fn checkin(&self, connection: Connection) {
        debug_assert!(connection.buffer.is_empty());
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
    Ok(Connection {
        stream,
        buffer: BytesMut::with_capacity(BUFFER),
        reused: false,
    })
}
