//! Faults, injected live through the harness (what `PUT /_afemu/faults` does) or at start: each
//! does what it says to real instances and the router, and is recorded in the journal.

mod common;

use std::time::Duration;

use afemu::{Emulator, Faults, Profile, RouteDelay};
use common::{EVENT_TIMEOUT, fixture, wait_for};
use serde_json::{Value, json};

async fn crashes(af: &afemu::cli::V1Client, app: &str) -> usize {
    af.crashes(app).await.unwrap()["crashes"]
        .as_array()
        .unwrap()
        .len()
}

/// Polls the API (as clients do) until `done`.
async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_routes_reach_the_router_after_af_map_returns() {
    let emu = Emulator::builder()
        .profile(Profile::Instant)
        .seed(3)
        .faults(Faults {
            route_delay: Some(RouteDelay {
                min: Duration::from_millis(300),
                max: Duration::from_millis(400),
            }),
            ..Faults::default()
        })
        .start()
        .await
        .unwrap();
    let af = emu.client();
    common::push_fixture(&af, "blue", "apps/hello-v1", &["blue.com"]).await;
    let mark = emu.journal().last_seq();
    af.map("blue", "late.com").await.unwrap();
    // af map has returned; the router does not know yet.
    assert_eq!(
        emu.get("late.com", "/").await.router_error.as_deref(),
        Some("no-route")
    );
    assert!(!emu.platform().routes_settled());
    loop {
        // The table asked before the request: one published in between is not waited for.
        let version = emu.routes().version();
        let answer = emu.get("late.com", "/").await;
        if answer.status == 200 {
            break;
        }
        // Wait for the next route table rather than spinning on requests.
        until("the next route table", async || {
            emu.routes().version() > version
        })
        .await;
    }
    assert!(emu.platform().routes_settled());
    wait_for(&emu, mark, "a request served on late.com", |e| {
        &*e.host == "late.com" && e.served_by("blue")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_now_and_after_n_requests() {
    let emu = Emulator::builder()
        .profile(Profile::Instant)
        .start()
        .await
        .unwrap();
    let af = emu.client();
    common::push_fixture(&af, "web", "apps/hello-v1", &["web.com"]).await;

    emu.inject(json!({"crash": {"app": "web", "index": 0}}))
        .unwrap();
    until("the crash", async || crashes(&af, "web").await == 1).await;
    af.wait_running("web", u64::MAX, EVENT_TIMEOUT)
        .await
        .unwrap();

    emu.inject(json!({"crash": {"app": "web", "index": 0, "after_requests": 3}}))
        .unwrap();
    for _ in 0..2 {
        assert_eq!(emu.get("web.com", "/").await.status, 200);
    }
    assert_eq!(crashes(&af, "web").await, 1, "not after two");
    assert_eq!(emu.get("web.com", "/").await.status, 200);
    until("the crash after the third request", async || {
        crashes(&af, "web").await == 2
    })
    .await;

    // Both are in the journal, as events.
    let events: Vec<Value> = emu
        .journal()
        .events_since(0)
        .iter()
        .filter(|e| e.event == "fault")
        .map(|e| e.detail.clone())
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1]["crash"]["after_requests"], 3);
    // And bad faults are refused, changing nothing.
    for bad in [
        json!({"crash": {"app": "nope"}}),
        json!({"crash": {"app": "web", "index": 9}}),
        json!({"explode": true}),
        json!({"stop": "gently"}),
    ] {
        assert!(emu.inject(bad.clone()).is_err(), "{bad}");
    }
    let faults = emu
        .journal()
        .events_since(0)
        .iter()
        .filter(|e| e.event == "fault")
        .count();
    assert_eq!(faults, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_backend_times_out_with_504() {
    let emu = Emulator::builder()
        .profile(Profile::Instant)
        .configure(|config| config.router.backend_timeout = Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let af = emu.client();
    common::push_fixture(&af, "stuck", "apps/hello-v1", &["stuck.com"]).await;
    common::push_fixture(&af, "nodestuck", "apps/node-hello-v1", &["nodestuck.com"]).await;
    for (app, host) in [("stuck", "stuck.com"), ("nodestuck", "nodestuck.com")] {
        assert_eq!(emu.get(host, "/").await.status, 200);
        emu.inject(json!({"hang": {"app": app}})).unwrap();
        // The hang reaches the instance through its supervisor; requests then time out.
        let mut answer = emu.get(host, "/").await;
        for _ in 0..1000 {
            if answer.status != 200 {
                break;
            }
            answer = emu.get(host, "/").await;
        }
        assert_eq!(
            (answer.status, answer.router_error.as_deref()),
            (504, Some("timeout")),
            "{app}"
        );
        // A hung app still stops.
        af.stop(app).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_start_and_failed_staging() {
    let emu = Emulator::builder()
        .profile(Profile::Instant)
        .start()
        .await
        .unwrap();
    let af = emu.client();
    common::push_fixture(&af, "web", "apps/hello-v1", &["web.com"]).await;

    emu.inject(json!({"slow_start": {"app": "web", "delay": "2s"}}))
        .unwrap();
    af.stop("web").await.unwrap();
    af.modify("web", |doc| doc["state"] = json!("STARTED"))
        .await
        .unwrap();
    assert_eq!(
        af.instances("web").await.unwrap()["instances"][0]["state"],
        "STARTING"
    );
    assert_eq!(
        emu.get("web.com", "/").await.router_error.as_deref(),
        Some("no-route")
    );
    af.wait_running("web", 0, EVENT_TIMEOUT).await.unwrap();
    emu.inject(json!({"slow_start": {"app": "web", "delay": null}}))
        .unwrap();

    emu.inject(json!({"fail_staging": {"app": "web"}})).unwrap();
    let error = af
        .update("web", &fixture("apps/hello-v2"), EVENT_TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(310), "{error}");
    assert_eq!(
        af.app("web").await.unwrap()["state"],
        "STOPPED",
        "v1 left a failed app stopped"
    );
    emu.inject(json!({"fail_staging": {"app": "web", "enabled": false}}))
        .unwrap();
    af.start("web", EVENT_TIMEOUT).await.unwrap();
    assert!(emu.get("web.com", "/").await.body.contains("example v2"));
    let faults = emu.platform().faults_document();
    assert_eq!(faults["fail_staging"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_stop_cuts_requests_in_flight_and_a_drain_lets_them_finish() {
    for (stop, expected) in [("drain", 200), ("hard", 502)] {
        let emu = Emulator::start().await;
        let af = emu.client();
        common::push_fixture(&af, "web", "apps/node-hello-v1", &["web.com"]).await;
        emu.inject(json!({"stop": stop})).unwrap();
        let slow = {
            let url = format!("{}/slow?ms=700", emu.router_url());
            tokio::spawn(async move {
                reqwest::Client::new()
                    .get(url)
                    .header("host", "web.com")
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        };
        // Wait until the app has the request.
        let log_url = format!(
            "{}/apps/web/instances/0/files/logs/stdout.log",
            emu.api_url()
        );
        let token = af.token().unwrap().to_owned();
        until("the slow request to arrive", async || {
            reqwest::Client::new()
                .get(&log_url)
                .header("AUTHORIZATION", &token)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
                .contains("slow request")
        })
        .await;
        af.stop("web").await.unwrap();
        assert_eq!(slow.await.unwrap(), expected, "stop {stop}");
    }
}
