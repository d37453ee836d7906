//! The watchdog: a tiny shell process that outlives afemu only long enough to kill every app
//! process group afemu leaves behind. afemu tells it each group it starts and each it has reaped,
//! over a pipe; when the pipe closes — afemu exited, crashed, or was killed with SIGKILL — it kills
//! the groups still listed. So no app outlives the emulator, whatever way the emulator ends.
//!
//! It is a shell script rather than a `prctl(PR_SET_PDEATHSIG)` in each child because that needs
//! `unsafe` code between fork and exec, and because it must reach grandchildren too.

use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

/// Reads `add PGID` / `del PGID` lines; at end of input kills what is left. It ignores the
/// terminal's signals and runs in its own process group, so a Ctrl-C meant for afemu does not
/// take it down first.
const SCRIPT: &str = r#"trap '' INT TERM HUP QUIT
groups=" "
while read -r verb group; do
  case "$verb" in
    add) groups="$groups$group " ;;
    del) groups=$(printf '%s' "$groups" | sed "s/ $group / /") ;;
  esac
done
for group in $groups; do kill -9 "-$group" 2>/dev/null; done
"#;

pub(crate) struct Watchdog {
    /// `None` when the watchdog could not be started (no /bin/sh): apps are still killed on every
    /// orderly path, just not after a SIGKILL of afemu.
    pipe: Mutex<Option<ChildStdin>>,
    child: Mutex<Option<Child>>,
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchdog").finish_non_exhaustive()
    }
}

impl Watchdog {
    pub(crate) fn start() -> Watchdog {
        use std::os::unix::process::CommandExt;
        let spawned = Command::new("/bin/sh")
            .arg("-c")
            .arg(SCRIPT)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
        match spawned {
            Ok(mut child) => {
                let pipe = child.stdin.take();
                Watchdog {
                    pipe: Mutex::new(pipe),
                    child: Mutex::new(Some(child)),
                }
            }
            Err(error) => {
                tracing::warn!(%error, "no watchdog: apps may outlive afemu if it is killed");
                Watchdog {
                    pipe: Mutex::new(None),
                    child: Mutex::new(None),
                }
            }
        }
    }

    fn send(&self, line: &str) {
        let mut pipe = self.pipe.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(writer) = pipe.as_mut()
            && writer.write_all(line.as_bytes()).is_err()
        {
            *pipe = None;
        }
    }

    /// A new app process group to kill if afemu dies.
    pub(crate) fn watch(&self, group: i32) {
        self.send(&format!("add {group}\n"));
    }

    /// The group has been killed and reaped by afemu itself.
    pub(crate) fn forget(&self, group: i32) {
        self.send(&format!("del {group}\n"));
    }

    /// Ends the watchdog (killing whatever it still watches) and reaps it.
    pub(crate) fn stop(&self) {
        self.pipe.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = child.wait();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z" && state != "X")
        })
    }

    fn sleeper() -> Child {
        use std::os::unix::process::CommandExt;
        // Long enough to outlast the test, short enough that a broken watchdog fails it quickly.
        Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap()
    }

    #[test]
    fn closing_the_pipe_kills_what_is_still_watched() {
        let watchdog = Watchdog::start();
        let mut watched = sleeper();
        let mut forgotten = sleeper();
        watchdog.watch(watched.id() as i32);
        watchdog.watch(forgotten.id() as i32);
        watchdog.forget(forgotten.id() as i32);
        watchdog.stop();
        // The watchdog has exited, so it has sent its signals.
        let status = watched.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "killed: {status}");
        assert!(
            alive(forgotten.id() as i32),
            "a forgotten group is left alone"
        );
        forgotten.kill().unwrap();
        forgotten.wait().unwrap();
    }
}
