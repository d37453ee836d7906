//! The controller's state: users, tokens, apps and the records of their instances — what v1's
//! cloud controller kept in its database, plus the router registrations it derives from them.
//! Plain data with synchronous methods: processes, directories and ports are the DEA's, known
//! here only by instance id. The [`Platform`](super::Platform) handle owns it behind one lock and
//! derives the route table from it after every change, so the table can never disagree with the
//! apps.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use afemu_router::{Backend, normalise_host};
use serde_json::{Value, json};

use super::catalog::Service;
use crate::error::ApiError;

#[derive(Debug)]
pub(crate) struct User {
    pub(crate) password: String,
    pub(crate) admin: bool,
    pub(crate) created: u64,
}

/// The state an app is asked to be in (v1's `AppStates`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AppState {
    Started,
    Stopped,
}

impl AppState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AppState::Started => "STARTED",
            AppState::Stopped => "STOPPED",
        }
    }
}

/// Whether the last uploaded bits have been staged (v1's `PackageStates`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PackageState {
    Pending,
    Staged,
    Failed,
}

/// An instance's state as `GET /apps/:name/instances` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InstanceState {
    Starting,
    Running,
    Crashed,
    Flapping,
}

impl InstanceState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            InstanceState::Starting => "STARTING",
            InstanceState::Running => "RUNNING",
            InstanceState::Crashed => "CRASHED",
            InstanceState::Flapping => "FLAPPING",
        }
    }
}

/// The bits last uploaded: a zip plus resources the server already had.
#[derive(Clone, Debug)]
pub(crate) struct Package {
    /// Identifies the bits: sha1 of the zip and of the resource list.
    pub(crate) hash: String,
    pub(crate) zip: PathBuf,
    pub(crate) resources: Vec<super::packages::Resource>,
}

/// One instance, as the controller knows it: what the DEA said of it, and its registration. The
/// DEA runs it, known by `id`.
#[derive(Debug)]
pub(crate) struct Instance {
    pub(crate) index: u32,
    pub(crate) id: Arc<str>,
    pub(crate) private_id: Arc<str>,
    pub(crate) state: InstanceState,
    /// When the instance entered its state, in epoch seconds (`since` in the API).
    pub(crate) since: u64,
    /// The app version it runs (`<droplet sha1>-<run_count>`).
    pub(crate) version: Arc<str>,
    /// Set while the instance is RUNNING: what the route table holds.
    pub(crate) backend: Option<Arc<Backend>>,
    /// Backends it had under an earlier name (a rename re-registers it): requests may still hold
    /// them, so a stop drains them too.
    pub(crate) retired: Vec<Arc<Backend>>,
}

/// A crashed instance, as `/crashes` lists it.
#[derive(Clone, Debug)]
pub(crate) struct Crash {
    pub(crate) instance_id: Arc<str>,
    pub(crate) index: u32,
    pub(crate) since: u64,
    /// The same moment, precisely, for the health manager's flapping window.
    pub(crate) at: Instant,
}

/// One upload, as AppFog's `af history` lists them.
#[derive(Clone, Debug)]
pub(crate) struct Release {
    pub(crate) label: String,
    pub(crate) release: u32,
    pub(crate) updated_by: String,
    pub(crate) updated_at: u64,
    /// af's `Hash` header (an MD5 of the bits), or the package's own hash.
    pub(crate) update_hash: String,
}

#[derive(Debug)]
pub(crate) struct App {
    pub(crate) id: u64,
    pub(crate) owner: String,
    pub(crate) name: String,
    pub(crate) framework: String,
    pub(crate) runtime: Option<String>,
    pub(crate) command: Option<String>,
    pub(crate) uris: Vec<String>,
    pub(crate) instances: u32,
    pub(crate) memory_mb: u64,
    pub(crate) disk_mb: u64,
    pub(crate) fds: u64,
    pub(crate) state: AppState,
    pub(crate) services: Vec<String>,
    /// The credentials of each binding (by service name): a user of its own on a real database.
    pub(crate) bindings: BTreeMap<String, Value>,
    pub(crate) env: Vec<String>,
    /// v1's `lock_version`: `meta.version` in the document, checked on every PUT.
    pub(crate) lock_version: u64,
    pub(crate) created: u64,
    pub(crate) infra: Option<String>,
    /// What the last PUT said about debugging, echoed in `meta` as v1 did.
    pub(crate) debug: Value,
    pub(crate) console: Value,
    pub(crate) package: Option<Package>,
    /// The package last staged into a droplet (v1's `staged_package_hash`); the DEA has it.
    pub(crate) staged: Option<String>,
    pub(crate) package_state: PackageState,
    /// Incremented on every start; part of `version` (`<hash>-<run_count>`).
    pub(crate) run_count: u64,
    pub(crate) running: BTreeMap<u32, Instance>,
    pub(crate) crashes: Vec<Crash>,
    /// Every upload, oldest first.
    pub(crate) releases: Vec<Release>,
}

impl App {
    /// A new app as v1 created it: stopped, one instance of 256M, no URI, no bits yet.
    pub(crate) fn new(id: u64, owner: &str, name: &str, framework: String) -> App {
        App {
            id,
            owner: owner.to_owned(),
            name: name.to_owned(),
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
            bindings: BTreeMap::new(),
            env: Vec::new(),
            lock_version: 0,
            created: crate::clock::epoch_seconds(),
            infra: None,
            debug: Value::Null,
            console: Value::Null,
            package: None,
            staged: None,
            package_state: PackageState::Pending,
            run_count: 0,
            running: BTreeMap::new(),
            crashes: Vec::new(),
            releases: Vec::new(),
        }
    }

    /// Whether the bits changed since the last staging.
    pub(crate) fn needs_staging(&self) -> bool {
        match (&self.package, &self.staged) {
            (Some(package), Some(staged)) => &package.hash != staged,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    pub(crate) fn running_instances(&self) -> usize {
        if self.state != AppState::Started {
            return 0;
        }
        self.running
            .values()
            .filter(|i| i.state == InstanceState::Running)
            .count()
    }

    /// The app document, as `GET /apps/:name` returns it (CC `App#as_json`).
    pub(crate) fn document(&self) -> Value {
        let staged_hash = self.staged.clone().unwrap_or_else(|| "0".repeat(40));
        let mut staging = json!({"model": self.framework, "stack": self.runtime});
        if let Some(command) = &self.command {
            staging["command"] = json!(command);
        }
        let mut meta = json!({"version": self.lock_version, "created": self.created});
        if !self.debug.is_null() {
            meta["debug"] = self.debug.clone();
        }
        if !self.console.is_null() {
            meta["console"] = self.console.clone();
        }
        let mut doc = json!({
            "name": self.name,
            "staging": staging,
            "uris": self.uris,
            "instances": self.instances,
            "runningInstances": self.running_instances(),
            "resources": {"memory": self.memory_mb, "disk": self.disk_mb, "fds": self.fds},
            "state": self.state.as_str(),
            "services": self.services,
            "version": format!("{staged_hash}-{}", self.run_count),
            "env": self.env,
            "meta": meta,
        });
        if let Some(infra) = &self.infra {
            doc["infra"] = json!({"provider": infra, "name": infra});
        }
        doc
    }
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) users: BTreeMap<String, User>,
    /// token → email
    pub(crate) tokens: HashMap<String, String>,
    pub(crate) apps: BTreeMap<u64, App>,
    pub(crate) next_app_id: u64,
    /// How many resets there have been: a provision that began before one is not kept.
    pub(crate) resets: u64,
    /// Provisioned services, in the order they were created.
    pub(crate) services: Vec<Service>,
}

impl State {
    pub(crate) fn find_app(&self, owner: &str, name: &str) -> Option<&App> {
        self.apps
            .values()
            .find(|app| app.owner == owner && app.name == name)
    }

    pub(crate) fn app_id(&self, owner: &str, name: &str) -> Result<u64, ApiError> {
        self.find_app(owner, name)
            .map(|app| app.id)
            .ok_or(ApiError::AppNotFound)
    }

    pub(crate) fn apps_of<'a>(&'a self, owner: &'a str) -> impl Iterator<Item = &'a App> + 'a {
        self.apps.values().filter(move |app| app.owner == owner)
    }

    /// Refuses a URI that another user's app holds (v1: `URI_ALREADY_TAKEN`, 701). The same user
    /// may map one URI to several apps: that is the blue/green recipe.
    pub(crate) fn check_uri_owner(
        &self,
        owner: &str,
        uri: &str,
        dev_suffix: &str,
    ) -> Result<(), ApiError> {
        let key = normalise_host(uri, dev_suffix);
        let taken = self.apps.values().any(|app| {
            app.owner != owner
                && app
                    .uris
                    .iter()
                    .any(|mapped| normalise_host(mapped, dev_suffix) == key)
        });
        if taken {
            Err(ApiError::UriTaken(uri.to_owned()))
        } else {
            Ok(())
        }
    }

    /// One app's registrations as `(host key, backend)` pairs: each RUNNING instance, once per
    /// URI, while the app is STARTED; none otherwise.
    pub(crate) fn app_route_entries(app: &App, dev_suffix: &str) -> Vec<(Arc<str>, Arc<Backend>)> {
        let mut entries = Vec::new();
        if app.state != AppState::Started {
            return entries;
        }
        let keys: Vec<Arc<str>> = app
            .uris
            .iter()
            .filter_map(|uri| normalise_host(uri, dev_suffix))
            .map(|key| Arc::from(&*key))
            .collect();
        for instance in app.running.values() {
            if instance.state != InstanceState::Running {
                continue;
            }
            if let Some(backend) = &instance.backend {
                for key in &keys {
                    entries.push((key.clone(), backend.clone()));
                }
            }
        }
        entries
    }

    pub(crate) fn services_of<'a>(
        &'a self,
        owner: &'a str,
    ) -> impl Iterator<Item = &'a Service> + 'a {
        self.services.iter().filter(move |s| s.owner == owner)
    }

    /// The services bound to an app, each with the credentials of the app's binding (the
    /// service's own for a binding made before bindings had credentials of their own).
    pub(crate) fn bound_services(&self, app: &App) -> Vec<(Service, Value)> {
        self.services_of(&app.owner)
            .filter(|s| app.services.contains(&s.name))
            .map(|s| {
                let binding = app.bindings.get(&s.name).unwrap_or(&s.credentials);
                (s.clone(), binding.clone())
            })
            .collect()
    }

    pub(crate) fn memory_in_use(&self, owner: &str) -> u64 {
        self.apps_of(owner)
            .filter(|app| app.state == AppState::Started)
            .map(|app| app.memory_mb.saturating_mul(u64::from(app.instances)))
            .fold(0, u64::saturating_add)
    }
}

/// v1's names of apps and services: `/^[\w-]+$/`, at most 255 bytes.
pub(crate) fn is_v1_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// v1's app names.
pub(crate) fn validate_app_name(name: &str) -> Result<(), ApiError> {
    if is_v1_name(name) {
        Ok(())
    } else {
        Err(ApiError::InvalidApp(format!(
            "app name {name:?} may only contain letters, digits, '_' and '-'"
        )))
    }
}

/// Normalises a URI as the cloud controller did (scheme stripped, lower-cased, trimmed) and
/// checks it is a host name with an optional port. Returns the form that is stored.
pub fn normalise_uri(raw: &str) -> Result<String, ApiError> {
    let invalid = || ApiError::InvalidUri(raw.to_owned());
    let mut uri = raw.trim();
    for scheme in ["http://", "https://"] {
        if uri.len() >= scheme.len()
            && uri.is_char_boundary(scheme.len())
            && uri[..scheme.len()].eq_ignore_ascii_case(scheme)
        {
            uri = &uri[scheme.len()..];
        }
    }
    let uri = uri.trim_end_matches('/').to_ascii_lowercase();
    let (host, port) = match uri.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (uri.as_str(), None),
    };
    if let Some(port) = port
        && port.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Err(invalid());
    }
    let host = host.trim_end_matches('.');
    let valid_host = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if !valid_host {
        return Err(invalid());
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_normalisation() {
        let table = [
            ("example.com", Ok("example.com")),
            ("HTTP://Example.COM", Ok("example.com")),
            ("https://www.example.com/", Ok("www.example.com")),
            ("app.aws.af.cm:9080", Ok("app.aws.af.cm:9080")),
            ("  spaced.com ", Ok("spaced.com")),
            ("under_score.com", Ok("under_score.com")),
            ("", Err(())),
            ("http://", Err(())),
            ("a b.com", Err(())),
            ("a..com", Err(())),
            ("-a.com", Err(())),
            ("a.com:0", Err(())),
            ("a.com:99999", Err(())),
            ("a.com:port", Err(())),
            ("a.com/path", Err(())),
            ("<script>.com", Err(())),
        ];
        for (raw, expected) in table {
            let got = normalise_uri(raw).map_err(|_| ());
            assert_eq!(
                got.as_deref(),
                expected.as_deref().map_err(|_| &()),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn app_names() {
        assert!(validate_app_name("example2").is_ok());
        assert!(validate_app_name("my_app-1").is_ok());
        for bad in ["", "a b", "a/b", "../x", "é", "a.b"] {
            assert!(validate_app_name(bad).is_err(), "{bad:?}");
        }
    }
}
