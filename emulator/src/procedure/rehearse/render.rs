//! The rehearsal report, drawn: the live progress line, the terminal table and verdict, the JUnit
//! file for CI, and one self-contained HTML page with the timeline.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use comfy_table::{Cell, ContentArrangement, Table, presets};

use super::report::{Expectation, Report, TrafficStats};
use crate::procedure::check::Outcome;

/// The progress line on a terminal (nothing otherwise).
#[derive(Clone)]
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    requests: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
}

impl Progress {
    pub fn new(shown: bool, items: usize) -> Progress {
        let bar = shown.then(|| {
            let bar = indicatif::ProgressBar::new(items as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} [{pos}/{len}] {msg}")
                    .expect("a valid template"),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        Progress {
            bar,
            requests: Arc::default(),
            errors: Arc::default(),
        }
    }

    pub fn step(&self, line: usize, text: &str) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.set_message(format!("line {line}: {text}{}", self.counts()));
        }
    }

    pub fn count(&self, requests: usize, errors: usize) {
        self.requests.fetch_add(requests as u64, Ordering::Relaxed);
        self.errors.fetch_add(errors as u64, Ordering::Relaxed);
    }

    fn counts(&self) -> String {
        format!(
            "  ·  {} requests, {} default error pages",
            self.requests.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed)
        )
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The one-line verdict: PASSED only when every expectation held and something was observed.
pub fn verdict(passed: bool, expectations: &[Expectation], requests: usize) -> String {
    if passed {
        format!(
            "PASSED: every expectation held ({} checked, {requests} requests)",
            expectations.len()
        )
    } else {
        let failed = expectations
            .iter()
            .filter(|e| e.outcome == Outcome::Failed)
            .count();
        let unevaluated = expectations
            .iter()
            .filter(|e| e.outcome == Outcome::NotEvaluated)
            .count();
        let mut parts = vec![format!(
            "{failed} of {} expectations failed",
            expectations.len()
        )];
        if unevaluated > 0 {
            parts.push(format!("{unevaluated} not evaluated"));
        }
        format!("FAILED: {} ({requests} requests)", parts.join(", "))
    }
}

fn requests(count: u64) -> String {
    if count == 1 {
        "1 request".into()
    } else {
        format!("{count} requests")
    }
}

fn errors_cell(stats: &TrafficStats) -> String {
    match stats.first_error_ms {
        Some(first) => format!("{} (first at {first:.0} ms)", stats.default_error_pages),
        None => "0".into(),
    }
}

fn latency(stats: &TrafficStats) -> String {
    match (stats.p50_ms, stats.p99_ms) {
        (Some(p50), Some(p99)) => format!("{p50:.1} / {p99:.1} ms"),
        _ => "-".into(),
    }
}

/// Who served a window's requests, the router's own pages a share of their own.
fn served_share(stats: &TrafficStats) -> String {
    let mut parts: Vec<(u64, String)> = stats
        .served_by
        .iter()
        .map(|(app, n)| (*n, app.clone()))
        .collect();
    parts.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    if stats.default_error_pages > 0 {
        parts.push((stats.default_error_pages, "default error page".into()));
    }
    parts
        .iter()
        .map(|(n, who)| format!("{who} {}", super::report::percent(*n, stats.requests)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn took(ms: f64) -> String {
    if ms >= 10_000.0 {
        format!("{:.0} s", ms / 1000.0)
    } else if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{ms:.0} ms")
    }
}

/// How the terminal report is drawn.
#[derive(Clone, Copy, Debug)]
pub struct Terminal {
    /// Columns to fit in.
    pub width: usize,
    /// Colours and box-drawing characters (only on a terminal, and not with `NO_COLOR`).
    pub colour: bool,
}

impl Terminal {
    /// Stdout as it is: its width when it is a terminal (`COLUMNS` wins), 80 columns otherwise.
    pub fn stdout() -> Terminal {
        let term = console::Term::stdout();
        let columns = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse::<usize>().ok())
            .filter(|c| *c >= 20);
        let width = columns
            .or_else(|| term.size_checked().map(|(_, w)| usize::from(w)))
            .unwrap_or(80);
        let colour = term.is_term() && std::env::var_os("NO_COLOR").is_none();
        Terminal { width, colour }
    }
}

/// Wraps `text` to `width` columns, every line after the first indented by `indent` (the first
/// keeps its own leading spaces).
fn wrap(text: &str, width: usize, indent: usize) -> String {
    let width = width.max(indent + 20);
    let body = text.trim_start_matches(' ');
    let mut out = String::new();
    let mut line = " ".repeat(text.len() - body.len());
    let mut first = true;
    for word in body.split(' ').filter(|w| !w.is_empty()) {
        let room = if first { width } else { width - indent };
        if !line.trim().is_empty() && line.chars().count() + 1 + word.chars().count() > room {
            if !first {
                out.push_str(&" ".repeat(indent));
            }
            out.push_str(&line);
            out.push('\n');
            line.clear();
            first = false;
        }
        if !line.trim().is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.trim().is_empty() {
        if !first {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn mark(outcome: Outcome, colour: bool) -> String {
    let (text, code) = match outcome {
        Outcome::Held => ("ok  ", "32"),
        Outcome::Failed => ("FAIL", "31"),
        Outcome::NotEvaluated => ("N/E ", "33"),
    };
    if colour {
        format!("\u{1b}[{code}m{text}\u{1b}[0m")
    } else {
        text.into()
    }
}

/// The terminal report: what failed first (with the requests that show it), then one block per
/// line with what the traffic saw while it ran, then what held, then the verdict. It fits
/// `terminal.width` columns: a table when there is room, compact blocks otherwise.
pub fn terminal(report: &Report, terminal: Terminal) -> String {
    let width = terminal.width.max(40);
    let mut out = String::new();
    let total: u64 = report.totals.values().map(|t| t.requests).sum();
    out.push_str(&wrap(
        &format!("afemu rehearse {}", report.runbook),
        width,
        4,
    ));
    out.push_str(&wrap(
        &format!(
            "profile {}, faults: {}, {}, {} on {} host{}",
            report.profile,
            report.faults,
            took(report.duration_ms),
            requests(total),
            report.hosts.len(),
            if report.hosts.len() == 1 { "" } else { "s" }
        ),
        width,
        4,
    ));
    if let Some(replayed) = &report.replayed {
        out.push_str(&wrap(&format!("replayed: {replayed}"), width, 4));
    }
    let failing: Vec<&Expectation> = report
        .expectations
        .iter()
        .filter(|e| e.outcome != Outcome::Held)
        .collect();
    if !failing.is_empty() {
        out.push('\n');
        for expectation in &failing {
            expectation_lines(&mut out, expectation, terminal, width);
        }
    }
    out.push('\n');
    if width >= 120 {
        out.push_str(&steps_table(report, terminal.colour, width));
        out.push('\n');
    } else {
        out.push_str(&steps_blocks(report, width));
    }
    let held: Vec<&Expectation> = report
        .expectations
        .iter()
        .filter(|e| e.outcome == Outcome::Held)
        .collect();
    if !held.is_empty() {
        out.push('\n');
        for expectation in held {
            expectation_lines(&mut out, expectation, terminal, width);
        }
    }
    let _ = writeln!(out, "\n{}", report.verdict);
    out
}

fn expectation_lines(
    out: &mut String,
    expectation: &Expectation,
    terminal: Terminal,
    width: usize,
) {
    let text = format!("{}: {}", expectation.name, expectation.detail);
    let wrapped = wrap(&text, width.saturating_sub(5), 5);
    let _ = write!(
        out,
        "{} {wrapped}",
        mark(expectation.outcome, terminal.colour)
    );
    for offending in &expectation.offending {
        let line = format!(
            "{:.0} ms: {}{} -> {} {} (sent during line {}: {})",
            offending.at_ms,
            offending.host,
            offending.path,
            offending.status,
            offending.router_error.as_deref().unwrap_or(""),
            offending.step_line,
            offending.step
        );
        out.push_str("       ");
        out.push_str(&wrap(&line, width.saturating_sub(7), 9));
    }
}

/// One block per line: the line, how long it took and how it ended; then, per host, the
/// requests sent while it ran.
fn steps_blocks(report: &Report, width: usize) -> String {
    let mut out = String::new();
    for step in &report.steps {
        let label = if step.line == 0 {
            "end ".to_owned()
        } else {
            format!("{:>4}", step.line)
        };
        let head = format!(
            "{label} {} [{}, {}]",
            step.text,
            took(step.took_ms),
            step.result
        );
        out.push_str(&wrap(&head, width, 6));
        if step.result.starts_with("failed") || step.result.starts_with("timed out") {
            for line in step.output.trim().lines().filter(|l| !l.trim().is_empty()) {
                out.push_str("      | ");
                out.push_str(&wrap(line.trim(), width.saturating_sub(8), 8));
            }
        }
        for (host, stats) in &step.traffic {
            let mut parts = vec![
                format!("{host}: {}", requests(stats.requests)),
                served_share(stats),
            ];
            if let Some(first) = stats.first_error_ms {
                parts.push(format!("first error page at {first:.0} ms"));
            }
            parts.push(format!("p50/p99 {}", latency(stats)));
            out.push_str("      ");
            out.push_str(&wrap(&parts.join(" · "), width.saturating_sub(6), 8));
        }
    }
    out
}

/// The steps as a table, for a wide terminal.
fn steps_table(report: &Report, colour: bool, width: usize) -> String {
    let mut table = Table::new();
    table
        .load_style(if colour {
            presets::UTF8_FULL_CONDENSED
        } else {
            presets::ASCII_FULL_CONDENSED
        })
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(u16::try_from(width).unwrap_or(u16::MAX))
        .set_header(vec![
            "line",
            "step",
            "took",
            "result",
            "host",
            "requests",
            "served by",
            "default error pages",
            "p50 / p99",
        ]);
    for step in &report.steps {
        let mut result = step.result.clone();
        if (step.result.starts_with("failed") || step.result.starts_with("timed out"))
            && !step.output.trim().is_empty()
        {
            result = format!("{}\n{}", step.result, step.output.trim());
        }
        let line = if step.line == 0 {
            "end".to_owned()
        } else {
            step.line.to_string()
        };
        let first = [line, step.text.clone(), took(step.took_ms), result];
        if step.traffic.is_empty() {
            let mut row: Vec<Cell> = first.iter().map(Cell::new).collect();
            row.extend((0..5).map(|_| Cell::new("")));
            table.add_row(row);
        }
        for (number, (host, stats)) in step.traffic.iter().enumerate() {
            let mut row: Vec<Cell> = if number == 0 {
                first.iter().map(Cell::new).collect()
            } else {
                (0..4).map(|_| Cell::new("")).collect()
            };
            row.extend([
                Cell::new(host),
                Cell::new(stats.requests),
                Cell::new(served_share(stats)),
                Cell::new(errors_cell(stats)),
                Cell::new(latency(stats)),
            ]);
            table.add_row(row);
        }
    }
    format!("{table}\n")
}

/// JUnit XML: a test suite with a test case per expectation (failing steps among them).
pub fn junit(report: &Report) -> String {
    use quick_junit::{NonSuccessKind, Report as JunitReport, TestCase, TestCaseStatus, TestSuite};
    let mut suite = TestSuite::new(format!("afemu rehearse {}", report.runbook));
    suite.set_time(std::time::Duration::from_secs_f64(
        report.duration_ms / 1000.0,
    ));
    for expectation in &report.expectations {
        let status = if expectation.outcome == Outcome::Held {
            TestCaseStatus::success()
        } else if expectation.outcome == Outcome::NotEvaluated {
            let mut status = TestCaseStatus::skipped();
            status.set_message(expectation.detail.clone());
            status
        } else {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status.set_message(expectation.detail.clone());
            let mut description = String::new();
            for offending in &expectation.offending {
                let _ = writeln!(
                    description,
                    "{:.0} ms: {} {} -> {} {} during line {}: {}",
                    offending.at_ms,
                    offending.host,
                    offending.path,
                    offending.status,
                    offending.router_error.as_deref().unwrap_or(""),
                    offending.step_line,
                    offending.step
                );
            }
            if !description.is_empty() {
                status.set_description(description);
            }
            status
        };
        let mut case = TestCase::new(expectation.name.clone(), status);
        case.set_classname(report.runbook.clone());
        suite.add_test_case(case);
    }
    let mut junit = JunitReport::new("afemu");
    junit.add_test_suite(suite);
    junit.to_string().unwrap_or_default()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One self-contained HTML page: the timeline as inline SVG, then the tables.
pub fn html(report: &Report) -> String {
    // The timeline is drawn in the browser by the same code as the dashboard's
    // (`timeline.js`), from this model of the run.
    let timeline = timeline_model(report).to_string().replace("</", "<\\/");
    let mut steps = String::new();
    for step in &report.steps {
        let traffic: String = step
            .traffic
            .iter()
            .map(|(host, stats)| {
                let mut parts = vec![format!("{}: {}", escape(host), requests(stats.requests))];
                let share = served_share(stats);
                if !share.is_empty() {
                    parts.push(escape(&share));
                }
                parts.push(format!(
                    "default error pages {}",
                    escape(&errors_cell(stats))
                ));
                parts.push(format!("p50/p99 {}", latency(stats)));
                parts.join("; ")
            })
            .collect::<Vec<_>>()
            .join("<br>");
        let _ = write!(
            steps,
            "<tr class=\"{}\"><td>{}</td><td><code>{}</code></td><td>{:.0} ms</td><td>{}</td><td>{traffic}</td></tr>",
            if step.result == "ok" || step.result == "not run" {
                "ok"
            } else {
                "failed"
            },
            if step.line == 0 {
                "end".to_owned()
            } else {
                step.line.to_string()
            },
            escape(&step.text),
            step.took_ms,
            escape(&step.result)
        );
    }
    let mut expectations = String::new();
    for expectation in &report.expectations {
        let _ = write!(
            expectations,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td></tr>",
            match expectation.outcome {
                Outcome::Held => "ok",
                Outcome::Failed => "failed",
                Outcome::NotEvaluated => "unevaluated",
            },
            match expectation.outcome {
                Outcome::Held => "ok",
                Outcome::Failed => "FAILED",
                Outcome::NotEvaluated => "not evaluated",
            },
            escape(&expectation.name),
            escape(&expectation.detail)
        );
    }
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>afemu rehearse {title}</title>
<style>
body {{ font-family: Helvetica, Arial, sans-serif; margin: 2em; color: #222; }}
h1 {{ font-size: 1.4em; }} .verdict {{ font-weight: bold; padding: .5em; }}
.passed {{ background: #e6f4ea; }} .failedv {{ background: #fce8e6; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ border: 1px solid #ccd; padding: 4px 8px; text-align: left; vertical-align: top; }}
tr.failed td {{ background: #fce8e6; }} tr.unevaluated td {{ background: #fff4d6; }}
</style></head>
<body data-hosts="{hosts}">
<h1>afemu rehearse {title}</h1>
<p>Profile {profile}; faults: {faults}; {duration:.0} ms; traffic on {host_list}.</p>{replayed}
<p class="verdict {verdict_class}">{verdict}</p>
<h2>Timeline</h2>
<div id="timeline-box"></div>
<script type="application/json" id="timeline-data">{timeline}</script>
<script>{timeline_js}</script>
<script>
document.getElementById('timeline-box').append(
  afemuTimeline(JSON.parse(document.getElementById('timeline-data').textContent)));
</script>
<h2>Steps</h2>
<table><tr><th>line</th><th>step</th><th>took</th><th>result</th><th>traffic during and after it</th></tr>{steps}</table>
<h2>Expectations</h2>
<table><tr><th></th><th>expectation</th><th>detail</th></tr>{expectations}</table>
<script>
// What the browser actually drew, for tests and the curious: bands and marks with a size.
window.addEventListener('load', function () {{
  var drawn = function (selector) {{
    return Array.prototype.filter.call(document.querySelectorAll(selector), function (e) {{
      var box = e.getBBox(); return box.width > 0 || box.height > 0;
    }}).length;
  }};
  document.body.setAttribute('data-rendered-bands', drawn('#timeline .band'));
  document.body.setAttribute('data-rendered-error-marks', drawn('#timeline .error-mark'));
  document.body.setAttribute('data-rendered-steps', drawn('#timeline .step-marker line'));
}});
</script>
</body></html>
"#,
        title = escape(&report.runbook),
        hosts = report.hosts.len(),
        profile = report.profile,
        faults = escape(&report.faults),
        replayed = report
            .replayed
            .as_ref()
            .map_or_else(String::new, |r| format!(
                "<p class=\"replayed\">Replayed: {}</p>",
                escape(r)
            )),
        duration = report.duration_ms,
        host_list = escape(&report.hosts.join(", ")),
        verdict_class = if report.passed { "passed" } else { "failedv" },
        verdict = escape(&report.verdict),
        timeline_js = crate::timeline::TIMELINE_JS,
    )
}

/// What the shared timeline drawing needs of a report: the requests of each host in buckets by
/// app (a few hundred across the run), each default error page at its moment, and each step
/// from the start of the traffic as a labelled marker (one that failed, or during which a
/// visitor got the default error page, marked so); times in ms since the run began.
fn timeline_model(report: &Report) -> serde_json::Value {
    use std::collections::BTreeMap;
    let origin = report
        .steps
        .iter()
        .find(|s| s.text.starts_with("@traffic") || s.text.starts_with("@writes"))
        .map_or(0.0, |s| s.started_ms);
    let end = report.duration_ms.max(origin + 1.0);
    let bucket_ms = ((end - origin) / 300.0).max(1.0);
    let hosts: Vec<serde_json::Value> = report
        .hosts
        .iter()
        .enumerate()
        .map(|(index, host)| {
            let mut buckets: BTreeMap<u64, BTreeMap<&str, u64>> = BTreeMap::new();
            let mut errors = Vec::new();
            for point in report.requests.iter().filter(|p| p.host == index) {
                if point.error {
                    errors.push(serde_json::json!({"at_ms": point.at_ms, "n": 1}));
                } else if let Some(app) = &point.app {
                    let bucket = ((point.at_ms - origin).max(0.0) / bucket_ms) as u64;
                    *buckets.entry(bucket).or_default().entry(app).or_default() += 1;
                }
            }
            let buckets: Vec<serde_json::Value> = buckets
                .into_iter()
                .map(|(bucket, apps)| {
                    serde_json::json!({"at_ms": origin + bucket as f64 * bucket_ms, "apps": apps})
                })
                .collect();
            serde_json::json!({"host": host, "buckets": buckets, "errors": errors})
        })
        .collect();
    let markers: Vec<serde_json::Value> = report
        .steps
        .iter()
        .filter(|s| s.started_ms >= origin)
        .map(|step| {
            let line = if step.line == 0 {
                "end".to_owned()
            } else {
                step.line.to_string()
            };
            serde_json::json!({
                "at_ms": step.started_ms,
                "label": line,
                "title": format!("line {line}: {} ({:.0} ms, {})", step.text, step.took_ms, step.result),
                "kind": "step",
                // The step failed, or visitors got the default error page while it ran.
                "failed": (step.result != "ok" && step.result != "not run")
                    || step.traffic.values().any(|t| t.default_error_pages > 0),
            })
        })
        .collect();
    serde_json::json!({
        "from_ms": origin,
        "to_ms": end,
        "clock": "run",
        "width": 1160,
        "bucket_ms": bucket_ms,
        "hosts": hosts,
        "markers": markers,
    })
}
