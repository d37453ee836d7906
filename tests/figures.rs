//! Figures for docs/PERFORMANCE.md, measured and printed, never asserted (timing goals are the
//! benchmark's business, not a test's):
//! `cargo test --release --test figures -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use afemu::Emulator;

fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    format!(
        "median {:.1} ms (min {:.1}, p90 {:.1}, max {:.1}; {} starts)",
        at(0.5).as_secs_f64() * 1e3,
        at(0.0).as_secs_f64() * 1e3,
        at(0.9).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3,
        samples.len()
    )
}

/// From the call to `Emulator::start()` to its return: both listeners accept, the router's
/// accept loop runs, the test user is logged in.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement for docs/PERFORMANCE.md, run in release"]
async fn figures_emulator_start_to_ready() {
    for _ in 0..3 {
        Emulator::start().await.shutdown().await;
    }
    let mut samples = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        let emu = Emulator::start().await;
        samples.push(started.elapsed());
        emu.shutdown().await;
    }
    println!("Emulator::start() to ready: {}", summary(samples));
}

/// Real services (where their servers are installed): the first provision of each vendor, which
/// starts its server (and initialises its data directory), then further provisions and binds.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement for docs/PERFORMANCE.md, run in release"]
async fn figures_real_service_provisioning() {
    use serde_json::{Value, json};
    let millis = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    let median = |mut samples: Vec<Duration>| {
        samples.sort();
        samples[samples.len() / 2]
    };
    println!("| vendor | first provision (server start) | further provision | bind |");
    println!("| --- | --- | --- | --- |");
    for vendor in ["postgresql", "mysql", "redis", "mongodb", "rabbitmq"] {
        let emu = Emulator::builder()
            .configure(|config| config.services = afemu::ServicesMode::Auto)
            .start()
            .await
            .unwrap();
        let token = emu.client().token().unwrap().to_owned();
        let api = emu.api_url();
        let call = async |method: &str, path: &str, body: Option<Value>| -> Value {
            let mut request = reqwest::Client::new()
                .request(method.parse().unwrap(), format!("{api}{path}"))
                .header("AUTHORIZATION", &token);
            if let Some(body) = body {
                request = request.body(body.to_string());
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            let text = response.text().await.unwrap();
            assert!(status.is_success(), "{method} {path}: {status} {text}");
            serde_json::from_str(&text).unwrap_or(Value::Null)
        };
        let status = call("GET", "/_afemu/services", None).await;
        let real = status["vendors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["vendor"] == vendor && v["mode"] == "real");
        if !real {
            println!("| {vendor} | record only on this machine | | |");
            emu.shutdown().await;
            continue;
        }
        let create = |i: usize| Some(json!({"vendor": vendor, "name": format!("s{i}")}));
        let started = Instant::now();
        call("POST", "/services", create(0)).await;
        let first = started.elapsed();
        let mut provisions = Vec::new();
        for i in 1..=10 {
            let started = Instant::now();
            call("POST", "/services", create(i)).await;
            provisions.push(started.elapsed());
        }
        let mut app = json!({
            "name": "app",
            "staging": {"framework": "standalone", "runtime": "python3", "command": "true"},
            "uris": [],
            "instances": 1,
            "resources": {"memory": 64},
            "services": [],
        });
        call("POST", "/apps", Some(app.clone())).await;
        let mut binds = Vec::new();
        for i in 1..=10 {
            app["services"] = json!([format!("s{i}")]);
            let started = Instant::now();
            call("PUT", "/apps/app", Some(app.clone())).await;
            binds.push(started.elapsed());
        }
        println!(
            "| {vendor} | {} | {} | {} |",
            millis(first),
            millis(median(provisions)),
            millis(median(binds))
        );
        emu.shutdown().await;
    }
}
