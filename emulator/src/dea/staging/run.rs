//! Running a staging tool (npm, Bundler, pip, javac…) as v1's stager ran its plugins' commands:
//! in the droplet's `app/`, with its output kept in the staging log, bounded by the staging
//! timeout (v1: `max_staging_runtime`, 120 s), in a process group of its own so nothing it
//! started outlives it, and confined so that it writes nowhere but the droplet, its scratch
//! `TMPDIR` and the staging caches (Landlock, where the kernel has it).

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::watchdog::Watchdog;

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
    log_path: PathBuf,
    log: Option<fs::File>,
    started: Instant,
    env: StagingEnv,
    /// The tools' `TMPDIR`, inside the droplet and removed when staging ends.
    tmp: PathBuf,
}

impl Staging {
    pub(crate) fn new(droplet_dir: &Path, env: StagingEnv) -> Result<Staging, String> {
        let log_path = droplet_dir.join("staging.log");
        let log = fs::File::create(&log_path)
            .map_err(|e| format!("cannot create the staging log: {e}"))?;
        Ok(Staging {
            droplet_dir: droplet_dir.to_path_buf(),
            app_dir: droplet_dir.join("app"),
            log_path,
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
        let stdout = log.try_clone().map_err(|e| e.to_string())?;
        let stderr = log.try_clone().map_err(|e| e.to_string())?;

        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .current_dir(cwd.unwrap_or(&self.app_dir))
            .env("TMPDIR", &self.tmp)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            .process_group(0)
            .kill_on_drop(true);
        let writable = vec![
            self.droplet_dir.clone(),
            self.env.cache.clone(),
            PathBuf::from("/dev"),
        ];
        let mut child = spawn_confined(command, writable)
            .map_err(|e| format!("{what}: cannot run {shown}: {e}"))?;
        let group = child.id().map(|pid| pid as i32);
        if let Some(group) = group {
            self.env.watchdog.watch(group);
        }
        let limit = self.left();
        let outcome = tokio::select! {
            status = child.wait() => Some(status),
            () = tokio::time::sleep(limit) => None,
            () = self.env.shutdown.cancelled() => {
                kill_group(group);
                let _ = child.wait().await;
                if let Some(group) = group {
                    self.env.watchdog.forget(group);
                }
                return Err("afemu is shutting down".into());
            }
        };
        // Whatever the tool left running in its group goes with it.
        kill_group(group);
        if outcome.is_none() {
            let _ = child.wait().await;
        }
        if let Some(group) = group {
            self.env.watchdog.forget(group);
        }
        match outcome {
            None => {
                let error = format!(
                    "{what} did not finish within the staging timeout ({})",
                    humantime::format_duration(self.env.timeout)
                );
                self.say(&format!("-----> {error}"));
                Err(error)
            }
            Some(Err(error)) => Err(format!("{what}: {error}")),
            Some(Ok(status)) if status.success() => Ok(()),
            Some(Ok(status)) => {
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

    fn output_since(&self, offset: u64) -> String {
        let mut text = String::new();
        if let Ok(mut file) = fs::File::open(&self.log_path)
            && file.seek(SeekFrom::Start(offset)).is_ok()
        {
            // A tool's output can be large: its first 256 KiB hold the cause.
            let _ = file.take(256 * 1024).read_to_string(&mut text);
        }
        text
    }

    /// Ends the staging: the scratch `TMPDIR` goes.
    pub(crate) fn finish(&mut self) {
        let _ = fs::remove_dir_all(&self.tmp);
        if let Some(log) = &mut self.log {
            let _ = log.flush();
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

/// Restricts the calling thread (and what it starts) to writing beneath `writable`; false when
/// the kernel enforces nothing.
fn restrict(writable: &[PathBuf]) -> std::io::Result<bool> {
    use landlock::{
        ABI, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, path_beneath_rules,
    };
    let abi = ABI::V3;
    let status = Ruleset::default()
        .handle_access(AccessFs::from_write(abi))
        .and_then(|ruleset| ruleset.create())
        .and_then(|ruleset| {
            ruleset.add_rules(path_beneath_rules(writable, AccessFs::from_write(abi)))
        })
        .and_then(|ruleset| ruleset.restrict_self())
        .map_err(std::io::Error::other)?;
    Ok(status.ruleset != RulesetStatus::NotEnforced)
}

fn kill_group(group: Option<i32>) {
    if let Some(group) = group {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(group),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
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
