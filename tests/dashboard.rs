//! The dashboard in a real browser (headless Chromium, driven through chromedriver's WebDriver
//! API): it goes live on `/_afemu/live`, draws each host's traffic split with the default error
//! pages, lists apps and the timeline, its fault controls change the emulator, and it keeps up at
//! 2,000 requests a second.

mod common;

use std::process::Stdio;
use std::time::Duration;

use afemu::{Emulator, Profile};
use common::{EVENT_TIMEOUT, push_fixture};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

/// chromedriver, running, with one headless Chromium session.
struct Browser {
    driver: tokio::process::Child,
    base: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut driver = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver runs (.ci/run installs chromium-driver)");
        // It says when it listens.
        let mut lines = BufReader::new(driver.stdout.take().unwrap()).lines();
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("started successfully") {
                break;
            }
        }
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let profile = tempfile::tempdir().unwrap();
        let http = reqwest::Client::new();
        let session: Value = http
            .post(format!("http://127.0.0.1:{port}/session"))
            .json(
                &json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
                    "binary": "/usr/bin/chromium",
                    "args": ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             "--disable-background-networking",
                             format!("--user-data-dir={}", profile.path().display())],
                }}}}),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = session["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("a WebDriver session: {session}"))
            .to_owned();
        Browser {
            driver,
            base: format!("http://127.0.0.1:{port}/session/{id}"),
            http,
            _profile: profile,
        }
    }

    async fn command(&self, path: &str, body: Value) -> Value {
        let answer: Value = self
            .http
            .post(format!("{}/{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(answer["value"].get("error").is_none(), "{path}: {answer}");
        answer["value"].clone()
    }

    async fn open(&self, url: &str) {
        self.command("url", json!({"url": url})).await;
    }

    async fn script(&self, script: &str) -> Value {
        self.command("execute/sync", json!({"script": script, "args": []}))
            .await
    }

    /// Runs `script` until `done` holds for what it returns (the page updates as messages
    /// arrive; there is nothing else to wait on from outside the browser).
    async fn until(&self, what: &str, script: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            let seen = self.script(script).await;
            if done(&seen) {
                return seen;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the page never showed {what}: {seen}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn quit(mut self) {
        let _ = self.http.delete(&self.base).send().await;
        let _ = self.driver.kill().await;
    }
}

const SEEN: &str = r##"
const host = (h) => document.querySelector(`g.host[data-host="${h}"]`);
const errors = (h) => document.querySelector(`.host[data-host="${h}"] [data-errors]`);
return {
  status: document.getElementById("status").dataset.state,
  requests: Number(document.getElementById("requests").textContent),
  errors: Number(document.getElementById("errors").textContent),
  web_bars: host("web.com") ? Number(host("web.com").dataset.bars) : 0,
  web_app_bars: document.querySelectorAll('g.host[data-host="web.com"] rect[data-app="web"]').length,
  nowhere_errors: errors("nowhere.com") ? Number(errors("nowhere.com").dataset.errors) : 0,
  red_bars: document.querySelectorAll('#timeline rect.error-mark').length,
  markers: document.querySelectorAll('#timeline [data-kind]').length,
  axis: [...document.querySelectorAll('#timeline .axis-label')].map((t) => t.textContent),
  apps: [...document.querySelectorAll("#apps tr[data-app]")].map((r) => r.dataset.app),
  events: [...document.querySelectorAll("#events tr[data-event]")].map((r) => r.dataset.event),
  faults: document.getElementById("faults").textContent,
};
"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_platform_live_and_sets_faults() {
    let emu = Emulator::builder()
        .profile(Profile::Instant)
        .start()
        .await
        .unwrap();
    push_fixture(&emu.client(), "web", "apps/hello-v1", &["web.com"]).await;

    // A browser asking for / is sent to the dashboard; the page comes from the binary.
    let root = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/", emu.api_url()))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(root.status(), 303);
    assert_eq!(root.headers()["location"], "/_afemu/");
    let api_client = reqwest::get(format!("{}/", emu.api_url())).await.unwrap();
    assert_eq!(api_client.status(), 404, "a v1 client still gets v1's 404");

    let browser = Browser::start().await;
    browser.open(&format!("{}/_afemu/", emu.api_url())).await;
    browser
        .until("the feed live", SEEN, |seen| seen["status"] == "live")
        .await;

    for _ in 0..30 {
        assert_eq!(emu.get("web.com", "/").await.status, 200);
    }
    assert_eq!(emu.get("nowhere.com", "/").await.status, 404);
    let seen = browser
        .until("the requests, split and counted", SEEN, |seen| {
            seen["requests"] == 31
                && seen["nowhere_errors"] == 1
                && seen["web_app_bars"].as_u64() > Some(0)
        })
        .await;
    assert_eq!(seen["errors"], 1, "{seen}");
    assert!(
        seen["red_bars"].as_u64() > Some(0),
        "the error page drawn in red: {seen}"
    );
    assert_eq!(seen["apps"], json!(["web"]), "{seen}");
    assert!(
        seen["markers"].as_u64() > Some(0),
        "the push marked on the chart: {seen}"
    );
    assert_eq!(
        seen["axis"].as_array().unwrap().len(),
        6,
        "an axis with times: {seen}"
    );
    assert!(
        seen["events"].as_array().unwrap().contains(&json!("app")),
        "the push on the timeline: {seen}"
    );

    // A fault set from the page goes through PUT /_afemu/faults and shows on the timeline.
    browser
        .script(
            r#"
            const form = document.querySelector('form[data-fault="route_delay"]');
            form.elements.value.value = "0..50ms";
            form.querySelector("button").click();
            return true;
            "#,
        )
        .await;
    browser
        .until("the fault in force", SEEN, |seen| {
            seen["faults"]
                .as_str()
                .is_some_and(|f| f.starts_with("route delay 0") && f.contains("..50ms"))
                && seen["events"].as_array().unwrap().contains(&json!("fault"))
        })
        .await;
    assert!(
        emu.platform().route_delay().is_some(),
        "the emulator has it: {}",
        emu.platform().faults_document()
    );

    // At 2,000 requests a second the page stays live: its count keeps up with the counters.
    emu.inject(json!({"route_delay": null})).unwrap();
    let traffic = afemu::Traffic::start(emu.router_addr(), &["web.com", "web.com"], Some(1000));
    let before = seen["requests"].as_u64().unwrap();
    browser
        .until("4,000 more requests, counted live", SEEN, |seen| {
            seen["status"] == "live" && seen["requests"].as_u64() >= Some(before + 4000)
        })
        .await;
    traffic.stop().await;
    browser.quit().await;
    emu.shutdown().await;
}

/// `afemu rehearse --dashboard`: the URL at once, and the emulator kept up after the report
/// until Ctrl-C.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehearsal_keeps_its_emulator_up_for_the_dashboard() {
    let scratch = common::scratch();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_afemu"))
        .args(["rehearse", "--dashboard", "--profile", "instant"])
        .arg(common::fixture("runbooks/seed-001-swap-awaited.runbook"))
        .env("TMPDIR", scratch.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    assert!(first.contains("watch it live at http://"), "{first}");
    let kept = loop {
        let line = tokio::time::timeout(EVENT_TIMEOUT, lines.next_line())
            .await
            .expect("the report in time")
            .unwrap()
            .expect("a line saying the emulator stays up");
        if line.contains("stays up") {
            break line;
        }
    };
    let url = kept
        .split_whitespace()
        .find(|w| w.ends_with("/_afemu/"))
        .unwrap()
        .to_owned();
    let page = reqwest::get(&url).await.unwrap();
    assert_eq!(page.status(), 200, "the dashboard after the report");
    assert!(page.text().await.unwrap().contains("/_afemu/live"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = tokio::time::timeout(EVENT_TIMEOUT, child.wait())
        .await
        .expect("it stops on Ctrl-C")
        .unwrap();
    assert!(status.success(), "the rehearsal passed: {status}");
}
