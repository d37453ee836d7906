//! The live feed (`GET /_afemu/live`, Server-Sent Events): a snapshot first, then what changed,
//! at most ten messages a second whatever the traffic, with exact request counts; and the admin
//! endpoints refuse a page from another site.

mod common;

use afemu::{Emulator, Profile, Traffic};
use common::{EVENT_TIMEOUT, push_fixture};
use serde_json::{Value, json};

/// A client of the feed: reads its messages one by one.
struct Feed {
    response: reqwest::Response,
    buffer: String,
}

impl Feed {
    async fn open(emu: &Emulator) -> Feed {
        let response = reqwest::get(format!("{}/_afemu/live", emu.api_url()))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "Server-Sent Events"
        );
        Feed {
            response,
            buffer: String::new(),
        }
    }

    /// The next message: its event name and its data.
    async fn next(&mut self) -> (String, Value) {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let mut event = String::new();
                let mut data = String::new();
                for line in frame.lines() {
                    if let Some(name) = line.strip_prefix("event:") {
                        event = name.trim().to_owned();
                    } else if let Some(text) = line.strip_prefix("data:") {
                        data.push_str(text.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return (event, serde_json::from_str(&data).unwrap());
            }
            let chunk = tokio::time::timeout(EVENT_TIMEOUT, self.response.chunk())
                .await
                .expect("a message in time")
                .unwrap()
                .expect("the feed stays open");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Reads ticks until `done` says so of one; returns that one.
    async fn until(&mut self, what: &str, mut done: impl FnMut(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no message showed {what}"
            );
            let (event, data) = self.next().await;
            assert_eq!(event, "tick");
            if done(&data) {
                return data;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_then_what_changed_with_exact_counts() {
    let emu = Emulator::builder()
        .profile(Profile::Instant)
        .start()
        .await
        .unwrap();
    let mut feed = Feed::open(&emu).await;
    let (event, snapshot) = feed.next().await;
    assert_eq!(event, "snapshot");
    assert_eq!(snapshot["apps"], json!([]));
    assert_eq!(snapshot["tick_ms"], 100);
    assert!(snapshot["routes"]["hosts"].is_object(), "{snapshot}");
    assert!(snapshot["faults"].is_object(), "{snapshot}");

    let af = emu.client();
    push_fixture(&af, "web", "apps/hello-v1", &["web.com"]).await;
    // The push is on the timeline, the route table and the apps.
    let mut mapped = false;
    let mut routed = false;
    let mut running = false;
    feed.until("the app mapped, routed and running", |tick| {
        mapped |= tick["events"].as_array().is_some_and(|events| {
            events.iter().any(|e| {
                e["event"] == "app"
                    && e["detail"]["app"] == "web"
                    && e["detail"]["map"] == json!(["web.com"])
            })
        });
        routed |= tick["routes"]["hosts"]["web.com"][0]["app"] == "web";
        running |= tick["apps"].as_array().is_some_and(|apps| {
            apps.iter().any(|a| {
                a["name"] == "web"
                    && a["instances"][0]["state"] == "RUNNING"
                    && a["instances"][0]["port"].is_u64()
            })
        });
        mapped && routed && running
    })
    .await;

    for _ in 0..40 {
        assert_eq!(emu.get("web.com", "/").await.status, 200);
    }
    assert_eq!(emu.get("nowhere.com", "/").await.status, 404);
    let mut served = 0;
    let mut errors = 0;
    feed.until("every request counted", |tick| {
        served += tick["traffic"]["web.com"]["apps"]["web"]
            .as_u64()
            .unwrap_or(0);
        errors += tick["traffic"]["nowhere.com"]["default_error_pages"]
            .as_u64()
            .unwrap_or(0);
        served >= 40 && errors >= 1
    })
    .await;
    assert_eq!((served, errors), (40, 1), "exact counts, nothing twice");

    // A crash is an event of its own.
    emu.inject(json!({"crash": {"app": "web", "index": 0}}))
        .unwrap();
    feed.until("the crash", |tick| {
        tick["events"].as_array().is_some_and(|events| {
            events
                .iter()
                .any(|e| e["event"] == "crash" && e["detail"]["app"] == "web")
        })
    })
    .await;
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_ten_messages_a_second_whatever_the_traffic() {
    let emu = Emulator::builder()
        .profile(Profile::Instant)
        .start()
        .await
        .unwrap();
    push_fixture(&emu.client(), "web", "apps/hello-v1", &["web.com"]).await;
    let mut feed = Feed::open(&emu).await;
    feed.next().await;
    let traffic = Traffic::start(emu.router_addr(), &["web.com", "web.com"], Some(1000));
    // Two seconds of messages, by the feed's own clock.
    let (_, first) = feed.next().await;
    let start = first["t_ms"].as_u64().unwrap();
    let mut messages = 1;
    let mut counted = first["traffic"]["web.com"]["requests"]
        .as_u64()
        .unwrap_or(0);
    loop {
        let (_, tick) = feed.next().await;
        let at = tick["t_ms"].as_u64().unwrap();
        if at >= start + 2000 {
            break;
        }
        messages += 1;
        counted += tick["traffic"]["web.com"]["requests"].as_u64().unwrap_or(0);
    }
    let tallies = traffic.stop().await;
    assert!(messages <= 21, "{messages} messages in two seconds");
    assert!(
        counted >= 500,
        "the load was there: {counted} requests counted ({tallies:?})"
    );
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_from_another_site_cannot_change_afemu() {
    let emu = Emulator::start().await;
    let faults = format!("{}/_afemu/faults", emu.api_url());
    let http = reqwest::Client::new();
    let host = emu.api_url().trim_start_matches("http://").to_owned();
    for (origin, site, allowed) in [
        (None, None, true),
        (Some(format!("http://{host}")), Some("same-origin"), true),
        (Some("http://evil.example".to_owned()), None, false),
        (
            Some("http://evil.example".to_owned()),
            Some("cross-site"),
            false,
        ),
        (None, Some("cross-site"), false),
    ] {
        let mut request = http.put(&faults).body(r#"{"route_delay": "0..5ms"}"#);
        if let Some(origin) = &origin {
            request = request.header("origin", origin);
        }
        if let Some(site) = site {
            request = request.header("sec-fetch-site", site);
        }
        let status = request.send().await.unwrap().status().as_u16();
        assert_eq!(status == 200, allowed, "{origin:?} {site:?}: {status}");
        let reset = http.post(format!("{}/_afemu/reset", emu.api_url()));
        let reset = match &origin {
            Some(origin) => reset.header("origin", origin),
            None => reset,
        };
        let status = reset.send().await.unwrap().status().as_u16();
        let same_origin = origin
            .as_deref()
            .is_none_or(|o| o == format!("http://{host}"));
        assert_eq!(
            status == 200,
            same_origin,
            "reset from {origin:?}: {status}"
        );
    }
    emu.shutdown().await;
}

/// A rehearsal against a running emulator marks each of its steps on the emulator's timeline,
/// where the dashboard shows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehearsal_marks_its_steps_on_the_timeline() {
    let emu = Emulator::builder()
        .profile(Profile::Instant)
        .start()
        .await
        .unwrap();
    let runbook = common::fixture("runbooks/seed-001-swap-awaited.runbook");
    let options = afemu::procedure::rehearse::Options {
        runbook: runbook.clone(),
        profile: Profile::Instant,
        target: Some((emu.api_url(), emu.router_url())),
        faults: afemu::Faults::default(),
        reset: true,
        replay: None,
        progress: false,
        services: afemu::ServicesMode::Records,
        dashboard: false,
        ..Default::default()
    };
    let report = afemu::procedure::rehearse::rehearse(&options)
        .await
        .unwrap();
    assert!(report.passed, "{:?}", report.verdict);
    let marked: Vec<u64> = emu
        .journal()
        .events_since(0)
        .iter()
        .filter(|e| e.event == "step")
        .map(|e| e.detail["line"].as_u64().unwrap())
        .collect();
    let lines: Vec<u64> = report
        .steps
        .iter()
        .filter(|s| s.line > 0)
        .map(|s| s.line as u64)
        .collect();
    assert_eq!(marked, lines, "one mark per line run, in order");
    emu.shutdown().await;
}

/// `POST /_afemu/events`: a caller's own event, checked; the platform's own names are not
/// forgeable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_from_outside_are_checked() {
    let emu = Emulator::start().await;
    let http = reqwest::Client::new();
    let url = format!("{}/_afemu/events", emu.api_url());
    for (body, status) in [
        (json!({"event": "step", "detail": {"line": 3}}), 200),
        (json!({"event": "deploy-started"}), 200),
        (json!({"event": "crash", "detail": {"app": "web"}}), 400),
        (json!({"event": "Step!"}), 400),
        (json!({"event": "step", "detail": [1]}), 400),
        (
            json!({"event": "step", "detail": {"x": "y".repeat(5000)}}),
            400,
        ),
        (json!({"detail": {}}), 400),
    ] {
        let got = http
            .post(&url)
            .body(body.to_string())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert_eq!(got, status, "{body}");
    }
    let names: Vec<String> = emu
        .journal()
        .events_since(0)
        .iter()
        .map(|e| e.event.clone())
        .collect();
    assert_eq!(names, ["step", "deploy-started"]);
    emu.shutdown().await;
}

/// The dashboard and its feed are the administrator's, as the other guarded endpoints: open to
/// this machine directly, and to anyone else (here: through the router, as from elsewhere) only
/// with the admin token in `Authorization` (never in the URL, which the journal would keep).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_for_the_administrator() {
    let emu = Emulator::start().await;
    let token = emu.platform().config().admin_token.clone();
    let api_host = emu.platform().api_host();
    let http = reqwest::Client::new();
    for path in ["/_afemu/", "/_afemu/live"] {
        let direct = http
            .get(format!("{}{path}", emu.api_url()))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(direct, 200, "{path} from this machine");
        let relayed = |query: &str, authorization: Option<&str>| {
            let request = http
                .get(format!("{}{path}{query}", emu.router_url()))
                .header("host", &api_host);
            match authorization {
                Some(value) => request.header("authorization", value),
                None => request,
            }
            .send()
        };
        assert_eq!(
            relayed("", None).await.unwrap().status(),
            403,
            "{path} relayed"
        );
        assert_eq!(
            relayed(&format!("?token={token}"), None)
                .await
                .unwrap()
                .status(),
            403,
            "{path}: a token in the URL is not taken"
        );
        assert_eq!(
            relayed("", Some(&token)).await.unwrap().status(),
            200,
            "{path} with the token"
        );
    }
    emu.shutdown().await;
}
