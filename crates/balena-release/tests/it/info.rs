//! `get_update_info`: one round of at most two API requests, and the rules
//! for new, unchanged, changed and removed services against the demo fleet.

use balena_release::{Change, Error, FleetRef, ReleaseRef, Report, Status, Target};
use balena_sim::db::Value;
use balena_sim::{GeneratedOptions, Scenario, Server, demo, generated};

use crate::support::*;

#[tokio::test]
async fn release_1_to_release_2_classifies_every_service() {
    let sim = start(manual_demo());
    let info = client(&sim)
        .get_update_info(&id(demo::RELEASE_1), &id(demo::RELEASE_2))
        .await
        .unwrap();
    assert_eq!(info.originates_from__release.id, u(demo::RELEASE_1));
    assert_eq!(info.originates_from__release.commit, demo::COMMIT_1);
    assert_eq!(info.produces__release.commit, demo::COMMIT_2);
    let got: Vec<(&str, Change, Status)> = info
        .is_produced_by__service_update
        .iter()
        .map(|s| (s.service_name.as_str(), s.change, s.status))
        .collect();
    assert_eq!(
        got,
        [
            ("api", Change::New, Status::Ready),
            ("main", Change::Changed, Status::Pending),
            ("proxy", Change::Unchanged, Status::Ready),
            ("worker", Change::Unchanged, Status::Ready),
        ]
    );
    // The new service has no source image; the failed delta is reported.
    let api = info.service("api").unwrap();
    assert!(api.originates_from__image.is_none());
    assert_eq!(api.produces__image.image_size, demo::SIZE_R2_API);
    let main = info.service("main").unwrap();
    let failure = main.delta_failure.as_ref().unwrap();
    assert_eq!(failure.delta_id, Some(u(demo::DELTA_R1_R2_MAIN_FAILED)));
    assert_eq!(failure.attempts, 0);
    assert!(
        failure
            .error_message
            .as_deref()
            .unwrap()
            .contains("layers unavailable")
    );
    assert_eq!(info.overall_status, Status::Pending);
    assert_eq!(info.estimated_total_payload_size, None);
    assert!(info.removed_services.is_empty());
    // One round: the release query and the delta query, nothing else.
    assert_eq!(api_requests(&sim, "release").len(), 1);
    assert_eq!(api_requests(&sim, "delta").len(), 1);
    assert_eq!(api_count(&sim), 2);
    assert_eq!(delta_count(&sim), 0);
}

#[tokio::test]
async fn release_2_to_release_3_shows_the_ready_delta_and_the_removed_service() {
    let sim = start(manual_demo());
    let info = client(&sim)
        .get_update_info(&id(demo::RELEASE_2), &id(demo::RELEASE_3))
        .await
        .unwrap();
    let main = info.service("main").unwrap();
    assert_eq!(main.status, Status::Ready);
    let delta = main.produces__image.is_produced_by__delta.as_ref().unwrap();
    assert_eq!(delta.id, u(demo::DELTA_R2_R3_MAIN));
    assert_eq!(delta.size, demo::DELTA_R2_R3_MAIN_SIZE);
    assert_eq!(delta.version, 3);
    assert_eq!(info.service("api").unwrap().status, Status::Pending);
    assert_eq!(info.service("api").unwrap().change, Change::Changed);
    assert_eq!(info.service("proxy").unwrap().change, Change::Unchanged);
    assert!(info.service("worker").is_none());
    assert_eq!(info.removed_services.len(), 1);
    assert_eq!(info.removed_services[0].service_name, "worker");
    assert_eq!(
        info.removed_services[0].originates_from__image.id,
        u(demo::IMAGE_WORKER)
    );
    assert_eq!(info.overall_status, Status::Pending);
    assert_eq!(api_count(&sim), 2);
}

#[tokio::test]
async fn an_unchanged_update_is_ready_with_nothing_to_download() {
    let sim = start(manual_demo());
    let info = client(&sim)
        .get_update_info(&id(demo::RELEASE_3), &id(demo::RELEASE_3))
        .await
        .unwrap();
    assert_eq!(info.overall_status, Status::Ready);
    assert_eq!(info.estimated_total_payload_size, Some(0));
    assert!(
        info.is_produced_by__service_update
            .iter()
            .all(|s| s.change == Change::Unchanged)
    );
}

#[tokio::test]
async fn a_success_row_wins_over_a_newer_running_one() {
    let sim = start(manual_demo());
    let now = sim.now();
    sim.with_db(|db| {
        db.insert(
            "delta",
            &[
                ("id", Value::Integer(demo::DELTA_R2_R3_MAIN + 1000)),
                ("created_at", Value::DateTime(now)),
                (
                    "originates_from__image",
                    Value::Integer(demo::IMAGE_R2_MAIN),
                ),
                ("produces__image", Value::Integer(demo::IMAGE_R3_MAIN)),
                ("version", Value::Integer(3)),
                ("status", Value::Text("running".into())),
                ("start_timestamp", Value::DateTime(now)),
                ("update_timestamp", Value::DateTime(now)),
            ],
        )
        .unwrap();
    });
    let info = client(&sim)
        .get_update_info(&id(demo::RELEASE_2), &id(demo::RELEASE_3))
        .await
        .unwrap();
    let main = info.service("main").unwrap();
    assert_eq!(main.status, Status::Ready);
    assert_eq!(
        main.produces__image
            .is_produced_by__delta
            .as_ref()
            .unwrap()
            .id,
        u(demo::DELTA_R2_R3_MAIN)
    );
}

#[tokio::test]
async fn commit_prefixes_resolve_and_skip_failed_releases() {
    let sim = start(manual_demo());
    let c = client(&sim);
    // PREFIX_1 also matches the failed release; only the successful one counts.
    let from: ReleaseRef = demo::PREFIX_1.parse().unwrap();
    let to: ReleaseRef = demo::COMMIT_2.to_uppercase().parse().unwrap();
    let info = c.get_update_info(&from, &to).await.unwrap();
    assert_eq!(info.originates_from__release.id, u(demo::RELEASE_1));
    assert_eq!(info.produces__release.id, u(demo::RELEASE_2));
    assert_eq!(api_count(&sim), 2);
}

#[tokio::test]
async fn an_ambiguous_prefix_names_the_candidates() {
    let sim = start(manual_demo());
    let to: ReleaseRef = demo::AMBIGUOUS_PREFIX.parse().unwrap();
    let err = client(&sim)
        .get_update_info(&id(demo::RELEASE_1), &to)
        .await
        .unwrap_err();
    match &err {
        Error::ReleaseAmbiguous { candidates, .. } => {
            let ids: Vec<u64> = candidates.iter().map(|c| c.id).collect();
            assert_eq!(ids, [u(demo::RELEASE_2), u(demo::RELEASE_3)]);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string()
            .contains("`b2cf2db7` matches 2 successful releases"),
        "{err}"
    );
}

#[tokio::test]
async fn a_failed_release_is_reported_as_such() {
    let sim = start(manual_demo());
    let err = client(&sim)
        .get_update_info(&id(demo::RELEASE_2), &id(demo::FAILED_RELEASE))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "release `900850` exists but its status is `failed`; only successful releases can be \
         compared"
    );
}

#[tokio::test]
async fn unknown_releases_and_other_fleets_are_refused() {
    let sim = start(manual_demo());
    let c = client(&sim);
    let err = c
        .get_update_info(&id(demo::RELEASE_1), &ReleaseRef::Id(999999))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ReleaseNotFound {
                reference: ReleaseRef::Id(999999)
            }
        ),
        "{err}"
    );
    let err = c
        .get_update_info(&id(demo::RELEASE_1), &id(demo::OTHER_RELEASE))
        .await
        .unwrap_err();
    match err {
        Error::DifferentApplications {
            from_application,
            to_application,
            ..
        } => {
            assert_eq!(from_application, u(demo::APP_ID));
            assert_eq!(to_application, u(demo::OTHER_APP_ID));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_commit_prefix_is_escaped_on_the_wire() {
    let sim = start(manual_demo());
    let c = client(&sim);
    let err = c
        .get_update_info(&id(demo::RELEASE_1), &"aaaaaa".parse().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ReleaseNotFound { .. }), "{err}");
    let release = &api_requests(&sim, "release")[0];
    let query = release.query.as_deref().unwrap();
    assert!(query.contains("startswith(commit,"), "{query}");
    assert!(!query.contains("%2C") && !query.contains("%28"), "{query}");
}

#[tokio::test]
async fn tokens_the_api_refuses() {
    let sim = start(manual_demo());
    let err = client_with_token(&sim, Some("wrong-token-123".into()))
        .get_update_info(&id(demo::RELEASE_1), &id(demo::RELEASE_2))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Unauthorized {
                server: balena_release::Server::Api,
                with_token: true
            }
        ),
        "{err}"
    );
    assert!(!err.to_string().contains("wrong-token"), "{err}");
    let err = client_with_token(&sim, None)
        .get_update_info(&id(demo::RELEASE_1), &id(demo::RELEASE_2))
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with("the API needs a token"),
        "{err}"
    );
    // Permanent failures are not retried.
    assert_eq!(sim.count(Server::Api, Some("release")), 2);
}

#[tokio::test]
async fn fifty_services_still_take_two_requests() {
    for services in [1, 50] {
        let sim = start(Scenario::generated(GeneratedOptions {
            services,
            releases: 2,
            devices: 0,
        }));
        let releases: Vec<i64> = sim.with_db(|db| db.rows("release").map(|(id, _)| id).collect());
        assert_eq!(releases.len(), 2);
        let c = client_with_token(&sim, Some(generated::TOKEN.into()));
        let info = c
            .get_update_info(&id(releases[0]), &id(releases[1]))
            .await
            .unwrap();
        assert_eq!(info.is_produced_by__service_update.len(), services);
        assert_eq!(api_count(&sim), 2, "{services} services");
    }
}

#[tokio::test]
async fn the_fallback_delta_query_is_remembered() {
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
    let first = c
        .get_update_info(&id(demo::RELEASE_2), &id(demo::RELEASE_3))
        .await
        .unwrap();
    let deltas = api_requests(&sim, "delta");
    assert_eq!(deltas.len(), 2);
    assert!(
        deltas[1]
            .query
            .as_deref()
            .unwrap()
            .contains("originates_from__image in (")
    );
    sim.clear_journal();
    let second = c
        .get_update_info(&id(demo::RELEASE_2), &id(demo::RELEASE_3))
        .await
        .unwrap();
    assert_eq!(first, second);
    let deltas = api_requests(&sim, "delta");
    assert_eq!(deltas.len(), 1);
    assert!(!deltas[0].query.as_deref().unwrap().contains("any("));
    assert_eq!(api_count(&sim), 2);
    assert_eq!(first.service("main").unwrap().status, Status::Ready);
}

#[tokio::test]
async fn report_reads_a_pair_or_a_fleet_as_the_named_calls_do() {
    let sim = start(manual_demo());
    let client = client(&sim);
    let pair = Target::Pair {
        from: id(demo::RELEASE_2),
        to: id(demo::RELEASE_3),
    };
    let fleet = FleetRef::Id(u(demo::APP_ID));
    assert_eq!(
        client.report(&pair, None, &|_| {}).await.unwrap(),
        Report::Transition(
            client
                .get_update_info(&id(demo::RELEASE_2), &id(demo::RELEASE_3))
                .await
                .unwrap()
        )
    );
    assert_eq!(
        client
            .report(
                &Target::Fleet {
                    fleet: fleet.clone(),
                    to: None
                },
                None,
                &|_| {}
            )
            .await
            .unwrap(),
        Report::Fleet(client.get_fleet_update_info(&fleet, None).await.unwrap())
    );
    // Nothing was asked of the delta server until `prepare` is given.
    assert_eq!(delta_count(&sim), 0);
    let prepared = client
        .report(&pair, Some(&prepare(false)), &|_| {})
        .await
        .unwrap();
    assert_eq!(prepared.overall_status(), Status::Preparing);
    assert_eq!(delta_count(&sim), 1);
}
