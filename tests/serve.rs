//! The `afemu serve` binary: flags and environment variables, the ready line, the health check,
//! and a graceful shutdown on SIGTERM that leaves no process and no temporary directory behind.

mod common;

use std::process::Command;
use std::time::Duration;

use common::serve_binary;
use serde_json::Value;

#[tokio::test]
async fn serve_prints_one_ready_line_answers_health_and_stops_on_sigterm() {
    let mut served = serve_binary(&[], &[("AFEMU_PROFILE", "instant")]).await;
    assert!(
        served
            .line
            .starts_with("afemu ready: api http://127.0.0.1:"),
        "{}",
        served.line
    );
    assert!(
        served.line.contains("profile instant"),
        "the env var was read: {}",
        served.line
    );
    let data_dir = served
        .line
        .split("data ")
        .nth(1)
        .unwrap()
        .split(", admin token ")
        .next()
        .unwrap()
        .to_owned();
    assert!(std::path::Path::new(&data_dir).is_dir());

    let health: Value = reqwest::get(format!("{}/_afemu/health", served.api))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let no_route = reqwest::Client::new()
        .get(format!("{}/", served.router))
        .header("host", "nowhere.com")
        .send()
        .await
        .unwrap();
    assert_eq!(no_route.status(), 404);
    assert_eq!(no_route.headers()["x-afemu-router-error"], "no-route");

    // The state-changing admin endpoints: open to a direct loopback client, closed to the same
    // request relayed by the router (as from elsewhere) unless it has the printed token.
    let admin_token = served
        .line
        .trim()
        .trim_end_matches(')')
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();
    let direct = reqwest::Client::new()
        .post(format!("{}/_afemu/reset", served.api))
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 200);
    let relayed = reqwest::Client::new()
        .post(format!("{}/_afemu/reset", served.router))
        .header("host", "api.aws.af.cm")
        .send()
        .await
        .unwrap();
    assert_eq!(relayed.status(), 403);
    let with_token = reqwest::Client::new()
        .post(format!("{}/_afemu/reset", served.router))
        .header("host", "api.aws.af.cm")
        .header("authorization", &admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(with_token.status(), 200);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(served.child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), served.child.wait())
        .await
        .expect("afemu exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "graceful exit: {status}");
    assert!(
        !std::path::Path::new(&data_dir).exists(),
        "the temporary data dir is gone"
    );
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_afemu"))
        .args(["serve", "--router-addr", "127.0.0.1:0", "--api-addr"])
        .arg(taken.local_addr().unwrap().to_string())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot listen for the API"), "{stderr}");
}

#[test]
fn bad_flags_are_usage_errors() {
    let output = Command::new(env!("CARGO_BIN_EXE_afemu"))
        .args(["serve", "--profile", "leisurely"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let help = Command::new(env!("CARGO_BIN_EXE_afemu"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--api-addr",
        "--router-addr",
        "--data-dir",
        "--profile",
        "--domain",
        "AFEMU_PROFILE",
    ] {
        assert!(help.contains(flag), "--help mentions {flag}");
    }
}

/// Runs `afemu serve` with two instances of an app that starts a helper process of its own, then
/// ends afemu with `signal` and checks that no app process is left.
async fn no_app_process_outlives(signal: nix::sys::signal::Signal) {
    let mut served = serve_binary(&[], &[("AFEMU_PROFILE", "instant")]).await;
    let mut af =
        afemu::cli::V1Client::new(&served.api).with_poll_interval(Duration::from_millis(10));
    af.login("me@example.com", "pw").await.unwrap();
    af.create_app(&serde_json::json!({
        "name": "probe",
        "staging": {"framework": "standalone", "command": "python3 app.py"},
        "uris": ["probe.com"],
        "instances": 2,
        "resources": {"memory": 64},
    }))
    .await
    .unwrap();
    let probe =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/apps/python-probe");
    af.upload_dir("probe", &probe).await.unwrap();
    af.start("probe", Duration::from_secs(60)).await.unwrap();
    let mut pids = std::collections::BTreeSet::new();
    for _ in 0..2 {
        let seen: Value = reqwest::Client::new()
            .get(format!("{}/env", served.router))
            .header("host", "probe.com")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pids.insert(seen["pid"].as_i64().unwrap());
        pids.insert(seen["helper_pid"].as_i64().unwrap());
    }
    assert_eq!(pids.len(), 4, "two apps and their helpers: {pids:?}");
    assert!(pids.iter().all(|pid| common::alive(*pid)));

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(served.child.id().unwrap() as i32),
        signal,
    )
    .unwrap();
    tokio::time::timeout(Duration::from_secs(60), served.child.wait())
        .await
        .expect("afemu ends")
        .unwrap();
    // A killed process's children die asynchronously; there is no event to wait on for a process
    // that is not ours, so look until they are gone (or fail after a generous bound).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while pids.iter().any(|pid| common::alive(*pid)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "app processes survived {signal}: {pids:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_app_process_outlives_a_sigterm() {
    no_app_process_outlives(nix::sys::signal::Signal::SIGTERM).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_app_process_outlives_a_sigkill() {
    no_app_process_outlives(nix::sys::signal::Signal::SIGKILL).await;
}

/// Logs for a file, a pipe or CI carry no colour codes (stderr here is a pipe).
#[tokio::test]
async fn logs_to_a_pipe_have_no_escape_codes() {
    let mut served = common::serve_binary_logged(&[], &[("RUST_LOG", "debug")]).await;
    let logs = served.end_with(nix::sys::signal::Signal::SIGTERM).await;
    assert!(logs.contains("INFO") || logs.contains("DEBUG"), "{logs}");
    assert!(!logs.contains('\u{1b}'), "{logs:?}");
}
