//! Proving or refuting a runbook without wall-clock luck (`afemu check`). The runbook's `af`
//! steps run on the reference model, which says which route changes each one publishes; the
//! explorer then covers every schedule the runbook's timing allows and asks, of each moment,
//! whether a request to a watched host could get the default error page.
//!
//! The timing (docs/RUNBOOKS.md, "What check assumes"):
//!
//! - an `af` step takes any time, zero included, and publishes its route changes in order while
//!   it runs; a step that stops instances does not go on until the router has stopped sending
//!   them requests (afemu's drain; under `--stop hard` it kills them at once instead);
//! - with `--route-delay MIN..MAX`, each route change reaches the router between MIN and MAX
//!   after it was published — in order per app, in any order across apps that time allows; a
//!   change due at the very moment a line would begin lands first; without a delay it lands as
//!   it is published;
//! - `@wait D` lets at least D pass; `@await` ends once what it waits for holds; `@traffic`
//!   starts its hosts' traffic once every route change so far has landed (the same rule as in
//!   `rehearse`), and a host is watched from then on, to the end, when every change has landed.
//!
//! Time is continuous, so schedules are grouped into zones (`zone.rs`): states are explored
//! breadth-first, so the counter-example found for a host is a shortest one.

pub mod zone;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use afemu_cli::parse_command;
use serde::{Deserialize, Serialize};

use crate::control::route_feed::RouteDelay;
use crate::procedure::model::{Model, Step};
use crate::procedure::runbook::{Await, ItemKind, Runbook, model_step};
use zone::Zone;

/// The faults `check` can reason about, as `afemu serve` and `afemu rehearse` take them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckOptions {
    pub route_delay: Option<RouteDelay>,
    /// Stops kill instances at once, as v1 did, instead of after the router lets go of them.
    pub stop_hard: bool,
    /// At most this many states are explored (default [`STATE_LIMIT`]); past it nothing is proved.
    pub state_limit: Option<usize>,
}

impl CheckOptions {
    /// The route delay's bounds in microseconds.
    fn delay_us(&self) -> (i64, i64) {
        self.route_delay.map_or((0, 0), |d| {
            (
                d.min.as_micros().min(i64::MAX as u128) as i64,
                d.max.as_micros().min(i64::MAX as u128) as i64,
            )
        })
    }

    /// In a sentence, for the report's first line.
    pub fn describe(&self) -> String {
        let routes = match self.route_delay {
            Some(delay) if !delay.max.is_zero() => format!(
                "route changes land {} to {} after they are published",
                humantime::format_duration(delay.min),
                humantime::format_duration(delay.max)
            ),
            _ => "route changes land as they are published".to_owned(),
        };
        if self.stop_hard {
            format!("{routes}; stops kill at once")
        } else {
            routes
        }
    }
}

/// How many states are explored at most; past that the verdict is "not evaluated", never a pass.
pub const STATE_LIMIT: usize = 1_000_000;

/// Whether an expectation held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Held,
    Failed,
    /// Nothing was (or would be) observed that could decide it: a step before it failed, or the
    /// search was cut short.
    NotEvaluated,
}

impl Outcome {
    pub fn mark(self) -> &'static str {
        match self {
            Outcome::Held => "ok",
            Outcome::Failed => "FAIL",
            Outcome::NotEvaluated => "not evaluated",
        }
    }
}

/// One expectation of the runbook (stated, or implied for a traffic host) and what became of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckedExpectation {
    /// `no-default-error-page HOST` or `served-by APP HOST`.
    pub name: String,
    /// The line that states it; none for the implied ones.
    pub line: Option<usize>,
    pub outcome: Outcome,
    pub detail: String,
}

/// What a check found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    pub options: String,
    /// How many states (a moment of the steps and the router, with its zone) were explored.
    pub states: usize,
    /// Whether every schedule was explored (false: the state limit was reached).
    pub complete: bool,
    /// A step the platform would refuse: the run stops there in every schedule.
    pub step_failure: Option<StepFailure>,
    /// The shortest schedule to each way of failing: one per host that can get the default
    /// error page, and one per `@await` that can wait forever.
    pub counter_examples: Vec<CounterExample>,
    pub expectations: Vec<CheckedExpectation>,
}

impl CheckReport {
    pub fn passed(&self) -> bool {
        self.complete
            && self.step_failure.is_none()
            && self.counter_examples.is_empty()
            && self.expectations.iter().all(|e| e.outcome == Outcome::Held)
    }

    /// Whether something was shown to break (as opposed to left unproved).
    pub fn failed(&self) -> bool {
        self.step_failure.is_some()
            || !self.counter_examples.is_empty()
            || self
                .expectations
                .iter()
                .any(|e| e.outcome == Outcome::Failed)
    }

    /// The last line of the report: `PASSED`, `FAILED`, or `NOT PROVEN` when nothing broke but
    /// something could not be decided (the search was cut, or the model cannot see it).
    pub fn verdict(&self) -> String {
        if self.passed() {
            "PASSED".into()
        } else if self.failed() {
            "FAILED".into()
        } else {
            let open = self
                .expectations
                .iter()
                .filter(|e| e.outcome == Outcome::NotEvaluated)
                .count();
            match open {
                0 => "NOT PROVEN: the search was cut short".into(),
                1 => "NOT PROVEN: 1 expectation not evaluated".into(),
                n => format!("NOT PROVEN: {n} expectations not evaluated"),
            }
        }
    }
}

/// A step that fails on the platform, whatever the schedule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepFailure {
    pub line: usize,
    pub text: String,
    pub message: String,
}

/// A shortest schedule that shows a failure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterExample {
    pub breach: Breach,
    /// The runbook line during which it happens (the last line, once every line has run).
    pub line: usize,
    pub text: String,
    /// What happens, in order, from the first line on.
    pub moves: Vec<Move>,
}

/// What goes wrong at the end of a counter-example.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Breach {
    /// A request to the host finds no backend: 404, the default error page.
    NoRoute { host: String },
    /// A request to the host is sent to an instance the hard stop has killed: 502.
    DeadBackend {
        host: String,
        app: String,
        index: u32,
    },
    /// A request in flight to an instance is cut when the hard stop kills it: 502.
    Cut {
        host: String,
        app: String,
        index: u32,
    },
    /// The `@await` on this line waits for something that no longer comes.
    Stuck { line: usize },
}

impl Breach {
    pub fn host(&self) -> Option<&str> {
        match self {
            Breach::NoRoute { host }
            | Breach::DeadBackend { host, .. }
            | Breach::Cut { host, .. } => Some(host),
            Breach::Stuck { .. } => None,
        }
    }
}

/// One thing that happens in a schedule. A schedule written by `afemu check --schedule` is a
/// list of these, and `afemu rehearse --replay` makes them happen in that order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "move", rename_all = "kebab-case")]
pub enum Move {
    /// A runbook line begins (the one before it has ended).
    Line { line: usize, text: String },
    /// The last line has ended; the router learns what is still on its way.
    End,
    /// The run stops at a line that fails on the platform (nothing after it runs).
    Fail { line: usize, message: String },
    /// The platform publishes an app's new routes (`change` counts the route changes of the
    /// run from 0, in the order they are published).
    Publish {
        change: usize,
        app: String,
        line: usize,
        hosts: Vec<String>,
    },
    /// The router learns a published change.
    Deliver {
        change: usize,
        app: String,
        line: usize,
        hosts: Vec<String>,
    },
    /// What the request at the end of a counter-example gets.
    Request {
        host: String,
        status: u16,
        why: String,
    },
}

impl std::fmt::Display for Move {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let on = |hosts: &[String]| {
            if hosts.is_empty() {
                "no host".to_owned()
            } else {
                hosts.join(", ")
            }
        };
        match self {
            Move::Line { line, text } => write!(f, "line {line}: {text}"),
            Move::End => write!(f, "the last line has run"),
            Move::Fail { line, message } => {
                write!(f, "line {line} fails ({message}): the run stops")
            }
            Move::Publish {
                app, line, hosts, ..
            } => write!(
                f,
                "line {line} publishes {app}'s routes ({app} on {})",
                on(hosts)
            ),
            Move::Deliver {
                app, line, hosts, ..
            } => write!(
                f,
                "the router learns {app}'s routes from line {line}: {app} on {}",
                on(hosts)
            ),
            Move::Request { host, status, why } => {
                write!(f, "a request to {host} arrives: {status}, {why}")
            }
        }
    }
}

/// A schedule as `afemu check --schedule` writes it and `afemu rehearse --replay` reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub runbook: String,
    /// `MIN..MAX`, as `--route-delay` takes it.
    pub route_delay: Option<String>,
    pub stop_hard: bool,
    pub breach: Breach,
    pub moves: Vec<Move>,
}

// ---------------------------------------------------------------------------------------------
// The runbook, prepared: its lines as points, and every route change the model says they make.

struct Point {
    line: usize,
    text: String,
    kind: PointKind,
    /// The route changes this line publishes are `first_change..first_change + n_changes`.
    first_change: usize,
    n_changes: usize,
}

enum PointKind {
    Af,
    /// Starts traffic to these hosts (once every change so far has landed).
    Traffic,
    Wait(i64),
    Await(AwaitAt),
}

struct AwaitAt {
    until: Await,
    /// For `new-version`: the app's version when the await begins (none: no such app).
    version: Option<u32>,
}

/// One route change: an app's whole registrations after it.
struct Change {
    /// The app (one slot per app created: a name pushed again after a delete is a new app).
    slot: usize,
    point: usize,
    version: u32,
    registrations: BTreeSet<(String, u32)>,
    stops: bool,
    /// The instances (index, version) this change stops.
    killed: BTreeSet<(u32, u32)>,
}

struct Prepared {
    points: Vec<Point>,
    changes: Vec<Change>,
    /// The app name of each slot.
    slots: Vec<String>,
    /// Each slot's changes, in order.
    slot_changes: Vec<Vec<usize>>,
    /// Host → the point whose end starts its traffic.
    traffic_from: BTreeMap<String, usize>,
    step_failure: Option<StepFailure>,
    /// The first `$ command` line: what it runs is known only when it runs, so nothing from
    /// there on is modelled (the lines before it are).
    script: Option<(usize, String)>,
}

fn prepare(runbook: &Runbook) -> Prepared {
    let mut model = Model::new();
    let mut prepared = Prepared {
        points: Vec::new(),
        changes: Vec::new(),
        slots: Vec::new(),
        slot_changes: Vec::new(),
        traffic_from: BTreeMap::new(),
        step_failure: None,
        script: None,
    };
    let mut slot_of: HashMap<String, usize> = HashMap::new();
    for item in &runbook.items {
        let index = prepared.points.len();
        let first_change = prepared.changes.len();
        let kind = match &item.kind {
            ItemKind::Af(args) => {
                let failure = |message: String| StepFailure {
                    line: item.line,
                    text: item.text.clone(),
                    message,
                };
                // The parser accepted the line, so af's parser and the model's do too.
                let step = parse_command(args)
                    .map_err(|e| failure(e.to_string()))
                    .and_then(|command| {
                        model_step(&command, |app| model.instances(app)).map_err(failure)
                    });
                let step = match step {
                    Ok(step) => step,
                    Err(failure) => {
                        prepared.step_failure = Some(failure);
                        break;
                    }
                };
                if let Some(step) = step {
                    let changes = match model.apply(&step) {
                        Ok(changes) => changes,
                        Err(error) => {
                            prepared.step_failure = Some(failure(error.to_string()));
                            break;
                        }
                    };
                    if let Step::Push { app, .. } = &step {
                        slot_of.insert(app.clone(), prepared.slots.len());
                        prepared.slots.push(app.clone());
                        prepared.slot_changes.push(Vec::new());
                    }
                    for change in changes {
                        let slot = slot_of[&change.app];
                        let previous = prepared.slot_changes[slot]
                            .last()
                            .map(|c| &prepared.changes[*c]);
                        let killed = match previous {
                            Some(previous) if change.stops => {
                                let before: BTreeSet<(u32, u32)> = previous
                                    .registrations
                                    .iter()
                                    .map(|(_, index)| (*index, previous.version))
                                    .collect();
                                let after: BTreeSet<(u32, u32)> = change
                                    .registrations
                                    .iter()
                                    .map(|(_, index)| (*index, change.version))
                                    .collect();
                                before.difference(&after).copied().collect()
                            }
                            _ => BTreeSet::new(),
                        };
                        prepared.slot_changes[slot].push(prepared.changes.len());
                        prepared.changes.push(Change {
                            slot,
                            point: index,
                            version: change.version,
                            registrations: change.registrations,
                            stops: change.stops,
                            killed,
                        });
                    }
                }
                PointKind::Af
            }
            ItemKind::Exec(_) => {
                prepared.script = Some((item.line, item.text.clone()));
                break;
            }
            ItemKind::Traffic { hosts, .. } => {
                for host in hosts {
                    prepared.traffic_from.entry(host.clone()).or_insert(index);
                }
                PointKind::Traffic
            }
            ItemKind::Wait(duration) => {
                PointKind::Wait(duration.as_micros().min(i64::MAX as u128) as i64)
            }
            ItemKind::Await { until, .. } => PointKind::Await(AwaitAt {
                until: until.clone(),
                version: model.version(until.app()),
            }),
            // Expectations are about the run as a whole; they take no time.
            ItemKind::ExpectNoDefaultErrorPage { .. }
            | ItemKind::ExpectServedBy { .. }
            | ItemKind::ExpectWritesKept { .. } => {
                continue;
            }
        };
        prepared.points.push(Point {
            line: item.line,
            text: item.text.clone(),
            kind,
            first_change,
            n_changes: prepared.changes.len() - first_change,
        });
    }
    prepared
}

// ---------------------------------------------------------------------------------------------
// The exploration.

/// Where the run is: which line, how many of its changes are published, and how many changes of
/// each app the router has learnt.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Discrete {
    point: usize,
    phase: usize,
    delivered: Vec<usize>,
}

struct Node {
    discrete: Discrete,
    /// Clocks: 1 is the time since the line began, then one per published change not yet
    /// learnt by the router (the time since it was published), in the order of the changes.
    zone: Zone,
    parent: Option<usize>,
    moves: Vec<Move>,
}

/// A backend in the router's table: `(slot, instance index, version)`.
type Backend = (usize, u32, u32);

struct Explorer<'a> {
    prepared: &'a Prepared,
    options: CheckOptions,
    min: i64,
    max: i64,
}

impl Explorer<'_> {
    /// How many changes have been published, in all.
    fn published(&self, d: &Discrete) -> usize {
        match self.prepared.points.get(d.point) {
            Some(point) => point.first_change + d.phase,
            None => self.prepared.changes.len(),
        }
    }

    /// Changes published and not yet learnt, in order.
    fn pending(&self, d: &Discrete) -> Vec<usize> {
        let published = self.published(d);
        let mut pending: Vec<usize> = self
            .prepared
            .slot_changes
            .iter()
            .enumerate()
            .flat_map(|(slot, changes)| {
                let emitted = changes.partition_point(|c| *c < published);
                changes[d.delivered[slot]..emitted].iter().copied()
            })
            .collect();
        pending.sort_unstable();
        pending
    }

    /// The router's backends for a host.
    fn backends(&self, d: &Discrete, host: &str) -> Vec<Backend> {
        let mut backends = Vec::new();
        for (slot, delivered) in d.delivered.iter().enumerate() {
            if *delivered == 0 {
                continue;
            }
            let change = &self.prepared.changes[self.prepared.slot_changes[slot][delivered - 1]];
            for (on, index) in &change.registrations {
                if on == host {
                    backends.push((slot, *index, change.version));
                }
            }
        }
        backends
    }

    /// Instances killed so far (under the hard stop; a drained stop kills only what the router
    /// has let go of).
    fn dead(&self, d: &Discrete, slot: usize) -> BTreeSet<(u32, u32)> {
        let published = self.published(d);
        self.prepared.slot_changes[slot]
            .iter()
            .take_while(|c| **c < published)
            .flat_map(|c| self.prepared.changes[*c].killed.iter().copied())
            .collect()
    }

    fn watched(&self, d: &Discrete) -> impl Iterator<Item = &String> {
        self.prepared
            .traffic_from
            .iter()
            .filter(move |(_, from)| **from < d.point)
            .map(|(host, _)| host)
    }

    /// What a request to a watched host can get wrong here.
    fn breaches(&self, d: &Discrete) -> Vec<Breach> {
        let mut found = Vec::new();
        for host in self.watched(d) {
            let backends = self.backends(d, host);
            if backends.is_empty() {
                found.push(Breach::NoRoute { host: host.clone() });
            } else if self.options.stop_hard {
                let dead = backends.iter().find(|(slot, index, version)| {
                    self.dead(d, *slot).contains(&(*index, *version))
                });
                if let Some((slot, index, _)) = dead {
                    found.push(Breach::DeadBackend {
                        host: host.clone(),
                        app: self.prepared.slots[*slot].clone(),
                        index: *index,
                    });
                }
            }
        }
        found
    }

    fn await_holds(&self, d: &Discrete, at: &AwaitAt) -> bool {
        let named = |slot: usize| self.prepared.slots[slot] == at.until.app();
        let backends = self.backends(d, at.until.host());
        match &at.until {
            Await::ServedBy { .. } => backends.iter().any(|(slot, _, _)| named(*slot)),
            Await::NewVersion { .. } => backends
                .iter()
                .any(|(slot, _, version)| named(*slot) && Some(*version) == at.version),
            Await::NotServedBy { .. } => !backends.iter().any(|(slot, _, _)| named(*slot)),
        }
    }

    /// Time passes after a move; every change on its way must land within the maximum delay.
    fn settle(&self, mut zone: Zone) -> Option<Zone> {
        zone.elapse();
        for clock in 2..=zone.clocks() {
            if !zone.at_most(clock, self.max, false) {
                return None;
            }
        }
        Some(zone)
    }

    fn hosts_of(&self, change: usize) -> Vec<String> {
        let hosts: BTreeSet<&String> = self.prepared.changes[change]
            .registrations
            .iter()
            .map(|(host, _)| host)
            .collect();
        hosts.into_iter().cloned().collect()
    }

    /// The app, the line and the hosts of a change, as a move tells them.
    fn change_move(&self, change: usize, delivered: bool) -> Move {
        let c = &self.prepared.changes[change];
        let (app, line, hosts) = (
            self.prepared.slots[c.slot].clone(),
            self.prepared.points[c.point].line,
            self.hosts_of(change),
        );
        if delivered {
            Move::Deliver {
                change,
                app,
                line,
                hosts,
            }
        } else {
            Move::Publish {
                change,
                app,
                line,
                hosts,
            }
        }
    }

    /// Every move from a state: `(next state, its zone, the moves, a breach the move itself
    /// causes)`.
    fn successors(
        &self,
        d: &Discrete,
        zone: &Zone,
    ) -> Vec<(Discrete, Zone, Vec<Move>, Option<Breach>)> {
        let points = &self.prepared.points;
        let pending = self.pending(d);
        let mut next = Vec::new();
        // The router learns the oldest pending change of an app.
        for (slot, delivered) in d.delivered.iter().enumerate() {
            let Some(change) = self.prepared.slot_changes[slot].get(*delivered).copied() else {
                continue;
            };
            let Some(position) = pending.iter().position(|c| *c == change) else {
                continue;
            };
            let clock = position + 2;
            let mut z = zone.clone();
            if !z.at_least(clock, self.min) {
                continue;
            }
            z.remove_clock(clock);
            let mut after = d.clone();
            after.delivered[slot] += 1;
            if let Some(z) = self.settle(z) {
                next.push((after, z, vec![self.change_move(change, true)], None));
            }
        }
        // Anything else happens only before every pending change's deadline.
        let mut urgent = zone.clone();
        for clock in 2..=urgent.clocks() {
            if !urgent.at_most(clock, self.max, true) {
                return next;
            }
        }
        let Some(point) = points.get(d.point) else {
            return next;
        };
        let draining = !self.options.stop_hard
            && pending.iter().any(|c| {
                let change = &self.prepared.changes[*c];
                change.point == d.point && change.stops
            });
        // The line publishes its next change.
        if d.phase < point.n_changes && !draining {
            let change = point.first_change + d.phase;
            let c = &self.prepared.changes[change];
            let mut cut = None;
            if self.options.stop_hard && c.stops {
                for host in self.watched(d) {
                    let hit = self
                        .backends(d, host)
                        .into_iter()
                        .find(|(slot, index, version)| {
                            *slot == c.slot && c.killed.contains(&(*index, *version))
                        });
                    if let Some((slot, index, _)) = hit {
                        cut = Some(Breach::Cut {
                            host: host.clone(),
                            app: self.prepared.slots[slot].clone(),
                            index,
                        });
                        break;
                    }
                }
            }
            let mut z = urgent.clone();
            let mut after = d.clone();
            after.phase += 1;
            let mut moves = vec![self.change_move(change, false)];
            if self.max == 0 {
                // No delay: the router learns it as it is published.
                after.delivered[c.slot] += 1;
                moves.push(self.change_move(change, true));
            } else {
                z.add_clock();
            }
            if let Some(z) = self.settle(z) {
                next.push((after, z, moves, cut));
            }
        }
        // The line ends and the next one begins.
        let ready = match &point.kind {
            PointKind::Af => d.phase == point.n_changes && !draining,
            PointKind::Traffic => pending.is_empty(),
            PointKind::Wait(_) => true,
            PointKind::Await(at) => self.await_holds(d, at),
        };
        if ready {
            let mut z = urgent;
            let waited = match point.kind {
                PointKind::Wait(duration) => z.at_least(1, duration),
                _ => true,
            };
            if waited {
                z.reset(1);
                let after = Discrete {
                    point: d.point + 1,
                    phase: 0,
                    delivered: d.delivered.clone(),
                };
                let step = match (points.get(after.point), &self.prepared.step_failure) {
                    (Some(p), _) => Move::Line {
                        line: p.line,
                        text: p.text.clone(),
                    },
                    (None, Some(failure)) => Move::Fail {
                        line: failure.line,
                        message: failure.message.clone(),
                    },
                    (None, None) => Move::End,
                };
                if let Some(z) = self.settle(z) {
                    next.push((after, z, vec![step], None));
                }
            }
        }
        next
    }

    /// The `@await` a state is stuck at, if it is: nothing on its way and its condition false.
    fn stuck(&self, d: &Discrete) -> Option<usize> {
        let point = self.prepared.points.get(d.point)?;
        match &point.kind {
            PointKind::Await(at) if self.pending(d).is_empty() && !self.await_holds(d, at) => {
                Some(point.line)
            }
            _ => None,
        }
    }
}

/// Explores a runbook under these faults.
pub fn check(runbook: &Runbook, options: CheckOptions) -> CheckReport {
    let prepared = prepare(runbook);
    let (min, max) = options.delay_us();
    let explorer = Explorer {
        prepared: &prepared,
        options,
        min,
        max,
    };
    let points = &prepared.points;

    let mut nodes: Vec<Node> = Vec::new();
    let mut seen: HashMap<Discrete, Vec<usize>> = HashMap::new();
    let mut queue = VecDeque::new();
    let start = Discrete {
        point: 0,
        phase: 0,
        delivered: vec![0; prepared.slots.len()],
    };
    let mut zone = Zone::zero(1);
    zone.elapse();
    nodes.push(Node {
        discrete: start.clone(),
        zone,
        parent: None,
        moves: points
            .first()
            .map(|p| Move::Line {
                line: p.line,
                text: p.text.clone(),
            })
            .into_iter()
            .collect(),
    });
    seen.insert(start, vec![0]);
    queue.push_back(0);

    let mut found: BTreeMap<String, CounterExample> = BTreeMap::new();
    let mut record = |nodes: &[Node], at: usize, breach: Breach, extra: Option<Move>| {
        let key = match &breach {
            Breach::Stuck { line } => format!("@await {line}"),
            other => other.host().unwrap_or_default().to_owned(),
        };
        if found.contains_key(&key) {
            return;
        }
        let d = &nodes[at].discrete;
        let point = points.get(d.point).or(points.last());
        let mut moves = path(nodes, at);
        moves.extend(extra);
        found.insert(
            key,
            CounterExample {
                breach,
                line: point.map_or(0, |p| p.line),
                text: point.map_or_else(String::new, |p| p.text.clone()),
                moves,
            },
        );
    };
    let mut complete = true;
    while let Some(at) = queue.pop_front() {
        let d = nodes[at].discrete.clone();
        for breach in explorer.breaches(&d) {
            let request = request_move(&breach);
            record(&nodes, at, breach, Some(request));
        }
        if let Some(line) = explorer.stuck(&d) {
            record(&nodes, at, Breach::Stuck { line }, None);
        }
        for (after, zone, moves, cut) in explorer.successors(&d, &nodes[at].zone) {
            let known = seen.entry(after.clone()).or_default();
            if known.iter().any(|n| nodes[*n].zone.includes(&zone)) {
                continue;
            }
            if nodes.len() >= options.state_limit.unwrap_or(STATE_LIMIT) {
                complete = false;
                queue.clear();
                break;
            }
            known.push(nodes.len());
            nodes.push(Node {
                discrete: after,
                zone,
                parent: Some(at),
                moves,
            });
            queue.push_back(nodes.len() - 1);
            if let Some(cut) = cut {
                let request = request_move(&cut);
                record(&nodes, nodes.len() - 1, cut, Some(request));
            }
        }
    }

    let counter_examples: Vec<CounterExample> = {
        let mut list: Vec<CounterExample> = found.into_values().collect();
        list.sort_by_key(|c| c.moves.len());
        list
    };
    let limit = options.state_limit.unwrap_or(STATE_LIMIT);
    let expectations = expectations(runbook, &prepared, &counter_examples, complete, limit);
    CheckReport {
        options: options.describe(),
        states: nodes.len(),
        complete,
        step_failure: prepared.step_failure.clone(),
        counter_examples,
        expectations,
    }
}

fn request_move(breach: &Breach) -> Move {
    match breach {
        Breach::NoRoute { host } => Move::Request {
            host: host.clone(),
            status: 404,
            why: "the default error page (no route)".into(),
        },
        Breach::DeadBackend { host, app, index } => Move::Request {
            host: host.clone(),
            status: 502,
            why: format!(
                "the default error page (bad gateway: instance {index} of {app} was killed by the hard stop)"
            ),
        },
        Breach::Cut { host, app, index } => Move::Request {
            host: host.clone(),
            status: 502,
            why: format!(
                "the default error page (bad gateway: a request in flight to instance {index} of {app} is cut by the hard stop)"
            ),
        },
        Breach::Stuck { .. } => Move::End,
    }
}

fn path(nodes: &[Node], end: usize) -> Vec<Move> {
    let mut chain = Vec::new();
    let mut at = Some(end);
    while let Some(node) = at {
        chain.push(node);
        at = nodes[node].parent;
    }
    chain
        .into_iter()
        .rev()
        .flat_map(|n| nodes[n].moves.iter().cloned())
        .collect()
}

/// Every expectation of the runbook, decided from what the exploration found.
fn expectations(
    runbook: &Runbook,
    prepared: &Prepared,
    found: &[CounterExample],
    complete: bool,
    limit: usize,
) -> Vec<CheckedExpectation> {
    let mut list = Vec::new();
    let failed_step = prepared.step_failure.as_ref();
    let not_evaluated = |why: String| (Outcome::NotEvaluated, why);
    let cut_short = || format!("not evaluated: more than {limit} states, the search was cut short");
    // What decides an expectation before its own condition: a host nobody sends requests to
    // observes nothing, and a run that stops at a failing step never gets there.
    let unobserved = |host: &str| -> Option<(Outcome, String)> {
        if let Some((line, text)) = &prepared.script {
            return Some(not_evaluated(format!(
                "not evaluated: line {line} ({text}) runs a command, and which af commands it \
                 runs is known only when it runs; `afemu rehearse --record FILE` writes them \
                 out as a runbook to check"
            )));
        }
        if !prepared.traffic_from.contains_key(host) {
            return Some((
                Outcome::Failed,
                format!("{host} gets no traffic (no @traffic names it): nothing would be observed"),
            ));
        }
        failed_step.map(|step| {
            not_evaluated(format!(
                "not evaluated: line {} fails ({}), so the run stops there",
                step.line, step.message
            ))
        })
    };
    for host in runbook.watched_hosts() {
        let line = runbook.items.iter().find_map(|item| match &item.kind {
            ItemKind::ExpectNoDefaultErrorPage { hosts } if hosts.contains(&host) => {
                Some(item.line)
            }
            _ => None,
        });
        let breach = found.iter().find(|c| c.breach.host() == Some(&host));
        let (outcome, detail) = if let Some(counter) = breach {
            let last = counter
                .moves
                .last()
                .map(ToString::to_string)
                .unwrap_or_default();
            (
                Outcome::Failed,
                format!(
                    "a request to {host} can get the default error page during line {} ({}): {last}",
                    counter.line, counter.text
                ),
            )
        } else if let Some(decided) = unobserved(&host) {
            decided
        } else if !complete {
            not_evaluated(cut_short())
        } else {
            (
                Outcome::Held,
                format!("no request to {host} can get the default error page"),
            )
        };
        list.push(CheckedExpectation {
            name: format!("no-default-error-page {host}"),
            line,
            outcome,
            detail,
        });
    }
    // The end: every step run and every change landed.
    let mut serving: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for slot in 0..prepared.slots.len() {
        if let Some(last) = prepared.slot_changes[slot].last() {
            for (host, _) in &prepared.changes[*last].registrations {
                serving
                    .entry(host.clone())
                    .or_default()
                    .push(prepared.slots[slot].clone());
            }
        }
    }
    for item in &runbook.items {
        let ItemKind::ExpectServedBy { app, host } = &item.kind else {
            continue;
        };
        let mut served = serving.get(host).cloned().unwrap_or_default();
        served.sort();
        served.dedup();
        let (outcome, detail) = if let Some(decided) = unobserved(host) {
            decided
        } else if served == [app.clone()] {
            (
                Outcome::Held,
                format!("at the end {host} is served only by {app}"),
            )
        } else if served.is_empty() {
            (Outcome::Failed, format!("at the end nothing serves {host}"))
        } else {
            (
                Outcome::Failed,
                format!("at the end {host} is served by {}", served.join(" and ")),
            )
        };
        list.push(CheckedExpectation {
            name: format!("served-by {app} {host}"),
            line: Some(item.line),
            outcome,
            detail,
        });
    }
    // The model follows routes, not what an app stores: never a pass for data it cannot see.
    for item in &runbook.items {
        if let ItemKind::ExpectWritesKept { host, .. } = &item.kind {
            list.push(CheckedExpectation {
                name: format!("writes-kept {host}"),
                line: Some(item.line),
                outcome: Outcome::NotEvaluated,
                detail: "not evaluated: the model follows routes, not an app's data; \
                         `afemu rehearse` observes it"
                    .into(),
            });
        }
    }
    list
}

/// The report as `afemu check` prints it.
pub fn render(report: &CheckReport, name: &str) -> String {
    let mut out = format!("afemu check {name} ({})\n", report.options);
    if let Some(step) = &report.step_failure {
        out.push_str(&format!(
            "\nFAILED: line {} fails on the platform: {}: {}\n",
            step.line, step.text, step.message
        ));
    }
    for counter in &report.counter_examples {
        match &counter.breach {
            Breach::Stuck { line } => out.push_str(&format!(
                "\nFAILED: the @await at line {line} can wait forever: what it waits for has come and gone.\nThe shortest schedule that shows it:\n"
            )),
            breach => out.push_str(&format!(
                "\nFAILED: a request to {} can get the default error page, during line {} ({}).\nThe shortest schedule that shows it:\n",
                breach.host().unwrap_or_default(),
                counter.line,
                counter.text
            )),
        }
        for (number, step) in counter.moves.iter().enumerate() {
            out.push_str(&format!("  {:>2}. {step}\n", number + 1));
        }
    }
    out.push('\n');
    for expectation in &report.expectations {
        out.push_str(&format!(
            "{:<4} {}: {}\n",
            expectation.outcome.mark(),
            expectation.name,
            expectation.detail
        ));
    }
    if !report.complete {
        out.push_str(&format!(
            "\nNOT EVALUATED: the search stopped at {} states; nothing is proved\n",
            report.states
        ));
    }
    out.push_str(&format!(
        "{} {} explored\n{}\n",
        report.states,
        if report.states == 1 {
            "state"
        } else {
            "states"
        },
        report.verdict()
    ));
    out
}

/// Whether a plain sequence of steps (no runbook) keeps every watched host served at every
/// moment; the report says which schedule breaks it otherwise. The setup runs before traffic.
pub fn check_steps(
    setup: &[Step],
    steps: &[Step],
    watched: &[&str],
    options: CheckOptions,
) -> Result<CheckReport, crate::procedure::runbook::RunbookError> {
    let mut text = String::new();
    for step in setup {
        text.push_str(&step.to_string());
        text.push('\n');
    }
    text.push_str("@traffic");
    for host in watched {
        text.push(' ');
        text.push_str(host);
    }
    text.push('\n');
    for step in steps {
        text.push_str(&step.to_string());
        text.push('\n');
    }
    let runbook = Runbook::parse(&text, "(generated)", std::path::PathBuf::new())?;
    Ok(check(&runbook, options))
}

/// The property "for every schedule of these steps (with late route changes when `options` say
/// so), no request on these hosts sees the default error page", for use in a proptest: fails
/// with the shortest schedule that shows the page, and proptest shrinks the steps from there.
/// Steps the platform would refuse are skipped, so generated procedures need not be valid.
///
/// ```
/// use afemu_emulator::procedure::check::{CheckOptions, no_default_error_page};
/// use afemu_emulator::procedure::model::Step;
/// use afemu_emulator::procedure::model::strategy::{procedure, proptest};
/// use proptest::test_runner::{Config, TestRunner};
///
/// let setup = [Step::Push { app: "blue".into(), uris: vec!["www.a.com".into()], instances: 1, start: true }];
/// let mut runner = TestRunner::new(Config { cases: 64, ..Config::default() });
/// // Random procedures over two apps do break the host: proptest finds and shrinks one.
/// let found = runner.run(&procedure(&["blue", "green"], &["www.a.com"], 6), |steps| {
///     no_default_error_page(&setup, &steps, &["www.a.com"], CheckOptions::default())
/// });
/// let error = found.unwrap_err().to_string();
/// assert!(error.contains("www.a.com"), "{error}");
/// ```
#[cfg(feature = "proptest")]
pub fn no_default_error_page(
    setup: &[Step],
    steps: &[Step],
    hosts: &[&str],
    options: CheckOptions,
) -> Result<(), proptest::test_runner::TestCaseError> {
    use proptest::test_runner::TestCaseError;
    // Keep only the steps the platform would accept, in order.
    let mut model = Model::new();
    for step in setup {
        model
            .apply(step)
            .map_err(|e| TestCaseError::reject(format!("the setup fails: {e}")))?;
    }
    let valid: Vec<Step> = steps
        .iter()
        .filter(|step| model.apply(step).is_ok())
        .cloned()
        .collect();
    let report = check_steps(setup, &valid, hosts, options)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    match report.counter_examples.first() {
        None => Ok(()),
        Some(found) => Err(TestCaseError::fail(format!(
            "a request to {} can get the default error page:\n  {}",
            found.breach.host().unwrap_or("(an await)"),
            found
                .moves
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n  ")
        ))),
    }
}

#[cfg(test)]
mod tests;
