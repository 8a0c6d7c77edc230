//! Describe, prepare and wait when all goes well, checked against the simulator's state.

use balena_sim::demo;

use crate::support::{World, pair, run_checked, service};

#[test]
fn describe_prints_the_npm_json_with_additive_keys() {
    let world = World::demo();
    let out = world.run_words(&pair(demo::RELEASE_1, demo::RELEASE_2, &[]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    // On stderr only the next step: the delta of `main` failed before.
    assert!(
        out.stderr
            .starts_with("hint: the delta for service `main` failed")
            && out.stderr.lines().count() == 1,
        "describe says only what to run next on stderr: {}",
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
    let by_id = world.run_words(&pair(demo::RELEASE_1, demo::RELEASE_2, &[]));
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
    let out = world.run_words(&pair(demo::RELEASE_1, demo::RELEASE_2, &["--prepare"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    let main = service(&json, "main");
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
    let out = world.run_words(&pair(
        demo::RELEASE_1,
        demo::RELEASE_2,
        &["--wait", "--timeout", "60"],
    ));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    assert_eq!(json["overall_status"], "ready");
    let main = service(&json, "main");
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
fn no_registry_writes_no_download_keys_and_a_bad_registry_map_is_one_error_line() {
    let world = World::demo();
    let out = world.run_words(&pair(demo::RELEASE_1, demo::RELEASE_2, &["--no-registry"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stdout.contains("download_size"), "{}", out.stdout);
    assert!(!out.stdout.contains("pull_size"), "{}", out.stdout);
    // With a registry that does not answer, the keys say the sizes are
    // unknown.
    let with = run_checked(
        world
            .cmd()
            .env(
                "BALENA_RELEASE_UPDATE_REGISTRY_MAP",
                "registry2.balena-cloud.com=http://127.0.0.1:1",
            )
            .args(pair(demo::RELEASE_1, demo::RELEASE_2, &["-v"])),
    );
    assert!(
        with.stdout.contains("\"download_size_unknown\": true"),
        "{}",
        with.stdout
    );
    // -v says why.
    assert!(
        with.stderr
            .contains("download sizes unknown: no answer from `http://127.0.0.1:1`"),
        "{}",
        with.stderr
    );

    let out = world
        .cmd()
        .env(
            "BALENA_RELEASE_UPDATE_REGISTRY_MAP",
            "registry2.balena-cloud.com",
        )
        .args(pair(demo::RELEASE_1, demo::RELEASE_2, &[]))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("BALENA_RELEASE_UPDATE_REGISTRY_MAP"),
        "{stderr}"
    );
}

/// `-v` logs each request in one line (method, host, port and path,
/// status, time), with no Rust debug text (`Name { field: … }`).
#[test]
fn verbose_logs_each_request_in_one_line() {
    let world = World::demo();
    let out = world.run_words(&pair(
        demo::RELEASE_1,
        demo::RELEASE_2,
        &["-v", "--prepare"],
    ));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let requests: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains(" GET 127.0.0.1:"))
        .collect();
    assert!(requests.len() >= 3, "{}", out.stderr);
    for line in &requests {
        let tail = line.split(" GET 127.0.0.1:").nth(1).unwrap();
        let words: Vec<&str> = tail.split(' ').collect();
        assert_eq!(words.len(), 5, "{line}");
        assert!(words[1].parse::<u16>().is_ok(), "{line}");
        assert_eq!(words[2], "in", "{line}");
        assert!(words[3].parse::<u64>().is_ok(), "{line}");
        assert_eq!(words[4], "ms", "{line}");
    }
    assert!(
        requests
            .iter()
            .any(|l| l.contains("/v7/release") && l.contains(" 200 in ")),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("delta triggered") && out.stderr.contains(" answer="),
        "{}",
        out.stderr
    );
    for line in out.stderr.lines() {
        assert!(
            !line.contains(" { ") && !line.contains("Some("),
            "Rust debug text: {line}"
        );
    }
}
