//! The journal: every request the router answered, with who served it or which router error it
//! got. It is the oracle for "did any request see the default error page": the ring keeps the most
//! recent entries for queries, the counters never drop anything, and subscribers get a live stream.

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

/// The longest path an entry keeps, in bytes: a client may send request targets of hundreds of
/// kilobytes, and the ring holds tens of thousands of entries. Longer paths are cut (at a
/// character boundary) and end with `…`.
pub const MAX_PATH: usize = 2048;

/// The longest host an entry keeps, in bytes: no mapped URI is longer (a DNS name has at most
/// 253), so a longer one never had a route and is cut like a long path.
pub const MAX_HOST: usize = 255;

/// How many distinct hosts get counters of their own. Requests for hosts beyond that (a client
/// sending a different random `Host` each time) are counted under [`OTHER_HOSTS`], so that the
/// counters stay bounded while still never dropping a request.
pub const MAX_COUNTED_HOSTS: usize = 10_000;

/// The counters' key for the hosts beyond [`MAX_COUNTED_HOSTS`]; no host can be spelt so.
pub const OTHER_HOSTS: &str = "(other hosts)";

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
    /// The version the instance runs (v1's `<droplet>-<run_count>`).
    pub version: Option<Arc<str>>,
    /// Set when the router answered with its own error page instead of an app's response.
    pub router_error: Option<RouterError>,
    /// The response was cut before its end (the backend died or the client left mid-body).
    pub aborted: bool,
    /// Set when the router refused the request itself (malformed, too large, ambiguous framing,
    /// a bad `Host`, too slow): why. Such a request never reached an app, or reached it only in
    /// part; `status` is what the client was told (400, 431 or 408).
    pub refused: Option<Refused>,
}

/// Why the router refused a request (`docs/ROUTER-THREATS.md`). Refusals are journaled and
/// counted like any other request, so that a test can assert that none happened and an attempt
/// to smuggle a request leaves a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Refused {
    /// Not an HTTP/1.x request head (a bad request line, header line, method or version): 400.
    MalformedHead,
    /// A request head over the size or header-count limit: 431.
    HeadTooLarge,
    /// The HTTP/2 connection preface: the connection is closed without an answer.
    Http2Preface,
    /// Body framing that is ambiguous or invalid (`Content-Length` with `Transfer-Encoding`,
    /// lengths that disagree, a last coding other than `chunked`): 400.
    BadFraming,
    /// No `Host`, several, or one that is not a host and port (`a.com@b.com`, `a.com/x`): 400.
    BadHost,
    /// A request target the router does not serve (`CONNECT`, a malformed absolute form): 400.
    BadTarget,
    /// A chunked request body that breaks the framing: 400.
    MalformedBody,
    /// The client began a request head and did not finish it in time: closed (408).
    HeadTimeout,
    /// The client stopped sending its request body: 408.
    BodyTimeout,
}

impl Refused {
    /// The status the journal records (and, when the router answers at all, the client gets).
    pub fn status(self) -> u16 {
        match self {
            Refused::HeadTooLarge => 431,
            Refused::HeadTimeout | Refused::BodyTimeout => 408,
            _ => 400,
        }
    }
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

/// What the proxy knows of a request before the journal numbers it. Borrowed: the journal copies
/// what it keeps into a slot it reuses, so recording a request allocates nothing once the ring
/// has gone round.
#[derive(Debug)]
pub struct NewEntry<'a> {
    pub start: SystemTime,
    pub end: SystemTime,
    pub host: &'a Arc<str>,
    pub method: &'a Method,
    pub path: &'a str,
    pub status: u16,
    pub route_table_version: u64,
    pub app: Option<&'a Arc<str>>,
    pub instance: Option<u32>,
    pub version: Option<&'a Arc<str>>,
    pub router_error: Option<RouterError>,
    pub aborted: bool,
    pub refused: Option<Refused>,
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
    refused: AtomicU64,
    /// Requests served per app: a host has one to three apps, so a short list beats a map.
    served_by: Mutex<Vec<(Arc<str>, u64)>>,
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
    /// Requests the router refused itself ([`Refused`]); also counted in `bad_request`.
    pub refused: u64,
    /// Requests answered by each app (router errors excluded).
    pub served_by: std::collections::BTreeMap<String, u64>,
}

/// Something that happened to the platform rather than to a request — a fault injected, a
/// reset — numbered in the same sequence as the requests, so the two interleave.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct JournalEvent {
    pub seq: u64,
    /// When, in microseconds since the Unix epoch.
    pub at_us: u64,
    /// What kind of event (`fault`, `reset`, …).
    pub event: String,
    /// The details, as data.
    pub detail: serde_json::Value,
}

/// The most events kept (they are rare: faults and the like).
const EVENT_CAPACITY: usize = 4096;

/// What a ring slot holds.
enum Slot {
    Empty,
    /// A request. Allocated the first time the slot is written and overwritten in place after
    /// that (its path keeps its buffer), so the ring costs memory only as it fills.
    Request(Box<JournalEntry>),
    /// The sequence number an event took (events live in their own list; the mark lets
    /// readers of requests step over the number).
    Event(u64),
}

struct Inner {
    /// The last sequence number handed out.
    last_seq: AtomicU64,
    /// Entry `seq` lives in slot `seq % len`; one small lock per slot, so writers rarely meet.
    slots: Box<[Mutex<Slot>]>,
    /// Platform events, oldest first, bounded.
    events: Mutex<std::collections::VecDeque<Arc<JournalEvent>>>,
    /// Everything up to this sequence number was forgotten by `clear`.
    cleared_through: AtomicU64,
    hosts: DashMap<Arc<str>, HostCounters, foldhash::fast::RandomState>,
    live: broadcast::Sender<Arc<JournalEntry>>,
    /// Wakes whoever waits for an event (the journal's long poll with events).
    event_recorded: tokio::sync::Notify,
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
        let slots = (0..capacity.max(1))
            .map(|_| Mutex::new(Slot::Empty))
            .collect();
        let (live, _) = broadcast::channel(4096);
        Journal {
            inner: Arc::new(Inner {
                last_seq: AtomicU64::new(0),
                slots,
                events: Mutex::new(std::collections::VecDeque::new()),
                cleared_through: AtomicU64::new(0),
                hosts: DashMap::default(),
                live,
                event_recorded: tokio::sync::Notify::new(),
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

    /// Numbers and stores an entry, counts it, and sends it to live subscribers; returns its
    /// sequence number.
    pub fn record(&self, new: NewEntry<'_>) -> u64 {
        // Only hostile requests are this long: the usual path costs two comparisons.
        let cut_host: Arc<str>;
        let cut_path: String;
        let mut new = new;
        if new.host.len() > MAX_HOST {
            cut_host = Arc::from(cut(new.host, MAX_HOST).as_str());
            new.host = &cut_host;
        }
        if new.path.len() > MAX_PATH {
            cut_path = cut(new.path, MAX_PATH);
            new.path = &cut_path;
        }
        self.count(&new);
        let seq = self.inner.last_seq.fetch_add(1, Ordering::AcqRel) + 1;
        let slot = &self.inner.slots[(seq % self.inner.slots.len() as u64) as usize];
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *slot {
            Slot::Request(entry) => overwrite(entry, seq, &new),
            other => {
                *other = Slot::Request(Box::new(JournalEntry {
                    seq,
                    start_us: micros(new.start),
                    end_us: micros(new.end),
                    host: new.host.clone(),
                    method: new.method.clone(),
                    path: new.path.to_owned(),
                    status: new.status,
                    route_table_version: new.route_table_version,
                    app: new.app.cloned(),
                    instance: new.instance,
                    version: new.version.cloned(),
                    router_error: new.router_error,
                    aborted: new.aborted,
                    refused: new.refused,
                }));
            }
        }
        if self.inner.live.receiver_count() > 0
            && let Slot::Request(entry) = &*slot
        {
            // Nobody listening is not an error; a lagging listener re-reads the ring.
            let _ = self.inner.live.send(Arc::new(JournalEntry::clone(entry)));
        }
        seq
    }

    fn count(&self, new: &NewEntry<'_>) {
        let counters = match self.inner.hosts.get(&**new.host) {
            Some(counters) => counters,
            None => {
                let key = if self.inner.hosts.len() < MAX_COUNTED_HOSTS {
                    new.host.clone()
                } else {
                    Arc::from(OTHER_HOSTS)
                };
                self.inner.hosts.entry(key.clone()).or_default();
                self.inner.hosts.get(&*key).expect("just inserted")
            }
        };
        counters.requests.fetch_add(1, Ordering::Relaxed);
        if new.aborted {
            counters.aborted.fetch_add(1, Ordering::Relaxed);
        }
        if new.refused.is_some() {
            counters.refused.fetch_add(1, Ordering::Relaxed);
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
                if let Some(app) = new.app {
                    let mut served = counters.served_by.lock().unwrap_or_else(|e| e.into_inner());
                    let known = served
                        .iter_mut()
                        .find(|(name, _)| Arc::ptr_eq(name, app) || **name == **app);
                    match known {
                        Some((_, count)) => *count += 1,
                        None => served.push((app.clone(), 1)),
                    }
                }
            }
        }
    }

    /// The entries after `seq` still in the ring, in order. Stops before an entry that has been
    /// numbered but not stored yet, so a poller that continues from the last entry it got never
    /// skips one; entries overwritten by newer ones are gone (the counters still have them).
    pub fn since(&self, seq: u64) -> Vec<Arc<JournalEntry>> {
        self.tail(seq, usize::MAX)
    }

    /// The last `n` entries after `seq` still in the ring, in order: what a live view shows
    /// without copying everything a busy router journaled since it last looked.
    pub fn tail(&self, seq: u64, n: usize) -> Vec<Arc<JournalEntry>> {
        self.walk(seq, n).0
    }

    /// The entries and the platform events after `seq`, each in order: an event comes with
    /// them only once every request numbered before it is stored, so that a poller that goes on
    /// from the last number it got (of either) never skips a request.
    pub fn since_with_events(&self, seq: u64) -> (Vec<Arc<JournalEntry>>, Vec<Arc<JournalEvent>>) {
        let (entries, through) = self.walk(seq, usize::MAX);
        let events = self
            .events_since(seq)
            .into_iter()
            .filter(|event| event.seq <= through)
            .collect();
        (entries, events)
    }

    /// The last `n` entries after `seq`, and the number up to which every entry is accounted
    /// for (stored, an event's, or gone): where the walk stopped, short of an entry numbered but
    /// not stored yet.
    fn walk(&self, seq: u64, n: usize) -> (Vec<Arc<JournalEntry>>, u64) {
        let seq = seq.max(self.last_seq().saturating_sub(n as u64));
        let last = self.last_seq();
        let capacity = self.inner.slots.len() as u64;
        let first = seq
            .saturating_add(1)
            .max(last.saturating_sub(capacity - 1))
            .max(self.inner.cleared_through.load(Ordering::Acquire) + 1);
        let mut out = Vec::with_capacity(last.saturating_sub(first) as usize + 1);
        for wanted in first..=last {
            let slot = &self.inner.slots[(wanted % capacity) as usize];
            let slot = slot.lock().unwrap_or_else(|e| e.into_inner());
            match &*slot {
                Slot::Request(entry) if entry.seq == wanted => {
                    out.push(Arc::new(JournalEntry::clone(entry)))
                }
                // An event took this number: not a request.
                Slot::Event(event) if *event == wanted => continue,
                // Overwritten by a later lap: gone, skip it.
                Slot::Request(entry) if entry.seq > wanted => continue,
                Slot::Event(event) if *event > wanted => continue,
                // Not stored yet: stop here, the caller will come back for it.
                _ => return (out, wanted - 1),
            }
        }
        (out, last.max(seq))
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
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Slot::Event(seq);
        self.inner.event_recorded.notify_waiters();
        entry
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

    /// Forgets every entry, event and counter (sequence numbers keep increasing, so a poller is
    /// not confused): `POST /_afemu/reset`.
    pub fn clear(&self) {
        self.inner
            .cleared_through
            .store(self.last_seq(), Ordering::Release);
        for slot in &self.inner.slots {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Slot::Empty;
        }
        self.inner
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.inner.hosts.clear();
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

    /// Waits until there is an entry after `since` that satisfies `predicate`, or an event after
    /// it, for at most `timeout`; whether there is. Event-driven, as [`Journal::wait_for`].
    pub async fn wait_for_entry_or_event(
        &self,
        since: u64,
        timeout: Duration,
        predicate: impl FnMut(&JournalEntry) -> bool,
    ) -> bool {
        // Listening before looking: an event recorded in between still wakes this.
        let recorded = self.inner.event_recorded.notified();
        tokio::pin!(recorded);
        recorded.as_mut().enable();
        if self.has_event_after(since) {
            return true;
        }
        tokio::select! {
            found = self.wait_for(since, timeout, predicate) => found.is_some(),
            () = recorded => true,
        }
    }

    fn has_event_after(&self, seq: u64) -> bool {
        self.inner
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .back()
            .is_some_and(|last| last.seq > seq)
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

    /// How many requests the router has refused, over every host (the counters never drop one).
    pub fn refused(&self) -> u64 {
        self.inner
            .hosts
            .iter()
            .map(|item| item.value().refused.load(Ordering::Relaxed))
            .sum()
    }

    /// Every entry still in the ring for `host` that got the default error page.
    pub fn default_error_pages(&self, host: &str) -> Vec<Arc<JournalEntry>> {
        self.since(0)
            .into_iter()
            .filter(|entry| &*entry.host == host && entry.is_default_error_page())
            .collect()
    }
}

/// Reuses a slot's entry for a new request: the path keeps its buffer, and an `Arc` that is
/// already the right one (same host, same app) is not touched.
/// `text` cut to at most `max` bytes, at a character boundary, ending with `…` (3 bytes).
fn cut(text: &str, max: usize) -> String {
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn overwrite(entry: &mut JournalEntry, seq: u64, new: &NewEntry<'_>) {
    entry.seq = seq;
    entry.start_us = micros(new.start);
    entry.end_us = micros(new.end);
    if !Arc::ptr_eq(&entry.host, new.host) {
        entry.host = new.host.clone();
    }
    if entry.method != *new.method {
        entry.method = new.method.clone();
    }
    entry.path.clear();
    entry.path.push_str(new.path);
    entry.status = new.status;
    entry.route_table_version = new.route_table_version;
    match (&entry.app, new.app) {
        (Some(old), Some(app)) if Arc::ptr_eq(old, app) => {}
        (_, app) => entry.app = app.cloned(),
    }
    entry.instance = new.instance;
    match (&entry.version, new.version) {
        (Some(old), Some(version)) if Arc::ptr_eq(old, version) => {}
        (_, version) => entry.version = version.cloned(),
    }
    entry.router_error = new.router_error;
    entry.aborted = new.aborted;
    entry.refused = new.refused;
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
        refused: counters.refused.load(Ordering::Relaxed),
        served_by: counters
            .served_by
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .fold(Default::default(), |mut by_app, (app, count)| {
                *by_app.entry(app.to_string()).or_default() += count;
                by_app
            }),
    }
}

fn micros(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(journal: &Journal, host: &str, app: Option<&str>, error: Option<RouterError>) -> u64 {
        let now = SystemTime::now();
        let host: Arc<str> = host.into();
        let app: Option<Arc<str>> = app.map(Into::into);
        journal.record(NewEntry {
            start: now,
            end: now,
            host: &host,
            method: &Method::GET,
            path: "/",
            status: error.map_or(200, RouterError::status),
            route_table_version: 1,
            app: app.as_ref(),
            instance: app.as_ref().map(|_| 0),
            version: None,
            router_error: error,
            aborted: false,
            refused: None,
        })
    }

    #[test]
    fn hostile_lengths_are_cut_and_random_hosts_share_a_counter() {
        let journal = Journal::new(8);
        let now = SystemTime::now();
        let long_host: Arc<str> = format!("{}.com", "é".repeat(300)).into();
        let long_path = format!("/{}", "ü".repeat(100_000));
        journal.record(NewEntry {
            start: now,
            end: now,
            host: &long_host,
            method: &Method::GET,
            path: &long_path,
            status: 404,
            route_table_version: 1,
            app: None,
            instance: None,
            version: None,
            router_error: Some(RouterError::NoRoute),
            aborted: false,
            refused: None,
        });
        let kept = &journal.since(0)[0];
        assert!(
            kept.path.len() <= MAX_PATH && kept.path.ends_with('…'),
            "{}",
            kept.path.len()
        );
        assert!(kept.path.starts_with("/üü"));
        assert!(kept.host.len() <= MAX_HOST && kept.host.ends_with('…'));
        assert_eq!(journal.host_counters(&kept.host).requests, 1);

        for i in 1..MAX_COUNTED_HOSTS + 50 {
            entry(
                &journal,
                &format!("random-{i}.com"),
                None,
                Some(RouterError::NoRoute),
            );
        }
        let counters = journal.counters();
        assert_eq!(counters.len(), MAX_COUNTED_HOSTS + 1);
        assert_eq!(counters[OTHER_HOSTS].requests, 50);
        assert_eq!(counters[OTHER_HOSTS].no_route, 50);
        // A host counted before the cap keeps its own counters.
        entry(&journal, "random-1.com", None, Some(RouterError::NoRoute));
        assert_eq!(journal.host_counters("random-1.com").requests, 2);
        let total: u64 = journal.counters().values().map(|c| c.requests).sum();
        assert_eq!(total, journal.last_seq(), "no request went uncounted");
    }

    #[test]
    fn ring_keeps_the_newest_and_counters_keep_everything() {
        let journal = Journal::new(4);
        for _ in 0..10 {
            entry(&journal, "a.com", Some("blue"), None);
        }
        entry(&journal, "a.com", None, Some(RouterError::NoRoute));
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

    /// Slots are overwritten in place after a lap: nothing of the old entry may show through.
    #[test]
    fn a_tail_is_the_last_entries_after_a_point() {
        let journal = Journal::new(16);
        for _ in 0..10 {
            entry(&journal, "a.com", Some("blue"), None);
        }
        let seqs =
            |entries: Vec<Arc<JournalEntry>>| entries.iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(seqs(journal.tail(0, 3)), vec![8, 9, 10]);
        assert_eq!(seqs(journal.tail(8, 5)), vec![9, 10]);
        assert_eq!(seqs(journal.tail(10, 5)), Vec::<u64>::new());
        assert_eq!(journal.tail(0, usize::MAX).len(), 10);
    }

    #[test]
    fn reused_slots_hold_only_the_new_entry() {
        let journal = Journal::new(2);
        let now = SystemTime::now();
        let record = |host: &str, path: &str, app: Option<&str>, method: Method| {
            let host: Arc<str> = host.into();
            let app: Option<Arc<str>> = app.map(Into::into);
            journal.record(NewEntry {
                start: now,
                end: now,
                host: &host,
                method: &method,
                path,
                status: 200,
                route_table_version: 7,
                app: app.as_ref(),
                instance: app.as_ref().map(|_| 1),
                version: None,
                router_error: None,
                aborted: false,
                refused: None,
            })
        };
        record("a.com", "/a/long/path/indeed", Some("blue"), Method::POST);
        record("a.com", "/", Some("blue"), Method::GET);
        record("b.com", "/b", None, Method::GET);
        record("c.com", "/cc", Some("green"), Method::DELETE);
        let kept = journal.since(0);
        assert_eq!(kept.len(), 2);
        assert_eq!(
            (
                &*kept[0].host,
                kept[0].path.as_str(),
                kept[0].app.as_deref()
            ),
            ("b.com", "/b", None)
        );
        assert_eq!(kept[0].method, Method::GET);
        assert_eq!(kept[0].instance, None);
        assert_eq!(
            (
                &*kept[1].host,
                kept[1].path.as_str(),
                kept[1].app.as_deref()
            ),
            ("c.com", "/cc", Some("green"))
        );
        assert_eq!(kept[1].method, Method::DELETE);
        assert_eq!(kept[1].seq, 4);
    }

    #[test]
    fn events_share_the_sequence_without_hiding_requests() {
        let journal = Journal::new(8);
        entry(&journal, "a.com", Some("blue"), None);
        let event = journal.record_event("fault", serde_json::json!({"crash": "blue"}));
        entry(&journal, "a.com", Some("green"), None);
        assert_eq!(event.seq, 2);
        let requests: Vec<u64> = journal.since(0).iter().map(|e| e.seq).collect();
        assert_eq!(requests, vec![1, 3]);
        assert_eq!(journal.events_since(0).len(), 1);
        assert!(journal.events_since(2).is_empty());
        assert_eq!(journal.last_seq(), 3);
        // A lap later, a request reuses the event's slot.
        for _ in 0..8 {
            entry(&journal, "a.com", Some("blue"), None);
        }
        assert_eq!(journal.since(0).len(), 8);
    }

    #[test]
    fn events_wait_for_the_requests_numbered_before_them() {
        let journal = Journal::new(8);
        entry(&journal, "a.com", Some("blue"), None);
        journal.record_event("fault", serde_json::json!({"stop": "hard"}));
        let (entries, events) = journal.since_with_events(0);
        assert_eq!((entries.len(), events.len()), (1, 1));
        assert_eq!(events[0].seq, 2);
        // A request numbered (3) but not stored yet: the event after it (4) waits for it.
        journal.inner.last_seq.fetch_add(1, Ordering::AcqRel);
        journal.record_event("fault", serde_json::json!({"stop": "drain"}));
        let (entries, events) = journal.since_with_events(2);
        assert!(entries.is_empty() && events.is_empty(), "{events:?}");
        assert_eq!(journal.since_with_events(3).1.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_for_events_ends_at_the_next_event() {
        let journal = Journal::new(8);
        entry(&journal, "a.com", Some("blue"), None);
        let nothing = journal.wait_for_entry_or_event(1, Duration::from_secs(5), |_| true);
        assert!(!nothing.await, "nothing new: the whole wait");
        let waiting = {
            let journal = journal.clone();
            tokio::spawn(async move {
                journal
                    .wait_for_entry_or_event(1, Duration::from_secs(3600), |_| true)
                    .await
            })
        };
        tokio::task::yield_now().await;
        journal.record_event("fault", serde_json::json!({"stop": "hard"}));
        assert!(waiting.await.unwrap(), "woken by the event");
        // One already there answers at once.
        assert!(
            journal
                .wait_for_entry_or_event(1, Duration::from_secs(3600), |_| true)
                .await
        );
    }

    #[test]
    fn clearing_forgets_everything_but_the_sequence() {
        let journal = Journal::new(8);
        entry(&journal, "a.com", Some("blue"), None);
        journal.record_event("fault", serde_json::json!({}));
        journal.clear();
        assert!(journal.since(0).is_empty());
        assert!(journal.events_since(0).is_empty());
        assert_eq!(journal.host_counters("a.com").requests, 0);
        assert_eq!(entry(&journal, "a.com", Some("blue"), None), 3);
        assert_eq!(journal.since(0).len(), 1);
        assert!(
            journal.since(u64::MAX).is_empty(),
            "no overflow past the end"
        );
    }

    #[test]
    fn a_bad_request_is_not_a_default_error_page() {
        let journal = Journal::new(8);
        entry(&journal, "", None, Some(RouterError::BadRequest));
        assert_eq!(journal.host_counters("").default_error_pages, 0);
        assert_eq!(journal.host_counters("").bad_request, 1);
    }

    #[tokio::test]
    async fn wait_for_wakes_on_the_matching_entry() {
        let journal = Journal::new(8);
        entry(&journal, "a.com", Some("blue"), None);
        let waiter = {
            let journal = journal.clone();
            tokio::spawn(async move {
                journal
                    .wait_for(0, Duration::from_secs(30), |e| e.served_by("green"))
                    .await
            })
        };
        tokio::task::yield_now().await;
        entry(&journal, "a.com", Some("blue"), None);
        entry(&journal, "a.com", Some("green"), None);
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
