//! The watch mode against a running simulator: a release added while the
//! watch runs is prepared without a restart, an idle poll is exactly one
//! API request, faults are polled through and a token that stops working
//! ends the watch.

use std::time::Duration;

use balena_release::{Client, Error, Event, FleetRef, WatchOptions, WatchReason};
use balena_sim::{Clock, Faults, Outcome, Scenario, Server, Simulator, demo};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::task::JoinHandle;

use crate::support::*;

/// How long any awaited event may take (the builds run 1000 times faster).
const PATIENCE: Duration = Duration::from_secs(30);

fn kiosk() -> FleetRef {
    format!("{}/kiosk-fleet", demo::USERNAME).parse().unwrap()
}

fn options() -> WatchOptions {
    WatchOptions {
        poll: fast_poll(),
        ..WatchOptions::default()
    }
}

/// Runs a test body where [`spawn_watch`] can run.
async fn local<F: Future<Output = ()>>(body: F) {
    tokio::task::LocalSet::new().run_until(body).await;
}

/// A watch of the demo fleet running in the background, its events in a
/// channel; `on_event` runs first on each event (in the watch's task).
fn spawn_watch(
    client: Client,
    on_event: impl Fn(&Event) + Send + Sync + 'static,
) -> (
    JoinHandle<Result<std::convert::Infallible, Error>>,
    UnboundedReceiver<Event>,
) {
    let (send, receive) = unbounded_channel();
    // The watch's future is not `Send` (nor are the prepare calls'): it
    // runs on this thread, beside the test.
    let task = tokio::task::spawn_local(async move {
        let sink: Box<dyn Fn(Event) + Send + Sync> = Box::new(move |event: Event| {
            on_event(&event);
            let _ = send.send(event);
        });
        client.watch_fleet(&kiosk(), &options(), &*sink).await
    });
    (task, receive)
}

/// Receives events until `wanted` matches one; returns every event seen.
async fn until(
    events: &mut UnboundedReceiver<Event>,
    wanted: impl Fn(&Event) -> bool,
) -> Vec<Event> {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(PATIENCE, async {
        while let Some(event) = events.recv().await {
            let done = wanted(&event);
            seen.push(event);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(found, Ok(true)),
        "the awaited event did not come; seen: {seen:#?}"
    );
    seen
}

fn prepared(id: u64) -> impl Fn(&Event) -> bool {
    move |e| matches!(e, Event::WatchPrepared { release, .. } if release.id == id)
}

fn fast_sim() -> Simulator {
    start(Scenario::demo().with_clock(Clock::scaled(1000.0)))
}

#[tokio::test]
async fn a_release_added_while_watching_is_prepared_without_a_restart() {
    local(async {
        let sim = fast_sim();
        let (task, mut events) = spawn_watch(client(&sim), |_| {});
        // At start: the fleet's target (no newer successful release).
        let first = until(&mut events, prepared(u(demo::RELEASE_3))).await;
        assert!(first.iter().any(|e| matches!(
            e,
            Event::WatchReleaseSeen { release, reason: WatchReason::Target, transitions, devices }
                if release.id == u(demo::RELEASE_3) && *transitions > 0 && *devices > 0
        )));

        let new = sim.add_release(demo::RELEASE_3, &["main"]).unwrap();
        let new = u(new);
        let seen = until(&mut events, prepared(new)).await;
        let (transitions, devices) = seen
            .iter()
            .find_map(|e| match e {
                Event::WatchReleaseSeen {
                    release,
                    reason,
                    transitions,
                    devices,
                } if release.id == new => {
                    assert_eq!(*reason, WatchReason::NewRelease);
                    Some((*transitions, *devices))
                }
                _ => None,
            })
            .expect("the new release was seen");
        assert!(transitions > 0 && devices > 0);
        // Every delta to the new release of `main` is reported ready, once per
        // transition, and before the release is called prepared.
        let ready: Vec<(u64, u64)> = seen
            .iter()
            .filter_map(|e| match e {
                Event::WatchDeltaReady {
                    service_name,
                    from_release,
                    to_release,
                } if service_name == "main" && *to_release == new => {
                    Some((*from_release, *to_release))
                }
                _ => None,
            })
            .collect();
        assert!(!ready.is_empty(), "{seen:#?}");
        assert!(ready.iter().any(|(from, _)| *from == u(demo::RELEASE_3)));
        let mut unique = ready.clone();
        unique.dedup();
        assert_eq!(unique, ready);
        match seen.last() {
            Some(Event::WatchPrepared {
                transitions: t,
                ready,
                failed,
                ..
            }) => {
                assert_eq!(*t, transitions);
                assert_eq!((*ready, *failed), (transitions, 0));
            }
            other => panic!("{other:?}"),
        }
        task.abort();
    })
    .await;
}

#[tokio::test]
async fn an_idle_poll_is_one_api_request() {
    local(async {
        let sim = std::sync::Arc::new(fast_sim());
        let watched = sim.clone();
        // The journal is cleared in the watch's own task at the tenth idle
        // poll, before its next request.
        let (task, mut events) = spawn_watch(client(&sim), move |e| {
            if matches!(e, Event::WatchIdle { polls: 10, .. }) {
                watched.clear_journal();
            }
        });
        until(&mut events, |e| {
            matches!(e, Event::WatchIdle { polls: 30, .. })
        })
        .await;
        task.abort();
        let _ = task.await;
        assert_eq!(sim.count(Server::Api, None), 20, "{:#?}", sim.journal());
        assert_eq!(sim.count(Server::Api, Some("application")), 20);
        assert_eq!(sim.count(Server::Delta, None), 0);
    })
    .await;
}

#[tokio::test]
async fn server_faults_are_polled_through_and_reported_once() {
    local(async {
        let sim = std::sync::Arc::new(fast_sim());
        let (task, mut events) = spawn_watch(client(&sim), |_| {});
        until(&mut events, prepared(u(demo::RELEASE_3))).await;
        sim.set_faults(
            Faults::none().with(error(503, "down for maintenance").scope(balena_sim::Scope::Api)),
        );
        // Many polls fail (each after the client's own retries); one report.
        until(&mut events, |e| matches!(e, Event::WatchRetrying { .. })).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        sim.set_faults(Faults::none());
        let after = until(&mut events, |e| matches!(e, Event::WatchIdle { .. })).await;
        let retries = after
            .iter()
            .filter(|e| matches!(e, Event::WatchRetrying { .. }))
            .count();
        assert_eq!(retries, 0, "one report per streak: {after:#?}");
        assert!(
            after
                .iter()
                .any(|e| matches!(e, Event::WatchRecovered { failures } if *failures > 1))
        );
        assert!(!task.is_finished());
        task.abort();
    })
    .await;
}

#[tokio::test]
async fn a_token_that_stops_working_ends_the_watch() {
    local(async {
        let sim = fast_sim();
        let (task, mut events) = spawn_watch(client(&sim), |_| {});
        until(&mut events, |e| matches!(e, Event::WatchIdle { .. })).await;
        sim.set_faults(
            Faults::none().with(error(401, "Unauthorized").scope(balena_sim::Scope::Api)),
        );
        let ended = tokio::time::timeout(PATIENCE, task)
            .await
            .expect("the watch ends")
            .expect("the task does not panic");
        assert!(
            matches!(ended, Err(Error::Unauthorized { .. })),
            "{ended:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_fleet_that_does_not_exist_ends_the_watch_at_once() {
    let sim = fast_sim();
    let missing: FleetRef = "nobody/nothing".parse().unwrap();
    let ended = tokio::time::timeout(
        PATIENCE,
        client(&sim).watch_fleet(&missing, &options(), &|_| {}),
    )
    .await
    .expect("the watch ends");
    assert!(
        matches!(ended, Err(Error::FleetNotFound { .. })),
        "{ended:?}"
    );
    assert_eq!(sim.count(Server::Api, None), 1);
}

#[tokio::test]
async fn a_delta_that_keeps_failing_is_reported_and_the_others_are_followed() {
    local(async {
        let sim = fast_sim();
        // The image of `main` in the release added below.
        let next_image = sim.with_db(|db| db.max_id("image")) + 1;
        let failure = || Outcome::Failed {
            error_message: "no space left on device".into(),
            duration_ms: Some(1000),
        };
        sim.script_delta(
            demo::IMAGE_R2_MAIN,
            next_image,
            None,
            vec![failure(), failure(), failure()],
        );
        // Still building when the other one is given up on.
        sim.script_delta(
            demo::IMAGE_R1_MAIN,
            next_image,
            Some(Duration::from_secs(3000)),
            Vec::new(),
        );
        let (task, mut events) = spawn_watch(client(&sim), |_| {});
        until(&mut events, prepared(u(demo::RELEASE_3))).await;
        let new = u(sim.add_release(demo::RELEASE_3, &["main"]).unwrap());
        let seen = until(&mut events, prepared(new)).await;
        task.abort();
        let position = |wanted: &dyn Fn(&Event) -> bool| seen.iter().position(wanted);
        let failed = position(&|e| {
            matches!(e, Event::WatchDeltaFailed { service_name, from_release, to_release, reason }
                if service_name == "main" && *from_release == u(demo::RELEASE_2)
                    && *to_release == new && reason.contains("no space left on device"))
        })
        .unwrap_or_else(|| panic!("{seen:#?}"));
        let followed = position(&|e| {
            matches!(e, Event::WatchDeltaReady { service_name, from_release, to_release }
                if service_name == "main" && *from_release == u(demo::RELEASE_1) && *to_release == new)
        })
        .unwrap_or_else(|| panic!("{seen:#?}"));
        assert!(failed < followed, "{seen:#?}");
        let failures = seen
            .iter()
            .filter(|e| matches!(e, Event::WatchDeltaFailed { .. }))
            .count();
        assert_eq!(failures, 1, "{seen:#?}");
        match seen.last() {
            Some(Event::WatchPrepared {
                transitions,
                ready,
                failed,
                ..
            }) => {
                assert_eq!(*failed, 1);
                assert_eq!(*ready, transitions - 1);
            }
            other => panic!("{other:?}"),
        }
        // The given-up delta was requested three times, then left.
        let requested = sim
            .journal()
            .iter()
            .filter(|e| {
                e.server == Server::Delta
                    && e.query
                        .as_deref()
                        .is_some_and(|q| q.contains(&format!("src={}&dest={next_image}", demo::IMAGE_R2_MAIN)))
            })
            .count();
        assert_eq!(requested, 3);
    })
    .await;
}

/// Requests to the API and the delta server during `window`, from a watch
/// that polls every 20 ms, measured once it is idle or (with `flap`) once
/// the fleet's target flaps between two releases at every read and the
/// watch has said so; also the events seen during the window.
async fn requests_while(flap: bool, window: Duration) -> (usize, Vec<Event>) {
    let sim = fast_sim();
    let every = Duration::from_millis(20);
    let options = WatchOptions {
        poll: balena_release::PollPolicy {
            initial: every,
            max: every,
            ..fast_poll()
        },
        ..WatchOptions::default()
    };
    let (send, mut events) = unbounded_channel();
    let client = client(&sim);
    let task = tokio::task::spawn_local(async move {
        let sink: Box<dyn Fn(Event) + Send + Sync> = Box::new(move |event: Event| {
            let _ = send.send(event);
        });
        client.watch_fleet(&kiosk(), &options, &*sink).await
    });
    until(&mut events, prepared(u(demo::RELEASE_3))).await;
    if flap {
        sim.set_faults(
            Faults::none().with(
                balena_sim::FaultRule::flap(demo::APP_ID, &[demo::RELEASE_2, demo::RELEASE_3])
                    .scope(balena_sim::Scope::Api)
                    .path_prefix("/v7/application"),
            ),
        );
        until(&mut events, |e| matches!(e, Event::WatchFlapping { .. })).await;
    } else {
        until(&mut events, |e| matches!(e, Event::WatchIdle { .. })).await;
    }
    sim.clear_journal();
    tokio::time::sleep(window).await;
    let requests = sim.count(Server::Api, None) + sim.count(Server::Delta, None);
    task.abort();
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(event);
    }
    (requests, seen)
}

#[tokio::test]
async fn a_flapping_fleet_costs_no_more_requests_than_an_idle_one() {
    local(async {
        let window = Duration::from_secs(2);
        let (idle, _) = requests_while(false, window).await;
        let (flapping, seen) = requests_while(true, window).await;
        // 2 s at one poll per 20 ms (±20 %) is about 100 polls; a watch
        // that started a preparation at each change made thousands.
        assert!((40..=140).contains(&idle), "idle: {idle} requests");
        assert!(
            flapping <= idle + idle / 5 + 5,
            "flapping: {flapping} requests, idle: {idle}"
        );
        assert!(
            !seen.iter().any(|e| matches!(
                e,
                Event::WatchFlapping { .. } | Event::WatchReleaseSeen { .. }
            )),
            "one report per streak, nothing prepared while it flaps: {seen:#?}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_flap_that_ends_on_a_new_answer_prepares_it_once() {
    local(async {
        let sim = fast_sim();
        let (task, mut events) = spawn_watch(client(&sim), |_| {});
        until(&mut events, prepared(u(demo::RELEASE_3))).await;
        sim.set_faults(
            Faults::none().with(
                balena_sim::FaultRule::flap(demo::APP_ID, &[demo::RELEASE_2, demo::RELEASE_3])
                    .scope(balena_sim::Scope::Api)
                    .path_prefix("/v7/application"),
            ),
        );
        let flapped = until(&mut events, |e| matches!(e, Event::WatchFlapping { .. })).await;
        let Some(Event::WatchFlapping { what }) = flapped.last() else {
            unreachable!()
        };
        assert!(
            what.starts_with("the fleet's target release (")
                && what.contains(&demo::RELEASE_2.to_string()),
            "{what}"
        );
        // The flap ends with the target on release 1, which it never
        // showed before: prepared once it holds.
        sim.set_faults(Faults::none());
        sim.with_db(|db| {
            db.update(
                "application",
                demo::APP_ID,
                &[(
                    "should_be_running__release",
                    balena_sim::db::Value::Integer(demo::RELEASE_1),
                )],
            )
            .unwrap()
        });
        let seen = until(&mut events, prepared(u(demo::RELEASE_1))).await;
        task.abort();
        assert!(
            seen.iter()
                .any(|e| matches!(e, Event::WatchSteady { changes } if *changes >= 1)),
            "{seen:#?}"
        );
        let prepared_again = seen
            .iter()
            .filter(|e| matches!(e, Event::WatchReleaseSeen { .. }))
            .count();
        assert_eq!(prepared_again, 1, "{seen:#?}");
    })
    .await;
}
