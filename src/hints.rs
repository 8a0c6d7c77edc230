//! Advice the command line adds under an error (`hint:` lines): what to do
//! next in terms of this tool's flags and variables, which the library
//! cannot know. One match over the kinds of failure; a kind whose message
//! lacks a next step gets an arm here.

use balena_release::Error;

use crate::failure::Failure;

/// Deltas are built by the delta server, not by this process.
const BUILDS_GO_ON: &str = "delta builds already requested go on without this tool: run again to \
                            see how far they got";
/// What a device does without a delta.
const FULL_IMAGE: &str =
    "devices can still update: without this delta they download the service's whole image";

pub fn hint(failure: &Failure) -> Option<String> {
    let text = match failure {
        Failure::TimedOut { .. } => {
            "the deltas keep building: run again later, or give a longer --timeout"
        }
        Failure::Interrupted { .. } => BUILDS_GO_ON,
        Failure::Library(error) => match error {
            Error::Delta { .. } | Error::DeltaFailed { .. } | Error::FleetDeltaFailed { .. } => {
                FULL_IMAGE
            }
            Error::InvalidUrl { .. } => {
                "fix `apiUrl` or `deltaUrl` in balenarc.yml, or BALENARC_API_URL or \
                 BALENARC_DELTA_URL"
            }
            // These messages still name their own next step.
            Error::InvalidToken { .. }
            | Error::InsecureUrl { .. }
            | Error::ReleaseNotFound { .. }
            | Error::ReleaseAmbiguous { .. }
            | Error::ReleaseNotSuccessful { .. }
            | Error::DifferentApplications { .. }
            | Error::ImageNotReady { .. }
            | Error::FleetNotFound { .. }
            | Error::FleetHasNoTarget { .. }
            | Error::ReleaseNotInFleet { .. }
            | Error::Unauthorized { .. }
            | Error::Forbidden { .. }
            | Error::NoDeltas { .. }
            | Error::Api { .. }
            | Error::Decode { .. }
            | Error::Transport { .. }
            | Error::Setup { .. } => return None,
            _ => return None,
        },
        // The CLI's own messages name the fix themselves.
        Failure::Config(_) | Failure::Runtime(_) | Failure::Write(_) => return None,
    };
    Some(text.to_owned())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use balena_release::Server;

    use super::*;

    #[test]
    fn kinds_without_advice_get_a_hint() {
        let timeout = Failure::from_library(Error::Timeout { last: None }, Duration::from_secs(5));
        assert!(hint(&timeout).unwrap().contains("--timeout"));
        let interrupted = Failure::Interrupted { last: None };
        assert!(hint(&interrupted).unwrap().contains("go on"));
        let refused = Failure::Library(Error::Delta {
            service: "main".into(),
            status: Some(400),
            message: "no".into(),
        });
        assert!(hint(&refused).unwrap().contains("whole image"));
    }

    #[test]
    fn kinds_with_advice_and_the_clis_own_errors_get_none() {
        let unauthorized = Failure::Library(Error::Unauthorized {
            server: Server::Api,
            with_token: true,
        });
        assert_eq!(hint(&unauthorized), None);
        assert_eq!(hint(&Failure::Config("bad flag".into())), None);
    }
}
