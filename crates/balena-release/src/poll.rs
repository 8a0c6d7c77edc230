//! When to look again: the adaptive poll schedule of the wait loop and the
//! backoff of request retries, both with jitter so that many clients do not
//! poll in step.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// How often to read the delta state while waiting.
///
/// The pause before the next read is a `share` of the time waited so far,
/// kept between `initial` and `max`, then stretched or shrunk by a random
/// share of at most `jitter` (0.2 = ±20 %). A delta that becomes ready is
/// therefore noticed after about `share / 2` of the wait behind it (about
/// 0.75 s for a build of 15 s), while a long wait settles at one read every
/// `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PollPolicy {
    /// The shortest pause, used at first (default 1.5 s).
    pub initial: Duration,
    /// The longest pause before jitter (default 15 s).
    pub max: Duration,
    /// The pause as a share of the time waited so far (default 0.1).
    pub share: f64,
    /// Random spread as a share of the pause (default 0.2; clamped to 0..=1).
    pub jitter: f64,
}

impl Default for PollPolicy {
    fn default() -> Self {
        PollPolicy {
            initial: Duration::from_millis(1500),
            max: Duration::from_secs(15),
            share: 0.1,
            jitter: 0.2,
        }
    }
}

impl PollPolicy {
    /// The pause after having waited `waited`, given `unit`, a random number
    /// in `-1.0..=1.0`.
    pub(crate) fn delay(&self, waited: Duration, unit: f64) -> Duration {
        self.spread(self.base(waited), unit)
    }

    /// The pause after having waited `waited`, before jitter.
    pub(crate) fn base(&self, waited: Duration) -> Duration {
        let share = if self.share.is_finite() {
            self.share.max(0.0)
        } else {
            0.0
        };
        let max = self.max.max(self.initial);
        Duration::try_from_secs_f64(waited.as_secs_f64() * share)
            .unwrap_or(max)
            .clamp(self.initial, max)
    }

    /// `base` with this policy's jitter, given `unit` in `-1.0..=1.0`.
    pub(crate) fn spread(&self, base: Duration, unit: f64) -> Duration {
        spread(base, self.jitter, unit)
    }
}

/// `base` stretched or shrunk by `jitter × unit`.
fn spread(base: Duration, jitter: f64, unit: f64) -> Duration {
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
    Duration::try_from_secs_f64((base.as_secs_f64() * (1.0 + jitter * unit)).max(0.0))
        .unwrap_or(Duration::MAX)
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
    let max = max.max(initial).as_secs_f64();
    // powi saturates to infinity for huge n; min() then caps it.
    let base = (initial.as_secs_f64() * factor.powi(n.min(1000) as i32)).min(max);
    spread(
        Duration::try_from_secs_f64(base).unwrap_or(Duration::MAX),
        jitter,
        unit,
    )
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

    fn secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    #[test]
    fn pause_follows_the_time_waited_between_the_bounds() {
        let p = PollPolicy::default();
        assert_eq!(p.delay(Duration::ZERO, 0.0), Duration::from_millis(1500));
        assert_eq!(
            p.delay(Duration::from_secs(10), 0.0),
            Duration::from_millis(1500)
        );
        assert!((secs(p.delay(Duration::from_secs(40), 0.0)) - 4.0).abs() < 1e-9);
        assert!((secs(p.delay(Duration::from_secs(100), 0.0)) - 10.0).abs() < 1e-9);
        assert_eq!(
            p.delay(Duration::from_secs(600), 0.0),
            Duration::from_secs(15)
        );
        assert_eq!(p.delay(Duration::MAX, 0.0), Duration::from_secs(15));
    }

    #[test]
    fn a_ten_minute_wait_reads_a_few_times_a_minute() {
        let p = PollPolicy::default();
        let (mut waited, mut reads) = (Duration::ZERO, 0);
        while waited < Duration::from_secs(600) {
            waited += p.delay(waited, 0.0);
            reads += 1;
        }
        // About 7 per minute; the npm tool reads every 20 s, 2 + 3 requests per service.
        assert!((50..=80).contains(&reads), "{reads} reads in 10 minutes");
    }

    #[test]
    fn jitter_stays_within_its_share() {
        let p = PollPolicy::default();
        assert_eq!(p.delay(Duration::ZERO, 1.0), Duration::from_secs_f64(1.8));
        assert_eq!(p.delay(Duration::ZERO, -1.0), Duration::from_secs_f64(1.2));
        let mut rng = Jitter::seeded(42);
        let mut seen_low = false;
        let mut seen_high = false;
        for _ in 0..1000 {
            let u = rng.unit();
            assert!((-1.0..=1.0).contains(&u));
            seen_low |= u < -0.5;
            seen_high |= u > 0.5;
            let d = secs(p.delay(Duration::from_secs(3600), u));
            assert!((12.0..=18.0).contains(&d), "{d}");
        }
        assert!(seen_low && seen_high);
    }

    #[test]
    fn odd_policies_do_not_panic() {
        let p = PollPolicy {
            initial: Duration::ZERO,
            max: Duration::ZERO,
            share: f64::NAN,
            jitter: 7.0,
        };
        assert_eq!(p.delay(Duration::from_secs(3), 1.0), Duration::ZERO);
        let negative = PollPolicy {
            share: -1.0,
            jitter: -1.0,
            ..PollPolicy::default()
        };
        assert_eq!(
            negative.delay(Duration::from_secs(500), 1.0),
            Duration::from_millis(1500)
        );
        let inverted = PollPolicy {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(1),
            ..PollPolicy::default()
        };
        assert_eq!(
            inverted.delay(Duration::from_secs(500), 0.0),
            Duration::from_secs(2)
        );
        assert_eq!(
            backoff(Duration::from_secs(1), Duration::MAX, 2.0, 0.5, 200, 1.0),
            Duration::MAX,
            "a huge retry pause saturates instead of panicking"
        );
        let huge = PollPolicy {
            share: 1e300,
            ..PollPolicy::default()
        };
        assert_eq!(
            huge.delay(Duration::from_secs(5), 0.0),
            Duration::from_secs(15)
        );
    }
}
