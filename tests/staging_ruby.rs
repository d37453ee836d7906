//! Ruby apps with a Gemfile, staged with Bundler as v1 staged them (issue #20): the gems of
//! `vendor/cache` installed into the droplet with `bundle install --local`, the app run under
//! `bundle exec`, and Bundler's reason when staging fails. Everything here works offline: the
//! gems are made by the tests (`gem build`), or packed back into `.gem` files from the Sinatra
//! and Rack that Debian installed. Needs ruby, gem and bundle, and Debian's ruby-sinatra; .ci/run
//! installs them, and a machine without them fails these tests rather than skipping them.

mod common;

use std::path::Path;
use std::process::Command;

use afemu::Emulator;
use common::EVENT_TIMEOUT;
use common::staging::{instance_file, tool};
use common::transcript::{Af, Session};
use serde_json::json;

/// Fails the test, saying what to install, unless ruby, gem and bundle run.
fn need_ruby_and_bundler() {
    for (program, package) in [
        ("ruby", "ruby"),
        ("gem", "ruby-rubygems"),
        ("bundle", "ruby-bundler"),
    ] {
        let runs = Command::new(program)
            .arg("--version")
            .output()
            .is_ok_and(|output| output.status.success());
        assert!(
            runs,
            "{program} is needed to stage Ruby apps with a Gemfile (Debian: {package}; .ci/run installs it)"
        );
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Builds the tiny gem `hello_afemu` 0.1.0 with `gem build` and puts it in `app`'s
/// `vendor/cache`.
fn vendor_hello_gem(app: &Path) {
    let source = tempfile::tempdir().unwrap();
    write(
        &source.path().join("hello_afemu.gemspec"),
        r##"Gem::Specification.new do |s|
  s.name = "hello_afemu"
  s.version = "0.1.0"
  s.summary = "A greeting, for afemu's tests"
  s.authors = ["afemu"]
  s.files = ["lib/hello_afemu.rb"]
end
"##,
    );
    write(
        &source.path().join("lib/hello_afemu.rb"),
        "module HelloAfemu\n  def self.greeting\n    \"hello from a vendored gem\"\n  end\nend\n",
    );
    tool("gem", &["build", "hello_afemu.gemspec"], source.path());
    let cache = app.join("vendor/cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::copy(
        source.path().join("hello_afemu-0.1.0.gem"),
        cache.join("hello_afemu-0.1.0.gem"),
    )
    .unwrap();
}

/// Packs gems that Debian installed (their specifications, their files) back into `.gem` files
/// in `into`: the only Sinatra and Rack there are without the network.
const REPACK: &str = r##"
require "rubygems/package"
require "fileutils"
out = File.expand_path(ARGV.shift)
ARGV.each do |name|
  spec = Gem::Specification.find_by_name(name).dup
  work = File.join(out, ".build-#{name}")
  FileUtils.mkdir_p(File.join(work, "lib"))
  lib = File.join(spec.gem_dir, "lib")
  if File.directory?(lib)
    FileUtils.cp_r(Dir[File.join(lib, "*")], File.join(work, "lib"))
  else
    # Debian keeps some gems' libraries (tilt's) in vendor_ruby.
    FileUtils.cp_r(Dir[File.join(RbConfig::CONFIG["vendordir"], "#{name}{.rb,}")], File.join(work, "lib"))
  end
  spec.executables = spec.executables.select { |e| File.file?(File.join(spec.gem_dir, spec.bindir, e)) }
  spec.executables.each do |e|
    FileUtils.mkdir_p(File.join(work, spec.bindir))
    FileUtils.cp(File.join(spec.gem_dir, spec.bindir, e), File.join(work, spec.bindir))
  end
  spec.extensions = []
  Dir.chdir(work) do
    spec.files = Dir["**/*"].select { |f| File.file?(f) }
    FileUtils.mv(Gem::Package.build(spec), out)
  end
  FileUtils.rm_rf(work)
end
"##;

/// Sinatra and its gems, and WEBrick to serve it, in `app`'s `vendor/cache`.
fn vendor_debian_sinatra(app: &Path) {
    let cache = app.join("vendor/cache");
    std::fs::create_dir_all(&cache).unwrap();
    let script = tempfile::tempdir().unwrap();
    write(&script.path().join("repack.rb"), REPACK);
    let mut args = vec![
        script.path().join("repack.rb").display().to_string(),
        cache.display().to_string(),
    ];
    args.extend(
        [
            "sinatra",
            "rack",
            "rack-protection",
            "mustermann",
            "ruby2_keywords",
            "tilt",
            "webrick",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = Command::new("ruby").args(&args).output().unwrap();
    assert!(
        output.status.success(),
        "packing Debian's Sinatra into .gem files failed (Debian: ruby-sinatra; .ci/run installs \
         it):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// An emulator whose staging cache is the test's own, so that nothing comes from a warm cache.
async fn emulator(cache: &Path) -> Emulator {
    let cache = cache.to_path_buf();
    Emulator::builder()
        .configure(|config| config.staging_cache = Some(cache))
        .start()
        .await
        .expect("the emulator starts")
}

/// Creates the app `name` (a Ruby `framework`) on `<name>.example.com`, uploads `dir` and starts
/// it.
async fn push_and_start(emu: &Emulator, name: &str, framework: &str, dir: &Path) {
    let af = emu.client();
    af.create_app(&json!({
        "name": name,
        "staging": {"framework": framework, "runtime": "ruby19"},
        "uris": [format!("{name}.example.com")],
        "instances": 1,
        "resources": {"memory": 128},
    }))
    .await
    .unwrap();
    af.upload_dir(name, dir).await.unwrap();
    af.start(name, EVENT_TIMEOUT)
        .await
        .unwrap_or_else(|error| panic!("{name} starts: {error}"));
}

/// The issue's example: a standalone app whose own start command is `bundle exec ruby main.rb -p
/// $VCAP_APP_PORT`, its one gem in `vendor/cache` and a `Gemfile.lock` of v1's day (written by a
/// Bundler that is not installed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_app_runs_its_vendored_gem_under_bundle_exec() {
    need_ruby_and_bundler();
    let app = tempfile::tempdir().unwrap();
    vendor_hello_gem(app.path());
    write(
        &app.path().join("Gemfile"),
        "source \"https://rubygems.org\"\ngem \"hello_afemu\"\n",
    );
    write(
        &app.path().join("Gemfile.lock"),
        "GEM\n  remote: https://rubygems.org/\n  specs:\n    hello_afemu (0.1.0)\n\n\
         PLATFORMS\n  ruby\n\nDEPENDENCIES\n  hello_afemu\n\nBUNDLED WITH\n   1.0.10\n",
    );
    // Answers any request with the gem's greeting, and whether the machine's own gems (Debian's
    // Sinatra) can be loaded beside the bundle.
    write(
        &app.path().join("main.rb"),
        r##"require "socket"
require "hello_afemu"
port = Integer(ARGV[ARGV.index("-p") + 1])
system_gems = begin
  require "sinatra/base"
  "visible"
rescue LoadError
  "not visible"
end
server = TCPServer.new("127.0.0.1", port)
loop do
  client = server.accept
  while (line = client.gets) && line != "\r\n"; end
  body = "#{HelloAfemu.greeting}; system gems #{system_gems}\n"
  client.write("HTTP/1.1 200 OK\r\nContent-Length: #{body.bytesize}\r\nConnection: close\r\n\r\n#{body}")
  client.close
end
"##,
    );
    let cache = tempfile::tempdir().unwrap();
    let emu = emulator(cache.path()).await;
    let af = emu.client();
    af.create_app(&json!({
        "name": "gems",
        "staging": {
            "framework": "standalone",
            "runtime": "ruby19",
            "command": "bundle exec ruby main.rb -p $VCAP_APP_PORT",
        },
        "uris": ["gems.example.com"],
        "instances": 1,
        "resources": {"memory": 128},
    }))
    .await
    .unwrap();
    af.upload_dir("gems", app.path()).await.unwrap();
    af.start("gems", EVENT_TIMEOUT)
        .await
        .unwrap_or_else(|error| panic!("the app starts: {error}"));
    let answer = emu.get("gems.example.com", "/").await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "hello from a vendored gem; system gems not visible\n")
    );

    let (_, log) = instance_file(&emu, &emu.client(), "gems", "logs/staging.log").await;
    assert!(
        log.contains("-----> Installing gems from vendor/cache: bundle install --local"),
        "{log}"
    );
    assert!(log.contains("Installing hello_afemu 0.1.0"), "{log}");
    // The Bundler that wrote the lockfile is not fetched.
    assert!(!log.contains("Installing Bundler"), "{log}");
    // The gems are in the droplet, as v1 laid them out (app/rubygems/ruby/<version>), without
    // their packages.
    let (status, versions) = instance_file(&emu, &emu.client(), "gems", "app/rubygems/ruby").await;
    assert_eq!(status, 200, "{versions}");
    let version = versions
        .split_whitespace()
        .next()
        .expect("a Ruby version directory")
        .trim_end_matches('/')
        .to_owned();
    let (_, installed) = instance_file(
        &emu,
        &emu.client(),
        "gems",
        &format!("app/rubygems/ruby/{version}"),
    )
    .await;
    assert!(installed.contains("gems/"), "{installed}");
    assert!(!installed.contains("cache/"), "{installed}");
    let (_, gems) = instance_file(
        &emu,
        &emu.client(),
        "gems",
        &format!("app/rubygems/ruby/{version}/gems"),
    )
    .await;
    assert!(gems.contains("hello_afemu-0.1.0/"), "{gems}");
}

/// A Sinatra app pushed as af pushes it (framework `sinatra`, no start command), with Sinatra in
/// its `vendor/cache` and no `Gemfile.lock`: staging resolves the bundle, and the app runs as
/// v1's sinatra plugin ran it, `bundle exec ruby app.rb`, in production.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sinatra_app_runs_from_its_bundle_as_v1_ran_it() {
    need_ruby_and_bundler();
    let app = tempfile::tempdir().unwrap();
    vendor_debian_sinatra(app.path());
    write(
        &app.path().join("Gemfile"),
        "source \"https://rubygems.org\"\ngem \"sinatra\"\ngem \"webrick\"\n",
    );
    write(
        &app.path().join("app.rb"),
        r##"require 'sinatra'

get '/' do
  bundled = Gem.loaded_specs['sinatra'].full_gem_path.start_with?(File.join(Dir.pwd, 'rubygems'))
  "sinatra #{bundled ? 'from the bundle' : 'from elsewhere'}, in #{settings.environment}\n"
end
"##,
    );
    let cache = tempfile::tempdir().unwrap();
    let emu = emulator(cache.path()).await;
    push_and_start(&emu, "sinatra", "sinatra", app.path()).await;
    let answer = emu.get("sinatra.example.com", "/").await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "sinatra from the bundle, in production\n")
    );
    let (_, log) = instance_file(&emu, &emu.client(), "sinatra", "logs/staging.log").await;
    assert!(
        log.contains("-----> Start command: bundle exec ruby app.rb -o 127.0.0.1"),
        "{log}"
    );
    // Staging wrote the lockfile it resolved, in the droplet.
    let (status, lockfile) =
        instance_file(&emu, &emu.client(), "sinatra", "app/Gemfile.lock").await;
    assert_eq!(status, 200);
    assert!(lockfile.contains("    sinatra (3.0.5)"), "{lockfile}");
}

/// A Rack app (framework `rack`): rackup comes from the bundle, under `bundle exec`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rack_app_is_served_by_the_rackup_of_its_bundle() {
    need_ruby_and_bundler();
    let app = tempfile::tempdir().unwrap();
    vendor_debian_sinatra(app.path());
    write(
        &app.path().join("Gemfile"),
        "source \"https://rubygems.org\"\ngem \"rack\"\ngem \"webrick\"\n",
    );
    write(
        &app.path().join("config.ru"),
        "run lambda { |env| [200, {'Content-Type' => 'text/plain'}, \
         [\"rack #{Rack.release} in #{ENV['RACK_ENV']}\\n\"]] }\n",
    );
    let cache = tempfile::tempdir().unwrap();
    let emu = emulator(cache.path()).await;
    push_and_start(&emu, "rack", "rack", app.path()).await;
    let answer = emu.get("rack.example.com", "/").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // Rack's version is whatever Debian's ruby-rack is.
    assert!(
        answer.body.starts_with("rack 2.") && answer.body.ends_with(" in production\n"),
        "{}",
        answer.body
    );
    let (_, log) = instance_file(&emu, &emu.client(), "rack", "logs/staging.log").await;
    assert!(
        log.contains("-----> Start command: bundle exec rackup config.ru -o 127.0.0.1"),
        "{log}"
    );
}

/// Pushes the app in `dir` with our `af` binary, giving `stdin` to its questions: its output
/// and exit status.
async fn af_push(session: &Session, name: &str, dir: &Path, stdin: &str) -> (String, i32) {
    let line = format!(
        "af push {name} --path {} --url {name}.example.com -n",
        dir.display()
    );
    session
        .af(&Af::Binary, &line, &[stdin.to_owned()], false)
        .await
}

/// A Gemfile that names a gem `vendor/cache` does not have, and a Gemfile that is not Ruby:
/// `af push` says `Staging failed` with Bundler's reason at once (nothing is fetched, nothing
/// waits for the staging timeout), nothing runs, and `af files APP logs/staging.log` shows the
/// whole log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_that_cannot_be_installed_fails_staging_with_bundlers_reason() {
    need_ruby_and_bundler();
    let session = Session::start().await;
    for line in [
        "af target {API}",
        "af login --email dev@example.com --passwd secret",
    ] {
        let (output, status) = session.af(&Af::Binary, line, &[], false).await;
        assert_eq!(status, 0, "{line}: {output}");
    }
    let missing = session.scratch.path().join("missing");
    vendor_hello_gem(&missing);
    write(
        &missing.join("Gemfile"),
        "source \"https://rubygems.org\"\ngem \"hello_afemu\"\ngem \"nope_afemu\"\n",
    );
    write(&missing.join("main.rb"), "require 'hello_afemu'\n");
    let (output, status) = af_push(&session, "missing", &missing, "bundle exec ruby main.rb").await;
    assert_ne!(status, 0, "{output}");
    assert!(output.contains("Staging failed"), "{output}");
    assert!(
        output.contains("Could not find gem 'nope_afemu'"),
        "Bundler's reason: {output}"
    );
    assert!(!output.contains("staging timeout"), "{output}");

    let (log, status) = session
        .af(&Af::Binary, "af files missing logs/staging.log", &[], false)
        .await;
    assert_eq!(status, 0, "{log}");
    assert!(
        log.contains("-----> Installing gems from vendor/cache: bundle install --local"),
        "{log}"
    );
    assert!(log.contains("-----> Staging failed: "), "{log}");
    let mut dev = afemu::cli::V1Client::new(&session.emu.api_url());
    dev.login("dev@example.com", "secret").await.unwrap();
    let apps = dev.apps().await.unwrap();
    let app = apps.iter().find(|a| a["name"] == "missing").unwrap();
    assert_eq!(app["state"], "STOPPED", "{app}");
    assert_eq!(app["runningInstances"], 0, "{app}");

    let malformed = session.scratch.path().join("malformed");
    write(
        &malformed.join("Gemfile"),
        "source \"https://rubygems.org\"\ngem \"hello_afemu\",\n",
    );
    write(&malformed.join("main.rb"), "puts 1\n");
    let (output, status) = af_push(&session, "malformed", &malformed, "ruby main.rb").await;
    assert_ne!(status, 0, "{output}");
    assert!(
        output.contains("There was an error parsing `Gemfile`"),
        "{output}"
    );
}

/// A machine without Bundler: staging a Gemfile app says what to install.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_bundler_staging_names_what_to_install() {
    need_ruby_and_bundler();
    // A PATH with ruby on it and no bundle.
    let bin = tempfile::tempdir().unwrap();
    let ruby = Command::new("ruby")
        .args(["-e", "print RbConfig.ruby"])
        .output()
        .unwrap();
    std::os::unix::fs::symlink(
        String::from_utf8(ruby.stdout).unwrap(),
        bin.path().join("ruby"),
    )
    .unwrap();
    let path = bin.path().display().to_string();
    let served = common::serve_binary(&[], &[("PATH", &path)]).await;
    let token = common::owner_token(&served.api).await;
    let af = afemu::cli::V1Client::new(&served.api).with_token(token);
    af.create_app(&json!({
        "name": "gems",
        "staging": {"framework": "standalone", "command": "bundle exec ruby main.rb"},
        "uris": ["gems.example.com"],
        "instances": 1,
        "resources": {"memory": 64},
    }))
    .await
    .unwrap();
    let app = tempfile::tempdir().unwrap();
    write(&app.path().join("Gemfile"), "gem \"hello_afemu\"\n");
    write(&app.path().join("main.rb"), "puts 1\n");
    af.upload_dir("gems", app.path()).await.unwrap();
    let error = af.start("gems", EVENT_TIMEOUT).await.unwrap_err();
    assert_eq!(error.code(), Some(310), "{error}");
    assert!(
        error.to_string().contains(
            "needs bundle (Bundler), which is not installed on this machine; Debian: ruby-bundler"
        ),
        "{error}"
    );
}
