//! afemu: a local emulator of AppFog v1 — its control plane, app runtime and router — for
//! rehearsing and proving blue/green swaps and downtime pages with no cloud account.
//!
//! This crate holds the two binaries (`afemu` and `af`) and the end-to-end tests; the library is
//! the emulator's, re-exported so that tests can write `afemu::Emulator::start()`:
//!
//! - [`afemu_emulator`]: the control plane, runtime, harness ([`Emulator`]);
//! - [`afemu_router`] (as [`router`]): the proxy, the route table and the journal;
//! - [`afemu_cli`] (as [`cli`]): `af` and the typed v1 client.

pub use afemu_cli as cli;
pub use afemu_emulator::*;
pub use afemu_router as router;
