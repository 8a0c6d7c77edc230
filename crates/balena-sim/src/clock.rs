//! The simulator's notion of "now": real time, real time sped up, or a clock
//! that only moves when a test advances it. Delta builds and row timestamps
//! follow it, so tests can wait minutes of simulated time in microseconds.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

/// How the simulated clock runs (scenario `clock` field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "mode", rename_all = "lowercase", deny_unknown_fields)]
pub enum Clock {
    /// Wall-clock time.
    #[default]
    Real,
    /// Starts at `start` (default: the real time at start-up) and runs
    /// `factor` times faster than real time.
    Scaled {
        factor: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start: Option<Timestamp>,
    },
    /// Starts at `start` (default: the real time at start-up) and moves only
    /// when advanced.
    Manual {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start: Option<Timestamp>,
    },
}

impl Clock {
    /// A manual clock starting at the real time of start-up.
    pub fn manual() -> Clock {
        Clock::Manual { start: None }
    }

    /// A clock running `factor` times faster than real time.
    pub fn scaled(factor: f64) -> Clock {
        Clock::Scaled {
            factor,
            start: None,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        match self {
            Clock::Scaled { factor, .. } if !(factor.is_finite() && *factor >= 0.0) => Err(
                format!("clock `factor` must be a finite number >= 0, got `{factor}`"),
            ),
            _ => Ok(()),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Clock::Real => "real",
            Clock::Scaled { .. } => "scaled",
            Clock::Manual { .. } => "manual",
        }
    }
}

/// The running clock: `origin + factor × real elapsed + advanced`.
#[derive(Debug)]
pub(crate) struct SimClock {
    mode: Clock,
    origin_real: Instant,
    origin: Timestamp,
    factor: f64,
    advanced: Mutex<SignedDuration>,
}

impl SimClock {
    pub(crate) fn new(mode: &Clock) -> SimClock {
        let real_now = Timestamp::now();
        let (origin, factor) = match mode {
            Clock::Real => (real_now, 1.0),
            Clock::Scaled { factor, start } => (start.unwrap_or(real_now), *factor),
            Clock::Manual { start } => (start.unwrap_or(real_now), 0.0),
        };
        SimClock {
            mode: mode.clone(),
            origin_real: Instant::now(),
            origin,
            factor,
            advanced: Mutex::new(SignedDuration::ZERO),
        }
    }

    /// The simulated time, truncated to milliseconds (pinejs precision).
    pub(crate) fn now(&self) -> Timestamp {
        let real = self.origin_real.elapsed().as_secs_f64() * self.factor;
        let elapsed = SignedDuration::try_from_secs_f64(real).unwrap_or(SignedDuration::MAX);
        let advanced = *self.advanced.lock().unwrap_or_else(|e| e.into_inner());
        let now = self
            .origin
            .saturating_add(elapsed)
            .and_then(|t| t.saturating_add(advanced))
            .unwrap_or(self.origin);
        Timestamp::from_millisecond(now.as_millisecond()).unwrap_or(now)
    }

    /// Moves the clock forward (any mode).
    pub(crate) fn advance(&self, by: Duration) {
        let by = SignedDuration::try_from(by).unwrap_or(SignedDuration::MAX);
        let mut advanced = self.advanced.lock().unwrap_or_else(|e| e.into_inner());
        *advanced = advanced.saturating_add(by);
    }

    pub(crate) fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "mode": self.mode.name(),
            "factor": self.factor,
            "now": self.now().to_string(),
            "advanced_ms": self.advanced.lock().unwrap_or_else(|e| e.into_inner()).as_millis(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let start: Timestamp = "2026-01-02T03:04:05.678Z".parse().unwrap();
        let clock = SimClock::new(&Clock::Manual { start: Some(start) });
        assert_eq!(clock.now(), start);
        clock.advance(Duration::from_secs(90));
        assert_eq!(clock.now().to_string(), "2026-01-02T03:05:35.678Z");
    }

    #[test]
    fn scaled_clock_runs_faster_than_real_time() {
        let start: Timestamp = "2026-01-02T00:00:00Z".parse().unwrap();
        let clock = SimClock::new(&Clock::Scaled {
            factor: 1000.0,
            start: Some(start),
        });
        std::thread::sleep(Duration::from_millis(20));
        let elapsed = clock.now().duration_since(start);
        assert!(elapsed >= SignedDuration::from_secs(20), "{elapsed:?}");
    }

    #[test]
    fn clock_modes_parse_from_json() {
        let c: Clock = serde_json::from_str(r#"{"mode":"scaled","factor":60}"#).unwrap();
        assert_eq!(c, Clock::scaled(60.0));
        assert!(serde_json::from_str::<Clock>(r#"{"mode":"fast"}"#).is_err());
        assert!(Clock::scaled(-1.0).validate().is_err());
    }
}
