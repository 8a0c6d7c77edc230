//! Every way the library can fail, as matchable values whose messages name the
//! cause, keep the underlying failure as their `source()`, and leave advice
//! about a particular front end (its flags, variables or commands) to that
//! front end. No message ever contains the token.

use std::fmt;

use jiff::Timestamp;

use crate::model::{ReleaseSummary, Report};
use crate::reference::{FleetRef, ReleaseRef};

/// Which remote service an error comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Server {
    /// The balena API (`api_url`).
    Api,
    /// The delta server (`delta_url`).
    Delta,
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Server::Api => "API",
            Server::Delta => "delta server",
        })
    }
}

/// Why a token cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenProblem {
    /// The token is empty or only whitespace.
    #[error("the token is empty")]
    Empty,
    /// The token contains whitespace, control or non-ASCII characters.
    #[error("the token is malformed: it contains whitespace, control or non-ASCII characters")]
    BadCharacters,
    /// The token is all digits: neither an API key nor a session token.
    #[error(
        "the token is malformed: an all-digit string is neither a balena API key nor a \
         session token"
    )]
    AllDigits,
    /// The token looks like a session token (JWT) but does not decode.
    #[error("the token is malformed: it looks like a session token but {detail}")]
    Malformed {
        /// What did not decode.
        detail: String,
    },
    /// The session token's `exp` claim is in the past.
    #[error("the session token expired at `{at}`")]
    Expired {
        /// When it expired.
        at: Timestamp,
    },
}

/// An error from the library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token cannot be used; nothing was sent.
    #[error("{problem}")]
    InvalidToken {
        /// What is wrong with it.
        problem: TokenProblem,
    },
    /// A URL uses plain `http://` for a host other than loopback.
    #[error(
        "refusing to send requests over plain http to the {what} `{url}`: use an https:// \
         URL (plain http is only allowed for loopback test servers)"
    )]
    InsecureUrl {
        /// What the URL is for: `API URL`, `delta server URL`, `registry URL`.
        what: &'static str,
        /// The refused URL.
        url: String,
    },
    /// A configured URL cannot be used as a base URL.
    #[error("invalid {what} `{url}`: {reason}")]
    InvalidUrl {
        /// Which setting (`API URL`, `delta URL`).
        what: &'static str,
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be set up (for example no TLS roots).
    #[error("could not set up the HTTP client")]
    Setup {
        /// What failed.
        #[source]
        cause: Cause,
    },
    /// No release matches the reference.
    #[error("{}", not_found_message(reference))]
    ReleaseNotFound {
        /// The reference that matched nothing.
        reference: ReleaseRef,
    },
    /// A commit prefix matches several successful releases.
    #[error(
        "the commit prefix `{reference}` matches {} successful releases ({}): give more of \
         the commit, or the release id",
        candidates.len(),
        list_ids(candidates)
    )]
    ReleaseAmbiguous {
        /// The ambiguous prefix.
        reference: ReleaseRef,
        /// The matching releases.
        candidates: Vec<ReleaseSummary>,
    },
    /// The release exists but did not build successfully.
    #[error(
        "release `{id}` exists but its status is `{status}`; only successful releases can \
         be compared"
    )]
    ReleaseNotSuccessful {
        /// The reference the user gave.
        reference: ReleaseRef,
        /// The release id.
        id: u64,
        /// Its status (`failed`, `running`, …).
        status: String,
    },
    /// The two releases belong to different fleets.
    #[error(
        "release `{from}` belongs to fleet `{from_application}` but release `{to}` belongs \
         to fleet `{to_application}`: both releases must be from the same fleet"
    )]
    DifferentApplications {
        /// The source release id.
        from: u64,
        /// Its application id.
        from_application: u64,
        /// The target release id.
        to: u64,
        /// Its application id.
        to_application: u64,
    },
    /// An image of a release did not build successfully.
    #[error(
        "image `{image}` of service `{service}` in release `{release}` has status \
         `{status}`; only releases whose images all built successfully can be compared"
    )]
    ImageNotReady {
        /// The release id.
        release: u64,
        /// The service name.
        service: String,
        /// The image id.
        image: u64,
        /// The image status.
        status: String,
    },
    /// No fleet matches the reference.
    #[error(
        "fleet `{fleet}` not found: check the slug or id, and that the token's user can \
         read this fleet"
    )]
    FleetNotFound {
        /// The reference that matched nothing.
        fleet: FleetRef,
    },
    /// The fleet tracks no release and no target release was given.
    #[error("fleet `{fleet}` has no target release: name the target release explicitly")]
    FleetHasNoTarget {
        /// The fleet slug.
        fleet: String,
    },
    /// The target release of a fleet update belongs to another fleet.
    #[error(
        "release `{release}` belongs to fleet `{release_application}`, not to fleet \
         `{fleet}`: choose a release of that fleet"
    )]
    ReleaseNotInFleet {
        /// The release id.
        release: u64,
        /// Its application id.
        release_application: u64,
        /// The fleet slug.
        fleet: String,
    },
    /// A server answered 401.
    #[error("{}", unauthorized_message(*server, *with_token))]
    Unauthorized {
        /// Which server refused.
        server: Server,
        /// Whether a token was sent.
        with_token: bool,
    },
    /// The API answered 403.
    #[error(
        "the {server} refused access (403 Forbidden) to `{url}`: {message}; check that the \
         token's user may read this fleet"
    )]
    Forbidden {
        /// Which server refused.
        server: Server,
        /// The request URL.
        url: String,
        /// The server's message.
        message: String,
    },
    /// The API has no `delta` resource (openBalena): deltas cannot be
    /// prepared there.
    #[error(
        "the API at `{api}` has no deltas (openBalena has no delta server): devices will \
         download full images"
    )]
    NoDeltas {
        /// The API URL.
        api: String,
    },
    /// The API answered with another error status (after retries for
    /// transient ones).
    #[error("the API answered `{status}` to `{url}`: {message}{}", api_hint(*status))]
    Api {
        /// The HTTP status code.
        status: u16,
        /// The server's message.
        message: String,
        /// The request URL (without credentials).
        url: String,
    },
    /// The delta server refused to build the delta of a service.
    #[error(
        "the delta server failed for service `{service}`{}: {message}",
        status.map(|s| format!(" (`{s}`)")).unwrap_or_default()
    )]
    Delta {
        /// The service name.
        service: String,
        /// The HTTP status, when there was an answer.
        status: Option<u16>,
        /// The server's message.
        message: String,
    },
    /// A delta failed again and again while waiting, or the delta server
    /// refused it.
    #[error(
        "the delta for service `{service}`{} could not be prepared ({attempts} {}): {message}",
        from_release.map(|r| format!(" from release `{r}`")).unwrap_or_default(),
        if *attempts == 1 { "request" } else { "requests" }
    )]
    DeltaFailed {
        /// The service name.
        service: String,
        /// The source release of the transition, in a fleet.
        from_release: Option<u64>,
        /// How many times it was requested.
        attempts: u32,
        /// The delta server's message, or what was seen.
        message: String,
        /// The last known state.
        last: Box<Report>,
    },
    /// A server's answer does not have the expected shape.
    #[error(
        "unexpected answer from the {server} to the {what} query{}; check that the {server} \
         URL points at a balena API",
        if path.is_empty() || path == "." { String::new() } else { format!(" at `{path}`") }
    )]
    Decode {
        /// Which server answered.
        server: Server,
        /// Which query.
        what: String,
        /// The JSON path of the offending value.
        path: String,
        /// What is wrong.
        #[source]
        cause: Cause,
    },
    /// A request failed without an answer (connection, TLS, timeout).
    #[error(
        "could not get an answer from the {server} at `{url}`; check the network connection \
         and the {server} URL"
    )]
    Transport {
        /// Which server.
        server: Server,
        /// The request's scheme, host and path (no credentials, no query).
        url: String,
        /// What went wrong.
        #[source]
        cause: Cause,
    },
    /// A server's answer was longer than this library reads.
    #[error(
        "the {server} at `{host}` sent an answer larger than {} MiB; check that the {server} \
         URL points at a balena server",
        limit >> 20
    )]
    TooLarge {
        /// Which server.
        server: Server,
        /// Its host.
        host: String,
        /// The most bytes read.
        limit: usize,
    },
    /// The TLS handshake with a server failed (its certificate was refused,
    /// or no protocol in common): a retry would fail the same way.
    #[error(
        "could not set up a secure connection to the {server} at `{url}`; check the \
         {server} URL and the system's trusted certificates"
    )]
    Tls {
        /// Which server.
        server: Server,
        /// The request's scheme, host and path.
        url: String,
        /// What the TLS layer said.
        #[source]
        cause: Cause,
    },
    /// The deadline passed before the update was ready.
    #[error("the update was not ready before the deadline")]
    Timeout {
        /// The last known state, if any round completed.
        last: Option<Box<Report>>,
    },
}

/// The underlying failure behind an [`Error`], as the HTTP stack, the
/// operating system or the JSON decoder described it (credentials removed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Cause(pub(crate) String);

impl Cause {
    /// The description.
    pub fn message(&self) -> &str {
        &self.0
    }
}

fn not_found_message(reference: &ReleaseRef) -> String {
    match reference {
        ReleaseRef::Id(id) => format!(
            "release `{id}` not found: check the id and that the token's user can read its \
             fleet (an all-digit argument is read as a release id, not a commit prefix)"
        ),
        ReleaseRef::Commit(prefix) => format!(
            "no release matches the commit prefix `{prefix}`: check the commit and that the \
             token's user can read its fleet"
        ),
    }
}

fn list_ids(candidates: &[ReleaseSummary]) -> String {
    const SHOWN: usize = 5;
    let mut ids: Vec<String> = candidates
        .iter()
        .take(SHOWN)
        .map(|r| format!("`{}`", r.id))
        .collect();
    if candidates.len() > SHOWN {
        ids.push(format!("and {} more", candidates.len() - SHOWN));
    }
    ids.join(", ")
}

fn unauthorized_message(server: Server, with_token: bool) -> String {
    match (server, with_token) {
        (Server::Api, true) => "the API refused the token (401 Unauthorized)".to_owned(),
        (Server::Api, false) => "the API needs a token (401 Unauthorized)".to_owned(),
        (Server::Delta, true) => "the delta server refused the token (401 Unauthorized); check \
                                  that the delta URL belongs to the same balena environment as \
                                  the API URL"
            .to_owned(),
        (Server::Delta, false) => "the delta server needs a token (401 Unauthorized)".to_owned(),
    }
}

fn api_hint(status: u16) -> &'static str {
    match status {
        400 => {
            " (the API rejected the query; the API URL may point at a server that is not balenaCloud)"
        }
        404 => " (check the API URL)",
        429 => " (rate limited; try again later)",
        500..=599 => " (the API is failing; try again later)",
        _ => "",
    }
}

impl Error {
    /// Whether the same request may well succeed later: no answer (but not
    /// a refused TLS handshake), a 408, a 429 or a 5xx. A wait keeps trying
    /// through these until its deadline.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Transport { .. } => true,
            Error::Api { status, .. } => matches!(status, 408 | 429 | 500..=599),
            _ => false,
        }
    }

    /// The last known state carried by a [`Error::Timeout`] or
    /// [`Error::DeltaFailed`], if any.
    pub fn last_state(&self) -> Option<&Report> {
        match self {
            Error::Timeout { last } => last.as_deref(),
            Error::DeltaFailed { last, .. } => Some(last),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_with_backticked_values() {
        let cases = [
            Error::ReleaseNotSuccessful {
                reference: ReleaseRef::Id(900850),
                id: 900850,
                status: "failed".into(),
            }
            .to_string(),
            Error::Unauthorized {
                server: Server::Api,
                with_token: true,
            }
            .to_string(),
            Error::ReleaseAmbiguous {
                reference: ReleaseRef::Commit("b2cf2db7".into()),
                candidates: (1..=7)
                    .map(|id| ReleaseSummary {
                        id,
                        commit: format!("b2cf2db7{id}"),
                    })
                    .collect(),
            }
            .to_string(),
            Error::Decode {
                server: Server::Api,
                what: "release".into(),
                path: "d[0].id".into(),
                cause: Cause("invalid type".into()),
            }
            .to_string(),
        ];
        assert_eq!(
            cases[0],
            "release `900850` exists but its status is `failed`; only successful releases \
             can be compared"
        );
        assert_eq!(cases[1], "the API refused the token (401 Unauthorized)");
        assert_eq!(
            cases[2],
            "the commit prefix `b2cf2db7` matches 7 successful releases (`1`, `2`, `3`, `4`, \
             `5`, and 2 more): give more of the commit, or the release id"
        );
        assert_eq!(
            cases[3],
            "unexpected answer from the API to the release query at `d[0].id`; check that the \
             API URL points at a balena API"
        );
        for message in cases {
            assert!(message.chars().next().unwrap().is_lowercase(), "{message}");
        }
    }

    #[test]
    fn not_found_says_how_the_argument_was_read() {
        let id = Error::ReleaseNotFound {
            reference: ReleaseRef::Id(999999),
        }
        .to_string();
        assert!(id.starts_with("release `999999` not found"), "{id}");
        assert!(id.contains("not a commit prefix"), "{id}");
        let commit = Error::ReleaseNotFound {
            reference: ReleaseRef::Commit("84d3d8".into()),
        }
        .to_string();
        assert!(commit.contains("commit prefix `84d3d8`"), "{commit}");
    }

    #[test]
    fn error_is_send_and_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Error>();
    }
}
