//! Settings: the timing profiles, the account limits, and everything `afemu serve` can be told.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use afemu_router::{Balance, ErrorPages, RouterConfig};

/// How long the platform takes to do things. The window an update opens (stop, stage, boot) is
/// what the seed procedures exist to hide, so it must be real; the profiles only scale it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// No artificial delays at all: for property tests and fast CI.
    Instant,
    /// Short but visible delays (a few hundred milliseconds): the default.
    Fast,
    /// Seconds, like the real platform.
    Realistic,
}

impl Profile {
    pub fn timing(self) -> Timing {
        match self {
            Profile::Instant => Timing {
                staging: Duration::ZERO,
                boot: Duration::ZERO,
                readiness_poll: Duration::from_millis(2),
                readiness_timeout: Duration::from_secs(60),
                staging_timeout: DEFAULT_STAGING_TIMEOUT,
                drain: Duration::from_secs(1),
                flapping_backoff: Duration::from_millis(100),
                flapping_timeout: Duration::from_secs(5),
                stop_grace: Duration::ZERO,
            },
            Profile::Fast => Timing {
                staging: Duration::from_millis(250),
                boot: Duration::from_millis(150),
                readiness_poll: Duration::from_millis(10),
                readiness_timeout: Duration::from_secs(60),
                staging_timeout: DEFAULT_STAGING_TIMEOUT,
                drain: Duration::from_secs(2),
                flapping_backoff: Duration::from_secs(1),
                flapping_timeout: Duration::from_secs(30),
                stop_grace: Duration::ZERO,
            },
            Profile::Realistic => Timing {
                staging: Duration::from_secs(3),
                boot: Duration::from_secs(2),
                readiness_poll: Duration::from_millis(500),
                readiness_timeout: Duration::from_secs(60),
                staging_timeout: DEFAULT_STAGING_TIMEOUT,
                drain: Duration::from_secs(10),
                flapping_backoff: Duration::from_secs(60),
                flapping_timeout: Duration::from_secs(500),
                stop_grace: Duration::ZERO,
            },
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Profile::Instant => "instant",
            Profile::Fast => "fast",
            Profile::Realistic => "realistic",
        }
    }
}

/// v1's `max_staging_runtime`.
pub const DEFAULT_STAGING_TIMEOUT: Duration = Duration::from_secs(120);

/// The delays of one profile; each can also be set on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Extra time staging takes, on top of the real unpacking (v1 staged inside the PUT).
    pub staging: Duration,
    /// How long a built-in static server takes to start listening (a real app takes what it takes).
    pub boot: Duration,
    /// How often an instance's port is tried while it is STARTING (v1: 0.5 s).
    pub readiness_poll: Duration,
    /// How long an instance may take to accept a connection before it is CRASHED (v1: ~60 s).
    pub readiness_timeout: Duration,
    /// How long staging (npm, Bundler, pip…) may take before it fails (v1: 120 s).
    pub staging_timeout: Duration,
    /// How long a stop waits for requests in flight to the instance before killing it.
    pub drain: Duration,
    /// The first flapping restart delay; it doubles per crash (v1: 60 s, up to 480 s).
    pub flapping_backoff: Duration,
    /// A crash longer than this after the previous one starts the count again (v1: 500 s).
    pub flapping_timeout: Duration,
    /// How long a stopped app gets between SIGTERM and SIGKILL (v1: none, SIGKILL at once).
    pub stop_grace: Duration,
}

/// A user's account limits, v1's `account_capacity` defaults (spec/af-api.md §11).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub memory_mb: u64,
    pub apps: u32,
    pub app_uris: u32,
    pub services: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mb: 8192,
            apps: 50,
            app_uris: 4,
            services: 16,
        }
    }
}

/// Everything the emulator needs to run, whatever started it (`afemu serve`, the test harness).
#[derive(Clone, Debug)]
pub struct Config {
    /// The apps' default domain (infra `aws`), and `api.<domain>` for the API behind the router.
    pub domain: String,
    pub profile: Profile,
    pub timing: Timing,
    /// Where apps, packages and instances live. `None`: a temporary directory removed at exit.
    pub data_dir: Option<PathBuf>,
    pub router: RouterConfig,
    pub journal_capacity: usize,
    /// The largest JSON request body accepted.
    pub max_json_body: usize,
    /// The largest upload (`POST /apps/:name/application`) accepted.
    pub max_upload: usize,
    /// The most an upload may unpack to (a zip bomb is refused before it fills the disk).
    pub max_unpacked: u64,
    pub limits: Limits,
    /// Emails that may act for others with `PROXY-USER`.
    pub admins: Vec<String>,
    /// How long a crashed instance's directory and logs are kept (v1: an hour).
    pub crash_retention: Duration,
    /// Where staging keeps the package managers' caches. `None`: `staging-cache/` in the data
    /// directory.
    pub staging_cache: Option<PathBuf>,
    /// Credentials given to new services, by vendor (`mysql`, `redis`, …), over made-up ones;
    /// a vendor named here is a record (its credentials point wherever they say).
    pub service_credentials: ServiceCredentials,
    /// Whether provisioned services are real databases (where their servers are installed).
    pub services: ServicesMode,
    /// Faults in force from the start (more can be set live through `PUT /_afemu/faults`).
    pub faults: Faults,
    /// A state snapshot loaded at start (when it exists) and saved after each change and at
    /// shutdown, atomically.
    pub state_file: Option<PathBuf>,
    /// What the `/_afemu/` endpoints that change or reveal state (faults, reset, state) want in
    /// `Authorization` — unless the request comes straight from loopback (not through the
    /// router). Random unless set.
    pub admin_token: String,
    /// A deliberate defect, for tests only: the next route change that removes registrations
    /// is never delivered to the router. It exists to prove that the model-vs-emulator property
    /// test can fail.
    #[doc(hidden)]
    pub defect_skip_one_unregister: bool,
}

/// The route-delay fault: every change waits a uniformly random time in `min..=max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteDelay {
    pub min: Duration,
    pub max: Duration,
}

impl std::str::FromStr for RouteDelay {
    type Err = String;
    /// `MIN..MAX` (`0..50ms`, `10ms..1s`), or one duration for a fixed delay.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parse = |part: &str| -> Result<Duration, String> {
            let part = part.trim();
            if part == "0" {
                return Ok(Duration::ZERO);
            }
            humantime::parse_duration(part).map_err(|e| format!("{part:?}: {e}"))
        };
        let (min, max) = match text.split_once("..") {
            Some((min, max)) => (parse(min)?, parse(max)?),
            None => {
                let fixed = parse(text)?;
                (fixed, fixed)
            }
        };
        if min > max {
            return Err(format!(
                "route delay {text:?}: the minimum is above the maximum"
            ));
        }
        Ok(RouteDelay { min, max })
    }
}

impl std::fmt::Display for RouteDelay {
    /// As it is typed, and read back the same: `0..50ms`, `10ms..1s`, `250us..1500us`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn compact(duration: Duration) -> String {
            let ns = duration.as_nanos();
            match ns {
                0 => "0".into(),
                _ if ns.is_multiple_of(1_000_000_000) => format!("{}s", ns / 1_000_000_000),
                _ if ns.is_multiple_of(1_000_000) => format!("{}ms", ns / 1_000_000),
                _ if ns.is_multiple_of(1_000) => format!("{}us", ns / 1_000),
                _ => format!("{ns}ns"),
            }
        }
        write!(f, "{}..{}", compact(self.min), compact(self.max))
    }
}

/// The faults afemu can inject, all seeded and reproducible.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// v1's asynchronous route propagation: each app's route changes reach the router after a
    /// random delay in this range, in order per app, in any order across apps.
    pub route_delay: Option<RouteDelay>,
    /// The seed of every random choice the faults make.
    pub seed: u64,
    /// Extra boot time for these apps (by name).
    pub slow_start: std::collections::BTreeMap<String, Duration>,
    /// Apps (by name) whose staging fails.
    pub fail_staging: std::collections::BTreeSet<String>,
    /// Stops kill at once, cutting requests in flight, as v1 did (the default drains them).
    pub stop_hard: bool,
}

/// Whether `af create-service` provisions a real database, as v1's service nodes did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ServicesMode {
    /// Real for every vendor whose server is installed (PostgreSQL, MariaDB/MySQL, Redis,
    /// RabbitMQ); a record (made-up credentials) for the others.
    #[default]
    Auto,
    /// Real, and refuse to start if PostgreSQL, MariaDB/MySQL, Redis or RabbitMQ is not
    /// installed.
    Real,
    /// Records only: made-up credentials, nothing listening (fast, for apps that never connect).
    Records,
}

/// Per-vendor credentials for provisioned services: a JSON object `{vendor: {key: value}}`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceCredentials(pub std::collections::BTreeMap<String, serde_json::Value>);

impl ServiceCredentials {
    pub fn get(&self, vendor: &str) -> Option<&serde_json::Value> {
        self.0.get(vendor)
    }
}

/// Reads the JSON file at the given path.
impl std::str::FromStr for ServiceCredentials {
    type Err = String;
    fn from_str(path: &str) -> Result<Self, Self::Err> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let map = serde_json::from_str(&text)
            .map_err(|e| format!("{path}: not a JSON object of vendor → credentials: {e}"))?;
        Ok(ServiceCredentials(map))
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::for_profile(Profile::Fast)
    }
}

impl Config {
    pub fn for_profile(profile: Profile) -> Config {
        Config {
            domain: DEFAULT_DOMAIN.into(),
            profile,
            timing: profile.timing(),
            data_dir: None,
            router: RouterConfig::default(),
            journal_capacity: afemu_router::journal::DEFAULT_CAPACITY,
            max_json_body: 1024 * 1024,
            max_upload: 256 * 1024 * 1024,
            max_unpacked: 1024 * 1024 * 1024,
            limits: Limits::default(),
            admins: Vec::new(),
            crash_retention: Duration::from_secs(3600),
            staging_cache: None,
            service_credentials: ServiceCredentials::default(),
            services: ServicesMode::Auto,
            faults: Faults::default(),
            state_file: None,
            admin_token: crate::clock::random_hex(16),
            defect_skip_one_unregister: false,
        }
    }
}

pub const DEFAULT_DOMAIN: &str = "aws.af.cm";
pub const DEFAULT_API_ADDR: &str = "127.0.0.1:9022";
pub const DEFAULT_ROUTER_ADDR: &str = "127.0.0.1:9080";

/// The flags of `afemu serve`. Every one can also come from an `AFEMU_*` environment variable.
#[derive(Clone, Debug, clap::Args)]
pub struct ServeArgs {
    /// Where the control plane (the v1 API) listens; port 0 picks a free port.
    #[arg(long, env = "AFEMU_API_ADDR", default_value = DEFAULT_API_ADDR)]
    pub api_addr: SocketAddr,
    /// Where the router listens; port 0 picks a free port.
    #[arg(long, env = "AFEMU_ROUTER_ADDR", default_value = DEFAULT_ROUTER_ADDR)]
    pub router_addr: SocketAddr,
    /// Where apps, packages and instances are kept [default: a temporary directory, removed at exit].
    #[arg(long, env = "AFEMU_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// A state snapshot to load at start (if it exists) and to keep saved, atomically, after each
    /// change and at shutdown: users, services, apps and their bits.
    #[arg(long, env = "AFEMU_STATE")]
    pub state: Option<PathBuf>,
    /// How long staging, boot and the rest take.
    #[arg(long, env = "AFEMU_PROFILE", value_enum, default_value = "fast")]
    pub profile: Profile,
    /// The apps' default domain; the API is also served through the router at api.<domain>.
    #[arg(long, env = "AFEMU_DOMAIN", default_value = DEFAULT_DOMAIN)]
    pub domain: String,
    /// The router's own error pages: appfog, vcap, gorouter, or the path of an HTML template
    /// ({{status}} and {{reason}} are filled in).
    #[arg(long, env = "AFEMU_ERROR_PAGES", default_value = "appfog")]
    pub error_pages: ErrorPages,
    /// How the router picks among a host's backends: round-robin, or random (v1) with --seed.
    #[arg(long, env = "AFEMU_BALANCE", default_value = "round-robin")]
    pub balance: Balance,
    #[command(flatten)]
    pub faults: FaultArgs,
    /// Stripped from request hosts, so http://example.com.localhost:9080/ works from a browser;
    /// empty to disable.
    #[arg(long, env = "AFEMU_DEV_SUFFIX", default_value = afemu_router::host::DEFAULT_DEV_SUFFIX)]
    pub dev_suffix: String,
    /// How long the router waits for an app's response head once the request is sent (v1: 120 s).
    #[arg(long, env = "AFEMU_BACKEND_TIMEOUT", value_parser = humantime::parse_duration, default_value = "120s")]
    pub backend_timeout: Duration,
    /// How long an app's instance may take to accept the router's connection (v1: 10 s).
    #[arg(long, env = "AFEMU_CONNECT_TIMEOUT", value_parser = humantime::parse_duration, default_value = "10s")]
    pub connect_timeout: Duration,
    /// How long a client may take to send a request head, from its first byte.
    #[arg(long, env = "AFEMU_REQUEST_HEAD_TIMEOUT", value_parser = humantime::parse_duration, default_value = "30s")]
    pub request_head_timeout: Duration,
    /// How long each read of a request body from a client may take (else 408).
    #[arg(long, env = "AFEMU_REQUEST_BODY_TIMEOUT", value_parser = humantime::parse_duration, default_value = "60s")]
    pub request_body_timeout: Duration,
    /// How long each read of a response body from an app may take (v1: 120 s).
    #[arg(long, env = "AFEMU_RESPONSE_BODY_TIMEOUT", value_parser = humantime::parse_duration, default_value = "120s")]
    pub response_body_timeout: Duration,
    /// How long each write to a client may take; a client that stops reading is disconnected.
    #[arg(long, env = "AFEMU_CLIENT_WRITE_TIMEOUT", value_parser = humantime::parse_duration, default_value = "60s")]
    pub client_write_timeout: Duration,
    /// How long an idle keep-alive client connection is kept open (v1: 75 s).
    #[arg(long, env = "AFEMU_KEEP_ALIVE_TIMEOUT", value_parser = humantime::parse_duration, default_value = "75s")]
    pub keep_alive_timeout: Duration,
    /// How long an idle pooled connection to an app is kept.
    #[arg(long, env = "AFEMU_POOL_IDLE_TIMEOUT", value_parser = humantime::parse_duration, default_value = "60s")]
    pub pool_idle_timeout: Duration,
    /// Requests with `X-Vcap-Trace: KEY` get `X-Vcap-Backend` and `X-Vcap-Router` back
    /// [default: none, no request does; v1's public default was 22].
    #[arg(long, env = "AFEMU_TRACE_KEY")]
    pub trace_key: Option<String>,
    /// How many requests the journal keeps for queries (its counters keep everything).
    #[arg(long, env = "AFEMU_JOURNAL_CAPACITY", default_value_t = afemu_router::journal::DEFAULT_CAPACITY)]
    pub journal_capacity: usize,
    /// Extra staging time [default: from the profile].
    #[arg(long, env = "AFEMU_STAGING_DELAY", value_parser = humantime::parse_duration)]
    pub staging_delay: Option<Duration>,
    /// Boot time of built-in static servers [default: from the profile].
    #[arg(long, env = "AFEMU_BOOT_DELAY", value_parser = humantime::parse_duration)]
    pub boot_delay: Option<Duration>,
    /// How long a stop waits for requests in flight [default: from the profile].
    #[arg(long, env = "AFEMU_DRAIN", value_parser = humantime::parse_duration)]
    pub drain: Option<Duration>,
    /// How long a stopped app gets between SIGTERM and SIGKILL [default: 0, SIGKILL at once as v1].
    #[arg(long, env = "AFEMU_STOP_GRACE", value_parser = humantime::parse_duration)]
    pub stop_grace: Option<Duration>,
    /// The first restart delay of a flapping instance; it doubles per crash [default: from the
    /// profile; realistic: 60s as v1].
    #[arg(long, env = "AFEMU_FLAPPING_BACKOFF", value_parser = humantime::parse_duration)]
    pub flapping_backoff: Option<Duration>,
    /// How long crashed instances' directories and logs are kept.
    #[arg(long, env = "AFEMU_CRASH_RETENTION", value_parser = humantime::parse_duration, default_value = "1h")]
    pub crash_retention: Duration,
    /// How long staging (installing dependencies with npm, Bundler, pip) may take before it
    /// fails [default: 120s, as v1].
    #[arg(long, env = "AFEMU_STAGING_TIMEOUT", value_parser = humantime::parse_duration)]
    pub staging_timeout: Option<Duration>,
    /// Where staging keeps the package managers' caches (npm, pip, Bundler); one directory can
    /// serve every emulator [default: staging-cache/ in the data directory].
    #[arg(long, env = "AFEMU_STAGING_CACHE")]
    pub staging_cache: Option<PathBuf>,
    /// How long an instance may take to listen before it is CRASHED [default: 60s].
    #[arg(long, env = "AFEMU_READINESS_TIMEOUT", value_parser = humantime::parse_duration)]
    pub readiness_timeout: Option<Duration>,
    /// The largest JSON body the API accepts, in bytes.
    #[arg(long, env = "AFEMU_MAX_JSON_BODY", default_value_t = 1024 * 1024)]
    pub max_json_body: usize,
    /// The largest upload the API accepts, in bytes.
    #[arg(long, env = "AFEMU_MAX_UPLOAD", default_value_t = 256 * 1024 * 1024)]
    pub max_upload: usize,
    /// Services: real databases where their servers are installed (auto), always (real: refuse
    /// to start without PostgreSQL, MariaDB, Redis and RabbitMQ), or never (records: made-up
    /// credentials).
    #[arg(long, env = "AFEMU_SERVICES", value_enum, default_value = "auto")]
    pub services: ServicesMode,
    /// A JSON file of credentials for new services, by vendor: {"mysql": {"password": "…"}}; a
    /// vendor named there is not real (its apps get those credentials).
    #[arg(long, env = "AFEMU_SERVICE_CREDENTIALS")]
    pub service_credentials: Option<ServiceCredentials>,
    /// The token the state-changing /_afemu/ endpoints want from anyone but a direct loopback
    /// client [default: random, printed when ready].
    #[arg(long, env = "AFEMU_ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// Users that may act for others with the PROXY-USER header (repeatable).
    #[arg(long = "admin", env = "AFEMU_ADMINS", value_delimiter = ',')]
    pub admins: Vec<String>,
}

/// The staging cache: the configured one, else one under the data directory (afemu writes
/// nowhere else unless told).
pub(crate) fn staging_cache(config: &Config, data_dir: &Path) -> PathBuf {
    config
        .staging_cache
        .clone()
        .unwrap_or_else(|| data_dir.join("staging-cache"))
}

impl ServeArgs {
    pub fn to_config(&self) -> Config {
        let mut config = Config::for_profile(self.profile);
        config.domain = self.domain.trim().to_ascii_lowercase();
        config.data_dir = self.data_dir.clone();
        config.state_file = self.state.clone();
        if let Some(token) = self.admin_token.clone().filter(|t| !t.is_empty()) {
            config.admin_token = token;
        }
        config.router.error_pages = self.error_pages.clone();
        config.router.balance = match self.balance {
            Balance::Random { .. } => Balance::Random {
                seed: self.faults.seed,
            },
            other => other,
        };
        config.router.dev_suffix = self.dev_suffix.clone();
        config.router.backend_timeout = self.backend_timeout;
        config.router.connect_timeout = self.connect_timeout;
        config.router.header_read_timeout = self.request_head_timeout;
        config.router.request_body_timeout = self.request_body_timeout;
        config.router.response_body_timeout = self.response_body_timeout;
        config.router.client_write_timeout = self.client_write_timeout;
        config.router.keep_alive_timeout = self.keep_alive_timeout;
        config.router.pool_idle_timeout = self.pool_idle_timeout;
        if let Some(key) = &self.trace_key {
            config.router.trace_key = key.clone();
        }
        config.journal_capacity = self.journal_capacity;
        if let Some(staging) = self.staging_delay {
            config.timing.staging = staging;
        }
        if let Some(boot) = self.boot_delay {
            config.timing.boot = boot;
        }
        if let Some(drain) = self.drain {
            config.timing.drain = drain;
        }
        if let Some(timeout) = self.readiness_timeout {
            config.timing.readiness_timeout = timeout;
        }
        if let Some(timeout) = self.staging_timeout {
            config.timing.staging_timeout = timeout;
        }
        if let Some(cache) = &self.staging_cache {
            config.staging_cache = Some(cache.clone());
        }
        if let Some(grace) = self.stop_grace {
            config.timing.stop_grace = grace;
        }
        if let Some(backoff) = self.flapping_backoff {
            config.timing.flapping_backoff = backoff;
        }
        config.crash_retention = self.crash_retention;
        config.faults = self.faults.to_faults();
        config.service_credentials = self.service_credentials.clone().unwrap_or_default();
        config.services = self.services;
        config.max_json_body = self.max_json_body;
        config.max_upload = self.max_upload;
        config.admins = self.admins.iter().map(|a| a.to_ascii_lowercase()).collect();
        config
    }
}

/// The faults, as `afemu serve` and `afemu rehearse` take them on the command line.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct FaultArgs {
    /// The seed of every random choice: --balance random, the faults.
    #[arg(long, env = "AFEMU_SEED", default_value_t = 0)]
    pub seed: u64,
    /// Fault: route changes reach the router after a random delay in MIN..MAX (e.g. 0..50ms), in
    /// order per app, in any order across apps, as v1's NATS delivered them.
    #[arg(long, env = "AFEMU_ROUTE_DELAY")]
    pub route_delay: Option<RouteDelay>,
    /// Fault: how a stop treats requests in flight: drain them (afemu's default) or cut them
    /// (hard, as v1's SIGKILL did).
    #[arg(long, env = "AFEMU_STOP", value_parser = ["drain", "hard"], default_value = "drain")]
    pub stop: String,
    /// Fault: APP=DURATION, extra boot time for an app's instances (repeatable).
    #[arg(long, value_parser = parse_slow_start)]
    pub slow_start: Vec<(String, Duration)>,
    /// Fault: staging this app fails (repeatable).
    #[arg(long)]
    pub fail_staging: Vec<String>,
}

impl FaultArgs {
    pub fn to_faults(&self) -> Faults {
        Faults {
            route_delay: self.route_delay,
            seed: self.seed,
            stop_hard: self.stop == "hard",
            slow_start: self.slow_start.iter().cloned().collect(),
            fail_staging: self.fail_staging.iter().cloned().collect(),
        }
    }
}

fn parse_slow_start(text: &str) -> Result<(String, Duration), String> {
    let (app, delay) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected APP=DURATION, e.g. web=2s"))?;
    let delay = humantime::parse_duration(delay).map_err(|e| format!("{delay:?}: {e}"))?;
    Ok((app.to_owned(), delay))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_delay_reads_back_as_it_is_written() {
        for (typed, shown) in [
            ("0..50ms", "0..50ms"),
            ("10ms..1s", "10ms..1s"),
            ("0ns..20ms", "0..20ms"),
            ("1500ms..2s", "1500ms..2s"),
            ("250us..1ms", "250us..1ms"),
            ("7ns..8ns", "7ns..8ns"),
            ("30ms", "30ms..30ms"),
        ] {
            let delay: RouteDelay = typed.parse().unwrap();
            assert_eq!(delay.to_string(), shown, "{typed}");
            assert_eq!(shown.parse::<RouteDelay>().unwrap(), delay, "{shown}");
        }
    }
}
