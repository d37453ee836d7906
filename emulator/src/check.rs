//! Proving or refuting a runbook without wall-clock luck (`afemu check`). The runbook's `af`
//! steps run on the reference model; a request can arrive at any moment between two route
//! changes, and with a route delay (v1's NATS) each app's changes can reach the router late — in
//! order per app, in any order across apps, and after the `af` command has returned. Every such
//! schedule is explored breadth-first, so a counter-example, when there is one, is a shortest one.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use crate::model::{Model, RouteChange, Step, table_of};
use crate::runbook::{ItemKind, Runbook, model_step};

/// What a check found.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckReport {
    /// The hosts on which no request may see the default error page.
    pub watched: Vec<String>,
    /// How many distinct moments (states of the steps and the router) were explored.
    pub schedules: usize,
    /// The shortest schedule in which a request sees the default error page, if any.
    pub counter_example: Option<CounterExample>,
    /// `@expect served-by` lines that do not hold at the end.
    pub failed_expectations: Vec<String>,
}

impl CheckReport {
    pub fn passed(&self) -> bool {
        self.counter_example.is_none() && self.failed_expectations.is_empty()
    }
}

/// A shortest schedule that shows the default error page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterExample {
    /// What happens, in order, ending with the request that gets the page.
    pub moves: Vec<String>,
    pub host: String,
    /// The runbook line of the step after which (or during which) it happens.
    pub line: usize,
    pub step: String,
}

/// A runbook the model cannot follow (a step that would fail on the platform too).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {text}: {message}")]
pub struct CheckError {
    pub line: usize,
    pub text: String,
    pub message: String,
}

/// One runbook line as the explorer sees it.
struct Point {
    line: usize,
    text: String,
    /// For `@await served-by`: what must be true before the next line.
    awaits: Option<(String, String)>,
}

/// A queued route change: an app's new registrations, and the line that caused it.
struct Change {
    registrations: BTreeSet<(String, u32)>,
    point: usize,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct State {
    /// How many points have been passed.
    next: usize,
    /// How many changes of each app (by app number) the router has received.
    delivered: Vec<usize>,
}

/// Explores a runbook. `delayed`: route changes may arrive late (`--route-delay` with a maximum
/// above zero); otherwise each reaches the router before its step returns.
pub fn check(runbook: &Runbook, delayed: bool) -> Result<CheckReport, CheckError> {
    let mut model = Model::new();
    let mut points: Vec<Point> = Vec::new();
    let mut app_numbers: BTreeMap<String, usize> = BTreeMap::new();
    let mut queues: Vec<Vec<Change>> = Vec::new();
    // The first point at which traffic flows; before it, the setup, all delivered.
    let mut traffic_from: Option<usize> = None;
    let mut expectations: Vec<(usize, String, String, String)> = Vec::new();

    for item in &runbook.items {
        let point = points.len();
        let mut awaits = None;
        match &item.kind {
            ItemKind::Af(args) => {
                let error = |message: String| CheckError {
                    line: item.line,
                    text: item.text.clone(),
                    message,
                };
                let step = model_step(args, |app| model.instances(app)).map_err(error)?;
                if let Some(step) = step {
                    let changes = model.apply(&step).map_err(|e| error(e.to_string()))?;
                    for RouteChange { app, registrations } in changes {
                        let next = app_numbers.len();
                        let number = *app_numbers.entry(app).or_insert(next);
                        if number == queues.len() {
                            queues.push(Vec::new());
                        }
                        queues[number].push(Change {
                            registrations,
                            point,
                        });
                    }
                }
            }
            ItemKind::Traffic { .. } => {
                traffic_from.get_or_insert(point);
            }
            ItemKind::AwaitServedBy { app, host, .. } => awaits = Some((app.clone(), host.clone())),
            ItemKind::ExpectServedBy { app, host } => {
                expectations.push((item.line, item.text.clone(), app.clone(), host.clone()));
            }
            ItemKind::Wait(_) | ItemKind::ExpectNoDefaultErrorPage { .. } => {}
        }
        points.push(Point {
            line: item.line,
            text: item.text.clone(),
            awaits,
        });
    }
    let watched = runbook.watched_hosts();
    let names: Vec<String> = {
        let mut names = vec![String::new(); app_numbers.len()];
        for (name, number) in &app_numbers {
            names[*number] = name.clone();
        }
        names
    };
    // Changes emitted before point `p` by each app.
    let available =
        |app: usize, next: usize| queues[app].iter().take_while(|c| c.point < next).count();
    let table = |state: &State| {
        let registered: BTreeMap<String, BTreeSet<(String, u32)>> = state
            .delivered
            .iter()
            .enumerate()
            .filter(|(_, d)| **d > 0)
            .map(|(app, d)| (names[app].clone(), queues[app][d - 1].registrations.clone()))
            .collect();
        table_of(&registered)
    };

    // The setup is done, and the router knows all of it, when traffic starts.
    let start_point = traffic_from.unwrap_or(points.len());
    let start = State {
        next: start_point,
        delivered: (0..queues.len())
            .map(|app| available(app, start_point))
            .collect(),
    };
    let mut parents: HashMap<State, Option<(State, String)>> = HashMap::new();
    parents.insert(start.clone(), None);
    let mut frontier = VecDeque::from([start]);
    let mut finals = Vec::new();
    while let Some(state) = frontier.pop_front() {
        let routes = table(&state);
        if traffic_from.is_some()
            && let Some(host) = watched
                .iter()
                .find(|h| routes.get(*h).is_none_or(|b| b.is_empty()))
                .cloned()
        {
            let point = state
                .next
                .saturating_sub(1)
                .min(points.len().saturating_sub(1));
            let mut moves = path(&parents, &state);
            moves.push(format!(
                "a request to {host} arrives: 404, the default error page (no route)"
            ));
            return Ok(CheckReport {
                watched,
                schedules: parents.len(),
                counter_example: Some(CounterExample {
                    moves,
                    host,
                    line: points.get(point).map_or(0, |p| p.line),
                    step: points
                        .get(point)
                        .map_or_else(String::new, |p| p.text.clone()),
                }),
                failed_expectations: Vec::new(),
            });
        }
        let pending: Vec<usize> = (0..queues.len())
            .filter(|app| state.delivered[*app] < available(*app, state.next))
            .collect();
        let mut moves: Vec<(State, String)> = Vec::new();
        // The router learns an app's next change.
        for &app in &pending {
            let mut next = state.clone();
            next.delivered[app] += 1;
            let change = &queues[app][state.delivered[app]];
            let hosts: BTreeSet<&str> = change
                .registrations
                .iter()
                .map(|(h, _)| h.as_str())
                .collect();
            let what = if hosts.is_empty() {
                "no host".to_owned()
            } else {
                hosts.into_iter().collect::<Vec<_>>().join(", ")
            };
            moves.push((
                next,
                format!(
                    "the router learns {}'s routes from line {}: {} now on {what}",
                    names[app], points[change.point].line, names[app]
                ),
            ));
            if !delayed {
                // Without a delay, changes arrive one by one, in order, before anything else.
                break;
            }
        }
        // The next line runs: when its wait is over, and (without a delay) when every change
        // so far has reached the router.
        if state.next < points.len() && (delayed || pending.is_empty()) {
            let point = &points[state.next];
            let ready = match &point.awaits {
                Some((app, host)) => routes
                    .get(host)
                    .is_some_and(|b| b.iter().any(|(a, _)| a == app)),
                None => true,
            };
            if ready {
                let mut next = state.clone();
                next.next += 1;
                moves.push((next, format!("line {}: {}", point.line, point.text)));
            }
        }
        if moves.is_empty() && state.next == points.len() {
            finals.push(state.clone());
        }
        for (next, description) in moves {
            if !parents.contains_key(&next) {
                parents.insert(next.clone(), Some((state.clone(), description)));
                frontier.push_back(next);
            }
        }
    }

    // Every schedule ends with everything delivered: check the end state's expectations.
    let mut failed_expectations = Vec::new();
    let end = State {
        next: points.len(),
        delivered: (0..queues.len()).map(|app| queues[app].len()).collect(),
    };
    let routes = table(&end);
    for (line, text, app, host) in expectations {
        let served: BTreeSet<&str> = routes
            .get(&host)
            .map(|b| b.iter().map(|(a, _)| a.as_str()).collect())
            .unwrap_or_default();
        if served != BTreeSet::from([app.as_str()]) {
            let by = if served.is_empty() {
                "nothing".to_owned()
            } else {
                served.into_iter().collect::<Vec<_>>().join(" and ")
            };
            failed_expectations.push(format!("line {line}: {text}: {host} is served by {by}"));
        }
    }
    if finals.is_empty() && !points.is_empty() {
        // An @await that can never be satisfied.
        failed_expectations.push("the runbook cannot finish: an @await is never satisfied".into());
    }
    Ok(CheckReport {
        watched,
        schedules: parents.len(),
        counter_example: None,
        failed_expectations,
    })
}

/// The report as `afemu check` prints it.
pub fn render(report: &CheckReport, name: &str, delayed: bool) -> String {
    let mut out = String::new();
    let routing = if delayed {
        "route changes may arrive late, in order per app"
    } else {
        "route changes arrive before each step returns"
    };
    out.push_str(&format!("afemu check {name} ({routing})\n"));
    match &report.counter_example {
        Some(found) => {
            out.push_str(&format!(
                "\nFAILED: a request to {} can get the default error page, at line {} ({}).\nThe shortest schedule that shows it:\n",
                found.host, found.line, found.step
            ));
            for (number, step) in found.moves.iter().enumerate() {
                out.push_str(&format!("  {}. {step}\n", number + 1));
            }
        }
        None if report.watched.is_empty() => {
            out.push_str("\nno @traffic host: nothing to prove about the default error page\n");
        }
        None => out.push_str(&format!(
            "\nok: no request to {} can get the default error page\n",
            report.watched.join(", ")
        )),
    }
    for failed in &report.failed_expectations {
        out.push_str(&format!("FAILED expectation: {failed}\n"));
    }
    out.push_str(&format!("{} schedules explored\n", report.schedules));
    out
}

fn path(parents: &HashMap<State, Option<(State, String)>>, end: &State) -> Vec<String> {
    let mut moves = Vec::new();
    let mut state = end;
    while let Some(Some((parent, description))) = parents.get(state) {
        moves.push(description.clone());
        state = parent;
    }
    moves.reverse();
    moves
}

/// Whether a plain sequence of steps (no runbook) keeps every watched host served at every
/// moment; the shortest failing schedule otherwise. For property tests over generated procedures.
pub fn check_steps(
    setup: &[Step],
    steps: &[Step],
    watched: &[&str],
    delayed: bool,
) -> Result<CheckReport, CheckError> {
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
    let runbook = Runbook::parse(&text, "(generated)", std::path::PathBuf::new()).map_err(|e| {
        CheckError {
            line: e.line,
            text: String::new(),
            message: e.message,
        }
    })?;
    check(&runbook, delayed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str, delayed: bool) -> CheckReport {
        let runbook = Runbook::parse(text, "t", std::path::PathBuf::new()).unwrap();
        check(&runbook, delayed).unwrap()
    }

    const SETUP: &str = "af push example --url example.com --url www.example.com -n\n\
                         af push example2 --url example.aws.af.cm -n\n\
                         @traffic example.com www.example.com example.aws.af.cm\n";

    const SWAP: &str = "af map example2 example.com\n\
                        af map example2 www.example.com\n\
                        af unmap example example.com\n\
                        af unmap example www.example.com\n\
                        af map example example.aws.af.cm\n\
                        af unmap example2 example.aws.af.cm\n\
                        @expect served-by example2 example.com\n\
                        @expect served-by example example.aws.af.cm\n";

    #[test]
    fn the_seed_swap_is_safe_without_delay() {
        let report = run(&format!("{SETUP}{SWAP}"), false);
        assert!(report.passed(), "{report:?}");
        assert!(report.schedules >= 7);
    }

    #[test]
    fn unmapping_first_fails_at_that_line() {
        let report = run(
            &format!("{SETUP}af unmap example example.com\naf map example2 example.com\n"),
            false,
        );
        let found = report.counter_example.expect("a counter-example");
        assert_eq!(found.host, "example.com");
        assert_eq!(found.line, 4);
        assert!(found.step.contains("af unmap example example.com"));
    }

    #[test]
    fn a_plain_update_fails_and_a_downtime_app_saves_it() {
        let update =
            "af push example --url example.com -n\n@traffic example.com\naf update example\n";
        let found = run(update, false)
            .counter_example
            .expect("the update window");
        assert_eq!(found.line, 3);
        let safe = "af push example --url example.com -n\n\
                    af push downtime --url downtime.aws.af.cm -n\n\
                    @traffic example.com\n\
                    af map downtime example.com\n\
                    af update example\n\
                    af unmap downtime example.com\n";
        assert!(run(safe, false).passed());
    }

    #[test]
    fn with_a_delay_the_swap_fails_unless_it_awaits() {
        let report = run(&format!("{SETUP}{SWAP}"), true);
        let found = report.counter_example.expect("late map, early unmap");
        assert!(found.moves.last().unwrap().contains("default error page"));
        // The shortest schedule: map issued, unmap issued and delivered before the map.
        assert!(found.moves.len() <= 6, "{:#?}", found.moves);
        let awaited = SWAP
            .replace(
                "af unmap example example.com\n",
                "@await served-by example2 example.com\n@await served-by example2 www.example.com\naf unmap example example.com\n",
            )
            .replace(
                "af unmap example2 example.aws.af.cm\n",
                "@await served-by example example.aws.af.cm\naf unmap example2 example.aws.af.cm\n",
            );
        let report = run(&format!("{SETUP}{awaited}"), true);
        assert!(report.passed(), "{report:#?}");
        assert!(
            report.schedules > 20,
            "explored interleavings: {}",
            report.schedules
        );
    }

    #[test]
    fn end_expectations_are_checked() {
        let report = run(
            &format!(
                "{SETUP}af map example2 example.com\n@expect served-by example2 example.com\n"
            ),
            false,
        );
        assert_eq!(report.failed_expectations.len(), 1, "{report:?}");
        assert!(report.failed_expectations[0].contains("served by example and example2"));
    }

    #[test]
    fn steps_the_model_refuses_are_errors() {
        let runbook =
            Runbook::parse("af map ghost a.com\n", "t", std::path::PathBuf::new()).unwrap();
        let error = check(&runbook, false).unwrap_err();
        assert_eq!(error.line, 1);
        assert!(error.message.contains("not found"));
    }
}
