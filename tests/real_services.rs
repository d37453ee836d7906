//! Real services: `af create-service` provisions a real PostgreSQL, MariaDB or Redis database or
//! RabbitMQ broker as v1's service nodes did; bound apps reach it with the ordinary client
//! libraries (a Python app and a node app, `fixtures/apps/services-*`); unbinding and deleting
//! drop what they made; the databases survive a restart with the state file; a blue/green swap
//! over one shared PostgreSQL loses no acknowledged write.
//!
//! Every test here runs with `--services real`: a machine without the servers fails them
//! (`.ci/run` installs PostgreSQL, MariaDB, Redis and RabbitMQ), it never quietly tests records.

mod common;

use std::sync::{Arc, Mutex};

use afemu::cli::V1Client;
use afemu::{Emulator, ServicesMode};
use common::{EVENT_TIMEOUT, fixture, poll, real_emulator, wait_for_served};
use serde_json::{Value, json};

async fn create_service(emu: &Emulator, vendor: &str, name: &str) {
    let (status, body) = common::call_as_user(
        emu,
        "POST",
        "/services",
        Some(json!({"vendor": vendor, "name": name, "tier": "free"})),
    )
    .await;
    assert_eq!(status, 200, "create-service {vendor} {name}: {body}");
}

fn node_modules_ready() -> std::path::PathBuf {
    let app = fixture("apps/services-node");
    assert!(
        app.join("node_modules/pg").is_dir(),
        "the node fixture's libraries are installed by `npm ci --omit=dev` in {} (.ci/run does it)",
        app.display()
    );
    app
}

/// Pushes a fixture app bound to `services` and starts it: the Python one as v1's wsgi
/// framework, the node one as a standalone app with its command.
async fn push(
    af: &V1Client,
    name: &str,
    dir: &str,
    uris: &[&str],
    env: &[&str],
    services: &[&str],
) {
    let staging = if dir.ends_with("node") {
        json!({"framework": "standalone", "runtime": "node", "command": "node server.js"})
    } else {
        json!({"framework": "wsgi", "runtime": "python2"})
    };
    af.create_app(&json!({
        "name": name,
        "staging": staging,
        "uris": uris,
        "instances": 1,
        "resources": {"memory": 128},
        "env": env,
        "services": services,
    }))
    .await
    .unwrap_or_else(|e| panic!("create {name}: {e}"));
    af.upload_dir(name, &fixture(dir)).await.unwrap();
    af.start(name, EVENT_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
}

/// What `/check` says of each bound service through the router.
async fn check(emu: &Emulator, host: &str) -> Value {
    let answer = emu.get(host, "/check").await;
    assert_eq!(answer.status, 200, "{host}/check: {}", answer.body);
    serde_json::from_str(&answer.body).unwrap()
}

/// The credentials of `vendor` in an app's `VCAP_SERVICES`, as the app reports it.
async fn bound_credentials(emu: &Emulator, host: &str, vendor: &str) -> Value {
    let answer = emu.get(host, "/services").await;
    assert_eq!(answer.status, 200, "{host}/services: {}", answer.body);
    let services: Value = serde_json::from_str(&answer.body).unwrap();
    services
        .as_object()
        .unwrap()
        .iter()
        .find(|(label, _)| label.starts_with(vendor))
        .map(|(_, bound)| bound[0]["credentials"].clone())
        .unwrap_or_else(|| panic!("{host} is not bound to {vendor}: {services}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_node_apps_use_real_databases_with_their_own_users() {
    let node_app = node_modules_ready();
    let emu = real_emulator(|_| {}).await;
    let af = emu.client();
    for (vendor, name) in [("postgresql", "pg"), ("mysql", "my"), ("redis", "cache")] {
        create_service(&emu, vendor, name).await;
    }
    let status = emu.platform().services_status();
    for vendor in ["postgresql", "mysql", "redis"] {
        let entry = status["vendors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["vendor"] == vendor)
            .unwrap();
        assert_eq!(entry["mode"], "real", "{entry}");
        assert_eq!(entry["servers"][0]["state"], "running", "{entry}");
    }

    let all = ["pg", "my", "cache"];
    push(&af, "py", "apps/services-python", &["py.com"], &[], &all).await;
    assert!(node_app.is_dir());
    push(&af, "js", "apps/services-node", &["js.com"], &[], &all).await;
    let ok = json!({"postgresql": "ok", "mysql": "ok", "redis": "ok"});
    assert_eq!(check(&emu, "py.com").await, ok);
    assert_eq!(check(&emu, "js.com").await, ok);

    // Each binding has a user of its own on the same database (Redis: the same credentials).
    let (py_pg, js_pg) = (
        bound_credentials(&emu, "py.com", "postgresql").await,
        bound_credentials(&emu, "js.com", "postgresql").await,
    );
    // A database's name is no secret; its users' passwords do not follow from it.
    let name = py_pg["name"].as_str().unwrap();
    for credentials in [&py_pg, &js_pg] {
        let password = credentials["password"].as_str().unwrap();
        assert!(!password.contains(&name[1..]), "{credentials}");
    }
    assert_eq!(py_pg["name"], js_pg["name"]);
    assert_ne!(py_pg["user"], js_pg["user"]);
    for key in [
        "name", "hostname", "host", "port", "user", "username", "password",
    ] {
        assert!(py_pg.get(key).is_some(), "v1's {key} in {py_pg}");
    }
    let (py_my, js_my) = (
        bound_credentials(&emu, "py.com", "mysql").await,
        bound_credentials(&emu, "js.com", "mysql").await,
    );
    assert_eq!(py_my["name"], js_my["name"]);
    assert_ne!(py_my["user"], js_my["user"]);
    assert_eq!(
        bound_credentials(&emu, "py.com", "redis").await["password"],
        bound_credentials(&emu, "js.com", "redis").await["password"]
    );

    // Unbinding drops the app's user: the running app (still started with those credentials,
    // as on v1 until it is restarted) can no longer log in; the other app is untouched.
    af.modify("py", |doc| doc["services"] = json!(["my", "cache"]))
        .await
        .unwrap();
    let after_unbind = check(&emu, "py.com").await;
    assert_ne!(after_unbind["postgresql"], "ok", "{after_unbind}");
    assert_eq!(after_unbind["mysql"], "ok");
    assert_eq!(check(&emu, "js.com").await["postgresql"], "ok");
    af.modify("js", |doc| doc["services"] = json!(["pg", "cache"]))
        .await
        .unwrap();
    assert_ne!(check(&emu, "js.com").await["mysql"], "ok");

    // Deleting a service drops its database: the app bound to it loses it.
    let (status, body) = common::call_as_user(&emu, "DELETE", "/services/pg", None).await;
    assert_eq!(status, 200, "{body}");
    let after_delete = check(&emu, "js.com").await;
    assert_ne!(after_delete["postgresql"], "ok", "{after_delete}");
    // Deleting Redis stops its server.
    let (status, _) = common::call_as_user(&emu, "DELETE", "/services/cache", None).await;
    assert_eq!(status, 200);
    let redis = emu.platform().services_status()["vendors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["vendor"] == "redis")
        .unwrap()
        .clone();
    assert_eq!(redis["servers"], json!([]), "{redis}");
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_server_that_dies_is_started_again() {
    let emu = real_emulator(|_| {}).await;
    let af = emu.client();
    create_service(&emu, "postgresql", "pg").await;
    push(&af, "py", "apps/services-python", &["py.com"], &[], &["pg"]).await;
    let server = |status: &Value| -> Value {
        status["vendors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["vendor"] == "postgresql")
            .unwrap()["servers"][0]
            .clone()
    };
    let before = server(&emu.platform().services_status());
    let pid = before["pid"].as_i64().expect("a running server has a pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let after = poll("the server started again", async || {
        let now = server(&emu.platform().services_status());
        (now["restarts"] == 1 && now["state"] == "running").then_some(now)
    })
    .await;
    assert_ne!(after["pid"], before["pid"]);
    assert_eq!(
        after["port"], before["port"],
        "the same port: the credentials still hold"
    );
    let died = emu
        .journal()
        .events_since(0)
        .iter()
        .any(|e| e.event == "service" && e.detail["server"] == "postgresql");
    assert!(died, "the death is in the journal's events");
    // The data survived the crash and the app reaches the new server.
    assert_eq!(check(&emu, "py.com").await["postgresql"], "ok");
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_survive_a_restart_and_reset_drops_them() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let data = dir.path().join("data");
    let config = |config: &mut afemu::Config| {
        config.data_dir = Some(data.clone());
        config.state_file = Some(state.clone());
    };
    let emu = real_emulator(config).await;
    let af = emu.client();
    create_service(&emu, "postgresql", "pg").await;
    create_service(&emu, "redis", "cache").await;
    // The tenants' data is readable by its server's user only.
    for vendor in ["postgresql", "redis"] {
        use std::os::unix::fs::PermissionsExt;
        let dir = data.join("services").join(vendor);
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", dir.display());
    }
    push(
        &af,
        "py",
        "apps/services-python",
        &["py.com"],
        &[],
        &["pg", "cache"],
    )
    .await;
    let written = post(&emu, "py.com", "/write?key=before-restart").await;
    assert_eq!(written.0, 200, "{}", written.1);
    emu.shutdown().await;

    let snapshot: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let said = snapshot["not_included"].to_string();
    assert!(said.contains("data in the services' databases"), "{said}");

    let emu = real_emulator(config).await;
    emu.client()
        .wait_running("py", 0, EVENT_TIMEOUT)
        .await
        .unwrap();
    let keys = emu.get("py.com", "/keys").await;
    assert_eq!(keys.body, "before-restart\n", "the row is still there");
    assert_eq!(
        check(&emu, "py.com").await,
        json!({"postgresql": "ok", "redis": "ok"})
    );

    // Importing the state the emulator holds keeps the databases' data.
    let exported = emu.platform().export_state().unwrap();
    emu.platform()
        .import_state(&serde_json::to_value(&exported).unwrap())
        .await
        .unwrap();
    emu.client()
        .wait_running("py", 0, EVENT_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(emu.get("py.com", "/keys").await.body, "before-restart\n");

    // A snapshot whose credentials are not afemu's own forms changes nothing: no server's own
    // account, no wildcard, no name shared by two services.
    let mut hostile = serde_json::to_value(&exported).unwrap();
    for credentials in [
        json!({"name": "postgres", "user": "postgres", "password": "hunter2"}),
        json!({"name": "d________________", "user": "u0123456789abcdef", "password": "x"}),
    ] {
        hostile["services"][0]["credentials"] = credentials.clone();
        let refused = emu.platform().import_state(&hostile).await.unwrap_err();
        assert_eq!(refused.code(), 100, "{credentials}: {refused}");
    }
    let mut twins = serde_json::to_value(&exported).unwrap();
    let mut twin = twins["services"][0].clone();
    twin["name"] = json!("pg-twin");
    twins["services"].as_array_mut().unwrap().push(twin);
    let refused = emu.platform().import_state(&twins).await.unwrap_err();
    assert!(refused.to_string().contains("dropping one"), "{refused}");
    assert_eq!(emu.get("py.com", "/keys").await.body, "before-restart\n");

    let mut emu = emu;
    emu.reset().await;
    let status = emu.platform().services_status();
    assert_eq!(status["services"], json!([]));
    let redis = status["vendors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["vendor"] == "redis")
        .unwrap()
        .clone();
    assert_eq!(redis["servers"], json!([]), "the Redis server went");
    assert!(
        !data
            .join("services/redis")
            .read_dir()
            .unwrap()
            .any(|_| true),
        "and its data"
    );
    let databases = admin_sql(
        &data,
        "SELECT count(*) FROM pg_database WHERE datname LIKE 'd%'",
    );
    assert_eq!(databases.trim(), "0", "every database dropped");
    emu.shutdown().await;
}

/// Runs SQL as PostgreSQL's superuser over the socket in the server's data directory.
fn admin_sql(data: &std::path::Path, sql: &str) -> String {
    let pg = data.join("services/postgresql");
    let port = std::fs::read_to_string(pg.join("port")).unwrap();
    let psql = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin/psql"))
        .find(|p| p.exists())
        .unwrap_or_else(|| "psql".into());
    let output = std::process::Command::new(psql)
        .args(["-X", "-A", "-t", "-h"])
        .arg(pg.join("data"))
        .args([
            "-p",
            port.trim(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            sql,
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

async fn post(emu: &Emulator, host: &str, path: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", emu.router_url()))
        .header("host", host)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_mode_provisions_no_database() {
    let emu = Emulator::builder()
        .configure(|config| config.services = ServicesMode::Records)
        .start()
        .await
        .unwrap();
    create_service(&emu, "postgresql", "pg").await;
    let status = emu.platform().services_status();
    assert_eq!(status["services"][0]["real"], false);
    for vendor in status["vendors"].as_array().unwrap() {
        assert_eq!(vendor["mode"], "record", "{vendor}");
        assert_eq!(vendor["servers"], json!([]));
    }
    emu.shutdown().await;
}

/// The swap with shared state: two versions of an app bound to one PostgreSQL service, written
/// to without pause through the router while the new one is mapped, the old one unmapped and
/// deleted (its database user dropped). Every write the app acknowledged is in the database
/// afterwards, and no visitor saw the platform's error page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_over_one_database_loses_no_acknowledged_write() {
    let emu = Arc::new(real_emulator(|_| {}).await);
    let af = emu.client();
    create_service(&emu, "postgresql", "blog-db").await;
    push(
        &af,
        "blog-v1",
        "apps/services-python",
        &["www.blog.com"],
        &["APP_VERSION=v1"],
        &["blog-db"],
    )
    .await;

    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut writers = Vec::new();
    for writer in 0..2 {
        let (emu, acknowledged, failures, stop) = (
            emu.clone(),
            acknowledged.clone(),
            failures.clone(),
            stop.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.is_cancelled() {
                let key = format!("w{writer}-{n:05}");
                n += 1;
                let (status, body) = post(&emu, "www.blog.com", &format!("/write?key={key}")).await;
                if status == 200 && body.starts_with("written") {
                    acknowledged.lock().unwrap().push(key);
                } else {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("{key}: {status} {body}"));
                }
            }
        }));
    }
    let mark = emu.journal().last_seq();
    wait_for_served(&emu, mark, "www.blog.com", "blog-v1", 20).await;

    push(
        &af,
        "blog-v2",
        "apps/services-python",
        &["blog-v2.blog.com"],
        &["APP_VERSION=v2"],
        &["blog-db"],
    )
    .await;
    let mark = emu.journal().last_seq();
    af.map("blog-v2", "www.blog.com").await.unwrap();
    wait_for_served(&emu, mark, "www.blog.com", "blog-v2", 10).await;
    af.unmap("blog-v1", "www.blog.com").await.unwrap();
    af.delete_app("blog-v1").await.unwrap();
    let mark = emu.journal().last_seq();
    wait_for_served(&emu, mark, "www.blog.com", "blog-v2", 20).await;
    stop.cancel();
    for writer in writers {
        writer.await.unwrap();
    }

    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "refused writes: {failures:?}");
    let acknowledged = acknowledged.lock().unwrap().clone();
    let stored = emu.get("www.blog.com", "/keys").await;
    assert_eq!(stored.status, 200);
    let stored: std::collections::BTreeSet<&str> = stored.body.lines().collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|k| !stored.contains(k.as_str()))
        .collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    let by_v1 = emu
        .journal()
        .since(0)
        .iter()
        .any(|e| e.served_by("blog-v1") && e.method == "POST");
    let by_v2 = emu
        .journal()
        .since(0)
        .iter()
        .any(|e| e.served_by("blog-v2") && e.method == "POST");
    assert!(by_v1 && by_v2, "both versions took writes");
    assert!(
        emu.journal().default_error_pages("www.blog.com").is_empty(),
        "no visitor saw the default error page"
    );
    assert!(
        acknowledged.len() >= 50,
        "only {} writes",
        acknowledged.len()
    );
}

fn rehearsal_options(runbook: std::path::PathBuf) -> afemu::procedure::rehearse::Options {
    afemu::procedure::rehearse::Options {
        runbook,
        profile: afemu::Profile::Fast,
        target: None,
        faults: afemu::Faults::default(),
        reset: false,
        replay: None,
        progress: false,
        services: ServicesMode::Real,
        dashboard: false,
        ..Default::default()
    }
}

/// The shipped runbook of the swap with shared state: rehearsed, every acknowledged write is
/// found at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_database_runbook_keeps_every_write() {
    let options = rehearsal_options(fixture("runbooks/swap-shared-database.runbook"));
    let report = afemu::procedure::rehearse::rehearse(&options)
        .await
        .unwrap();
    let text = afemu::procedure::rehearse::render::terminal(
        &report,
        afemu::procedure::rehearse::render::Terminal {
            width: 100,
            colour: false,
        },
    );
    assert!(report.passed, "{text}");
    let kept = report
        .expectations
        .iter()
        .find(|e| e.name == "writes-kept www.blog.com")
        .unwrap_or_else(|| panic!("{text}"));
    assert!(kept.detail.starts_with("all "), "{}", kept.detail);
}

/// The classic mistake with state: the new version bound to a new, empty database. Every route
/// is right, no visitor sees an error page, and the writes the old version acknowledged are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_to_a_new_database_loses_the_acknowledged_writes() {
    let shipped =
        std::fs::read_to_string(fixture("runbooks/swap-shared-database.runbook")).unwrap();
    let app = fixture("apps/services-python");
    let changed = shipped
        .replace("../apps/services-python", &app.display().to_string())
        .replace(
            "af bind-service blog-db blog-v2",
            "af create-service postgresql blog-db2 --infra aws\naf bind-service blog-db2 blog-v2",
        );
    assert_ne!(changed, shipped);
    let dir = tempfile::tempdir().unwrap();
    let runbook = dir.path().join("swap.runbook");
    std::fs::write(&runbook, changed).unwrap();
    let report = afemu::procedure::rehearse::rehearse(&rehearsal_options(runbook))
        .await
        .unwrap();
    let text = afemu::procedure::rehearse::render::terminal(
        &report,
        afemu::procedure::rehearse::render::Terminal {
            width: 100,
            colour: false,
        },
    );
    assert!(!report.passed, "{text}");
    let outcome = |name: &str| {
        report
            .expectations
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("{name}: {text}"))
            .clone()
    };
    assert_eq!(
        outcome("no-default-error-page www.blog.com").outcome,
        afemu::procedure::check::Outcome::Held,
        "{text}"
    );
    let kept = outcome("writes-kept www.blog.com");
    assert_eq!(
        kept.outcome,
        afemu::procedure::check::Outcome::Failed,
        "{text}"
    );
    assert!(
        kept.detail.contains("are missing from GET /keys"),
        "{}",
        kept.detail
    );
}

/// `afemu serve --services real`: it says at start what each vendor is; the database servers and
/// brokers it starts, and every process they start (RabbitMQ's port mapper, Erlang's helpers),
/// die with it, whether it is stopped or killed outright (the watchdog).
async fn no_database_server_outlives_afemu(signal: nix::sys::signal::Signal) {
    let mut served = common::serve_binary_logged(&["--services", "real"], &[]).await;
    let api = served.api.clone();
    let token = common::owner_token(&api).await;
    for vendor in ["postgresql", "mysql", "redis", "rabbitmq"] {
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
    let (_, state) = common::call(&api, "", "GET", "/_afemu/state", None).await;
    let passwords: Vec<String> = state["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["credentials"]["password"].as_str().map(str::to_owned))
        .collect();
    let (_, status) = common::call(&api, "", "GET", "/_afemu/services", None).await;
    let pids: Vec<i64> = status["vendors"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|v| v["servers"].as_array().unwrap().clone())
        .map(|server| server["pid"].as_i64().unwrap())
        .collect();
    // PostgreSQL, MariaDB, Redis, RabbitMQ's port mapper and its broker.
    assert_eq!(pids.len(), 5, "{status}");
    assert!(pids.iter().all(|pid| common::alive(*pid)));
    // And what they started: the broker's Erlang VM and its helpers (erl_child_setup,
    // inet_gethost), some in sessions of their own.
    let pids = descendants(&pids);
    let names: Vec<String> = pids.iter().map(|pid| process_name(*pid)).collect();
    for erlang in ["beam.smp", "epmd"] {
        assert!(names.iter().any(|n| n == erlang), "{erlang} in {names:?}");
    }

    let logs = served.end_with(signal).await;
    for said in [
        "postgresql: real (PostgreSQL ",
        "mysql: real (",
        "redis: real (redis-server ",
        "mongodb: record only (",
        "rabbitmq: real (rabbitmq-server 3.",
    ] {
        assert!(logs.contains(said), "{said:?} in the start-up log:\n{logs}");
    }
    assert_eq!(passwords.len(), 4, "every service has a password");
    for password in &passwords {
        assert!(
            !logs.contains(password.as_str()),
            "a password in the log:\n{logs}"
        );
    }
    // A killed process's children die asynchronously (the watchdog kills them once the pipe
    // closes); there is no event to wait on for processes that are not ours.
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    while pids.iter().any(|pid| common::alive(*pid)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "database servers survived {signal}: {:?}",
            pids.iter()
                .filter(|pid| common::alive(**pid))
                .map(|pid| format!("{pid} {}", process_name(*pid)))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_database_server_outlives_a_sigterm() {
    no_database_server_outlives_afemu(nix::sys::signal::Signal::SIGTERM).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_database_server_outlives_a_sigkill() {
    no_database_server_outlives_afemu(nix::sys::signal::Signal::SIGKILL).await;
}

/// With only a state file (the data directory is temporary), the databases live beside it, so
/// the services it remembers come back with their data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_data_dir_the_databases_live_beside_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let config = |config: &mut afemu::Config| config.state_file = Some(state.clone());
    let emu = real_emulator(config).await;
    create_service(&emu, "postgresql", "pg").await;
    push(
        &emu.client(),
        "py",
        "apps/services-python",
        &["py.com"],
        &[],
        &["pg"],
    )
    .await;
    assert_eq!(post(&emu, "py.com", "/write?key=kept").await.0, 200);
    emu.shutdown().await;
    assert!(
        dir.path()
            .join("state.json.services/postgresql/data/PG_VERSION")
            .is_file()
    );

    let emu = real_emulator(config).await;
    emu.client()
        .wait_running("py", 0, EVENT_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(emu.get("py.com", "/keys").await.body, "kept\n");
    emu.shutdown().await;
}

/// The processes started by `pids` (and by those, and so on), with `pids` themselves: read from
/// `/proc`, whatever session or process group they put themselves in.
fn descendants(pids: &[i64]) -> Vec<i64> {
    let parents: Vec<(i64, i64)> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<i64>().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            let parent = rest.split_whitespace().nth(1)?.parse::<i64>().ok()?;
            Some((pid, parent))
        })
        .collect();
    let mut found = pids.to_vec();
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(pid, _)| *pid),
        );
        next += 1;
    }
    found
}

fn process_name(pid: i64) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|name| name.trim().to_owned())
        .unwrap_or_default()
}

/// The rabbitmq vendor's servers in `/_afemu/services`: its port mapper and a broker per service.
fn rabbitmq_servers(emu: &Emulator) -> Vec<Value> {
    emu.platform().services_status()["vendors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["vendor"] == "rabbitmq")
        .unwrap()["servers"]
        .as_array()
        .unwrap()
        .clone()
}

/// RabbitMQ as v1's node ran it: a broker of its own per service, a user of its own per bound
/// app (v1's credentials, `url` included), that user deleted on unbind, the broker on delete;
/// supervised like the database servers (started again if it dies). The Python app publishes a
/// message with pika and consumes it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_send_and_receive_on_a_real_rabbitmq_broker_with_users_of_their_own() {
    let data = tempfile::tempdir().unwrap();
    let emu = real_emulator(|config| config.data_dir = Some(data.path().to_path_buf())).await;
    let af = emu.client();
    create_service(&emu, "rabbitmq", "mq").await;
    let servers = rabbitmq_servers(&emu);
    let names: Vec<&str> = servers.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(
        servers.len(),
        2,
        "the port mapper and one broker: {names:?}"
    );
    assert!(names.contains(&"rabbitmq epmd"), "{names:?}");
    assert!(
        servers.iter().all(|s| s["state"] == "running"),
        "{servers:?}"
    );

    push(&af, "py", "apps/services-python", &["py.com"], &[], &["mq"]).await;
    push(
        &af,
        "py2",
        "apps/services-python",
        &["py2.com"],
        &[],
        &["mq"],
    )
    .await;
    assert_eq!(check(&emu, "py.com").await, json!({"rabbitmq": "ok"}));
    assert_eq!(check(&emu, "py2.com").await, json!({"rabbitmq": "ok"}));

    // v1's credentials: the same broker and virtual host, a user of each app's own.
    let (one, two) = (
        bound_credentials(&emu, "py.com", "rabbitmq").await,
        bound_credentials(&emu, "py2.com", "rabbitmq").await,
    );
    for key in [
        "name", "hostname", "host", "port", "vhost", "user", "username", "pass", "password", "url",
    ] {
        assert!(one.get(key).is_some(), "v1's {key} in {one}");
    }
    assert_eq!(one["name"], two["name"]);
    assert_eq!(one["vhost"], two["vhost"]);
    assert_eq!(one["port"], two["port"]);
    assert_ne!(one["user"], two["user"]);
    assert_ne!(one["password"], two["password"]);
    assert_eq!(
        one["url"],
        format!(
            "amqp://{}:{}@127.0.0.1:{}/{}",
            one["user"].as_str().unwrap(),
            one["pass"].as_str().unwrap(),
            one["port"],
            one["vhost"].as_str().unwrap()
        )
    );
    // The broker's files are its user's only.
    {
        use std::os::unix::fs::PermissionsExt;
        let broker = data
            .path()
            .join("services/rabbitmq")
            .join(one["name"].as_str().unwrap());
        for private in [
            broker.clone(),
            broker.join("home"),
            broker.join("rabbitmq.conf"),
        ] {
            let mode = std::fs::metadata(&private).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", private.display());
        }
    }

    // A broker that dies is started again, on the same port, with its users.
    let broker = |servers: Vec<Value>| {
        servers
            .into_iter()
            .find(|s| s["name"] != "rabbitmq epmd")
            .unwrap()
    };
    let before = broker(rabbitmq_servers(&emu));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(before["pid"].as_i64().unwrap() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let after = poll("the broker started again", async || {
        let now = broker(rabbitmq_servers(&emu));
        (now["restarts"] == 1 && now["state"] == "running").then_some(now)
    })
    .await;
    assert_eq!(after["port"], before["port"]);
    assert_eq!(check(&emu, "py.com").await, json!({"rabbitmq": "ok"}));

    // Unbinding deletes the app's user: the app, still running with it, is refused; the other
    // app is not.
    af.modify("py", |doc| doc["services"] = json!([]))
        .await
        .unwrap();
    let refused = check(&emu, "py.com").await;
    assert!(
        refused["rabbitmq"]
            .as_str()
            .is_some_and(|said| said.contains("ACCESS_REFUSED")),
        "{refused}"
    );
    assert_eq!(check(&emu, "py2.com").await, json!({"rabbitmq": "ok"}));

    // Deleting the service stops its broker and removes its directory.
    let (status, body) = common::call_as_user(&emu, "DELETE", "/services/mq", None).await;
    assert_eq!(status, 200, "{body}");
    let servers = rabbitmq_servers(&emu);
    assert_eq!(
        servers.len(),
        1,
        "only the port mapper is left: {servers:?}"
    );
    assert!(
        !data
            .path()
            .join("services/rabbitmq")
            .join(one["name"].as_str().unwrap())
            .exists()
    );
    assert_ne!(check(&emu, "py2.com").await["rabbitmq"], "ok");
    emu.shutdown().await;
}

/// A broker keeps its virtual host and users across a restart of afemu with its data directory;
/// loaded from the state file into a new data directory, it is made again with the snapshot's
/// credentials (each binding's user too); a reset removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rabbitmq_broker_survives_a_restart_comes_back_from_a_snapshot_and_goes_on_reset() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let configure = |data: std::path::PathBuf| {
        let state = state.clone();
        move |config: &mut afemu::Config| {
            config.data_dir = Some(data);
            config.state_file = Some(state);
        }
    };
    let data = dir.path().join("data");
    let emu = real_emulator(configure(data.clone())).await;
    create_service(&emu, "rabbitmq", "mq").await;
    push(
        &emu.client(),
        "py",
        "apps/services-python",
        &["py.com"],
        &[],
        &["mq"],
    )
    .await;
    let bound = bound_credentials(&emu, "py.com", "rabbitmq").await;
    emu.shutdown().await;

    // The same data directory: the same broker, its users as they were.
    let emu = real_emulator(configure(data.clone())).await;
    emu.client()
        .wait_running("py", 0, EVENT_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(bound_credentials(&emu, "py.com", "rabbitmq").await, bound);
    assert_eq!(check(&emu, "py.com").await, json!({"rabbitmq": "ok"}));
    emu.shutdown().await;

    // A new data directory: the broker made again from the snapshot, the app's user with it.
    let elsewhere = dir.path().join("elsewhere");
    let mut emu = real_emulator(configure(elsewhere.clone())).await;
    emu.client()
        .wait_running("py", 0, EVENT_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        bound_credentials(&emu, "py.com", "rabbitmq").await["user"],
        bound["user"]
    );
    assert_eq!(check(&emu, "py.com").await, json!({"rabbitmq": "ok"}));
    let broker = elsewhere
        .join("services/rabbitmq")
        .join(bound["name"].as_str().unwrap());
    assert!(broker.is_dir(), "{}", broker.display());

    emu.reset().await;
    let servers = rabbitmq_servers(&emu);
    assert!(
        servers.iter().all(|s| s["name"] == "rabbitmq epmd"),
        "no broker is left: {servers:?}"
    );
    assert!(!broker.exists(), "its directory went");
    emu.shutdown().await;
}

/// A broker afemu cannot start fails the provision with v1's gateway error saying why, and
/// nothing of it is kept: no service, no server. (Here its directory cannot be made: a file is
/// in the way.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rabbitmq_provision_that_fails_is_v1s_gateway_error_and_keeps_nothing() {
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(data.path().join("services")).unwrap();
    std::fs::write(data.path().join("services/rabbitmq"), "in the way").unwrap();
    let emu = real_emulator(|config| config.data_dir = Some(data.path().to_path_buf())).await;
    let (status, body) = common::call_as_user(
        &emu,
        "POST",
        "/services",
        Some(json!({"vendor": "rabbitmq", "name": "mq"})),
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["code"], 503, "{body}");
    let said = body["description"].as_str().unwrap();
    assert!(
        said.starts_with("Unexpected response from service gateway") && said.contains("exists"),
        "{said}"
    );
    let (_, services) = common::call_as_user(&emu, "GET", "/services", None).await;
    assert_eq!(services, json!([]));
    assert_eq!(rabbitmq_servers(&emu), Vec::<Value>::new());
    emu.shutdown().await;
}
