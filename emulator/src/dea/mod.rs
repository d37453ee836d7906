//! The DEA, as v1's droplet execution agent was: it stages packages into droplets, runs each
//! instance of a droplet as a task that owns its process (or the built-in static server) on a
//! loopback port of its own, and reports what becomes of it. It knows nothing of users, apps'
//! documents or routes: the controller tells it what to do with the messages of [`crate::bus`],
//! and hears back on the channel it gave the DEA.
//!
//! - `instance`: one supervisor task per instance, owning its process or static server; the v1
//!   environment; the one place app processes are spawned.
//! - `stager`: droplets, and how an app runs (its command, its framework, or the static server).
//! - `static_server`: the built-in server for apps that are just an `index.html`.
//! - `files`: an instance's files as v1's DEA listed and served them, confined to its directory.
//! - `procstat`: CPU and memory of an app's process group, from `/proc`.
//! - the shared `crate::watchdog` kills every app process group if afemu itself dies.
//! - `frameworks`: the frameworks and runtimes this machine can run.

pub(crate) mod files;
pub(crate) mod frameworks;
mod instance;
mod procstat;
pub(crate) mod staging;
mod static_server;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::{InstanceEvent, StageRequest, StartRequest, StopRequest};
use crate::config::Timing;
use crate::watchdog::Watchdog;
use instance::InstanceCommand;
pub use staging::StartPlan;
use staging::{Droplet, StagingEnv};

/// The DEA's handle; clone it freely.
#[derive(Clone)]
pub(crate) struct Dea {
    inner: Arc<Inner>,
}

struct Inner {
    /// `droplets/` and `instances/` live here.
    data_dir: PathBuf,
    timing: Timing,
    /// The package managers' caches, shared by stagings.
    staging_cache: PathBuf,
    watchdog: Arc<Watchdog>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// Where the controller hears what becomes of instances.
    events: mpsc::UnboundedSender<InstanceEvent>,
    /// Each app's droplet (the last one staged), by app id.
    droplets: Mutex<HashMap<u64, Droplet>>,
    /// The instances it runs, by instance id.
    instances: Mutex<HashMap<Arc<str>, Handle>>,
    /// Crashed instances' directories, kept for their logs (v1 kept them an hour).
    crashed: Mutex<Vec<Crashed>>,
    frameworks: tokio::sync::OnceCell<Value>,
}

/// One instance the DEA runs.
struct Handle {
    control: mpsc::Sender<InstanceCommand>,
    dir: PathBuf,
    /// Set once it runs: its port, its process (none for the static server) and since when.
    port: Option<u16>,
    pid: Option<u32>,
    started: Instant,
    /// Cancelled when its supervisor ends.
    ended: CancellationToken,
}

struct Crashed {
    app_id: u64,
    instance_id: Arc<str>,
    dir: PathBuf,
    at: Instant,
}

/// An instance measured for `stats`.
#[derive(Clone, Debug)]
pub(crate) struct Measure {
    pub(crate) port: u16,
    pub(crate) uptime: Duration,
    /// Percent of one core over its lifetime.
    pub(crate) cpu: f64,
    pub(crate) mem_kib: u64,
    pub(crate) disk_bytes: u64,
}

impl std::fmt::Debug for Dea {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dea")
            .field("data_dir", &self.inner.data_dir)
            .finish_non_exhaustive()
    }
}

impl Dea {
    /// A DEA keeping droplets and instances under `data_dir`, reporting on `events`.
    pub(crate) fn new(
        data_dir: &Path,
        timing: Timing,
        staging_cache: PathBuf,
        shutdown: CancellationToken,
        tasks: TaskTracker,
        events: mpsc::UnboundedSender<InstanceEvent>,
        watchdog: Arc<Watchdog>,
    ) -> std::io::Result<Dea> {
        for sub in ["droplets", "instances", "staging-logs"] {
            std::fs::create_dir_all(data_dir.join(sub))?;
        }
        Ok(Dea {
            inner: Arc::new(Inner {
                data_dir: data_dir.to_path_buf(),
                timing,
                staging_cache,
                watchdog,
                shutdown,
                tasks,
                events,
                droplets: Mutex::new(HashMap::new()),
                instances: Mutex::new(HashMap::new()),
                crashed: Mutex::new(Vec::new()),
                frameworks: tokio::sync::OnceCell::new(),
            }),
        })
    }

    fn instances(&self) -> MutexGuard<'_, HashMap<Arc<str>, Handle>> {
        self.inner
            .instances
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn crashed(&self) -> MutexGuard<'_, Vec<Crashed>> {
        self.inner.crashed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn droplets(&self) -> MutexGuard<'_, HashMap<u64, Droplet>> {
        self.inner
            .droplets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Stages the bits into the app's new droplet; the app's previous droplet goes (its
    /// instances are stopped while it stages). The error is the staging log's last word.
    pub(crate) async fn stage(&self, request: StageRequest) -> Result<(), String> {
        let dir = self
            .inner
            .data_dir
            .join("droplets")
            .join(format!("{}-{}", request.app_id, request.package_hash));
        let env = StagingEnv {
            timeout: self.inner.timing.staging_timeout,
            cache: self.inner.staging_cache.clone(),
            watchdog: self.inner.watchdog.clone(),
            shutdown: self.inner.shutdown.clone(),
        };
        let input = staging::StageInput {
            bits: &request.bits,
            hash: &request.package_hash,
            framework: &request.framework,
            command: request.command.as_deref(),
            name: &request.name,
        };
        let staged = staging::stage(input, &dir, env).await;
        // The last staging's log stays readable whatever became of it (`af files APP
        // logs/staging.log` of an app whose staging failed); a failed droplet goes.
        let kept = self.staging_log_path(request.app_id);
        {
            let dir = dir.clone();
            let failed = staged.is_err();
            let _ = tokio::task::spawn_blocking(move || {
                if let Err(error) = copy_regular_file(&dir.join("staging.log"), &kept) {
                    let _ = std::fs::write(
                        &kept,
                        format!("-----> The staging log could not be kept: {error}\n"),
                    );
                }
                if failed {
                    let _ = std::fs::remove_dir_all(&dir);
                }
            })
            .await;
        }
        let staged = staged.map(|droplet| (request.app_id, droplet));
        let (app_id, droplet) = staged?;
        let new_dir = droplet.dir.clone();
        let old = self.droplets().insert(app_id, droplet);
        if let Some(old) = old.filter(|old| old.dir != new_dir) {
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(old.dir)).await;
        }
        Ok(())
    }

    /// Starts an instance of the app's droplet; what becomes of it comes back as events.
    pub(crate) fn start(&self, request: StartRequest) {
        let droplet = self
            .droplets()
            .get(&request.app_id)
            .filter(|d| d.hash == request.droplet)
            .cloned();
        let Some(droplet) = droplet else {
            let _ = self.inner.events.send(InstanceEvent::Crashed {
                app_id: request.app_id,
                instance_id: request.instance_id.clone(),
                reason: format!("no droplet {} to run", request.droplet),
            });
            return;
        };
        let dir = self.inner.data_dir.join("instances").join(format!(
            "{}-{}-{}",
            request.env.app_name, request.index, request.instance_id
        ));
        let (control, commands) = mpsc::channel(4);
        let ended = CancellationToken::new();
        self.instances().insert(
            request.instance_id.clone(),
            Handle {
                control,
                dir: dir.clone(),
                port: None,
                pid: None,
                started: Instant::now(),
                ended: ended.clone(),
            },
        );
        let dea = self.clone();
        self.inner.tasks.spawn(async move {
            let instance_id = request.instance_id.clone();
            instance::supervise(dea.clone(), request, droplet, dir, commands).await;
            ended.cancel();
            dea.instances().remove(&instance_id);
        });
    }

    /// Stops an instance and waits until it is gone: drained (unless told not to), killed,
    /// reaped, its directory removed. An instance that already ended is no matter.
    pub(crate) async fn stop(&self, request: StopRequest) {
        let control = self
            .instances()
            .get(&request.instance_id)
            .map(|handle| handle.control.clone());
        let Some(control) = control else {
            return;
        };
        let (reply, replied) = oneshot::channel();
        let command = InstanceCommand::Stop {
            backends: request.backends,
            drain: request.drain,
            reply,
        };
        if control.send(command).await.is_ok() {
            let _ = replied.await;
        }
    }

    /// The crash fault: the instance dies now, as if the app crashed. False when it is not running.
    pub(crate) fn crash(&self, instance_id: &str) -> bool {
        self.command(instance_id, InstanceCommand::Crash)
    }

    /// The hang fault: the instance stops answering but keeps its connections.
    pub(crate) fn hang(&self, instance_id: &str) -> bool {
        self.command(instance_id, InstanceCommand::Hang)
    }

    fn command(&self, instance_id: &str, command: InstanceCommand) -> bool {
        self.instances()
            .get(instance_id)
            .is_some_and(|handle| handle.control.try_send(command).is_ok())
    }

    /// Cancelled when the instance ends (none if it has already).
    pub(crate) fn ended(&self, instance_id: &str) -> Option<CancellationToken> {
        self.instances()
            .get(instance_id)
            .map(|handle| handle.ended.clone())
    }

    /// An instance's directory: a live one's, or a crashed one's until it is reaped.
    pub(crate) fn instance_dir(&self, instance_id: &str) -> Option<PathBuf> {
        if let Some(handle) = self.instances().get(instance_id) {
            return Some(handle.dir.clone());
        }
        self.crashed()
            .iter()
            .rev()
            .find(|c| &*c.instance_id == instance_id)
            .map(|c| c.dir.clone())
    }

    /// Measures the running instances among these, for `stats` (reads `/proc` and the disk).
    pub(crate) async fn measure(&self, ids: Vec<Arc<str>>) -> HashMap<Arc<str>, Measure> {
        /// What is read under the lock; the rest is measured after.
        struct Found {
            id: Arc<str>,
            port: u16,
            pid: Option<u32>,
            uptime: Duration,
            dir: PathBuf,
        }
        let found: Vec<Found> = {
            let instances = self.instances();
            ids.into_iter()
                .filter_map(|id| {
                    let handle = instances.get(&id)?;
                    Some(Found {
                        port: handle.port?,
                        pid: handle.pid,
                        uptime: handle.started.elapsed(),
                        dir: handle.dir.clone(),
                        id,
                    })
                })
                .collect()
        };
        tokio::task::spawn_blocking(move || {
            found
                .into_iter()
                .map(|found| {
                    let usage = found.pid.map(procstat::group_usage).unwrap_or_default();
                    let seconds = found.uptime.as_secs_f64();
                    let cpu = if seconds > 0.0 {
                        usage.cpu_seconds / seconds * 100.0
                    } else {
                        0.0
                    };
                    let measure = Measure {
                        port: found.port,
                        uptime: found.uptime,
                        cpu,
                        mem_kib: usage.rss_kib,
                        disk_bytes: dir_size(&found.dir),
                    };
                    (found.id, measure)
                })
                .collect()
        })
        .await
        .unwrap_or_default()
    }

    /// Where the app's last staging log is kept (beside the droplets: a failed staging leaves
    /// none).
    fn staging_log_path(&self, app_id: u64) -> PathBuf {
        self.inner
            .data_dir
            .join("staging-logs")
            .join(format!("{app_id}.log"))
    }

    /// The app's last staging log, if it was ever staged (also after a failed staging).
    pub(crate) fn staging_log(&self, app_id: u64) -> Option<PathBuf> {
        Some(self.staging_log_path(app_id)).filter(|path| path.is_file())
    }

    /// Forgets an app whose instances are all stopped: its droplet and its crashed instances'
    /// directories go.
    pub(crate) async fn forget_app(&self, app_id: u64) {
        let _ = std::fs::remove_file(self.staging_log_path(app_id));
        let droplet = self.droplets().remove(&app_id);
        let crashed: Vec<PathBuf> = {
            let mut crashed = self.crashed();
            let (gone, kept): (Vec<Crashed>, Vec<Crashed>) =
                crashed.drain(..).partition(|c| c.app_id == app_id);
            *crashed = kept;
            gone.into_iter().map(|c| c.dir).collect()
        };
        let droplets = self.inner.data_dir.join("droplets");
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(droplet) = droplet {
                let _ = std::fs::remove_dir_all(droplet.dir);
            }
            for dir in crashed {
                let _ = std::fs::remove_dir_all(dir);
            }
            // Droplets of stagings that were replaced before they ran.
            if let Ok(entries) = std::fs::read_dir(droplets) {
                let prefix = format!("{app_id}-");
                for entry in entries.flatten() {
                    if entry.file_name().to_string_lossy().starts_with(&prefix) {
                        let _ = std::fs::remove_dir_all(entry.path());
                    }
                }
            }
        })
        .await;
    }

    /// Removes crashed instances' directories older than `older_than`.
    pub(crate) fn reap_crashed(&self, older_than: Duration) {
        let doomed: Vec<PathBuf> = {
            let mut crashed = self.crashed();
            let (gone, kept): (Vec<Crashed>, Vec<Crashed>) = crashed
                .drain(..)
                .partition(|c| c.at.elapsed() >= older_than);
            *crashed = kept;
            gone.into_iter().map(|c| c.dir).collect()
        };
        for dir in doomed {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// The frameworks and runtimes this machine can run (detected once).
    pub(crate) async fn frameworks(&self) -> Value {
        self.inner
            .frameworks
            .get_or_init(|| async {
                tokio::task::spawn_blocking(frameworks::detect)
                    .await
                    .unwrap_or_else(|_| serde_json::json!({}))
            })
            .await
            .clone()
    }

    // ----- what supervisors report ---------------------------------------------------------

    fn running(&self, app_id: u64, instance_id: &Arc<str>, port: u16, pid: Option<u32>) {
        if let Some(handle) = self.instances().get_mut(instance_id) {
            handle.port = Some(port);
            handle.pid = pid;
            handle.started = Instant::now();
        }
        let _ = self.inner.events.send(InstanceEvent::Running {
            app_id,
            instance_id: instance_id.clone(),
            port,
        });
    }

    fn crashed_instance(&self, app_id: u64, instance_id: &Arc<str>, dir: &Path, reason: &str) {
        self.crashed().push(Crashed {
            app_id,
            instance_id: instance_id.clone(),
            dir: dir.to_path_buf(),
            at: Instant::now(),
        });
        let _ = self.inner.events.send(InstanceEvent::Crashed {
            app_id,
            instance_id: instance_id.clone(),
            reason: reason.to_owned(),
        });
    }
}

/// Copies `from` to `to` (created, or emptied) with its permissions when `from` is a regular
/// file, never through a link: a droplet's files are what staging tools left, and a tool may
/// have left a FIFO (whose opening would block for ever), a device node or a link to anywhere in
/// a file's place. Anything but a regular file is an error of kind `InvalidInput`.
fn copy_regular_file(from: &Path, to: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut source = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(from)?;
    let metadata = source.metadata()?;
    if !metadata.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", from.display()),
        ));
    }
    let mut target = std::fs::File::create(to)?;
    let copied = std::io::copy(&mut source, &mut target)?;
    target.set_permissions(metadata.permissions())?;
    Ok(copied)
}

fn dir_size(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|entry| entry.metadata().ok())
        .filter(|meta| meta.is_file())
        .map(|meta| meta.len())
        .sum()
}
