//! The two procedures the product exists for (`shared/seeds/`), end to end: the control plane
//! driven over real sockets exactly as `af` drives it (raw token, `POST /apps`, the multipart
//! upload, `PUT` of the whole document), with continuous traffic through the router on every host
//! involved, and the router's journal as the judge of what every request saw.

mod common;

use std::collections::BTreeMap;

use afemu::{Emulator, Traffic};
use common::{EVENT_TIMEOUT, entries, fixture, wait_for, wait_for_served};

const PROD: [&str; 2] = ["example.com", "www.example.com"];
const STAGING: &str = "example.aws.af.cm";

/// Seed 001: the blue/green swap. Map example2 to both production URLs, unmap example from them,
/// map example to the staging URL, unmap example2 from it. No visitor may see the platform's
/// default error page; while both apps are mapped each serves half the requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_001_blue_green_swap_shows_no_default_error_page() {
    let emu = Emulator::start().await;
    let af = emu.client();
    af.push("example", &fixture("apps/hello-v1"), &PROD, EVENT_TIMEOUT)
        .await
        .expect("push example");
    af.push(
        "example2",
        &fixture("apps/hello-v2"),
        &[STAGING],
        EVENT_TIMEOUT,
    )
    .await
    .expect("push example2");

    let hosts = [PROD[0], PROD[1], STAGING];
    let start = emu.journal().last_seq();
    let traffic = Traffic::start(emu.router_addr(), &hosts, None);
    for host in PROD {
        wait_for_served(&emu, start, host, "example", 1).await;
    }
    wait_for_served(&emu, start, STAGING, "example2", 1).await;

    // 1. Both apps on the production URLs: load-balanced.
    af.map("example2", "example.com").await.unwrap();
    af.map("example2", "www.example.com").await.unwrap();
    let both_mapped = emu.routes().version();
    let mark = emu.journal().last_seq();
    for host in PROD {
        // Enough requests in the load-balanced state to judge the split.
        let mut seen = 0;
        wait_for(&emu, mark, "40 load-balanced requests", |e| {
            if &*e.host == host && e.route_table_version == both_mapped {
                seen += 1;
            }
            seen >= 40
        })
        .await;
    }

    // 2. The swap.
    af.unmap("example", "example.com").await.unwrap();
    af.unmap("example", "www.example.com").await.unwrap();
    af.map("example", STAGING).await.unwrap();
    af.unmap("example2", STAGING).await.unwrap();
    let swapped = emu.routes().version();
    let mark = emu.journal().last_seq();
    for host in hosts {
        let mut seen = 0;
        wait_for(&emu, mark, "20 requests after the swap", |e| {
            if &*e.host == host && e.route_table_version >= swapped {
                seen += 1;
            }
            seen >= 20
        })
        .await;
    }
    let tallies = traffic.stop().await;

    // No request on any host saw the default error page: by the journal, and by the clients.
    for host in hosts {
        let counters = emu.journal().host_counters(host);
        assert!(counters.requests > 0, "{host} got traffic");
        assert_eq!(counters.default_error_pages, 0, "{host}: {counters:?}");
        assert_eq!(
            counters.aborted, 0,
            "no response was cut: {host}: {counters:?}"
        );
        let tally = &tallies[host];
        assert!(tally.router_errors.is_empty(), "{host}: {tally:?}");
        assert_eq!((tally.failures, tally.cut), (0, 0), "{host}: {tally:?}");
    }

    // While both were mapped, each served about half of the requests (round-robin).
    for host in PROD {
        let mut served: BTreeMap<String, usize> = BTreeMap::new();
        for entry in entries(&emu, start, host) {
            if entry.route_table_version == both_mapped {
                *served
                    .entry(entry.app.as_deref().unwrap().to_owned())
                    .or_default() += 1;
            }
        }
        let total: usize = served.values().sum();
        assert!(total >= 40, "{host}: {served:?}");
        for app in ["example", "example2"] {
            let share = served.get(app).copied().unwrap_or(0) as f64 / total as f64;
            assert!(
                (0.4..=0.6).contains(&share),
                "{host}: {app} served {share:.2}: {served:?}"
            );
        }
    }

    // Afterwards each host is served only by the right app.
    for (host, app) in [
        (PROD[0], "example2"),
        (PROD[1], "example2"),
        (STAGING, "example"),
    ] {
        let after: Vec<_> = entries(&emu, start, host)
            .into_iter()
            .filter(|e| e.route_table_version >= swapped)
            .collect();
        assert!(!after.is_empty());
        assert!(
            after.iter().all(|e| e.served_by(app)),
            "{host} must be served only by {app}"
        );
    }
    assert!(
        emu.get("www.example.com", "/")
            .await
            .body
            .contains("example v2")
    );
    assert!(emu.get(STAGING, "/").await.body.contains("example v1"));
    emu.shutdown().await;
}

/// Seed 000, without the downtime app: `af update` of the only app on a host is a full
/// stop-stage-start, and under the `fast` profile visitors see the default error page meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updating_the_only_app_on_a_host_shows_the_default_error_page() {
    let emu = Emulator::start().await;
    let af = emu.client();
    common::push_fixture(&af, "example", "apps/hello-v1", &["example.com"]).await;
    let start = emu.journal().last_seq();
    let traffic = Traffic::start(emu.router_addr(), &["example.com"], None);
    wait_for_served(&emu, start, "example.com", "example", 1).await;

    af.update("example", &fixture("apps/hello-v2"), EVENT_TIMEOUT)
        .await
        .expect("af update");
    let updated = emu.routes().version();
    wait_for(&emu, start, "a request served after the update", |e| {
        e.route_table_version >= updated && e.served_by("example")
    })
    .await;
    let tallies = traffic.stop().await;

    let counters = emu.journal().host_counters("example.com");
    assert!(counters.default_error_pages >= 1, "{counters:?}");
    assert_eq!(
        counters.no_route, counters.default_error_pages,
        "{counters:?}"
    );
    let tally = &tallies["example.com"];
    assert_eq!(
        tally.router_errors.get("no-route").copied().unwrap_or(0),
        counters.no_route,
        "the clients saw what the journal recorded"
    );
    assert!(tally.bodies.keys().any(|b| b.contains("example v1")));
    assert!(tally.bodies.keys().any(|b| b.contains("example v2")));
    assert!(
        emu.get("example.com", "/")
            .await
            .body
            .contains("example v2")
    );
    emu.shutdown().await;
}

/// Seed 000: the same update with a downtime app mapped to the host first. Nobody sees the default
/// error page; visitors see the downtime page while the main app is down, and the new version after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downtime_app_mapped_first_hides_the_update() {
    let emu = Emulator::start().await;
    let af = emu.client();
    common::push_fixture(&af, "example", "apps/hello-v1", &["example.com"]).await;
    common::push_fixture(&af, "downtime", "apps/downtime", &["downtime.aws.af.cm"]).await;
    let start = emu.journal().last_seq();
    let traffic = Traffic::start(emu.router_addr(), &["example.com"], None);
    wait_for_served(&emu, start, "example.com", "example", 1).await;

    af.map("downtime", "example.com").await.unwrap();
    wait_for_served(&emu, start, "example.com", "downtime", 1).await;
    af.update("example", &fixture("apps/hello-v2"), EVENT_TIMEOUT)
        .await
        .expect("af update");
    let updated = emu.routes().version();
    wait_for(&emu, start, "the new version served", |e| {
        e.route_table_version >= updated && e.served_by("example")
    })
    .await;
    af.unmap("downtime", "example.com").await.unwrap();
    let unmapped = emu.routes().version();
    wait_for(&emu, start, "a request after the downtime app left", |e| {
        e.route_table_version >= unmapped
    })
    .await;
    let tallies = traffic.stop().await;

    let counters = emu.journal().host_counters("example.com");
    assert_eq!(counters.default_error_pages, 0, "{counters:?}");
    let tally = &tallies["example.com"];
    assert!(
        tally.router_errors.is_empty() && tally.failures == 0,
        "{tally:?}"
    );
    let seen = |text: &str| {
        tally
            .bodies
            .iter()
            .filter(|(b, _)| b.contains(text))
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    assert!(
        seen("right back") > 0,
        "the downtime page was seen: {tally:?}"
    );
    assert!(
        seen("example v2") > 0,
        "the new version was seen: {tally:?}"
    );
    // While example was stopped, staged and started, the downtime app served every request.
    let during: Vec<_> = entries(&emu, start, "example.com")
        .into_iter()
        .filter(|e| e.route_table_version < updated && e.served_by("downtime"))
        .collect();
    assert!(!during.is_empty());
    assert!(
        emu.get("example.com", "/")
            .await
            .body
            .contains("example v2")
    );
    emu.shutdown().await;
}

/// The sharp edge of seed 001: unmapping the old app before mapping the new one leaves the host
/// with no backend, and visitors see the default error page. (The oracle can fail.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmapping_before_mapping_shows_the_default_error_page() {
    let emu = Emulator::start().await;
    let af = emu.client();
    common::push_fixture(&af, "example", "apps/hello-v1", &["example.com"]).await;
    common::push_fixture(&af, "example2", "apps/hello-v2", &[STAGING]).await;
    let start = emu.journal().last_seq();
    let traffic = Traffic::start(emu.router_addr(), &["example.com"], None);
    wait_for_served(&emu, start, "example.com", "example", 1).await;
    af.unmap("example", "example.com").await.unwrap();
    let gap = emu.routes().version();
    // Whoever asks in the gap gets the platform's page.
    wait_for(&emu, start, "a request in the gap", |e| {
        e.route_table_version == gap && e.is_default_error_page()
    })
    .await;
    af.map("example2", "example.com").await.unwrap();
    wait_for_served(&emu, start, "example.com", "example2", 1).await;
    traffic.stop().await;
    let counters = emu.journal().host_counters("example.com");
    assert!(counters.no_route >= 1, "{counters:?}");
}

/// Seed 000 with real processes, as the seed describes it: the main app is a node app and the
/// downtime app "a simple small Flask app" (here one with no dependencies).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_000_with_a_node_app_and_a_python_downtime_app() {
    let emu = Emulator::start().await;
    let af = emu.client();
    common::push_fixture(&af, "example", "apps/node-hello-v1", &["example.com"]).await;
    af.create_app(&serde_json::json!({
        "name": "downtime",
        "staging": {"framework": "standalone", "command": "python3 app.py"},
        "uris": ["downtime.aws.af.cm"],
        "instances": 1,
        "resources": {"memory": 64},
    }))
    .await
    .unwrap();
    af.upload_dir("downtime", &fixture("apps/python-downtime"))
        .await
        .unwrap();
    af.start("downtime", EVENT_TIMEOUT).await.unwrap();

    let start = emu.journal().last_seq();
    let traffic = Traffic::start(emu.router_addr(), &["example.com"], None);
    wait_for_served(&emu, start, "example.com", "example", 1).await;
    af.map("downtime", "example.com").await.unwrap();
    wait_for_served(&emu, start, "example.com", "downtime", 1).await;
    af.update("example", &fixture("apps/node-hello-v2"), EVENT_TIMEOUT)
        .await
        .unwrap();
    let updated = emu.routes().version();
    wait_for(&emu, start, "the new version served", |e| {
        e.route_table_version >= updated && e.served_by("example")
    })
    .await;
    af.unmap("downtime", "example.com").await.unwrap();
    let tallies = traffic.stop().await;

    let counters = emu.journal().host_counters("example.com");
    assert_eq!(counters.default_error_pages, 0, "{counters:?}");
    let tally = &tallies["example.com"];
    let seen = |text: &str| tally.bodies.keys().any(|b| b.contains(text));
    assert!(
        seen("hello v1 from node") && seen("right back") && seen("hello v2 from node"),
        "{tally:?}"
    );
    assert_eq!(
        emu.get("example.com", "/").await.body,
        "hello v2 from node (example)\n"
    );
}
