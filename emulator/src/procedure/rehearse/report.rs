//! What a rehearsal found, as data: every step with the traffic during and after it, the
//! expectations and whether they held, and every request for the timeline. `--json` writes this
//! as it is; the terminal, JUnit and HTML reports are drawn from it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::procedure::check::Outcome;

/// One request as the journal recorded it (local or fetched from `/_afemu/journal`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Request {
    pub seq: u64,
    pub start_us: u64,
    pub end_us: u64,
    pub host: String,
    pub path: String,
    pub status: u16,
    #[serde(default)]
    pub app: Option<String>,
    #[serde(default)]
    pub instance: Option<u32>,
    /// The version the instance runs (v1's `<droplet>-<run_count>`).
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub router_error: Option<String>,
    #[serde(default)]
    pub aborted: bool,
}

impl Request {
    /// The platform's default error page (not a 400 for a request without a host).
    pub fn is_default_error_page(&self) -> bool {
        self.router_error
            .as_deref()
            .is_some_and(|e| e != "bad-request")
    }

    /// Answered by the app itself (not the router's own page).
    pub fn served_by(&self, app: &str) -> bool {
        self.router_error.is_none() && self.app.as_deref() == Some(app)
    }
}

/// The whole report.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Report {
    pub runbook: String,
    pub profile: String,
    /// The faults the emulator ran with, in a phrase (`none`).
    pub faults: String,
    /// With `--replay`: what the traffic saw at the end of the schedule.
    pub replayed: Option<String>,
    /// When the rehearsal began, in microseconds since the Unix epoch; times below are
    /// milliseconds from then.
    pub started_us: u64,
    pub duration_ms: f64,
    /// The hosts that got traffic.
    pub hosts: Vec<String>,
    pub steps: Vec<StepReport>,
    pub expectations: Vec<Expectation>,
    /// Every request on a traffic host, for the timeline.
    pub requests: Vec<TimelinePoint>,
    /// Per host over the whole run.
    pub totals: BTreeMap<String, TrafficStats>,
    pub passed: bool,
    /// One line saying so.
    pub verdict: String,
}

/// One runbook line as it ran.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct StepReport {
    pub line: usize,
    pub text: String,
    /// `setup` (before traffic), `step` (an af command), `directive`, or `end` (after the last
    /// line: every route change lands, every traffic host is asked once more).
    pub kind: String,
    pub started_ms: f64,
    pub took_ms: f64,
    /// What happened: `ok`, `failed …`, `timed out …`, or `not run` (after a failed line).
    pub result: String,
    /// What af printed (kept for every af step; shown when it failed).
    pub output: String,
    /// The requests sent from the step's start to the next step's, per host.
    pub traffic: BTreeMap<String, TrafficStats>,
}

/// Requests in a window, for one host.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct TrafficStats {
    pub requests: u64,
    /// Requests served by each app.
    pub served_by: BTreeMap<String, u64>,
    pub default_error_pages: u64,
    /// When the first default error page was seen, from the start of the rehearsal.
    pub first_error_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// One expectation and whether it held.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Expectation {
    /// `no-default-error-page example.com`, `served-by example2 example.com`, or a step.
    pub name: String,
    /// The runbook line that states it (none for the implied ones).
    pub line: Option<usize>,
    pub outcome: Outcome,
    pub detail: String,
    /// The first offending requests, each with the step it fell in.
    pub offending: Vec<Offending>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Offending {
    pub at_ms: f64,
    pub host: String,
    pub path: String,
    pub status: u16,
    pub router_error: Option<String>,
    /// The runbook line and text of the step the request fell in.
    pub step_line: usize,
    pub step: String,
    /// When that line is a directive (a wait, say): the last af command before it, which is
    /// what changed the routes.
    #[serde(default)]
    pub after: Option<String>,
}

/// A request on the timeline: when, which host (index into `hosts`), who served it (an app
/// name, or none for the router's own page) and the status.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct TimelinePoint {
    pub at_ms: f64,
    pub host: usize,
    pub app: Option<String>,
    pub status: u16,
    pub error: bool,
}

/// Statistics of some requests: counts, who served them, errors, latency percentiles.
pub fn stats<'a>(requests: impl IntoIterator<Item = &'a Request>, started_us: u64) -> TrafficStats {
    let mut stats = TrafficStats::default();
    let mut latencies = Vec::new();
    for request in requests {
        stats.requests += 1;
        latencies.push(request.end_us.saturating_sub(request.start_us) as f64 / 1000.0);
        if request.is_default_error_page() {
            stats.default_error_pages += 1;
            let at = ms_since(started_us, request.start_us);
            if stats.first_error_ms.is_none_or(|first| at < first) {
                stats.first_error_ms = Some(at);
            }
        } else if let Some(app) = &request.app {
            *stats.served_by.entry(app.clone()).or_default() += 1;
        }
    }
    latencies.sort_by(f64::total_cmp);
    stats.p50_ms = percentile(&latencies, 0.50);
    stats.p99_ms = percentile(&latencies, 0.99);
    stats
}

/// The nearest-rank percentile of sorted values.
/// Who answered some requests, as shares: `example2 60%, example 30%, default error page 10%`
/// (the router's own pages are a share of their own, never an app's).
pub fn shares<'a>(requests: impl IntoIterator<Item = &'a Request>) -> String {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut errors = 0u64;
    let mut total = 0u64;
    for request in requests {
        total += 1;
        if request.is_default_error_page() {
            errors += 1;
        } else {
            let who = match (&request.app, &request.router_error) {
                (Some(app), None) => app.clone(),
                (_, Some(error)) => format!("router {error}"),
                (None, None) => "nothing".into(),
            };
            *counts.entry(who).or_default() += 1;
        }
    }
    let mut parts: Vec<(u64, String)> = counts.into_iter().map(|(who, n)| (n, who)).collect();
    parts.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    if errors > 0 {
        parts.push((errors, "default error page".into()));
    }
    parts
        .iter()
        .map(|(n, who)| format!("{who} {}", percent(*n, total)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A share in whole percent, never rounded to 0% or 100% when it is neither.
pub fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".into();
    }
    let value = 100.0 * part as f64 / whole as f64;
    if part > 0 && value < 1.0 {
        "<1%".into()
    } else if part < whole && value > 99.0 {
        ">99%".into()
    } else {
        format!("{value:.0}%")
    }
}

pub fn percentile(sorted: &[f64], fraction: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (fraction * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

pub fn ms_since(started_us: u64, at_us: u64) -> f64 {
    (at_us as f64 - started_us as f64) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(start_ms: u64, took_ms: u64, app: Option<&str>, error: Option<&str>) -> Request {
        Request {
            seq: start_ms,
            start_us: start_ms * 1000,
            end_us: (start_ms + took_ms) * 1000,
            host: "a.com".into(),
            path: "/".into(),
            status: if error.is_some() { 404 } else { 200 },
            app: app.map(Into::into),
            instance: app.map(|_| 0),
            version: app.map(|_| "v-1".into()),
            router_error: error.map(Into::into),
            aborted: false,
        }
    }

    #[test]
    fn window_statistics() {
        let requests = [
            request(10, 1, Some("blue"), None),
            request(20, 2, Some("green"), None),
            request(30, 3, None, Some("no-route")),
            request(25, 4, None, Some("no-route")),
            request(40, 10, Some("blue"), None),
        ];
        let stats = stats(&requests, 0);
        assert_eq!(stats.requests, 5);
        assert_eq!(
            stats.served_by,
            BTreeMap::from([("blue".into(), 2), ("green".into(), 1)])
        );
        assert_eq!(stats.default_error_pages, 2);
        assert_eq!(stats.first_error_ms, Some(25.0));
        assert_eq!(stats.p50_ms, Some(3.0));
        assert_eq!(stats.p99_ms, Some(10.0));
    }

    #[test]
    fn error_pages_are_a_share_of_their_own() {
        let mut requests = vec![request(1, 1, Some("example"), None)];
        requests.extend((0..3).map(|i| request(2 + i, 1, None, Some("no-route"))));
        assert_eq!(shares(&requests), "example 25%, default error page 75%");
        let many: Vec<Request> = (0..300)
            .map(|i| request(i, 1, Some("example"), None))
            .chain([request(400, 1, None, Some("timeout"))])
            .collect();
        assert_eq!(shares(&many), "example >99%, default error page <1%");
        assert_eq!(shares(&[]), "");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.5), Some(50.0));
        assert_eq!(percentile(&values, 0.99), Some(99.0));
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn a_bad_request_is_not_the_default_error_page() {
        assert!(!request(0, 0, None, Some("bad-request")).is_default_error_page());
        assert!(request(0, 0, None, Some("bad-gateway")).is_default_error_page());
    }
}
