//! The reference model of the platform: apps, their state, instances and URIs, and the route
//! table the router would see — pure, no I/O. Every control-plane operation is a [`Step`]; applying
//! one yields the route changes the platform makes for it, in order, each an app's complete new
//! set of registrations (what one publish tells the router). It is what `afemu check` explores and
//! what property tests compare the real emulator with.

use std::collections::{BTreeMap, BTreeSet};

use afemu_router::normalise_host;

/// A host's backends as `(app, instance index)`; the table as host → backends.
pub type RouteSummary = BTreeMap<String, BTreeSet<(String, u32)>>;

/// One control-plane operation, as `af` performs it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// `af push APP --url U --instances N [--no-start]`: create, upload, and start unless told not.
    Push {
        app: String,
        uris: Vec<String>,
        instances: u32,
        start: bool,
    },
    /// `af update APP`: new bits; if started, a full stop-stage-start.
    Update {
        app: String,
    },
    Start {
        app: String,
    },
    Stop {
        app: String,
    },
    /// `af restart`: stop, then start (a stopped app is started).
    Restart {
        app: String,
    },
    /// `af env-add`, `env-del`, `mem`, `bind-service`, `unbind-service`: a change to the app
    /// that af follows with a restart when the app is started, and with nothing when it is not.
    Reconfigure {
        app: String,
    },
    Map {
        app: String,
        uri: String,
    },
    Unmap {
        app: String,
        uri: String,
    },
    /// `af instances APP N`: in place; up adds the new highest indices, down removes them.
    Scale {
        app: String,
        instances: u32,
    },
    Delete {
        app: String,
    },
    /// An instance dies; the health manager starts it again at once (a first crash).
    Crash {
        app: String,
        index: u32,
    },
}

impl Step {
    pub fn app(&self) -> &str {
        match self {
            Step::Push { app, .. }
            | Step::Update { app }
            | Step::Start { app }
            | Step::Stop { app }
            | Step::Restart { app }
            | Step::Reconfigure { app }
            | Step::Map { app, .. }
            | Step::Unmap { app, .. }
            | Step::Scale { app, .. }
            | Step::Delete { app }
            | Step::Crash { app, .. } => app,
        }
    }
}

impl std::fmt::Display for Step {
    /// As the `af` command line a person would type.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Push {
                app,
                uris,
                instances,
                start,
            } => {
                write!(f, "af push {app}")?;
                for uri in uris {
                    write!(f, " --url {uri}")?;
                }
                if *instances != 1 {
                    write!(f, " --instances {instances}")?;
                }
                if !start {
                    write!(f, " --no-start")?;
                }
                write!(f, " -n")
            }
            Step::Update { app } => write!(f, "af update {app}"),
            Step::Start { app } => write!(f, "af start {app}"),
            Step::Stop { app } => write!(f, "af stop {app}"),
            Step::Restart { app } => write!(f, "af restart {app}"),
            Step::Reconfigure { app } => write!(f, "af env-add {app} RECONFIGURED=1"),
            Step::Map { app, uri } => write!(f, "af map {app} {uri}"),
            Step::Unmap { app, uri } => write!(f, "af unmap {app} {uri}"),
            Step::Scale { app, instances } => write!(f, "af instances {app} {instances}"),
            Step::Delete { app } => write!(f, "af delete {app}"),
            Step::Crash { app, index } => write!(f, "(instance {index} of {app} crashes)"),
        }
    }
}

/// Why a step cannot be applied (af would print an error and change nothing).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("Application '{0}' already exists, use update")]
    AppExists(String),
    #[error("Application '{0}' not found")]
    AppNotFound(String),
    #[error("Invalid url: {0}")]
    InvalidUrl(String),
    #[error("There must be at least 1 instance.")]
    TooFewInstances,
    #[error("Could not find instance: '{0}'")]
    NoSuchInstance(u32),
}

/// One publish: an app's complete registrations after it, as `(host, instance index)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RouteChange {
    pub app: String,
    /// The app's version (v1's `<droplet>-<run_count>`, here a number that grows with every
    /// start of the app): every instance registered by this change runs it.
    pub version: u32,
    pub registrations: BTreeSet<(String, u32)>,
    /// This change stops instances (a stop, an update or restart, a scale down, a delete): the
    /// platform kills them once the router has stopped sending them requests (afemu's drain), or
    /// at once under the stop-hard fault.
    pub stops: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct AppModel {
    started: bool,
    /// The URIs as the platform stores them (scheme stripped, lower-cased; a port kept), in the
    /// order mapped. `af unmap` must name one of these exactly.
    uris: Vec<String>,
    instances: u32,
    /// Grows with every start of the app as a whole; the instances of one start share it.
    version: u32,
}

/// The platform, as far as routing goes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Model {
    apps: BTreeMap<String, AppModel>,
    dev_suffix: String,
}

impl Model {
    /// A model that strips the same dev suffix from hosts as the router (default `.localhost`).
    pub fn new() -> Model {
        Model::with_dev_suffix(afemu_router::host::DEFAULT_DEV_SUFFIX)
    }

    pub fn with_dev_suffix(dev_suffix: &str) -> Model {
        Model {
            apps: BTreeMap::new(),
            dev_suffix: dev_suffix.to_owned(),
        }
    }

    pub fn has_app(&self, app: &str) -> bool {
        self.apps.contains_key(app)
    }

    pub fn is_started(&self, app: &str) -> bool {
        self.apps.get(app).is_some_and(|a| a.started)
    }

    pub fn instances(&self, app: &str) -> Option<u32> {
        self.apps.get(app).map(|a| a.instances)
    }

    /// The app's current version: what its newest instances run.
    pub fn version(&self, app: &str) -> Option<u32> {
        self.apps.get(app).map(|a| a.version)
    }

    /// The URIs an app is mapped to, as the platform stores them.
    pub fn uris(&self, app: &str) -> Vec<String> {
        self.apps
            .get(app)
            .map(|a| a.uris.clone())
            .unwrap_or_default()
    }

    /// The route key of a URI (`HTTP://Example.com:80` → `example.com`).
    pub fn host_key(&self, uri: &str) -> Option<String> {
        normalise_host(uri, &self.dev_suffix).map(|k| k.into_owned())
    }

    fn registrations(&self, app: &AppModel, up_to: u32) -> BTreeSet<(String, u32)> {
        let mut set = BTreeSet::new();
        if app.started {
            for index in 0..up_to {
                for uri in &app.uris {
                    if let Some(key) = self.host_key(uri) {
                        set.insert((key, index));
                    }
                }
            }
        }
        set
    }

    /// The table once every instance of every started app runs.
    pub fn routes(&self) -> RouteSummary {
        let mut table = RouteSummary::new();
        for (name, app) in &self.apps {
            for (host, index) in self.registrations(app, app.instances) {
                table.entry(host).or_default().insert((name.clone(), index));
            }
        }
        table
    }

    /// Applies a step: the route changes it makes, in order. On an error nothing changes.
    pub fn apply(&mut self, step: &Step) -> Result<Vec<RouteChange>, ModelError> {
        let name = step.app().to_owned();
        let change = |app: &AppModel, up_to: u32, stops: bool| RouteChange {
            app: name.clone(),
            version: app.version,
            registrations: self.registrations(app, up_to),
            stops,
        };
        // A start: a new version, each instance registered when it becomes RUNNING.
        let start = |app: &mut AppModel| -> Vec<RouteChange> {
            app.started = true;
            app.version += 1;
            (1..=app.instances).map(|n| change(app, n, false)).collect()
        };
        // A stop: every instance unregistered at once, then killed.
        let stop = |app: &mut AppModel| -> Vec<RouteChange> {
            app.started = false;
            vec![change(app, 0, true)]
        };
        if let Step::Push {
            uris,
            instances,
            start: starts,
            ..
        } = step
        {
            if self.apps.contains_key(&name) {
                return Err(ModelError::AppExists(name));
            }
            if *instances == 0 {
                return Err(ModelError::TooFewInstances);
            }
            let mut stored = Vec::new();
            for uri in uris {
                let uri = stored_uri(uri)?;
                if !stored.contains(&uri) {
                    stored.push(uri);
                }
            }
            let mut app = AppModel {
                started: false,
                uris: stored,
                instances: *instances,
                version: 0,
            };
            let changes = if *starts { start(&mut app) } else { Vec::new() };
            self.apps.insert(name, app);
            return Ok(changes);
        }
        let mut app = self
            .apps
            .get(&name)
            .cloned()
            .ok_or_else(|| ModelError::AppNotFound(name.clone()))?;
        let changes = match step {
            Step::Push { .. } => unreachable!("handled above"),
            Step::Update { .. } | Step::Reconfigure { .. } => {
                if app.started {
                    let mut changes = stop(&mut app);
                    changes.extend(start(&mut app));
                    changes
                } else {
                    Vec::new()
                }
            }
            Step::Restart { .. } => {
                let mut changes = if app.started {
                    stop(&mut app)
                } else {
                    Vec::new()
                };
                changes.extend(start(&mut app));
                changes
            }
            Step::Start { .. } if app.started => Vec::new(),
            Step::Start { .. } => start(&mut app),
            Step::Stop { .. } if !app.started => Vec::new(),
            Step::Stop { .. } => stop(&mut app),
            Step::Map { uri, .. } => {
                // af sends the URL as typed; the platform stores it normalised.
                let uri = stored_uri(uri)?;
                if app.uris.contains(&uri) {
                    Vec::new()
                } else {
                    let before = self.registrations(&app, app.instances);
                    app.uris.push(uri);
                    let after = change(&app, app.instances, false);
                    if after.registrations == before {
                        Vec::new()
                    } else {
                        vec![after]
                    }
                }
            }
            Step::Unmap { uri, .. } => {
                // af strips the scheme, then needs an exact match with a stored URI.
                let typed = uri
                    .strip_prefix("http://")
                    .or_else(|| uri.strip_prefix("https://"))
                    .unwrap_or(uri);
                let Some(position) = app.uris.iter().position(|u| u == typed) else {
                    return Err(ModelError::InvalidUrl(uri.clone()));
                };
                let before = self.registrations(&app, app.instances);
                app.uris.remove(position);
                let after = change(&app, app.instances, false);
                if after.registrations == before {
                    Vec::new()
                } else {
                    vec![after]
                }
            }
            Step::Scale { instances, .. } => {
                if *instances == 0 {
                    return Err(ModelError::TooFewInstances);
                }
                let before = app.instances;
                app.instances = *instances;
                match (app.started, instances.cmp(&before)) {
                    (false, _) | (true, std::cmp::Ordering::Equal) => Vec::new(),
                    (true, std::cmp::Ordering::Greater) => (before + 1..=app.instances)
                        .map(|n| change(&app, n, false))
                        .collect(),
                    (true, std::cmp::Ordering::Less) => vec![change(&app, app.instances, true)],
                }
            }
            Step::Delete { .. } => {
                let had = self.registrations(&app, app.instances);
                self.apps.remove(&name);
                return Ok(if had.is_empty() {
                    Vec::new()
                } else {
                    vec![RouteChange {
                        app: name,
                        version: app.version,
                        registrations: BTreeSet::new(),
                        stops: true,
                    }]
                });
            }
            Step::Crash { index, .. } => {
                if !app.started || *index >= app.instances {
                    return Err(ModelError::NoSuchInstance(*index));
                }
                let mut without = self.registrations(&app, app.instances);
                without.retain(|(_, i)| i != index);
                vec![
                    RouteChange {
                        app: name.clone(),
                        version: app.version,
                        registrations: without,
                        stops: false,
                    },
                    change(&app, app.instances, false),
                ]
            }
        };
        self.apps.insert(name, app);
        Ok(changes)
    }
}

/// A URI as the platform stores it, or the error it answers (v1's 700, `Invalid URI`).
fn stored_uri(uri: &str) -> Result<String, ModelError> {
    crate::control::normalise_uri(uri).map_err(|_| ModelError::InvalidUrl(uri.to_owned()))
}

/// proptest strategies that generate procedures over a few apps and hosts.
#[cfg(feature = "proptest")]
pub mod strategy {
    /// The proptest these strategies are built with, for tests that need its runner and macros.
    pub use proptest;
    use proptest::prelude::*;

    use super::Step;

    /// One step over these apps and hosts, as af performs it: pushes (one URL each, as af's
    /// `--url`, some with `--no-start`), maps, unmaps, updates, stops, starts, restarts,
    /// reconfigurations, scales and deletes, weighted towards what moves routes around.
    pub fn step(apps: &[&str], hosts: &[&str]) -> BoxedStrategy<Step> {
        let apps: Vec<String> = apps.iter().map(|a| a.to_string()).collect();
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let app = proptest::sample::select(apps);
        let host = proptest::sample::select(hosts.clone());
        prop_oneof![
            3 => (app.clone(), host.clone()).prop_map(|(app, uri)| Step::Push { app, uris: vec![uri], instances: 1, start: true }),
            1 => (app.clone(), host.clone()).prop_map(|(app, uri)| Step::Push { app, uris: vec![uri], instances: 1, start: false }),
            4 => (app.clone(), host.clone()).prop_map(|(app, uri)| Step::Map { app, uri }),
            3 => (app.clone(), host).prop_map(|(app, uri)| Step::Unmap { app, uri }),
            1 => app.clone().prop_map(|app| Step::Update { app }),
            1 => app.clone().prop_map(|app| Step::Stop { app }),
            1 => app.clone().prop_map(|app| Step::Start { app }),
            1 => app.clone().prop_map(|app| Step::Restart { app }),
            1 => app.clone().prop_map(|app| Step::Reconfigure { app }),
            2 => (app.clone(), 1u32..=3).prop_map(|(app, instances)| Step::Scale { app, instances }),
            1 => app.prop_map(|app| Step::Delete { app }),
        ]
        .boxed()
    }

    /// A procedure: up to `max_len` steps.
    pub fn procedure(apps: &[&str], hosts: &[&str], max_len: usize) -> BoxedStrategy<Vec<Step>> {
        proptest::collection::vec(step(apps, hosts), 0..=max_len).boxed()
    }
}

/// A table built from each app's current registrations.
pub fn table_of(registered: &BTreeMap<String, BTreeSet<(String, u32)>>) -> RouteSummary {
    let mut table = RouteSummary::new();
    for (app, registrations) in registered {
        for (host, index) in registrations {
            table
                .entry(host.clone())
                .or_default()
                .insert((app.clone(), *index));
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(app: &str, uris: &[&str]) -> Step {
        Step::Push {
            app: app.into(),
            uris: uris.iter().map(|u| u.to_string()).collect(),
            instances: 1,
            start: true,
        }
    }

    fn map(app: &str, uri: &str) -> Step {
        Step::Map {
            app: app.into(),
            uri: uri.into(),
        }
    }

    fn unmap(app: &str, uri: &str) -> Step {
        Step::Unmap {
            app: app.into(),
            uri: uri.into(),
        }
    }

    fn hosts_of(table: &RouteSummary, host: &str) -> Vec<(String, u32)> {
        table
            .get(host)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn the_seed_swap_ends_with_the_apps_exchanged() {
        let mut model = Model::new();
        model
            .apply(&push("example", &["example.com", "www.example.com"]))
            .unwrap();
        model
            .apply(&push("example2", &["example.aws.af.cm"]))
            .unwrap();
        for step in [
            map("example2", "example.com"),
            map("example2", "www.example.com"),
            unmap("example", "example.com"),
            unmap("example", "www.example.com"),
            map("example", "example.aws.af.cm"),
            unmap("example2", "example.aws.af.cm"),
        ] {
            model.apply(&step).unwrap();
        }
        let table = model.routes();
        assert_eq!(
            hosts_of(&table, "example.com"),
            vec![("example2".into(), 0)]
        );
        assert_eq!(
            hosts_of(&table, "www.example.com"),
            vec![("example2".into(), 0)]
        );
        assert_eq!(
            hosts_of(&table, "example.aws.af.cm"),
            vec![("example".into(), 0)]
        );
    }

    #[test]
    fn an_update_unregisters_then_registers_each_instance() {
        let mut model = Model::new();
        model.apply(&push("web", &["a.com"])).unwrap();
        model
            .apply(&Step::Scale {
                app: "web".into(),
                instances: 2,
            })
            .unwrap();
        let changes = model.apply(&Step::Update { app: "web".into() }).unwrap();
        let sizes: Vec<usize> = changes.iter().map(|c| c.registrations.len()).collect();
        assert_eq!(sizes, vec![0, 1, 2]);
    }

    #[test]
    fn scaling_down_removes_the_highest_and_errors_change_nothing() {
        let mut model = Model::new();
        model.apply(&push("web", &["HTTP://A.com"])).unwrap();
        model
            .apply(&Step::Scale {
                app: "web".into(),
                instances: 3,
            })
            .unwrap();
        model
            .apply(&Step::Scale {
                app: "web".into(),
                instances: 1,
            })
            .unwrap();
        assert_eq!(hosts_of(&model.routes(), "a.com"), vec![("web".into(), 0)]);
        let before = model.clone();
        assert_eq!(
            model.apply(&unmap("web", "b.com")),
            Err(ModelError::InvalidUrl("b.com".into()))
        );
        // af's unmap matches the stored URI exactly, and the platform stored it lower-cased.
        assert_eq!(
            model.apply(&unmap("web", "A.com")),
            Err(ModelError::InvalidUrl("A.com".into()))
        );
        assert_eq!(
            model.apply(&push("web", &[])),
            Err(ModelError::AppExists("web".into()))
        );
        assert_eq!(
            model.apply(&Step::Scale {
                app: "web".into(),
                instances: 0
            }),
            Err(ModelError::TooFewInstances)
        );
        assert_eq!(model, before);
    }

    #[test]
    fn stopped_apps_keep_their_uris_but_no_routes() {
        let mut model = Model::new();
        model.apply(&push("web", &["a.com"])).unwrap();
        model.apply(&Step::Stop { app: "web".into() }).unwrap();
        model.apply(&map("web", "b.com")).unwrap();
        assert!(model.routes().is_empty());
        let changes = model.apply(&Step::Start { app: "web".into() }).unwrap();
        assert_eq!(changes.last().unwrap().registrations.len(), 2);
    }
}
