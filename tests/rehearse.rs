//! `afemu rehearse` end to end: the seed runbooks pass and the wrong ones fail, each with its JSON
//! (deserialised), JUnit (read by a JUnit parser) and HTML (opened in headless Chromium, which
//! must draw a band per host and a red mark per default error page).

use std::path::{Path, PathBuf};
use std::process::Command;

use afemu::rehearse::report::Report;

struct Outcome {
    code: i32,
    stdout: String,
    report: Report,
    junit: junit_parser::TestSuites,
    html: PathBuf,
    _dir: tempfile::TempDir,
}

fn runbook(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/runbooks")
        .join(name)
}

fn rehearse(name: &str, extra: &[&str]) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let (json, junit, html) = (
        dir.path().join("r.json"),
        dir.path().join("r.xml"),
        dir.path().join("r.html"),
    );
    let output = Command::new(env!("CARGO_BIN_EXE_afemu"))
        .arg("rehearse")
        .arg(runbook(name))
        .arg("--json")
        .arg(&json)
        .arg("--junit")
        .arg(&junit)
        .arg("--html")
        .arg(&html)
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: Report = serde_json::from_str(
        &std::fs::read_to_string(&json).unwrap_or_else(|e| panic!("{e}\n{stdout}{stderr}")),
    )
    .expect("the JSON report deserialises");
    let junit = junit_parser::from_reader(std::io::BufReader::new(
        std::fs::File::open(&junit).unwrap(),
    ))
    .expect("the JUnit report parses");
    Outcome {
        code: output.status.code().unwrap(),
        stdout,
        report,
        junit,
        html,
        _dir: dir,
    }
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
    let report = &outcome.report;
    assert!(report.passed);
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
    assert_eq!(
        outcome.junit.suites[0].cases.len(),
        report.expectations.len()
    );
    assert!(failures(&outcome.junit).is_empty());
    let (bands, marks, steps) = rendered(&outcome.html);
    assert_eq!((bands, marks), (3, 0));
    assert!(steps >= 7, "a line per step after traffic started: {steps}");
}

#[test]
fn the_downtime_page_passes() {
    let outcome = rehearse("seed-000-downtime.runbook", &[]);
    assert_eq!(outcome.code, 0, "{}", outcome.stdout);
    let served: Vec<&String> = outcome.report.totals["example.com"]
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
fn unmapping_first_fails_and_names_the_step() {
    let outcome = rehearse("swap-unmap-first.runbook", &[]);
    assert_eq!(outcome.code, 1, "{}", outcome.stdout);
    let errors = default_error_pages(&outcome.report);
    assert!(errors > 0);
    let failing = outcome
        .report
        .expectations
        .iter()
        .find(|e| !e.passed)
        .unwrap();
    assert_eq!(failing.offending[0].step, "af unmap example example.com");
    let failed = failures(&outcome.junit);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].ends_with("no-default-error-page example.com"),
        "{failed:?}"
    );
    let case = &outcome.junit.suites[0].cases[0];
    let text = format!("{:?}", case.status);
    assert!(
        text.contains("during line 8: af unmap example example.com"),
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
fn a_plain_update_fails() {
    let outcome = rehearse("plain-update.runbook", &[]);
    assert_eq!(outcome.code, 1, "{}", outcome.stdout);
    let failing = outcome
        .report
        .expectations
        .iter()
        .find(|e| !e.passed)
        .unwrap();
    assert!(
        failing.offending[0].step.starts_with("af update example"),
        "{failing:?}"
    );
    assert_eq!(
        rendered(&outcome.html).1 as u64,
        default_error_pages(&outcome.report)
    );
}

#[test]
fn the_traffic_generator_keeps_up_at_150_requests_a_second_on_3_hosts() {
    let outcome = rehearse("seed-001-swap-load.runbook", &[]);
    assert_eq!(outcome.code, 0, "{}", outcome.stdout);
    let report = &outcome.report;
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
    std::fs::write(&bad, "af push x --url x.com -n\n@traffic x.com rate=many\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_afemu"))
        .arg("rehearse")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("bad.runbook:2:"));
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
    let outcome = rehearse(
        "seed-000-downtime.runbook",
        &["--target", &api, "--router", &router],
    );
    let _ = serve.kill();
    let _ = serve.wait();
    assert_eq!(outcome.code, 0, "{}", outcome.stdout);
    assert!(outcome.report.totals["example.com"].requests > 0);
}
