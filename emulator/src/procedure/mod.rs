//! The tooling built on the platform: procedures as people run them, and the means to prove or
//! rehearse them. Nothing here reaches into the platform's insides: a rehearsal drives the
//! emulator through the same surfaces a user has (the v1 API through `af`'s own code, the
//! [`Emulator`](crate::Emulator) harness, the router's journal), and a check runs on the model.
//!
//! - [`runbook`]: the runbook format and its one parser (af lines go through af's own parser).
//! - [`model`]: the reference model: apps, instances, URIs and the route changes each step
//!   publishes; pure.
//! - [`check`]: `afemu check`: every schedule a runbook's timing allows, on the model.
//! - [`rehearse`]: `afemu rehearse`: a runbook run for real, with traffic, and its reports.
//! - [`traffic`]: steady traffic through the router, for rehearsals and tests.

pub mod check;
pub mod model;
pub mod rehearse;
pub mod runbook;
pub mod traffic;
