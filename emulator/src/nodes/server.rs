//! A database server run for a service node, supervised as the DEA supervises an app: in a
//! process group of its own that the watchdog knows of, its output kept in a log file, started
//! again if it dies, and stopped cleanly (the server's own shutdown signal, then SIGKILL after a
//! grace period) when afemu stops.
//!
//! A server is ready when it says so in its log (PostgreSQL's "ready to accept connections",
//! MariaDB's "ready for connections", Redis's "Ready to accept connections", RabbitMQ's "Server
//! startup complete"): the event itself, not a poll of its port.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::watchdog::Watchdog;

/// How long a server may take from start to ready (initialisation is done before it starts).
const READY_LIMIT: Duration = Duration::from_secs(60);
/// How long a server gets to shut down cleanly before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(20);
/// The first wait before a dead server is started again; it doubles up to a minute.
const FIRST_RESTART_DELAY: Duration = Duration::from_millis(500);
/// How many of the log's last lines an error quotes.
const QUOTED_LINES: usize = 8;

/// Told of each death of a server it restarts: its name and how it ended.
pub(crate) type OnRestart = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// How to run one server.
#[derive(Clone, Debug)]
pub(crate) struct ServerSpec {
    /// What it is called in logs and in `/_afemu/services`: `postgresql`, `redis r1a2b…`.
    pub(crate) name: String,
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<OsString>,
    /// Its working directory.
    pub(crate) dir: PathBuf,
    /// Variables set in its environment (over afemu's own).
    pub(crate) env: Vec<(OsString, OsString)>,
    /// Where its output goes (appended, across restarts).
    pub(crate) log: PathBuf,
    /// The line (a substring) it writes once it accepts connections.
    pub(crate) ready_line: &'static str,
    /// The signal that shuts it down cleanly: PostgreSQL's fast shutdown is SIGINT (SIGTERM
    /// would wait for every client to leave); MariaDB, Redis, RabbitMQ (its script stops the
    /// broker) and epmd shut down on SIGTERM.
    pub(crate) stop_signal: Signal,
    /// The user it runs as, when afemu runs as root and the server refuses root.
    pub(crate) run_as: Option<RunAs>,
    pub(crate) port: u16,
}

/// An unprivileged user for a server started by root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RunAs {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// What a server is doing, as `/_afemu/services` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub(crate) enum ServerState {
    Starting,
    Running {
        pid: u32,
    },
    /// It died; it is started again after a delay.
    Restarting {
        last_exit: String,
    },
    /// It could not be started or never became ready; the message says why.
    Failed {
        error: String,
    },
    Stopped,
}

/// A running (or restarting) server: its task owns the process.
#[derive(Debug)]
pub(crate) struct Server {
    pub(crate) spec: ServerSpec,
    state: watch::Receiver<ServerState>,
    restarts: Arc<std::sync::atomic::AtomicU32>,
    stop: CancellationToken,
}

impl Server {
    /// Starts the server's supervisor; [`Server::ready`] waits until it accepts connections.
    pub(crate) fn start(
        spec: ServerSpec,
        watchdog: Arc<Watchdog>,
        shutdown: &CancellationToken,
        tasks: &TaskTracker,
        on_restart: OnRestart,
    ) -> Server {
        let (state_tx, state) = watch::channel(ServerState::Starting);
        let stop = shutdown.child_token();
        let restarts = Arc::new(std::sync::atomic::AtomicU32::new(0));
        tasks.spawn(supervise(
            spec.clone(),
            watchdog,
            state_tx,
            stop.clone(),
            restarts.clone(),
            on_restart,
        ));
        Server {
            spec,
            state,
            restarts,
            stop,
        }
    }

    pub(crate) fn state(&self) -> ServerState {
        self.state.borrow().clone()
    }

    pub(crate) fn restarts(&self) -> u32 {
        self.restarts.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until the server accepts connections (it says so in its log), or says why not.
    pub(crate) async fn ready(&self) -> Result<(), String> {
        let mut state = self.state.clone();
        let waited = tokio::time::timeout(READY_LIMIT, async {
            loop {
                match &*state.borrow_and_update() {
                    ServerState::Running { .. } => return Ok(()),
                    ServerState::Failed { error } => return Err(error.clone()),
                    ServerState::Stopped => return Err(format!("{} stopped", self.spec.name)),
                    ServerState::Starting | ServerState::Restarting { .. } => {}
                }
                if state.changed().await.is_err() {
                    return Err(format!("{} stopped", self.spec.name));
                }
            }
        })
        .await;
        waited.unwrap_or_else(|_| {
            Err(format!(
                "{} did not become ready within {}s{}",
                self.spec.name,
                READY_LIMIT.as_secs(),
                log_tail(&self.spec.log)
            ))
        })
    }

    /// Stops it cleanly and waits until it has exited.
    pub(crate) async fn stop(&self) {
        self.stop.cancel();
        let mut state = self.state.clone();
        let _ = state
            .wait_for(|s| matches!(s, ServerState::Stopped | ServerState::Failed { .. }))
            .await;
    }
}

/// The supervisor: start, wait for ready, wait for exit or stop; start again after a death.
async fn supervise(
    spec: ServerSpec,
    watchdog: Arc<Watchdog>,
    state: watch::Sender<ServerState>,
    stop: CancellationToken,
    restarts: Arc<std::sync::atomic::AtomicU32>,
    on_restart: OnRestart,
) {
    let mut delay = FIRST_RESTART_DELAY;
    loop {
        let _ = state.send(ServerState::Starting);
        let mut child = match spawn(&spec) {
            Ok(child) => child,
            Err(error) => {
                tracing::warn!(server = %spec.name, %error, "cannot start");
                let _ = state.send(ServerState::Failed { error });
                return;
            }
        };
        let Some(pid) = child.id() else {
            let _ = state.send(ServerState::Failed {
                error: format!("{} exited at once", spec.name),
            });
            return;
        };
        let group = nix::unistd::Pid::from_raw(pid as i32);
        watchdog.watch(pid as i32);
        let (ready_tx, mut ready_rx) = watch::channel(false);
        let log_task = tokio::spawn(copy_output(
            child.stdout.take(),
            child.stderr.take(),
            spec.log.clone(),
            spec.ready_line,
            ready_tx,
        ));
        let mut was_ready = false;
        let exit = loop {
            tokio::select! {
                exit = child.wait() => break Some(exit),
                changed = ready_rx.changed(), if !was_ready => {
                    if changed.is_ok() && *ready_rx.borrow() {
                        was_ready = true;
                        delay = FIRST_RESTART_DELAY;
                        tracing::info!(server = %spec.name, port = spec.port, "ready");
                        let _ = state.send(ServerState::Running { pid });
                    }
                }
                () = stop.cancelled() => break None,
            }
        };
        let exit = match exit {
            Some(exit) => exit,
            None => {
                // Asked to stop: the server's own clean shutdown, then the whole group.
                let _ = nix::sys::signal::kill(group, spec.stop_signal);
                match tokio::time::timeout(STOP_GRACE, child.wait()).await {
                    Ok(_) => {}
                    Err(_) => {
                        tracing::warn!(server = %spec.name, "did not stop in time: killed");
                    }
                }
                let _ = nix::sys::signal::killpg(group, Signal::SIGKILL);
                let _ = child.wait().await;
                watchdog.forget(pid as i32);
                let _ = log_task.await;
                tracing::info!(server = %spec.name, "stopped");
                let _ = state.send(ServerState::Stopped);
                return;
            }
        };
        // It died by itself: whatever it left in its group goes too.
        let _ = nix::sys::signal::killpg(group, Signal::SIGKILL);
        watchdog.forget(pid as i32);
        let _ = log_task.await;
        // Its last words are read now: it may have said it was ready just before it died.
        was_ready |= *ready_rx.borrow();
        let described = match exit {
            Ok(status) => status.to_string(),
            Err(error) => error.to_string(),
        };
        if !was_ready && restarts.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            // It never came up: starting it again would fail the same way.
            let error = format!(
                "{} exited before it was ready ({described}){}",
                spec.name,
                log_tail(&spec.log)
            );
            tracing::warn!(server = %spec.name, %error, "cannot start");
            let _ = state.send(ServerState::Failed { error });
            return;
        }
        tracing::warn!(server = %spec.name, exit = %described, retry_in = ?delay, "died; starting it again");
        restarts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        on_restart(&spec.name, &described);
        let _ = state.send(ServerState::Restarting {
            last_exit: described,
        });
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => {
                let _ = state.send(ServerState::Stopped);
                return;
            }
        }
        delay = (delay * 2).min(Duration::from_secs(60));
    }
}

fn spawn(spec: &ServerSpec) -> Result<tokio::process::Child, String> {
    let mut command = tokio::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(run_as) = spec.run_as {
        command.uid(run_as.uid).gid(run_as.gid);
    }
    command
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", spec.program.display()))
}

/// Appends the server's output to its log and says when the ready line has been written.
async fn copy_output(
    stdout: Option<tokio::process::ChildStdout>,
    stderr: Option<tokio::process::ChildStderr>,
    log: PathBuf,
    ready_line: &'static str,
    ready: watch::Sender<bool>,
) {
    // Only its owner reads it: a server's log may quote a statement.
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&log)
    };
    let file = Arc::new(std::sync::Mutex::new(file.ok()));
    let ready = Arc::new(ready);
    let copy = |stream: Option<Box<dyn AsyncRead + Unpin + Send>>| {
        let file = file.clone();
        let ready = ready.clone();
        async move {
            let Some(stream) = stream else { return };
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(file) = file.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                    let _ = writeln!(file, "{line}");
                }
                if line.contains(ready_line) {
                    ready.send_replace(true);
                }
            }
        }
    };
    tokio::join!(
        copy(stdout.map(|s| Box::new(s) as Box<dyn AsyncRead + Unpin + Send>)),
        copy(stderr.map(|s| Box::new(s) as Box<dyn AsyncRead + Unpin + Send>)),
    );
}

/// What a log says went wrong, for an error message: its last lines that say error, fatal or
/// denied, or else its last lines (empty if there are none).
pub(crate) fn log_tail(log: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(log) else {
        return String::new();
    };
    // Never a line that quotes a statement with a password in it.
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !l.contains("PASSWORD") && !l.contains("IDENTIFIED BY"))
        .collect();
    let telling: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| {
            let lower = l.to_ascii_lowercase();
            ["error", "fatal", "denied", "panic"]
                .iter()
                .any(|word| lower.contains(word))
        })
        .collect();
    let (what, chosen) = if telling.is_empty() {
        ("ends", &lines[..])
    } else {
        ("says", &telling[..])
    };
    let tail = &chosen[chosen.len().saturating_sub(QUOTED_LINES)..];
    if tail.is_empty() {
        String::new()
    } else {
        format!(
            "; its log ({}) {what}:\n  {}",
            log.display(),
            tail.join("\n  ")
        )
    }
}

/// The one server a node shares between its services (PostgreSQL's, MariaDB's): started on
/// first use, started again on a later use if it failed or stopped, readable without waiting.
#[derive(Default)]
pub(crate) struct Shared {
    /// Held while the server is being started, so that two first uses start it once.
    starting: tokio::sync::Mutex<Option<Arc<Server>>>,
    /// The server as it is now, for readers that cannot wait (an app's environment).
    current: std::sync::Mutex<Option<Arc<Server>>>,
}

impl Shared {
    /// The server, ready: the one running, or a new one `start` makes.
    pub(crate) async fn running<F>(&self, start: F) -> Result<Arc<Server>, super::NodeError>
    where
        F: std::future::Future<Output = Result<Arc<Server>, super::NodeError>>,
    {
        let mut slot = self.starting.lock().await;
        let server = match slot.as_ref() {
            Some(server) if super::usable(server) => server.clone(),
            _ => {
                let server = start.await?;
                *slot = Some(server.clone());
                *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(server.clone());
                server
            }
        };
        drop(slot);
        server.ready().await.map_err(super::NodeError)?;
        Ok(server)
    }

    /// Its port, if it has been started.
    pub(crate) fn port(&self) -> Option<u16> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|s| s.spec.port)
    }

    /// The server, if it has been started (for `/_afemu/services`).
    pub(crate) fn servers(&self) -> Vec<Arc<Server>> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// A free loopback port: bind port 0, note it, let it go (as the DEA finds one for an app).
pub(crate) fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Whether `port` on loopback is free now.
pub(crate) fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// The port a server used last time (kept in `file`), if it is still free; otherwise a new one,
/// written there. A stable port keeps the credentials apps were given valid across restarts.
pub(crate) fn stable_port(file: &Path) -> std::io::Result<u16> {
    if let Ok(text) = std::fs::read_to_string(file)
        && let Ok(port) = text.trim().parse::<u16>()
        && port != 0
        && port_is_free(port)
    {
        return Ok(port);
    }
    let port = free_port()?;
    crate::atomic_file::write_atomically(file, format!("{port}\n").as_bytes())?;
    Ok(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path, script: &str, ready_line: &'static str) -> ServerSpec {
        ServerSpec {
            name: "test".into(),
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            dir: dir.to_path_buf(),
            env: Vec::new(),
            log: dir.join("server.log"),
            ready_line,
            stop_signal: Signal::SIGTERM,
            run_as: None,
            port: 0,
        }
    }

    fn no_restart_hook() -> OnRestart {
        Arc::new(|_: &str, _: &str| {})
    }

    #[tokio::test]
    async fn ready_when_the_server_says_so_and_stopped_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let watchdog = Arc::new(Watchdog::start());
        let server = Server::start(
            spec(
                dir.path(),
                "trap 'echo bye; exit 0' TERM; echo warming up; echo ready now; while :; do sleep 1; done",
                "ready now",
            ),
            watchdog.clone(),
            &shutdown,
            &tasks,
            no_restart_hook(),
        );
        server.ready().await.unwrap();
        assert!(matches!(server.state(), ServerState::Running { .. }));
        server.stop().await;
        assert_eq!(server.state(), ServerState::Stopped);
        let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
        assert!(log.contains("warming up"), "{log}");
        watchdog.stop();
    }

    #[tokio::test]
    async fn a_server_that_never_comes_up_fails_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let watchdog = Arc::new(Watchdog::start());
        let server = Server::start(
            spec(
                dir.path(),
                "echo 'FATAL: no such thing' >&2; exit 3",
                "ready",
            ),
            watchdog.clone(),
            &shutdown,
            &tasks,
            no_restart_hook(),
        );
        let error = server.ready().await.unwrap_err();
        assert!(error.contains("exited before it was ready"), "{error}");
        assert!(error.contains("FATAL: no such thing"), "{error}");
        watchdog.stop();
    }

    #[tokio::test]
    async fn a_server_that_dies_is_started_again() {
        let dir = tempfile::tempdir().unwrap();
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let watchdog = Arc::new(Watchdog::start());
        // The first run dies after becoming ready; the second stays up.
        let marker = dir.path().join("ran-once");
        let script = format!(
            "echo ready; if [ -e {m} ]; then while :; do sleep 1; done; else touch {m}; exit 1; fi",
            m = marker.display()
        );
        let (said, mut heard) = tokio::sync::mpsc::unbounded_channel();
        let hook: OnRestart = Arc::new(move |name: &str, exit: &str| {
            let _ = said.send(format!("{name}: {exit}"));
        });
        let server = Server::start(
            spec(dir.path(), &script, "ready"),
            watchdog.clone(),
            &shutdown,
            &tasks,
            hook,
        );
        let restart = heard.recv().await.unwrap();
        assert!(restart.starts_with("test: "), "{restart}");
        server.ready().await.unwrap();
        assert_eq!(server.restarts(), 1);
        shutdown.cancel();
        server.stop().await;
        watchdog.stop();
    }
}
