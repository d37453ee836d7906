//! The wire as the stricter v1 clients (cfoundry 0.3, vmc 0.3.18) need it (spec/v1-clients.md),
//! driven the way cfoundry drives it: through `http://api.<domain>:<router port>`, v1's own
//! topology with the API behind the router, creating apps with `staging.model`/`stack` and URIs
//! that carry the router's port.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use afemu::Emulator;
use common::{EVENT_TIMEOUT, fixture};
use serde_json::{Value, json};

/// A cfoundry-like client: every host of the emulated domain resolves to the router.
struct Cf {
    http: reqwest::Client,
    target: String,
    token: Option<String>,
}

struct Answer {
    status: u16,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|_| panic!("not JSON: {:?}", self.text))
    }
}

impl Cf {
    fn new(router: SocketAddr, hosts: &[&str]) -> Cf {
        let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        for host in hosts {
            builder = builder.resolve(host, router);
        }
        Cf {
            http: builder.build().unwrap(),
            target: format!("http://api.aws.af.cm:{}", router.port()),
            token: None,
        }
    }

    async fn send(&self, method: &str, url: &str, body: Option<Value>) -> Answer {
        let url = if url.starts_with("http") {
            url.to_owned()
        } else {
            format!("{}{url}", self.target)
        };
        let mut request = self.http.request(method.parse().unwrap(), url);
        if let Some(token) = &self.token {
            request = request.header("Authorization", token);
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        Answer { status, text }
    }

    async fn login(&mut self, email: &str) {
        let answer = self
            .send(
                "POST",
                &format!("/users/{}/tokens", email.replace('@', "%40")),
                Some(json!({"password": "pw"})),
            )
            .await;
        assert_eq!(
            answer.status, 200,
            "cfoundry wants 200 JSON: {}",
            answer.text
        );
        self.token = Some(answer.json()["token"].as_str().unwrap().to_owned());
        let user = self.send("GET", &format!("/users/{email}"), None).await;
        assert_eq!(user.status, 200);
        assert_eq!(
            user.json()["admin"],
            false,
            "cfoundry reads the admin flag at login"
        );
    }

    /// cfoundry's push: create with `staging.model`/`stack`, upload, start, poll.
    async fn push(&self, name: &str, dir: &str, model: &str, stack: &str, uri: &str) {
        let created = self
            .send(
                "POST",
                "/apps",
                Some(json!({
                    "name": name,
                    "staging": {"model": model, "stack": stack},
                    "uris": [uri],
                    "instances": 1,
                    "resources": {"memory": 128},
                })),
            )
            .await;
        assert!(
            matches!(created.status, 200 | 302),
            "never 201: {}",
            created.status
        );
        let zip = afemu::cli::package::zip_dir(&fixture(dir)).unwrap();
        let form = reqwest::multipart::Form::new()
            .text("_method", "put")
            .part(
                "application",
                reqwest::multipart::Part::bytes(zip).file_name("app.zip"),
            )
            .text("resources", "[]");
        let uploaded = self
            .http
            .put(format!("{}/apps/{name}/application", self.target))
            .header("Authorization", self.token.as_deref().unwrap())
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(uploaded.status().as_u16(), 200);
        let mut doc = self
            .send("GET", &format!("/apps/{name}"), None)
            .await
            .json();
        assert_eq!(doc["staging"]["model"], model);
        assert_eq!(doc["staging"]["stack"], stack);
        doc["state"] = json!("STARTED");
        let started = self.send("PUT", &format!("/apps/{name}"), Some(doc)).await;
        assert_eq!(started.status, 200, "{}", started.text);
        self.wait_running(name).await;
    }

    async fn wait_running(&self, name: &str) {
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            let doc = self
                .send("GET", &format!("/apps/{name}"), None)
                .await
                .json();
            if doc["runningInstances"] == doc["instances"] {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} did not start: {doc}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn ruby_with_sinatra() -> bool {
    std::process::Command::new("ruby")
        .args(["-e", "require 'sinatra/base'"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_session_through_the_router_at_api_domain() {
    let emu = Emulator::start().await;
    let port = emu.router_addr().port();
    let mut cf = Cf::new(emu.router_addr(), &["api.aws.af.cm", "nodeapp.aws.af.cm"]);

    let info = cf.send("GET", "/info", None).await;
    assert_eq!(info.status, 200);
    assert!(
        info.json().get("authorization_endpoint").is_none(),
        "or cfoundry switches to UAA"
    );
    cf.login("cf@example.com").await;
    let info = cf.send("GET", "/info", None).await.json();
    let node = &info["frameworks"]["node"]["runtimes"][0];
    let installed = String::from_utf8(
        std::process::Command::new("node")
            .arg("--version")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(
        node["version"],
        installed.trim().trim_start_matches('v'),
        "the real installed version"
    );

    let uri = format!("nodeapp.aws.af.cm:{port}");
    cf.push("nodeapp", "apps/node-hello-v1", "node", "node", &uri)
        .await;
    let doc = cf.send("GET", "/apps/nodeapp", None).await.json();
    assert_eq!(doc["uris"], json!([uri]), "the port is kept in the URI");
    let served = cf.send("GET", &format!("http://{uri}/"), None).await;
    assert_eq!(served.status, 200);
    assert_eq!(served.text, "hello v1 from node (nodeapp)\n");

    let stats = cf.send("GET", "/apps/nodeapp/stats", None).await.json();
    assert_eq!(stats["0"]["stats"]["name"], "nodeapp");
    assert!(
        stats["0"]["stats"]["usage"]["mem"].as_f64().unwrap() > 0.0,
        "real memory: {stats}"
    );

    // Deleting answers 200 (cfoundry raises on 201, and on 204 where it expects JSON).
    let deleted = cf.send("DELETE", "/apps/nodeapp", None).await;
    assert_eq!(deleted.status, 200);
    // The API's own requests went through the router too.
    assert!(emu.journal().host_counters("api.aws.af.cm").requests > 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_host_is_reserved() {
    let emu = Emulator::start().await;
    let error = emu
        .client()
        .create_app(&json!({"name": "squatter", "staging": {"framework": "standalone"}, "uris": ["API.aws.af.cm"]}))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(701));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sinatra_app_pushed_as_cfoundry_pushes_it() {
    assert!(
        ruby_with_sinatra(),
        "ruby with sinatra is needed (.ci/run installs ruby-sinatra)"
    );
    let emu = Emulator::start().await;
    let port = emu.router_addr().port();
    let mut cf = Cf::new(emu.router_addr(), &["api.aws.af.cm", "sinatra.aws.af.cm"]);
    cf.login("cf@example.com").await;
    let uri = format!("sinatra.aws.af.cm:{port}");
    cf.push("sinatra", "apps/sinatra-hello", "sinatra", "ruby19", &uri)
        .await;
    let served = cf.send("GET", &format!("http://{uri}/"), None).await;
    assert_eq!(
        (served.status, served.text.as_str()),
        (200, "hello from sinatra (sinatra)\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_app_process_is_a_crash_and_cuts_its_request_with_502() {
    let emu = Emulator::start().await;
    let port = emu.router_addr().port();
    let mut cf = Cf::new(emu.router_addr(), &["api.aws.af.cm", "nodeapp.aws.af.cm"]);
    cf.login("cf@example.com").await;
    let uri = format!("nodeapp.aws.af.cm:{port}");
    cf.push("nodeapp", "apps/node-hello-v1", "node", "node", &uri)
        .await;

    // A request the app is busy with when it dies.
    let slow = {
        let http = cf.http.clone();
        let url = format!("http://{uri}/slow");
        tokio::spawn(async move {
            let response = http.get(url).send().await.unwrap();
            let status = response.status().as_u16();
            let header = response.headers().get("x-afemu-router-error").cloned();
            let body = response.text().await;
            (status, header, body)
        })
    };
    let mark = emu.journal().last_seq();
    // Wait until the app is serving it: it logs each slow request as it arrives.
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    while !cf
        .send(
            "GET",
            "/apps/nodeapp/instances/0/files/logs%2Fstdout.log",
            None,
        )
        .await
        .text
        .contains("slow request")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow request never reached the app"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid_file = cf
        .send("GET", "/apps/nodeapp/instances/0/files/run.pid", None)
        .await;
    assert_eq!(pid_file.status, 200);
    let pid: i32 = pid_file.text.trim().parse().unwrap();
    let killed_at = std::time::Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let crashes = cf.send("GET", "/apps/nodeapp/crashes", None).await.json();
        if !crashes["crashes"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "listed in /crashes within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(killed_at.elapsed() < Duration::from_secs(5));
    let (status, header, body) = slow.await.unwrap();
    assert_eq!(status, 502);
    assert_eq!(header.unwrap(), "bad-gateway");
    assert!(body.unwrap().contains("502 Bad Gateway"));
    let entry = common::wait_for(&emu, mark, "the cut request", |e| e.path == "/slow").await;
    assert!(entry.is_default_error_page());
    assert_eq!(entry.app.as_deref(), Some("nodeapp"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_app_with_no_uri_runs_at_once_and_quoted_commands_work() {
    let emu = Emulator::start().await;
    let af = emu.client();
    af.create_app(&json!({
        "name": "worker",
        "staging": {"model": "standalone", "stack": "python2", "command": "python3 -c \"import time; print('working', flush=True); time.sleep(600)\""},
        "uris": [],
        "instances": 1,
        "resources": {"memory": 64},
    }))
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("README"), "a worker").unwrap();
    af.upload_dir("worker", dir.path()).await.unwrap();
    af.start("worker", EVENT_TIMEOUT).await.unwrap();
    let instances = af.instances("worker").await.unwrap();
    assert_eq!(instances["instances"][0]["state"], "RUNNING");
    // It needs no port to be RUNNING; what it prints shows it really runs.
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    loop {
        let log = reqwest::Client::new()
            .get(format!(
                "{}/apps/worker/instances/0/files/logs/stdout.log",
                emu.api_url()
            ))
            .header("AUTHORIZATION", af.token().unwrap())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if log == "working\n" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker never printed: {log:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_register_change_passwords_and_admins_manage_them() {
    let emu = Emulator::builder()
        .configure(|config| config.admins = vec!["boss@example.com".into()])
        .start()
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let api = emu.api_url();
    let send = |method: &str, path: &str, token: Option<&str>, body: Value| {
        let mut request = http
            .request(method.parse().unwrap(), format!("{api}{path}"))
            .body(body.to_string());
        if let Some(token) = token {
            request = request.header("Authorization", token);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            (status, text)
        }
    };
    let login = |email: &'static str, password: &'static str| {
        let send = &send;
        async move {
            let (status, text) = send(
                "POST",
                &format!("/users/{email}/tokens"),
                None,
                json!({"password": password}),
            )
            .await;
            (status == 200).then(|| {
                serde_json::from_str::<Value>(&text).unwrap()["token"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
        }
    };

    let (status, _) = send(
        "POST",
        "/users",
        None,
        json!({"email": "new@example.com", "password": "one"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, again) = send(
        "POST",
        "/users",
        None,
        json!({"email": "NEW@example.com", "password": "x"}),
    )
    .await;
    assert_eq!(status, 400, "{again}");
    let user = login("new@example.com", "one").await.expect("registered");
    let boss = login("boss@example.com", "boss").await.unwrap();

    // af passwd: the user document back with a new password.
    let (status, _) = send(
        "PUT",
        "/users/new@example.com",
        Some(&user),
        json!({"email": "new@example.com", "password": "two"}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(login("new@example.com", "one").await.is_none());
    let user = login("new@example.com", "two")
        .await
        .expect("the new password works");

    // Only admins list and delete users; the admin flag is there for cfoundry.
    let (status, _) = send("GET", "/users", Some(&user), json!(null)).await;
    assert_eq!(status, 403);
    let (status, listed) = send("GET", "/users", Some(&boss), json!(null)).await;
    assert_eq!(status, 200);
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let admins: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["email"].clone(), u["admin"].clone()))
        .collect();
    assert!(
        admins.contains(&(json!("boss@example.com"), json!(true))),
        "{listed}"
    );
    assert!(
        admins.contains(&(json!("new@example.com"), json!(false))),
        "{listed}"
    );

    let client = afemu::cli::V1Client::new(&emu.api_url())
        .with_token(user.clone())
        .with_poll_interval(Duration::from_millis(10));
    client
        .push(
            "theirs",
            &fixture("apps/hello-v1"),
            &["theirs.com"],
            EVENT_TIMEOUT,
        )
        .await
        .unwrap();
    let (status, _) = send("DELETE", "/users/new@example.com", Some(&user), json!(null)).await;
    assert_eq!(status, 403, "not an admin");
    let (status, body) = send("DELETE", "/users/new@example.com", Some(&boss), json!(null)).await;
    assert_eq!((status, body.as_str()), (200, ""), "200, never 204");
    assert!(
        login("new@example.com", "two").await.is_some(),
        "a new login registers again"
    );
    assert_eq!(
        emu.get("theirs.com", "/").await.router_error.as_deref(),
        Some("no-route")
    );
}
