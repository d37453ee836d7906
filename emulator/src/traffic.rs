//! Steady traffic through the router: one keep-alive client per host, asking for `/` over and
//! over (at a set rate, or as fast as answers come back). What the requests saw is read from the
//! journal; the client side keeps its own tally so the two can be checked against each other.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use afemu_router::error_page::ROUTER_ERROR_HEADER;

/// What one host's client saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostTally {
    pub requests: u64,
    /// Responses carrying `X-Afemu-Router-Error`, by its value.
    pub router_errors: BTreeMap<String, u64>,
    /// Requests that got no response at all (connection errors).
    pub failures: u64,
    /// How often each distinct response body was seen (bodies are cut at 200 bytes).
    pub bodies: BTreeMap<String, u64>,
}

impl HostTally {
    fn add(&mut self, other: HostTally) {
        self.requests += other.requests;
        self.failures += other.failures;
        for (error, count) in other.router_errors {
            *self.router_errors.entry(error).or_default() += count;
        }
        for (body, count) in other.bodies {
            *self.bodies.entry(body).or_default() += count;
        }
    }
}

/// Traffic in progress; stop it to get the tallies.
#[derive(Debug)]
pub struct Traffic {
    stop: CancellationToken,
    tasks: Vec<(String, JoinHandle<HostTally>)>,
}

impl Traffic {
    /// Starts traffic to each host through the router at `router`, one client per entry (name a
    /// host twice for two clients); `rate` is requests per second per client, or `None` for
    /// back-to-back requests.
    pub fn start(router: SocketAddr, hosts: &[&str], rate: Option<u32>) -> Traffic {
        let stop = CancellationToken::new();
        let tasks = hosts
            .iter()
            .map(|host| {
                let host = host.to_string();
                let task = tokio::spawn(run(router, host.clone(), rate, stop.clone()));
                (host, task)
            })
            .collect();
        Traffic { stop, tasks }
    }

    /// Stops sending (requests in flight finish) and returns each host's tally; a host given
    /// several times (several clients) gets the sum of theirs.
    pub async fn stop(self) -> BTreeMap<String, HostTally> {
        self.stop.cancel();
        let mut tallies: BTreeMap<String, HostTally> = BTreeMap::new();
        for (host, task) in self.tasks {
            tallies
                .entry(host)
                .or_default()
                .add(task.await.unwrap_or_default());
        }
        tallies
    }
}

async fn run(
    router: SocketAddr,
    host: String,
    rate: Option<u32>,
    stop: CancellationToken,
) -> HostTally {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri: http::Uri = format!("http://{router}/")
        .parse()
        .expect("a socket address makes a URI");
    let mut ticker = rate.map(|per_second| {
        let mut ticker =
            tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(per_second.max(1))));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    });
    let mut tally = HostTally::default();
    loop {
        if let Some(ticker) = &mut ticker {
            tokio::select! {
                _ = ticker.tick() => {}
                () = stop.cancelled() => break,
            }
        } else if stop.is_cancelled() {
            break;
        } else {
            // Let the rest of the runtime run between back-to-back requests.
            tokio::task::yield_now().await;
        }
        let request = http::Request::get(uri.clone())
            .header(http::header::HOST, &host)
            .body(Empty::new())
            .expect("a valid request");
        tally.requests += 1;
        match client.request(request).await {
            Ok(response) => {
                if let Some(error) = response
                    .headers()
                    .get(ROUTER_ERROR_HEADER)
                    .and_then(|v| v.to_str().ok())
                {
                    *tally.router_errors.entry(error.to_owned()).or_default() += 1;
                }
                if let Ok(body) = response.into_body().collect().await {
                    let body = body.to_bytes();
                    let key = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                    *tally.bodies.entry(key).or_default() += 1;
                }
            }
            Err(_) => tally.failures += 1,
        }
    }
    tally
}
