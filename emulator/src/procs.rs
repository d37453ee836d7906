//! Finding what a command started, also what left its process group (`setsid`, a daemon, node's
//! `detached`): processes are known by their group and by a mark their starter put in their
//! environment, which children inherit. Read from `/proc`; where there is none, nothing is found.

use nix::sys::signal::Signal;

/// The live processes in group `pgid` or with `mark` (`NAME=VALUE`) in their environment.
pub(crate) fn members(pgid: Option<i32>, mark: &str) -> Vec<(i32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next();
        let group = rest.nth(1).and_then(|g| g.parse::<i32>().ok());
        if matches!(state, Some("Z" | "X")) || pid == std::process::id() as i32 {
            continue;
        }
        let marked = || {
            std::fs::read(entry.path().join("environ")).is_ok_and(|environ| {
                environ
                    .split(|b| *b == 0)
                    .any(|variable| variable == mark.as_bytes())
            })
        };
        if (pgid.is_some() && group == pgid) || marked() {
            found.push((pid, stat[open + 1..close].to_owned()));
        }
    }
    found.sort();
    found
}

/// Kills (SIGKILL) the group `pgid` and every process with `mark` in its environment, again
/// until none is left (a process may start another between the look and the kill), at most a few
/// rounds.
pub(crate) fn kill_all(pgid: Option<i32>, mark: &str) {
    if let Some(pgid) = pgid {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), Signal::SIGKILL);
    }
    for _ in 0..8 {
        let left = members(pgid, mark);
        if left.is_empty() {
            return;
        }
        for (pid, _) in left {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}
