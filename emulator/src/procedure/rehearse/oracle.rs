//! Where a rehearsal learns what happened: the emulator it started (in process), or a running one
//! over HTTP (`--target`, `--router`) through the same `/_afemu/` endpoints any test can use.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};

use super::report::Request;
use super::{PASSWORD, RehearseError, USER};
use crate::harness::Emulator;

/// The in-process emulator, or a running one.
pub(super) enum Oracle {
    Local(Box<Emulator>),
    Remote {
        api: String,
        router: SocketAddr,
        http: reqwest::Client,
        /// The rehearsal user's token, for the v1 API.
        token: String,
    },
}

/// What the router routes a host to: `(app, version)` per backend.
pub(super) type Backends = Vec<(String, String)>;

impl Oracle {
    /// A running emulator: checked to hold no app (or reset first, with `reset`), and logged in.
    pub(super) async fn remote(
        api: &str,
        router: &str,
        reset: bool,
    ) -> Result<Oracle, RehearseError> {
        let router = router
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .map_err(|e| {
                RehearseError::Setup(format!(
                    "--router {router}: expected http://HOST:PORT with an IP address ({e})"
                ))
            })?;
        let api = api.trim_end_matches('/').to_owned();
        let http = reqwest::Client::new();
        let unreachable = |e: reqwest::Error| RehearseError::Setup(format!("--target {api}: {e}"));
        if reset {
            let response = http
                .post(format!("{api}/_afemu/reset"))
                .send()
                .await
                .map_err(unreachable)?;
            if !response.status().is_success() {
                return Err(RehearseError::Setup(format!(
                    "--reset: {api}/_afemu/reset answered {} (from another machine it wants the admin token)",
                    response.status()
                )));
            }
        }
        let routes: Value = http
            .get(format!("{api}/_afemu/routes"))
            .send()
            .await
            .map_err(unreachable)?
            .json()
            .await
            .map_err(|e| RehearseError::Setup(format!("--target {api}: not an afemu API ({e})")))?;
        let apps = routes["apps"].as_u64().unwrap_or(0);
        if apps > 0 {
            return Err(RehearseError::Setup(format!(
                "--target {api} already holds {apps} app{}: what a rehearsal observes there would \
                 depend on them; give --reset to start from a clean slate",
                if apps == 1 { "" } else { "s" }
            )));
        }
        let login: Value = http
            .post(format!("{api}/users/{USER}/tokens"))
            .json(&json!({"password": PASSWORD}))
            .send()
            .await
            .map_err(unreachable)?
            .json()
            .await
            .map_err(|e| RehearseError::Setup(format!("--target {api}: login failed ({e})")))?;
        let token = login["token"]
            .as_str()
            .ok_or_else(|| RehearseError::Setup(format!("--target {api}: login failed: {login}")))?
            .to_owned();
        Ok(Oracle::Remote {
            api,
            router,
            http,
            token,
        })
    }

    pub(super) fn api_url(&self) -> String {
        match self {
            // `localhost`, as a person would target it (af derives default URLs from the
            // target; 127.0.0.1 would give odd ones).
            Oracle::Local(emu) => format!("http://localhost:{}", emu.api_addr().port()),
            Oracle::Remote { api, .. } => api.clone(),
        }
    }

    pub(super) fn router_addr(&self) -> SocketAddr {
        match self {
            Oracle::Local(emu) => emu.router_addr(),
            Oracle::Remote { router, .. } => *router,
        }
    }

    /// A GET of `path` on `host` through the router, as a visitor would: status and body.
    pub(super) async fn read(&self, host: &str, path: &str) -> Result<(u16, String), String> {
        let response = reqwest::Client::new()
            .get(format!("http://{}{path}", self.router_addr()))
            .header(reqwest::header::HOST, host)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(|e| e.to_string())?;
        Ok((status, body))
    }

    pub(super) fn local(&self) -> Option<&Emulator> {
        match self {
            Oracle::Local(emu) => Some(emu),
            Oracle::Remote { .. } => None,
        }
    }

    pub(super) async fn last_seq(&self) -> u64 {
        match self {
            Oracle::Local(emu) => emu.journal().last_seq(),
            Oracle::Remote { api, http, .. } => {
                let counters: Option<Value> =
                    match http.get(format!("{api}/_afemu/counters")).send().await {
                        Ok(response) => response.json().await.ok(),
                        Err(_) => None,
                    };
                counters.and_then(|c| c["last_seq"].as_u64()).unwrap_or(0)
            }
        }
    }

    /// Requests after `seq`, waiting up to `wait` for one when there is none.
    pub(super) async fn since(&self, seq: u64, wait: Duration) -> Vec<Request> {
        match self {
            Oracle::Local(emu) => {
                let journal = emu.journal();
                let mut entries = journal.since(seq);
                // Waits for a request, not for a number: events (a fault, a service) take
                // sequence numbers too, and answering at once for them would spin the caller.
                if entries.is_empty() && !wait.is_zero() {
                    journal.wait_for(seq, wait, |_| true).await;
                    entries = journal.since(seq);
                }
                entries
                    .iter()
                    .map(|e| Request {
                        seq: e.seq,
                        start_us: e.start_us,
                        end_us: e.end_us,
                        host: e.host.to_string(),
                        path: e.path.clone(),
                        status: e.status,
                        app: e.app.as_deref().map(str::to_owned),
                        instance: e.instance,
                        version: e.version.as_deref().map(str::to_owned),
                        router_error: e.router_error.map(|r| r.as_str().to_owned()),
                        aborted: e.aborted,
                    })
                    .collect()
            }
            Oracle::Remote { api, http, .. } => {
                let wait = humantime::format_duration(wait)
                    .to_string()
                    .replace(' ', "");
                let url = format!("{api}/_afemu/journal?since={seq}&wait={wait}");
                let Ok(response) = http.get(url).send().await else {
                    return Vec::new();
                };
                let text = response.text().await.unwrap_or_default();
                text.lines()
                    .filter_map(|line| serde_json::from_str::<Request>(line).ok())
                    .collect()
            }
        }
    }

    /// Host → what its backends run, now.
    pub(super) async fn routes(&self) -> BTreeMap<String, Backends> {
        match self {
            Oracle::Local(emu) => emu
                .routes()
                .snapshot()
                .hosts()
                .map(|route| {
                    let backends = route
                        .backends()
                        .iter()
                        .map(|b| (b.app().to_string(), b.version().to_string()))
                        .collect();
                    (route.host().to_string(), backends)
                })
                .collect(),
            Oracle::Remote { .. } => {
                let table = self.routes_document().await;
                table["hosts"]
                    .as_object()
                    .map(|hosts| {
                        hosts
                            .iter()
                            .map(|(host, backends)| {
                                let apps = backends
                                    .as_array()
                                    .into_iter()
                                    .flatten()
                                    .map(|b| {
                                        (
                                            b["app"].as_str().unwrap_or_default().to_owned(),
                                            b["version"].as_str().unwrap_or_default().to_owned(),
                                        )
                                    })
                                    .collect();
                                (host.clone(), apps)
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            }
        }
    }

    async fn routes_document(&self) -> Value {
        match self {
            Oracle::Local(_) => Value::Null,
            Oracle::Remote { api, http, .. } => {
                match http.get(format!("{api}/_afemu/routes")).send().await {
                    Ok(response) => response.json().await.unwrap_or(Value::Null),
                    Err(_) => Value::Null,
                }
            }
        }
    }

    /// Waits until every route change made so far has reached the router (or `limit`).
    pub(super) async fn settle(&self, limit: Duration) -> bool {
        match self {
            Oracle::Local(emu) => emu.platform().wait_routes_settled(limit).await,
            Oracle::Remote { .. } => {
                let deadline = tokio::time::Instant::now() + limit;
                loop {
                    if self.routes_document().await["settled"] == json!(true) {
                        return true;
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return false;
                    }
                    // Over HTTP there is nothing to wait on but the next look.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    /// The longest a route change may take to reach the router.
    pub(super) async fn longest_route_delay(&self) -> Duration {
        match self {
            Oracle::Local(emu) => emu.platform().longest_route_delay(),
            Oracle::Remote { api, http, .. } => {
                let faults: Value = match http.get(format!("{api}/_afemu/faults")).send().await {
                    Ok(response) => response.json().await.unwrap_or(Value::Null),
                    Err(_) => Value::Null,
                };
                faults["route_delay"]
                    .as_str()
                    .and_then(|d| d.parse::<crate::config::RouteDelay>().ok())
                    .map_or(Duration::ZERO, |d| d.max)
            }
        }
    }

    /// The app's version now (v1's `<droplet>-<run_count>`), as its document says.
    pub(super) async fn app_version(&self, app: &str) -> Option<String> {
        match self {
            Oracle::Local(emu) => emu
                .platform()
                .app_document(USER, app)
                .ok()
                .and_then(|doc| doc["version"].as_str().map(str::to_owned)),
            Oracle::Remote {
                api, http, token, ..
            } => {
                let doc: Value = http
                    .get(format!("{api}/apps/{app}"))
                    .header("AUTHORIZATION", token)
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                doc["version"].as_str().map(str::to_owned)
            }
        }
    }

    /// Applies faults to a running emulator, as `PUT /_afemu/faults` does.
    /// Marks a step of the runbook on the emulator's timeline (the dashboard shows it). A mark
    /// that cannot be made changes nothing of the rehearsal.
    pub(super) async fn mark_step(&self, detail: Value) {
        match self {
            Oracle::Local(emu) => {
                emu.journal().record_event("step", detail);
            }
            Oracle::Remote { api, http, .. } => {
                let _ = http
                    .post(format!("{api}/_afemu/events"))
                    .json(&serde_json::json!({"event": "step", "detail": detail}))
                    .send()
                    .await;
            }
        }
    }

    pub(super) async fn apply_faults(&self, body: &Value) -> Result<(), RehearseError> {
        match self {
            Oracle::Local(emu) => emu
                .inject(body.clone())
                .map(|_| ())
                .map_err(|e| RehearseError::Setup(format!("faults: {e}"))),
            Oracle::Remote { api, http, .. } => {
                let response = http
                    .put(format!("{api}/_afemu/faults"))
                    .json(body)
                    .send()
                    .await
                    .map_err(|e| RehearseError::Setup(format!("faults: {e}")))?;
                if response.status().is_success() {
                    Ok(())
                } else {
                    Err(RehearseError::Setup(format!(
                        "faults: {api}/_afemu/faults answered {}: {}",
                        response.status(),
                        response.text().await.unwrap_or_default()
                    )))
                }
            }
        }
    }
}
