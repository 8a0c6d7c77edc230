//! `--fleet`: its transitions, the requests a round costs, a fleet wait that ends or gives up.

use balena_sim::demo;

use crate::support::{World, error_line};

#[test]
fn fleet_describe_then_wait() {
    let world = World::demo();
    let app = demo::APP_ID.to_string();
    let run = world.run(&["--fleet", &app]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let json = run.json();
    let transitions = json["transitions"].as_array().expect("transitions");
    assert!(transitions.len() >= 2, "{json}");
    let devices: u64 = transitions
        .iter()
        .map(|t| t["device_count"].as_u64().unwrap())
        .sum();
    let expected_devices = world.sim.with_db(|db| {
        db.rows("device")
            .filter(|(id, _)| {
                db.get("device", *id, "belongs_to__application")
                    == Some(&balena_sim::db::Value::Integer(demo::APP_ID))
            })
            .count() as u64
    });
    assert_eq!(devices, expected_devices);
    let describe_requests = world.api_requests();
    assert!(
        describe_requests <= 4,
        "{describe_requests} requests for one fleet round"
    );

    let run = world.run(&["--fleet", &app, "--wait", "--timeout", "60"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let json = run.json();
    assert_eq!(json["overall_status"], "ready", "{json}");
    assert!(
        json["estimated_fleet_payload_size"].as_u64().is_some(),
        "{json}"
    );
}

#[test]
fn ten_thousand_devices_on_fifty_releases_cost_four_requests_a_round() {
    let scenario = balena_sim::Scenario::generated(balena_sim::GeneratedOptions {
        services: 10,
        releases: 50,
        devices: 10_000,
    });
    let world = World::with(scenario);
    let app = world
        .sim
        .with_db(|db| db.rows("application").next().map(|(id, _)| id))
        .unwrap();
    let app = app.to_string();

    let run = world.run(&["--fleet", &app]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let json = run.json();
    let transitions = json["transitions"].as_array().unwrap();
    let devices: u64 = transitions
        .iter()
        .map(|t| t["device_count"].as_u64().unwrap())
        .sum();
    assert_eq!(devices, 10_000);
    assert!(transitions.len() >= 49, "{} transitions", transitions.len());
    assert!(
        world.api_requests() <= 4,
        "{} API requests for one round",
        world.api_requests()
    );

    world.sim.clear_journal();
    let run = world.run(&["--fleet", &app, "--wait", "--timeout", "120"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["overall_status"], "ready");
    // Every round reads the deltas once; only the first also reads the fleet, devices and releases.
    let journal = world.sim.journal();
    let rounds = journal
        .iter()
        .filter(|e| e.resource.as_deref() == Some("delta") && e.server == balena_sim::Server::Api)
        .count();
    let others = world.api_requests() - rounds;
    assert!(others <= 3, "{others} non-delta API requests: {journal:?}");
}

#[test]
fn a_fleet_delta_given_up_on_prints_the_fleet_state_and_names_the_transition() {
    let failing = vec![balena_sim::Outcome::failed("no space left"); 3];
    let scenario = balena_sim::Scenario::demo().with_delta_outcome(
        demo::IMAGE_R1_MAIN,
        demo::IMAGE_R3_MAIN,
        failing,
    );
    let world = World::with(scenario);
    let run = world.run(&[
        "--fleet",
        &demo::APP_ID.to_string(),
        "--wait",
        "--timeout",
        "60",
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let json = run.json();
    assert!(
        json["transitions"].is_array(),
        "the fleet's JSON, not one transition's: {json}"
    );
    let error = error_line(&run);
    assert!(
        error.contains(&format!("`{}`", demo::RELEASE_1)) && error.contains("no space left"),
        "{error}"
    );
}
