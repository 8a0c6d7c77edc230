//! The `--output table` text for a pair and a fleet, before and after the wait, as snapshots.

use balena_sim::{Clock, Scenario, demo};

use crate::support::{World, pair, snapshot_filters};

#[test]
fn pair_with_every_kind_of_change() {
    let _filters = snapshot_filters().bind_to_scope();
    let world = World::demo();
    let out = world.run_words(&pair(
        demo::RELEASE_1,
        demo::RELEASE_3,
        &["--output", "table"],
    ));
    assert_eq!(out.code, 0, "{}", out.stderr);
    insta::assert_snapshot!("pair_r1_r3_describe", out.stdout);
}

#[test]
fn pair_after_the_wait() {
    let _filters = snapshot_filters().bind_to_scope();
    let world = World::with(Scenario::demo().with_clock(Clock::scaled(200.0)));
    let out = world.run_words(&pair(
        demo::RELEASE_1,
        demo::RELEASE_2,
        &["--wait", "--timeout", "60", "--output", "table"],
    ));
    assert_eq!(out.code, 0, "{}", out.stderr);
    insta::assert_snapshot!("pair_r1_r2_ready", out.stdout);
}

#[test]
fn fleet() {
    let _filters = snapshot_filters().bind_to_scope();
    let world = World::demo();
    let out = world.run(&["--fleet", &demo::APP_ID.to_string(), "--output", "table"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    insta::assert_snapshot!("fleet_describe", out.stdout);
}
