//! `afemu status` (the apps, the routes and the faults at a glance, from the first message of
//! `/_afemu/live`, the dashboard's snapshot) and `afemu routes` (`/_afemu/routes`).

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{Remote, RemoteError, Target, out, out_json};

#[derive(Debug, clap::Args)]
#[command(after_help = "Example: afemu status --target http://127.0.0.1:9022")]
pub(crate) struct StatusArgs {
    /// Print the apps, routes, faults and counters as one JSON document.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Example: afemu routes --json")]
pub(crate) struct RoutesArgs {
    /// Print the route table as `/_afemu/routes` has it.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: Target,
}

/// The most a snapshot may weigh before it is refused (it holds every app and host).
const MAX_SNAPSHOT: usize = 64 << 20;

pub(crate) async fn status(args: &StatusArgs) -> Result<(), RemoteError> {
    let remote = Remote::new(&args.target)?;
    let snapshot = snapshot(&remote).await?;
    if args.json {
        return out_json(&json!({
            "target": remote.base(),
            "apps": snapshot["apps"],
            "routes": snapshot["routes"],
            "faults": snapshot["faults"],
            "counters": snapshot["counters"],
        }));
    }
    out(&render_status(remote.base(), &snapshot))
}

pub(crate) async fn routes(args: &RoutesArgs) -> Result<(), RemoteError> {
    let remote = Remote::new(&args.target)?;
    let table = remote.get_json("/_afemu/routes").await?;
    if args.json {
        return out_json(&table);
    }
    let mut text = String::new();
    let _ = writeln!(
        text,
        "route table version {}{}",
        table["version"],
        if table["settled"] == json!(false) {
            " (route changes still on their way to the router)"
        } else {
            ""
        }
    );
    text.push_str(&render_routes(&table));
    out(&text)
}

/// The first message of `/_afemu/live`: everything at once.
async fn snapshot(remote: &Remote) -> Result<Value, RemoteError> {
    let mut response = remote
        .send(
            remote
                .request(reqwest::Method::GET, "/_afemu/live")
                .header(reqwest::header::ACCEPT, "text/event-stream"),
        )
        .await?;
    let mut buffer: Vec<u8> = Vec::new();
    loop {
        // A message ends with a blank line.
        if let Some(end) = find(&buffer, b"\n\n") {
            let message = String::from_utf8_lossy(&buffer[..end]);
            let data: Vec<&str> = message
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|data| data.strip_prefix(' ').unwrap_or(data))
                .collect();
            if message.lines().any(|line| line == "event: snapshot") {
                return serde_json::from_str(&data.join("\n")).map_err(|e| {
                    RemoteError::Other(format!("the emulator's snapshot is not JSON: {e}"))
                });
            }
            // A comment or a keep-alive: the next message.
            buffer.drain(..end + 2);
            continue;
        }
        match response.chunk().await.map_err(|e| remote.transport(e))? {
            Some(chunk) if buffer.len() + chunk.len() <= MAX_SNAPSHOT => {
                buffer.extend_from_slice(&chunk)
            }
            Some(_) => {
                return Err(RemoteError::Other(
                    "the emulator's snapshot is too large".into(),
                ));
            }
            None => {
                return Err(RemoteError::Other(format!(
                    "{}/_afemu/live ended before its snapshot: is it afemu's API?",
                    remote.base()
                )));
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The summary a person reads: the apps, the routes, the faults.
fn render_status(target: &str, snapshot: &Value) -> String {
    let apps = snapshot["apps"].as_array().cloned().unwrap_or_default();
    let hosts = snapshot["routes"]["hosts"]
        .as_object()
        .map_or(0, serde_json::Map::len);
    let mut text = String::new();
    let _ = writeln!(
        text,
        "afemu at {target}: {} app{}, {hosts} host{} routed",
        apps.len(),
        plural(apps.len()),
        plural(hosts),
    );
    text.push_str("\napps\n");
    if apps.is_empty() {
        text.push_str("  none\n");
    }
    let width = apps
        .iter()
        .map(|app| app["name"].as_str().unwrap_or_default().len())
        .max()
        .unwrap_or(0);
    for app in &apps {
        let instances = app["instances"].as_array().cloned().unwrap_or_default();
        let running = instances.iter().filter(|i| i["state"] == "RUNNING").count();
        let others: Vec<String> = instances
            .iter()
            .filter(|i| i["state"] != "RUNNING")
            .map(|i| {
                format!(
                    "#{} {}",
                    i["index"],
                    i["state"].as_str().unwrap_or_default()
                )
            })
            .collect();
        let uris: Vec<&str> = app["uris"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let _ = write!(
            text,
            "  {:width$}  {:7}  {running}/{} running",
            app["name"].as_str().unwrap_or_default(),
            app["state"].as_str().unwrap_or_default(),
            app["instances_wanted"],
        );
        if !others.is_empty() {
            let _ = write!(text, " ({})", others.join(", "));
        }
        if app["crashes"].as_u64().is_some_and(|n| n > 0) {
            let _ = write!(text, ", {} crash(es)", app["crashes"]);
        }
        let _ = writeln!(
            text,
            "  {}",
            if uris.is_empty() {
                "(no URIs)".to_owned()
            } else {
                uris.join(", ")
            }
        );
    }
    text.push_str("\nroutes\n");
    text.push_str(&render_routes(&snapshot["routes"]));
    let _ = writeln!(
        text,
        "\nfaults: {}",
        super::fault::summary(&snapshot["faults"])
    );
    text
}

/// One line per host: the backends it is sent to, as app #instance.
fn render_routes(table: &Value) -> String {
    let Some(hosts) = table["hosts"].as_object().filter(|h| !h.is_empty()) else {
        return "  none\n".into();
    };
    let width = hosts.keys().map(String::len).max().unwrap_or(0);
    let mut text = String::new();
    for (host, backends) in hosts {
        let backends: Vec<String> = backends
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| match b["app"].as_str().unwrap_or_default() {
                // The control plane itself, served through the router as in v1.
                "(api)" => "the v1 API (afemu's own)".to_owned(),
                app => format!("{app} #{}", b["instance"]),
            })
            .collect();
        let _ = writeln!(text, "  {host:width$}  → {}", backends.join(", "));
    }
    text
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_names_apps_routes_and_faults() {
        let snapshot = json!({
            "apps": [{"name": "web", "state": "STARTED", "instances_wanted": 2, "crashes": 1,
                      "instances": [{"index": 0, "state": "RUNNING"}, {"index": 1, "state": "FLAPPING"}],
                      "uris": ["example.com"]}],
            "routes": {"version": 3, "hosts": {"example.com": [{"app": "web", "instance": 0}]}},
            "faults": {"route_delay": null, "slow_start": {}, "fail_staging": [], "stop": "drain"},
        });
        let text = render_status("http://127.0.0.1:9022", &snapshot);
        assert!(text.starts_with("afemu at http://127.0.0.1:9022: 1 app, 1 host routed\n"));
        assert!(
            text.contains("  web  STARTED  1/2 running (#1 FLAPPING), 1 crash(es)  example.com\n"),
            "{text}"
        );
        assert!(text.contains("  example.com  → web #0\n"), "{text}");
        assert!(text.ends_with("faults: none\n"), "{text}");
    }

    #[test]
    fn nothing_at_all_still_reads() {
        let text = render_status("x", &json!({}));
        assert!(text.contains("apps\n  none\n\nroutes\n  none\n"), "{text}");
    }
}
