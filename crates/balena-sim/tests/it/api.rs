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

#[tokio::test]
async fn v6_and_v7_reach_the_engine_and_other_versions_do_not() {
    let sim = start(Scenario::demo());
    for version in ["v6", "v7"] {
        let url = format!(
            "{}/{version}/image({})?$select=id",
            sim.api_url(),
            demo::IMAGE_R1_MAIN
        );
        let r = get(&sim, &url).await;
        assert_eq!(r.status(), 200, "{version}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(body["d"].is_array(), "{version}: {body}");
    }
    let r = get(&sim, &format!("{}/v5/image", sim.api_url())).await;
    assert_eq!(r.status(), 404);
    assert_eq!(sim.count(Server::Api, Some("image")), 2);
}

#[tokio::test]
async fn a_generated_fleet_of_ten_thousand_devices_starts_quickly() {
    use balena_sim::{GeneratedOptions, Simulator};
    let t = std::time::Instant::now();
    let scenario = Scenario::generated(GeneratedOptions {
        services: 10,
        releases: 50,
        devices: 10_000,
    });
    let sim = Simulator::start(scenario).unwrap();
    assert!(
        t.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        t.elapsed()
    );
    let (devices, releases, links) = sim.with_db(|db| {
        (
            db.rows("device").count(),
            db.rows("release").count(),
            db.rows("release_image").count(),
        )
    });
    assert_eq!((devices, releases, links), (10_000, 50, 500));
    assert_eq!(sim.token(), balena_sim::generated::TOKEN);
    let r = get(&sim, &format!("{}/v7/release(1)", sim.api_url())).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn v6_renders_big_integers_as_numbers_and_v7_as_strings() {
    let sim = start(Scenario::demo());
    let query = "$select=id,image_size&$filter=status%20eq%20%27success%27";
    let body = |version: &'static str| {
        let url = format!(
            "{}/{version}/image({})?{query}",
            sim.api_url(),
            demo::IMAGE_R1_MAIN
        );
        let sim = &sim;
        async move {
            get(sim, &url)
                .await
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        body("v7").await["d"][0]["image_size"],
        serde_json::json!(demo::SIZE_R1_MAIN.to_string())
    );
    assert_eq!(
        body("v6").await["d"][0]["image_size"],
        serde_json::json!(demo::SIZE_R1_MAIN)
    );
}

#[tokio::test]
async fn the_npm_tools_release_query_sees_the_demo_fleet() {
    let sim = start(Scenario::demo());
    let url = format!(
        "{}/v7/release?$filter=startswith(commit,%27{}%27)%20and%20status%20eq%20%27success%27\
         &$expand=release_image($expand=image($select=id;$expand=is_a_build_of__service($select=service_name))),\
         is_created_by__user($select=id,username)",
        sim.api_url(),
        demo::AMBIGUOUS_PREFIX
    );
    let body: serde_json::Value = get(&sim, &url).await.json().await.unwrap();
    let ids: Vec<_> = body["d"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![demo::RELEASE_2, demo::RELEASE_3]);
    let r3 = &body["d"][1];
    assert_eq!(r3["is_created_by__user"][0]["username"], demo::USERNAME);
    let mut services: Vec<_> = r3["release_image"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ri| {
            ri["image"][0]["is_a_build_of__service"][0]["service_name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    services.sort();
    assert_eq!(services, vec!["api", "main", "proxy"]);
}

/// The request shapes whose status codes follow the real pinejs engine: 400
/// only for what the grammar rejects, 401 with an empty body for an unknown
/// resource, 500 with an empty body for an unknown field or navigation.
#[tokio::test]
async fn errors_have_the_real_engines_status_codes_and_bodies() {
    let sim = start(Scenario::demo());
    let api = sim.api_url();
    let cases = [
        ("/v7/nope", 401),
        ("/v7/nope?$select=id", 401),
        ("/v7/release?$select=nope", 500),
        ("/v7/release?$filter=nope eq 1", 500),
        ("/v7/release?$expand=nope", 500),
        ("/v7/release?$filter=nope/any(x:x/id eq 1)", 500),
        (
            "/v7/release?$filter=release_image/any(ri:ri/nope eq 1)",
            500,
        ),
        ("/v7/release?$select=id%2Ccommit", 400),
        ("/v7/release?$filter=status%20eq", 400),
    ];
    for (path, expected) in cases {
        let r = get(&sim, &format!("{api}{path}")).await;
        assert_eq!(r.status(), expected, "{path}");
        let reason = r.headers().get("x-balena-sim-reason").cloned();
        let content_type = r.headers().get("content-type").cloned();
        let body = r.text().await.unwrap();
        if expected == 400 {
            assert_eq!(body, format!("\"Malformed url: '{path}'\""));
            assert_eq!(content_type.unwrap(), "application/json");
        } else {
            assert_eq!(body, "", "{path}");
            assert!(content_type.is_none(), "{path}");
            assert!(reason.is_some(), "{path}");
        }
    }
    let r = get(&sim, &format!("{api}/v7/delta?$top=1")).await;
    assert_eq!(r.status(), 200, "balenaCloud has deltas");

    let open = start(Scenario::demo().with_openbalena());
    let r = get(&open, &format!("{}/v7/delta?$top=1", open.api_url())).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.text().await.unwrap(), "");
    let r = get(&open, &format!("{}/v7/release?$top=1", open.api_url())).await;
    assert_eq!(r.status(), 200, "the same token reads releases");
}
