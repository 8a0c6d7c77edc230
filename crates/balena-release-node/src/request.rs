//! One call from JavaScript, as pure functions: the request (a JSON object
//! the JavaScript side builds from the caller's options) is checked and
//! turned into the library's types, the session is filled in from the
//! balena CLI's settings where the caller left a value out, and the
//! outcome (a report or an error) becomes the JSON the JavaScript side
//! turns into a plain object or an `Error`. Nothing here touches Node.

use std::time::Duration;

use balena_release::{Error, Event, ReleaseRef, Report, Target, TriggerOutcome, redact_secrets};
use balena_session::settings::{self, Environment};
use balena_session::{env_vars, token};
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

/// The longest wait (`timeout`), as the command's `--timeout` allows: a day.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// How long a call without `wait` may take in all, as the command's run
/// without `--wait`.
pub const RUN_LIMIT: Duration = Duration::from_secs(120);

/// Which entry point of the library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Kind {
    /// `getUpdateInfo`
    Info,
    /// `prepareUpdate`
    Prepare,
    /// `getFleetUpdateInfo`
    FleetInfo,
    /// `prepareFleetUpdate`
    FleetPrepare,
}

/// The request as the JavaScript side sends it: the caller's options with
/// the `client`'s URL and token already read, releases as strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Request {
    pub kind: Kind,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub fleet: Option<String>,
    #[serde(default)]
    pub to_release: Option<String>,
    #[serde(default)]
    pub wait: bool,
    /// Seconds.
    #[serde(default)]
    pub timeout: Option<f64>,
    #[serde(default)]
    pub api_url: Option<String>,
    #[serde(default)]
    pub delta_url: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub registry: Option<bool>,
    /// `[host, url]` pairs.
    #[serde(default)]
    pub registry_map: Option<Vec<(String, String)>>,
}

/// The servers, the token and the registry of a call: what a `Client` is
/// built from, and the key under which one is shared between calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub api_url: Url,
    pub delta_url: Url,
    pub token: String,
    pub registry: bool,
    pub registry_map: Vec<(String, Url)>,
}

/// A checked call.
#[derive(Debug, Clone)]
pub struct Call {
    pub kind: Kind,
    pub target: Target,
    pub wait: bool,
    pub timeout: Option<Duration>,
    pub connection: Connection,
    /// Warnings of the session discovery (a settings file in the working
    /// directory, a token file others can read, unknown settings).
    pub warnings: Vec<String>,
}

/// A failure before the library is called, or the library's.
#[derive(Debug)]
pub enum Failure {
    /// A bad argument or option: `ERR_INVALID_ARG_VALUE`.
    Argument(String),
    /// No token anywhere: `ERR_NOT_LOGGED_IN`.
    NotLoggedIn(String),
    /// A settings file, variable or token file that cannot be used:
    /// `ERR_SESSION`.
    Session(String),
    /// The library's error.
    Library(Error),
    /// A call without `wait` got no complete answer within `RUN_LIMIT`.
    GaveUp(Duration),
    /// The caller's `AbortSignal` fired.
    Aborted,
}

fn release(value: Option<&str>, what: &str) -> Result<ReleaseRef, Failure> {
    let value = value.ok_or_else(|| Failure::Argument(format!("{what} is required")))?;
    value.parse().map_err(|err| {
        Failure::Argument(format!(
            "{what} `{}` is not a release id or commit: {err}",
            value.escape_debug()
        ))
    })
}

fn base_url(value: &str, option: &str) -> Result<Url, Failure> {
    Url::parse(value).map_err(|err| {
        Failure::Argument(format!(
            "{option} `{}` is not a URL: {err}",
            redact_secrets(value, None)
        ))
    })
}

impl Request {
    /// Checks the request and completes its connection: a value the caller
    /// gave wins; the rest comes from the balena CLI's session in `env`
    /// (`BALENARC_*`, balenarc files, `BALENA_RELEASE_UPDATE_TOKEN`, the
    /// token file, `BALENA_RELEASE_UPDATE_REGISTRY_MAP`), under the same
    /// rules as the command.
    pub fn check(self, env: &Environment) -> Result<Call, Failure> {
        let target = match self.kind {
            Kind::Info | Kind::Prepare => Target::Pair {
                from: release(self.from.as_deref(), "the source release")?,
                to: release(self.to.as_deref(), "the target release")?,
            },
            Kind::FleetInfo | Kind::FleetPrepare => {
                let fleet = self
                    .fleet
                    .as_deref()
                    .ok_or_else(|| Failure::Argument("the fleet is required".to_owned()))?;
                let fleet = fleet.parse().map_err(|err| {
                    Failure::Argument(format!(
                        "the fleet `{}` is not a fleet slug or id: {err}",
                        fleet.escape_debug()
                    ))
                })?;
                let to = match self.to_release.as_deref() {
                    None => None,
                    Some(to) => Some(release(Some(to), "toRelease")?),
                };
                Target::Fleet { fleet, to }
            }
        };
        let timeout = match self.timeout {
            None => None,
            Some(seconds) if seconds.is_finite() && seconds > 0.0 => {
                let timeout = Duration::from_secs_f64(seconds.min(MAX_TIMEOUT.as_secs_f64() + 1.0));
                if timeout > MAX_TIMEOUT {
                    return Err(Failure::Argument(format!(
                        "timeout {seconds} is longer than a day ({} seconds)",
                        MAX_TIMEOUT.as_secs()
                    )));
                }
                Some(timeout)
            }
            Some(seconds) => {
                return Err(Failure::Argument(format!(
                    "timeout must be a positive number of seconds, not {seconds}"
                )));
            }
        };
        let wait = self.wait && matches!(self.kind, Kind::Prepare | Kind::FleetPrepare);

        // What the caller gave acts as the strongest variables: a settings
        // file then decides nothing the caller chose (so it is neither
        // named nor refused for it).
        let mut env = env.clone();
        let given = [
            (env_vars::BALENARC_API_URL, &self.api_url),
            (env_vars::BALENARC_DELTA_URL, &self.delta_url),
            (env_vars::TOKEN, &self.token),
        ];
        for (name, value) in given {
            if let Some(value) = value {
                if value.trim().is_empty() {
                    let option = match name {
                        env_vars::TOKEN => "token",
                        env_vars::BALENARC_API_URL => "apiUrl",
                        _ => "deltaUrl",
                    };
                    return Err(Failure::Argument(format!("{option} is empty")));
                }
                // Pushed last, it wins over any other spelling of the
                // variable (`RESINRC_*` ones are read before `BALENARC_*`).
                env.vars.retain(|(key, _)| !key.eq_ignore_ascii_case(name));
                env.not_unicode
                    .retain(|key| !key.eq_ignore_ascii_case(name));
                env.vars.push((name.to_owned(), value.clone()));
            }
        }
        let resolved = settings::resolve(&env).map_err(|err| Failure::Session(err.0))?;
        let mut warnings = resolved.warnings;
        let found = token::find(&env, &resolved.settings.data_directory).map_err(|err| {
            if err.not_logged_in {
                Failure::NotLoggedIn(err.message)
            } else {
                Failure::Session(err.message)
            }
        })?;
        warnings.extend(found.warning);
        let api_url = base_url(&resolved.settings.api_url, "apiUrl")?;
        let delta_url = base_url(&resolved.settings.delta_url, "deltaUrl")?;
        let registry_map = match self.registry_map {
            Some(pairs) => {
                let text: Vec<String> = pairs.iter().map(|(h, u)| format!("{h}={u}")).collect();
                if let Some(bad) = pairs
                    .iter()
                    .find(|(h, u)| h.contains([',', '=']) || u.contains(','))
                {
                    return Err(Failure::Argument(format!(
                        "registryMap: `{}` cannot hold `,` or `=` in a host, or `,` in a URL",
                        redact_secrets(&format!("{}={}", bad.0, bad.1), None)
                    )));
                }
                balena_session::registry_map("registryMap", &text.join(","), |entry| {
                    redact_secrets(entry, None).into_owned()
                })
                .map_err(Failure::Argument)?
            }
            None => match env.var(env_vars::REGISTRY_MAP) {
                None => Vec::new(),
                Some(value) => {
                    balena_session::registry_map(env_vars::REGISTRY_MAP, value, |entry| {
                        redact_secrets(entry, None).into_owned()
                    })
                    .map_err(Failure::Session)?
                }
            },
        };
        use secrecy::ExposeSecret;
        Ok(Call {
            kind: self.kind,
            target,
            wait,
            timeout,
            connection: Connection {
                api_url,
                delta_url,
                token: found.secret.expose_secret().to_owned(),
                registry: self.registry.unwrap_or(true),
                registry_map,
            },
            warnings,
        })
    }
}

/// The stable `code` of an error, for `err.code` on the JavaScript side.
pub fn code(failure: &Failure) -> &'static str {
    match failure {
        Failure::Argument(_) => "ERR_INVALID_ARG_VALUE",
        Failure::NotLoggedIn(_) => "ERR_NOT_LOGGED_IN",
        Failure::Session(_) => "ERR_SESSION",
        Failure::GaveUp(_) => "ERR_GAVE_UP",
        Failure::Aborted => "ABORT_ERR",
        Failure::Library(err) => match err {
            Error::InvalidToken { .. } => "ERR_INVALID_TOKEN",
            Error::InsecureUrl { .. } => "ERR_INSECURE_URL",
            Error::InvalidUrl { .. } => "ERR_INVALID_URL",
            Error::Setup { .. } => "ERR_SETUP",
            Error::ReleaseNotFound { .. } => "ERR_RELEASE_NOT_FOUND",
            Error::ReleaseAmbiguous { .. } => "ERR_RELEASE_AMBIGUOUS",
            Error::ReleaseNotSuccessful { .. } => "ERR_RELEASE_NOT_SUCCESSFUL",
            Error::DifferentApplications { .. } => "ERR_DIFFERENT_FLEETS",
            Error::ImageNotReady { .. } => "ERR_IMAGE_NOT_READY",
            Error::FleetNotFound { .. } => "ERR_FLEET_NOT_FOUND",
            Error::FleetHasNoTarget { .. } => "ERR_FLEET_HAS_NO_TARGET",
            Error::ReleaseNotInFleet { .. } => "ERR_RELEASE_NOT_IN_FLEET",
            Error::Unauthorized {
                with_token: true, ..
            } => "ERR_TOKEN_REJECTED",
            Error::Unauthorized { .. } => "ERR_NOT_LOGGED_IN",
            Error::Forbidden { .. } => "ERR_FORBIDDEN",
            Error::NoDeltas { .. } => "ERR_NO_DELTAS",
            Error::Api { .. } => "ERR_API",
            Error::Delta { .. } => "ERR_DELTA_SERVER",
            Error::DeltaFailed { .. } => "ERR_DELTA_FAILED",
            Error::Decode { .. } => "ERR_UNEXPECTED_ANSWER",
            Error::Transport { .. } => "ERR_NETWORK",
            Error::TooLarge { .. } => "ERR_ANSWER_TOO_LARGE",
            Error::Tls { .. } => "ERR_TLS",
            Error::Timeout { .. } => "ERR_TIMEOUT",
            _ => "ERR_BALENA_RELEASE",
        },
    }
}

/// A report as the command's `--output json` writes it (keys in the same
/// order), as JSON text.
pub fn report_json(report: &Report) -> String {
    let text = match report {
        Report::Transition(info) => serde_json::to_string(info),
        Report::Fleet(info) => serde_json::to_string(info),
    };
    // The library's model types serialise without fail (plain data).
    text.unwrap_or_else(|_| "null".to_owned())
}

/// `object` (a JSON object) with `key: raw` appended, `raw` being JSON
/// text: so that a report keeps its keys in their order.
fn with_raw(object: Value, key: &str, raw: &str) -> String {
    let text = object.to_string();
    let head = text.strip_suffix('}').unwrap_or(&text);
    let comma = if head.ends_with('{') { "" } else { "," };
    format!("{head}{comma}{}:{raw}}}", Value::from(key))
}

/// The outcome of a call as the JavaScript side reads it:
/// `{"warnings": [...], "ok": report}` or `{"warnings": [...], "error":
/// {code, message, causes?, status?, lastState?}}`.
pub fn outcome_json(outcome: Result<Report, Failure>, warnings: &[String]) -> String {
    let head = json!({ "warnings": warnings });
    match outcome {
        Ok(report) => with_raw(head, "ok", &report_json(&report)),
        Err(failure) => with_raw(head, "error", &error_json(&failure)),
    }
}

fn error_json(failure: &Failure) -> String {
    let message = match failure {
        Failure::Argument(m) | Failure::NotLoggedIn(m) | Failure::Session(m) => m.clone(),
        Failure::GaveUp(after) => format!(
            "no complete answer from the API or delta server within {} s, the limit of a call \
             without `wait`",
            after.as_secs()
        ),
        Failure::Aborted => "the operation was aborted".to_owned(),
        Failure::Library(err) => err.to_string(),
    };
    let mut out = json!({ "code": code(failure), "message": message });
    let Failure::Library(err) = failure else {
        return out.to_string();
    };
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        causes.push(Value::String(cause.to_string()));
        source = cause.source();
    }
    out["causes"] = Value::Array(causes);
    if let Error::Api { status, .. } = err {
        out["status"] = json!(status);
    }
    let last = match err {
        Error::Timeout { last } => last.as_deref(),
        Error::DeltaFailed { last, .. } => Some(&**last),
        _ => None,
    };
    match last {
        Some(last) => with_raw(out, "lastState", &report_json(last)),
        None => out.to_string(),
    }
}

/// A library event as a plain object: `type` and the event's fields,
/// durations in milliseconds, a state read as the report's JSON.
pub fn event_json(event: &Event) -> String {
    let ms = |d: &Duration| d.as_millis() as u64;
    let value = match event {
        Event::Round { report, attempt } => {
            return with_raw(
                json!({ "type": "round", "attempt": attempt }),
                "report",
                &report_json(report),
            );
        }
        Event::Triggered {
            service_name,
            source_image,
            target_image,
            outcome,
        } => {
            let (outcome, status) = match outcome {
                TriggerOutcome::Accepted => ("accepted", None),
                TriggerOutcome::StillProcessing { status } => ("still_processing", Some(*status)),
                TriggerOutcome::TimedOut => ("timed_out", None),
                TriggerOutcome::Refused { status } => ("refused", Some(*status)),
                _ => ("other", None),
            };
            let mut value = json!({
                "type": "triggered",
                "service_name": service_name,
                "source_image": source_image,
                "target_image": target_image,
                "outcome": outcome,
            });
            if let Some(status) = status {
                value["status"] = json!(status);
            }
            value
        }
        Event::Sleeping { for_ } => json!({ "type": "sleeping", "ms": ms(for_) }),
        Event::Retrying {
            what,
            attempt,
            delay,
            reason,
        } => json!({
            "type": "retrying",
            "what": what,
            "attempt": attempt,
            "delay_ms": ms(delay),
            "reason": reason,
        }),
        Event::DeltaQueryFallback { status } => {
            json!({ "type": "delta_query_fallback", "status": status })
        }
        // Watch events: no watch call is exposed to JavaScript.
        other => json!({ "type": "other", "description": format!("{other:?}") }),
    };
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(dir: &std::path::Path, vars: &[(&str, &str)]) -> Environment {
        let home = dir.join("home");
        let cwd = dir.join("work");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&cwd).unwrap();
        Environment::fake(Some(home), cwd, vars)
    }

    fn request(value: Value) -> Request {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn given_values_win_over_the_session() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let env = env(
            dir,
            &[
                ("BALENARC_API_URL", "https://api.from-env.example"),
                ("BALENA_RELEASE_UPDATE_TOKEN", "fromEnvToken123"),
            ],
        );
        let call = request(json!({
            "kind": "prepare", "from": "900813", "to": "b2cf2db7",
            "token": "givenToken123", "deltaUrl": "http://127.0.0.1:2", "timeout": 60,
            "wait": true,
        }))
        .check(&env)
        .unwrap();
        assert_eq!(
            call.connection.api_url.as_str(),
            "https://api.from-env.example/"
        );
        assert_eq!(call.connection.delta_url.as_str(), "http://127.0.0.1:2/");
        assert_eq!(call.connection.token, "givenToken123");
        assert_eq!(call.timeout, Some(Duration::from_secs(60)));
        assert!(call.wait && call.connection.registry);
        assert_eq!(
            call.target,
            Target::Pair {
                from: "900813".parse().unwrap(),
                to: "b2cf2db7".parse().unwrap()
            }
        );
    }

    #[test]
    fn without_a_token_the_caller_is_not_logged_in() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let env = env(dir, &[]);
        let err = request(json!({"kind": "info", "from": "1", "to": "2"}))
            .check(&env)
            .unwrap_err();
        assert_eq!(code(&err), "ERR_NOT_LOGGED_IN");
        std::fs::create_dir_all(dir.join("home/.balena")).unwrap();
        std::fs::write(dir.join("home/.balena/token"), "fileToken123\n").unwrap();
        let call = request(json!({"kind": "info", "from": "1", "to": "2"}))
            .check(&env)
            .unwrap();
        assert_eq!(call.connection.token, "fileToken123");
    }

    #[test]
    fn a_working_directory_file_is_refused_under_ci_unless_the_caller_chose() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let env = env(
            dir,
            &[("CI", "true"), ("BALENA_RELEASE_UPDATE_TOKEN", "t0ken")],
        );
        std::fs::write(
            dir.join("work/balenarc.yml"),
            "apiUrl: https://evil.example\n",
        )
        .unwrap();
        let err = request(json!({"kind": "info", "from": "1", "to": "2"}))
            .check(&env)
            .unwrap_err();
        assert_eq!(code(&err), "ERR_SESSION");
        let call = request(json!({
            "kind": "info", "from": "1", "to": "2", "apiUrl": "https://api.example"
        }))
        .check(&env)
        .unwrap();
        assert!(call.warnings.is_empty(), "{:?}", call.warnings);
    }

    #[test]
    fn bad_arguments_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let env = env(dir, &[("BALENA_RELEASE_UPDATE_TOKEN", "t0ken")]);
        for (value, fragment) in [
            (
                json!({"kind": "info", "from": "zz", "to": "2"}),
                "source release `zz`",
            ),
            (
                json!({"kind": "info", "to": "2"}),
                "source release is required",
            ),
            (
                json!({"kind": "prepare", "from": "1", "to": "2", "timeout": 0}),
                "positive",
            ),
            (
                json!({"kind": "prepare", "from": "1", "to": "2", "timeout": 90000}),
                "longer than a day",
            ),
            (
                json!({"kind": "fleetInfo", "fleet": "a/b/c"}),
                "fleet `a/b/c`",
            ),
            (
                json!({"kind": "info", "from": "1", "to": "2", "registryMap": [["h", "ftp://x"]]}),
                "registryMap",
            ),
        ] {
            let err = request(value).check(&env).unwrap_err();
            assert_eq!(code(&err), "ERR_INVALID_ARG_VALUE");
            let error: Value = serde_json::from_str(&error_json(&err)).unwrap();
            let message = error["message"].as_str().unwrap().to_owned();
            assert!(message.contains(fragment), "{message}");
        }
    }

    #[test]
    fn errors_carry_code_causes_and_last_state() {
        let out: Value = serde_json::from_str(&outcome_json(
            Err(Failure::Library(Error::Timeout { last: None })),
            &["w".to_owned()],
        ))
        .unwrap();
        assert_eq!(out["error"]["code"], "ERR_TIMEOUT");
        assert_eq!(out["warnings"], json!(["w"]));
        assert!(out["error"].get("lastState").is_none());
        assert_eq!(with_raw(json!({}), "a", "[1]"), r#"{"a":[1]}"#);
        assert_eq!(with_raw(json!({"b": 2}), "a", "{}"), r#"{"b":2,"a":{}}"#);
        let err = Failure::Library(Error::Unauthorized {
            server: balena_release::Server::Api,
            with_token: true,
        });
        assert_eq!(code(&err), "ERR_TOKEN_REJECTED");
    }
}
