//! `afemu rehearse --replay SCHEDULE`: a counter-example of `afemu check`, made to happen. The
//! emulator holds every route change; the runbook's lines run as the schedule begins them, and
//! while a line runs, the route changes it publishes are matched with the schedule's (the n-th
//! published change is the schedule's change n) and released to the router in the schedule's
//! order. At the schedule's last move the routes stay as they are until the traffic has hit the
//! window (a request gets the default error page); then everything held is let through and the
//! rest of the runbook runs as usual. If the emulator publishes something else than the schedule
//! says, the replay stops with an error rather than show something that is not the schedule.

use std::time::Duration;

use super::{RehearseError, Run};
use crate::control::Platform;
use crate::harness::Emulator;
use crate::procedure::check::{Move, Schedule};
use crate::procedure::runbook::Runbook;

/// How long a published change may take to come (staging and booting included).
const PUBLISH_WAIT: Duration = Duration::from_secs(120);
/// How long the window is held open for the traffic to hit it.
const WINDOW_WAIT: Duration = Duration::from_secs(10);

/// Refuses a schedule that is not of this runbook: each line it begins must be the runbook's.
pub(super) fn check_fits(schedule: &Schedule, runbook: &Runbook) -> Result<(), RehearseError> {
    for step in &schedule.moves {
        if let Move::Line { line, text } = step {
            let fits = runbook
                .items
                .iter()
                .any(|item| item.line == *line && &item.text == text);
            if !fits {
                return Err(RehearseError::Setup(format!(
                    "the schedule is not of this runbook: its line {line} is {text:?}"
                )));
            }
        }
    }
    Ok(())
}

/// Runs the runbook along the schedule, up to its last move; returns the index of the next
/// runbook item to run as usual, and what the traffic saw at the end of the schedule.
pub(super) async fn replay(
    run: &mut Run<'_>,
    emu: &Emulator,
    schedule: &Schedule,
) -> Result<(usize, String), RehearseError> {
    let items = &run.runbook.items;
    let mut next_item = 0;
    let mut published: Vec<u64> = Vec::new();
    let mut seen = String::from("the schedule ran to its end");
    let mut moves = schedule.moves.iter().peekable();
    while let Some(step) = moves.next() {
        let Move::Line { line, .. } = step else {
            continue;
        };
        let Some(index) = items.iter().position(|item| item.line == *line) else {
            return Err(RehearseError::Replay(format!(
                "no line {line} in the runbook"
            )));
        };
        // The lines in between are expectations (they take no time).
        for item in &items[next_item..index] {
            run.run_line(item).await;
        }
        next_item = index + 1;
        let mut during = Vec::new();
        while let Some(step) = moves.next_if(|m| !matches!(m, Move::Line { .. })) {
            during.push(step.clone());
        }
        let drive = drive(emu, &during, &mut published);
        let ((), driven) = tokio::join!(run.run_line(&items[index]), drive);
        match driven {
            Err(error) => {
                emu.platform().hold_routes(false);
                return Err(RehearseError::Replay(error));
            }
            Ok(Some(window)) => {
                seen = window;
                break;
            }
            Ok(None) => {}
        }
    }
    Ok((next_item, seen))
}

/// Makes the moves of one line happen while it runs. `Some`: the schedule's window was reached
/// and the traffic hit it (what it saw); everything held has been let through since.
async fn drive(
    emu: &Emulator,
    moves: &[Move],
    published: &mut Vec<u64>,
) -> Result<Option<String>, String> {
    let platform = emu.platform();
    for step in moves {
        match step {
            Move::Publish {
                change, app, hosts, ..
            } => {
                let submission = wait_published(platform, *change).await.inspect_err(|_| {
                    platform.hold_routes(false);
                })?;
                let name = platform.app_name(submission.app_id);
                if name.as_deref().is_some_and(|name| name != app) || &submission.hosts != hosts {
                    platform.hold_routes(false);
                    return Err(format!(
                        "change {change} should be {app} on [{}], the emulator published {} on [{}]",
                        hosts.join(", "),
                        name.unwrap_or_else(|| format!("app {}", submission.app_id)),
                        submission.hosts.join(", ")
                    ));
                }
                published.push(submission.app_id);
            }
            Move::Deliver { change, .. } => {
                let Some(app_id) = published.get(*change).copied() else {
                    platform.hold_routes(false);
                    return Err(format!(
                        "change {change} is delivered before it is published"
                    ));
                };
                platform.release_route(app_id).inspect_err(|_| {
                    platform.hold_routes(false);
                })?;
            }
            Move::Request { host, .. } => {
                // The window is open: keep it so until a request to the host falls into it.
                let since = emu.journal().last_seq();
                let hit = emu
                    .journal()
                    .wait_for(since, WINDOW_WAIT, |entry| {
                        &*entry.host == host && entry.is_default_error_page()
                    })
                    .await;
                platform.hold_routes(false);
                return match hit {
                    Some(entry) => Ok(Some(format!(
                        "a request to {host} got {} {} (the default error page), as the schedule says",
                        entry.status,
                        entry.router_error.map_or("", |e| e.as_str())
                    ))),
                    None => Err(format!(
                        "the schedule's window was held open for {} and no request to {host} got the default error page",
                        humantime::format_duration(WINDOW_WAIT)
                    )),
                };
            }
            Move::Line { .. } | Move::End | Move::Fail { .. } => {}
        }
    }
    Ok(None)
}

/// Waits until the emulator has published its `change`-th route change (counting from 0).
async fn wait_published(
    platform: &Platform,
    change: usize,
) -> Result<crate::control::route_feed::Submission, String> {
    let deadline = tokio::time::Instant::now() + PUBLISH_WAIT;
    let mut events = platform.route_events();
    loop {
        events.borrow_and_update();
        if let Some(submission) = platform.held_route_changes().get(change) {
            return Ok(submission.clone());
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() || tokio::time::timeout(left, events.changed()).await.is_err() {
            return Err(format!(
                "change {change} was never published (the emulator published {})",
                platform.held_route_changes().len()
            ));
        }
    }
}
