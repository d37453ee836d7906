//! `afemu check` and `afemu rehearse` agree. For random runbooks (the model's steps over two apps
//! and two hosts, with waits and the three awaits between them, under a route delay drawn from a
//! small set), whenever check proves a runbook safe, rehearsals of it under that delay with
//! several seeds never see the default error page; whenever check refutes it, its
//! counter-example replayed in the emulator fails the rehearsal, and a counter-example that ends
//! with a request shows that request getting the default error page.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use afemu::procedure::check::{self, Breach, CheckOptions, Schedule};
use afemu::procedure::model::strategy::proptest;
use afemu::procedure::model::{Model, Step, strategy};
use afemu::procedure::rehearse::{self, Options};
use afemu::procedure::runbook::Runbook;
use afemu::{Faults, Profile, RouteDelay};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};

const APPS: [&str; 2] = ["blue", "green"];
const HOSTS: [&str; 2] = ["a.com", "b.com"];

/// One line after the setup: a step, a wait, or an await.
#[derive(Clone, Debug)]
enum Line {
    Step(Step),
    Wait(u64),
    Await(&'static str, &'static str, &'static str),
}

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(path)
}

/// A step as af would be told to do it, with the fixture apps (static pages, which need no
/// runtime and start at once).
fn af_line(step: &Step) -> String {
    let v1 = fixture("apps/hello-v1");
    match step {
        Step::Push {
            app,
            uris,
            instances,
            start,
        } => format!(
            "af push {app} --path {} --url {} --instances {instances} --noframework -n{}",
            v1.display(),
            uris[0],
            if *start { "" } else { " --no-start" }
        ),
        Step::Update { app } => format!(
            "af update {app} --path {}",
            fixture("apps/hello-v2").display()
        ),
        other => other.to_string(),
    }
}

fn text(lines: &[Line]) -> String {
    let mut text = String::new();
    for (app, host) in APPS.iter().zip(HOSTS) {
        text.push_str(&af_line(&Step::Push {
            app: app.to_string(),
            uris: vec![host.to_string()],
            instances: 1,
            start: true,
        }));
        text.push('\n');
    }
    text.push_str("@traffic a.com b.com rate=200/s\n");
    for line in lines {
        match line {
            Line::Step(step) => text.push_str(&af_line(step)),
            Line::Wait(ms) => text.push_str(&format!("@wait {ms}ms")),
            Line::Await(kind, app, host) => {
                text.push_str(&format!("@await {kind} {app} {host} timeout=3s"))
            }
        }
        text.push('\n');
    }
    text
}

/// Keeps the steps the platform accepts (a refused step only ends the run early, which proves
/// nothing about routes).
fn valid(lines: Vec<Line>) -> Vec<Line> {
    let mut model = Model::new();
    for (app, host) in APPS.iter().zip(HOSTS) {
        model
            .apply(&Step::Push {
                app: app.to_string(),
                uris: vec![host.to_string()],
                instances: 1,
                start: true,
            })
            .expect("the setup");
    }
    lines
        .into_iter()
        .filter(|line| match line {
            Line::Step(step) => model.apply(step).is_ok(),
            _ => true,
        })
        .collect()
}

fn line() -> BoxedStrategy<Line> {
    let app = proptest::sample::select(APPS.to_vec());
    let host = proptest::sample::select(HOSTS.to_vec());
    let kind = proptest::sample::select(vec!["served-by", "new-version", "not-served-by"]);
    prop_oneof![
        4 => strategy::step(&APPS, &HOSTS).prop_map(Line::Step),
        1 => proptest::sample::select(vec![5u64, 60]).prop_map(Line::Wait),
        1 => (kind, app, host).prop_map(|(k, a, h)| Line::Await(k, a, h)),
    ]
    .boxed()
}

/// The seed swap with random separators: safe or not depending on them, so both verdicts come.
fn swap() -> BoxedStrategy<Vec<Line>> {
    let gap = || {
        prop_oneof![
            Just(None),
            Just(Some(Line::Wait(5))),
            Just(Some(Line::Wait(60))),
            Just(Some(Line::Await("served-by", "green", "a.com"))),
        ]
    };
    (gap(), gap(), proptest::bool::ANY)
        .prop_map(|(first, second, back)| {
            let map = |app: &str, uri: &str| {
                Line::Step(Step::Map {
                    app: app.into(),
                    uri: uri.into(),
                })
            };
            let unmap = |app: &str, uri: &str| {
                Line::Step(Step::Unmap {
                    app: app.into(),
                    uri: uri.into(),
                })
            };
            let mut lines = vec![map("green", "a.com")];
            lines.extend(first);
            lines.push(unmap("blue", "a.com"));
            if back {
                lines.push(map("blue", "b.com"));
                lines.extend(second.map(|line| match line {
                    Line::Await(kind, _, _) => Line::Await(kind, "blue", "b.com"),
                    other => other,
                }));
                lines.push(unmap("green", "b.com"));
            }
            lines
        })
        .boxed()
}

fn case() -> BoxedStrategy<(Vec<Line>, Option<&'static str>)> {
    let procedure = prop_oneof![
        1 => proptest::collection::vec(line(), 1..=6).prop_map(valid),
        1 => swap(),
    ];
    let delay = proptest::sample::select(vec![None, Some("0..20ms"), Some("10ms..40ms")]);
    (procedure, delay).boxed()
}

/// How many generated runbooks check proved safe, and how many it refuted.
static SAFE: AtomicUsize = AtomicUsize::new(0);
static REFUTED: AtomicUsize = AtomicUsize::new(0);

async fn agree(lines: &[Line], delay: Option<&str>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("generated.runbook");
    let text = text(lines);
    std::fs::write(&path, &text).unwrap();
    let runbook = Runbook::load(&path).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let route_delay: Option<RouteDelay> = delay.map(|d| d.parse().unwrap());
    let options = CheckOptions {
        route_delay,
        ..CheckOptions::default()
    };
    let report = check::check(&runbook, options);
    let rehearsal = |seed: u64, replay: Option<Schedule>| Options {
        runbook: path.clone(),
        profile: Profile::Instant,
        target: None,
        faults: Faults {
            route_delay,
            seed,
            ..Faults::default()
        },
        reset: false,
        replay,
        progress: false,
        services: afemu::ServicesMode::Records,
        dashboard: false,
        ..Default::default()
    };
    let context = || {
        format!(
            "{text}(route delay {delay:?})\n{}",
            check::render(&report, "generated")
        )
    };
    if report.passed() {
        SAFE.fetch_add(1, Ordering::Relaxed);
        for seed in [1, 2] {
            let rehearsed = rehearse::rehearse(&rehearsal(seed, None))
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let errors: u64 = rehearsed
                .totals
                .values()
                .map(|t| t.default_error_pages)
                .sum();
            proptest::prop_assert!(
                rehearsed.passed && errors == 0,
                "check says safe, the rehearsal with seed {seed} saw {errors} default error pages:\n{}\n{}",
                context(),
                rehearse::render::terminal(
                    &rehearsed,
                    rehearse::render::Terminal {
                        width: 100,
                        colour: false
                    }
                )
            );
        }
        return Ok(());
    }
    REFUTED.fetch_add(1, Ordering::Relaxed);
    let found = report.counter_examples.first().cloned().ok_or_else(|| {
        TestCaseError::fail(format!("refuted with no counter-example:\n{}", context()))
    })?;
    let schedule = Schedule {
        runbook: path.display().to_string(),
        route_delay: delay.map(str::to_owned),
        stop_hard: false,
        breach: found.breach.clone(),
        moves: found.moves.clone(),
    };
    let replayed = rehearse::rehearse(&rehearsal(1, Some(schedule)))
        .await
        .map_err(|e| TestCaseError::fail(format!("{e}\n{}", context())))?;
    proptest::prop_assert!(
        !replayed.passed,
        "check refutes it, its replay passed:\n{}",
        context()
    );
    if let Some(host) = found.breach.host() {
        proptest::prop_assert!(
            replayed
                .replayed
                .as_deref()
                .is_some_and(|r| r.contains("as the schedule says")),
            "the replay did not show the window: {:?}\n{}",
            replayed.replayed,
            context()
        );
        proptest::prop_assert!(
            replayed
                .totals
                .get(host)
                .is_some_and(|t| t.default_error_pages > 0),
            "the replay saw no default error page on {host}:\n{}",
            context()
        );
    } else {
        let stuck = matches!(found.breach, Breach::Stuck { .. });
        proptest::prop_assert!(stuck, "{:?}", found.breach);
    }
    Ok(())
}

#[test]
fn check_and_rehearse_agree() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cases = std::env::var("AFEMU_AGREEMENT_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(24);
    let mut runner = TestRunner::new(Config {
        cases,
        max_shrink_iters: 32,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/agreement.txt",
        ))),
        ..Config::default()
    });
    let result = runner.run(&case(), |(lines, delay)| {
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(120), agree(&lines, delay))
                .await
                .map_err(|_| TestCaseError::fail("a case took over two minutes"))?
        })
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    // Both directions of the property were exercised.
    let (safe, refuted) = (
        SAFE.load(Ordering::Relaxed),
        REFUTED.load(Ordering::Relaxed),
    );
    assert!(
        safe > 0 && refuted > 0,
        "{safe} safe and {refuted} refuted runbooks"
    );
}
