//! `GET /_afemu/live`: the platform as it changes, pushed as Server-Sent Events, for the
//! dashboard and for anything else that watches a procedure while it runs.
//!
//! The first message (`event: snapshot`) is everything at once: the route table, every app with
//! its instances, the faults in force, the counters and the recent platform events. After it,
//! one `event: tick` message per 100 ms at most, only when something changed, holding what did:
//!
//! - `traffic`: per host, the requests in that window, split by the app that served them, and
//!   the default error pages (from the counters, which never drop a request, so the sums are
//!   exact whatever the load);
//! - `events`: platform events (a map, a fault, a crash, a service) since the last message;
//! - `routes`: the route table, when its version changed;
//! - `apps`: every app with its instances, when anything about them changed (looked at once a
//!   second: CPU and memory are measured then);
//! - `faults`: the faults in force, when they changed;
//! - `requests`: the journal's tail, the last 50 requests of the window at most.
//!
//! So a browser receives at most ten messages a second, whatever the traffic.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::Stream;
use serde_json::{Value, json};

use crate::control::Platform;

/// How often the feed looks, and so the most messages a second it sends (ten).
const TICK: Duration = Duration::from_millis(100);
/// How many ticks between two looks at the apps (their CPU and memory are measured then).
const APPS_EVERY: u64 = 10;
/// How many past platform events the snapshot carries.
const RECENT_EVENTS: usize = 200;
/// The most requests of the journal's tail one message carries.
const TAIL: usize = 50;

pub(super) async fn live(
    State(platform): State<Platform>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let feed = Feed::new(platform);
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        let event = feed.next().await;
        Some((Ok(event), feed))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// One client's view: what it has been sent, so that it is sent only what changed.
struct Feed {
    platform: Platform,
    started: bool,
    ticker: tokio::time::Interval,
    ticks: u64,
    counters: BTreeMap<String, afemu_router::journal::HostCountersSnapshot>,
    last_event: u64,
    last_request: u64,
    routes_version: u64,
    apps: Value,
    faults: Value,
}

impl Feed {
    fn new(platform: Platform) -> Feed {
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        Feed {
            platform,
            started: false,
            ticker,
            ticks: 0,
            counters: BTreeMap::new(),
            last_event: 0,
            last_request: 0,
            routes_version: 0,
            apps: Value::Null,
            faults: Value::Null,
        }
    }

    /// The next message: the snapshot first, then a tick as soon as one has something in it.
    async fn next(&mut self) -> Event {
        if !self.started {
            self.started = true;
            return Event::default()
                .event("snapshot")
                .data(self.snapshot().await.to_string());
        }
        loop {
            self.ticker.tick().await;
            self.ticks += 1;
            if let Some(tick) = self.tick().await {
                return Event::default().event("tick").data(tick.to_string());
            }
        }
    }

    async fn snapshot(&mut self) -> Value {
        let journal = self.platform.journal();
        self.counters = journal.counters();
        let events = journal.events_since(0);
        self.last_event = events.last().map_or(0, |e| e.seq);
        self.last_request = journal.last_seq();
        let routes = self.platform.routes_document();
        self.routes_version = self.platform.routes().version();
        self.apps = self.platform.overview().await["apps"].take();
        self.faults = self.platform.faults_document();
        let recent = &events[events.len().saturating_sub(RECENT_EVENTS)..];
        json!({
            "t_ms": now_ms(),
            "tick_ms": TICK.as_millis() as u64,
            "routes": routes,
            "apps": self.apps,
            "faults": self.faults,
            "counters": self.counters,
            "events": recent,
        })
    }

    /// What changed since the last message, or `None` when nothing did.
    async fn tick(&mut self) -> Option<Value> {
        let mut out = serde_json::Map::new();
        let journal = self.platform.journal();

        let counters = journal.counters();
        let mut traffic = serde_json::Map::new();
        for (host, now) in &counters {
            let before = self.counters.get(host);
            let requests = now.requests - before.map_or(0, |b| b.requests);
            if requests == 0 {
                continue;
            }
            let apps: serde_json::Map<String, Value> = now
                .served_by
                .iter()
                .filter_map(|(app, n)| {
                    let was = before
                        .and_then(|b| b.served_by.get(app))
                        .copied()
                        .unwrap_or(0);
                    (*n > was).then(|| (app.clone(), json!(n - was)))
                })
                .collect();
            traffic.insert(
                host.clone(),
                json!({
                    "requests": requests,
                    "default_error_pages": now.default_error_pages
                        - before.map_or(0, |b| b.default_error_pages),
                    "apps": apps,
                    // The running totals, which never drop.
                    "total": now.requests,
                    "total_default_error_pages": now.default_error_pages,
                }),
            );
        }
        self.counters = counters;
        if !traffic.is_empty() {
            out.insert("traffic".into(), Value::Object(traffic));
        }

        // Only the tail is copied, however much the router journaled since the last look.
        let requests = journal.tail(self.last_request, TAIL);
        if let Some(last) = requests.last() {
            self.last_request = last.seq;
            let tail: Vec<Value> = requests
                .iter()
                .map(|r| {
                    json!({
                        "start_us": r.start_us,
                        "host": r.host,
                        "path": r.path,
                        "status": r.status,
                        "app": r.app,
                        "instance": r.instance,
                        "router_error": r.router_error.map(|e| e.as_str()),
                    })
                })
                .collect();
            out.insert("requests".into(), json!(tail));
        }

        let events = journal.events_since(self.last_event);
        if let Some(last) = events.last() {
            self.last_event = last.seq;
            let faults = self.platform.faults_document();
            if faults != self.faults {
                self.faults = faults.clone();
                out.insert("faults".into(), faults);
            }
            out.insert("events".into(), json!(events));
        }

        let version = self.platform.routes().version();
        if version != self.routes_version {
            self.routes_version = version;
            out.insert("routes".into(), self.platform.routes_document());
        }

        // Apps change with events (a start, a crash) and with time (uptime, CPU): looked at
        // once a second, and at once after an event.
        if self.ticks.is_multiple_of(APPS_EVERY) || !events.is_empty() {
            let apps = self.platform.overview().await["apps"].take();
            if apps != self.apps {
                self.apps = apps.clone();
                out.insert("apps".into(), apps);
            }
        }

        if out.is_empty() {
            return None;
        }
        out.insert("t_ms".into(), json!(now_ms()));
        Some(Value::Object(out))
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
