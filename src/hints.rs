//! Advice the command line adds under an error (`hint:` lines): what to do
//! next in terms of this tool's flags and variables, which the library
//! cannot know. One match over the kinds of failure; a kind whose message
//! lacks a next step gets an arm here.

use balena_release::{Error, Server, TokenProblem};

use crate::failure::Failure;

/// Deltas are built by the delta server, not by this process.
const BUILDS_GO_ON: &str = "delta builds already requested go on without this tool: run again to \
                            see how far they got";
/// What a device does without a delta.
const FULL_IMAGE: &str =
    "devices can still update: without this delta they download the service's whole image";

pub fn hint(failure: &Failure) -> Option<String> {
    let text = match failure {
        Failure::TimedOut { error, .. } if error.last_state().is_none() => {
            "check the network and the API URL; -v shows each request as it is sent"
        }
        Failure::TimedOut { .. } => {
            "the deltas keep building: run again later, or give a longer --timeout"
        }
        Failure::Interrupted(_) => BUILDS_GO_ON,
        Failure::GaveUp { .. } => {
            "the API or delta server is slow or not answering: run again later (delta builds \
             already requested go on); --wait --timeout waits longer"
        }
        Failure::Library(error) => match error {
            Error::Delta { .. } | Error::DeltaFailed { .. } => FULL_IMAGE,
            Error::InvalidToken {
                problem: TokenProblem::Empty,
            }
            | Error::Unauthorized {
                with_token: false, ..
            } => "log in with `balena login` or set BALENA_RELEASE_UPDATE_TOKEN",
            Error::InvalidToken { .. } => "log in again with `balena login`",
            Error::Unauthorized {
                server: Server::Api,
                ..
            } => "log in again with `balena login` or set BALENA_RELEASE_UPDATE_TOKEN",
            Error::Unauthorized { .. } => "log in again with `balena login`",
            Error::NoDeltas { .. } => {
                "describe the update without --prepare or --wait: devices download whole images"
            }
            Error::InvalidUrl { .. } => {
                "fix `apiUrl` or `deltaUrl` in balenarc.yml, or BALENARC_API_URL or \
                 BALENARC_DELTA_URL"
            }
            // These messages name their own next step.
            Error::InsecureUrl { .. }
            | Error::ReleaseNotFound { .. }
            | Error::ReleaseAmbiguous { .. }
            | Error::ReleaseNotSuccessful { .. }
            | Error::DifferentApplications { .. }
            | Error::ImageNotReady { .. }
            | Error::FleetNotFound { .. }
            | Error::FleetHasNoTarget { .. }
            | Error::ReleaseNotInFleet { .. }
            | Error::Forbidden { .. }
            | Error::Api { .. }
            | Error::Decode { .. }
            | Error::Transport { .. }
            | Error::Setup { .. } => return None,
            _ => return None,
        },
        // The CLI's own messages name the fix themselves.
        Failure::Usage { tip, .. } => return tip.clone(),
        Failure::Config(_) | Failure::Runtime(_) | Failure::Write(_) => return None,
    };
    Some(text.to_owned())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use balena_release::Report;

    use super::*;
    use crate::failure::Signal;

    #[test]
    fn kinds_without_advice_get_a_hint() {
        let silent = Failure::from_library(Error::Timeout { last: None }, Duration::from_secs(5));
        assert!(hint(&silent).unwrap().contains("API URL"));
        let last = Box::new(Report::Transition(
            serde_json::from_value(serde_json::json!({
                "originates_from__release": { "id": 1, "commit": "a" },
                "produces__release": { "id": 2, "commit": "b" },
                "is_produced_by__service_update": [],
                "overall_status": "pending",
            }))
            .unwrap(),
        ));
        let waiting =
            Failure::from_library(Error::Timeout { last: Some(last) }, Duration::from_secs(5));
        assert!(hint(&waiting).unwrap().contains("--timeout"));
        for signal in [Signal::Interrupt, Signal::Terminate, Signal::Hangup] {
            let interrupted = Failure::Interrupted(signal);
            assert!(hint(&interrupted).unwrap().contains("go on"), "{signal:?}");
        }
        let gave_up = Failure::GaveUp {
            after: Duration::from_secs(120),
        };
        assert!(hint(&gave_up).unwrap().contains("--wait --timeout"));
        let refused = Failure::Library(Error::Delta {
            service: "main".into(),
            status: Some(400),
            message: "no".into(),
        });
        assert!(hint(&refused).unwrap().contains("whole image"));
    }

    #[test]
    fn a_refused_token_points_at_the_login() {
        let unauthorized = Failure::Library(Error::Unauthorized {
            server: Server::Api,
            with_token: true,
        });
        assert!(hint(&unauthorized).unwrap().contains("balena login"));
    }

    #[test]
    fn kinds_with_advice_and_the_clis_own_errors_get_none() {
        let ambiguous = Failure::Library(Error::ReleaseNotFound {
            reference: balena_release::ReleaseRef::Id(1),
        });
        assert_eq!(hint(&ambiguous), None);
        assert_eq!(hint(&Failure::Config("bad flag".into())), None);
    }
}
