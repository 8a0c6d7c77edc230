//! Progress reports from long operations, delivered to a caller's callback so
//! that the library itself never prints.

use std::sync::Arc;
use std::time::Duration;

use crate::model::{ReleaseSummary, Report};

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
    /// A request failed transiently and will be sent again. Sent before the
    /// pause, so a front end can say at once that a server does not answer.
    Retrying {
        /// Which request: for the API, the resource read (`release`,
        /// `delta`, `application`, `device`, `device count`); for the delta server,
        /// ``delta request for service `<name>` ``.
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
    /// Watch: a release to prepare was found and the fleet's devices read.
    WatchReleaseSeen {
        /// The release.
        release: ReleaseSummary,
        /// Why it is prepared.
        reason: WatchReason,
        /// How many transitions lead to it (pinned devices keep their pin).
        transitions: usize,
        /// How many devices make one of them.
        devices: u64,
    },
    /// Watch: every delta to a release is ready, or was given up on.
    WatchPrepared {
        /// The release.
        release: ReleaseSummary,
        /// How many transitions lead to it.
        transitions: usize,
        /// How many of them are ready.
        ready: usize,
        /// How many deltas failed (after their last attempt).
        failed: usize,
    },
    /// Watch: a delta of one transition is ready (reported once per
    /// release prepared, also when it was ready at the first read).
    WatchDeltaReady {
        /// The service.
        service_name: String,
        /// The release the devices run.
        from_release: u64,
        /// The release they go to.
        to_release: u64,
    },
    /// Watch: a delta failed after its last attempt (or was left behind
    /// with one that did); it is left until the next release.
    WatchDeltaFailed {
        /// The service.
        service_name: String,
        /// The release the devices run.
        from_release: u64,
        /// The release they go to.
        to_release: u64,
        /// Why (text from the servers, not escaped).
        reason: String,
    },
    /// Watch: a release could not be prepared for a reason other than a
    /// delta (its images are not all built, say); it is left until the next
    /// change.
    WatchReleaseFailed {
        /// The release.
        release: ReleaseSummary,
        /// Why (text from the servers, not escaped).
        reason: String,
    },
    /// Watch: a request failed and will be tried again; sent for the first
    /// failure of a streak only.
    WatchRetrying {
        /// What failed.
        what: String,
        /// Why (text from the servers, not escaped).
        reason: String,
        /// The pause before the next try.
        pause: Duration,
    },
    /// Watch: a poll succeeded after a streak of failures.
    WatchRecovered {
        /// How many failures the streak had.
        failures: u32,
    },
    /// Watch: the fleet's answer changes back and forth: a poll shows an
    /// answer seen in one of the last 8 polls (not the one before), or its
    /// newest release goes back to an older one. Sent once per streak;
    /// nothing is prepared (a preparation under way is dropped) until 3
    /// polls in a row show the same answer, and the polls keep their pace.
    WatchFlapping {
        /// What flaps, with the releases seen, e.g. `the fleet's target
        /// release (10 → 11 → 10)`.
        what: String,
    },
    /// Watch: the fleet's answer held for 3 polls after it flapped; what it
    /// holds is prepared if it differs from what was prepared last.
    WatchSteady {
        /// How many polls showed a change during the streak.
        changes: u64,
    },
    /// Watch: an idle poll found no change.
    WatchIdle {
        /// Idle polls so far.
        polls: u64,
        /// The pause before the next poll.
        next_poll: Duration,
    },
}

/// Why the watch prepares a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WatchReason {
    /// The fleet's newest successful release, created after its target.
    NewRelease,
    /// The fleet's target release (at start, or after it changed).
    Target,
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
