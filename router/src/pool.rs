//! Keep-alive connections to one backend: a small stack of idle connections, most recently used
//! first, kept with their [`Backend`](crate::Backend), so there is no global pool and no key, and
//! idle connections close when the instance is unregistered.
//!
//! A connection is a socket and its read buffer; it goes back on the stack only when the exchange
//! it carried ended cleanly with nothing left over, and is looked at once more when it is taken
//! (an app may close an idle connection at any time). The router also sweeps every pool in the
//! background ([`ConnectionPool::reap`]), so that idle connections expire and those the app has
//! closed are closed at once, not left half-closed until the next request to that app.
//!
//! Pooled connections are bounded per backend ([`MAX_IDLE`]) and for the whole process
//! ([`MAX_IDLE_TOTAL`]): file descriptors are a process-wide resource, and a pool of idle
//! connections is the one place the router keeps them without a request to show for it.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::net::TcpStream;

/// The most idle connections kept per backend.
pub(crate) const MAX_IDLE: usize = 256;

/// The most connections the whole process keeps for reuse, over every backend: idle ones, and
/// those taken from a pool that will go back to it. Past it, a new connection is closed after
/// its exchange instead of pooled.
pub(crate) const MAX_IDLE_TOTAL: usize = 1024;

/// How many connections of the process are poolable now. A connection is counted once, when it
/// first goes into a pool, and uncounted when it closes: taking it out and putting it back for
/// each request costs no shared atomic (two worker threads would pass its cache line back and
/// forth on every request).
static POOLED_TOTAL: AtomicUsize = AtomicUsize::new(0);

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
    /// Counted in [`POOLED_TOTAL`] (until it closes).
    counted: bool,
}

impl Drop for Connection {
    fn drop(&mut self) {
        if self.counted {
            POOLED_TOTAL.fetch_sub(1, Ordering::Relaxed);
        }
    }
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
    /// The most recently used idle connection that is still open, if any; those idle for longer
    /// than `idle_timeout` are closed on the way.
    pub(crate) fn checkout(&self, idle_timeout: Duration) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((mut connection, since)) = idle.pop() {
            if since.elapsed() > idle_timeout {
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

    /// Puts back a connection whose exchange ended cleanly, unless this pool or the process
    /// already keeps as many as it may (then it is closed).
    pub(crate) fn checkin(&self, mut connection: Connection) {
        debug_assert!(connection.buffer.is_empty());
        if !connection.counted {
            if POOLED_TOTAL.fetch_add(1, Ordering::Relaxed) >= MAX_IDLE_TOTAL {
                POOLED_TOTAL.fetch_sub(1, Ordering::Relaxed);
                return;
            }
            connection.counted = true;
        }
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push((connection, now));
        }
    }

    /// Closes the idle connections that have been idle for longer than `idle_timeout` and those
    /// the app has closed (or sent something unasked on). Called by the router's sweep.
    pub(crate) fn reap(&self, idle_timeout: Duration) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if !idle.is_empty() {
            idle.retain(|(connection, since)| {
                since.elapsed() <= idle_timeout && !connection.is_closed()
            });
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
        counted: false,
    })
}
