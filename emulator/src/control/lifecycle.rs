//! The lifecycle, as v1's cloud controller, DEA and health manager carried it out between them:
//! staging (the controller puts the bits together, the DEA's stager makes the droplet), starting
//! and stopping instances by telling the DEA, scaling, deleting; and what the DEA reports back —
//! an instance running (registered with the router) or crashed (restarted by the health manager's
//! rule).

use std::sync::Arc;
use std::time::Instant;

use afemu_router::{Backend, BackendSpec};
use serde_json::json;
use tokio::sync::mpsc;

use super::Platform;
use super::health;
use super::packages;
use super::state::{AppState, Crash, Instance, InstanceState, PackageState, State};
use crate::bus::{EnvTemplate, InstanceEvent, StageRequest, StartRequest, StopRequest};
use crate::clock::{epoch_seconds, random_hex};
use crate::error::ApiError;

/// What a change to an app leaves to do once the state is updated.
#[derive(Debug, Default)]
pub(super) struct Effects {
    pub(super) state_change: Option<AppState>,
    pub(super) scale: Option<(u32, u32)>,
}

impl Platform {
    pub(super) async fn carry_out(&self, app_id: u64, effects: Effects) -> Result<(), ApiError> {
        match effects.state_change {
            Some(AppState::Stopped) => {
                self.stop_instances(app_id, None).await;
                Ok(())
            }
            Some(AppState::Started) => {
                if let Err(error) = self.ensure_staged(app_id).await {
                    // v1: a failed staging leaves the app STOPPED, its package FAILED.
                    let mut state = self.state();
                    if let Some(app) = state.apps.get_mut(&app_id) {
                        app.state = AppState::Stopped;
                        app.package_state = PackageState::Failed;
                    }
                    self.publish(&state);
                    return Err(error);
                }
                let mut state = self.state();
                if let Some(app) = state.apps.get_mut(&app_id)
                    && app.state == AppState::Started
                {
                    app.run_count += 1;
                    let indices: Vec<u32> = (0..app.instances).collect();
                    self.launch_instances(&mut state, app_id, &indices);
                }
                Ok(())
            }
            None => {
                if let Some((from, to)) = effects.scale {
                    if to > from {
                        let mut state = self.state();
                        let indices: Vec<u32> = (from..to).collect();
                        self.launch_instances(&mut state, app_id, &indices);
                    } else {
                        self.stop_instances(app_id, Some(to..from)).await;
                    }
                }
                Ok(())
            }
        }
    }

    /// Stages the last upload if it has not been staged yet: put the bits together (the zip and
    /// the pooled resources), have the DEA's stager make a droplet of them, and take the
    /// profile's staging time, as v1 staged synchronously inside the PUT.
    pub(super) async fn ensure_staged(&self, app_id: u64) -> Result<(), ApiError> {
        let (package, framework, command, name) = {
            let state = self.state();
            let app = state.apps.get(&app_id).ok_or(ApiError::AppNotFound)?;
            if !app.needs_staging() {
                return match &app.staged {
                    Some(_) => Ok(()),
                    None => Err(ApiError::StagingFailed(
                        "no application bits have been uploaded".into(),
                    )),
                };
            }
            (
                app.package
                    .clone()
                    .expect("needs_staging implies a package"),
                app.framework.clone(),
                app.command.clone(),
                app.name.clone(),
            )
        };
        if self.faults().fail_staging.contains(&name) {
            self.journal()
                .record_event("fault", json!({"failed_staging": {"app": name}}));
            return Err(ApiError::StagingFailed(
                "staging failed (injected fault)".into(),
            ));
        }
        let scratch = tempfile::Builder::new()
            .prefix("bits-")
            .tempdir_in(self.inner.data_dir.join("tmp"))
            .map_err(|e| ApiError::System(e.to_string()))?;
        let bits = scratch.path().join("app");
        let assembled = {
            let pool = self.inner.pool.clone();
            let max_unpacked = self.inner.config.max_unpacked;
            let package = package.clone();
            let bits = bits.clone();
            tokio::task::spawn_blocking(move || {
                packages::unpack(&package.zip, &package.resources, &pool, &bits, max_unpacked)?;
                if let Err(error) = pool.add_tree(&bits) {
                    tracing::debug!(%error, "could not add the upload to the resource pool");
                }
                Ok::<(), String>(())
            })
            .await
            .map_err(|e| ApiError::System(e.to_string()))?
        };
        assembled.map_err(ApiError::StagingFailed)?;
        self.inner
            .dea
            .stage(StageRequest {
                app_id,
                name,
                framework,
                command,
                package_hash: package.hash.clone(),
                bits,
            })
            .await
            .map_err(ApiError::StagingFailed)?;
        let staging_time = self.inner.config.timing.staging;
        tokio::select! {
            () = tokio::time::sleep(staging_time) => {}
            () = self.inner.shutdown.cancelled() => return Err(ApiError::System("shutting down".into())),
        }
        let mut state = self.state();
        let app = state.apps.get_mut(&app_id).ok_or(ApiError::AppNotFound)?;
        app.staged = Some(package.hash);
        app.package_state = PackageState::Staged;
        app.run_count = 0;
        Ok(())
    }

    /// Starts new instances at these indices (called with the state lock held): recorded as
    /// STARTING here, then asked of the DEA.
    pub(super) fn launch_instances(&self, state: &mut State, app_id: u64, indices: &[u32]) {
        let Some(app) = state.apps.get(&app_id) else {
            return;
        };
        let bound: Vec<_> = state
            .bound_services(app)
            .into_iter()
            .map(|(service, binding)| {
                let credentials = self.live_credentials(&service, &binding);
                (service, credentials)
            })
            .collect();
        let services_env = super::services::environment(&bound);
        let slow_start = self
            .faults()
            .slow_start
            .get(&app.name)
            .copied()
            .unwrap_or_default();
        let Some(app) = state.apps.get_mut(&app_id) else {
            return;
        };
        let Some(droplet) = app.staged.clone() else {
            return;
        };
        let version = format!("{droplet}-{}", app.run_count);
        let env = EnvTemplate {
            app_name: app.name.clone(),
            owner: app.owner.clone(),
            uris: app.uris.clone(),
            version: version.clone(),
            runtime: app.runtime.clone(),
            memory_mb: app.memory_mb,
            disk_mb: app.disk_mb,
            fds: app.fds,
            user_env: app.env.clone(),
            services_env,
        };
        for &index in indices {
            let instance_id: Arc<str> = Arc::from(random_hex(16));
            app.running.insert(
                index,
                Instance {
                    index,
                    id: instance_id.clone(),
                    private_id: Arc::from(random_hex(32)),
                    state: InstanceState::Starting,
                    since: epoch_seconds(),
                    version: Arc::from(version.as_str()),
                    backend: None,
                    retired: Vec::new(),
                },
            );
            self.inner.dea.start(StartRequest {
                app_id,
                index,
                instance_id,
                droplet: droplet.clone(),
                env: env.clone(),
                slow_start,
            });
        }
    }

    /// Unregisters and stops instances (all of them, or the indices in `range`), and waits until
    /// the DEA has them gone: drained (unless stops are hard), killed, reaped.
    pub(super) async fn stop_instances(&self, app_id: u64, range: Option<std::ops::Range<u32>>) {
        // The router may route to an instance until its unregistration lands: a route delay's
        // worth on top of the drain.
        let drain = (!self.faults().stop_hard)
            .then(|| self.inner.config.timing.drain + self.inner.feed.longest_delay());
        let stopping: Vec<StopRequest> = {
            let mut state = self.state();
            let Some(app) = state.apps.get_mut(&app_id) else {
                return;
            };
            let indices: Vec<u32> = app
                .running
                .keys()
                .copied()
                .filter(|index| range.as_ref().is_none_or(|r| r.contains(index)))
                .collect();
            let stopping = indices
                .into_iter()
                .filter_map(|index| app.running.remove(&index))
                .map(|instance| {
                    let mut backends = instance.retired;
                    backends.extend(instance.backend);
                    StopRequest {
                        instance_id: instance.id,
                        backends,
                        drain,
                    }
                })
                .collect();
            self.publish(&state);
            stopping
        };
        let dea = &self.inner.dea;
        futures_util::future::join_all(stopping.into_iter().map(|stop| dea.stop(stop))).await;
    }

    pub(super) async fn remove_app(&self, app_id: u64) {
        self.stop_instances(app_id, None).await;
        let removed = {
            let mut state = self.state();
            let removed = state.apps.remove(&app_id);
            self.inner
                .gone_apps
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(app_id);
            self.publish(&state);
            removed
        };
        self.inner
            .app_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&app_id);
        if let Some(app) = &removed {
            self.journal()
                .record_event("app", json!({"app": app.name, "deleted": true}));
            // Its bindings' users go with it.
            let bound = self.state().bound_services(app);
            for (service, binding) in bound {
                if app.bindings.contains_key(&service.name) {
                    self.unbind(&service, &binding).await;
                }
            }
            let packages = self
                .inner
                .data_dir
                .join("packages")
                .join(app_id.to_string());
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(packages)).await;
            self.inner.dea.forget_app(app_id).await;
        }
    }

    /// Hears what the DEA reports, until shutdown.
    pub(super) async fn hear_the_dea(self, mut reports: mpsc::UnboundedReceiver<InstanceEvent>) {
        loop {
            let event = tokio::select! {
                event = reports.recv() => event,
                () = self.inner.shutdown.cancelled() => return,
            };
            match event {
                Some(InstanceEvent::Running {
                    app_id,
                    instance_id,
                    port,
                }) => self.instance_running(app_id, &instance_id, port),
                Some(InstanceEvent::Crashed {
                    app_id,
                    instance_id,
                    reason,
                }) => self.instance_crashed(app_id, &instance_id, &reason),
                None => return,
            }
        }
    }

    /// An instance accepts connections: RUNNING, and registered with the router, if it is still
    /// wanted (otherwise its stop is on its way to the DEA).
    fn instance_running(&self, app_id: u64, instance_id: &str, port: u16) {
        let mut state = self.state();
        let Some(app) = state.apps.get_mut(&app_id) else {
            return;
        };
        if app.state != AppState::Started {
            return;
        }
        let app_name: Arc<str> = Arc::from(app.name.as_str());
        let Some(instance) = app
            .running
            .values_mut()
            .find(|i| &*i.id == instance_id && i.state == InstanceState::Starting)
        else {
            return;
        };
        instance.state = InstanceState::Running;
        instance.since = epoch_seconds();
        instance.backend = Some(Backend::new(BackendSpec {
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            app: app_name,
            instance_index: instance.index,
            instance_id: instance.id.clone(),
            private_instance_id: instance.private_id.clone(),
            version: instance.version.clone(),
        }));
        tracing::info!(app = %app.name, index = instance.index, port, "instance running");
        self.publish(&state);
    }

    /// An instance died unasked, or never became ready: unregister it at once, record the crash,
    /// and let the health manager decide when (or whether) to start it again.
    fn instance_crashed(&self, app_id: u64, instance_id: &str, reason: &str) {
        let (restart, crashed_index) = {
            let mut state = self.state();
            let Some(app) = state.apps.get_mut(&app_id) else {
                return;
            };
            let Some(instance) = app.running.values_mut().find(|i| &*i.id == instance_id) else {
                return;
            };
            let index = instance.index;
            instance.state = InstanceState::Crashed;
            instance.since = epoch_seconds();
            instance.backend = None;
            tracing::warn!(app = %app.name, index, %reason, "instance crashed");
            self.journal().record_event(
                "crash",
                json!({"app": app.name, "index": index, "reason": reason.to_string()}),
            );
            app.crashes.push(Crash {
                instance_id: Arc::from(instance_id),
                index,
                since: epoch_seconds(),
                at: Instant::now(),
            });
            let decision = health::after_crash(&app.crashes, index, &self.inner.config.timing);
            if let health::Decision::RestartAfter(_) = decision
                && let Some(instance) = app.running.get_mut(&index)
                && decision.is_flapping()
            {
                instance.state = InstanceState::Flapping;
            }
            self.publish(&state);
            (decision, index)
        };
        if let health::Decision::RestartAfter(delay) = restart {
            let platform = self.clone();
            let instance_id: Arc<str> = Arc::from(instance_id);
            self.inner.tasks.spawn(async move {
                tokio::select! {
                    () = tokio::time::sleep(delay) => platform.restart_instance(app_id, crashed_index, &instance_id).await,
                    () = platform.inner.shutdown.cancelled() => {}
                }
            });
        }
    }

    /// The health manager's restart of a crashed instance at the same index. The crash reaper
    /// may have forgotten the crashed instance meanwhile (with a short retention); its index is
    /// restarted all the same unless another instance took it.
    async fn restart_instance(&self, app_id: u64, index: u32, crashed_id: &str) {
        let _guard = self.lock_app(app_id).await;
        let mut state = self.state();
        let Some(app) = state.apps.get_mut(&app_id) else {
            return;
        };
        let slot_is_ours = app
            .running
            .get(&index)
            .is_none_or(|instance| &*instance.id == crashed_id);
        if app.state != AppState::Started || index >= app.instances || !slot_is_ours {
            return;
        }
        app.running.remove(&index);
        self.launch_instances(&mut state, app_id, &[index]);
    }

    /// Forgets crashes older than the retention (v1: an hour), and has the DEA remove their
    /// directories.
    pub fn reap_crashes(&self, older_than: std::time::Duration) {
        let cutoff = epoch_seconds().saturating_sub(older_than.as_secs());
        {
            let mut state = self.state();
            for app in state.apps.values_mut() {
                app.crashes.retain(|crash| crash.since > cutoff);
            }
        }
        self.inner.dea.reap_crashed(older_than);
    }
}
