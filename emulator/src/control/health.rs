//! The health manager's restart rule (spec/v1-runtime.md §8, HM v2): the first crash of an
//! instance is restarted at once; further crashes within the flapping window make it FLAPPING,
//! restarted after a delay that doubles each time; after the fourth, it is left down.

use std::time::Duration;

use super::state::Crash;
use crate::config::Timing;

/// v1's `giveup_crash_number`.
const GIVE_UP_AFTER: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    RestartAfter(Duration),
    GiveUp,
}

impl Decision {
    pub(crate) fn is_flapping(self) -> bool {
        matches!(self, Decision::RestartAfter(delay) if !delay.is_zero())
    }
}

/// What to do after the latest crash of `index` (already in `crashes`). v1 counted crashes and
/// reset the count when the previous crash was longer than the flapping timeout ago; so the count
/// is the run of crashes, newest first, each within the timeout of the next.
pub(crate) fn after_crash(crashes: &[Crash], index: u32, timing: &Timing) -> Decision {
    let timeout = timing.flapping_timeout;
    let mut count = 0;
    let mut newer: Option<std::time::Instant> = None;
    for crash in crashes.iter().rev().filter(|c| c.index == index) {
        if let Some(newer) = newer
            && newer.duration_since(crash.at) > timeout
        {
            break;
        }
        count += 1;
        newer = Some(crash.at);
    }
    decide(count, timing.flapping_backoff)
}

/// The rule itself, on the number of recent crashes (including this one).
pub(crate) fn decide(recent_crashes: usize, first_backoff: Duration) -> Decision {
    match recent_crashes {
        0 | 1 => Decision::RestartAfter(Duration::ZERO),
        n if n <= GIVE_UP_AFTER => {
            // 60, 120, 240 s under `realistic` (v1: min(480, 60 << (crashes - 2))).
            let delay = first_backoff * (1u32 << (n - 2));
            Decision::RestartAfter(delay.min(first_backoff * 8))
        }
        _ => Decision::GiveUp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_backoff() {
        let minute = Duration::from_secs(60);
        let delays: Vec<_> = (1..=5).map(|n| decide(n, minute)).collect();
        assert_eq!(
            delays,
            vec![
                Decision::RestartAfter(Duration::ZERO),
                Decision::RestartAfter(minute),
                Decision::RestartAfter(minute * 2),
                Decision::RestartAfter(minute * 4),
                Decision::GiveUp,
            ]
        );
        assert!(!delays[0].is_flapping());
        assert!(delays[1].is_flapping());
    }

    fn crash(index: u32, ago: Duration) -> Crash {
        Crash {
            instance_id: "x".into(),
            index,
            since: 0,
            at: std::time::Instant::now() - ago,
        }
    }

    #[test]
    fn the_count_resets_after_a_quiet_flapping_timeout() {
        let timing = crate::config::Profile::Realistic.timing();
        let minute = Duration::from_secs(60);
        // Crashes 6 and 5 minutes ago, then one now: 5 minutes is within v1's 500 s, so three.
        let close = [
            crash(0, minute * 6),
            crash(0, minute * 5),
            crash(0, Duration::ZERO),
        ];
        assert_eq!(
            after_crash(&close, 0, &timing),
            Decision::RestartAfter(minute * 2)
        );
        // Ten minutes of quiet before the last one: the count starts again.
        let apart = [
            crash(0, minute * 20),
            crash(0, minute * 10),
            crash(0, Duration::ZERO),
        ];
        assert_eq!(
            after_crash(&apart, 0, &timing),
            Decision::RestartAfter(Duration::ZERO)
        );
        // Other indices do not count.
        let others = [crash(1, minute), crash(1, minute), crash(0, Duration::ZERO)];
        assert_eq!(
            after_crash(&others, 0, &timing),
            Decision::RestartAfter(Duration::ZERO)
        );
    }
}
