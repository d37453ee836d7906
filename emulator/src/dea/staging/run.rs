//! Running a staging tool (npm, Bundler, pip, javac…) as v1's stager ran its plugins' commands:
//! in the droplet's `app/`, with its output kept in the staging log, bounded by the staging
//! timeout (v1: `max_staging_runtime`, 120 s), in a process group of its own so nothing it
//! started outlives it, and confined so that it writes nowhere but the droplet, its scratch
//! `TMPDIR` and the staging caches (Landlock, where the kernel has it).

use std::fs;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::watchdog::Watchdog;

/// How a staging tool's run ended.
enum Ended {
    Exited(std::io::Result<std::process::ExitStatus>),
    TimedOut,
    ShuttingDown,
}

/// The variable that marks every process a staging tool starts.
const STAGING_MARK: &str = "AFEMU_STAGING_RUN";

/// What a staging may use beyond the droplet: its time limit, its caches, and the hooks that end
/// its tools when afemu stops or dies.
#[derive(Clone)]
pub(crate) struct StagingEnv {
    /// How long the whole staging may take (v1: 120 s).
    pub(crate) timeout: Duration,
    /// Where package managers keep their caches (`npm/`, `pip/`, `bundler/`), shared by stagings.
    pub(crate) cache: PathBuf,
    pub(crate) watchdog: Arc<Watchdog>,
    pub(crate) shutdown: CancellationToken,
}

/// One staging in progress: the droplet being made, its log, its deadline.
pub(crate) struct Staging {
    pub(crate) droplet_dir: PathBuf,
    pub(crate) app_dir: PathBuf,
    log: Option<fs::File>,
    started: Instant,
    env: StagingEnv,
    /// The tools' `TMPDIR`, inside the droplet and removed when staging ends.
    tmp: PathBuf,
}

impl Staging {
    pub(crate) fn new(droplet_dir: &Path, env: StagingEnv) -> Result<Staging, String> {
        let log_path = droplet_dir.join("staging.log");
        // Read back through this handle too (a failure's reason): the path is in the droplet,
        // where a tool may put a FIFO or a link in the log's place.
        let log = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log_path)
            .map_err(|e| format!("cannot create the staging log: {e}"))?;
        Ok(Staging {
            droplet_dir: droplet_dir.to_path_buf(),
            app_dir: droplet_dir.join("app"),
            log: Some(log),
            started: Instant::now(),
            env,
            tmp: droplet_dir.join(".tmp"),
        })
    }

    /// A line for people in the staging log (v1's `-----> …` lines).
    pub(crate) fn say(&mut self, line: &str) {
        if let Some(file) = &mut self.log {
            let _ = writeln!(file, "{line}");
        }
        tracing::debug!(target: "afemu::staging", "{line}");
    }

    /// A staging cache's directory (`npm`, `pip`, …), created if needed.
    pub(crate) fn cache(&self, name: &str) -> Result<PathBuf, String> {
        let dir = self.env.cache.join(name);
        fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create the staging cache {}: {e}", dir.display()))?;
        Ok(dir)
    }

    /// The path of a program the staging needs, or an error that names it and why it is needed.
    pub(crate) fn need(&self, program: &str, why: &str) -> Result<PathBuf, String> {
        find_program(program)
            .ok_or_else(|| format!("{why} needs {program}, which is not installed on this machine"))
    }

    /// The time left before the staging timeout.
    fn left(&self) -> Duration {
        self.env.timeout.saturating_sub(self.started.elapsed())
    }

    /// Runs `program args…` in `cwd` (the app directory unless given) with the machine's
    /// environment plus `env`, its output appended to the staging log. An error is `what` failed
    /// with the first useful line of the output, or the timeout.
    pub(crate) async fn run(
        &mut self,
        what: &str,
        program: &Path,
        args: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
        cwd: Option<&Path>,
    ) -> Result<(), String> {
        let shown = std::iter::once(
            program
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        )
        .chain(args.iter().map(|a| a.to_string()))
        .collect::<Vec<_>>()
        .join(" ");
        self.say(&format!("-----> {what}: {shown}"));
        tracing::info!(target: "afemu::staging", app_dir = %self.app_dir.display(), "{what}: {shown}");
        fs::create_dir_all(&self.tmp).map_err(|e| format!("cannot create TMPDIR: {e}"))?;
        let log = self
            .log
            .as_mut()
            .ok_or_else(|| "no staging log".to_owned())?;
        let _ = log.flush();
        let offset = log.stream_position().unwrap_or(0);
        let kept = log.try_clone().map_err(|e| e.to_string())?;
        // The output goes through a pipe of ours into the log, so that the log has a limit.
        let (output, stdout) =
            std::io::pipe().map_err(|e| format!("{what}: no pipe for its output: {e}"))?;
        let stderr = stdout.try_clone().map_err(|e| e.to_string())?;

        // Everything the tool starts carries this mark, so that what leaves its process group
        // (`setsid`, a daemon) is found and ended with it.
        let mark_value = crate::clock::random_hex(16);
        let mark = format!("{STAGING_MARK}={mark_value}");
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .current_dir(cwd.unwrap_or(&self.app_dir))
            .env("TMPDIR", &self.tmp)
            .env(STAGING_MARK, &mark_value)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            .process_group(0)
            .kill_on_drop(true);
        let writable = vec![self.droplet_dir.clone(), self.env.cache.clone()];
        // The command (and with it our copies of the pipe's writing end) is gone once spawned.
        let mut child = spawn_confined(command, writable)
            .map_err(|e| format!("{what}: cannot run {shown}: {e}"))?;
        let group = child.id().map(|pid| pid as i32);
        if let Some(group) = group {
            self.env.watchdog.watch(group);
        }
        let ended = CancellationToken::new();
        let copier = match tokio::net::unix::pipe::Receiver::from_owned_fd(output.into()) {
            Ok(output) => Some(tokio::spawn(keep_output(
                output,
                kept,
                LOG_LIMIT.saturating_sub(offset),
                ended.clone(),
            ))),
            Err(error) => {
                tracing::warn!(target: "afemu::staging", %error, "the tool's output cannot be read");
                None
            }
        };
        let limit = self.left();
        let ended_by = tokio::select! {
            status = child.wait() => Ended::Exited(status),
            () = tokio::time::sleep(limit) => Ended::TimedOut,
            () = self.env.shutdown.cancelled() => Ended::ShuttingDown,
        };
        // Whatever the tool left running, in its group or not, goes with it.
        crate::procs::kill_all(group, &mark);
        if !matches!(ended_by, Ended::Exited(_)) {
            let _ = child.wait().await;
        }
        if let Some(group) = group {
            self.env.watchdog.forget(group);
        }
        // What the tool wrote is in the log before anything else is.
        ended.cancel();
        if let Some(copier) = copier {
            let _ = copier.await;
        }
        match ended_by {
            Ended::ShuttingDown => Err("afemu is shutting down".into()),
            Ended::TimedOut => {
                let error = format!(
                    "{what} did not finish within the staging timeout ({})",
                    humantime::format_duration(self.env.timeout)
                );
                self.say(&format!("-----> {error}"));
                Err(error)
            }
            Ended::Exited(Err(error)) => Err(format!("{what}: {error}")),
            Ended::Exited(Ok(status)) if status.success() => Ok(()),
            Ended::Exited(Ok(status)) => {
                let output = self.output_since(offset);
                let reason = first_useful_line(&output)
                    .map(|line| format!(": {line}"))
                    .unwrap_or_default();
                let code = status
                    .code()
                    .map(|c| format!("exit status {c}"))
                    .unwrap_or_else(|| status.to_string());
                Err(format!("{what} failed ({code}){reason}"))
            }
        }
    }

    /// What the log holds from `offset` on, at most its first 256 KiB (which hold the cause),
    /// read from the log's own handle; bytes that are not UTF-8 (a cut character, a compiler's
    /// Latin-1) do not lose the rest.
    fn output_since(&self, offset: u64) -> String {
        use std::os::unix::fs::FileExt;
        let Some(file) = &self.log else {
            return String::new();
        };
        let mut bytes = vec![0; 256 * 1024];
        let mut filled = 0;
        while filled < bytes.len() {
            match file.read_at(&mut bytes[filled..], offset + filled as u64) {
                Ok(0) | Err(_) => break,
                Ok(n) => filled += n,
            }
        }
        bytes.truncate(filled);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Ends the staging: the scratch `TMPDIR` goes.
    pub(crate) fn finish(&mut self) {
        let _ = fs::remove_dir_all(&self.tmp);
        if let Some(log) = &mut self.log {
            let _ = log.flush();
        }
    }
}

/// How large a staging log grows: what the tools write past it is read and dropped. Enough for
/// any real install's output; a tool that prints without end (a build stuck in a loop of
/// warnings, `yes`) would otherwise fill the disk within the staging timeout, and the log is
/// copied twice more (kept for the app, and into each instance).
const LOG_LIMIT: u64 = 32 * 1024 * 1024;

/// Appends what a tool writes to the log, `room` bytes of it at most (then a line that says the
/// rest is not kept; the rest is read and dropped, so the tool never blocks on a full pipe),
/// until the pipe ends or `ended` is cancelled. After `ended`, what the pipe still holds is
/// taken without waiting for more: a process that left the tool's process group may keep the
/// pipe open (and full) for ever.
async fn keep_output(
    mut pipe: tokio::net::unix::pipe::Receiver,
    mut log: fs::File,
    mut room: u64,
    ended: CancellationToken,
) {
    use tokio::io::AsyncReadExt;
    let mut buffer = vec![0; 64 * 1024];
    let mut full = false;
    let mut keep = |bytes: &[u8]| {
        let take = bytes.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let _ = log.write_all(&bytes[..take]);
        room -= take as u64;
        if take < bytes.len() && !full {
            full = true;
            let _ = writeln!(
                log,
                "\n-----> The staging log is full ({} MiB): the rest of the output is not kept",
                LOG_LIMIT / (1024 * 1024)
            );
        }
    };
    loop {
        tokio::select! {
            read = pipe.read(&mut buffer) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => keep(&buffer[..n]),
            },
            () = ended.cancelled() => break,
        }
    }
    // A pipe holds 64 KiB (1 MiB if a tool asked for more); an escaped writer is not waited for.
    for _ in 0..64 {
        match pipe.try_read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => keep(&buffer[..n]),
        }
    }
}

/// Spawns the command from a thread of its own that first confines itself with Landlock to
/// writing beneath `writable` (a thread's Landlock domain is inherited by the processes it
/// starts, and afemu's other threads stay free). Where the kernel has no Landlock the command
/// runs unconfined, and that is logged once.
fn spawn_confined(
    mut command: tokio::process::Command,
    writable: Vec<PathBuf>,
) -> std::io::Result<tokio::process::Child> {
    let runtime = tokio::runtime::Handle::current();
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                let _entered = runtime.enter();
                confine(&writable)?;
                command.spawn()
            })
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the staging thread panicked")))
    })
}

fn confine(writable: &[PathBuf]) -> std::io::Result<()> {
    if !restrict(writable)? {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            tracing::warn!(
                "this kernel has no Landlock: staging tools are not kept from writing outside the droplet"
            );
        });
    }
    Ok(())
}

/// The device files a staging tool may write: the harmless ones (`/dev/null` above all), the
/// terminal and shared-memory ones. Not the rest of `/dev`: a tool running as root could
/// otherwise write a disk (`/dev/sda`) or the kernel log.
const WRITABLE_DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts",
    "/dev/shm",
];

/// Restricts the calling thread (and what it starts) to writing beneath `writable` and the
/// devices of [`WRITABLE_DEVICES`], making no device node anywhere (a root tool could `mknod` a
/// disk inside the droplet and write it there), and, where the kernel can (Landlock ABI 6, Linux
/// 6.12), to signalling only processes of its own sandbox (a `postinstall` cannot kill afemu or
/// another app) and connecting to no abstract Unix socket made outside it; false when the kernel
/// enforces nothing.
fn restrict(writable: &[PathBuf]) -> std::io::Result<bool> {
    use landlock::{
        ABI, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
        path_beneath_rules,
    };
    let abi = ABI::V3;
    let allowed = AccessFs::from_write(abi) & !(AccessFs::MakeChar | AccessFs::MakeBlock);
    let status = Ruleset::default()
        .handle_access(AccessFs::from_write(abi))
        .and_then(|ruleset| ruleset.scope(Scope::from_all(ABI::V6)))
        .and_then(|ruleset| ruleset.create())
        .and_then(|ruleset| ruleset.add_rules(path_beneath_rules(writable, allowed)))
        .and_then(|ruleset| ruleset.add_rules(path_beneath_rules(WRITABLE_DEVICES, allowed)))
        .and_then(|ruleset| ruleset.restrict_self())
        .map_err(std::io::Error::other)?;
    Ok(status.ruleset != RulesetStatus::NotEnforced)
}

/// Whether staging tools are confined on this machine (the kernel has Landlock): tried on a
/// throwaway thread.
pub(crate) fn confinement_available() -> bool {
    std::thread::spawn(|| restrict(&[]).is_ok_and(|enforced| enforced))
        .join()
        .unwrap_or(false)
}

/// The path of `program` on the `PATH` (or itself, when it is a path).
pub(crate) fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return path.is_file().then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The line of a failed tool's output that says why: the first that reads like an error (npm's
/// `npm error …` past its `code` line, pip's `ERROR: …`, Bundler's `Could not find …`), else
/// the last line it wrote. A sentence the tool broke over lines (Bundler's `You are trying to
/// install in deployment mode after changing` / `your Gemfile. …`) is read to its end.
pub(crate) fn first_useful_line(output: &str) -> Option<String> {
    let lines: Vec<&str> = output.lines().map(str::trim).collect();
    let useful = |line: &str| !line.is_empty() && !line.starts_with("----->");
    // npm prefixes every line of a failure with `npm error` (`npm ERR!` before npm 10): what
    // follows says whether the line is the cause or its bookkeeping (`code`, `path`, …).
    let npm_rest = |line: &str| -> Option<String> {
        let lower = line.to_ascii_lowercase();
        ["npm error", "npm err!"]
            .iter()
            .find_map(|prefix| lower.strip_prefix(prefix))
            .map(|rest| rest.trim().to_owned())
    };
    let boilerplate = |line: &str| {
        npm_rest(line).is_some_and(|rest| {
            rest.is_empty()
                || [
                    "code ",
                    "syscall ",
                    "path ",
                    "errno ",
                    "a complete log",
                    "command ",
                    "signal ",
                    "cwd ",
                    "log files",
                    "this is related to",
                ]
                .iter()
                .any(|bookkeeping| rest.starts_with(bookkeeping))
        })
    };
    let looks_like_an_error = |line: &str| {
        let lower = npm_rest(line).unwrap_or_else(|| line.to_ascii_lowercase());
        [
            "error",
            "could not",
            "cannot",
            "can't",
            "not found",
            "no such",
            "failed",
            "unsupported",
            "enoent",
            "eacces",
            "e404",
            "denied",
            "you are trying to",
        ]
        .iter()
        .any(|word| lower.contains(word))
    };
    let chosen = lines
        .iter()
        .position(|line| useful(line) && looks_like_an_error(line) && !boilerplate(line))
        .or_else(|| lines.iter().rposition(|line| useful(line)))?;
    let first_word = |line: &str| {
        line.split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let mut line = lines[chosen].to_owned();
    for next in &lines[chosen + 1..] {
        // A next line goes on with the sentence when the sentence has not ended and the line
        // starts in lower case, and is not another message of a tool that tags each of its
        // lines (`npm error …`).
        let ended = line.ends_with(['.', '!', '?', ':']);
        let continues = next.starts_with(|c: char| c.is_lowercase())
            && first_word(next) != first_word(lines[chosen]);
        if ended || !continues {
            break;
        }
        line.push(' ');
        line.push_str(next);
    }
    if line.len() > 300 {
        let mut end = 300;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
        line.push('…');
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_useful_line_of_a_failure() {
        let enoent = "npm warn tarball data seems to be corrupted. Trying again.\nnpm error code ENOENT\nnpm error syscall open\nnpm error path /a/x.tgz\nnpm error errno -2\nnpm error enoent ENOENT: no such file or directory, open '/a/x.tgz'\nnpm error enoent This is related to npm not being able to find a file.\n";
        assert_eq!(
            first_useful_line(enoent).unwrap(),
            "npm error enoent ENOENT: no such file or directory, open '/a/x.tgz'"
        );
        let npm = "npm error code E404\nnpm error 404 Not Found - GET http://registry/x - Not found\nnpm error A complete log of this run can be found in: /x\n";
        assert_eq!(
            first_useful_line(npm).unwrap(),
            "npm error 404 Not Found - GET http://registry/x - Not found"
        );
        let pip =
            "Processing ./x\nERROR: Could not find a version that satisfies the requirement nope\n";
        assert!(
            first_useful_line(pip)
                .unwrap()
                .starts_with("ERROR: Could not find")
        );
        assert_eq!(first_useful_line("one\ntwo\n\n").unwrap(), "two");
        // Bundler: its reason whole, though it broke the sentence over lines.
        let bundler = "Could not find gem 'nope' in cached gems or installed locally.\n";
        assert_eq!(first_useful_line(bundler).unwrap(), bundler.trim());
        let frozen = "You are trying to install in deployment mode after changing\nyour Gemfile. \
                      Run `bundle install` elsewhere and add the\nupdated Gemfile.lock to version \
                      control.\n\nIf this is a development machine, remove the /x/Gemfile freeze\n\
                      by running ``.\n\nThe dependencies in your gemfile changed\n";
        assert_eq!(
            first_useful_line(frozen).unwrap(),
            "You are trying to install in deployment mode after changing your Gemfile. Run \
             `bundle install` elsewhere and add the updated Gemfile.lock to version control."
        );
        let parse = "[!] There was an error parsing `Gemfile`: syntax error, unexpected \
                     end-of-input - gem \"x\",\n                   ^\n. Bundler cannot continue.\n";
        assert!(
            first_useful_line(parse)
                .unwrap()
                .starts_with("[!] There was an error parsing `Gemfile`: syntax error")
        );
        assert_eq!(first_useful_line("-----> x\n"), None);
    }
}
