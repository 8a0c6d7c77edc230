//! The delta server misbehaving: its statuses are read the way devices read
//! them, a refusal is final for its one service, outages are retried, and
//! slow, failing or stalled builds are requested again within bounds.

use std::time::Duration;

use balena_release::{Error, Event, RetryPolicy, Server as Side, Status, TriggerOutcome};
use balena_sim::{Fault, FaultRule, Faults, Scope, Server, demo};

use crate::support::*;

#[tokio::test]
async fn delta_server_statuses() {
    // 502 while building means "still processing", like 504.
    let sim = start(manual_demo().with_running_status(502));
    let events = Events::default();
    prepare_2_to_3(&client(&sim), &prepare(false), &events.sink())
        .await
        .unwrap();
    let outcomes = events.trigger_outcomes();
    assert_eq!(outcomes, [TriggerOutcome::StillProcessing { status: 502 }]);
}

#[tokio::test]
async fn delta_server_errors_name_the_service() {
    let sim = with_fault(error(500, "boom").scope(Scope::Delta));
    let err = prepare_2_to_3(&client(&sim), &prepare(false), &|_| {})
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
    let err = prepare_2_to_3(&client(&sim), &prepare(false), &|_| {})
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
        .registry(false)
        .api_url(sim.api_url().parse().unwrap())
        .delta_url(sim.delta_url().parse().unwrap())
        .token(Some(sim.token().into()))
        .request_timeout(Duration::from_millis(200))
        .retry_policy(fast_retries())
        .build()
        .unwrap();
    let events = Events::default();
    let info = prepare_2_to_3(&c, &prepare(false), &events.sink())
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
async fn a_refused_delta_is_reported_on_its_service_only() {
    for status in [400, 403, 404] {
        let sim = with_fault(error(status, "{\"error\":\"unknown image\"}").scope(Scope::Delta));
        let events = Events::default();
        // RELEASE_2 → RELEASE_3: `main` has a built delta, `api` needs one.
        let info = prepare_2_to_3(&client(&sim), &prepare(false), &events.sink())
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
    let err = prepare_2_to_3(&client(&sim), &prepare(true), &|_| {})
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
        "the delta for service `api` could not be prepared (1 request): the delta server \
         refused the delta (404): Not Found"
    );
    assert_eq!(sim.count(Server::Delta, None), 1, "a refusal is final");
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
    let info = prepare_2_to_3(&client(&sim), &prepare(false), &events.sink())
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
    let info = prepare_2_to_3(&client(&sim), &prepare(false), &events.sink())
        .await
        .expect("a lasting 503 does not end the run");
    assert_eq!(info.service("api").unwrap().status, Status::Pending);
    assert!(delta_count(&sim) > 1, "the 503 was retried");
    let outcomes = events.trigger_outcomes();
    assert_eq!(outcomes, [TriggerOutcome::StillProcessing { status: 503 }]);
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
    let info = prepare_2_to_3(
        &client(&sim),
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
