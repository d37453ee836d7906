//! v1's RabbitMQ node (`vcap-services/rabbit/lib/rabbit_service/rabbit_node.rb`): a broker of its
//! own per provisioned service, on a port of its own:
//!
//! - provision: the broker started with a virtual host `v<id>` and an administrator `u<id>` with
//!   every permission on it (the broker makes both at its first boot, from `rabbitmq.conf`'s
//!   `default_vhost` and `default_user`; so no `guest` user ever exists, which v1 deleted);
//! - bind: a further user per bound app with every permission on the virtual host (v1's binding
//!   options were never implemented: every binding got them all);
//! - unbind: that user deleted;
//! - unprovision: the broker stopped and its directory removed.
//!
//! The credentials are v1's: `{name, hostname, host, port, vhost, user, username, pass, password,
//! url}`, `url` being `amqp://user:pass@host:port/vhost`.
//!
//! Erlang programs find each other through a port mapper, epmd; one started the ordinary way
//! starts a shared one as a daemon that outlives everything. afemu runs its own instead, in the
//! foreground, as a supervised server on a port of its own (`ERL_EPMD_PORT`), and forbids every
//! Erlang program it starts to start another (`-start_epmd false`). The brokers and their
//! distribution listen on loopback only. afemu administers a broker with `rabbitmqctl`, which
//! reaches it over Erlang distribution with the cookie in the broker's private home; passwords go
//! on its standard input (`import_definitions`), never on a command line.
//!
//! Each broker keeps its users and messages in its directory (Mnesia), so they survive a restart
//! of afemu with the same data directory.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use super::probe::Rabbitmq as Programs;
use super::server::{RunAs, Server, ServerSpec, Shared};
use super::{Context, NodeError, identifier, new_id};

/// How long a `rabbitmqctl` command may take.
const CTL_LIMIT: Duration = Duration::from_secs(60);
/// `rabbitmqctl`'s exit code when the user it was told of does not exist.
const NO_SUCH_USER: i32 = 67;

pub(crate) struct Node {
    programs: Programs,
    context: Context,
    dir: PathBuf,
    /// The port mapper every broker of this node registers with.
    epmd: Shared,
    /// One broker per service, by the service's credentials' `name`.
    servers: tokio::sync::Mutex<BTreeMap<String, Arc<Server>>>,
    current: Mutex<BTreeMap<String, Arc<Server>>>,
}

/// What a service's broker is made with at its first boot.
struct Admin<'a> {
    vhost: &'a str,
    user: &'a str,
    password: &'a str,
}

impl<'a> Admin<'a> {
    fn of(service: &'a Value) -> Result<Admin<'a>, NodeError> {
        Ok(Admin {
            vhost: identifier(service, "vhost")?,
            user: identifier(service, "user")?,
            password: identifier(service, "password")?,
        })
    }
}

/// v1's credentials for a RabbitMQ service or binding.
fn credentials(name: &str, port: u16, vhost: &str, user: &str, password: &str) -> Value {
    let mut credentials = json!({
        "name": name,
        "hostname": "127.0.0.1",
        "host": "127.0.0.1",
        "port": port,
        "vhost": vhost,
        "user": user,
        "username": user,
        "pass": password,
        "password": password,
    });
    set_url(&mut credentials);
    credentials
}

/// Sets v1's `url` (`amqp://user:pass@host:port/vhost`) from the other credentials, when they are
/// all there.
pub(crate) fn set_url(credentials: &mut Value) {
    let text = |key: &str| credentials.get(key).and_then(Value::as_str);
    let (Some(user), Some(pass), Some(host), Some(vhost), Some(port)) = (
        text("user"),
        text("password").or(text("pass")),
        text("host"),
        text("vhost"),
        credentials.get("port").and_then(Value::as_u64),
    ) else {
        return;
    };
    let url = format!("amqp://{user}:{pass}@{host}:{port}/{vhost}");
    credentials["url"] = json!(url);
}

/// Credentials (from a hand-written snapshot) with v1's other keys made to agree with the ones a
/// broker needs: a virtual host made up if missing, `username`, `pass` and `url` from `user`,
/// `password` and the rest.
pub(crate) fn complete(credentials: &mut Value) {
    if credentials.get("vhost").and_then(Value::as_str).is_none() {
        credentials["vhost"] = json!(new_id('v'));
    }
    for (alias, key) in [("username", "user"), ("pass", "password")] {
        if let Some(value) = credentials.get(key).cloned() {
            credentials[alias] = value;
        }
    }
    set_url(credentials);
}

/// The broker's Erlang node name: its own, so that brokers (and any other RabbitMQ on the
/// machine) never meet.
fn node_name(name: &str) -> String {
    format!("afemu-{name}@localhost")
}

impl Node {
    pub(crate) fn new(programs: Programs, context: Context) -> Node {
        let dir = context.root.join("rabbitmq");
        Node {
            programs,
            context,
            dir,
            epmd: Shared::default(),
            servers: tokio::sync::Mutex::new(BTreeMap::new()),
            current: Mutex::new(BTreeMap::new()),
        }
    }

    pub(crate) fn port(&self, service: &Value) -> Option<u16> {
        let name = service.get("name")?.as_str()?;
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .map(|s| s.spec.port)
    }

    /// The port mapper (once started) and every broker.
    pub(crate) fn servers(&self) -> Vec<Arc<Server>> {
        let mut servers = self.epmd.servers();
        servers.extend(
            self.current
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .cloned(),
        );
        servers
    }

    /// The environment of every Erlang program afemu runs for a broker (the broker itself and
    /// `rabbitmqctl`): its node, its port mapper, its home (where its cookie is), its files, and
    /// none of the machine's RabbitMQ configuration.
    fn environment(&self, dir: &Path, name: &str, epmd_port: u16) -> Vec<(OsString, OsString)> {
        let path = |p: &str| dir.join(p).into_os_string();
        // Distribution on loopback only; and no scheduler busy-waiting, which on a small
        // machine takes the CPU from everything else (apps, the other brokers, rabbitmqctl).
        let erl_args = "-kernel inet_dist_use_interface {127,0,0,1} \
                        +sbwt none +sbwtdcpu none +sbwtdio none";
        vec![
            ("HOME".into(), path("home")),
            ("ERL_EPMD_PORT".into(), epmd_port.to_string().into()),
            ("ERL_EPMD_ADDRESS".into(), "127.0.0.1".into()),
            // What afemu's own environment says of Erlang does not reach the brokers (an
            // ERL_FLAGS could put the distribution on every interface); ERL_ZFLAGS comes last
            // on the command line, so loopback wins there too.
            ("ERL_FLAGS".into(), "".into()),
            ("ERL_AFLAGS".into(), "".into()),
            (
                "ERL_ZFLAGS".into(),
                "-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}".into(),
            ),
            ("ERL_CRASH_DUMP".into(), path("erl_crash.dump")),
            ("RABBITMQ_NODENAME".into(), node_name(name).into()),
            ("RABBITMQ_CONF_ENV_FILE".into(), path("rabbitmq-env.conf")),
            ("RABBITMQ_CONFIG_FILE".into(), path("rabbitmq.conf")),
            (
                "RABBITMQ_ADVANCED_CONFIG_FILE".into(),
                path("advanced.config"),
            ),
            (
                "RABBITMQ_ENABLED_PLUGINS_FILE".into(),
                path("enabled_plugins"),
            ),
            ("RABBITMQ_MNESIA_BASE".into(), path("mnesia")),
            ("RABBITMQ_LOG_BASE".into(), path("log")),
            ("RABBITMQ_LOGS".into(), "-".into()),
            (
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS".into(),
                erl_args.into(),
            ),
            ("RABBITMQ_CTL_ERL_ARGS".into(), erl_args.into()),
            // rabbitmqctl's own distribution: any free port, not the default fixed range.
            ("RABBITMQ_CTL_DIST_PORT_MIN".into(), "0".into()),
            ("RABBITMQ_CTL_DIST_PORT_MAX".into(), "0".into()),
        ]
    }

    /// The user the brokers run as when afemu is root (Debian's `rabbitmq`, or nobody).
    fn run_as() -> Result<Option<(RunAs, String)>, NodeError> {
        super::unprivileged_user("rabbitmq")
    }

    /// The port mapper, started if it is not running; ready.
    async fn epmd(&self) -> Result<Arc<Server>, NodeError> {
        self.epmd.running(self.start_epmd()).await
    }

    async fn start_epmd(&self) -> Result<Arc<Server>, NodeError> {
        super::private_dir(&self.dir)?;
        let run_as = Self::run_as()?;
        if let Some((user, name)) = &run_as {
            super::hand_over(&[&self.dir], &self.context.root, *user)?;
            super::check_reachable(&self.dir, *user, name).await?;
        }
        let port = super::server::stable_port(&self.dir.join("epmd-port"))?;
        let spec = ServerSpec {
            name: "rabbitmq epmd".into(),
            program: self.programs.epmd.clone(),
            // In the foreground (not -daemon), on loopback; -d says when it listens.
            args: vec![
                "-port".into(),
                port.to_string().into(),
                "-address".into(),
                "127.0.0.1".into(),
                "-d".into(),
            ],
            dir: self.dir.clone(),
            env: Vec::new(),
            log: self.dir.join("epmd.log"),
            ready_line: "epmd running",
            stop_signal: Signal::SIGTERM,
            run_as: run_as.map(|(user, _)| user),
            port,
        };
        Ok(self.context.start_server(spec))
    }

    /// The service's broker, started (with its configuration written) if it is not running.
    async fn running(&self, name: &str, admin: &Admin<'_>) -> Result<Arc<Server>, NodeError> {
        let epmd = self.epmd().await?;
        let mut servers = self.servers.lock().await;
        if let Some(server) = servers.get(name)
            && super::usable(server)
        {
            let server = server.clone();
            drop(servers);
            server.ready().await.map_err(NodeError)?;
            return Ok(server);
        }
        let dir = self.dir.join(name);
        super::private_dir(&self.dir)?;
        super::private_dir(&dir)?;
        let (home, mnesia, log) = (dir.join("home"), dir.join("mnesia"), dir.join("log"));
        for made in [&home, &mnesia, &log] {
            super::private_dir(made)?;
        }
        let port = super::server::stable_port(&dir.join("port"))?;
        let mut dist_port = super::server::stable_port(&dir.join("dist-port"))?;
        if dist_port == port {
            std::fs::remove_file(dir.join("dist-port"))?;
            dist_port = super::server::stable_port(&dir.join("dist-port"))?;
        }
        // The administrator's password goes in a file only the broker's user reads, not on a
        // command line; the broker uses it only at its first boot (an empty database).
        let config = format!(
            "listeners.tcp.1 = 127.0.0.1:{port}\n\
             default_vhost = {vhost}\n\
             default_user = {user}\n\
             default_pass = {password}\n\
             default_user_tags.administrator = true\n\
             default_permissions.configure = .*\n\
             default_permissions.read = .*\n\
             default_permissions.write = .*\n",
            vhost = admin.vhost,
            user = admin.user,
            password = admin.password,
        );
        let config_file = dir.join("rabbitmq.conf");
        write_private(&config_file, config.as_bytes())?;
        // No plugins: no management interface, as nothing but AMQP is offered.
        let plugins_file = dir.join("enabled_plugins");
        write_private(&plugins_file, b"[].\n")?;
        // As root, run it as the user Debian made for it (or nobody), as the others.
        let run_as = Self::run_as()?;
        if let Some((user, user_name)) = &run_as {
            super::hand_over(
                &[
                    &self.dir,
                    &dir,
                    &home,
                    &mnesia,
                    &log,
                    &config_file,
                    &plugins_file,
                ],
                &self.context.root,
                *user,
            )?;
            super::check_reachable(&dir, *user, user_name).await?;
        }
        let mut env = self.environment(&dir, name, epmd.spec.port);
        // As the configuration says (and over any RABBITMQ_NODE_IP_ADDRESS afemu was given).
        env.push(("RABBITMQ_NODE_IP_ADDRESS".into(), "127.0.0.1".into()));
        env.push(("RABBITMQ_NODE_PORT".into(), port.to_string().into()));
        env.push(("RABBITMQ_DIST_PORT".into(), dist_port.to_string().into()));
        let spec = ServerSpec {
            name: format!("rabbitmq {name}"),
            program: self.programs.server.clone(),
            args: Vec::new(),
            dir: dir.clone(),
            env,
            log: dir.join("server.log"),
            ready_line: "Server startup complete",
            // The script stops the broker cleanly on SIGTERM and exits.
            stop_signal: Signal::SIGTERM,
            run_as: run_as.map(|(user, _)| user),
            port,
        };
        let server = self.context.start_server(spec);
        servers.insert(name.to_owned(), server.clone());
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), server.clone());
        drop(servers);
        server.ready().await.map_err(NodeError)?;
        Ok(server)
    }

    /// Runs `rabbitmqctl` against a service's broker, `input` on its standard input; its output.
    async fn ctl(&self, name: &str, args: &[&str], input: &[u8]) -> Result<String, NodeError> {
        let output = self.run_ctl(name, args, input).await?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(ctl_error(args, &output))
        }
    }

    /// Deletes a user; one that does not exist is gone already.
    async fn delete_user(&self, name: &str, user: &str) -> Result<(), NodeError> {
        let args = ["delete_user", user];
        let output = self.run_ctl(name, &args, b"").await?;
        match output.status.code() {
            Some(0) | Some(NO_SUCH_USER) => Ok(()),
            _ => Err(ctl_error(&args, &output)),
        }
    }

    /// `rabbitmqctl`, run as the broker's user with the broker's environment, in a process group
    /// of its own that the watchdog knows of, and killed with whatever it started if it takes
    /// too long.
    async fn run_ctl(
        &self,
        name: &str,
        args: &[&str],
        input: &[u8],
    ) -> Result<std::process::Output, NodeError> {
        use tokio::io::AsyncWriteExt;
        let epmd = self.epmd().await?;
        let dir = self.dir.join(name);
        let mut command = tokio::process::Command::new(&self.programs.ctl);
        command
            .args(["-n", &node_name(name), "-q"])
            .args(args)
            .envs(self.environment(&dir, name, epmd.spec.port))
            .current_dir(&dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some((user, _)) = Self::run_as()? {
            command.uid(user.uid).gid(user.gid);
        }
        let mut child = command
            .spawn()
            .map_err(|e| NodeError(format!("cannot run {}: {e}", self.programs.ctl.display())))?;
        let group = child.id().map(|pid| pid as i32);
        if let Some(group) = group {
            self.context.watchdog.watch(group);
        }
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input).await?;
        }
        let output = tokio::time::timeout(CTL_LIMIT, child.wait_with_output()).await;
        if let Some(group) = group {
            // Whatever it left in its group goes with it.
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(group), Signal::SIGKILL);
            self.context.watchdog.forget(group);
        }
        let what = args.first().copied().unwrap_or_default();
        Ok(output.map_err(|_| {
            NodeError(format!(
                "rabbitmqctl {what} did not finish within {}s",
                CTL_LIMIT.as_secs()
            ))
        })??)
    }

    /// Makes users (or gives those that exist these passwords) with every permission on
    /// `vhost`, and the virtual host if it is missing: one `import_definitions`, read from
    /// standard input, so that no password is ever on a command line.
    async fn import_users(
        &self,
        name: &str,
        vhost: &str,
        users: &[(&str, &str, &[&str])],
    ) -> Result<(), NodeError> {
        let definitions = json!({
            "vhosts": [{"name": vhost}],
            "users": users.iter().map(|(user, password, tags)| json!({
                "name": user,
                "password": password,
                "tags": tags,
            })).collect::<Vec<_>>(),
            "permissions": users.iter().map(|(user, _, _)| json!({
                "user": user,
                "vhost": vhost,
                "configure": ".*",
                "write": ".*",
                "read": ".*",
            })).collect::<Vec<_>>(),
        });
        self.ctl(
            name,
            &["import_definitions", "--format", "json"],
            definitions.to_string().as_bytes(),
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn provision(&self) -> Result<Value, NodeError> {
        // Each drawn on its own: a broker's name is no secret, its password must not follow.
        let name = crate::clock::random_hex(16);
        let (vhost, user, password) = (new_id('v'), new_id('u'), new_id('p'));
        let admin = Admin {
            vhost: &vhost,
            user: &user,
            password: &password,
        };
        let server = match self.running(&name, &admin).await {
            Ok(server) => server,
            Err(error) => {
                // Nothing of a provision that failed is kept: its broker, its directory.
                let _ = self.remove(&name).await;
                return Err(error);
            }
        };
        tracing::info!(%name, port = server.spec.port, "rabbitmq: provisioned");
        Ok(credentials(
            &name,
            server.spec.port,
            &vhost,
            &user,
            &password,
        ))
    }

    pub(crate) async fn bind(&self, service: &Value) -> Result<Value, NodeError> {
        let name = identifier(service, "name")?;
        let admin = Admin::of(service)?;
        let server = self.running(name, &admin).await?;
        let (user, password) = (new_id('u'), new_id('p'));
        if let Err(error) = self
            .import_users(name, admin.vhost, &[(&user, &password, &[])])
            .await
        {
            // What the import made before it failed goes.
            let _ = self.delete_user(name, &user).await;
            return Err(error);
        }
        tracing::info!(%name, %user, "rabbitmq: bound");
        Ok(credentials(
            name,
            server.spec.port,
            admin.vhost,
            &user,
            &password,
        ))
    }

    pub(crate) async fn unbind(&self, service: &Value, binding: &Value) -> Result<(), NodeError> {
        let name = identifier(service, "name")?;
        let admin = Admin::of(service)?;
        let user = identifier(binding, "user")?;
        if user == admin.user {
            return Ok(());
        }
        self.running(name, &admin).await?;
        self.delete_user(name, user).await?;
        tracing::info!(%name, %user, "rabbitmq: unbound");
        Ok(())
    }

    pub(crate) async fn unprovision(&self, service: &Value) -> Result<(), NodeError> {
        let name = identifier(service, "name")?;
        self.remove(name).await?;
        tracing::info!(%name, "rabbitmq: unprovisioned");
        Ok(())
    }

    /// Stops a broker and removes its directory.
    async fn remove(&self, name: &str) -> Result<(), NodeError> {
        let server = self.servers.lock().await.remove(name);
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        if let Some(server) = server {
            server.stop().await;
        }
        let dir = self.dir.join(name);
        if dir.exists() {
            tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir))
                .await
                .map_err(|e| NodeError(e.to_string()))??;
        }
        Ok(())
    }

    /// The broker running with the service's virtual host and users: kept as they are when the
    /// broker has them already (a restart with the same data directory), made otherwise (a
    /// snapshot loaded elsewhere), with the snapshot's passwords either way.
    pub(crate) async fn restore(
        &self,
        service: &Value,
        bindings: &[Value],
    ) -> Result<(), NodeError> {
        let name = identifier(service, "name")?;
        let admin = Admin::of(service)?;
        let mut users: Vec<(&str, &str, &[&str])> =
            vec![(admin.user, admin.password, &["administrator"])];
        for binding in bindings {
            let user = identifier(binding, "user")?;
            if user != admin.user {
                users.push((user, identifier(binding, "password")?, &[]));
            }
        }
        self.running(name, &admin).await?;
        self.import_users(name, admin.vhost, &users).await
    }
}

/// What a `rabbitmqctl` that failed said (its input, which holds passwords, is never quoted).
fn ctl_error(args: &[&str], output: &std::process::Output) -> NodeError {
    let said: Vec<String> = [&output.stderr, &output.stdout]
        .iter()
        .flat_map(|text| {
            String::from_utf8_lossy(text)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && *l != "Error:")
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    NodeError(format!(
        "rabbitmqctl {} failed ({}): {}",
        args.first().copied().unwrap_or_default(),
        output.status,
        said.join("; ")
    ))
}

/// Writes a file only its owner reads (a configuration with a password in it).
fn write_private(path: &Path, contents: &[u8]) -> Result<(), NodeError> {
    use std::os::unix::fs::PermissionsExt;
    crate::atomic_file::write_atomically(path, contents)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1s_credentials_and_url() {
        let made = credentials("0123456789abcdef", 5999, "vabc12345", "uabc12345", "pxyz");
        assert_eq!(
            made["url"],
            "amqp://uabc12345:pxyz@127.0.0.1:5999/vabc12345"
        );
        for key in [
            "name", "hostname", "host", "port", "vhost", "user", "username", "pass", "password",
        ] {
            assert!(made.get(key).is_some(), "v1's {key} in {made}");
        }
        let mut moved = made.clone();
        moved["port"] = json!(6000);
        set_url(&mut moved);
        assert_eq!(
            moved["url"],
            "amqp://uabc12345:pxyz@127.0.0.1:6000/vabc12345"
        );
    }

    #[test]
    fn a_hand_written_snapshots_credentials_are_completed_to_agree() {
        let mut written = json!({
            "name": "0123456789abcdef",
            "host": "127.0.0.1",
            "port": 5999,
            "user": "uabc12345",
            "password": "pnew",
            "pass": "pold",
        });
        complete(&mut written);
        assert_eq!(written["pass"], "pnew");
        assert_eq!(written["username"], "uabc12345");
        let vhost = written["vhost"].as_str().unwrap();
        assert!(identifier(&written, "vhost").is_ok(), "{vhost}");
        assert_eq!(
            written["url"],
            format!("amqp://uabc12345:pnew@127.0.0.1:5999/{vhost}")
        );
    }

    /// A program in `dir` that runs `script`, runnable by the server's user (afemu as root
    /// runs the broker as another).
    fn program(dir: &Path, name: &str, script: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[tokio::test]
    async fn a_broker_that_cannot_start_fails_the_provision_and_leaves_nothing() {
        let scratch = tempfile::tempdir().unwrap();
        let bin = scratch.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let root = scratch.path().join("services");
        let programs = Programs {
            server: program(
                &bin,
                "rabbitmq-server",
                "echo 'BOOT FAILED'; echo 'ERROR: distribution port 1 in use' >&2; exit 1",
            ),
            ctl: program(&bin, "rabbitmqctl", "exit 1"),
            epmd: program(&bin, "epmd", "echo 'epmd running'; exec sleep 600"),
            version: "3.10.8".into(),
        };
        let watchdog = Arc::new(crate::watchdog::Watchdog::start());
        let context = Context {
            root: root.clone(),
            watchdog: watchdog.clone(),
            shutdown: tokio_util::sync::CancellationToken::new(),
            tasks: tokio_util::task::TaskTracker::new(),
            journal: afemu_router::Journal::new(16),
        };
        let node = Node::new(programs, context);
        let error = node.provision().await.unwrap_err().0;
        assert!(error.contains("exited before it was ready"), "{error}");
        assert!(error.contains("distribution port 1 in use"), "{error}");
        // No broker, no directory: only the port mapper and its files.
        let servers = node.servers();
        assert_eq!(servers.len(), 1);
        assert_eq!(servers[0].spec.name, "rabbitmq epmd");
        let left: Vec<String> = std::fs::read_dir(root.join("rabbitmq"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(left.iter().all(|name| name.starts_with("epmd")), "{left:?}");
        servers[0].stop().await;
        watchdog.stop();
    }
}
