//! API routing, authentication and the `Date` header.

use balena_sim::{Scenario, Server, demo};

use crate::support::{client, get, start};

#[tokio::test]
async fn api_requires_the_scenario_token() {
    let sim = start(Scenario::demo());
    let url = format!("{}/v7/release({})", sim.api_url(), demo::RELEASE_1);
    let missing = client().get(&url).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.text().await.unwrap(), "Unauthorized");
    let wrong = client()
        .get(&url)
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = get(&sim, &url).await;
    assert_eq!(right.status(), 200);
    assert!(right.headers().contains_key("date"));
    assert_eq!(sim.count(Server::Api, Some("release")), 3);
}

#[tokio::test]
async fn unknown_routes_are_404_naming_the_route_and_other_methods_405() {
    let sim = start(Scenario::demo());
    let r = get(&sim, &format!("{}/user/v1/refresh-token", sim.api_url())).await;
    assert_eq!(r.status(), 404);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("GET /user/v1/refresh-token")
    );
    let r = client()
        .post(format!("{}/v7/release", sim.api_url()))
        .bearer_auth(sim.token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let r = get(&sim, &format!("{}/v7/release", sim.delta_url())).await;
    assert_eq!(r.status(), 404, "the delta server does not serve the API");
}
