//! Apps (v1's `apps` resource): reading them, creating and changing them — every field of an
//! update validated before any is applied, in v1's order — uploads, and deleting.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use afemu_router::Backend;
use serde_json::{Value, json};

use super::Platform;
use super::app_update::AppUpdate;
use super::lifecycle::Effects;
use super::packages::{self, Resource};
use super::services::Service;
use super::state::{
    App, AppState, InstanceState, Package, PackageState, normalise_uri, validate_app_name,
};
use crate::clock::{epoch_seconds, time_of_day_utc};
use crate::error::ApiError;

impl Platform {
    // ----- reading ----------------------------------------------------------------------------

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

    /// `GET /apps/:name/stats`: one entry per index; only RUNNING ones carry `stats`, measured by
    /// the DEA.
    pub async fn stats(&self, user: &str, name: &str) -> Result<Value, ApiError> {
        /// What is read under the lock; the DEA measures the rest.
        struct Row {
            index: u32,
            running: Option<Arc<str>>,
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
                            running: Some(i.id.clone()),
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
        let measured = self
            .inner
            .dea
            .measure(rows.iter().filter_map(|r| r.running.clone()).collect())
            .await;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut stats = serde_json::Map::new();
        for row in rows {
            let measure = row.running.as_ref().and_then(|id| measured.get(id));
            let entry = match measure {
                Some(measure) => json!({
                    "state": "RUNNING",
                    "stats": {
                        "name": name,
                        "host": "127.0.0.1",
                        "port": measure.port,
                        "uris": uris,
                        "uptime": measure.uptime.as_secs_f64(),
                        "mem_quota": memory_mb * 1024 * 1024,
                        "disk_quota": disk_mb * 1024 * 1024,
                        "fds_quota": fds,
                        "cores": cores,
                        "usage": {
                            "time": time_of_day_utc(epoch_seconds()),
                            "cpu": (measure.cpu * 10.0).round() / 10.0,
                            "mem": measure.mem_kib as f64,
                            "disk": measure.disk_bytes,
                        },
                    },
                }),
                None => json!({"state": row.state, "since": row.since}),
            };
            stats.insert(row.index.to_string(), entry);
        }
        Ok(Value::Object(stats))
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
                    "updated_at": time_of_day_utc(r.updated_at),
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
    /// index) or by its instance id (also a crashed one from `/crashes`, until it is reaped). The
    /// DEA has the directories; this says which instance is meant.
    pub fn instance_dir(
        &self,
        user: &str,
        name: &str,
        instance: &str,
    ) -> Result<PathBuf, ApiError> {
        let id: Option<Arc<str>> = {
            let state = self.state();
            let app = state.find_app(user, name).ok_or(ApiError::AppNotFound)?;
            let by_index = instance
                .parse::<u32>()
                .ok()
                .filter(|_| instance.len() < 10)
                .and_then(|index| app.running.get(&index));
            by_index
                .or_else(|| app.running.values().find(|i| &*i.id == instance))
                .map(|i| i.id.clone())
                .or_else(|| {
                    app.crashes
                        .iter()
                        .rev()
                        .find(|c| &*c.instance_id == instance)
                        .map(|c| c.instance_id.clone())
                })
        };
        id.and_then(|id| self.inner.dea.instance_dir(&id))
            .ok_or_else(|| ApiError::InstanceNotFound(instance.to_owned()))
    }

    /// The app's last staging log (kept also when staging failed and no instance runs).
    pub fn staging_log(&self, user: &str, name: &str) -> Result<Option<PathBuf>, ApiError> {
        let app_id = {
            let state = self.state();
            state.find_app(user, name).ok_or(ApiError::AppNotFound)?.id
        };
        Ok(self.inner.dea.staging_log(app_id))
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

    // ----- changing ---------------------------------------------------------------------------

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
            let app = App::new(id, user, &name, framework);
            state.apps.insert(id, app);
            id
        };
        // The rest is an update of the new app; if it is refused, the app goes again (v1 did the same).
        let create = AppUpdate {
            name: None,
            lock_version: None,
            ..update
        };
        let (platform, user) = (self.clone(), user.to_owned());
        self.to_completion(async move {
            let _guard = platform.lock_app(app_id).await;
            match platform.apply_with_bindings(&user, app_id, &create).await {
                Ok(effects) => {
                    if let Err(error) = platform.carry_out(app_id, effects).await {
                        platform.remove_app(app_id).await;
                        return Err(error);
                    }
                    Ok(name)
                }
                Err(error) => {
                    platform.remove_app(app_id).await;
                    Err(error)
                }
            }
        })
        .await
    }

    /// `PUT /apps/:name`: the whole document as the client last read it, changed.
    pub async fn update_app(&self, user: &str, name: &str, body: &Value) -> Result<(), ApiError> {
        let update = AppUpdate::parse(body)?;
        let app_id = self.state().app_id(user, name)?;
        let (platform, user) = (self.clone(), user.to_owned());
        self.to_completion(async move {
            let _guard = platform.lock_app(app_id).await;
            let effects = platform.apply_with_bindings(&user, app_id, &update).await?;
            platform.carry_out(app_id, effects).await
        })
        .await
    }

    /// [`Platform::apply`], with the bindings it makes and breaks: the new ones are made first (a
    /// node creates a user, which takes a while, outside the state's lock) and dropped again if
    /// the update is refused; the old ones are dropped once it is applied.
    async fn apply_with_bindings(
        &self,
        user: &str,
        app_id: u64,
        update: &AppUpdate,
    ) -> Result<Effects, ApiError> {
        let Some(requested) = &update.services else {
            return self.apply(user, app_id, update, BTreeMap::new());
        };
        let (to_bind, to_unbind) = {
            let state = self.state();
            let app = state.apps.get(&app_id).ok_or(ApiError::AppNotFound)?;
            let mut to_bind = Vec::new();
            for name in requested {
                let service = state
                    .services_of(user)
                    .find(|s| &s.name == name)
                    .ok_or(ApiError::ServiceNotFound)?;
                if !app.services.contains(name)
                    && !to_bind.iter().any(|s: &Service| &s.name == name)
                {
                    to_bind.push(service.clone());
                }
            }
            let to_unbind: Vec<(Service, Value)> = state
                .bound_services(app)
                .into_iter()
                .filter(|(s, _)| !requested.contains(&s.name) && app.bindings.contains_key(&s.name))
                .collect();
            (to_bind, to_unbind)
        };
        let mut made: Vec<(Service, Value)> = Vec::new();
        for service in to_bind {
            match self.bind(&service).await {
                Ok(binding) => made.push((service, binding)),
                Err(error) => {
                    for (service, binding) in &made {
                        self.unbind(service, binding).await;
                    }
                    return Err(error);
                }
            }
        }
        let new_bindings = made
            .iter()
            .map(|(s, binding)| (s.name.clone(), binding.clone()))
            .collect();
        match self.apply(user, app_id, update, new_bindings) {
            Ok(effects) => {
                for (service, binding) in &to_unbind {
                    self.unbind(service, binding).await;
                }
                Ok(effects)
            }
            Err(error) => {
                for (service, binding) in &made {
                    self.unbind(service, binding).await;
                }
                Err(error)
            }
        }
    }

    /// Validates every field of an update, then applies all of them at once (or none), in v1's
    /// order (`update_app_from_params`), and publishes the routes they change.
    /// `new_bindings` are the credentials of the services the update binds (made already).
    fn apply(
        &self,
        user: &str,
        app_id: u64,
        update: &AppUpdate,
        new_bindings: BTreeMap<String, Value>,
    ) -> Result<Effects, ApiError> {
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
            app.bindings.retain(|name, _| bound.contains(name));
            app.bindings.extend(new_bindings);
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
        let previous_uris = app.uris.clone();
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
        // What changed, as an event on the journal's timeline (the dashboard shows it).
        let app = state.apps.get(&app_id).expect("applied above");
        let mut change = serde_json::Map::new();
        let mapped: Vec<&String> = app
            .uris
            .iter()
            .filter(|u| !previous_uris.contains(u))
            .collect();
        let unmapped: Vec<&String> = previous_uris
            .iter()
            .filter(|u| !app.uris.contains(u))
            .collect();
        if !mapped.is_empty() {
            change.insert("map".into(), json!(mapped));
        }
        if !unmapped.is_empty() {
            change.insert("unmap".into(), json!(unmapped));
        }
        if new_state != previous_state {
            change.insert("state".into(), json!(new_state.as_str()));
        }
        if instances != previous_instances {
            change.insert("instances".into(), json!(instances));
        }
        if !change.is_empty() {
            change.insert("app".into(), json!(app.name));
            self.journal().record_event("app", Value::Object(change));
        }
        // A stop unregisters here, in the same step as the change; the kill comes after.
        self.publish(&state);
        Ok(effects)
    }

    /// `DELETE /apps/:name`: stop everything, forget the app, remove its files.
    pub async fn delete_app(&self, user: &str, name: &str) -> Result<(), ApiError> {
        let app_id = self.state().app_id(user, name)?;
        let _guard = self.lock_app(app_id).await;
        self.remove_app(app_id).await;
        Ok(())
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
            let summary = packages::check_zip(zip.path(), max_unpacked)?;
            packages::check_totals(summary, &resources_for_hash, max_unpacked)?;
            let zip_sha1 =
                packages::sha1_file(zip.path()).map_err(|e| ApiError::System(e.to_string()))?;
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
        app.releases.push(super::state::Release {
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
