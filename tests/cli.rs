//! Our `af` against the real af 0.3.22: every transcript in `fixtures/transcripts/` (recorded
//! from the real client against afemu) replayed with our `af` as a library call, and some as
//! the binary, must print the same bytes and exit with the same status.
//!
//! To record the transcripts again with the real client (it must be installed; see
//! `fixtures/transcripts/README.md`):
//!
//! ```sh
//! cargo test --test cli -- --ignored record_transcripts_with_the_real_af
//! ```

mod common;

use common::transcript::{self, Af, Session, Transcript};

async fn replay(name: &str, path: &std::path::Path, af: &Af) {
    let text = std::fs::read_to_string(path).expect("a transcript");
    let expected = Transcript::parse(&text);
    let mut session = Session::start_with_admins(&expected.admins).await;
    let actual = session.replay(af, &expected).await;
    transcript::assert_same(name, &expected, &actual);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transcript_matches_the_real_af() {
    let all = transcript::all();
    assert!(all.len() >= 10, "the transcripts are missing: {all:?}");
    let only = std::env::var("AFEMU_TRANSCRIPT").ok();
    for (name, path) in all {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        replay(&name, &path, &Af::Library).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_matches_the_real_af() {
    for name in ["basics", "usage_errors"] {
        let path = common::fixture("transcripts").join(format!("{name}.txt"));
        replay(name, &path, &Af::Binary).await;
    }
}

/// Runs every transcript's commands with the real af and writes what it printed. Ignored: it
/// needs the real client, and it rewrites the fixtures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "records fixtures with the real af 0.3.22"]
async fn record_transcripts_with_the_real_af() {
    let real = transcript::real_af().expect("the real af (set AFEMU_REAL_AF)");
    let only = std::env::var("AFEMU_TRANSCRIPT").ok();
    for (name, path) in transcript::all() {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("a transcript");
        let template = Transcript::parse(&text);
        let mut session = Session::start_with_admins(&template.admins).await;
        let recorded = session.replay(&Af::Program(real.clone()), &template).await;
        std::fs::write(&path, recorded.render()).expect("the transcript is written");
        eprintln!("recorded {name}");
    }
}

#[test]
fn transcripts_round_trip() {
    let text = "# a session\n@cd {TMP}\n$ af target {API}\nSuccessfully targeted to [{API}]\n\n[exit 0]\n@loose\n$ af push x -n\n< answer\nout\n[exit 1]\n";
    let t = Transcript::parse(text);
    assert_eq!(t.steps.len(), 3);
    assert_eq!(t.render(), text);
}

#[test]
fn normalising_ticks_times_tokens() {
    use transcript::{replace_epochs, replace_ticks, replace_times, replace_tokens, split_words};
    assert_eq!(
        replace_epochs("\"created\": 1795327496,\n port 1795327496x 12345"),
        "\"created\": {EPOCH},\n port 1795327496x 12345"
    );
    assert_eq!(
        replace_ticks(
            "Staging Application 'a': .{CLEAR}Staging Application 'a': OK\nStarting Application 'a': ..{CLEAR}"
        ),
        "Staging Application 'a': {TICKS}{CLEAR}Staging Application 'a': OK\nStarting Application 'a': {TICKS}{CLEAR}"
    );
    assert_eq!(
        replace_times("| 0 | RUNNING | 11/22/2026 03:26AM |"),
        "| 0 | RUNNING | {TIME} |"
    );
    assert_eq!(
        replace_tokens(&format!("x {} y", "ab12".repeat(16))),
        "x {TOKEN} y"
    );
    assert_eq!(
        split_words("af push 'a b' \"c\" d"),
        ["af", "push", "a b", "c", "d"]
    );
}

/// On a terminal af colours `OK` and its messages (`core_ext.rb`: `\e[0m\e[32m…\e[0m` green,
/// `\e[0m\e[31m` red, `\e[0m\e[33m` yellow); `--no-color` turns that off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colours_only_on_a_terminal() {
    let session = Session::start().await;
    let api = session.api();
    let run = |args: &[&str], tty: bool| {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let (mut ctx, captured) = afemu::cli::Context::new(session.home.path())
            .with_cwd(session.scratch.path())
            .with_tty(tty)
            .with_poll_interval(std::time::Duration::from_millis(25))
            .captured();
        async move {
            let status = afemu::cli::run(&args, &mut ctx).await;
            (captured.text(), status)
        }
    };
    let (out, status) = run(&["target", &api], true).await;
    assert_eq!(status, 0);
    assert_eq!(
        out,
        format!("\u{1b}[0m\u{1b}[32mSuccessfully targeted to [{api}]\u{1b}[0m\n\n")
    );
    let (out, _) = run(&["apps"], true).await;
    assert_eq!(out, "\u{1b}[0m\u{1b}[31mLogin Required\u{1b}[0m\n\n");
    let (out, _) = run(&["apps", "--no-color"], true).await;
    assert_eq!(out, "Login Required\n\n");
    run(
        &["login", "--email", "dev@example.com", "--passwd", "x"],
        true,
    )
    .await;
    let (out, status) = run(&["unmap", "nothere", "x.com"], true).await;
    assert_eq!(status, 1);
    assert_eq!(
        out,
        "\u{1b}[0m\u{1b}[31mError 301: Application not found\u{1b}[0m\n\n"
    );
    let wsgi = common::fixture("apps/wsgi-hello");
    let (out, status) = run(
        &["push", "hello", "--path", &wsgi.to_string_lossy(), "-n"],
        true,
    )
    .await;
    assert_eq!(status, 0, "{out}");
    let ok = "\u{1b}[0m\u{1b}[32mOK\u{1b}[0m";
    assert!(
        out.starts_with(&format!("Creating Application: {ok}\n")),
        "{out:?}"
    );
    // On a terminal the upload's progress ends with the banner again and OK on its own line.
    assert!(
        out.contains(&format!("  Uploading (0K): {ok}\nPush Status: {ok}\n")),
        "{out:?}"
    );
    let (out, _) = run(&["stop", "hello"], true).await;
    assert_eq!(out, format!("Stopping Application 'hello': {ok}\n\n"));
    let (out, _) = run(&["stop", "hello"], true).await;
    assert_eq!(
        out,
        "\u{1b}[0m\u{1b}[33mApplication 'hello' already stopped\u{1b}[0m\n\n"
    );
}

/// Where our af deliberately differs from af 0.3.22 (`cli-compat/COMPATIBILITY.md`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_we_do_the_right_thing_instead() {
    let mut session = Session::start().await;
    let api = session.api();
    for line in [
        format!("af target {api}"),
        "af login --email dev@example.com --passwd secret".to_owned(),
    ] {
        let (out, status) = session.af(&Af::Library, &line, &[], false).await;
        assert_eq!(status, 0, "{out}");
    }

    // A standalone push at the end of input: af asks for the start command forever; we stop.
    let probe = common::fixture("apps/python-probe");
    let line = format!("af push probe --path {} -n", probe.display());
    let (out, status) = session.af(&Af::Library, &line, &[], false).await;
    assert_eq!(
        (out.as_str(), status),
        (
            "Start Command: \nError: no answer to 'Start Command' before the end of input\n\n",
            1
        )
    );
    let (out, _) = session.af(&Af::Library, "af apps", &[], false).await;
    assert_eq!(out, "\nNo Applications\n\n", "nothing was created");

    // A static site (an index.html) pushed with -n: af asks for a start command forever; here it
    // needs none, and afemu serves the page (the README's example).
    let site = common::fixture("apps/downtime");
    let line = format!(
        "af push example --path {} --url example.com -n",
        site.display()
    );
    let (out, status) = session.af(&Af::Library, &line, &[], false).await;
    assert_eq!(status, 0, "{out}");
    assert!(!out.contains("Start Command"), "{out}");
    assert!(out.contains("Starting Application 'example': "), "{out}");
    let page = session.emu.get("example.com", "/").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.body,
        std::fs::read_to_string(site.join("index.html")).unwrap()
    );

    // A relative --path: af creates the app, then fails to find the files; we push it.
    session.cwd = common::fixture("apps");
    let (out, status) = session
        .af(&Af::Library, "af push rel --path wsgi-hello -n", &[], false)
        .await;
    assert_eq!(status, 0, "{out}");
    assert!(out.contains("Starting Application 'rel': "), "{out}");
    assert_eq!(
        session.emu.get("rel.aws.af.cm", "/").await.body,
        "hello from wsgi\n"
    );

    // No ~/.af_token: af crashes on `af targets`; we have no targets.
    std::fs::remove_file(session.home.path().join(".af_token")).unwrap();
    let (out, status) = session.af(&Af::Library, "af targets", &[], false).await;
    assert_eq!((out.as_str(), status), ("None specified\n\n", 0));
}

/// `AF_HOME` takes the place of `HOME` for the dot-files of the `af` binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn af_home_overrides_home() {
    let session = Session::start().await;
    let af_home = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_af"))
        .args(["target", &session.api()])
        .env("HOME", session.home.path())
        .env("AF_HOME", af_home.path())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    assert_eq!(
        std::fs::read_to_string(af_home.path().join(".af_target")).unwrap(),
        format!("{}\n", session.api())
    );
    assert!(!session.home.path().join(".af_target").exists());
}
