//! `afemu fault …`: sets and clears each fault of `PUT /_afemu/faults`, and (`afemu fault`,
//! `afemu fault list`) shows those in force from `GET /_afemu/faults`.

use serde_json::{Value, json};

use super::{Remote, RemoteError, Target, out, out_json};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example: afemu fault route-delay 0..50ms   (then `afemu fault route-delay off`)"
)]
pub(crate) struct FaultCommand {
    #[command(subcommand)]
    action: Option<FaultAction>,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Subcommand)]
enum FaultAction {
    /// Show the faults in force (the same as `afemu fault` alone).
    #[command(after_help = "Example: afemu fault list --json")]
    List {
        /// Print them as `GET /_afemu/faults` has them.
        #[arg(long)]
        json: bool,
    },
    /// Route changes reach the router between MIN and MAX after they are made (as v1's NATS
    /// delivered them), or at once again with `off`.
    #[command(after_help = "Example: afemu fault route-delay 0..50ms")]
    RouteDelay {
        /// MIN..MAX (e.g. 0..50ms, 10ms..1s), or `off`.
        #[arg(value_name = "MIN..MAX|off")]
        delay: String,
    },
    /// Crash an instance now, or once it has served N more requests; the health manager
    /// restarts it as v1's did.
    #[command(after_help = "Example: afemu fault crash web 0 --after 10")]
    Crash {
        app: String,
        /// The instance (default 0).
        #[arg(default_value_t = 0)]
        index: u32,
        /// Crash once it has served this many more requests (default: now).
        #[arg(long, value_name = "N", default_value_t = 0)]
        after: u64,
    },
    /// Make an instance stop answering while it keeps its connections (the router's timeouts
    /// then have their say).
    #[command(after_help = "Example: afemu fault hang web 1")]
    Hang {
        app: String,
        /// The instance (default 0).
        #[arg(default_value_t = 0)]
        index: u32,
    },
    /// Make an app's instances take this much longer to start, or start at the normal pace
    /// again with `off`.
    #[command(after_help = "Example: afemu fault slow-start web 2s")]
    SlowStart {
        app: String,
        /// A duration (e.g. 2s, 500ms), or `off`.
        #[arg(value_name = "DURATION|off")]
        delay: String,
    },
    /// Make an app's staging fail (its next push, update or restart), or succeed again with
    /// --off.
    #[command(after_help = "Example: afemu fault fail-staging web   (then --off)")]
    FailStaging {
        app: String,
        /// Let it stage again.
        #[arg(long)]
        off: bool,
    },
    /// How a stop treats the instances it stops: kill them at once, cutting requests in flight,
    /// as v1 did (hard), or let the router let go of them first (drain, afemu's default).
    #[command(after_help = "Example: afemu fault stop hard")]
    Stop {
        #[arg(value_parser = ["hard", "drain"])]
        mode: String,
    },
    /// Re-seed the random choices (the route delays, the random balancer).
    #[command(after_help = "Example: afemu fault seed 7")]
    Seed { seed: u64 },
}

pub(crate) async fn fault(command: &FaultCommand) -> Result<(), RemoteError> {
    let remote = Remote::new(&command.target)?;
    let (body, done) = match &command.action {
        None => return list(&remote, false).await,
        Some(FaultAction::List { json }) => return list(&remote, *json).await,
        Some(FaultAction::RouteDelay { delay }) => match off(delay) {
            true => (
                json!({"route_delay": null}),
                "route changes reach the router at once".to_owned(),
            ),
            false => (
                json!({"route_delay": delay}),
                format!("route changes reach the router {delay} after they are made"),
            ),
        },
        Some(FaultAction::Crash { app, index, after }) => (
            json!({"crash": {"app": app, "index": index, "after_requests": after}}),
            match after {
                0 => format!("crashed {app} #{index}"),
                n => format!("{app} #{index} crashes once it has served {n} more request(s)"),
            },
        ),
        Some(FaultAction::Hang { app, index }) => (
            json!({"hang": {"app": app, "index": index}}),
            format!("{app} #{index} hangs: it keeps its connections and answers nothing"),
        ),
        Some(FaultAction::SlowStart { app, delay }) => match off(delay) {
            true => (
                json!({"slow_start": {"app": app, "delay": null}}),
                format!("{app} starts at the normal pace"),
            ),
            false => (
                json!({"slow_start": {"app": app, "delay": delay}}),
                format!("{app}'s instances take {delay} longer to start"),
            ),
        },
        Some(FaultAction::FailStaging { app, off }) => (
            json!({"fail_staging": {"app": app, "enabled": !off}}),
            match off {
                false => format!("{app}'s staging fails"),
                true => format!("{app} stages again"),
            },
        ),
        Some(FaultAction::Stop { mode }) => (
            json!({"stop": mode}),
            match mode.as_str() {
                "hard" => "a stop kills at once, as v1 did".to_owned(),
                _ => "a stop drains the instances first".to_owned(),
            },
        ),
        Some(FaultAction::Seed { seed }) => (json!({"seed": seed}), format!("seeded with {seed}")),
    };
    let response = remote
        .send(
            remote
                .request(reqwest::Method::PUT, "/_afemu/faults")
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string()),
        )
        .await?;
    let in_force = remote.json_of(response, "/_afemu/faults").await?;
    out(&format!("{done}\nfaults: {}\n", summary(&in_force)))
}

fn off(value: &str) -> bool {
    ["off", "none", "no"].contains(&value.trim().to_ascii_lowercase().as_str())
}

async fn list(remote: &Remote, json: bool) -> Result<(), RemoteError> {
    let in_force = remote.get_json("/_afemu/faults").await?;
    if json {
        return out_json(&in_force);
    }
    out(&format!("faults: {}\n", summary(&in_force)))
}

/// The faults in force in one line (`none` when afemu behaves as it does by default).
pub(crate) fn summary(faults: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(delay) = faults["route_delay"].as_str() {
        parts.push(format!("route delay {delay}"));
    }
    if faults["stop"] == "hard" {
        parts.push("stop hard".to_owned());
    }
    for (app, delay) in faults["slow_start"].as_object().into_iter().flatten() {
        parts.push(format!(
            "slow start {app} {}",
            delay.as_str().unwrap_or_default()
        ));
    }
    for app in faults["fail_staging"].as_array().into_iter().flatten() {
        parts.push(format!("fail staging {}", app.as_str().unwrap_or_default()));
    }
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_names_each_fault() {
        assert_eq!(summary(&json!({"stop": "drain"})), "none");
        assert_eq!(
            summary(&json!({"route_delay": "0ns..50ms", "stop": "hard",
                            "slow_start": {"web": "2s"}, "fail_staging": ["api"]})),
            "route delay 0ns..50ms, stop hard, slow start web 2s, fail staging api"
        );
    }
}
