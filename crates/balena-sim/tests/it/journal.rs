//! The journal and counters, through the Rust API and the control endpoint.

use std::time::Duration;

use balena_sim::{Clock, Scenario, Server, demo};

use crate::support::{client, get, start};

#[tokio::test]
async fn requests_are_journalled_with_decoded_queries_and_counted() {
    let sim = start(Scenario::demo());
    let api = sim.api_url();
    get(
        &sim,
        &format!("{api}/v7/release?$filter=status%20eq%20%27success%27"),
    )
    .await;
    get(&sim, &format!("{api}/v7/image({})", demo::IMAGE_R1_MAIN)).await;
    get(&sim, &format!("{api}/v6/image({})", demo::IMAGE_R1_MAIN)).await;
    get(
        &sim,
        &format!(
            "{}/api/v3/delta?src={}&dest={}",
            sim.delta_url(),
            demo::IMAGE_R2_MAIN,
            demo::IMAGE_R3_MAIN
        ),
    )
    .await;
    let journal = sim.journal();
    assert_eq!(journal.len(), 4);
    assert_eq!(
        journal[0].query.as_deref(),
        Some("$filter=status eq 'success'")
    );
    assert_eq!(journal[0].resource.as_deref(), Some("release"));
    assert_eq!(journal[0].method, "GET");
    assert_eq!(journal[3].server, Server::Delta);
    assert_eq!(journal[3].status, 200);
    assert_eq!(sim.count(Server::Api, None), 3);
    assert_eq!(sim.count(Server::Api, Some("image")), 2);
    assert_eq!(sim.count(Server::Delta, Some("delta")), 1);

    let control: serde_json::Value = client()
        .get(format!("{api}/__sim/journal"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(control["entries"].as_array().unwrap().len(), 4);
    assert_eq!(control["counters"]["api"]["image"], 2);
    assert_eq!(control["entries"][0]["path"], "/v7/release");
    assert_eq!(
        sim.count(Server::Api, None),
        3,
        "control requests are not API requests"
    );

    let cleared = client()
        .delete(format!("{}/__sim/journal", sim.delta_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 200);
    assert!(sim.journal().is_empty());
    assert_eq!(sim.count(Server::Api, None), 0);
    sim.clear_journal();
    assert!(sim.journal().is_empty());
}

#[tokio::test]
async fn control_endpoint_sets_faults_and_moves_the_clock() {
    let sim = start(Scenario::demo().with_clock(Clock::manual()));
    let api = sim.api_url();
    let body = r#"{"seed":1,"rules":[{"scope":"api","fault":{"type":"error","status":500,"body":"boom"}}]}"#;
    let set = client()
        .put(format!("{api}/__sim/faults"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let r = get(&sim, &format!("{api}/v7/release")).await;
    assert_eq!(r.status(), 500);
    assert_eq!(r.text().await.unwrap(), "boom");
    let bad = client()
        .put(format!("{api}/__sim/faults"))
        .body("{\"rules\":3}")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    client()
        .delete(format!("{api}/__sim/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(get(&sim, &format!("{api}/v7/release")).await.status(), 200);

    let before = sim.now();
    let moved = client()
        .post(format!("{api}/__sim/clock/advance?s=600"))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 200);
    assert_eq!(
        sim.now().duration_since(before),
        jiff::SignedDuration::from_secs(600)
    );
    sim.advance_clock(Duration::from_secs(60));
    let date = get(&sim, &format!("{api}/v7/release")).await.headers()["date"]
        .to_str()
        .unwrap()
        .to_owned();
    let expected = jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&sim.now())
        .unwrap();
    assert_eq!(
        date, expected,
        "the Date header follows the simulated clock"
    );

    let unknown = client()
        .get(format!("{api}/__sim/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}
