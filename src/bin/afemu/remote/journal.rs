//! `afemu journal`: what every request through the router saw, and the platform's events, one
//! line each, from `GET /_afemu/journal?events=true`; `--follow` goes on with the journal's long
//! poll (`since` the last number printed, `wait` for the next request) until Ctrl-C.

use std::time::Duration;

use serde_json::Value;

use super::{Remote, RemoteError, Target, out};

#[derive(Debug, clap::Args)]
#[command(after_help = "Example: afemu journal --follow --host example.com --errors")]
pub(crate) struct JournalArgs {
    /// Keep printing new entries as they come, until Ctrl-C.
    #[arg(long, short)]
    follow: bool,
    /// Only the requests for this host (no events).
    #[arg(long, value_name = "HOST")]
    host: Option<String>,
    /// Only the requests that got the platform's default error page (no route, bad gateway,
    /// timeout).
    #[arg(long)]
    errors: bool,
    /// Print the entries as the journal has them, one JSON object a line.
    #[arg(long)]
    json: bool,
    /// Only entries after this sequence number (each line shows its number after `#`).
    #[arg(long, value_name = "SEQ")]
    since: Option<u64>,
    /// At most the last N entries (with --follow and no --since: 10, then the new ones).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    #[command(flatten)]
    target: Target,
}

/// How long one poll of `--follow` waits for something new (the journal ends the wait as soon as
/// a request or an event comes, and waits a minute at most).
const FOLLOW_WAIT: Duration = Duration::from_secs(30);

pub(crate) async fn journal(args: &JournalArgs) -> Result<(), RemoteError> {
    let remote = Remote::new(&args.target)?;
    // Listening for Ctrl-C from the start: it ends a follow quietly, with success.
    let mut interrupt = if args.follow {
        Some(
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .map_err(|e| RemoteError::Other(format!("cannot listen for Ctrl-C: {e}")))?,
        )
    } else {
        None
    };
    let limit = match (args.limit, args.follow, args.since) {
        (Some(limit), _, _) => Some(limit),
        (None, true, None) => Some(10),
        (None, _, _) => None,
    };
    let mut next = args.since.unwrap_or(0);
    let first = fetch(&remote, args, next, None).await?;
    let mut shown: Vec<&Value> = first.iter().filter(|e| wanted(args, e)).collect();
    if let Some(limit) = limit {
        shown.drain(..shown.len().saturating_sub(limit));
    }
    print(args, shown)?;
    next = last_seq(&first).unwrap_or(next);
    let Some(interrupt) = interrupt.as_mut() else {
        return Ok(());
    };
    loop {
        let entries = tokio::select! {
            entries = fetch(&remote, args, next, Some(FOLLOW_WAIT)) => entries?,
            _ = interrupt.recv() => return Ok(()),
        };
        print(args, entries.iter().filter(|e| wanted(args, e)).collect())?;
        next = last_seq(&entries).unwrap_or(next);
    }
}

/// The journal's entries after `since`, with the events unless a host is asked for.
async fn fetch(
    remote: &Remote,
    args: &JournalArgs,
    since: u64,
    wait: Option<Duration>,
) -> Result<Vec<Value>, RemoteError> {
    let mut query: Vec<(&str, String)> = vec![("since", since.to_string())];
    match &args.host {
        Some(host) => query.push(("host", host.to_ascii_lowercase())),
        None => query.push(("events", "true".into())),
    }
    if let Some(wait) = wait {
        query.push(("wait", format!("{}ms", wait.as_millis())));
    }
    let response = remote
        .send(remote.request_with_query(reqwest::Method::GET, "/_afemu/journal", &query))
        .await?;
    let text = response.text().await.map_err(|e| remote.transport(e))?;
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).map_err(|e| {
                RemoteError::Other(format!("the journal sent a line that is not JSON: {e}"))
            })
        })
        .collect()
}

fn last_seq(entries: &[Value]) -> Option<u64> {
    entries.iter().filter_map(|e| e["seq"].as_u64()).max()
}

/// Whether the flags keep this entry.
fn wanted(args: &JournalArgs, entry: &Value) -> bool {
    if !args.errors {
        return true;
    }
    matches!(
        entry["router_error"].as_str(),
        Some("no-route" | "bad-gateway" | "timeout")
    )
}

fn print(args: &JournalArgs, entries: Vec<&Value>) -> Result<(), RemoteError> {
    let mut text = String::new();
    for entry in entries {
        if args.json {
            text.push_str(&entry.to_string());
        } else {
            text.push_str(&render(entry));
        }
        text.push('\n');
    }
    if text.is_empty() {
        return Ok(());
    }
    out(&text)
}

/// One entry on one line: when, its number, and for a request its status, method, host and
/// path, who answered (the app and instance, or the router's error) and how long it took.
fn render(entry: &Value) -> String {
    let seq = entry["seq"].as_u64().unwrap_or(0);
    if let Some(event) = entry["event"].as_str() {
        let at = clock(entry["at_us"].as_u64().unwrap_or(0));
        return format!("{at} #{seq}  event {event} {}", entry["detail"]);
    }
    let start = entry["start_us"].as_u64().unwrap_or(0);
    let end = entry["end_us"].as_u64().unwrap_or(start);
    let who = match (
        entry["refused"].as_str(),
        entry["router_error"].as_str(),
        entry["app"].as_str(),
    ) {
        (Some(refused), _, _) => format!("refused: {refused}"),
        (None, Some(error), Some(app)) => {
            format!("router: {error} (from {app} #{})", entry["instance"])
        }
        (None, Some(error), None) => format!("router: {error}"),
        (None, None, Some(app)) => format!("{app} #{}", entry["instance"]),
        (None, None, None) => "-".to_owned(),
    };
    format!(
        "{} #{seq}  {} {} {}{}  {who}  {}{}",
        clock(start),
        entry["status"],
        entry["method"].as_str().unwrap_or("?"),
        entry["host"].as_str().unwrap_or_default(),
        entry["path"].as_str().unwrap_or_default(),
        duration(end.saturating_sub(start)),
        if entry["aborted"] == Value::Bool(true) {
            "  aborted"
        } else {
            ""
        },
    )
}

/// The time of day (UTC) of a moment in microseconds since the epoch, to the millisecond.
fn clock(micros: u64) -> String {
    let millis = micros / 1000;
    let seconds = millis / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
        millis % 1000
    )
}

fn duration(micros: u64) -> String {
    if micros < 1000 {
        format!("{micros}µs")
    } else if micros < 1_000_000 {
        format!("{:.1}ms", micros as f64 / 1000.0)
    } else {
        format!("{:.2}s", micros as f64 / 1_000_000.0)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_request_and_an_event_each_read_on_one_line() {
        let served = json!({"seq": 7, "start_us": 3_723_004_000u64, "end_us": 3_723_005_500u64,
            "host": "example.com", "method": "GET", "path": "/a", "status": 200,
            "app": "web", "instance": 1, "router_error": null, "aborted": false, "refused": null});
        assert_eq!(
            render(&served),
            "01:02:03.004 #7  200 GET example.com/a  web #1  1.5ms"
        );
        let no_route = json!({"seq": 8, "start_us": 0, "end_us": 300, "host": "x.com",
            "method": "GET", "path": "/", "status": 404, "router_error": "no-route"});
        assert_eq!(
            render(&no_route),
            "00:00:00.000 #8  404 GET x.com/  router: no-route  300µs"
        );
        let event = json!({"seq": 9, "at_us": 0, "event": "crash", "detail": {"app": "web"}});
        assert_eq!(
            render(&event),
            r#"00:00:00.000 #9  event crash {"app":"web"}"#
        );
    }
}
