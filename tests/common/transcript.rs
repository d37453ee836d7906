//! CLI transcripts: sessions of `af` command lines with the stdout and exit status the real
//! af 0.3.22 gave for each, recorded against `afemu` (`fixtures/transcripts/*.txt`), and the
//! machinery to replay them with our `af` (as a library call or as the binary) or to record
//! them again with the real one.
//!
//! A transcript file:
//!
//! ```text
//! # what the session shows (comment lines at the top)
//! @cd {APPS}/wsgi-hello              a working directory for the commands that follow
//! $ af push hello -n                 a command line ({API}, {APPS}, {MANIFESTS}, {TMP} expand)
//! < python3 app.py                   lines given on stdin
//! Creating Application: OK           what it printed, verbatim after normalisation…
//! [exit 0]                           …and its exit status
//! ```
//!
//! `@loose` before a command compares its tables without their padding and its measurements
//! (CPU, memory, uptime) as placeholders. Output is normalised the same way on both sides: the
//! API port, paths, times, tokens, the start ticker's dots and line clearing.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use afemu::Emulator;

/// One command of a session, a change of directory, or a file written.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    Cd(String),
    /// `@write FILE TEXT`: the file gets the text and a newline.
    Write(String, String),
    /// `@settle APP`: wait until every instance of the app runs (scaling does not wait).
    Settle(String),
    /// `@fill FILE SIZE`: a file of SIZE bytes (for uploads above af's 64 KiB threshold).
    Fill(String, usize),
    Af {
        line: String,
        stdin: Vec<String>,
        loose: bool,
        /// `@slow`: poll a starting app every second, as af does (the replay otherwise polls
        /// every 25 ms), for steps whose output depends on when the app is looked at (a
        /// crashing app that the health manager restarts: which of its logs exist).
        slow: bool,
        /// `@lines N`: only the first N lines are compared (what follows depends on the
        /// emulator's timing, such as which incarnation of a restarted instance the logs are
        /// read from).
        lines: Option<usize>,
        output: String,
        exit: i32,
    },
}

/// A whole transcript file.
#[derive(Clone, Debug, PartialEq)]
pub struct Transcript {
    pub comments: Vec<String>,
    /// `@admin EMAIL` lines: the session's emulator makes these users admins.
    pub admins: Vec<String>,
    pub steps: Vec<Step>,
}

impl Transcript {
    pub fn parse(text: &str) -> Transcript {
        let mut comments = Vec::new();
        let mut admins = Vec::new();
        let mut steps = Vec::new();
        let mut lines = text.split_inclusive('\n').peekable();
        let mut loose = false;
        let mut slow = false;
        let mut lines_only = None;
        while let Some(raw) = lines.next() {
            let line = raw.trim_end_matches('\n');
            if let Some(email) = line.strip_prefix("@admin ") {
                admins.push(email.to_owned());
            } else if let Some(dir) = line.strip_prefix("@cd ") {
                steps.push(Step::Cd(dir.to_owned()));
            } else if let Some(rest) = line.strip_prefix("@fill ") {
                let (file, size) = rest.rsplit_once(' ').expect("@fill FILE SIZE");
                steps.push(Step::Fill(file.to_owned(), size.parse().expect("a size")));
            } else if let Some(app) = line.strip_prefix("@settle ") {
                steps.push(Step::Settle(app.to_owned()));
            } else if let Some(rest) = line.strip_prefix("@write ") {
                let (file, content) = rest.split_once(' ').unwrap_or((rest, ""));
                steps.push(Step::Write(file.to_owned(), content.to_owned()));
            } else if line == "@loose" {
                loose = true;
            } else if line == "@slow" {
                slow = true;
            } else if let Some(n) = line.strip_prefix("@lines ") {
                lines_only = Some(n.parse().expect("a number of lines"));
            } else if let Some(command) = line.strip_prefix("$ ") {
                let mut stdin = Vec::new();
                while let Some(next) = lines.peek() {
                    match next.trim_end_matches('\n').strip_prefix("< ") {
                        Some(answer) => {
                            stdin.push(answer.to_owned());
                            lines.next();
                        }
                        None => break,
                    }
                }
                let mut output = String::new();
                let mut exit = None;
                for out_line in lines.by_ref() {
                    let bare = out_line.trim_end_matches('\n');
                    if let Some(code) = bare
                        .strip_prefix("[exit ")
                        .and_then(|r| r.strip_suffix(']'))
                    {
                        exit = Some(code.parse().expect("an exit status"));
                        break;
                    }
                    if bare == "\\ no newline at end" {
                        output.pop();
                        continue;
                    }
                    output.push_str(out_line);
                }
                steps.push(Step::Af {
                    line: command.to_owned(),
                    stdin,
                    loose,
                    slow,
                    lines: lines_only,
                    output,
                    exit: exit.unwrap_or_else(|| panic!("no [exit N] after `{command}`")),
                });
                loose = false;
                slow = false;
                lines_only = None;
            } else if line.starts_with('#') && steps.is_empty() {
                comments.push(line.to_owned());
            } else if !line.trim().is_empty() {
                panic!("unexpected transcript line: {line:?}");
            }
        }
        Transcript {
            comments,
            admins,
            steps,
        }
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        for comment in &self.comments {
            text.push_str(comment);
            text.push('\n');
        }
        for admin in &self.admins {
            text.push_str(&format!("@admin {admin}\n"));
        }
        for step in &self.steps {
            match step {
                Step::Cd(dir) => text.push_str(&format!("@cd {dir}\n")),
                Step::Write(file, content) => text.push_str(&format!("@write {file} {content}\n")),
                Step::Settle(app) => text.push_str(&format!("@settle {app}\n")),
                Step::Fill(file, size) => text.push_str(&format!("@fill {file} {size}\n")),
                Step::Af {
                    line,
                    stdin,
                    loose,
                    slow,
                    lines,
                    output,
                    exit,
                } => {
                    if let Some(n) = lines {
                        text.push_str(&format!("@lines {n}\n"));
                    }
                    if *loose {
                        text.push_str("@loose\n");
                    }
                    if *slow {
                        text.push_str("@slow\n");
                    }
                    text.push_str(&format!("$ {line}\n"));
                    for answer in stdin {
                        text.push_str(&format!("< {answer}\n"));
                    }
                    text.push_str(output);
                    if !output.is_empty() && !output.ends_with('\n') {
                        text.push_str("\n\\ no newline at end\n");
                    }
                    text.push_str(&format!("[exit {exit}]\n"));
                }
            }
        }
        text
    }
}

/// Which `af` runs the commands.
#[derive(Clone, Debug)]
pub enum Af {
    /// `afemu_cli::run`, in this process.
    Library,
    /// Our `af` binary.
    Binary,
    /// Another program (the real af 0.3.22).
    Program(PathBuf),
}

/// What a session runs in: an emulator, a home for the dot-files, a scratch directory.
pub struct Session {
    pub emu: Emulator,
    pub home: tempfile::TempDir,
    pub scratch: tempfile::TempDir,
    pub cwd: PathBuf,
    /// A port nothing listens on (`{DEAD}` is `http://localhost:<it>`).
    pub dead_port: u16,
}

impl Session {
    pub async fn start() -> Session {
        Session::start_with_admins(&[]).await
    }

    /// A session whose emulator makes `admins` admins.
    pub async fn start_with_admins(admins: &[String]) -> Session {
        let admins = admins.to_vec();
        let emu = Emulator::builder()
            .profile(afemu::Profile::Instant)
            .configure(move |config| config.admins = admins)
            .start()
            .await
            .expect("the emulator starts");
        let home = tempfile::tempdir().expect("a home directory");
        let scratch = tempfile::tempdir().expect("a scratch directory");
        let cwd = scratch.path().to_path_buf();
        let dead_port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            listener.local_addr().expect("an address").port()
        };
        Session {
            emu,
            home,
            scratch,
            cwd,
            dead_port,
        }
    }

    /// `http://localhost:PORT`: af computes default URLs from the target's name, and
    /// `localhost` (no dot) gives `NAME.aws.af.cm`.
    pub fn api(&self) -> String {
        format!("http://localhost:{}", self.emu.api_addr().port())
    }

    fn expand(&self, text: &str) -> String {
        text.replace("{API}", &self.api())
            .replace("{DEAD}", &format!("http://localhost:{}", self.dead_port))
            .replace("{PORT}", &self.emu.api_addr().port().to_string())
            .replace("{HOME}", &self.home.path().to_string_lossy())
            .replace("{APPS}", &super::fixture("apps").to_string_lossy())
            .replace(
                "{MANIFESTS}",
                &super::fixture("manifests").to_string_lossy(),
            )
            .replace("{TMP}", &self.scratch.path().to_string_lossy())
    }

    /// Runs one command line with `af`; returns its stdout (raw) and exit status.
    pub async fn af(&self, af: &Af, line: &str, stdin: &[String], slow: bool) -> (String, i32) {
        let args = split_words(&self.expand(line));
        assert_eq!(args.first().map(String::as_str), Some("af"), "{line}");
        let args = &args[1..];
        let mut input = String::new();
        for answer in stdin {
            input.push_str(answer);
            input.push('\n');
        }
        match af {
            Af::Library => {
                let (mut ctx, captured) = afemu::cli::Context::new(self.home.path())
                    .with_cwd(&self.cwd)
                    .with_stdin(input)
                    .with_time_zone(jiff::tz::TimeZone::UTC)
                    .with_poll_interval(Duration::from_millis(if slow { 1000 } else { 25 }))
                    .captured();
                let status = afemu::cli::run(args, &mut ctx).await;
                (captured.text(), status)
            }
            Af::Binary => {
                self.program(Path::new(env!("CARGO_BIN_EXE_af")), args, &input)
                    .await
            }
            Af::Program(path) => self.program(path, args, &input).await,
        }
    }

    async fn program(&self, path: &Path, args: &[String], input: &str) -> (String, i32) {
        let mut child = tokio::process::Command::new(path)
            .args(args)
            .current_dir(&self.cwd)
            .env("HOME", self.home.path())
            .env("AF_HOME", self.home.path())
            .env("TZ", "UTC")
            .env("TMPDIR", self.scratch.path())
            .env("no_proxy", "localhost,127.0.0.1")
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
        let mut stdin = child.stdin.take().expect("piped stdin");
        let input = input.as_bytes().to_vec();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let _ = stdin.write_all(&input).await;
        });
        let mut stdout = child.stdout.take().expect("piped stdout");
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut bytes = Vec::new();
            let _ = stdout.read_to_end(&mut bytes).await;
            bytes
        });
        let status = match tokio::time::timeout(Duration::from_secs(120), child.wait()).await {
            Ok(status) => status.expect("the program runs").code().unwrap_or(-1),
            Err(_) => {
                // A program that hangs (the real af asks forever at the end of input) is
                // stopped; what it printed until then is the result, with status -1.
                let _ = child.kill().await;
                -1
            }
        };
        let bytes = reader.await.unwrap_or_default();
        (String::from_utf8_lossy(&bytes).into_owned(), status)
    }

    /// Runs every step with `af`; returns the transcript as it went.
    pub async fn replay(&mut self, af: &Af, transcript: &Transcript) -> Transcript {
        let mut steps = Vec::new();
        for step in &transcript.steps {
            match step {
                Step::Cd(dir) => {
                    self.cwd = PathBuf::from(self.expand(dir));
                    steps.push(step.clone());
                }
                Step::Settle(app) => {
                    self.settle(app).await;
                    steps.push(step.clone());
                }
                Step::Fill(file, size) => {
                    let path = PathBuf::from(self.expand(file));
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent).expect("a directory");
                    }
                    // Not compressible, so the zip is as big as the file.
                    let bytes: Vec<u8> = (0..*size)
                        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3])
                        .collect();
                    std::fs::write(&path, bytes).expect("the file is written");
                    steps.push(step.clone());
                }
                Step::Write(file, content) => {
                    let path = PathBuf::from(self.expand(file));
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent).expect("a directory");
                    }
                    std::fs::write(&path, format!("{}\n", self.expand(content)))
                        .expect("the file is written");
                    steps.push(step.clone());
                }
                Step::Af {
                    line,
                    stdin,
                    loose,
                    slow,
                    lines,
                    ..
                } => {
                    let (output, exit) = self.af(af, line, stdin, *slow).await;
                    steps.push(Step::Af {
                        line: line.clone(),
                        stdin: stdin.clone(),
                        loose: *loose,
                        slow: *slow,
                        lines: *lines,
                        output: self.normalize(&output),
                        exit,
                    });
                }
            }
        }
        Transcript {
            comments: transcript.comments.clone(),
            admins: transcript.admins.clone(),
            steps,
        }
    }

    /// Waits until every instance of `app` (of the user logged in in this session's home) is
    /// RUNNING.
    pub async fn settle(&self, app: &str) {
        let tokens: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(self.home.path().join(".af_token")).expect("a token file"),
        )
        .expect("JSON tokens");
        let token = tokens[self.api()].as_str().expect("a token for the target");
        let client = afemu::cli::V1Client::new(&self.api()).with_token(token);
        let deadline = tokio::time::Instant::now() + super::EVENT_TIMEOUT;
        loop {
            let doc = client.app(app).await.expect("the app");
            let instances = client.instances(app).await.expect("its instances");
            let states: Vec<&str> = instances["instances"]
                .as_array()
                .map(|list| list.iter().filter_map(|i| i["state"].as_str()).collect())
                .unwrap_or_default();
            let wanted = doc["instances"].as_u64().unwrap_or(0) as usize;
            if states.len() == wanted && states.iter().all(|s| *s == "RUNNING") {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{app} did not settle: {states:?}"
            );
            // Polling the API is how any v1 client waits; there is no event to subscribe to.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What varies from run to run, replaced by placeholders.
    pub fn normalize(&self, output: &str) -> String {
        let port = self.emu.api_addr().port().to_string();
        let router_port = self.emu.router_addr().port().to_string();
        let mut text = output
            .replace(&self.scratch.path().to_string_lossy().to_string(), "{TMP}")
            .replace(
                &super::fixture("apps").to_string_lossy().to_string(),
                "{APPS}",
            )
            .replace(
                &super::fixture("manifests").to_string_lossy().to_string(),
                "{MANIFESTS}",
            )
            .replace(&self.home.path().to_string_lossy().to_string(), "{HOME}")
            .replace(&format!(":{port}"), ":{PORT}")
            .replace(&format!("localhost:{port}"), "localhost:{PORT}")
            .replace(&format!(":{}", self.dead_port), ":{DEAD_PORT}")
            .replace(&format!(":{router_port}"), ":{ROUTER_PORT}");
        text = text.replace(&format!("\r{}\r", " ".repeat(80)), "{CLEAR}");
        text = replace_ticks(&text);
        text = replace_times(&text);
        text = replace_epochs(&text);
        text = text
            .split_inclusive('\n')
            .map(|line| {
                if line.starts_with("    date : ") {
                    "    date : {DATE}\n".to_owned()
                } else {
                    line.to_owned()
                }
            })
            .collect();
        replace_tokens(&text)
    }
}

/// Words of a command line, split as a shell splits them (the library's own splitter, the one
/// runbook steps go through).
pub fn split_words(line: &str) -> Vec<String> {
    afemu::cli::split_words(line)
}

/// `Staging Application 'x': ..` → `Staging Application 'x': {TICKS}` (af's ticker prints a dot
/// a second, racing the server).
pub fn replace_ticks(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = ["Staging Application '", "Starting Application '"]
        .iter()
        .filter_map(|m| rest.find(m).map(|i| (i, m.len())))
        .min()
    {
        let (start, len) = at;
        let after_marker = &rest[start + len..];
        let Some(close) = after_marker.find("': ") else {
            out.push_str(&rest[..start + len]);
            rest = after_marker;
            continue;
        };
        let head_end = start + len + close + 3;
        out.push_str(&rest[..head_end]);
        let tail = &rest[head_end..];
        let dots = tail.bytes().take_while(|b| *b == b'.').count();
        if dots > 0 || tail.starts_with("{CLEAR}") {
            out.push_str("{TICKS}");
        }
        rest = &tail[dots..];
    }
    out.push_str(rest);
    out
}

/// `11/22/2026 03:26AM` (instance and crash times) and `2026-11-22 06:30:30 +0000` (release
/// dates in `af history`) → `{TIME}`.
pub fn replace_times(text: &str) -> String {
    let bytes = text.as_bytes();
    let patterns: [&[u8]; 2] = [b"dd/dd/dddd dd:ddAM", b"dddd-dd-dd dd:dd:dd +dddd"];
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let matched = patterns.iter().find(|pattern| {
            i + pattern.len() <= bytes.len()
                && pattern.iter().zip(&bytes[i..]).all(|(p, b)| match p {
                    b'd' => b.is_ascii_digit(),
                    b'A' => *b == b'A' || *b == b'P',
                    other => other == b,
                })
        });
        if let Some(pattern) = matched {
            out.push_str("{TIME}");
            i += pattern.len();
        } else {
            let c = text[i..].chars().next().expect("a character");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Numbers of exactly ten digits (Unix times, as in `--json` documents) → `{EPOCH}`.
pub fn replace_epochs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut digits = String::new();
    let mut previous: Option<char> = None;
    for c in text.chars().chain(std::iter::once('\0')) {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let glued = |x: char| x.is_ascii_alphanumeric() || x == '.';
        let bounded = !(previous.is_some_and(glued) || glued(c));
        if digits.len() == 10 && bounded {
            out.push_str("{EPOCH}");
        } else {
            out.push_str(&digits);
        }
        digits.clear();
        if c != '\0' {
            out.push(c);
        }
        previous = Some(c);
    }
    out
}

/// Runs of 32 or more hexadecimal digits (tokens) → `{TOKEN}`.
pub fn replace_tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    for c in text.chars() {
        if c.is_ascii_hexdigit() {
            run.push(c);
            continue;
        }
        flush_run(&mut out, &mut run);
        out.push(c);
    }
    flush_run(&mut out, &mut run);
    out
}

fn flush_run(out: &mut String, run: &mut String) {
    if run.len() >= 32 {
        out.push_str("{TOKEN}");
    } else {
        out.push_str(run);
    }
    run.clear();
}

/// For `@loose` steps: measurements become placeholders and table padding goes.
pub fn loosen(text: &str) -> String {
    text.lines()
        .map(|line| {
            if !(line.starts_with('|') || line.starts_with('+')) {
                return line.to_owned();
            }
            let mut cells: Vec<String> = Vec::new();
            if line.starts_with('+') {
                return "+-+".into();
            }
            for cell in line.split('|') {
                let cell = cell.trim();
                let loose = if cell.ends_with('s') && cell.contains("d:") {
                    "{UPTIME}".to_owned()
                } else if cell.contains('%') && cell.contains('(') {
                    "{CPU}".to_owned()
                } else if cell.ends_with(')') && cell.contains(" (") {
                    "{SIZE}".to_owned()
                } else {
                    cell.to_owned()
                };
                cells.push(loose);
            }
            cells.join("|")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Compares a replay with the recording, step by step, with a readable diff on failure.
pub fn assert_same(name: &str, expected: &Transcript, actual: &Transcript) {
    for (want, got) in expected.steps.iter().zip(&actual.steps) {
        let (
            Step::Af {
                line,
                loose,
                lines,
                output: want_out,
                exit: want_exit,
                ..
            },
            Step::Af {
                output: got_out,
                exit: got_exit,
                ..
            },
        ) = (want, got)
        else {
            continue;
        };
        // Transcripts recorded before a normalisation was added still compare.
        let want_out = &replace_epochs(want_out);
        let (mut want_text, mut got_text) = if *loose {
            (loosen(want_out), loosen(got_out))
        } else {
            (want_out.clone(), got_out.clone())
        };
        if let Some(n) = lines {
            let head = |t: &str| t.split_inclusive('\n').take(*n).collect::<String>();
            want_text = head(&want_text);
            got_text = head(&got_text);
        }
        if want_text != got_text || want_exit != got_exit {
            panic!(
                "{name}: `{line}` differs from the real af\n--- real af (exit {want_exit}) ---\n{}\n--- ours (exit {got_exit}) ---\n{}\n--- first difference ---\n{}",
                visible(&want_text),
                visible(&got_text),
                first_difference(&want_text, &got_text)
            );
        }
    }
    assert_eq!(expected.steps.len(), actual.steps.len(), "{name}: steps");
}

fn visible(text: &str) -> String {
    text.replace('\r', "\\r").replace('\u{1b}', "\\e")
}

fn first_difference(a: &str, b: &str) -> String {
    for (i, (la, lb)) in a.lines().zip(b.lines()).enumerate() {
        if la != lb {
            return format!("line {}:\n  real: {:?}\n  ours: {:?}", i + 1, la, lb);
        }
    }
    format!(
        "one output has more lines: {} vs {}",
        a.lines().count(),
        b.lines().count()
    )
}

/// The transcripts under `fixtures/transcripts/`, by file name.
pub fn all() -> Vec<(String, PathBuf)> {
    let dir = super::fixture("transcripts");
    let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .map(|p| {
            (
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                p.clone(),
            )
        })
        .collect();
    files.sort();
    files
}

/// The real af 0.3.22, when this machine has it (`AFEMU_REAL_AF`, else `/root/.real-af/bin/af`).
pub fn real_af() -> Option<PathBuf> {
    std::env::var_os("AFEMU_REAL_AF")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/root/.real-af/bin/af")))
        .filter(|p| p.is_file())
}
