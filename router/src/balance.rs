//! Backend selection. v1 picked a backend uniformly at random per request; afemu picks
//! **round-robin** by default (the project owner's deliberate change, DESIGN.md §3), so that "both
//! apps mapped" means each serves exactly every other request. `Random` keeps v1's behaviour,
//! seeded so that a run can be reproduced.

use std::str::FromStr;

/// How the router chooses among the backends of one host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Balance {
    /// Each host walks its flat backend list in order, one step per request.
    #[default]
    RoundRobin,
    /// Uniformly random per request, as v1's routers did; the same seed gives the same sequence.
    Random { seed: u64 },
}

impl Balance {
    /// The index of the backend that serves a host's `n`-th request, out of `len` (> 0).
    ///
    /// A pure function of its inputs: the per-host request counter is the only state, which is
    /// what makes both policies reproducible and round-robin exactly fair.
    pub fn pick_index(self, n: u64, len: usize) -> usize {
        debug_assert!(len > 0, "a host route always has a backend");
        let len = len as u64;
        let index = match self {
            Balance::RoundRobin => n % len,
            // Lemire's multiply-shift maps a uniform u64 onto 0..len without modulo bias worth
            // speaking of at these sizes.
            Balance::Random { seed } => {
                ((u128::from(splitmix64(seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
                    * u128::from(len))
                    >> 64) as u64
            }
        };
        index as usize
    }
}

/// SplitMix64: a tiny, well-distributed mixer; enough for load balancing, not for secrets.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Parses `round-robin` or `random`; the seed of `random` is set separately (`--seed`).
impl FromStr for Balance {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "round-robin" | "roundrobin" | "rr" => Ok(Balance::RoundRobin),
            "random" => Ok(Balance::Random { seed: 0 }),
            other => Err(format!(
                "unknown balance policy {other:?}: expected round-robin or random"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Round-robin is exactly fair: over any whole number of rounds, starting anywhere, every
        /// backend serves the same number of requests.
        #[test]
        fn round_robin_is_exactly_fair(len in 1usize..64, rounds in 1u64..20, start in any::<u64>()) {
            let start = start / 2; // no wrap-around within the run
            let mut served = vec![0u64; len];
            for n in start..start + rounds * len as u64 {
                served[Balance::RoundRobin.pick_index(n, len)] += 1;
            }
            prop_assert!(served.iter().all(|&count| count == rounds), "{served:?}");
        }

        /// Over any window, round-robin never lets one backend get more than one request ahead.
        #[test]
        fn round_robin_never_drifts(len in 1usize..16, count in 0u64..500, start in 0u64..1_000_000) {
            let mut served = vec![0u64; len];
            for n in start..start + count {
                served[Balance::RoundRobin.pick_index(n, len)] += 1;
            }
            let max = served.iter().max().unwrap();
            let min = served.iter().min().unwrap();
            prop_assert!(max - min <= 1, "{served:?}");
        }

        /// Random stays in range and is reproducible from its seed.
        #[test]
        fn random_is_in_range_and_reproducible(seed in any::<u64>(), len in 1usize..64, n in any::<u64>()) {
            let policy = Balance::Random { seed };
            let index = policy.pick_index(n, len);
            prop_assert!(index < len);
            prop_assert_eq!(index, policy.pick_index(n, len));
        }
    }

    #[test]
    fn random_is_roughly_uniform() {
        let policy = Balance::Random { seed: 7 };
        let mut served = [0u32; 4];
        for n in 0..40_000 {
            served[policy.pick_index(n, 4)] += 1;
        }
        for count in served {
            assert!((9_000..11_000).contains(&count), "{served:?}");
        }
    }

    #[test]
    fn policies_parse() {
        assert_eq!("round-robin".parse(), Ok(Balance::RoundRobin));
        assert_eq!("random".parse(), Ok(Balance::Random { seed: 0 }));
        assert!("fastest".parse::<Balance>().is_err());
    }
}
