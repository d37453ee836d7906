//! `afemu rehearse --exec` and `$ COMMAND` lines: the deploy scripts of `fixtures/scripts/`
//! rehearsed unchanged, one report step per `af` they ran, whichever client runs; the sequence
//! they ran written out as a runbook and checked under every schedule; and commands that do not
//! exist, fail half-way, never end or leave background jobs, each with a clear verdict and no
//! process left behind.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use afemu::procedure::check::Outcome;
use afemu::procedure::rehearse::exec::ExecOptions;
use afemu::procedure::rehearse::report::Report;
use afemu::procedure::rehearse::{Options, rehearse};
use afemu::{Profile, ServicesMode};

const SETUP: &str = "fixtures/scripts/before-swap.sh";

/// A rehearsal of `command` after the setup script, with traffic on example.com and the swap's
/// expectation, as `afemu rehearse --setup … --exec COMMAND --traffic example.com --expect
/// 'served-by example2 example.com'` makes it.
fn options(command: &str) -> Options {
    Options {
        runbook: PathBuf::from(format!("--exec {command}")),
        inline: Some(format!(
            "$ {SETUP}\n@traffic example.com\n$ {command}\n@expect served-by example2 example.com\n"
        )),
        profile: Profile::Instant,
        services: ServicesMode::Records,
        exec: ExecOptions {
            wrapper: Some(env!("CARGO_BIN_EXE_afemu").into()),
            client: None,
            timeout: Duration::from_secs(120),
        },
        ..Options::default()
    }
}

/// The af steps of the report, as (kind, text, result).
fn af_steps(report: &Report) -> Vec<(String, String, String)> {
    report
        .steps
        .iter()
        .filter(|s| s.text.starts_with("af "))
        .map(|s| (s.kind.clone(), s.text.clone(), s.result.clone()))
        .collect()
}

fn expectation<'a>(
    report: &'a Report,
    name: &str,
) -> &'a afemu::procedure::rehearse::report::Expectation {
    report
        .expectations
        .iter()
        .find(|e| e.name.starts_with(name))
        .unwrap_or_else(|| panic!("no expectation {name}: {:#?}", report.expectations))
}

const PROOF: &str = "every schedule of the recorded af commands";

fn owned(steps: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    steps
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

/// The af steps of the swap scripts: (kind, command line, result).
fn swap_steps() -> Vec<(String, String, String)> {
    let apps = std::fs::canonicalize("fixtures/apps").unwrap();
    let apps = apps.display();
    owned(&[
        (
            "setup",
            &format!("af push example --path {apps}/node-hello-v1 --url example.com -n"),
            "ok",
        ),
        (
            "step",
            &format!("af push example2 --path {apps}/node-hello-v2 --url example.aws.af.cm -n"),
            "ok",
        ),
        ("step", "af map example2 example.com", "ok"),
        ("step", "af unmap example example.com", "ok"),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_safe_swap_script_passes_and_the_sequence_it_ran_is_proved() {
    let dir = tempfile::tempdir().unwrap();
    let recorded = dir.path().join("swap.runbook");
    let report = rehearse(&Options {
        record: Some(recorded.clone()),
        ..options("fixtures/scripts/swap.sh")
    })
    .await
    .unwrap();
    assert!(report.passed, "{}", report.verdict);
    assert_eq!(af_steps(&report), swap_steps());
    let script = report
        .steps
        .iter()
        .find(|s| s.text == "$ fixtures/scripts/swap.sh")
        .unwrap();
    assert_eq!(script.kind, "script");
    assert!(
        script.output.contains("Successfully mapped url"),
        "the script's own output is kept: {}",
        script.output
    );
    let proof = expectation(&report, PROOF);
    assert_eq!(proof.outcome, Outcome::Held, "{}", proof.detail);

    // The recorded runbook: the same commands, checkable on its own.
    let text = std::fs::read_to_string(&recorded).unwrap();
    let commands: Vec<&str> = text.lines().filter(|l| l.starts_with("af ")).collect();
    let expected: Vec<String> = swap_steps().into_iter().map(|(_, text, _)| text).collect();
    assert_eq!(commands, expected);
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_afemu"))
        .arg("check")
        .arg(&recorded)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(0), "{said}");
    assert!(said.trim_end().ends_with("PASSED"), "{said}");
}

/// Unmapping before mapping: the run may or may not catch a request in the gap, but the proof
/// does, with the shortest schedule that shows it; the rehearsal fails either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmapping_first_is_refuted_even_when_the_run_was_lucky() {
    let report = rehearse(&options("fixtures/scripts/swap-unmap-first.sh"))
        .await
        .unwrap();
    assert!(!report.passed, "{}", report.verdict);
    let proof = expectation(&report, PROOF);
    assert_eq!(proof.outcome, Outcome::Failed, "{}", proof.detail);
    assert!(
        proof.detail.contains("during line")
            && proof.detail.contains("af unmap example example.com")
            && proof.detail.contains("the shortest schedule that shows it"),
        "{}",
        proof.detail
    );
}

/// A script that polls `af stats` until the new app runs: each poll is a step, recorded as a
/// command that changes no route, and the sequence is proved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_that_polls_af_stats_is_rehearsed_and_proved() {
    let dir = tempfile::tempdir().unwrap();
    let recorded = dir.path().join("poll.runbook");
    let report = rehearse(&Options {
        record: Some(recorded.clone()),
        ..options("fixtures/scripts/swap-poll-stats.sh")
    })
    .await
    .unwrap();
    assert!(report.passed, "{}", report.verdict);
    let steps = af_steps(&report);
    let polls = steps
        .iter()
        .filter(|(_, text, _)| text == "af stats example2")
        .count();
    assert!(polls >= 1, "{steps:?}");
    let texts: Vec<&str> = steps.iter().map(|(_, t, _)| t.as_str()).collect();
    let map = texts
        .iter()
        .position(|t| *t == "af map example2 example.com");
    let last_poll = texts.iter().rposition(|t| *t == "af stats example2");
    assert!(map > last_poll, "the map comes after the polls: {texts:?}");
    let text = std::fs::read_to_string(&recorded).unwrap();
    assert!(text.contains("\naf stats example2\n"), "{text}");
    assert_eq!(expectation(&report, PROOF).outcome, Outcome::Held);
}

/// `--af`: another client (here a stand-in that notes each call and hands it to afemu's own
/// `af`) runs each invocation; the report is the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_client_through_af_is_recorded_the_same_way() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.log");
    let stand_in = dir.path().join("other-af");
    std::fs::write(
        &stand_in,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            env!("CARGO_BIN_EXE_af")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut options = options("fixtures/scripts/swap.sh");
    options.exec.client = Some(stand_in);
    let report = rehearse(&options).await.unwrap();
    assert!(report.passed, "{}", report.verdict);
    assert_eq!(af_steps(&report), swap_steps());
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        swap_steps()
            .iter()
            .map(|(_, text, _)| text.strip_prefix("af ").unwrap())
            .collect::<Vec<_>>(),
        "the stand-in ran every invocation"
    );
}

/// A process whose command line holds `marker` is still alive.
fn survivors(marker: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: i64 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (cmdline.contains(marker) && common::alive(pid)).then(|| format!("{pid} {cmdline}"))
        })
        .collect()
}

/// The script's own step, and the expectations that follow from its failure.
fn failed_script<'a>(
    report: &'a Report,
    command: &str,
) -> &'a afemu::procedure::rehearse::report::StepReport {
    assert!(!report.passed, "{}", report.verdict);
    let step = report
        .steps
        .iter()
        .find(|s| s.text == format!("$ {command}"))
        .unwrap_or_else(|| panic!("no step for {command}: {:#?}", report.steps));
    assert!(step.result.starts_with("failed"), "{}", step.result);
    let served = expectation(report, "served-by example2 example.com");
    assert_eq!(served.outcome, Outcome::NotEvaluated, "{}", served.detail);
    let proof = expectation(report, PROOF);
    assert_eq!(proof.outcome, Outcome::NotEvaluated, "{}", proof.detail);
    step
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_does_not_exist_fails_with_what_the_shell_said() {
    let command = "./no-such-deploy-script.sh";
    let report = rehearse(&options(command)).await.unwrap();
    let step = failed_script(&report, command);
    assert_eq!(step.result, "failed (exit 127)");
    assert!(step.output.contains("not found"), "{}", step.output);
}

/// A script that stops half-way (`set -e` and an af command that fails): the steps it ran are
/// reported with their exit status, the rest never appear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_failing_before_its_last_step_reports_what_ran() {
    let command = "set -e; af map nosuchapp example.com; af unmap example example.com";
    let report = rehearse(&options(command)).await.unwrap();
    let step = failed_script(&report, command);
    assert_eq!(step.result, "failed (exit 1)");
    let steps = af_steps(&report);
    assert_eq!(
        steps[1..],
        owned(&[("step", "af map nosuchapp example.com", "exit 1")]),
        "{steps:?}"
    );
    let map = report
        .steps
        .iter()
        .find(|s| s.text == "af map nosuchapp example.com")
        .unwrap();
    assert!(
        map.output.contains("Application not found"),
        "{}",
        map.output
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_never_ends_is_stopped_at_its_timeout() {
    let command = "af apps; exec sleep 6001";
    let mut options = options(command);
    options.exec.timeout = Duration::from_secs(5);
    let report = rehearse(&options).await.unwrap();
    let step = failed_script(&report, command);
    assert!(
        step.result.contains("still running after 5s"),
        "{}",
        step.result
    );
    assert!(
        survivors("sleep 6001").is_empty(),
        "{:?}",
        survivors("sleep 6001")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_jobs_fail_the_command_and_are_stopped() {
    assert_leftover_sleep_stopped("sleep 6002 & af apps", "sleep 6002").await;
}

/// The command line: `--exec` with its flags, exit codes, and `afemu check` of a runbook with a
/// `$` line (it cannot know what the command will run: not proven, never a pass).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_form_and_check_of_a_command_line() {
    let afemu = env!("CARGO_BIN_EXE_afemu");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let run = |script: &str| {
        std::process::Command::new(afemu)
            .args(["rehearse", "--profile", "instant", "--services", "records"])
            .args([
                "--setup",
                SETUP,
                "--exec",
                script,
                "--traffic",
                "example.com",
            ])
            .args(["--rate", "50", "--expect", "served-by example2 example.com"])
            .arg("--json")
            .arg(&json)
            .output()
            .unwrap()
    };
    let passed = run("fixtures/scripts/swap.sh");
    assert_eq!(
        passed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&passed.stdout)
    );
    let report: Report = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(af_steps(&report), swap_steps());
    let failed = run("fixtures/scripts/swap-unmap-first.sh");
    assert_eq!(failed.status.code(), Some(1));

    let usage = std::process::Command::new(afemu)
        .args(["rehearse", "--exec", "fixtures/scripts/swap.sh"])
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2), "--exec needs --traffic");

    let runbook = dir.path().join("script.runbook");
    std::fs::write(
        &runbook,
        "af push example --path app --url example.com -n\n@traffic example.com\n$ ./deploy.sh\n",
    )
    .unwrap();
    let check = std::process::Command::new(afemu)
        .arg("check")
        .arg(&runbook)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{said}");
    assert!(said.contains("NOT PROVEN"), "{said}");
    assert!(
        said.contains("line 3 ($ ./deploy.sh) runs a command"),
        "{said}"
    );
}

/// A process that leaves the command's process group (`setsid`, as a daemon does) is found by
/// the mark in its environment: the command fails and the process is stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_leaves_the_group_is_found_and_stopped() {
    assert_leftover_sleep_stopped(
        "setsid sleep 6003 > /dev/null 2>&1 < /dev/null & af apps",
        "sleep 6003",
    )
    .await;
}

/// Rehearses `command`, which leaves `sleep` running: the command fails for it, and it is
/// stopped.
async fn assert_leftover_sleep_stopped(command: &str, sleep: &str) {
    let report = rehearse(&options(command)).await.unwrap();
    let step = failed_script(&report, command);
    assert!(
        step.result.contains("left 1 process running") && step.result.contains("sleep"),
        "{}",
        step.result
    );
    assert!(survivors(sleep).is_empty(), "{:?}", survivors(sleep));
}

/// A deploy script that targets the real platform and logs in first: both are pinned to the
/// rehearsal's emulator, the password never reaches the report, and the sequence is still
/// judged (the pinned commands change no route).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn af_target_and_login_in_a_script_stay_on_the_rehearsal() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("deploy.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nset -e\nAF_PASSWORD=s3cret\naf target https://api.appfog.com\n\
             af login ops@example.com --passwd \"$AF_PASSWORD\"\nexec {}\n",
            std::fs::canonicalize("fixtures/scripts/swap.sh")
                .unwrap()
                .display()
        ),
    )
    .unwrap();
    let command = format!("sh {}", script.display());
    let report = rehearse(&options(&command)).await.unwrap();
    assert!(report.passed, "{}", report.verdict);
    let steps = af_steps(&report);
    assert_eq!(
        steps[1..3],
        owned(&[
            (
                "step",
                "af target https://api.appfog.com",
                "ok (pinned to the rehearsal's emulator)"
            ),
            (
                "step",
                "af login ops@example.com --passwd ********",
                "ok (pinned to the rehearsal's emulator)"
            ),
        ]),
        "{steps:?}"
    );
    let json = serde_json::to_string(&report).unwrap();
    assert!(!json.contains("s3cret"), "the password is in the report");
    assert_eq!(expectation(&report, PROOF).outcome, Outcome::Held);
}

/// Under a TMPDIR too long for a socket's path, the recording still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_tmpdir_does_not_stop_the_recording() {
    let dir = tempfile::tempdir().unwrap();
    let long = dir.path().join("a-rather-long-directory-name-".repeat(4));
    std::fs::create_dir_all(&long).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_afemu"))
        .args(["rehearse", "--profile", "instant", "--services", "records"])
        .args(["--exec", "af apps", "--traffic", "example.com"])
        .env("TMPDIR", &long)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    // example.com has no app: the rehearsal fails on its error pages, but the command ran and
    // its af step was recorded.
    assert!(said.contains("af apps [") && said.contains("ok]"), "{said}");
    assert!(!said.contains("path must be shorter"), "{said}");
}
