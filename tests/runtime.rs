//! Apps with a start command run as real child processes, with v1's environment, readiness,
//! crashes and restarts, and a stop that kills everything they started. Uses python3 (installed
//! by .ci/run).

mod common;

use std::time::Duration;

use afemu::Emulator;
use afemu::cli::V1Client;
use common::{EVENT_TIMEOUT, fixture, poll, wait_for};
use serde_json::{Value, json};

fn python_available() -> bool {
    std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Creates the python probe (started by `python3 app.py`) and uploads it, without starting it.
async fn create_probe(
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
    af.upload_dir(name, &fixture("apps/python-probe")).await
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
    assert!(common::alive(pid) && common::alive(helper));
    af.stop("probe").await.unwrap();
    assert!(!common::alive(pid), "the app was killed");
    assert!(!common::alive(helper), "and so was what it started");
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
    assert!(!common::alive(first_pid));
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

/// `GET` a path of the API with the client's token; the status and the body.
async fn api_get(emu: &Emulator, af: &V1Client, path: &str, range: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .get(format!("{}{path}", emu.api_url()))
        .header("AUTHORIZATION", af.token().unwrap());
    if let Some(range) = range {
        request = request.header("Range", range);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_add_reaches_the_app_after_its_restart() {
    let emu = Emulator::start().await;
    let af = emu.client();
    push_probe(&af, "probe", "probe.com", &[]).await.unwrap();
    // af env-add: PUT the env, then restart (a full stop-stage-start).
    af.modify("probe", |doc| {
        doc["env"] = json!(["PROBE_GREETING=added later"])
    })
    .await
    .unwrap();
    af.restart("probe", EVENT_TIMEOUT).await.unwrap();
    let seen: Value = serde_json::from_str(&emu.get("probe.com", "/env").await.body).unwrap();
    assert_eq!(seen["env"]["PROBE_GREETING"], "added later");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_go_round_robin_over_three_processes_and_scale_down_drops_the_highest() {
    let emu = Emulator::start().await;
    let af = emu.client();
    push_probe(&af, "probe", "probe.com", &[]).await.unwrap();
    af.scale("probe", 3).await.unwrap();
    af.wait_running("probe", u64::MAX, EVENT_TIMEOUT)
        .await
        .unwrap();
    let mut pids = Vec::new();
    for _ in 0..9 {
        let seen: Value = serde_json::from_str(&emu.get("probe.com", "/env").await.body).unwrap();
        pids.push((
            seen["pid"].as_i64().unwrap(),
            seen["vcap_application"]["instance_index"].as_u64().unwrap(),
        ));
    }
    let first_round: Vec<_> = pids[..3].to_vec();
    let distinct: std::collections::BTreeSet<_> = first_round.iter().map(|p| p.0).collect();
    assert_eq!(distinct.len(), 3, "three processes: {pids:?}");
    assert_eq!(
        &pids[3..6],
        &first_round[..],
        "the same order again: {pids:?}"
    );
    assert_eq!(&pids[6..9], &first_round[..], "and again: {pids:?}");

    let highest = first_round.iter().find(|p| p.1 == 2).unwrap().0;
    af.scale("probe", 2).await.unwrap();
    assert!(!common::alive(highest), "index 2 was stopped");
    for (pid, index) in &first_round {
        if *index < 2 {
            assert!(common::alive(*pid), "index {index} kept running");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_app_flaps_with_backoff_then_is_given_up() {
    let emu = Emulator::builder()
        .configure(|config| {
            config.timing.flapping_backoff = Duration::from_millis(200);
            // Long enough that a slow machine's restarts still count as one run of crashes.
            config.timing.flapping_timeout = Duration::from_secs(60);
        })
        .start()
        .await
        .unwrap();
    let af = emu.client();
    create_probe(&af, "flappy", "flappy.com", &["PROBE_MODE=exit"])
        .await
        .unwrap();
    af.modify("flappy", |doc| doc["state"] = json!("STARTED"))
        .await
        .unwrap();
    let mut seen_flapping = false;
    // v1: the first crash restarts at once; the 2nd to 4th are FLAPPING with a doubling delay;
    // after the 4th restart fails, it is given up and left DOWN.
    poll("five crashes and a given-up instance", async || {
        let state = af.instances("flappy").await.unwrap()["instances"][0]["state"].clone();
        seen_flapping |= state == "FLAPPING";
        let crashes = af.crashes("flappy").await.unwrap()["crashes"]
            .as_array()
            .unwrap()
            .len();
        (crashes == 5 && state == "DOWN").then_some(())
    })
    .await;
    assert!(seen_flapping, "the instance was FLAPPING between restarts");
    let doc = af.app("flappy").await.unwrap();
    assert_eq!(
        (doc["state"].as_str(), doc["runningInstances"].as_u64()),
        (Some("STARTED"), Some(0))
    );
    assert_eq!(
        af.crashes("flappy").await.unwrap()["crashes"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_that_never_listens_is_crashed_and_never_routed() {
    let emu = Emulator::builder()
        .configure(|config| config.timing.readiness_timeout = Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let af = emu.client();
    create_probe(&af, "mute", "mute.com", &["PROBE_MODE=never-listen"])
        .await
        .unwrap();
    let error = af.start("mute", EVENT_TIMEOUT).await.unwrap_err();
    assert!(error.to_string().contains("failed to start"), "{error}");
    let crashes = af.crashes("mute").await.unwrap();
    assert!(!crashes["crashes"].as_array().unwrap().is_empty());
    let answer = emu.get("mute.com", "/").await;
    assert_eq!(answer.router_error.as_deref(), Some("no-route"));
    assert!(
        emu.journal().since(0).iter().all(|e| !e.served_by("mute")),
        "never routed to"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_start_is_starting_until_it_listens() {
    let emu = Emulator::start().await;
    let af = emu.client();
    create_probe(&af, "slow", "slow.com", &["PROBE_START_DELAY_MS=400"])
        .await
        .unwrap();
    af.modify("slow", |doc| doc["state"] = json!("STARTED"))
        .await
        .unwrap();
    let listed = af.instances("slow").await.unwrap();
    assert_eq!(listed["instances"][0]["state"], "STARTING");
    assert_eq!(
        emu.get("slow.com", "/").await.router_error.as_deref(),
        Some("no-route")
    );
    af.wait_running("slow", 0, EVENT_TIMEOUT).await.unwrap();
    assert_eq!(emu.get("slow.com", "/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_files_through_the_files_api() {
    let emu = Emulator::start().await;
    let af = emu.client();
    push_probe(&af, "probe", "probe.com", &[]).await.unwrap();
    let seen: Value = serde_json::from_str(&emu.get("probe.com", "/env").await.body).unwrap();
    let port = seen["env"]["VCAP_APP_PORT"].as_str().unwrap().to_owned();

    // The root lists app/ and logs/ only, in v1's format.
    let (status, root) = api_get(&emu, &af, "/apps/probe/instances/0/files/%2F", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        root,
        format!("{:<35} {:>10}\n{:<35} {:>10}", "app/", "-", "logs/", "-")
    );
    let (_, logs) = api_get(&emu, &af, "/apps/probe/instances/0/files/logs", None).await;
    for name in ["staging.log", "stderr.log", "stdout.log"] {
        assert!(
            logs.lines().any(|l| l.starts_with(name)),
            "{name} in {logs:?}"
        );
    }
    // Both encodings of the path: af's one %2F-escaped segment, and plain segments.
    let expected = format!("listening on {port}\n");
    let (status, escaped) = api_get(
        &emu,
        &af,
        "/apps/probe/instances/0/files/%2Flogs%2Fstdout.log",
        None,
    )
    .await;
    assert_eq!((status, escaped.as_str()), (200, expected.as_str()));
    let (_, plain) = api_get(
        &emu,
        &af,
        "/apps/probe/instances/0/files/logs/stdout.log",
        None,
    )
    .await;
    assert_eq!(plain, expected);
    // Ranges: 206 with exactly those bytes.
    let (status, head) = api_get(
        &emu,
        &af,
        "/apps/probe/instances/0/files/logs/stdout.log",
        Some("bytes=0-8"),
    )
    .await;
    assert_eq!((status, head.as_str()), (206, "listening"));
    let (status, tail) = api_get(
        &emu,
        &af,
        "/apps/probe/instances/0/files/logs/stdout.log",
        Some("bytes=-3"),
    )
    .await;
    assert_eq!(
        (status, tail.as_str()),
        (206, &expected[expected.len() - 3..])
    );
    // run.pid at the instance root, not listed but readable.
    let (status, pid) = api_get(&emu, &af, "/apps/probe/instances/0/files/run.pid", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        pid.trim(),
        seen["pid"].to_string(),
        "the app's own pid, as v1's startup wrote it"
    );
    // Confined to the instance directory.
    let (status, _) = api_get(
        &emu,
        &af,
        "/apps/probe/instances/0/files/..%2F..%2Fetc%2Fpasswd",
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, body) = api_get(
        &emu,
        &af,
        "/apps/probe/instances/0/files/logs%2Fnope.log",
        None,
    )
    .await;
    assert_eq!((status, body.as_str()), (404, "Entity not found.\n"));
    let (status, _) = api_get(&emu, &af, "/apps/probe/instances/7/files/logs", None).await;
    assert_eq!(status, 400);

    // A crashed instance stays readable by its instance id.
    assert_eq!(emu.get("probe.com", "/crash").await.status, 200);
    let crashes = poll("the crash", async || {
        let crashes = af.crashes("probe").await.unwrap();
        (!crashes["crashes"].as_array().unwrap().is_empty()).then_some(crashes)
    })
    .await;
    let id = crashes["crashes"][0]["instance"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, log) = api_get(
        &emu,
        &af,
        &format!("/apps/probe/instances/{id}/files/logs%2Fstderr.log"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(log.contains("request /crash"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_grace_lets_the_app_exit_on_sigterm_and_v1_gave_none() {
    for (grace, expect_graceful) in [(Duration::from_secs(10), true), (Duration::ZERO, false)] {
        let emu = Emulator::builder()
            .configure(|config| config.timing.stop_grace = grace)
            .start()
            .await
            .unwrap();
        let af = emu.client();
        let marker = tempfile::tempdir().unwrap();
        let file = marker.path().join("term");
        let env = format!("PROBE_TERM_FILE={}", file.display());
        push_probe(&af, "probe", "probe.com", &[&env])
            .await
            .unwrap();
        af.stop("probe").await.unwrap();
        assert_eq!(file.exists(), expect_graceful, "grace {grace:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_instances_are_reaped_after_the_retention() {
    let emu = Emulator::builder()
        .configure(|config| config.crash_retention = Duration::ZERO)
        .start()
        .await
        .unwrap();
    let af = emu.client();
    push_probe(&af, "probe", "probe.com", &[]).await.unwrap();
    let seen: Value = serde_json::from_str(&emu.get("probe.com", "/env").await.body).unwrap();
    let crashed_dir = std::path::PathBuf::from(seen["env"]["HOME"].as_str().unwrap());
    assert_eq!(emu.get("probe.com", "/crash").await.status, 200);
    // With no retention, the reaper forgets the crash and removes the directory on its next round.
    poll("the crashed instance to be reaped", async || {
        let crashes = af.crashes("probe").await.unwrap();
        (crashes["crashes"].as_array().unwrap().is_empty() && !crashed_dir.exists()).then_some(())
    })
    .await;
    // The health manager restarted it meanwhile, in a directory of its own.
    af.wait_running("probe", u64::MAX, EVENT_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(emu.get("probe.com", "/").await.status, 200);
}
