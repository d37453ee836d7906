//! The afemu emulator: AppFog v1's control plane, app runtime and health manager on one machine,
//! in front of the router of `afemu-router`, and the tooling that proves and rehearses procedures
//! on it.
//!
//! # Layout
//!
//! The crate is laid out as v1 itself was, each part a room of its own:
//!
//! - [`control`]: the cloud controller. [`Platform`] is its handle: the state (users, apps,
//!   services, URIs), every decision about an app, the route feed to the router (v1's
//!   `router.register`), the faults, snapshots.
//! - `dea`: the DEA: the stager, one supervisor task per instance owning its process or static
//!   server, instance files and stats. It knows nothing of users or documents.
//! - `nodes`: the service nodes: real PostgreSQL, MariaDB and Redis servers and RabbitMQ
//!   brokers, supervised, where services are provisioned and bound as v1's nodes did; records
//!   where a server is missing.
//! - `watchdog`: kills every process afemu started (apps, database servers, brokers) if afemu
//!   dies.
//! - `bus`: the only things the controller and the DEA say to each other (v1's NATS messages:
//!   stage, start, stop; running, crashed).
//! - `api`: HTTP only: the v1 API and the `/_afemu/` admin API (axum), over [`Platform`].
//! - [`procedure`]: the tooling built on the platform, through the surfaces a user has:
//!   runbooks, the reference model, `afemu check`, `afemu rehearse`, steady traffic.
//! - [`config`]: settings, the timing profiles, the flags of `afemu serve`.
//! - [`server`]: `run(platform, api, router, shutdown)`: serve both until told to stop.
//! - [`harness`]: [`Emulator`], the in-process emulator for tests.
//! - [`error`]: the v1 errors, `{code, description}`, mapped in one place.
//! - `clock`: v1's times and random ids; `atomic_file`: files replaced atomically;
//!   `timeline`: the one timeline drawing (JavaScript) of the dashboard and the HTML report.
//! - [`fuzzing`]: the upload path for the fuzz targets in `fuzz/`; nothing else uses it.
//!
//! What may use what: `api`, `server` and `harness` use `control`; `control` uses `dea` only
//! through its handle and the messages of `bus`, and `nodes` through its handle; `dea` and
//! `nodes` use neither `control` nor each other; `procedure` uses the
//! harness, the journal and `af`'s code (the v1 API), and the model of its own.

mod api;
mod atomic_file;
mod bus;
mod clock;
pub mod config;
pub mod control;
mod dea;
pub mod error;
pub mod fuzzing;
pub mod harness;
mod nodes;
pub mod procedure;
mod procs;
pub mod server;
mod timeline;
mod watchdog;

pub use api::api;
pub use atomic_file::write_atomically;
pub use config::{Config, FaultArgs, Faults, Profile, ServeArgs, ServicesMode, Timing};
pub use control::Platform;
pub use control::route_feed::{RouteDelay, Submission};
pub use control::snapshot;
pub use dea::StartPlan;
pub use error::ApiError;
pub use harness::{Emulator, EmulatorBuilder, RouterAnswer};
pub use nodes::VendorStatus;
pub use procedure::traffic::Traffic;
