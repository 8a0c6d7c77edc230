//! Injected faults as a client sees them.

use std::time::{Duration, Instant};

use balena_sim::{Fault, FaultRule, Faults, Scenario, Scope, Server, demo};

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

#[tokio::test]
async fn a_rule_can_refuse_the_counting_queries_only() {
    let sim = start(
        Scenario::demo().with_faults(
            Faults::none().with(
                FaultRule::new(Fault::Error {
                    status: 400,
                    body: Some("\"Malformed url\"".into()),
                })
                .scope(Scope::Api)
                .query_contains("/$count("),
            ),
        ),
    );
    let api = sim.api_url();
    let app = demo::APP_ID;
    let plain = format!("{api}/v7/application?$filter=id%20eq%20{app}&$select=id");
    // The rule reads the query as the journal shows it: percent-decoded.
    let counted = format!(
        "{api}/v7/application?$filter=id%20eq%20{app}&$select=id\
         &$expand=owns__device%2F%24count(%24filter%3Dis_running__release%20eq%20null)"
    );
    let per_release = format!(
        "{api}/v7/release?$filter=belongs_to__application%20eq%20{app}&$select=id\
         &$expand=is_running_on__device/$count($filter=is_pinned_on__release%20eq%20null)"
    );
    let plain_answer = get(&sim, &plain).await;
    assert_eq!(plain_answer.status(), 200);
    let body: serde_json::Value = plain_answer.json().await.unwrap();
    assert_eq!(body["d"][0]["id"], app);
    for url in [&counted, &per_release] {
        let refused = get(&sim, url).await;
        assert_eq!(refused.status(), 400, "{url}");
        assert_eq!(refused.text().await.unwrap(), "\"Malformed url\"");
    }
    sim.set_faults(Faults::none());
    let answer = get(&sim, &per_release).await;
    assert_eq!(answer.status(), 200, "the same query without the rule");
    let faulted: Vec<(String, Vec<&str>)> = sim
        .journal()
        .into_iter()
        .map(|e| (e.resource.unwrap_or_default(), e.faults))
        .collect();
    assert_eq!(
        faulted,
        [
            ("application".to_owned(), vec![]),
            ("application".to_owned(), vec!["error"]),
            ("release".to_owned(), vec!["error"]),
            ("release".to_owned(), vec![]),
        ]
    );
}
