//! Runs that end early: describe and `--prepare` within their bound, and every failure after a state was read prints that state.

use std::time::Duration;

use balena_sim::{Clock, Fault, FaultRule, Faults, Scenario, Scope, demo};

use crate::support::{Run, World, error_line, pair, run_checked};

/// The hidden knob that shortens the 120 s bound of describe and `--prepare`.
const RUN_LIMIT: &str = "BALENA_RELEASE_UPDATE_RUN_LIMIT";

fn stalled(scope: Scope) -> Scenario {
    Scenario::demo().with_faults(Faults::none().with(FaultRule::stall(None).scope(scope)))
}

/// Runs `words` with the bound set to `limit`, and how long the run took.
fn run_bounded(world: &World, limit: &str, words: &[String]) -> (Run, Duration) {
    let started = std::time::Instant::now();
    let run = run_checked(world.cmd().env(RUN_LIMIT, limit).args(words));
    (run, started.elapsed())
}

#[test]
fn describe_gives_up_at_its_bound_when_the_api_stalls() {
    for target in [
        pair(demo::RELEASE_1, demo::RELEASE_2, &[]),
        vec!["--fleet".to_owned(), demo::APP_ID.to_string()],
    ] {
        let world = World::with(stalled(Scope::Api));
        let (run, took) = run_bounded(&world, "1s", &target);
        assert_eq!(run.code, 1, "{target:?}: {}", run.stderr);
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(5),
            "{target:?}: bound 1 s, ended after {took:?}"
        );
        let error = error_line(&run);
        assert!(
            error.starts_with("ERROR: no complete answer from the API or delta server within 1s"),
            "{error}"
        );
        assert!(error.contains("hint: "), "{error}");
        assert!(run.stdout.is_empty(), "nothing was read:\n{}", run.stdout);
    }
}

#[test]
fn prepare_gives_up_at_its_bound_and_prints_the_state_read() {
    // The API answers, the delta server never does.
    let world = World::with(stalled(Scope::Delta));
    let (run, took) = run_bounded(
        &world,
        "500ms",
        &pair(demo::RELEASE_1, demo::RELEASE_2, &["--prepare"]),
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        took < Duration::from_secs(2),
        "bound 0.5 s, ended after {took:?}"
    );
    assert!(error_line(&run).contains("within 500ms"), "{}", run.stderr);
    let json = run.json();
    assert_eq!(json["produces__release"]["id"], demo::RELEASE_2);
    assert_ne!(json["overall_status"], "ready");
}

#[test]
fn the_bound_leaves_a_wait_alone() {
    // The demo's main delta takes about 1.6 s to build, longer than the bound.
    let world = World::demo();
    let (run, took) = run_bounded(
        &world,
        "200ms",
        &pair(
            demo::RELEASE_1,
            demo::RELEASE_2,
            &["--wait", "--timeout", "30"],
        ),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(took > Duration::from_millis(200), "{took:?}");
    assert_eq!(run.json()["overall_status"], "ready");
}

#[test]
fn a_token_revoked_during_a_wait_still_prints_the_last_state() {
    for fleet in [false, true] {
        let words = if fleet {
            vec!["--fleet".to_owned(), demo::APP_ID.to_string()]
        } else {
            pair(demo::RELEASE_1, demo::RELEASE_2, &[])
        };
        // A manual clock: the deltas never finish building.
        let world = World::with(Scenario::demo().with_clock(Clock::manual()));
        // The requests of the first state, counted on a describe.
        let describe = world.run_words(&words);
        assert_eq!(describe.code, 0, "{}", describe.stderr);
        let first_state = world.api_requests() as u64;
        world.sim.set_faults(
            Faults::none().with(
                FaultRule::new(Fault::Error {
                    status: 401,
                    body: Some("Unauthorized".into()),
                })
                .scope(Scope::Api)
                .after(first_state),
            ),
        );
        let mut waiting = words.clone();
        waiting.push("--wait".to_owned());
        let run = world.run_words(&waiting);
        assert_eq!(run.code, 1, "fleet {fleet}: {}", run.stderr);
        assert!(
            error_line(&run).contains("401"),
            "fleet {fleet}: {}",
            run.stderr
        );
        let json = run.json();
        assert_ne!(json["overall_status"], "ready", "fleet {fleet}");
        if fleet {
            assert_eq!(json["application"]["id"], demo::APP_ID);
        } else {
            assert_eq!(json["produces__release"]["id"], demo::RELEASE_2);
        }
        assert!(
            world.api_requests() as u64 > 2 * first_state,
            "the 401 came after the first state"
        );
    }
}
