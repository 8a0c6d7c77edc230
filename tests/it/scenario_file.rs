//! A scenario from a JSON file: byte-order names, exact u64 sizes, unknown sizes, removed services.

use balena_sim::Scenario;

use crate::support::World;

#[test]
fn byte_order_exact_sizes_unknown_sizes_and_removed_services() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/scenarios/odd-names.json"
    );
    let world =
        World::with(Scenario::from_path(std::path::Path::new(path)).expect("the scenario loads"));
    let run = world.run(&["--from-release", "100", "--to-release", "101"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let json = run.json();

    let services = json["is_produced_by__service_update"].as_array().unwrap();
    let names: Vec<&str> = services
        .iter()
        .map(|s| s["service_name"].as_str().unwrap())
        .collect();
    // Byte order: upper case first, `-` (0x2d) before `_` (0x5f); ICU collation would differ.
    assert_eq!(names, ["Web", "web-app", "web_app"]);

    assert_eq!(
        services[0]["produces__image"]["image_size"].as_u64(),
        Some(u64::MAX),
        "exact u64"
    );
    assert_eq!(services[0]["change"], "new");
    let unknown = &services[2]["produces__image"];
    assert_eq!(unknown["image_size"], 0);
    assert_eq!(unknown["size_unknown"], true);
    assert_eq!(
        services[1]["produces__image"]["is_produced_by__delta"]["size"],
        4_000_000
    );
    assert_eq!(json["overall_status"], "ready");
    assert_eq!(json["payload_size_unknown"], true);
    // u64::MAX + 4 MB saturates rather than wrapping.
    assert!(json["estimated_total_payload_size"].as_u64().unwrap() >= u64::MAX - 1);

    let removed = json["removed_services"].as_array().unwrap();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0]["service_name"], "sensor");
    assert_eq!(
        removed[0]["originates_from__image"]["image_size"],
        5_000_000
    );

    let table = world.run(&[
        "--from-release",
        "100",
        "--to-release",
        "101",
        "--output",
        "table",
        "--no-registry",
    ]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    let row: Vec<&str> = table
        .stdout
        .lines()
        .find(|l| l.starts_with("web_app "))
        .expect("a row for web_app")
        .split("  ")
        .map(str::trim)
        .filter(|cell| !cell.is_empty())
        .collect();
    // SERVICE CHANGE STATUS FROM TO DOWNLOAD SAVING (without the registry's
    // column): a new service of unknown size.
    assert_eq!(
        row,
        ["web_app", "new", "ready", "-", "unknown", "unknown", "-"],
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.contains("some sizes are unknown"),
        "{}",
        table.stdout
    );
    assert!(table.stdout.contains("removed"), "{}", table.stdout);
}
