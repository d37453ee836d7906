//! Zones: sets of clock valuations, kept as difference-bound matrices, the textbook way timed
//! automata are explored exactly (Bengtsson & Yi, "Timed Automata: Semantics, Algorithms and
//! Tools", 2004). `afemu check` needs them because a runbook's timing is made of bounds: a route
//! change lands between MIN and MAX after it is published, `@wait D` lets at least D pass, an
//! `af` step takes any time. One zone stands for every moment those bounds allow, so a finite
//! search covers the continuum of schedules.
//!
//! Clock 0 is the reference (always 0); entry `(i, j)` bounds `x_i - x_j`. Bounds are stored
//! as `2c + 1` for `≤ c` and `2c` for `< c`, so comparing the raw numbers compares the bounds.

/// A bound on a difference of two clocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bound(i64);

impl Bound {
    /// No bound at all.
    pub const INFINITE: Bound = Bound(i64::MAX);
    /// `≤ 0`.
    pub const ZERO: Bound = Bound(1);

    /// `≤ c`.
    pub fn at_most(c: i64) -> Bound {
        Bound(c * 2 + 1)
    }

    /// `< c`.
    pub fn below(c: i64) -> Bound {
        Bound(c * 2)
    }

    fn add(self, other: Bound) -> Bound {
        if self == Bound::INFINITE || other == Bound::INFINITE {
            return Bound::INFINITE;
        }
        Bound(((self.0 & !1) + (other.0 & !1)) | (self.0 & other.0 & 1))
    }
}

/// A zone over `clocks()` clocks (the reference included), always canonical (every entry is
/// the tightest bound the others imply) and never empty.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Zone {
    size: usize,
    bounds: Vec<Bound>,
}

impl Zone {
    /// Every clock at zero, `clocks` of them besides the reference.
    pub fn zero(clocks: usize) -> Zone {
        let size = clocks + 1;
        Zone {
            size,
            bounds: vec![Bound::ZERO; size * size],
        }
    }

    /// How many clocks, besides the reference.
    pub fn clocks(&self) -> usize {
        self.size - 1
    }

    fn at(&self, i: usize, j: usize) -> Bound {
        self.bounds[i * self.size + j]
    }

    fn set(&mut self, i: usize, j: usize, bound: Bound) {
        self.bounds[i * self.size + j] = bound;
    }

    /// Lets any amount of time pass: clocks have no upper bound any more.
    pub fn elapse(&mut self) {
        for i in 1..self.size {
            self.set(i, 0, Bound::INFINITE);
        }
    }

    /// Adds `x_i - x_j ⋈ bound`; `false` (and the zone is left unusable) when nothing is left.
    #[must_use]
    pub fn constrain(&mut self, i: usize, j: usize, bound: Bound) -> bool {
        if bound >= self.at(i, j) {
            return true;
        }
        if bound.add(self.at(j, i)) < Bound::ZERO {
            return false;
        }
        self.set(i, j, bound);
        // Tighten everything through the new edge (the rest was canonical already).
        for k in 0..self.size {
            for l in 0..self.size {
                let through = self.at(k, i).add(bound).add(self.at(j, l));
                if through < self.at(k, l) {
                    self.set(k, l, through);
                }
            }
        }
        true
    }

    /// `x_clock ≤ c` (or `< c` when `strict`).
    #[must_use]
    pub fn at_most(&mut self, clock: usize, c: i64, strict: bool) -> bool {
        let bound = if strict {
            Bound::below(c)
        } else {
            Bound::at_most(c)
        };
        self.constrain(clock, 0, bound)
    }

    /// `x_clock ≥ c`.
    #[must_use]
    pub fn at_least(&mut self, clock: usize, c: i64) -> bool {
        self.constrain(0, clock, Bound::at_most(-c))
    }

    /// Sets a clock to zero.
    pub fn reset(&mut self, clock: usize) {
        for j in 0..self.size {
            let from_zero = self.at(0, j);
            self.set(clock, j, from_zero);
            let to_zero = self.at(j, 0);
            self.set(j, clock, to_zero);
        }
        self.set(clock, clock, Bound::ZERO);
    }

    /// A new clock, last, set to zero now.
    pub fn add_clock(&mut self) {
        let old = self.size;
        let size = old + 1;
        let mut bounds = vec![Bound::ZERO; size * size];
        for i in 0..old {
            for j in 0..old {
                bounds[i * size + j] = self.at(i, j);
            }
        }
        self.size = size;
        self.bounds = bounds;
        self.reset(old);
    }

    /// Forgets a clock (the others keep their bounds: a canonical zone stays canonical).
    pub fn remove_clock(&mut self, clock: usize) {
        assert!(
            clock > 0 && clock < self.size,
            "clock {clock} of {}",
            self.size
        );
        let size = self.size - 1;
        let mut bounds = Vec::with_capacity(size * size);
        for i in (0..self.size).filter(|i| *i != clock) {
            for j in (0..self.size).filter(|j| *j != clock) {
                bounds.push(self.at(i, j));
            }
        }
        self.size = size;
        self.bounds = bounds;
    }

    /// Whether every valuation of `other` is one of this zone's (same clocks).
    pub fn includes(&self, other: &Zone) -> bool {
        self.size == other.size && other.bounds.iter().zip(&self.bounds).all(|(o, s)| o <= s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_order_and_add() {
        assert!(Bound::below(3) < Bound::at_most(3));
        assert!(Bound::at_most(3) < Bound::below(4));
        assert_eq!(Bound::at_most(2).add(Bound::at_most(3)), Bound::at_most(5));
        assert_eq!(Bound::at_most(2).add(Bound::below(3)), Bound::below(5));
        assert_eq!(Bound::at_most(-2).add(Bound::INFINITE), Bound::INFINITE);
    }

    #[test]
    fn waiting_and_deadlines() {
        // Two clocks reset together: x is a wait, y a route change due within 50.
        let mut zone = Zone::zero(2);
        zone.elapse();
        assert!(zone.at_most(2, 50, false), "the deadline");
        // A wait of 50 can end (x = y = 50) ...
        let mut waited = zone.clone();
        assert!(waited.at_least(1, 50));
        // ... but not before the change lands, when the change must land strictly first.
        assert!(!waited.clone().at_most(2, 50, true));
        // A wait of 60 cannot end with the change still on its way.
        let mut longer = zone.clone();
        assert!(!longer.at_least(1, 60));
        // Land the change (y ≥ 0 always holds), then the wait of 60 can end.
        zone.remove_clock(2);
        zone.elapse();
        assert!(zone.at_least(1, 60));
    }

    #[test]
    fn a_clock_added_later_is_behind() {
        let mut zone = Zone::zero(1);
        zone.elapse();
        assert!(zone.at_least(1, 10));
        zone.add_clock();
        zone.elapse();
        // y was started at least 10 after x: x - y < 10 is impossible, x - y ≤ 10 is not.
        assert!(!zone.clone().constrain(1, 2, Bound::below(10)));
        let mut tight = zone.clone();
        assert!(tight.constrain(1, 2, Bound::at_most(10)));
    }

    #[test]
    fn inclusion() {
        let mut wide = Zone::zero(1);
        wide.elapse();
        let mut narrow = wide.clone();
        assert!(narrow.at_most(1, 5, false));
        assert!(wide.includes(&narrow));
        assert!(!narrow.includes(&wide));
        let mut reset = wide.clone();
        reset.reset(1);
        assert!(narrow.includes(&reset) && wide.includes(&reset));
    }
}
