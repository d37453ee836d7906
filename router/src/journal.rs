//! The journal: every request the router answered, with who served it or which router error it
//! got. It is the oracle for "did any request see the default error page": the ring keeps the most
//! recent entries for queries, the counters never drop anything, and subscribers get a live stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use http::Method;
use serde::{Serialize, Serializer};
use tokio::sync::broadcast;

use crate::error_page::RouterError;

/// The default number of entries kept for queries; counters are kept for everything regardless.
pub const DEFAULT_CAPACITY: usize = 1 << 16;

/// One answered request.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct JournalEntry {
    /// Assigned when the request is over, from 1; entries are totally ordered by it.
    pub seq: u64,
    /// When the request arrived and when its response ended, in microseconds since the Unix epoch.
    pub start_us: u64,
    pub end_us: u64,
    /// The normalised host (the route key), or the raw one when it could not be normalised.
    pub host: Arc<str>,
    #[serde(serialize_with = "method_as_str")]
    pub method: Method,
    pub path: String,
    /// The status the client got: the app's, or the router's own page.
    pub status: u16,
    /// The version of the route table the request was routed with.
    pub route_table_version: u64,
    /// The app and instance chosen for the request (also set when that backend then failed).
    pub app: Option<Arc<str>>,
    pub instance: Option<u32>,
    /// Set when the router answered with its own error page instead of an app's response.
    pub router_error: Option<RouterError>,
    /// The response was cut before its end (the backend died or the client left mid-body).
    pub aborted: bool,
}

impl JournalEntry {
    /// Whether the client saw the platform's default error page (no route, bad gateway, timeout).
    pub fn is_default_error_page(&self) -> bool {
        self.router_error
            .is_some_and(|error| error.is_default_error_page())
    }

    pub fn served_by(&self, app: &str) -> bool {
        self.router_error.is_none() && self.app.as_deref() == Some(app)
    }
}

fn method_as_str<S: Serializer>(method: &Method, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(method.as_str())
}

/// What the proxy knows of a request before the journal numbers it.
#[derive(Debug)]
pub struct NewEntry {
    pub start: SystemTime,
    pub end: SystemTime,
    pub host: Arc<str>,
    pub method: Method,
    pub path: String,
    pub status: u16,
    pub route_table_version: u64,
    pub app: Option<Arc<str>>,
    pub instance: Option<u32>,
    pub router_error: Option<RouterError>,
    pub aborted: bool,
}

/// Counters for one host. They are never trimmed, so they stay exact however long a run is.
#[derive(Debug, Default)]
struct HostCounters {
    requests: AtomicU64,
    default_error_pages: AtomicU64,
    no_route: AtomicU64,
    bad_gateway: AtomicU64,
    timeout: AtomicU64,
    bad_request: AtomicU64,
    aborted: AtomicU64,
    served_by: Mutex<HashMap<Arc<str>, u64>>,
}

/// A copy of one host's counters.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct HostCountersSnapshot {
    pub requests: u64,
    pub default_error_pages: u64,
    pub no_route: u64,
    pub bad_gateway: u64,
    pub timeout: u64,
    pub bad_request: u64,
    pub aborted: u64,
    /// Requests answered by each app (router errors excluded).
    pub served_by: std::collections::BTreeMap<String, u64>,
}

/// Something that happened to the platform rather than to a request — a fault injected, a route
/// change delivered late — numbered in the same sequence as the requests, so the two interleave.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct JournalEvent {
    pub seq: u64,
    /// When, in microseconds since the Unix epoch.
    pub at_us: u64,
    /// What kind of event (`fault`, …).
    pub event: String,
    /// The details, as data.
    pub detail: serde_json::Value,
}

/// What a ring slot holds: a request, or the sequence number an event took (events live in their
/// own list; the mark lets readers of requests step over the number).
#[derive(Clone)]
enum Record {
    Request(Arc<JournalEntry>),
    Event(u64),
}

impl Record {
    fn seq(&self) -> u64 {
        match self {
            Record::Request(entry) => entry.seq,
            Record::Event(seq) => *seq,
        }
    }
}

/// The most events kept (they are rare: faults and the like).
const EVENT_CAPACITY: usize = 4096;

struct Inner {
    /// The last sequence number handed out.
    last_seq: AtomicU64,
    /// Platform events, oldest first, bounded.
    events: Mutex<std::collections::VecDeque<Arc<JournalEvent>>>,
    /// Everything up to this sequence number was forgotten by `clear`.
    cleared_through: AtomicU64,
    /// Entry `seq` lives in slot `seq % len`; one small lock per slot, so writers rarely meet.
    slots: Box<[Mutex<Option<Record>>]>,
    hosts: DashMap<Arc<str>, HostCounters>,
    live: broadcast::Sender<Arc<JournalEntry>>,
}

/// A cheap, clonable handle on the journal.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("last_seq", &self.last_seq())
            .field("capacity", &self.inner.slots.len())
            .finish()
    }
}

impl Default for Journal {
    fn default() -> Self {
        Journal::new(DEFAULT_CAPACITY)
    }
}

impl Journal {
    /// A journal that keeps the last `capacity` entries (at least 1).
    pub fn new(capacity: usize) -> Journal {
        let slots = (0..capacity.max(1)).map(|_| Mutex::new(None)).collect();
        let (live, _) = broadcast::channel(4096);
        Journal {
            inner: Arc::new(Inner {
                last_seq: AtomicU64::new(0),
                events: Mutex::new(std::collections::VecDeque::new()),
                cleared_through: AtomicU64::new(0),
                slots,
                hosts: DashMap::new(),
                live,
            }),
        }
    }

    pub fn capacity(&self) -> usize {
        self.inner.slots.len()
    }

    /// The sequence number of the newest entry (0 before the first request).
    pub fn last_seq(&self) -> u64 {
        self.inner.last_seq.load(Ordering::Acquire)
    }

    /// Numbers and stores an entry, counts it, and sends it to live subscribers.
    pub fn record(&self, new: NewEntry) -> Arc<JournalEntry> {
        self.count(&new);
        let seq = self.inner.last_seq.fetch_add(1, Ordering::AcqRel) + 1;
        let entry = Arc::new(JournalEntry {
            seq,
            start_us: micros(new.start),
            end_us: micros(new.end),
            host: new.host,
            method: new.method,
            path: new.path,
            status: new.status,
            route_table_version: new.route_table_version,
            app: new.app,
            instance: new.instance,
            router_error: new.router_error,
            aborted: new.aborted,
        });
        let slot = &self.inner.slots[(seq % self.inner.slots.len() as u64) as usize];
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(Record::Request(entry.clone()));
        if self.inner.live.receiver_count() > 0 {
            // Nobody listening is not an error; a lagging listener re-reads the ring.
            let _ = self.inner.live.send(entry.clone());
        }
        entry
    }

    fn count(&self, new: &NewEntry) {
        let counters = match self.inner.hosts.get(&new.host) {
            Some(counters) => counters,
            None => {
                self.inner.hosts.entry(new.host.clone()).or_default();
                self.inner.hosts.get(&new.host).expect("just inserted")
            }
        };
        counters.requests.fetch_add(1, Ordering::Relaxed);
        if new.aborted {
            counters.aborted.fetch_add(1, Ordering::Relaxed);
        }
        match new.router_error {
            Some(error) => {
                if error.is_default_error_page() {
                    counters.default_error_pages.fetch_add(1, Ordering::Relaxed);
                }
                let counter = match error {
                    RouterError::NoRoute => &counters.no_route,
                    RouterError::BadGateway => &counters.bad_gateway,
                    RouterError::Timeout => &counters.timeout,
                    RouterError::BadRequest => &counters.bad_request,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                if let Some(app) = &new.app {
                    let mut served = counters.served_by.lock().unwrap_or_else(|e| e.into_inner());
                    match served.get_mut(app) {
                        Some(count) => *count += 1,
                        None => {
                            served.insert(app.clone(), 1);
                        }
                    }
                }
            }
        }
    }

    /// The entries after `seq` still in the ring, in order. Stops before an entry that has been
    /// numbered but not stored yet, so a poller that continues from the last entry it got never
    /// skips one; entries overwritten by newer ones are gone (the counters still have them).
    pub fn since(&self, seq: u64) -> Vec<Arc<JournalEntry>> {
        let last = self.last_seq();
        let capacity = self.inner.slots.len() as u64;
        let first = seq
            .saturating_add(1)
            .max(last.saturating_sub(capacity - 1))
            .max(self.inner.cleared_through.load(Ordering::Acquire) + 1);
        let mut out = Vec::with_capacity(last.saturating_sub(first) as usize + 1);
        for wanted in first..=last {
            let slot = &self.inner.slots[(wanted % capacity) as usize];
            let record = slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
            match record {
                Some(Record::Request(entry)) if entry.seq == wanted => out.push(entry),
                // An event took this number: not a request.
                Some(Record::Event(seq)) if seq == wanted => continue,
                // Overwritten by a later lap: gone, skip it.
                Some(record) if record.seq() > wanted => continue,
                // Not stored yet: stop here, the caller will come back for it.
                _ => break,
            }
        }
        out
    }

    /// Records a platform event (a fault, say) in the same sequence as the requests.
    pub fn record_event(&self, event: &str, detail: serde_json::Value) -> Arc<JournalEvent> {
        let mut events = self.inner.events.lock().unwrap_or_else(|e| e.into_inner());
        let seq = self.inner.last_seq.fetch_add(1, Ordering::AcqRel) + 1;
        let entry = Arc::new(JournalEvent {
            seq,
            at_us: micros(SystemTime::now()),
            event: event.to_owned(),
            detail,
        });
        if events.len() == EVENT_CAPACITY {
            events.pop_front();
        }
        events.push_back(entry.clone());
        drop(events);
        let slot = &self.inner.slots[(seq % self.inner.slots.len() as u64) as usize];
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(Record::Event(seq));
        entry
    }

    /// Forgets every entry, event and counter (sequence numbers keep increasing, so a poller is
    /// not confused): `POST /_afemu/reset`.
    pub fn clear(&self) {
        self.inner
            .cleared_through
            .store(self.last_seq(), Ordering::Release);
        for slot in &self.inner.slots {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        self.inner
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.inner.hosts.clear();
    }

    /// The events after `seq`, oldest first.
    pub fn events_since(&self, seq: u64) -> Vec<Arc<JournalEvent>> {
        self.inner
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|e| e.seq > seq)
            .cloned()
            .collect()
    }

    /// A live stream of entries as they are recorded.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<JournalEntry>> {
        self.inner.live.subscribe()
    }

    /// Waits for the first entry after `since` that satisfies `predicate`, for at most `timeout`.
    /// Event-driven: it wakes on each new entry instead of polling.
    pub async fn wait_for(
        &self,
        since: u64,
        timeout: Duration,
        mut predicate: impl FnMut(&JournalEntry) -> bool,
    ) -> Option<Arc<JournalEntry>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut live = self.subscribe();
        let mut next = since;
        loop {
            for entry in self.since(next) {
                next = entry.seq;
                if predicate(&entry) {
                    return Some(entry);
                }
            }
            match tokio::time::timeout_at(deadline, live.recv()).await {
                Err(_elapsed) => return None,
                // New entries (or a lag): read them from the ring, in order, at the top.
                Ok(Ok(_) | Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(broadcast::error::RecvError::Closed)) => return None,
            }
        }
    }

    /// A copy of one host's counters (all zero for a host never seen).
    pub fn host_counters(&self, host: &str) -> HostCountersSnapshot {
        self.inner
            .hosts
            .get(host)
            .map(|counters| snapshot(&counters))
            .unwrap_or_default()
    }

    /// Every host's counters, by host.
    pub fn counters(&self) -> std::collections::BTreeMap<String, HostCountersSnapshot> {
        self.inner
            .hosts
            .iter()
            .map(|item| (item.key().to_string(), snapshot(item.value())))
            .collect()
    }

    /// Every entry still in the ring for `host` that got the default error page.
    pub fn default_error_pages(&self, host: &str) -> Vec<Arc<JournalEntry>> {
        self.since(0)
            .into_iter()
            .filter(|entry| &*entry.host == host && entry.is_default_error_page())
            .collect()
    }
}

fn snapshot(counters: &HostCounters) -> HostCountersSnapshot {
    HostCountersSnapshot {
        requests: counters.requests.load(Ordering::Relaxed),
        default_error_pages: counters.default_error_pages.load(Ordering::Relaxed),
        no_route: counters.no_route.load(Ordering::Relaxed),
        bad_gateway: counters.bad_gateway.load(Ordering::Relaxed),
        timeout: counters.timeout.load(Ordering::Relaxed),
        bad_request: counters.bad_request.load(Ordering::Relaxed),
        aborted: counters.aborted.load(Ordering::Relaxed),
        served_by: counters
            .served_by
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(app, count)| (app.to_string(), *count))
            .collect(),
    }
}

fn micros(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(host: &str, app: Option<&str>, error: Option<RouterError>) -> NewEntry {
        let now = SystemTime::now();
        NewEntry {
            start: now,
            end: now,
            host: host.into(),
            method: Method::GET,
            path: "/".into(),
            status: error.map_or(200, RouterError::status),
            route_table_version: 1,
            app: app.map(Into::into),
            instance: app.map(|_| 0),
            router_error: error,
            aborted: false,
        }
    }

    #[test]
    fn ring_keeps_the_newest_and_counters_keep_everything() {
        let journal = Journal::new(4);
        for _ in 0..10 {
            journal.record(entry("a.com", Some("blue"), None));
        }
        journal.record(entry("a.com", None, Some(RouterError::NoRoute)));
        let kept = journal.since(0);
        assert_eq!(
            kept.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![8, 9, 10, 11]
        );
        let counters = journal.host_counters("a.com");
        assert_eq!(counters.requests, 11);
        assert_eq!(counters.default_error_pages, 1);
        assert_eq!(counters.no_route, 1);
        assert_eq!(counters.served_by.get("blue"), Some(&10));
        assert_eq!(journal.default_error_pages("a.com").len(), 1);
        assert_eq!(journal.since(10).len(), 1);
        assert!(journal.since(11).is_empty());
    }

    #[test]
    fn events_share_the_sequence_without_hiding_requests() {
        let journal = Journal::new(8);
        journal.record(entry("a.com", Some("blue"), None));
        let event = journal.record_event("fault", serde_json::json!({"crash": "blue"}));
        journal.record(entry("a.com", Some("green"), None));
        assert_eq!(event.seq, 2);
        let requests: Vec<u64> = journal.since(0).iter().map(|e| e.seq).collect();
        assert_eq!(requests, vec![1, 3]);
        assert_eq!(journal.events_since(0).len(), 1);
        assert!(journal.events_since(2).is_empty());
        assert_eq!(journal.last_seq(), 3);
    }

    #[test]
    fn clearing_forgets_everything_but_the_sequence() {
        let journal = Journal::new(8);
        journal.record(entry("a.com", Some("blue"), None));
        journal.record_event("fault", serde_json::json!({}));
        journal.clear();
        assert!(journal.since(0).is_empty());
        assert!(journal.events_since(0).is_empty());
        assert_eq!(journal.host_counters("a.com").requests, 0);
        assert_eq!(journal.record(entry("a.com", Some("blue"), None)).seq, 3);
        assert_eq!(journal.since(0).len(), 1);
    }

    #[test]
    fn a_bad_request_is_not_a_default_error_page() {
        let journal = Journal::new(8);
        journal.record(entry("", None, Some(RouterError::BadRequest)));
        assert_eq!(journal.host_counters("").default_error_pages, 0);
        assert_eq!(journal.host_counters("").bad_request, 1);
    }

    #[tokio::test]
    async fn wait_for_wakes_on_the_matching_entry() {
        let journal = Journal::new(8);
        journal.record(entry("a.com", Some("blue"), None));
        let waiter = {
            let journal = journal.clone();
            tokio::spawn(async move {
                journal
                    .wait_for(0, Duration::from_secs(30), |e| e.served_by("green"))
                    .await
            })
        };
        tokio::task::yield_now().await;
        journal.record(entry("a.com", Some("blue"), None));
        journal.record(entry("a.com", Some("green"), None));
        let found = waiter.await.unwrap().expect("green served");
        assert_eq!(found.seq, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn wait_for_times_out() {
        let journal = Journal::new(8);
        let found = journal.wait_for(0, Duration::from_secs(1), |_| true).await;
        assert!(found.is_none());
    }
}
