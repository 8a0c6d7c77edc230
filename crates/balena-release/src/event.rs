//! Progress reports from long operations, delivered to a caller's callback so
//! that the library itself never prints.

use std::sync::Arc;
use std::time::Duration;

use crate::model::Report;

/// Something that happened while preparing an update.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A new state was read: of the transition, or of the whole fleet.
    Round {
        /// The state.
        report: Arc<Report>,
        /// The round number, from 1.
        attempt: u32,
    },
    /// The delta server was asked for a delta.
    Triggered {
        /// The service the delta is for.
        service_name: String,
        /// The source image id.
        source_image: u64,
        /// The target image id.
        target_image: u64,
        /// What the delta server said.
        outcome: TriggerOutcome,
    },
    /// Waiting before the next poll.
    Sleeping {
        /// How long.
        for_: Duration,
    },
    /// A request failed transiently and will be sent again.
    Retrying {
        /// Which request.
        what: String,
        /// The retry number, from 1.
        attempt: u32,
        /// The pause before it.
        delay: Duration,
        /// Why it failed.
        reason: String,
    },
    /// The one-query delta lookup failed (rejected, or no answer in time);
    /// the library now reads deltas after the releases (one more round
    /// trip, same request count).
    DeltaQueryFallback {
        /// The HTTP status of the rejection, when there was an answer.
        status: Option<u16>,
    },
}

/// The delta server's answer to a delta request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TriggerOutcome {
    /// Accepted or already built (a 2xx answer).
    Accepted,
    /// Still being built (502 or 504, or a 503 that outlasted the retries).
    StillProcessing {
        /// The HTTP status.
        status: u16,
    },
    /// No answer within the request timeout; the build may still run.
    TimedOut,
    /// Refused with a 4xx status (other than 401 and 429): devices pull the
    /// whole image of this service. The service reports a `delta_failure`.
    Refused {
        /// The HTTP status.
        status: u16,
    },
}
