//! Helpers shared by the end-to-end tests.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use afemu::Emulator;
use afemu::router::JournalEntry;
use tokio::io::{AsyncBufReadExt, BufReader};

/// How long any one expected event may take before a test fails. Generous: it bounds a failure,
/// it does not pace a success (every wait returns as soon as its event happens).
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(60);

pub fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(path)
}

/// Waits until the journal has an entry after `since` that satisfies `predicate`.
pub async fn wait_for(
    emu: &Emulator,
    since: u64,
    what: &str,
    predicate: impl FnMut(&JournalEntry) -> bool,
) -> Arc<JournalEntry> {
    emu.journal()
        .wait_for(since, EVENT_TIMEOUT, predicate)
        .await
        .unwrap_or_else(|| panic!("timed out waiting for {what}"))
}

/// Waits until `host` has been served `count` times by `app` after `since`.
pub async fn wait_for_served(emu: &Emulator, since: u64, host: &str, app: &str, count: usize) {
    let mut seen = 0;
    wait_for(
        emu,
        since,
        &format!("{count} requests to {host} served by {app}"),
        |entry| {
            if &*entry.host == host && entry.served_by(app) {
                seen += 1;
            }
            seen >= count
        },
    )
    .await;
}

/// Every journal entry after `since` for `host`.
pub fn entries(emu: &Emulator, since: u64, host: &str) -> Vec<Arc<JournalEntry>> {
    emu.journal()
        .since(since)
        .into_iter()
        .filter(|entry| &*entry.host == host)
        .collect()
}

/// Polls the API as clients do until `done` holds for the app's document, instances or crashes.
pub async fn poll<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether a process is running: it exists and is not a zombie waiting to be reaped (a killed
/// group's grandchildren are reparented to init and reaped there).
pub fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// `afemu serve` running as a child process.
pub struct Served {
    pub child: tokio::process::Child,
    pub api: String,
    pub router: String,
    pub line: String,
    /// Its log, when started with [`serve_binary_logged`].
    pub logs: Option<tokio::process::ChildStderr>,
    /// The child's `TMPDIR`: its default data directory lives here, so that a child killed
    /// with SIGKILL (which cannot clean up) leaves nothing behind. Dropped after the child.
    pub scratch: tempfile::TempDir,
}

/// A directory for a child process's `TMPDIR`, removed when dropped.
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("afemu-test-")
        .tempdir()
        .expect("a scratch directory")
}

/// Starts `afemu serve` on free ports and waits for its ready line.
pub async fn serve_binary(extra_args: &[&str], env: &[(&str, &str)]) -> Served {
    serve_binary_with(extra_args, env, false).await
}

/// [`serve_binary`], keeping its log (stderr) to read in [`Served::logs`].
pub async fn serve_binary_logged(extra_args: &[&str], env: &[(&str, &str)]) -> Served {
    serve_binary_with(extra_args, env, true).await
}

async fn serve_binary_with(extra_args: &[&str], env: &[(&str, &str)], logged: bool) -> Served {
    let scratch = scratch();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_afemu"));
    command
        .args([
            "serve",
            "--api-addr",
            "127.0.0.1:0",
            "--router-addr",
            "127.0.0.1:0",
        ])
        .args(extra_args)
        .env("TMPDIR", scratch.path())
        // Its own defaults, whatever the test's environment says: `env` sets what a test wants.
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(if logged {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("afemu runs");
    let stdout = child.stdout.take().unwrap();
    let logs = child.stderr.take();
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .await
        .expect("a ready line");
    let url_after = |label: &str| {
        line.split_whitespace()
            .skip_while(|word| *word != label)
            .nth(1)
            .unwrap_or_else(|| panic!("no {label} URL in {line:?}"))
            .to_owned()
    };
    let api = url_after("api");
    let router = url_after("router");
    Served {
        child,
        api,
        router,
        line,
        logs,
        scratch,
    }
}

impl Served {
    /// Sends `signal`, then reads its whole log (started with [`serve_binary_logged`]) and waits
    /// for it to end.
    pub async fn end_with(&mut self, signal: nix::sys::signal::Signal) -> String {
        use tokio::io::AsyncReadExt;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id().unwrap() as i32),
            signal,
        )
        .unwrap();
        let mut logs = String::new();
        if let Some(mut stderr) = self.logs.take() {
            stderr.read_to_string(&mut logs).await.unwrap();
        }
        self.child.wait().await.unwrap();
        logs
    }
}

/// A v1 API call with `token`: status and JSON body (or the text, when it is not JSON).
pub async fn call(
    api: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new()
        .request(method.parse().unwrap(), format!("{api}{path}"))
        .header("AUTHORIZATION", token);
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// Pushes the fixture app `app` (a path under `fixtures/`) as `name` on `hosts` and waits until
/// it runs, as `af push` does.
pub async fn push_fixture(af: &afemu::cli::V1Client, name: &str, app: &str, hosts: &[&str]) {
    af.push(name, &fixture(app), hosts, EVENT_TIMEOUT)
        .await
        .unwrap_or_else(|error| panic!("pushing {app} as {name}: {error}"));
}

/// Pushes and starts the python probe as `probe` on `probe.com` with `instances` instances, each
/// telling `notify` (by connecting and sending the path) when it starts on a `/slow` or `/hang`
/// request: the event a test waits for before it acts on a request in flight.
pub async fn push_notifying_probe(
    af: &afemu::cli::V1Client,
    instances: u32,
    notify: std::net::SocketAddr,
) {
    af.create_app(&serde_json::json!({
        "name": "probe",
        "staging": {"framework": "standalone", "command": "python3 app.py"},
        "uris": ["probe.com"],
        "instances": instances,
        "resources": {"memory": 64},
        "env": [format!("PROBE_NOTIFY={notify}")],
    }))
    .await
    .unwrap();
    af.upload_dir("probe", &fixture("apps/python-probe"))
        .await
        .unwrap();
    af.start("probe", EVENT_TIMEOUT).await.unwrap();
}

pub mod staging;
pub mod transcript;

/// An emulator whose services are real (`--services real`): a machine without PostgreSQL,
/// MariaDB, Redis and RabbitMQ fails the test rather than quietly testing records.
pub async fn real_emulator(change: impl FnOnce(&mut afemu::Config)) -> Emulator {
    Emulator::builder()
        .configure(|config| {
            config.services = afemu::ServicesMode::Real;
            change(config);
        })
        .start()
        .await
        .expect("the servers of real services must be installed (.ci/run installs them)")
}

/// A v1 API call as the harness's logged-in user: status and JSON body.
pub async fn call_as_user(
    emu: &Emulator,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let token = emu.client().token().unwrap().to_owned();
    call(&emu.api_url(), &token, method, path, body).await
}

/// Registers a user on a served afemu (`owner@example.com`) and logs in: the token.
pub async fn owner_token(api: &str) -> String {
    let email = "owner@example.com";
    let user = serde_json::json!({"email": email, "password": "pw"});
    call(api, "", "POST", "/users", Some(user)).await;
    let login = serde_json::json!({"password": "pw"});
    let path = format!("/users/{email}/tokens");
    let (_, token) = call(api, "", "POST", &path, Some(login)).await;
    token["token"].as_str().unwrap().to_owned()
}
