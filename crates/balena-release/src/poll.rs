//! When to look again: the adaptive poll schedule of the wait loop and the
//! backoff of request retries, both with jitter so that many clients do not
//! poll in step.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// How often to read the delta state while waiting.
///
/// The n-th pause (from 0) is `initial × factorⁿ`, capped at `max`, then
/// stretched or shrunk by a random share of at most `jitter` (0.2 = ±20 %).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PollPolicy {
    /// The first pause (default 1.5 s).
    pub initial: Duration,
    /// The longest pause before jitter (default 15 s).
    pub max: Duration,
    /// Growth per poll (default 1.4; values below 1 count as 1).
    pub factor: f64,
    /// Random spread as a share of the pause (default 0.2; clamped to 0..=1).
    pub jitter: f64,
}

impl Default for PollPolicy {
    fn default() -> Self {
        PollPolicy {
            initial: Duration::from_millis(1500),
            max: Duration::from_secs(15),
            factor: 1.4,
            jitter: 0.2,
        }
    }
}

impl PollPolicy {
    /// The pause before poll number `n` (from 0), given `unit`, a random
    /// number in `-1.0..=1.0`.
    pub(crate) fn delay(&self, n: u32, unit: f64) -> Duration {
        backoff(self.initial, self.max, self.factor, self.jitter, n, unit)
    }
}

/// `initial × factorⁿ` capped at `max`, with ±`jitter` spread from `unit`.
pub(crate) fn backoff(
    initial: Duration,
    max: Duration,
    factor: f64,
    jitter: f64,
    n: u32,
    unit: f64,
) -> Duration {
    let factor = if factor.is_finite() && factor > 1.0 {
        factor
    } else {
        1.0
    };
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let unit = if unit.is_finite() {
        unit.clamp(-1.0, 1.0)
    } else {
        0.0
    };
    let max = max.max(initial).as_secs_f64();
    // powi saturates to infinity for huge n; min() then caps it.
    let base = (initial.as_secs_f64() * factor.powi(n.min(1000) as i32)).min(max);
    Duration::from_secs_f64((base * (1.0 + jitter * unit)).max(0.0))
}

/// A small, fast pseudo-random source for jitter (splitmix64), seeded from
/// the process's hash randomness. Not for anything secret.
#[derive(Debug, Clone)]
pub(crate) struct Jitter {
    state: u64,
}

impl Jitter {
    pub(crate) fn new() -> Self {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(0x5eed);
        Jitter {
            state: hasher.finish(),
        }
    }

    #[cfg(test)]
    pub(crate) fn seeded(state: u64) -> Self {
        Jitter { state }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `-1.0..=1.0`.
    pub(crate) fn unit(&mut self) -> f64 {
        let x = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        x * 2.0 - 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_grows_to_the_cap() {
        let p = PollPolicy::default();
        let secs: Vec<f64> = (0..10).map(|n| p.delay(n, 0.0).as_secs_f64()).collect();
        assert!((secs[0] - 1.5).abs() < 1e-9);
        assert!((secs[1] - 2.1).abs() < 1e-9);
        assert!(secs.windows(2).all(|w| w[0] <= w[1]), "{secs:?}");
        assert!((secs[9] - 15.0).abs() < 1e-9, "{secs:?}");
        assert_eq!(p.delay(u32::MAX, 0.0), Duration::from_secs(15));
    }

    #[test]
    fn jitter_stays_within_its_share() {
        let p = PollPolicy::default();
        assert_eq!(p.delay(0, 1.0), Duration::from_secs_f64(1.8));
        assert_eq!(p.delay(0, -1.0), Duration::from_secs_f64(1.2));
        let mut rng = Jitter::seeded(42);
        let mut seen_low = false;
        let mut seen_high = false;
        for _ in 0..1000 {
            let u = rng.unit();
            assert!((-1.0..=1.0).contains(&u));
            seen_low |= u < -0.5;
            seen_high |= u > 0.5;
            let d = p.delay(20, u).as_secs_f64();
            assert!((12.0..=18.0).contains(&d), "{d}");
        }
        assert!(seen_low && seen_high);
    }

    #[test]
    fn odd_policies_do_not_panic() {
        let p = PollPolicy {
            initial: Duration::ZERO,
            max: Duration::ZERO,
            factor: f64::NAN,
            jitter: 7.0,
        };
        assert_eq!(p.delay(3, 1.0), Duration::ZERO);
        let shrinking = PollPolicy {
            factor: 0.5,
            jitter: -1.0,
            ..PollPolicy::default()
        };
        assert_eq!(shrinking.delay(5, 1.0), Duration::from_millis(1500));
        let inverted = PollPolicy {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(1),
            ..PollPolicy::default()
        };
        assert_eq!(inverted.delay(5, 0.0), Duration::from_secs(2));
    }
}
