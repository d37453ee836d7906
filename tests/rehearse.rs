//! `afemu rehearse` end to end: the seed runbooks pass and the wrong ones fail, each with its JSON
//! (deserialised), JUnit (read by a JUnit parser) and HTML (opened in headless Chromium, which
//! must draw a band per host and a red mark per default error page); nothing passes that
//! observed nothing; a failed step leaves the rest "not evaluated"; faults apply; a
//! counter-example of `afemu check` is replayed for real; the report fits the terminal.

use std::path::{Path, PathBuf};
use std::process::Command;

use afemu::procedure::check::Outcome;
use afemu::procedure::rehearse::report::{Expectation, Report};

struct Rehearsal {
    code: i32,
    stdout: String,
    stderr: String,
    report: Option<Report>,
    junit: Option<junit_parser::TestSuites>,
    html: PathBuf,
    _dir: tempfile::TempDir,
}

impl Rehearsal {
    fn report(&self) -> &Report {
        self.report
            .as_ref()
            .unwrap_or_else(|| panic!("no report:\n{}{}", self.stdout, self.stderr))
    }

    fn junit(&self) -> &junit_parser::TestSuites {
        self.junit.as_ref().expect("a JUnit report")
    }

    fn expectation(&self, name: &str) -> &Expectation {
        self.report()
            .expectations
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no expectation {name:?}:\n{}", self.stdout))
    }
}

fn runbook(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/runbooks")
        .join(name)
}

/// Writes a runbook next to the fixtures (so its app paths resolve) in a scratch folder.
fn scratch_runbook(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let apps = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/apps");
    let path = dir.path().join("scratch.runbook");
    std::fs::write(&path, text.replace("APPS", &apps.display().to_string())).unwrap();
    (dir, path)
}

fn rehearse_path(path: &Path, extra: &[&str]) -> Rehearsal {
    let dir = tempfile::tempdir().unwrap();
    let (json, junit, html) = (
        dir.path().join("r.json"),
        dir.path().join("r.xml"),
        dir.path().join("r.html"),
    );
    let output = Command::new(env!("CARGO_BIN_EXE_afemu"))
        .arg("rehearse")
        .arg(path)
        .arg("--json")
        .arg(&json)
        .arg("--junit")
        .arg(&junit)
        .arg("--html")
        .arg(&html)
        .args(extra)
        .env_remove("COLUMNS")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = std::fs::read_to_string(&json)
        .ok()
        .map(|text| serde_json::from_str(&text).expect("the JSON report deserialises"));
    let junit = std::fs::File::open(&junit).ok().map(|file| {
        junit_parser::from_reader(std::io::BufReader::new(file)).expect("the JUnit report parses")
    });
    Rehearsal {
        code: output.status.code().unwrap(),
        stdout,
        stderr,
        report,
        junit,
        html,
        _dir: dir,
    }
}

fn rehearse(name: &str, extra: &[&str]) -> Rehearsal {
    rehearse_path(&runbook(name), extra)
}

/// Opens the page in headless Chromium and returns what its script says the browser drew.
fn rendered(html: &Path) -> (usize, usize, usize) {
    let profile = tempfile::tempdir().unwrap();
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("chromium runs (.ci/run installs it)");
    let dom = String::from_utf8_lossy(&output.stdout);
    let attribute = |name: &str| -> usize {
        let key = format!("{name}=\"");
        let start = dom
            .find(&key)
            .unwrap_or_else(|| panic!("no {name} in the rendered page"))
            + key.len();
        dom[start..].split('"').next().unwrap().parse().unwrap()
    };
    (
        attribute("data-rendered-bands"),
        attribute("data-rendered-error-marks"),
        attribute("data-rendered-steps"),
    )
}

fn default_error_pages(report: &Report) -> u64 {
    report.totals.values().map(|t| t.default_error_pages).sum()
}

fn failures(junit: &junit_parser::TestSuites) -> Vec<String> {
    junit
        .suites
        .iter()
        .flat_map(|suite| &suite.cases)
        .filter(|case| case.status.is_failure())
        .map(|case| case.name.clone())
        .collect()
}

#[test]
fn the_seed_swap_passes() {
    let outcome = rehearse("seed-001-swap.runbook", &[]);
    assert_eq!(outcome.code, 0, "{}", outcome.stdout);
    assert!(outcome.stdout.contains("PASSED"), "{}", outcome.stdout);
    let report = outcome.report();
    assert!(report.passed);
    assert_eq!(report.faults, "none");
    assert_eq!(
        report.hosts,
        ["example.com", "www.example.com", "example.aws.af.cm"]
    );
    assert_eq!(default_error_pages(report), 0);
    // While both apps were on the production hosts, both served.
    let shared = report
        .steps
        .iter()
        .find(|s| s.text == "@wait 300ms")
        .and_then(|s| s.traffic.get("example.com"))
        .expect("traffic while load-balanced");
    assert!(
        shared.served_by.contains_key("example") && shared.served_by.contains_key("example2"),
        "{shared:?}"
    );
    // The end: every route change landed, every host asked again.
    let end = report.steps.last().unwrap();
    assert_eq!((end.kind.as_str(), end.result.as_str()), ("end", "ok"));
    assert_eq!(end.traffic.len(), 3, "{end:?}");
    assert_eq!(
        outcome.junit().suites[0].cases.len(),
        report.expectations.len()
    );
    assert!(failures(outcome.junit()).is_empty());
    let (bands, marks, steps) = rendered(&outcome.html);
    assert_eq!((bands, marks), (3, 0));
    assert!(steps >= 7, "a line per step after traffic started: {steps}");
}

#[test]
fn the_downtime_page_passes() {
    let outcome = rehearse("seed-000-downtime.runbook", &[]);
    assert_eq!(outcome.code, 0, "{}", outcome.stdout);
    let served: Vec<&String> = outcome.report().totals["example.com"]
        .served_by
        .keys()
        .collect();
    assert_eq!(
        served,
        ["downtime", "example"],
        "both the downtime page and the app were seen"
    );
    assert_eq!(rendered(&outcome.html).1, 0);
}

#[test]
fn unmapping_first_fails_and_names_the_line_the_requests_were_sent_in() {
    let outcome = rehearse("swap-unmap-first.runbook", &[]);
    assert_eq!(outcome.code, 1, "{}", outcome.stdout);
    let errors = default_error_pages(outcome.report());
    assert!(errors > 0);
    let failing = outcome.expectation("no-default-error-page example.com");
    assert_eq!(failing.outcome, Outcome::Failed);
    // Each offending request is charged to the line during which it was sent: the unmap, or
    // the wait after it (and then the unmap is named as what came before).
    let first = &failing.offending[0];
    match first.step_line {
        8 => assert_eq!(first.step, "af unmap example example.com"),
        9 => assert_eq!(
            first.after.as_deref(),
            Some("line 8: af unmap example example.com")
        ),
        other => panic!("charged to line {other}: {first:?}"),
    }
    // The table puts the errors under the same lines as the verdict.
    let step = outcome
        .report()
        .steps
        .iter()
        .find(|s| s.line == first.step_line)
        .unwrap();
    assert!(
        step.traffic["example.com"].default_error_pages > 0,
        "{step:?}"
    );
    let failed = failures(outcome.junit());
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].ends_with("no-default-error-page example.com"),
        "{failed:?}"
    );
    let case = &outcome.junit().suites[0].cases[0];
    let text = format!("{:?}", case.status);
    assert!(
        text.contains(&format!("during line {}", first.step_line)),
        "{text}"
    );
    let (bands, marks, _) = rendered(&outcome.html);
    assert_eq!(
        (bands as u64, marks as u64),
        (1, errors),
        "a red mark per default error page"
    );
}

#[test]
fn a_plain_update_fails_with_the_error_pages_as_a_share_of_their_own() {
    let outcome = rehearse("plain-update.runbook", &[]);
    assert_eq!(outcome.code, 1, "{}", outcome.stdout);
    let failing = outcome.expectation("no-default-error-page example.com");
    assert!(
        failing.offending[0].step.starts_with("af update example"),
        "{failing:?}"
    );
    // The update's window: the error pages are a share of their own, not folded into an app's.
    assert!(
        outcome.stdout.contains("default error page")
            && outcome
                .stdout
                .lines()
                .any(|l| l.contains("default error page") && l.contains('%')),
        "{}",
        outcome.stdout
    );
    assert_eq!(
        rendered(&outcome.html).1 as u64,
        default_error_pages(outcome.report())
    );
}

#[test]
fn the_traffic_generator_keeps_up_at_150_requests_a_second_on_3_hosts() {
    let outcome = rehearse("seed-001-swap-load.runbook", &[]);
    assert_eq!(outcome.code, 0, "{}", outcome.stdout);
    let report = outcome.report();
    let traffic_start = report
        .steps
        .iter()
        .find(|s| s.text.starts_with("@traffic"))
        .unwrap()
        .started_ms;
    let seconds = (report.duration_ms - traffic_start) / 1000.0;
    for (host, totals) in &report.totals {
        let expected = 150.0 * seconds;
        assert!(
            totals.requests as f64 >= 0.8 * expected,
            "{host}: {} requests in {seconds:.1} s, expected about {expected:.0}",
            totals.requests
        );
        assert_eq!(totals.default_error_pages, 0, "{host}");
    }
}

#[test]
fn a_runbook_error_exits_2_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.runbook");
    let run = |text: &str| {
        std::fs::write(&bad, text).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_afemu"))
            .arg("rehearse")
            .arg(&bad)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, err) = run("af push x --url x.com -n\n@traffic x.com rate=many\n");
    assert_eq!(code, Some(2));
    assert!(err.contains("bad.runbook:2:"), "{err}");
    // The same line refused with the same words as `afemu check`.
    let (code, err) = run("af pussh x --url x.com\n@traffic x.com\n");
    assert_eq!(code, Some(2));
    assert!(
        err.contains("bad.runbook:1: af refuses this line: Unknown command [pussh]"),
        "{err}"
    );
    // Nothing to observe is not a pass.
    for text in ["", "af push x --url x.com -n\n@wait 10ms\n"] {
        let (code, err) = run(text);
        assert_eq!(code, Some(2), "{text:?}");
        assert!(err.contains("nothing to observe"), "{err}");
    }
}

#[test]
fn an_expectation_on_a_host_without_traffic_fails() {
    let (_dir, path) = scratch_runbook(
        "af push web --path APPS/node-hello-v1 --url web.com -n\n\
         @traffic web.com rate=200/s\n\
         @wait 50ms\n\
         @expect no-default-error-page quiet.com\n\
         @expect served-by web quiet.com\n",
    );
    let outcome = rehearse_path(&path, &[]);
    assert_eq!(outcome.code, 1, "{}", outcome.stdout);
    for name in ["no-default-error-page quiet.com", "served-by web quiet.com"] {
        let expectation = outcome.expectation(name);
        assert_eq!(expectation.outcome, Outcome::Failed, "{expectation:?}");
        assert!(
            expectation.detail.contains("got no traffic"),
            "{expectation:?}"
        );
    }
    assert_eq!(
        outcome.expectation("no-default-error-page web.com").outcome,
        Outcome::Held
    );
}

#[test]
fn after_a_failed_step_nothing_runs_and_nothing_is_passed() {
    let (_dir, path) = scratch_runbook(
        "af push web --path APPS/node-hello-v1 --url web.com -n\n\
         @traffic web.com rate=200/s\n\
         af map ghost web.com\n\
         af unmap web web.com\n\
         @wait 50ms\n\
         @expect served-by web web.com\n",
    );
    let outcome = rehearse_path(&path, &[]);
    assert_eq!(outcome.code, 1, "{}", outcome.stdout);
    let report = outcome.report();
    let map = report.steps.iter().find(|s| s.line == 3).unwrap();
    assert!(map.result.starts_with("failed"), "{map:?}");
    for line in [4, 5] {
        let step = report.steps.iter().find(|s| s.line == line).unwrap();
        assert_eq!(step.result, "not run", "{step:?}");
    }
    let served = outcome.expectation("served-by web web.com");
    assert_eq!(served.outcome, Outcome::NotEvaluated, "{served:?}");
    assert!(served.detail.contains("line 3"), "{served:?}");
    assert_eq!(
        outcome.expectation("no-default-error-page web.com").outcome,
        Outcome::NotEvaluated
    );
    let step = outcome.expectation("line 3: af map ghost web.com");
    assert_eq!(step.outcome, Outcome::Failed);
    assert!(step.detail.contains("not found"), "{step:?}");
    assert!(outcome.stdout.contains("N/E"), "{}", outcome.stdout);
    assert!(!outcome.stdout.contains("PASSED"), "{}", outcome.stdout);
}

/// A failed served-by names every app that answered, and the error pages, with their shares.
#[test]
fn a_failed_served_by_names_everyone_who_answered() {
    let (_dir, path) = scratch_runbook(
        "af push blue --path APPS/node-hello-v1 --url web.com -n\n\
         af push green --path APPS/node-hello-v2 --url green.com -n\n\
         @traffic web.com rate=200/s\n\
         af map green web.com\n\
         @wait 100ms\n\
         @expect served-by green web.com\n",
    );
    let outcome = rehearse_path(&path, &[]);
    assert_eq!(outcome.code, 1, "{}", outcome.stdout);
    let served = outcome.expectation("served-by green web.com");
    assert_eq!(served.outcome, Outcome::Failed);
    assert!(
        served.detail.contains("blue ")
            && served.detail.contains("green ")
            && served.detail.contains('%'),
        "{served:?}"
    );
    assert!(
        served
            .detail
            .contains("the router's table lists blue and green"),
        "{served:?}"
    );
}

/// An await that times out says what it saw instead.
#[test]
fn an_await_that_times_out_says_what_it_saw() {
    let (_dir, path) = scratch_runbook(
        "af push blue --path APPS/node-hello-v1 --url web.com -n\n\
         af push green --path APPS/node-hello-v2 --url green.com -n\n\
         @traffic web.com rate=200/s\n\
         @await served-by green web.com timeout=300ms\n",
    );
    let outcome = rehearse_path(&path, &[]);
    assert_eq!(outcome.code, 1, "{}", outcome.stdout);
    let step = outcome.expectation("line 4: @await served-by green web.com timeout=300ms");
    assert!(
        step.detail.contains("timed out after 300ms: none of the")
            && step.detail.contains("served by green: blue"),
        "{step:?}"
    );
}

/// The new version of an updated app, told from the old one by v1's version.
#[test]
fn an_await_for_the_new_version_sees_the_new_version() {
    let (_dir, path) = scratch_runbook(
        "af push web --path APPS/node-hello-v1 --url web.com -n\n\
         af push downtime --path APPS/node-downtime --url downtime.com -n\n\
         @traffic web.com rate=200/s\n\
         af map downtime web.com\n\
         @await served-by downtime web.com\n\
         af update web --path APPS/node-hello-v2\n\
         @await new-version web web.com\n\
         af unmap downtime web.com\n\
         @await not-served-by downtime web.com\n\
         @expect served-by web web.com\n",
    );
    let outcome = rehearse_path(&path, &["--route-delay", "0..30ms"]);
    assert_eq!(outcome.code, 0, "{}", outcome.stdout);
    assert!(
        outcome.report().faults.contains("route delay"),
        "{}",
        outcome.report().faults
    );
}

/// The faults of `afemu serve`, for the emulator the rehearsal starts.
#[test]
fn faults_apply_to_the_rehearsal() {
    let outcome = rehearse("seed-000-downtime.runbook", &["--fail-staging", "downtime"]);
    assert_eq!(outcome.code, 1, "{}", outcome.stdout);
    let push = outcome
        .report()
        .steps
        .iter()
        .find(|s| s.text.starts_with("af push downtime"))
        .unwrap();
    assert!(push.result.starts_with("failed"), "{push:?}");
    assert!(outcome.report().faults.contains("failing staging downtime"));
    assert!(
        outcome
            .report()
            .expectations
            .iter()
            .any(|e| e.outcome == Outcome::NotEvaluated)
    );
}

/// The awaited swap is safe with late routes: every seed, no default error page.
#[test]
fn the_awaited_swap_holds_under_late_routes() {
    for seed in ["1", "2"] {
        let outcome = rehearse(
            "seed-001-swap-awaited.runbook",
            &["--route-delay", "0..50ms", "--seed", seed],
        );
        assert_eq!(outcome.code, 0, "seed {seed}:\n{}", outcome.stdout);
        assert_eq!(default_error_pages(outcome.report()), 0);
    }
}

/// `afemu check` refutes the plain swap under late routes; its counter-example, replayed,
/// shows the default error page where it says.
#[test]
fn a_counter_example_is_replayed_for_real() {
    let dir = tempfile::tempdir().unwrap();
    let schedule = dir.path().join("schedule.json");
    let status = Command::new(env!("CARGO_BIN_EXE_afemu"))
        .arg("check")
        .arg(runbook("seed-001-swap.runbook"))
        .args(["--route-delay", "0..50ms", "--schedule"])
        .arg(&schedule)
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(1));
    let outcome = rehearse(
        "seed-001-swap.runbook",
        &["--replay", schedule.to_str().unwrap()],
    );
    assert_eq!(outcome.code, 1, "{}{}", outcome.stdout, outcome.stderr);
    let report = outcome.report();
    assert!(
        report
            .replayed
            .as_deref()
            .is_some_and(|r| r.contains("as the schedule says")),
        "{:?}",
        report.replayed
    );
    let failing = outcome.expectation("no-default-error-page example.aws.af.cm");
    assert_eq!(failing.outcome, Outcome::Failed, "{}", outcome.stdout);
    assert_eq!(failing.offending[0].step_line, 19, "{failing:?}");
    // Only the host the schedule breaks.
    assert_eq!(
        outcome
            .expectation("no-default-error-page example.com")
            .outcome,
        Outcome::Held
    );
    assert!(outcome.stdout.contains("replayed:"), "{}", outcome.stdout);
    let (_, marks, _) = rendered(&outcome.html);
    assert_eq!(marks as u64, default_error_pages(report));
    // A schedule of another runbook is refused.
    let other = rehearse(
        "seed-001-swap-awaited.runbook",
        &["--replay", schedule.to_str().unwrap()],
    );
    assert_eq!(other.code, 2);
    assert!(
        other.stderr.contains("not of this runbook"),
        "{}",
        other.stderr
    );
}

/// Without a terminal: 80 columns, no escape codes; with a wide one, a table.
#[test]
fn the_terminal_report_fits_the_terminal() {
    let outcome = rehearse("plain-update.runbook", &[]);
    for line in outcome.stdout.lines() {
        assert!(
            line.chars().count() <= 80,
            "{} columns: {line}",
            line.chars().count()
        );
    }
    assert!(!outcome.stdout.contains('\u{1b}'), "{}", outcome.stdout);
    assert!(!outcome.stderr.contains('\u{1b}'), "{}", outcome.stderr);
    // Failures first, the verdict last.
    let fail = outcome.stdout.find("FAIL no-default-error-page").unwrap();
    let steps = outcome.stdout.find("@traffic example.com").unwrap();
    assert!(fail < steps, "{}", outcome.stdout);
    assert!(
        outcome
            .stdout
            .trim_end()
            .ends_with(&outcome.report().verdict)
    );

    let output = Command::new(env!("CARGO_BIN_EXE_afemu"))
        .arg("rehearse")
        .arg(runbook("plain-update.runbook"))
        .env("COLUMNS", "160")
        .output()
        .unwrap();
    let wide = String::from_utf8_lossy(&output.stdout);
    assert!(wide.contains("| served by"), "{wide}");
    assert!(wide.lines().all(|l| l.chars().count() <= 160), "{wide}");
}

#[test]
fn rehearsing_against_a_running_emulator() {
    use std::io::BufRead;
    // Killed at the end: its data directory goes into a scratch TMPDIR that is removed.
    let scratch = tempfile::tempdir().unwrap();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_afemu"))
        .env("TMPDIR", scratch.path())
        .args([
            "serve",
            "--api-addr",
            "127.0.0.1:0",
            "--router-addr",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(serve.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = |label: &str| {
        line.split_whitespace()
            .skip_while(|w| *w != label)
            .nth(1)
            .unwrap()
            .to_owned()
    };
    let (api, router) = (url("api"), url("router"));
    let api = api.replace("127.0.0.1", "localhost");
    let target = ["--target", &api, "--router", &router];
    let first = rehearse("seed-000-downtime.runbook", &target);
    // Its apps are still there: a second rehearsal is refused unless it resets first.
    let refused = rehearse("seed-000-downtime.runbook", &target);
    let mut with_reset = target.to_vec();
    with_reset.push("--reset");
    let second = rehearse(
        "seed-000-downtime.runbook",
        &[&with_reset[..], &["--route-delay", "0..20ms"]].concat(),
    );
    let _ = serve.kill();
    let _ = serve.wait();
    assert_eq!(first.code, 0, "{}", first.stdout);
    assert!(first.report().totals["example.com"].requests > 0);
    assert_eq!(refused.code, 2, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("already holds 2 apps"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("--reset"), "{}", refused.stderr);
    assert_eq!(second.code, 0, "{}{}", second.stdout, second.stderr);
    assert!(second.report().faults.contains("route delay 0..20ms"));
}
