//! `af`: a client compatible with AppFog's `af` 0.3.22, and the typed v1 API client it is built on.
//!
//! # Layout
//!
//! - [`client`]: [`V1Client`], the v1 cloud-controller API over HTTP exactly as `af` speaks it
//!   (raw token in `AUTHORIZATION`, whole-document `PUT`s, the multipart upload), plus the
//!   operations `af` composes from it (start, stop, map, unmap, scale, push).
//! - [`package`]: turning an app directory into the zip `af` would upload.
//!
//! # Invariant
//!
//! This crate speaks only HTTP to whatever it targets. It does not link the emulator: it must work
//! against any v1 cloud controller.

pub mod client;
pub mod package;

pub use client::{ClientError, V1Client};
