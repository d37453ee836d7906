//! The afemu router: the HTTP reverse proxy in front of every app instance, as the AppFog v1 router
//! was, plus the journal that records what every request saw.
//!
//! # Layout
//!
//! - [`host`]: how a `Host` header (or a mapped URI) becomes a route key: lower-cased, port and the
//!   dev suffix stripped, exact match.
//! - [`table`]: the [`RouteTable`], one immutable snapshot of every host and its backends, published
//!   whole through [`Routes`] and swapped atomically; [`Backend`] is one running instance.
//! - [`balance`]: which backend of a host serves the next request (round-robin, or v1's random).
//! - [`journal`]: every routed request, in a bounded ring with counters that never drop and a live
//!   stream; the oracle for "did any request see the default error page".
//! - [`error_page`]: the router's own pages (no route, bad gateway, timeout) in several profiles.
//! - [`proxy`]: the server itself: accept, look up, forward, stream back, record.
//! - `http1`: what the proxy needs of HTTP/1.1: header kinds, body framing, where a chunked body
//!   ends, what a `Host` may be; heads are parsed by `httparse` and bodies pass through
//!   undecoded.
//! - `pool`: keep-alive connections to each backend, kept with the backend, swept in the
//!   background and bounded per backend and per process.
//!
//! # Invariants
//!
//! The router never calls the control plane. It reads one route-table snapshot per request and
//! never sees half of an update. It never retries a request on another instance (v1 did not).
//! Whatever a client or an app sends, the memory a connection holds is bounded, every phase of
//! an exchange has a deadline, no byte of one exchange reaches another, and a request the router
//! refuses is journaled with the reason (`docs/ROUTER-THREATS.md`).

pub mod balance;
pub mod error_page;
pub mod host;
mod http1;
pub mod journal;
mod pool;
pub mod proxy;
pub mod table;

pub use balance::Balance;
pub use error_page::{ErrorPages, RouterError};
pub use host::normalise_host;
pub use journal::{Journal, JournalEntry, Refused};
pub use proxy::{CLIENT_CLOSED_REQUEST, Router, RouterConfig, fuzzing};
pub use table::{Backend, BackendSpec, HostRoute, RouteTable, Routes};
