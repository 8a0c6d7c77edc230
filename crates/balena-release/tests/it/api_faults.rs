//! The API misbehaving: transient failures are retried within bounds (also
//! under a steady 30 % of failed requests), permanent ones fail at once, odd
//! answers become decode errors naming the JSON path, unreachable and
//! unknown hosts, an API without a `delta` resource, and no descriptor leaks
//! over repeated rounds.

use std::time::{Duration, Instant};

use balena_release::{Error, Event, Server as Side, Status, UpdateInfo};
use balena_sim::{Fault, FaultRule, Faults, Scope, Server, Simulator, demo};

use crate::support::*;

#[tokio::test]
async fn transient_api_failures_are_retried() {
    let sim = with_fault(
        error(503, "Service Unavailable")
            .scope(Scope::Api)
            .path_prefix("/v7/release")
            .limit(2),
    );
    let info = client(&sim)
        .get_update_info(&id(demo::RELEASE_1), &id(demo::RELEASE_2))
        .await
        .unwrap();
    assert_eq!(info.produces__release.id, u(demo::RELEASE_2));
    assert_eq!(sim.count(Server::Api, Some("release")), 3);
}

#[tokio::test]
async fn describe_reports_its_retries() {
    let sim = with_fault(
        error(503, "Service Unavailable")
            .scope(Scope::Api)
            .path_prefix("/v7/release")
            .limit(2),
    );
    let events = Events::default();
    let info = client(&sim)
        .get_update_info_with_events(&id(demo::RELEASE_1), &id(demo::RELEASE_2), &events.sink())
        .await
        .unwrap();
    assert_eq!(info.produces__release.id, u(demo::RELEASE_2));
    let retries: Vec<_> = events
        .all()
        .into_iter()
        .filter_map(|e| match e {
            Event::Retrying {
                what,
                attempt,
                reason,
                ..
            } => Some((what, attempt, reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        retries,
        [1, 2].map(|n| (
            "release".to_owned(),
            n,
            "`503` Service Unavailable".to_owned()
        ))
    );
    assert!(
        events
            .all()
            .iter()
            .all(|e| !matches!(e, Event::Round { .. })),
        "describe sends no rounds"
    );

    // A fleet the same way (its device rows are read with retries).
    let sim = with_fault(
        error(503, "Service Unavailable")
            .scope(Scope::Api)
            .path_prefix("/v7/device")
            .limit(1),
    );
    let events = Events::default();
    client(&sim)
        .get_fleet_update_info_with_events(
            &balena_release::FleetRef::Id(u(demo::APP_ID)),
            None,
            &events.sink(),
        )
        .await
        .unwrap();
    let retried: Vec<_> = events
        .all()
        .into_iter()
        .filter_map(|e| match e {
            Event::Retrying { what, .. } => Some(what),
            _ => None,
        })
        .collect();
    assert_eq!(retried, ["device"]);
}

#[tokio::test]
async fn retries_are_bounded() {
    let sim = with_fault(
        error(503, "Service Unavailable")
            .scope(Scope::Api)
            .path_prefix("/v7/release"),
    );
    let err = client(&sim)
        .get_update_info(&id(demo::RELEASE_1), &id(demo::RELEASE_2))
        .await
        .unwrap_err();
    match &err {
        Error::Api {
            status: 503,
            message,
            url,
        } => {
            assert_eq!(message, "Service Unavailable");
            assert!(url.contains("/v7/release?"), "{url}");
        }
        other => panic!("{other:?}"),
    }
    // The first attempt and three retries.
    assert_eq!(sim.count(Server::Api, Some("release")), 4);
}

#[tokio::test]
async fn a_dropped_connection_is_retried() {
    let sim = with_fault(
        FaultRule::reset()
            .scope(Scope::Api)
            .path_prefix("/v7/delta")
            .limit(1),
    );
    let info = client(&sim)
        .get_update_info(&id(demo::RELEASE_2), &id(demo::RELEASE_3))
        .await
        .unwrap();
    assert_eq!(
        info.service("main").unwrap().status,
        balena_release::Status::Ready
    );
    assert_eq!(sim.count(Server::Api, Some("delta")), 2);
}

#[tokio::test]
async fn a_long_retry_after_is_not_cut_short() {
    // Retry-After beyond what the policy accepts: fail at once rather than
    // retrying early.
    let sim = with_fault(
        FaultRule::rate_limit(30)
            .scope(Scope::Api)
            .path_prefix("/v7/release"),
    );
    let err = client(&sim)
        .get_update_info(&id(demo::RELEASE_1), &id(demo::RELEASE_2))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Api { status: 429, .. }), "{err:?}");
    assert!(err.to_string().contains("rate limited"), "{err}");
    assert_eq!(sim.count(Server::Api, Some("release")), 1);
}

#[tokio::test]
async fn permanent_failures_are_not_retried() {
    let sim = with_fault(
        error(404, "Not Found")
            .scope(Scope::Api)
            .path_prefix("/v7/release"),
    );
    let err = client(&sim)
        .get_update_info(&id(demo::RELEASE_1), &id(demo::RELEASE_2))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Api { status: 404, .. }), "{err:?}");
    assert!(err.to_string().contains("check the API URL"), "{err}");
    assert_eq!(sim.count(Server::Api, Some("release")), 1);

    let sim = with_fault(error(403, "{\"error\":{\"text\":\"not allowed\"}}").scope(Scope::Api));
    let err = client(&sim)
        .get_update_info(&id(demo::RELEASE_1), &id(demo::RELEASE_2))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not allowed"), "{err}");
    assert!(matches!(err, Error::Forbidden { .. }), "{err:?}");
}

fn http_200(content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

async fn answer_error(response: String) -> Error {
    let url = canned_server(response).await;
    let c = balena_release::Client::builder()
        .registry(false)
        .api_url(url.parse().unwrap())
        .delta_url(url.parse().unwrap())
        .retry_policy(fast_retries())
        .build()
        .unwrap();
    c.get_update_info(&id(demo::RELEASE_1), &id(demo::RELEASE_2))
        .await
        .unwrap_err()
}

#[tokio::test]
async fn bad_answers_are_decode_errors_with_a_path() {
    let cases: [(String, &str, &str); 7] = [
        (
            http_200("text/html", "<html><title>Portal</title></html>"),
            "",
            "`text/html`",
        ),
        (http_200("application/json", ""), "", "the body is empty"),
        (
            http_200("application/json", "{\"d\":[{\"id\":1,"),
            "",
            "ends early",
        ),
        (
            http_200("application/json", "{\"rows\":[]}"),
            "",
            "missing field `d`",
        ),
        (
            http_200("application/json", "{\"d\":[{\"id\":\"x\"}]}"),
            "d[0].id",
            "invalid type",
        ),
        (
            http_200(
                "application/json",
                "{\"d\":[{\"id\":184467440737095516160}]}",
            ),
            "d[0].id",
            "",
        ),
        (
            http_200(
                "application/json",
                "{\"d\":[{\"id\":1,\"commit\":\"a\",\"status\":\"success\",\
                 \"belongs_to__application\":{\"__id\":1},\"release_image\":[{\"image\":[{\
                 \"id\":2,\"status\":\"success\",\"content_hash\":null,\"image_size\":-4,\
                 \"is_stored_at__image_location\":\"r\",\"is_a_build_of__service\":[\
                 {\"service_name\":\"main\"}]}]}]}]}",
            ),
            "d[0].release_image[0].image[0].image_size",
            "negative",
        ),
    ];
    for (response, want_path, want_message) in cases {
        match answer_error(response).await {
            Error::Decode { path, cause, .. } => {
                let message = cause.message();
                if !want_path.is_empty() {
                    assert_eq!(path, want_path, "{message}");
                }
                assert!(message.contains(want_message), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn retry_events_are_reported() {
    let sim = with_fault(
        error(503, "busy")
            .scope(Scope::Api)
            .path_prefix("/v7/delta")
            .after(1)
            .limit(1),
    );
    let events = Events::default();
    prepare_2_to_3(&client(&sim), &prepare(false), &events.sink())
        .await
        .unwrap();
    let retries: Vec<(String, u32)> = events
        .all()
        .into_iter()
        .filter_map(|e| match e {
            Event::Retrying {
                what,
                attempt,
                reason,
                ..
            } => {
                assert!(reason.contains("503"), "{reason}");
                Some((what, attempt))
            }
            _ => None,
        })
        .collect();
    assert_eq!(retries, [("delta".to_owned(), 1)]);
}

#[tokio::test]
async fn an_unreachable_api_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let c = balena_release::Client::builder()
        .registry(false)
        .api_url(url.parse().unwrap())
        .delta_url(url.parse().unwrap())
        .retry_policy(fast_retries())
        .build()
        .unwrap();
    let err = c
        .get_update_info(&id(demo::RELEASE_1), &id(demo::RELEASE_2))
        .await
        .unwrap_err();
    match &err {
        Error::Transport {
            server: Side::Api,
            url: shown,
            ..
        } => {
            assert!(shown.starts_with(&url), "{shown}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with("could not get an answer from the API"),
        "{err}"
    );
}

#[tokio::test]
async fn an_unknown_host_fails_at_once_with_a_short_message() {
    // `.invalid` never resolves (RFC 6761).
    let c = balena_release::Client::builder()
        .registry(false)
        .api_url("https://api.does-not-exist.invalid".parse().unwrap())
        .delta_url("https://delta.does-not-exist.invalid".parse().unwrap())
        .request_timeout(Duration::from_secs(5))
        .retry_policy(fast_retries())
        .build()
        .unwrap();
    let events = Events::default();
    let err = c
        .prepare_update(
            &id(demo::RELEASE_1),
            &id(demo::RELEASE_2),
            &prepare(false),
            &events.sink(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Transport {
                server: Side::Api,
                ..
            }
        ),
        "{err:?}"
    );
    let retries = events
        .all()
        .into_iter()
        .filter(|e| matches!(e, Event::Retrying { .. }))
        .count();
    assert_eq!(retries, 0, "an unknown host was retried: {err}");
    let message = err.to_string();
    assert_eq!(
        message
            .matches("https://api.does-not-exist.invalid/v7/release")
            .count(),
        1,
        "{message}"
    );
    assert!(
        !message.contains('?') && !message.contains("$filter"),
        "{message}"
    );
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

/// An API without a `delta` resource (openBalena answers 404 for it).
/// An API without a `delta` resource, answering as `status` (pinejs since
/// 15.4.4: 401 with an empty body; older ones: 404).
fn without_deltas(status: u16) -> Faults {
    Faults::none().with(
        FaultRule::new(Fault::Error { status, body: None })
            .scope(Scope::Api)
            .path_prefix("/v7/delta"),
    )
}

#[tokio::test]
async fn an_api_without_deltas_reports_changed_services_pending() {
    for status in [401, 404] {
        let sim = start(manual_demo().with_faults(without_deltas(status)));
        let client = client(&sim);
        let info = client
            .get_update_info(&id(demo::RELEASE_1), &id(demo::RELEASE_2))
            .await
            .unwrap_or_else(|e| panic!("{status}: no delta resource is not an error: {e}"));
        assert_eq!(info.service("main").unwrap().status, Status::Pending);
        assert_eq!(info.service("main").unwrap().delta_failure, None);
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
        assert!(matches!(error, Error::NoDeltas { .. }), "{status}: {error}");
        assert!(error.to_string().contains("has no deltas"), "{error}");
        assert_eq!(sim.count(Server::Delta, None), 0, "no delta server to ask");
    }
}

#[tokio::test]
async fn a_401_for_the_releases_is_still_a_refused_token() {
    let sim = start(
        manual_demo().with_faults(
            Faults::none().with(
                FaultRule::new(Fault::Error {
                    status: 401,
                    body: None,
                })
                .scope(Scope::Api),
            ),
        ),
    );
    let error = client(&sim)
        .get_update_info(&id(demo::RELEASE_1), &id(demo::RELEASE_2))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Unauthorized {
                server: Side::Api,
                with_token: true
            }
        ),
        "{error}"
    );
}

/// The first `/v7/delta` request (the one-query lookup) fails as `fault`.
fn first_delta_query(fault: FaultRule) -> Simulator {
    start(manual_demo().with_faults(
        Faults::none().with(fault.scope(Scope::Api).path_prefix("/v7/delta").limit(1)),
    ))
}

fn is_lookup_by_release(query: &str) -> bool {
    query.contains("/any(")
}

#[tokio::test]
async fn any_failure_of_the_one_query_lookup_but_429_falls_back_at_once() {
    let failures = [
        (error(400, "\"Malformed url\""), Some(400)),
        (
            FaultRule::new(Fault::Error {
                status: 401,
                body: None,
            }),
            Some(401),
        ),
        (error(403, "\"forbidden\""), Some(403)),
        (error(500, "\"untranslatable\""), Some(500)),
        (error(503, "\"busy\""), Some(503)),
        (FaultRule::stall(None), None),
    ];
    for (fault, status) in failures {
        let sim = first_delta_query(fault);
        // Default retries; the one-query lookup gives up at the request
        // timeout at the latest.
        let c = balena_release::Client::builder()
            .registry(false)
            .api_url(sim.api_url().parse().unwrap())
            .delta_url(sim.delta_url().parse().unwrap())
            .token(Some(sim.token().into()))
            .request_timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let events = Events::default();
        let info = prepare_2_to_3(&c, &prepare(false), &events.sink())
            .await
            .unwrap_or_else(|e| panic!("{status:?}: {e}"));
        assert_eq!(
            info.service("main").unwrap().status,
            Status::Ready,
            "{status:?}"
        );
        let queries: Vec<String> = api_requests(&sim, "delta")
            .into_iter()
            .map(|d| d.query.unwrap_or_default())
            .collect();
        assert!(is_lookup_by_release(&queries[0]), "{status:?}: {queries:?}");
        assert!(
            queries[1..].iter().all(|q| !is_lookup_by_release(q)),
            "{status:?}: sent once, never again: {queries:?}"
        );
        assert!(
            events
                .all()
                .iter()
                .any(|e| matches!(e, Event::DeltaQueryFallback { status: s } if *s == status)),
            "{status:?}: no fallback event"
        );
    }
}

#[tokio::test]
async fn a_rate_limited_one_query_lookup_is_retried_not_abandoned() {
    let sim = first_delta_query(FaultRule::rate_limit(0));
    let info = client(&sim)
        .get_update_info(&id(demo::RELEASE_2), &id(demo::RELEASE_3))
        .await
        .unwrap();
    assert_eq!(info.service("main").unwrap().status, Status::Ready);
    let queries: Vec<String> = api_requests(&sim, "delta")
        .into_iter()
        .map(|d| d.query.unwrap_or_default())
        .collect();
    assert_eq!(queries.len(), 2, "{queries:?}");
    assert!(
        queries.iter().all(|q| is_lookup_by_release(q)),
        "{queries:?}"
    );
}

#[tokio::test]
async fn a_408_is_retried_like_a_busy_server() {
    for scope in [Scope::Api, Scope::Delta] {
        let sim = with_fault(error(408, "\"Request Timeout\"").limit(1).scope(scope));
        let info = prepare_2_to_3(&client(&sim), &prepare(false), &|_| {})
            .await
            .unwrap_or_else(|e| panic!("{scope:?}: {e}"));
        assert_eq!(info.service("main").unwrap().status, Status::Ready);
        let api = info.service("api").unwrap();
        assert_eq!(api.delta_failure, None, "{scope:?}: not a refusal");
    }
}

#[tokio::test]
async fn a_wait_outlasts_an_api_outage() {
    // After the first round (two requests), the API answers 503 to the
    // next 12 requests: more than the retries of any one request.
    let sim = start(
        manual_demo().with_faults(
            Faults::none().with(
                FaultRule::server_error()
                    .scope(Scope::Api)
                    .after(2)
                    .limit(12),
            ),
        ),
    );
    let events = Events::default();
    let info = prepare_2_to_3(
        &client(&sim),
        &prepare(true),
        &events.sink_advancing(&sim, Duration::from_secs(60)),
    )
    .await
    .expect("the wait goes on through the outage");
    assert_eq!(info.overall_status, Status::Ready);
    assert!(
        faulted(&sim) >= 12,
        "the outage happened: {}",
        faulted(&sim)
    );
}

#[tokio::test]
async fn a_tls_failure_is_not_retried() {
    // A plain HTTP server where TLS is expected.
    let api = balena_sim::canned::Canned::start();
    let https = api.url.replacen("http://", "https://", 1);
    let c = balena_release::Client::builder()
        .api_url(https.parse().unwrap())
        .delta_url(https.parse().unwrap())
        .token(Some("an-api-key".into()))
        .retry_policy(fast_retries())
        .build()
        .unwrap();
    let events = Events::default();
    let err = prepare_2_to_3(&c, &prepare(false), &events.sink())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
    let retries = events
        .all()
        .iter()
        .filter(|e| matches!(e, Event::Retrying { .. }))
        .count();
    assert_eq!(retries, 0, "{err}");
}
