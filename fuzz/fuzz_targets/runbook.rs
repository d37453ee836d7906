//! The runbook parser (`afemu_emulator::procedure::runbook::Runbook::parse`), on any text: nothing panics;
//! an error names a line of the text (or line 0, the runbook as a whole); every item is
//! well-formed (its line's own text, hosts as the router keys them, a rate above zero, durations
//! that fit a deadline, named apps, af lines af accepts) and parses the same on its own; the
//! model steps of its `af` lines never panic; and `afemu check` explores it without panicking.
#![no_main]

use std::path::PathBuf;

use afemu_emulator::procedure::check::{CheckOptions, check};
use afemu_emulator::procedure::runbook::{ItemKind, LONGEST_WAIT, Runbook, model_step};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let n_lines = text.lines().count();
    let runbook = match Runbook::parse(&text, "fuzz.runbook", PathBuf::from("/rb")) {
        Ok(runbook) => runbook,
        Err(error) => {
            assert!(
                error.line <= n_lines,
                "{error} names line {} of {n_lines}",
                error.line
            );
            assert_eq!(error.file, "fuzz.runbook");
            return;
        }
    };
    assert_eq!(runbook.dir, PathBuf::from("/rb"));
    let lines: Vec<&str> = text.lines().collect();
    let mut previous = 0;
    for item in &runbook.items {
        assert!(item.line > previous && item.line <= n_lines, "{item:?}");
        previous = item.line;
        assert_eq!(item.text, lines[item.line - 1].trim(), "{item:?}");
        assert!(!item.text.is_empty(), "{item:?}");
        match &item.kind {
            ItemKind::Af(args) => {
                assert!(!args.is_empty(), "{item:?}");
                let command = afemu_cli::parse_command(args).expect("the parser checked it");
                let _ = model_step(&command, |_| Some(1));
                let _ = model_step(&command, |_| Some(u32::MAX));
            }
            ItemKind::Exec(command) => {
                assert!(!command.is_empty() && !command.contains(['\n', '\0']), "{item:?}");
                assert!(item.text.starts_with('$'), "{item:?}");
            }
            ItemKind::Traffic { hosts, rate, write } => {
                assert!(!hosts.is_empty() && *rate > 0, "{item:?}");
                hosts.iter().for_each(|host| assert_host(host));
                if let Some(path) = write {
                    assert!(path.starts_with('/') && path.contains("{key}"), "{item:?}");
                }
            }
            ItemKind::Wait(duration) => assert_wait(*duration),
            ItemKind::Await { until, timeout } => {
                assert!(!until.app().is_empty(), "{item:?}");
                assert_host(until.host());
                assert_wait(*timeout);
            }
            ItemKind::ExpectNoDefaultErrorPage { hosts } => {
                hosts.iter().for_each(|host| assert_host(host));
            }
            ItemKind::ExpectServedBy { app, host } => {
                assert!(!app.is_empty(), "{item:?}");
                assert_host(host);
            }
            ItemKind::ExpectWritesKept { host, path } => {
                assert_host(host);
                assert!(path.starts_with('/') && !path.contains(' '), "{item:?}");
            }
        }
        // A line means the same on its own (with traffic to observe, which an @await of
        // requests needs before it).
        let alone = Runbook::parse(
            &format!("@traffic x.com {}\n{}\n@expect no-default-error-page\n", first_host(&item.kind), lines[item.line - 1]),
            "alone",
            PathBuf::new(),
        )
        .expect("parses alone");
        assert_eq!(alone.items.len(), 3, "{item:?}");
        assert_eq!(alone.items[1].kind, item.kind, "{item:?}");
    }
    for host in runbook.watched_hosts() {
        assert_host(&host);
    }
    // The checker explores whatever parses, within a small state budget to keep runs quick;
    // a search cut short must say so.
    for options in [
        CheckOptions::default(),
        CheckOptions {
            route_delay: Some("10ms..50ms".parse().expect("a delay")),
            stop_hard: true,
            state_limit: None,
        },
    ] {
        let report = check(&runbook, CheckOptions { state_limit: Some(2_000), ..options });
        if !report.complete {
            assert!(!report.passed());
        }
    }
});

/// A host an item awaits, so that the line alone gets traffic to it first.
fn first_host(kind: &ItemKind) -> String {
    match kind {
        ItemKind::Await { until, .. } => until.host().to_owned(),
        _ => "y.com".to_owned(),
    }
}

/// A host as the router keys it: non-empty, and its own key.
fn assert_host(host: &str) {
    assert!(!host.is_empty());
    assert_eq!(
        afemu_router::normalise_host(host, "").as_deref(),
        Some(host),
        "{host:?} is not a route key"
    );
}

/// A wait the rehearsal can put a deadline on.
fn assert_wait(duration: std::time::Duration) {
    assert!(duration <= LONGEST_WAIT, "{duration:?}");
    assert!(std::time::Instant::now().checked_add(duration).is_some());
}
