//! The stager, as v1's staging plugins were: it takes an app's assembled bits, makes a droplet of
//! them (a directory of its own with the app and a staging log) and decides how the app runs —
//! its start command, an entry point of its framework whose runtime is installed, or the
//! built-in static server for a plain `index.html`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// How a staged app is run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartPlan {
    /// The built-in static file server, for an app with an `index.html` and no start command.
    Static,
    /// A start command, run by `/bin/sh` in the app directory; with `port_args`, `-p <port>` is
    /// appended, as v1's staged `startup` script did (`<command> $@`).
    Command { command: String, port_args: bool },
}

/// A staged app: the droplet's directory (`app/`, `staging.log`) and how to run it.
#[derive(Clone, Debug)]
pub(crate) struct Droplet {
    /// The package it was made from.
    pub(crate) hash: String,
    pub(crate) dir: PathBuf,
    pub(crate) plan: StartPlan,
}

/// Makes a droplet in `dir` (emptied first) from the assembled bits in `bits` (moved into it).
/// Blocking.
pub(crate) fn stage(
    bits: &Path,
    dir: &Path,
    hash: &str,
    framework: &str,
    command: Option<&str>,
    name: &str,
) -> Result<Droplet, String> {
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
    }
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut log = fs::File::create(dir.join("staging.log")).ok();
    log_line(
        &mut log,
        &format!("-----> Staging application '{name}' ({framework})"),
    );
    let app_dir = dir.join("app");
    if let Err(error) = fs::rename(bits, &app_dir) {
        let error = format!("cannot move the bits into the droplet: {error}");
        log_line(&mut log, &format!("-----> Staging failed: {error}"));
        return Err(error);
    }
    let planned = plan(&app_dir, framework, command);
    match &planned {
        Ok(StartPlan::Static) => log_line(
            &mut log,
            "-----> Serving index.html with the built-in static server",
        ),
        Ok(StartPlan::Command { command, .. }) => {
            log_line(&mut log, &format!("-----> Start command: {command}"))
        }
        Err(error) => log_line(&mut log, &format!("-----> Staging failed: {error}")),
    }
    Ok(Droplet {
        hash: hash.to_owned(),
        dir: dir.to_path_buf(),
        plan: planned?,
    })
}

/// Decides how a staged app runs, as v1's staging plugins did, reduced to what afemu can run:
/// the app's own start command; else an entry point of the declared framework (or, for
/// `standalone` and unknown frameworks, of any framework) whose runtime is on this machine; else
/// the built-in static server when there is an `index.html`. A runtime that is missing is a clear
/// error, not a hang.
pub(crate) fn plan(
    app_dir: &Path,
    framework: &str,
    command: Option<&str>,
) -> Result<StartPlan, String> {
    if let Some(command) = command.map(str::trim).filter(|c| !c.is_empty()) {
        return Ok(StartPlan::Command {
            command: command.to_owned(),
            port_args: true,
        });
    }
    let framework = framework.to_ascii_lowercase();
    let kinds: &[Kind] = match framework.as_str() {
        "node" => &[Kind::Node],
        "sinatra" => &[Kind::Sinatra],
        "rack" | "rails3" => &[Kind::Rack],
        "wsgi" | "django" | "python" => &[Kind::Wsgi, Kind::Python],
        "php" => &[Kind::Php],
        // standalone, AppFog's and cfoundry's other names, or nothing we know: look for anything.
        _ => &[
            Kind::Node,
            Kind::Rack,
            Kind::Sinatra,
            Kind::Wsgi,
            Kind::Python,
            Kind::Php,
        ],
    };
    let static_site = app_dir.join("index.html").is_file();
    for kind in kinds {
        if let Some(found) = kind.detect(app_dir) {
            // An index.html with a stray app.js is a static site, unless the client said node.
            if static_site && framework != kind.framework() {
                break;
            }
            return found;
        }
    }
    if static_site {
        return Ok(StartPlan::Static);
    }
    if framework == "standalone" {
        return Err("a standalone app needs a start command".into());
    }
    Err(format!(
        "no start command, no entry point for {framework} and no index.html: nothing to run"
    ))
}

/// The kinds of app staging can recognise from their files.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Node,
    Sinatra,
    Rack,
    Wsgi,
    Python,
    Php,
}

/// Serves `wsgi.application` with Python's own wsgiref, so no WSGI server need be installed.
const WSGI_LAUNCHER: &str = "python3 -c 'import os, sys; sys.path.insert(0, \".\"); \
from wsgiref.simple_server import make_server; import wsgi; \
make_server(\"127.0.0.1\", int(os.environ[\"VCAP_APP_PORT\"]), wsgi.application).serve_forever()'";

impl Kind {
    fn framework(self) -> &'static str {
        match self {
            Kind::Node => "node",
            Kind::Sinatra => "sinatra",
            Kind::Rack => "rack",
            Kind::Wsgi => "wsgi",
            Kind::Python => "python",
            Kind::Php => "php",
        }
    }

    /// `None` when the files are not this kind of app; `Some(Err)` when they are but its runtime
    /// is not installed.
    fn detect(self, dir: &Path) -> Option<Result<StartPlan, String>> {
        let (program, command, port_args) = match self {
            Kind::Node => {
                let file = ["server.js", "app.js", "index.js", "main.js"]
                    .into_iter()
                    .find(|f| dir.join(f).is_file())?;
                ("node", format!("node {file}"), true)
            }
            Kind::Sinatra => {
                let file = sinatra_file(dir)?;
                // v1 ran `ruby <file> -p <port>`; Sinatra reads its port from `-p`.
                ("ruby", format!("ruby {file}"), true)
            }
            Kind::Rack => {
                if !dir.join("config.ru").is_file() {
                    return None;
                }
                ("rackup", "rackup config.ru -o 127.0.0.1".to_owned(), true)
            }
            Kind::Wsgi => {
                if !dir.join("wsgi.py").is_file() {
                    return None;
                }
                ("python3", WSGI_LAUNCHER.to_owned(), false)
            }
            Kind::Python => {
                if !dir.join("app.py").is_file() {
                    return None;
                }
                ("python3", "python3 app.py".to_owned(), true)
            }
            Kind::Php => {
                let has_php = std::fs::read_dir(dir)
                    .ok()?
                    .filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().ends_with(".php"));
                if !has_php {
                    return None;
                }
                (
                    "php",
                    "php -S 127.0.0.1:$VCAP_APP_PORT -t .".to_owned(),
                    false,
                )
            }
        };
        if !runtime_installed(program) {
            return Some(Err(format!(
                "this is a {} app, but {program} is not installed on this machine",
                self.framework()
            )));
        }
        Some(Ok(StartPlan::Command { command, port_args }))
    }
}

/// A top-level `*.rb` that requires sinatra, as af's detection looked for it.
fn sinatra_file(dir: &Path) -> Option<String> {
    let mut candidates: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".rb"))
        .collect();
    candidates.sort();
    candidates.into_iter().find(|name| {
        std::fs::read_to_string(dir.join(name)).is_ok_and(|source| {
            source.lines().any(|line| {
                let line = line.trim_start().trim_start_matches('#').trim_start();
                line.starts_with("require")
                    && (line.contains("'sinatra'") || line.contains("\"sinatra\""))
            })
        })
    })
}

/// Whether a program is on the `PATH`.
pub(crate) fn runtime_installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Writes one line to a staging log, ignoring failures (the log is for people, not for control).
pub(crate) fn log_line(log: &mut Option<fs::File>, line: &str) {
    if let Some(file) = log {
        let _ = writeln!(file, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        let dir = tempfile::tempdir().unwrap();
        assert!(plan(dir.path(), "standalone", None).is_err());
        assert_eq!(
            plan(dir.path(), "standalone", Some("ruby app.rb")).unwrap(),
            StartPlan::Command {
                command: "ruby app.rb".into(),
                port_args: true
            }
        );
        fs::write(dir.path().join("index.html"), "x").unwrap();
        assert_eq!(
            plan(dir.path(), "http://b20nine.com/unknown", None).unwrap(),
            StartPlan::Static
        );
        // A static site with browser javascript stays static unless the client said node.
        fs::write(dir.path().join("app.js"), "x").unwrap();
        assert_eq!(
            plan(dir.path(), "standalone", None).unwrap(),
            StartPlan::Static
        );
        if runtime_installed("node") {
            assert_eq!(
                plan(dir.path(), "node", None).unwrap(),
                StartPlan::Command {
                    command: "node app.js".into(),
                    port_args: true
                }
            );
        }
    }

    #[test]
    fn entry_points_by_framework() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("app.rb"),
            "# hi\nrequire 'sinatra'\nget('/') { 'x' }\n",
        )
        .unwrap();
        let sinatra = plan(dir.path(), "sinatra", None);
        if runtime_installed("ruby") {
            assert_eq!(
                sinatra.unwrap(),
                StartPlan::Command {
                    command: "ruby app.rb".into(),
                    port_args: true
                }
            );
        } else {
            assert!(sinatra.unwrap_err().contains("ruby is not installed"));
        }
        let python = tempfile::tempdir().unwrap();
        fs::write(python.path().join("wsgi.py"), "def application(e, s): pass").unwrap();
        match plan(python.path(), "wsgi", None) {
            Ok(StartPlan::Command { command, port_args }) => {
                assert!(command.contains("wsgi.application") && !port_args);
            }
            other => assert!(!runtime_installed("python3"), "{other:?}"),
        }
        let php = tempfile::tempdir().unwrap();
        fs::write(php.path().join("index.php"), "<?php echo 1;").unwrap();
        let planned = plan(php.path(), "php", None);
        assert_eq!(planned.is_ok(), runtime_installed("php"), "{planned:?}");
    }
}
