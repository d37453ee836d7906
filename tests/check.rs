//! `afemu check` on the fixture runbooks: each shipped runbook gets the verdict a person would
//! give it, with instant routes and with v1's late ones (`--route-delay 0..50ms`); a refutation
//! names the line and comes with a shortest schedule, which `--schedule` writes down.

use std::process::Command;

fn check(runbook: &str, extra: &[&str]) -> (i32, String, String) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/runbooks")
        .join(runbook);
    let output = Command::new(env!("CARGO_BIN_EXE_afemu"))
        .arg("check")
        .arg(path)
        .args(extra)
        .output()
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// Every shipped runbook, and what `afemu check` says of it with instant routes and with late
/// ones.
#[test]
fn every_shipped_runbook_gets_the_verdict_a_person_would_give() {
    const SAFE: &str = "PASSED";
    const UNSAFE: &str = "FAILED";
    // The model follows routes, not an app's data: a writes-kept expectation is left open.
    const OPEN: &str = "NOT PROVEN: 1 expectation not evaluated";
    let table = [
        // (runbook, with instant routes, with routes 0..50ms late)
        ("seed-001-swap.runbook", SAFE, UNSAFE),
        ("seed-001-swap-awaited.runbook", SAFE, SAFE),
        ("seed-001-swap-load.runbook", SAFE, SAFE),
        ("seed-000-downtime.runbook", SAFE, SAFE),
        ("swap-unmap-first.runbook", UNSAFE, UNSAFE),
        ("plain-update.runbook", UNSAFE, UNSAFE),
        ("swap-shared-database.runbook", OPEN, OPEN),
    ];
    let shipped: Vec<String> = std::fs::read_dir(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/runbooks"),
    )
    .unwrap()
    .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
    .collect();
    assert_eq!(
        shipped.len(),
        table.len(),
        "a verdict for each: {shipped:?}"
    );
    for (runbook, instant, late) in table {
        for (extra, verdict) in [
            (&[][..], instant),
            (&["--route-delay", "0..50ms"][..], late),
        ] {
            let (code, out, err) = check(runbook, extra);
            assert_eq!(
                code,
                if verdict == SAFE { 0 } else { 1 },
                "{runbook} {extra:?}:\n{out}{err}"
            );
            assert!(out.ends_with(&format!("{verdict}\n")), "{out}");
            assert!(out.contains("states explored"), "{out}");
        }
    }
}

#[test]
fn the_wrong_procedures_fail_naming_the_line() {
    for (runbook, line, step) in [
        (
            "swap-unmap-first.runbook",
            8,
            "af unmap example example.com",
        ),
        ("plain-update.runbook", 7, "af update example"),
    ] {
        let (code, out, _) = check(runbook, &[]);
        assert_eq!(code, 1, "{runbook}:\n{out}");
        assert!(
            out.contains(&format!("during line {line} ({step}")),
            "{runbook}:\n{out}"
        );
        assert!(
            out.contains("a request to example.com arrives: 404, the default error page"),
            "{out}"
        );
        assert!(
            out.contains("FAIL no-default-error-page example.com"),
            "{out}"
        );
    }
}

/// The seed swap as the FAQ writes it is safe when routes change at once, and refuted when they
/// land late — at the staging URL, which changes hands with no wait; the awaited swap holds.
#[test]
fn late_routes_break_the_plain_swap_at_the_staging_url() {
    let (code, out, _) = check("seed-001-swap.runbook", &["--route-delay", "0..50ms"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("land 0s to 50ms after they are published"),
        "{out}"
    );
    assert!(
        out.contains("during line 19 (af unmap example2 example.aws.af.cm)"),
        "{out}"
    );
    // The 300 ms wait settles the production maps: those hosts are proved safe.
    assert!(
        out.contains("ok   no-default-error-page example.com"),
        "{out}"
    );
    let (code, out, _) = check(
        "seed-001-swap-awaited.runbook",
        &["--route-delay", "0..50ms"],
    );
    assert_eq!(code, 0, "{out}");
    // A delay of zero is no delay.
    let (code, _, _) = check("seed-001-swap.runbook", &["--route-delay", "0..0ms"]);
    assert_eq!(code, 0);
}

#[test]
fn the_counter_example_is_written_as_a_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let (schedule, json) = (dir.path().join("s.json"), dir.path().join("r.json"));
    let (code, out, _) = check(
        "seed-001-swap.runbook",
        &[
            "--route-delay",
            "0..50ms",
            "--schedule",
            schedule.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{out}");
    let schedule: afemu::procedure::check::Schedule =
        serde_json::from_str(&std::fs::read_to_string(&schedule).unwrap()).unwrap();
    assert_eq!(schedule.route_delay.as_deref(), Some("0..50ms"));
    assert_eq!(schedule.breach.host(), Some("example.aws.af.cm"));
    assert!(matches!(
        schedule.moves.last(),
        Some(afemu::procedure::check::Move::Request { status: 404, .. })
    ));
    let report: afemu::procedure::check::CheckReport =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(!report.passed());
    assert_eq!(report.counter_examples[0].moves, schedule.moves);
}

#[test]
fn runbook_errors_exit_2_with_the_line_and_failing_steps_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.runbook");
    let run = |text: &str| {
        std::fs::write(&bad, text).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_afemu"))
            .arg("check")
            .arg(&bad)
            .output()
            .unwrap();
        (
            output.status.code().unwrap(),
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
        )
    };
    let (code, _, err) = run("af push a --url a.com -n\nmake it so\n@traffic a.com\n");
    assert_eq!(code, 2);
    assert!(err.contains("bad.runbook:2:"), "{err}");
    let (code, _, err) = run("af pussh a --url a.com\n@traffic a.com\n");
    assert_eq!(code, 2);
    assert!(
        err.contains("bad.runbook:1: af refuses this line: Unknown command [pussh]"),
        "{err}"
    );
    let (code, _, err) = run("# nothing\n");
    assert_eq!(code, 2);
    assert!(err.contains("nothing to observe"), "{err}");
    // A step the platform refuses fails the run, as it would in a rehearsal.
    let (code, out, _) = run(
        "af push a --url a.com -n\n@traffic a.com\naf map ghost a.com\n@expect served-by a a.com\n",
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("line 3 fails on the platform"), "{out}");
    assert!(out.contains("Application 'ghost' not found"), "{out}");
    assert!(out.contains("not evaluated"), "{out}");
}

#[test]
fn the_help_states_the_timed_semantics() {
    let output = Command::new(env!("CARGO_BIN_EXE_afemu"))
        .args(["check", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for words in [
        "between MIN and MAX after it",
        "waits that add up to MAX settle every change made before",
        "@traffic starts once every route change",
        "--stop",
        "--schedule",
    ] {
        assert!(help.contains(words), "{words:?} in:\n{help}");
    }
}
