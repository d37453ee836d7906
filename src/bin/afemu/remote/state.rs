//! `afemu reset` (`POST /_afemu/reset`), `afemu state export|import` (`GET`/`PUT /_afemu/state`)
//! and `afemu wait` (until `GET /_afemu/health` answers 200).

use std::path::PathBuf;
use std::time::Duration;

use super::{Remote, RemoteError, Target, out};

#[derive(Debug, clap::Args)]
#[command(after_help = "Example: afemu reset --target http://127.0.0.1:9022")]
pub(crate) struct ResetArgs {
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example: afemu state export before.json   (later: afemu state import before.json)"
)]
pub(crate) struct StateCommand {
    #[command(subcommand)]
    action: StateAction,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Subcommand)]
enum StateAction {
    /// Write everything set up (users, services, apps with their bits) as one JSON document: to
    /// FILE (replaced atomically), or to stdout.
    #[command(after_help = "Example: afemu state export before.json")]
    Export { file: Option<PathBuf> },
    /// Replace everything with a document written by `afemu state export` (or `--state`); the
    /// apps it says are started are staged and started.
    #[command(after_help = "Example: afemu state import before.json")]
    Import { file: PathBuf },
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example: afemu serve & afemu wait --timeout 30s && af target http://127.0.0.1:9022"
)]
pub(crate) struct WaitArgs {
    /// How long to wait for it before giving up (exit 1).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    target: Target,
}

pub(crate) async fn reset(args: &ResetArgs) -> Result<(), RemoteError> {
    let remote = Remote::new(&args.target)?;
    // How many apps there were, to say so; the reset is what matters.
    let apps = remote
        .get_json("/_afemu/routes")
        .await
        .ok()
        .and_then(|routes| routes["apps"].as_u64());
    remote
        .send(remote.request(reqwest::Method::POST, "/_afemu/reset"))
        .await?;
    let apps = match apps {
        Some(1) => "1 app".to_owned(),
        Some(n) => format!("{n} apps"),
        None => "every app".to_owned(),
    };
    out(&format!(
        "reset {}: {apps} stopped and deleted, every user, token and service gone (their databases dropped), the journal emptied; the faults are as they were\n",
        remote.base()
    ))
}

pub(crate) async fn state(command: &StateCommand) -> Result<(), RemoteError> {
    let remote = Remote::new(&command.target)?;
    match &command.action {
        StateAction::Export { file } => {
            let response = remote
                .send(remote.request(reqwest::Method::GET, "/_afemu/state"))
                .await?;
            let bytes = response.bytes().await.map_err(|e| remote.transport(e))?;
            match file {
                None => out(&String::from_utf8_lossy(&bytes)).and_then(|()| out("\n")),
                Some(file) => {
                    afemu_emulator::write_atomically(file, &bytes).map_err(|e| {
                        RemoteError::Other(format!("cannot write {}: {e}", file.display()))
                    })?;
                    eprintln!(
                        "afemu state export: {} written ({} bytes)",
                        file.display(),
                        bytes.len()
                    );
                    Ok(())
                }
            }
        }
        StateAction::Import { file } => {
            let bytes = std::fs::read(file)
                .map_err(|e| RemoteError::Other(format!("cannot read {}: {e}", file.display())))?;
            remote
                .send(
                    remote
                        .request(reqwest::Method::PUT, "/_afemu/state")
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(bytes),
                )
                .await?;
            out(&format!(
                "imported {} into {}: what was there before is gone, the started apps are starting\n",
                file.display(),
                remote.base()
            ))
        }
    }
}

/// The first retry comes this soon; each one after waits twice as long, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(25);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

pub(crate) async fn wait(args: &WaitArgs) -> Result<(), RemoteError> {
    let remote = Remote::new(&args.target)?;
    let deadline = tokio::time::Instant::now() + args.timeout;
    let mut backoff = FIRST_BACKOFF;
    // Why the last attempt failed; an attempt cut short by the deadline itself says less than
    // the one before it (a refused connection), so it does not replace it.
    let mut last: Option<String> = None;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let attempt = remote
            .request(reqwest::Method::GET, "/_afemu/health")
            .timeout(left.clamp(Duration::from_millis(1), Duration::from_secs(5)))
            .send()
            .await;
        let why = match attempt {
            Ok(response) if response.status().is_success() => {
                return out(&format!("afemu at {} is healthy\n", remote.base()));
            }
            Ok(response) if response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                Some("it is still starting (its router does not accept connections yet)".to_owned())
            }
            Ok(response) => Some(format!(
                "{}/_afemu/health answered {} (is it afemu's API?)",
                remote.base(),
                response.status()
            )),
            Err(error) if error.is_timeout() && last.is_some() => None,
            Err(error) => Some(match remote.transport(error) {
                RemoteError::Unreachable { cause, .. } => {
                    format!("{cause} — is `afemu serve` running?")
                }
                other => other.to_string(),
            }),
        };
        if let Some(why) = why {
            last = Some(why);
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            let last = last.unwrap_or_else(|| "no answer".into());
            return Err(RemoteError::Other(format!(
                "no healthy afemu at {} within {}: {last}",
                remote.base(),
                humantime::format_duration(args.timeout)
            )));
        }
        tokio::time::sleep(backoff.min(left)).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
