//! The platform: the handle every part of the emulator shares. It owns the state (behind one lock,
//! never held across an `.await`), publishes the route table derived from it after every change,
//! and carries out the lifecycle — stage, start, stop, scale, crash and restart — as v1's cloud
//! controller, DEA and health manager did between them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use afemu_router::{Backend, BackendSpec, Journal, Router, Routes};
use serde_json::{Value, json};
use tokio::sync::{OwnedMutexGuard, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app_update::AppUpdate;
use crate::config::Config;
use crate::error::ApiError;
use crate::runtime::{EnvTemplate, InstanceCommand, Launch, StartPlan};
use crate::services;
use crate::staging::{self, Resource, ResourcePool};
use crate::state::{
    App, AppState, Crash, Droplet, Instance, InstanceState, Package, PackageState, State, User,
    epoch_seconds, normalise_uri, random_hex, validate_app_name,
};
use crate::watchdog::Watchdog;

/// The shared handle; clone it freely.
#[derive(Clone)]
pub struct Platform {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    data_dir: PathBuf,
    pool: ResourcePool,
    state: Mutex<State>,
    routes: Routes,
    journal: Journal,
    router: Router,
    /// One lifecycle operation per app at a time: a PUT that stages holds it for seconds, and a
    /// second PUT on the same app waits instead of interleaving with it.
    app_locks: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<()>>>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    frameworks: tokio::sync::OnceCell<Value>,
    watchdog: Arc<Watchdog>,
    /// The control plane as a backend of the router at `api.<domain>`, v1's own topology.
    api_route: std::sync::OnceLock<(Arc<str>, Arc<Backend>)>,
    /// Route changes on their way to the router (instant, or delayed by the fault).
    feed: Arc<crate::route_feed::RouteFeed>,
    /// Apps deleted since the last publish, whose routes must go.
    gone_apps: Mutex<Vec<u64>>,
    /// The faults in force.
    faults: Mutex<crate::faults::FaultState>,
    /// Signalled after each change a state snapshot would show (for `--state`).
    changed: tokio::sync::Notify,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform")
            .field("data_dir", &self.inner.data_dir)
            .field("route_table_version", &self.inner.routes.version())
            .finish_non_exhaustive()
    }
}

/// What a change to an app leaves to do once the state is updated.
#[derive(Debug, Default)]
struct Effects {
    state_change: Option<AppState>,
    scale: Option<(u32, u32)>,
}

impl Platform {
    /// A platform keeping its files under `data_dir` (which must exist and be writable).
    pub fn new(config: Config, data_dir: &Path) -> std::io::Result<Platform> {
        for sub in ["packages", "droplets", "instances", "tmp"] {
            std::fs::create_dir_all(data_dir.join(sub))?;
        }
        let pool = ResourcePool::new(data_dir.join("resources"))?;
        let routes = Routes::new();
        let journal = Journal::new(config.journal_capacity);
        let router = Router::new(config.router.clone(), routes.clone(), journal.clone());
        routes.publish([]);
        let initial_faults = crate::faults::FaultState {
            slow_start: config.faults.slow_start.clone(),
            fail_staging: config.faults.fail_staging.clone(),
            stop_hard: config.faults.stop_hard,
        };
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let feed = Arc::new(crate::route_feed::RouteFeed::new(
            routes.clone(),
            config.faults.route_delay,
            config.faults.seed,
            config.defect_skip_one_unregister,
            shutdown.clone(),
            tasks.clone(),
        ));
        Ok(Platform {
            inner: Arc::new(Inner {
                config,
                data_dir: data_dir.to_path_buf(),
                pool,
                state: Mutex::new(State::default()),
                routes,
                journal,
                router,
                app_locks: Mutex::new(HashMap::new()),
                shutdown,
                tasks,
                frameworks: tokio::sync::OnceCell::new(),
                watchdog: Arc::new(Watchdog::start()),
                api_route: std::sync::OnceLock::new(),
                feed,
                gone_apps: Mutex::new(Vec::new()),
                faults: Mutex::new(initial_faults),
                changed: tokio::sync::Notify::new(),
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }
    pub fn routes(&self) -> &Routes {
        &self.inner.routes
    }
    pub fn journal(&self) -> &Journal {
        &self.inner.journal
    }
    pub fn router(&self) -> &Router {
        &self.inner.router
    }
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }
    pub(crate) fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }
    pub(crate) fn watchdog(&self) -> &Arc<Watchdog> {
        &self.inner.watchdog
    }

    /// Stops every instance (killing every child process) and waits for their supervisors.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        self.inner.watchdog.stop();
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes the route table derived from `state`. Called with the state lock held, so tables
    /// are published in the order of the changes they reflect.
    fn publish(&self, state: &State) {
        let dev_suffix = &self.inner.config.router.dev_suffix;
        let mut changes: Vec<(u64, crate::route_feed::Entries)> = state
            .apps
            .values()
            .map(|app| (app.id, State::app_route_entries(app, dev_suffix)))
            .collect();
        // Apps that are gone keep nothing (app ids start at 1; 0 is the API's own route).
        changes.extend(
            self.inner
                .gone_apps
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain(..)
                .map(|id| (id, Vec::new())),
        );
        if let Some((host, api)) = self.inner.api_route.get() {
            changes.push((0, vec![(host.clone(), api.clone())]));
        }
        self.inner.feed.submit(changes);
    }

    fn faults(&self) -> MutexGuard<'_, crate::faults::FaultState> {
        self.inner.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The slow-start fault's extra boot time for an app (zero without it).
    pub(crate) fn slow_start(&self, app_id: u64) -> std::time::Duration {
        let name = self.state().apps.get(&app_id).map(|a| a.name.clone());
        name.and_then(|name| self.faults().slow_start.get(&name).copied())
            .unwrap_or_default()
    }

    /// Whether stops cut requests in flight (the stop-hard fault).
    pub(crate) fn stop_hard(&self) -> bool {
        self.faults().stop_hard
    }

    /// The faults in force, as `GET /_afemu/faults` shows them.
    pub fn faults_document(&self) -> Value {
        self.faults().document(self.inner.feed.delay())
    }

    /// Applies a `PUT /_afemu/faults` body; each fault applied is recorded in the journal.
    pub fn apply_faults(&self, body: &Value) -> Result<Value, ApiError> {
        use crate::faults::{FaultUpdate, parse_duration};
        let update = FaultUpdate::parse(body)?;
        // Check everything first: a bad part changes nothing.
        let route_delay = match &update.route_delay {
            Some(Some(text)) => Some(Some(
                text.parse::<crate::route_feed::RouteDelay>()
                    .map_err(ApiError::BadRequest)?,
            )),
            Some(None) => Some(None),
            None => None,
        };
        let slow_start = match &update.slow_start {
            Some(slow) => Some((
                slow.app.clone(),
                slow.delay.as_deref().map(parse_duration).transpose()?,
            )),
            None => None,
        };
        let stop_hard = match update.stop.as_deref() {
            None => None,
            Some("hard") => Some(true),
            Some("drain") => Some(false),
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "stop must be \"hard\" or \"drain\", not {other:?}"
                )));
            }
        };
        let crash = match &update.crash {
            Some(crash) => Some((self.instance_control(&crash.app, crash.index)?, crash)),
            None => None,
        };
        let hang = match &update.hang {
            Some(hang) => Some((self.instance_control(&hang.app, hang.index)?, hang)),
            None => None,
        };
        let journal = self.journal();
        if let Some(seed) = update.seed {
            self.inner.feed.reseed(seed);
            journal.record_event("fault", json!({"seed": seed}));
        }
        if let Some(delay) = route_delay {
            self.inner.feed.set_delay(delay);
            journal.record_event(
                "fault",
                json!({"route_delay": delay.map(|d| d.to_string())}),
            );
        }
        if let Some((app, delay)) = slow_start {
            let mut faults = self.faults();
            match delay {
                Some(delay) => faults.slow_start.insert(app.clone(), delay),
                None => faults.slow_start.remove(&app),
            };
            journal.record_event(
                "fault",
                json!({"slow_start": {"app": app, "delay": delay.map(|d| humantime::format_duration(d).to_string())}}),
            );
        }
        if let Some(toggle) = &update.fail_staging {
            let mut faults = self.faults();
            if toggle.enabled {
                faults.fail_staging.insert(toggle.app.clone());
            } else {
                faults.fail_staging.remove(&toggle.app);
            }
            journal.record_event(
                "fault",
                json!({"fail_staging": {"app": toggle.app, "enabled": toggle.enabled}}),
            );
        }
        if let Some(hard) = stop_hard {
            self.faults().stop_hard = hard;
            journal.record_event(
                "fault",
                json!({"stop": if hard { "hard" } else { "drain" }}),
            );
        }
        if let Some((control, hang)) = hang {
            let _ = control.try_send(InstanceCommand::Hang);
            journal.record_event(
                "fault",
                json!({"hang": {"app": hang.app, "index": hang.index}}),
            );
        }
        if let Some((control, crash)) = crash {
            journal.record_event(
                "fault",
                json!({"crash": {"app": crash.app, "index": crash.index, "after_requests": crash.after_requests}}),
            );
            if crash.after_requests == 0 {
                let _ = control.try_send(InstanceCommand::Crash);
            } else {
                self.crash_after_requests(control, &crash.app, crash.index, crash.after_requests);
            }
        }
        Ok(self.faults_document())
    }

    /// The control channel of a running instance, by app name (any user's) and index.
    fn instance_control(
        &self,
        app: &str,
        index: u32,
    ) -> Result<mpsc::Sender<InstanceCommand>, ApiError> {
        let state = self.state();
        let found = state
            .apps
            .values()
            .find(|a| a.name == app)
            .ok_or(ApiError::AppNotFound)?;
        found
            .running
            .get(&index)
            .filter(|i| matches!(i.state, InstanceState::Running | InstanceState::Starting))
            .map(|i| i.control.clone())
            .ok_or_else(|| ApiError::InstanceNotFound(index.to_string()))
    }

    /// Crashes the instance once it has served `count` more requests (counted from the journal).
    fn crash_after_requests(
        &self,
        control: mpsc::Sender<InstanceCommand>,
        app: &str,
        index: u32,
        count: u64,
    ) {
        let mut live = self.journal().subscribe();
        let app = app.to_owned();
        let shutdown = self.inner.shutdown.clone();
        self.inner.tasks.spawn(async move {
            let mut served = 0;
            loop {
                let entry = tokio::select! {
                    entry = live.recv() => entry,
                    () = shutdown.cancelled() => return,
                    () = control.closed() => return,
                };
                match entry {
                    Ok(entry) if entry.served_by(&app) && entry.instance == Some(index) => {
                        served += 1
                    }
                    Ok(_) => continue,
                    // Lagging means many requests went by: count them conservatively as none.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
                if served >= count {
                    let _ = control.send(InstanceCommand::Crash).await;
                    return;
                }
            }
        });
    }

    /// The route-delay fault in force, if any.
    pub fn route_delay(&self) -> Option<crate::route_feed::RouteDelay> {
        self.inner.feed.delay()
    }

    /// Whether every route change has reached the router (always, without a route delay).
    pub fn routes_settled(&self) -> bool {
        self.inner.feed.settled()
    }

    /// Waits until every route change has reached the router, or `limit` passes; says which.
    pub async fn wait_routes_settled(&self, limit: std::time::Duration) -> bool {
        self.inner.feed.wait_settled(limit).await
    }

    /// How long a route change may take to reach the router now (the route delay's maximum).
    pub fn longest_route_delay(&self) -> std::time::Duration {
        self.inner.feed.longest_delay()
    }

    /// Holds every app's route changes until [`Platform::release_route`] lets them through one
    /// by one (`afemu rehearse --replay`), or lets what is held through and stops holding.
    pub fn hold_routes(&self, held: bool) {
        self.inner.feed.set_held(held);
        self.journal().record_event(
            "fault",
            json!({"route_delay": if held { "held" } else { "released" }}),
        );
    }

    /// The route changes submitted since routes were held, in order.
    pub fn held_route_changes(&self) -> Vec<crate::route_feed::Submission> {
        self.inner.feed.submissions()
    }

    /// How many route changes of an app are held now.
    pub fn held_route_count(&self, app_id: u64) -> usize {
        self.inner.feed.held_count(app_id)
    }

    /// Lets the oldest held route change of an app reach the router.
    pub fn release_route(&self, app_id: u64) -> Result<(), String> {
        self.inner.feed.release(app_id)
    }

    /// Ticks on every route change submitted or delivered.
    pub fn route_events(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.feed.subscribe()
    }

    /// How many apps there are, of every user.
    pub fn app_count(&self) -> usize {
        self.state().apps.len()
    }

    /// The name of the app with this id, if it still exists.
    pub fn app_name(&self, app_id: u64) -> Option<String> {
        self.state().apps.get(&app_id).map(|app| app.name.clone())
    }

    /// The host the API is served at through the router: `api.<domain>`.
    pub fn api_host(&self) -> String {
        format!("api.{}", self.inner.config.domain)
    }

    /// Routes `api.<domain>` to the API listening at `addr`, so that a client can target
    /// `http://api.<domain>:<router port>` and find the API and the apps behind one host and port,
    /// as v1 put its cloud controller behind its router.
    pub fn route_api_through_router(&self, addr: std::net::SocketAddr) {
        let host: Arc<str> = Arc::from(self.api_host().as_str());
        let backend = Backend::new(BackendSpec {
            addr,
            app: Arc::from("(api)"),
            instance_index: 0,
            instance_id: Arc::from("api"),
            private_instance_id: Arc::from("api"),
            version: Arc::from("api"),
        });
        if self.inner.api_route.set((host, backend)).is_ok() {
            let state = self.state();
            self.publish(&state);
        }
    }

    async fn lock_app(&self, app_id: u64) -> OwnedMutexGuard<()> {
        let lock = self
            .inner
            .app_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(app_id)
            .or_default()
            .clone();
        lock.lock_owned().await
    }

    // ----- snapshots and reset -----------------------------------------------------------------

    /// Notes that something a snapshot shows has changed.
    pub(crate) fn mark_changed(&self) {
        self.inner.changed.notify_one();
    }

    /// Resolves at the next change a snapshot would show.
    pub async fn changed(&self) {
        self.inner.changed.notified().await;
    }

    /// `POST /_afemu/reset`: every app stopped and deleted, every user, token and service gone,
    /// the journal emptied. Faults stay as they are.
    pub async fn reset(&self) {
        let apps: Vec<u64> = self.state().apps.keys().copied().collect();
        for app_id in apps {
            let _guard = self.lock_app(app_id).await;
            self.remove_app(app_id).await;
        }
        {
            let mut state = self.state();
            state.users.clear();
            state.tokens.clear();
            state.services.clear();
            self.publish(&state);
        }
        self.journal().clear();
        self.journal().record_event("reset", json!({}));
        self.mark_changed();
    }

    /// `GET /_afemu/state`: the snapshot (blocking: it reads the uploaded packages).
    pub fn export_state(&self) -> Result<crate::snapshot::Snapshot, ApiError> {
        use crate::snapshot::{AppRecord, FORMAT, ServiceRecord, Snapshot, UserRecord};
        let (mut snapshot, packages) = {
            let state = self.state();
            let users = state
                .users
                .iter()
                .map(|(email, user)| UserRecord {
                    email: email.clone(),
                    password: user.password.clone(),
                    admin: user.admin,
                })
                .collect();
            let tokens = state
                .tokens
                .iter()
                .map(|(t, e)| (t.clone(), e.clone()))
                .collect();
            let services = state
                .services
                .iter()
                .map(|s| ServiceRecord {
                    owner: s.owner.clone(),
                    name: s.name.clone(),
                    vendor: s.offering.vendor.into(),
                    version: s.offering.version.into(),
                    credentials: s.credentials.clone(),
                    infra: s.infra.clone(),
                })
                .collect();
            let mut packages = Vec::new();
            let apps = state
                .apps
                .values()
                .map(|app| {
                    if let Some(package) = &app.package {
                        packages.push((package.hash.clone(), package.zip.clone()));
                    }
                    AppRecord {
                        owner: app.owner.clone(),
                        name: app.name.clone(),
                        framework: app.framework.clone(),
                        runtime: app.runtime.clone(),
                        command: app.command.clone(),
                        uris: app.uris.clone(),
                        instances: app.instances,
                        memory_mb: app.memory_mb,
                        state: app.state.as_str().into(),
                        services: app.services.clone(),
                        env: app.env.clone(),
                        infra: app.infra.clone(),
                        package: app.package.as_ref().map(|p| p.hash.clone()),
                    }
                })
                .collect();
            (
                Snapshot {
                    afemu_state: FORMAT,
                    users,
                    tokens,
                    services,
                    apps,
                    packages: Default::default(),
                },
                packages,
            )
        };
        for (hash, path) in packages {
            let bytes = std::fs::read(&path)
                .map_err(|e| ApiError::System(format!("{}: {e}", path.display())))?;
            snapshot.packages.insert(hash, hex::encode(bytes));
        }
        Ok(snapshot)
    }

    /// `PUT /_afemu/state`: replaces everything with a snapshot, then starts the apps it says
    /// are started. A snapshot that does not check out changes nothing.
    pub async fn import_state(&self, document: &Value) -> Result<(), ApiError> {
        use crate::snapshot::Snapshot;
        let snapshot = Snapshot::parse(document)?;
        // Check every part before anything changes.
        for user in &snapshot.users {
            normalise_email(&user.email)?;
        }
        for service in &snapshot.services {
            services::offering(&service.vendor, Some(&service.version))
                .ok_or(ApiError::ServiceNotFound)?;
            validate_service_name(&service.name)?;
        }
        for app in &snapshot.apps {
            validate_app_name(&app.name)?;
            for uri in &app.uris {
                normalise_uri(uri)?;
            }
        }
        let max_unpacked = self.inner.config.max_unpacked;
        let tmp = self.inner.data_dir.join("tmp");
        let packages = snapshot.packages.clone();
        let checked = tokio::task::spawn_blocking(move || {
            let mut files = HashMap::new();
            for (hash, encoded) in packages {
                let bytes = hex::decode(&encoded)
                    .map_err(|e| ApiError::BadRequest(format!("package {hash}: not hex: {e}")))?;
                let mut file = tempfile::NamedTempFile::new_in(&tmp)
                    .map_err(|e| ApiError::System(e.to_string()))?;
                std::io::Write::write_all(&mut file, &bytes)
                    .map_err(|e| ApiError::System(e.to_string()))?;
                staging::check_zip(file.path(), max_unpacked)?;
                files.insert(hash, file);
            }
            Ok::<_, ApiError>(files)
        })
        .await
        .map_err(|e| ApiError::System(e.to_string()))??;

        self.reset().await;
        let mut files = checked;
        let mut to_start = Vec::new();
        {
            let mut state = self.state();
            for user in &snapshot.users {
                state.users.insert(
                    normalise_email(&user.email)?,
                    User {
                        password: user.password.clone(),
                        admin: user.admin || self.inner.config.admins.contains(&user.email),
                        created: epoch_seconds(),
                    },
                );
            }
            for (token, email) in &snapshot.tokens {
                state.tokens.insert(token.clone(), email.clone());
            }
            for service in &snapshot.services {
                let offering = services::offering(&service.vendor, Some(&service.version))
                    .ok_or(ApiError::ServiceNotFound)?;
                state.services.push(services::Service {
                    owner: service.owner.clone(),
                    name: service.name.clone(),
                    offering,
                    credentials: service.credentials.clone(),
                    created: epoch_seconds(),
                    infra: service.infra.clone(),
                });
            }
            for record in &snapshot.apps {
                state.next_app_id += 1;
                let id = state.next_app_id;
                let package = match &record.package {
                    Some(hash) => {
                        let dir = self.inner.data_dir.join("packages").join(id.to_string());
                        std::fs::create_dir_all(&dir)
                            .map_err(|e| ApiError::System(e.to_string()))?;
                        let path = dir.join(format!("{hash}.zip"));
                        let file = files.remove(hash);
                        match file {
                            Some(file) => {
                                file.persist(&path)
                                    .map_err(|e| ApiError::System(e.to_string()))?;
                            }
                            // Another app took this package's file: copy theirs.
                            None => {
                                let source = state
                                    .apps
                                    .values()
                                    .filter_map(|a| a.package.as_ref())
                                    .find(|p| &p.hash == hash)
                                    .map(|p| p.zip.clone())
                                    .ok_or_else(|| {
                                        ApiError::System(format!("package {hash} went missing"))
                                    })?;
                                std::fs::copy(source, &path)
                                    .map_err(|e| ApiError::System(e.to_string()))?;
                            }
                        }
                        Some(Package {
                            hash: hash.clone(),
                            zip: path,
                            resources: Vec::new(),
                        })
                    }
                    None => None,
                };
                if record.state == "STARTED" {
                    to_start.push(id);
                }
                state.apps.insert(
                    id,
                    App {
                        id,
                        owner: record.owner.clone(),
                        name: record.name.clone(),
                        framework: record.framework.clone(),
                        runtime: record.runtime.clone(),
                        command: record.command.clone(),
                        uris: record
                            .uris
                            .iter()
                            .map(|u| normalise_uri(u))
                            .collect::<Result<_, _>>()?,
                        instances: record.instances.max(1),
                        memory_mb: record.memory_mb,
                        disk_mb: 2048,
                        fds: 256,
                        state: AppState::Stopped,
                        services: record.services.clone(),
                        env: record.env.clone(),
                        lock_version: 0,
                        created: epoch_seconds(),
                        infra: record.infra.clone(),
                        debug: Value::Null,
                        console: Value::Null,
                        package,
                        droplet: None,
                        package_state: PackageState::Pending,
                        run_count: 0,
                        running: Default::default(),
                        crashes: Vec::new(),
                        releases: Vec::new(),
                    },
                );
            }
            self.publish(&state);
        }
        let mut failures = Vec::new();
        for app_id in to_start {
            let _guard = self.lock_app(app_id).await;
            {
                let mut state = self.state();
                if let Some(app) = state.apps.get_mut(&app_id) {
                    app.state = AppState::Started;
                }
            }
            let effects = Effects {
                state_change: Some(AppState::Started),
                scale: None,
            };
            if let Err(error) = self.carry_out(app_id, effects).await {
                let name = self
                    .state()
                    .apps
                    .get(&app_id)
                    .map(|a| a.name.clone())
                    .unwrap_or_default();
                failures.push(format!("{name}: {error}"));
            }
        }
        self.mark_changed();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(ApiError::StagingFailed(failures.join("; ")))
        }
    }

    // ----- users ------------------------------------------------------------------------------

    /// `POST /users/:email/tokens`: the first login of an email registers it with that password.
    pub fn login(&self, email: &str, password: &str) -> Result<String, ApiError> {
        let email = normalise_email(email)?;
        let mut state = self.state();
        match state.users.get(&email) {
            Some(user) if user.password != password => return Err(ApiError::Forbidden),
            Some(_) => {}
            None => {
                let admin = self.inner.config.admins.contains(&email);
                state.users.insert(
                    email.clone(),
                    User {
                        password: password.to_owned(),
                        admin,
                        created: epoch_seconds(),
                    },
                );
                tracing::debug!(%email, "registered a user at first login");
            }
        }
        let token = random_hex(32);
        state.tokens.insert(token.clone(), email);
        Ok(token)
    }

    /// The user a request acts as: the token's, or with `PROXY-USER` (admins only) that user.
    pub fn authenticate(&self, token: &str, proxy_user: Option<&str>) -> Result<String, ApiError> {
        let state = self.state();
        let email = state
            .tokens
            .get(token.trim())
            .ok_or(ApiError::Forbidden)?
            .clone();
        match proxy_user.map(str::trim).filter(|p| !p.is_empty()) {
            None => Ok(email),
            Some(proxied) => {
                let is_admin = state.users.get(&email).is_some_and(|u| u.admin);
                if !is_admin {
                    return Err(ApiError::Forbidden);
                }
                let proxied = proxied.to_ascii_lowercase();
                if !state.users.contains_key(&proxied) {
                    return Err(ApiError::UserNotFound);
                }
                Ok(proxied)
            }
        }
    }

    /// `GET /users/:email`: only yourself, unless you are an admin.
    pub fn user_document(&self, asking: &str, email: &str) -> Result<Value, ApiError> {
        let email = normalise_email(email)?;
        let state = self.state();
        let asking_admin = state.users.get(asking).is_some_and(|u| u.admin);
        if asking != email && !asking_admin {
            return Err(ApiError::Forbidden);
        }
        let user = state.users.get(&email).ok_or(ApiError::UserNotFound)?;
        let apps: Vec<Value> = state
            .apps_of(&email)
            .map(|app| json!({"name": app.name, "state": app.state.as_str()}))
            .collect();
        Ok(json!({
            "email": email,
            "admin": user.admin,
            "apps": apps,
            "meta": {"version": 1, "created": user.created},
        }))
    }

    fn is_admin(state: &State, email: &str) -> bool {
        state.users.get(email).is_some_and(|u| u.admin)
    }

    /// `POST /users {email, password}`: registration, open to anyone as v1's default
    /// (`allow_registration`) had it.
    pub fn register(&self, body: &Value) -> Result<(), ApiError> {
        let email = body
            .get("email")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::BadRequest("an email is required".into()))?;
        let password = body
            .get("password")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::BadRequest("a password is required".into()))?;
        let email = normalise_email(email)?;
        let mut state = self.state();
        if state.users.contains_key(&email) {
            return Err(ApiError::BadRequest(format!(
                "{email} is already registered"
            )));
        }
        let admin = self.inner.config.admins.contains(&email);
        state.users.insert(
            email,
            User {
                password: password.to_owned(),
                admin,
                created: epoch_seconds(),
            },
        );
        Ok(())
    }

    /// `GET /users` (admins): every user with their apps.
    pub fn list_users(&self, asking: &str) -> Result<Vec<Value>, ApiError> {
        let emails: Vec<String> = {
            let state = self.state();
            if !Self::is_admin(&state, asking) {
                return Err(ApiError::Forbidden);
            }
            state.users.keys().cloned().collect()
        };
        emails
            .iter()
            .map(|email| self.user_document(asking, email))
            .collect()
    }

    /// `PUT /users/:email` (yourself, or an admin): af's `passwd` sends the user document with a
    /// new `password`.
    pub fn update_user(&self, asking: &str, email: &str, body: &Value) -> Result<(), ApiError> {
        let email = normalise_email(email)?;
        let password = match body.get("password") {
            Some(Value::String(password)) => Some(password.clone()),
            None | Some(Value::Null) => None,
            Some(_) => return Err(ApiError::BadRequest("password must be a string".into())),
        };
        let mut state = self.state();
        if asking != email && !Self::is_admin(&state, asking) {
            return Err(ApiError::Forbidden);
        }
        let user = state.users.get_mut(&email).ok_or(ApiError::UserNotFound)?;
        if let Some(password) = password {
            user.password = password;
        }
        Ok(())
    }

    /// `DELETE /users/:email` (admins): the user goes with their apps, services and tokens.
    pub async fn delete_user(&self, asking: &str, email: &str) -> Result<(), ApiError> {
        let email = normalise_email(email)?;
        let apps: Vec<u64> = {
            let state = self.state();
            if !Self::is_admin(&state, asking) {
                return Err(ApiError::Forbidden);
            }
            if !state.users.contains_key(&email) {
                return Err(ApiError::UserNotFound);
            }
            state.apps_of(&email).map(|app| app.id).collect()
        };
        for app_id in apps {
            let _guard = self.lock_app(app_id).await;
            self.remove_app(app_id).await;
        }
        let mut state = self.state();
        state.users.remove(&email);
        state.tokens.retain(|_, owner| owner != &email);
        state.services.retain(|s| s.owner != email);
        Ok(())
    }

    // ----- info -------------------------------------------------------------------------------

    /// `GET /info`; with a user, also their usage, limits and the frameworks on offer.
    pub async fn info(&self, user: Option<&str>) -> Value {
        let mut info = json!({
            "name": "vcap",
            "build": format!("afemu-{}", env!("CARGO_PKG_VERSION")),
            "support": "https://github.com/afemu/afemu",
            "version": 0.999,
            "description": "AppFog v1, emulated locally by afemu",
            "allow_debug": false,
        });
        if let Some(user) = user {
            let limits = self.inner.config.limits;
            let (apps, memory, services) = {
                let state = self.state();
                (
                    state.apps_of(user).count(),
                    state.memory_in_use(user),
                    state.services_of(user).count(),
                )
            };
            info["user"] = json!(user);
            info["limits"] = json!({
                "memory": limits.memory_mb,
                "app_uris": limits.app_uris,
                "services": limits.services,
                "apps": limits.apps,
            });
            info["usage"] = json!({"memory": memory, "apps": apps, "services": services});
            info["frameworks"] = self
                .inner
                .frameworks
                .get_or_init(|| async {
                    tokio::task::spawn_blocking(crate::frameworks::detect)
                        .await
                        .unwrap_or_else(|_| json!({}))
                })
                .await
                .clone();
        }
        info
    }

    /// `GET /info/infras` (AppFog): the infrastructures and their app domains.
    pub fn infras(&self) -> Value {
        let domain = &self.inner.config.domain;
        json!([
            {"infra": "aws", "description": "AWS US East - Virginia", "base": domain},
            {"infra": "eu-aws", "description": "AWS EU West - Ireland", "base": "eu01.aws.af.cm"},
            {"infra": "ap-aws", "description": "AWS Asia SE - Singapore", "base": "ap01.aws.af.cm"},
            {"infra": "rs", "description": "Rackspace AZ 1 - Dallas", "base": "rs.af.cm"},
            {"infra": "hp", "description": "HP AZ 2 - Las Vegas", "base": "hp.af.cm"},
        ])
    }

    // ----- apps: reading ----------------------------------------------------------------------

    /// `GET /apps`: the user's apps, by name.
    pub fn list_apps(&self, user: &str) -> Vec<Value> {
        let state = self.state();
        let mut apps: Vec<&App> = state.apps_of(user).collect();
        apps.sort_by(|a, b| a.name.cmp(&b.name));
        apps.into_iter().map(App::document).collect()
    }

    /// `GET /apps/:name`.
    pub fn app_document(&self, user: &str, name: &str) -> Result<Value, ApiError> {
        let state = self.state();
        state
            .find_app(user, name)
            .map(App::document)
            .ok_or(ApiError::AppNotFound)
    }

    /// `GET /apps/:name/instances`: every index up to the instance count; missing ones are DOWN.
    pub fn instances(&self, user: &str, name: &str) -> Result<Value, ApiError> {
        let state = self.state();
        let app = state.find_app(user, name).ok_or(ApiError::AppNotFound)?;
        if app.state != AppState::Started {
            return Ok(json!({"instances": []}));
        }
        let instances: Vec<Value> = (0..app.instances)
            .map(|index| {
                let (state, since) = match app.running.get(&index) {
                    Some(instance) => (reported_state(instance.state), instance.since),
                    None => ("DOWN", epoch_seconds()),
                };
                json!({
                    "index": index, "state": state, "since": since,
                    "debug_ip": null, "debug_port": null, "console_ip": null, "console_port": null,
                })
            })
            .collect();
        Ok(json!({"instances": instances}))
    }

    /// `GET /apps/:name/stats`: one entry per index; only RUNNING ones carry `stats`.
    pub async fn stats(&self, user: &str, name: &str) -> Result<Value, ApiError> {
        /// What is read under the lock; the process and the disk are measured after.
        struct Row {
            index: u32,
            running: Option<(Option<u16>, Option<u32>, std::time::Duration, PathBuf)>,
            state: &'static str,
            since: u64,
        }
        let (rows, name, uris, memory_mb, disk_mb, fds) = {
            let state = self.state();
            let app = state.find_app(user, name).ok_or(ApiError::AppNotFound)?;
            let rows: Vec<Row> = if app.state == AppState::Started {
                (0..app.instances)
                    .map(|index| match app.running.get(&index) {
                        Some(i) if i.state == InstanceState::Running => Row {
                            index,
                            running: Some((i.port, i.pid, i.started.elapsed(), i.dir.clone())),
                            state: "RUNNING",
                            since: i.since,
                        },
                        Some(i) => Row {
                            index,
                            running: None,
                            state: reported_state(i.state),
                            since: i.since,
                        },
                        None => Row {
                            index,
                            running: None,
                            state: "DOWN",
                            since: epoch_seconds(),
                        },
                    })
                    .collect()
            } else {
                Vec::new()
            };
            (
                rows,
                app.name.clone(),
                app.uris.clone(),
                app.memory_mb,
                app.disk_mb,
                app.fds,
            )
        };
        let measured = tokio::task::spawn_blocking(move || {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let mut stats = serde_json::Map::new();
            for row in rows {
                let entry = match row.running {
                    Some((port, pid, uptime, dir)) => {
                        let usage = pid.map(crate::procstat::group_usage).unwrap_or_default();
                        let uptime = uptime.as_secs_f64();
                        let cpu = if uptime > 0.0 {
                            usage.cpu_seconds / uptime * 100.0
                        } else {
                            0.0
                        };
                        json!({
                            "state": "RUNNING",
                            "stats": {
                                "name": name,
                                "host": "127.0.0.1",
                                "port": port,
                                "uris": uris,
                                "uptime": uptime,
                                "mem_quota": memory_mb * 1024 * 1024,
                                "disk_quota": disk_mb * 1024 * 1024,
                                "fds_quota": fds,
                                "cores": cores,
                                "usage": {
                                    "time": crate::runtime::time_of_day_utc(epoch_seconds()),
                                    "cpu": (cpu * 10.0).round() / 10.0,
                                    "mem": usage.rss_kib as f64,
                                    "disk": dir_size(&dir),
                                },
                            },
                        })
                    }
                    None => json!({"state": row.state, "since": row.since}),
                };
                stats.insert(row.index.to_string(), entry);
            }
            stats
        })
        .await
        .map_err(|e| ApiError::System(e.to_string()))?;
        Ok(Value::Object(measured))
    }

    /// `GET /apps/:name/crashes`.
    pub fn crashes(&self, user: &str, name: &str) -> Result<Value, ApiError> {
        let state = self.state();
        let app = state.find_app(user, name).ok_or(ApiError::AppNotFound)?;
        let crashes: Vec<Value> = app
            .crashes
            .iter()
            .map(|c| json!({"instance": c.instance_id, "since": c.since}))
            .collect();
        Ok(json!({"crashes": crashes}))
    }

    /// `GET /apps/:name/history` (AppFog): every upload, newest first.
    pub fn history(&self, user: &str, name: &str) -> Result<Value, ApiError> {
        let state = self.state();
        let app = state.find_app(user, name).ok_or(ApiError::AppNotFound)?;
        let mut previous: Option<&str> = None;
        let mut releases: Vec<Value> = app
            .releases
            .iter()
            .map(|r| {
                let changed = previous != Some(r.update_hash.as_str());
                previous = Some(&r.update_hash);
                json!({
                    "label": r.label,
                    "release": r.release,
                    "updated_by": r.updated_by,
                    "updated_at": crate::runtime::time_of_day_utc(r.updated_at),
                    "update_hash": r.update_hash,
                    "is_changed": changed,
                })
            })
            .collect();
        releases.reverse();
        Ok(Value::Array(releases))
    }

    /// `GET /apps/:name/diff` (AppFog): the hash of the deployed bits, for `af diff` to compare
    /// with the directory's.
    pub fn diff(&self, user: &str, name: &str) -> Result<Value, ApiError> {
        let state = self.state();
        let app = state.find_app(user, name).ok_or(ApiError::AppNotFound)?;
        Ok(match app.releases.last() {
            Some(release) => json!([{"update_hash": release.update_hash}]),
            None => json!([]),
        })
    }

    /// `GET /info/runtimes`: the runtimes on offer (af reads it for `start --debug`).
    pub async fn runtimes(&self) -> Value {
        let frameworks = self
            .inner
            .frameworks
            .get_or_init(|| async {
                tokio::task::spawn_blocking(crate::frameworks::detect)
                    .await
                    .unwrap_or_else(|_| json!({}))
            })
            .await;
        crate::frameworks::runtimes(frameworks)
    }

    /// `GET /apps/:name/application`: the last upload, as sent.
    pub fn package_path(&self, user: &str, name: &str) -> Result<PathBuf, ApiError> {
        let state = self.state();
        let app = state.find_app(user, name).ok_or(ApiError::AppNotFound)?;
        app.package
            .as_ref()
            .map(|p| p.zip.clone())
            .ok_or(ApiError::AppNotFound)
    }

    /// The directory of an instance, named by its index (a live or crashed instance at that
    /// index) or by its instance id (also a crashed one from `/crashes`, until it is reaped).
    pub fn instance_dir(
        &self,
        user: &str,
        name: &str,
        instance: &str,
    ) -> Result<PathBuf, ApiError> {
        let state = self.state();
        let app = state.find_app(user, name).ok_or(ApiError::AppNotFound)?;
        let by_index = instance
            .parse::<u32>()
            .ok()
            .filter(|_| instance.len() < 10)
            .and_then(|index| app.running.get(&index));
        let found = by_index
            .or_else(|| app.running.values().find(|i| &*i.id == instance))
            .map(|i| i.dir.clone())
            .or_else(|| {
                app.crashes
                    .iter()
                    .rev()
                    .find(|c| &*c.instance_id == instance)
                    .map(|c| c.dir.clone())
            });
        found.ok_or_else(|| ApiError::InstanceNotFound(instance.to_owned()))
    }

    /// Forgets crashes older than the retention (v1: an hour) and removes their directories,
    /// unless an instance still runs there.
    pub fn reap_crashes(&self, older_than: std::time::Duration) {
        let cutoff = epoch_seconds().saturating_sub(older_than.as_secs());
        let doomed: Vec<PathBuf> = {
            let mut state = self.state();
            let mut doomed = Vec::new();
            for app in state.apps.values_mut() {
                let live: Vec<PathBuf> = app
                    .running
                    .values()
                    .filter(|i| {
                        i.state != InstanceState::Crashed && i.state != InstanceState::Flapping
                    })
                    .map(|i| i.dir.clone())
                    .collect();
                app.crashes.retain(|crash| {
                    let keep = crash.since > cutoff;
                    if !keep && !live.contains(&crash.dir) {
                        doomed.push(crash.dir.clone());
                    }
                    keep
                });
            }
            doomed
        };
        for dir in doomed {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// `POST /resources`: which of these files the server already has.
    pub fn known_resources(&self, wanted: &[Value]) -> Vec<Value> {
        wanted
            .iter()
            .filter(|item| {
                let sha1 = item.get("sha1").and_then(Value::as_str);
                let size = item.get("size").and_then(Value::as_u64);
                match (sha1, size) {
                    (Some(sha1), Some(size)) => {
                        sha1.len() == 40
                            && sha1.bytes().all(|b| b.is_ascii_hexdigit())
                            && self.inner.pool.has(&sha1.to_ascii_lowercase(), size)
                    }
                    _ => false,
                }
            })
            .cloned()
            .collect()
    }

    // ----- apps: changing ---------------------------------------------------------------------

    /// `POST /apps`. Nothing stays if any part of the document is refused.
    pub async fn create_app(&self, user: &str, body: &Value) -> Result<String, ApiError> {
        let update = AppUpdate::parse(body)?;
        let name = update
            .name
            .clone()
            .ok_or_else(|| ApiError::InvalidApp("an app needs a name".into()))?;
        validate_app_name(&name)?;
        let framework = update
            .framework
            .clone()
            .ok_or_else(|| ApiError::InvalidFramework("NONE".into()))?;
        let app_id = {
            let mut state = self.state();
            if state.find_app(user, &name).is_some() {
                return Err(ApiError::InvalidApp(format!(
                    "an app named {name:?} already exists"
                )));
            }
            let count = state.apps_of(user).count();
            let limit = self.inner.config.limits.apps;
            if count >= limit as usize {
                return Err(ApiError::TooManyApps(count + 1, limit));
            }
            state.next_app_id += 1;
            let id = state.next_app_id;
            let app = App {
                id,
                owner: user.to_owned(),
                name: name.clone(),
                framework,
                runtime: None,
                command: None,
                uris: Vec::new(),
                instances: 1,
                memory_mb: 256,
                disk_mb: 2048,
                fds: 256,
                state: AppState::Stopped,
                services: Vec::new(),
                env: Vec::new(),
                lock_version: 0,
                created: epoch_seconds(),
                infra: None,
                debug: Value::Null,
                console: Value::Null,
                package: None,
                droplet: None,
                package_state: PackageState::Pending,
                run_count: 0,
                running: Default::default(),
                crashes: Vec::new(),
                releases: Vec::new(),
            };
            state.apps.insert(id, app);
            id
        };
        // The rest is an update of the new app; if it is refused, the app goes again (v1 did the same).
        let create = AppUpdate {
            name: None,
            lock_version: None,
            ..update
        };
        let _guard = self.lock_app(app_id).await;
        match self.apply(user, app_id, &create) {
            Ok(effects) => {
                if let Err(error) = self.carry_out(app_id, effects).await {
                    self.remove_app(app_id).await;
                    return Err(error);
                }
                Ok(name)
            }
            Err(error) => {
                self.remove_app(app_id).await;
                Err(error)
            }
        }
    }

    /// `PUT /apps/:name`: the whole document as the client last read it, changed.
    pub async fn update_app(&self, user: &str, name: &str, body: &Value) -> Result<(), ApiError> {
        let update = AppUpdate::parse(body)?;
        let app_id = self.state().app_id(user, name)?;
        let _guard = self.lock_app(app_id).await;
        let effects = self.apply(user, app_id, &update)?;
        self.carry_out(app_id, effects).await
    }

    /// Validates every field of an update, then applies all of them at once (or none), in v1's
    /// order (`update_app_from_params`), and publishes the routes they change.
    fn apply(&self, user: &str, app_id: u64, update: &AppUpdate) -> Result<Effects, ApiError> {
        let config = &self.inner.config;
        let dev_suffix = &config.router.dev_suffix;
        let mut state = self.state();
        let app = state.apps.get(&app_id).ok_or(ApiError::AppNotFound)?;

        if let Some(version) = update.lock_version
            && version != app.lock_version
        {
            return Err(ApiError::LockingFailure);
        }
        if let Some(name) = &update.name
            && name != &app.name
        {
            validate_app_name(name)?;
            if state.find_app(user, name).is_some() {
                return Err(ApiError::InvalidApp(format!(
                    "an app named {name:?} already exists"
                )));
            }
        }
        let new_state = update.state.unwrap_or(app.state);
        if new_state == AppState::Started && update.debug.as_ref().is_some_and(is_truthy) {
            return Err(ApiError::DebugDisallowed);
        }
        let memory = update.memory_mb.unwrap_or(app.memory_mb);
        let instances = update.instances.unwrap_or(app.instances);
        if new_state == AppState::Started {
            let existing = if app.state == AppState::Started {
                app.memory_mb * u64::from(app.instances)
            } else {
                0
            };
            let others = state.memory_in_use(user).saturating_sub(existing);
            if others.saturating_add(memory.saturating_mul(u64::from(instances)))
                > config.limits.memory_mb
            {
                return Err(ApiError::NotEnoughMemory(format!(
                    "{}M",
                    config.limits.memory_mb
                )));
            }
        }
        let uris = match &update.uris {
            Some(raw) => {
                let mut uris: Vec<String> = Vec::with_capacity(raw.len());
                for uri in raw {
                    let uri = normalise_uri(uri)?;
                    if !uris.contains(&uri) {
                        uris.push(uri);
                    }
                }
                if uris.len() > config.limits.app_uris as usize {
                    return Err(ApiError::TooManyUris(uris.len(), config.limits.app_uris));
                }
                for uri in &uris {
                    state.check_uri_owner(user, uri, dev_suffix)?;
                    // The API's own host is reserved, as the cloud controller's was.
                    let api_host = self.api_host();
                    if afemu_router::normalise_host(uri, dev_suffix).as_deref()
                        == Some(api_host.as_str())
                    {
                        return Err(ApiError::UriTaken(uri.clone()));
                    }
                }
                Some(uris)
            }
            None => None,
        };
        if let Some(services) = &update.services
            && let Some(unknown) = services
                .iter()
                .find(|name| !state.services_of(user).any(|s| &s.name == *name))
        {
            tracing::debug!(service = %unknown, "binding a service that is not provisioned");
            return Err(ApiError::ServiceNotFound);
        }

        // Everything checked: apply it all.
        let app = state.apps.get_mut(&app_id).expect("checked above");
        app.lock_version += 1;
        let previous_state = app.state;
        app.state = new_state;
        app.memory_mb = memory;
        if let Some(services) = &update.services {
            // Bindings take effect at the next start, as v1's forced restage made them (af
            // restarts the app after a bind).
            let mut bound: Vec<String> = Vec::new();
            for name in services {
                if !bound.contains(name) {
                    bound.push(name.clone());
                }
            }
            app.services = bound;
        }
        if let Some(env) = &update.env {
            let mut kept: Vec<String> = Vec::new();
            for pair in env {
                let lower = pair.to_ascii_lowercase();
                // v1's CC dropped these silently (its 403 never fired).
                if lower.starts_with("vcap_") || lower.starts_with("vmc_") || kept.contains(pair) {
                    continue;
                }
                kept.push(pair.clone());
            }
            app.env = kept;
        }
        if let Some(framework) = &update.framework {
            app.framework = framework.clone();
        }
        if let Some(runtime) = &update.runtime {
            app.runtime = runtime.clone();
        }
        if update.command.is_some() {
            app.command = update.command.clone();
        }
        if update.infra.is_some() {
            app.infra = update.infra.clone();
        }
        if let Some(debug) = &update.debug {
            app.debug = debug.clone();
        }
        if let Some(console) = &update.console {
            app.console = console.clone();
        }
        let previous_instances = app.instances;
        app.instances = instances;
        if let Some(uris) = uris {
            app.uris = uris;
        }
        if let Some(name) = &update.name
            && name != &app.name
        {
            app.name = name.clone();
            // The journal names the app that served: re-register under the new name.
            for instance in app.running.values_mut() {
                if let Some(old) = instance.backend.take() {
                    let mut spec = old.spec().clone();
                    spec.app = Arc::from(name.as_str());
                    instance.backend = Some(Backend::new(spec));
                    instance.retired.push(old);
                }
            }
        }

        let mut effects = Effects::default();
        if new_state != previous_state {
            effects.state_change = Some(new_state);
        } else if new_state == AppState::Started && instances != previous_instances {
            effects.scale = Some((previous_instances, instances));
        }
        // A stop unregisters here, in the same step as the change; the kill comes after.
        self.publish(&state);
        Ok(effects)
    }

    async fn carry_out(&self, app_id: u64, effects: Effects) -> Result<(), ApiError> {
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

    /// Stages the last upload if it has not been staged yet: unpack, decide the start plan, and
    /// take the profile's staging time, as v1 staged synchronously inside the PUT.
    async fn ensure_staged(&self, app_id: u64) -> Result<(), ApiError> {
        let (package, framework, command, name) = {
            let state = self.state();
            let app = state.apps.get(&app_id).ok_or(ApiError::AppNotFound)?;
            if !app.needs_staging() {
                return match &app.droplet {
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
        let dir = self
            .inner
            .data_dir
            .join("droplets")
            .join(format!("{app_id}-{}", package.hash));
        let pool = self.inner.pool.clone();
        let max_unpacked = self.inner.config.max_unpacked;
        let staged = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || {
                stage_droplet(
                    &package,
                    &pool,
                    &dir,
                    &framework,
                    command.as_deref(),
                    &name,
                    max_unpacked,
                )
            })
            .await
            .map_err(|e| ApiError::System(e.to_string()))?
        };
        let droplet = staged.map_err(ApiError::StagingFailed)?;
        let staging_time = self.inner.config.timing.staging;
        tokio::select! {
            () = tokio::time::sleep(staging_time) => {}
            () = self.inner.shutdown.cancelled() => return Err(ApiError::System("shutting down".into())),
        }
        let old = {
            let mut state = self.state();
            let app = state.apps.get_mut(&app_id).ok_or(ApiError::AppNotFound)?;
            let old = app.droplet.replace(droplet);
            app.package_state = PackageState::Staged;
            app.run_count = 0;
            old
        };
        // The app is stopped while it stages, so no instance still copies from the old droplet.
        if let Some(old) = old.filter(|old| old.dir != dir) {
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(old.dir)).await;
        }
        Ok(())
    }

    /// Starts new instances at these indices (called with the state lock held).
    fn launch_instances(&self, state: &mut State, app_id: u64, indices: &[u32]) {
        let Some(app) = state.apps.get(&app_id) else {
            return;
        };
        let services_env = services::environment(&state.bound_services(app));
        let Some(app) = state.apps.get_mut(&app_id) else {
            return;
        };
        let Some(droplet) = app.droplet.clone() else {
            return;
        };
        let version = format!("{}-{}", droplet.hash, app.run_count);
        for &index in indices {
            let instance_id: Arc<str> = Arc::from(random_hex(16));
            let dir = self
                .inner
                .data_dir
                .join("instances")
                .join(format!("{}-{index}-{instance_id}", app.name));
            let (control, commands) = mpsc::channel(4);
            let launch = Launch {
                app_id: app.id,
                index,
                instance_id: instance_id.clone(),
                droplet: droplet.clone(),
                dir: dir.clone(),
                env: EnvTemplate {
                    app_name: app.name.clone(),
                    owner: app.owner.clone(),
                    uris: app.uris.clone(),
                    version: version.clone(),
                    runtime: app.runtime.clone(),
                    memory_mb: app.memory_mb,
                    disk_mb: app.disk_mb,
                    fds: app.fds,
                    user_env: app.env.clone(),
                    services_env: services_env.clone(),
                },
            };
            app.running.insert(
                index,
                Instance {
                    index,
                    id: instance_id,
                    private_id: Arc::from(random_hex(32)),
                    state: InstanceState::Starting,
                    since: epoch_seconds(),
                    started: Instant::now(),
                    dir,
                    port: None,
                    pid: None,
                    version: Arc::from(version.as_str()),
                    backend: None,
                    retired: Vec::new(),
                    control,
                },
            );
            self.inner
                .tasks
                .spawn(crate::runtime::supervise(self.clone(), launch, commands));
        }
    }

    /// Unregisters and stops instances (all of them, or the indices in `range`), and waits until
    /// they are gone: drained, killed, reaped.
    async fn stop_instances(&self, app_id: u64, range: Option<std::ops::Range<u32>>) {
        let stopping: Vec<(mpsc::Sender<InstanceCommand>, Vec<Arc<Backend>>)> = {
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
                    (instance.control, backends)
                })
                .collect();
            self.publish(&state);
            stopping
        };
        let waits = stopping.into_iter().map(|(control, backends)| async move {
            let (reply, replied) = oneshot::channel();
            if control
                .send(InstanceCommand::Stop { backends, reply })
                .await
                .is_ok()
            {
                let _ = replied.await;
            }
        });
        futures_util::future::join_all(waits).await;
    }

    /// `DELETE /apps/:name`: stop everything, forget the app, remove its files.
    pub async fn delete_app(&self, user: &str, name: &str) -> Result<(), ApiError> {
        let app_id = self.state().app_id(user, name)?;
        let _guard = self.lock_app(app_id).await;
        self.remove_app(app_id).await;
        Ok(())
    }

    async fn remove_app(&self, app_id: u64) {
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
        if let Some(app) = removed {
            let data = self.inner.data_dir.clone();
            let _ = tokio::task::spawn_blocking(move || remove_app_files(&data, &app)).await;
        }
    }

    /// `POST /apps/:name/application`: checks the upload (changing nothing if it is refused), then
    /// keeps it as the app's package. The app keeps running its old bits until restarted.
    pub(crate) async fn upload(
        &self,
        user: &str,
        name: &str,
        zip: tempfile::NamedTempFile,
        resources: Vec<Resource>,
        release: (String, Option<String>),
    ) -> Result<(), ApiError> {
        let app_id = self.state().app_id(user, name)?;
        if let Some(missing) = resources
            .iter()
            .find(|r| !self.inner.pool.has(&r.sha1, r.size))
        {
            tracing::debug!(sha1 = %missing.sha1, "upload names an unknown resource");
            return Err(ApiError::MissingResource);
        }
        let max_unpacked = self.inner.config.max_unpacked;
        let packages = self
            .inner
            .data_dir
            .join("packages")
            .join(app_id.to_string());
        let resources_for_hash = resources.clone();
        let stored = tokio::task::spawn_blocking(move || -> Result<(String, PathBuf), ApiError> {
            let summary = staging::check_zip(zip.path(), max_unpacked)?;
            staging::check_totals(summary, &resources_for_hash, max_unpacked)?;
            let zip_sha1 =
                staging::sha1_file(zip.path()).map_err(|e| ApiError::System(e.to_string()))?;
            let mut listing = zip_sha1;
            for resource in &resources_for_hash {
                listing.push_str(&format!(
                    "\n{} {} {}",
                    resource.sha1,
                    resource.size,
                    resource.path.display()
                ));
            }
            let hash = hex::encode(<sha1::Sha1 as sha1::Digest>::digest(listing.as_bytes()));
            std::fs::create_dir_all(&packages).map_err(|e| ApiError::System(e.to_string()))?;
            let path = packages.join(format!("{hash}.zip"));
            zip.persist(&path)
                .map_err(|e| ApiError::System(e.to_string()))?;
            Ok((hash, path))
        })
        .await
        .map_err(|e| ApiError::System(e.to_string()))??;
        let (hash, path) = stored;
        let _guard = self.lock_app(app_id).await;
        let mut state = self.state();
        let app = state.apps.get_mut(&app_id).ok_or(ApiError::AppNotFound)?;
        let replaced = app.package.replace(Package {
            hash,
            zip: path.clone(),
            resources,
        });
        // The staged droplet has what it needs; the earlier upload is not kept.
        if let Some(old) = replaced.filter(|old| old.zip != path) {
            let _ = std::fs::remove_file(old.zip);
        }
        let (label, client_hash) = release;
        let number = app.releases.len() as u32 + 1;
        let update_hash = client_hash.unwrap_or_else(|| {
            app.package
                .as_ref()
                .map(|p| p.hash.clone())
                .unwrap_or_default()
        });
        app.releases.push(crate::state::Release {
            label,
            release: number,
            updated_by: user.to_owned(),
            updated_at: epoch_seconds(),
            update_hash,
        });
        if app.needs_staging() {
            app.package_state = PackageState::Pending;
        }
        Ok(())
    }

    // ----- services ---------------------------------------------------------------------------

    /// `GET /services`: the user's provisioned services.
    pub fn list_services(&self, user: &str) -> Vec<Value> {
        self.state()
            .services_of(user)
            .map(services::Service::document)
            .collect()
    }

    /// `GET /services/:name`.
    pub fn service_document(&self, user: &str, name: &str) -> Result<Value, ApiError> {
        self.state()
            .services_of(user)
            .find(|s| s.name == name)
            .map(services::Service::document)
            .ok_or(ApiError::ServiceNotFound)
    }

    /// `POST /services {vendor, version, type, tier, name, infra}`: provisions a record (there is
    /// no real service behind it) with credentials, configurable per vendor.
    pub fn create_service(&self, user: &str, body: &Value) -> Result<Value, ApiError> {
        let text = |key: &str| -> Result<Option<String>, ApiError> {
            match body.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(ApiError::BadRequest(format!(
                    "{key} must be a string, not {other}"
                ))),
            }
        };
        if !body.is_object() {
            return Err(ApiError::BadRequest(
                "the service must be a JSON object".into(),
            ));
        }
        let vendor = text("vendor")?
            .ok_or_else(|| ApiError::BadRequest("a service needs a vendor".into()))?;
        let version = text("version")?;
        let offering =
            services::offering(&vendor, version.as_deref()).ok_or(ApiError::ServiceNotFound)?;
        let name = match text("name")? {
            Some(name) => name,
            None => format!("{vendor}-{}", random_hex(2)),
        };
        validate_service_name(&name)?;
        let infra = body
            .get("infra")
            .and_then(|i| i.get("provider"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut state = self.state();
        if state.services_of(user).any(|s| s.name == name) {
            return Err(ApiError::BadRequest(format!(
                "a service named {name:?} already exists"
            )));
        }
        let count = state.services_of(user).count();
        let limit = self.inner.config.limits.services;
        if count >= limit as usize {
            return Err(ApiError::TooManyServices(count + 1, limit));
        }
        let service = services::Service {
            owner: user.to_owned(),
            name,
            offering,
            credentials: services::credentials(
                offering,
                self.inner.config.service_credentials.get(offering.vendor),
            ),
            created: epoch_seconds(),
            infra,
        };
        let document = service.document();
        state.services.push(service);
        Ok(document)
    }

    /// `DELETE /services/:name`: unbinds it from the user's apps (they keep running until
    /// restarted, as on v1) and forgets it.
    pub fn delete_service(&self, user: &str, name: &str) -> Result<(), ApiError> {
        let mut state = self.state();
        let before = state.services.len();
        state
            .services
            .retain(|s| !(s.owner == user && s.name == name));
        if state.services.len() == before {
            return Err(ApiError::ServiceNotFound);
        }
        for app in state.apps.values_mut().filter(|a| a.owner == user) {
            app.services.retain(|s| s != name);
        }
        Ok(())
    }

    // ----- what the supervisors report --------------------------------------------------------

    /// An instance accepts connections: RUNNING, and registered with the router. Returns false
    /// when the instance is no longer wanted (stopped or deleted meanwhile).
    pub(crate) fn instance_running(
        &self,
        app_id: u64,
        instance_id: &str,
        port: u16,
        pid: Option<u32>,
    ) -> bool {
        let mut state = self.state();
        let Some(app) = state.apps.get_mut(&app_id) else {
            return false;
        };
        if app.state != AppState::Started {
            return false;
        }
        let app_name: Arc<str> = Arc::from(app.name.as_str());
        let Some(instance) = app
            .running
            .values_mut()
            .find(|i| &*i.id == instance_id && i.state == InstanceState::Starting)
        else {
            return false;
        };
        instance.state = InstanceState::Running;
        instance.since = epoch_seconds();
        instance.port = Some(port);
        instance.pid = pid;
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
        true
    }

    /// An instance died unasked, or never became ready: unregister it at once, record the crash,
    /// and let the health manager decide when (or whether) to start it again.
    pub(crate) fn instance_crashed(&self, app_id: u64, instance_id: &str, reason: &str) {
        let (restart, crashed_index) = {
            let mut state = self.state();
            let Some(app) = state.apps.get_mut(&app_id) else {
                return;
            };
            let Some(instance) = app.running.values_mut().find(|i| &*i.id == instance_id) else {
                return;
            };
            let index = instance.index;
            let dir = instance.dir.clone();
            instance.state = InstanceState::Crashed;
            instance.since = epoch_seconds();
            instance.backend = None;
            tracing::warn!(app = %app.name, index, %reason, "instance crashed");
            app.crashes.push(Crash {
                instance_id: Arc::from(instance_id),
                index,
                since: epoch_seconds(),
                at: Instant::now(),
                dir,
            });
            let decision =
                crate::health::after_crash(&app.crashes, index, &self.inner.config.timing);
            if let crate::health::Decision::RestartAfter(_) = decision
                && let Some(instance) = app.running.get_mut(&index)
                && decision.is_flapping()
            {
                instance.state = InstanceState::Flapping;
            }
            self.publish(&state);
            (decision, index)
        };
        if let crate::health::Decision::RestartAfter(delay) = restart {
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
}

fn reported_state(state: InstanceState) -> &'static str {
    match state {
        // v1 reported a crashed instance that was not restarted as DOWN in `instances`.
        InstanceState::Crashed => "DOWN",
        other => other.as_str(),
    }
}

fn is_truthy(value: &Value) -> bool {
    !matches!(value, Value::Null | Value::Bool(false))
}

fn validate_service_name(name: &str) -> Result<(), ApiError> {
    let valid = !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "service name {name:?} may only contain letters, digits, '_' and '-'"
        )))
    }
}

fn normalise_email(email: &str) -> Result<String, ApiError> {
    let email = email.trim().to_ascii_lowercase();
    if email.is_empty() || email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c == '/')
    {
        return Err(ApiError::BadRequest(format!(
            "{email:?} is not an email address"
        )));
    }
    Ok(email)
}

/// Unpacks a package into a fresh droplet directory and decides how to run it. Blocking.
fn stage_droplet(
    package: &Package,
    pool: &ResourcePool,
    dir: &Path,
    framework: &str,
    command: Option<&str>,
    name: &str,
    max_unpacked: u64,
) -> Result<Droplet, String> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut log = std::fs::File::create(dir.join("staging.log")).ok();
    staging::log_line(
        &mut log,
        &format!("-----> Staging application '{name}' ({framework})"),
    );
    let app_dir = dir.join("app");
    if let Err(error) = staging::unpack(
        &package.zip,
        &package.resources,
        pool,
        &app_dir,
        max_unpacked,
    ) {
        staging::log_line(&mut log, &format!("-----> Staging failed: {error}"));
        return Err(error);
    }
    if let Err(error) = pool.add_tree(&app_dir) {
        tracing::debug!(%error, "could not add the upload to the resource pool");
    }
    let plan = staging::plan(&app_dir, framework, command);
    match &plan {
        Ok(StartPlan::Static) => staging::log_line(
            &mut log,
            "-----> Serving index.html with the built-in static server",
        ),
        Ok(StartPlan::Command { command, .. }) => {
            staging::log_line(&mut log, &format!("-----> Start command: {command}"))
        }
        Err(error) => staging::log_line(&mut log, &format!("-----> Staging failed: {error}")),
    }
    Ok(Droplet {
        hash: package.hash.clone(),
        dir: dir.to_path_buf(),
        plan: plan?,
    })
}

fn remove_app_files(data: &Path, app: &App) {
    let _ = std::fs::remove_dir_all(data.join("packages").join(app.id.to_string()));
    // Crashed instances keep their directories for /crashes and crashlogs; the app is gone now.
    for crash in &app.crashes {
        let _ = std::fs::remove_dir_all(&crash.dir);
    }
    for instance in app.running.values() {
        let _ = std::fs::remove_dir_all(&instance.dir);
    }
    if let Ok(entries) = std::fs::read_dir(data.join("droplets")) {
        let prefix = format!("{}-", app.id);
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
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
