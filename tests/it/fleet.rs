//! `--fleet`: every transition the demo fleet's devices will make, each to
//! its own target (its pin, else the fleet's target), and what a round
//! costs in API requests (counted in the simulator's journal).

use balena_sim::{Scenario, Server, demo};

use crate::support::World;

/// Every API request the simulator received (`path?query`, the query
/// decoded), oldest first.
fn seen(world: &World) -> Vec<String> {
    world
        .sim
        .journal()
        .into_iter()
        .filter(|e| e.server == Server::Api)
        .map(|e| match e.query {
            Some(query) => format!("{}?{query}", e.path),
            None => e.path,
        })
        .collect()
}

/// (device count, source, target) of every transition in the JSON.
fn transitions(json: &serde_json::Value) -> Vec<(u64, u64, u64)> {
    json["transitions"]
        .as_array()
        .expect("transitions")
        .iter()
        .map(|t| {
            (
                t["device_count"].as_u64().unwrap(),
                t["originates_from__release"]["id"].as_u64().unwrap(),
                t["produces__release"]["id"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn id(n: i64) -> u64 {
    u64::try_from(n).unwrap()
}

#[test]
fn fleet_describe_then_wait() {
    let world = World::demo();
    let app = demo::APP_ID.to_string();
    let run = world.run(&["--fleet", &app]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let json = run.json();
    // Lobby (on 3) and east (pinned to the 2 it runs) stay; the others go
    // to the fleet's target.
    assert_eq!(
        transitions(&json),
        [
            (2, id(demo::RELEASE_1), id(demo::RELEASE_3)),
            (1, id(demo::RELEASE_2), id(demo::RELEASE_3)),
        ]
    );
    assert_eq!(json["devices_on_target"], 2, "{json}");
    assert_eq!(json["devices_without_release"], 0, "{json}");
    let listed: u64 = transitions(&json).iter().map(|t| t.0).sum();
    let expected_devices = world.sim.with_db(|db| {
        db.rows("device")
            .filter(|(id, _)| {
                db.get("device", *id, "belongs_to__application")
                    == Some(&balena_sim::db::Value::Integer(demo::APP_ID))
            })
            .count() as u64
    });
    assert_eq!(listed + 2, expected_devices);
    let describe_requests = world.api_requests();
    // 5, and the fleet's and its devices' delta settings.
    assert!(
        describe_requests <= 7,
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
fn a_pinned_device_keeps_its_pin_under_to_release_and_the_table_counts_idle_devices() {
    let mut scenario = Scenario::demo();
    // West runs release 1 and is pinned to it; lobby runs 3 and is pinned
    // to 2.
    for d in &mut scenario.devices {
        match d.id {
            demo::DEVICE_WEST => d.is_pinned_on__release = Some(demo::RELEASE_1),
            demo::DEVICE_LOBBY => d.is_pinned_on__release = Some(demo::RELEASE_2),
            _ => {}
        }
    }
    let world = World::with(scenario);
    let app = demo::APP_ID.to_string();
    let to = demo::RELEASE_3.to_string();
    let run = world.run(&["--fleet", &app, "--to-release", &to]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let json = run.json();
    assert_eq!(json["produces__release"]["id"], id(demo::RELEASE_3));
    assert_eq!(
        transitions(&json),
        [
            (1, id(demo::RELEASE_1), id(demo::RELEASE_3)),
            (1, id(demo::RELEASE_2), id(demo::RELEASE_3)),
            (1, id(demo::RELEASE_3), id(demo::RELEASE_2)),
        ]
    );
    assert_eq!(json["devices_on_target"], 2, "{json}");
    let text = serde_json::to_string(&json).unwrap();
    let at = |key: &str| text.find(&format!("\"{key}\"")).unwrap();
    assert!(at("overall_status") < at("devices_on_target"));
    assert!(at("devices_on_target") < at("devices_without_release"));

    let run = world.run(&["--fleet", &app, "--output", "table"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let second = run.stdout.lines().nth(1).unwrap();
    assert!(
        second.contains("3 transitions, 2 devices already on their target, 0 without a release"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!(
            "release {} ({}) to {} (",
            demo::RELEASE_3,
            &demo::COMMIT_3[..10],
            demo::RELEASE_2
        )),
        "{}",
        run.stdout
    );
}

#[test]
fn ten_thousand_devices_on_fifty_releases_cost_seven_requests_a_round() {
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
    let listed: u64 = transitions(&json).iter().map(|t| t.0).sum();
    let on_target = json["devices_on_target"].as_u64().unwrap();
    assert_eq!(listed + on_target, 10_000);
    assert!(on_target > 0);
    assert_eq!(transitions(&json).len(), 49);
    // 5, and the two delta settings queries, whatever the number of devices.
    assert!(
        world.api_requests() <= 7,
        "{} API requests for one round",
        world.api_requests()
    );
    // No device row is read: the devices that follow the fleet are counted.
    let describe = seen(&world);
    assert!(
        describe
            .iter()
            .filter(|t| t.starts_with("/v7/device?"))
            .all(|t| t.contains("is_pinned_on__release ne null")),
        "{describe:?}"
    );

    world.sim.clear_journal();
    let run = world.run(&["--fleet", &app, "--wait", "--timeout", "120"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["overall_status"], "ready");
    // Every round reads the deltas once; only the first also reads the
    // fleet, the device counts, the pinned devices, the releases and the
    // two delta settings.
    // The registry's token request goes to the API host too: counted apart.
    let seen: Vec<String> = seen(&world)
        .into_iter()
        .filter(|t| !t.starts_with("/auth/v1/token"))
        .collect();
    let rounds = seen.iter().filter(|t| t.starts_with("/v7/delta")).count();
    let others = seen.len() - rounds;
    assert!(others <= 6, "{others} non-delta API requests: {seen:?}");
    // Registry tokens: one per batch of at most 100 repositories (50
    // releases of 10 services have 500 images), never one long request.
    let tokens: Vec<String> = world
        .sim
        .journal()
        .iter()
        .filter(|e| e.resource.as_deref() == Some("token"))
        .map(|e| e.query.clone().unwrap_or_default())
        .collect();
    assert!(
        (1..=10).contains(&tokens.len()),
        "{} token requests",
        tokens.len()
    );
    assert!(tokens.iter().all(|q| q.matches("scope=").count() <= 100));
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
    let error = run
        .stderr
        .lines()
        .find(|l| l.starts_with("ERROR: "))
        .unwrap();
    assert!(
        error.contains(&format!("`{}`", demo::RELEASE_1)) && error.contains("no space left"),
        "{error}"
    );
}
