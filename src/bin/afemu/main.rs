//! `afemu`: run the emulator. Parses flags, sets up logging (`RUST_LOG`), binds the listeners and
//! hands them to the library; the first signal (SIGINT/SIGTERM) shuts down gracefully. The
//! commands that drive a running emulator (`status`, `fault`, `journal`, …) are in `remote/`.

mod remote;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use afemu_emulator::{Platform, ServeArgs};

/// A local emulator of AppFog v1: control plane, app runtime and router.
#[derive(Debug, Parser)]
#[command(name = "afemu", version, about, long_about = None, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

const AFTER_HELP: &str = "\
Example: afemu serve   (then, in another terminal: afemu status)
         afemu --version";

/// What `afemu` alone prints: where to start.
const START_HERE: &str = "\
afemu: a local emulator of AppFog v1. Start here:

  afemu serve                 run the v1 API (http://127.0.0.1:9022) and the router (:9080)
      e.g. afemu serve --profile instant
  afemu rehearse RUNBOOK      rehearse a procedure for real, with traffic, and report what visitors saw
      e.g. afemu rehearse fixtures/runbooks/seed-001-swap.runbook
  afemu check RUNBOOK         prove or refute a procedure on the model, under every schedule
      e.g. afemu check --route-delay 0..50ms fixtures/runbooks/seed-001-swap.runbook

With one running: afemu status, routes, journal, fault, reset, state, wait.
`afemu --help` lists every command, `afemu COMMAND --help` its flags.
";

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane (the v1 API af talks to) and the router, until SIGINT or SIGTERM.
    #[command(after_help = "Example: afemu serve --profile instant --route-delay 0..50ms")]
    Serve(Box<ServeArgs>),
    /// Rehearse a runbook for real: an emulator, the af steps, traffic on the runbook's hosts, and
    /// a report of what every visitor saw. Exit 0 when every expectation holds, 1 when one
    /// fails, 2 for a runbook or usage error.
    #[command(
        after_help = "Example: afemu rehearse fixtures/runbooks/seed-001-swap.runbook --html report.html"
    )]
    Rehearse(Box<RehearseArgs>),
    /// Prove or refute a runbook on the model, without wall-clock luck: every moment a request
    /// can arrive, and (with --route-delay) every order and time route changes can reach the
    /// router in. Exit 0 when every expectation holds in every schedule, 1 with the shortest
    /// schedule that breaks one, 2 for a runbook error.
    #[command(after_help = CHECK_EXAMPLE)]
    Check(CheckArgs),
    /// A running emulator at a glance: its apps (state, instances running of wanted, URIs), its
    /// routes and the faults in force.
    Status(remote::status::StatusArgs),
    /// A running emulator's route table: each host and the app instances it is sent to.
    Routes(remote::status::RoutesArgs),
    /// What every request through the router saw (one line each: time, status, host and path,
    /// who answered or the router's error, how long), and the platform's events.
    Journal(remote::journal::JournalArgs),
    /// Show the faults in force, or set and clear one: route-delay, crash, hang, slow-start,
    /// fail-staging, stop, seed.
    Fault(remote::fault::FaultCommand),
    /// A clean slate: every app, user and service of the running emulator gone, the journal
    /// emptied (faults stay).
    Reset(remote::state::ResetArgs),
    /// Export everything set up to a file, or import it back.
    State(remote::state::StateCommand),
    /// Wait until the emulator answers healthy (exit 1 if it does not in time): for scripts that
    /// run `afemu serve &`.
    Wait(remote::state::WaitArgs),
}

const CHECK_EXAMPLE: &str =
    "Example: afemu check --route-delay 0..50ms fixtures/runbooks/seed-001-swap.runbook";

#[derive(Debug, clap::Args)]
struct RehearseArgs {
    /// The runbook: af command lines, `$ command` lines and @ directives (paths in it are
    /// relative to its folder).
    #[arg(required_unless_present = "exec", conflicts_with = "exec")]
    runbook: Option<std::path::PathBuf>,
    /// Rehearse this shell command (a deploy script, unchanged) instead of a runbook: it runs
    /// with an af on its PATH that is targeted at the emulator and logged in, and each af it
    /// runs is a step of the report. E.g. --exec ./deploy.sh --traffic www.example.com
    #[arg(long, value_name = "COMMAND", requires = "traffic")]
    exec: Option<String>,
    /// With --exec: a command run before the traffic starts (the apps as they are before the
    /// deploy); may be given more than once.
    #[arg(long, value_name = "COMMAND", requires = "exec")]
    setup: Vec<String>,
    /// With --exec: the hosts that get steady traffic from the start, comma-separated.
    #[arg(
        long,
        value_name = "HOST[,HOST…]",
        value_delimiter = ',',
        requires = "exec"
    )]
    traffic: Vec<String>,
    /// With --exec: requests per second to each traffic host (default 100).
    #[arg(long, value_name = "N/s", requires = "exec")]
    rate: Option<String>,
    /// With --exec: an expectation, as after @expect in a runbook (e.g. 'served-by example2
    /// example.com'); may be given more than once. Every traffic host is watched in any case.
    #[arg(long, value_name = "EXPECTATION", requires = "exec")]
    expect: Vec<String>,
    /// The af client the commands run (e.g. AppFog's af 0.3.22); by default afemu's own. Each
    /// invocation is recorded the same way either way.
    #[arg(long = "af", value_name = "PATH")]
    af: Option<std::path::PathBuf>,
    /// Write the af commands the commands ran, with the pauses between them, here as a runbook
    /// (the report checks that sequence under every schedule in any case).
    #[arg(long, value_name = "FILE")]
    record: Option<std::path::PathBuf>,
    /// How long one command (--exec, --setup or a `$` line) may run before it is stopped.
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
    /// How long staging, boot and the rest take in the emulator started for the rehearsal.
    #[arg(long, env = "AFEMU_PROFILE", value_enum, default_value = "fast")]
    profile: afemu_emulator::Profile,
    /// Rehearse against a running emulator's API (e.g. http://localhost:9022) instead of
    /// starting one; needs --router too.
    #[arg(long, requires = "router")]
    target: Option<String>,
    /// The running emulator's router (e.g. http://127.0.0.1:9080).
    #[arg(long, requires = "target")]
    router: Option<String>,
    /// Write the whole report as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Write a JUnit report here (a test case per expectation), for CI.
    #[arg(long)]
    junit: Option<std::path::PathBuf>,
    /// Write a self-contained HTML page with the timeline here.
    #[arg(long)]
    html: Option<std::path::PathBuf>,
    /// With --target: reset the running emulator first (one that already holds apps is refused,
    /// since what the rehearsal saw would depend on them).
    #[arg(long, requires = "target")]
    reset: bool,
    /// Make a counter-example of `afemu check --schedule` happen: every route change is held and
    /// released in the schedule's order (its route delay and stop mode apply).
    #[arg(long, value_name = "SCHEDULE", conflicts_with = "target")]
    replay: Option<std::path::PathBuf>,
    /// Print the dashboard's URL at once to watch the rehearsal live; the emulator the rehearsal
    /// started then stays up after the report until Ctrl-C.
    #[arg(long, visible_alias = "open")]
    dashboard: bool,
    /// Services in the emulator the rehearsal starts: real databases where their servers are
    /// installed (auto), always (real), or never (records: made-up credentials). With --target,
    /// the running emulator's own setting holds.
    #[arg(long, env = "AFEMU_SERVICES", value_enum, default_value = "auto")]
    services: afemu_emulator::ServicesMode,
    /// Where the emulator the rehearsal starts keeps npm's, pip's and Bundler's caches when it
    /// stages apps, so that rehearsals in a row reuse them [default: one in its temporary data
    /// directory].
    #[arg(long, env = "AFEMU_STAGING_CACHE", value_name = "DIR")]
    staging_cache: Option<std::path::PathBuf>,
    /// How long staging may take in the emulator the rehearsal starts [default: 120s, as v1].
    #[arg(long, env = "AFEMU_STAGING_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    staging_timeout: Option<std::time::Duration>,
    /// The faults of the emulator the rehearsal starts (with --target, applied to the running
    /// one through /_afemu/faults).
    #[command(flatten)]
    faults: afemu_emulator::FaultArgs,
}

#[derive(Debug, clap::Args)]
#[command(after_long_help = CHECK_SEMANTICS)]
struct CheckArgs {
    /// The runbook: af command lines and @ directives.
    runbook: std::path::PathBuf,
    /// Route changes reach the router between MIN and MAX after they are published, as v1's
    /// NATS delivered them (e.g. 0..50ms): in order per app, in any order across apps.
    #[arg(long, env = "AFEMU_ROUTE_DELAY", value_name = "MIN..MAX")]
    route_delay: Option<afemu_emulator::RouteDelay>,
    /// How a stop treats the instances it stops: drain them (afemu's default: the router lets go
    /// of them first) or kill them at once, as v1 did.
    #[arg(long, env = "AFEMU_STOP", value_parser = ["drain", "hard"], default_value = "drain")]
    stop: String,
    /// Write the shortest counter-example here as a schedule that `afemu rehearse --replay`
    /// makes happen for real.
    #[arg(long, value_name = "FILE")]
    schedule: Option<std::path::PathBuf>,
    /// Write the whole report as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
}

/// `afemu check --help`: the timed semantics, in short.
const CHECK_SEMANTICS: &str = "\
Example: afemu check --route-delay 0..50ms fixtures/runbooks/seed-001-swap.runbook

What check assumes (docs/RUNBOOKS.md is the whole reference):
  - an af step takes any time, zero included, and publishes its route changes in order as it
    runs; a step that stops instances goes on only once the router has let go of them (afemu's
    drain), or kills them at once with --stop hard;
  - with --route-delay MIN..MAX a route change reaches the router between MIN and MAX after it
    is published: in order per app, in any order across apps that time allows; a change due at
    the moment a line would begin lands first;
  - @wait D lets at least D pass, so waits that add up to MAX settle every change made before
    them; @await ends once what it waits for holds; @traffic starts once every route change so
    far has landed, and its hosts are watched from then to the end of the run;
  - @expect served-by is judged at the end, once every route change has landed.
Every schedule these rules allow is explored; each failure comes with a shortest schedule that
shows it.";

fn main() -> ExitCode {
    // Called as `af` (a link to afemu, as `afemu rehearse` puts on a command's PATH): AppFog's
    // client, recording each invocation for the rehearsal when it runs under one.
    if std::env::args_os()
        .next()
        .is_some_and(|arg0| std::path::Path::new(&arg0).file_name() == Some("af".as_ref()))
    {
        return afemu_emulator::procedure::rehearse::exec::af_main();
    }
    let cli = Cli::parse();
    let Some(command) = cli.command else {
        eprint!("{START_HERE}");
        return ExitCode::from(2);
    };
    if let Command::Check(args) = &command {
        return check(args);
    }
    // A server says what it does; a report command only what goes wrong.
    let default_filter = match command {
        Command::Serve(_) => "warn,afemu=info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        // A log nobody reads any more (a closed pipe) must not stop afemu: tracing's own
        // complaint about it would panic in eprintln!, here in the task that shuts afemu down.
        .log_internal_errors(false)
        // Colours only for a person: none in a file, a pipe or CI's log.
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
    // The router is the busiest part: its tasks poll briefly and are woken by I/O, so the
    // worker looks for I/O events every 16 task polls rather than tokio's default 61. Interleaved
    // bench runs (docs/PERFORMANCE.md): p99 at 32 connections 0.82x nginx's against 1.01x, with
    // the same throughput and CPU per request.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .event_interval(16)
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("afemu: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        use remote::finish;
        match command {
            Command::Serve(args) => serve(*args).await,
            Command::Rehearse(args) => return Ok(rehearse(*args).await),
            Command::Check(_) => unreachable!("checked above"),
            Command::Status(args) => {
                return Ok(finish("status", remote::status::status(&args).await));
            }
            Command::Routes(args) => {
                return Ok(finish("routes", remote::status::routes(&args).await));
            }
            Command::Journal(args) => {
                return Ok(finish("journal", remote::journal::journal(&args).await));
            }
            Command::Fault(args) => return Ok(finish("fault", remote::fault::fault(&args).await)),
            Command::Reset(args) => return Ok(finish("reset", remote::state::reset(&args).await)),
            Command::State(args) => return Ok(finish("state", remote::state::state(&args).await)),
            Command::Wait(args) => return Ok(finish("wait", remote::state::wait(&args).await)),
        }
        .map(|()| ExitCode::SUCCESS)
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("afemu: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `afemu rehearse`: runs it, prints the report, writes the files asked for.
async fn rehearse(args: RehearseArgs) -> ExitCode {
    use afemu_emulator::procedure::rehearse::{self, Options, RehearseError, render};
    let replay = match &args.replay {
        None => None,
        Some(path) => {
            let read = std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()));
            match read {
                Ok(schedule) => Some(schedule),
                Err(error) => {
                    eprintln!(
                        "afemu rehearse: --replay {}: not a schedule of afemu check: {error}",
                        path.display()
                    );
                    return ExitCode::from(2);
                }
            }
        }
    };
    let (runbook, inline) = match exec_runbook(&args) {
        Ok(made) => made,
        Err(error) => {
            eprintln!("afemu rehearse: {error}");
            return ExitCode::from(2);
        }
    };
    let wrapper = match std::env::current_exe() {
        Ok(exe) => Some(exe),
        Err(error) => {
            eprintln!("afemu rehearse: cannot find the afemu executable: {error}");
            return ExitCode::from(2);
        }
    };
    // Absolute: a command may `cd` before it runs af.
    let client = match args.af.as_ref().map(std::fs::canonicalize).transpose() {
        Ok(client) => client,
        Err(error) => {
            let given = args
                .af
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            eprintln!("afemu rehearse: --af {given}: {error} (give the client's path)");
            return ExitCode::from(2);
        }
    };
    let options = Options {
        runbook,
        inline,
        profile: args.profile,
        target: args.target.clone().zip(args.router.clone()),
        faults: args.faults.to_faults(),
        reset: args.reset,
        replay,
        progress: std::io::stderr().is_terminal(),
        services: args.services,
        dashboard: args.dashboard,
        exec: rehearse::exec::ExecOptions {
            wrapper,
            client,
            timeout: args.timeout,
        },
        record: args.record.clone(),
        staging_cache: args.staging_cache.clone(),
        staging_timeout: args.staging_timeout,
    };
    let (report, kept) = match rehearse::rehearse_keeping(&options).await {
        Ok(done) => done,
        Err(RehearseError::Runbook(error)) => {
            eprintln!("afemu rehearse: {error}");
            return ExitCode::from(2);
        }
        Err(error) => {
            eprintln!("afemu rehearse: {error}");
            return ExitCode::from(2);
        }
    };
    print!("{}", render::terminal(&report, render::Terminal::stdout()));
    let outputs: [(&Option<std::path::PathBuf>, &dyn Fn() -> String); 3] = [
        (&args.json, &|| {
            serde_json::to_string_pretty(&report).unwrap_or_default()
        }),
        (&args.junit, &|| render::junit(&report)),
        (&args.html, &|| render::html(&report)),
    ];
    for (path, content) in outputs {
        if let Some(path) = path
            && let Err(error) = std::fs::write(path, content())
        {
            eprintln!("afemu rehearse: cannot write {}: {error}", path.display());
            return ExitCode::from(2);
        }
    }
    if args.dashboard
        && let Some(emu) = kept
    {
        // Listening for Ctrl-C before saying it stops the emulator.
        let stop = CancellationToken::new();
        tokio::spawn(cancel_on_signal(signals(), stop.clone()));
        eprintln!(
            "afemu rehearse: the emulator stays up for the dashboard at {}/_afemu/ (api {}, router {}); Ctrl-C to stop",
            emu.api_url(),
            emu.api_url(),
            emu.router_url()
        );
        stop.cancelled().await;
        emu.shutdown().await;
    }
    if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The runbook to rehearse: the file, or for `--exec` one made of the flags (its name, its text).
fn exec_runbook(args: &RehearseArgs) -> Result<(std::path::PathBuf, Option<String>), String> {
    let Some(command) = &args.exec else {
        return Ok((args.runbook.clone().unwrap_or_default(), None));
    };
    let one_line = |what: &str, value: &str| {
        if value.contains(['\n', '\r']) {
            Err(format!("{what} must be one line: {value:?}"))
        } else {
            Ok(())
        }
    };
    let mut text = String::new();
    for setup in &args.setup {
        one_line("--setup", setup)?;
        text.push_str(&format!("$ {setup}\n"));
    }
    text.push_str("@traffic");
    for host in &args.traffic {
        one_line("--traffic", host)?;
        text.push(' ');
        text.push_str(host);
    }
    if let Some(rate) = &args.rate {
        one_line("--rate", rate)?;
        let rate = rate.trim();
        let rate = if rate.ends_with("/s") {
            rate.to_owned()
        } else {
            format!("{rate}/s")
        };
        text.push_str(&format!(" rate={rate}"));
    }
    text.push('\n');
    one_line("--exec", command)?;
    text.push_str(&format!("$ {command}\n"));
    for expectation in &args.expect {
        one_line("--expect", expectation)?;
        text.push_str(&format!("@expect {expectation}\n"));
    }
    Ok((format!("--exec {command}").into(), Some(text)))
}

/// `afemu check`: pure, no emulator, no async.
fn check(args: &CheckArgs) -> ExitCode {
    use afemu_emulator::procedure::check::{self, CheckOptions, Schedule};
    use afemu_emulator::procedure::runbook::Runbook;
    let runbook = match Runbook::load(&args.runbook) {
        Ok(runbook) => runbook,
        Err(error) => {
            eprintln!("afemu check: {error}");
            return ExitCode::from(2);
        }
    };
    let options = CheckOptions {
        route_delay: args.route_delay,
        stop_hard: args.stop == "hard",
        state_limit: None,
    };
    let name = args.runbook.display().to_string();
    let report = check::check(&runbook, options);
    print!("{}", check::render(&report, &name));
    let mut outputs: Vec<(&std::path::Path, String)> = Vec::new();
    if let Some(path) = &args.json {
        outputs.push((
            path,
            serde_json::to_string_pretty(&report).unwrap_or_default(),
        ));
    }
    if let Some(path) = &args.schedule {
        match report.counter_examples.first() {
            Some(found) => {
                let schedule = Schedule {
                    runbook: name.clone(),
                    route_delay: args.route_delay.map(|d| d.to_string()),
                    stop_hard: options.stop_hard,
                    breach: found.breach.clone(),
                    moves: found.moves.clone(),
                };
                outputs.push((
                    path,
                    serde_json::to_string_pretty(&schedule).unwrap_or_default(),
                ));
            }
            None => eprintln!(
                "afemu check: no counter-example, so no schedule written to {}",
                path.display()
            ),
        }
    }
    for (path, content) in outputs {
        if let Err(error) = std::fs::write(path, content) {
            eprintln!("afemu check: cannot write {}: {error}", path.display());
            return ExitCode::from(2);
        }
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.to_config();
    let api = TcpListener::bind(args.api_addr)
        .await
        .with_context(|| format!("cannot listen for the API on {}", args.api_addr))?;
    let router = TcpListener::bind(args.router_addr)
        .await
        .with_context(|| format!("cannot listen for the router on {}", args.router_addr))?;
    // The default data directory is temporary and goes at exit (the guard lives to the end).
    let (data_dir, _temporary) = match &config.data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
            (dir.clone(), None)
        }
        None => {
            let temp = tempfile::Builder::new()
                .prefix("afemu-")
                .tempdir()
                .context("cannot create a temporary data directory")?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    for (what, addr) in [("API", api.local_addr()?), ("router", router.local_addr()?)] {
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "the {what} listens beyond this machine: anyone who can reach it can use it");
            eprintln!(
                "afemu: WARNING: the {what} listens on {addr}, reachable from other machines; \
                 afemu is a test tool with no real security (the /_afemu/ admin endpoints want the \
                 admin token from them)"
            );
        }
    }
    let admin_token = config.admin_token.clone();
    let platform = Platform::new(config, &data_dir).with_context(|| {
        format!(
            "cannot start with the data directory {}",
            data_dir.display()
        )
    })?;
    // One line per service vendor: a real database, or a record and why.
    for vendor in platform.service_vendors() {
        tracing::info!("{vendor}");
    }
    for line in platform.staging_tools() {
        tracing::info!("{line}");
    }
    let shutdown = CancellationToken::new();
    // Listening for the signals starts before the ready line: a SIGTERM right after it is
    // already a graceful shutdown.
    tokio::spawn(cancel_on_signal(signals(), shutdown.clone()));
    let (api_addr, router_addr) = (api.local_addr()?, router.local_addr()?);
    let ready = move || {
        use std::io::Write;
        // Written, not println!: a closed stdout is no reason to stop serving.
        let _ = writeln!(
            std::io::stdout(),
            "afemu ready: api http://{api_addr} router http://{router_addr} dashboard http://{api_addr}/_afemu/ (profile {}, data {}, admin token {admin_token})",
            args.profile.name(),
            data_dir.display()
        );
    };
    afemu_emulator::server::run_then(platform, api, router, shutdown, ready)
        .await
        .context("the API server failed")?;
    tracing::info!("afemu stopped");
    Ok(())
}

/// SIGINT and SIGTERM, listened for from now on (none if they cannot be).
fn signals() -> Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)> {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(interrupt), Ok(terminate)) => Some((interrupt, terminate)),
        _ => None,
    }
}

async fn cancel_on_signal(
    signals: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
    shutdown: CancellationToken,
) {
    let Some((mut interrupt, mut terminate)) = signals else {
        tracing::warn!("cannot listen for signals; stop afemu by killing it");
        return;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    // First the shutdown, then the word: nothing said can keep it from happening.
    shutdown.cancel();
    tracing::info!("shutting down");
}
