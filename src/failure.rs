//! Everything that can end a run without its result: the message on the
//! `ERROR:` line, the exit code, and the last state the library attached,
//! which is still printed so that nothing already learnt is lost (the run
//! keeps the newest state it read for failures that carry none).

use std::fmt;
use std::time::Duration;

use balena_release::Report;

use crate::signals::Signal;

/// Exit code of a run that hit `--timeout`.
const EXIT_TIMEOUT: u8 = 2;
/// Exit code of a run whose result is above `--max-download`.
const EXIT_OVER_BUDGET: u8 = 3;

#[derive(Debug)]
pub enum Failure {
    /// The CLI's own checks: arguments, settings, token, environment knobs.
    Config(String),
    /// Words clap could not parse, with its tip (a similar flag) if it has one.
    Usage {
        message: String,
        tip: Option<String>,
    },
    /// The library gave up.
    Library(balena_release::Error),
    /// The wait reached its deadline.
    TimedOut {
        after: Duration,
        error: balena_release::Error,
    },
    /// Ctrl-C, SIGTERM or SIGHUP during the run.
    Interrupted(Signal),
    /// Describe or `--prepare` got no complete answer within their bound.
    GaveUp { after: Duration },
    /// The async runtime could not start.
    Runtime(std::io::Error),
    /// The result could not be written to stdout.
    Write(std::io::Error),
    /// The result (already printed) downloads more than `--max-download`.
    OverBudget {
        /// Which transition, and the figure.
        message: String,
        /// What to run next, when the result is not final (ready deltas
        /// make the download smaller).
        next_step: Option<String>,
    },
}

impl Failure {
    /// A library error as this run reports it: a timeout names the wait's length.
    pub fn from_library(error: balena_release::Error, timeout: Duration) -> Failure {
        match error {
            balena_release::Error::Timeout { .. } => Failure::TimedOut {
                after: timeout,
                error,
            },
            error => Failure::Library(error),
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::TimedOut { .. } => EXIT_TIMEOUT,
            Failure::OverBudget { .. } => EXIT_OVER_BUDGET,
            Failure::Interrupted(signal) => signal.exit_code(),
            _ => 1,
        }
    }

    /// The state the library attached to its error (the state that led to
    /// it), printed on stdout in preference to the newest state read.
    pub fn last_state(&self) -> Option<&Report> {
        match self {
            Failure::Library(error) | Failure::TimedOut { error, .. } => error.last_state(),
            _ => None,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Config(message)
            | Failure::Usage { message, .. }
            | Failure::OverBudget { message, .. } => f.write_str(message),
            Failure::Library(error) => write!(f, "{error}"),
            Failure::TimedOut { after, error } if error.last_state().is_none() => write!(
                f,
                "timed out after {} before the API answered (no state was read)",
                crate::cli::format_duration(*after)
            ),
            Failure::TimedOut { after, .. } => write!(
                f,
                "timed out after {} before every delta was ready",
                crate::cli::format_duration(*after)
            ),
            Failure::Interrupted(Signal::Interrupt) => f.write_str("interrupted"),
            Failure::Interrupted(Signal::Terminate) => f.write_str("terminated (SIGTERM)"),
            Failure::Interrupted(Signal::Hangup) => f.write_str("hung up (SIGHUP)"),
            Failure::GaveUp { after } => write!(
                f,
                "no complete answer from the API or delta server within {}, the limit of a run \
                 without --wait",
                span(*after)
            ),
            Failure::Runtime(err) => write!(f, "cannot start the async runtime: {err}"),
            Failure::Write(err) => write!(f, "cannot write the result to stdout: {err}"),
        }
    }
}

/// `120s`, or `500ms` for a bound below a second.
fn span(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

impl std::error::Error for Failure {
    /// The causes behind the message (the message already says what the
    /// wrapped error says, so the chain starts below it).
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Failure::Library(error) | Failure::TimedOut { error, .. } => error.source(),
            _ => None,
        }
    }
}
