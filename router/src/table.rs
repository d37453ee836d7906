//! The route table: for every host, the flat list of backends (every RUNNING instance of every
//! STARTED app mapped to it). The control plane builds a whole new table on each change and
//! publishes it through [`Routes`]; the router loads one snapshot per request. One atomic swap, so
//! a request sees either the old table or the new one, never half of a change.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};
use tokio::sync::Notify;

use crate::pool::ConnectionPool;

/// What the control plane knows about an instance when it registers it.
#[derive(Clone, Debug)]
pub struct BackendSpec {
    /// Where the instance listens (loopback).
    pub addr: SocketAddr,
    /// The app's name, as the journal reports who served a request.
    pub app: Arc<str>,
    /// The instance index (0-based), as `af instances` shows it.
    pub instance_index: u32,
    /// v1's 32-hex instance id, as `/crashes` and the files API use it.
    pub instance_id: Arc<str>,
    /// v1's 64-hex private instance id: the value of the `__VCAP_ID__` sticky-session cookie.
    pub private_instance_id: Arc<str>,
    /// The app version the instance runs (v1's `<droplet sha1>-<run_count>`, new with every
    /// start of the app), so the journal can tell a new version's answers from an old one's.
    pub version: Arc<str>,
}

/// One registered instance. The control plane creates it once, when the instance becomes RUNNING,
/// and puts the same `Arc` into every table it publishes while the instance stays registered.
///
/// Each request the router sends to it holds a clone of that `Arc` until its response body ends,
/// so "nobody can still reach this instance" is `Arc::strong_count == 1` for the owner: that is
/// what [`Backend::drain`] waits for before a stop kills the instance.
#[derive(Debug)]
pub struct Backend {
    spec: BackendSpec,
    /// Set when the owner starts draining; only then do finished requests bother to notify.
    draining: AtomicBool,
    drained: Notify,
    /// Idle keep-alive connections to the instance; they close when the backend is dropped.
    pool: ConnectionPool,
}

impl Backend {
    pub fn new(spec: BackendSpec) -> Arc<Backend> {
        Arc::new(Backend {
            spec,
            draining: AtomicBool::new(false),
            drained: Notify::new(),
            pool: ConnectionPool::default(),
        })
    }

    pub fn spec(&self) -> &BackendSpec {
        &self.spec
    }
    pub fn addr(&self) -> SocketAddr {
        self.spec.addr
    }
    pub fn app(&self) -> &Arc<str> {
        &self.spec.app
    }
    pub fn instance_index(&self) -> u32 {
        self.spec.instance_index
    }
    pub fn version(&self) -> &Arc<str> {
        &self.spec.version
    }
    pub fn private_instance_id(&self) -> &str {
        &self.spec.private_instance_id
    }
    pub(crate) fn pool(&self) -> &ConnectionPool {
        &self.pool
    }

    /// Called by the router when a request that held this backend is over.
    pub(crate) fn request_finished(&self) {
        if self.draining.load(Ordering::Acquire) {
            self.drained.notify_waiters();
        }
    }

    /// Waits until no request and no route table other than the caller's handle holds this
    /// backend, or until `limit` passes. Call it after publishing a table without the backend.
    /// Returns the number of other holders left (0 when drained).
    pub async fn drain(self: Arc<Self>, limit: Duration) -> usize {
        self.draining.store(true, Ordering::Release);
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.drained.notified();
            let others = Arc::strong_count(&self) - 1;
            if others == 0 {
                return 0;
            }
            if tokio::time::Instant::now() >= deadline {
                return others;
            }
            // A finished request notifies; an old route table that is dropped does not, so look
            // again every few milliseconds as well.
            let recheck = tokio::time::Instant::now() + Duration::from_millis(2);
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(recheck.min(deadline)) => {}
            }
        }
    }
}

/// All the backends of one host.
#[derive(Debug)]
pub struct HostRoute {
    host: Arc<str>,
    backends: Box<[Arc<Backend>]>,
    /// How many requests this host has had: the balancer's only state. Carried over from the
    /// previous table on each publish, so round-robin stays fair across map/unmap.
    requests: AtomicU64,
}

impl HostRoute {
    pub fn host(&self) -> &Arc<str> {
        &self.host
    }
    pub fn backends(&self) -> &[Arc<Backend>] {
        &self.backends
    }
    /// Takes the next request number for the balancer.
    pub(crate) fn next_request(&self) -> u64 {
        self.requests.fetch_add(1, Ordering::Relaxed)
    }
}

/// One immutable snapshot of every route, with the version the journal records.
#[derive(Debug, Default)]
pub struct RouteTable {
    version: u64,
    hosts: HashMap<Arc<str>, HostRoute>,
}

impl RouteTable {
    pub fn version(&self) -> u64 {
        self.version
    }
    pub fn lookup(&self, host_key: &str) -> Option<&HostRoute> {
        self.hosts.get(host_key)
    }
    pub fn hosts(&self) -> impl Iterator<Item = &HostRoute> {
        self.hosts.values()
    }
    pub fn len(&self) -> usize {
        self.hosts.len()
    }
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// `host → [(app, instance index)]`, sorted: the table as data, for tests and the admin API.
    pub fn summary(&self) -> Vec<(String, Vec<(String, u32)>)> {
        let mut out: Vec<_> = self
            .hosts
            .values()
            .map(|route| {
                let backends = route
                    .backends
                    .iter()
                    .map(|b| (b.app().to_string(), b.instance_index()))
                    .collect();
                (route.host.to_string(), backends)
            })
            .collect();
        out.sort();
        out
    }

    fn build(
        version: u64,
        entries: impl IntoIterator<Item = (Arc<str>, Arc<Backend>)>,
        previous: &RouteTable,
    ) -> RouteTable {
        let mut grouped: HashMap<Arc<str>, Vec<Arc<Backend>>> = HashMap::new();
        for (host, backend) in entries {
            let list = grouped.entry(host).or_default();
            // One entry per backend per host, as v1's register_droplet skipped duplicates.
            if !list.iter().any(|b| Arc::ptr_eq(b, &backend)) {
                list.push(backend);
            }
        }
        let hosts = grouped
            .into_iter()
            .map(|(host, backends)| {
                let requests = previous
                    .hosts
                    .get(&host)
                    .map_or(0, |old| old.requests.load(Ordering::Relaxed));
                let route = HostRoute {
                    host: host.clone(),
                    backends: backends.into_boxed_slice(),
                    requests: AtomicU64::new(requests),
                };
                (host, route)
            })
            .collect();
        RouteTable { version, hosts }
    }
}

/// The published route table: what the control plane writes and the router reads.
#[derive(Clone, Debug, Default)]
pub struct Routes {
    current: Arc<ArcSwap<RouteTable>>,
    /// Serialises publishers, so versions are strictly increasing and no update is lost.
    publish_lock: Arc<Mutex<()>>,
}

impl Routes {
    pub fn new() -> Routes {
        Routes::default()
    }

    /// The current snapshot; cheap, lock-free, meant to be held for the span of one lookup.
    pub fn load(&self) -> Guard<Arc<RouteTable>> {
        self.current.load()
    }

    /// The current snapshot as an owned `Arc`, for holders that keep it.
    pub fn snapshot(&self) -> Arc<RouteTable> {
        self.current.load_full()
    }

    pub fn version(&self) -> u64 {
        self.current.load().version
    }

    /// Builds a new table from `(host key, backend)` pairs and swaps it in whole; returns its
    /// version. Host keys must already be normalised ([`crate::normalise_host`]).
    pub fn publish(&self, entries: impl IntoIterator<Item = (Arc<str>, Arc<Backend>)>) -> u64 {
        let _serial = self.publish_lock.lock().unwrap_or_else(|e| e.into_inner());
        let previous = self.current.load();
        let table = RouteTable::build(previous.version + 1, entries, &previous);
        let version = table.version;
        self.current.store(Arc::new(table));
        version
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn backend(app: &str, index: u32, port: u16) -> Arc<Backend> {
        Backend::new(BackendSpec {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            app: app.into(),
            instance_index: index,
            instance_id: format!("{app}-{index}").into(),
            private_instance_id: format!("{app}-{index}-private").into(),
            version: Arc::from("v"),
        })
    }

    #[test]
    fn publish_swaps_whole_tables_with_increasing_versions() {
        let routes = Routes::new();
        assert_eq!(routes.version(), 0);
        let blue = backend("blue", 0, 1);
        let green = backend("green", 0, 2);
        let v1 = routes.publish([("a.com".into(), blue.clone())]);
        let old = routes.snapshot();
        let v2 = routes.publish([
            ("a.com".into(), blue.clone()),
            ("a.com".into(), green.clone()),
            ("b.com".into(), green.clone()),
        ]);
        assert!(v2 > v1);
        assert_eq!(old.lookup("a.com").unwrap().backends().len(), 1);
        assert!(old.lookup("b.com").is_none());
        let new = routes.load();
        assert_eq!(
            new.summary(),
            vec![
                (
                    "a.com".into(),
                    vec![("blue".into(), 0), ("green".into(), 0)]
                ),
                ("b.com".into(), vec![("green".into(), 0)]),
            ]
        );
    }

    #[test]
    fn duplicate_registrations_collapse() {
        let routes = Routes::new();
        let blue = backend("blue", 0, 1);
        routes.publish([("a.com".into(), blue.clone()), ("a.com".into(), blue)]);
        assert_eq!(routes.load().lookup("a.com").unwrap().backends().len(), 1);
    }

    #[test]
    fn request_counters_survive_a_publish() {
        let routes = Routes::new();
        let blue = backend("blue", 0, 1);
        routes.publish([("a.com".into(), blue.clone())]);
        for _ in 0..3 {
            routes.load().lookup("a.com").unwrap().next_request();
        }
        routes.publish([("a.com".into(), blue)]);
        assert_eq!(routes.load().lookup("a.com").unwrap().next_request(), 3);
    }

    #[tokio::test]
    async fn drain_returns_once_unpublished_and_idle() {
        let routes = Routes::new();
        let blue = backend("blue", 0, 1);
        routes.publish([("a.com".into(), blue.clone())]);
        let in_flight = routes.load().lookup("a.com").unwrap().backends()[0].clone();
        routes.publish([]);
        let drain = tokio::spawn(blue.drain(Duration::from_secs(30)));
        // The request still holds the backend: the drain must not finish yet.
        tokio::task::yield_now().await;
        assert!(!drain.is_finished());
        in_flight.request_finished();
        drop(in_flight);
        assert_eq!(drain.await.unwrap(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn drain_gives_up_at_its_limit() {
        let blue = backend("blue", 0, 1);
        let _stuck = blue.clone();
        assert_eq!(blue.drain(Duration::from_secs(5)).await, 1);
    }
}

/// Figures for docs/PERFORMANCE.md, measured and printed, never asserted:
/// `cargo test --release -p afemu-router --lib -- --ignored --nocapture figures`.
#[cfg(test)]
mod figures {
    use std::hint::black_box;
    use std::time::Instant;

    use super::tests::backend;
    use super::*;
    use crate::Balance;

    /// Nanoseconds per lookup as the proxy does it for each request: normalise the `Host`, load
    /// the current table, find the host, pick a backend. The median of 11 rounds.
    fn lookup_ns(apps: usize, rounds: usize, per_round: usize) -> f64 {
        let routes = Routes::new();
        let mut entries = Vec::new();
        for app in 0..apps {
            let host: Arc<str> = format!("app-{app}.aws.af.cm").into();
            for index in 0..2 {
                entries.push((
                    host.clone(),
                    backend(&format!("app-{app}"), index, 10_000 + index as u16),
                ));
            }
        }
        routes.publish(entries);
        // Every request for a different app, in a scattered order, as traffic to many apps is.
        let hosts: Vec<String> = (0..1024)
            .map(|i| format!("App-{}.aws.af.cm:9080", (i * 7919) % apps))
            .collect();
        let mut samples = Vec::new();
        for _ in 0..rounds {
            let started = Instant::now();
            for i in 0..per_round {
                let raw = &hosts[i % hosts.len()];
                let key = crate::normalise_host(black_box(raw), ".localhost").unwrap();
                let table = routes.load();
                let route = table.lookup(&key).unwrap();
                let backends = route.backends();
                let pick = Balance::RoundRobin.pick_index(route.next_request(), backends.len());
                black_box(&backends[pick]);
            }
            samples.push(started.elapsed().as_nanos() as f64 / per_round as f64);
        }
        samples.sort_by(f64::total_cmp);
        samples[samples.len() / 2]
    }

    #[test]
    #[ignore = "a measurement for docs/PERFORMANCE.md, run in release"]
    fn figures_route_lookup() {
        let one = lookup_ns(1, 11, 1_000_000);
        let thousand = lookup_ns(1000, 11, 1_000_000);
        println!(
            "route lookup (normalise + load + find + pick): 1 app × 2 instances {one:.0} ns, \
             1,000 apps × 2 instances {thousand:.0} ns"
        );
    }
}
