//! What an app process uses, read from `/proc` (Linux): CPU time and resident memory, summed over
//! the process group, since an app's shell, runtime and helpers all count against it.

/// One process group's usage.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Usage {
    /// User plus system CPU time, in seconds.
    pub(crate) cpu_seconds: f64,
    /// Resident memory, in KiB (v1 reported `usage.mem` in KiB).
    pub(crate) rss_kib: u64,
}

/// Clock ticks per second of `/proc/*/stat` times: `USER_HZ`, 100 on every Linux port.
const TICKS_PER_SECOND: f64 = 100.0;

/// The usage of every process in the group led by `leader`; zero where there is no `/proc`.
pub(crate) fn group_usage(leader: u32) -> Usage {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Usage::default();
    };
    let mut total = Usage::default();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(parsed) = parse_stat(&stat) else {
            continue;
        };
        if parsed.group != leader {
            continue;
        }
        total.cpu_seconds += parsed.ticks as f64 / TICKS_PER_SECOND;
        total.rss_kib += std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|status| rss_kib(&status))
            .unwrap_or(0);
    }
    total
}

struct Stat {
    group: u32,
    ticks: u64,
}

/// `pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime`.
fn parse_stat(stat: &str) -> Option<Stat> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let group = fields.get(2)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Stat {
        group,
        ticks: utime + stime,
    })
}

fn rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_even_with_odd_names() {
        let line = "4242 (my (odd) app) S 1 4240 4240 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0";
        let parsed = parse_stat(line).unwrap();
        assert_eq!((parsed.group, parsed.ticks), (4240, 300));
        assert_eq!(rss_kib("Name:\tx\nVmRSS:\t   20480 kB\n"), Some(20480));
    }

    #[test]
    fn our_own_group_uses_something() {
        let me = std::process::id();
        let group = nix::unistd::getpgid(None)
            .map(|g| g.as_raw() as u32)
            .unwrap_or(me);
        let usage = group_usage(group);
        assert!(usage.rss_kib > 0, "{usage:?}");
    }
}
