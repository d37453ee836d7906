//! State snapshots: everything a user set up — users, tokens, services, apps with their uploaded
//! bits and desired state — as one JSON document. `GET`/`PUT /_afemu/state` export and import it
//! (tests in any language load a fixture this way); `--state FILE` loads it at start and saves it
//! after each change and at shutdown, atomically, so a kill at any moment leaves a whole file.
//! Runtime facts (instances, crashes, ports) are not part of it: they are re-created. A reset
//! (`POST /_afemu/reset`) is here too: the empty state.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::ApiError;
use std::collections::HashMap;

use super::Platform;
use super::lifecycle::Effects;
use super::packages;
use super::services;
use super::state::{App, AppState, Package, User, normalise_uri, validate_app_name};
use super::users::normalise_email;
use crate::clock::epoch_seconds;

/// The snapshot format's version.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Always [`FORMAT`].
    pub afemu_state: u32,
    #[serde(default)]
    pub users: Vec<UserRecord>,
    /// token → email
    #[serde(default)]
    pub tokens: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub services: Vec<ServiceRecord>,
    #[serde(default)]
    pub apps: Vec<AppRecord>,
    /// Uploaded bits by hash, as hex-encoded zips (each stored once, whichever apps share it).
    #[serde(default)]
    pub packages: std::collections::BTreeMap<String, String>,
    /// What the snapshot does not hold, said in words (the data in real services' databases).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_included: Vec<String>,
}

/// What an export says it leaves out when it holds services.
pub const SERVICE_DATA_NOT_INCLUDED: &str = "the data in the services' databases: the snapshot \
    holds each service's and binding's credentials only; on import, a real service's database is \
    kept if the server still has it (the same --data-dir), and created empty otherwise";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UserRecord {
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub admin: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceRecord {
    pub owner: String,
    pub name: String,
    pub vendor: String,
    pub version: String,
    pub credentials: Value,
    #[serde(default)]
    pub infra: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AppRecord {
    pub owner: String,
    pub name: String,
    pub framework: String,
    #[serde(default)]
    pub runtime: Option<String>,
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub uris: Vec<String>,
    pub instances: u32,
    pub memory_mb: u64,
    /// `STARTED` or `STOPPED`.
    pub state: String,
    #[serde(default)]
    pub services: Vec<String>,
    /// The credentials of each binding, by service name.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub bindings: std::collections::BTreeMap<String, Value>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub infra: Option<String>,
    /// The hash of the last upload, a key of `packages`.
    #[serde(default)]
    pub package: Option<String>,
}

impl Snapshot {
    /// Parses and checks a snapshot document (format, types, references).
    pub fn parse(document: &Value) -> Result<Snapshot, ApiError> {
        let snapshot: Snapshot = serde_json::from_value(document.clone())
            .map_err(|e| ApiError::BadRequest(format!("not an afemu state snapshot: {e}")))?;
        if snapshot.afemu_state != FORMAT {
            return Err(ApiError::BadRequest(format!(
                "state snapshot format {} is not {FORMAT}",
                snapshot.afemu_state
            )));
        }
        for app in &snapshot.apps {
            if let Some(hash) = &app.package
                && !snapshot.packages.contains_key(hash)
            {
                return Err(ApiError::BadRequest(format!(
                    "app {:?} names package {hash:?}, which the snapshot does not hold",
                    app.name
                )));
            }
            if !matches!(app.state.as_str(), "STARTED" | "STOPPED") {
                return Err(ApiError::BadRequest(format!(
                    "app {:?}: state must be STARTED or STOPPED",
                    app.name
                )));
            }
        }
        Ok(snapshot)
    }
}

pub use crate::atomic_file::{remove_partial_writes, write_atomically};

impl Platform {
    /// Notes that something a snapshot shows has changed.
    pub(crate) fn mark_changed(&self) {
        self.inner.changed.notify_one();
    }

    /// Resolves at the next change a snapshot would show.
    pub async fn changed(&self) {
        self.inner.changed.notified().await;
    }

    /// `POST /_afemu/reset`: every app stopped and deleted, every user, token and service gone
    /// (real services' databases dropped), the journal emptied. Faults stay as they are.
    pub async fn reset(&self) {
        self.reset_keeping(&[]).await;
    }

    /// A reset that keeps the databases of the services in `keep` (vendor and credentials'
    /// name): an import of a snapshot that holds them finds their data still there.
    async fn reset_keeping(&self, keep: &[(String, String)]) {
        // A provision in flight sees this and drops what it made.
        self.state().resets += 1;
        let apps: Vec<u64> = self.state().apps.keys().copied().collect();
        for app_id in apps {
            let _guard = self.lock_app(app_id).await;
            self.remove_app(app_id).await;
        }
        let services = {
            let mut state = self.state();
            state.users.clear();
            state.tokens.clear();
            let services = std::mem::take(&mut state.services);
            self.publish(&state);
            services
        };
        // Every provisioned database goes (their bindings' users went with the apps).
        for service in &services {
            let name = service.credentials.get("name").and_then(Value::as_str);
            let kept = keep.iter().any(|(vendor, kept)| {
                vendor == service.offering.vendor && Some(kept.as_str()) == name
            });
            if !kept {
                self.unprovision(service).await;
            }
        }
        self.journal().clear();
        self.journal().record_event("reset", json!({}));
        self.mark_changed();
    }

    /// No two real services of a snapshot may share a database or a user, nor a binding take
    /// another's user: dropping one would drop the other's.
    fn check_distinct_credentials(&self, snapshot: &Snapshot) -> Result<(), ApiError> {
        let nodes = &self.inner.nodes;
        let mut seen: HashMap<(String, &'static str, String), String> = HashMap::new();
        let mut claim = |vendor: &str, key: &'static str, value: &str, owner: String| match seen
            .insert((vendor.to_owned(), key, value.to_owned()), owner.clone())
        {
            Some(other) if other != owner => Err(ApiError::BadRequest(format!(
                "{other} and {owner} have the same {vendor} {key} {value:?}: dropping one \
                     would drop the other's"
            ))),
            _ => Ok(()),
        };
        for service in snapshot
            .services
            .iter()
            .filter(|s| nodes.is_real(&s.vendor))
        {
            for key in ["name", "user"] {
                if let Some(value) = service.credentials.get(key).and_then(Value::as_str) {
                    claim(
                        &service.vendor,
                        key,
                        value,
                        format!("service {:?}", service.name),
                    )?;
                }
            }
        }
        for app in &snapshot.apps {
            for (name, binding) in &app.bindings {
                let Some(service) = snapshot
                    .services
                    .iter()
                    .find(|s| &s.name == name && s.owner == app.owner)
                else {
                    continue;
                };
                if !nodes.is_real(&service.vendor) {
                    continue;
                }
                nodes
                    .check_credentials(&service.vendor, binding)
                    .map_err(|e| {
                        ApiError::BadRequest(format!(
                            "app {:?}'s binding to {name:?}: {e}",
                            app.name
                        ))
                    })?;
                let own = service.credentials.get("user");
                if let Some(user) = binding.get("user").and_then(Value::as_str)
                    && binding.get("user") != own
                {
                    claim(
                        &service.vendor,
                        "user",
                        user,
                        format!("app {:?}'s binding to {name:?}", app.name),
                    )?;
                }
            }
        }
        Ok(())
    }

    /// `GET /_afemu/state`: the snapshot (blocking: it reads the uploaded packages).
    pub fn export_state(&self) -> Result<super::snapshot::Snapshot, ApiError> {
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
                        bindings: app.bindings.clone(),
                        env: app.env.clone(),
                        infra: app.infra.clone(),
                        package: app.package.as_ref().map(|p| p.hash.clone()),
                    }
                })
                .collect();
            let not_included = if state.services.is_empty() {
                Vec::new()
            } else {
                vec![SERVICE_DATA_NOT_INCLUDED.to_owned()]
            };
            (
                Snapshot {
                    afemu_state: FORMAT,
                    users,
                    tokens,
                    services,
                    apps,
                    packages: Default::default(),
                    not_included,
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
        let snapshot = Snapshot::parse(document)?;
        // Check every part before anything changes.
        for user in &snapshot.users {
            normalise_email(&user.email)?;
        }
        for service in &snapshot.services {
            services::offering(&service.vendor, Some(&service.version))
                .ok_or(ApiError::ServiceNotFound)?;
            services::validate_service_name(&service.name)?;
            self.inner
                .nodes
                .check_credentials(&service.vendor, &service.credentials)
                .map_err(|e| ApiError::BadRequest(format!("service {:?}: {e}", service.name)))?;
        }
        self.check_distinct_credentials(&snapshot)?;
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
                packages::check_zip(file.path(), max_unpacked)?;
                files.insert(hash, file);
            }
            Ok::<_, ApiError>(files)
        })
        .await
        .map_err(|e| ApiError::System(e.to_string()))??;

        // The services the snapshot holds keep their databases (with their data).
        let keep: Vec<(String, String)> = snapshot
            .services
            .iter()
            .filter_map(|s| {
                let name = s.credentials.get("name")?.as_str()?;
                Some((s.vendor.clone(), name.to_owned()))
            })
            .collect();
        self.reset_keeping(&keep).await;
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
                        runtime: record.runtime.clone(),
                        command: record.command.clone(),
                        uris: record
                            .uris
                            .iter()
                            .map(|u| normalise_uri(u))
                            .collect::<Result<_, _>>()?,
                        instances: record.instances.max(1),
                        memory_mb: record.memory_mb,
                        services: record.services.clone(),
                        bindings: record.bindings.clone(),
                        env: record.env.clone(),
                        infra: record.infra.clone(),
                        package,
                        ..App::new(id, &record.owner, &record.name, record.framework.clone())
                    },
                );
            }
            self.publish(&state);
        }
        // Real services come back before the apps that use them start.
        let mut failures = Vec::new();
        let services: Vec<(services::Service, Vec<Value>)> = {
            let mut state = self.state();
            let state = &mut *state;
            let nodes = &self.inner.nodes;
            for service in &mut state.services {
                service.credentials = nodes.complete(service.offering.vendor, &service.credentials);
            }
            state
                .services
                .iter()
                .map(|service| {
                    let mut bindings = Vec::new();
                    for app in state.apps.values_mut().filter(|a| a.owner == service.owner) {
                        let Some(binding) = app.bindings.get(&service.name) else {
                            continue;
                        };
                        // A binding the node cannot restore (no user or password of its own)
                        // is dropped: the app gets the service's own credentials.
                        let usable = nodes
                            .check_credentials(service.offering.vendor, binding)
                            .is_ok()
                            && ["user", "password"]
                                .iter()
                                .all(|k| binding.get(k).and_then(Value::as_str).is_some());
                        if usable {
                            bindings.push(binding.clone());
                        } else {
                            app.bindings.remove(&service.name);
                        }
                    }
                    (service.clone(), bindings)
                })
                .collect()
        };
        for (service, bindings) in services {
            if let Err(error) = self
                .inner
                .nodes
                .restore(service.offering.vendor, &service.credentials, &bindings)
                .await
            {
                tracing::warn!(service = %service.name, %error, "cannot restore the service");
                failures.push(format!("service {}: {error}", service.name));
            }
        }
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
        } else if failures.iter().all(|f| f.starts_with("service ")) {
            Err(ApiError::ServiceGateway(failures.join("; ")))
        } else {
            Err(ApiError::StagingFailed(failures.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn snapshots_are_checked() {
        assert!(Snapshot::parse(&json!({"afemu_state": 1})).is_ok());
        for bad in [
            json!({"afemu_state": 2}),
            json!({"afemu_state": 1, "apps": [{"owner": "a", "name": "x", "framework": "node", "instances": 1, "memory_mb": 64, "state": "STARTED", "package": "missing"}]}),
            json!({"afemu_state": 1, "apps": [{"owner": "a", "name": "x", "framework": "node", "instances": 1, "memory_mb": 64, "state": "RUNNING"}]}),
            json!({"afemu_state": 1, "users": [{"email": 7}]}),
            json!({"afemu_state": 1, "extra": true}),
            json!([]),
        ] {
            assert_eq!(Snapshot::parse(&bad).unwrap_err().code(), 100, "{bad}");
        }
    }

    #[test]
    fn atomic_writes_replace_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // What a killed write leaves behind is cleaned up, and only that.
        std::fs::write(dir.path().join(".state.json.partial-abc"), b"half").unwrap();
        std::fs::write(dir.path().join("other"), b"keep").unwrap();
        remove_partial_writes(&path);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        // A write that cannot happen leaves the old file as it was.
        let missing = dir.path().join("no/such/dir/state.json");
        assert!(write_atomically(&missing, b"three").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
    }
}
