//! Faults, injected at start (`afemu serve` flags, the harness builder) or live through
//! `PUT /_afemu/faults`: late route propagation, a crash now or after N requests, a slow start, a
//! failed staging, a hanging backend, a hard stop. Each one applied is recorded in the journal as
//! an event, so a run's report says what was done to it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::route_feed::RouteDelay;
use crate::error::ApiError;

use super::Platform;
use super::state::InstanceState;

/// The faults that stay in force until changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FaultState {
    /// Extra boot time per app (by name).
    pub(crate) slow_start: BTreeMap<String, Duration>,
    /// Apps (by name) whose staging fails.
    pub(crate) fail_staging: BTreeSet<String>,
    /// Stops kill at once, cutting requests in flight, as v1 did.
    pub(crate) stop_hard: bool,
}

impl FaultState {
    pub(crate) fn document(&self, route_delay: Option<RouteDelay>) -> Value {
        json!({
            "route_delay": route_delay.map(|d| d.to_string()),
            "slow_start": self
                .slow_start
                .iter()
                .map(|(app, delay)| (app.clone(), json!(humantime::format_duration(*delay).to_string())))
                .collect::<serde_json::Map<_, _>>(),
            "fail_staging": self.fail_staging,
            "stop": if self.stop_hard { "hard" } else { "drain" },
        })
    }
}

/// One `PUT /_afemu/faults` body: any of these keys, each applied.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FaultUpdate {
    /// `"MIN..MAX"`, or null to deliver route changes at once again.
    #[serde(default, deserialize_with = "some_or_null")]
    pub(crate) route_delay: Option<Option<String>>,
    /// Re-seeds the random choices of the faults.
    pub(crate) seed: Option<u64>,
    pub(crate) crash: Option<CrashFault>,
    pub(crate) hang: Option<InstanceRef>,
    pub(crate) slow_start: Option<SlowStart>,
    pub(crate) fail_staging: Option<AppToggle>,
    /// `"hard"` or `"drain"`.
    pub(crate) stop: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InstanceRef {
    pub(crate) app: String,
    #[serde(default)]
    pub(crate) index: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CrashFault {
    pub(crate) app: String,
    #[serde(default)]
    pub(crate) index: u32,
    /// Crash once this many more requests have been served by the instance (0: now).
    #[serde(default)]
    pub(crate) after_requests: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SlowStart {
    pub(crate) app: String,
    /// A duration (`2s`), or null to start at the normal pace again.
    pub(crate) delay: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppToggle {
    pub(crate) app: String,
    #[serde(default = "yes")]
    pub(crate) enabled: bool,
}

fn yes() -> bool {
    true
}

/// Tells "absent" (leave it) from `null` (clear it).
fn some_or_null<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

impl FaultUpdate {
    pub(crate) fn parse(body: &Value) -> Result<FaultUpdate, ApiError> {
        serde_json::from_value(body.clone())
            .map_err(|e| ApiError::BadRequest(format!("faults: {e}")))
    }
}

pub(crate) fn parse_duration(text: &str) -> Result<Duration, ApiError> {
    humantime::parse_duration(text)
        .map_err(|e| ApiError::BadRequest(format!("{text:?} is not a duration: {e}")))
}

impl Platform {
    pub(super) fn faults(&self) -> std::sync::MutexGuard<'_, FaultState> {
        self.inner.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The faults in force, as `GET /_afemu/faults` shows them.
    pub fn faults_document(&self) -> Value {
        self.faults().document(self.inner.feed.delay())
    }

    /// Applies a `PUT /_afemu/faults` body; each fault applied is recorded in the journal.
    pub fn apply_faults(&self, body: &Value) -> Result<Value, ApiError> {
        let update = FaultUpdate::parse(body)?;
        // Check everything first: a bad part changes nothing.
        let route_delay = match &update.route_delay {
            Some(Some(text)) => Some(Some(
                text.parse::<RouteDelay>().map_err(ApiError::BadRequest)?,
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
            Some(crash) => Some((self.instance_id(&crash.app, crash.index)?, crash)),
            None => None,
        };
        let hang = match &update.hang {
            Some(hang) => Some((self.instance_id(&hang.app, hang.index)?, hang)),
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
        if let Some((instance_id, hang)) = hang {
            self.inner.dea.hang(&instance_id);
            journal.record_event(
                "fault",
                json!({"hang": {"app": hang.app, "index": hang.index}}),
            );
        }
        if let Some((instance_id, crash)) = crash {
            journal.record_event(
                "fault",
                json!({"crash": {"app": crash.app, "index": crash.index, "after_requests": crash.after_requests}}),
            );
            if crash.after_requests == 0 {
                self.inner.dea.crash(&instance_id);
            } else {
                self.crash_after_requests(
                    instance_id,
                    &crash.app,
                    crash.index,
                    crash.after_requests,
                );
            }
        }
        Ok(self.faults_document())
    }

    /// The id of a running (or starting) instance, by app name (any user's) and index.
    fn instance_id(&self, app: &str, index: u32) -> Result<std::sync::Arc<str>, ApiError> {
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
            .map(|i| i.id.clone())
            .ok_or_else(|| ApiError::InstanceNotFound(index.to_string()))
    }

    /// Crashes the instance once it has served `count` more requests (counted from the journal).
    fn crash_after_requests(
        &self,
        instance_id: std::sync::Arc<str>,
        app: &str,
        index: u32,
        count: u64,
    ) {
        let Some(ended) = self.inner.dea.ended(&instance_id) else {
            return;
        };
        let mut live = self.journal().subscribe();
        let app = app.to_owned();
        let shutdown = self.inner.shutdown.clone();
        let dea = self.inner.dea.clone();
        self.inner.tasks.spawn(async move {
            let mut served = 0;
            loop {
                let entry = tokio::select! {
                    entry = live.recv() => entry,
                    () = shutdown.cancelled() => return,
                    () = ended.cancelled() => return,
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
                    dea.crash(&instance_id);
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_parse_and_typos_are_refused() {
        let update = FaultUpdate::parse(&json!({
            "route_delay": "0..50ms",
            "crash": {"app": "web", "after_requests": 5},
            "stop": "hard"
        }))
        .unwrap();
        assert_eq!(update.route_delay, Some(Some("0..50ms".into())));
        assert_eq!(update.crash.as_ref().unwrap().after_requests, 5);
        let cleared = FaultUpdate::parse(&json!({"route_delay": null})).unwrap();
        assert_eq!(cleared.route_delay, Some(None));
        assert!(
            FaultUpdate::parse(&json!({}))
                .unwrap()
                .route_delay
                .is_none()
        );
        let error = FaultUpdate::parse(&json!({"crahs": {"app": "web"}})).unwrap_err();
        assert_eq!(error.code(), 100);
        assert!(FaultUpdate::parse(&json!({"crash": {"index": 0}})).is_err());
    }
}
