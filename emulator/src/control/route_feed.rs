//! How route changes reach the router. The platform submits each app's complete set of
//! registrations whenever it changes; the feed delivers them and publishes the union as one new
//! route table. Normally delivery is immediate (within the change that caused it). With the fault
//! `--route-delay MIN..MAX` it is what v1's NATS made it: each app's changes arrive after a seeded
//! random delay, in order per app, in any order across apps — so `af map` can return before the
//! router knows, and a swap that is safe with instant routing can fail. Held (for
//! `afemu rehearse --replay`), changes wait until they are released one by one, so that a
//! schedule `afemu check` found can be made to happen exactly.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use afemu_router::{Backend, Routes};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::config::RouteDelay;

/// One app's registrations: `(host key, backend)`.
pub(crate) type Entries = Vec<(Arc<str>, Arc<Backend>)>;

#[derive(Default)]
struct FeedState {
    /// What the platform last submitted for each app (the truth, eventually).
    submitted: HashMap<u64, Entries>,
    /// What the router has been told for each app.
    delivered: HashMap<u64, Entries>,
    /// Changes on their way, per app, with when each is due.
    queues: HashMap<u64, VecDeque<(Instant, Entries)>>,
    delay: Option<RouteDelay>,
    /// A test-only defect: the next shrinking change of an app is not delivered (see
    /// `Config::defect_skip_one_unregister`).
    skip_one_unregister: bool,
    /// Changes wait until [`RouteFeed::release`] lets them through, one at a time.
    held: bool,
    /// While held: every app change submitted, in order.
    log: Vec<Submission>,
}

/// One change submitted while the feed holds them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submission {
    pub app_id: u64,
    /// The hosts the app is registered on after it.
    pub hosts: Vec<String>,
}

/// When a change is due while held: never, until released.
fn held_due() -> Instant {
    Instant::now() + Duration::from_secs(365 * 24 * 60 * 60)
}

pub(crate) struct RouteFeed {
    routes: Routes,
    state: Mutex<FeedState>,
    rng: Mutex<StdRng>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// Counts submissions and deliveries, so a waiter can wait for the next one.
    events: watch::Sender<u64>,
}

impl RouteFeed {
    pub(crate) fn new(
        routes: Routes,
        delay: Option<RouteDelay>,
        seed: u64,
        skip_one_unregister: bool,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> RouteFeed {
        RouteFeed {
            routes,
            state: Mutex::new(FeedState {
                delay,
                skip_one_unregister,
                ..FeedState::default()
            }),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            shutdown,
            tasks,
            events: watch::Sender::new(0),
        }
    }

    fn state(&self) -> MutexGuard<'_, FeedState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn delay(&self) -> Option<RouteDelay> {
        self.state().delay
    }

    pub(crate) fn set_delay(&self, delay: Option<RouteDelay>) {
        self.state().delay = delay;
    }

    /// Holds every app change from now on until it is released (true), or lets the held ones
    /// through in order and goes back to the delay in force (false).
    pub(crate) fn set_held(self: &Arc<Self>, held: bool) {
        let mut state = self.state();
        state.held = held;
        if held {
            state.log.clear();
            return;
        }
        let mut delivered = false;
        let queues: Vec<u64> = state.queues.keys().copied().collect();
        for app in queues {
            if let Some(queue) = state.queues.remove(&app)
                && let Some((_, entries)) = queue.into_iter().last()
            {
                state.delivered.insert(app, entries);
                delivered = true;
            }
        }
        if delivered {
            self.publish(&state);
        }
        drop(state);
        self.events.send_modify(|n| *n += 1);
    }

    /// The changes submitted while held, in order.
    pub(crate) fn submissions(&self) -> Vec<Submission> {
        self.state().log.clone()
    }

    /// Delivers the oldest held change of an app.
    pub(crate) fn release(&self, app: u64) -> Result<(), String> {
        let mut state = self.state();
        if !state.held {
            return Err("route changes are not held".into());
        }
        let Some(queue) = state.queues.get_mut(&app) else {
            return Err(format!("no route change of app {app} is held"));
        };
        let Some((_, entries)) = queue.pop_front() else {
            return Err(format!("no route change of app {app} is held"));
        };
        if queue.is_empty() {
            state.queues.remove(&app);
        }
        state.delivered.insert(app, entries);
        self.publish(&state);
        drop(state);
        self.events.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Waits for the next submission or delivery (or `limit`); false when `limit` passed.
    pub(crate) async fn next_event(
        &self,
        seen: &mut watch::Receiver<u64>,
        limit: Duration,
    ) -> bool {
        matches!(
            tokio::time::timeout(limit, seen.changed()).await,
            Ok(Ok(()))
        )
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.events.subscribe()
    }

    pub(crate) fn reseed(&self, seed: u64) {
        *self.rng.lock().unwrap_or_else(|e| e.into_inner()) = StdRng::seed_from_u64(seed);
    }

    /// Submits the complete registrations of some apps (apps not named keep theirs; an app that
    /// is gone is submitted with none). Only real changes go on; without a delay they reach the
    /// router before this returns, in one new table. Called with the platform's state lock held,
    /// so submissions are in the order of the changes.
    pub(crate) fn submit(self: &Arc<Self>, changes: Vec<(u64, Entries)>) {
        let mut state = self.state();
        let mut delivered_now = false;
        let mut submitted = false;
        for (app, entries) in changes {
            let previous = state.submitted.get(&app).map_or(&[][..], Vec::as_slice);
            if same_entries(previous, &entries) {
                continue;
            }
            let shrinks = entries.len() < previous.len();
            state.submitted.insert(app, entries.clone());
            submitted = true;
            if shrinks && state.skip_one_unregister {
                // The deliberate defect: this unregister never reaches the router.
                state.skip_one_unregister = false;
                continue;
            }
            if state.held && app != 0 {
                let mut hosts: Vec<String> = entries.iter().map(|(h, _)| h.to_string()).collect();
                hosts.sort();
                hosts.dedup();
                state.log.push(Submission { app_id: app, hosts });
                state
                    .queues
                    .entry(app)
                    .or_default()
                    .push_back((held_due(), entries));
                continue;
            }
            match state.delay {
                // The API's own route (app 0) is never delayed: it is not an app's.
                Some(delay) if app != 0 => {
                    let wait = self.random_delay(delay);
                    let now = Instant::now();
                    let queue = state.queues.entry(app).or_default();
                    // In order per app: never due before the change ahead of it.
                    let due = queue
                        .back()
                        .map_or(now + wait, |(last, _)| (*last).max(now + wait));
                    let idle = queue.is_empty();
                    queue.push_back((due, entries));
                    if idle {
                        let feed = self.clone();
                        self.tasks
                            .spawn(async move { feed.deliver_queue(app).await });
                    }
                }
                _ => {
                    // Anything still queued for the app is superseded by this.
                    state.queues.remove(&app);
                    state.delivered.insert(app, entries);
                    delivered_now = true;
                }
            }
        }
        if delivered_now {
            self.publish(&state);
        }
        drop(state);
        if submitted {
            self.events.send_modify(|n| *n += 1);
        }
    }

    fn random_delay(&self, delay: RouteDelay) -> Duration {
        if delay.max <= delay.min {
            return delay.min;
        }
        let span = (delay.max - delay.min).as_nanos() as u64;
        let offset = self
            .rng
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .random_range(0..=span);
        delay.min + Duration::from_nanos(offset)
    }

    /// Delivers one app's queued changes in order, each at its due time.
    async fn deliver_queue(self: Arc<Self>, app: u64) {
        loop {
            let due = match self.state().queues.get(&app).and_then(|q| q.front()) {
                Some((due, _)) => *due,
                None => return,
            };
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                () = self.shutdown.cancelled() => return,
            }
            let mut state = self.state();
            let Some(queue) = state.queues.get_mut(&app) else {
                return;
            };
            let Some((_, entries)) = queue.pop_front() else {
                return;
            };
            let done = queue.is_empty();
            if done {
                state.queues.remove(&app);
            }
            state.delivered.insert(app, entries);
            self.publish(&state);
            drop(state);
            self.events.send_modify(|n| *n += 1);
            if done {
                return;
            }
        }
    }

    fn publish(&self, state: &FeedState) {
        let mut apps: Vec<_> = state.delivered.iter().collect();
        // A stable order, so the table does not depend on hashing.
        apps.sort_by_key(|(app, _)| **app);
        let entries = apps
            .into_iter()
            .flat_map(|(_, entries)| entries.iter().cloned())
            .collect::<Vec<_>>();
        self.routes.publish(entries);
    }

    /// Whether every submitted change has reached the router.
    pub(crate) fn settled(&self) -> bool {
        self.state().queues.is_empty()
    }

    /// Waits until every submitted change has reached the router, or `limit` passes; says which.
    pub(crate) async fn wait_settled(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut events = self.subscribe();
        loop {
            events.borrow_and_update();
            if self.settled() {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.next_event(&mut events, left).await {
                return self.settled();
            }
        }
    }

    /// How long a change may take to reach the router: the maximum delay (or, while held, until
    /// somebody releases it: a long time).
    pub(crate) fn longest_delay(&self) -> Duration {
        let state = self.state();
        if state.held {
            Duration::from_secs(120)
        } else {
            state.delay.map_or(Duration::ZERO, |d| d.max)
        }
    }
}

fn same_entries(a: &[(Arc<str>, Arc<Backend>)], b: &[(Arc<str>, Arc<Backend>)]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((host_a, backend_a), (host_b, backend_b))| {
                host_a == host_b && Arc::ptr_eq(backend_a, backend_b)
            })
}

#[cfg(test)]
mod tests {
    use super::*;
    use afemu_router::BackendSpec;

    fn backend(app: &str) -> Arc<Backend> {
        Backend::new(BackendSpec {
            addr: "127.0.0.1:1".parse().unwrap(),
            app: app.into(),
            instance_index: 0,
            instance_id: "i".into(),
            private_instance_id: "p".into(),
            version: "v".into(),
        })
    }

    fn feed(delay: Option<RouteDelay>) -> (Arc<RouteFeed>, Routes) {
        let routes = Routes::new();
        let feed = RouteFeed::new(
            routes.clone(),
            delay,
            7,
            false,
            CancellationToken::new(),
            TaskTracker::new(),
        );
        (Arc::new(feed), routes)
    }

    fn hosts(routes: &Routes) -> Vec<(String, Vec<(String, u32)>)> {
        routes.load().summary()
    }

    #[test]
    fn delays_parse() {
        assert_eq!(
            "0..50ms".parse::<RouteDelay>().unwrap(),
            RouteDelay {
                min: Duration::ZERO,
                max: Duration::from_millis(50)
            }
        );
        assert_eq!(
            "20ms".parse::<RouteDelay>().unwrap().max,
            Duration::from_millis(20)
        );
        assert!("50ms..10ms".parse::<RouteDelay>().is_err());
        assert!("soon".parse::<RouteDelay>().is_err());
    }

    #[tokio::test]
    async fn without_a_delay_changes_are_published_at_once() {
        let (feed, routes) = feed(None);
        let blue = backend("blue");
        feed.submit(vec![(1, vec![("a.com".into(), blue.clone())])]);
        assert_eq!(
            hosts(&routes),
            vec![("a.com".into(), vec![("blue".into(), 0)])]
        );
        let version = routes.version();
        feed.submit(vec![(1, vec![("a.com".into(), blue)])]);
        assert_eq!(routes.version(), version, "no change, no new table");
        feed.submit(vec![(1, vec![])]);
        assert!(hosts(&routes).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn with_a_delay_changes_arrive_late_but_in_order_per_app() {
        let delay = RouteDelay {
            min: Duration::from_millis(10),
            max: Duration::from_millis(50),
        };
        let (feed, routes) = feed(Some(delay));
        let blue = backend("blue");
        let green = backend("green");
        feed.submit(vec![(1, vec![("a.com".into(), blue.clone())])]);
        feed.submit(vec![(
            1,
            vec![("a.com".into(), blue), ("b.com".into(), green.clone())],
        )]);
        feed.submit(vec![(1, vec![])]);
        assert!(hosts(&routes).is_empty(), "nothing yet");
        assert!(!feed.settled());
        // Let time run until everything is delivered; versions count each delivery.
        let start = routes.version();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(feed.settled());
        assert_eq!(routes.version(), start + 3, "three deliveries, in order");
        assert!(hosts(&routes).is_empty(), "the last change wins");
    }

    #[test]
    fn delays_are_reproducible_from_the_seed() {
        let delay = RouteDelay {
            min: Duration::ZERO,
            max: Duration::from_secs(1),
        };
        let draws = |seed| {
            let (feed, _) = {
                let routes = Routes::new();
                let feed = RouteFeed::new(
                    routes.clone(),
                    None,
                    seed,
                    false,
                    CancellationToken::new(),
                    TaskTracker::new(),
                );
                (feed, routes)
            };
            (0..5).map(|_| feed.random_delay(delay)).collect::<Vec<_>>()
        };
        assert_eq!(draws(42), draws(42));
        assert_ne!(draws(42), draws(43));
    }

    #[test]
    fn the_deliberate_defect_skips_one_unregister() {
        let routes = Routes::new();
        let feed = Arc::new(RouteFeed::new(
            routes.clone(),
            None,
            0,
            true,
            CancellationToken::new(),
            TaskTracker::new(),
        ));
        let blue = backend("blue");
        feed.submit(vec![(1, vec![("a.com".into(), blue.clone())])]);
        feed.submit(vec![(1, vec![])]);
        assert_eq!(hosts(&routes).len(), 1, "the unregister was skipped");
        feed.submit(vec![(1, vec![("b.com".into(), blue)])]);
        assert_eq!(
            hosts(&routes),
            vec![("b.com".into(), vec![("blue".into(), 0)])]
        );
    }
}
