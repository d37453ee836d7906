//! `$ COMMAND` lines (and `afemu rehearse --exec`): the deploy script a team actually runs,
//! rehearsed unchanged. The command runs under `/bin/sh -c` in a process group of its own, with
//! `HOME` the rehearsal's scratch home (where `af` is already targeted at the emulator and logged
//! in) and an `af` first on its `PATH` that records each invocation: that `af` is the afemu
//! executable itself (a symbolic link named `af`), which tells the rehearsal over a Unix socket
//! when an invocation starts (and waits for the word to go, so the start is on the rehearsal's
//! clock before anything is sent), runs the real client — afemu's own `af`, or the one given
//! with `--af`, such as AppFog's af 0.3.22 — with the same arguments, standard input and output,
//! and reports how it ended and what it printed. The report is therefore the same whichever
//! client runs.
//!
//! A command that runs too long is stopped (`--timeout`); one that ends leaving processes of its
//! own behind (background jobs) fails, and they are stopped: no process outlives the rehearsal.

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// The rehearsal's socket, in the environment of the command (and so of its `af`).
pub const SOCKET_VAR: &str = "AFEMU_REHEARSE_SOCKET";
/// A mark in the environment of everything a command starts, unique to the run: how what it
/// left behind is found even when it left the command's process group (`setsid`, a daemon).
pub const RUN_VAR: &str = "AFEMU_REHEARSE_RUN";
/// The client the recording `af` runs (`--af`); unset: afemu's own.
pub const CLIENT_VAR: &str = "AFEMU_REHEARSE_AF";
/// The rehearsal's API, its user and password: `af target URL` and `af login …` in a command
/// are pinned to them, so a deploy script that targets the real platform first cannot reach it.
pub const TARGET_VAR: &str = "AFEMU_REHEARSE_TARGET";
pub const EMAIL_VAR: &str = "AFEMU_REHEARSE_EMAIL";
pub const PASSWORD_VAR: &str = "AFEMU_REHEARSE_PASSWORD";
/// How much of a command's (or an invocation's) output the report keeps.
const OUTPUT_KEPT: usize = 256 * 1024;
/// The longest message on the socket (an invocation's arguments and output).
const MESSAGE_LIMIT: u64 = 4 * 1024 * 1024;
/// How long a command gets to end after SIGTERM before its group is killed.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// How `$` lines run.
#[derive(Clone, Debug)]
pub struct ExecOptions {
    /// The afemu executable, linked as `af` on the command's `PATH` to record each invocation.
    /// Without it a runbook with `$` lines cannot be rehearsed.
    pub wrapper: Option<PathBuf>,
    /// The client each invocation runs (`--af`); `None`: afemu's own `af`.
    pub client: Option<PathBuf>,
    /// How long one command may run before it is stopped.
    pub timeout: Duration,
}

impl Default for ExecOptions {
    fn default() -> ExecOptions {
        ExecOptions {
            wrapper: None,
            client: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// How long a command may run by default: generous, a deploy script waits for apps to start.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Where the rehearsal's `af` is targeted and logged in: what a command's own `af target` and
/// `af login` are pinned to.
#[derive(Clone, Debug)]
pub struct Login {
    pub target: String,
    pub email: String,
    pub password: String,
}

/// One `af` invocation a command made.
#[derive(Clone, Debug)]
pub struct Invocation {
    /// The arguments, without `af`, as the command gave them.
    pub args: Vec<String>,
    /// An `af target URL` or `af login …` that was run against the rehearsal's emulator instead.
    pub pinned: bool,
    /// Where it ran (relative paths in it are relative to this).
    pub cwd: PathBuf,
    /// From the start of the rehearsal.
    pub started: Duration,
    pub ended: Option<Duration>,
    /// Its exit status (128 + the signal when one killed it); `None` if it never said.
    pub status: Option<i32>,
    pub output: String,
}

impl Invocation {
    /// `af map example2 example.com`, quoted as a shell would need it, with passwords hidden.
    pub fn text(&self) -> String {
        af_line(&self.args)
    }

    /// `ok`, `exit N`, or why it has no status.
    pub fn result(&self) -> String {
        let result = match self.status {
            Some(0) => "ok".into(),
            Some(status) => format!("exit {status}"),
            None => "did not finish (stopped with the command)".into(),
        };
        if self.pinned {
            format!("{result} (pinned to the rehearsal's emulator)")
        } else {
            result
        }
    }
}

/// A command as it ran.
#[derive(Debug)]
pub struct Finished {
    /// `ok`, or `failed …` with why.
    pub result: String,
    /// What it printed (stdout and stderr, interleaved as written).
    pub output: String,
    /// Each `af` it ran, in the order they started.
    pub invocations: Vec<Invocation>,
}

/// `af` and its arguments as a shell line, with the value of a password option hidden (reports
/// and recorded runbooks are shared; a deploy script's `af login --passwd …` is a secret).
pub fn af_line(args: &[String]) -> String {
    let mut words = vec!["af".to_owned()];
    let mut hide_next = false;
    for arg in args {
        if hide_next {
            words.push("********".into());
            hide_next = false;
            continue;
        }
        let option = arg.split('=').next().unwrap_or_default();
        let secret = matches!(option, "--passwd" | "--password" | "--pass");
        if secret && arg.contains('=') {
            words.push(format!("{option}=********"));
        } else {
            hide_next = secret;
            words.push(shell_quote(arg));
        }
    }
    words.join(" ")
}

/// A word as a POSIX shell reads it back: as it is when it is plain, else single-quoted.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'_' | b'.' | b'/' | b':' | b'=' | b',' | b'@' | b'+' | b'%'
                )
        });
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[derive(Serialize, Deserialize)]
struct StartMessage {
    argv: Vec<String>,
    cwd: PathBuf,
    #[serde(default)]
    pinned: bool,
}

#[derive(Serialize, Deserialize)]
struct EndMessage {
    status: i32,
    output: String,
}

enum Event {
    Start {
        id: usize,
        args: Vec<String>,
        cwd: PathBuf,
        pinned: bool,
        at: Duration,
    },
    End {
        id: usize,
        status: i32,
        output: String,
        at: Duration,
    },
    Lost {
        id: usize,
    },
}

/// Runs `command` in `dir` with `home` as its `HOME`; `started` is the rehearsal's start.
pub async fn run(
    command: &str,
    dir: &Path,
    home: &Path,
    login: &Login,
    options: &ExecOptions,
    started: Instant,
) -> Result<Finished, String> {
    let wrapper = options.wrapper.as_ref().ok_or_else(|| {
        "a `$` line needs the afemu executable to record the af commands it runs (afemu \
         rehearse provides it)"
            .to_owned()
    })?;
    let scratch = home.join(".afemu-rehearse");
    let bin = scratch.join("bin");
    std::fs::create_dir_all(&bin).map_err(|e| format!("cannot make {}: {e}", bin.display()))?;
    let af = bin.join("af");
    let _ = std::fs::remove_file(&af);
    std::os::unix::fs::symlink(wrapper, &af)
        .map_err(|e| format!("cannot link {} as {}: {e}", wrapper.display(), af.display()))?;
    if let Some(client) = &options.client
        && !is_executable(client)
    {
        return Err(format!("--af {}: not an executable file", client.display()));
    }
    // A socket's path has at most 107 bytes: under a long TMPDIR it goes in a private directory
    // of its own in /tmp instead (removed with `_short`).
    let mut socket = scratch.join("af.sock");
    let _short = if socket.as_os_str().len() > 100 {
        let short = tempfile::Builder::new()
            .prefix("afemu-af-")
            .tempdir_in("/tmp")
            .map_err(|e| format!("cannot make a directory for the socket in /tmp: {e}"))?;
        socket = short.path().join("af.sock");
        Some(short)
    } else {
        None
    };
    let _ = std::fs::remove_file(&socket);
    let listener = tokio::net::UnixListener::bind(&socket)
        .map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
    let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
    let accepting = tokio::spawn(accept(listener, events, started));

    let path = std::env::join_paths(std::iter::once(bin.clone()).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .map_err(|e| format!("cannot put {} on PATH: {e}", bin.display()))?;
    let (reader, writer) = std::io::pipe().map_err(|e| format!("cannot make a pipe: {e}"))?;
    let run_id = crate::clock::random_hex(16);
    let mark = format!("{RUN_VAR}={run_id}");
    let mut shell = tokio::process::Command::new("/bin/sh");
    shell
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .env("HOME", home)
        .env("PATH", path)
        .env(SOCKET_VAR, &socket)
        .env(RUN_VAR, &run_id)
        .env(TARGET_VAR, &login.target)
        .env(EMAIL_VAR, &login.email)
        .env(PASSWORD_VAR, &login.password)
        // afemu's own af prefers AF_HOME to HOME: the scratch home must win.
        .env_remove("AF_HOME")
        .stdin(std::process::Stdio::null())
        .stdout(
            writer
                .try_clone()
                .map_err(|e| format!("cannot make a pipe: {e}"))?,
        )
        .stderr(writer)
        .process_group(0)
        .kill_on_drop(true);
    match &options.client {
        Some(client) => shell.env(CLIENT_VAR, client),
        None => shell.env_remove(CLIENT_VAR),
    };
    let spawned = shell.spawn();
    // The pipe's write ends are the child's now: the output ends when the command's group does.
    drop(shell);
    let mut child = spawned.map_err(|e| format!("cannot run /bin/sh: {e}"))?;
    let group = Group {
        pgid: child.id().map(|pid| pid as i32),
        mark: mark.clone(),
    };
    let output = Arc::new(Mutex::new(Output::default()));
    let reading = tokio::spawn(read_output(reader, output.clone()));

    let mut tracker = Tracker::default();
    let deadline = tokio::time::Instant::now() + options.timeout;
    let ended = loop {
        tokio::select! {
            status = child.wait() => break Ended::Exited(status),
            Some(event) = received.recv() => tracker.apply(event),
            () = tokio::time::sleep_until(deadline) => break Ended::TimedOut,
        }
    };
    let timed_out = matches!(ended, Ended::TimedOut);
    let mut result = match ended {
        Ended::Exited(Ok(status)) if status.success() => "ok".to_owned(),
        Ended::Exited(Ok(status)) => match (status.code(), status_signal(&status)) {
            (Some(code), _) => format!("failed (exit {code})"),
            (None, Some(signal)) => format!("failed (killed by signal {signal})"),
            (None, None) => format!("failed ({status})"),
        },
        Ended::Exited(Err(error)) => format!("failed: {error}"),
        Ended::TimedOut => {
            group.signal(nix::sys::signal::Signal::SIGTERM);
            if tokio::time::timeout(STOP_GRACE, child.wait())
                .await
                .is_err()
            {
                group.signal(nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait().await;
            }
            format!(
                "failed: still running after {} (--timeout), so it was stopped",
                humantime::format_duration(options.timeout)
            )
        }
    };
    // What it left running (its background jobs, daemons) fails it, and is stopped. (After a
    // timeout everything is being stopped anyway.)
    if !timed_out {
        let left: Vec<String> = group
            .members()
            .into_iter()
            .map(|(pid, name)| format!("{pid} {name}"))
            .collect();
        if !left.is_empty() {
            group.signal(nix::sys::signal::Signal::SIGKILL);
            let listed = left.join(", ");
            let why = format!(
                "it left {} running when it ended ({listed}); they were stopped",
                if left.len() == 1 {
                    "1 process".to_owned()
                } else {
                    format!("{} processes", left.len())
                }
            );
            result = if result == "ok" {
                format!("failed: {why}")
            } else {
                format!("{result}; {why}")
            };
        }
    }
    drop(group);
    // The last words of invocations that were under way: each ends, or its connection drops.
    let settle = tokio::time::Instant::now() + STOP_GRACE;
    while tracker.under_way() {
        match tokio::time::timeout_at(settle, received.recv()).await {
            Ok(Some(event)) => tracker.apply(event),
            _ => break,
        }
    }
    while let Ok(event) = received.try_recv() {
        tracker.apply(event);
    }
    accepting.abort();
    let _ = std::fs::remove_file(&socket);
    // The output ends when the last writer is gone; a process that escaped the group could keep
    // it open, so it is not waited for long.
    let _ = tokio::time::timeout(STOP_GRACE, reading).await;
    let output = output.lock().unwrap_or_else(|e| e.into_inner()).text();
    Ok(Finished {
        result,
        output,
        invocations: tracker.invocations,
    })
}

/// The invocations as their events arrive.
#[derive(Default)]
struct Tracker {
    invocations: Vec<Invocation>,
    /// The conversation's id of each invocation.
    ids: Vec<usize>,
    /// Invocations whose conversation ended without an end.
    lost: Vec<usize>,
}

impl Tracker {
    fn apply(&mut self, event: Event) {
        match event {
            Event::Start {
                id,
                args,
                cwd,
                pinned,
                at,
            } => {
                self.ids.push(id);
                self.invocations.push(Invocation {
                    args,
                    pinned,
                    cwd,
                    started: at,
                    ended: None,
                    status: None,
                    output: String::new(),
                });
            }
            Event::End {
                id,
                status,
                output,
                at,
            } => {
                if let Some(index) = self.ids.iter().position(|i| *i == id) {
                    let invocation = &mut self.invocations[index];
                    invocation.ended = Some(at);
                    invocation.status = Some(status);
                    invocation.output = output;
                }
            }
            Event::Lost { id } => self.lost.push(id),
        }
    }

    /// Whether an invocation has neither ended nor lost its conversation.
    fn under_way(&self) -> bool {
        self.ids
            .iter()
            .zip(&self.invocations)
            .any(|(id, i)| i.ended.is_none() && !self.lost.contains(id))
    }
}

enum Ended {
    Exited(std::io::Result<std::process::ExitStatus>),
    TimedOut,
}

fn status_signal(status: &std::process::ExitStatus) -> Option<String> {
    use std::os::unix::process::ExitStatusExt;
    status.signal().map(|n| {
        nix::sys::signal::Signal::try_from(n).map_or_else(|_| n.to_string(), |s| s.to_string())
    })
}

/// What a command started: its process group, and every process with its mark in the
/// environment (those that left the group). Killed whole when the rehearsal lets go of it.
struct Group {
    pgid: Option<i32>,
    mark: String,
}

impl Group {
    fn signal(&self, signal: nix::sys::signal::Signal) {
        if let Some(pgid) = self.pgid {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), signal);
        }
        for (pid, _) in self.members() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
    }

    /// The processes still alive of the command: in its group, or marked.
    fn members(&self) -> Vec<(i32, String)> {
        crate::procs::members(self.pgid, &self.mark)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Output kept up to [`OUTPUT_KEPT`].
#[derive(Default)]
struct Output {
    bytes: Vec<u8>,
    dropped: usize,
}

impl Output {
    fn push(&mut self, chunk: &[u8]) {
        let room = OUTPUT_KEPT.saturating_sub(self.bytes.len());
        let kept = chunk.len().min(room);
        self.bytes.extend_from_slice(&chunk[..kept]);
        self.dropped += chunk.len() - kept;
    }

    fn text(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.bytes).into_owned();
        if self.dropped > 0 {
            text.push_str(&format!("\n[… {} more bytes not kept]\n", self.dropped));
        }
        text
    }
}

async fn read_output(reader: std::io::PipeReader, output: Arc<Mutex<Output>>) {
    let Ok(mut pipe) =
        tokio::net::unix::pipe::Receiver::from_owned_fd(std::os::fd::OwnedFd::from(reader))
    else {
        return;
    };
    let mut buffer = vec![0u8; 16 * 1024];
    while let Ok(n @ 1..) = pipe.read(&mut buffer).await {
        output
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(&buffer[..n]);
    }
}

async fn accept(
    listener: tokio::net::UnixListener,
    events: tokio::sync::mpsc::UnboundedSender<Event>,
    started: Instant,
) {
    let next = Arc::new(AtomicUsize::new(0));
    while let Ok((stream, _)) = listener.accept().await {
        let id = next.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(converse(stream, id, events.clone(), started));
    }
}

/// One invocation's conversation: its start (answered `go` once recorded), then its end.
async fn converse(
    stream: tokio::net::UnixStream,
    id: usize,
    events: tokio::sync::mpsc::UnboundedSender<Event>,
    started: Instant,
) {
    let (read, mut write) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(read.take(MESSAGE_LIMIT));
    let mut line = String::new();
    if !matches!(lines.read_line(&mut line).await, Ok(1..)) {
        return;
    }
    let Ok(start) = serde_json::from_str::<StartMessage>(&line) else {
        return;
    };
    let _ = events.send(Event::Start {
        id,
        args: start.argv,
        cwd: start.cwd,
        pinned: start.pinned,
        at: started.elapsed(),
    });
    if write.write_all(b"go\n").await.is_err() {
        let _ = events.send(Event::Lost { id });
        return;
    }
    line.clear();
    let end = match lines.read_line(&mut line).await {
        Ok(1..) => serde_json::from_str::<EndMessage>(&line).ok(),
        _ => None,
    };
    match end {
        Some(end) => {
            let _ = events.send(Event::End {
                id,
                status: end.status,
                output: end.output,
                at: started.elapsed(),
            });
            let _ = write.write_all(b"ok\n").await;
        }
        None => {
            let _ = events.send(Event::Lost { id });
        }
    }
}

/// `af` as the afemu executable runs it when called by that name: with the rehearsal's socket
/// in the environment, the recording wrapper; otherwise afemu's own `af`.
pub fn af_main() -> ExitCode {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let status = match std::env::var_os(SOCKET_VAR) {
        Some(socket) => recorded(Path::new(&socket), &args),
        None => afemu_cli::run_process(&args),
    };
    ExitCode::from((status & 0xff) as u8)
}

/// The recording wrapper: says the invocation starts, runs the client, says how it ended.
fn recorded(socket: &Path, args: &[String]) -> i32 {
    let said = |message: String| {
        eprintln!("af (recorded by afemu rehearse): {message}");
        1
    };
    let mut stream = match std::os::unix::net::UnixStream::connect(socket) {
        Ok(stream) => stream,
        Err(error) => {
            return said(format!(
                "cannot reach the rehearsal at {}: {error}",
                socket.display()
            ));
        }
    };
    // The rehearsal answers at once; a socket that does not is not a rehearsal's.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let (run_args, pinned) = pinned(args);
    let start = StartMessage {
        argv: args.to_vec(),
        cwd: std::env::current_dir().unwrap_or_default(),
        pinned,
    };
    let mut reader = match stream.try_clone() {
        Ok(clone) => std::io::BufReader::new(clone),
        Err(error) => return said(error.to_string()),
    };
    let mut answer = String::new();
    let sent = serde_json::to_string(&start)
        .map_err(std::io::Error::other)
        .and_then(|json| writeln!(stream, "{json}"))
        .and_then(|()| reader.read_line(&mut answer));
    if !matches!(sent, Ok(1..)) || answer.trim() != "go" {
        return said("the rehearsal did not answer".into());
    }
    let mut client = match std::env::var_os(CLIENT_VAR) {
        Some(client) => std::process::Command::new(client),
        None => match std::env::current_exe() {
            Ok(exe) => {
                use std::os::unix::process::CommandExt;
                let mut command = std::process::Command::new(exe);
                command.arg0("af");
                command
            }
            Err(error) => return said(format!("cannot find afemu's own af: {error}")),
        },
    };
    client
        .args(&run_args)
        .env_remove(SOCKET_VAR)
        .env_remove(CLIENT_VAR)
        .env_remove(TARGET_VAR)
        .env_remove(EMAIL_VAR)
        .env_remove(PASSWORD_VAR)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let (status, output) = match client.spawn() {
        Ok(mut child) => {
            let kept = Arc::new(Mutex::new(Output::default()));
            let tees = [
                child
                    .stdout
                    .take()
                    .map(|out| tee(out, std::io::stdout(), kept.clone())),
                child
                    .stderr
                    .take()
                    .map(|err| tee(err, std::io::stderr(), kept.clone())),
            ];
            let status = child.wait();
            for tee in tees.into_iter().flatten() {
                let _ = tee.join();
            }
            let status = match status {
                Ok(status) => {
                    use std::os::unix::process::ExitStatusExt;
                    status
                        .code()
                        .or_else(|| status.signal().map(|s| 128 + s))
                        .unwrap_or(1)
                }
                Err(error) => {
                    eprintln!("af (recorded by afemu rehearse): {error}");
                    1
                }
            };
            let output = kept.lock().unwrap_or_else(|e| e.into_inner()).text();
            (status, output)
        }
        Err(error) => {
            let message = format!("cannot run {}: {error}", client.get_program().display());
            eprintln!("af (recorded by afemu rehearse): {message}");
            (127, message)
        }
    };
    let end = EndMessage { status, output };
    if let Ok(json) = serde_json::to_string(&end)
        && writeln!(stream, "{json}").is_ok()
    {
        answer.clear();
        let _ = reader.read_line(&mut answer);
    }
    status
}

/// The arguments the client runs with: `af target URL` and `af login …` pinned to the
/// rehearsal's emulator and user (from the environment the rehearsal gave the command), and
/// whether they were.
fn pinned(args: &[String]) -> (Vec<String>, bool) {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (Some(target), Some(email), Some(password)) =
        (var(TARGET_VAR), var(EMAIL_VAR), var(PASSWORD_VAR))
    else {
        return (args.to_vec(), false);
    };
    match afemu_cli::parse_command(args).map(|command| command.action) {
        Ok("set_target") => (vec!["target".into(), target], true),
        Ok("login") => (
            vec![
                "login".into(),
                "--email".into(),
                email,
                "--passwd".into(),
                password,
            ],
            true,
        ),
        _ => (args.to_vec(), false),
    }
}

/// Copies a child's output to ours as it comes, keeping a copy.
fn tee(
    mut from: impl Read + Send + 'static,
    mut to: impl Write + Send + 'static,
    kept: Arc<Mutex<Output>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 8192];
        while let Ok(n @ 1..) = from.read(&mut buffer) {
            let _ = to.write_all(&buffer[..n]);
            let _ = to.flush();
            kept.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(&buffer[..n]);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_in_command_lines() {
        let line = |args: &[&str]| af_line(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>());
        assert_eq!(
            line(&["login", "ops@corp.com", "--passwd", "s3cret"]),
            "af login ops@corp.com --passwd ********"
        );
        assert_eq!(
            line(&["login", "--password=s3cret"]),
            "af login --password=********"
        );
        assert_eq!(line(&["map", "a", "b.com"]), "af map a b.com");
    }

    #[test]
    fn words_are_quoted_as_a_shell_reads_them_back() {
        assert_eq!(shell_quote("example.com"), "example.com");
        assert_eq!(shell_quote("--url=a.com"), "--url=a.com");
        assert_eq!(shell_quote("two words"), "'two words'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }

    #[test]
    fn kept_output_is_bounded() {
        let mut output = Output::default();
        output.push(&vec![b'a'; OUTPUT_KEPT + 10]);
        output.push(b"more");
        let text = output.text();
        assert!(text.starts_with("aaa"));
        assert!(
            text.ends_with("[… 14 more bytes not kept]\n"),
            "{}",
            &text[text.len() - 40..]
        );
    }
}
