//! Runs that meet trouble: failing or silent servers, failed or stalled builds, deadlines, Ctrl-C.

use std::time::Duration;

use balena_sim::{Clock, Fault, FaultRule, Faults, Outcome, Scenario, Scope, demo};

use crate::support::{
    Run, World, error_line, main_delta, pair, service, stop, wait_for_the_wait_loop,
};

/// Builds finish in a few milliseconds of real time.
fn fast_demo() -> Scenario {
    Scenario::demo().with_clock(Clock::scaled(200.0))
}

/// About 30 % of all API and delta requests fail: 15 % answer 503, and
/// 18 % of the rest lose their connection.
fn thirty_percent(seed: u64) -> Faults {
    Faults::seeded(seed)
        .with(FaultRule::server_error().rate(0.15))
        .with(FaultRule::reset().rate(0.18))
}

/// What faults must not change in a result.
fn essentials(json: &serde_json::Value) -> serde_json::Value {
    let services: Vec<_> = json["is_produced_by__service_update"]
        .as_array()
        .expect("a result lists its services")
        .iter()
        .map(|s| {
            serde_json::json!([
                s["service_name"],
                s["status"],
                s["produces__image"]["is_produced_by__delta"]["size"]
            ])
        })
        .collect();
    serde_json::json!({
        "overall": json["overall_status"],
        "payload": json["estimated_total_payload_size"],
        "services": services,
    })
}

#[test]
fn thirty_percent_failing_requests_change_no_result() {
    let modes: [&[&str]; 3] = [&[], &["--prepare"], &["--wait", "--timeout", "30"]];
    for (seed, extra) in [11u64, 12, 13].into_iter().zip(modes) {
        let words = pair(demo::RELEASE_1, demo::RELEASE_2, extra);
        // Retries take real time: a clock that stands still keeps a build
        // requested by --prepare running, so both runs see the same state.
        let scenario = || match extra {
            [] | ["--prepare"] => Scenario::demo().with_clock(Clock::manual()),
            _ => fast_demo(),
        };
        let clean = World::with(scenario());
        let want = clean.run_words(&words);
        assert_eq!(want.code, 0, "{extra:?} without faults:\n{}", want.stderr);

        let world = World::with(scenario().with_faults(thirty_percent(seed)));
        let (got, took) = world.run_timed(&words);
        assert_eq!(got.code, 0, "{extra:?} with faults:\n{}", got.stderr);
        assert_eq!(
            essentials(&got.json()),
            essentials(&want.json()),
            "{extra:?}"
        );
        assert!(took < Duration::from_secs(30), "{extra:?} took {took:?}");
        let hit = world
            .sim
            .journal()
            .iter()
            .filter(|e| !e.faults.is_empty())
            .count();
        assert!(
            hit > 0,
            "{extra:?}: no fault fired; the test proves nothing"
        );
    }
}

#[test]
fn a_429_is_not_retried_before_its_retry_after() {
    let world = World::with(
        fast_demo().with_faults(
            Faults::none().with(
                FaultRule::rate_limit(1)
                    .scope(Scope::Api)
                    .path_prefix("/v7/release")
                    .limit(1),
            ),
        ),
    );
    let (out, took) = world.run_timed(&pair(demo::RELEASE_1, demo::RELEASE_2, &["-v"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(took >= Duration::from_secs(1), "retried after {took:?}");
    let statuses: Vec<u16> = world
        .sim
        .journal()
        .iter()
        .filter(|e| e.resource.as_deref() == Some("release"))
        .map(|e| e.status)
        .collect();
    assert_eq!(statuses, [429, 200]);
}

#[test]
fn an_api_that_stops_answering_ends_the_run_at_the_deadline() {
    // The first round is answered, then nothing more: the last state read is
    // printed.
    let world = World::with(
        fast_demo()
            .with_faults(Faults::none().with(FaultRule::stall(None).scope(Scope::Api).after(2))),
    );
    let (out, took) = world.run_timed(&pair(demo::RELEASE_1, demo::RELEASE_2, &["--timeout", "1"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(2),
        "deadline 1 s, ended after {took:?}"
    );
    assert!(
        error_line(&out).contains("timed out after 1s"),
        "{}",
        out.stderr
    );
    let json = out.json();
    assert_eq!(json["produces__release"]["id"], demo::RELEASE_2);
    assert_ne!(json["overall_status"], "ready");

    // Silent from the first request: nothing to print but the error.
    let world = World::with(
        fast_demo().with_faults(Faults::none().with(FaultRule::stall(None).scope(Scope::Api))),
    );
    let (out, took) = world.run_timed(&pair(demo::RELEASE_1, demo::RELEASE_2, &["--timeout", "1"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(took < Duration::from_secs(2), "ended after {took:?}");
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    let line = error_line(&out);
    assert!(line.contains("before the API answered"), "{line}");
    assert!(!line.contains("delta"), "no delta is to blame: {line}");
}

#[test]
fn a_delta_server_failing_every_time_ends_with_a_clear_error() {
    let world = World::with(
        fast_demo().with_faults(
            Faults::none().with(
                FaultRule::new(Fault::Error {
                    status: 500,
                    body: Some("internal error".into()),
                })
                .scope(Scope::Delta),
            ),
        ),
    );
    let out = world.run_words(&pair(demo::RELEASE_1, demo::RELEASE_2, &["--prepare"]));
    assert_eq!(out.code, 1, "{}", out.stderr);
    let line = error_line(&out);
    for part in ["delta server", "`500`", "`main`", "internal error"] {
        assert!(line.contains(part), "`{part}` missing: {line}");
    }
    // The first request and the default four retries.
    assert_eq!(world.delta_requests(), 5);
}

#[test]
fn a_stalled_delta_is_requested_again_and_the_wait_ends_ready() {
    // The first build stops sending heartbeats at once; the delta server
    // starts a new one when asked after 5 simulated minutes (1.5 s here).
    let scenario = main_delta(
        fast_demo(),
        vec![Outcome::stalled(), Outcome::success(4321)],
    );
    let world = World::with(scenario);
    let (out, took) = world.run_timed(&pair(
        demo::RELEASE_1,
        demo::RELEASE_2,
        &["--wait", "--timeout", "30"],
    ));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    assert_eq!(json["overall_status"], "ready");
    assert_eq!(
        json["estimated_total_payload_size"].as_u64(),
        Some(4321 + demo::SIZE_R2_API)
    );
    assert_eq!(world.delta_requests(), 2, "one request per build");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn a_stalled_build_reaches_the_timeout_exits_2_and_prints_the_last_state() {
    let scenario = main_delta(Scenario::demo(), vec![Outcome::stalled()]);
    let world = World::with(scenario);
    let (out, took) = world.run_timed(&pair(demo::RELEASE_1, demo::RELEASE_2, &["--timeout", "2"]));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(took < Duration::from_secs(3), "deadline 2 s, took {took:?}");
    assert!(out.stderr.contains("timed out"), "{}", out.stderr);
    let json = out.json();
    assert_ne!(json["overall_status"], "ready");
    assert!(json.get("estimated_total_payload_size").is_none());
}

/// A minute's wait from release 1 to 2 while the builds of `main`'s delta end
/// as `outcomes` say.
fn wait_for_main(outcomes: Vec<Outcome>) -> (World, Run) {
    let world = World::with(main_delta(Scenario::demo(), outcomes));
    let out = world.run_words(&pair(
        demo::RELEASE_1,
        demo::RELEASE_2,
        &["--wait", "--timeout", "60"],
    ));
    (world, out)
}

#[test]
fn a_failing_delta_is_retried_then_reported() {
    let (world, out) = wait_for_main(vec![
        Outcome::failed("out of disk"),
        Outcome::failed("out of disk"),
        Outcome::failed("out of disk again"),
    ]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("main") && out.stderr.contains("out of disk again"),
        "{}",
        out.stderr
    );
    let json = out.json();
    let main = service(&json, "main");
    assert_eq!(main["delta_failure"]["error_message"], "out of disk again");
    assert_eq!(world.delta_requests(), 3, "three attempts");
}

#[test]
fn a_failed_delta_is_triggered_again_and_the_run_ends_ready() {
    let (world, out) = wait_for_main(vec![Outcome::failed("transient"), Outcome::success(1234)]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["overall_status"], "ready");
    assert_eq!(world.delta_requests(), 2);
}

#[cfg(unix)]
#[test]
fn an_interrupted_wait_prints_the_last_state_and_exits_130() {
    let scenario = main_delta(Scenario::demo(), vec![Outcome::stalled()]);
    let world = World::with(scenario);
    let child = world
        .std_cmd()
        .args(pair(demo::RELEASE_1, demo::RELEASE_2, &["--wait"]))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_the_wait_loop(&world);
    let (code, stdout, stderr) = stop(child, "INT");
    assert_eq!(code, 130, "{stderr}");
    assert!(stderr.contains("ERROR: interrupted"), "{stderr}");
    assert!(stderr.contains("hint: delta builds"), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("the last state is printed");
    assert_ne!(json["overall_status"], "ready");
}
