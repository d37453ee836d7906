//! Apps with a start command run as real child processes, with v1's environment, readiness,
//! crashes and restarts, and a stop that kills everything they started. Uses python3 (installed
//! by .ci/run).

mod common;

use std::time::Duration;

use afemu::Emulator;
use afemu::cli::V1Client;
use common::{EVENT_TIMEOUT, fixture, wait_for};
use serde_json::{Value, json};

fn python_available() -> bool {
    std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Pushes the python probe with `command` and the given env, and starts it.
async fn push_probe(
    af: &V1Client,
    name: &str,
    uri: &str,
    env: &[&str],
) -> Result<(), afemu::cli::ClientError> {
    af.create_app(&json!({
        "name": name,
        "staging": {"framework": "standalone", "runtime": "python2", "command": "python3 app.py"},
        "uris": [uri],
        "instances": 1,
        "resources": {"memory": 64},
        "env": env,
    }))
    .await?;
    af.upload_dir(name, &fixture("apps/python-probe")).await?;
    af.start(name, EVENT_TIMEOUT).await
}

/// Whether a process is running: it exists and is not a zombie waiting to be reaped by init
/// (an app's grandchildren are reparented there when their group is killed).
fn alive(pid: i64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_app_gets_the_v1_environment_and_is_killed_whole_on_stop() {
    assert!(
        python_available(),
        "python3 is needed (.ci/run installs it)"
    );
    let emu = Emulator::start().await;
    let af = emu.client();
    push_probe(
        &af,
        "probe",
        "probe.com",
        &["PROBE_GREETING=hello", "vcap_secret=dropped"],
    )
    .await
    .unwrap();
    let answer = emu.get("probe.com", "/env").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let seen: Value = serde_json::from_str(&answer.body).unwrap();
    let port = seen["env"]["VCAP_APP_PORT"].as_str().unwrap().to_owned();
    assert_eq!(seen["argv"], json!(["-p", port]), "v1 appended -p PORT");
    assert_eq!(seen["env"]["PORT"], port);
    assert_eq!(seen["env"]["VCAP_APP_HOST"], "127.0.0.1");
    assert_eq!(seen["env"]["VMC_APP_NAME"], "probe");
    assert_eq!(seen["env"]["PROBE_GREETING"], "hello");
    assert_eq!(seen["vcap_application"]["name"], "probe");
    assert_eq!(seen["vcap_application"]["uris"], json!(["probe.com"]));
    assert_eq!(seen["vcap_application"]["limits"]["mem"], 64 * 1024 * 1024);
    let home = seen["env"]["HOME"].as_str().unwrap();
    assert!(
        seen["cwd"].as_str().unwrap().starts_with(home),
        "runs in its instance's app dir"
    );
    assert!(std::path::Path::new(home).join("logs/stdout.log").is_file());
    let doc = af.app("probe").await.unwrap();
    assert_eq!(
        doc["env"],
        json!(["PROBE_GREETING=hello"]),
        "vcap_ names dropped as v1 did"
    );

    let (pid, helper) = (
        seen["pid"].as_i64().unwrap(),
        seen["helper_pid"].as_i64().unwrap(),
    );
    assert!(alive(pid) && alive(helper));
    af.stop("probe").await.unwrap();
    assert!(!alive(pid), "the app was killed");
    assert!(!alive(helper), "and so was what it started");
    assert!(
        !std::path::Path::new(home).exists(),
        "a stopped instance's dir is removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_refuses_connections_gets_bad_gateway() {
    assert!(
        python_available(),
        "python3 is needed (.ci/run installs it)"
    );
    let emu = Emulator::start().await;
    let af = emu.client();
    push_probe(&af, "refuser", "refuser.com", &["PROBE_MODE=refuse"])
        .await
        .unwrap();
    // RUNNING: its port accepted the readiness check; now it refuses.
    let mark = emu.journal().last_seq();
    let answer = emu.get("refuser.com", "/").await;
    // Refused outright, or reset if the probe had not closed its socket yet: 502 either way.
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert_eq!(answer.router_error.as_deref(), Some("bad-gateway"));
    assert!(answer.body.contains("502 Bad Gateway"));
    let entry = wait_for(&emu, mark, "the 502 in the journal", |e| e.status == 502).await;
    assert_eq!(entry.app.as_deref(), Some("refuser"));
    assert_eq!(entry.instance, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_is_recorded_unregistered_and_restarted() {
    assert!(
        python_available(),
        "python3 is needed (.ci/run installs it)"
    );
    let emu = Emulator::start().await;
    let af = emu.client();
    push_probe(&af, "crashy", "crashy.com", &[]).await.unwrap();
    let before = emu.get("crashy.com", "/env").await;
    let first_pid = serde_json::from_str::<Value>(&before.body).unwrap()["pid"]
        .as_i64()
        .unwrap();
    assert_eq!(emu.get("crashy.com", "/crash").await.status, 200);

    // The crash shows in /crashes, and the health manager starts the instance again at once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let crashes = loop {
        let crashes = af.crashes("crashy").await.unwrap();
        if !crashes["crashes"].as_array().unwrap().is_empty() {
            break crashes;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the crash is listed within 5 s"
        );
        // Poll as clients do (af: every second; the test client: every 10 ms).
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        crashes["crashes"][0]["instance"].as_str().unwrap().len(),
        32
    );
    af.wait_running("crashy", u64::MAX, EVENT_TIMEOUT)
        .await
        .unwrap();
    let after = emu.get("crashy.com", "/env").await;
    let second_pid = serde_json::from_str::<Value>(&after.body).unwrap()["pid"]
        .as_i64()
        .unwrap();
    assert_ne!(first_pid, second_pid, "a new process");
    assert!(!alive(first_pid));
}

#[tokio::test]
async fn an_app_with_nothing_to_run_fails_staging_with_310() {
    let emu = Emulator::start().await;
    let af = emu.client();
    af.create_app(
        &json!({"name": "empty", "staging": {"framework": "standalone"}, "uris": ["empty.com"]}),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("README"), "no index.html, no command").unwrap();
    af.upload_dir("empty", dir.path()).await.unwrap();
    let error = af.start("empty", EVENT_TIMEOUT).await.unwrap_err();
    assert_eq!(
        (error.status(), error.code()),
        (Some(500), Some(310)),
        "{error}"
    );
    assert!(
        error.to_string().contains("needs a start command"),
        "{error}"
    );
    let doc = af.app("empty").await.unwrap();
    assert_eq!(doc["state"], "STOPPED", "v1 left a failed app stopped");
}
