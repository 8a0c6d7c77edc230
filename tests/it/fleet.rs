//! `--fleet`: every transition the demo fleet's devices will make.

use balena_sim::demo;

use crate::support::World;

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
