//! Fleet mode: each device goes to its own target (its pin, else the
//! fleet's target), devices are counted by the API, in at most five
//! requests for the first round and one per poll. A server that refuses to
//! count (the simulator's faults on the `$count` queries) is read device by
//! device, and the client remembers it. Requests are counted in the
//! simulator's journal.

use std::time::Duration;

use balena_release::{Change, Client, Error, Event, FleetRef, ReleaseRef, Status};
use balena_sim::{FaultRule, Faults, GeneratedOptions, Scenario, Scope, Server, Simulator, demo};

use crate::support::*;

fn kiosk() -> FleetRef {
    format!("{}/kiosk-fleet", demo::USERNAME).parse().unwrap()
}

/// What the counting queries (`$count` inside `$expand`) contain.
const COUNT: &str = "/$count(";

/// `rule` narrowed to the API's counting queries.
fn on_counts(rule: FaultRule) -> FaultRule {
    rule.scope(Scope::Api).query_contains(COUNT)
}

/// Every count refused with `status`.
fn counts_refused(status: u16) -> Faults {
    Faults::none().with(on_counts(error(status, "")))
}

/// The application's count of devices without a release answered, the
/// count per release refused with `status`.
fn per_release_counts_refused(status: u16) -> Faults {
    Faults::none().with(on_counts(error(status, "")).path_prefix("/v7/release"))
}

/// A simulator for `scenario` and a client of it.
struct Fleet {
    sim: Simulator,
    client: Client,
}

impl Fleet {
    fn new(scenario: Scenario) -> Fleet {
        let sim = start(scenario);
        let client = client(&sim);
        Fleet { sim, client }
    }

    fn demo() -> Fleet {
        Fleet::new(manual_demo())
    }

    /// API requests received.
    fn requests(&self) -> usize {
        api_count(&self.sim)
    }

    /// Every API request received (`path?query`, the query decoded), oldest first.
    fn seen(&self) -> Vec<String> {
        self.sim
            .journal()
            .into_iter()
            .filter(|e| e.server == Server::Api)
            .map(|e| match e.query {
                Some(query) => format!("{}?{query}", e.path),
                None => e.path,
            })
            .collect()
    }

    /// (path, status) of every API request a fault rule answered.
    fn refused(&self) -> Vec<(String, u16)> {
        self.sim
            .journal()
            .into_iter()
            .filter(|e| e.server == Server::Api && !e.faults.is_empty())
            .map(|e| (e.path, e.status))
            .collect()
    }

    /// API requests received for `path` (`/v7/delta`, ...).
    fn requests_to(&self, path: &str) -> Vec<String> {
        self.seen()
            .into_iter()
            .filter(|t| t.split('?').next() == Some(path))
            .collect()
    }
}

/// (device count, source, target) of every transition.
fn transitions(info: &balena_release::FleetUpdateInfo) -> Vec<(u64, u64, u64)> {
    info.transitions
        .iter()
        .map(|t| {
            (
                t.device_count,
                t.update.originates_from__release.id,
                t.update.produces__release.id,
            )
        })
        .collect()
}

#[tokio::test]
async fn the_demo_fleet_moves_only_the_devices_off_their_target() {
    // Lobby runs release 3, east is pinned to the release 2 it runs: both
    // on target. Gate and west run 1, cafe runs 2: they go to 3.
    let f = Fleet::demo();
    let info = f
        .client
        .get_fleet_update_info(&kiosk(), None)
        .await
        .unwrap();
    assert_eq!(info.application.id, u(demo::APP_ID));
    assert_eq!(info.application.slug, "gh_demo/kiosk-fleet");
    assert_eq!(info.produces__release.id, u(demo::RELEASE_3));
    assert_eq!(
        transitions(&info),
        [
            (2, u(demo::RELEASE_1), u(demo::RELEASE_3)),
            (1, u(demo::RELEASE_2), u(demo::RELEASE_3)),
        ]
    );
    assert_eq!(info.devices_on_target, 2);
    assert_eq!(info.devices_without_release, 0);
    assert!(info.transition_from(u(demo::RELEASE_3)).is_none());
    let from_1 = info.transition_from(u(demo::RELEASE_1)).unwrap();
    assert_eq!(from_1.service("api").unwrap().change, Change::New);
    assert_eq!(from_1.service("proxy").unwrap().change, Change::Unchanged);
    assert_eq!(from_1.removed_services[0].service_name, "worker");
    assert_eq!(info.overall_status, Status::Pending);
    assert_eq!(info.estimated_fleet_payload_size, None);
    // Application (with the devices without a release), counts per
    // release, pinned devices, releases, deltas, and the fleet's and its
    // devices' delta settings.
    assert_eq!(f.requests(), 7, "{:?}", f.seen());
    assert_eq!(f.requests_to("/v7/application_config_variable").len(), 1);
    assert_eq!(f.requests_to("/v7/device_config_variable").len(), 1);
    let devices = f.requests_to("/v7/device");
    assert_eq!(devices.len(), 1);
    assert!(
        devices[0].contains("is_pinned_on__release ne null"),
        "{devices:?}"
    );
}

#[tokio::test]
async fn an_explicit_target_moves_the_unpinned_devices_and_keeps_the_pins() {
    let f = Fleet::demo();
    let info = f
        .client
        .get_fleet_update_info(&FleetRef::Id(u(demo::APP_ID)), Some(&id(demo::RELEASE_2)))
        .await
        .unwrap();
    assert_eq!(info.produces__release.id, u(demo::RELEASE_2));
    // Cafe (follows the fleet) and east (pinned) run 2 already; lobby goes
    // back from 3 to 2.
    assert_eq!(
        transitions(&info),
        [
            (2, u(demo::RELEASE_1), u(demo::RELEASE_2)),
            (1, u(demo::RELEASE_3), u(demo::RELEASE_2)),
        ]
    );
    assert_eq!(info.devices_on_target, 2);
    assert!(
        info.transition(u(demo::RELEASE_2), u(demo::RELEASE_2))
            .is_none()
    );
    assert_eq!(f.requests(), 7);
}

/// The demo fleet with west (on release 1) pinned to release 2 and a new
/// device that runs no release yet.
fn pinned_demo() -> Scenario {
    let mut scenario = manual_demo();
    let west = scenario
        .devices
        .iter_mut()
        .find(|d| d.id == demo::DEVICE_WEST)
        .unwrap();
    west.is_pinned_on__release = Some(demo::RELEASE_2);
    let mut fresh = west.clone();
    fresh.id = 7100;
    fresh.uuid = None;
    fresh.device_name = Some("kiosk-new".into());
    fresh.is_running__release = None;
    fresh.is_pinned_on__release = None;
    scenario.devices.push(fresh);
    scenario
}

#[tokio::test]
async fn a_pinned_device_goes_to_its_pin() {
    let f = Fleet::new(pinned_demo());
    let info = f
        .client
        .get_fleet_update_info(&kiosk(), None)
        .await
        .unwrap();
    assert_eq!(info.produces__release.id, u(demo::RELEASE_3));
    assert_eq!(
        transitions(&info),
        [
            (1, u(demo::RELEASE_1), u(demo::RELEASE_2)),
            (1, u(demo::RELEASE_1), u(demo::RELEASE_3)),
            (1, u(demo::RELEASE_2), u(demo::RELEASE_3)),
        ]
    );
    assert_eq!(info.devices_on_target, 2);
    assert_eq!(info.devices_without_release, 1);
    let to_pin = info
        .transition(u(demo::RELEASE_1), u(demo::RELEASE_2))
        .unwrap();
    assert_eq!(to_pin.service("main").unwrap().change, Change::Changed);
    assert_eq!(to_pin.service("proxy").unwrap().change, Change::Unchanged);
    // One delta query for both targets, sent with the release query (and
    // the two delta settings queries).
    assert_eq!(f.requests(), 7, "{:?}", f.seen());
    let deltas = f.requests_to("/v7/delta");
    assert_eq!(deltas.len(), 1);
    assert!(
        deltas[0].contains(&format!(
            "produces__image/release_image/any(ri:ri/is_part_of__release in ({},{}))",
            demo::RELEASE_3,
            demo::RELEASE_2
        )),
        "{deltas:?}"
    );
}

#[tokio::test]
async fn preparing_a_fleet_with_pins_waits_for_every_target() {
    let f = Fleet::new(pinned_demo());
    let events = Events::default();
    let info = f
        .client
        .prepare_fleet_update(
            &kiosk(),
            None,
            &prepare(true),
            &events.sink_advancing(&f.sim, Duration::from_secs(5)),
        )
        .await
        .unwrap();
    assert_eq!(info.overall_status, Status::Ready);
    let triggered = events.triggered();
    assert!(
        triggered.iter().any(|(service, s, t)| service == "main"
            && (*s, *t) == (u(demo::IMAGE_R1_MAIN), u(demo::IMAGE_R2_MAIN))),
        "{triggered:?}"
    );
    let expected: u64 = info
        .transitions
        .iter()
        .map(|t| t.device_count * t.update.estimated_total_payload_size.unwrap())
        .sum();
    assert_eq!(info.estimated_fleet_payload_size, Some(expected));
    // With two targets, polls read the deltas by image pair.
    let deltas = f.requests_to("/v7/delta");
    assert!(deltas.len() >= 2, "{deltas:?}");
    assert!(
        deltas[1..]
            .iter()
            .all(|q| q.contains("originates_from__image in (") && !q.contains("any(")),
        "{deltas:?}"
    );
}

#[tokio::test]
async fn a_server_that_does_not_count_is_read_device_by_device() {
    let counted = Fleet::new(pinned_demo())
        .client
        .get_fleet_update_info(&kiosk(), None)
        .await
        .unwrap();
    for status in [400, 401, 403, 500] {
        let f = Fleet::new(pinned_demo().with_faults(counts_refused(status)));
        let info = f
            .client
            .get_fleet_update_info(&kiosk(), None)
            .await
            .unwrap();
        assert_eq!(info, counted, "after {status}");
        let refused = f.refused();
        assert!(
            !refused.is_empty()
                && refused
                    .iter()
                    .all(|(path, s)| path == "/v7/application" && *s == status),
            "{status}: {refused:?}"
        );
        let devices = f.requests_to("/v7/device");
        assert_eq!(devices.len(), 1, "{status}: {devices:?}");
        assert!(!devices[0].contains("is_pinned_on__release ne null"));
        if status == 400 {
            // The refused application, the plain one, every device,
            // releases, deltas, delta settings.
            assert_eq!(f.requests(), 7, "{:?}", f.seen());
        }
        // The client remembers: no count asked again.
        f.sim.clear_journal();
        f.client
            .get_fleet_update_info(&kiosk(), None)
            .await
            .unwrap();
        assert!(
            f.seen().iter().all(|t| !t.contains("$count")),
            "{status}: {:?}",
            f.seen()
        );
        // Application, devices, releases, deltas, delta settings.
        assert_eq!(f.requests(), 6, "{status}: {:?}", f.seen());
    }
}

#[tokio::test]
async fn a_refused_count_per_release_falls_back_too() {
    let f = Fleet::new(pinned_demo().with_faults(per_release_counts_refused(400)));
    let info = f
        .client
        .get_fleet_update_info(&kiosk(), None)
        .await
        .unwrap();
    assert_eq!(info.devices_without_release, 1);
    assert_eq!(transitions(&info).len(), 3);
    assert_eq!(f.refused(), [("/v7/release".to_owned(), 400)]);
    // The application is not read again: 8 requests, once.
    assert_eq!(f.requests(), 8, "{:?}", f.seen());
}

#[tokio::test]
async fn a_rate_limited_count_is_not_a_refusal() {
    let f = Fleet::new(
        manual_demo().with_faults(Faults::none().with(on_counts(FaultRule::rate_limit(0)))),
    );
    let err = f
        .client
        .get_fleet_update_info(&kiosk(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Api { status: 429, .. }), "{err:?}");
    let refused = f.refused();
    assert!(
        !refused.is_empty()
            && refused
                .iter()
                .all(|(path, s)| path == "/v7/application" && *s == 429),
        "{refused:?}"
    );
    assert!(f.requests_to("/v7/device").is_empty());
}

#[tokio::test]
async fn fleet_errors() {
    let f = Fleet::demo();
    let c = &f.client;
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
    let f = Fleet::demo();
    let events = Events::default();
    let info = f
        .client
        .prepare_fleet_update(
            &kiosk(),
            None,
            &prepare(true),
            &events.sink_advancing(&f.sim, Duration::from_secs(5)),
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
    assert_eq!(f.requests_to("/v7/application").len(), 1);
    assert_eq!(f.requests_to("/v7/device").len(), 1);
    assert_eq!(f.requests_to("/v7/release").len(), 2, "counts and releases");
}

#[tokio::test]
async fn a_large_fleet_takes_seven_requests() {
    let f = Fleet::new(Scenario::generated(GeneratedOptions {
        services: 20,
        releases: 6,
        devices: 300,
    }));
    let info = f
        .client
        .get_fleet_update_info(&FleetRef::Id(u(balena_sim::generated::APP_ID)), None)
        .await
        .unwrap();
    let devices: u64 = info.transitions.iter().map(|t| t.device_count).sum();
    assert_eq!(
        devices + info.devices_on_target + info.devices_without_release,
        300
    );
    assert!(info.devices_on_target > 0);
    assert!(info.transitions.len() > 1);
    // Whatever the number of devices: 5, and 2 for the delta settings.
    assert_eq!(f.requests(), 7);
}

#[tokio::test]
async fn the_fleet_falls_back_to_the_delta_query_by_images() {
    // A server that refuses the link-table form of the delta query.
    let f = Fleet::new(
        manual_demo().with_faults(
            Faults::none().with(
                error(400, "\"Malformed url\"")
                    .scope(Scope::Api)
                    .path_prefix("/v7/delta")
                    .limit(1),
            ),
        ),
    );
    let c = &f.client;
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
    let deltas = f.requests_to("/v7/delta");
    assert!(
        deltas[1..].iter().all(|query| {
            query.contains("originates_from__image in (") && !query.contains("any(")
        })
    );
    assert_eq!(first.transitions.len(), 2);
    f.sim.clear_journal();
    c.get_fleet_update_info(&kiosk(), None).await.unwrap();
    let deltas = f.requests_to("/v7/delta");
    assert_eq!(deltas.len(), 1);
    assert!(!deltas[0].contains("any("));
}

/// The release or delta queries of the journal that list ids (not the
/// device count), and the most ids any one of them lists.
fn batched(sim: &Simulator, resource: &str) -> (usize, usize) {
    let queries: Vec<String> = api_requests(sim, resource)
        .into_iter()
        .filter_map(|e| e.query)
        .filter(|q| !q.contains(COUNT))
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
    let f = Fleet::new(Scenario::generated(GeneratedOptions {
        services: 2,
        releases: 150,
        devices: 150,
    }));
    let info = f
        .client
        .get_fleet_update_info(&FleetRef::Id(1), None)
        .await
        .unwrap();
    assert_eq!(info.transitions.len(), 149);
    assert_eq!(info.devices_on_target, 1);
    let sim = &f.sim;
    let (releases, most) = batched(sim, "release");
    assert_eq!(releases, 2, "150 release ids");
    assert!(most <= 100, "{most} ids in one query");
    let (deltas, most) = batched(sim, "delta");
    assert_eq!(deltas, 2, "149 source releases");
    assert!(most <= 100, "{most} ids in one query");
}

#[tokio::test]
async fn a_fleet_of_a_hundred_releases_costs_seven_requests_then_one_per_poll() {
    let f = Fleet::new(Scenario::generated(GeneratedOptions {
        services: 8,
        releases: 100,
        devices: 300,
    }));
    let events = Events::default();
    let info = f
        .client
        .prepare_fleet_update(
            &FleetRef::Id(1),
            None,
            &prepare(true),
            &events.sink_advancing(&f.sim, Duration::from_secs(20)),
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
    // Application, counts, pinned devices, releases and deltas, delta
    // settings, then the deltas per round.
    assert_eq!(f.requests(), 7 + (rounds - 1));
}
