//! Ruby apps with a `Gemfile`: their gems installed with Bundler into the droplet, as v1's
//! `gemfile_support.rb` and `gemfile_task.rb` did, and the framework's start command run under
//! `bundle exec`.
//!
//! v1 installed the gems of `Gemfile.lock` into `app/rubygems/ruby/<version>`, each from the
//! app's `vendor/cache` (what `bundle package` leaves, and what v1 asked users to push) or else
//! from RubyGems, and left a `.bundle/config` with `BUNDLE_PATH: rubygems` (relative, so the
//! droplet can move) and `BUNDLE_WITHOUT: test`. Here Bundler itself does it: `bundle install
//! --local` when the app has a `vendor/cache` (nothing is fetched), plain `bundle install` from
//! the Gemfile's source (with the machine's Bundler configuration) otherwise, into the same
//! `app/rubygems`, frozen to `Gemfile.lock` when there is one. The start exports the same
//! settings, relative to the instance's copy.
//!
//! With `BUNDLE_PATH` set, Bundler sees no system gems: a bundle carries every gem it uses, as
//! on v1. Bundler's own caches (and RubyGems') go to the staging cache, so that staging writes
//! nowhere but there and in the droplet.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use super::run::{self, Staging};

/// Where the gems go, in the app directory (v1's `rubygems`, `rubygems/ruby/<version>` inside).
const GEMS: &str = "rubygems";

/// The groups left out, as v1's `.bundle/config` left them out.
const WITHOUT: &str = "test";

/// What Bundler's staging leaves for the start: the variables to export, and what is needed to
/// put a framework's start command under `bundle exec`.
pub(super) struct Bundle {
    pub(super) exports: Vec<(String, String)>,
    /// The gems of the bundle (`Gemfile.lock`'s specs): a start command's gem must be one.
    gems: BTreeSet<String>,
    /// Whether a Rails app's migrations run before it starts: v1 ran `rake db:migrate` when the
    /// app had a `config/database.yml`, unless `config/cloudfoundry.yml` said `dbmigrate: false`.
    migrate: bool,
}

impl Bundle {
    /// The start command staging chose (never the user's own) under `bundle exec`: `None` for a
    /// command that is not Ruby's (a node or Python app that also has a Gemfile); an error when
    /// the command's gem is not in the bundle, which is all the app sees.
    pub(super) fn command_for(&self, command: &str) -> Result<Option<String>, String> {
        let program = command.split_whitespace().next().unwrap_or_default();
        let gem = match program {
            // Staging runs `ruby <file>` for Sinatra apps only.
            "ruby" => "sinatra",
            "rackup" => "rack",
            "rails" => "railties",
            _ => return Ok(None),
        };
        if !self.gems.contains(gem) {
            return Err(format!(
                "`{command}` needs the {gem} gem, which is not in the bundle (Gemfile.lock): \
                 an app with a Gemfile sees only its bundle's gems, so add gem \"{gem}\" to it"
            ));
        }
        let command = format!("bundle exec {command}");
        if program == "rails" && self.migrate {
            // As v1's startup script did: migrate, logging to logs/migration.log, then start.
            return Ok(Some(format!(
                "bundle exec rake db:migrate --trace >>../logs/migration.log 2>&1; {command}"
            )));
        }
        Ok(Some(command))
    }
}

pub(super) async fn stage(staging: &mut Staging) -> Result<Bundle, String> {
    let bundle = run::find_program("bundle").ok_or(
        "installing the gems in the Gemfile needs bundle (Bundler), which is not installed on \
         this machine; Debian: ruby-bundler",
    )?;
    let version = bundler_version(&bundle).await?;
    staging.say(&format!("-----> Bundler {version}"));
    let app = staging.app_dir.clone();
    let cache = staging.cache("bundler")?;
    let xdg = staging.cache("xdg")?;
    let (home, specs) = (cache.join("home"), cache.join("specs"));
    // Bundler's own settings live in its home, which is the staging cache's; the machine's
    // (its mirrors, its credentials) are still read from where they are.
    let user_config = std::env::var_os("BUNDLE_USER_CONFIG").or_else(|| {
        std::env::var_os("HOME").map(|home| Path::new(&home).join(".bundle/config").into())
    });
    let locked = app.join("Gemfile.lock").is_file();
    let vendored = app.join("vendor/cache").is_dir();
    let (gemfile, path) = (app.join("Gemfile"), app.join(GEMS));
    let mut env: Vec<(&str, &OsStr)> = vec![
        ("BUNDLE_GEMFILE", gemfile.as_os_str()),
        ("BUNDLE_PATH", path.as_os_str()),
        ("BUNDLE_WITHOUT", OsStr::new(WITHOUT)),
        ("BUNDLE_USER_HOME", home.as_os_str()),
        ("GEM_SPEC_CACHE", specs.as_os_str()),
        ("XDG_CACHE_HOME", xdg.as_os_str()),
        ("BUNDLE_SILENCE_ROOT_WARNING", OsStr::new("true")),
        // The Bundler that runs stays: Bundler 2.3 would otherwise fetch the one that wrote
        // Gemfile.lock (`BUNDLED WITH`), which is never there for a v1 app.
        ("BUNDLER_VERSION", OsStr::new(&version)),
        // Messages unwrapped, so that the first line of a failure says all of it.
        ("THOR_COLUMNS", OsStr::new("10000")),
    ];
    if locked {
        env.push(("BUNDLE_FROZEN", OsStr::new("true")));
    }
    if let Some(config) = &user_config {
        env.push(("BUNDLE_USER_CONFIG", config.as_os_str()));
    }
    // --no-cache: vendor/cache is read, not rewritten.
    let (what, args): (&str, &[&str]) = if vendored {
        (
            "Installing gems from vendor/cache",
            &["install", "--local", "--no-cache"],
        )
    } else {
        ("Installing gems", &["install", "--no-cache"])
    };
    staging.run(what, &bundle, args, &env, None).await?;
    // As v1 did, the droplet keeps the installed gems, not their packages. Never through a
    // link: the Gemfile is Ruby code that Bundler ran, and it may have put a link to anywhere
    // in the bundle (`rubygems/ruby/x -> ~/work`), where afemu, unconfined, would otherwise
    // remove `~/work/cache`.
    let real_dir = |dir: &Path| std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir());
    let ruby = path.join("ruby");
    if [staging.droplet_dir.as_path(), &app, &path, &ruby]
        .into_iter()
        .all(real_dir)
        && let Ok(versions) = std::fs::read_dir(&ruby)
    {
        for version in versions.flatten() {
            let cache = version.path().join("cache");
            if version.file_type().is_ok_and(|t| t.is_dir()) && real_dir(&cache) {
                let _ = std::fs::remove_dir_all(cache);
            }
        }
    }
    let lockfile = std::fs::read_to_string(app.join("Gemfile.lock"))
        .map_err(|e| format!("Bundler left no readable Gemfile.lock: {e}"))?;
    Ok(Bundle {
        exports: vec![
            ("BUNDLE_GEMFILE".into(), "$PWD/Gemfile".into()),
            ("BUNDLE_PATH".into(), format!("$PWD/{GEMS}")),
            ("BUNDLE_WITHOUT".into(), WITHOUT.into()),
            ("BUNDLE_FROZEN".into(), "true".into()),
        ],
        gems: locked_gems(&lockfile),
        migrate: migrations_enabled(&app),
    })
}

/// The version of the Bundler installed (`bundle --version`, run outside any app).
async fn bundler_version(bundle: &Path) -> Result<String, String> {
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(bundle)
            .arg("--version")
            .current_dir("/")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| "bundle --version did not answer".to_owned())?
    .map_err(|e| format!("cannot run bundle --version: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    // "Bundler version 2.3.15"
    text.split_whitespace()
        .last()
        .filter(|version| {
            output.status.success() && version.starts_with(|c: char| c.is_ascii_digit())
        })
        .map(str::to_owned)
        .ok_or_else(|| format!("cannot read Bundler's version from {:?}", text.trim()))
}

/// The gems a lockfile holds: its specs, `    name (version)`, as v1's `GemfileTask` read them.
fn locked_gems(lockfile: &str) -> BTreeSet<String> {
    lockfile
        .lines()
        .filter_map(|line| {
            let spec = line.strip_prefix("    ")?;
            if spec.starts_with(' ') {
                return None;
            }
            let (name, version) = spec.split_once(" (")?;
            version.ends_with(')').then(|| name.to_owned())
        })
        .collect()
}

/// v1's rule for a Rails app's migrations at start: it has a `config/database.yml` and its
/// `config/cloudfoundry.yml` does not say `dbmigrate: false`.
fn migrations_enabled(app: &Path) -> bool {
    if !app.join("config/database.yml").is_file() {
        return false;
    }
    let refused = std::fs::read_to_string(app.join("config/cloudfoundry.yml")).is_ok_and(|yaml| {
        yaml.lines().any(|line| {
            let line: String = line
                .split('#')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .collect();
            line == "dbmigrate:false"
        })
    });
    !refused
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCKFILE: &str = "GEM
  remote: https://rubygems.org/
  specs:
    mustermann (3.0.0)
      ruby2_keywords (~> 0.0.1)
    rack (2.2.22)
    sinatra (3.0.5)
      mustermann (~> 3.0)
      rack (~> 2.2, >= 2.2.4)

PLATFORMS
  ruby

DEPENDENCIES
  sinatra

BUNDLED WITH
   1.17.3
";

    fn bundle(gems: &[&str], migrate: bool) -> Bundle {
        Bundle {
            exports: Vec::new(),
            gems: gems.iter().map(|g| g.to_string()).collect(),
            migrate,
        }
    }

    #[test]
    fn the_gems_of_a_lockfile() {
        let gems: Vec<String> = locked_gems(LOCKFILE).into_iter().collect();
        assert_eq!(gems, ["mustermann", "rack", "sinatra"]);
    }

    #[test]
    fn framework_commands_go_through_bundle_exec() {
        let sinatra = bundle(&["rack", "sinatra"], false);
        assert_eq!(
            sinatra.command_for("ruby app.rb -o 127.0.0.1").unwrap(),
            Some("bundle exec ruby app.rb -o 127.0.0.1".into())
        );
        assert_eq!(
            sinatra
                .command_for("rackup config.ru -o 127.0.0.1")
                .unwrap(),
            Some("bundle exec rackup config.ru -o 127.0.0.1".into())
        );
        // Not Ruby: left alone.
        assert_eq!(sinatra.command_for("node app.js").unwrap(), None);
        // The framework's gem must be in the bundle: system gems are not seen.
        let error = bundle(&["rack"], false)
            .command_for("ruby app.rb")
            .unwrap_err();
        assert!(error.contains("add gem \"sinatra\""), "{error}");
        // Rails: migrations first when v1 ran them.
        let rails = bundle(&["rack", "railties"], true);
        assert_eq!(
            rails.command_for("rails server -b 127.0.0.1").unwrap(),
            Some(
                "bundle exec rake db:migrate --trace >>../logs/migration.log 2>&1; \
                 bundle exec rails server -b 127.0.0.1"
                    .into()
            )
        );
        assert_eq!(
            bundle(&["railties"], false)
                .command_for("rails server -b 127.0.0.1")
                .unwrap(),
            Some("bundle exec rails server -b 127.0.0.1".into())
        );
    }

    #[test]
    fn migrations_as_v1_decided() {
        let app = tempfile::tempdir().unwrap();
        assert!(!migrations_enabled(app.path()));
        std::fs::create_dir(app.path().join("config")).unwrap();
        std::fs::write(app.path().join("config/database.yml"), "production: {}\n").unwrap();
        assert!(migrations_enabled(app.path()));
        std::fs::write(
            app.path().join("config/cloudfoundry.yml"),
            "---\ndbmigrate: false # by hand\n",
        )
        .unwrap();
        assert!(!migrations_enabled(app.path()));
    }
}
