//! The delta endpoint's lifecycle as seen over HTTP and through `delta` rows.

use std::time::Duration;

use balena_sim::db::Value;
use balena_sim::{Outcome, Simulator, demo};

use crate::support::{client, get, manual_demo, start};

fn delta_url(sim: &Simulator, src: i64, dest: i64) -> String {
    format!("{}/api/v3/delta?src={src}&dest={dest}", sim.delta_url())
}

fn field(sim: &Simulator, row: i64, name: &str) -> Option<Value> {
    sim.with_db(|db| db.get("delta", row, name).cloned())
}

fn newest_row(sim: &Simulator) -> i64 {
    sim.with_db(|db| db.max_id("delta"))
}

#[tokio::test]
async fn trigger_runs_then_succeeds_with_size_and_location() {
    let sim = start(manual_demo());
    let url = delta_url(&sim, demo::IMAGE_R2_API, demo::IMAGE_R3_API);
    let first = get(&sim, &url).await;
    assert_eq!(first.status(), 504);
    let row = newest_row(&sim);
    assert!(row > demo::DELTA_R2_R3_MAIN);
    assert_eq!(
        field(&sim, row, "status"),
        Some(Value::Text("running".into()))
    );
    assert_eq!(field(&sim, row, "version"), Some(Value::Integer(3)));
    assert_eq!(
        field(&sim, row, "originates_from__image"),
        Some(Value::Integer(demo::IMAGE_R2_API))
    );
    assert_eq!(
        field(&sim, row, "update_timestamp"),
        Some(Value::DateTime(sim.now()))
    );

    sim.advance_clock(Duration::from_millis(300));
    assert_eq!(get(&sim, &url).await.status(), 504);
    assert_eq!(
        field(&sim, row, "update_timestamp"),
        Some(Value::DateTime(sim.now())),
        "heartbeat is fresh"
    );
    assert_eq!(newest_row(&sim), row, "no second row while running");

    sim.advance_clock(Duration::from_secs(1));
    let done = get(&sim, &url).await;
    assert_eq!(done.status(), 200);
    let body: serde_json::Value = done.json().await.unwrap();
    let Some(Value::Text(location)) = field(&sim, row, "is_stored_at__location") else {
        panic!("no location")
    };
    assert_eq!(
        body,
        serde_json::json!({ "success": true, "name": location })
    );
    assert!(location.contains(":delta-"));
    assert_eq!(
        field(&sim, row, "status"),
        Some(Value::Text("success".into()))
    );
    assert!(matches!(field(&sim, row, "size"), Some(Value::BigInteger(n)) if n > 0));
    assert!(matches!(
        field(&sim, row, "end_timestamp"),
        Some(Value::DateTime(_))
    ));
}

#[tokio::test]
async fn failed_then_stalled_then_success_each_on_a_new_row() {
    let (src, dest) = (demo::IMAGE_R1_MAIN, demo::IMAGE_R3_MAIN);
    let sim = start(manual_demo().with_delta_outcome(
        src,
        dest,
        vec![
            Outcome::failed("disk full").after(Duration::from_secs(2)),
            Outcome::stalled(),
            Outcome::success(1234),
        ],
    ));
    let url = delta_url(&sim, src, dest);
    assert_eq!(get(&sim, &url).await.status(), 504);
    let failed = newest_row(&sim);
    sim.advance_clock(Duration::from_secs(3));
    assert_eq!(
        field(&sim, failed, "status"),
        Some(Value::Text("failed".into()))
    );
    assert_eq!(
        field(&sim, failed, "error_message"),
        Some(Value::Text("disk full".into()))
    );

    assert_eq!(get(&sim, &url).await.status(), 504);
    let stalled = newest_row(&sim);
    assert_ne!(stalled, failed);
    let frozen = field(&sim, stalled, "update_timestamp");
    sim.advance_clock(Duration::from_secs(120));
    assert_eq!(get(&sim, &url).await.status(), 504);
    assert_eq!(
        field(&sim, stalled, "update_timestamp"),
        frozen,
        "a stalled row is not refreshed"
    );
    assert_eq!(newest_row(&sim), stalled, "not stale yet");

    sim.advance_clock(Duration::from_secs(200));
    assert_eq!(get(&sim, &url).await.status(), 504);
    let third = newest_row(&sim);
    assert_ne!(third, stalled, "a stale row is replaced by a new attempt");
    sim.advance_clock(Duration::from_secs(5));
    assert_eq!(get(&sim, &url).await.status(), 200);
    assert_eq!(field(&sim, third, "size"), Some(Value::BigInteger(1234)));
}

#[tokio::test]
async fn existing_success_answers_at_once_and_bad_requests_are_refused() {
    let sim = start(manual_demo());
    let ok = get(
        &sim,
        &delta_url(&sim, demo::IMAGE_R2_MAIN, demo::IMAGE_R3_MAIN),
    )
    .await;
    assert_eq!(ok.status(), 200);
    let unknown = get(&sim, &delta_url(&sim, 1, demo::IMAGE_R3_MAIN)).await;
    assert_eq!(unknown.status(), 404);
    let body: serde_json::Value = unknown.json().await.unwrap();
    assert_eq!(body["error"], "image `1` not found");
    let bad = get(
        &sim,
        &format!("{}/api/v3/delta?src=abc&dest=2", sim.delta_url()),
    )
    .await;
    assert_eq!(bad.status(), 400);
    let no_token = client()
        .get(delta_url(&sim, demo::IMAGE_R2_MAIN, demo::IMAGE_R3_MAIN))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 401);
}

#[tokio::test]
async fn hold_keeps_the_request_until_the_delta_is_ready_or_the_hold_ends() {
    use std::time::Instant;
    let (src, dest) = (demo::IMAGE_R2_API, demo::IMAGE_R3_API);
    // Real clock: the build takes 100 ms, well inside a 2 s hold.
    let sim = start(
        balena_sim::Scenario::demo()
            .with_hold(Duration::from_secs(2))
            .with_delta_duration(src, dest, Duration::from_millis(100)),
    );
    let t = Instant::now();
    assert_eq!(get(&sim, &delta_url(&sim, src, dest)).await.status(), 200);
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );

    // Manual clock: nothing progresses, so the hold runs out and answers 504.
    let sim = start(
        manual_demo()
            .with_hold(Duration::from_millis(250))
            .with_running_status(502),
    );
    let t = Instant::now();
    assert_eq!(get(&sim, &delta_url(&sim, src, dest)).await.status(), 502);
    assert!(t.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn the_npm_tools_delta_lookup_sees_running_then_success_rows() {
    let sim = start(manual_demo());
    let (src, dest) = (demo::IMAGE_R2_API, demo::IMAGE_R3_API);
    let lookup = |sim: &Simulator| {
        let since = sim
            .now()
            .saturating_sub(jiff::SignedDuration::from_mins(3))
            .unwrap();
        format!(
            "{}/v7/delta?$top=1&$select=id,status,version,is_stored_at__location,size&$filter=version%20eq%203\
             %20and%20originates_from__image%20eq%20{src}%20and%20produces__image%20eq%20{dest}%20and%20\
             (status%20eq%20%27success%27%20or%20(status%20eq%20%27running%27%20and%20update_timestamp%20gt%20\
             datetime%27{}%27))&$orderby=id%20desc",
            sim.api_url(),
            since.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        )
    };
    let rows = |body: serde_json::Value| body["d"].as_array().unwrap().clone();
    assert!(rows(get(&sim, &lookup(&sim)).await.json().await.unwrap()).is_empty());
    assert_eq!(get(&sim, &delta_url(&sim, src, dest)).await.status(), 504);
    sim.advance_clock(Duration::from_millis(200));
    let running = rows(get(&sim, &lookup(&sim)).await.json().await.unwrap());
    assert_eq!(running.len(), 1);
    assert_eq!(running[0]["status"], "running");
    assert_eq!(
        running[0]["is_stored_at__location"],
        serde_json::Value::Null
    );
    sim.advance_clock(Duration::from_secs(2));
    let done = rows(get(&sim, &lookup(&sim)).await.json().await.unwrap());
    assert_eq!(done[0]["status"], "success");
    assert!(
        done[0]["size"].is_string(),
        "Big Integer as a string in v7: {}",
        done[0]
    );
    // Ten minutes later the success row is still found; a stalled heartbeat would not be.
    sim.advance_clock(Duration::from_secs(600));
    assert_eq!(
        rows(get(&sim, &lookup(&sim)).await.json().await.unwrap()).len(),
        1
    );
}
