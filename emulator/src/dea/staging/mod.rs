//! Staging, as v1's staging plugins did it (`vcap-staging`'s `lib/vcap/staging/plugin/`): the
//! app's assembled bits become a droplet (a directory of its own with `app/` and `staging.log`),
//! its dependencies are installed into it by the tools its framework uses (npm, Bundler, pip), a
//! Java web app is given a servlet container, and how the app runs is decided: its start
//! command, an entry point of its framework whose runtime is installed, or the built-in static
//! server for a plain `index.html`.
//!
//! - `run`: running a staging tool (time limit, log, process group, confinement to the droplet).
//! - `node`, `ruby`, `python`, `java`: each framework's dependencies and start command.

mod java;
mod node;
mod python;
mod ruby;
pub(crate) mod run;

use std::fs;
use std::path::{Path, PathBuf};

pub(crate) use java::jetty_home;
use run::Staging;
pub(crate) use run::StagingEnv;

/// How a staged app is run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartPlan {
    /// The built-in static file server, for an app with an `index.html` and no start command.
    Static,
    /// A start command, run by `/bin/sh` in the app directory; with `port_args`, `-p <port>` is
    /// appended, as v1's staged `startup` script did (`<command> $@`). `exports` are set first,
    /// as v1's `startup` exported its framework's variables (`GEM_HOME`, …): each value is a
    /// shell word, expanded in the app directory (`$PWD/.venv/bin:$PATH`).
    Command {
        command: String,
        port_args: bool,
        exports: Vec<(String, String)>,
    },
}

impl StartPlan {
    /// A start command with nothing exported.
    pub fn command(command: impl Into<String>, port_args: bool) -> StartPlan {
        StartPlan::Command {
            command: command.into(),
            port_args,
            exports: Vec::new(),
        }
    }
}

/// A staged app: the droplet's directory (`app/`, `staging.log`) and how to run it.
#[derive(Clone, Debug)]
pub(crate) struct Droplet {
    /// The package it was made from.
    pub(crate) hash: String,
    pub(crate) dir: PathBuf,
    pub(crate) plan: StartPlan,
}

/// What to stage: the app's bits and what its document says about running them.
pub(crate) struct StageInput<'a> {
    /// The assembled bits, moved into the droplet.
    pub(crate) bits: &'a Path,
    pub(crate) hash: &'a str,
    pub(crate) framework: &'a str,
    pub(crate) command: Option<&'a str>,
    pub(crate) name: &'a str,
}

/// What staging can do on this machine, one line per tool, for the start-up log (blocking: it
/// looks at the `PATH` and tries Landlock).
pub(crate) fn describe() -> Vec<String> {
    let tool = |name: &str, program: &str| match run::find_program(program) {
        Some(path) => format!("staging: {name} with {}", path.display()),
        None => format!("staging: {name} unavailable ({program} not installed)"),
    };
    let mut lines = vec![
        tool("node dependencies (package.json)", "npm"),
        tool("Ruby gems (Gemfile)", "bundle"),
        tool("Python requirements (requirements.txt)", "python3"),
        java::describe(),
    ];
    lines.push(if run::confinement_available() {
        "staging: tools may write only in the droplet and the staging cache (Landlock)".into()
    } else {
        "staging: tools are not confined to the droplet (this kernel has no Landlock)".into()
    });
    lines
}

/// Makes a droplet in `dir` (emptied first) from the bits. On failure the half-made droplet is
/// removed and only its staging log is left in `dir`, for `af files APP logs/staging.log`.
pub(crate) async fn stage(
    input: StageInput<'_>,
    dir: &Path,
    env: StagingEnv,
) -> Result<Droplet, String> {
    let prepared = {
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || -> Result<(), String> {
            if dir.exists() {
                fs::remove_dir_all(&dir)
                    .map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
            }
            fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())?
    };
    prepared?;
    let mut staging = Staging::new(dir, env)?;
    staging.say(&format!(
        "-----> Staging application '{}' ({})",
        input.name, input.framework
    ));
    let result = stage_into(&mut staging, &input).await;
    staging.finish();
    match result {
        Ok(plan) => {
            match &plan {
                StartPlan::Static => {
                    staging.say("-----> Serving index.html with the built-in static server")
                }
                StartPlan::Command { command, .. } => {
                    staging.say(&format!("-----> Start command: {command}"))
                }
            }
            Ok(Droplet {
                hash: input.hash.to_owned(),
                dir: dir.to_path_buf(),
                plan,
            })
        }
        Err(error) => {
            staging.say(&format!("-----> Staging failed: {error}"));
            tracing::warn!(target: "afemu::staging", app = input.name, "staging failed: {error}");
            // Nothing half-made stays: only the log.
            let dir = dir.to_path_buf();
            let _ = tokio::task::spawn_blocking(move || {
                if let Ok(entries) = fs::read_dir(&dir) {
                    for entry in entries.flatten() {
                        if entry.file_name() != "staging.log" {
                            let path = entry.path();
                            let _ = if path.is_dir() && !path.is_symlink() {
                                fs::remove_dir_all(&path)
                            } else {
                                fs::remove_file(&path)
                            };
                        }
                    }
                }
            })
            .await;
            Err(error)
        }
    }
}

async fn stage_into(staging: &mut Staging, input: &StageInput<'_>) -> Result<StartPlan, String> {
    fs::rename(input.bits, &staging.app_dir)
        .map_err(|e| format!("cannot move the bits into the droplet: {e}"))?;
    let framework = input.framework.to_ascii_lowercase();
    if java::is_java(&framework) {
        return java::stage(staging, &framework).await;
    }
    let planned = plan(&staging.app_dir, &framework, input.command)?;
    if planned == StartPlan::Static {
        return Ok(planned);
    }
    let StartPlan::Command {
        mut command,
        mut port_args,
        mut exports,
    } = planned
    else {
        return Ok(planned);
    };
    let user_command = input.command.is_some_and(|c| !c.trim().is_empty());
    // Each framework's dependencies; a standalone app (or one whose framework we do not know)
    // gets whichever its files call for.
    let any = !matches!(
        framework.as_str(),
        "node" | "sinatra" | "rack" | "rails3" | "wsgi" | "django" | "python" | "php"
    );
    if (framework == "node" || any) && staging.app_dir.join("package.json").is_file() {
        node::stage(staging).await?;
    }
    if (matches!(framework.as_str(), "sinatra" | "rack" | "rails3") || any)
        && staging.app_dir.join("Gemfile").is_file()
    {
        let bundle = ruby::stage(staging).await?;
        if !user_command && let Some(wrapped) = bundle.command_for(&command)? {
            command = wrapped;
        }
        exports.extend(bundle.exports);
    }
    if (matches!(framework.as_str(), "wsgi" | "django" | "python") || any)
        && staging.app_dir.join("requirements.txt").is_file()
    {
        exports.extend(python::stage(staging).await?);
        if !user_command
            && let Some(gunicorn) = python::gunicorn_command(&staging.app_dir, &command)
        {
            command = gunicorn;
            port_args = false;
        }
    }
    Ok(StartPlan::Command {
        command,
        port_args,
        exports,
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
        return Ok(StartPlan::command(command, true));
    }
    let framework = framework.to_ascii_lowercase();
    let kinds: &[Kind] = match framework.as_str() {
        "node" => &[Kind::Node],
        "sinatra" => &[Kind::Sinatra],
        "rack" => &[Kind::Rack],
        "rails3" => &[Kind::Rails, Kind::Rack],
        "django" => &[Kind::Django, Kind::Wsgi, Kind::Python],
        "wsgi" | "python" => &[Kind::Wsgi, Kind::Python],
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
    Rails,
    Django,
    Wsgi,
    Python,
    Php,
}

/// A Django app, as v1's django plugin started it: the database brought up to date first (v1:
/// `syncdb`, logged to `../logs/startup.log`), then the server.
pub(super) const DJANGO_START: &str = "python3 manage.py migrate --noinput >> ../logs/startup.log 2>&1; \
python3 manage.py runserver --noreload 127.0.0.1:$VCAP_APP_PORT";

/// Serves `wsgi.application` with Python's own wsgiref, so no WSGI server need be installed: one
/// request at a time, as gunicorn's sync worker (v1's server for WSGI) did, with a listen backlog
/// like gunicorn's rather than socketserver's 5, which refuses connections under a modest load.
pub(super) const WSGI_LAUNCHER: &str = "python3 -c 'import os, sys; sys.path.insert(0, \".\"); \
from wsgiref.simple_server import make_server, WSGIServer; import wsgi; \
WSGIServer.request_queue_size = 2048; \
make_server(\"127.0.0.1\", int(os.environ[\"VCAP_APP_PORT\"]), wsgi.application).serve_forever()'";

impl Kind {
    fn framework(self) -> &'static str {
        match self {
            Kind::Node => "node",
            Kind::Sinatra => "sinatra",
            Kind::Rack => "rack",
            Kind::Rails => "rails3",
            Kind::Django => "django",
            Kind::Wsgi => "wsgi",
            Kind::Python => "python",
            Kind::Php => "php",
        }
    }

    /// `None` when the files are not this kind of app; `Some(Err)` when they are but its runtime
    /// is not installed.
    fn detect(self, dir: &Path) -> Option<Result<StartPlan, String>> {
        // With a Gemfile, a Ruby app's programs (rackup, rails) come from its bundle, and
        // staging says so when Bundler is missing: only ruby need be on this machine.
        let bundled = dir.join("Gemfile").is_file();
        let rack_env = || vec![("RACK_ENV".to_owned(), "${RACK_ENV:-production}".to_owned())];
        let (program, command, port_args, exports) = match self {
            Kind::Node => {
                let file = ["server.js", "app.js", "index.js", "main.js"]
                    .into_iter()
                    .find(|f| dir.join(f).is_file())?;
                ("node", format!("node {file}"), true, Vec::new())
            }
            Kind::Sinatra => {
                let mut file = sinatra_file(dir)?;
                if file.starts_with('-') {
                    // A file, not one of ruby's options.
                    file.insert_str(0, "./");
                }
                // v1 ran `ruby <file> -p <port>`; Sinatra reads its port from `-p`, and its
                // address from `-o` (in production it would otherwise listen on every interface).
                (
                    "ruby",
                    format!("ruby {} -o 127.0.0.1", shell_word(&file)),
                    true,
                    rack_env(),
                )
            }
            Kind::Rack => {
                if !dir.join("config.ru").is_file() {
                    return None;
                }
                let program = if bundled { "ruby" } else { "rackup" };
                let command = "rackup config.ru -o 127.0.0.1".to_owned();
                (program, command, true, rack_env())
            }
            Kind::Rails => {
                // v1's rails3 plugin ran `rails server` under `bundle exec` for an app with a
                // Gemfile (and `thin` without one, which `Rack` stands in for).
                if !bundled || !dir.join("config/environment.rb").is_file() {
                    return None;
                }
                let env = vec![(
                    "RAILS_ENV".to_owned(),
                    "${RAILS_ENV:-production}".to_owned(),
                )];
                ("ruby", "rails server -b 127.0.0.1".to_owned(), true, env)
            }
            Kind::Django => {
                if !dir.join("manage.py").is_file() {
                    return None;
                }
                // v1 ran `manage.py syncdb` before the server; Django has `migrate` now.
                ("python3", DJANGO_START.to_owned(), false, Vec::new())
            }
            Kind::Wsgi => {
                if !dir.join("wsgi.py").is_file() {
                    return None;
                }
                ("python3", WSGI_LAUNCHER.to_owned(), false, Vec::new())
            }
            Kind::Python => {
                if !dir.join("app.py").is_file() {
                    return None;
                }
                ("python3", "python3 app.py".to_owned(), true, Vec::new())
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
                    Vec::new(),
                )
            }
        };
        if !runtime_installed(program) {
            return Some(Err(format!(
                "this is a {} app, but {program} is not installed on this machine",
                self.framework()
            )));
        }
        Some(Ok(StartPlan::Command {
            command,
            port_args,
            exports,
        }))
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

/// A name from the app's files (a Sinatra app's file, a Django project's directory) as one word
/// of the start script that `/bin/sh` runs: quoted unless it is plainly safe, so that a file
/// called `my app.rb` or `x$(…).rb` is a file name, not two words or a command.
pub(super) fn shell_word(name: &str) -> String {
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./:=+,@%".contains(&b));
    if plain {
        name.to_owned()
    } else {
        format!("'{}'", name.replace('\'', "'\\''"))
    }
}

/// Whether a program is on the `PATH`.
pub(crate) fn runtime_installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
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
            StartPlan::command("ruby app.rb", true)
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
                StartPlan::command("node app.js", true)
            );
        }
    }

    #[test]
    fn names_from_the_apps_files_are_one_shell_word() {
        assert_eq!(shell_word("app.rb"), "app.rb");
        assert_eq!(shell_word("my app.rb"), "'my app.rb'");
        assert_eq!(shell_word("x$(touch y).rb"), "'x$(touch y).rb'");
        assert_eq!(shell_word("it's.rb"), "'it'\\''s.rb'");
        // What /bin/sh makes of them: the name itself, one word.
        for name in [
            "my app.rb",
            "x$(touch y).rb",
            "it's.rb",
            "a;b`c`\"d\".rb",
            "-",
        ] {
            let output = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("printf '%s|' {}", shell_word(name)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&output.stdout), format!("{name}|"));
        }
        // A Sinatra file whose name would have been a command substitution.
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("x$(touch y).rb"), "require 'sinatra'\n").unwrap();
        if runtime_installed("ruby") {
            assert_eq!(
                command_of(dir.path(), "sinatra").unwrap(),
                "ruby 'x$(touch y).rb' -o 127.0.0.1"
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
                    command: "ruby app.rb -o 127.0.0.1".into(),
                    port_args: true,
                    exports: vec![("RACK_ENV".into(), "${RACK_ENV:-production}".into())],
                }
            );
        } else {
            assert!(sinatra.unwrap_err().contains("ruby is not installed"));
        }
        let python = tempfile::tempdir().unwrap();
        fs::write(python.path().join("wsgi.py"), "def application(e, s): pass").unwrap();
        match plan(python.path(), "wsgi", None) {
            Ok(StartPlan::Command {
                command, port_args, ..
            }) => {
                assert!(command.contains("wsgi.application") && !port_args);
            }
            other => assert!(!runtime_installed("python3"), "{other:?}"),
        }
        let php = tempfile::tempdir().unwrap();
        fs::write(php.path().join("index.php"), "<?php echo 1;").unwrap();
        let planned = plan(php.path(), "php", None);
        assert_eq!(planned.is_ok(), runtime_installed("php"), "{planned:?}");
    }

    /// The command of a plan (its first line), or the error.
    fn command_of(dir: &Path, framework: &str) -> Result<String, String> {
        match plan(dir, framework, None)? {
            StartPlan::Command { command, .. } => Ok(command),
            StartPlan::Static => Ok("static".into()),
        }
    }

    #[test]
    fn ruby_entry_points_with_and_without_a_gemfile() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("config.ru"), "run App\n").unwrap();
        fs::create_dir(dir.path().join("config")).unwrap();
        fs::write(dir.path().join("config/environment.rb"), "# rails\n").unwrap();
        if !runtime_installed("ruby") {
            fs::write(dir.path().join("Gemfile"), "gem 'rails'\n").unwrap();
            let error = command_of(dir.path(), "rails3").unwrap_err();
            assert!(error.contains("ruby is not installed"), "{error}");
            return;
        }
        // Without a Gemfile, rails3 is a Rack app (rackup is checked for); with one, v1's
        // `rails server` (put under `bundle exec` by Bundler's staging), and a Rack app's
        // rackup comes from the bundle.
        let rackup = "rackup config.ru -o 127.0.0.1";
        if runtime_installed("rackup") {
            assert_eq!(command_of(dir.path(), "rails3").unwrap(), rackup);
        }
        fs::write(dir.path().join("Gemfile"), "gem 'rails'\n").unwrap();
        assert_eq!(
            command_of(dir.path(), "rails3").unwrap(),
            "rails server -b 127.0.0.1"
        );
        assert_eq!(command_of(dir.path(), "rack").unwrap(), rackup);
        assert_eq!(command_of(dir.path(), "standalone").unwrap(), rackup);
        match plan(dir.path(), "rails3", None).unwrap() {
            StartPlan::Command {
                exports, port_args, ..
            } => {
                assert!(port_args);
                assert_eq!(
                    exports,
                    [("RAILS_ENV".into(), "${RAILS_ENV:-production}".into())]
                );
            }
            StartPlan::Static => panic!("rails3 is not static"),
        }
    }
}
