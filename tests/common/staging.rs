//! Helpers for the staging tests (tests/staging*.rs): apps with dependencies made here, so no
//! registry is needed, and what a staging leaves behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use afemu::Emulator;
use afemu::cli::V1Client;
use serde_json::json;

use super::EVENT_TIMEOUT;

/// Runs a tool the test needs; a missing one fails the test with what to install.
pub fn tool(program: &str, args: &[&str], dir: &Path) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program} is needed for this test (.ci/run installs it): {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A node package `greet` made with `npm pack` into `app/vendor/`: the dependency of the apps
/// here, installable with no registry (`file:vendor/greet-1.0.0.tgz`).
pub fn pack_greet(app: &Path) {
    let source = tempfile::tempdir().unwrap();
    std::fs::write(
        source.path().join("package.json"),
        r#"{"name": "greet", "version": "1.0.0", "main": "index.js"}"#,
    )
    .unwrap();
    std::fs::write(
        source.path().join("index.js"),
        "module.exports = (name) => 'hello ' + name + ' from greet';\n",
    )
    .unwrap();
    let vendor = app.join("vendor");
    std::fs::create_dir_all(&vendor).unwrap();
    tool(
        "npm",
        &[
            "pack",
            "--silent",
            "--pack-destination",
            vendor.to_str().unwrap(),
        ],
        source.path(),
    );
}

pub async fn create(af: &V1Client, name: &str, framework: &str, command: Option<&str>) {
    let mut staging = json!({"framework": framework});
    if let Some(command) = command {
        staging["command"] = json!(command);
    }
    af.create_app(&json!({
        "name": name,
        "staging": staging,
        "uris": [format!("{name}.com")],
        "instances": 1,
        "resources": {"memory": 128},
    }))
    .await
    .unwrap();
}

/// The app's last staging log, through the files API as `af files APP logs/staging.log` reads it.
pub async fn staging_log(emu: &Emulator, af: &V1Client, name: &str) -> String {
    let (status, text) = instance_file(emu, af, name, "logs%2Fstaging.log").await;
    assert_eq!(status, 200, "logs/staging.log of {name}");
    text
}

/// A file of instance 0 through the files API (what `af files` reads; `path` as af sends it,
/// or in plain segments): its status and text.
pub async fn instance_file(emu: &Emulator, af: &V1Client, app: &str, path: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .get(format!(
            "{}/apps/{app}/instances/0/files/{path}",
            emu.api_url()
        ))
        .header("AUTHORIZATION", af.token().unwrap())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Starts an app whose staging must fail: v1's 310 `Staging failed: '…'`, the app left STOPPED,
/// its package FAILED. Returns the error's description.
pub async fn start_failing(af: &V1Client, name: &str) -> String {
    let error = af.start(name, EVENT_TIMEOUT).await.unwrap_err();
    assert_eq!(
        (error.status(), error.code()),
        (Some(500), Some(310)),
        "{error}"
    );
    let doc = af.app(name).await.unwrap();
    assert_eq!(doc["state"], "STOPPED", "v1 left a failed app stopped");
    let description = error.to_string();
    assert!(description.contains("Staging failed: '"), "{description}");
    description
}

/// What is left in the data directory's droplets: a failed staging leaves nothing there (its log
/// is kept in `staging-logs/`).
pub fn droplet_dirs(data: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(data.join("droplets"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect()
}

/// Live processes (zombies aside) whose command line holds `marker`.
pub fn processes_with(marker: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
            !state.is_some_and(|s| s.starts_with('Z'))
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
        .filter(|cmdline| cmdline.contains(marker))
        .collect()
}

/// An emulator keeping its data in `data`, its staging cache in `cache`, with this staging
/// timeout (else the default).
pub async fn emulator_with(data: &Path, cache: &Path, timeout: Option<Duration>) -> Emulator {
    let cache = cache.to_path_buf();
    Emulator::builder()
        .data_dir(data)
        .configure(move |config| {
            config.staging_cache = Some(cache);
            if let Some(timeout) = timeout {
                config.timing.staging_timeout = timeout;
            }
        })
        .start()
        .await
        .unwrap()
}
