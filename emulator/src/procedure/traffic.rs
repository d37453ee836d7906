//! Steady traffic through the router: one keep-alive client per host, asking for `/` over and
//! over (at a set rate, or as fast as answers come back), or writing: a POST to a path with a new
//! key in it each time, the keys the app acknowledged (a 2xx of its own) kept. What the requests
//! saw is read from the journal; the client side keeps its own tally so the two can be checked
//! against each other.

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
    /// Responses cut before their body ended.
    pub cut: u64,
    /// Ticks at which no request was sent because too many were in flight.
    pub skipped: u64,
    /// How often each distinct response body was seen (bodies are cut at 200 bytes).
    pub bodies: BTreeMap<String, u64>,
    /// For writes: the keys of the writes the app acknowledged (a 2xx answer of its own, read
    /// to its end), in the order sent.
    pub acknowledged: Vec<String>,
}

impl HostTally {
    fn add(&mut self, other: HostTally) {
        self.requests += other.requests;
        self.failures += other.failures;
        self.cut += other.cut;
        self.skipped += other.skipped;
        for (error, count) in other.router_errors {
            *self.router_errors.entry(error).or_default() += count;
        }
        for (body, count) in other.bodies {
            *self.bodies.entry(body).or_default() += count;
        }
        self.acknowledged.extend(other.acknowledged);
    }
}

/// Traffic in progress; stop it to get the tallies.
#[derive(Debug)]
pub struct Traffic {
    stops: Vec<CancellationToken>,
    tasks: Vec<(String, JoinHandle<HostTally>)>,
}

/// How many requests of one host may be in flight at once at a set rate; past that, a tick is
/// skipped (and counted) rather than piling up.
const IN_FLIGHT: usize = 256;

impl Traffic {
    /// Starts traffic to each host through the router at `router`, one client per entry (name a
    /// host twice for two clients); `rate` is requests per second per client, sent on schedule
    /// whatever the answers take (keep-alive connections, up to 256 in flight), or `None` for
    /// back-to-back requests, one at a time.
    pub fn start(router: SocketAddr, hosts: &[&str], rate: Option<u32>) -> Traffic {
        let stop = CancellationToken::new();
        let tasks = hosts
            .iter()
            .map(|host| {
                let host = host.to_string();
                let task = match rate {
                    Some(rate) => {
                        tokio::spawn(at_rate(router, host.clone(), rate, None, stop.clone()))
                    }
                    None => tokio::spawn(run(router, host.clone(), stop.clone())),
                };
                (host, task)
            })
            .collect();
        Traffic {
            stops: vec![stop],
            tasks,
        }
    }

    /// Starts writes to `host` through the router: `rate` POSTs a second to `path`, its `{key}`
    /// replaced by a new key each time (`w<client>-<n>`: unique within this process).
    pub fn writes(router: SocketAddr, host: &str, path: &str, rate: u32) -> Traffic {
        static CLIENTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let client = CLIENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stop = CancellationToken::new();
        let write = Write {
            path: path.to_owned(),
            client,
        };
        let task = tokio::spawn(at_rate(
            router,
            host.to_owned(),
            rate,
            Some(write),
            stop.clone(),
        ));
        Traffic {
            stops: vec![stop],
            tasks: vec![(host.to_owned(), task)],
        }
    }

    /// One traffic out of two, to stop together.
    pub fn merge(mut self, other: Traffic) -> Traffic {
        self.stops.extend(other.stops);
        self.tasks.extend(other.tasks);
        self
    }

    /// Stops sending (requests in flight finish) and returns each host's tally; a host given
    /// several times (several clients) gets the sum of theirs.
    pub async fn stop(self) -> BTreeMap<String, HostTally> {
        for stop in &self.stops {
            stop.cancel();
        }
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

/// Closed-loop traffic: the next request as soon as the last one is answered.
async fn run(router: SocketAddr, host: String, stop: CancellationToken) -> HostTally {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri: http::Uri = format!("http://{router}/")
        .parse()
        .expect("a socket address makes a URI");
    let mut tally = HostTally::default();
    while !stop.is_cancelled() {
        send(&client, (http::Method::GET, uri.clone()), &host)
            .await
            .add_to(&mut tally);
        // Let the rest of the runtime run between back-to-back requests.
        tokio::task::yield_now().await;
    }
    tally
}

/// What a writing client sends: POSTs to `path` with `{key}` replaced.
#[derive(Clone, Debug)]
struct Write {
    path: String,
    client: u64,
}

/// Open-loop traffic: a request every `1/rate` seconds, each on its own task (GET `/`, or a
/// write with a key of its own).
async fn at_rate(
    router: SocketAddr,
    host: String,
    rate: u32,
    write: Option<Write>,
    stop: CancellationToken,
) -> HostTally {
    use std::sync::{Arc, Mutex};
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri: http::Uri = format!("http://{router}/")
        .parse()
        .expect("a socket address makes a URI");
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let tally = Arc::new(Mutex::new(HostTally::default()));
    let mut sent = 0u64;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => break,
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tally.lock().unwrap_or_else(|e| e.into_inner()).skipped += 1;
            continue;
        };
        let (request, key) = match &write {
            None => ((http::Method::GET, uri.clone()), None),
            Some(write) => {
                let key = format!("w{}-{sent:06}", write.client);
                let path = write.path.replace("{key}", &key);
                match format!("http://{router}{path}").parse::<http::Uri>() {
                    Ok(uri) => ((http::Method::POST, uri), Some(key)),
                    Err(_) => break,
                }
            }
        };
        sent += 1;
        let (client, host, tally) = (client.clone(), host.clone(), tally.clone());
        tokio::spawn(async move {
            let outcome = send(&client, request, &host).await;
            let mut tally = tally.lock().unwrap_or_else(|e| e.into_inner());
            if let (Some(key), true) = (key, outcome.acknowledged()) {
                tally.acknowledged.push(key);
            }
            outcome.add_to(&mut tally);
            drop(permit);
        });
    }
    // Wait for the requests in flight.
    let _ = permits.acquire_many(IN_FLIGHT as u32).await;
    let mut tally = tally.lock().unwrap_or_else(|e| e.into_inner()).clone();
    tally.acknowledged.sort();
    tally
}

/// What one request got.
enum Outcome {
    Answer {
        status: u16,
        router_error: Option<String>,
        /// `None` when the body was cut.
        body: Option<String>,
    },
    NoAnswer,
}

impl Outcome {
    /// Whether the app itself said yes: a 2xx of its own (not the router's), read to its end.
    fn acknowledged(&self) -> bool {
        matches!(
            self,
            Outcome::Answer {
                status: 200..=299,
                router_error: None,
                body: Some(_)
            }
        )
    }

    fn add_to(self, tally: &mut HostTally) {
        tally.requests += 1;
        match self {
            Outcome::Answer {
                router_error, body, ..
            } => {
                if let Some(error) = router_error {
                    *tally.router_errors.entry(error).or_default() += 1;
                }
                match body {
                    Some(body) => *tally.bodies.entry(body).or_default() += 1,
                    None => tally.cut += 1,
                }
            }
            Outcome::NoAnswer => tally.failures += 1,
        }
    }
}

type TrafficClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

async fn send(
    client: &TrafficClient,
    (method, uri): (http::Method, http::Uri),
    host: &str,
) -> Outcome {
    let mut request = http::Request::builder()
        .method(method.clone())
        .uri(uri)
        .header(http::header::HOST, host);
    if method == http::Method::POST {
        request = request.header(http::header::CONTENT_LENGTH, 0);
    }
    let request = request.body(Empty::new()).expect("a valid request");
    match client.request(request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let router_error = response
                .headers()
                .get(ROUTER_ERROR_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = response.into_body().collect().await.ok().map(|body| {
                let body = body.to_bytes();
                String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
            });
            Outcome::Answer {
                status,
                router_error,
                body,
            }
        }
        Err(_) => Outcome::NoAnswer,
    }
}
