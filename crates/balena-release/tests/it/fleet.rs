//! Fleet mode: every release the devices run, compared with the fleet's
//! target, in at most four requests per round.

use std::time::Duration;

use balena_release::{Change, Error, Event, FleetRef, ReleaseRef, Status};
use balena_sim::{GeneratedOptions, Scenario, demo, generated};

use crate::support::*;

fn kiosk() -> FleetRef {
    format!("{}/kiosk-fleet", demo::USERNAME).parse().unwrap()
}

#[tokio::test]
async fn the_demo_fleet_has_three_transitions() {
    let sim = start(manual_demo());
    let info = client(&sim)
        .get_fleet_update_info(&kiosk(), None)
        .await
        .unwrap();
    assert_eq!(info.application.id, u(demo::APP_ID));
    assert_eq!(info.application.slug, "gh_demo/kiosk-fleet");
    assert_eq!(info.produces__release.id, u(demo::RELEASE_3));
    let got: Vec<(u64, u64, Status)> = info
        .transitions
        .iter()
        .map(|t| {
            (
                t.device_count,
                t.update.originates_from__release.id,
                t.update.overall_status,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (2, u(demo::RELEASE_1), Status::Pending),
            (2, u(demo::RELEASE_2), Status::Pending),
            (1, u(demo::RELEASE_3), Status::Ready),
        ]
    );
    let from_1 = info.transition_from(u(demo::RELEASE_1)).unwrap();
    assert_eq!(from_1.service("api").unwrap().change, Change::New);
    assert_eq!(from_1.service("proxy").unwrap().change, Change::Unchanged);
    assert_eq!(from_1.removed_services[0].service_name, "worker");
    assert_eq!(info.overall_status, Status::Pending);
    assert_eq!(info.estimated_fleet_payload_size, None);
    assert_eq!(api_count(&sim), 4);
}

#[tokio::test]
async fn an_explicit_target_and_a_fleet_id() {
    let sim = start(manual_demo());
    let info = client(&sim)
        .get_fleet_update_info(&FleetRef::Id(u(demo::APP_ID)), Some(&id(demo::RELEASE_2)))
        .await
        .unwrap();
    assert_eq!(info.produces__release.id, u(demo::RELEASE_2));
    let to_itself = info.transition_from(u(demo::RELEASE_2)).unwrap();
    assert_eq!(to_itself.overall_status, Status::Ready);
    assert_eq!(to_itself.estimated_total_payload_size, Some(0));
    assert_eq!(api_count(&sim), 4);
}

#[tokio::test]
async fn fleet_errors() {
    let sim = start(manual_demo());
    let c = client(&sim);
    let err = c
        .get_fleet_update_info(&"nobody/nothing".parse().unwrap(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::FleetNotFound { .. }), "{err:?}");
    let err = c
        .get_fleet_update_info(&kiosk(), Some(&id(demo::OTHER_RELEASE)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ReleaseNotInFleet { .. }), "{err:?}");
    // An ambiguous prefix is fine when only one match is in the fleet... here
    // both are, so it stays ambiguous.
    let err = c
        .get_fleet_update_info(
            &kiosk(),
            Some(&demo::AMBIGUOUS_PREFIX.parse::<ReleaseRef>().unwrap()),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ReleaseAmbiguous { .. }), "{err:?}");
}

#[tokio::test]
async fn preparing_a_fleet_waits_for_every_transition() {
    let sim = start(manual_demo());
    let events = Events::default();
    let info = client(&sim)
        .prepare_fleet_update(
            &kiosk(),
            None,
            &prepare(true),
            &events.sink_advancing(&sim, Duration::from_secs(5)),
        )
        .await
        .unwrap();
    assert_eq!(info.overall_status, Status::Ready);
    let mut triggered = events.triggered();
    triggered.sort();
    assert_eq!(
        triggered,
        [
            (
                "api".to_owned(),
                u(demo::IMAGE_R2_API),
                u(demo::IMAGE_R3_API)
            ),
            (
                "main".to_owned(),
                u(demo::IMAGE_R1_MAIN),
                u(demo::IMAGE_R3_MAIN)
            ),
        ]
    );
    let expected: u64 = info
        .transitions
        .iter()
        .map(|t| t.device_count * t.update.estimated_total_payload_size.unwrap())
        .sum();
    assert_eq!(info.estimated_fleet_payload_size, Some(expected));
    assert!(expected > 0);
    assert!(
        events
            .all()
            .iter()
            .any(|e| matches!(e, Event::Round { report, .. } if report.fleet().is_some()))
    );
    // Later rounds read only deltas: application, devices and releases once.
    assert_eq!(api_requests(&sim, "application").len(), 1);
    assert_eq!(api_requests(&sim, "device").len(), 1);
    assert_eq!(api_requests(&sim, "release").len(), 1);
}

#[tokio::test]
async fn a_large_fleet_takes_four_requests() {
    let sim = start(Scenario::generated(GeneratedOptions {
        services: 20,
        releases: 6,
        devices: 300,
    }));
    let c = client_with_token(&sim, Some(generated::TOKEN.into()));
    let info = c
        .get_fleet_update_info(&FleetRef::Id(u(generated::APP_ID)), None)
        .await
        .unwrap();
    let devices: u64 = info.transitions.iter().map(|t| t.device_count).sum();
    assert!(devices > 0 && devices <= 300, "{devices}");
    assert!(info.transitions.len() > 1);
    assert_eq!(api_count(&sim), 4);
}

#[tokio::test]
async fn the_fleet_falls_back_to_the_delta_query_by_images() {
    // A server that refuses the link-table form of the delta query.
    let sim = start(
        manual_demo().with_faults(
            balena_sim::Faults::none().with(
                balena_sim::FaultRule::new(balena_sim::Fault::Error {
                    status: 400,
                    body: Some("\"Malformed url\"".into()),
                })
                .scope(balena_sim::Scope::Api)
                .path_prefix("/v7/delta")
                .limit(1),
            ),
        ),
    );
    let c = client(&sim);
    let events = Events::default();
    let first = c
        .prepare_fleet_update(&kiosk(), None, &prepare(false), &events.sink())
        .await
        .unwrap();
    assert!(
        events
            .all()
            .iter()
            .any(|e| matches!(e, Event::DeltaQueryFallback { status: Some(400) })),
        "no fallback event"
    );
    let deltas = api_requests(&sim, "delta");
    assert!(deltas[1..].iter().all(|d| {
        let query = d.query.as_deref().unwrap();
        query.contains("originates_from__image in (") && !query.contains("any(")
    }));
    assert_eq!(first.transitions.len(), 3);
    sim.clear_journal();
    c.get_fleet_update_info(&kiosk(), None).await.unwrap();
    let deltas = api_requests(&sim, "delta");
    assert_eq!(deltas.len(), 1);
    assert!(!deltas[0].query.as_deref().unwrap().contains("any("));
}

/// The release and delta queries of the journal, and the most ids any one
/// of them lists.
fn batched(sim: &balena_sim::Simulator, resource: &str) -> (usize, usize) {
    let queries: Vec<String> = api_requests(sim, resource)
        .into_iter()
        .filter_map(|e| e.query)
        .collect();
    let most = queries
        .iter()
        .flat_map(|q| {
            q.split(" in (")
                .skip(1)
                .map(|l| l.split(')').next().unwrap_or(""))
        })
        .map(|list| list.split(',').count())
        .max()
        .unwrap_or(0);
    (queries.len(), most)
}

#[tokio::test]
async fn large_fleets_split_their_queries_into_batches() {
    // Devices on releases 1..=150; the target is release 150.
    let sim = start(Scenario::generated(GeneratedOptions {
        services: 2,
        releases: 150,
        devices: 150,
    }));
    let info = client(&sim)
        .get_fleet_update_info(&FleetRef::Id(1), None)
        .await
        .unwrap();
    assert_eq!(info.transitions.len(), 150);
    let (releases, most) = batched(&sim, "release");
    assert_eq!(releases, 2, "150 release ids");
    assert!(most <= 100, "{most} ids in one query");
    let (deltas, most) = batched(&sim, "delta");
    assert_eq!(deltas, 2, "149 source releases");
    assert!(most <= 100, "{most} ids in one query");
}

#[tokio::test]
async fn a_fleet_of_a_hundred_releases_costs_four_requests_then_one_per_poll() {
    let sim = start(Scenario::generated(GeneratedOptions {
        services: 8,
        releases: 100,
        devices: 300,
    }));
    let events = Events::default();
    let info = client(&sim)
        .prepare_fleet_update(
            &FleetRef::Id(1),
            None,
            &prepare(true),
            &events.sink_advancing(&sim, Duration::from_secs(20)),
        )
        .await
        .unwrap();
    assert_eq!(info.overall_status, Status::Ready);
    let rounds = events
        .all()
        .iter()
        .filter(|e| matches!(e, Event::Round { report, .. } if report.fleet().is_some()))
        .count();
    assert!(rounds >= 2, "{rounds} rounds");
    // Application, devices, releases and deltas, then the deltas per round.
    assert_eq!(api_count(&sim), 4 + (rounds - 1));
}
