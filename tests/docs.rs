//! Docs that run: every shell example in the repository's documents (a fenced block tagged
//! `sh`, `bash` or `shell`) runs here, against the `afemu` and `af` this build made, or says
//! why it cannot (`<!-- not run: REASON -->` on the line before its fence). Output samples and
//! formats are untagged or `text` blocks. Every relative link points at a file of the
//! repository, and the README's Rust example is `tests/readme_example.rs`, word for word.
//!
//! A block runs under `bash -euo pipefail` in a scratch directory (with `fixtures/` linked in,
//! so examples name the fixtures as they would from a checkout), with `HOME` and `TMPDIR` there
//! too and the two binaries first on `PATH`; it passes when it exits 0 (a `curl -f` fails on an
//! HTTP error). What it starts in the background (`afemu serve &`) is stopped afterwards, with
//! its whole process group.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long one block may run; one in the checkout may build afemu in release first.
const BLOCK_LIMIT: Duration = Duration::from_secs(300);
const BUILD_LIMIT: Duration = Duration::from_secs(1800);

/// The documents: the README, ARCHITECTURE.md and every other Markdown file of the repository
/// (not the build's or node's).
fn documents() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !matches!(
                    name.as_str(),
                    "target" | "node_modules" | "corpus" | "artifacts"
                ) && !name.starts_with('.')
                {
                    dirs.push(path);
                }
            } else if name.ends_with(".md") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

#[derive(Debug)]
struct Block {
    file: PathBuf,
    /// The line of its opening fence.
    line: usize,
    lang: String,
    text: String,
    /// Why it does not run, when it says so.
    not_run: Option<String>,
    /// It runs in the checkout itself (`<!-- in the checkout -->`): `cargo install --path .`.
    in_checkout: bool,
    /// A CI recipe (`<!-- ci: github -->`, `<!-- ci: gitlab -->`): its jobs' shell lines run.
    ci: Option<String>,
    /// A file of the project the CI recipes assume (`<!-- file: PATH -->`).
    project_file: Option<String>,
}

fn blocks(file: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    let mut at = 0;
    while at < lines.len() {
        let Some(lang) = lines[at].strip_prefix("```") else {
            at += 1;
            continue;
        };
        let start = at;
        let mut end = at + 1;
        while end < lines.len() && lines[end].trim_end() != "```" {
            end += 1;
        }
        let before = start.checked_sub(1).map(|b| lines[b].trim());
        let not_run = before
            .and_then(|line| line.strip_prefix("<!-- not run:"))
            .and_then(|rest| rest.strip_suffix("-->"))
            .map(|reason| reason.trim().to_owned());
        let in_checkout = before == Some("<!-- in the checkout -->");
        let marked = |prefix: &str| {
            before
                .and_then(|line| line.strip_prefix(prefix))
                .and_then(|rest| rest.strip_suffix("-->"))
                .map(|value| value.trim().to_owned())
        };
        let ci = marked("<!-- ci:");
        let project_file = marked("<!-- file:");
        found.push(Block {
            file: file.to_path_buf(),
            line: start + 1,
            lang: lang.trim().to_owned(),
            text: lines[start + 1..end.min(lines.len())].join("\n") + "\n",
            not_run,
            in_checkout,
            ci,
            project_file,
        });
        at = end + 1;
    }
    found
}

fn is_shell(block: &Block) -> bool {
    matches!(block.lang.as_str(), "sh" | "bash" | "shell")
}

/// A directory holding `afemu` and `af` as this build made them.
fn binaries(scratch: &Path) -> PathBuf {
    let bin = scratch.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for (name, path) in [
        ("afemu", env!("CARGO_BIN_EXE_afemu")),
        ("af", env!("CARGO_BIN_EXE_af")),
    ] {
        std::os::unix::fs::symlink(path, bin.join(name)).unwrap();
    }
    bin
}

/// Runs one block; its output, or why it failed.
async fn run(block: &Block) -> Result<String, String> {
    run_script(&block.text, block.in_checkout, None).await
}

/// Runs `text`; with `installing`, cargo installs into a scratch root found first on `PATH`;
/// with a `project`, in a scratch directory laid out as that project (its files written, its
/// runbooks and apps), else in the checkout (`installing`) or a scratch directory.
async fn run_script(
    text: &str,
    installing: bool,
    project: Option<&[(String, String)]>,
) -> Result<String, String> {
    // The documents start `afemu serve` on its default ports, as a reader would: one script at
    // a time, or one script's emulator answers (and then vanishes under) another's commands.
    static DEFAULT_PORTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _ports = DEFAULT_PORTS.lock().await;
    let scratch = tempfile::tempdir().unwrap();
    let bin = binaries(scratch.path());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::os::unix::fs::symlink(root.join("fixtures"), scratch.path().join("fixtures")).unwrap();
    let project_dir = scratch.path().join("project");
    if let Some(files) = project {
        std::fs::create_dir_all(project_dir.join("runbooks")).unwrap();
        for (path, content) in files {
            let path = project_dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        // The project's runbooks: the seed procedures, their apps beside them.
        for runbook in ["seed-001-swap-awaited.runbook", "seed-000-downtime.runbook"] {
            std::fs::copy(
                root.join("fixtures/runbooks").join(runbook),
                project_dir.join("runbooks").join(runbook),
            )
            .unwrap();
        }
        std::os::unix::fs::symlink(root.join("fixtures/apps"), project_dir.join("apps")).unwrap();
    }
    let home = scratch.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    // A block run in the checkout installs what it builds here, and finds it first; the others
    // find this build's binaries first.
    let installed = scratch.path().join("installed");
    let first = if installing {
        installed.join("bin")
    } else {
        bin
    };
    let path = std::env::join_paths(std::iter::once(first).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let mut command = tokio::process::Command::new("bash");
    command
        .args(["-euo", "pipefail", "-c", text])
        .current_dir(if project.is_some() {
            project_dir.clone()
        } else if installing {
            root.to_path_buf()
        } else {
            scratch.path().to_path_buf()
        })
        .env("PATH", path)
        .env("HOME", &home)
        .env("TMPDIR", scratch.path())
        .env("NO_COLOR", "1");
    if installing {
        // Cargo and rustup keep their homes (the toolchain, the registry's cache) and this
        // build's target directory, so an install builds only what changed.
        let real_home = PathBuf::from(std::env::var_os("HOME").unwrap_or_default());
        let target = Path::new(env!("CARGO_BIN_EXE_afemu"))
            .parent()
            .and_then(Path::parent)
            .unwrap()
            .to_path_buf();
        command
            .env("CARGO_INSTALL_ROOT", &installed)
            .env("CARGO_TARGET_DIR", target)
            .env(
                "CARGO_HOME",
                std::env::var_os("CARGO_HOME").unwrap_or_else(|| real_home.join(".cargo").into()),
            )
            .env(
                "RUSTUP_HOME",
                std::env::var_os("RUSTUP_HOME").unwrap_or_else(|| real_home.join(".rustup").into()),
            );
    }
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AFEMU_") || name == "AF_HOME" || name == "RUST_LOG" {
            command.env_remove(&name);
        }
    }
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| e.to_string())?;
    let group = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    // Read as it comes: a background server keeps the pipes open after bash has ended.
    let read = |pipe: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>| {
        tokio::spawn(async move {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = tokio::io::AsyncReadExt::read_to_end(&mut pipe, &mut text).await;
            }
            text
        })
    };
    let stdout = read(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = read(child.stderr.take().map(|p| Box::new(p) as _));
    let limit = if installing { BUILD_LIMIT } else { BLOCK_LIMIT };
    let status = tokio::time::timeout(limit, child.wait()).await;
    // What it started in the background goes with it.
    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGTERM);
    wait_for_group_to_end(group).await;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout.await.unwrap_or_default()),
        String::from_utf8_lossy(&stderr.await.unwrap_or_default())
    );
    let status = status
        .map_err(|_| format!("still running after {limit:?}\n{said}"))?
        .map_err(|e| e.to_string())?;
    if status.success() {
        Ok(said)
    } else {
        Err(format!("{status}\n{said}"))
    }
}

/// Waits (briefly) until no process of the group is left; kills what remains.
async fn wait_for_group_to_end(group: nix::unistd::Pid) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while nix::sys::signal::killpg(group, None).is_ok() {
        if tokio::time::Instant::now() >= deadline {
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shell_example_runs_or_says_why_not() {
    let all: Vec<Block> = documents().iter().flat_map(|d| blocks(d)).collect();
    let shell: Vec<&Block> = all.iter().filter(|b| is_shell(b)).collect();
    assert!(
        shell.len() >= 8,
        "the documents' shell examples: {shell:#?}"
    );
    let mut failures = Vec::new();
    let mut ran = 0;
    for block in shell {
        let place = format!("{}:{}", block.file.display(), block.line);
        match &block.not_run {
            Some(reason) => assert!(
                reason.len() >= 10,
                "{place}: say why the example does not run"
            ),
            None => {
                ran += 1;
                if let Err(why) = run(block).await {
                    failures.push(format!("{place}:\n{}\n--- {why}", block.text));
                }
            }
        }
    }
    assert!(ran >= 3, "only {ran} examples ran");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// How the recipes install afemu, and what the test runs instead (no network to the repository
/// here; the same program from the checkout).
const INSTALL: &str = "cargo install --locked --git https://github.com/afemu/afemu afemu";

/// The shell of each job of a CI recipe, in order: GitHub's `run:` steps (with their `env:`),
/// GitLab's `before_script` and `script` (with the job's `variables`).
fn ci_jobs(kind: &str, yaml: &str) -> Vec<(String, String)> {
    use yaml_rust2::Yaml;
    let docs = yaml_rust2::YamlLoader::load_from_str(yaml).expect("the recipe is YAML");
    let Some(Yaml::Hash(top)) = docs.into_iter().next() else {
        panic!("a recipe is a mapping");
    };
    let text = |y: &Yaml| match y {
        Yaml::String(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        other => panic!("not a string: {other:?}"),
    };
    let exports = |env: Option<&Yaml>| -> String {
        let Some(Yaml::Hash(env)) = env else {
            return String::new();
        };
        env.iter()
            .map(|(k, v)| format!("export {}='{}'\n", text(k), text(v)))
            .collect()
    };
    let mut jobs = Vec::new();
    match kind {
        "github" => {
            let Some(Yaml::Hash(all)) = top.get(&Yaml::String("jobs".into())) else {
                panic!("no jobs");
            };
            for (name, job) in all {
                let mut script = String::new();
                for step in job["steps"].as_vec().expect("steps") {
                    if let Some(run) = step["run"].as_str() {
                        script.push_str(&exports(
                            step.as_hash()
                                .and_then(|h| h.get(&Yaml::String("env".into()))),
                        ));
                        script.push_str(run);
                        script.push('\n');
                    }
                }
                jobs.push((text(name), script));
            }
        }
        "gitlab" => {
            for (name, job) in &top {
                let mut script = exports(
                    job.as_hash()
                        .and_then(|h| h.get(&Yaml::String("variables".into()))),
                );
                for part in ["before_script", "script"] {
                    for line in job[part].as_vec().into_iter().flatten() {
                        script.push_str(&text(line));
                        script.push('\n');
                    }
                }
                jobs.push((text(name), script));
            }
        }
        other => panic!("no such CI: {other}"),
    }
    jobs
}

/// Every job of docs/CI.md runs: its shell lines, in a project laid out as the page says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ci_job_runs() {
    let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/CI.md");
    let all = blocks(&page);
    let files: Vec<(String, String)> = all
        .iter()
        .filter_map(|b| b.project_file.clone().map(|path| (path, b.text.clone())))
        .collect();
    assert!(files.len() >= 2, "the project's files: {files:?}");
    let root = std::fs::canonicalize(env!("CARGO_MANIFEST_DIR")).unwrap();
    let mut ran = Vec::new();
    let mut failures = Vec::new();
    for block in all.iter().filter(|b| b.ci.is_some()) {
        let kind = block.ci.as_deref().unwrap();
        for (job, script) in ci_jobs(kind, &block.text) {
            assert!(
                script.contains(INSTALL),
                "{kind} {job} installs afemu as the page says"
            );
            let script = script.replace(
                INSTALL,
                &format!("cargo install --locked --path {}", root.display()),
            );
            if let Err(why) = run_script(&script, true, Some(&files)).await {
                failures.push(format!("{kind} job {job}:\n{script}\n--- {why}"));
            }
            ran.push(format!("{kind} {job}"));
        }
    }
    assert_eq!(ran.len(), 4, "two jobs each for GitHub and GitLab: {ran:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The README's install line runs in the checkout: a newcomer gets both programs with it.
#[test]
fn the_readme_installs_both_programs() {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let install = blocks(&readme)
        .into_iter()
        .find(|b| b.in_checkout)
        .expect("an install block in the README");
    assert!(
        install
            .text
            .starts_with("cargo install --locked --path .\n"),
        "{}",
        install.text
    );
    assert!(install.text.contains("afemu --version && af --version"));
}

/// A marker for a block that is not a shell example is a mistake.
#[test]
fn not_run_marks_only_shell_examples() {
    for block in documents().iter().flat_map(|d| blocks(d)) {
        assert!(
            block.not_run.is_none() || is_shell(&block),
            "{}:{}: `not run` on a {:?} block",
            block.file.display(),
            block.line,
            block.lang
        );
    }
}

/// Every relative link of a document points at something in the repository.
#[test]
fn links_stay_in_the_repository() {
    let root = std::fs::canonicalize(env!("CARGO_MANIFEST_DIR")).unwrap();
    for document in documents() {
        let text = std::fs::read_to_string(&document).unwrap();
        for (number, line) in text.lines().enumerate() {
            let mut rest = line;
            while let Some(at) = rest.find("](") {
                rest = &rest[at + 2..];
                let Some(end) = rest.find(')') else { break };
                let target = &rest[..end];
                rest = &rest[end..];
                if target.contains("://")
                    || target.starts_with('#')
                    || target.starts_with("mailto:")
                {
                    continue;
                }
                let file = target.split('#').next().unwrap();
                let resolved = document.parent().unwrap().join(file);
                let place = format!("{}:{}", document.display(), number + 1);
                let resolved = std::fs::canonicalize(&resolved)
                    .unwrap_or_else(|e| panic!("{place}: {target} does not exist: {e}"));
                assert!(
                    resolved.starts_with(&root),
                    "{place}: {target} is outside the repository"
                );
            }
        }
    }
}

/// The README's Rust example is a test of its own, word for word.
#[test]
fn the_readme_rust_example_is_a_test() {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let rust: Vec<Block> = blocks(&readme)
        .into_iter()
        .filter(|b| b.lang == "rust")
        .collect();
    assert_eq!(rust.len(), 1, "{rust:#?}");
    let test = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/readme_example.rs"),
    )
    .unwrap();
    assert_eq!(
        rust[0].text, test,
        "README.md's example and tests/readme_example.rs differ"
    );
}
