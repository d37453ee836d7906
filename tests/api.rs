//! The v1 API as clients drive it, over real sockets: logins, the app document, whole-document
//! updates, and every kind of bad input — which must get a v1 `{code, description}` error and
//! change nothing.

mod common;

use std::io::Write;

use afemu::Emulator;
use common::{EVENT_TIMEOUT, fixture};
use serde_json::{Value, json};

/// A raw client: what a misbehaving or hostile client could send.
struct Raw {
    http: reqwest::Client,
    api: String,
}

struct Answer {
    status: u16,
    body: Value,
}

impl Raw {
    fn new(emu: &Emulator) -> Raw {
        Raw {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            api: emu.api_url(),
        }
    }

    async fn send(&self, method: &str, path: &str, token: Option<&str>, body: &str) -> Answer {
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.api))
            .body(body.to_owned());
        if let Some(token) = token {
            request = request.header("AUTHORIZATION", token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer { status, body }
    }

    async fn login(&self, email: &str, password: &str) -> String {
        let answer = self
            .send(
                "POST",
                &format!("/users/{email}/tokens"),
                None,
                &json!({"password": password}).to_string(),
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body["token"].as_str().unwrap().to_owned()
    }
}

fn assert_v1_error(answer: &Answer, status: u16, code: i64, what: &str) {
    assert_eq!(
        (answer.status, answer.body["code"].as_i64()),
        (status, Some(code)),
        "{what}: {}",
        answer.body
    );
    assert!(
        answer.body["description"].is_string(),
        "{what}: {}",
        answer.body
    );
}

#[tokio::test]
async fn login_registers_then_checks_the_password() {
    let emu = Emulator::start().await;
    let raw = Raw::new(&emu);
    let first = raw.login("new%40example.com", "secret").await;
    let second = raw.login("new%40example.com", "secret").await;
    assert_ne!(first, second, "tokens are fresh");
    let wrong = raw
        .send(
            "POST",
            "/users/new%40example.com/tokens",
            None,
            r#"{"password":"nope"}"#,
        )
        .await;
    assert_v1_error(&wrong, 403, 200, "wrong password");
    let missing = raw.send("POST", "/users/x%40y.z/tokens", None, "{}").await;
    assert_v1_error(&missing, 400, 100, "no password");

    // /info tells a logged-in user apart by `user` and `usage`; a bad token is not an error there.
    let info = raw.send("GET", "/info", Some(&first), "").await;
    assert_eq!(info.body["user"], "new@example.com");
    assert!(info.body["usage"].is_object() && info.body["limits"]["memory"].is_number());
    assert!(info.body["frameworks"]["standalone"].is_object());
    let anonymous = raw.send("GET", "/info", Some("forged"), "").await;
    assert_eq!(anonymous.status, 200);
    assert!(anonymous.body.get("user").is_none());
    for key in ["name", "build", "version", "support"] {
        assert!(!anonymous.body[key].is_null(), "{key}");
    }

    // Everything else needs a valid token.
    for token in [None, Some("forged")] {
        let apps = raw.send("GET", "/apps", token, "").await;
        assert_v1_error(&apps, 403, 200, "apps without a valid token");
    }
    let user = raw
        .send("GET", "/users/new%40example.com", Some(&first), "")
        .await;
    assert_eq!(user.body["admin"], false);
}

#[tokio::test]
async fn the_app_document_has_what_af_reads() {
    let emu = Emulator::start().await;
    let af = emu.client();
    common::push_fixture(&af, "example", "apps/hello-v1", &["HTTP://Example.COM"]).await;
    let doc = af.app("example").await.unwrap();
    assert_eq!(doc["name"], "example");
    assert_eq!(
        doc["uris"],
        json!(["example.com"]),
        "scheme stripped, lower-cased"
    );
    assert_eq!(doc["state"], "STARTED");
    assert_eq!(doc["instances"], 1);
    assert_eq!(doc["runningInstances"], 1);
    assert_eq!(doc["staging"]["model"], "standalone");
    assert_eq!(doc["resources"]["memory"], 64);
    assert_eq!(doc["services"], json!([]));
    assert_eq!(doc["env"], json!([]));
    assert!(doc["meta"]["version"].is_u64() && doc["meta"]["created"].is_u64());
    let version = doc["version"].as_str().unwrap();
    assert!(version.ends_with("-1") && version.len() == 42, "{version}");

    let apps = af.apps().await.unwrap();
    assert_eq!(apps.len(), 1);
    let instances = af.instances("example").await.unwrap();
    assert_eq!(instances["instances"][0]["state"], "RUNNING");
    assert_eq!(instances["instances"][0]["index"], 0);
    let stats = af.stats("example").await.unwrap();
    assert_eq!(stats["0"]["state"], "RUNNING");
    assert_eq!(stats["0"]["stats"]["name"], "example");
    assert_eq!(stats["0"]["stats"]["mem_quota"], 64 * 1024 * 1024);
    assert_eq!(af.crashes("example").await.unwrap(), json!({"crashes": []}));

    af.stop("example").await.unwrap();
    let stopped = af.app("example").await.unwrap();
    assert_eq!(
        (
            stopped["state"].as_str(),
            stopped["runningInstances"].as_u64()
        ),
        (Some("STOPPED"), Some(0))
    );
    assert_eq!(
        af.instances("example").await.unwrap(),
        json!({"instances": []})
    );
    let gone = emu.get("example.com", "/").await;
    assert_eq!(
        (gone.status, gone.router_error.as_deref()),
        (404, Some("no-route"))
    );
}

#[tokio::test]
async fn scaling_adds_and_removes_the_highest_indices_only() {
    let emu = Emulator::start().await;
    let af = emu.client();
    common::push_fixture(&af, "example", "apps/hello-v1", &["example.com"]).await;
    let first_port = emu
        .routes()
        .snapshot()
        .lookup("example.com")
        .unwrap()
        .backends()[0]
        .addr();
    af.scale("example", 3).await.unwrap();
    // Right after the PUT the new count is listed, the new ones still starting.
    let listed = af.instances("example").await.unwrap();
    assert_eq!(listed["instances"].as_array().unwrap().len(), 3);
    af.wait_running("example", 0, EVENT_TIMEOUT).await.unwrap();
    let backends = |emu: &Emulator| -> Vec<(u32, std::net::SocketAddr)> {
        let table = emu.routes().snapshot();
        let mut list: Vec<_> = table
            .lookup("example.com")
            .unwrap()
            .backends()
            .iter()
            .map(|b| (b.instance_index(), b.addr()))
            .collect();
        list.sort();
        list
    };
    let three = backends(&emu);
    assert_eq!(three.iter().map(|b| b.0).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_eq!(three[0].1, first_port, "instance 0 was not touched");
    af.scale("example", 1).await.unwrap();
    assert_eq!(backends(&emu), vec![(0, first_port)]);
    assert_eq!(
        af.instances("example").await.unwrap()["instances"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn bad_input_gets_a_v1_error_and_changes_nothing() {
    let emu = Emulator::start().await;
    let raw = Raw::new(&emu);
    let af = emu.client();
    let token = af.token().unwrap().to_owned();
    let token = Some(token.as_str());
    common::push_fixture(&af, "example", "apps/hello-v1", &["example.com"]).await;
    let before = af.app("example").await.unwrap();
    let routes_before = emu.routes().snapshot().summary();
    let doc = |change: &dyn Fn(&mut Value)| {
        let mut doc = before.clone();
        change(&mut doc);
        doc.to_string()
    };

    let cases: Vec<(&str, &str, String, u16, i64)> = vec![
        ("PUT", "/apps/example", "{not json".into(), 400, 100),
        ("PUT", "/apps/example", "[1,2]".into(), 400, 100),
        (
            "PUT",
            "/apps/example",
            doc(&|d| d["instances"] = json!("many")),
            400,
            100,
        ),
        (
            "PUT",
            "/apps/example",
            doc(&|d| d["instances"] = json!(0)),
            400,
            300,
        ),
        (
            "PUT",
            "/apps/example",
            doc(&|d| d["uris"] = json!("example.com")),
            400,
            100,
        ),
        (
            "PUT",
            "/apps/example",
            doc(&|d| d["uris"] = json!(["not a host"])),
            400,
            700,
        ),
        (
            "PUT",
            "/apps/example",
            doc(&|d| d["uris"] = json!(["a.com", "b.com", "c.com", "d.com", "e.com"])),
            403,
            602,
        ),
        (
            "PUT",
            "/apps/example",
            doc(&|d| d["state"] = json!("RUNNING")),
            400,
            100,
        ),
        (
            "PUT",
            "/apps/example",
            doc(&|d| d["name"] = json!("../evil")),
            400,
            300,
        ),
        (
            "PUT",
            "/apps/example",
            doc(&|d| d["resources"]["memory"] = json!(1_000_000)),
            403,
            600,
        ),
        (
            "PUT",
            "/apps/example",
            doc(&|d| d["services"] = json!(["mysql-x"])),
            404,
            500,
        ),
        (
            "PUT",
            "/apps/example",
            doc(&|d| d["meta"]["version"] = json!(0)),
            400,
            102,
        ),
        // A valid change that comes with an invalid one is refused whole.
        (
            "PUT",
            "/apps/example",
            doc(&|d| {
                d["instances"] = json!(2);
                d["uris"] = json!(["bad uri"]);
            }),
            400,
            700,
        ),
        ("PUT", "/apps/nosuch", doc(&|_| {}), 404, 301),
        ("GET", "/apps/nosuch", String::new(), 404, 301),
        ("DELETE", "/apps/nosuch", String::new(), 404, 301),
        ("GET", "/apps/nosuch/instances", String::new(), 404, 301),
        (
            "POST",
            "/apps",
            r#"{"name":"bad name","staging":{"framework":"node"}}"#.into(),
            400,
            300,
        ),
        ("POST", "/apps", r#"{"name":"x"}"#.into(), 400, 308),
        (
            "POST",
            "/apps",
            r#"{"name":"example","staging":{"framework":"node"}}"#.into(),
            400,
            300,
        ),
        (
            "POST",
            "/apps",
            r#"{"name":"y","staging":{"framework":"node"},"uris":["example.com","bad uri"]}"#
                .into(),
            400,
            700,
        ),
        (
            "POST",
            "/apps",
            format!(
                r#"{{"name":"big","staging":{{"framework":"node"}},"env":["{}"]}}"#,
                "x".repeat(2 << 20)
            ),
            413,
            100,
        ),
    ];
    for (method, path, body, status, code) in &cases {
        let answer = raw.send(method, path, token, body).await;
        assert_v1_error(
            &answer,
            *status,
            *code,
            &format!("{method} {path} {:.80}", body),
        );
    }
    assert_eq!(af.app("example").await.unwrap(), before, "nothing changed");
    assert_eq!(af.apps().await.unwrap().len(), 1, "no app was created");
    assert_eq!(emu.routes().snapshot().summary(), routes_before);
    assert_eq!(emu.get("example.com", "/").await.status, 200);
}

#[tokio::test]
async fn another_users_uri_is_refused_with_701() {
    let emu = Emulator::start().await;
    let mine = emu.client();
    common::push_fixture(&mine, "example", "apps/hello-v1", &["example.com"]).await;
    let mut theirs = afemu::cli::V1Client::new(&emu.api_url());
    theirs.login("other@example.com", "pw").await.unwrap();
    let refused = theirs
        .create_app(&json!({"name": "thief", "staging": {"framework": "standalone"}, "uris": ["EXAMPLE.com"]}))
        .await
        .unwrap_err();
    assert_eq!((refused.status(), refused.code()), (Some(400), Some(701)));
    assert!(
        theirs.apps().await.unwrap().is_empty(),
        "the refused app was not kept"
    );
    // Their own app may not take it by a map either; and they cannot see or touch mine.
    theirs
        .create_app(&json!({"name": "theirs", "staging": {"framework": "standalone"}}))
        .await
        .unwrap();
    assert_eq!(
        theirs
            .map("theirs", "example.com")
            .await
            .unwrap_err()
            .code(),
        Some(701)
    );
    assert_eq!(theirs.app("example").await.unwrap_err().code(), Some(301));
    assert_eq!(
        theirs.delete_app("example").await.unwrap_err().code(),
        Some(301)
    );
    // The same user may map one URI to several apps: that is the blue/green recipe.
    mine.create_app(&json!({"name": "example2", "staging": {"framework": "standalone"}, "uris": ["example.com"]}))
        .await
        .unwrap();
}

#[tokio::test]
async fn hostile_uploads_are_refused_and_change_nothing() {
    let emu = Emulator::start().await;
    let af = emu.client();
    common::push_fixture(&af, "example", "apps/hello-v1", &["example.com"]).await;
    let before = af.app("example").await.unwrap();

    let zip_with = |name: &str| {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        writer
            .start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        writer.write_all(b"owned").unwrap();
        writer.finish().unwrap().into_inner()
    };
    let escaping = af
        .upload_zip("example", zip_with("../../escaped.txt"), &json!([]))
        .await
        .unwrap_err();
    assert_eq!(escaping.code(), Some(402), "{escaping}");
    let not_a_zip = af
        .upload_zip("example", b"not a zip".to_vec(), &json!([]))
        .await
        .unwrap_err();
    assert_eq!(not_a_zip.code(), Some(402), "{not_a_zip}");
    let unknown_resource = af
        .upload_zip(
            "example",
            zip_with("index.html"),
            &json!([{"size": 5, "sha1": "0".repeat(40), "fn": "x.js"}]),
        )
        .await
        .unwrap_err();
    assert_eq!(unknown_resource.code(), Some(401), "{unknown_resource}");
    let bad_resources = af
        .upload_zip("example", zip_with("index.html"), &json!({"not": "a list"}))
        .await
        .unwrap_err();
    assert_eq!(bad_resources.code(), Some(100), "{bad_resources}");

    // Nothing changed: restarting runs the old bits, and nothing escaped the data directory.
    assert_eq!(af.app("example").await.unwrap(), before);
    af.restart("example", EVENT_TIMEOUT).await.unwrap();
    assert!(
        emu.get("example.com", "/")
            .await
            .body
            .contains("example v1")
    );
    let data = emu.platform().data_dir();
    assert!(
        !data.join("../escaped.txt").exists()
            && !data.parent().unwrap().join("../escaped.txt").exists()
    );
}

#[tokio::test]
async fn resources_already_uploaded_need_not_be_sent_again() {
    let emu = Emulator::start().await;
    let raw = Raw::new(&emu);
    let af = emu.client();
    let token = af.token().unwrap().to_owned();
    common::push_fixture(&af, "example", "apps/hello-v1", &["example.com"]).await;
    let content = std::fs::read(fixture("apps/hello-v1/index.html")).unwrap();
    let sha1 = hex::encode(<sha1::Sha1 as sha1::Digest>::digest(&content));
    let known = json!([{"size": content.len(), "sha1": sha1, "fn": "/tmp/.vmc_x_files/index.html"},
                       {"size": 3, "sha1": "1".repeat(40), "fn": "/tmp/.vmc_x_files/other"}]);
    let answer = raw
        .send("POST", "/resources", Some(&token), &known.to_string())
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body.as_array().unwrap().len(), 1, "{}", answer.body);
    assert_eq!(answer.body[0]["sha1"], sha1);

    // A second app made only of that resource.
    af.create_app(
        &json!({"name": "copy", "staging": {"framework": "standalone"}, "uris": ["copy.com"]}),
    )
    .await
    .unwrap();
    let empty = {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        writer
            .start_file(".__empty__", zip::write::SimpleFileOptions::default())
            .unwrap();
        writer.finish().unwrap().into_inner()
    };
    af.upload_zip(
        "copy",
        empty,
        &json!([{"size": content.len(), "sha1": sha1, "fn": "index.html"}]),
    )
    .await
    .unwrap();
    af.start("copy", EVENT_TIMEOUT).await.unwrap();
    assert!(emu.get("copy.com", "/").await.body.contains("example v1"));
}

#[tokio::test]
async fn link_chains_and_resource_bombs_are_refused() {
    let emu = Emulator::start().await;
    let af = emu.client();
    common::push_fixture(&af, "example", "apps/hello-v1", &["example.com"]).await;
    let data = emu.platform().data_dir().to_path_buf();
    let victim = data.join("droplets").join("victim");
    std::fs::write(&victim, "precious").unwrap();

    // A chain of links that, created in this order, used to lead outside the app.
    let chain = {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default();
        writer.start_file("index.html", options).unwrap();
        writer.write_all(b"ok").unwrap();
        for (link, target) in [
            ("d/up3", "up2/.."),
            ("d/up2", "up/.."),
            ("d/up", ".."),
            ("d/up3/victim", "x"),
        ] {
            writer.add_symlink(link, target, options).unwrap();
        }
        writer.finish().unwrap().into_inner()
    };
    af.create_app(
        &json!({"name": "chain", "staging": {"framework": "standalone"}, "uris": ["chain.com"]}),
    )
    .await
    .unwrap();
    af.upload_zip("chain", chain, &json!([])).await.unwrap();
    let error = af.start("chain", EVENT_TIMEOUT).await.unwrap_err();
    assert_eq!(error.code(), Some(310), "{error}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");

    // One pooled file named ten thousand times: refused at the upload, nothing kept.
    let content = std::fs::read(fixture("apps/hello-v1/index.html")).unwrap();
    let sha1 = hex::encode(<sha1::Sha1 as sha1::Digest>::digest(&content));
    let bomb: Vec<_> = (0..10_000)
        .map(|n| json!({"size": content.len(), "sha1": sha1, "fn": format!("copy{n}.html")}))
        .collect();
    let empty = {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        writer
            .start_file(".__empty__", zip::write::SimpleFileOptions::default())
            .unwrap();
        writer.finish().unwrap().into_inner()
    };
    let emu_small = Emulator::builder()
        .configure(|config| config.max_unpacked = 1_000_000)
        .start()
        .await
        .unwrap();
    let small = emu_small.client();
    small
        .push(
            "example",
            &fixture("apps/hello-v1"),
            &["example.com"],
            EVENT_TIMEOUT,
        )
        .await
        .unwrap();
    let error = small
        .upload_zip("example", empty, &json!(bomb))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(402), "{error}");
}

#[tokio::test]
async fn a_journal_query_past_the_end_is_empty_not_a_crash() {
    let emu = Emulator::start().await;
    let answer = reqwest::get(format!(
        "{}/_afemu/journal?since=18446744073709551615",
        emu.api_url()
    ))
    .await
    .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "");
    let health = reqwest::get(format!("{}/_afemu/health", emu.api_url()))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn old_bits_and_crashed_instances_do_not_pile_up_on_disk() {
    let emu = Emulator::start().await;
    let af = emu.client();
    common::push_fixture(&af, "example", "apps/hello-v1", &["example.com"]).await;
    let data = emu.platform().data_dir().to_path_buf();
    let count = |dir: &str| {
        std::fs::read_dir(data.join(dir))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    af.update("example", &fixture("apps/hello-v2"), EVENT_TIMEOUT)
        .await
        .unwrap();
    af.update("example", &fixture("apps/hello-v1"), EVENT_TIMEOUT)
        .await
        .unwrap();
    // Beside the droplet, the app's last staging log (`<id>-staging.log`) is kept.
    let droplets = std::fs::read_dir(data.join("droplets"))
        .unwrap()
        .flatten()
        .filter(|entry| entry.path().is_dir())
        .count();
    assert_eq!(droplets, 1, "only the current droplet is kept");
    assert_eq!(
        std::fs::read_dir(data.join("packages"))
            .unwrap()
            .next()
            .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count()),
        Some(1)
    );
    emu.inject(json!({"crash": {"app": "example"}})).unwrap();
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    while af.crashes("example").await.unwrap()["crashes"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    af.wait_running("example", u64::MAX, EVENT_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        count("instances"),
        2,
        "the crashed instance is kept, beside its replacement"
    );
    af.delete_app("example").await.unwrap();
    assert_eq!(count("instances"), 0);
    assert_eq!(count("droplets"), 0);
    assert_eq!(count("packages"), 0);
}

#[tokio::test]
async fn history_diff_and_runtimes_as_appfogs_af_reads_them() {
    let emu = Emulator::start().await;
    let af = emu.client();
    af.create_app(
        &json!({"name": "web", "staging": {"framework": "standalone"}, "uris": ["web.com"]}),
    )
    .await
    .unwrap();
    let upload = |label: &'static str, hash: &'static str| {
        let zip = afemu::cli::package::zip_dir(&fixture("apps/hello-v1")).unwrap();
        let form = reqwest::multipart::Form::new()
            .text("_method", "put")
            .part(
                "application",
                reqwest::multipart::Part::bytes(zip).file_name("web.zip"),
            )
            .text("resources", "[]");
        reqwest::Client::new()
            .post(format!("{}/apps/web/application", emu.api_url()))
            .header("AUTHORIZATION", af.token().unwrap())
            .header("Label", label)
            .header("Hash", hash)
            .multipart(form)
            .send()
    };
    assert_eq!(upload("first", "aaaa").await.unwrap().status(), 200);
    assert_eq!(upload("second", "aaaa").await.unwrap().status(), 200);
    assert_eq!(upload("", "bbbb").await.unwrap().status(), 200);
    let raw = Raw::new(&emu);
    let token = af.token().unwrap().to_owned();
    let history = raw
        .send("GET", "/apps/web/history", Some(&token), "")
        .await
        .body;
    let rows: Vec<(String, u64, bool)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["label"].as_str().unwrap().to_owned(),
                r["release"].as_u64().unwrap(),
                r["is_changed"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("".into(), 3, true),
            ("second".into(), 2, false),
            ("first".into(), 1, true)
        ]
    );
    assert_eq!(history[0]["updated_by"], afemu::harness::TEST_USER);
    let diff = raw
        .send("GET", "/apps/web/diff", Some(&token), "")
        .await
        .body;
    assert_eq!(diff, json!([{"update_hash": "bbbb"}]));
    let runtimes = raw.send("GET", "/info/runtimes", None, "").await.body;
    assert!(runtimes["node"]["version"].is_string(), "{runtimes}");
    assert_eq!(runtimes["node"]["debug_modes"], json!([]));
}

/// Who a hostile request comes from.
#[derive(Clone, Copy, Debug)]
enum Who {
    Owner,
    /// Another registered user, who must not see or touch the owner's app or its URIs.
    Stranger,
    /// A token nobody was given.
    Forged,
    Anonymous,
}

/// A raw request the way a hostile client writes it, byte for byte (no URL normalisation).
async fn raw_http(addr: std::net::SocketAddr, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(EVENT_TIMEOUT, stream.read_to_end(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Hostile requests at the JSON and authorisation level, beyond what
/// `bad_input_gets_a_v1_error_and_changes_nothing` covers: each gets v1's error, and afterwards
/// the owner's app, the apps list, the route table and the health check are as before.
#[tokio::test]
async fn hostile_requests_get_v1_errors_change_nothing_and_the_emulator_stays_healthy() {
    let emu = Emulator::start().await;
    let raw = Raw::new(&emu);
    let af = emu.client();
    common::push_fixture(&af, "example", "apps/hello-v1", &["example.com"]).await;
    let owner = af.token().unwrap().to_owned();
    let stranger = raw.login("stranger%40example.com", "pw").await;
    // A change the owner makes, so that the document before it is stale.
    let stale = af.app("example").await.unwrap();
    af.modify("example", |doc| doc["env"] = json!(["A=1"]))
        .await
        .unwrap();
    let before = af.app("example").await.unwrap();
    let routes_before = emu.routes().snapshot().summary();
    let doc = |change: &dyn Fn(&mut Value)| {
        let mut doc = before.clone();
        change(&mut doc);
        doc.to_string()
    };
    let deeply_nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));

    use Who::{Anonymous, Forged, Owner, Stranger};
    let cases: Vec<(Who, &str, &str, String, u16, i64)> = vec![
        // Tokens: forged or missing, on everything that reads or changes state.
        (Forged, "GET", "/apps/example", String::new(), 403, 200),
        (Forged, "PUT", "/apps/example", doc(&|_| {}), 403, 200),
        (Forged, "DELETE", "/apps/example", String::new(), 403, 200),
        (
            Forged,
            "POST",
            "/apps",
            r#"{"name":"x","staging":{"framework":"node"}}"#.into(),
            403,
            200,
        ),
        (
            Forged,
            "POST",
            "/apps/example/application",
            "x".into(),
            403,
            200,
        ),
        (
            Forged,
            "GET",
            "/apps/example/instances/0/files/logs",
            String::new(),
            403,
            200,
        ),
        (
            Forged,
            "POST",
            "/services",
            r#"{"name":"db","vendor":"mysql"}"#.into(),
            403,
            200,
        ),
        (Anonymous, "PUT", "/apps/example", doc(&|_| {}), 403, 200),
        (Anonymous, "GET", "/users", String::new(), 403, 200),
        // Another user: the app does not exist for them, its URI is taken.
        (Stranger, "GET", "/apps/example", String::new(), 404, 301),
        (Stranger, "PUT", "/apps/example", doc(&|_| {}), 404, 301),
        (Stranger, "DELETE", "/apps/example", String::new(), 404, 301),
        (
            Stranger,
            "GET",
            "/apps/example/instances",
            String::new(),
            404,
            301,
        ),
        (
            Stranger,
            "GET",
            "/apps/example/stats",
            String::new(),
            404,
            301,
        ),
        (
            Stranger,
            "GET",
            "/apps/example/crashes",
            String::new(),
            404,
            301,
        ),
        (
            Stranger,
            "GET",
            "/apps/example/application",
            String::new(),
            404,
            301,
        ),
        (
            Stranger,
            "GET",
            "/apps/example/instances/0/files/logs",
            String::new(),
            404,
            301,
        ),
        (
            Stranger,
            "POST",
            "/apps",
            r#"{"name":"mine","staging":{"framework":"standalone"},"uris":["Example.COM:80"]}"#
                .into(),
            400,
            701,
        ),
        // A stale document, however plausible.
        (Owner, "PUT", "/apps/example", stale.to_string(), 400, 102),
        // Truncated, wrong-typed, not JSON at all.
        (
            Owner,
            "PUT",
            "/apps/example",
            r#"{"name":"example","instan"#.into(),
            400,
            100,
        ),
        (Owner, "PUT", "/apps/example", "\u{0}\u{1}".into(), 400, 100),
        (Owner, "PUT", "/apps/example", "null".into(), 400, 100),
        (
            Owner,
            "PUT",
            "/apps/example",
            "\"a string\"".into(),
            400,
            100,
        ),
        (
            Owner,
            "PUT",
            "/apps/example",
            deeply_nested.clone(),
            400,
            100,
        ),
        (Owner, "POST", "/apps", deeply_nested, 400, 100),
        (
            Owner,
            "PUT",
            "/apps/example",
            doc(&|d| d["instances"] = json!(-1)),
            400,
            100,
        ),
        (
            Owner,
            "PUT",
            "/apps/example",
            doc(&|d| d["instances"] = json!(1.5)),
            400,
            100,
        ),
        (
            Owner,
            "PUT",
            "/apps/example",
            doc(&|d| d["instances"] = json!(1u64 << 40)),
            400,
            300,
        ),
        (
            Owner,
            "PUT",
            "/apps/example",
            doc(&|d| d["env"] = json!("A=1")),
            400,
            100,
        ),
        (
            Owner,
            "PUT",
            "/apps/example",
            doc(&|d| d["env"] = json!([1, 2])),
            400,
            100,
        ),
        (
            Owner,
            "PUT",
            "/apps/example",
            doc(&|d| d["resources"] = json!("big")),
            400,
            100,
        ),
        (
            Owner,
            "PUT",
            "/apps/example",
            doc(&|d| d["meta"] = json!("v2")),
            400,
            100,
        ),
        (
            Owner,
            "POST",
            "/apps",
            r#"{"name":5,"staging":{"framework":"node"}}"#.into(),
            400,
            100,
        ),
        (
            Owner,
            "POST",
            "/apps",
            r#"{"name":"x","staging":[]}"#.into(),
            400,
            100,
        ),
        (
            Owner,
            "POST",
            "/resources",
            r#"{"not":"a list"}"#.into(),
            400,
            100,
        ),
        // Invalid names.
        (
            Owner,
            "POST",
            "/apps",
            r#"{"name":"","staging":{"framework":"node"}}"#.into(),
            400,
            300,
        ),
        (
            Owner,
            "POST",
            "/apps",
            r#"{"name":"a/b","staging":{"framework":"node"}}"#.into(),
            400,
            300,
        ),
        (
            Owner,
            "POST",
            "/apps",
            r#"{"name":"..","staging":{"framework":"node"}}"#.into(),
            400,
            300,
        ),
        (
            Owner,
            "POST",
            "/apps",
            r#"{"name":"näme","staging":{"framework":"node"}}"#.into(),
            400,
            300,
        ),
        (
            Owner,
            "POST",
            "/apps",
            format!(
                r#"{{"name":"{}","staging":{{"framework":"node"}}}}"#,
                "a".repeat(300)
            ),
            400,
            300,
        ),
        // Invalid URIs, and the API's own host.
        (
            Owner,
            "PUT",
            "/apps/example",
            doc(&|d| d["uris"] = json!(["http://"])),
            400,
            700,
        ),
        (
            Owner,
            "PUT",
            "/apps/example",
            doc(&|d| d["uris"] = json!(["a..b.com"])),
            400,
            700,
        ),
        (
            Owner,
            "PUT",
            "/apps/example",
            doc(&|d| d["uris"] = json!(["-a.com"])),
            400,
            700,
        ),
        (
            Owner,
            "PUT",
            "/apps/example",
            doc(&|d| d["uris"] = json!(["a.com:0"])),
            400,
            700,
        ),
        (
            Owner,
            "PUT",
            "/apps/example",
            doc(&|d| d["uris"] = json!(["a.com:99999"])),
            400,
            700,
        ),
        (
            Owner,
            "PUT",
            "/apps/example",
            doc(&|d| d["uris"] = json!(["exämple.com"])),
            400,
            700,
        ),
        (
            Owner,
            "PUT",
            "/apps/example",
            doc(&|d| d["uris"] = json!([format!("{}.com", "a".repeat(64))])),
            400,
            700,
        ),
        (
            Owner,
            "PUT",
            "/apps/example",
            doc(&|d| d["uris"] = json!([null])),
            400,
            100,
        ),
        (
            Owner,
            "PUT",
            "/apps/example",
            doc(&|d| d["uris"] = json!(["api.aws.af.cm"])),
            400,
            701,
        ),
    ];
    for (who, method, path, body, status, code) in &cases {
        let token = match who {
            Owner => Some(owner.as_str()),
            Stranger => Some(stranger.as_str()),
            Forged => Some("04085b084922117b8f0f1a5e8a1a4f21"),
            Anonymous => None,
        };
        let answer = raw.send(method, path, token, body).await;
        assert_v1_error(
            &answer,
            *status,
            *code,
            &format!("{who:?} {method} {path} {:.60}", body),
        );
    }

    // Paths that escape the instance directory, sent as a hostile client writes them (a URL
    // library would normalise the dots away): the DEA's 403, or its 404 for what is not there.
    let files = "/apps/example/instances/0/files";
    for (path, expected) in [
        (format!("{files}/..%2F..%2F..%2Fetc%2Fpasswd"), 403),
        (format!("{files}/app/../../../../etc/passwd"), 403),
        (format!("{files}/%2E%2E/%2E%2E/etc/passwd"), 403),
        (format!("{files}/..\\..\\etc\\passwd"), 403),
        (format!("{files}/%2Fetc%2Fpasswd"), 404),
    ] {
        let (status, body) = raw_http(
            emu.api_addr(),
            &format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {owner}\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        assert_eq!(status, expected, "{path}: {body}");
        assert!(!body.contains("root:"), "{path} leaked a file: {body}");
    }

    assert_eq!(af.app("example").await.unwrap(), before, "nothing changed");
    assert_eq!(af.apps().await.unwrap().len(), 1, "no app was created");
    let theirs = raw.send("GET", "/apps", Some(&stranger), "").await;
    assert_eq!(theirs.body, json!([]), "the stranger has nothing");
    assert_eq!(emu.routes().snapshot().summary(), routes_before);
    let health = raw.send("GET", "/_afemu/health", None, "").await;
    assert_eq!(health.body["status"], "ok");
    assert_eq!(emu.get("example.com", "/").await.status, 200);
}

/// The body limits are settings (JSON bodies and uploads separately), and both are enforced
/// with v1's error, before anything is kept.
#[tokio::test]
async fn body_limits_are_configurable_and_enforced() {
    let emu = Emulator::builder()
        .configure(|config| {
            config.max_json_body = 4 * 1024;
            config.max_upload = 64 * 1024;
        })
        .start()
        .await
        .unwrap();
    let raw = Raw::new(&emu);
    let af = emu.client();
    let token = af.token().unwrap().to_owned();
    af.create_app(&json!({"name": "example", "staging": {"framework": "standalone"}}))
        .await
        .unwrap();
    let before = af.app("example").await.unwrap();

    let big_json =
        json!({"name": "big", "staging": {"framework": "node"}, "env": ["x".repeat(5000)]});
    let answer = raw
        .send("POST", "/apps", Some(&token), &big_json.to_string())
        .await;
    assert_v1_error(&answer, 413, 100, "a JSON body over max_json_body");
    let small_json =
        json!({"name": "small", "staging": {"framework": "node"}, "env": ["x".repeat(1000)]});
    let answer = raw
        .send("POST", "/apps", Some(&token), &small_json.to_string())
        .await;
    assert_eq!(answer.status, 302, "{}", answer.body);

    let zip_of = |size: usize| {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        writer.start_file("index.html", stored).unwrap();
        // Incompressible enough not to matter: the zip is stored anyway.
        let bytes: Vec<u8> = (0..size).map(|i| (i * 7919 % 251) as u8).collect();
        writer.write_all(&bytes).unwrap();
        writer.finish().unwrap().into_inner()
    };
    let refused = af
        .upload_zip("example", zip_of(100 * 1024), &json!([]))
        .await
        .unwrap_err();
    assert_eq!(
        (refused.status(), refused.code()),
        (Some(413), Some(100)),
        "{refused}"
    );
    assert_eq!(af.app("example").await.unwrap(), before, "nothing kept");
    af.upload_zip("example", zip_of(16 * 1024), &json!([]))
        .await
        .expect("an upload under the limit is kept");
}
