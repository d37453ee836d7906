//! Load and faults, on loopback with bounded loops: a thousand keep-alive connections at once, a
//! thousand route changes on other hosts under traffic, and an instance killed under load. What
//! every request saw is checked on both sides: the client's and the journal's.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use afemu::router::RouterError;
use afemu::{Emulator, Profile, Traffic};
use bytes::Bytes;
use common::{EVENT_TIMEOUT, poll, wait_for};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};

/// Raises the soft limit on open files to what `wanted` sockets need (each connection is two
/// descriptors in this process, three with the router's connection to the backend).
fn raise_fd_limit(wanted: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    assert!(
        hard >= wanted,
        "this test needs {wanted} open files; the hard limit is {hard}"
    );
    if soft < wanted {
        setrlimit(Resource::RLIMIT_NOFILE, wanted, hard).expect("setrlimit");
    }
}

/// One keep-alive HTTP/1.1 connection to the router.
async fn connect(router: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(router)
        .await
        .expect("the router accepts");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("an HTTP/1.1 connection");
    tokio::spawn(connection);
    sender
}

/// `GET path` with `Host: host` on that connection: the status, the router error if any, the
/// body.
async fn get(
    sender: &mut SendRequest<Empty<Bytes>>,
    host: &str,
    path: &str,
    cookie: Option<&str>,
) -> Result<(u16, Option<String>, String), hyper::Error> {
    sender.ready().await?;
    let mut request = http::Request::get(path).header(http::header::HOST, host);
    if let Some(cookie) = cookie {
        request = request.header(http::header::COOKIE, cookie);
    }
    let response = sender
        .send_request(request.body(Empty::new()).unwrap())
        .await?;
    let status = response.status().as_u16();
    let router_error = response
        .headers()
        .get("x-afemu-router-error")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await?.to_bytes();
    Ok((
        status,
        router_error,
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

const CONNECTIONS: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_keep_alive_connections_are_served_without_errors() {
    // Client sockets, the router's ends, its connections to the backend and the backend's ends.
    raise_fd_limit(4 * CONNECTIONS as u64 + 512);
    let emu = Emulator::builder()
        .profile(Profile::Instant)
        .start()
        .await
        .unwrap();
    let af = emu.client();
    common::push_fixture(&af, "hello", "apps/hello-v1", &["hello.com"]).await;
    let router = emu.router_addr();
    // Every connection is opened and used once, then all of them wait for each other, so that a
    // thousand are open at the same time; then each is used twice more.
    let all_open = Arc::new(tokio::sync::Barrier::new(CONNECTIONS));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        let all_open = all_open.clone();
        clients.spawn(async move {
            let mut connection = connect(router).await;
            let mut answers = vec![get(&mut connection, "hello.com", "/", None).await];
            all_open.wait().await;
            for _ in 0..2 {
                answers.push(get(&mut connection, "hello.com", "/", None).await);
            }
            answers
        });
    }
    let all = tokio::time::timeout(EVENT_TIMEOUT, clients.join_all())
        .await
        .expect("a thousand connections are served in time");
    let mut served = 0;
    for answer in all.into_iter().flatten() {
        let (status, router_error, body) = answer.expect("no connection error");
        assert_eq!((status, router_error), (200, None));
        assert!(body.contains("example v1"), "{body}");
        served += 1;
    }
    assert_eq!(served, 3 * CONNECTIONS);
    let counters = emu.journal().host_counters("hello.com");
    assert_eq!(counters.requests, 3 * CONNECTIONS as u64);
    assert_eq!(
        counters.served_by.get("hello"),
        Some(&(3 * CONNECTIONS as u64))
    );
    assert_eq!((counters.default_error_pages, counters.aborted), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_route_changes_on_other_hosts_never_show_the_default_error_page() {
    let emu = Emulator::builder()
        .profile(Profile::Instant)
        .start()
        .await
        .unwrap();
    let af = emu.client();
    common::push_fixture(&af, "steady", "apps/hello-v1", &["steady.com"]).await;
    common::push_fixture(&af, "churn", "apps/hello-v2", &["churn.com"]).await;
    let traffic = Traffic::start(emu.router_addr(), &["steady.com", "steady.com"], None);
    wait_for(&emu, 0, "traffic on steady.com", |e| {
        &*e.host == "steady.com"
    })
    .await;
    let mut operations = 0;
    for round in 0..500 {
        // Another host each time, and every other round steady.com itself: mapping a second app
        // to a host and unmapping it again must not disturb the app that stays.
        let host = if round % 2 == 0 {
            "steady.com".to_owned()
        } else {
            format!("other-{round}.com")
        };
        af.map("churn", &host).await.unwrap();
        af.unmap("churn", &host).await.unwrap();
        operations += 2;
        if round % 25 == 0 {
            // Make sure traffic keeps flowing between the changes, whatever the scheduling.
            let since = emu.journal().last_seq();
            wait_for(&emu, since, "more traffic on steady.com", |e| {
                &*e.host == "steady.com"
            })
            .await;
        }
    }
    let last_version = emu.routes().version();
    let since = emu.journal().last_seq();
    wait_for(&emu, since, "traffic after the last change", |e| {
        &*e.host == "steady.com" && e.route_table_version >= last_version
    })
    .await;
    let tallies = traffic.stop().await;
    assert_eq!(operations, 1000);

    let tally = &tallies["steady.com"];
    assert!(tally.requests > 0);
    assert_eq!(tally.failures, 0, "{tally:?}");
    assert!(tally.router_errors.is_empty(), "{tally:?}");
    let counters = emu.journal().host_counters("steady.com");
    assert_eq!(counters.default_error_pages, 0, "{counters:?}");
    assert!(emu.journal().default_error_pages("steady.com").is_empty());
    // Every request was answered by an app: the steady one, or churn while it was mapped too.
    assert_eq!(
        counters.served_by.values().sum::<u64>(),
        counters.requests,
        "{counters:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_killed_under_load_fails_only_the_requests_in_flight_to_it() {
    let emu = Emulator::builder()
        .profile(Profile::Instant)
        .start()
        .await
        .unwrap();
    let af = emu.client();
    let notify = TcpListener::bind("127.0.0.1:0").await.unwrap();
    common::push_notifying_probe(&emu.client(), 2, notify.local_addr().unwrap()).await;
    let backends = emu.routes().snapshot();
    let backends = backends.lookup("probe.com").unwrap().backends();
    let victim = backends.iter().find(|b| b.instance_index() == 0).unwrap();
    let sticky = format!("__VCAP_ID__={}", victim.private_instance_id());

    // The victim's pid, asked of the victim itself (the sticky cookie picks the instance).
    let mut connection = connect(emu.router_addr()).await;
    let (_, _, env) = get(&mut connection, "probe.com", "/env", Some(&sticky))
        .await
        .unwrap();
    let env: Value = serde_json::from_str(&env).unwrap();
    assert_eq!(env["vcap_application"]["instance_index"], 0);
    let pid = env["pid"].as_i64().unwrap();

    let traffic = Traffic::start(emu.router_addr(), &["probe.com"; 4], None);
    // A request the victim has started on and will never finish: in flight when it dies.
    let hanging =
        tokio::spawn(
            async move { get(&mut connection, "probe.com", "/hang", Some(&sticky)).await },
        );
    let (mut told, _) = tokio::time::timeout(EVENT_TIMEOUT, notify.accept())
        .await
        .expect("the victim starts on the request")
        .unwrap();
    let mut what = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut told, &mut what)
        .await
        .unwrap();
    assert_eq!(what, "/hang");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let (status, router_error, _) = tokio::time::timeout(EVENT_TIMEOUT, hanging)
        .await
        .expect("the request in flight is answered")
        .unwrap()
        .unwrap();
    assert_eq!(
        (status, router_error.as_deref()),
        (502, Some("bad-gateway"))
    );
    // The crash is recorded in the same step that unregisters the instance; from that table on,
    // nothing may fail.
    poll("the crash to be recorded", async || {
        let crashes = af.crashes("probe").await.unwrap();
        (!crashes["crashes"].as_array().unwrap().is_empty()).then_some(())
    })
    .await;
    let unregistered = emu.routes().version();
    let since = emu.journal().last_seq();
    let mut after = 0;
    wait_for(&emu, since, "traffic after the crash", |e| {
        after += usize::from(&*e.host == "probe.com" && e.route_table_version >= unregistered);
        after >= 20
    })
    .await;
    let tallies = traffic.stop().await;

    let journal = emu.journal().since(0);
    let failed: Vec<_> = journal
        .iter()
        .filter(|e| &*e.host == "probe.com" && e.router_error.is_some())
        .collect();
    assert!(
        failed.iter().any(|e| e.path == "/hang"),
        "the request in flight is in the journal: {failed:?}"
    );
    for entry in &failed {
        assert_eq!(
            entry.router_error,
            Some(RouterError::BadGateway),
            "{entry:?}"
        );
        assert_eq!(entry.app.as_deref(), Some("probe"), "{entry:?}");
        assert_eq!(
            entry.instance,
            Some(0),
            "only the killed instance: {entry:?}"
        );
        assert!(
            entry.route_table_version < unregistered,
            "routed after the instance was unregistered: {entry:?}"
        );
    }
    // Every failure the clients saw is in the journal, and none was a no-route.
    let seen_by_clients: u64 = tallies["probe.com"]
        .router_errors
        .iter()
        .map(|(error, count)| {
            assert_eq!(error, "bad-gateway");
            *count
        })
        .sum::<u64>()
        + 1;
    assert_eq!(tallies["probe.com"].failures, 0);
    let counters = emu.journal().host_counters("probe.com");
    assert_eq!(counters.bad_gateway, seen_by_clients, "{counters:?}");
    assert_eq!(counters.no_route + counters.timeout, 0, "{counters:?}");
    // The survivor served throughout.
    assert!(
        journal
            .iter()
            .any(|e| e.served_by("probe") && e.instance == Some(1))
    );
}
