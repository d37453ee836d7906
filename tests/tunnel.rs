//! `af tunnel` against afemu's real services: our `af` binary forwards a local port to the
//! service's server (a raw Redis client and `psql` go through it), prints af's connection info,
//! starts af's client for the vendor with the rest of stdin, and ends cleanly on SIGINT; and
//! the endpoint it reads, `GET /_afemu/tunnel/services/NAME`, is the owner's only.
//!
//! The real-services test runs with `--services real`: a machine without PostgreSQL and Redis
//! (and `psql`) fails it (`.ci/run` installs them), it never quietly tests records.

mod common;

use std::process::Stdio;

use afemu::{Emulator, ServicesMode};
use common::EVENT_TIMEOUT;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// Our `af` with a home of its own, targeting `emu` and logged in as `email` (the first login
/// registers the user).
struct Af {
    home: tempfile::TempDir,
    api: String,
}

impl Af {
    async fn logged_in(emu: &Emulator, email: &str) -> Af {
        let af = Af {
            home: tempfile::tempdir().unwrap(),
            api: emu.api_url(),
        };
        let api = af.api.clone();
        af.expect(&["target", &api], "", 0).await;
        af.expect(&["login", "--email", email, "--passwd", "secret"], "", 0)
            .await;
        af
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_af"));
        command
            .args(args)
            .env("HOME", self.home.path())
            .env("AF_HOME", self.home.path())
            .current_dir(self.home.path())
            .kill_on_drop(true);
        command
    }

    /// Runs `af ARGS` with `stdin`: what it printed and its exit status.
    async fn run(&self, args: &[&str], stdin: &str) -> (String, i32) {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).await.unwrap();
        drop(input);
        let output = tokio::time::timeout(EVENT_TIMEOUT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("af {args:?} did not end"))
            .unwrap();
        (
            String::from_utf8_lossy(&output.stdout).into_owned(),
            output.status.code().unwrap_or(-1),
        )
    }

    /// Runs `af ARGS` and checks its exit status (and that it printed `contains`).
    async fn expect(&self, args: &[&str], contains: &str, status: i32) -> String {
        let (out, code) = self.run(args, "").await;
        assert_eq!(code, status, "af {args:?}:\n{out}");
        assert!(out.contains(contains), "af {args:?}:\n{out}");
        out
    }

    /// The token `af login` stored.
    fn token(&self) -> String {
        let tokens = std::fs::read_to_string(self.home.path().join(".af_token")).unwrap();
        let tokens: Value = serde_json::from_str(&tokens).unwrap();
        tokens[&self.api].as_str().unwrap().to_owned()
    }

    /// afemu's tunnel endpoint for a service, as this user.
    async fn tunnel_info(&self, service: &str) -> (u16, Value) {
        let path = format!("/_afemu/tunnel/services/{service}");
        common::call(&self.api, &self.token(), "GET", &path, None).await
    }
}

/// The port af says it tunnels on (`Starting tunnel to NAME on port PORT.`).
fn tunnel_port(out: &str) -> u16 {
    out.lines()
        .find_map(|line| line.strip_prefix("Starting tunnel to "))
        .and_then(|rest| rest.rsplit_once(" on port "))
        .and_then(|(_, port)| port.strip_suffix('.'))
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no tunnel port in:\n{out}"))
}

/// A port nothing listens on now (af takes the next one if something does by then).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// af's connection info for a PostgreSQL service, then its launch of `psql`.
fn postgresql_block(credentials: &Value, service: &str, port: u16) -> String {
    let [name, user, password] =
        ["name", "username", "password"].map(|key| credentials[key].as_str().unwrap());
    format!(
        "Getting tunnel connection info: OK\n\
         \n\
         Service connection info: \n  \
         username : {user}\n  \
         password : {password}\n  \
         name     : {name}\n  \
         infra    : aws\n\
         \n\
         Starting tunnel to {service} on port {port}.\n\
         Launching 'psql -h localhost -p {port} -d {name} -U {user} -w'\n\
         \n"
    )
}

/// Whether psql's output has `42` as a row.
fn shows_42(out: &str) -> bool {
    out.lines().any(|line| line.trim() == "42")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_reach_real_redis_and_postgresql() {
    let emu = Emulator::builder()
        .configure(|config| config.services = ServicesMode::Real)
        .start()
        .await
        .expect("PostgreSQL and Redis must be installed (.ci/run installs them)");
    let af = Af::logged_in(&emu, "tunneller@example.com").await;
    af.expect(
        &["create-service", "redis", "cache", "--infra", "aws"],
        "OK",
        0,
    )
    .await;
    af.expect(
        &["create-service", "postgresql", "pg", "--infra", "aws"],
        "OK",
        0,
    )
    .await;

    // The endpoint: the service's own credentials where its server listens now, for its owner.
    let (status, pg) = af.tunnel_info("pg").await;
    assert_eq!(status, 200, "{pg}");
    assert_eq!(
        (&pg["name"], &pg["vendor"], &pg["real"]),
        (
            &Value::from("pg"),
            &Value::from("postgresql"),
            &Value::Bool(true)
        )
    );
    let live = emu.platform().services_status();
    let pg_server = live["vendors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["vendor"] == "postgresql")
        .map(|v| v["servers"][0]["port"].clone())
        .unwrap();
    assert_eq!(pg["credentials"]["port"], pg_server);
    let (status, missing) = af.tunnel_info("nope").await;
    assert_eq!(
        (status, &missing["code"]),
        (404, &Value::from(500)),
        "{missing}"
    );
    let stranger = Af::logged_in(&emu, "stranger@example.com").await;
    let (status, _) = stranger.tunnel_info("pg").await;
    assert_eq!(status, 404, "another user's service is not found");
    let (status, _) = common::call(
        &emu.api_url(),
        "not a token",
        "GET",
        "/_afemu/tunnel/services/pg",
        None,
    )
    .await;
    assert!(status >= 400, "without the user's token: {status}");

    // Redis with no client: forwarded until SIGINT, then af ends well and the port is closed.
    let port = free_port().to_string();
    let mut tunnel = af
        .command(&["tunnel", "cache", "none", "--port", &port])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(tunnel.stdout.take().unwrap());
    let mut printed = String::new();
    while !printed.ends_with("Press Ctrl-C to exit...\n") {
        let read = tokio::time::timeout(EVENT_TIMEOUT, stdout.read_line(&mut printed))
            .await
            .expect("af tunnel says it is up")
            .unwrap();
        assert_ne!(read, 0, "af tunnel ended early:\n{printed}");
    }
    let port = tunnel_port(&printed);
    let (status, cache) = af.tunnel_info("cache").await;
    assert_eq!(status, 200);
    let password = cache["credentials"]["password"].as_str().unwrap();
    assert_eq!(
        printed,
        format!(
            "Getting tunnel connection info: OK\n\
             \n\
             Service connection info: \n  \
             password : {password}\n  \
             infra    : aws\n\
             \n\
             Starting tunnel to cache on port {port}.\n\
             Open another shell to run command-line clients or\n\
             use a UI tool to connect using the displayed information.\n\
             Press Ctrl-C to exit...\n"
        )
    );
    let mut redis = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    redis
        .write_all(format!("AUTH {password}\r\nPING\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = vec![0; "+OK\r\n+PONG\r\n".len()];
    tokio::time::timeout(EVENT_TIMEOUT, redis.read_exact(&mut answer))
        .await
        .expect("Redis answers through the tunnel")
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&answer), "+OK\r\n+PONG\r\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(tunnel.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = tokio::time::timeout(EVENT_TIMEOUT, tunnel.wait())
        .await
        .expect("af tunnel ends on SIGINT")
        .unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).await.unwrap();
    assert_eq!((status.code(), rest.as_str()), (Some(0), "\n"));
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "the tunnel's port is closed"
    );
    let mut closed = Vec::new();
    assert!(
        matches!(redis.read_to_end(&mut closed).await, Ok(0) | Err(_)),
        "the connection through it is closed"
    );

    // PostgreSQL with psql named: af's connection info, then psql on the rest of stdin.
    let (out, status) = af.run(&["tunnel", "pg", "psql"], "SELECT 40+2;\n").await;
    assert_eq!(status, 0, "{out}");
    let port = tunnel_port(&out);
    let block = postgresql_block(&pg["credentials"], "pg", port);
    assert!(out.starts_with(&block), "expected:\n{block}\ngot:\n{out}");
    assert!(shows_42(&out), "{out}");

    // Ctrl-C while the client runs is the client's: af does not end the tunnel under it.
    let mut tunnel = af
        .command(&["tunnel", "pg", "psql"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(tunnel.stdout.take().unwrap());
    let mut printed = String::new();
    while !printed.contains("Launching '") {
        let read = tokio::time::timeout(EVENT_TIMEOUT, stdout.read_line(&mut printed))
            .await
            .expect("af tunnel launches psql")
            .unwrap();
        assert_ne!(read, 0, "af tunnel ended early:\n{printed}");
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(tunnel.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let mut input = tunnel.stdin.take().unwrap();
    input.write_all(b"SELECT 40+2;\n").await.unwrap();
    drop(input);
    let status = tokio::time::timeout(EVENT_TIMEOUT, tunnel.wait())
        .await
        .expect("psql ends at the end of its input")
        .unwrap();
    stdout.read_to_string(&mut printed).await.unwrap();
    assert_eq!(status.code(), Some(0), "{printed}");
    assert!(shows_42(&printed), "{printed}");

    // Both asked: the services sorted, then the clients; psql still gets what follows.
    let (out, status) = af.run(&["tunnel"], "2\n2\nSELECT 40+2;\n").await;
    assert_eq!(status, 0, "{out}");
    let port = tunnel_port(&out);
    let (asked, rest) = out.split_at(out.find("Launching").unwrap());
    assert_eq!(
        asked,
        format!(
            "1: cache\n\
             2: pg\n\
             Which service to tunnel to?: 2\n\
             {}\
             1: none\n\
             2: psql\n\
             Which client would you like to start?: 2\n",
            postgresql_block(&pg["credentials"], "pg", port)
                .split("Launching")
                .next()
                .unwrap()
        )
    );
    assert!(shows_42(rest), "{out}");

    // As a library call on a terminal: af's colours, the context's interrupt, the client's
    // input and output through the context.
    let (mut ctx, printed) = afemu::cli::Context::new(af.home.path())
        .with_tty(true)
        .with_interrupt(|| Ok(Box::pin(async {})))
        .captured();
    let status = afemu::cli::run_line("af tunnel cache none --port 0", &mut ctx).await;
    let text = printed.text();
    assert_eq!(status, 0, "{text}");
    let port = tunnel_port(
        &text
            .replace("\u{1b}[0m\u{1b}[1m", "")
            .replace("\u{1b}[0m", ""),
    );
    let paint = |code: &str, text: &str| format!("\u{1b}[0m\u{1b}[{code}m{text}\u{1b}[0m");
    assert_eq!(
        text,
        format!(
            "Getting tunnel connection info: {}\n\nService connection info: \n  \
             password : {}\n  infra    : {}\n\nStarting tunnel to {} on port {}.\n\
             Open another shell to run command-line clients or\n\
             use a UI tool to connect using the displayed information.\n\
             Press Ctrl-C to exit...\n\n",
            paint("32", "OK"),
            paint("33", password),
            paint("33", "aws"),
            paint("1", "cache"),
            paint("1", &port.to_string()),
        )
    );
    let (mut ctx, printed) = afemu::cli::Context::new(af.home.path())
        .with_stdin("SELECT 40+2;\n")
        .captured();
    let status = afemu::cli::run_line("af tunnel pg psql", &mut ctx).await;
    assert_eq!(status, 0, "{}", printed.text());
    assert!(shows_42(&printed.text()), "{}", printed.text());

    // A client named by its path is af's client for its name; one that cannot run is af's
    // error.
    let (out, status) = af.run(&["tunnel", "pg", "/nowhere/psql"], "").await;
    assert_eq!(status, 1, "{out}");
    assert!(
        out.contains("Launching '/nowhere/psql -h localhost -p ")
            && out.ends_with("Error: '/nowhere/psql' execution failed; is it in your $PATH?\n\n"),
        "{out}"
    );
    let (out, status) = af.run(&["tunnel", "pg", "pgcli"], "").await;
    assert_eq!(status, 1, "{out}");
    assert!(
        out.ends_with("Error: Unknown client info: nil.\n\n"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_refuse_no_services_unknown_ones_and_records() {
    let emu = Emulator::builder()
        .configure(|config| config.services = ServicesMode::Records)
        .start()
        .await
        .unwrap();
    let af = Af::logged_in(&emu, "recorder@example.com").await;
    let (out, status) = af.run(&["tunnel"], "").await;
    assert_eq!(
        (out.as_str(), status),
        ("Error: No services available to tunnel to\n\n", 1)
    );
    af.expect(
        &["create-service", "redis", "cache", "--infra", "aws"],
        "OK",
        0,
    )
    .await;
    let (out, status) = af.run(&["tunnel", "nope"], "").await;
    assert_eq!(
        (out.as_str(), status),
        ("Error: Unknown service 'nope'\n\n", 1)
    );
    let (out, status) = af.run(&["tunnel", "cache", "none"], "").await;
    assert_eq!(
        (out.as_str(), status),
        (
            "Error: 'cache' is a record in afemu (redis: --services records): nothing listens \
             for it, so there is nothing to tunnel to; start afemu with real services \
             (--services auto or real, with the server installed)\n\n",
            1
        )
    );
    let (status, record) = af.tunnel_info("cache").await;
    assert_eq!((status, &record["real"]), (200, &Value::Bool(false)));
}
