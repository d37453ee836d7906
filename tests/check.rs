//! `afemu check` on the fixture runbooks: the seed procedures are proved safe, the wrong ones are
//! refuted with the step that breaks them, and v1's late route propagation breaks the plain swap
//! unless it waits for each map to land.

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

#[test]
fn the_seed_procedures_are_safe() {
    for runbook in [
        "seed-001-swap.runbook",
        "seed-000-downtime.runbook",
        "seed-001-swap-awaited.runbook",
    ] {
        let (code, out, err) = check(runbook, &[]);
        assert_eq!(code, 0, "{runbook}:\n{out}{err}");
        assert!(out.contains("ok: no request to example.com"), "{out}");
        assert!(out.contains("schedules explored"), "{out}");
    }
}

#[test]
fn the_wrong_procedures_fail_naming_the_step() {
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
            out.contains(&format!("at line {line} ({step}")),
            "{runbook}:\n{out}"
        );
        assert!(
            out.contains("a request to example.com arrives: 404"),
            "{out}"
        );
    }
}

#[test]
fn late_routes_break_the_plain_swap_but_not_the_awaited_one() {
    let (code, out, _) = check("seed-001-swap.runbook", &["--route-delay", "0..50ms"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("may arrive late"), "{out}");
    assert!(out.contains("af unmap example example.com"), "{out}");
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
fn runbook_errors_exit_2_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.runbook");
    std::fs::write(&bad, "af push a --url a.com -n\nmake it so\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_afemu"))
        .arg("check")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8(output.stderr).unwrap();
    assert!(err.contains("bad.runbook:2:"), "{err}");
    std::fs::write(&bad, "af map ghost a.com\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_afemu"))
        .arg("check")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8(output.stderr).unwrap().contains("line 1"));
}
