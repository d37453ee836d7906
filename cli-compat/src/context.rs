//! Everything a run of `af` takes from its surroundings, so that the commands can run as a
//! library call as well as a process: where the dot-files live, the working directory, stdout
//! and stdin, whether stdout is a terminal (colour), the start-polling interval and the time
//! zone times are shown in.

use std::future::Future;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Ends when a command that runs until it is interrupted (`af tunnel` with no client) should
/// stop.
pub type Interrupt = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Makes an [`Interrupt`]. Called once the tunnel is up and before `Press Ctrl-C to exit...` is
/// printed, so that the signal handlers are in place by the time anyone reads that line.
pub type InterruptSource = Box<dyn FnMut() -> io::Result<Interrupt> + Send>;

/// The surroundings of one `af` run. Build one with [`Context::new`] and the `with_*` methods,
/// or [`Context::from_process`] for the binary.
pub struct Context {
    /// The directory af treats as `~`: its dot-files (`.af_target`, `.af_token`, …) live here.
    pub home: PathBuf,
    /// The working directory: where `manifest.yml` is looked for and relative paths start.
    pub cwd: PathBuf,
    /// Where everything af prints goes (af prints errors to stdout too).
    pub stdout: Box<dyn Write + Send>,
    /// Where prompts read their answers.
    pub stdin: Box<dyn BufRead + Send>,
    /// Colour (and upload progress) only on a terminal, as af.
    pub is_tty: bool,
    /// How long `start` waits between two looks at a starting app (af: one second). Tests use
    /// a few milliseconds; the ticks, the give-up and the log tail count polls, not seconds.
    pub poll_interval: Duration,
    /// The zone instance and crash times are shown in (af: the process's local zone).
    pub time_zone: jiff::tz::TimeZone,
    /// af's `TIMEOUT` environment variable: the HTTP open and read timeout.
    pub http_timeout: Duration,
    /// What ends `af tunnel` when it forwards with no client. The binary's is SIGINT or SIGTERM
    /// (registered only then: every other command keeps the signals' default actions); by
    /// default nothing interrupts.
    pub interrupt: InterruptSource,
    /// Whether stdin and stdout are the process's own (the binary): the client `af tunnel`
    /// starts then takes them over directly (a terminal stays a terminal). Otherwise the client
    /// reads what is left of [`Context::stdin`] and its output goes to [`Context::stdout`].
    pub stdio_is_process: bool,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("home", &self.home)
            .field("cwd", &self.cwd)
            .field("is_tty", &self.is_tty)
            .field("poll_interval", &self.poll_interval)
            .field("stdio_is_process", &self.stdio_is_process)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context with `home` as `~`: the current directory, output thrown away, no input, not
    /// a terminal, af's one-second poll, the system time zone.
    pub fn new(home: impl Into<PathBuf>) -> Context {
        Context {
            home: home.into(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            stdout: Box::new(io::sink()),
            stdin: Box::new(io::empty()),
            is_tty: false,
            poll_interval: Duration::from_secs(1),
            time_zone: jiff::tz::TimeZone::system(),
            http_timeout: Duration::from_secs(600),
            interrupt: Box::new(|| Ok(Box::pin(std::future::pending()))),
            stdio_is_process: false,
        }
    }

    /// The context of the `af` process: `AF_HOME` (else `HOME`) as `~`, the real stdout and
    /// stdin, colour when stdout is a terminal, `TIMEOUT` seconds for HTTP (default 600),
    /// SIGINT and SIGTERM to end a tunnel.
    ///
    /// Prompts read stdin a byte at a time, straight from the descriptor, so that nothing after
    /// an answer is taken from the pipe: what follows is for the client `af tunnel` starts
    /// (`printf 'SELECT 1;' | af tunnel db psql`).
    pub fn from_process() -> Context {
        use std::io::IsTerminal;
        let home = std::env::var_os("AF_HOME")
            .or_else(|| std::env::var_os("HOME"))
            .map_or_else(|| PathBuf::from("/"), PathBuf::from);
        let timeout = std::env::var("TIMEOUT")
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(600);
        let mut context = Context::new(home);
        context.is_tty = io::stdout().is_terminal();
        context.stdout = Box::new(io::stdout());
        context.stdin = unbuffered_stdin();
        context.http_timeout = Duration::from_secs(timeout);
        context.interrupt = Box::new(process_signals);
        context.stdio_is_process = true;
        context
    }

    pub fn with_cwd(mut self, cwd: impl Into<PathBuf>) -> Context {
        self.cwd = cwd.into();
        self
    }

    pub fn with_stdout(mut self, stdout: impl Write + Send + 'static) -> Context {
        self.stdout = Box::new(stdout);
        self
    }

    /// Answers for the prompts, as if typed.
    pub fn with_stdin(mut self, input: impl Into<Vec<u8>>) -> Context {
        self.stdin = Box::new(io::Cursor::new(input.into()));
        self
    }

    pub fn with_tty(mut self, is_tty: bool) -> Context {
        self.is_tty = is_tty;
        self
    }

    pub fn with_poll_interval(mut self, interval: Duration) -> Context {
        self.poll_interval = interval;
        self
    }

    pub fn with_time_zone(mut self, zone: jiff::tz::TimeZone) -> Context {
        self.time_zone = zone;
        self
    }

    /// What ends a tunnel that forwards with no client (see [`Context::interrupt`]).
    pub fn with_interrupt(
        mut self,
        interrupt: impl FnMut() -> io::Result<Interrupt> + Send + 'static,
    ) -> Context {
        self.interrupt = Box::new(interrupt);
        self
    }

    /// Output kept in memory: returns the context and a handle to read what was printed.
    pub fn captured(self) -> (Context, Captured) {
        let captured = Captured::default();
        (self.with_stdout(captured.clone()), captured)
    }

    /// `File.expand_path(path)`: `~` is [`Context::home`], relative paths start at
    /// [`Context::cwd`], `.` and `..` are resolved lexically.
    pub fn expand_path(&self, path: &str) -> PathBuf {
        expand_path(path, &self.cwd, &self.home)
    }
}

/// The process's stdin, read without read-ahead (a duplicate of descriptor 0, a byte at a time):
/// std's `Stdin` buffers what it reads, which would take input meant for a child process.
fn unbuffered_stdin() -> Box<dyn BufRead + Send> {
    use std::os::fd::AsFd;
    match io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => Box::new(io::BufReader::with_capacity(1, std::fs::File::from(fd))),
        Err(_) => Box::new(io::BufReader::new(io::stdin())),
    }
}

/// SIGINT or SIGTERM, whichever comes first. Registering replaces their default action (ending
/// the process) for the rest of its life, which is why it is done only when a tunnel needs it.
fn process_signals() -> io::Result<Interrupt> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(Box::pin(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    }))
}

/// `File.expand_path(path, base)` with `~` as `home`.
pub(crate) fn expand_path(path: &str, base: &Path, home: &Path) -> PathBuf {
    let joined = if path == "~" {
        home.to_path_buf()
    } else if let Some(rest) = path.strip_prefix("~/") {
        home.join(rest)
    } else if Path::new(path).is_absolute() {
        PathBuf::from(path)
    } else {
        base.join(path)
    };
    normalize(&joined)
}

/// Removes `.` and resolves `..` without touching the file system.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(part) => out.push(part),
        }
    }
    out
}

/// Output captured in memory, shared with the [`Context`] writing it.
#[derive(Clone, Debug, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Everything printed so far, as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_path_like_ruby() {
        let base = Path::new("/work/app");
        let home = Path::new("/home/me");
        assert_eq!(expand_path("../x", base, home), PathBuf::from("/work/x"));
        assert_eq!(
            expand_path("~/.af_token", base, home),
            PathBuf::from("/home/me/.af_token")
        );
        assert_eq!(expand_path("/a/./b/", base, home), PathBuf::from("/a/b"));
        assert_eq!(expand_path(".", base, home), PathBuf::from("/work/app"));
    }
}
