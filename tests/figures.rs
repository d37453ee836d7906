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
