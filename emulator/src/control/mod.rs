//! The cloud controller, as v1's was: it owns the state (users, apps, services, URIs — what v1's
//! CC kept in its database), decides every change to an app, tells the DEA what to stage, start
//! and stop (the messages of [`crate::bus`]), hears from it what became of each instance, and
//! publishes every app's routes to the router (v1's `router.register`/`unregister`).
//!
//! [`Platform`] is its handle, shared by the API, the admin API and the harness; each resource
//! has a module of its own:
//!
//! - `state`: plain data: users, tokens, apps and the records of their instances and crashes.
//! - `users`, `apps`, `services`, `info`: the v1 API's resources; `catalog`: what v1 offered
//!   and the record of a provisioned service.
//! - `app_update`: reading the app documents clients send.
//! - `lifecycle`: staging, starting, stopping, scaling and deleting, and what the DEA reports:
//!   running, crashed (with the health manager's rule, `health`).
//! - `packages`: uploads: checking them, the resource pool, putting the bits together.
//! - `route_feed`: how route changes reach the router: at once, late (the route-delay fault),
//!   or held for a replay.
//! - `faults`: the faults that can be injected.
//! - `snapshot`: state snapshots (`/_afemu/state`, `--state FILE`), reset, and atomic saving.

mod app_update;
mod apps;
pub(crate) mod catalog;
pub(crate) mod faults;
mod health;
mod info;
mod lifecycle;
mod overview;
pub(crate) mod packages;
pub(crate) mod route_feed;
pub(crate) mod services;
pub mod snapshot;
mod state;
mod users;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use afemu_router::{Backend, BackendSpec, Journal, Router, Routes};
use serde_json::json;
use tokio::sync::OwnedMutexGuard;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::dea::Dea;
use crate::nodes::Nodes;
use crate::watchdog::Watchdog;
use packages::ResourcePool;
use state::State;

pub use app_update::MAX_INSTANCES;
pub use state::normalise_uri;

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
    /// The DEA that runs the instances.
    dea: Dea,
    /// The service nodes that provision databases.
    nodes: Nodes,
    /// Kills every process afemu started if afemu dies without stopping them.
    watchdog: Arc<Watchdog>,
    /// One lifecycle operation per app at a time: a PUT that stages holds it for seconds, and a
    /// second PUT on the same app waits instead of interleaving with it.
    app_locks: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<()>>>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// The control plane as a backend of the router at `api.<domain>`, v1's own topology.
    api_route: std::sync::OnceLock<(Arc<str>, Arc<Backend>)>,
    /// Route changes on their way to the router (instant, delayed by the fault, or held).
    feed: Arc<route_feed::RouteFeed>,
    /// Apps deleted since the last publish, whose routes must go.
    gone_apps: Mutex<Vec<u64>>,
    /// The faults in force.
    faults: Mutex<faults::FaultState>,
    /// Signalled after each change a state snapshot would show (for `--state`).
    changed: tokio::sync::Notify,
}

/// Where the service nodes keep their servers and data: under the data directory; or, when only
/// a state file is kept (the data directory is temporary), beside it (`<state>.services/`), so
/// that the databases survive a restart as the state does.
fn services_root(config: &Config, data_dir: &Path) -> PathBuf {
    match (&config.data_dir, &config.state_file) {
        (None, Some(state)) => {
            let mut name = state.file_name().unwrap_or_default().to_os_string();
            name.push(".services");
            state.with_file_name(name)
        }
        _ => data_dir.join("services"),
    }
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform")
            .field("data_dir", &self.inner.data_dir)
            .field("route_table_version", &self.inner.routes.version())
            .finish_non_exhaustive()
    }
}

impl Platform {
    /// A platform keeping its files under `data_dir` (which must exist and be writable). Call it
    /// within a tokio runtime: the controller starts listening to its DEA at once.
    pub fn new(config: Config, data_dir: &Path) -> std::io::Result<Platform> {
        for sub in ["packages", "tmp"] {
            std::fs::create_dir_all(data_dir.join(sub))?;
        }
        let pool = ResourcePool::new(data_dir.join("resources"))?;
        let routes = Routes::new();
        let journal = Journal::new(config.journal_capacity);
        let router = Router::new(config.router.clone(), routes.clone(), journal.clone());
        routes.publish([]);
        let initial_faults = faults::FaultState {
            slow_start: config.faults.slow_start.clone(),
            fail_staging: config.faults.fail_staging.clone(),
            stop_hard: config.faults.stop_hard,
        };
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let feed = Arc::new(route_feed::RouteFeed::new(
            routes.clone(),
            config.faults.route_delay,
            config.faults.seed,
            config.defect_skip_one_unregister,
            shutdown.clone(),
            tasks.clone(),
        ));
        let (events, reports) = tokio::sync::mpsc::unbounded_channel();
        // One watchdog for every process afemu starts: apps and database servers.
        let watchdog = Arc::new(Watchdog::start());
        let dea = Dea::new(
            data_dir,
            config.timing,
            crate::config::staging_cache(&config, data_dir),
            shutdown.clone(),
            tasks.clone(),
            events,
            watchdog.clone(),
        )?;
        let configured: Vec<String> = config.service_credentials.0.keys().cloned().collect();
        let nodes = Nodes::new(
            config.services,
            &configured,
            crate::nodes::Context {
                root: services_root(&config, data_dir),
                watchdog: watchdog.clone(),
                shutdown: shutdown.clone(),
                tasks: tasks.clone(),
                journal: journal.clone(),
            },
        )
        .map_err(std::io::Error::other)?;
        let platform = Platform {
            inner: Arc::new(Inner {
                config,
                data_dir: data_dir.to_path_buf(),
                pool,
                state: Mutex::new(State::default()),
                routes,
                journal,
                router,
                dea,
                nodes,
                watchdog,
                app_locks: Mutex::new(HashMap::new()),
                shutdown,
                tasks,
                api_route: std::sync::OnceLock::new(),
                feed,
                gone_apps: Mutex::new(Vec::new()),
                faults: Mutex::new(initial_faults),
                changed: tokio::sync::Notify::new(),
            }),
        };
        platform
            .inner
            .tasks
            .spawn(platform.clone().hear_the_dea(reports));
        Ok(platform)
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

    /// Stops every instance (killing every child process) and waits for their supervisors.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        // Every instance and every database server has stopped.
        self.inner.watchdog.stop();
    }

    /// What each service vendor is here (real or a record, and why), for the start-up log.
    pub fn service_vendors(&self) -> Vec<crate::nodes::VendorStatus> {
        self.inner.nodes.vendors().to_vec()
    }

    /// What staging can do on this machine (npm, Bundler, pip, Java), for the start-up log.
    /// Blocking.
    pub fn staging_tools(&self) -> Vec<String> {
        crate::dea::staging::describe()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes the route table derived from `state`. Called with the state lock held, so tables
    /// are published in the order of the changes they reflect.
    fn publish(&self, state: &State) {
        let dev_suffix = &self.inner.config.router.dev_suffix;
        let mut changes: Vec<(u64, route_feed::Entries)> = state
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

    /// Runs `work` to its end even when the request that asked for it goes away (its client
    /// hung up, or gave up waiting for a long staging): dropped half-way, a staging would leave
    /// the tools it started running past the staging timeout and its droplet half-made, and the
    /// app STARTED with nothing launched and its lock free for another staging into the same
    /// droplet. The task is tracked: shutdown waits for it, and ends the staging it runs.
    async fn to_completion<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = Result<T, crate::error::ApiError>> + Send + 'static,
    ) -> Result<T, crate::error::ApiError> {
        match self.inner.tasks.spawn(work).await {
            Ok(result) => result,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => Err(crate::error::ApiError::System(error.to_string())),
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

    // ----- the route feed ---------------------------------------------------------------------

    /// The route-delay fault in force, if any.
    pub fn route_delay(&self) -> Option<route_feed::RouteDelay> {
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
    pub fn held_route_changes(&self) -> Vec<route_feed::Submission> {
        self.inner.feed.submissions()
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
}
