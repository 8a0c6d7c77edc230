//! Misbehaving servers: transient failures are retried within bounds,
//! permanent ones fail at once, odd answers become decode errors, and the
//! delta server's statuses are read the way devices read them.

use std::time::Duration;

use balena_release::{Error, Event, RetryPolicy, Server as Side, Status, TriggerOutcome};
use balena_sim::{Fault, FaultRule, Faults, Scope, Server, demo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

fn with_fault(rule: FaultRule) -> balena_sim::Simulator {
    start(manual_demo().with_faults(Faults::none().with(rule)))
}

fn error(status: u16, body: &str) -> FaultRule {
    FaultRule::new(Fault::Error {
        status,
        body: Some(body.into()),
    })
}

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

/// A server answering every request with the same raw HTTP response.
async fn canned_server(response: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 8192];
            let _ = stream.read(&mut buf).await;
            let _ = stream.write_all(response.as_bytes()).await;
        }
    });
    format!("http://{addr}")
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
async fn delta_server_statuses() {
    // 502 while building means "still processing", like 504.
    let sim = start(manual_demo().with_running_status(502));
    let events = Events::default();
    client(&sim)
        .prepare_update(
            &id(demo::RELEASE_2),
            &id(demo::RELEASE_3),
            &prepare(false),
            &events.sink(),
        )
        .await
        .unwrap();
    let outcomes = events.trigger_outcomes();
    assert_eq!(outcomes, [TriggerOutcome::StillProcessing { status: 502 }]);
}

#[tokio::test]
async fn delta_server_errors_name_the_service() {
    let sim = with_fault(error(500, "boom").scope(Scope::Delta));
    let err = client(&sim)
        .prepare_update(
            &id(demo::RELEASE_2),
            &id(demo::RELEASE_3),
            &prepare(false),
            &|_| {},
        )
        .await
        .unwrap_err();
    match &err {
        Error::Delta {
            service,
            status: Some(500),
            message,
        } => {
            assert_eq!(service, "api");
            assert_eq!(message, "boom");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.count(Server::Delta, None), 4);

    let sim = with_fault(error(401, "Unauthorized").scope(Scope::Delta));
    let err = client(&sim)
        .prepare_update(
            &id(demo::RELEASE_2),
            &id(demo::RELEASE_3),
            &prepare(false),
            &|_| {},
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Unauthorized {
                server: Side::Delta,
                with_token: true
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_slow_delta_server_is_not_fatal() {
    let sim = with_fault(FaultRule::stall(None).scope(Scope::Delta));
    let c = balena_release::Client::builder()
        .api_url(sim.api_url().parse().unwrap())
        .delta_url(sim.delta_url().parse().unwrap())
        .token(Some(sim.token().into()))
        .request_timeout(Duration::from_millis(200))
        .retry_policy(fast_retries())
        .build()
        .unwrap();
    let events = Events::default();
    let info = c
        .prepare_update(
            &id(demo::RELEASE_2),
            &id(demo::RELEASE_3),
            &prepare(false),
            &events.sink(),
        )
        .await
        .unwrap();
    assert_eq!(
        info.service("api").unwrap().status,
        balena_release::Status::Pending
    );
    assert!(events.all().iter().any(|e| matches!(
        e,
        Event::Triggered {
            outcome: TriggerOutcome::TimedOut,
            ..
        }
    )));
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
    client(&sim)
        .prepare_update(
            &id(demo::RELEASE_2),
            &id(demo::RELEASE_3),
            &prepare(false),
            &events.sink(),
        )
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
async fn redirects_to_other_hosts_are_not_followed() {
    let url = canned_server(
        "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.2:9/steal\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
            .to_owned(),
    )
    .await;
    let c = balena_release::Client::builder()
        .api_url(url.parse().unwrap())
        .delta_url(url.parse().unwrap())
        .token(Some("Yq8RaOPtlDTy5qf0bVaiWRrKNGqSvOEN".into()))
        .retry_policy(RetryPolicy {
            max_retries: 0,
            ..fast_retries()
        })
        .build()
        .unwrap();
    let err = c
        .get_update_info(&id(demo::RELEASE_1), &id(demo::RELEASE_2))
        .await
        .unwrap_err();
    match &err {
        Error::Api {
            status: 302,
            message,
            ..
        } => {
            assert!(
                message.contains("`http://127.0.0.2:9/steal` not followed"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_api_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let c = balena_release::Client::builder()
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

#[tokio::test]
async fn a_refused_delta_is_reported_on_its_service_only() {
    for status in [400, 403, 404] {
        let sim = with_fault(error(status, "{\"error\":\"unknown image\"}").scope(Scope::Delta));
        let events = Events::default();
        // RELEASE_2 → RELEASE_3: `main` has a built delta, `api` needs one.
        let info = client(&sim)
            .prepare_update(
                &id(demo::RELEASE_2),
                &id(demo::RELEASE_3),
                &prepare(false),
                &events.sink(),
            )
            .await
            .unwrap_or_else(|err| panic!("{status}: {err}"));
        assert_eq!(sim.count(Server::Delta, None), 1);
        assert_eq!(info.service("main").unwrap().status, Status::Ready);
        let api = info.service("api").unwrap();
        assert_eq!(api.status, Status::Pending);
        let failure = api.delta_failure.clone().expect("the refusal is reported");
        assert_eq!(
            failure.error_message.as_deref(),
            Some(format!("delta server refused the delta ({status}): unknown image").as_str())
        );
        assert_eq!(failure.http_status, Some(status));
        assert_eq!(failure.delta_id, None);
        assert_eq!(failure.attempts, 1);
        let outcomes = events.trigger_outcomes();
        assert_eq!(outcomes, [TriggerOutcome::Refused { status }]);
        let json = serde_json::to_value(&info).unwrap();
        let api = &json["is_produced_by__service_update"][0];
        assert_eq!(api["service_name"], "api");
        assert_eq!(api["delta_failure"]["http_status"], status);
        assert!(api["delta_failure"].get("delta_id").is_none(), "{api}");
    }
}

#[tokio::test]
async fn a_refused_delta_is_not_asked_again_and_ends_the_wait_once_the_rest_is_ready() {
    // RELEASE_2 -> RELEASE_3: `main` already has a delta, `api` needs one.
    let sim = with_fault(error(404, "Not Found").scope(Scope::Delta));
    let err = client(&sim)
        .prepare_update(
            &id(demo::RELEASE_2),
            &id(demo::RELEASE_3),
            &prepare(true),
            &|_| {},
        )
        .await
        .unwrap_err();
    match &err {
        Error::DeltaFailed {
            service,
            attempts: 1,
            last,
            ..
        } => {
            assert_eq!(service, "api");
            let failure = last
                .transition()
                .unwrap()
                .service("api")
                .unwrap()
                .delta_failure
                .as_ref()
                .unwrap();
            assert_eq!(failure.http_status, Some(404));
            assert_eq!(failure.attempts, 1);
            assert_eq!(
                last.transition().unwrap().service("main").unwrap().status,
                Status::Ready
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "the delta for service `api` could not be prepared (1 request(s)): the delta server \
         refused the delta (404): Not Found"
    );
    assert_eq!(sim.count(Server::Delta, None), 1, "a refusal is final");
}
