//! What the cloud controller and the DEA say to each other, as v1's said it over NATS: the
//! controller asks the DEA to stage a package and to start or stop instances (`dea.start`,
//! `dea.stop`), and the DEA reports what becomes of them (the heartbeat's RUNNING,
//! `droplet.exited`). These types are all that passes between `control/` and `dea/`; neither
//! reaches into the other.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use afemu_router::Backend;

/// Stage an app's assembled bits into a droplet (v1: the CC's synchronous call to the stager).
#[derive(Debug)]
pub(crate) struct StageRequest {
    pub(crate) app_id: u64,
    pub(crate) name: String,
    pub(crate) framework: String,
    pub(crate) command: Option<String>,
    /// The package the bits are: the droplet is known by it.
    pub(crate) package_hash: String,
    /// The bits (the zip unpacked, with the pooled resources), which the stager takes over.
    pub(crate) bits: PathBuf,
}

/// Start one instance of an app's droplet (v1's `dea.<id>.start`).
#[derive(Clone, Debug)]
pub(crate) struct StartRequest {
    pub(crate) app_id: u64,
    pub(crate) index: u32,
    pub(crate) instance_id: Arc<str>,
    /// The droplet to run: the package it was staged from.
    pub(crate) droplet: String,
    pub(crate) env: EnvTemplate,
    /// The slow-start fault: extra boot time.
    pub(crate) slow_start: Duration,
}

/// Everything the instance's environment is made of, apart from what depends on the instance
/// (what v1's start message carried about the app).
#[derive(Clone, Debug)]
pub(crate) struct EnvTemplate {
    pub(crate) app_name: String,
    pub(crate) owner: String,
    pub(crate) uris: Vec<String>,
    /// v1's `<droplet sha1>-<run_count>`.
    pub(crate) version: String,
    pub(crate) runtime: Option<String>,
    pub(crate) memory_mb: u64,
    pub(crate) disk_mb: u64,
    pub(crate) fds: u64,
    /// The user's `env` entries (`K=V`); `vcap_`/`vmc_` names are dropped, as v1's CC did.
    pub(crate) user_env: Vec<String>,
    /// `VCAP_SERVICES`, `VMC_SERVICES` and `VMC_<VENDOR>` for the bound services.
    pub(crate) services_env: Vec<(String, String)>,
}

/// Stop an instance (v1's `dea.stop`). The controller has unregistered it already.
#[derive(Debug)]
pub(crate) struct StopRequest {
    pub(crate) instance_id: Arc<str>,
    /// What the router held of it: the stop waits until nothing holds these any more.
    pub(crate) backends: Vec<Arc<Backend>>,
    /// How long to wait for that before the kill; `None`: kill at once (the stop-hard fault,
    /// as v1 did).
    pub(crate) drain: Option<Duration>,
}

/// What becomes of an instance, as the DEA reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum InstanceEvent {
    /// Its port accepts connections (v1: RUNNING in the heartbeat, then `router.register`).
    Running {
        app_id: u64,
        instance_id: Arc<str>,
        port: u16,
    },
    /// It ended without being asked to, or never became ready (v1's `droplet.exited` CRASHED).
    Crashed {
        app_id: u64,
        instance_id: Arc<str>,
        reason: String,
    },
}
