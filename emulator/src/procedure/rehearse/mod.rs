//! `afemu rehearse RUNBOOK`: a swap or downtime procedure run for real, with traffic flowing, and
//! a report of what every visitor saw. The `af` steps run through the same command code as `af`
//! itself (`afemu_cli::run`), against an emulator started for the purpose on free ports (with the
//! faults asked for), or against one already running (`--target`, `--router`). The router's
//! journal says what each request got.
//!
//! The rules are those `afemu check` proves things under (docs/RUNBOOKS.md): `@traffic` starts
//! once every route change so far has reached the router; each request belongs to the line
//! during which it was sent; the run ends once every route change has landed and every traffic
//! host has been asked again, and `@expect served-by` is judged on that last window. Nothing
//! passes that observed nothing, and what a failed step kept from running is "not evaluated".
//!
//! With `--replay SCHEDULE` the emulator holds every route change and the rehearsal releases
//! them in the order a counter-example of `afemu check` gives (`replay.rs`), so the failure it
//! describes happens in front of the traffic.

pub mod exec;
mod oracle;
mod record;
pub mod render;
mod replay;
pub mod report;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::{Faults, Profile};
use crate::harness::Emulator;
use crate::procedure::check::{Outcome, Schedule};
use crate::procedure::runbook::{Await, Item, ItemKind, Runbook, RunbookError};
use crate::procedure::traffic::Traffic;
use oracle::Oracle;
use report::{Expectation, Offending, Report, Request, StepReport, TimelinePoint, ms_since, stats};

/// How to rehearse.
#[derive(Clone, Debug)]
pub struct Options {
    pub runbook: PathBuf,
    pub profile: Profile,
    /// A running emulator's API and router URLs, instead of starting one.
    pub target: Option<(String, String)>,
    /// The faults of the emulator (started, or running: applied through `/_afemu/faults`).
    pub faults: Faults,
    /// With `target`: reset the running emulator first (otherwise one that holds apps is
    /// refused: what the rehearsal saw would depend on them).
    pub reset: bool,
    /// Make this counter-example of `afemu check` happen.
    pub replay: Option<Schedule>,
    /// Show progress on the terminal while it runs.
    pub progress: bool,
    /// Whether services provisioned in the emulator the rehearsal starts are real databases.
    pub services: crate::config::ServicesMode,
    /// Say where the dashboard of the emulator is as soon as it is up (stderr), so the
    /// rehearsal can be watched while it runs; with [`rehearse_keeping`], the emulator the
    /// rehearsal started is handed back to stay up after it.
    pub dashboard: bool,
    /// The runbook's text, instead of reading `runbook` (which then only names it in the
    /// report; its paths are relative to the working directory): `afemu rehearse --exec`.
    pub inline: Option<String>,
    /// How `$ COMMAND` lines run.
    pub exec: exec::ExecOptions,
    /// Write the `af` commands the `$` lines ran, with the pauses between them, here as a
    /// runbook (that runbook is checked in any case: the report says whether the sequence is
    /// safe under every schedule).
    pub record: Option<PathBuf>,
    /// The staging cache of the emulator the rehearsal starts (else one in its data directory).
    pub staging_cache: Option<PathBuf>,
    /// Its staging timeout (else the default, v1's 120 s).
    pub staging_timeout: Option<std::time::Duration>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            runbook: PathBuf::new(),
            profile: Profile::Fast,
            target: None,
            faults: Faults::default(),
            reset: false,
            replay: None,
            progress: false,
            services: crate::config::ServicesMode::Auto,
            dashboard: false,
            inline: None,
            exec: exec::ExecOptions::default(),
            record: None,
            staging_cache: None,
            staging_timeout: None,
        }
    }
}

/// Why a rehearsal could not run at all (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum RehearseError {
    #[error(transparent)]
    Runbook(#[from] RunbookError),
    #[error("{0}")]
    Setup(String),
    /// The emulator did not do what the replayed schedule says, so it shows nothing.
    #[error("the replay diverged from the schedule: {0}")]
    Replay(String),
}

/// The user the rehearsal logs in as.
const USER: &str = "rehearsal@afemu.local";
const PASSWORD: &str = "rehearse";
/// At most this many offending requests are listed per expectation.
const OFFENDING_SHOWN: usize = 5;
/// How long the end of a run waits for each traffic host to be asked once more.
const LAST_LOOK: Duration = Duration::from_secs(5);

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

/// The faults as one `PUT /_afemu/faults` body each (the API takes one app per key).
fn fault_bodies(faults: &Faults) -> Vec<serde_json::Value> {
    let mut bodies = Vec::new();
    if let Some(delay) = faults.route_delay {
        bodies.push(json!({"route_delay": delay.to_string()}));
    }
    if faults.stop_hard {
        bodies.push(json!({"stop": "hard"}));
    }
    if faults.seed != 0 {
        bodies.push(json!({"seed": faults.seed}));
    }
    for (app, delay) in &faults.slow_start {
        bodies.push(
            json!({"slow_start": {"app": app, "delay": humantime::format_duration(*delay).to_string()}}),
        );
    }
    for app in &faults.fail_staging {
        bodies.push(json!({"fail_staging": {"app": app}}));
    }
    bodies
}

/// The faults in a phrase, for the report.
fn describe_faults(faults: &Faults) -> String {
    let mut parts = Vec::new();
    if let Some(delay) = faults.route_delay {
        parts.push(format!("route delay {delay}"));
    }
    if faults.stop_hard {
        parts.push("hard stops".into());
    }
    for (app, delay) in &faults.slow_start {
        parts.push(format!(
            "slow start {app} {}",
            humantime::format_duration(*delay)
        ));
    }
    for app in &faults.fail_staging {
        parts.push(format!("failing staging {app}"));
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// The runbook's lines as the rehearsal runs them, and what it has seen so far.
struct Run<'a> {
    oracle: Arc<Oracle>,
    runbook: &'a Runbook,
    home: &'a std::path::Path,
    poll: Duration,
    started: Instant,
    traffic: Option<Traffic>,
    traffic_hosts: Vec<String>,
    /// When each host's traffic began (µs since the epoch).
    traffic_from: BTreeMap<String, u64>,
    steps: Vec<StepReport>,
    /// The line of the first step that failed: nothing after it runs.
    failed: Option<usize>,
    progress: render::Progress,
    exec: exec::ExecOptions,
    /// The `af` steps of the `$` line just run, reported after it.
    script_steps: Vec<StepReport>,
    /// What each `$` line ran, by line.
    scripts: BTreeMap<usize, record::Script>,
}

impl Run<'_> {
    fn context(&self) -> (afemu_cli::Context, afemu_cli::Captured) {
        afemu_cli::Context::new(self.home)
            .with_cwd(self.runbook.dir.clone())
            .with_poll_interval(self.poll)
            .captured()
    }

    fn kind(&self, item: &Item) -> &'static str {
        match (&item.kind, self.traffic.is_some()) {
            (ItemKind::Exec(_), _) => "script",
            (ItemKind::Af(_), false) => "setup",
            (ItemKind::Af(_), true) => "step",
            _ => "directive",
        }
    }

    /// Begins a line's report.
    fn begin(&self, item: &Item) -> StepReport {
        self.progress.step(item.line, &item.text);
        StepReport {
            line: item.line,
            text: item.text.clone(),
            kind: self.kind(item).into(),
            started_ms: self.started.elapsed().as_secs_f64() * 1000.0,
            took_ms: 0.0,
            result: "ok".into(),
            output: String::new(),
            traffic: BTreeMap::new(),
        }
    }

    /// Runs one line; what it did goes into `step`.
    async fn perform(&mut self, item: &Item, step: &mut StepReport) {
        match &item.kind {
            ItemKind::Af(args) => {
                let (mut context, captured) = self.context();
                let status = afemu_cli::run(args, &mut context).await;
                step.output = captured.text();
                if status != 0 {
                    step.result = format!("failed (exit {status})");
                }
            }
            ItemKind::Exec(command) => {
                let login = exec::Login {
                    target: self.oracle.api_url(),
                    email: USER.into(),
                    password: PASSWORD.into(),
                };
                let finished = exec::run(
                    command,
                    &self.runbook.dir,
                    self.home,
                    &login,
                    &self.exec,
                    self.started,
                )
                .await;
                let finished = match finished {
                    Ok(finished) => finished,
                    Err(why) => {
                        step.result = format!("failed: {why}");
                        return;
                    }
                };
                step.output = finished.output;
                step.result = finished.result;
                let kind = if self.traffic.is_some() {
                    "step"
                } else {
                    "setup"
                };
                for invocation in &finished.invocations {
                    let at = invocation.started.as_secs_f64() * 1000.0;
                    self.script_steps.push(StepReport {
                        line: item.line,
                        text: invocation.text(),
                        kind: kind.into(),
                        started_ms: at,
                        took_ms: invocation
                            .ended
                            .map_or(0.0, |end| end.as_secs_f64() * 1000.0 - at),
                        result: invocation.result(),
                        output: invocation.output.clone(),
                        traffic: BTreeMap::new(),
                    });
                }
                self.scripts.insert(
                    item.line,
                    record::Script {
                        ended: self.started.elapsed(),
                        invocations: finished.invocations,
                    },
                );
            }
            ItemKind::Traffic { hosts, rate, write } => {
                // Traffic starts once the router knows every route change made so far.
                let limit = self.oracle.longest_route_delay().await + Duration::from_secs(5);
                if !self.oracle.settle(limit).await {
                    step.result = format!(
                        "failed: route changes still on their way after {}",
                        humantime::format_duration(limit)
                    );
                    return;
                }
                let fresh: Vec<&str> = hosts
                    .iter()
                    .filter(|h| !self.traffic_hosts.contains(h))
                    .map(String::as_str)
                    .collect();
                let now = now_us();
                for host in &fresh {
                    self.traffic_from.insert(host.to_string(), now);
                }
                self.traffic_hosts
                    .extend(fresh.iter().map(|h| h.to_string()));
                let router = self.oracle.router_addr();
                let more = match write {
                    // Writes go to their host even when it already has traffic.
                    Some(path) => hosts.iter().fold(None::<Traffic>, |all, host| {
                        let one = Traffic::writes(router, host, path, *rate);
                        Some(match all {
                            Some(all) => all.merge(one),
                            None => one,
                        })
                    }),
                    None => Some(Traffic::start(router, &fresh, Some(*rate))),
                };
                let Some(more) = more else { return };
                self.traffic = Some(match self.traffic.take() {
                    Some(running) => running.merge(more),
                    None => more,
                });
            }
            ItemKind::Wait(duration) => tokio::time::sleep(*duration).await,
            ItemKind::Await { until, timeout } => {
                if let Err(why) = self.await_until(until, *timeout).await {
                    step.result = format!(
                        "timed out after {}: {why}",
                        humantime::format_duration(*timeout)
                    );
                }
            }
            ItemKind::ExpectServedBy { .. }
            | ItemKind::ExpectNoDefaultErrorPage { .. }
            | ItemKind::ExpectWritesKept { .. } => {}
        }
    }

    /// Waits until what an `@await` waits for is observed: a request served as it says (sent
    /// after the await began), or, for not-served-by, the router's table without the app.
    /// On a timeout, says what was seen instead.
    async fn await_until(&self, until: &Await, timeout: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + timeout;
        let began = now_us();
        let (app, host) = (until.app(), until.host());
        if let Await::NotServedBy { .. } = until {
            // Looked at again whenever the routes change (or, over HTTP, every few ms).
            let mut events = self.oracle.local().map(|emu| emu.platform().route_events());
            loop {
                if let Some(events) = events.as_mut() {
                    events.borrow_and_update();
                }
                let routes = self.oracle.routes().await;
                let backends = routes.get(host).cloned().unwrap_or_default();
                if !backends.iter().any(|(a, _)| a == app) {
                    return Ok(());
                }
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    return Err(format!(
                        "the router still sends {host} to {app} ({} of its {} backends)",
                        backends.iter().filter(|(a, _)| a == app).count(),
                        backends.len()
                    ));
                }
                match events.as_mut() {
                    Some(events) => {
                        let _ = tokio::time::timeout(left, events.changed()).await;
                    }
                    None => tokio::time::sleep(Duration::from_millis(20).min(left)).await,
                }
            }
        }
        let version = match until {
            Await::NewVersion { .. } => match self.oracle.app_version(app).await {
                Some(version) => Some(version),
                None => return Err(format!("there is no app {app}")),
            },
            _ => None,
        };
        let mut since = self.oracle.last_seq().await;
        let mut seen: BTreeMap<String, u64> = BTreeMap::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let fresh = self
                .oracle
                .since(since, left.min(Duration::from_secs(1)))
                .await;
            if let Some(last) = fresh.last() {
                since = last.seq;
            }
            for request in fresh
                .iter()
                .filter(|r| r.host == host && r.start_us >= began)
            {
                let served =
                    !request.is_default_error_page() && request.app.as_deref() == Some(app);
                let current = version.is_none() || request.version == version;
                if served && current {
                    return Ok(());
                }
                let what = if request.is_default_error_page() {
                    "the default error page".to_owned()
                } else if served {
                    format!(
                        "{app} {}",
                        request.version.as_deref().unwrap_or("(an older version)")
                    )
                } else {
                    request.app.clone().unwrap_or_else(|| "nothing".into())
                };
                *seen.entry(what).or_default() += 1;
            }
        }
        let wanted = match &version {
            Some(version) => format!("{app}'s version {version}"),
            None => app.to_owned(),
        };
        if seen.is_empty() {
            return Err(format!("no request to {host} was answered while it waited"));
        }
        let total: u64 = seen.values().sum();
        let shares: Vec<String> = seen.iter().map(|(what, n)| format!("{what} {n}")).collect();
        Err(format!(
            "none of the {total} requests to {host} was served by {wanted}: {}",
            shares.join(", ")
        ))
    }

    /// Runs a line and records it (or records it as not run, after a failure).
    async fn run_line(&mut self, item: &Item) {
        if matches!(
            item.kind,
            ItemKind::ExpectServedBy { .. }
                | ItemKind::ExpectNoDefaultErrorPage { .. }
                | ItemKind::ExpectWritesKept { .. }
        ) {
            return;
        }
        let mut step = self.begin(item);
        if self.failed.is_some() {
            step.result = "not run".into();
            self.steps.push(step);
            return;
        }
        // On the emulator's timeline: the dashboard shows where the rehearsal is.
        self.oracle
            .mark_step(serde_json::json!({"line": item.line, "text": item.text}))
            .await;
        let began = self.started.elapsed();
        self.perform(item, &mut step).await;
        step.took_ms = (self.started.elapsed() - began).as_secs_f64() * 1000.0;
        if step.result != "ok" {
            self.failed = Some(item.line);
        }
        self.steps.push(step);
        self.steps.append(&mut self.script_steps);
    }
}

/// Runs a rehearsal and returns its report.
pub async fn rehearse(options: &Options) -> Result<Report, RehearseError> {
    rehearse_keeping(options).await.map(|(report, _)| report)
}

/// [`rehearse`], handing back the emulator it started (none with `--target`), still running:
/// `afemu rehearse --dashboard` keeps it up for the dashboard after the report.
pub async fn rehearse_keeping(
    options: &Options,
) -> Result<(Report, Option<Emulator>), RehearseError> {
    let runbook = match &options.inline {
        Some(text) => Runbook::parse(
            text,
            &options.runbook.display().to_string(),
            std::env::current_dir().map_err(|e| RehearseError::Setup(e.to_string()))?,
        )?,
        None => Runbook::load(&options.runbook)?,
    };
    let mut faults = options.faults.clone();
    if let Some(schedule) = &options.replay {
        if options.target.is_some() {
            return Err(RehearseError::Setup(
                "--replay holds and releases route changes inside the emulator it starts; it \
                 cannot be combined with --target"
                    .into(),
            ));
        }
        replay::check_fits(schedule, &runbook)?;
        faults.route_delay = match &schedule.route_delay {
            Some(delay) => Some(delay.parse().map_err(|e| {
                RehearseError::Setup(format!("the schedule's route delay {delay:?}: {e}"))
            })?),
            None => None,
        };
        faults.stop_hard = schedule.stop_hard;
    }
    let oracle = match &options.target {
        None => Oracle::Local(Box::new(
            Emulator::builder()
                .profile(options.profile)
                .faults(faults.clone())
                .seed(faults.seed)
                .configure(|config| {
                    config.services = options.services;
                    config.staging_cache = options.staging_cache.clone();
                    if let Some(timeout) = options.staging_timeout {
                        config.timing.staging_timeout = timeout;
                    }
                })
                .start()
                .await
                .map_err(|e| RehearseError::Setup(format!("cannot start the emulator: {e}")))?,
        )),
        Some((api, router)) => {
            let oracle = Oracle::remote(api, router, options.reset).await?;
            for body in fault_bodies(&faults) {
                oracle.apply_faults(&body).await?;
            }
            oracle
        }
    };
    if options.replay.is_some()
        && let Some(emu) = oracle.local()
    {
        emu.platform().hold_routes(true);
    }
    if options.dashboard {
        eprintln!(
            "afemu rehearse: watch it live at {}/_afemu/",
            match oracle.local() {
                Some(emu) => emu.api_url(),
                None => oracle.api_url(),
            }
        );
    }
    let oracle = Arc::new(oracle);

    // af, as a library, in a home of its own, targeting the emulator and logged in.
    let home = tempfile::tempdir().map_err(|e| RehearseError::Setup(e.to_string()))?;
    let poll = match options.profile {
        Profile::Instant => Duration::from_millis(10),
        Profile::Fast => Duration::from_millis(50),
        Profile::Realistic => Duration::from_secs(1),
    };
    for args in [
        vec!["target".to_owned(), oracle.api_url()],
        ["login", "--email", USER, "--passwd", PASSWORD]
            .map(String::from)
            .to_vec(),
    ] {
        let (mut context, captured) = afemu_cli::Context::new(home.path()).captured();
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

    let mut run = Run {
        oracle: oracle.clone(),
        runbook: &runbook,
        home: home.path(),
        poll,
        started,
        traffic: None,
        traffic_hosts: Vec::new(),
        traffic_from: BTreeMap::new(),
        steps: Vec::new(),
        failed: None,
        progress: progress.clone(),
        exec: options.exec.clone(),
        script_steps: Vec::new(),
        scripts: BTreeMap::new(),
    };
    let mut next_item = 0;
    let mut replayed = None;
    if let (Some(schedule), Some(emu)) = (&options.replay, oracle.local()) {
        let outcome = replay::replay(&mut run, emu, schedule).await;
        // Whatever happened, the routes flow again and the rest of the run goes on as usual.
        emu.platform().hold_routes(false);
        let (done, seen) = outcome?;
        next_item = done;
        replayed = Some(seen);
    }
    for item in &runbook.items[next_item..] {
        run.run_line(item).await;
    }

    // The end: every route change lands, then every traffic host is asked once more.
    let end_started = run.started.elapsed();
    let settle_limit = oracle.longest_route_delay().await + Duration::from_secs(5);
    let settled = run.failed.is_some() || oracle.settle(settle_limit).await;
    let end_us = now_us();
    let final_routes = oracle.routes().await;
    let last_look = last_look(&oracle, &run.traffic_hosts, &final_routes, end_us).await;
    run.steps.push(StepReport {
        line: 0,
        text: "(end: every route change landed)".into(),
        kind: "end".into(),
        started_ms: end_started.as_secs_f64() * 1000.0,
        took_ms: (run.started.elapsed() - end_started).as_secs_f64() * 1000.0,
        result: if settled {
            "ok".into()
        } else {
            format!(
                "failed: route changes still on their way after {}",
                humantime::format_duration(settle_limit)
            )
        },
        output: String::new(),
        traffic: BTreeMap::new(),
    });
    let tallies = match run.traffic.take() {
        Some(traffic) => traffic.stop().await,
        None => BTreeMap::new(),
    };
    // What the app kept of the writes it acknowledged, read once every write has been answered.
    let mut kept_reads = BTreeMap::new();
    for item in &runbook.items {
        if let ItemKind::ExpectWritesKept { host, path } = &item.kind
            && run.failed.is_none()
        {
            kept_reads.insert(item.line, oracle.read(host, path).await);
        }
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
    let duration_ms = run.started.elapsed().as_secs_f64() * 1000.0;

    let mut requests: Vec<Request> =
        std::mem::take(&mut collected.lock().unwrap_or_else(|e| e.into_inner()).requests);
    requests.sort_by_key(|r| r.seq);
    requests.dedup_by_key(|r| r.seq);
    let Run {
        traffic_hosts,
        traffic_from,
        mut steps,
        failed,
        oracle: run_oracle,
        scripts,
        ..
    } = run;
    // The run's hold on the emulator ends here (it may be handed back below).
    drop(run_oracle);
    let watched = runbook.watched_hosts();
    let relevant: Vec<&Request> = requests
        .iter()
        .filter(|r| watched.contains(&r.host) || traffic_hosts.contains(&r.host))
        .collect();

    // Each request belongs to the line during which it was sent.
    let step_starts_us: Vec<u64> = steps
        .iter()
        .map(|s| started_us + (s.started_ms * 1000.0) as u64)
        .collect();
    let step_of =
        |at_us: u64| -> Option<usize> { step_starts_us.iter().rposition(|s| *s <= at_us) };
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

    let failed_step = failed.and_then(|line| steps.iter().find(|s| s.line == line).cloned());
    let verdicts = Verdicts {
        steps: &steps,
        step_of: &step_of,
        started_us,
        failed_step: failed_step.as_ref(),
    };
    let mut expectations = Vec::new();
    for host in &watched {
        let line = runbook.items.iter().find_map(|item| match &item.kind {
            ItemKind::ExpectNoDefaultErrorPage { hosts } if hosts.contains(host) => Some(item.line),
            _ => None,
        });
        let window: Vec<&Request> = relevant
            .iter()
            .copied()
            .filter(|r| &r.host == host)
            .collect();
        expectations.push(verdicts.no_default_error_page(
            host,
            line,
            traffic_from.contains_key(host),
            &window,
        ));
    }
    for item in &runbook.items {
        if let ItemKind::ExpectServedBy { app, host } = &item.kind {
            let window: Vec<&Request> = relevant
                .iter()
                .copied()
                .filter(|r| &r.host == host && r.start_us >= end_us)
                .collect();
            let table: Vec<String> = final_routes
                .get(host)
                .map(|b| b.iter().map(|(a, _)| a.clone()).collect())
                .unwrap_or_default();
            expectations.push(verdicts.served_by(
                item.line,
                app,
                host,
                traffic_from.contains_key(host),
                &window,
                &table,
                last_look.get(host).copied().unwrap_or(false),
            ));
        }
    }
    for item in &runbook.items {
        if let ItemKind::ExpectWritesKept { host, path } = &item.kind {
            let acknowledged = tallies
                .get(host)
                .map(|t| t.acknowledged.as_slice())
                .unwrap_or_default();
            expectations.push(verdicts.writes_kept(
                item.line,
                host,
                path,
                acknowledged,
                kept_reads.get(&item.line),
            ));
        }
    }
    // The af steps a command ran may fail without failing it (a loop polling `af stats`): a
    // command fails by its own exit status.
    for step in steps
        .iter()
        .filter(|s| s.result.starts_with("failed") || s.result.starts_with("timed out"))
    {
        expectations.push(Expectation {
            name: if step.line == 0 {
                step.text.clone()
            } else {
                format!("line {}: {}", step.line, step.text)
            },
            line: Some(step.line).filter(|l| *l > 0),
            outcome: Outcome::Failed,
            detail: if step.output.trim().is_empty() {
                step.result.clone()
            } else {
                format!("{}: {}", step.result, step.output.trim())
            },
            offending: Vec::new(),
        });
    }
    // What the commands ran, as a runbook: checked under every schedule, written out if asked.
    if !scripts.is_empty() {
        let recorded = record::runbook(&runbook, &scripts, &options.runbook);
        if let Some(path) = &options.record {
            std::fs::write(path, &recorded.text).map_err(|e| {
                RehearseError::Setup(format!("cannot write {}: {e}", path.display()))
            })?;
        }
        expectations.push(record::check(&recorded, &faults, failed.is_some()));
    }
    let passed = expectations.iter().all(|e| e.outcome == Outcome::Held);
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
    let kept = match Arc::try_unwrap(oracle) {
        Ok(Oracle::Local(emu)) => Some(*emu),
        _ => None,
    };
    let report = Report {
        runbook: options.runbook.display().to_string(),
        profile: options.profile.name().into(),
        faults: describe_faults(&faults),
        replayed,
        started_us,
        duration_ms,
        hosts: traffic_hosts,
        steps,
        expectations,
        requests: timeline,
        totals,
        passed,
        verdict,
    };
    Ok((report, kept))
}

/// After the last line and the settling: waits until each traffic host has been asked again, at
/// least once per backend the router lists for it (round-robin then reaches each of them), with
/// requests sent after `from`; says, per host, whether it was.
async fn last_look(
    oracle: &Oracle,
    hosts: &[String],
    routes: &BTreeMap<String, oracle::Backends>,
    from: u64,
) -> BTreeMap<String, bool> {
    let mut wanted: BTreeMap<String, usize> = hosts
        .iter()
        .map(|h| (h.clone(), routes.get(h).map_or(1, |b| b.len().max(1))))
        .collect();
    let deadline = tokio::time::Instant::now() + LAST_LOOK;
    let mut since = oracle.last_seq().await;
    while wanted.values().any(|n| *n > 0) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        let fresh = oracle
            .since(since, left.min(Duration::from_millis(500)))
            .await;
        if let Some(last) = fresh.last() {
            since = last.seq;
        }
        for request in fresh.iter().filter(|r| r.start_us >= from) {
            if let Some(left) = wanted.get_mut(&request.host) {
                *left = left.saturating_sub(1);
            }
        }
    }
    wanted
        .into_iter()
        .map(|(host, left)| (host, left == 0))
        .collect()
}

/// Judges the expectations from the requests.
struct Verdicts<'a> {
    steps: &'a [StepReport],
    step_of: &'a dyn Fn(u64) -> Option<usize>,
    started_us: u64,
    failed_step: Option<&'a StepReport>,
}

impl Verdicts<'_> {
    fn offending(&self, requests: &[&Request]) -> Vec<Offending> {
        requests
            .iter()
            .filter(|r| r.is_default_error_page())
            .take(OFFENDING_SHOWN)
            .map(|r| {
                let index = (self.step_of)(r.start_us);
                let step = index.and_then(|i| self.steps.get(i));
                let after = index
                    .filter(|_| step.is_some_and(|s| s.kind == "directive" || s.kind == "end"))
                    .and_then(|i| {
                        self.steps[..i]
                            .iter()
                            .rev()
                            .find(|s| s.kind == "step" || s.kind == "setup")
                    })
                    .map(|s| format!("line {}: {}", s.line, s.text));
                Offending {
                    at_ms: ms_since(self.started_us, r.start_us),
                    host: r.host.clone(),
                    path: r.path.clone(),
                    status: r.status,
                    router_error: r.router_error.clone(),
                    step_line: step.map_or(0, |s| s.line),
                    step: step.map_or_else(String::new, |s| s.text.clone()),
                    after,
                }
            })
            .collect()
    }

    fn not_run(&self) -> Option<String> {
        self.failed_step.map(|step| {
            format!(
                "not evaluated: line {} ({}) {}, so the rest of the run did not happen",
                step.line, step.text, step.result
            )
        })
    }

    fn no_default_error_page(
        &self,
        host: &str,
        line: Option<usize>,
        has_traffic: bool,
        window: &[&Request],
    ) -> Expectation {
        let name = format!("no-default-error-page {host}");
        let offending = self.offending(window);
        let errors = window.iter().filter(|r| r.is_default_error_page()).count();
        let (outcome, detail) = if !has_traffic {
            (
                Outcome::Failed,
                format!("{host} got no traffic (no @traffic names it): nothing was observed"),
            )
        } else if let Some(first) = offending.first() {
            (
                Outcome::Failed,
                format!(
                    "{errors} of {} requests to {host} saw the default error page ({}), the first at {:.0} ms, sent during line {} ({}){}",
                    window.len(),
                    error_kinds(window),
                    first.at_ms,
                    first.step_line,
                    first.step,
                    first
                        .after
                        .as_ref()
                        .map_or_else(String::new, |after| format!(", after {after}"))
                ),
            )
        } else if window.is_empty() {
            (
                Outcome::Failed,
                format!("no request to {host} was answered: nothing was observed"),
            )
        } else if let Some(why) = self.not_run() {
            (Outcome::NotEvaluated, why)
        } else {
            (
                Outcome::Held,
                format!(
                    "none of the {} to {host} saw the default error page",
                    plural(window.len(), "request")
                ),
            )
        };
        Expectation {
            name,
            line,
            outcome,
            detail,
            offending,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn served_by(
        &self,
        line: usize,
        app: &str,
        host: &str,
        has_traffic: bool,
        window: &[&Request],
        table: &[String],
        asked_again: bool,
    ) -> Expectation {
        let name = format!("served-by {app} {host}");
        let shares = report::shares(window.iter().copied());
        let mut listed: Vec<&str> = table.iter().map(String::as_str).collect();
        listed.sort();
        listed.dedup();
        let (outcome, detail) = if let Some(why) = self.not_run() {
            (Outcome::NotEvaluated, why)
        } else if !has_traffic {
            (
                Outcome::Failed,
                format!("{host} got no traffic (no @traffic names it): nothing was observed"),
            )
        } else if window.is_empty() || !asked_again {
            (
                Outcome::Failed,
                format!(
                    "no request to {host} was answered once every route change had landed: nothing was observed"
                ),
            )
        } else if listed == [app] && window.iter().all(|r| r.served_by(app)) {
            (
                Outcome::Held,
                format!(
                    "at the end {host} is served only by {app} ({} sent once every route change had landed)",
                    plural(window.len(), "request")
                ),
            )
        } else {
            let router = if listed.is_empty() {
                "no backend".to_owned()
            } else {
                listed.join(" and ")
            };
            (
                Outcome::Failed,
                format!(
                    "at the end {host} was answered by {shares} (of {} sent once every route change had landed); the router's table lists {router}",
                    plural(window.len(), "request")
                ),
            )
        };
        Expectation {
            name,
            line: Some(line),
            outcome,
            detail,
            offending: self.offending(window),
        }
    }
}

impl Verdicts<'_> {
    /// `@expect writes-kept HOST PATH`: what a GET of PATH answered at the end lists every write
    /// to HOST the app acknowledged (as a word of its own: keys are `w<n>-<nnnnnn>`).
    fn writes_kept(
        &self,
        line: usize,
        host: &str,
        path: &str,
        acknowledged: &[String],
        read: Option<&Result<(u16, String), String>>,
    ) -> Expectation {
        let name = format!("writes-kept {host}");
        let (outcome, detail) = if let Some(why) = self.not_run() {
            (Outcome::NotEvaluated, why)
        } else if acknowledged.is_empty() {
            (
                Outcome::Failed,
                format!("no write to {host} was acknowledged: nothing was observed"),
            )
        } else {
            match read {
                None => (
                    Outcome::NotEvaluated,
                    format!("not evaluated: {path} was not read"),
                ),
                Some(Err(error)) => (
                    Outcome::Failed,
                    format!("GET {path} on {host} at the end failed: {error}"),
                ),
                Some(Ok((status, _))) if !(200..300).contains(status) => (
                    Outcome::Failed,
                    format!("GET {path} on {host} at the end answered {status}"),
                ),
                Some(Ok((_, body))) => {
                    let words: std::collections::BTreeSet<&str> = body
                        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                        .filter(|w| !w.is_empty())
                        .collect();
                    let lost: Vec<&String> = acknowledged
                        .iter()
                        .filter(|k| !words.contains(k.as_str()))
                        .collect();
                    if lost.is_empty() {
                        (
                            Outcome::Held,
                            format!(
                                "all {} acknowledged by the app are listed by GET {path}",
                                plural(acknowledged.len(), "write")
                            ),
                        )
                    } else {
                        let shown: Vec<&str> = lost.iter().take(5).map(|k| k.as_str()).collect();
                        (
                            Outcome::Failed,
                            format!(
                                "{} of the {} acknowledged by the app are missing from GET {path} (first: {})",
                                lost.len(),
                                plural(acknowledged.len(), "write"),
                                shown.join(", ")
                            ),
                        )
                    }
                }
            }
        };
        Expectation {
            name,
            line: Some(line),
            outcome,
            detail,
            offending: Vec::new(),
        }
    }
}

/// `1 request`, `3 requests`.
fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// `404 no-route ×3, 502 bad-gateway ×1`.
fn error_kinds(requests: &[&Request]) -> String {
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    for request in requests.iter().filter(|r| r.is_default_error_page()) {
        *kinds
            .entry(format!(
                "{} {}",
                request.status,
                request.router_error.as_deref().unwrap_or("")
            ))
            .or_default() += 1;
    }
    kinds
        .iter()
        .map(|(kind, n)| format!("{kind} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
