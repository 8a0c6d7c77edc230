//! Everything that can end a run without its result: the message on the
//! `ERROR:` line, the exit code, and the last state read, which is still
//! printed so that nothing already learnt is lost.

use std::fmt;
use std::time::Duration;

use balena_release::Report;

/// Exit code of a run that hit `--timeout`.
const EXIT_TIMEOUT: u8 = 2;
/// Exit code of a run stopped by Ctrl-C, as shells report SIGINT.
const EXIT_INTERRUPTED: u8 = 130;

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
    /// Ctrl-C during the run.
    Interrupted { last: Option<Box<Report>> },
    /// The async runtime could not start.
    Runtime(std::io::Error),
    /// The result could not be written to stdout.
    Write(std::io::Error),
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
            Failure::Interrupted { .. } => EXIT_INTERRUPTED,
            _ => 1,
        }
    }

    /// The last state read before the failure, printed on stdout.
    pub fn last_state(&self) -> Option<Report> {
        let error = match self {
            Failure::Interrupted { last } => return last.as_deref().cloned(),
            Failure::Library(error) | Failure::TimedOut { error, .. } => error,
            _ => return None,
        };
        error.last_state().cloned()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Config(message) | Failure::Usage { message, .. } => f.write_str(message),
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
            Failure::Interrupted { .. } => f.write_str("interrupted"),
            Failure::Runtime(err) => write!(f, "cannot start the async runtime: {err}"),
            Failure::Write(err) => write!(f, "cannot write the result to stdout: {err}"),
        }
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
