//! Real services under load and when they fail: provisions in parallel each get a database and
//! a user of their own; a server that cannot start makes the provision fail with v1's gateway
//! error naming the cause, leaving no record, no directory and no process, and the next
//! provision tries again; credentials never reach afemu's own log.
//!
//! Like `real_services.rs`, everything here runs with `--services real`: a machine without
//! PostgreSQL, MariaDB and Redis fails these tests rather than skipping them.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use afemu::Emulator;
use common::real_emulator;
use serde_json::{Value, json};

/// Every service's credentials, from a state export (the administrator's view).
async fn credentials(emu: &Emulator) -> Vec<(String, String, Value)> {
    let (status, snapshot) = common::call_as_user(emu, "GET", "/_afemu/state", None).await;
    assert_eq!(status, 200, "{snapshot}");
    snapshot["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["vendor"].as_str().unwrap().to_owned(),
                s["credentials"].clone(),
            )
        })
        .collect()
}

/// A PostgreSQL client program: on `PATH`, or in Debian's versioned directory.
fn psql() -> PathBuf {
    std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin/psql"))
        .find(|p| p.exists())
        .unwrap_or_else(|| "psql".into())
}

/// Runs `sql` with a service's own credentials, as an app would connect: its output.
fn query(vendor: &str, credentials: &Value, sql: &str) -> Result<String, String> {
    let text = |key: &str| credentials[key].as_str().unwrap().to_owned();
    let port = credentials["port"].to_string();
    let output = match vendor {
        "postgresql" => std::process::Command::new(psql())
            .args(["-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-p", &port])
            .args(["-U", &text("user"), "-d", &text("name"), "-c", sql])
            .env("PGPASSWORD", text("password"))
            .output(),
        "mysql" => std::process::Command::new("mariadb")
            .args(["--protocol=TCP", "-h", "127.0.0.1", "-P", &port, "-N", "-B"])
            .args(["-u", &text("user"), &text("name"), "-e", sql])
            .env("MYSQL_PWD", text("password"))
            .output(),
        other => panic!("no SQL client for {other}"),
    }
    .map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// Twenty provisions of each shared server at once, the first of them starting it: every one
/// succeeds, with a database and a user no other service has, that its own credentials reach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_parallel_provisions_each_get_their_own_database_and_user() {
    let emu = real_emulator(|config| config.limits.services = 40).await;
    let api = emu.api_url();
    let token = emu.client().token().unwrap().to_owned();
    let mut creates = tokio::task::JoinSet::new();
    for vendor in ["postgresql", "mysql"] {
        for i in 0..20 {
            let (api, token) = (api.clone(), token.clone());
            creates.spawn(async move {
                let name = format!("{vendor}-{i}");
                let create = json!({"vendor": vendor, "name": name, "tier": "free"});
                let (status, body) =
                    common::call(&api, &token, "POST", "/services", Some(create)).await;
                assert_eq!(status, 200, "create-service {name}: {body}");
            });
        }
    }
    while let Some(done) = creates.join_next().await {
        done.unwrap();
    }

    let services = credentials(&emu).await;
    assert_eq!(services.len(), 40, "{services:?}");
    for vendor in ["postgresql", "mysql"] {
        let of_vendor: Vec<&Value> = services
            .iter()
            .filter(|(_, v, _)| v == vendor)
            .map(|(_, _, c)| c)
            .collect();
        let distinct = |key: &str| -> BTreeSet<String> {
            of_vendor
                .iter()
                .map(|c| c[key].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(distinct("name").len(), 20, "{vendor}: distinct databases");
        assert_eq!(distinct("user").len(), 20, "{vendor}: distinct users");
        assert_eq!(
            distinct("password").len(),
            20,
            "{vendor}: distinct passwords"
        );
        for credentials in &of_vendor {
            // Each user reaches its own database, and can make a table there.
            let made = query(
                vendor,
                credentials,
                "CREATE TABLE t (x INT); INSERT INTO t VALUES (7); SELECT x FROM t;",
            );
            assert_eq!(made.as_deref(), Ok("7"), "{vendor} {credentials}");
        }
        // And no other's: the first service's user cannot open the second's database.
        let mut foreign = of_vendor[0].clone();
        foreign["name"] = of_vendor[1]["name"].clone();
        assert!(
            query(vendor, &foreign, "SELECT 1").is_err(),
            "{vendor}: a user opened another service's database"
        );
    }
    emu.shutdown().await;
}

/// The processes whose command line mentions `needle`: what a failed server could leave.
fn processes_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline
                .contains(needle)
                .then(|| format!("{} {cmdline}", e.file_name().to_string_lossy()))
        })
        .collect()
}

/// A `redis-server` that answers `--version` as Redis does and fails to run, first on `PATH`.
fn broken_redis(dir: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let program = dir.join("redis-server");
    std::fs::write(
        &program,
        "#!/bin/sh\n\
         if [ \"$1\" = --version ]; then\n\
         echo 'Redis server v=7.0.15 sha=00000000:0 malloc=libc bits=64 build=0'; exit 0\n\
         fi\n\
         echo 'FATAL: this redis-server is broken on purpose' >&2\n\
         exit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// A Redis server that cannot start: the provision fails at once with v1's gateway error
/// quoting the server's own words; no service is recorded, no directory or process is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_cannot_start_fails_the_provision_and_leaves_nothing() {
    let bin = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let path = broken_redis(bin.path());
    let data_dir = data.path().to_str().unwrap();
    let served = common::serve_binary(
        &["--services", "real", "--data-dir", data_dir],
        &[("PATH", &path)],
    )
    .await;
    let token = common::owner_token(&served.api).await;
    let (_, status) = common::call(&served.api, "", "GET", "/_afemu/services", None).await;
    let redis = status["vendors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["vendor"] == "redis")
        .unwrap()
        .clone();
    assert_eq!(redis["mode"], "real", "the stand-in was taken: {redis}");
    assert!(
        redis["detail"]
            .as_str()
            .unwrap()
            .contains(bin.path().to_str().unwrap()),
        "{redis}"
    );

    let (status, body) = common::call(
        &served.api,
        &token,
        "POST",
        "/services",
        Some(json!({"vendor": "redis", "name": "cache"})),
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["code"], 503, "v1's gateway error: {body}");
    let description = body["description"].as_str().unwrap();
    assert!(
        description.contains("this redis-server is broken on purpose"),
        "the cause is named: {description}"
    );

    let (status, services) = common::call(&served.api, &token, "GET", "/services", None).await;
    assert_eq!((status, services), (200, json!([])), "no service recorded");
    let left: Vec<_> = std::fs::read_dir(data.path().join("services/redis"))
        .map(|dir| dir.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "nothing of the service kept: {left:?}");
    assert!(
        processes_mentioning(bin.path().to_str().unwrap()).is_empty(),
        "no process left: {:?}",
        processes_mentioning(bin.path().to_str().unwrap())
    );
    // PostgreSQL, which can start, is not affected.
    let (status, body) = common::call(
        &served.api,
        &token,
        "POST",
        "/services",
        Some(json!({"vendor": "postgresql", "name": "db"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// PostgreSQL cannot be set up where its directory should be (a file is in the way, as a full
/// or broken disk would stop it): the provision fails naming the path and leaves no record;
/// once the way is clear, the next provision starts the server and succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_server_start_is_tried_again_by_the_next_provision() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_owned();
    let emu = real_emulator(|config| config.data_dir = Some(data_dir.clone())).await;
    let services = data.path().join("services");
    std::fs::create_dir_all(&services).unwrap();
    let obstacle = services.join("postgresql");
    std::fs::write(&obstacle, "not a directory").unwrap();

    let create = json!({"vendor": "postgresql", "name": "db", "tier": "free"});
    let (status, body) =
        common::call_as_user(&emu, "POST", "/services", Some(create.clone())).await;
    assert_eq!((status, &body["code"]), (502, &json!(503)), "{body}");
    let description = body["description"].as_str().unwrap();
    assert!(
        description.contains("postgresql"),
        "the cause is named: {description}"
    );
    let (_, listed) = common::call_as_user(&emu, "GET", "/services", None).await;
    assert_eq!(listed, json!([]), "no service recorded");

    std::fs::remove_file(&obstacle).unwrap();
    let (status, body) = common::call_as_user(&emu, "POST", "/services", Some(create)).await;
    assert_eq!(status, 200, "{body}");
    let services = credentials(&emu).await;
    assert_eq!(
        query("postgresql", &services[0].2, "SELECT 40 + 2").as_deref(),
        Ok("42")
    );
    emu.shutdown().await;
}

/// At afemu's default log level nothing it logs holds a password: not when provisioning, not
/// when binding, unbinding or deleting, for any vendor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_reach_the_log_at_info_level() {
    let mut served = common::serve_binary_logged(&["--services", "real"], &[]).await;
    let api = served.api.clone();
    let token = common::owner_token(&api).await;
    let vendors = ["postgresql", "mysql", "redis"];
    for vendor in vendors {
        let (status, body) = common::call(
            &api,
            &token,
            "POST",
            "/services",
            Some(json!({"vendor": vendor, "name": vendor})),
        )
        .await;
        assert_eq!(status, 200, "{vendor}: {body}");
    }
    // An app bound to all three (each binding makes a user with a password), then unbound.
    let app = json!({
        "name": "app",
        "staging": {"framework": "standalone", "runtime": "python3", "command": "true"},
        "uris": [],
        "instances": 1,
        "resources": {"memory": 64},
        "services": vendors,
    });
    let (status, body) = common::call(&api, &token, "POST", "/apps", Some(app.clone())).await;
    assert!(status == 200 || status == 302, "{status} {body}");
    let (_, snapshot) = common::call(&api, "", "GET", "/_afemu/state", None).await;
    let mut secrets: Vec<String> = Vec::new();
    for service in snapshot["services"].as_array().unwrap() {
        secrets.push(service["credentials"]["password"].as_str().unwrap().into());
    }
    for app in snapshot["apps"].as_array().unwrap() {
        for binding in app["bindings"].as_object().unwrap().values() {
            secrets.push(binding["password"].as_str().unwrap().into());
        }
    }
    assert!(
        secrets.len() >= 6,
        "services' and bindings' passwords: {secrets:?}"
    );
    let mut unbound = app;
    unbound["services"] = json!([]);
    let (status, body) = common::call(&api, &token, "PUT", "/apps/app", Some(unbound)).await;
    assert_eq!(status, 200, "{body}");
    for vendor in vendors {
        let (status, body) =
            common::call(&api, &token, "DELETE", &format!("/services/{vendor}"), None).await;
        assert_eq!(status, 200, "{vendor}: {body}");
    }

    let logs = served.end_with(nix::sys::signal::Signal::SIGTERM).await;
    assert!(
        logs.contains("provisioned"),
        "the log is the one that tells of provisions:\n{logs}"
    );
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a password is in the log:\n{logs}"
        );
    }
}
