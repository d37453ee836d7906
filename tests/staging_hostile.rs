//! Staging against apps that misbehave on purpose (found by a hostile review of staging): what a
//! tool leaves in the droplet must not make afemu itself delete, hang on or copy what it should
//! not, the confinement holds for devices and signals, a tool's output cannot fill the disk, and
//! a client that hangs up does not leave a staging half-done. Uses node, npm, ruby and bundle
//! (installed by .ci/run); no registry is needed.

mod common;

use std::time::Duration;

use common::EVENT_TIMEOUT;
use common::staging::{
    create, droplet_dirs, emulator_with, pack_greet, processes_with, staging_log,
};
use serde_json::json;

/// A node app with one dependency packed here (so npm runs, offline) and `postinstall` as its
/// lifecycle script.
fn node_app(postinstall: &str) -> tempfile::TempDir {
    let app = tempfile::tempdir().unwrap();
    pack_greet(app.path());
    let package = json!({
        "name": "hostile", "version": "1.0.0",
        "dependencies": {"greet": "file:vendor/greet-1.0.0.tgz"},
        "scripts": {"postinstall": postinstall},
    });
    std::fs::write(app.path().join("package.json"), package.to_string()).unwrap();
    std::fs::write(
        app.path().join("server.js"),
        "require('http').createServer((q, s) => s.end('up')).listen(process.env.VCAP_APP_PORT);\n",
    )
    .unwrap();
    app
}

/// A Gemfile is Ruby code that Bundler runs (confined). One that puts a link to outside the
/// droplet where the bundle's gem packages go must not make afemu, which removes those packages
/// unconfined, delete the outside directory's `cache`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gemfile_linking_the_bundle_outside_does_not_make_afemu_delete_there() {
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let emu = emulator_with(data.path(), cache.path(), None).await;
    let af = emu.client();
    let outside = tempfile::tempdir().unwrap();
    let precious = outside.path().join("cache/precious");
    std::fs::create_dir_all(&precious).unwrap();
    std::fs::write(precious.join("file"), "keep me").unwrap();
    let app = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(app.path().join("vendor/cache")).unwrap();
    std::fs::write(app.path().join("vendor/cache/.keep"), "").unwrap();
    std::fs::write(
        app.path().join("Gemfile"),
        format!(
            "require \"fileutils\"\nFileUtils.mkdir_p(\"rubygems/ruby\")\n\
             File.symlink({:?}, \"rubygems/ruby/x\") unless File.symlink?(\"rubygems/ruby/x\")\n",
            outside.path().display().to_string()
        ),
    )
    .unwrap();
    std::fs::write(
        app.path().join("main.rb"),
        "require 'socket'\ns = TCPServer.new('127.0.0.1', ENV['VCAP_APP_PORT'].to_i)\n\
         loop { c = s.accept; c.gets; c.print \"HTTP/1.0 200 OK\\r\\n\\r\\nup\"; c.close }\n",
    )
    .unwrap();
    create(&af, "linked", "standalone", Some("ruby main.rb")).await;
    af.upload_dir("linked", app.path()).await.unwrap();
    af.start("linked", EVENT_TIMEOUT).await.unwrap();
    let log = staging_log(&emu, &af, "linked").await;
    assert!(log.contains("Bundle complete"), "Bundler ran: {log}");
    assert_eq!(
        std::fs::read_to_string(precious.join("file"))
            .ok()
            .as_deref(),
        Some("keep me"),
        "the directory outside the droplet is untouched"
    );
}

/// A tool that leaves FIFOs where afemu copies files (the staging log, a file of the app) must
/// not hang afemu: the staging ends, the app starts and stops, shutdown is not held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifos_a_tool_leaves_in_the_droplet_do_not_hang_afemu() {
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let emu = emulator_with(data.path(), cache.path(), None).await;
    let af = emu.client();
    let app = node_app("rm ../staging.log && mkfifo ../staging.log && mkfifo trap.fifo");
    create(&af, "fifos", "node", None).await;
    af.upload_dir("fifos", app.path()).await.unwrap();
    tokio::time::timeout(EVENT_TIMEOUT * 2, af.start("fifos", EVENT_TIMEOUT))
        .await
        .expect("the staging and the start end")
        .unwrap();
    assert_eq!(emu.get("fifos.com", "/").await.body, "up");
    tokio::time::timeout(EVENT_TIMEOUT, af.stop("fifos"))
        .await
        .expect("the stop ends")
        .unwrap();
    let log = staging_log(&emu, &af, "fifos").await;
    assert!(
        log.contains("The staging log could not be kept") && log.contains("not a regular file"),
        "{log}"
    );
    tokio::time::timeout(EVENT_TIMEOUT, emu.shutdown())
        .await
        .expect("shutdown is not held up");
}

/// Confinement beyond file writes: no device node made in the droplet (as root it could be a
/// disk's), no write to devices but the harmless ones, and (Landlock ABI 6, Linux 6.12) no
/// signal to processes outside the staging — a `postinstall` cannot kill afemu.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_can_neither_make_devices_nor_signal_outside_its_staging() {
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let emu = emulator_with(data.path(), cache.path(), None).await;
    let af = emu.client();
    let app = node_app("node probe.js");
    std::fs::write(
        app.path().join("probe.js"),
        format!(
            "const fs = require('fs'), cp = require('child_process');\n\
             const probe = (what, f) => {{ try {{ f(); console.log(`PROBE ${{what}}: allowed`); }}\n\
               catch (e) {{ console.log(`PROBE ${{what}}: ${{e.code || e.status}}`); }} }};\n\
             probe('signal afemu', () => process.kill({}, 0));\n\
             probe('mknod', () => cp.execFileSync('mknod', ['../null', 'c', '1', '3'], {{stdio: 'ignore'}}));\n\
             probe('write /dev/null', () => fs.writeFileSync('/dev/null', 'x'));\n\
             probe('write /dev/shm', () => {{ const f = '/dev/shm/afemu-probe-' + process.pid; fs.writeFileSync(f, 'x'); fs.unlinkSync(f); }});\n",
            std::process::id()
        ),
    )
    .unwrap();
    create(&af, "probe", "node", None).await;
    af.upload_dir("probe", app.path()).await.unwrap();
    af.start("probe", EVENT_TIMEOUT).await.unwrap();
    let log = staging_log(&emu, &af, "probe").await;
    assert!(!log.contains("PROBE mknod: allowed"), "{log}");
    assert!(log.contains("PROBE write /dev/null: allowed"), "{log}");
    assert!(log.contains("PROBE write /dev/shm: allowed"), "{log}");
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut version = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let (major, minor) = (version.next().unwrap_or(0), version.next().unwrap_or(0));
    if (major, minor) >= (6, 12) {
        assert!(log.contains("PROBE signal afemu: EPERM"), "{log}");
    }
}

/// A tool that prints without end fills the staging log only up to its limit, not the disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tools_endless_output_stops_at_the_logs_limit() {
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let emu = emulator_with(data.path(), cache.path(), None).await;
    let af = emu.client();
    let app = node_app("yes 'a line of noise' | head -c 40000000; echo done");
    create(&af, "noisy", "node", None).await;
    af.upload_dir("noisy", app.path()).await.unwrap();
    af.start("noisy", EVENT_TIMEOUT).await.unwrap();
    // The app's kept staging log (its id is 1: the only app).
    let kept = data.path().join("staging-logs").join("1.log");
    let size = std::fs::metadata(&kept).unwrap().len();
    assert!(size <= 32 * 1024 * 1024 + 4096, "{size} bytes");
    let tail = {
        let text = std::fs::read(&kept).unwrap();
        String::from_utf8_lossy(&text[text.len() - 400..]).into_owned()
    };
    assert!(tail.contains("The staging log is full (32 MiB)"), "{tail}");
    assert!(
        tail.contains("-----> Start command: node server.js"),
        "{tail}"
    );
}

/// A client that hangs up while its app stages (af interrupted, a client timeout) does not
/// cancel the staging half-way: it still ends at the staging timeout with everything it
/// started, leaves nothing half-made, and holds the app until then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hanging_up_during_staging_does_not_leave_it_half_done() {
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let emu = emulator_with(data.path(), cache.path(), Some(Duration::from_secs(3))).await;
    let af = emu.client();
    let marker = format!("afemu-hangup-{}", std::process::id());
    let app = node_app(&format!(
        "node -e 'setInterval(() => {{}}, 1000)' {marker} & node -e 'setInterval(() => {{}}, 1000)' {marker}"
    ));
    create(&af, "hangup", "node", None).await;
    af.upload_dir("hangup", app.path()).await.unwrap();
    let mut document = af.app("hangup").await.unwrap();
    document["state"] = json!("STARTED");
    let request = reqwest::Client::new()
        .put(format!("{}/apps/hangup", emu.api_url()))
        .header("AUTHORIZATION", af.token().unwrap())
        .json(&document)
        .send();
    let hung_up = tokio::spawn(request);
    common::poll("the postinstall to run", async || {
        (processes_with(&marker).len() >= 2).then_some(())
    })
    .await;
    hung_up.abort();
    let _ = hung_up.await;
    // The next change of the app waits for the staging to end.
    af.stop("hangup").await.unwrap();
    assert_eq!(
        processes_with(&marker),
        Vec::<String>::new(),
        "nothing left running"
    );
    assert!(droplet_dirs(data.path()).is_empty(), "nothing half-made");
    assert!(
        staging_log(&emu, &af, "hangup")
            .await
            .contains("did not finish within the staging timeout")
    );
}

/// A process that leaves the tool's process group on purpose (`setsid`, node's `detached`) is
/// found by the mark staging put in its environment, and ended with the staging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_leaves_the_group_does_not_outlive_the_staging() {
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let emu = emulator_with(data.path(), cache.path(), None).await;
    let af = emu.client();
    let marker = format!("afemu-setsid-{}", std::process::id());
    // The postinstall ends at once, leaving a session of its own behind.
    let app = node_app(&format!(
        "setsid node -e 'setInterval(() => {{}}, 1000)' {marker} > /dev/null 2>&1 < /dev/null &"
    ));
    create(&af, "escapes", "node", None).await;
    af.upload_dir("escapes", app.path()).await.unwrap();
    af.start("escapes", EVENT_TIMEOUT).await.unwrap();
    assert_eq!(
        processes_with(&marker),
        Vec::<String>::new(),
        "nothing the staging started outlives it"
    );
}
