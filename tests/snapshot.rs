//! State snapshots and reset: export everything, reset to a clean slate, import it back, and
//! `afemu serve --state FILE` keeping it across restarts — atomically, whatever moment it is
//! killed at.

mod common;

use std::time::Duration;

use afemu::Emulator;
use common::EVENT_TIMEOUT;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_reset_import_brings_everything_back() {
    let mut emu = Emulator::start().await;
    let af = emu.client();
    common::push_fixture(&af, "example", "apps/hello-v1", &["example.com"]).await;
    af.create_app(
        &json!({"name": "idle", "staging": {"framework": "standalone"}, "uris": ["idle.com"]}),
    )
    .await
    .unwrap();
    let snapshot = emu.platform().export_state().unwrap();
    assert_eq!(snapshot.apps.len(), 2);
    assert_eq!(snapshot.packages.len(), 1, "only example has bits");

    emu.reset().await;
    assert!(emu.client().apps().await.unwrap().is_empty());
    assert!(af.apps().await.is_err(), "the old token is gone");
    assert!(emu.routes().snapshot().lookup("example.com").is_none());
    assert!(emu.journal().since(0).is_empty());

    let document = serde_json::to_value(&snapshot).unwrap();
    emu.platform().import_state(&document).await.unwrap();
    // The old token works again, the started app runs again, the stopped one stays stopped.
    af.wait_running("example", 0, EVENT_TIMEOUT).await.unwrap();
    assert!(
        emu.get("example.com", "/")
            .await
            .body
            .contains("example v1")
    );
    assert_eq!(af.app("idle").await.unwrap()["state"], "STOPPED");

    // A snapshot that does not check out changes nothing.
    let mut bad = document.clone();
    bad["apps"][0]["uris"] = json!(["not a uri"]);
    assert!(emu.platform().import_state(&bad).await.is_err());
    let mut bad_zip = document.clone();
    let hash = snapshot.packages.keys().next().unwrap().clone();
    bad_zip["packages"][&hash] = json!(hex::encode(b"not a zip"));
    assert_eq!(
        emu.platform()
            .import_state(&bad_zip)
            .await
            .unwrap_err()
            .code(),
        402
    );
    assert_eq!(af.apps().await.unwrap().len(), 2);
    assert_eq!(emu.get("example.com", "/").await.status, 200);
}

/// `afemu serve --state STATE`; its TMPDIR (and so its data directory) is the returned scratch
/// directory, which outlives a kill.
async fn serve_with_state(
    state: &std::path::Path,
) -> (tokio::process::Child, String, tempfile::TempDir) {
    let state = state.to_str().expect("a UTF-8 path");
    let served = common::serve_binary(&["--profile", "instant", "--state", state], &[]).await;
    (served.child, served.api, served.scratch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keeps_its_state_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let (mut first, api, _scratch) = serve_with_state(&state).await;
    let mut af = afemu::cli::V1Client::new(&api).with_poll_interval(Duration::from_millis(10));
    af.login("me@example.com", "pw").await.unwrap();
    common::push_fixture(&af, "example", "apps/hello-v1", &["example.com"]).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(first.wait().await.unwrap().success());

    let (mut second, api, _scratch2) = serve_with_state(&state).await;
    let af = afemu::cli::V1Client::new(&api)
        .with_token(af.token().unwrap())
        .with_poll_interval(Duration::from_millis(10));
    af.wait_running("example", 0, EVENT_TIMEOUT).await.unwrap();
    assert_eq!(af.apps().await.unwrap().len(), 1);
    second.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_while_saving_leaves_a_whole_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    // A first, orderly run leaves a state with one app.
    let (mut afemu, api, _scratch) = serve_with_state(&state).await;
    let mut af = afemu::cli::V1Client::new(&api);
    af.login("me@example.com", "pw").await.unwrap();
    af.create_app(&json!({"name": "first", "staging": {"framework": "standalone"}}))
        .await
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(afemu.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(afemu.wait().await.unwrap().success());
    for round in 0..5 {
        let (mut afemu, api, _scratch) = serve_with_state(&state).await;
        let mut af = afemu::cli::V1Client::new(&api);
        af.login("me@example.com", "pw").await.unwrap();
        // A burst of changes, each saved; the kill lands somewhere in the saving.
        for app in 0..5 {
            af.create_app(&json!({"name": format!("app{round}-{app}"), "staging": {"framework": "standalone"}}))
                .await
                .unwrap();
        }
        afemu.kill().await.unwrap();
        let text = std::fs::read_to_string(&state).expect("a state file");
        let document: serde_json::Value =
            serde_json::from_str(&text).expect("a whole JSON document");
        assert_eq!(document["afemu_state"], 1);
        assert!(
            document["apps"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["name"] == "first"),
            "the earlier state is intact"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .collect();
        assert!(
            leftovers.len() <= 2,
            "at most one temporary file beside it: {leftovers:?}"
        );
    }
}

/// The deterministic version of the test above: a process is killed by the kernel in the middle
/// of writing a state (`RLIMIT_FSIZE` makes the write past 64 KiB raise SIGXFSZ, whose default
/// action ends the process), so the kill provably lands mid-save.
#[test]
fn a_process_killed_mid_write_leaves_the_previous_state_file_whole() {
    const CHILD: &str = "AFEMU_TEST_KILLED_MID_WRITE";
    if let Some(path) = std::env::var_os(CHILD) {
        // The child: a 1 MiB state, of which only the first 64 KiB can be written.
        use nix::sys::resource::{Resource, setrlimit};
        setrlimit(Resource::RLIMIT_FSIZE, 64 * 1024, 64 * 1024).unwrap();
        let big = format!(
            "{{\"afemu_state\": 1, \"pad\": \"{}\"}}",
            "x".repeat(1 << 20)
        );
        let _ = afemu::snapshot::write_atomically(std::path::Path::new(&path), big.as_bytes());
        unreachable!("the write past the limit ends the process");
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let previous = br#"{"afemu_state": 1, "apps": []}"#;
    afemu::snapshot::write_atomically(&state, previous).unwrap();

    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "a_process_killed_mid_write_leaves_the_previous_state_file_whole",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD, &state)
        .status()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(nix::sys::signal::Signal::SIGXFSZ as i32),
        "the child was not killed mid-write: {status:?}"
    );
    assert_eq!(
        std::fs::read(&state).unwrap(),
        previous,
        "the previous state is whole"
    );
    let partial: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name() != "state.json")
        .collect();
    assert_eq!(
        partial.len(),
        1,
        "the half-written temporary file: {partial:?}"
    );
    assert_eq!(partial[0].metadata().unwrap().len(), 64 * 1024);
    // The next start removes it.
    afemu::snapshot::remove_partial_writes(&state);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}
