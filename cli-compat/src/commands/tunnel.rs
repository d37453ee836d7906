//! `af tunnel [SERVICE] [CLIENT] [--port PORT]` (af's `Services#tunnel` and `tunnel_helper.rb`):
//! a local port that reaches one of the user's services, and optionally a client started on it.
//!
//! af pushed Caldecott, a helper app bound to the service, and tunnelled TCP to it over HTTP. On
//! afemu the services already listen on this machine's loopback, so nothing is pushed: the
//! service's credentials come from afemu's `GET /_afemu/tunnel/services/NAME` (v1's
//! `GET /services/NAME` never carried them), and a forwarder in this process relays each
//! connection to the local port to the service's server. What af prints is af's, from
//! `Getting tunnel connection info: OK` on: the connection info block, the port, the client
//! menu, `Launching '…'`.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::time::Duration;

use crate::error::{AfError, CmdResult, Failure};
use crate::json::Json;
use crate::prompt::Ask;
use crate::session::Session;

/// af's first choice of local port, and how many ports from it it tries.
const DEFAULT_PORT: u16 = 10000;
const PORT_RANGE: u16 = 10;

/// A command-line client af knows for a vendor (af's `config/clients.yml`): what follows its
/// name on the command line and the environment it gets, both with `${…}` symbols.
#[derive(Debug, PartialEq)]
struct ClientSpec {
    name: &'static str,
    arguments: &'static str,
    environment: &'static [(&'static str, &'static str)],
}

/// af's `clients.yml`, in its order.
fn clients_for(vendor: &str) -> &'static [ClientSpec] {
    const fn client(name: &'static str, arguments: &'static str) -> ClientSpec {
        ClientSpec {
            name,
            arguments,
            environment: &[],
        }
    }
    const REDIS: &[ClientSpec] = &[client("redis-cli", "-h ${host} -p ${port} -a ${password}")];
    const MYSQL: &[ClientSpec] = &[
        client(
            "mysql",
            "--protocol=TCP --host=${host} --port=${port} --user=${user} --password=${password} ${name}",
        ),
        client(
            "mysqldump",
            "--protocol=TCP --host=${host} --port=${port} --user=${user} --password=${password} ${name} > ${Output file}",
        ),
    ];
    const MONGODB: &[ClientSpec] = &[
        client(
            "mongo",
            "--host ${host} --port ${port} -u ${user} -p ${password} ${name}",
        ),
        client(
            "mongodump",
            "--host ${host} --port ${port} -u ${user} -p ${password} --db ${name}",
        ),
        client(
            "mongorestore",
            "--host ${host} --port ${port} -u ${user} -p ${password} --db ${name} ${Directory or filename to restore from}",
        ),
    ];
    const POSTGRESQL: &[ClientSpec] = &[ClientSpec {
        name: "psql",
        arguments: "-h ${host} -p ${port} -d ${name} -U ${user} -w",
        environment: &[("PGPASSWORD", "${password}")],
    }];
    match vendor {
        "redis" => REDIS,
        "mysql" => MYSQL,
        "mongodb" => MONGODB,
        "postgresql" => POSTGRESQL,
        _ => &[],
    }
}

impl Session<'_> {
    /// `af tunnel [SERVICE] [CLIENT]`.
    pub(crate) async fn tunnel(
        &mut self,
        service: Option<&str>,
        client_name: Option<&str>,
    ) -> CmdResult {
        let services = self.client()?.services().await?;
        if services.items().is_empty() {
            return Err(Failure::err("No services available to tunnel to"));
        }
        let service = match service {
            Some(service) => service.to_owned(),
            None => {
                let mut names: Vec<String> = services
                    .items()
                    .iter()
                    .map(|s| s.get("name").to_ruby_s())
                    .collect();
                names.sort();
                let question = Ask::new("Which service to tunnel to?")
                    .choices(names)
                    .indexed();
                self.ask(question)?.text().unwrap_or_default()
            }
        };
        let Some(provisioned) = services
            .items()
            .iter()
            .find(|s| s.get("name").as_str() == Some(service.as_str()))
            .cloned()
        else {
            return Err(Failure::err(format!("Unknown service '{service}'")));
        };
        let listener = self.local_listener()?;
        let local_port = listener
            .local_addr()
            .map_err(|e| Failure::err(format!("the tunnel's local port: {e}")))?
            .port();
        if !self.client()?.logged_in().await? {
            return Err(AfError::Auth.into());
        }
        let infra = self.tunnel_infra(&provisioned).await?;

        let vendor = provisioned.get("vendor").to_ruby_s();
        let tunnel = self.client()?.tunnel_service(&service).await?;
        if tunnel.get("real") != &Json::Bool(true) {
            return Err(Failure::err(format!(
                "'{service}' is a record in afemu ({vendor}: {}): nothing listens for it, so \
                 there is nothing to tunnel to; start afemu with real services (--services auto \
                 or real, with the server installed)",
                tunnel.get("detail").to_ruby_s()
            )));
        }
        self.out.print("Getting tunnel connection info: ");
        self.out.ok();
        let info = connection_info(&vendor, tunnel.get("credentials"), infra)
            .map_err(|key| Failure::err(format!("Could not determine {key} for {service}")))?;
        let destination = (
            info.get("hostname").to_ruby_s(),
            port_number(info.get("port"))
                .ok_or_else(|| Failure::err(format!("Could not determine port for {service}")))?,
        );
        self.out.say("");
        self.out.say("Service connection info: ");
        for (label, value) in connection_info_lines(&info) {
            self.out.print(&label);
            self.out.say(&self.out.yellow(&value));
        }
        self.out.say("");
        self.out.say(&format!(
            "Starting tunnel to {} on port {}.",
            self.out.bold(&service),
            self.out.bold(&local_port.to_string())
        ));
        let forwarder = Forwarder::start(listener, destination)?;

        let clients = clients_for(&vendor);
        let client_name = match client_name {
            Some(name) => name.to_owned(),
            None if clients.is_empty() => "none".to_owned(),
            None => {
                let mut choices = vec!["none".to_owned()];
                choices.extend(clients.iter().map(|c| c.name.to_owned()));
                let question = Ask::new("Which client would you like to start?")
                    .choices(choices)
                    .indexed();
                self.ask(question)?.text().unwrap_or_default()
            }
        };
        let result = if client_name == "none" {
            self.until_interrupted().await
        } else {
            // af waited here for Caldecott's local port; this one listens since it was bound.
            self.run_client(clients, &client_name, &info, local_port)
                .await
        };
        forwarder.stop().await;
        result
    }

    /// af's `pick_tunnel_port`: `--port` or 10000, the first of ten ports from it that nothing
    /// listens on, else one the system picks. Bound here, so that nothing takes it meanwhile.
    fn local_listener(&self) -> CmdResult<TcpListener> {
        let first = match &self.opts.port {
            None => DEFAULT_PORT,
            Some(port) => port
                .trim()
                .parse::<u16>()
                .map_err(|_| Failure::err(format!("--port must be a port number, not '{port}'")))?,
        };
        // `--port 0`: any port, as a listener on port 0 means.
        let tried = if first == 0 { 0 } else { PORT_RANGE };
        for port in (0..tried).filter_map(|offset| first.checked_add(offset)) {
            if listened_on(port) {
                continue;
            }
            if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
                return Ok(listener);
            }
        }
        TcpListener::bind(("127.0.0.1", 0))
            .map_err(|e| Failure::err(format!("cannot listen on a local port: {e}")))
    }

    /// The infra af names the tunnel's helper app after, and shows in the connection info:
    /// where the target has infras (AppFog), the service's or af's default, which must be one
    /// of them; elsewhere none.
    async fn tunnel_infra(&mut self, provisioned: &Json) -> CmdResult<Json> {
        if !self.client()?.infra_supported().await {
            return Ok(Json::Null);
        }
        let name = if provisioned.get("infra").truthy() {
            provisioned.get("infra").get("name").to_ruby_s()
        } else {
            "aws".to_owned()
        };
        if !self.client()?.infra_valid(&name).await {
            return Err(Failure::err(format!("Infra '{name}' is not valid")));
        }
        Ok(Json::str(name))
    }

    /// `none`: forwards until interrupted (the binary: SIGINT or SIGTERM), then ends well.
    async fn until_interrupted(&mut self) -> CmdResult {
        let interrupted = (self.ctx.interrupt)()
            .map_err(|e| Failure::err(format!("cannot wait for Ctrl-C: {e}")))?;
        self.out
            .say("Open another shell to run command-line clients or");
        self.out
            .say("use a UI tool to connect using the displayed information.");
        self.out.say("Press Ctrl-C to exit...");
        interrupted.await;
        Ok(())
    }

    /// af's `start_local_prog`: the client's command line and environment with their symbols
    /// resolved, run by the shell while the tunnel forwards.
    async fn run_client(
        &mut self,
        clients: &[ClientSpec],
        command: &str,
        info: &Json,
        local_port: u16,
    ) -> CmdResult {
        let base = command.rsplit('/').next().unwrap_or(command);
        let Some(client) = clients.iter().find(|c| c.name == base) else {
            return Err(Failure::err("Unknown client info: nil."));
        };
        let mut ask = |key: &str| -> CmdResult<String> {
            Ok(self.ask(Ask::new(key))?.text().unwrap_or_default())
        };
        let arguments = resolve_symbols(client.arguments, info, local_port, &mut ask)?;
        let mut environment = Vec::new();
        for (name, value) in client.environment {
            environment.push((*name, resolve_symbols(value, info, local_port, &mut ask)?));
        }
        let command_line = format!("{command} {arguments}");
        // While the client runs, Ctrl-C is the client's (psql cancels a query with it): af waits
        // for the client instead of ending the tunnel under it, as a shell's `system()` waits.
        let _interrupts_ignored = (self.ctx.interrupt)()
            .map_err(|e| Failure::err(format!("cannot leave Ctrl-C to the client: {e}")))?;
        self.out.say(&format!("Launching '{command_line}'"));
        self.out.say("");

        let mut child = tokio::process::Command::new("sh");
        child
            .arg("-c")
            .arg(&command_line)
            .envs(environment)
            .current_dir(&self.ctx.cwd)
            .kill_on_drop(true);
        let succeeded = if self.ctx.stdio_is_process {
            match child.status().await {
                Ok(status) => status.success(),
                Err(_) => false,
            }
        } else {
            self.run_captured(child).await
        };
        if succeeded {
            Ok(())
        } else {
            Err(Failure::err(format!(
                "'{command}' execution failed; is it in your $PATH?"
            )))
        }
    }

    /// A client of a library call: what is left of the context's stdin is its input, and its
    /// output goes to the context's stdout.
    async fn run_captured(&mut self, mut command: tokio::process::Command) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut input = Vec::new();
        if self.ctx.stdin.read_to_end(&mut input).is_err() {
            input.clear();
        }
        command.stdin(Stdio::piped()).stdout(Stdio::piped());
        let Ok(mut child) = command.spawn() else {
            return false;
        };
        if let Some(mut stdin) = child.stdin.take() {
            tokio::spawn(async move {
                // A client that does not read all of it is no failure of ours.
                let _ = stdin.write_all(&input).await;
            });
        }
        if let Some(mut stdout) = child.stdout.take() {
            let mut buffer = vec![0; 8192];
            while let Ok(n @ 1..) = stdout.read(&mut buffer).await {
                self.out.write_bytes(&buffer[..n]);
            }
        }
        child.wait().await.is_ok_and(|status| status.success())
    }
}

/// A port in the credentials: a number, or a string of one.
fn port_number(port: &Json) -> Option<u16> {
    match port {
        Json::Int(n) => u16::try_from(*n).ok(),
        Json::Str(text) => text.trim().parse().ok(),
        _ => None,
    }
}

/// Whether something accepts connections on this port of `localhost` (either address: a client
/// told `localhost` may try `::1` first).
fn listened_on(port: u16) -> bool {
    let addresses: [SocketAddr; 2] = [
        ([127, 0, 0, 1], port).into(),
        (std::net::Ipv6Addr::LOCALHOST, port).into(),
    ];
    addresses
        .iter()
        .any(|address| TcpStream::connect_timeout(address, Duration::from_secs(1)).is_ok())
}

/// The info af shows and resolves symbols from (af's `tunnel_connection_info`): the service's
/// credentials, with `infra` added, reshaped per vendor (RabbitMQ's URL taken apart, MongoDB's
/// `db` as its `name`, Redis's `name` dropped). The error is the key missing of `hostname`,
/// `port` and `password`.
fn connection_info(vendor: &str, credentials: &Json, infra: Json) -> Result<Json, &'static str> {
    let mut info = match credentials {
        Json::Object(_) => credentials.clone(),
        _ => Json::object(),
    };
    info.set("infra", infra);
    match vendor {
        "rabbitmq" => {
            let url = AmqpUrl::parse(&info.get("url").to_ruby_s());
            info.set("hostname", url.host.map_or(Json::Null, Json::str));
            info.set("port", url.port.map_or(Json::Null, Json::Int));
            info.set("vhost", url.vhost.map_or(Json::Null, Json::str));
            info.set("user", url.user.map_or(Json::Null, Json::str));
            info.set("password", url.password.map_or(Json::Null, Json::str));
            info.remove("url");
        }
        "mongodb" => {
            let db = info.get("db").clone();
            info.set("name", db);
            info.remove("db");
        }
        "redis" => {
            info.remove("name");
        }
        _ => {}
    }
    for key in ["hostname", "port", "password"] {
        if info.get(key).is_null() {
            return Err(key);
        }
    }
    Ok(info)
}

/// The keys af shows, in its order: the user (`username` preferred over `user`), the password,
/// the name, then the others as they come; never where the service is (`host`, `hostname`,
/// `port`: the tunnel's own port is shown instead) nor `node_id`.
fn shown_keys(info: &Json) -> Vec<String> {
    let (mut user, mut password, mut name) = (None::<String>, None, None);
    let mut others = Vec::new();
    for (key, _) in info.as_object().into_iter().flatten() {
        match key.as_str() {
            "host" | "hostname" | "port" | "node_id" => {}
            "user" | "username" => {
                if user.as_deref() != Some("username") {
                    user = Some(key.clone());
                }
            }
            "password" => password = Some(key.clone()),
            "name" => name = Some(key.clone()),
            _ => others.push(key.clone()),
        }
    }
    [user, password, name]
        .into_iter()
        .flatten()
        .chain(others)
        .collect()
}

/// Each line of af's connection info: `  KEY: ` with the keys padded to one more than the
/// longest, and the value (yellow on a terminal).
fn connection_info_lines(info: &Json) -> Vec<(String, String)> {
    let keys = shown_keys(info);
    let width = keys.iter().map(|k| k.chars().count()).max().unwrap_or(0) + 1;
    keys.iter()
        .map(|key| (format!("  {key:<width$}: "), info.get(key).to_ruby_s()))
        .collect()
}

/// af's `resolve_symbols`: each `${KEY}` in `text` becomes `localhost` (`host`), the local
/// port (`port`), the username (`user`, `username`), the info's value, or else what `ask`
/// answers for it (`${Output file}`). As af's pattern reads them, blanks after `${` are not
/// part of the key and those before `}` are.
fn resolve_symbols(
    text: &str,
    info: &Json,
    local_port: u16,
    ask: &mut dyn FnMut(&str) -> CmdResult<String>,
) -> CmdResult<String> {
    let mut resolved = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}').filter(|&end| end > 0) else {
            resolved.push_str(&rest[..start + 2]);
            rest = after;
            continue;
        };
        resolved.push_str(&rest[..start]);
        let inner = &after[..end];
        let key = match inner.trim_start() {
            // All blanks: the pattern's key is the last of them.
            "" => &inner[inner.len() - inner.chars().next_back().map_or(0, char::len_utf8)..],
            key => key,
        };
        let value = match key {
            "host" => "localhost".to_owned(),
            "port" => local_port.to_string(),
            "user" | "username" => info.get("username").to_ruby_s(),
            key if info.get(key).truthy() => info.get(key).to_ruby_s(),
            key => ask(key)?,
        };
        resolved.push_str(&value);
        rest = &after[end + 1..];
    }
    resolved.push_str(rest);
    Ok(resolved)
}

/// The parts of a RabbitMQ URL (`amqp://user:password@host:port/vhost`) af shows; a part the
/// URL lacks is `None`, as Addressable's (`port` only when written).
#[derive(Debug, Default, PartialEq)]
struct AmqpUrl {
    host: Option<String>,
    port: Option<i64>,
    vhost: Option<String>,
    user: Option<String>,
    password: Option<String>,
}

impl AmqpUrl {
    fn parse(url: &str) -> AmqpUrl {
        let mut parts = AmqpUrl::default();
        let Some((_, rest)) = url.split_once("://") else {
            return parts;
        };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let path = path.split(['?', '#']).next().unwrap_or("");
        let host_port = match authority.rsplit_once('@') {
            Some((userinfo, host_port)) => {
                let (user, password) = match userinfo.split_once(':') {
                    Some((user, password)) => (user, Some(password)),
                    None => (userinfo, None),
                };
                parts.user = Some(user.to_owned());
                parts.password = password.map(str::to_owned);
                host_port
            }
            None => authority,
        };
        // An IPv6 host is in brackets, and keeps them (as Addressable's `host`).
        let (host, port) = match host_port.strip_prefix('[').and_then(|r| r.split_once(']')) {
            Some((address, after)) => (
                &host_port[..address.len() + 2],
                after.strip_prefix(':').and_then(|p| p.parse().ok()),
            ),
            None => match host_port.rsplit_once(':') {
                Some((host, port)) => (host, port.parse().ok()),
                None => (host_port, None),
            },
        };
        parts.host = Some(host.to_owned());
        parts.port = port;
        // Ruby's `path[1..-1]`: nil for an empty path, the rest after the first character else.
        parts.vhost = path.get(1..).map(str::to_owned);
        parts
    }
}

/// The tunnel itself: every connection to the local port relayed to the service's server, both
/// ways, until either side closes (its end is passed on, as a TCP relay does) or fails (both
/// are closed). Stopping it closes the port and every connection.
struct Forwarder {
    task: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    /// Relays to `destination`, a host (name or address) and a port.
    fn start(listener: TcpListener, destination: (String, u16)) -> CmdResult<Forwarder> {
        let listener = listener
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpListener::from_std(listener))
            .map_err(|e| Failure::err(format!("the tunnel's local port: {e}")))?;
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((client, _)) => {
                            connections.spawn(relay(client, destination.clone()));
                        }
                        // Out of descriptors, most likely: give the open connections a moment
                        // to end rather than spin on the error.
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    },
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Ok(Forwarder { task })
    }

    /// Closes the port and every connection through it (they live in the task's `JoinSet`).
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// One connection through the tunnel. A server that cannot be reached closes the client's
/// connection at once, as Caldecott's did.
async fn relay(mut client: tokio::net::TcpStream, destination: (String, u16)) {
    let Ok(mut server) =
        tokio::net::TcpStream::connect((destination.0.as_str(), destination.1)).await
    else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Json {
        Json::parse(text).unwrap()
    }

    fn lines(info: &Json) -> String {
        connection_info_lines(info)
            .into_iter()
            .map(|(label, value)| format!("{label}{value}\n"))
            .collect()
    }

    #[test]
    fn a_database_shows_username_password_name_then_the_rest() {
        // Keys as afemu sends them (sorted), the port and hosts left out, `infra` last.
        let credentials = json(
            r#"{"host":"127.0.0.1","hostname":"127.0.0.1","name":"d1","password":"p1","port":5432,"user":"u1","username":"u1"}"#,
        );
        let info = connection_info("postgresql", &credentials, Json::str("aws")).unwrap();
        assert_eq!(shown_keys(&info), ["username", "password", "name", "infra"]);
        assert_eq!(
            lines(&info),
            "  username : u1\n  password : p1\n  name     : d1\n  infra    : aws\n"
        );
    }

    #[test]
    fn username_wins_over_user_whatever_the_order() {
        let info = json(r#"{"username":"a","user":"b","password":"p","node_id":"n","zone":"z"}"#);
        assert_eq!(shown_keys(&info), ["username", "password", "zone"]);
        let info = json(r#"{"user":"b","password":"p"}"#);
        assert_eq!(lines(&info), "  user     : b\n  password : p\n");
    }

    #[test]
    fn redis_drops_its_name_and_a_missing_infra_shows_empty() {
        let credentials = json(
            r#"{"host":"127.0.0.1","hostname":"127.0.0.1","name":"abc","password":"secret","port":6379}"#,
        );
        let info = connection_info("redis", &credentials, Json::Null).unwrap();
        assert_eq!(lines(&info), "  password : secret\n  infra    : \n");
    }

    #[test]
    fn rabbitmq_takes_its_url_apart_and_mongodb_names_its_db() {
        let credentials = json(r#"{"url":"amqp://ua:pa@10.0.0.1:5672/vh","name":"x"}"#);
        let info = connection_info("rabbitmq", &credentials, Json::Null).unwrap();
        assert_eq!(
            info.compact(),
            r#"{"name":"x","infra":null,"hostname":"10.0.0.1","port":5672,"vhost":"vh","user":"ua","password":"pa"}"#
        );
        let no_port = json(r#"{"url":"amqp://ua:pa@10.0.0.1/vh"}"#);
        assert_eq!(
            connection_info("rabbitmq", &no_port, Json::Null),
            Err("port")
        );
        let credentials = json(
            r#"{"db":"real","name":"junk","hostname":"h","port":1,"password":"p","username":"u"}"#,
        );
        let info = connection_info("mongodb", &credentials, Json::Null).unwrap();
        assert_eq!(info.get("name"), &Json::str("real"));
        assert!(!info.contains_key("db"));
    }

    #[test]
    fn hostname_port_and_password_are_required() {
        let info = json(r#"{"hostname":"h","port":1}"#);
        assert_eq!(connection_info("mysql", &info, Json::Null), Err("password"));
        assert_eq!(
            connection_info("mysql", &Json::str("not an object"), Json::Null),
            Err("hostname")
        );
    }

    #[test]
    fn symbols_resolve_as_af_resolves_them() {
        let info = json(r#"{"name":"d1","username":"u1","user":"other","password":"p1"}"#);
        let mut asked = Vec::new();
        let mut ask = |key: &str| -> CmdResult<String> {
            asked.push(key.to_owned());
            Ok("out.sql".to_owned())
        };
        let psql = &clients_for("postgresql")[0];
        assert_eq!(
            resolve_symbols(psql.arguments, &info, 10001, &mut ask).unwrap(),
            "-h localhost -p 10001 -d d1 -U u1 -w"
        );
        assert_eq!(
            resolve_symbols(psql.environment[0].1, &info, 10001, &mut ask).unwrap(),
            "p1"
        );
        let dump = &clients_for("mysql")[1];
        assert_eq!(
            resolve_symbols(dump.arguments, &info, 10001, &mut ask).unwrap(),
            "--protocol=TCP --host=localhost --port=10001 --user=u1 --password=p1 d1 > out.sql"
        );
        // Blanks after `${` are dropped, those before `}` kept; `${}` and an open `${` stay.
        assert_eq!(
            resolve_symbols("${ name} ${name } ${} ${ } ${x", &info, 1, &mut ask).unwrap(),
            "d1 out.sql ${} out.sql ${x"
        );
        assert_eq!(asked, ["Output file", "name ", " "]);
    }

    #[test]
    fn clients_are_af_s() {
        let names = |vendor| -> Vec<&str> { clients_for(vendor).iter().map(|c| c.name).collect() };
        assert_eq!(names("redis"), ["redis-cli"]);
        assert_eq!(names("mysql"), ["mysql", "mysqldump"]);
        assert_eq!(names("mongodb"), ["mongo", "mongodump", "mongorestore"]);
        assert_eq!(names("postgresql"), ["psql"]);
        assert!(names("rabbitmq").is_empty());
    }

    #[test]
    fn amqp_urls_come_apart() {
        assert_eq!(
            AmqpUrl::parse("amqp://guest@localhost"),
            AmqpUrl {
                host: Some("localhost".into()),
                user: Some("guest".into()),
                ..AmqpUrl::default()
            }
        );
        assert_eq!(AmqpUrl::parse("no url"), AmqpUrl::default());
        let v6 = AmqpUrl::parse("amqp://[::1]:5673/v");
        assert_eq!((v6.host.as_deref(), v6.port), (Some("[::1]"), Some(5673)));
        let v6 = AmqpUrl::parse("amqp://[::1]");
        assert_eq!((v6.host.as_deref(), v6.port), (Some("[::1]"), None));
        assert_eq!(
            AmqpUrl::parse("amqp://h:1/").vhost.as_deref(),
            Some(""),
            "Ruby's \"/\"[1..-1]"
        );
    }

    #[tokio::test]
    async fn the_forwarder_relays_both_ways_and_stopping_closes_the_port() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // An echo server as the service.
        let service = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let destination = ("127.0.0.1".to_owned(), service.local_addr().unwrap().port());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = service.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = socket.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let forwarder = Forwarder::start(listener, destination).unwrap();
        let mut client = tokio::net::TcpStream::connect(local).await.unwrap();
        client.write_all(b"ping").await.unwrap();
        client.shutdown().await.unwrap();
        let mut echoed = Vec::new();
        client.read_to_end(&mut echoed).await.unwrap();
        assert_eq!(
            echoed, b"ping",
            "the half-close is passed on, the answer comes back"
        );
        let mut open = tokio::net::TcpStream::connect(local).await.unwrap();
        open.write_all(b"x").await.unwrap();
        let mut byte = [0];
        open.read_exact(&mut byte).await.unwrap();
        forwarder.stop().await;
        assert!(
            tokio::net::TcpStream::connect(local).await.is_err(),
            "the port is closed"
        );
        let mut rest = Vec::new();
        assert!(
            matches!(open.read_to_end(&mut rest).await, Ok(0) | Err(_)),
            "an open connection is closed"
        );
    }
}
