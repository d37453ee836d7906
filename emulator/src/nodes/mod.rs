//! The service nodes, as v1 ran them beside its DEAs (`vcap-services`: one node per vendor next
//! to a real server): provisioning creates a database with its own user and password on a shared
//! PostgreSQL or MariaDB server, or starts a Redis server or a RabbitMQ broker of its own; binding
//! creates a further user per bound app; unbinding drops it; unprovisioning drops the database
//! (or stops the server).
//!
//! A vendor is *real* when its server is installed on this machine (and `--services records` does
//! not say otherwise), else a *record*: made-up credentials, nothing listening, as afemu did
//! before. Each vendor says which it is and why ([`Nodes::vendors`]).
//!
//! - `server`: a supervised server process (log, readiness, restart, clean stop, watchdog).
//! - `postgresql`, `mysql`, `redis`, `rabbitmq`: what v1's node for each did.
//! - `probe`: which servers this machine has.
//!
//! The controller calls a node as v1's cloud controller called the service gateway, and keeps
//! what it answers (the credentials) in its own state; a node keeps nothing but its servers.

mod mysql;
mod postgresql;
mod probe;
mod rabbitmq;
mod redis;
pub(crate) mod server;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use afemu_router::Journal;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ServicesMode;
use crate::watchdog::Watchdog;
use server::{RunAs, Server, ServerState};

/// Why a node could not do what it was asked; the controller answers v1's "Unexpected response
/// from service gateway" with it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct NodeError(pub(crate) String);

impl From<std::io::Error> for NodeError {
    fn from(error: std::io::Error) -> NodeError {
        NodeError(error.to_string())
    }
}

/// What each vendor is on this emulator, for the start-up log and `/_afemu/services`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct VendorStatus {
    pub vendor: &'static str,
    /// `real` or `record`.
    pub mode: &'static str,
    /// The server and where it is (`redis-server 7.0.15 at /usr/bin/redis-server`), or why the
    /// vendor is a record (`mongod not installed`).
    pub detail: String,
}

impl std::fmt::Display for VendorStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.mode {
            "real" => write!(f, "{}: real ({})", self.vendor, self.detail),
            _ => write!(f, "{}: record only ({})", self.vendor, self.detail),
        }
    }
}

/// What the nodes share: where they keep their servers, and the emulator's lifetime.
#[derive(Clone)]
pub(crate) struct Context {
    pub(crate) root: PathBuf,
    pub(crate) watchdog: Arc<Watchdog>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: TaskTracker,
    pub(crate) journal: Journal,
}

impl Context {
    pub(crate) fn start_server(&self, spec: server::ServerSpec) -> Arc<Server> {
        let journal = self.journal.clone();
        let on_restart: server::OnRestart = Arc::new(move |name: &str, exit: &str| {
            journal.record_event(
                "service",
                json!({"server": name, "died": exit, "action": "restarting"}),
            );
        });
        Arc::new(Server::start(
            spec,
            self.watchdog.clone(),
            &self.shutdown,
            &self.tasks,
            on_restart,
        ))
    }
}

enum Node {
    Postgresql(postgresql::Node),
    Mysql(mysql::Node),
    Redis(redis::Node),
    Rabbitmq(rabbitmq::Node),
}

/// The service nodes of one emulator; clone freely.
#[derive(Clone)]
pub(crate) struct Nodes {
    inner: Arc<Inner>,
}

struct Inner {
    nodes: Vec<(&'static str, Node)>,
    vendors: Vec<VendorStatus>,
    root: PathBuf,
}

impl std::fmt::Debug for Nodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nodes")
            .field("vendors", &self.inner.vendors)
            .finish_non_exhaustive()
    }
}

/// The vendors of v1's catalog, in its order.
const VENDORS: [&str; 5] = ["mysql", "postgresql", "mongodb", "redis", "rabbitmq"];

impl Nodes {
    /// The nodes for `mode`, keeping their servers under `root`. Vendors named in `configured`
    /// (`--service-credentials`) are records with those credentials. Fails only when `mode` is
    /// `real` and a server afemu can run is missing.
    pub(crate) fn new(
        mode: ServicesMode,
        configured: &[String],
        context: Context,
    ) -> Result<Nodes, String> {
        let found = probe::machine();
        let mut nodes = Vec::new();
        let mut vendors = Vec::new();
        let mut missing = Vec::new();
        for vendor in VENDORS {
            let record = |detail: String| VendorStatus {
                vendor,
                mode: "record",
                detail,
            };
            if mode == ServicesMode::Records {
                vendors.push(record("--services records".into()));
                continue;
            }
            if configured.iter().any(|v| v == vendor) {
                vendors.push(record("credentials from --service-credentials".into()));
                continue;
            }
            let installed = match vendor {
                "postgresql" => found.postgresql.clone().map(|b| {
                    let detail = b.describe();
                    (
                        Node::Postgresql(postgresql::Node::new(b, context.clone())),
                        detail,
                    )
                }),
                "mysql" => found.mysql.clone().map(|b| {
                    let detail = b.describe();
                    (Node::Mysql(mysql::Node::new(b, context.clone())), detail)
                }),
                "redis" => found.redis.clone().map(|b| {
                    let detail = b.describe();
                    (Node::Redis(redis::Node::new(b, context.clone())), detail)
                }),
                "rabbitmq" => found.rabbitmq.clone().map(|b| {
                    let detail = b.describe();
                    (
                        Node::Rabbitmq(rabbitmq::Node::new(b, context.clone())),
                        detail,
                    )
                }),
                _ => None,
            };
            match installed {
                Some((node, detail)) => {
                    vendors.push(VendorStatus {
                        vendor,
                        mode: "real",
                        detail,
                    });
                    nodes.push((vendor, node));
                }
                None => {
                    let why = match vendor {
                        "postgresql" => "postgres not installed".to_owned(),
                        "mysql" => "mariadbd or mysqld not installed".to_owned(),
                        "redis" => "redis-server not installed".to_owned(),
                        "rabbitmq" => {
                            "rabbitmq-server (with rabbitmqctl and epmd) not installed".to_owned()
                        }
                        other => probe::unsupported(other),
                    };
                    if mode == ServicesMode::Real
                        && matches!(vendor, "postgresql" | "mysql" | "redis" | "rabbitmq")
                    {
                        missing.push(format!("{vendor} ({why})"));
                    }
                    vendors.push(record(why));
                }
            }
        }
        if !missing.is_empty() {
            return Err(format!(
                "--services real: cannot run {}; install the servers or use --services auto",
                missing.join(", ")
            ));
        }
        Ok(Nodes {
            inner: Arc::new(Inner {
                nodes,
                vendors,
                root: context.root,
            }),
        })
    }

    fn node(&self, vendor: &str) -> Option<&Node> {
        self.inner
            .nodes
            .iter()
            .find(|(v, _)| *v == vendor)
            .map(|(_, node)| node)
    }

    /// Whether services of this vendor are real.
    pub(crate) fn is_real(&self, vendor: &str) -> bool {
        self.node(vendor).is_some()
    }

    /// Every vendor, real or record, with why.
    pub(crate) fn vendors(&self) -> &[VendorStatus] {
        &self.inner.vendors
    }

    /// Provisions a service: its credentials (v1's `{name, hostname, host, port, user, username,
    /// password}`). `None` for a vendor that is a record: the controller makes them up.
    pub(crate) async fn provision(&self, vendor: &str) -> Option<Result<Value, NodeError>> {
        Some(match self.node(vendor)? {
            Node::Postgresql(node) => node.provision().await,
            Node::Mysql(node) => node.provision().await,
            Node::Redis(node) => node.provision().await,
            Node::Rabbitmq(node) => node.provision().await,
        })
    }

    /// Binds a provisioned service to an app: the credentials that app gets (a user of its own
    /// for the databases and RabbitMQ; the same as the service's for Redis, as v1). A record's
    /// binding is the service's credentials.
    pub(crate) async fn bind(&self, vendor: &str, service: &Value) -> Result<Value, NodeError> {
        match self.node(vendor) {
            None => Ok(service.clone()),
            Some(Node::Postgresql(node)) => node.bind(service).await,
            Some(Node::Mysql(node)) => node.bind(service).await,
            Some(Node::Redis(node)) => node.bind(service).await,
            Some(Node::Rabbitmq(node)) => node.bind(service).await,
        }
    }

    /// Drops what a binding created.
    pub(crate) async fn unbind(
        &self,
        vendor: &str,
        service: &Value,
        binding: &Value,
    ) -> Result<(), NodeError> {
        match self.node(vendor) {
            None => Ok(()),
            Some(Node::Postgresql(node)) => node.unbind(service, binding).await,
            Some(Node::Mysql(node)) => node.unbind(service, binding).await,
            Some(Node::Redis(_)) => Ok(()),
            Some(Node::Rabbitmq(node)) => node.unbind(service, binding).await,
        }
    }

    /// Drops the database (and every user of it), or stops and removes the Redis server or the
    /// RabbitMQ broker.
    pub(crate) async fn unprovision(&self, vendor: &str, service: &Value) -> Result<(), NodeError> {
        match self.node(vendor) {
            None => Ok(()),
            Some(Node::Postgresql(node)) => node.unprovision(service).await,
            Some(Node::Mysql(node)) => node.unprovision(service).await,
            Some(Node::Redis(node)) => node.unprovision(service).await,
            Some(Node::Rabbitmq(node)) => node.unprovision(service).await,
        }
    }

    /// Makes a service from a snapshot (or from before a restart) real again: its server
    /// running, its database and users there (kept with their data if they already are, created
    /// empty otherwise), so the credentials the snapshot holds work.
    pub(crate) async fn restore(
        &self,
        vendor: &str,
        service: &Value,
        bindings: &[Value],
    ) -> Result<(), NodeError> {
        match self.node(vendor) {
            None => Ok(()),
            Some(Node::Postgresql(node)) => node.restore(service, bindings).await,
            Some(Node::Mysql(node)) => node.restore(service, bindings).await,
            Some(Node::Redis(node)) => node.restore(service).await,
            Some(Node::Rabbitmq(node)) => node.restore(service, bindings).await,
        }
    }

    /// Checks that credentials (from a snapshot) are usable by a real node, before anything
    /// changes: the names and passwords it would put in SQL or a path. What is missing is not
    /// an error ([`Nodes::complete`] makes it up).
    pub(crate) fn check_credentials(&self, vendor: &str, service: &Value) -> Result<(), NodeError> {
        if !self.is_real(vendor) {
            return Ok(());
        }
        if !service.is_object() {
            return Err(NodeError("the credentials must be a JSON object".into()));
        }
        for key in ["name", "user", "password", "vhost"] {
            if service.get(key).is_some() {
                identifier(service, key)?;
            }
        }
        Ok(())
    }

    /// Credentials (from a hand-written snapshot) with what a real node needs and they lack
    /// made up: a database name, a user, a password. The rest is kept as given.
    pub(crate) fn complete(&self, vendor: &str, service: &Value) -> Value {
        let Some(node) = self.node(vendor) else {
            return service.clone();
        };
        let mut completed = service.clone();
        if !completed.is_object() {
            completed = json!({});
        }
        let (name, user) = match node {
            Node::Redis(_) => (crate::clock::random_hex(16), None),
            Node::Rabbitmq(_) => (crate::clock::random_hex(16), Some(new_id('u'))),
            _ => (new_id('d'), Some(new_id('u'))),
        };
        let missing = |value: &Value, key: &str| value.get(key).and_then(Value::as_str).is_none();
        if missing(&completed, "name") {
            completed["name"] = json!(name);
        }
        if let Some(user) = user
            && missing(&completed, "user")
        {
            completed["user"] = json!(user);
            completed["username"] = json!(user);
        }
        if missing(&completed, "password") {
            completed["password"] = json!(new_id('p'));
        }
        if let Node::Rabbitmq(_) = node {
            rabbitmq::complete(&mut completed);
        }
        completed
    }

    /// Where a real service listens now (its port can change across restarts of afemu when the
    /// old one was taken): what the app's environment says.
    fn endpoint(&self, vendor: &str, service: &Value) -> Option<u16> {
        match self.node(vendor)? {
            Node::Postgresql(node) => node.port(),
            Node::Mysql(node) => node.port(),
            Node::Redis(node) => node.port(service),
            Node::Rabbitmq(node) => node.port(service),
        }
    }

    /// The credentials an app's environment gets for a binding: with where the service listens
    /// now (and RabbitMQ's `url` saying the same).
    pub(crate) fn live_credentials(&self, vendor: &str, service: &Value, binding: &Value) -> Value {
        let mut credentials = binding.clone();
        if let Some(port) = self.endpoint(vendor, service)
            && credentials.is_object()
        {
            credentials["port"] = json!(port);
            if let Some(Node::Rabbitmq(_)) = self.node(vendor) {
                rabbitmq::set_url(&mut credentials);
            }
        }
        credentials
    }

    /// `/_afemu/services`' view of the nodes: each vendor and its servers.
    pub(crate) fn status(&self) -> Value {
        let servers = |vendor: &str| -> Vec<Value> {
            let list = match self.node(vendor) {
                None => Vec::new(),
                Some(Node::Postgresql(node)) => node.servers(),
                Some(Node::Mysql(node)) => node.servers(),
                Some(Node::Redis(node)) => node.servers(),
                Some(Node::Rabbitmq(node)) => node.servers(),
            };
            list.iter().map(|server| server_status(server)).collect()
        };
        json!({
            "data_dir": self.inner.root,
            "vendors": self.inner.vendors.iter().map(|v| json!({
                "vendor": v.vendor,
                "mode": v.mode,
                "detail": v.detail,
                "servers": servers(v.vendor),
            })).collect::<Vec<_>>(),
        })
    }

    /// The log of a server by its name (`postgresql`, `mysql`, `redis <name>`, `rabbitmq <name>`,
    /// `rabbitmq epmd`).
    pub(crate) fn server_log(&self, name: &str) -> Option<PathBuf> {
        self.inner
            .nodes
            .iter()
            .flat_map(|(_, node)| match node {
                Node::Postgresql(node) => node.servers(),
                Node::Mysql(node) => node.servers(),
                Node::Redis(node) => node.servers(),
                Node::Rabbitmq(node) => node.servers(),
            })
            .find(|server| server.spec.name == name)
            .map(|server| server.spec.log.clone())
    }
}

fn server_status(server: &Server) -> Value {
    let mut status = json!({
        "name": server.spec.name,
        "program": server.spec.program,
        "port": server.spec.port,
        "log": server.spec.log,
        "restarts": server.restarts(),
    });
    if let (Value::Object(out), Ok(Value::Object(state))) =
        (&mut status, serde_json::to_value(server.state()))
    {
        out.extend(state);
    }
    status
}

/// A name, user, virtual host or password from credentials, checked before it goes into SQL, a
/// command line, a configuration file or a path. Only the forms afemu itself makes are accepted
/// (v1's were the same): a database, Redis or RabbitMQ name is hex digits, after a `d` for a
/// database; a user is `u` and hex digits; a virtual host `v` and hex digits; a password is
/// letters and digits. So no name from a hand-written snapshot can be a server's own (`postgres`,
/// `root`), a MySQL wildcard (`_`, `%`), or anything that needs quoting.
pub(crate) fn identifier<'a>(credentials: &'a Value, key: &str) -> Result<&'a str, NodeError> {
    let value = credentials
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| NodeError(format!("the credentials have no {key}")))?;
    let hex = |s: &str| {
        (8..=64).contains(&s.len()) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let (valid, form) = match key {
        "name" => (
            hex(value.strip_prefix('d').unwrap_or(value)),
            "hex digits (8 to 64), after a 'd' for a database",
        ),
        "user" => (
            value.strip_prefix('u').is_some_and(hex),
            "'u' and hex digits (8 to 64)",
        ),
        "vhost" => (
            value.strip_prefix('v').is_some_and(hex),
            "'v' and hex digits (8 to 64)",
        ),
        _ => (
            (1..=128).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_alphanumeric()),
            "letters and digits (at most 128)",
        ),
    };
    if valid {
        Ok(value)
    } else {
        Err(NodeError(format!(
            "{key} {value:?} is not one afemu would make for a real service: {form}"
        )))
    }
}

/// v1's credentials for a database: `{name, hostname, host, port, user, username, password}`.
pub(crate) fn database_credentials(name: &str, port: u16, user: &str, password: &str) -> Value {
    json!({
        "name": name,
        "hostname": "127.0.0.1",
        "host": "127.0.0.1",
        "port": port,
        "user": user,
        "username": user,
        "password": password,
    })
}

/// A new id for a database, user or password: v1 used a UUID's 32 hex digits after a letter.
pub(crate) fn new_id(prefix: char) -> String {
    format!("{prefix}{}", crate::clock::random_hex(16))
}

/// Runs a client (`psql`, `mariadb`) with `sql` on its standard input; its output, or its error.
pub(crate) async fn run_client(
    program: &Path,
    args: &[String],
    sql: &str,
) -> Result<String, NodeError> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| NodeError(format!("cannot run {}: {e}", program.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(sql.as_bytes()).await?;
    }
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .map_err(|_| NodeError(format!("{} did not finish within 60s", program.display())))??;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        // Its error, without the lines that quote the statement (they may hold a password).
        let stderr = String::from_utf8_lossy(&output.stderr);
        let said: Vec<&str> = stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("LINE ") && !l.starts_with('^'))
            .filter(|l| !l.contains("PASSWORD") && !l.contains("IDENTIFIED BY"))
            .collect();
        Err(NodeError(format!(
            "{} failed ({}): {}",
            program
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            output.status,
            said.join("; ")
        )))
    }
}

/// Runs a one-off setup program (initdb, mariadb-install-db) with its output appended to `log`.
pub(crate) async fn run_setup(
    program: &Path,
    args: &[std::ffi::OsString],
    env: &[(std::ffi::OsString, std::ffi::OsString)],
    dir: &Path,
    log: &Path,
    run_as: Option<RunAs>,
) -> Result<(), NodeError> {
    let open = || {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(log)
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(open()?)
        .stderr(open()?)
        .kill_on_drop(true);
    if let Some(run_as) = run_as {
        command.uid(run_as.uid).gid(run_as.gid);
    }
    let status = command
        .status()
        .await
        .map_err(|e| NodeError(format!("cannot run {}: {e}", program.display())))?;
    if status.success() {
        Ok(())
    } else {
        Err(NodeError(format!(
            "{} failed ({status}){}",
            program.display(),
            server::log_tail(log)
        )))
    }
}

/// The user a server refusing root runs as when afemu is root: `preferred` (the user Debian's
/// package made for it) if it exists, else `nobody`. `None` when afemu is not root.
pub(crate) fn unprivileged_user(preferred: &str) -> Result<Option<(RunAs, String)>, NodeError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    for name in [preferred, "nobody"] {
        if let Ok(Some(user)) = nix::unistd::User::from_name(name) {
            return Ok(Some((
                RunAs {
                    uid: user.uid.as_raw(),
                    gid: user.gid.as_raw(),
                },
                name.to_owned(),
            )));
        }
    }
    Err(NodeError(format!(
        "afemu runs as root and there is neither a {preferred} user nor nobody to run the server as"
    )))
}

/// Gives the paths afemu made for a server (its directory, its data directory, …) to `run_as`,
/// each by itself and never through a symbolic link (the server's user must not be able to
/// point afemu, running as root, at a file of its choosing); what the server makes under them is
/// its own already. Then lets it reach them through the directories afemu made above (up to
/// `root`'s parent), which may be private (a temporary directory is 0700): passable, not
/// listable.
pub(crate) fn hand_over(paths: &[&Path], root: &Path, run_as: RunAs) -> Result<(), NodeError> {
    use std::os::unix::fs::PermissionsExt;
    for path in paths {
        let metadata = std::fs::symlink_metadata(path)?;
        if metadata.file_type().is_symlink() {
            return Err(NodeError(format!(
                "{} is a symbolic link, not what afemu made: refusing to give it away",
                path.display()
            )));
        }
        std::os::unix::fs::lchown(path, Some(run_as.uid), Some(run_as.gid))
            .map_err(|e| NodeError(format!("cannot chown {}: {e}", path.display())))?;
    }
    let Some(first) = paths.first() else {
        return Ok(());
    };
    let mut above = first.parent();
    while let Some(path) = above {
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o001 == 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o001))?;
        }
        if path == root.parent().unwrap_or(root) {
            break;
        }
        above = path.parent();
    }
    Ok(())
}

/// A directory for a server, created if need be, that only its owner can read: the data in it
/// is the tenants'.
pub(crate) fn private_dir(dir: &Path) -> Result<(), NodeError> {
    use std::os::unix::fs::PermissionsExt;
    let named = |e: std::io::Error| NodeError(format!("cannot make {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(named)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(named)?;
    Ok(())
}

/// Whether a server's data directory was initialised to the end (`initdb` or
/// `mariadb-install-db` succeeded): marked by afemu once it has, so that one killed half-way is
/// done again rather than taken as ready.
pub(crate) fn initialised(dir: &Path) -> bool {
    dir.join(INITIALISED).is_file()
}

/// Marks a server's data directory as initialised.
pub(crate) fn mark_initialised(dir: &Path) -> Result<(), NodeError> {
    crate::atomic_file::write_atomically(&dir.join(INITIALISED), b"")?;
    Ok(())
}

const INITIALISED: &str = ".afemu-initialised";

/// Checks that `run_as` can reach `dir` (a parent afemu did not make may be private: /root is).
pub(crate) async fn check_reachable(
    dir: &Path,
    run_as: RunAs,
    user: &str,
) -> Result<(), NodeError> {
    let status = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg("test -w \"$1\"")
        .arg("sh")
        .arg(dir)
        .uid(run_as.uid)
        .gid(run_as.gid)
        .status()
        .await?;
    if status.success() {
        Ok(())
    } else {
        Err(NodeError(format!(
            "the server runs as user {user} (afemu runs as root, which it refuses) and cannot \
             reach {}: a directory above it is private; use a --data-dir that others may pass \
             through (chmod o+x)",
            dir.display()
        )))
    }
}

/// Whether a server is up or on its way (not failed or stopped): worth waiting for.
pub(crate) fn usable(server: &Server) -> bool {
    !matches!(
        server.state(),
        ServerState::Failed { .. } | ServerState::Stopped
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_afemus_own_forms_reach_sql_or_a_path() {
        let ok = json!({
            "name": "d0123456789abcdef",
            "user": "ufedcba9876543210",
            "password": "pAbC123",
        });
        for key in ["name", "user", "password"] {
            assert!(identifier(&ok, key).is_ok(), "{key}");
        }
        assert!(identifier(&json!({"vhost": "v0123456789abcdef"}), "vhost").is_ok());
        assert!(identifier(&json!({"name": "0123456789abcdef"}), "name").is_ok());
        for (key, value) in [
            ("name", "postgres"),
            ("name", "mysql"),
            ("name", "d________________"),
            ("name", "d%"),
            ("name", "d0123'; DROP DATABASE x; --"),
            ("name", "../../etc"),
            ("name", "dABCDEF0123456789"),
            ("user", "postgres"),
            ("user", "root"),
            ("user", "u_______"),
            ("user", "0123456789abcdef"),
            ("password", "it's"),
            ("password", ""),
            ("password", "with space"),
            ("vhost", "/"),
            ("vhost", "v../../x"),
            ("vhost", "vhost"),
        ] {
            assert!(
                identifier(&json!({ key: value }), key).is_err(),
                "{key} {value:?} refused"
            );
        }
        assert!(identifier(&json!({}), "name").is_err());
    }

    #[test]
    fn a_symbolic_link_is_never_given_away() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "secret").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let nobody = RunAs {
            uid: 65534,
            gid: 65534,
        };
        let error = hand_over(&[&link], dir.path(), nobody).unwrap_err();
        assert!(error.0.contains("symbolic link"), "{error}");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            std::fs::metadata(&target).unwrap().uid(),
            nix::unistd::geteuid().as_raw(),
            "the target keeps its owner"
        );
    }
}
