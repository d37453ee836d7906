//! Node apps with a `package.json`: `engines.node` checked against the node installed, and the
//! dependencies installed into the droplet's `node_modules` with the machine's npm (its
//! registry and configuration; the cache is staging's), as v1's npm support did
//! (`vcap-staging`'s `plugin/node/npm_support/`). `npm ci` where there is a lockfile,
//! `npm install` otherwise, production dependencies only.

use std::ffi::OsStr;

use serde_json::Value;

use super::run::Staging;

pub(super) async fn stage(staging: &mut Staging) -> Result<(), String> {
    let text = std::fs::read_to_string(staging.app_dir.join("package.json"))
        .map_err(|e| format!("cannot read package.json: {e}"))?;
    let package: Value =
        serde_json::from_str(&text).map_err(|e| format!("package.json is not valid JSON: {e}"))?;
    if !package.is_object() {
        return Err("package.json is not a JSON object".into());
    }
    if let Some(wanted) = package.pointer("/engines/node") {
        check_engine(staging, wanted).await?;
    }
    let dependencies = ["dependencies", "optionalDependencies"]
        .iter()
        .filter_map(|key| package.get(key)?.as_object())
        .map(|deps| deps.len())
        .sum::<usize>();
    if dependencies == 0 {
        staging.say("-----> package.json has no dependencies to install");
        return Ok(());
    }
    if staging.app_dir.join("node_modules").is_dir() {
        staging.say("-----> Using the node_modules that came with the app");
        return Ok(());
    }
    let npm = staging.need("npm", "installing the dependencies in package.json")?;
    let lockfile = ["package-lock.json", "npm-shrinkwrap.json"]
        .iter()
        .any(|file| staging.app_dir.join(file).is_file());
    let verb = if lockfile { "ci" } else { "install" };
    let cache = staging.cache("npm")?;
    // node-gyp (native modules) keeps its headers under XDG_CACHE_HOME.
    let xdg = staging.cache("xdg")?;
    let args = [
        verb,
        "--omit=dev",
        "--no-audit",
        "--no-fund",
        "--no-update-notifier",
    ];
    staging
        .run(
            &format!("npm {verb}"),
            &npm,
            &args,
            &[
                ("npm_config_cache", cache.as_os_str()),
                ("XDG_CACHE_HOME", xdg.as_os_str()),
                ("npm_config_loglevel", OsStr::new("warn")),
                ("npm_config_progress", OsStr::new("false")),
            ],
            None,
        )
        .await
}

/// `engines.node` against the node on this machine: a range it does not satisfy is an error
/// that says both.
async fn check_engine(staging: &mut Staging, wanted: &Value) -> Result<(), String> {
    let Some(wanted) = wanted.as_str() else {
        return Err(format!(
            "package.json's engines.node must be a version range, not {wanted}"
        ));
    };
    let range = nodejs_semver::Range::parse(wanted).map_err(|e| {
        format!("package.json's engines.node {wanted:?} is not a version range: {e}")
    })?;
    let node = staging.need("node", "a node app")?;
    let output = tokio::process::Command::new(&node)
        .arg("--version")
        .output()
        .await
        .map_err(|e| format!("cannot run node --version: {e}"))?;
    let installed = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let version = nodejs_semver::Version::parse(installed.trim_start_matches('v'))
        .map_err(|e| format!("cannot read node's version {installed:?}: {e}"))?;
    if range.satisfies(&version) {
        staging.say(&format!(
            "-----> node {installed} satisfies engines.node {wanted:?}"
        ));
        Ok(())
    } else {
        Err(format!(
            "package.json wants node {wanted}, but this machine has node {installed}"
        ))
    }
}
