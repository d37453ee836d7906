//! From one run to a proof: the `af` commands a runbook's `$` lines ran, with the pauses between
//! them, written out as a runbook (`--record FILE`) and checked like any runbook, so the report
//! says whether *that sequence* is safe under every schedule the rules allow, not only in the
//! one run that happened.
//!
//! What the model cannot follow is never skipped quietly: an `af` line the runbook format
//! refuses (a push without `--url`, a rename), invocations that overlapped (background jobs),
//! one that never finished, or a `$` line that did not run leave the check "not evaluated",
//! naming them. Invocations that failed changed nothing on the platform and are left out, as a
//! comment that says so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::exec::{Invocation, af_line};
use super::report::Expectation;
use crate::config::Faults;
use crate::procedure::check::{self, CheckOptions, Outcome};
use crate::procedure::runbook::{ItemKind, Runbook, check_af_line, model_step};

/// What one `$` line ran.
#[derive(Debug)]
pub(super) struct Script {
    /// When it ended, from the start of the rehearsal.
    pub(super) ended: Duration,
    pub(super) invocations: Vec<Invocation>,
}

/// The recorded runbook.
pub(super) struct Recorded {
    pub(super) text: String,
    /// What the model cannot follow, each with why.
    pub(super) unmodelled: Vec<String>,
    /// How many af commands of the `$` lines it holds.
    pub(super) commands: usize,
    dir: PathBuf,
}

/// The runbook with each `$` line replaced by what it ran.
pub(super) fn runbook(
    source: &Runbook,
    scripts: &BTreeMap<usize, Script>,
    name: &Path,
) -> Recorded {
    let mut text = format!(
        "# Recorded by afemu rehearse from {}:\n\
         # each `$` line replaced by the af commands it ran, with the pauses it made between\n\
         # them (@wait, rounded down). `afemu check` this file to see whether the sequence is\n\
         # safe under every schedule.\n",
        name.display()
    );
    let mut unmodelled = Vec::new();
    let mut commands = 0;
    for item in &source.items {
        let ItemKind::Exec(command) = &item.kind else {
            match &item.kind {
                ItemKind::Af(args) => {
                    text.push_str(&af_line(&absolute_paths(args, &source.dir)));
                    text.push('\n');
                }
                _ => {
                    text.push_str(&item.text);
                    text.push('\n');
                }
            }
            continue;
        };
        text.push_str(&format!("# $ {command}\n"));
        let Some(script) = scripts.get(&item.line) else {
            text.push_str("#   did not run\n");
            unmodelled.push(format!("line {} ({}) did not run", item.line, item.text));
            continue;
        };
        let mut last_end: Option<Duration> = None;
        for invocation in &script.invocations {
            let line = af_line(&absolute_paths(&invocation.args, &invocation.cwd));
            if let Some(end) = last_end {
                if invocation.started < end {
                    text.push_str(&format!("# ran while the one before was running: {line}\n"));
                    unmodelled.push(format!(
                        "`{line}` ran at the same time as the af command before it"
                    ));
                    continue;
                }
                push_wait(&mut text, invocation.started - end);
            }
            let Some(ended) = invocation.ended else {
                text.push_str(&format!("# did not finish: {line}\n"));
                unmodelled.push(format!("`{line}` did not finish"));
                continue;
            };
            last_end = Some(ended);
            let command = afemu_cli::parse_command(&invocation.args).ok();
            if invocation.pinned
                || command.as_ref().is_some_and(|c| {
                    matches!(c.action, "target" | "set_target" | "login" | "logout")
                })
            {
                text.push_str(&format!("# pinned to the rehearsal's emulator: {line}\n"));
                continue;
            }
            if invocation.status != Some(0) {
                // A command that changes routes may have changed some before it failed (a
                // restart whose start failed stopped the app): the model cannot know how far.
                let changes_routes = command
                    .as_ref()
                    .is_none_or(|c| !matches!(model_step(c, |_| Some(1)), Ok(None)));
                if changes_routes {
                    text.push_str(&format!("# failed ({}): {line}\n", invocation.result()));
                    unmodelled.push(format!(
                        "`{line}` failed ({}) after it may have changed routes",
                        invocation.result()
                    ));
                } else {
                    text.push_str(&format!(
                        "# {} in the run, and it changes no route: {line}\n",
                        invocation.result()
                    ));
                }
                continue;
            }
            if invocation.args.iter().any(|a| a.contains(['\n', '\r'])) {
                text.push_str("# an af command with a line break in an argument\n");
                unmodelled.push(format!(
                    "`{}` has a line break in an argument",
                    line.replace(['\n', '\r'], " ")
                ));
                continue;
            }
            if let Err(why) = check_af_line(&invocation.args) {
                text.push_str(&format!("# not modelled ({why}): {line}\n"));
                unmodelled.push(format!("`{line}`: {why}"));
                continue;
            }
            text.push_str(&line);
            text.push('\n');
            commands += 1;
        }
        if let Some(end) = last_end
            && script.ended > end
        {
            push_wait(&mut text, script.ended - end);
        }
    }
    Recorded {
        text,
        unmodelled,
        commands,
        dir: source.dir.clone(),
    }
}

/// `@wait 1204ms` for a pause of at least a millisecond.
fn push_wait(text: &mut String, pause: Duration) {
    let ms = pause.as_millis();
    if ms > 0 {
        text.push_str(&format!("@wait {ms}ms\n"));
    }
}

/// A relative `--path` made absolute from where the command ran, so the recorded runbook means
/// the same from anywhere.
fn absolute_paths(args: &[String], cwd: &Path) -> Vec<String> {
    let absolute = |path: &str| {
        if Path::new(path).is_absolute() {
            path.to_owned()
        } else {
            cwd.join(path).display().to_string()
        }
    };
    let mut out = Vec::with_capacity(args.len());
    let mut next_is_path = false;
    for arg in args {
        if next_is_path {
            out.push(absolute(arg));
            next_is_path = false;
        } else if arg == "--path" {
            out.push(arg.clone());
            next_is_path = true;
        } else if let Some(path) = arg.strip_prefix("--path=") {
            out.push(format!("--path={}", absolute(path)));
        } else {
            out.push(arg.clone());
        }
    }
    out
}

/// The check of the recorded runbook, as one expectation of the rehearsal.
pub(super) fn check(recorded: &Recorded, faults: &Faults, run_failed: bool) -> Expectation {
    let name = "every schedule of the recorded af commands (afemu check)".to_owned();
    let expectation = |outcome: Outcome, detail: String| Expectation {
        name: name.clone(),
        line: None,
        outcome,
        detail,
        offending: Vec::new(),
    };
    if run_failed {
        return expectation(
            Outcome::NotEvaluated,
            "not evaluated: the run failed, so the commands recorded are not the whole procedure"
                .into(),
        );
    }
    if !recorded.unmodelled.is_empty() {
        return expectation(
            Outcome::NotEvaluated,
            format!(
                "not evaluated: the model cannot follow {}",
                recorded.unmodelled.join("; ")
            ),
        );
    }
    let runbook = match Runbook::parse(&recorded.text, "the recorded runbook", recorded.dir.clone())
    {
        Ok(runbook) => runbook,
        Err(error) => {
            return expectation(
                Outcome::NotEvaluated,
                format!("not evaluated: the recorded runbook does not parse: {error}"),
            );
        }
    };
    let options = CheckOptions {
        route_delay: faults.route_delay,
        stop_hard: faults.stop_hard,
        state_limit: None,
    };
    let report = check::check(&runbook, options);
    let commands = match recorded.commands {
        1 => "the 1 af command".to_owned(),
        n => format!("the {n} af commands"),
    };
    if report.passed() {
        return expectation(
            Outcome::Held,
            format!(
                "{commands} run by the `$` lines, with their pauses, keep every expectation under \
                 every schedule ({})",
                report.options
            ),
        );
    }
    if report.failed() {
        let mut why: Vec<String> = Vec::new();
        if let Some(step) = &report.step_failure {
            why.push(format!(
                "{} fails on the platform: {}",
                step.text, step.message
            ));
        }
        why.extend(
            report
                .expectations
                .iter()
                .filter(|e| e.outcome == Outcome::Failed)
                .map(|e| format!("{}: {}", e.name, e.detail)),
        );
        let schedule = report
            .counter_examples
            .first()
            .map(|counter| {
                let moves: Vec<String> = counter
                    .moves
                    .iter()
                    .enumerate()
                    .map(|(i, m)| format!("{}. {m}", i + 1))
                    .collect();
                format!(
                    "; the shortest schedule that shows it (lines of the recorded runbook, which \
                     --record writes out): {}",
                    moves.join(" ")
                )
            })
            .unwrap_or_default();
        return expectation(
            Outcome::Failed,
            format!(
                "{commands} run by the `$` lines are not safe under every schedule ({}): {}{schedule}",
                report.options,
                why.join("; ")
            ),
        );
    }
    expectation(
        Outcome::NotEvaluated,
        format!(
            "not evaluated: {} ({})",
            report.verdict(),
            report
                .expectations
                .iter()
                .filter(|e| e.outcome == Outcome::NotEvaluated)
                .map(|e| e.detail.clone())
                .collect::<Vec<_>>()
                .join("; ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation(
        args: &[&str],
        started_ms: u64,
        ended_ms: Option<u64>,
        status: i32,
    ) -> Invocation {
        Invocation {
            args: args.iter().map(|a| a.to_string()).collect(),
            pinned: false,
            cwd: PathBuf::from("/deploy"),
            started: Duration::from_millis(started_ms),
            ended: ended_ms.map(Duration::from_millis),
            status: ended_ms.map(|_| status),
            output: String::new(),
        }
    }

    fn source(text: &str) -> Runbook {
        Runbook::parse(text, "t.runbook", PathBuf::from("/runbooks")).unwrap()
    }

    #[test]
    fn each_command_line_becomes_what_it_ran_with_its_pauses() {
        let given = source(
            "af push example --path app --url example.com -n\n\
             @traffic example.com\n\
             $ ./deploy.sh\n\
             @expect served-by example2 example.com\n",
        );
        let scripts = BTreeMap::from([(
            3,
            Script {
                ended: Duration::from_millis(2000),
                invocations: vec![
                    invocation(
                        &[
                            "push",
                            "example2",
                            "--path",
                            "v2",
                            "--url",
                            "staging.com",
                            "-n",
                        ],
                        110,
                        Some(900),
                        0,
                    ),
                    invocation(&["stats", "example3"], 950, Some(990), 1),
                    invocation(&["map", "example2", "example.com"], 1000, Some(1100), 0),
                    invocation(&["unmap", "example", "example.com"], 1350, Some(1400), 0),
                ],
            },
        )]);
        let recorded = runbook(&given, &scripts, Path::new("t.runbook"));
        let body: Vec<&str> = recorded
            .text
            .lines()
            .skip_while(|l| !l.starts_with("# safe under"))
            .skip(1)
            .collect();
        assert_eq!(
            body,
            [
                "af push example --path /runbooks/app --url example.com -n",
                "@traffic example.com",
                "# $ ./deploy.sh",
                "af push example2 --path /deploy/v2 --url staging.com -n",
                "@wait 50ms",
                "# exit 1 in the run, and it changes no route: af stats example3",
                "@wait 10ms",
                "af map example2 example.com",
                "@wait 250ms",
                "af unmap example example.com",
                "@wait 600ms",
                "@expect served-by example2 example.com",
            ]
        );
        assert!(recorded.unmodelled.is_empty(), "{:?}", recorded.unmodelled);
        assert_eq!(recorded.commands, 3);
        let verdict = check(&recorded, &Faults::default(), false);
        assert_eq!(verdict.outcome, Outcome::Held, "{}", verdict.detail);
    }

    #[test]
    fn unmapping_before_mapping_is_refuted_with_a_schedule() {
        let given = source(
            "af push example --path app --url example.com -n\n\
             af push example2 --path app --url staging.com -n\n\
             @traffic example.com\n\
             $ ./deploy.sh\n",
        );
        let scripts = BTreeMap::from([(
            4,
            Script {
                ended: Duration::from_millis(300),
                invocations: vec![
                    invocation(&["unmap", "example", "example.com"], 10, Some(20), 0),
                    invocation(&["map", "example2", "example.com"], 30, Some(40), 0),
                ],
            },
        )]);
        let verdict = check(&runbook_of(&given, &scripts), &Faults::default(), false);
        assert_eq!(verdict.outcome, Outcome::Failed, "{}", verdict.detail);
        assert!(
            verdict.detail.contains("no-default-error-page example.com"),
            "{}",
            verdict.detail
        );
        assert!(
            verdict.detail.contains("shortest schedule"),
            "{}",
            verdict.detail
        );
    }

    fn runbook_of(source: &Runbook, scripts: &BTreeMap<usize, Script>) -> Recorded {
        runbook(source, scripts, Path::new("t.runbook"))
    }

    /// A restart that failed may have stopped the app before it failed: never "changed nothing".
    #[test]
    fn a_failed_command_that_changes_routes_leaves_the_check_not_evaluated() {
        let given = source("@traffic example.com\n$ ./deploy.sh\n");
        let scripts = BTreeMap::from([(
            2,
            Script {
                ended: Duration::from_millis(500),
                invocations: vec![
                    invocation(&["restart", "example"], 10, Some(100), 1),
                    invocation(&["target", "https://api.appfog.com"], 110, Some(120), 0),
                ],
            },
        )]);
        let recorded = runbook_of(&given, &scripts);
        assert_eq!(recorded.unmodelled.len(), 1, "{:?}", recorded.unmodelled);
        assert!(
            recorded.unmodelled[0].contains("`af restart example` failed (exit 1)"),
            "{:?}",
            recorded.unmodelled
        );
        assert!(
            recorded
                .text
                .contains("# pinned to the rehearsal's emulator: af target https://api.appfog.com"),
            "{}",
            recorded.text
        );
        let verdict = check(&recorded, &Faults::default(), false);
        assert_eq!(verdict.outcome, Outcome::NotEvaluated, "{}", verdict.detail);
    }

    #[test]
    fn what_the_model_cannot_follow_is_named_never_skipped() {
        let given = source("@traffic example.com\n$ ./deploy.sh\n$ ./never.sh\n");
        let scripts = BTreeMap::from([(
            2,
            Script {
                ended: Duration::from_millis(500),
                invocations: vec![
                    invocation(&["push", "example"], 10, Some(100), 0),
                    invocation(&["map", "a", "example.com"], 200, Some(300), 0),
                    invocation(&["map", "b", "example.com"], 250, Some(320), 0),
                    invocation(&["start", "c"], 400, None, 0),
                ],
            },
        )]);
        let recorded = runbook_of(&given, &scripts);
        let unmodelled = recorded.unmodelled.join("\n");
        assert_eq!(recorded.unmodelled.len(), 4, "{unmodelled}");
        assert!(unmodelled.contains("`af push example`"), "{unmodelled}");
        assert!(
            unmodelled.contains("`af map b example.com` ran at the same time"),
            "{unmodelled}"
        );
        assert!(
            unmodelled.contains("`af start c` did not finish"),
            "{unmodelled}"
        );
        assert!(
            unmodelled.contains("line 3 ($ ./never.sh) did not run"),
            "{unmodelled}"
        );
        let verdict = check(&recorded, &Faults::default(), false);
        assert_eq!(verdict.outcome, Outcome::NotEvaluated);
        assert!(
            verdict.detail.contains("af push example"),
            "{}",
            verdict.detail
        );
    }
}
