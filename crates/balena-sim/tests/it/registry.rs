//! The registry: manifests and blob sizes behind the distribution token flow.

use balena_sim::{Scenario, Server, Simulator, demo};
use reqwest::header::{ACCEPT, WWW_AUTHENTICATE};

use crate::support::{client, get, start};

const DOCKER: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const ALL: &str = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json";

/// An image's location and content hash, as the API reports them.
async fn image(sim: &Simulator, id: i64) -> (String, String) {
    let url = format!(
        "{}/v7/image({id})?$select=is_stored_at__image_location,content_hash",
        sim.api_url()
    );
    let body: serde_json::Value = get(sim, &url).await.json().await.unwrap();
    let row = &body["d"][0];
    (
        row["is_stored_at__image_location"]
            .as_str()
            .unwrap()
            .to_owned(),
        row["content_hash"].as_str().unwrap().to_owned(),
    )
}

/// The repository of a location: the part after the host.
fn repository(location: &str) -> &str {
    location.split_once('/').unwrap().1
}

/// Follows the challenge: asks the realm for a token with its service and scope.
async fn registry_token(sim: &Simulator, challenge: &str) -> String {
    let field = |name: &str| {
        let start = challenge.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        let end = challenge[start..].find('"').unwrap() + start;
        challenge[start..end].to_owned()
    };
    let realm = field("realm");
    assert_eq!(realm, format!("{}/auth/v1/token", sim.api_url()));
    let url = format!(
        "{realm}?service={}&scope={}",
        field("service"),
        field("scope")
    );
    let without = client().get(&url).send().await.unwrap();
    assert_eq!(without.status(), 401, "the realm wants the balena token");
    let body: serde_json::Value = get(sim, &url).await.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

async fn manifest(
    sim: &Simulator,
    repo: &str,
    reference: &str,
    token: &str,
    accept: &str,
) -> reqwest::Response {
    client()
        .get(format!(
            "{}/v2/{repo}/manifests/{reference}",
            sim.registry_url()
        ))
        .bearer_auth(token)
        .header(ACCEPT, accept)
        .send()
        .await
        .unwrap()
}

fn layer_sizes(manifest: &serde_json::Value) -> Vec<(String, u64)> {
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().unwrap().to_owned(),
                l["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_token_flow_then_manifests_by_content_hash_and_blob_sizes() {
    let sim = start(Scenario::demo());
    let (location, hash) = image(&sim, demo::IMAGE_R1_MAIN).await;
    assert!(location.starts_with("registry2.balena-cloud.com/v2/"));
    let repo = repository(&location);
    let url = format!("{}/v2/{repo}/manifests/{hash}", sim.registry_url());
    let first = client().get(&url).send().await.unwrap();
    assert_eq!(first.status(), 401);
    let challenge = first.headers()[WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        challenge,
        format!(
            "Bearer realm=\"{}/auth/v1/token\",service=\"registry2.balena-cloud.com\",scope=\"repository:{repo}:pull\"",
            sim.api_url()
        )
    );
    let token = registry_token(&sim, &challenge).await;
    assert_eq!(token.split('.').count(), 3, "JWT-shaped");

    let r = manifest(&sim, repo, &hash, &token, ALL).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], DOCKER);
    assert_eq!(r.headers()["docker-content-digest"], hash.as_str());
    let bytes = r.bytes().await.unwrap();
    let head = client()
        .head(format!("{}/v2/{repo}/manifests/{hash}", sim.registry_url()))
        .bearer_auth(&token)
        .header(ACCEPT, ALL)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        bytes.len().to_string().as_str()
    );
    assert_eq!(head.headers()["docker-content-digest"], hash.as_str());
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["schemaVersion"], 2);
    let layers = layer_sizes(&body);
    assert_eq!(layers.len(), 3, "base, middle, top");

    for (digest, size) in &layers {
        let head = client()
            .head(format!("{}/v2/{repo}/blobs/{digest}", sim.registry_url()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), 200);
        assert_eq!(head.headers()["content-length"], size.to_string().as_str());
    }
    let missing = client()
        .head(format!(
            "{}/v2/{repo}/blobs/sha256:{}",
            sim.registry_url(),
            "0".repeat(64)
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // The token covers the scope it was asked for, no other repository.
    let (other, other_hash) = image(&sim, demo::IMAGE_R2_MAIN).await;
    let r = manifest(&sim, repository(&other), &other_hash, &token, ALL).await;
    assert_eq!(r.status(), 401);
    assert_eq!(sim.count(Server::Registry, Some("manifests")), 4);
    assert_eq!(sim.count(Server::Registry, Some("blobs")), 4);
    assert_eq!(sim.count(Server::Api, Some("token")), 2);
}

/// One token for several scopes, as a client asks for a whole round.
async fn token_for(sim: &Simulator, repos: &[&str]) -> String {
    let scopes: Vec<String> = repos
        .iter()
        .map(|r| format!("scope=repository:{r}:pull"))
        .collect();
    let url = format!(
        "{}/auth/v1/token?service=registry2.balena-cloud.com&{}",
        sim.api_url(),
        scopes.join("&")
    );
    let body: serde_json::Value = get(sim, &url).await.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn releases_share_base_and_middle_layers_and_equal_content_has_equal_layers() {
    let sim = start(Scenario::demo());
    let mut manifests = Vec::new();
    let mut repos = Vec::new();
    let ids = [
        demo::IMAGE_R1_MAIN,
        demo::IMAGE_R2_MAIN,
        demo::IMAGE_R3_MAIN,
        demo::IMAGE_R1_PROXY,
        demo::IMAGE_R2_PROXY,
    ];
    for id in ids {
        let (location, hash) = image(&sim, id).await;
        repos.push((repository(&location).to_owned(), hash));
    }
    let names: Vec<&str> = repos.iter().map(|(r, _)| r.as_str()).collect();
    let token = token_for(&sim, &names).await;
    for (repo, hash) in &repos {
        let r = manifest(&sim, repo, hash, &token, ALL).await;
        assert_eq!(r.status(), 200, "{repo}");
        manifests.push(layer_sizes(&r.json().await.unwrap()));
    }
    let [r1, r2, r3, p1, p2] = &manifests[..] else {
        unreachable!()
    };
    assert_eq!(r1[0], r2[0], "one base layer per fleet");
    assert_eq!(r1[0], p1[0]);
    assert_eq!(r1[1], r2[1], "main's middle layer lasts for three builds");
    assert_ne!(r2[1], r3[1]);
    assert_ne!(r1[2], r2[2], "a new build, a new top layer");
    assert_eq!(p1, p2, "the same content hash, the same layers");
    let total: u64 = r2.iter().map(|(_, size)| size).sum();
    assert!(
        total < demo::SIZE_R2_MAIN,
        "compressed layers are smaller than the image on disk"
    );
}

#[tokio::test]
async fn oci_and_docker_manifests_follow_accept_and_a_ready_delta_is_an_image() {
    let sim = start(Scenario::demo());
    let (location, hash) = image(&sim, demo::IMAGE_R2_API).await;
    let api_repo = repository(&location).to_owned();
    let delta: serde_json::Value = get(
        &sim,
        &format!(
            "{}/v7/delta({})?$select=is_stored_at__location,size",
            sim.api_url(),
            demo::DELTA_R2_R3_MAIN
        ),
    )
    .await
    .json()
    .await
    .unwrap();
    let delta_location = delta["d"][0]["is_stored_at__location"]
        .as_str()
        .unwrap()
        .to_owned();
    let (delta_repo, tag) = repository(&delta_location).rsplit_once(':').unwrap();
    let token = token_for(&sim, &[&api_repo, delta_repo]).await;

    let r = manifest(&sim, &api_repo, &hash, &token, OCI).await;
    assert_eq!(r.headers()["content-type"], OCI);
    let r = manifest(&sim, &api_repo, &hash, &token, DOCKER).await;
    assert_eq!(r.status(), 404, "an OCI manifest is not served as Docker's");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "MANIFEST_UNKNOWN");

    let r = manifest(&sim, delta_repo, tag, &token, ALL).await;
    assert_eq!(r.status(), 200);
    let digest = r.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: serde_json::Value = r.json().await.unwrap();
    // One layer per target layer; the base the source shares is empty, the
    // changed middle and top share the compressed delta (each rounded down).
    let layers = layer_sizes(&body);
    assert_eq!(layers.len(), 3, "{body}");
    assert_eq!(layers[0].1, 32, "{body}");
    let compressed: u64 = layers[1..].iter().map(|(_, s)| s).sum();
    let expected = demo::DELTA_R2_R3_MAIN_SIZE / 5 * 3;
    assert!((expected - 1..=expected).contains(&compressed), "{body}");
    let by_digest = manifest(&sim, delta_repo, &digest, &token, ALL).await;
    assert_eq!(by_digest.status(), 200, "by digest as well as by tag");
    let head = client()
        .head(format!(
            "{}/v2/{delta_repo}/blobs/{}",
            sim.registry_url(),
            layers[0].0
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.headers()["content-length"],
        layers[0].1.to_string().as_str()
    );
    let unknown = manifest(&sim, delta_repo, "delta-0000000000000000", &token, ALL).await;
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn a_multi_platform_index_lists_its_platforms() {
    let sim = start(Scenario::demo());
    let (location, hash) = image(&sim, demo::IMAGE_OTHER_MAIN).await;
    let repo = repository(&location);
    let token = token_for(&sim, &[repo]).await;
    let r = manifest(&sim, repo, &hash, &token, ALL).await;
    assert_eq!(r.headers()["content-type"], OCI_INDEX);
    let body: serde_json::Value = r.json().await.unwrap();
    let entries = body["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1]["platform"]["architecture"], "arm64");
    let arm = entries[1]["digest"].as_str().unwrap();
    let r = manifest(&sim, repo, arm, &token, OCI).await;
    assert_eq!(r.status(), 200, "each platform's manifest is served");
    // A client that takes no index gets the linux/amd64 manifest.
    let r = manifest(&sim, repo, &hash, &token, OCI).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], OCI);
    assert_eq!(
        r.headers()["docker-content-digest"],
        entries[0]["digest"].as_str().unwrap()
    );
}

#[tokio::test]
async fn given_layers_make_the_content_hash_the_manifest_digest() {
    let digest = |c: char| format!("sha256:{}", c.to_string().repeat(64));
    let scenario = Scenario::from_json(&format!(
        r#"{{
            "tokens": ["t"],
            "applications": [{{"id": 1, "app_name": "a"}}],
            "services": [{{"id": 2, "application": 1, "service_name": "main"}}],
            "images": [
                {{"id": 3, "is_a_build_of__service": 2, "is_stored_at__image_location": "127.0.0.1:5000/v2/x",
                  "layers": [{{"digest": "{}", "size": 100}}, {{"digest": "{}", "size": 7}}]}}
            ]
        }}"#,
        digest('a'),
        digest('b')
    ))
    .unwrap();
    let sim = start(scenario);
    let (location, hash) = image(&sim, 3).await;
    assert_eq!(location, "127.0.0.1:5000/v2/x");
    let token = token_for(&sim, &["v2/x"]).await;
    let r = manifest(&sim, "v2/x", &hash, &token, DOCKER).await;
    assert_eq!(r.status(), 200);
    let bytes = r.bytes().await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(layer_sizes(&body), [(digest('a'), 100), (digest('b'), 7)]);
    // The content hash is the SHA-256 of the bytes served (checked with the
    // system's sha256sum, independent of the simulator).
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum is installed");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &bytes).unwrap();
    let out = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
    assert_eq!(hash, format!("sha256:{}", &out[..64]));
    let journal = sim.journal();
    let last = journal.last().unwrap();
    assert_eq!((last.server, last.status), (Server::Registry, 200));
}

#[tokio::test]
async fn a_delta_built_while_running_gets_its_image_once_it_succeeds() {
    use balena_sim::Clock;
    let sim = start(Scenario::demo().with_clock(Clock::manual()));
    let trigger = format!(
        "{}/api/v3/delta?src={}&dest={}",
        sim.delta_url(),
        demo::IMAGE_R1_MAIN,
        demo::IMAGE_R2_MAIN
    );
    assert_eq!(get(&sim, &trigger).await.status(), 504);
    sim.advance_clock(std::time::Duration::from_secs(60));
    let answer: serde_json::Value = get(&sim, &trigger).await.json().await.unwrap();
    let name = answer["name"].as_str().unwrap().to_owned();
    let (repo, tag) = repository(&name).rsplit_once(':').unwrap();
    let token = token_for(&sim, &[repo]).await;
    let r = manifest(&sim, repo, tag, &token, ALL).await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    let size = sim.with_db(|db| {
        let id = db.max_id("delta");
        match db.get("delta", id, "size") {
            Some(balena_sim::db::Value::BigInteger(size)) => *size,
            other => panic!("{other:?}"),
        }
    });
    let layers = layer_sizes(&body);
    let empty = layers.iter().filter(|(_, s)| *s == 32).count();
    let compressed: u64 = layers
        .iter()
        .filter(|(_, s)| *s != 32)
        .map(|(_, s)| s)
        .sum();
    assert_eq!((layers.len(), empty), (3, 2), "{body}");
    assert_eq!(compressed, size / 5 * 3);
}
