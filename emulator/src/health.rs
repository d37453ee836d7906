//! The health manager's restart rule (spec/v1-runtime.md §8, HM v2): the first crash of an
//! instance is restarted at once; further crashes within the flapping window make it FLAPPING,
//! restarted after a delay that doubles each time; after the fourth, it is left down.

use std::time::Duration;

use crate::config::Timing;
use crate::state::{Crash, epoch_seconds};

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

/// The flapping window: v1's 500 s against its 60 s first backoff, scaled with the profile.
fn window(timing: &Timing) -> Duration {
    timing.flapping_backoff * 25 / 3
}

/// What to do after the latest crash of `index` (already in `crashes`).
pub(crate) fn after_crash(crashes: &[Crash], index: u32, timing: &Timing) -> Decision {
    let now = epoch_seconds();
    let window = window(timing).as_secs().max(1);
    let recent = crashes
        .iter()
        .filter(|c| c.index == index && now.saturating_sub(c.since) <= window)
        .count();
    decide(recent, timing.flapping_backoff)
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
}
