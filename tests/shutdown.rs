//! Clean shutdown: a request in flight when afemu is told to stop still gets its answer, and one
//! that would never end does not hold the shutdown up beyond the grace period. (That no app
//! process outlives afemu is tested in `serve.rs`; saving `--state` is not implemented yet.)

mod common;

use std::time::Duration;

use afemu::Emulator;
use afemu::cli::V1Client;
use common::{EVENT_TIMEOUT, serve_binary};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// Waits until the probe says it has started on a request, and returns that request's path.
async fn started_on(notify: &TcpListener) -> String {
    let (mut told, _) = tokio::time::timeout(EVENT_TIMEOUT, notify.accept())
        .await
        .expect("the app starts on the request")
        .unwrap();
    let mut path = String::new();
    told.read_to_string(&mut path).await.unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_when_sigterm_arrives_completes() {
    let mut served = serve_binary(&[], &[("AFEMU_PROFILE", "instant")]).await;
    let mut af = V1Client::new(&served.api).with_poll_interval(Duration::from_millis(10));
    af.login("me@example.com", "pw").await.unwrap();
    let notify = TcpListener::bind("127.0.0.1:0").await.unwrap();
    common::push_notifying_probe(&af, 1, notify.local_addr().unwrap()).await;

    let in_flight = tokio::spawn(
        reqwest::Client::new()
            .get(format!("{}/slow?ms=1500", served.router))
            .header("host", "probe.com")
            .send(),
    );
    assert_eq!(started_on(&notify).await, "/slow?ms=1500");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(served.child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();

    let answer = tokio::time::timeout(EVENT_TIMEOUT, in_flight)
        .await
        .expect("the request in flight is answered")
        .unwrap()
        .expect("an answer, not a cut connection");
    assert_eq!(answer.status(), 200);
    assert!(answer.headers().get("x-afemu-router-error").is_none());
    assert_eq!(answer.text().await.unwrap(), "slow done");
    let status = tokio::time::timeout(EVENT_TIMEOUT, served.child.wait())
        .await
        .expect("afemu exits after the drain")
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_never_ends_does_not_hold_up_the_shutdown() {
    let emu = Emulator::builder()
        .configure(|config| config.router.shutdown_grace = Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    let notify = TcpListener::bind("127.0.0.1:0").await.unwrap();
    common::push_notifying_probe(&emu.client(), 1, notify.local_addr().unwrap()).await;
    let hanging = tokio::spawn(
        reqwest::Client::new()
            .get(format!("{}/hang", emu.router_url()))
            .header("host", "probe.com")
            .send(),
    );
    assert_eq!(started_on(&notify).await, "/hang");
    let journal = emu.journal().clone();
    tokio::time::timeout(EVENT_TIMEOUT, emu.shutdown())
        .await
        .expect("the shutdown ends after the grace period");
    // The app was stopped under it: the request ends one way or the other, and if the router
    // got to answer it, it says the backend failed.
    let ended = tokio::time::timeout(EVENT_TIMEOUT, hanging)
        .await
        .expect("the hanging request ends")
        .unwrap();
    if let Ok(answer) = ended {
        assert_eq!(answer.status(), 502);
        let entry = journal
            .wait_for(0, EVENT_TIMEOUT, |e| e.path == "/hang")
            .await
            .expect("an answered request is in the journal");
        assert_eq!(entry.status, 502);
    }
}

/// Nobody reads afemu's output any more (a CI step's pipe, a terminal closed): SIGTERM still
/// shuts it down, rather than the log's write error stopping the task that would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_afemu_when_nobody_reads_its_output() {
    let mut served = common::serve_binary_logged(&[], &[]).await;
    // The ready line was read and stdout's reader dropped; now stderr's goes too.
    drop(served.logs.take());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(served.child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(EVENT_TIMEOUT, served.child.wait())
        .await
        .expect("afemu ends after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
}
