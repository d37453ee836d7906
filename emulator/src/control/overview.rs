//! The whole platform at a glance, for the live feed (`/_afemu/live`) and the dashboard: every
//! app of every user with its instances as the DEA runs them (state, port, uptime, CPU, memory),
//! its URIs, its services, its crashes.

use std::sync::Arc;

use serde_json::{Value, json};

use super::Platform;
use super::state::{AppState, InstanceState};
use crate::clock::epoch_seconds;

impl Platform {
    /// Every app, by owner and name, with its instances measured now.
    pub async fn overview(&self) -> Value {
        /// An instance as read under the lock; the DEA measures the running ones.
        struct InstanceRow {
            index: u32,
            state: &'static str,
            since: u64,
            version: Arc<str>,
            /// Set while it runs.
            id: Option<Arc<str>>,
        }
        struct Row {
            owner: String,
            name: String,
            state: &'static str,
            uris: Vec<String>,
            services: Vec<String>,
            instances: u32,
            crashes: usize,
            running: Vec<InstanceRow>,
        }
        let rows: Vec<Row> = {
            let state = self.state();
            let mut rows: Vec<Row> = state
                .apps
                .values()
                .map(|app| Row {
                    owner: app.owner.clone(),
                    name: app.name.clone(),
                    state: match app.state {
                        AppState::Started => "STARTED",
                        AppState::Stopped => "STOPPED",
                    },
                    uris: app.uris.clone(),
                    services: app.services.clone(),
                    instances: app.instances,
                    crashes: app.crashes.len(),
                    running: app
                        .running
                        .values()
                        .map(|i| InstanceRow {
                            index: i.index,
                            state: i.state.as_str(),
                            since: i.since,
                            version: i.version.clone(),
                            id: (i.state == InstanceState::Running).then(|| i.id.clone()),
                        })
                        .collect(),
                })
                .collect();
            rows.sort_by(|a, b| (&a.name, &a.owner).cmp(&(&b.name, &b.owner)));
            rows
        };
        let measured = self
            .inner
            .dea
            .measure(
                rows.iter()
                    .flat_map(|r| r.running.iter().filter_map(|i| i.id.clone()))
                    .collect(),
            )
            .await;
        let now = epoch_seconds();
        let apps: Vec<Value> = rows
            .into_iter()
            .map(|row| {
                let instances: Vec<Value> = row
                    .running
                    .iter()
                    .map(|i| {
                        let measure = i.id.as_ref().and_then(|id| measured.get(id));
                        json!({
                            "index": i.index,
                            "state": i.state,
                            "since": i.since,
                            "uptime_s": now.saturating_sub(i.since),
                            "version": i.version,
                            "port": measure.map(|m| m.port),
                            "cpu": measure.map(|m| (m.cpu * 10.0).round() / 10.0),
                            "mem_kib": measure.map(|m| m.mem_kib),
                        })
                    })
                    .collect();
                json!({
                    "owner": row.owner,
                    "name": row.name,
                    "state": row.state,
                    "instances_wanted": row.instances,
                    "instances": instances,
                    "flapping": row.running.iter().any(|i| i.state == "FLAPPING"),
                    "crashes": row.crashes,
                    "uris": row.uris,
                    "services": row.services,
                })
            })
            .collect();
        json!({ "apps": apps })
    }

    /// The route table as `/_afemu/routes` and the live feed show it.
    pub fn routes_document(&self) -> Value {
        let table = self.routes().snapshot();
        let mut hosts: Vec<(String, Value)> = table
            .hosts()
            .map(|route| {
                let backends: Vec<_> = route
                    .backends()
                    .iter()
                    .map(|b| json!({"app": b.app(), "instance": b.instance_index(), "version": b.version()}))
                    .collect();
                (route.host().to_string(), json!(backends))
            })
            .collect();
        hosts.sort_by(|a, b| a.0.cmp(&b.0));
        json!({
            "version": table.version(),
            // Whether every route change made has reached the router (see --route-delay).
            "settled": self.routes_settled(),
            "apps": self.app_count(),
            "hosts": hosts.into_iter().collect::<serde_json::Map<_, _>>(),
        })
    }
}
