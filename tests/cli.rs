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
    let mut session = Session::start().await;
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
        let mut session = Session::start().await;
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
    use transcript::{replace_ticks, replace_times, replace_tokens, split_words};
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
