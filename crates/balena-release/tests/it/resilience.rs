//! Reliability under injected faults (a steady share of 503s and dropped
//! connections, 429 with `Retry-After`, a delta server in trouble), where
//! the token goes (never to another host through a redirect), and a short
//! soak checking that repeated rounds leak no file descriptors.

use std::time::{Duration, Instant};

use balena_release::{Error, Event, RetryPolicy, Status, TriggerOutcome, UpdateInfo};
use balena_sim::{Fault, FaultRule, Faults, Scope, Server, Simulator, demo};

use crate::support::*;
use balena_sim::canned::{Answer, Canned, DELTAS, RELEASES};

/// The default number of retries, with millisecond pauses.
fn default_count_fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_retries: RetryPolicy::default().max_retries,
        ..fast_retries()
    }
}

fn client_with_retries(sim: &Simulator, retry: RetryPolicy) -> balena_release::Client {
    balena_release::Client::builder()
        .api_url(sim.api_url().parse().expect("the simulator URL parses"))
        .delta_url(sim.delta_url().parse().expect("the simulator URL parses"))
        .token(Some(sim.token().into()))
        .request_timeout(Duration::from_secs(5))
        .retry_policy(retry)
        .build()
        .expect("the client builds")
}

/// About 30 % of all API and delta requests fail: 15 % answer 503, and
/// 18 % of the rest lose their connection.
fn thirty_percent(seed: u64) -> Faults {
    Faults::seeded(seed)
        .with(FaultRule::server_error().rate(0.15))
        .with(FaultRule::reset().rate(0.18))
}

fn faulted(sim: &Simulator) -> usize {
    sim.journal()
        .iter()
        .filter(|e| e.server != Server::Control && !e.faults.is_empty())
        .count()
}

/// What must not change under faults: statuses, sizes and the payload.
fn essentials(info: &UpdateInfo) -> serde_json::Value {
    let services: Vec<_> = info
        .is_produced_by__service_update
        .iter()
        .map(|s| {
            serde_json::json!({
                "name": s.service_name,
                "status": s.status,
                "change": s.change,
                "delta_size": s.produces__image.is_produced_by__delta.as_ref().map(|d| d.size),
            })
        })
        .collect();
    serde_json::json!({
        "overall": info.overall_status,
        "payload": info.estimated_total_payload_size,
        "services": services,
    })
}

#[tokio::test]
async fn a_503_from_the_delta_server_is_an_outage_not_a_build() {
    // 502 and 504 mean "still building" (as devices read them); a 503 did not
    // reach the builder, so it is retried and the build does start.
    let sim =
        start(manual_demo().with_faults(
            Faults::none().with(FaultRule::server_error().scope(Scope::Delta).limit(1)),
        ));
    let events = Events::default();
    let info = client(&sim)
        .prepare_update(
            &id(demo::RELEASE_2),
            &id(demo::RELEASE_3),
            &prepare(false),
            &events.sink(),
        )
        .await
        .unwrap();
    assert_eq!(info.service("api").unwrap().status, Status::Preparing);
    assert_eq!(delta_count(&sim), 2, "the 503 was retried once");
    let outcomes = events.trigger_outcomes();
    assert_eq!(outcomes, [TriggerOutcome::StillProcessing { status: 504 }]);
}

#[tokio::test]
async fn a_lasting_503_from_the_delta_server_means_still_processing() {
    // Every retry answered 503: not the end of the run; the rows decide.
    let sim = start(
        manual_demo()
            .with_faults(Faults::none().with(FaultRule::server_error().scope(Scope::Delta))),
    );
    let events = Events::default();
    let info = client(&sim)
        .prepare_update(
            &id(demo::RELEASE_2),
            &id(demo::RELEASE_3),
            &prepare(false),
            &events.sink(),
        )
        .await
        .expect("a lasting 503 does not end the run");
    assert_eq!(info.service("api").unwrap().status, Status::Pending);
    assert!(delta_count(&sim) > 1, "the 503 was retried");
    let outcomes = events.trigger_outcomes();
    assert_eq!(outcomes, [TriggerOutcome::StillProcessing { status: 503 }]);
}

#[tokio::test]
async fn thirty_percent_of_requests_failing_changes_no_result() {
    let pairs = [
        (demo::RELEASE_1, demo::RELEASE_2),
        (demo::RELEASE_2, demo::RELEASE_3),
        (demo::RELEASE_1, demo::RELEASE_3),
    ];
    // Fixed seeds: a client sending requests one by one meets the same
    // faults on every run.
    for (seed, (from, to)) in [1u64, 2, 3].into_iter().zip(pairs) {
        let (from, to) = (id(from), id(to));
        // The same three calls without faults give the expected results.
        let clean = start(manual_demo());
        let c = client(&clean);
        let want_info = c.get_update_info(&from, &to).await.unwrap();
        let want_prepared = c
            .prepare_update(&from, &to, &prepare(false), &|_| {})
            .await
            .unwrap();
        let want_ready = c
            .prepare_update(
                &from,
                &to,
                &prepare(true),
                &Events::default().sink_advancing(&clean, Duration::from_secs(5)),
            )
            .await
            .unwrap();
        assert_eq!(want_ready.overall_status, Status::Ready);

        let sim = start(manual_demo().with_faults(thirty_percent(seed)));
        let c = client_with_retries(&sim, default_count_fast_retries());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let info = c.get_update_info(&from, &to).await.unwrap();
        assert_eq!(essentials(&info), essentials(&want_info));
        let prepared = c
            .prepare_update(&from, &to, &prepare(false), &|_| {})
            .await
            .unwrap();
        assert_eq!(essentials(&prepared), essentials(&want_prepared));
        let options = balena_release::PrepareOptions {
            deadline: Some(deadline),
            ..prepare(true)
        };
        let ready = c
            .prepare_update(
                &from,
                &to,
                &options,
                &Events::default().sink_advancing(&sim, Duration::from_secs(5)),
            )
            .await
            .unwrap();
        assert_eq!(essentials(&ready), essentials(&want_ready));

        let total = sim.count(Server::Api, None) + sim.count(Server::Delta, None);
        let hit = faulted(&sim);
        assert!(
            hit * 10 >= total && hit * 2 <= total,
            "{hit} of {total} requests faulted: not about 30 %"
        );
    }
}

#[tokio::test]
async fn retry_after_is_waited_out_before_the_retry() {
    // One 429 on the API and one on the delta server, each asking for 1 s.
    let api = start(
        manual_demo().with_faults(
            Faults::none().with(
                FaultRule::rate_limit(1)
                    .scope(Scope::Api)
                    .path_prefix("/v7/release")
                    .limit(1),
            ),
        ),
    );
    let delta =
        start(manual_demo().with_faults(
            Faults::none().with(FaultRule::rate_limit(1).scope(Scope::Delta).limit(1)),
        ));
    let api_events = Events::default();
    let delta_events = Events::default();
    let timed = |sim: &Simulator, events: &Events| {
        let c = client(sim);
        let sink = events.sink();
        async move {
            let started = Instant::now();
            let (from, to) = (id(demo::RELEASE_2), id(demo::RELEASE_3));
            c.prepare_update(&from, &to, &prepare(false), &sink)
                .await
                .unwrap();
            started.elapsed()
        }
    };
    let (api_took, delta_took) =
        tokio::join!(timed(&api, &api_events), timed(&delta, &delta_events));
    for (took, events, sim, server) in [
        (api_took, &api_events, &api, Server::Api),
        (delta_took, &delta_events, &delta, Server::Delta),
    ] {
        assert!(took >= Duration::from_secs(1), "{server:?}: {took:?}");
        let delays: Vec<Duration> = events
            .all()
            .into_iter()
            .filter_map(|e| match e {
                Event::Retrying { delay, reason, .. } => {
                    assert!(reason.contains("429"), "{reason}");
                    Some(delay)
                }
                _ => None,
            })
            .collect();
        assert_eq!(delays.len(), 1, "{server:?}");
        assert!(delays[0] >= Duration::from_secs(1), "{delays:?}");
        let statuses: Vec<u16> = sim
            .journal()
            .iter()
            .filter(|e| e.server == server && e.status == 429)
            .map(|e| e.status)
            .collect();
        assert_eq!(statuses, [429], "{server:?}");
    }
    assert_eq!(api.count(Server::Api, Some("release")), 2);
    assert_eq!(delta.count(Server::Delta, None), 2);
}

#[tokio::test]
async fn a_delta_server_failing_again_and_again_ends_with_its_status() {
    let sim = start(
        manual_demo().with_faults(
            Faults::none().with(
                FaultRule::new(Fault::Error {
                    status: 500,
                    body: Some("internal error".into()),
                })
                .scope(Scope::Delta),
            ),
        ),
    );
    let err = client_with_retries(&sim, default_count_fast_retries())
        .prepare_update(
            &id(demo::RELEASE_1),
            &id(demo::RELEASE_2),
            &prepare(true),
            &|_| {},
        )
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(
            err,
            Error::Delta {
                status: Some(500),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        message.contains("delta server") && message.contains("`500`") && message.contains("main"),
        "{message}"
    );
    assert_eq!(
        delta_count(&sim),
        1 + RetryPolicy::default().max_retries as usize
    );
}

/// A client whose API and delta URLs are `api` and `delta`, with a token.
fn canned_client(api: &str, delta: &str, token: &str) -> balena_release::Client {
    balena_release::Client::builder()
        .api_url(api.parse().unwrap())
        .delta_url(delta.parse().unwrap())
        .token(Some(token.into()))
        .retry_policy(RetryPolicy {
            max_retries: 0,
            ..fast_retries()
        })
        .build()
        .unwrap()
}

const TOKEN: &str = "redirectCanaryToken0123456789abc";

#[tokio::test]
async fn the_token_goes_to_the_api_and_delta_hosts_only() {
    let api = Canned::start();
    api.route("/v7/release", Answer::json(RELEASES))
        .route("/v7/delta", Answer::json(r#"{"d":[]}"#));
    let delta = Canned::start();
    delta.route("/api/v3/delta", Answer::new(504, "text/plain", "building"));
    canned_client(&api.url, &delta.url, TOKEN)
        .prepare_update(&id(1), &id(2), &prepare(false), &|_| {})
        .await
        .unwrap();
    let expected = format!("Bearer {TOKEN}");
    for (name, server) in [("API", &api), ("delta", &delta)] {
        let seen = server.seen();
        assert!(!seen.is_empty(), "no request reached the {name} host");
        for request in seen {
            assert_eq!(
                request.header("authorization"),
                Some(expected.as_str()),
                "{name}: {}",
                request.target
            );
        }
    }
}

#[tokio::test]
async fn a_redirect_to_another_host_carries_no_token() {
    for status in [301, 302, 303, 307, 308] {
        // The other host: same address, another port, and by name.
        let elsewhere = Canned::start();
        elsewhere
            .route("/", Answer::json(RELEASES))
            .route("/v7/delta", Answer::json(DELTAS));
        let port = elsewhere.url.rsplit(':').next().unwrap();
        for target in [
            format!("{}/v7/release", elsewhere.url),
            format!("http://localhost:{port}/v7/release"),
        ] {
            let api = Canned::start();
            api.route("/v7/", Answer::redirect(status, &target));
            let err = canned_client(&api.url, &api.url, TOKEN)
                .get_update_info(&id(1), &id(2))
                .await
                .unwrap_err();
            assert!(
                matches!(&err, Error::Api { status: s, .. } if *s == status),
                "{status} to {target}: {err:?}"
            );
            assert!(err.to_string().contains("not followed"), "{err}");
            assert!(!err.to_string().contains(TOKEN));
        }
        // The delta server redirecting elsewhere: the same.
        let api = Canned::start();
        api.route("/v7/release", Answer::json(RELEASES))
            .route("/v7/delta", Answer::json(r#"{"d":[]}"#));
        let delta = Canned::start();
        delta.route(
            "/api/v3/delta",
            Answer::redirect(status, &format!("{}/api/v3/delta", elsewhere.url)),
        );
        let err = canned_client(&api.url, &delta.url, TOKEN)
            .prepare_update(&id(1), &id(2), &prepare(false), &|_| {})
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Delta { status: Some(s), .. } if *s == status),
            "{status}: {err:?}"
        );
        assert!(
            elsewhere.seen().is_empty(),
            "{status}: a request reached the other host: {:?}",
            elsewhere.seen()
        );
    }
}

#[tokio::test]
async fn a_redirect_within_the_api_host_is_followed() {
    let api = Canned::start();
    api.route("/v7/release", Answer::redirect(307, "/moved/v7/release"))
        .route("/moved/v7/release", Answer::json(RELEASES))
        .route("/v7/delta", Answer::json(DELTAS));
    let info = canned_client(&api.url, &api.url, TOKEN)
        .get_update_info(&id(1), &id(2))
        .await
        .unwrap();
    assert_eq!(info.overall_status, Status::Ready);
    assert!(api.seen().iter().any(|s| s.target.starts_with("/moved/")));
}

fn open_fds() -> Option<usize> {
    std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count())
}

#[tokio::test]
async fn repeated_rounds_leak_no_file_descriptors() {
    let sim = start(manual_demo());
    let c = client(&sim);
    let (from, to) = (id(demo::RELEASE_1), id(demo::RELEASE_2));
    // Warm up: the connection pool fills, lazily created state exists.
    for _ in 0..20 {
        c.get_update_info(&from, &to).await.unwrap();
    }
    let Some(before) = open_fds() else {
        return; // no /proc: nothing to measure on this system
    };
    for _ in 0..300 {
        c.get_update_info(&from, &to).await.unwrap();
    }
    let after = open_fds().unwrap_or(usize::MAX);
    // Other tests of this binary open and close sockets at the same time, so
    // allow their share; a leak here would add hundreds.
    assert!(after <= before + 100, "{before} fds before, {after} after");
}

#[tokio::test]
async fn a_stalled_delta_is_requested_again_once_the_server_drops_it() {
    // The heartbeat stops at once. After 3 minutes the delta no longer counts
    // as building (the npm tool's rule), but the delta server only starts a
    // new build after 5: requests in between start nothing and must not use
    // up the attempts.
    let scenario = manual_demo().with_delta_outcome(
        demo::IMAGE_R2_API,
        demo::IMAGE_R3_API,
        vec![
            balena_sim::Outcome::stalled(),
            balena_sim::Outcome::success(4321),
        ],
    );
    let sim = start(scenario);
    let events = Events::default();
    let info = client(&sim)
        .prepare_update(
            &id(demo::RELEASE_2),
            &id(demo::RELEASE_3),
            &prepare(true),
            &events.sink_advancing(&sim, Duration::from_secs(20)),
        )
        .await
        .unwrap_or_else(|err| panic!("{err}: {:?}", events.triggered()));
    assert_eq!(info.overall_status, Status::Ready);
    let api = info.service("api").unwrap();
    assert_eq!(
        api.produces__image
            .is_produced_by__delta
            .as_ref()
            .map(|d| d.size),
        Some(4321)
    );
    let rows = sim.with_db(|db| db.count("delta"));
    assert_eq!(rows, 4, "two demo rows, the stalled build and the new one");
}

/// An API without a `delta` resource (openBalena answers 404 for it).
fn without_deltas() -> Faults {
    Faults::none().with(
        FaultRule::new(Fault::Error {
            status: 404,
            body: None,
        })
        .scope(Scope::Api)
        .path_prefix("/v7/delta"),
    )
}

#[tokio::test]
async fn an_api_without_deltas_reports_changed_services_pending() {
    let sim = start(manual_demo().with_faults(without_deltas()));
    let client = client(&sim);
    let info = client
        .get_update_info(&id(demo::RELEASE_1), &id(demo::RELEASE_2))
        .await
        .expect("no delta resource is not an error");
    assert_eq!(info.service("main").unwrap().status, Status::Pending);
    assert_eq!(info.service("api").unwrap().status, Status::Ready, "new");
    assert_eq!(
        info.service("proxy").unwrap().status,
        Status::Ready,
        "unchanged"
    );

    let error = client
        .prepare_update(
            &id(demo::RELEASE_1),
            &id(demo::RELEASE_2),
            &prepare(true),
            &|_| {},
        )
        .await
        .unwrap_err();
    assert!(matches!(error, Error::NoDeltas { .. }), "{error}");
    assert!(error.to_string().contains("has no deltas"), "{error}");
    assert_eq!(sim.count(Server::Delta, None), 0, "no delta server to ask");
}
