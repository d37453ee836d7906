//! `afemu rehearse RUNBOOK`: a swap or downtime procedure run for real, with traffic flowing, and
//! a report of what every visitor saw. The `af` steps run through the same command code as `af`
//! itself (`afemu_cli::run`), against an emulator started for the purpose on free ports, or
//! against one already running (`--target`, `--router`). The router's journal says what each
//! request got.

pub mod render;
pub mod report;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::config::Profile;
use crate::harness::Emulator;
use crate::runbook::{ItemKind, Runbook, RunbookError};
use crate::traffic::Traffic;
use report::{Expectation, Offending, Report, Request, StepReport, TimelinePoint, ms_since, stats};

/// How to rehearse.
#[derive(Clone, Debug)]
pub struct Options {
    pub runbook: PathBuf,
    pub profile: Profile,
    /// A running emulator's API and router URLs, instead of starting one.
    pub target: Option<(String, String)>,
    pub seed: u64,
    /// Show progress on the terminal while it runs.
    pub progress: bool,
}

/// Why a rehearsal could not run at all (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum RehearseError {
    #[error(transparent)]
    Runbook(#[from] RunbookError),
    #[error("{0}")]
    Setup(String),
}

/// The user the rehearsal logs in as.
const USER: &str = "rehearsal@afemu.local";
const PASSWORD: &str = "rehearse";
/// At most this many offending requests are listed per expectation.
const OFFENDING_SHOWN: usize = 5;

/// Where the requests are learnt from: the in-process emulator, or a running one over HTTP.
enum Oracle {
    Local(Box<Emulator>),
    Remote {
        api: String,
        router: std::net::SocketAddr,
        http: reqwest::Client,
    },
}

impl Oracle {
    fn api_url(&self) -> String {
        match self {
            // `localhost`, as a person would target it (af derives default URLs from the
            // target; 127.0.0.1 would give odd ones).
            Oracle::Local(emu) => format!("http://localhost:{}", emu.api_addr().port()),
            Oracle::Remote { api, .. } => api.clone(),
        }
    }

    fn router_addr(&self) -> std::net::SocketAddr {
        match self {
            Oracle::Local(emu) => emu.router_addr(),
            Oracle::Remote { router, .. } => *router,
        }
    }

    async fn last_seq(&self) -> u64 {
        match self {
            Oracle::Local(emu) => emu.journal().last_seq(),
            Oracle::Remote { api, http, .. } => {
                let counters: Option<Value> =
                    match http.get(format!("{api}/_afemu/counters")).send().await {
                        Ok(response) => response.json().await.ok(),
                        Err(_) => None,
                    };
                counters.and_then(|c| c["last_seq"].as_u64()).unwrap_or(0)
            }
        }
    }

    /// Requests after `seq`, waiting up to `wait` for one when there is none.
    async fn since(&self, seq: u64, wait: Duration) -> Vec<Request> {
        match self {
            Oracle::Local(emu) => {
                let journal = emu.journal();
                if journal.last_seq() <= seq && !wait.is_zero() {
                    journal.wait_for(seq, wait, |_| true).await;
                }
                journal
                    .since(seq)
                    .iter()
                    .map(|e| Request {
                        seq: e.seq,
                        start_us: e.start_us,
                        end_us: e.end_us,
                        host: e.host.to_string(),
                        path: e.path.clone(),
                        status: e.status,
                        app: e.app.as_deref().map(str::to_owned),
                        instance: e.instance,
                        router_error: e.router_error.map(|r| r.as_str().to_owned()),
                        aborted: e.aborted,
                    })
                    .collect()
            }
            Oracle::Remote { api, http, .. } => {
                let wait = humantime::format_duration(wait)
                    .to_string()
                    .replace(' ', "");
                let url = format!("{api}/_afemu/journal?since={seq}&wait={wait}");
                let Ok(response) = http.get(url).send().await else {
                    return Vec::new();
                };
                let text = response.text().await.unwrap_or_default();
                text.lines()
                    .filter_map(|line| serde_json::from_str::<Request>(line).ok())
                    .collect()
            }
        }
    }

    /// Host → the apps its backends belong to, now.
    async fn routes(&self) -> BTreeMap<String, Vec<String>> {
        match self {
            Oracle::Local(emu) => emu
                .routes()
                .snapshot()
                .summary()
                .into_iter()
                .map(|(host, backends)| (host, backends.into_iter().map(|(app, _)| app).collect()))
                .collect(),
            Oracle::Remote { api, http, .. } => {
                let table: Value = match http.get(format!("{api}/_afemu/routes")).send().await {
                    Ok(response) => response.json().await.unwrap_or(Value::Null),
                    Err(_) => Value::Null,
                };
                table["hosts"]
                    .as_object()
                    .map(|hosts| {
                        hosts
                            .iter()
                            .map(|(host, backends)| {
                                let apps = backends
                                    .as_array()
                                    .into_iter()
                                    .flatten()
                                    .filter_map(|b| b["app"].as_str().map(str::to_owned))
                                    .collect();
                                (host.clone(), apps)
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            }
        }
    }
}

/// Everything the journal said during the run, gathered as it goes (the journal's ring is
/// bounded; the collector keeps up with it).
#[derive(Default)]
struct Collected {
    requests: Vec<Request>,
    last_seq: u64,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Runs a rehearsal and returns its report.
pub async fn rehearse(options: &Options) -> Result<Report, RehearseError> {
    let runbook = Runbook::load(&options.runbook)?;
    let oracle = match &options.target {
        None => Oracle::Local(Box::new(
            Emulator::builder()
                .profile(options.profile)
                .seed(options.seed)
                .start()
                .await
                .map_err(|e| RehearseError::Setup(format!("cannot start the emulator: {e}")))?,
        )),
        Some((api, router)) => {
            let router_addr = router
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .parse()
                .map_err(|e| {
                    RehearseError::Setup(format!(
                        "--router {router}: expected http://HOST:PORT with an IP address ({e})"
                    ))
                })?;
            Oracle::Remote {
                api: api.trim_end_matches('/').to_owned(),
                router: router_addr,
                http: reqwest::Client::new(),
            }
        }
    };
    let oracle = Arc::new(oracle);

    // af, as a library, in a home of its own, targeting the emulator and logged in.
    let home = tempfile::tempdir().map_err(|e| RehearseError::Setup(e.to_string()))?;
    let poll = match options.profile {
        Profile::Instant => Duration::from_millis(10),
        Profile::Fast => Duration::from_millis(50),
        Profile::Realistic => Duration::from_secs(1),
    };
    let af = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let new_context = || {
        afemu_cli::Context::new(home.path())
            .with_cwd(runbook.dir.clone())
            .with_poll_interval(poll)
            .captured()
    };
    for args in [
        af(&["target", &oracle.api_url()]),
        af(&["login", "--email", USER, "--passwd", PASSWORD]),
    ] {
        let (mut context, captured) = new_context();
        let status = afemu_cli::run(&args, &mut context).await;
        if status != 0 {
            return Err(RehearseError::Setup(format!(
                "af {} failed: {}",
                args.join(" "),
                captured.text().trim()
            )));
        }
    }

    let started_us = now_us();
    let started = Instant::now();
    let progress = render::Progress::new(options.progress, runbook.items.len());
    let collected = Arc::new(Mutex::new(Collected {
        requests: Vec::new(),
        last_seq: oracle.last_seq().await,
    }));
    let stop_collecting = CancellationToken::new();
    let collector = {
        let oracle = oracle.clone();
        let collected = collected.clone();
        let stop = stop_collecting.clone();
        let progress = progress.clone();
        tokio::spawn(async move {
            loop {
                let since = collected.lock().unwrap_or_else(|e| e.into_inner()).last_seq;
                let fresh = tokio::select! {
                    fresh = oracle.since(since, Duration::from_millis(200)) => fresh,
                    () = stop.cancelled() => break,
                };
                let mut collected = collected.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(last) = fresh.last() {
                    collected.last_seq = last.seq;
                }
                progress.count(
                    fresh.len(),
                    fresh.iter().filter(|r| r.is_default_error_page()).count(),
                );
                collected.requests.extend(fresh);
            }
        })
    };

    let mut steps: Vec<StepReport> = Vec::new();
    let mut traffic: Option<Traffic> = None;
    let mut traffic_hosts: Vec<String> = Vec::new();
    let mut failed = false;
    for item in &runbook.items {
        let step_started = started.elapsed();
        let kind = match (&item.kind, traffic.is_some()) {
            (ItemKind::Af(_), false) => "setup",
            (ItemKind::Af(_), true) => "step",
            _ => "directive",
        };
        if matches!(
            item.kind,
            ItemKind::ExpectServedBy { .. } | ItemKind::ExpectNoDefaultErrorPage { .. }
        ) {
            continue;
        }
        progress.step(item.line, &item.text);
        let mut step = StepReport {
            line: item.line,
            text: item.text.clone(),
            kind: kind.into(),
            started_ms: step_started.as_secs_f64() * 1000.0,
            took_ms: 0.0,
            result: "ok".into(),
            output: String::new(),
            traffic: BTreeMap::new(),
        };
        if failed {
            step.result = "skipped".into();
            steps.push(step);
            continue;
        }
        match &item.kind {
            ItemKind::Af(args) => {
                let (mut context, captured) = new_context();
                let status = afemu_cli::run(args, &mut context).await;
                step.output = captured.text();
                if status != 0 {
                    step.result = format!("failed (exit {status})");
                    failed = true;
                }
            }
            ItemKind::Traffic { hosts, rate } => {
                let fresh: Vec<&str> = hosts
                    .iter()
                    .filter(|h| !traffic_hosts.contains(h))
                    .map(String::as_str)
                    .collect();
                traffic_hosts.extend(fresh.iter().map(|h| h.to_string()));
                let more = Traffic::start(oracle.router_addr(), &fresh, Some(*rate));
                traffic = Some(match traffic.take() {
                    Some(running) => running.merge(more),
                    None => more,
                });
            }
            ItemKind::Wait(duration) => tokio::time::sleep(*duration).await,
            ItemKind::Await { until, timeout } => {
                let (app, host) = (&until.app().to_owned(), &until.host().to_owned());
                let deadline = tokio::time::Instant::now() + *timeout;
                let mut since = oracle.last_seq().await;
                let mut served = false;
                while !served && tokio::time::Instant::now() < deadline {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    let fresh = oracle.since(since, left.min(Duration::from_secs(1))).await;
                    served = fresh.iter().any(|r| {
                        &r.host == host
                            && !r.is_default_error_page()
                            && r.app.as_deref() == Some(app)
                    });
                    if let Some(last) = fresh.last() {
                        since = last.seq;
                    }
                }
                if !served {
                    step.result =
                        format!("timed out after {}", humantime::format_duration(*timeout));
                    failed = true;
                }
            }
            ItemKind::ExpectServedBy { .. } | ItemKind::ExpectNoDefaultErrorPage { .. } => {}
        }
        step.took_ms = (started.elapsed() - step_started).as_secs_f64() * 1000.0;
        steps.push(step);
    }

    // The end: what the routes say now, then the traffic stops and the last requests come in.
    let final_routes = oracle.routes().await;
    if let Some(traffic) = traffic {
        traffic.stop().await;
    }
    let end_seq = oracle.last_seq().await;
    loop {
        let since = collected.lock().unwrap_or_else(|e| e.into_inner()).last_seq;
        if since >= end_seq {
            break;
        }
        let fresh = oracle.since(since, Duration::ZERO).await;
        let mut collected = collected.lock().unwrap_or_else(|e| e.into_inner());
        match fresh.last() {
            Some(last) => collected.last_seq = last.seq,
            None => break,
        }
        collected.requests.extend(fresh);
    }
    stop_collecting.cancel();
    let _ = collector.await;
    progress.finish();
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;

    let mut requests: Vec<Request> =
        std::mem::take(&mut collected.lock().unwrap_or_else(|e| e.into_inner()).requests);
    requests.sort_by_key(|r| r.seq);
    requests.dedup_by_key(|r| r.seq);
    let watched = runbook.watched_hosts();
    let relevant: Vec<&Request> = requests
        .iter()
        .filter(|r| watched.contains(&r.host) || traffic_hosts.contains(&r.host))
        .collect();

    // Each request belongs to the step it arrived during (or after, until the next one).
    let step_starts_us: Vec<u64> = steps
        .iter()
        .map(|s| started_us + (s.started_ms * 1000.0) as u64)
        .collect();
    // An offending request is charged to the last af command before it: directives (a wait)
    // cause nothing.
    let is_command: Vec<bool> = steps.iter().map(|s| s.kind != "directive").collect();
    let step_of = |at_us: u64| -> Option<usize> {
        is_command
            .iter()
            .zip(&step_starts_us)
            .rposition(|(command, start)| *command && *start <= at_us)
    };
    for (index, step) in steps.iter_mut().enumerate() {
        let from = step_starts_us[index];
        let until = step_starts_us.get(index + 1).copied().unwrap_or(u64::MAX);
        for host in &traffic_hosts {
            let window = relevant
                .iter()
                .filter(|r| &r.host == host && r.start_us >= from && r.start_us < until)
                .copied();
            let window_stats = stats(window, started_us);
            if window_stats.requests > 0 {
                step.traffic.insert(host.clone(), window_stats);
            }
        }
    }
    let totals = traffic_hosts
        .iter()
        .map(|host| {
            (
                host.clone(),
                stats(
                    relevant.iter().copied().filter(|r| &r.host == host),
                    started_us,
                ),
            )
        })
        .collect();

    // The expectations.
    let mut expectations = Vec::new();
    for host in &watched {
        let line = runbook.items.iter().find_map(|item| match &item.kind {
            ItemKind::ExpectNoDefaultErrorPage { hosts } if hosts.contains(host) => Some(item.line),
            _ => None,
        });
        let errors: Vec<&Request> = relevant
            .iter()
            .copied()
            .filter(|r| &r.host == host && r.is_default_error_page())
            .collect();
        let offending = errors
            .iter()
            .take(OFFENDING_SHOWN)
            .map(|r| {
                let step = step_of(r.start_us).and_then(|i| steps.get(i));
                Offending {
                    at_ms: ms_since(started_us, r.start_us),
                    host: r.host.clone(),
                    path: r.path.clone(),
                    status: r.status,
                    router_error: r.router_error.clone(),
                    step_line: step.map_or(0, |s| s.line),
                    step: step.map_or_else(String::new, |s| s.text.clone()),
                }
            })
            .collect::<Vec<_>>();
        let detail = match offending.first() {
            None => format!("no request to {host} saw the default error page"),
            Some(first) => format!(
                "{} request{} to {host} saw the default error page, the first at {:.0} ms during line {} ({})",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" },
                first.at_ms,
                first.step_line,
                first.step
            ),
        };
        expectations.push(Expectation {
            name: format!("no-default-error-page {host}"),
            line,
            passed: errors.is_empty(),
            detail,
            offending,
        });
    }
    for item in &runbook.items {
        if let ItemKind::ExpectServedBy { app, host } = &item.kind {
            let apps = final_routes.get(host).cloned().unwrap_or_default();
            let mut distinct: Vec<String> = apps.clone();
            distinct.sort();
            distinct.dedup();
            // And the last requests to it (after the last step) agree.
            let last_start = step_starts_us.last().copied().unwrap_or(0);
            let strays: Vec<&Request> = relevant
                .iter()
                .copied()
                .filter(|r| {
                    &r.host == host
                        && r.start_us >= last_start
                        && r.app.as_deref() != Some(app.as_str())
                })
                .collect();
            let passed = distinct == [app.clone()] && strays.is_empty();
            let detail = if passed {
                format!("{host} is served only by {app}")
            } else if distinct.is_empty() {
                format!("{host} is served by nothing at the end")
            } else {
                format!("{host} is served by {} at the end", distinct.join(" and "))
            };
            expectations.push(Expectation {
                name: format!("served-by {app} {host}"),
                line: Some(item.line),
                passed,
                detail,
                offending: Vec::new(),
            });
        }
    }
    for step in steps
        .iter()
        .filter(|s| s.result != "ok" && s.result != "skipped")
    {
        expectations.push(Expectation {
            name: format!("line {}: {}", step.line, step.text),
            line: Some(step.line),
            passed: false,
            detail: format!("{}: {}", step.result, step.output.trim()),
            offending: Vec::new(),
        });
    }
    let passed = expectations.iter().all(|e| e.passed);
    let host_index: BTreeMap<&str, usize> = traffic_hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (h.as_str(), i))
        .collect();
    let timeline = relevant
        .iter()
        .filter_map(|r| {
            host_index.get(r.host.as_str()).map(|host| TimelinePoint {
                at_ms: ms_since(started_us, r.start_us),
                host: *host,
                app: if r.is_default_error_page() {
                    None
                } else {
                    r.app.clone()
                },
                status: r.status,
                error: r.is_default_error_page(),
            })
        })
        .collect();
    let verdict = render::verdict(passed, &expectations, relevant.len());
    Ok(Report {
        runbook: options.runbook.display().to_string(),
        profile: options.profile.name().into(),
        started_us,
        duration_ms,
        hosts: traffic_hosts,
        steps,
        expectations,
        requests: timeline,
        totals,
        passed,
        verdict,
    })
}
