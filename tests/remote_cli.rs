//! The `afemu` commands that drive a running emulator (`status`, `routes`, `journal`, `fault`,
//! `reset`, `state`, `wait`), run as a user runs them: the real binary against `afemu serve`.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{EVENT_TIMEOUT, serve_binary};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

/// What one `afemu …` run ended with.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts it succeeded and returns its output.
    fn ok(self) -> String {
        assert_eq!(self.code, Some(0), "{self:#?}");
        self.stdout
    }

    fn json(self) -> Value {
        let text = self.ok();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }
}

/// An `afemu` command with nothing of the test's environment that would change its target.
fn command(args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_afemu"));
    command
        .args(args)
        .env_remove("AFEMU_TARGET")
        .env_remove("AFEMU_ADMIN_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

async fn afemu_with(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = command(args);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = tokio::time::timeout(EVENT_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("afemu {args:?} did not end"))
        .expect("afemu runs");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `afemu ARGS --target API`.
async fn afemu(api: &str, args: &[&str]) -> Run {
    let mut all = args.to_vec();
    all.extend(["--target", api]);
    afemu_with(&all, &[]).await
}

/// Whether `text` has a line made of these words, however they are spaced.
fn has_line(text: &str, words: &str) -> bool {
    let words: Vec<&str> = words.split_whitespace().collect();
    text.lines()
        .any(|line| line.split_whitespace().collect::<Vec<_>>() == words)
}

async fn get(router: &str, host: &str, path: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{router}{path}"))
        .header("host", host)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `afemu journal --follow …` running, its stdout read line by line.
struct Follow {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Follow {
    fn start(api: &str, args: &[&str]) -> Follow {
        let mut all = vec!["journal", "--follow", "--target", api];
        all.extend(args);
        let mut child = command(&all)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("afemu runs");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Follow { child, lines }
    }

    /// Reads lines until one satisfies `found`, and returns it.
    async fn until(&mut self, what: &str, found: impl Fn(&str) -> bool) -> String {
        let read = async {
            while let Some(line) = self.lines.next_line().await.unwrap() {
                if found(&line) {
                    return line;
                }
            }
            panic!("afemu journal --follow ended before {what}");
        };
        tokio::time::timeout(EVENT_TIMEOUT, read)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }

    /// Ctrl-C: it must end at once, with success.
    async fn interrupt(mut self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id().unwrap() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        let status = tokio::time::timeout(EVENT_TIMEOUT, self.child.wait())
            .await
            .expect("it ends on SIGINT")
            .unwrap();
        assert_eq!(status.code(), Some(0), "{status:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_drives_a_running_emulator() {
    let served = serve_binary(&["--profile", "instant"], &[]).await;
    let api = served.api.as_str();
    let router = served.router.as_str();
    assert!(afemu(api, &["wait"]).await.ok().contains("healthy"));

    let mut af = afemu::cli::V1Client::new(api).with_poll_interval(Duration::from_millis(10));
    af.login("me@example.com", "pw").await.unwrap();
    common::push_fixture(&af, "web", "apps/hello-v1", &["example.com"]).await;
    common::push_fixture(&af, "spare", "apps/hello-v2", &["spare.com"]).await;

    // status and routes, for a person and for a machine.
    let status = afemu(api, &["status"]).await.ok();
    assert!(status.contains("2 apps, 3 hosts routed"), "{status}");
    assert!(status.contains("api.aws.af.cm  → the v1 API"), "{status}");
    assert!(
        status.lines().any(|l| l.contains("web")
            && l.contains("STARTED  1/1 running")
            && l.contains("example.com")),
        "{status}"
    );
    assert!(has_line(&status, "example.com → web #0"), "{status}");
    assert!(status.contains("faults: none"), "{status}");
    let status = afemu(api, &["status", "--json"]).await.json();
    let names: Vec<&str> = status["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["spare", "web"]);
    assert_eq!(status["routes"]["hosts"]["example.com"][0]["app"], "web");
    let routes = afemu(api, &["routes"]).await.ok();
    assert!(has_line(&routes, "example.com → web #0"), "{routes}");
    assert!(has_line(&routes, "spare.com → spare #0"), "{routes}");
    let routes = afemu(api, &["routes", "--json"]).await.json();
    assert_eq!(routes["hosts"]["spare.com"][0]["instance"], 0);

    // The journal: a request served (the app's own 404: not the platform's error page), and a
    // default error page provoked on an unmapped host.
    assert_eq!(get(router, "example.com", "/served").await, 404);
    assert_eq!(get(router, "nowhere.example", "/lost").await, 404);
    let journal = afemu(api, &["journal"]).await.ok();
    assert!(
        journal
            .lines()
            .any(|l| l.contains(" 404 GET example.com/served  web #0  ")),
        "{journal}"
    );
    assert!(journal.contains(" event app "), "events too: {journal}");
    let errors = afemu(api, &["journal", "--errors"]).await.ok();
    let errors: Vec<&str> = errors.lines().collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains(" 404 GET nowhere.example/lost  router: no-route  "),
        "{errors:?}"
    );
    let lines = afemu(api, &["journal", "--json", "--host", "example.com"])
        .await
        .ok();
    let entries: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 1, "{lines}");
    assert_eq!(entries[0]["path"], "/served");
    let seq = entries[0]["seq"].as_u64().unwrap().to_string();
    let after = afemu(api, &["journal", "--since", &seq, "--host", "example.com"])
        .await
        .ok();
    assert!(after.is_empty(), "nothing after it yet: {after}");
    let last = afemu(api, &["journal", "--limit", "1", "--json"])
        .await
        .ok();
    assert_eq!(last.lines().count(), 1, "{last}");

    // --follow prints what happens after it started, until Ctrl-C.
    let mut follow = Follow::start(api, &["--host", "example.com"]);
    follow
        .until("the request made before", |l| l.contains("/served"))
        .await;
    assert_eq!(get(router, "example.com", "/after-follow").await, 404);
    let line = follow
        .until("the request made after", |l| l.contains("/after-follow"))
        .await;
    assert!(line.contains("web #0"), "{line}");
    follow.interrupt().await;

    // Each fault set shows in `afemu fault`, and clears.
    let faults = |api: &str| {
        let api = api.to_owned();
        async move { afemu(&api, &["fault"]).await.ok() }
    };
    assert_eq!(faults(api).await, "faults: none\n");
    for (set, shown, clear) in [
        (
            &["fault", "route-delay", "0..50ms"][..],
            "route delay 0..50ms",
            &["fault", "route-delay", "off"][..],
        ),
        (
            &["fault", "slow-start", "web", "2s"],
            "slow start web 2s",
            &["fault", "slow-start", "web", "off"],
        ),
        (
            &["fault", "fail-staging", "web"],
            "fail staging web",
            &["fault", "fail-staging", "web", "--off"],
        ),
        (
            &["fault", "stop", "hard"],
            "stop hard",
            &["fault", "stop", "drain"],
        ),
    ] {
        let said = afemu(api, set).await.ok();
        assert!(said.contains(shown), "{set:?}: {said}");
        let listed = faults(api).await;
        assert!(listed.contains(shown), "{set:?}: {listed}");
        let document = afemu(api, &["fault", "list", "--json"]).await.json();
        assert!(
            document
                .to_string()
                .contains(shown.split(' ').next_back().unwrap())
        );
        afemu(api, clear).await.ok();
        assert_eq!(faults(api).await, "faults: none\n", "{clear:?}");
    }
    assert!(
        afemu(api, &["fault", "seed", "7"])
            .await
            .ok()
            .contains("seeded with 7")
    );
    let listed = afemu(api, &["fault", "list", "--json"]).await.json();
    assert_eq!(listed["stop"], "drain");

    // The API's refusals, in its words, with exit 1.
    let unknown = afemu(api, &["fault", "crash", "nosuchapp"]).await;
    assert_eq!(unknown.code, Some(1), "{unknown:?}");
    assert!(
        unknown
            .stderr
            .contains("afemu fault: Application not found"),
        "{unknown:?}"
    );
    let bad = afemu(api, &["fault", "slow-start", "web", "soon"]).await;
    assert_eq!(bad.code, Some(1), "{bad:?}");
    assert!(bad.stderr.contains("not a duration"), "{bad:?}");
    let usage = afemu(api, &["fault", "stop", "gently"]).await;
    assert_eq!(usage.code, Some(2), "{usage:?}");

    // A crash (and a hang, on the other app) happen, and the journal says so.
    let mut follow = Follow::start(api, &["--json"]);
    let said = afemu(api, &["fault", "crash", "web", "0", "--after", "1000"])
        .await
        .ok();
    assert!(said.contains("once it has served 1000 more"), "{said}");
    assert!(
        afemu(api, &["fault", "hang", "spare"])
            .await
            .ok()
            .contains("spare #0 hangs")
    );
    assert!(
        afemu(api, &["fault", "crash", "web"])
            .await
            .ok()
            .contains("crashed web #0")
    );
    let crash = follow
        .until("the crash event", |line| {
            serde_json::from_str::<Value>(line)
                .is_ok_and(|e| e["event"] == "crash" && e["detail"]["app"] == "web")
        })
        .await;
    assert!(crash.contains("\"index\":0"), "{crash}");
    follow.interrupt().await;
    let journal = afemu(api, &["journal"]).await.ok();
    assert!(journal.contains(" event fault {\"hang\""), "{journal}");

    // State out and back in, around a reset.
    let exported = afemu(api, &["state", "export"]).await.json();
    assert_eq!(exported["afemu_state"], 1);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let file = file.to_str().unwrap();
    let run = afemu(api, &["state", "export", file]).await;
    assert!(run.stderr.contains("written"), "{run:?}");
    run.ok();
    let saved: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    assert_eq!(saved["afemu_state"], 1);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no partial file is left beside it"
    );
    let reset = afemu(api, &["reset"]).await.ok();
    assert!(reset.contains("2 apps stopped and deleted"), "{reset}");
    let status = afemu(api, &["status", "--json"]).await.json();
    assert_eq!(status["apps"], serde_json::json!([]));
    assert!(
        afemu(api, &["state", "import", file])
            .await
            .ok()
            .contains("imported")
    );
    let status = afemu(api, &["status", "--json"]).await.json();
    let names: Vec<&str> = status["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["spare", "web"], "the apps are back");
    let missing = afemu(api, &["state", "import", "/nonexistent/state.json"]).await;
    assert_eq!(missing.code, Some(1), "{missing:?}");
    assert!(
        missing
            .stderr
            .contains("cannot read /nonexistent/state.json"),
        "{missing:?}"
    );
    let not_state = dir.path().join("not-state.json");
    std::fs::write(&not_state, "{\"hello\": 1}").unwrap();
    let refused = afemu(api, &["state", "import", not_state.to_str().unwrap()]).await;
    assert_eq!(refused.code, Some(1), "{refused:?}");
}

#[tokio::test]
async fn a_closed_port_is_named_and_wait_gives_up_in_time() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    for args in [
        &["status"][..],
        &["routes"],
        &["journal"],
        &["fault"],
        &["reset"],
        &["state", "export"],
    ] {
        let run = afemu(&closed, args).await;
        assert_eq!(run.code, Some(1), "{args:?}: {run:?}");
        assert!(
            run.stderr.contains(&format!(
                "cannot reach afemu at {closed}: connection refused — is `afemu serve` running?"
            )),
            "{args:?}: {run:?}"
        );
    }
    let started = Instant::now();
    let run = afemu(&closed, &["wait", "--timeout", "500ms"]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        run.stderr.contains(&format!(
            "no healthy afemu at {closed} within 500ms: connection refused"
        )),
        "{run:?}"
    );
    // The target from the environment, as CI scripts set it.
    let run = afemu_with(&["status"], &[("AFEMU_TARGET", &closed)]).await;
    assert!(run.stderr.contains(&closed), "{run:?}");
}

/// This machine's address on a network interface (not loopback), when it has one: a client
/// there is not "this machine directly" for the admin guard.
fn non_loopback_address() -> Option<std::net::IpAddr> {
    // Connecting a UDP socket sends nothing; it only picks the route and so the local address.
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn from_elsewhere_the_guarded_commands_need_the_token() {
    let Some(ip) = non_loopback_address() else {
        eprintln!("skipped: this machine has no address but loopback");
        return;
    };
    let scratch = common::scratch();
    let mut serve = command(&[
        "serve",
        "--profile",
        "instant",
        "--api-addr",
        &format!("{ip}:0"),
        "--router-addr",
        "127.0.0.1:0",
    ])
    .env("TMPDIR", scratch.path())
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("afemu serve runs");
    let mut ready = String::new();
    BufReader::new(serve.stdout.take().unwrap())
        .read_line(&mut ready)
        .await
        .unwrap();
    let api = ready
        .split_whitespace()
        .skip_while(|w| *w != "api")
        .nth(1)
        .expect("the API's URL")
        .to_owned();
    let token = ready
        .trim()
        .trim_end_matches(')')
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();

    // Reads that are open to anyone stay open.
    afemu(&api, &["routes"]).await.ok();
    afemu(&api, &["fault"]).await.ok();
    let refusal =
        "the emulator refuses: run this on its machine or pass --token / AFEMU_ADMIN_TOKEN";
    for args in [
        &["reset"][..],
        &["status"],
        &["fault", "stop", "hard"],
        &["state", "export"],
    ] {
        let run = afemu(&api, args).await;
        assert_eq!(run.code, Some(1), "{args:?}: {run:?}");
        assert!(run.stderr.contains(refusal), "{args:?}: {run:?}");
        let mut wrong = args.to_vec();
        wrong.extend(["--token", "not-the-token"]);
        let run = afemu(&api, &wrong).await;
        assert!(run.stderr.contains(refusal), "{args:?}: {run:?}");
        let mut all = args.to_vec();
        all.extend(["--target", &api]);
        afemu_with(&all, &[("AFEMU_ADMIN_TOKEN", &token)])
            .await
            .ok();
    }
    let mut with_flag = vec!["fault", "stop", "drain", "--token"];
    with_flag.push(&token);
    assert!(afemu(&api, &with_flag).await.ok().contains("drains"));
    serve.kill().await.unwrap();
}

#[tokio::test]
async fn every_command_has_an_example_and_afemu_alone_says_where_to_start() {
    for command in [
        &[][..],
        &["serve"],
        &["rehearse"],
        &["check"],
        &["status"],
        &["routes"],
        &["journal"],
        &["fault"],
        &["fault", "list"],
        &["fault", "route-delay"],
        &["fault", "crash"],
        &["fault", "hang"],
        &["fault", "slow-start"],
        &["fault", "fail-staging"],
        &["fault", "stop"],
        &["fault", "seed"],
        &["reset"],
        &["state"],
        &["state", "export"],
        &["state", "import"],
        &["wait"],
    ] {
        for help in ["-h", "--help"] {
            let mut args = command.to_vec();
            args.push(help);
            let run = afemu_with(&args, &[]).await;
            assert_eq!(run.code, Some(0), "{args:?}");
            assert!(
                run.stdout.contains("Example: afemu "),
                "{args:?}: {}",
                run.stdout
            );
        }
    }
    let alone = afemu_with(&[], &[]).await;
    assert_eq!(alone.code, Some(2), "{alone:?}");
    for start in [
        "afemu serve",
        "afemu rehearse",
        "afemu check",
        "afemu --help",
    ] {
        assert!(alone.stderr.contains(start), "{start}: {}", alone.stderr);
    }
    let version = afemu_with(&["--version"], &[]).await.ok();
    assert!(version.starts_with("afemu 0."), "{version}");
    let usage = afemu_with(&["fault", "crash"], &[]).await;
    assert_eq!(usage.code, Some(2), "{usage:?}");
}
