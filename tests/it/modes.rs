//! Describe, prepare and wait on the demo fleet, checked against the
//! simulator's state and journal.

use std::time::{Duration, Instant};

use balena_sim::{Outcome, Scenario, demo};

use crate::support::World;

fn pair(from: i64, to: i64) -> Vec<String> {
    vec![
        "--from-release".into(),
        from.to_string(),
        "--to-release".into(),
        to.to_string(),
    ]
}

fn args(words: &[String], extra: &[&str]) -> Vec<String> {
    words
        .iter()
        .cloned()
        .chain(extra.iter().map(|s| s.to_string()))
        .collect()
}

fn run(world: &World, words: Vec<String>) -> crate::support::Run {
    let refs: Vec<&str> = words.iter().map(String::as_str).collect();
    world.run(&refs)
}

#[test]
fn describe_prints_the_npm_json_with_additive_keys() {
    let world = World::demo();
    let out = run(&world, pair(demo::RELEASE_1, demo::RELEASE_2));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.is_empty(),
        "describe is silent on stderr: {}",
        out.stderr
    );
    insta::assert_snapshot!("describe_r1_r2", out.stdout);
    assert!(
        world.api_requests() <= 2,
        "{} API requests",
        world.api_requests()
    );
    assert_eq!(world.delta_requests(), 0, "describe triggers nothing");
}

#[test]
fn describe_by_commit_prefix_matches_describe_by_id() {
    let world = World::demo();
    let by_id = run(&world, pair(demo::RELEASE_1, demo::RELEASE_2));
    let by_commit = world.run(&[
        "--from-release",
        demo::PREFIX_1,
        "--to-release",
        &demo::COMMIT_2.to_uppercase(),
    ]);
    assert_eq!(by_commit.code, 0, "{}", by_commit.stderr);
    assert_eq!(by_id.stdout, by_commit.stdout);
}

#[test]
fn prepare_triggers_the_missing_delta_and_prints_the_state_after() {
    let world = World::demo();
    let out = run(
        &world,
        args(&pair(demo::RELEASE_1, demo::RELEASE_2), &["--prepare"]),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    let main = &json["is_produced_by__service_update"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service_name"] == "main")
        .unwrap()
        .clone();
    assert_eq!(
        main["status"], "preparing",
        "state read after triggering: {main}"
    );
    let triggers: Vec<_> = world
        .sim
        .journal()
        .into_iter()
        .filter(|e| e.server == balena_sim::Server::Delta)
        .collect();
    assert_eq!(
        triggers.len(),
        1,
        "one trigger, for `main` only: {triggers:?}"
    );
    let query = triggers[0].query.as_deref().unwrap();
    assert_eq!(
        query,
        format!("src={}&dest={}", demo::IMAGE_R1_MAIN, demo::IMAGE_R2_MAIN)
    );
}

#[test]
fn wait_ends_ready_with_the_payload() {
    let world = World::demo();
    let out = run(
        &world,
        args(
            &pair(demo::RELEASE_1, demo::RELEASE_2),
            &["--wait", "--timeout", "60"],
        ),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    assert_eq!(json["overall_status"], "ready");
    let services = json["is_produced_by__service_update"].as_array().unwrap();
    let main = services
        .iter()
        .find(|s| s["service_name"] == "main")
        .unwrap();
    let delta = &main["produces__image"]["is_produced_by__delta"];
    let delta_size = delta["size"].as_u64().expect("a ready delta has a size");
    // api is new (full image), proxy and worker are unchanged (nothing to download).
    assert_eq!(
        json["estimated_total_payload_size"].as_u64(),
        Some(demo::SIZE_R2_API + delta_size)
    );
    let row_size =
        world.sim.with_db(
            |db| match db.get("delta", delta["id"].as_i64().unwrap(), "size") {
                Some(balena_sim::db::Value::BigInteger(size)) => *size,
                other => panic!("delta row size: {other:?}"),
            },
        );
    assert_eq!(row_size, delta_size);
}

#[test]
fn table_output_shows_every_kind_of_change_and_totals() {
    let world = World::demo();
    let out = run(
        &world,
        args(
            &pair(demo::RELEASE_1, demo::RELEASE_3),
            &["--output", "table"],
        ),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    for word in [
        "SERVICE",
        "new",
        "changed",
        "unchanged",
        "removed",
        "total",
        " MB",
    ] {
        assert!(
            out.stdout.contains(word),
            "`{word}` missing:\n{}",
            out.stdout
        );
    }
}

#[test]
fn timeout_exits_2_within_a_second_and_prints_the_last_state() {
    let scenario = Scenario::demo().with_delta_outcome(
        demo::IMAGE_R1_MAIN,
        demo::IMAGE_R2_MAIN,
        vec![Outcome::stalled()],
    );
    let world = World::with(scenario);
    let started = Instant::now();
    let out = run(
        &world,
        args(&pair(demo::RELEASE_1, demo::RELEASE_2), &["--timeout", "2"]),
    );
    let took = started.elapsed();
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(took < Duration::from_secs(3), "deadline 2 s, took {took:?}");
    assert!(out.stderr.contains("timed out"), "{}", out.stderr);
    let json = out.json();
    assert_ne!(json["overall_status"], "ready");
    assert!(json.get("estimated_total_payload_size").is_none());
}

#[test]
fn a_failing_delta_is_retried_then_reported() {
    let scenario = Scenario::demo().with_delta_outcome(
        demo::IMAGE_R1_MAIN,
        demo::IMAGE_R2_MAIN,
        vec![
            Outcome::failed("out of disk"),
            Outcome::failed("out of disk"),
            Outcome::failed("out of disk again"),
        ],
    );
    let world = World::with(scenario);
    let out = run(
        &world,
        args(
            &pair(demo::RELEASE_1, demo::RELEASE_2),
            &["--wait", "--timeout", "60"],
        ),
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("main") && out.stderr.contains("out of disk again"),
        "{}",
        out.stderr
    );
    let json = out.json();
    let main = json["is_produced_by__service_update"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service_name"] == "main")
        .unwrap()
        .clone();
    assert_eq!(main["delta_failure"]["error_message"], "out of disk again");
    assert_eq!(world.delta_requests(), 3, "three attempts");
}

#[test]
fn a_failed_delta_is_triggered_again_and_the_run_ends_ready() {
    let scenario = Scenario::demo().with_delta_outcome(
        demo::IMAGE_R1_MAIN,
        demo::IMAGE_R2_MAIN,
        vec![Outcome::failed("transient"), Outcome::success(1234)],
    );
    let world = World::with(scenario);
    let out = run(
        &world,
        args(
            &pair(demo::RELEASE_1, demo::RELEASE_2),
            &["--wait", "--timeout", "60"],
        ),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["overall_status"], "ready");
    assert_eq!(world.delta_requests(), 2);
}

#[cfg(unix)]
#[test]
fn an_interrupted_wait_prints_the_last_state_and_exits_130() {
    let scenario = Scenario::demo().with_delta_outcome(
        demo::IMAGE_R1_MAIN,
        demo::IMAGE_R2_MAIN,
        vec![Outcome::stalled()],
    );
    let world = World::with(scenario);
    let child = world
        .std_cmd()
        .args(args(&pair(demo::RELEASE_1, demo::RELEASE_2), &["--wait"]))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first round has been read (the trigger reached the delta server).
    let started = Instant::now();
    while world.delta_requests() == 0 && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("ERROR: interrupted"), "{stderr}");
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the last state is printed");
    assert_ne!(json["overall_status"], "ready");
}
