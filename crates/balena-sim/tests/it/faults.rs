//! Injected faults as a client sees them.

use std::time::{Duration, Instant};

use balena_sim::{FaultRule, Faults, Scenario, Scope, Server, demo};

use crate::support::{client, get, start};

fn release_url(api: &str) -> String {
    format!("{api}/v7/release({})", demo::RELEASE_1)
}

async fn statuses(sim: &balena_sim::Simulator, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(
            get(sim, &release_url(&sim.api_url()))
                .await
                .status()
                .as_u16(),
        );
    }
    out
}

#[tokio::test]
async fn error_rate_is_deterministic_for_a_seed() {
    let faults = Faults::seeded(7).with(FaultRule::server_error().rate(0.5).scope(Scope::Api));
    let a = start(Scenario::demo().with_faults(faults.clone()));
    let b = start(Scenario::demo().with_faults(faults));
    let first = statuses(&a, 40).await;
    assert_eq!(first, statuses(&b, 40).await);
    let errors = first.iter().filter(|s| **s == 503).count();
    assert!((8..=32).contains(&errors), "{first:?}");
    assert!(first.iter().all(|s| *s == 503 || *s == 200));
    let r = get(&a, &format!("{}/api/v3/delta?src=1&dest=2", a.delta_url())).await;
    assert_eq!(
        r.status(),
        404,
        "api-scoped faults leave the delta server alone"
    );
    let body = client()
        .get(release_url(&a.api_url()))
        .send()
        .await
        .unwrap();
    assert!(body.status() == 401 || body.status() == 503);
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after_after_n_requests() {
    let sim = start(Scenario::demo());
    sim.set_faults(Faults::seeded(1).with(FaultRule::rate_limit(17).after(2).limit(1)));
    assert_eq!(statuses(&sim, 2).await, vec![200, 200]);
    let limited = get(&sim, &release_url(&sim.api_url())).await;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "17");
    assert_eq!(
        statuses(&sim, 1).await,
        vec![200],
        "the limit stops the rule"
    );
    let entry = sim
        .journal()
        .into_iter()
        .find(|e| e.status == 429)
        .expect("journalled");
    assert_eq!(entry.faults, vec!["rate_limit"]);
}

#[tokio::test]
async fn reset_drops_the_connection_without_an_answer() {
    let sim = start(
        Scenario::demo()
            .with_faults(Faults::seeded(1).with(FaultRule::reset().scope(Scope::Delta))),
    );
    let url = format!(
        "{}/api/v3/delta?src={}&dest={}",
        sim.delta_url(),
        demo::IMAGE_R2_MAIN,
        demo::IMAGE_R3_MAIN
    );
    let err = client()
        .get(&url)
        .bearer_auth(sim.token())
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_status() && !err.is_timeout(), "{err:?}");
    assert_eq!(get(&sim, &release_url(&sim.api_url())).await.status(), 200);
    assert_eq!(sim.count(Server::Delta, Some("delta")), 1);
    assert_eq!(
        sim.journal()
            .iter()
            .find(|e| e.server == Server::Delta)
            .unwrap()
            .status,
        0
    );
}

#[tokio::test]
async fn latency_and_stalls_delay_answers() {
    let sim = start(Scenario::demo());
    sim.set_faults(Faults::seeded(3).with(FaultRule::latency(
        Duration::from_millis(120),
        Duration::from_millis(30),
    )));
    let t = Instant::now();
    assert_eq!(statuses(&sim, 1).await, vec![200]);
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(120), "{took:?}");

    sim.set_faults(Faults::seeded(3).with(FaultRule::stall(None)));
    let stalled = client()
        .get(release_url(&sim.api_url()))
        .bearer_auth(sim.token())
        .timeout(Duration::from_millis(200))
        .send()
        .await
        .unwrap_err();
    assert!(stalled.is_timeout(), "{stalled:?}");
    sim.set_faults(Faults::none());
    assert_eq!(statuses(&sim, 1).await, vec![200]);
}
