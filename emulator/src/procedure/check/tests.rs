//! The explorer on small runbooks: instant and late routes, waits that settle changes and waits
//! that do not, the three awaits, the traffic rule, failing steps and the hard stop.

use std::time::Duration;

use super::*;

fn run(text: &str, options: CheckOptions) -> CheckReport {
    let runbook = Runbook::parse(text, "t", std::path::PathBuf::new()).unwrap();
    check(&runbook, options)
}

fn instant() -> CheckOptions {
    CheckOptions::default()
}

fn late(min_ms: u64, max_ms: u64) -> CheckOptions {
    CheckOptions {
        route_delay: Some(RouteDelay {
            min: Duration::from_millis(min_ms),
            max: Duration::from_millis(max_ms),
        }),
        stop_hard: false,
        state_limit: None,
    }
}

/// The host of the shortest counter-example, and the line it happens during.
fn broken(report: &CheckReport) -> Option<(String, usize)> {
    report
        .counter_examples
        .first()
        .map(|c| (c.breach.host().unwrap_or("(await)").to_owned(), c.line))
}

const SETUP: &str = "af push example --url example.com -n\n\
                     af map example www.example.com\n\
                     af push example2 --url example.aws.af.cm -n\n\
                     @traffic example.com www.example.com example.aws.af.cm\n";

const SWAP: &str = "af map example2 example.com\n\
                    af map example2 www.example.com\n\
                    af unmap example example.com\n\
                    af unmap example www.example.com\n\
                    af map example example.aws.af.cm\n\
                    af unmap example2 example.aws.af.cm\n\
                    @expect served-by example2 example.com\n\
                    @expect served-by example example.aws.af.cm\n";

#[test]
fn the_seed_swap_is_safe_with_instant_routes() {
    let report = run(&format!("{SETUP}{SWAP}"), instant());
    assert!(report.passed(), "{}", render(&report, "t"));
    assert!(report.complete);
    assert!(report.states >= 10, "{}", report.states);
    assert!(
        report
            .expectations
            .iter()
            .all(|e| e.outcome == Outcome::Held)
    );
}

#[test]
fn unmapping_first_fails_at_that_line() {
    let report = run(
        &format!("{SETUP}af unmap example example.com\naf map example2 example.com\n"),
        instant(),
    );
    assert_eq!(broken(&report), Some(("example.com".into(), 5)));
    let found = &report.counter_examples[0];
    assert!(found.text.contains("af unmap example example.com"));
    assert!(matches!(
        found.moves.last(),
        Some(Move::Request { status: 404, .. })
    ));
    let failed = report
        .expectations
        .iter()
        .find(|e| e.name == "no-default-error-page example.com")
        .unwrap();
    assert_eq!(failed.outcome, Outcome::Failed);
    assert!(failed.detail.contains("during line 5"), "{}", failed.detail);
}

#[test]
fn a_plain_update_fails_and_a_downtime_app_saves_it() {
    let update = "af push example --url example.com -n\n@traffic example.com\naf update example\n";
    assert_eq!(
        broken(&run(update, instant())),
        Some(("example.com".into(), 3))
    );
    let safe = "af push example --url example.com -n\n\
                af push downtime --url downtime.aws.af.cm -n\n\
                @traffic example.com\n\
                af map downtime example.com\n\
                af update example\n\
                af unmap downtime example.com\n";
    assert!(run(safe, instant()).passed());
}

#[test]
fn with_late_routes_the_swap_fails_unless_it_awaits() {
    let report = run(&format!("{SETUP}{SWAP}"), late(0, 50));
    let found = report
        .counter_examples
        .first()
        .expect("late map, early unmap");
    assert!(matches!(found.moves.last(), Some(Move::Request { .. })));
    let awaited = SWAP
        .replace(
            "af unmap example example.com\n",
            "@await served-by example2 example.com\n@await served-by example2 www.example.com\naf unmap example example.com\n",
        )
        .replace(
            "af unmap example2 example.aws.af.cm\n",
            "@await served-by example example.aws.af.cm\naf unmap example2 example.aws.af.cm\n",
        );
    let report = run(&format!("{SETUP}{awaited}"), late(0, 50));
    assert!(report.passed(), "{}", render(&report, "t"));
}

/// The false alarm of the untimed explorer: a map followed by a wait longer than the maximum
/// delay has certainly landed before the next line.
#[test]
fn a_wait_of_the_maximum_delay_settles_what_came_before() {
    let text = |wait: &str| {
        format!(
            "af push example --url example.com -n\n\
             af push downtime --url downtime.aws.af.cm -n\n\
             @traffic example.com\n\
             af map downtime example.com\n\
             @wait {wait}\n\
             af stop example\n"
        )
    };
    assert!(run(&text("200ms"), late(0, 50)).passed());
    assert!(
        run(&text("50ms"), late(0, 50)).passed(),
        "a wait of exactly MAX"
    );
    let report = run(&text("49ms"), late(0, 50));
    assert_eq!(broken(&report), Some(("example.com".into(), 6)));
    // The schedule: the map is published, the wait ends, the stop lands before the map.
    let moves: Vec<String> = report.counter_examples[0]
        .moves
        .iter()
        .map(ToString::to_string)
        .collect();
    let stop_lands = moves
        .iter()
        .position(|m| m.starts_with("the router learns example's routes from line 6"))
        .unwrap();
    assert!(
        moves[..stop_lands]
            .iter()
            .all(|m| !m.starts_with("the router learns downtime's routes from line 4")),
        "{moves:#?}"
    );
}

/// The minimum delay counts too: a change cannot land before it.
#[test]
fn a_minimum_delay_keeps_later_changes_later() {
    // With 20..30ms, a map and an unmap 15ms later: the unmap lands at least 35ms after the map
    // was published, the map at most 30ms after.
    let text = "af push a --url h.com -n\n\
                af push b --url b.com -n\n\
                @traffic h.com\n\
                af map b h.com\n\
                @wait 15ms\n\
                af unmap a h.com\n";
    assert!(run(text, late(20, 30)).passed());
    assert!(!run(text, late(0, 30)).passed());
}

/// The downtime procedure: the downtime app may be unmapped once the updated app serves again.
/// Under afemu's drain the update does not go on until its unregistration has landed, so a
/// served-by after it already sees the new version; new-version says so whatever the stop does.
#[test]
fn an_update_is_awaited_before_the_downtime_app_leaves() {
    let text = |until: &str| {
        format!(
            "af push shop --url shop.com -n\n\
             af push downtime --url downtime.aws.af.cm -n\n\
             @traffic shop.com\n\
             af map downtime shop.com\n\
             @await served-by downtime shop.com\n\
             af update shop\n\
             {until}\
             af unmap downtime shop.com\n\
             @wait 100ms\n\
             @expect served-by shop shop.com\n"
        )
    };
    let report = run(&text(""), late(0, 50));
    assert_eq!(
        broken(&report),
        Some(("shop.com".into(), 7)),
        "{}",
        render(&report, "t")
    );
    for until in [
        "@await new-version shop shop.com\n",
        "@await served-by shop shop.com\n",
    ] {
        let report = run(&text(until), late(0, 50));
        assert!(report.passed(), "{until}{}", render(&report, "t"));
    }
}

#[test]
fn an_await_until_an_app_no_longer_serves() {
    let text = "af push a --url h.com -n\n\
                af push b --url b.com -n\n\
                @traffic h.com\n\
                af map b h.com\n\
                @await served-by b h.com\n\
                af unmap a h.com\n\
                @await not-served-by a h.com\n\
                af stop a\n\
                @expect served-by b h.com\n";
    assert!(run(text, late(0, 50)).passed());
}

#[test]
fn an_await_that_can_miss_its_moment_is_a_failure() {
    let text = "af push a --url h.com -n\n\
                af push b --url b.com -n\n\
                @traffic h.com\n\
                af map b h.com\n\
                af unmap b h.com\n\
                @await served-by b h.com\n";
    for options in [instant(), late(0, 50)] {
        let report = run(text, options);
        let stuck = report
            .counter_examples
            .iter()
            .find(|c| matches!(c.breach, Breach::Stuck { line: 6 }))
            .expect("the await can wait forever");
        assert!(!stuck.moves.is_empty());
        assert!(!report.passed());
        assert!(render(&report, "t").contains("can wait forever"));
    }
}

/// Traffic starts once the setup's routes have landed: the same rule as rehearse.
#[test]
fn traffic_waits_for_the_setup() {
    let text = "af push a --url h.com -n\n\
                af map a www.h.com\n\
                @traffic h.com www.h.com\n\
                @wait 1s\n";
    assert!(run(text, late(0, 500)).passed());
    // A host whose traffic starts later is watched from then on only.
    let later = "af push a --url h.com -n\n\
                 @traffic h.com\n\
                 af map a www.h.com\n\
                 @traffic www.h.com\n\
                 @wait 1s\n";
    assert!(run(later, late(0, 500)).passed());
}

#[test]
fn hosts_without_traffic_observe_nothing() {
    let report = run(
        "af push a --url h.com -n\n@traffic h.com\n@expect no-default-error-page other.com\n@expect served-by a quiet.com\n",
        instant(),
    );
    assert!(!report.passed());
    let details: Vec<(&str, Outcome, &str)> = report
        .expectations
        .iter()
        .map(|e| (e.name.as_str(), e.outcome, e.detail.as_str()))
        .collect();
    assert!(
        details.iter().any(
            |(name, outcome, detail)| *name == "no-default-error-page other.com"
                && *outcome == Outcome::Failed
                && detail.contains("gets no traffic")
        ),
        "{details:#?}"
    );
    assert!(
        details
            .iter()
            .any(|(name, outcome, _)| *name == "served-by a quiet.com"
                && *outcome == Outcome::Failed),
        "{details:#?}"
    );
}

#[test]
fn a_failing_step_stops_the_run_and_leaves_the_rest_unevaluated() {
    let report = run(
        "af push a --url h.com -n\n@traffic h.com\naf map ghost h.com\n@expect served-by a h.com\n",
        instant(),
    );
    let failure = report.step_failure.as_ref().expect("the map fails");
    assert_eq!(failure.line, 3);
    assert!(failure.message.contains("not found"), "{failure:?}");
    assert!(!report.passed());
    assert!(
        report
            .expectations
            .iter()
            .all(|e| e.outcome == Outcome::NotEvaluated),
        "{:#?}",
        report.expectations
    );
}

#[test]
fn the_hard_stop_cuts_what_the_drain_lets_finish() {
    let text = "af push a --url h.com -n\n\
                af push d --url d.com -n\n\
                @traffic h.com\n\
                af map d h.com\n\
                af update a\n";
    assert!(run(text, instant()).passed());
    let hard = CheckOptions {
        stop_hard: true,
        ..instant()
    };
    let report = run(text, hard);
    let found = report.counter_examples.first().expect("a request is cut");
    assert!(
        matches!(&found.breach, Breach::Cut { host, app, index: 0 } if host == "h.com" && app == "a"),
        "{found:?}"
    );
    // With late routes, the killed instance stays in the table until its unregistration lands.
    let report = run(
        text,
        CheckOptions {
            stop_hard: true,
            ..late(0, 50)
        },
    );
    assert!(!report.passed());
}

#[test]
fn every_host_that_can_break_gets_its_own_counter_example() {
    let report = run(
        "af push a --url one.com -n\naf map a two.com\n@traffic one.com two.com\naf stop a\n",
        instant(),
    );
    let hosts: BTreeSet<&str> = report
        .counter_examples
        .iter()
        .filter_map(|c| c.breach.host())
        .collect();
    assert_eq!(hosts, BTreeSet::from(["one.com", "two.com"]));
}

#[test]
fn an_update_publishes_its_unregistration_before_its_registration() {
    // Two instances: unregistered at once, then each registered as it runs.
    let report = run(
        "af push a --url h.com --instances 2 -n\n@traffic h.com\naf update a\n",
        instant(),
    );
    let moves = &report.counter_examples[0].moves;
    let published: Vec<&Move> = moves
        .iter()
        .filter(|m| matches!(m, Move::Publish { line: 3, .. }))
        .collect();
    assert_eq!(
        published.len(),
        1,
        "the request comes right after the stop: {moves:#?}"
    );
    assert!(matches!(published[0], Move::Publish { hosts, .. } if hosts.is_empty()));
}
