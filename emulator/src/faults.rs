//! Faults, injected at start (`afemu serve` flags, the harness builder) or live through
//! `PUT /_afemu/faults`: late route propagation, a crash now or after N requests, a slow start, a
//! failed staging, a hanging backend, a hard stop. Each one applied is recorded in the journal as
//! an event, so a run's report says what was done to it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::route_feed::RouteDelay;

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
