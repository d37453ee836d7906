//! The afemu emulator: AppFog v1's control plane, app runtime and health manager on one machine,
//! in front of the router of `afemu-router`.
//!
//! # Layout
//!
//! - [`config`]: settings, the timing profiles, the flags of `afemu serve`.
//! - [`server`]: `run(platform, api, router, shutdown)`: serve both until told to stop.
//! - [`platform`]: the shared handle: the state behind one lock, the route table derived from
//!   it, and the lifecycle (stage, start, stop, scale, crash, restart).
//! - `state`: users, tokens, apps, instances; plain data and the app document.
//! - `app_update`: reading the app documents clients send.
//! - `api`: the v1 HTTP API and the `/_afemu/` admin API (axum).
//! - `faults`: the faults that can be injected, and the `PUT /_afemu/faults` body.
//! - `files`: an instance's files as v1's DEA listed and served them, confined to its directory.
//! - `services`: the service catalog, provisioning records, bindings and `VCAP_SERVICES`.
//! - `staging`: checking and unpacking uploads safely, deciding how an app runs.
//! - `route_feed`: how route changes reach the router: at once, or late (the route-delay fault).
//! - `runtime`: one supervisor task per instance, owning its process or static server.
//! - `static_server`: the built-in server for apps that are just an `index.html`.
//! - `watchdog`: kills every app process group if afemu itself dies without cleaning up.
//! - `procstat`: CPU and memory of an app's process group, from `/proc`.
//! - `health`: v1's restart and flapping rule.
//! - `frameworks`: the frameworks and runtimes `/info` offers, from what is installed.
//! - [`error`]: the v1 errors, `{code, description}`, mapped in one place.
//! - [`model`]: the reference model: apps, instances, URIs and the route table, pure.
//! - [`runbook`]: the runbook format: af command lines and directives.
//! - [`check`]: `afemu check`: every schedule of a runbook on the model, the shortest failing one.
//! - [`snapshot`]: state snapshots (`/_afemu/state`, `--state FILE`) and atomic saving.
//! - [`rehearse`]: `afemu rehearse`: a runbook run with real traffic, and its reports.
//! - [`harness`]: [`Emulator`], the in-process emulator for tests.
//! - [`traffic`]: steady traffic through the router, for rehearsals and tests.
//! - [`fuzzing`]: the upload path for the fuzz targets in `fuzz/`; nothing else uses it.

pub mod check;
pub mod config;
pub mod error;
pub mod fuzzing;
pub mod harness;
pub mod model;
pub mod platform;
pub mod rehearse;
pub mod runbook;
pub mod server;
pub mod snapshot;
pub mod traffic;

mod api;
mod app_update;
mod faults;
mod files;
mod frameworks;
mod health;
mod procstat;
mod route_feed;
mod runtime;
mod services;
mod staging;
mod state;
mod static_server;
mod watchdog;

pub use api::api;
pub use config::{Config, FaultArgs, Faults, Profile, ServeArgs, Timing};
pub use error::ApiError;
pub use harness::{Emulator, EmulatorBuilder, RouterAnswer};
pub use platform::Platform;
pub use route_feed::{RouteDelay, Submission};
pub use runtime::StartPlan;
pub use traffic::Traffic;
