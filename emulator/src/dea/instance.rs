//! An instance, as v1's DEA ran one: a task (its supervisor) that owns whatever runs the app — a
//! child process for an app with a start command, or the built-in static file server — on its own
//! loopback port. The supervisor reports RUNNING only once the port accepts a connection, and a
//! crash when the app dies unasked. Nothing else touches the process: commands come in over a
//! channel.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::Dea;
use super::staging::{Droplet, StartPlan};
use crate::bus::{EnvTemplate, StartRequest};
use crate::clock::{epoch_seconds, time_of_day_utc};
use crate::watchdog::Watchdog;

/// What an instance's supervisor can be told.
#[derive(Debug)]
pub(super) enum InstanceCommand {
    /// Stop: the instance is already unregistered; wait (up to `drain`, when there is one) until
    /// nothing holds `backends` any more, kill, remove the instance directory, then reply.
    Stop {
        backends: Vec<Arc<afemu_router::Backend>>,
        drain: Option<Duration>,
        reply: oneshot::Sender<()>,
    },
    /// Fault: die now, as if the app crashed (its process group gets SIGKILL).
    Crash,
    /// Fault: stop answering but keep the connection open (SIGSTOP for a process; the static
    /// server holds every request). Until the instance is stopped.
    Hang,
}

/// The v1 environment of an instance (spec/v1-runtime.md §6), plus `PORT` (documented extra).
fn instance_env(
    template: &EnvTemplate,
    instance_id: &str,
    index: u32,
    port: u16,
    dir: &Path,
) -> Vec<(String, String)> {
    let now = time_of_day_utc(epoch_seconds());
    let vcap_application = json!({
        "instance_id": instance_id,
        "instance_index": index,
        "name": template.app_name,
        "uris": template.uris,
        "users": [template.owner],
        "version": template.version,
        "start": now,
        "runtime": template.runtime,
        "state_timestamp": epoch_seconds(),
        "port": port,
        "limits": {
            "fds": template.fds,
            "mem": template.memory_mb * 1024 * 1024,
            "disk": template.disk_mb * 1024 * 1024,
        },
        "host": "127.0.0.1",
    });
    let instance_json = json!({"instance_id": instance_id, "instance_index": index, "port": port});
    let mut env: Vec<(String, String)> = vec![
        ("HOME".into(), dir.display().to_string()),
        ("VCAP_APPLICATION".into(), vcap_application.to_string()),
        ("VCAP_APP_HOST".into(), "127.0.0.1".into()),
        ("VCAP_APP_PORT".into(), port.to_string()),
        ("VCAP_DEBUG_IP".into(), String::new()),
        ("VCAP_DEBUG_PORT".into(), String::new()),
        ("VCAP_CONSOLE_IP".into(), String::new()),
        ("VCAP_CONSOLE_PORT".into(), String::new()),
        (
            "VMC_WARNING_WARNING".into(),
            "All VMC_* environment variables are deprecated, please use VCAP_* versions.".into(),
        ),
        ("VMC_APP_INSTANCE".into(), instance_json.to_string()),
        ("VMC_APP_NAME".into(), template.app_name.clone()),
        ("VMC_APP_ID".into(), instance_id.to_owned()),
        ("VMC_APP_VERSION".into(), template.version.clone()),
        ("VMC_APP_HOST".into(), "127.0.0.1".into()),
        ("VMC_APP_PORT".into(), port.to_string()),
        ("PORT".into(), port.to_string()),
    ];
    env.extend(template.services_env.iter().cloned());
    // The machine's PATH, so the runtimes installed here can be found (v1 set its own).
    for inherited in ["PATH", "LANG", "TMPDIR"] {
        if let Ok(value) = std::env::var(inherited) {
            env.push((inherited.into(), value));
        }
    }
    for pair in &template.user_env {
        let Some((name, value)) = pair.split_once('=') else {
            continue;
        };
        let lower = name.to_ascii_lowercase();
        if name.is_empty() || lower.starts_with("vcap_") || lower.starts_with("vmc_") {
            continue;
        }
        env.retain(|(existing, _)| existing != name);
        env.push((name.to_owned(), value.to_owned()));
    }
    env
}

/// What runs an instance.
enum Running {
    Static {
        stop: CancellationToken,
        server: tokio::task::JoinHandle<()>,
        /// Set by the hang fault: the server then holds every request.
        hang: tokio::sync::watch::Sender<bool>,
    },
    Process(AppProcess),
}

/// A child process leading its own process group. Dropping it kills the whole group, so no app
/// process outlives its instance, even when the supervisor task itself is dropped.
struct AppProcess {
    child: tokio::process::Child,
    /// The group to kill; `None` once it has been killed and reaped.
    group: Option<nix::unistd::Pid>,
    /// Told of the group, so that it dies even if afemu is killed outright.
    watchdog: Arc<Watchdog>,
}

impl AppProcess {
    fn kill_group(&mut self) {
        self.signal_group(nix::sys::signal::Signal::SIGKILL);
    }

    fn signal_group(&mut self, signal: nix::sys::signal::Signal) {
        if let Some(group) = self.group {
            let _ = nix::sys::signal::killpg(group, signal);
        }
    }

    /// The group is gone and reaped: nothing for the watchdog to do about it any more.
    fn reaped(&mut self) {
        if let Some(group) = self.group.take() {
            self.watchdog.forget(group.as_raw());
        }
    }
}

impl Drop for AppProcess {
    fn drop(&mut self) {
        self.kill_group();
    }
}

impl Running {
    /// Resolves when the app ends without being asked to: a crash.
    async fn exited(&mut self) -> String {
        match self {
            Running::Static { server, .. } => {
                let _ = server.await;
                "the static server stopped".into()
            }
            Running::Process(process) => {
                let status = process.child.wait().await;
                // Whatever the app left behind in its group goes with it.
                process.kill_group();
                if let Some(group) = process.group {
                    wait_until_group_gone(group, Duration::from_secs(2)).await;
                }
                process.reaped();
                match status {
                    Ok(status) => format!("the app exited ({status})"),
                    Err(error) => format!("the app could not be waited for: {error}"),
                }
            }
        }
    }

    /// The hang fault.
    fn hang(&mut self) {
        match self {
            Running::Static { hang, .. } => {
                let _ = hang.send(true);
            }
            Running::Process(process) => process.signal_group(nix::sys::signal::Signal::SIGSTOP),
        }
    }

    /// Kills it and reaps it. With a `grace` period, a process first gets SIGTERM and that long
    /// to exit (v1 gave none: SIGKILL at once).
    async fn kill(self, grace: Duration) {
        match self {
            Running::Static { stop, server, .. } => {
                stop.cancel();
                // Graceful first (the drain already waited for requests), then no mercy.
                let abort = server.abort_handle();
                if tokio::time::timeout(Duration::from_secs(2), server)
                    .await
                    .is_err()
                {
                    abort.abort();
                }
            }
            Running::Process(mut process) => {
                if !grace.is_zero()
                    && let Some(group) = process.group
                {
                    // SIGTERM to everything the app started, and the grace for all of it to end.
                    process.signal_group(nix::sys::signal::Signal::SIGTERM);
                    wait_until_group_gone(group, grace).await;
                }
                // The whole process group: a shell and whatever it started (v1: kill -9).
                process.kill_group();
                let _ = process.child.kill().await;
                // The leader is reaped; the rest of the group dies asynchronously. A stop is
                // only over when nothing of the app runs any more.
                if let Some(group) = process.group {
                    wait_until_group_gone(group, Duration::from_secs(2)).await;
                }
                process.reaped();
            }
        }
    }
}

/// Runs one instance from start to stop or crash, in `dir`, reporting to the DEA.
pub(super) async fn supervise(
    dea: Dea,
    request: StartRequest,
    droplet: Droplet,
    dir: PathBuf,
    mut commands: mpsc::Receiver<InstanceCommand>,
) {
    let shutdown = dea.inner.shutdown.clone();
    let timing = dea.inner.timing;
    let app_id = request.app_id;
    let instance_id = request.instance_id.clone();
    let crashed = |reason: &str| dea.crashed_instance(app_id, &instance_id, &dir, reason);

    let prepared = {
        let droplet_dir = droplet.dir.clone();
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || prepare_instance_dir(&droplet_dir, &dir)).await
    };
    if let Err(reason) = prepared
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
    {
        crashed(&format!("could not prepare the instance: {reason}"));
        return;
    }

    // Boot: start whatever runs the app (after the slow-start fault, if any), unless told to
    // stop first. A crash or hang asked for before the app runs is a crash at start.
    let booting = async {
        tokio::time::sleep(request.slow_start).await;
        start(
            &request,
            &droplet.plan,
            &dir,
            timing.boot,
            &dea.inner.watchdog,
        )
        .await
    };
    let started = tokio::select! {
        started = booting => started,
        command = commands.recv() => {
            match command {
                Some(InstanceCommand::Crash | InstanceCommand::Hang) => crashed("crashed at start (injected fault)"),
                other => stopped(other, &dir).await,
            }
            return;
        }
        () = shutdown.cancelled() => return,
    };
    let (mut running, port) = match started {
        Ok(started) => started,
        Err(reason) => {
            crashed(&reason);
            return;
        }
    };
    let pid = match &running {
        Running::Process(process) => process.child.id(),
        Running::Static { .. } => None,
    };

    // Readiness: the port accepts a TCP connection, as the DEA checked it. An app with no URI
    // gets no traffic, so (as on v1) it counts as ready at once.
    let needs_port = !request.env.uris.is_empty();
    let ready = tokio::select! {
        ready = wait_until_listening(port, timing.readiness_poll, timing.readiness_timeout), if needs_port => ready,
        () = std::future::ready(()), if !needs_port => true,
        reason = running.exited() => {
            crashed(&reason);
            return;
        }
        command = commands.recv() => {
            running.kill(timing.stop_grace).await;
            match command {
                Some(InstanceCommand::Crash | InstanceCommand::Hang) => crashed("crashed at start (injected fault)"),
                other => stopped(other, &dir).await,
            }
            return;
        }
        () = shutdown.cancelled() => {
            running.kill(timing.stop_grace).await;
            return;
        }
    };
    if !ready {
        running.kill(timing.stop_grace).await;
        crashed(&format!(
            "the app did not listen on its port within {:?}",
            timing.readiness_timeout
        ));
        return;
    }
    // RUNNING. If the controller no longer wants it, its stop command is on its way.
    dea.running(app_id, &instance_id, port, pid);

    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(InstanceCommand::Stop { backends, drain, reply }) => {
                    // Unregistered already: let what the router still holds go first (unless
                    // the stop-hard fault cuts it, as v1 did), then kill.
                    if let Some(drain) = drain {
                        let deadline = tokio::time::Instant::now() + drain;
                        for backend in backends {
                            let left = backend
                                .drain(deadline.saturating_duration_since(tokio::time::Instant::now()))
                                .await;
                            if left > 0 {
                                tracing::debug!(%instance_id, left, "stop: requests still in flight after the drain");
                            }
                        }
                    }
                    running.kill(timing.stop_grace).await;
                    finish_stop(Some(reply), &dir).await;
                    return;
                }
                Some(InstanceCommand::Crash) => {
                    running.kill(Duration::ZERO).await;
                    crashed("crashed (injected fault)");
                    return;
                }
                Some(InstanceCommand::Hang) => running.hang(),
                None => {
                    running.kill(timing.stop_grace).await;
                    return;
                }
            },
            reason = running.exited() => {
                crashed(&reason);
                return;
            }
            () = shutdown.cancelled() => {
                running.kill(timing.stop_grace).await;
                return;
            }
        }
    }
}

/// A stop that came before the instance was registered: nothing to drain.
async fn stopped(command: Option<InstanceCommand>, dir: &Path) {
    let reply = match command {
        Some(InstanceCommand::Stop { reply, .. }) => Some(reply),
        _ => None,
    };
    finish_stop(reply, dir).await;
}

/// After a stop: the instance directory goes (v1 kept only crashed ones), then the reply.
async fn finish_stop(reply: Option<oneshot::Sender<()>>, dir: &Path) {
    let dir = dir.to_path_buf();
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
    if let Some(reply) = reply {
        let _ = reply.send(());
    }
}

/// Lays out the instance directory as v1's DEA did: a copy of the droplet (`app/`, and what
/// staging put beside it, such as a Java app's servlet container) and `logs/`, with the staging
/// log in it.
fn prepare_instance_dir(droplet_dir: &Path, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join("logs"))?;
    for entry in std::fs::read_dir(droplet_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "staging.log" || name == "logs" {
            continue;
        }
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &dir.join(&name))?;
        }
    }
    let staging_log = droplet_dir.join("staging.log");
    if std::fs::symlink_metadata(&staging_log).is_ok_and(|m| m.is_file()) {
        super::copy_regular_file(&staging_log, &dir.join("logs").join("staging.log"))?;
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in walkdir::WalkDir::new(from).follow_links(false) {
        let entry = entry.map_err(std::io::Error::other)?;
        let relative = entry
            .path()
            .strip_prefix(from)
            .map_err(std::io::Error::other)?;
        let target = to.join(relative);
        let file_type = entry.file_type();
        if file_type.is_dir() {
            std::fs::create_dir_all(&target)?;
        } else if file_type.is_symlink() {
            let link = std::fs::read_link(entry.path())?;
            std::os::unix::fs::symlink(link, &target)?;
        } else if file_type.is_file() {
            super::copy_regular_file(entry.path(), &target)?;
        } else {
            // A FIFO, a socket or a device node a staging tool left: not the app's files (and
            // opening a FIFO to copy it would wait for ever).
            tracing::debug!(path = %entry.path().display(), "not copied into the instance: not a regular file");
        }
    }
    Ok(())
}

/// Waits until no live process (zombies aside: they run nothing) is left in `group`. Reads
/// `/proc`; where there is none, it returns at once.
async fn wait_until_group_gone(group: nix::unistd::Pid, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while group_has_live_members(group.as_raw()) {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                group = group.as_raw(),
                "processes of a killed app are still alive"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn group_has_live_members(group: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            return false;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // `pid (comm) state ppid pgrp ...`; comm may contain anything, so split after its `)`.
        let mut fields = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace())
            .into_iter()
            .flatten();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|p| p.parse::<i32>().ok());
        pgrp == Some(group) && !matches!(state, Some("Z" | "X"))
    })
}

/// Starts the app and returns what runs it and the port it will listen on.
async fn start(
    request: &StartRequest,
    plan: &StartPlan,
    dir: &Path,
    boot_delay: Duration,
    watchdog: &Arc<Watchdog>,
) -> Result<(Running, u16), String> {
    match plan {
        StartPlan::Static => {
            // The built-in server "boots" for the profile's boot time before it listens.
            tokio::time::sleep(boot_delay).await;
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| format!("no port for the static server: {e}"))?;
            let port = listener.local_addr().map_err(|e| e.to_string())?.port();
            let stop = CancellationToken::new();
            let (hang, hanging) = tokio::sync::watch::channel(false);
            let server = tokio::spawn(super::static_server::serve(
                listener,
                dir.join("app"),
                stop.clone(),
                hanging,
            ));
            Ok((Running::Static { stop, server, hang }, port))
        }
        StartPlan::Command {
            command,
            port_args,
            exports,
        } => {
            let port = free_port().await?;
            let env = instance_env(&request.env, &request.instance_id, request.index, port, dir);
            let child = spawn_app_process(command, *port_args, exports, port, dir, env)?;
            let group = child.id().map(|pid| nix::unistd::Pid::from_raw(pid as i32));
            if let Some(pid) = child.id() {
                watchdog.watch(pid as i32);
            }
            let process = AppProcess {
                child,
                group,
                watchdog: watchdog.clone(),
            };
            Ok((Running::Process(process), port))
        }
    }
}

/// A free loopback port, found as v1's DEA found one: bind port 0, note it, let it go.
async fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("no free port: {e}"))?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(|e| e.to_string())
}

/// The one place app processes are started: `/bin/sh -c '<command> "$@" & …' -p <port>` in
/// `<dir>/app`, with exactly the given environment, in a process group of its own (so a stop kills
/// everything it started), output to `<dir>/logs/`.
fn spawn_app_process(
    command: &str,
    port_args: bool,
    exports: &[(String, String)],
    port: u16,
    dir: &Path,
    env: Vec<(String, String)>,
) -> Result<tokio::process::Child, String> {
    let logs = dir.join("logs");
    let open_log = |name: &str| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(logs.join(name))
            .map_err(|e| format!("cannot open logs/{name}: {e}"))
    };
    let stdout = open_log("stdout.log")?;
    let stderr = open_log("stderr.log")?;
    // v1's staged `startup` script: export the framework's variables, run the app in the
    // background, write its pid to `../run.pid` (clients read it through the files API), and
    // wait for it.
    let arguments = if port_args { " \"$@\"" } else { "" };
    let exports: String = exports
        .iter()
        .map(|(name, value)| format!("export {name}=\"{value}\"\n"))
        .collect();
    let script = format!("{exports}{command}{arguments} &\necho $! > ../run.pid\nwait $!\n");
    tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .arg("afemu-app")
        .arg("-p")
        .arg(port.to_string())
        .current_dir(dir.join("app"))
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {command:?}: {e}"))
}

/// Tries the port every `poll` until it accepts a connection or `limit` passes.
async fn wait_until_listening(port: u16, poll: Duration, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let attempt = tokio::time::timeout(
            Duration::from_millis(250),
            TcpStream::connect(("127.0.0.1", port)),
        )
        .await;
        if matches!(attempt, Ok(Ok(_))) {
            return true;
        }
        if tokio::time::Instant::now() + poll > deadline {
            return false;
        }
        tokio::time::sleep(poll).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(user_env: &[&str]) -> EnvTemplate {
        EnvTemplate {
            app_name: "example".into(),
            owner: "me@example.com".into(),
            uris: vec!["example.com".into()],
            version: "abc-1".into(),
            runtime: Some("node".into()),
            memory_mb: 64,
            disk_mb: 2048,
            fds: 256,
            user_env: user_env.iter().map(|s| s.to_string()).collect(),
            services_env: vec![
                ("VCAP_SERVICES".into(), "{}".into()),
                ("VMC_SERVICES".into(), "[]".into()),
            ],
        }
    }

    fn lookup<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
        env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_v1_environment() {
        let env = instance_env(
            &template(&[
                "FOO=bar",
                "vcap_app_port=1",
                "VMC_X=2",
                "EQ=a=b",
                "noequals",
            ]),
            "f00d",
            2,
            61000,
            Path::new("/data/instances/example-2"),
        );
        assert_eq!(lookup(&env, "VCAP_APP_PORT"), Some("61000"));
        assert_eq!(lookup(&env, "PORT"), Some("61000"));
        assert_eq!(lookup(&env, "VCAP_APP_HOST"), Some("127.0.0.1"));
        assert_eq!(lookup(&env, "HOME"), Some("/data/instances/example-2"));
        assert_eq!(lookup(&env, "VMC_APP_NAME"), Some("example"));
        assert_eq!(lookup(&env, "FOO"), Some("bar"));
        assert_eq!(lookup(&env, "VCAP_SERVICES"), Some("{}"));
        assert_eq!(lookup(&env, "VMC_SERVICES"), Some("[]"));
        assert_eq!(lookup(&env, "EQ"), Some("a=b"));
        assert_eq!(lookup(&env, "vcap_app_port"), None);
        assert_eq!(lookup(&env, "VMC_X"), None);
        let app: serde_json::Value =
            serde_json::from_str(lookup(&env, "VCAP_APPLICATION").unwrap()).unwrap();
        assert_eq!(app["instance_index"], 2);
        assert_eq!(app["limits"]["mem"], 64 * 1024 * 1024);
        assert_eq!(app["limits"]["disk"], 2048u64 * 1024 * 1024);
        assert_eq!(app["users"][0], "me@example.com");
        assert_eq!(app["port"], 61000);
    }
}
