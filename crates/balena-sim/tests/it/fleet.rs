//! Devices and their targets: pins, the computed `should_be_running__release`,
//! the per-release count of unpinned devices, and large generated fleets.

use balena_sim::{Scenario, Simulator, demo, generated};

use crate::support::{get, start};

async fn rows(sim: &Simulator, query: &str) -> Vec<serde_json::Value> {
    let r = get(sim, &format!("{}/v7/{query}", sim.api_url())).await;
    assert_eq!(r.status(), 200, "{query}");
    let body: serde_json::Value = r.json().await.unwrap();
    body["d"].as_array().unwrap().clone()
}

/// `(id, running, pin, target)` of every device, by id.
async fn targets(sim: &Simulator) -> Vec<(i64, i64, Option<i64>, i64)> {
    let id = |v: &serde_json::Value| v["__id"].as_i64();
    rows(
        sim,
        "device?$select=id,is_running__release,is_pinned_on__release,should_be_running__release&$orderby=id asc",
    )
    .await
    .iter()
    .map(|d| {
        (
            d["id"].as_i64().unwrap(),
            id(&d["is_running__release"]).unwrap(),
            id(&d["is_pinned_on__release"]),
            id(&d["should_be_running__release"]).unwrap(),
        )
    })
    .collect()
}

#[tokio::test]
async fn a_devices_target_is_its_pin_or_else_its_fleets() {
    use demo::*;
    let sim = start(Scenario::demo());
    assert_eq!(
        targets(&sim).await,
        [
            (DEVICE_LOBBY, RELEASE_3, None, RELEASE_3),
            (DEVICE_CAFE, RELEASE_2, None, RELEASE_3),
            (DEVICE_GATE, RELEASE_1, None, RELEASE_3),
            (DEVICE_EAST, RELEASE_2, Some(RELEASE_2), RELEASE_2),
            (DEVICE_WEST, RELEASE_1, None, RELEASE_3),
            (OTHER_DEVICE, OTHER_RELEASE, None, OTHER_RELEASE),
        ]
    );
    let pinned = Scenario::demo_pinned();
    let sim = start(pinned);
    let all = targets(&sim).await;
    assert_eq!(all.len(), 10);
    assert_eq!(
        all[5..9],
        [
            (DEVICE_NORTH, RELEASE_1, Some(RELEASE_2), RELEASE_2),
            (DEVICE_SOUTH, RELEASE_3, Some(RELEASE_1), RELEASE_1),
            (DEVICE_DOCK, RELEASE_1, Some(RELEASE_1), RELEASE_1),
            (DEVICE_YARD, RELEASE_3, Some(RELEASE_3), RELEASE_3),
        ]
    );
    let url = format!(
        "release({RELEASE_1})?$select=id&$expand=is_pinned_to__device($select=device_name;$orderby=id asc)"
    );
    assert_eq!(
        rows(&sim, &url).await,
        [
            serde_json::json!({"id": RELEASE_1, "is_pinned_to__device": [
                {"device_name": "kiosk-south"}, {"device_name": "kiosk-dock"}
            ]})
        ]
    );
}

#[tokio::test]
async fn unpinned_devices_are_counted_per_release_in_one_query() {
    use demo::*;
    let sim = start(Scenario::demo_pinned());
    let query = format!(
        "release?$filter=belongs_to__application eq {APP_ID}&$select=id&$expand=is_running_on__device/$count($filter=is_pinned_on__release eq null)"
    );
    // Unpinned: gate and west run RELEASE_1, cafe RELEASE_2, lobby RELEASE_3.
    let expected = serde_json::json!([
        {"id": RELEASE_1, "is_running_on__device": 2},
        {"id": RELEASE_2, "is_running_on__device": 1},
        {"id": FAILED_RELEASE, "is_running_on__device": 0},
        {"id": RELEASE_3, "is_running_on__device": 1},
    ]);
    assert_eq!(serde_json::Value::from(rows(&sim, &query).await), expected);
    let wire = query.replace(' ', "%20");
    assert_eq!(serde_json::Value::from(rows(&sim, &wire).await), expected);
}

#[tokio::test]
async fn a_generated_fleet_pins_the_share_it_is_asked_for() {
    let scenario =
        Scenario::resolve("generated:services=4,releases=5,devices=100000,pinned_percent=10")
            .unwrap();
    let pinned = scenario
        .devices
        .iter()
        .filter(|d| d.is_pinned_on__release.is_some())
        .count();
    assert_eq!(pinned, 10_000);
    let pins: Vec<(i64, i64)> = scenario
        .devices
        .iter()
        .filter_map(|d| Some((d.is_running__release?, d.is_pinned_on__release?)))
        .collect();
    assert!(pins.iter().all(|(running, pin)| pin <= running));
    let older = pins.iter().filter(|(running, pin)| pin < running).count();
    assert!(
        (3_000..=5_000).contains(&older),
        "{older} pinned to an older release"
    );
    for release in 1..=5 {
        assert!(pins.iter().any(|(running, _)| *running == release));
    }
    let sim = Simulator::start(scenario).unwrap();
    let query = format!(
        "release?$filter=belongs_to__application eq {}&$select=id&$expand=is_running_on__device/$count($filter=is_pinned_on__release eq null)",
        generated::APP_ID
    );
    let counts = rows(&sim, &query).await;
    assert_eq!(counts.len(), 5);
    let unpinned: i64 = counts
        .iter()
        .map(|r| r["is_running_on__device"].as_i64().unwrap())
        .sum();
    assert_eq!(unpinned, 90_000);
    // Unpinned devices follow the fleet's target, the last release.
    let r = get(
        &sim,
        &format!(
            "{}/v7/device/$count?$filter=should_be_running__release%20eq%205%20and%20is_pinned_on__release%20eq%20null",
            sim.api_url()
        ),
    )
    .await;
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["d"], 90_000);
}
