//! Staging as v1's stager did it: a node app's dependencies installed with npm, a Python app's
//! requirements with pip into a virtualenv of its own, `engines.node` honoured; and when staging
//! fails (a malformed manifest, a dependency that does not exist, an install that hangs or
//! writes outside the droplet) v1's `Staging failed` with the reason, promptly, the log readable
//! at `logs/staging.log`, nothing left running and nothing half-made. Uses node, npm and python3
//! (installed by .ci/run); the dependencies are packages made here, so no registry is needed.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::EVENT_TIMEOUT;
use common::staging::{
    create, droplet_dirs, emulator_with, pack_greet, processes_with, staging_log, start_failing,
    tool,
};
use serde_json::json;

/// A node app answering with what its dependency says; `package` is its package.json.
fn node_app(package: serde_json::Value) -> tempfile::TempDir {
    let app = tempfile::tempdir().unwrap();
    pack_greet(app.path());
    std::fs::write(app.path().join("package.json"), package.to_string()).unwrap();
    std::fs::write(
        app.path().join("server.js"),
        "const greet = require('greet');\n\
         require('http').createServer((q, s) => s.end(greet('node'))).listen(process.env.VCAP_APP_PORT);\n",
    )
    .unwrap();
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_apps_dependencies_are_installed_by_npm_into_the_droplet() {
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let emu = emulator_with(data.path(), cache.path(), None).await;
    let af = emu.client();
    let app = node_app(json!({
        "name": "app", "version": "1.0.0",
        "engines": {"node": ">=0.10"},
        "dependencies": {"greet": "file:vendor/greet-1.0.0.tgz"},
    }));
    assert!(!app.path().join("node_modules").exists());
    create(&af, "npm", "node", None).await;
    af.upload_dir("npm", app.path()).await.unwrap();
    af.start("npm", EVENT_TIMEOUT).await.unwrap();
    let answer = emu.get("npm.com", "/").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body, "hello node from greet");
    let log = staging_log(&emu, &af, "npm").await;
    assert!(log.contains("satisfies engines.node \">=0.10\""), "{log}");
    assert!(log.contains("npm install: npm install --omit=dev"), "{log}");
    assert!(
        log.contains("-----> Start command: node server.js"),
        "{log}"
    );
    // The npm cache is staging's, not the user's.
    assert!(cache.path().join("npm").is_dir());

    // With a lockfile, `npm ci`.
    let locked = node_app(json!({
        "name": "locked", "version": "1.0.0",
        "dependencies": {"greet": "file:vendor/greet-1.0.0.tgz"},
    }));
    tool(
        "npm",
        &["install", "--package-lock-only", "--silent"],
        locked.path(),
    );
    create(&af, "npmci", "node", None).await;
    af.upload_dir("npmci", locked.path()).await.unwrap();
    af.start("npmci", EVENT_TIMEOUT).await.unwrap();
    assert_eq!(
        emu.get("npmci.com", "/").await.body,
        "hello node from greet"
    );
    let log = staging_log(&emu, &af, "npmci").await;
    assert!(log.contains("npm ci: npm ci --omit=dev"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engines_node_the_machine_cannot_satisfy_fails_staging_and_says_both() {
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let emu = emulator_with(data.path(), cache.path(), None).await;
    let af = emu.client();
    let app = node_app(json!({
        "name": "app", "version": "1.0.0",
        "engines": {"node": "0.8.x"},
        "dependencies": {"greet": "file:vendor/greet-1.0.0.tgz"},
    }));
    create(&af, "old", "node", None).await;
    af.upload_dir("old", app.path()).await.unwrap();
    let error = start_failing(&af, "old").await;
    let node = tool("node", &["--version"], app.path());
    assert!(
        error.contains(&format!(
            "package.json wants node 0.8.x, but this machine has node {}",
            node.trim()
        )),
        "{error}"
    );
    assert!(
        staging_log(&emu, &af, "old")
            .await
            .contains("Staging failed")
    );
    assert!(droplet_dirs(data.path()).is_empty(), "nothing half-made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_manifests_and_missing_dependencies_fail_staging_with_the_reason() {
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let emu = emulator_with(data.path(), cache.path(), None).await;
    let af = emu.client();

    let broken = node_app(json!({}));
    std::fs::write(broken.path().join("package.json"), "{\"dependencies\": {").unwrap();
    create(&af, "broken", "node", None).await;
    af.upload_dir("broken", broken.path()).await.unwrap();
    let error = start_failing(&af, "broken").await;
    assert!(error.contains("package.json is not valid JSON"), "{error}");

    let missing = node_app(json!({
        "name": "missing", "version": "1.0.0",
        "dependencies": {"nowhere": "file:vendor/nowhere-1.0.0.tgz"},
    }));
    create(&af, "missing", "node", None).await;
    af.upload_dir("missing", missing.path()).await.unwrap();
    let error = start_failing(&af, "missing").await;
    assert!(error.contains("npm install failed (exit status"), "{error}");
    assert!(
        error.contains("nowhere-1.0.0.tgz"),
        "the reason names it: {error}"
    );
    let log = staging_log(&emu, &af, "missing").await;
    assert!(
        log.contains("nowhere-1.0.0.tgz"),
        "npm's own output is kept: {log}"
    );

    let python = python_app(&[]);
    std::fs::write(
        python.path().join("requirements.txt"),
        "./vendor/absent-1.0-py3-none-any.whl\n",
    )
    .unwrap();
    create(&af, "absent", "standalone", Some("python3 app.py")).await;
    af.upload_dir("absent", python.path()).await.unwrap();
    let error = start_failing(&af, "absent").await;
    assert!(error.contains("pip install failed (exit status"), "{error}");
    assert!(error.contains("absent-1.0-py3-none-any.whl"), "{error}");
    assert!(droplet_dirs(data.path()).is_empty(), "nothing half-made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_install_that_hangs_is_ended_at_the_staging_timeout_with_all_it_started() {
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let timeout = Duration::from_secs(3);
    let emu = emulator_with(data.path(), cache.path(), Some(timeout)).await;
    let af = emu.client();
    let marker = format!("afemu-hang-{}", std::process::id());
    // The postinstall starts a child of its own in the background, then never ends.
    let app = node_app(json!({
        "name": "hangs", "version": "1.0.0",
        "dependencies": {"greet": "file:vendor/greet-1.0.0.tgz"},
        "scripts": {"postinstall": format!(
            "node -e 'setInterval(() => {{}}, 1000)' {marker} & node -e 'setInterval(() => {{}}, 1000)' {marker}"
        )},
    }));
    create(&af, "hangs", "node", None).await;
    af.upload_dir("hangs", app.path()).await.unwrap();
    let started = Instant::now();
    let error = start_failing(&af, "hangs").await;
    assert!(
        error.contains("npm install did not finish within the staging timeout (3s)"),
        "{error}"
    );
    assert!(
        started.elapsed() < timeout + Duration::from_secs(20),
        "promptly after the timeout, not a silent wait: {:?}",
        started.elapsed()
    );
    assert_eq!(
        processes_with(&marker),
        Vec::<String>::new(),
        "nothing left running"
    );
    assert!(
        staging_log(&emu, &af, "hangs")
            .await
            .contains("staging timeout")
    );
    assert!(droplet_dirs(data.path()).is_empty(), "nothing half-made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_install_that_writes_outside_the_droplet_is_refused() {
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let emu = emulator_with(data.path(), cache.path(), None).await;
    let af = emu.client();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("escaped");
    let app = node_app(json!({
        "name": "escapes", "version": "1.0.0",
        "dependencies": {"greet": "file:vendor/greet-1.0.0.tgz"},
        "scripts": {"postinstall": format!(
            "node -e \"require('fs').writeFileSync('{}', 'x')\"", target.display()
        )},
    }));
    create(&af, "escapes", "node", None).await;
    af.upload_dir("escapes", app.path()).await.unwrap();
    let error = start_failing(&af, "escapes").await;
    assert!(error.contains("npm install failed"), "{error}");
    assert!(
        !target.exists(),
        "the write outside the droplet was refused"
    );
    let log = staging_log(&emu, &af, "escapes").await;
    assert!(log.contains("EACCES"), "the tool says why: {log}");
    assert!(droplet_dirs(data.path()).is_empty(), "nothing half-made");
}

/// A wheel of the package `tinylib` (made here: a wheel is a zip with its metadata), so pip
/// installs it with no index.
fn write_wheel(dir: &Path) -> String {
    use std::io::Write;
    let name = "tinylib-1.0-py3-none-any.whl";
    let file = std::fs::File::create(dir.join(name)).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default();
    let files = [
        (
            "tinylib/__init__.py",
            "def greet(name):\n    return 'hello ' + name + ' from tinylib'\n",
        ),
        (
            "tinylib-1.0.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: tinylib\nVersion: 1.0\n",
        ),
        (
            "tinylib-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: afemu-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        ),
    ];
    let mut record = String::new();
    for (path, content) in files {
        zip.start_file(path, options).unwrap();
        zip.write_all(content.as_bytes()).unwrap();
        record.push_str(&format!("{path},,\n"));
    }
    record.push_str("tinylib-1.0.dist-info/RECORD,,\n");
    zip.start_file("tinylib-1.0.dist-info/RECORD", options)
        .unwrap();
    zip.write_all(record.as_bytes()).unwrap();
    zip.finish().unwrap();
    name.to_owned()
}

/// A Python app (`app.py`) answering with what `tinylib` says and where it was imported from.
fn python_app(requirements: &[&str]) -> tempfile::TempDir {
    let app = tempfile::tempdir().unwrap();
    let vendor = app.path().join("vendor");
    std::fs::create_dir_all(&vendor).unwrap();
    let wheel = write_wheel(&vendor);
    let mut lines: Vec<String> = requirements.iter().map(|r| r.to_string()).collect();
    lines.push(format!("./vendor/{wheel}"));
    std::fs::write(app.path().join("requirements.txt"), lines.join("\n") + "\n").unwrap();
    std::fs::write(
        app.path().join("app.py"),
        "import os, sys\nfrom http.server import BaseHTTPRequestHandler, HTTPServer\nimport tinylib\n\
         class H(BaseHTTPRequestHandler):\n    def do_GET(self):\n\
         \x20       body = (tinylib.greet('python') + '|' + tinylib.__file__ + '|' + sys.prefix).encode()\n\
         \x20       self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers(); self.wfile.write(body)\n\
         HTTPServer(('127.0.0.1', int(os.environ['VCAP_APP_PORT'])), H).serve_forever()\n",
    )
    .unwrap();
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_apps_requirements_are_installed_into_a_virtualenv_of_its_own() {
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let emu = emulator_with(data.path(), cache.path(), None).await;
    let af = emu.client();
    let app = python_app(&[]);
    create(&af, "pip", "standalone", Some("python3 app.py")).await;
    af.upload_dir("pip", app.path()).await.unwrap();
    af.start("pip", EVENT_TIMEOUT).await.unwrap();
    let answer = emu.get("pip.com", "/").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let parts: Vec<&str> = answer.body.split('|').collect();
    assert_eq!(parts[0], "hello python from tinylib");
    assert!(
        parts[1].contains("/app/.venv/lib/") && parts[2].ends_with("/app/.venv"),
        "imported from the instance's own virtualenv: {}",
        answer.body
    );
    let log = staging_log(&emu, &af, "pip").await;
    assert!(log.contains("Creating a virtualenv"), "{log}");
    assert!(log.contains("Successfully installed tinylib-1.0"), "{log}");
}

/// A Django project answering `/` (no database tables needed).
fn django_app() -> tempfile::TempDir {
    let app = tempfile::tempdir().unwrap();
    let wheelhouse = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/wheelhouse");
    assert!(
        wheelhouse
            .join("gunicorn-23.0.0-py3-none-any.whl")
            .is_file(),
        "{} must hold Django's and gunicorn's wheels: .ci/run downloads them",
        wheelhouse.display()
    );
    let requirements = format!(
        "--no-index\n--find-links {}\nDjango==4.2.30\ngunicorn==23.0.0\n",
        wheelhouse.display()
    );
    let files = [
        ("requirements.txt", requirements.as_str()),
        (
            "manage.py",
            "import os, sys\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'site1.settings')\n\
             from django.core.management import execute_from_command_line\nexecute_from_command_line(sys.argv)\n",
        ),
        ("site1/__init__.py", ""),
        (
            "site1/settings.py",
            "SECRET_KEY = 'test'\nDEBUG = False\nALLOWED_HOSTS = ['*']\nROOT_URLCONF = 'site1.urls'\n\
             INSTALLED_APPS = []\nMIDDLEWARE = []\n\
             DATABASES = {'default': {'ENGINE': 'django.db.backends.sqlite3', 'NAME': 'db.sqlite3'}}\n",
        ),
        (
            "site1/urls.py",
            "import os, sys\nfrom django.http import HttpResponse\nfrom django.urls import path\n\
             urlpatterns = [path('', lambda request: HttpResponse('hello django ' + os.environ['VCAP_APP_PORT'] + ' ' + sys.argv[0]))]\n",
        ),
        (
            "site1/wsgi.py",
            "import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'site1.settings')\n\
             from django.core.wsgi import get_wsgi_application\napplication = get_wsgi_application()\n",
        ),
    ];
    for (path, content) in files {
        let path = app.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    app
}

/// Django and gunicorn installed by pip as the requirements say (here: from a wheelhouse, with no
/// index, which .ci/run fills); the app is served by gunicorn, as v1 served Django.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_django_app_is_served_by_gunicorn_from_its_requirements() {
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let emu = emulator_with(data.path(), cache.path(), None).await;
    let af = emu.client();
    let app = django_app();
    create(&af, "django", "django", None).await;
    af.upload_dir("django", app.path()).await.unwrap();
    af.start("django", EVENT_TIMEOUT).await.unwrap();
    let answer = emu.get("django.com", "/").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.starts_with("hello django "), "{}", answer.body);
    assert!(
        answer.body.contains("gunicorn"),
        "served by gunicorn: {}",
        answer.body
    );
    let log = staging_log(&emu, &af, "django").await;
    assert!(
        log.contains("-----> Start command: python3 manage.py migrate --noinput"),
        "{log}"
    );
    assert!(log.contains("site1.wsgi:application"), "{log}");
}

/// `afemu rehearse --staging-cache DIR`: the emulator the rehearsal starts stages the runbook's
/// apps with npm's cache there, so rehearsals in a row reuse what the first one fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehearsal_stages_with_the_cache_it_is_given() {
    let app = node_app(json!({
        "name": "app", "version": "1.0.0",
        "dependencies": {"greet": "file:vendor/greet-1.0.0.tgz"},
    }));
    let dir = tempfile::tempdir().unwrap();
    let runbook = dir.path().join("deploy.runbook");
    std::fs::write(
        &runbook,
        format!(
            "af push web --path {} --url web.example.com -n\n@traffic web.example.com\n\
             @wait 200ms\n@expect served-by web web.example.com\n",
            app.path().display()
        ),
    )
    .unwrap();
    let cache = dir.path().join("cache");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_afemu"))
        .arg("rehearse")
        .arg(&runbook)
        .args([
            "--profile",
            "instant",
            "--services",
            "records",
            "--staging-cache",
        ])
        .arg(&cache)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let npm_cache = cache.join("npm").join("_cacache");
    assert!(
        npm_cache.is_dir(),
        "npm's cache is where the rehearsal was told: {:?}",
        std::fs::read_dir(&cache).map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
    );
}
