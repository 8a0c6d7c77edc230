//! Advice the command line adds (`hint:` lines): what to do next in terms of
//! this tool's flags and variables, which the library cannot know. Under an
//! error, one match over the kinds of failure ([`hint`]); after a result that
//! is not final, the command to run next ([`next_step`]), quoting the user's
//! own target so that it can be copied.

use balena_release::{Error, Report, Server, ServiceUpdate, Status, TokenProblem};

use crate::cli::{Mode, Typed};
use crate::failure::Failure;

/// Deltas are built by the delta server, not by this process.
const BUILDS_GO_ON: &str = "delta builds already requested go on without this tool: run again to \
                            see how far they got";
/// What a device does without a delta.
const FULL_IMAGE: &str = "devices can still update: without this delta they download the \
                          service's whole image; -v shows the delta server's answers";

/// The hint under `failure`; `typed` are the words of the run, which a
/// suggested command repeats (empty when the failure came before them).
pub fn hint(failure: &Failure, typed: &Typed) -> Option<String> {
    let text = match failure {
        Failure::TimedOut { error, .. } if error.last_state().is_none() => {
            "check the network and the API URL; -v shows each request as it is sent"
        }
        // The wait ended, the builds did not: the same wait, longer.
        Failure::TimedOut { after, .. } => {
            let mode = Mode::Wait {
                timeout: Some(*after),
            };
            return Some(wait_longer(&Ran::new(typed, mode, false), *after));
        }
        // Ended before a result: the command that shows how far the builds
        // got, when the words of the run are known.
        Failure::Interrupted(_) if !typed.target.is_empty() => {
            let ran = Ran::new(typed, Mode::Describe, false);
            return Some(format!(
                "delta builds already requested go on without this tool; to see how far they \
                 got, run: {}",
                ran.command(&[])
            ));
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
        Failure::OverBudget { next_step, .. } => return next_step.clone(),
        Failure::Config(_) | Failure::Runtime(_) | Failure::Write(_) => return None,
    };
    Some(text.to_owned())
}

/// The program's name in a suggested command.
const PROGRAM: &str = "balena-release-update";

/// The timeout a suggested wait gives: long enough for most builds.
const SUGGESTED_TIMEOUT: &str = "10m";

/// The longest server message quoted in a hint (the JSON has it in full).
const REASON_CHARS: usize = 80;

/// What was run, as far as the next step depends on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    /// The words naming the target, as the user typed them:
    /// `--from-release 84d3d8f --to-release 900835`, `--fleet myorg/fleet`.
    pub target: Vec<String>,
    /// Other words worth repeating in a suggested command (`--output table`).
    pub keep: Vec<String>,
    /// Describe, prepare or wait.
    pub mode: Mode,
    /// The API has no deltas at all (openBalena): nothing can be prepared.
    pub no_deltas: bool,
}

impl Ran {
    /// The run of `typed` words in `mode`, on an API with or without deltas.
    pub fn new(typed: &Typed, mode: Mode, no_deltas: bool) -> Ran {
        Ran {
            target: typed.target.clone(),
            keep: typed.keep.clone(),
            mode,
            no_deltas,
        }
    }

    /// The command that repeats this run's target and output with `extra`.
    fn command(&self, extra: &[&str]) -> String {
        std::iter::once(PROGRAM)
            .chain(self.target.iter().map(String::as_str))
            .chain(self.keep.iter().map(String::as_str))
            .chain(extra.iter().copied())
            .map(shell_word)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A word as a POSIX shell reads it back: as it is when it holds only
/// characters no shell treats specially, else in single quotes.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The one `hint:` line after a result that is not final: the command to
/// run next (`--prepare` while deltas are missing, `--wait --timeout` while
/// they are building), or, when a delta failed, which service, the server's
/// reason and how to see more (`-v`). `None` when the update is ready.
/// Never suggests `--prepare` to an API without deltas.
pub fn next_step(report: &Report, ran: &Ran) -> Option<String> {
    if report.overall_status() == Status::Ready {
        return None;
    }
    // (source release in a fleet, service), in report order.
    let services: Vec<(Option<u64>, &ServiceUpdate)> = match report {
        Report::Transition(info) => info
            .is_produced_by__service_update
            .iter()
            .map(|s| (None, s))
            .collect(),
        Report::Fleet(fleet) => fleet
            .transitions
            .iter()
            .flat_map(|t| {
                let from = t.update.originates_from__release.id;
                t.update
                    .is_produced_by__service_update
                    .iter()
                    .map(move |s| (Some(from), s))
            })
            .collect(),
    };
    let failed: Vec<_> = services
        .iter()
        .filter(|(_, s)| s.status == Status::Pending && s.delta_failure.is_some())
        .collect();
    if let Some((from, service)) = failed.first() {
        return Some(failed_delta(*from, service, failed.len() - 1, ran));
    }
    if ran.no_deltas {
        return Some(
            "this API has no deltas (openBalena has no delta server): devices download whole \
             images, and there is nothing to prepare"
                .to_owned(),
        );
    }
    let pending = services.iter().any(|(_, s)| s.status == Status::Pending);
    let wait = || {
        format!(
            "the deltas are being built; to wait until they are ready, run: {}",
            ran.command(&["--wait", "--timeout", SUGGESTED_TIMEOUT])
        )
    };
    Some(match ran.mode {
        Mode::Describe if pending => format!(
            "to request the missing deltas (add --wait to also wait until they are ready), run: \
             {}",
            ran.command(&["--prepare"])
        ),
        Mode::Describe | Mode::Prepare | Mode::Wait { .. } | Mode::Watch => wait(),
    })
}

/// The hint after a wait that reached its `--timeout` (`after`) with deltas
/// still building: the same command with twice the time (at most a day).
pub fn wait_longer(ran: &Ran, after: std::time::Duration) -> String {
    let longer = after.saturating_mul(2).min(crate::cli::MAX_TIMEOUT);
    let timeout = crate::cli::format_duration(longer);
    format!(
        "the deltas keep building without this tool; to wait longer, run: {}",
        ran.command(&["--wait", "--timeout", &timeout])
    )
}

/// The hint for a failed delta: service, reason, and the command that asks
/// again (or shows more, for a refusal, which asking again does not change).
fn failed_delta(from: Option<u64>, service: &ServiceUpdate, others: usize, ran: &Ran) -> String {
    let Some(failure) = &service.delta_failure else {
        return String::new();
    };
    let whose = match from {
        Some(id) => format!("service `{}` from release {id}", service.service_name),
        None => format!("service `{}`", service.service_name),
    };
    let reason = failure
        .error_message
        .as_deref()
        .map(shorten)
        .unwrap_or_else(|| "the delta server gave no reason".to_owned());
    let more = match others {
        0 => String::new(),
        1 => " (and 1 more service)".to_owned(),
        n => format!(" (and {n} more services)"),
    };
    let mode = match ran.mode {
        Mode::Describe => "",
        Mode::Prepare | Mode::Wait { .. } | Mode::Watch => "--prepare",
    };
    if failure.http_status.is_some() {
        let extra: Vec<&str> = [mode, "-v"].into_iter().filter(|w| !w.is_empty()).collect();
        format!(
            "the delta server refused the delta for {whose}{more}: {reason}; devices download \
             its whole image; to see the delta server's answers, run: {}",
            ran.command(&extra)
        )
    } else {
        format!(
            "the delta for {whose} failed{more}: {reason}; to request it again and see the \
             delta server's answers, run: {}",
            ran.command(&["--prepare", "-v"])
        )
    }
}

/// A server's message cut to its first line and [`REASON_CHARS`] characters.
fn shorten(message: &str) -> String {
    let line = message.lines().map(str::trim).find(|l| !l.is_empty());
    let line = line.unwrap_or("the delta server gave no reason");
    if line.chars().count() <= REASON_CHARS {
        line.to_owned()
    } else {
        let cut: String = line.chars().take(REASON_CHARS - 1).collect();
        format!("{}…", cut.trim_end())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use balena_release::Report;

    use super::*;
    use crate::signals::Signal;

    #[test]
    fn kinds_without_advice_get_a_hint() {
        let silent = Failure::from_library(Error::Timeout { last: None }, Duration::from_secs(5));
        assert!(
            hint(&silent, &Typed::default())
                .unwrap()
                .contains("API URL")
        );
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
        assert!(
            hint(&waiting, &Typed::default())
                .unwrap()
                .contains("--timeout")
        );
        let typed = Typed {
            target: ["--from-release", "84d3d8f", "--to-release", "900835"]
                .map(str::to_owned)
                .to_vec(),
            keep: ["--output", "table"].map(str::to_owned).to_vec(),
        };
        for signal in [Signal::Interrupt, Signal::Terminate, Signal::Hangup] {
            let interrupted = Failure::Interrupted(signal);
            assert!(
                hint(&interrupted, &Typed::default())
                    .unwrap()
                    .contains("go on"),
                "{signal:?}"
            );
            // With the run's words: the command that shows how far they got.
            assert_eq!(
                hint(&interrupted, &typed).unwrap(),
                "delta builds already requested go on without this tool; to see how far they \
                 got, run: balena-release-update --from-release 84d3d8f --to-release 900835 \
                 --output table",
                "{signal:?}"
            );
        }
        let gave_up = Failure::GaveUp {
            after: Duration::from_secs(120),
        };
        assert!(
            hint(&gave_up, &Typed::default())
                .unwrap()
                .contains("--wait --timeout")
        );
        let refused = Failure::Library(Error::Delta {
            service: "main".into(),
            status: Some(400),
            message: "no".into(),
        });
        assert!(
            hint(&refused, &Typed::default())
                .unwrap()
                .contains("whole image")
        );
    }

    #[test]
    fn a_refused_token_points_at_the_login() {
        let unauthorized = Failure::Library(Error::Unauthorized {
            server: Server::Api,
            with_token: true,
        });
        assert!(
            hint(&unauthorized, &Typed::default())
                .unwrap()
                .contains("balena login")
        );
    }

    #[test]
    fn kinds_with_advice_and_the_clis_own_errors_get_none() {
        let ambiguous = Failure::Library(Error::ReleaseNotFound {
            reference: balena_release::ReleaseRef::Id(1),
        });
        assert_eq!(hint(&ambiguous, &Typed::default()), None);
        assert_eq!(
            hint(&Failure::Config("bad flag".into()), &Typed::default()),
            None
        );
    }

    /// A transition from release 1 to release 2 whose services have these
    /// statuses; a third element gives a failed delta's message, and `Some`
    /// HTTP status makes it a refusal.
    /// A service: name, status, and a failed delta's message and HTTP status.
    type Service<'a> = (&'a str, Status, Option<(&'a str, Option<u16>)>);

    fn transition(services: &[Service]) -> serde_json::Value {
        let services: Vec<_> = services
            .iter()
            .map(|(name, status, failure)| {
                let mut service = serde_json::json!({
                    "service_name": name,
                    "status": status,
                    "originates_from__image": image(1),
                    "produces__image": image(2),
                    "change": "changed",
                });
                if let Some((message, http_status)) = failure {
                    service["delta_failure"] = serde_json::json!({
                        "error_message": message,
                        "attempts": 1,
                    });
                    if let Some(code) = http_status {
                        service["delta_failure"]["http_status"] = serde_json::json!(code);
                    }
                }
                service
            })
            .collect();
        let overall = services
            .iter()
            .map(|s| serde_json::from_value::<Status>(s["status"].clone()).unwrap())
            .min()
            .unwrap_or(Status::Ready);
        serde_json::json!({
            "originates_from__release": { "id": 900813, "commit": "84d3d8f4c0a1" },
            "produces__release": { "id": 900835, "commit": "b2cf2db7a4e6" },
            "is_produced_by__service_update": services,
            "overall_status": overall,
        })
    }

    fn image(id: u64) -> serde_json::Value {
        serde_json::json!({
            "id": id,
            "is_stored_at__image_location": "registry2.example/v2/x",
            "content_hash": null,
            "image_size": 1000,
        })
    }

    fn pair(value: serde_json::Value) -> Report {
        Report::Transition(serde_json::from_value(value).unwrap())
    }

    fn fleet(transitions: Vec<serde_json::Value>) -> Report {
        let transitions: Vec<_> = transitions
            .into_iter()
            .map(|mut t| {
                t["device_count"] = serde_json::json!(2);
                t
            })
            .collect();
        let overall = transitions
            .iter()
            .map(|t| serde_json::from_value::<Status>(t["overall_status"].clone()).unwrap())
            .min()
            .unwrap_or(Status::Ready);
        Report::Fleet(
            serde_json::from_value(serde_json::json!({
                "application": { "id": 1, "slug": "myorg/kiosk" },
                "produces__release": { "id": 900835, "commit": "b2cf2db7a4e6" },
                "transitions": transitions,
                "overall_status": overall,
            }))
            .unwrap(),
        )
    }

    fn ran(target: &[&str], mode: Mode) -> Ran {
        Ran {
            target: target.iter().map(|w| w.to_string()).collect(),
            keep: Vec::new(),
            mode,
            no_deltas: false,
        }
    }

    const PAIR: &[&str] = &["--from-release", "84D3D8F", "--to-release", "900835"];

    #[test]
    fn suggested_words_are_quoted_for_the_shell_when_needed() {
        assert_eq!(shell_word("myorg/kiosk-fleet"), "myorg/kiosk-fleet");
        assert_eq!(shell_word("1.5GiB"), "1.5GiB");
        assert_eq!(shell_word("50 MB"), "'50 MB'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    fn a_wait_that_timed_out_is_suggested_again_with_twice_the_time() {
        let run = ran(PAIR, Mode::Wait { timeout: None });
        let hint = wait_longer(&run, Duration::from_secs(240));
        assert!(
            hint.ends_with(
                "run: balena-release-update --from-release 84D3D8F --to-release 900835 --wait \
                 --timeout 8m"
            ),
            "{hint}"
        );
        let hint = wait_longer(&run, Duration::from_secs(20 * 3600));
        assert!(hint.ends_with("--wait --timeout 24h"), "{hint}");
    }

    #[test]
    fn a_ready_result_needs_no_next_step() {
        let ready = pair(transition(&[("main", Status::Ready, None)]));
        for mode in [Mode::Describe, Mode::Prepare, Mode::Wait { timeout: None }] {
            assert_eq!(next_step(&ready, &ran(PAIR, mode)), None);
        }
        assert_eq!(
            next_step(&fleet(vec![]), &ran(&["--fleet", "7"], Mode::Describe)),
            None
        );
    }

    #[test]
    fn missing_deltas_suggest_prepare_with_the_users_own_target() {
        let pending = pair(transition(&[
            ("api", Status::Ready, None),
            ("main", Status::Pending, None),
        ]));
        let mut run = ran(PAIR, Mode::Describe);
        run.keep = vec!["--output".into(), "table".into()];
        let hint = next_step(&pending, &run).unwrap();
        assert!(
            hint.ends_with(
                "run: balena-release-update --from-release 84D3D8F --to-release 900835 --output \
                 table --prepare"
            ),
            "{hint}"
        );
        assert!(hint.contains("--wait"), "{hint}");
    }

    #[test]
    fn deltas_being_built_suggest_a_wait() {
        let building = pair(transition(&[("main", Status::Preparing, None)]));
        for mode in [Mode::Describe, Mode::Prepare] {
            let hint = next_step(&building, &ran(PAIR, mode)).unwrap();
            assert!(
                hint.ends_with("--to-release 900835 --wait --timeout 10m"),
                "{hint}"
            );
            assert!(!hint.contains("--prepare"), "{hint}");
        }
    }

    #[test]
    fn a_fleet_is_named_by_its_flag_in_every_suggestion() {
        let target = ["--fleet", "MyOrg/Kiosk"];
        let report = fleet(vec![
            transition(&[("main", Status::Ready, None)]),
            transition(&[("main", Status::Pending, None)]),
        ]);
        let hint = next_step(&report, &ran(&target, Mode::Describe)).unwrap();
        assert!(
            hint.ends_with("run: balena-release-update --fleet MyOrg/Kiosk --prepare"),
            "{hint}"
        );
        let building = fleet(vec![transition(&[("main", Status::Preparing, None)])]);
        let hint = next_step(&building, &ran(&target, Mode::Prepare)).unwrap();
        assert!(
            hint.ends_with("--fleet MyOrg/Kiosk --wait --timeout 10m"),
            "{hint}"
        );
    }

    #[test]
    fn a_failed_delta_names_the_service_and_the_reason_and_suggests_verbose() {
        let failed = pair(transition(&[
            ("api", Status::Pending, None),
            (
                "main",
                Status::Pending,
                Some(("layer 3 is corrupt\nat build step 7", None)),
            ),
        ]));
        let hint = next_step(&failed, &ran(PAIR, Mode::Describe)).unwrap();
        assert!(
            hint.starts_with("the delta for service `main` failed: layer 3 is corrupt;"),
            "{hint}"
        );
        assert!(!hint.contains("step 7"), "only the first line: {hint}");
        assert!(hint.ends_with("--to-release 900835 --prepare -v"), "{hint}");
        // In a fleet: which transition, and how many more.
        let report = fleet(vec![
            transition(&[("main", Status::Pending, Some(("", None)))]),
            transition(&[("api", Status::Pending, Some(("x", None)))]),
        ]);
        let hint = next_step(&report, &ran(&["--fleet", "o/f"], Mode::Describe)).unwrap();
        assert!(
            hint.starts_with(
                "the delta for service `main` from release 900813 failed (and 1 more service): \
                 the delta server gave no reason;"
            ),
            "{hint}"
        );
        // A delta that is building again is not failed any more.
        let rebuilding = pair(transition(&[(
            "main",
            Status::Preparing,
            Some(("x", None)),
        )]));
        let hint = next_step(&rebuilding, &ran(PAIR, Mode::Prepare)).unwrap();
        assert!(hint.contains("--wait --timeout"), "{hint}");
    }

    #[test]
    fn a_refused_delta_is_not_requested_again() {
        let long = "no such image ".repeat(20);
        let refused = pair(transition(&[(
            "main",
            Status::Pending,
            Some((long.as_str(), Some(400))),
        )]));
        let hint = next_step(&refused, &ran(PAIR, Mode::Prepare)).unwrap();
        assert!(
            hint.contains("refused the delta for service `main`"),
            "{hint}"
        );
        assert!(hint.contains("whole image"), "{hint}");
        assert!(hint.contains("image no such i…;"), "shortened: {hint}");
        assert!(hint.ends_with("--prepare -v"), "{hint}");
    }

    #[test]
    fn without_a_delta_server_nothing_suggests_prepare() {
        let pending = pair(transition(&[("main", Status::Pending, None)]));
        for mode in [Mode::Describe, Mode::Prepare] {
            let mut run = ran(PAIR, mode);
            run.no_deltas = true;
            let hint = next_step(&pending, &run).unwrap();
            assert_eq!(
                hint,
                "this API has no deltas (openBalena has no delta server): devices download \
                 whole images, and there is nothing to prepare"
            );
        }
    }
}
