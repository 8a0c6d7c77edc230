//! Scripted misbehaviour: latency, 5xx answers, 429 with `Retry-After`,
//! dropped connections and stalls, scoped to the API, the delta server or
//! both, and narrowed by path prefix or by what the query contains. Every draw comes from the seed and the request's position in the
//! rule's own sequence, so a sequential client sees the same faults on every run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::rng;

/// Which server a fault rule applies to (`both` is the API and the delta server).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Api,
    Delta,
    /// The API and the delta server (not the registry).
    #[default]
    Both,
    /// The registry (`/v2/…`).
    Registry,
}

/// What a rule does to a request it fires on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Wait `fixed_ms` plus a uniform `0..=jitter_ms` before handling the request.
    Latency {
        fixed_ms: u64,
        #[serde(default)]
        jitter_ms: u64,
    },
    /// Answer `status` (default 503) with `body` (default `Service Unavailable`).
    Error {
        #[serde(default = "default_error_status")]
        status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
    },
    /// Answer 429 with `Retry-After: <retry_after>` (seconds).
    RateLimit { retry_after: u64 },
    /// Drop the connection without an answer.
    Reset,
    /// Hold the request for `ms` then handle it normally, or never answer when `ms` is absent.
    Stall {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ms: Option<u64>,
    },
    /// A flapping fleet: before the request is answered, fleet
    /// `application`'s target release is set to the next of `releases`
    /// (the rule's n-th firing sets `releases[n % len]`), so that polls see
    /// its answer alternate (`[a, b]`) or go back (`[c, b, a]`). Narrow it
    /// with `path_prefix: "/v7/application"` to move the target at each
    /// read of the fleet only.
    Flap {
        application: i64,
        releases: Vec<i64>,
    },
}

fn default_error_status() -> u16 {
    503
}

fn default_rate() -> f64 {
    1.0
}

/// One fault rule: which requests it may hit and how often.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// `api`, `delta` or `both` (default).
    #[serde(default)]
    pub scope: Scope,
    /// Only requests whose path starts with this (e.g. `/v7/delta`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Only requests whose query, percent-decoded as the journal shows it,
    /// contains this (e.g. `/$count(`); a request without a query never matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_contains: Option<String>,
    /// Probability in `[0, 1]` that a matching request is hit (default 1).
    #[serde(default = "default_rate")]
    pub rate: f64,
    /// The first `after` matching requests are never hit.
    #[serde(default)]
    pub after: u64,
    /// The rule fires at most `limit` times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    pub fault: Fault,
}

impl FaultRule {
    /// A rule hitting every request of both servers.
    pub fn new(fault: Fault) -> FaultRule {
        FaultRule {
            scope: Scope::Both,
            path_prefix: None,
            query_contains: None,
            rate: 1.0,
            after: 0,
            limit: None,
            fault,
        }
    }
    pub fn latency(fixed: Duration, jitter: Duration) -> FaultRule {
        FaultRule::new(Fault::Latency {
            fixed_ms: fixed.as_millis() as u64,
            jitter_ms: jitter.as_millis() as u64,
        })
    }
    /// 503 `Service Unavailable` answers.
    pub fn server_error() -> FaultRule {
        FaultRule::new(Fault::Error {
            status: 503,
            body: None,
        })
    }
    pub fn rate_limit(retry_after_secs: u64) -> FaultRule {
        FaultRule::new(Fault::RateLimit {
            retry_after: retry_after_secs,
        })
    }
    pub fn reset() -> FaultRule {
        FaultRule::new(Fault::Reset)
    }
    /// Moves fleet `application`'s target to the next of `releases` at each
    /// request the rule fires on ([`Fault::Flap`]).
    pub fn flap(application: i64, releases: &[i64]) -> FaultRule {
        FaultRule::new(Fault::Flap {
            application,
            releases: releases.to_vec(),
        })
    }
    /// Never answer (`None`) or answer after `for_`.
    pub fn stall(for_: Option<Duration>) -> FaultRule {
        FaultRule::new(Fault::Stall {
            ms: for_.map(|d| d.as_millis() as u64),
        })
    }
    pub fn scope(mut self, scope: Scope) -> FaultRule {
        self.scope = scope;
        self
    }
    pub fn rate(mut self, rate: f64) -> FaultRule {
        self.rate = rate;
        self
    }
    pub fn after(mut self, after: u64) -> FaultRule {
        self.after = after;
        self
    }
    pub fn limit(mut self, limit: u64) -> FaultRule {
        self.limit = Some(limit);
        self
    }
    pub fn path_prefix(mut self, prefix: impl Into<String>) -> FaultRule {
        self.path_prefix = Some(prefix.into());
        self
    }
    /// Narrows the rule to requests whose decoded query contains `text`.
    pub fn query_contains(mut self, text: impl Into<String>) -> FaultRule {
        self.query_contains = Some(text.into());
        self
    }
}

/// The fault configuration: a seed and rules applied in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub rules: Vec<FaultRule>,
}

impl Faults {
    /// No faults.
    pub fn none() -> Faults {
        Faults::default()
    }
    pub fn seeded(seed: u64) -> Faults {
        Faults {
            seed,
            rules: Vec::new(),
        }
    }
    pub fn with(mut self, rule: FaultRule) -> Faults {
        self.rules.push(rule);
        self
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        for (i, rule) in self.rules.iter().enumerate() {
            if !(0.0..=1.0).contains(&rule.rate) {
                return Err(format!(
                    "fault rule {i}: `rate` must be within 0 and 1, got `{}`",
                    rule.rate
                ));
            }
            if let Fault::Error { status, .. } = rule.fault
                && !(400..=599).contains(&status)
            {
                return Err(format!(
                    "fault rule {i}: error `status` must be 400..=599, got `{status}`"
                ));
            }
            if let Fault::Flap { releases, .. } = &rule.fault
                && releases.is_empty()
            {
                return Err(format!(
                    "fault rule {i}: `releases` of a flap must not be empty"
                ));
            }
        }
        Ok(())
    }
}

/// Which server a request went to (as seen by faults and the journal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Server {
    Api,
    Delta,
    Control,
    Registry,
}

/// The outcome of the fault rules for one request.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Decision {
    pub delay: Duration,
    pub terminal: Option<Terminal>,
    /// Short names of the rules that fired, for the journal.
    pub fired: Vec<&'static str>,
    /// A fleet's new target, set before the request is answered
    /// ([`Fault::Flap`]): (application, release).
    pub retarget: Option<(i64, i64)>,
}

#[derive(Debug, PartialEq)]
pub(crate) enum Terminal {
    Error { status: u16, body: String },
    RateLimit { retry_after: u64 },
    Reset,
    StallForever,
}

/// Faults in force, with per-rule counters.
#[derive(Debug)]
pub(crate) struct ActiveFaults {
    pub config: Faults,
    matched: Vec<AtomicU64>,
    fired: Vec<AtomicU64>,
}

impl ActiveFaults {
    pub(crate) fn new(config: Faults) -> ActiveFaults {
        let n = config.rules.len();
        ActiveFaults {
            config,
            matched: (0..n).map(|_| AtomicU64::new(0)).collect(),
            fired: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Runs every rule against one request (control requests never get
    /// here); `query` is percent-decoded, `None` without a `?`.
    pub(crate) fn decide(&self, server: Server, path: &str, query: Option<&str>) -> Decision {
        let mut decision = Decision::default();
        for (i, rule) in self.config.rules.iter().enumerate() {
            let in_scope = match rule.scope {
                Scope::Both => matches!(server, Server::Api | Server::Delta),
                Scope::Api => server == Server::Api,
                Scope::Delta => server == Server::Delta,
                Scope::Registry => server == Server::Registry,
            };
            if !in_scope
                || rule
                    .path_prefix
                    .as_deref()
                    .is_some_and(|p| !path.starts_with(p))
                || rule
                    .query_contains
                    .as_deref()
                    .is_some_and(|text| !query.is_some_and(|q| q.contains(text)))
            {
                continue;
            }
            let n = self.matched[i].fetch_add(1, Ordering::Relaxed);
            if n < rule.after || rng::unit(self.config.seed, i as u64 * 2, n) >= rule.rate {
                continue;
            }
            if let Some(limit) = rule.limit {
                // Counting up even past the limit keeps the check a single atomic step.
                if self.fired[i].fetch_add(1, Ordering::Relaxed) >= limit {
                    continue;
                }
            }
            match &rule.fault {
                Fault::Latency {
                    fixed_ms,
                    jitter_ms,
                } => {
                    let jitter = if *jitter_ms == 0 {
                        0
                    } else {
                        (rng::unit(self.config.seed, i as u64 * 2 + 1, n) * (*jitter_ms + 1) as f64)
                            as u64
                    };
                    decision.delay += Duration::from_millis(fixed_ms + jitter.min(*jitter_ms));
                    decision.fired.push("latency");
                }
                Fault::Stall { ms: Some(ms) } => {
                    decision.delay += Duration::from_millis(*ms);
                    decision.fired.push("stall");
                }
                Fault::Flap {
                    application,
                    releases,
                } => {
                    // validate() refuses an empty list; none moves nothing.
                    let at = n % releases.len().max(1) as u64;
                    if let Some(next) = usize::try_from(at).ok().and_then(|at| releases.get(at)) {
                        decision.retarget = Some((*application, *next));
                        decision.fired.push("flap");
                    }
                }
                terminal if decision.terminal.is_none() => {
                    let (name, t) = match terminal {
                        Fault::Error { status, body } => (
                            "error",
                            Terminal::Error {
                                status: *status,
                                body: body
                                    .clone()
                                    .unwrap_or_else(|| "Service Unavailable".to_owned()),
                            },
                        ),
                        Fault::RateLimit { retry_after } => (
                            "rate_limit",
                            Terminal::RateLimit {
                                retry_after: *retry_after,
                            },
                        ),
                        Fault::Reset => ("reset", Terminal::Reset),
                        _ => ("stall", Terminal::StallForever),
                    };
                    decision.fired.push(name);
                    decision.terminal = Some(t);
                }
                _ => {}
            }
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(faults: &Faults, n: usize) -> Vec<bool> {
        let active = ActiveFaults::new(faults.clone());
        (0..n)
            .map(|_| {
                active
                    .decide(Server::Api, "/v7/release", None)
                    .terminal
                    .is_some()
            })
            .collect()
    }

    #[test]
    fn error_rate_is_deterministic_for_a_seed_and_close_to_the_rate() {
        let faults = Faults::seeded(42).with(FaultRule::server_error().rate(0.3));
        let a = errors(&faults, 2000);
        assert_eq!(a, errors(&faults, 2000));
        let hits = a.iter().filter(|x| **x).count();
        assert!((450..750).contains(&hits), "{hits}");
        let other = errors(
            &Faults::seeded(43).with(FaultRule::server_error().rate(0.3)),
            2000,
        );
        assert_ne!(a, other);
    }

    #[test]
    fn scope_after_and_limit_are_honoured() {
        let active = ActiveFaults::new(
            Faults::seeded(1).with(
                FaultRule::rate_limit(7)
                    .scope(Scope::Delta)
                    .after(1)
                    .limit(2),
            ),
        );
        assert_eq!(
            active.decide(Server::Api, "/v7/release", None).terminal,
            None
        );
        let seen: Vec<_> = (0..4)
            .map(|_| active.decide(Server::Delta, "/api/v3/delta", None).terminal)
            .collect();
        assert_eq!(
            seen,
            vec![
                None,
                Some(Terminal::RateLimit { retry_after: 7 }),
                Some(Terminal::RateLimit { retry_after: 7 }),
                None
            ]
        );
    }

    #[test]
    fn latency_adds_up_and_jitter_stays_within_bounds() {
        let active = ActiveFaults::new(
            Faults::seeded(9)
                .with(FaultRule::latency(
                    Duration::from_millis(100),
                    Duration::from_millis(50),
                ))
                .with(FaultRule::reset().path_prefix("/v7/delta")),
        );
        for _ in 0..100 {
            let d = active.decide(Server::Api, "/v7/release", None);
            assert!(d.delay >= Duration::from_millis(100) && d.delay <= Duration::from_millis(150));
            assert_eq!(d.terminal, None);
        }
        assert_eq!(
            active.decide(Server::Api, "/v7/delta", Some("x")).terminal,
            Some(Terminal::Reset)
        );
    }

    #[test]
    fn query_contains_narrows_a_rule_to_the_queries_that_hold_the_text() {
        let active = ActiveFaults::new(
            Faults::none().with(
                FaultRule::new(Fault::Error {
                    status: 400,
                    body: None,
                })
                .path_prefix("/v7/release")
                .query_contains("/$count(")
                .limit(2),
            ),
        );
        let count = "$select=id&$expand=is_running_on__device/$count($filter=x eq null)";
        assert_eq!(
            active.decide(Server::Api, "/v7/release", None).terminal,
            None
        );
        assert_eq!(
            active
                .decide(Server::Api, "/v7/release", Some("$select=id"))
                .terminal,
            None
        );
        assert_eq!(
            active
                .decide(Server::Api, "/v7/application", Some(count))
                .terminal,
            None,
            "the path prefix still applies"
        );
        let refused = Some(Terminal::Error {
            status: 400,
            body: "Service Unavailable".into(),
        });
        assert_eq!(
            active
                .decide(Server::Api, "/v7/release", Some(count))
                .terminal,
            refused
        );
        // Requests the rule does not match leave its counters alone.
        assert_eq!(
            active
                .decide(Server::Api, "/v7/release", Some("$count"))
                .terminal,
            None
        );
        assert_eq!(
            active
                .decide(Server::Api, "/v7/release", Some(count))
                .terminal,
            refused
        );
        assert_eq!(
            active
                .decide(Server::Api, "/v7/release", Some(count))
                .terminal,
            None,
            "limit reached"
        );
        let parsed: FaultRule = serde_json::from_str(
            r#"{"scope":"api","query_contains":"/$count(","fault":{"type":"error","status":400}}"#,
        )
        .unwrap();
        assert_eq!(parsed.query_contains.as_deref(), Some("/$count("));
    }

    #[test]
    fn a_flap_moves_the_target_through_its_releases_in_turn() {
        let active = ActiveFaults::new(
            Faults::none().with(
                FaultRule::flap(7, &[10, 11])
                    .scope(Scope::Api)
                    .path_prefix("/v7/application"),
            ),
        );
        let seen: Vec<_> = (0..5)
            .map(|_| {
                let d = active.decide(Server::Api, "/v7/application", Some("$select=id"));
                assert_eq!(d.terminal, None);
                d.retarget
            })
            .collect();
        let expected = [10, 11, 10, 11, 10].map(|r| Some((7, r)));
        assert_eq!(seen, expected);
        assert_eq!(
            active.decide(Server::Api, "/v7/release", None).retarget,
            None
        );
        let parsed: FaultRule = serde_json::from_str(
            r#"{"scope":"api","fault":{"type":"flap","application":7,"releases":[3,2,1]}}"#,
        )
        .unwrap();
        assert_eq!(parsed.fault, FaultRule::flap(7, &[3, 2, 1]).fault);
        assert!(
            Faults::none()
                .with(FaultRule::flap(7, &[]))
                .validate()
                .is_err()
        );
    }

    #[test]
    fn rules_parse_from_json_and_bad_rates_are_refused() {
        let f: Faults = serde_json::from_str(
            r#"{"seed":5,"rules":[{"scope":"api","rate":0.5,"fault":{"type":"error","status":500}},
                {"fault":{"type":"stall"}}]}"#,
        )
        .unwrap();
        assert_eq!(
            f.rules[0].fault,
            Fault::Error {
                status: 500,
                body: None
            }
        );
        assert_eq!(f.rules[1].fault, Fault::Stall { ms: None });
        assert!(
            Faults::seeded(1)
                .with(FaultRule::reset().rate(1.5))
                .validate()
                .is_err()
        );
    }
}
