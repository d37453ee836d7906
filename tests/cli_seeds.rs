//! The two seed procedures typed as their authors gave them, with our `af` binary against the
//! `afemu serve` binary, under continuous traffic through the router: no visitor may see the
//! platform's default error page. And our `af` and the real af 0.3.22 used in turn on one home
//! directory: each reads the target, token, alias and instance files the other wrote.

mod common;

use std::path::Path;
use std::process::Stdio;

use afemu::Traffic;

/// `afemu serve` on free ports (profile `fast`: stops, staging and starts take visible time).
struct Served {
    /// The child and its scratch TMPDIR, dropped (killed, removed) with this.
    _served: common::Served,
    api_port: u16,
    router: std::net::SocketAddr,
}

async fn serve() -> Served {
    let served = common::serve_binary(&["--profile", "fast"], &[]).await;
    let address = |url: &str| -> std::net::SocketAddr {
        url.trim_start_matches("http://")
            .parse()
            .expect("an address")
    };
    Served {
        api_port: address(&served.api).port(),
        router: address(&served.router),
        _served: served,
    }
}

/// Our `af` binary in `home` and `cwd`; panics unless it exits 0.
async fn af(home: &Path, cwd: &Path, line: &str, stdin: &str) -> String {
    let (output, status) =
        run_af(Path::new(env!("CARGO_BIN_EXE_af")), home, cwd, line, stdin).await;
    assert_eq!(status, 0, "`af {line}` failed:\n{output}");
    output
}

async fn run_af(program: &Path, home: &Path, cwd: &Path, line: &str, stdin: &str) -> (String, i32) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(program)
        .args(common::transcript::split_words(line))
        .current_dir(cwd)
        .env("HOME", home)
        .env("AF_HOME", home)
        .env("TZ", "UTC")
        .env("TMPDIR", home)
        .env("no_proxy", "localhost,127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("af runs");
    let mut input = child.stdin.take().expect("piped");
    input.write_all(stdin.as_bytes()).await.expect("stdin");
    drop(input);
    let output = tokio::time::timeout(common::EVENT_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`af {line}` did not finish"))
        .expect("af runs");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        output.status.code().unwrap_or(-1),
    )
}

/// Asserts that every host got traffic and none of it saw a router page or no answer.
fn assert_no_default_error_page(
    tallies: &std::collections::BTreeMap<String, afemu::procedure::traffic::HostTally>,
) {
    for (host, tally) in tallies {
        assert!(tally.requests > 0, "{host} got no traffic");
        assert!(
            tally.router_errors.is_empty(),
            "{host} saw the default error page: {tally:?}"
        );
        assert_eq!(tally.failures, 0, "{host}: {tally:?}");
    }
}

/// Seed 001, AppFog's "How can I update my app without downtime?", command for command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_001_swap_typed_with_our_af_shows_no_default_error_page() {
    let served = serve().await;
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let example2_dir = common::fixture("apps/python-probe");
    let apps = common::fixture("apps");
    let api = format!("http://localhost:{}", served.api_port);
    af(h, h, &format!("target {api}"), "").await;
    af(h, h, "login --email dev@example.com --passwd secret", "").await;
    // The seed's starting point: example on example.com and www.example.com, example2 on
    // example.aws.af.cm.
    let wsgi = apps.join("wsgi-hello");
    af(
        h,
        h,
        &format!(
            "push example --path {} --url example.com -n",
            wsgi.display()
        ),
        "",
    )
    .await;
    af(h, h, "map example www.example.com", "").await;
    af(
        h,
        h,
        &format!(
            "push example2 --path {} --url example.aws.af.cm -n",
            example2_dir.display()
        ),
        "python3 app.py\n",
    )
    .await;

    // Production traffic goes on through all of it.
    let production = Traffic::start(served.router, &["example.com", "www.example.com"], None);

    // "Develop on the second app, example2": from its root directory, and with --path.
    af(h, &example2_dir, "update example2", "").await;
    af(
        h,
        h,
        &format!("update example2 --path {}", example2_dir.display()),
        "",
    )
    .await;

    // The swap, and traffic on the staging URL too from now on.
    let staging = Traffic::start(served.router, &["example.aws.af.cm"], None);
    for step in [
        "map example2 example.com",
        "map example2 www.example.com",
        "unmap example example.com",
        "unmap example www.example.com",
        "map example example.aws.af.cm",
        "unmap example2 example.aws.af.cm",
    ] {
        af(h, h, step, "").await;
    }
    let apps_after = af(h, h, "apps", "").await;
    let mut tallies = production.stop().await;
    tallies.extend(staging.stop().await);
    assert_no_default_error_page(&tallies);

    // Swapped: production is example2 (the probe), staging is example (the WSGI app).
    assert!(
        apps_after.contains("| example     | 1  | RUNNING | example.aws.af.cm            |"),
        "{apps_after}"
    );
    assert!(
        apps_after.contains("| example2    | 1  | RUNNING | example.com, www.example.com |"),
        "{apps_after}"
    );
    for host in ["example.com", "www.example.com"] {
        let bodies = &tallies[host].bodies;
        assert!(
            bodies.keys().any(|b| b.contains("python probe")),
            "{host}: {bodies:?}"
        );
        assert!(
            bodies.keys().any(|b| b.contains("hello from wsgi")),
            "{host}: {bodies:?}"
        );
    }
}

/// Seed 000: the downtime app mapped to the domain before `af update` of the main app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_000_downtime_page_typed_with_our_af_shows_no_default_error_page() {
    let served = serve().await;
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let api = format!("http://localhost:{}", served.api_port);
    let main_dir = common::fixture("apps/wsgi-hello");
    let downtime_dir = common::fixture("apps/python-probe");
    af(h, h, &format!("target {api}"), "").await;
    af(h, h, "login --email dev@example.com --passwd secret", "").await;
    af(
        h,
        h,
        &format!(
            "push main --path {} --url yourdomain.com -n",
            main_dir.display()
        ),
        "",
    )
    .await;
    af(
        h,
        h,
        &format!(
            "push downtime --path {} --url downtime.yourdomain.com -n",
            downtime_dir.display()
        ),
        "python3 app.py\n",
    )
    .await;

    let traffic = Traffic::start(served.router, &["yourdomain.com"], None);
    // "bind scheduled downtime app into this domain before you update the main app".
    af(h, h, "map downtime yourdomain.com", "").await;
    let update = af(h, &main_dir, "update main", "").await;
    assert!(
        update.contains("Stopping Application 'main': OK"),
        "{update}"
    );
    af(h, h, "unmap downtime yourdomain.com", "").await;
    af(h, h, "stop downtime", "").await;
    let tallies = traffic.stop().await;
    assert_no_default_error_page(&tallies);
    let bodies = &tallies["yourdomain.com"].bodies;
    assert!(
        bodies.keys().any(|b| b.contains("python probe")),
        "{bodies:?}"
    );
    assert!(
        bodies.keys().any(|b| b.contains("hello from wsgi")),
        "{bodies:?}"
    );
}

/// Our af and the real af 0.3.22 on one home directory: each reads what the other wrote.
/// Needs the real client (`/root/.real-af/bin/af` or `AFEMU_REAL_AF`); says so and stops
/// when it is not installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_af_and_the_real_af_share_their_files() {
    let Some(real) = common::transcript::real_af() else {
        eprintln!("the real af 0.3.22 is not installed here: nothing to alternate with");
        return;
    };
    let ours = Path::new(env!("CARGO_BIN_EXE_af")).to_path_buf();
    let emu = afemu::Emulator::builder()
        .profile(afemu::Profile::Instant)
        .start()
        .await
        .unwrap();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let api = format!("http://localhost:{}", emu.api_addr().port());
    let wsgi = common::fixture("apps/wsgi-hello");
    let step = |program: &Path, line: &str| {
        let program = program.to_path_buf();
        let line = line.to_owned();
        let h = h.to_path_buf();
        async move { run_af(&program, &h, &h, &line, "").await }
    };
    let expect = |who: &str, line: &str, (out, status): (String, i32), want: &str| {
        assert_eq!(status, 0, "{who} `af {line}`:\n{out}");
        assert!(
            out.contains(want),
            "{who} `af {line}` should say {want:?}:\n{out}"
        );
    };

    // The real af targets and logs in; ours uses its target and token.
    let line = format!("target {api}");
    expect(
        "real",
        &line,
        step(&real, &line).await,
        "Successfully targeted",
    );
    let line = "login --email one@example.com --passwd secret";
    expect(
        "real",
        line,
        step(&real, line).await,
        "Successfully logged into",
    );
    let line = format!("push hello --path {} -n", wsgi.display());
    expect(
        "ours",
        &line,
        step(&ours, &line).await,
        "Starting Application 'hello': OK",
    );
    expect(
        "real",
        "apps",
        step(&real, "apps").await,
        "| hello       | 1  | RUNNING |",
    );

    // Ours logs in as someone else; the real af uses our token.
    let line = "login --email two@example.com --passwd secret";
    expect(
        "ours",
        line,
        step(&ours, line).await,
        "Successfully logged into",
    );
    expect(
        "real",
        "user",
        step(&real, "user").await,
        "[two@example.com]",
    );
    expect("real", "apps", step(&real, "apps").await, "No Applications");

    // Aliases and the crash map, one way and the other.
    expect(
        "real",
        "alias ls=apps",
        step(&real, "alias ls=apps").await,
        "Successfully aliased",
    );
    expect("ours", "ls", step(&ours, "ls").await, "No Applications");
    expect(
        "ours",
        "alias who user",
        step(&ours, "alias who user").await,
        "Successfully aliased",
    );
    expect("real", "who", step(&real, "who").await, "[two@example.com]");
    expect(
        "real",
        "aliases",
        step(&real, "aliases").await,
        "| who   | user    |",
    );
    let line = "login --email one@example.com --passwd secret";
    expect(
        "real",
        line,
        step(&real, line).await,
        "Successfully logged into",
    );
    expect(
        "ours",
        "crashes hello",
        step(&ours, "crashes hello").await,
        "No crashed instances for [hello]",
    );
    let map = std::fs::read_to_string(h.join(".af_instances")).unwrap();
    assert_eq!(map, "{}\n", "our af writes the crash map as af does");
    expect(
        "real",
        "crashes hello",
        step(&real, "crashes hello").await,
        "No crashed instances",
    );

    // A target stored by ours, read by the real af; a logout by the real af, seen by ours.
    let line = format!("target {api}/");
    expect(
        "ours",
        &line,
        step(&ours, &line).await,
        "Successfully targeted",
    );
    expect(
        "real",
        "target",
        step(&real, "target").await,
        &format!("[{api}]"),
    );
    expect(
        "real",
        "logout",
        step(&real, "logout").await,
        "Successfully logged out",
    );
    let (out, status) = step(&ours, "apps").await;
    assert_eq!((out.as_str(), status), ("Login Required\n\n", 1));
}
