//! `prepare_update`: triggering, re-reading, waiting, re-triggering failed
//! and stale deltas, and the hard deadline.

use std::time::Duration;

use balena_release::{Change, Error, Event, PrepareOptions, Status};
use balena_sim::{Fault, FaultRule, Faults, Outcome, Scope, Server, demo};
use tokio::time::Instant;

use crate::support::*;

#[tokio::test]
async fn prepare_triggers_the_pending_delta_and_reports_the_state_after() {
    let sim = start(manual_demo());
    let events = Events::default();
    let info = prepare_2_to_3(&client(&sim), &prepare(false), &events.sink())
        .await
        .unwrap();
    assert_eq!(
        events.triggered(),
        [(
            "api".to_owned(),
            u(demo::IMAGE_R2_API),
            u(demo::IMAGE_R3_API)
        )]
    );
    // Read again after triggering: the build is running now.
    assert_eq!(info.service("api").unwrap().status, Status::Preparing);
    assert_eq!(info.overall_status, Status::Preparing);
    assert_eq!(delta_count(&sim), 1);
    // Round 1 (release + deltas), then one delta read.
    assert_eq!(api_requests(&sim, "release").len(), 1);
    assert_eq!(api_requests(&sim, "delta").len(), 2);
    let rounds: Vec<u32> = events
        .all()
        .into_iter()
        .filter_map(|e| match e {
            Event::Round { attempt, .. } => Some(attempt),
            _ => None,
        })
        .collect();
    assert_eq!(rounds, [1, 2]);
}

#[tokio::test]
async fn a_ready_update_triggers_nothing() {
    let sim = start(manual_demo());
    let info = client(&sim)
        .prepare_update(
            &id(demo::RELEASE_3),
            &id(demo::RELEASE_3),
            &prepare(true),
            &|_| {},
        )
        .await
        .unwrap();
    assert_eq!(info.overall_status, Status::Ready);
    assert_eq!(delta_count(&sim), 0);
    assert_eq!(api_count(&sim), 2);
}

#[tokio::test]
async fn wait_polls_until_ready_with_one_request_per_poll() {
    let sim = start(manual_demo());
    let events = Events::default();
    let info = prepare_2_to_3(
        &client(&sim),
        &prepare(true),
        &events.sink_advancing(&sim, Duration::from_secs(5)),
    )
    .await
    .unwrap();
    assert_eq!(info.overall_status, Status::Ready);
    let main = info.service("main").unwrap();
    let api = info.service("api").unwrap();
    let api_delta = api.produces__image.is_produced_by__delta.as_ref().unwrap();
    assert_eq!(
        info.estimated_total_payload_size,
        Some(demo::DELTA_R2_R3_MAIN_SIZE + api_delta.size)
    );
    assert!(main.produces__image.is_produced_by__delta.is_some());
    assert_eq!(delta_count(&sim), 1);
    let rounds = events
        .all()
        .iter()
        .filter(|e| matches!(e, Event::Round { .. }))
        .count();
    // Every round after the first is a single delta query.
    assert_eq!(api_requests(&sim, "release").len(), 1);
    assert_eq!(api_requests(&sim, "delta").len(), rounds);
    assert!(
        events
            .all()
            .iter()
            .any(|e| matches!(e, Event::Sleeping { .. }))
    );
}

#[tokio::test]
async fn a_failed_delta_is_requested_again() {
    let scenario = manual_demo().with_delta_outcome(
        demo::IMAGE_R1_MAIN,
        demo::IMAGE_R2_MAIN,
        vec![Outcome::failed("out of disk space"), Outcome::success(777)],
    );
    let sim = start(scenario);
    let events = Events::default();
    let info = client(&sim)
        .prepare_update(
            &id(demo::RELEASE_1),
            &id(demo::RELEASE_2),
            &prepare(true),
            &events.sink_advancing(&sim, Duration::from_secs(5)),
        )
        .await
        .unwrap();
    assert_eq!(info.overall_status, Status::Ready);
    let main = info.service("main").unwrap();
    assert_eq!(main.change, Change::Changed);
    assert_eq!(
        main.produces__image
            .is_produced_by__delta
            .as_ref()
            .unwrap()
            .size,
        777
    );
    assert!(main.delta_failure.is_none());
    assert_eq!(events.triggered().len(), 2);
    assert_eq!(delta_count(&sim), 2);
    // new api: image size; unchanged proxy and worker: nothing.
    assert_eq!(
        info.estimated_total_payload_size,
        Some(777 + demo::SIZE_R2_API)
    );
}

#[tokio::test]
async fn a_delta_that_keeps_failing_gives_up_naming_the_service() {
    let scenario = manual_demo().with_delta_outcome(
        demo::IMAGE_R1_MAIN,
        demo::IMAGE_R2_MAIN,
        vec![Outcome::failed("out of disk space"); 5],
    );
    let sim = start(scenario);
    let events = Events::default();
    let err = client(&sim)
        .prepare_update(
            &id(demo::RELEASE_1),
            &id(demo::RELEASE_2),
            &prepare(true),
            &events.sink_advancing(&sim, Duration::from_secs(5)),
        )
        .await
        .unwrap_err();
    match &err {
        Error::DeltaFailed {
            service,
            attempts,
            last,
            ..
        } => {
            assert_eq!(service, "main");
            assert_eq!(*attempts, 3);
            let failure = last
                .transition()
                .unwrap()
                .service("main")
                .unwrap()
                .delta_failure
                .as_ref()
                .unwrap();
            assert_eq!(failure.attempts, 3);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("`out of disk space`"), "{err}");
    assert_eq!(delta_count(&sim), 3);
}

#[tokio::test]
async fn a_stale_delta_is_requested_again() {
    let scenario = manual_demo().with_delta_outcome(
        demo::IMAGE_R2_API,
        demo::IMAGE_R3_API,
        vec![Outcome::stalled()],
    );
    let sim = start(scenario);
    let events = Events::default();
    let info = client(&sim)
        .prepare_update(
            &id(demo::RELEASE_2),
            &id(demo::RELEASE_3),
            &prepare(true),
            // Past both the client's 3 and the server's 5 minutes.
            &events.sink_advancing(&sim, Duration::from_secs(600)),
        )
        .await
        .unwrap();
    assert_eq!(info.overall_status, Status::Ready);
    assert_eq!(events.triggered().len(), 2);
}

#[tokio::test]
async fn the_deadline_returns_the_last_state() {
    // The manual clock never moves, so the build stays running.
    let sim = start(manual_demo());
    let options = balena_release::PrepareOptions {
        deadline: Some(Instant::now() + Duration::from_millis(500)),
        ..prepare(true)
    };
    let started = Instant::now();
    let err = prepare_2_to_3(&client(&sim), &options, &|_| {})
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    match err {
        Error::Timeout { last: Some(last) } => {
            assert_eq!(last.overall_status(), Status::Preparing);
            assert_eq!(
                last.transition().unwrap().service("main").unwrap().status,
                Status::Ready
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_deadline_cancels_a_hanging_request() {
    let sim = start(manual_demo().with_faults(
        Faults::none().with(FaultRule::new(Fault::Stall { ms: None }).scope(Scope::Api)),
    ));
    let options = balena_release::PrepareOptions {
        deadline: Some(Instant::now() + Duration::from_millis(100)),
        ..prepare(true)
    };
    let started = Instant::now();
    let err = prepare_2_to_3(&client(&sim), &options, &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { last: None }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(sim.count(Server::Delta, None), 0);
}

#[tokio::test]
async fn a_delta_already_building_is_not_requested_again() {
    let sim = start(manual_demo());
    let c = client(&sim);
    let (from, to) = (id(demo::RELEASE_2), id(demo::RELEASE_3));
    c.prepare_update(&from, &to, &prepare(false), &|_| {})
        .await
        .unwrap();
    sim.clear_journal();
    let events = Events::default();
    let info = c
        .prepare_update(&from, &to, &prepare(false), &events.sink())
        .await
        .unwrap();
    assert_eq!(info.overall_status, Status::Preparing);
    assert!(events.triggered().is_empty());
    // Round 1 only: nothing new was requested, so nothing new to read.
    assert_eq!(api_count(&sim), 2);
    assert_eq!(delta_count(&sim), 0);
}

/// A build that stopped sending heartbeats 4 minutes ago: no longer
/// `preparing` for the report (3 minutes), still running for the delta
/// server (5 minutes), so a new request would start nothing.
async fn quiet_build() -> balena_sim::Simulator {
    let sim = start(manual_demo().with_delta_outcome(
        demo::IMAGE_R2_API,
        demo::IMAGE_R3_API,
        vec![Outcome::stalled()],
    ));
    let info = prepare_2_to_3(&client(&sim), &prepare(false), &|_| {})
        .await
        .unwrap();
    assert_eq!(info.service("api").unwrap().status, Status::Preparing);
    sim.advance_clock(Duration::from_secs(4 * 60));
    sim.clear_journal();
    sim
}

#[tokio::test]
async fn the_first_round_leaves_a_build_the_server_still_runs_alone() {
    let sim = quiet_build().await;
    let events = Events::default();
    let info = prepare_2_to_3(&client(&sim), &prepare(false), &events.sink())
        .await
        .unwrap();
    assert_eq!(info.service("api").unwrap().status, Status::Pending);
    assert_eq!(events.triggered(), []);
    assert_eq!(delta_count(&sim), 0);
}

#[tokio::test]
async fn the_first_fleet_round_leaves_a_build_the_server_still_runs_alone() {
    let sim = quiet_build().await;
    let fleet: balena_release::FleetRef =
        format!("{}/kiosk-fleet", demo::USERNAME).parse().unwrap();
    let events = Events::default();
    client(&sim)
        .prepare_fleet_update(&fleet, None, &prepare(false), &events.sink())
        .await
        .unwrap();
    let quiet = (u(demo::IMAGE_R2_API), u(demo::IMAGE_R3_API));
    let triggered = events.triggered();
    assert!(!triggered.is_empty(), "the other transitions need deltas");
    assert!(
        triggered.iter().all(|(_, s, t)| (*s, *t) != quiet),
        "{triggered:?}"
    );
}

#[tokio::test]
async fn a_service_pulled_whole_by_its_strategy_is_neither_requested_nor_awaited() {
    // Release 3 labels api (changed since release 2, the only service that
    // needs a delta) delete-then-download: devices delete its old image, the
    // delta's source, and pull the new one whole.
    let sim = start(manual_demo());
    sim.set_update_strategy(demo::RELEASE_3, "api", "delete-then-download")
        .unwrap();
    let events = Events::default();
    // Waiting on the manual clock would never end if api were awaited.
    let options = PrepareOptions {
        deadline: Some(Instant::now() + Duration::from_secs(5)),
        ..prepare(true)
    };
    let info = prepare_2_to_3(&client(&sim), &options, &events.sink())
        .await
        .unwrap();
    let api = info.service("api").unwrap();
    assert_eq!(api.change, Change::Changed);
    assert_eq!(api.status, Status::Ready);
    assert_eq!(api.produces__image.is_produced_by__delta, None);
    assert_eq!(api.download_now(), Some(api.produces__image.image_size));
    assert_eq!(info.overall_status, Status::Ready);
    assert_eq!(events.triggered(), []);
    assert_eq!(delta_count(&sim), 0);
    // One round: nothing to wait for.
    assert_eq!(api_requests(&sim, "release").len(), 1);
}
