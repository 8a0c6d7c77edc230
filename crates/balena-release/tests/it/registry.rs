//! Exact download sizes against a small loopback registry: the token flow
//! (which credential goes where), missing manifests, one fetch per
//! manifest, and registries that never answer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use balena_release::{Client, ReleaseRef, UpdateInfo};
use balena_sim::canned::{Answer, Canned};
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::fast_retries;

const TOKEN: &str = "Yq8RaOPtlDTy5qf0bVaiWRrKNGqSvOEN";
const REGISTRY_TOKEN: &str = "registry-token-8c1f";

/// A request the fake registry saw.
#[derive(Debug, Clone)]
struct Seen {
    target: String,
    authorization: Option<String>,
}

/// A registry on loopback: manifests behind a Bearer challenge whose realm
/// is `realm`; `silent` holds every connection open without answering.
struct FakeRegistry {
    host: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// The manifests it serves, by path; tests may change them.
    content: Arc<Mutex<Vec<(String, String)>>>,
    /// The one token it accepts.
    accepted: Arc<Mutex<String>>,
    /// How many of the next requests get a 503.
    failing: Arc<Mutex<u32>>,
}

impl FakeRegistry {
    async fn start(realm: String, manifests: Vec<(String, String)>, silent: bool) -> FakeRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let content = Arc::new(Mutex::new(manifests));
        let accepted = Arc::new(Mutex::new(REGISTRY_TOKEN.to_owned()));
        let failing = Arc::new(Mutex::new(0u32));
        let (log, shared, token, failures) = (
            seen.clone(),
            content.clone(),
            accepted.clone(),
            failing.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let log = log.clone();
                let manifests = shared.lock().unwrap().clone();
                let accepted = token.lock().unwrap().clone();
                let fail = {
                    let mut left = failures.lock().unwrap();
                    let fail = *left > 0;
                    *left = (*left).saturating_sub(1);
                    fail
                };
                let realm = realm.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&head).into_owned();
                    let mut lines = text.split("\r\n");
                    let target = lines
                        .next()
                        .and_then(|l| l.split(' ').nth(1))
                        .unwrap_or("")
                        .to_owned();
                    let authorization = lines
                        .filter_map(|l| l.split_once(':'))
                        .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
                        .map(|(_, v)| v.trim().to_owned());
                    log.lock().unwrap().push(Seen {
                        target: target.clone(),
                        authorization: authorization.clone(),
                    });
                    if silent {
                        std::future::pending::<()>().await;
                    }
                    let repository = target
                        .strip_prefix("/v2/")
                        .and_then(|t| t.split_once("/manifests/"))
                        .map(|(r, _)| r.to_owned())
                        .unwrap_or_default();
                    let (status, extra, body) = if fail {
                        (503, String::new(), "maintenance".to_owned())
                    } else if authorization.as_deref() != Some(&format!("Bearer {accepted}")) {
                        (
                            401,
                            format!(
                                "WWW-Authenticate: Bearer realm=\"{realm}\",service=\"fake\",scope=\"repository:{repository}:pull\"\r\n"
                            ),
                            r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#.to_owned(),
                        )
                    } else {
                        match manifests.iter().find(|(path, _)| *path == target) {
                            Some((_, body)) => (200, String::new(), body.clone()),
                            None => (404, String::new(), r#"{"errors":[]}"#.to_owned()),
                        }
                    };
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\n{extra}Content-Type: application/vnd.docker.distribution.manifest.v2+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        FakeRegistry {
            host,
            seen,
            content,
            accepted,
            failing,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// The `sha256:<hex>` digest of a manifest's bytes.
fn digest(manifest: &str) -> String {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(manifest.as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// What pulling a manifest costs besides its layers: its own bytes and its
/// 9-byte config blob.
fn overhead(manifest: &str) -> u64 {
    manifest.len() as u64 + 9
}

/// The fixture's manifests: main 1 and 2, api (the same in both releases),
/// web, and main's delta.
struct Book {
    main_1: String,
    main_2: String,
    api: String,
    web: String,
    delta: String,
}

fn book() -> Book {
    Book {
        main_1: manifest(&[("base", 1000), ("m1", 100)]),
        main_2: manifest(&[("base", 1000), ("m2", 200)]),
        api: manifest(&[("base", 1000), ("a", 50)]),
        web: manifest(&[("base", 1000), ("a", 50), ("w", 70)]),
        delta: manifest(&[("d", 30)]),
    }
}

fn manifest(layers: &[(&str, u64)]) -> String {
    let layers: Vec<String> = layers
        .iter()
        .map(|(d, s)| format!(r#"{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:{d}","size":{s}}}"#))
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"digest":"sha256:c","size":9}},"layers":[{}]}}"#,
        layers.join(",")
    )
}

/// Release 1 (main 11, api 12) → release 2 (main 21, api 22 with the same
/// content, new service web 23), every image in the registry at `host`.
fn releases(host: &str) -> String {
    let b = book();
    let image = |id: u64, manifest: &str, repo: &str, service: &str| {
        let hash = digest(manifest);
        format!(
            r#"{{"id":{id},"image":[{{"id":{id},"status":"success","content_hash":"{hash}","image_size":"100000","is_stored_at__image_location":"{host}/v2/{repo}","is_a_build_of__service":[{{"service_name":"{service}"}}]}}]}}"#
        )
    };
    format!(
        r#"{{"d":[
{{"id":1,"commit":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","status":"success","belongs_to__application":{{"__id":7}},
 "release_image":[{},{}]}},
{{"id":2,"commit":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","status":"success","belongs_to__application":{{"__id":7}},
 "release_image":[{},{},{}]}}]}}"#,
        image(11, &b.main_1, "main", "main"),
        image(12, &b.api, "api", "api"),
        image(21, &b.main_2, "main", "main"),
        image(22, &b.api, "api", "api"),
        image(23, &b.web, "web", "web"),
    )
}

fn deltas(host: &str) -> String {
    format!(
        r#"{{"d":[{{"id":5,"status":"success","version":3,"is_stored_at__location":"{host}/v2/main:delta-0123456789abcdef","size":"300",
 "originates_from__image":{{"__id":11}},"produces__image":{{"__id":21}},
 "update_timestamp":"2025-11-11T16:52:58.089Z","error_message":null}}]}}"#
    )
}

/// Every manifest of the two releases and the delta; `web` only with
/// `with_web`.
fn registry_content(with_web: bool) -> Vec<(String, String)> {
    let b = book();
    let at = |repo: &str, manifest: &str| {
        (
            format!("/v2/v2/{repo}/manifests/{}", digest(manifest)),
            manifest.to_owned(),
        )
    };
    let mut content = vec![
        at("main", &b.main_1),
        at("api", &b.api),
        at("main", &b.main_2),
        (
            "/v2/v2/main/manifests/delta-0123456789abcdef".to_owned(),
            b.delta.clone(),
        ),
    ];
    if with_web {
        content.push(at("web", &b.web));
    }
    content
}

/// The figures of release 1 → 2: main downloads its delta (one layer for
/// the target's two: every delta layer), api nothing, web its top layer
/// above the held chain [base, a].
fn delta_download() -> u64 {
    30 + overhead(&book().delta)
}

fn web_download() -> u64 {
    70 + overhead(&book().web)
}

/// An API (canned) whose token realm is `/auth/v1/token`, serving the
/// releases and deltas of the registry at `host`.
fn api(host: &str) -> Canned {
    let api = Canned::start();
    api.route("/v7/release", Answer::json(releases(host)))
        .route("/v7/delta", Answer::json(deltas(host)))
        .route(
            "/auth/v1/token",
            Answer::json(format!(r#"{{"token":"{REGISTRY_TOKEN}"}}"#)),
        );
    api
}

fn client(api: &Canned) -> balena_release::ClientBuilder {
    Client::builder()
        .api_url(api.url.parse().unwrap())
        .delta_url(api.url.parse().unwrap())
        .token(Some(SecretString::from(TOKEN)))
        .request_timeout(Duration::from_secs(5))
        .retry_policy(fast_retries())
}

async fn compare(client: &Client) -> UpdateInfo {
    let from: ReleaseRef = "1".parse().unwrap();
    let to: ReleaseRef = "2".parse().unwrap();
    client.get_update_info(&from, &to).await.unwrap()
}

#[tokio::test]
async fn sizes_come_from_the_manifests_through_the_token_flow() {
    let realm_api = Canned::start();
    let registry = FakeRegistry::start(
        format!("{}/auth/v1/token", realm_api.url),
        registry_content(true),
        false,
    )
    .await;
    // The API is the realm's server: the same scheme, host and port.
    realm_api
        .route("/v7/release", Answer::json(releases(&registry.host)))
        .route("/v7/delta", Answer::json(deltas(&registry.host)))
        .route(
            "/auth/v1/token",
            Answer::json(format!(r#"{{"token":"{REGISTRY_TOKEN}"}}"#)),
        );
    let c = client(&realm_api).build().unwrap();
    let info = compare(&c).await;

    let main = info.service("main").unwrap();
    assert_eq!(
        (main.pull_size, main.download_size),
        (Some(200 + overhead(&book().main_2)), Some(delta_download()))
    );
    let api_service = info.service("api").unwrap();
    assert_eq!(
        (api_service.pull_size, api_service.download_size),
        (Some(0), Some(0))
    );
    // web: the chain [base, a] is api's, in the source release.
    let web = info.service("web").unwrap();
    assert_eq!(
        (web.pull_size, web.download_size),
        (Some(web_download()), Some(web_download()))
    );
    assert_eq!(
        info.estimated_download_size,
        Some(delta_download() + web_download())
    );
    assert!(!info.download_size_unknown);

    // One token request for every repository, with the balena token, to
    // the API host.
    let token_requests: Vec<_> = realm_api
        .seen()
        .into_iter()
        .filter(|s| s.target.starts_with("/auth/v1/token"))
        .collect();
    assert_eq!(token_requests.len(), 1, "{token_requests:?}");
    let asked = &token_requests[0];
    assert_eq!(
        asked.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    for repository in ["v2%2Fmain", "v2%2Fapi", "v2%2Fweb"] {
        assert!(
            asked
                .target
                .contains(&format!("scope=repository%3A{repository}%3Apull")),
            "{}",
            asked.target
        );
    }
    assert!(asked.target.contains("service=fake"), "{}", asked.target);

    // The registry: one challenge, then each manifest once with its own
    // token, never the balena token.
    let seen = registry.seen();
    assert!(
        seen.iter()
            .all(|s| !s.authorization.as_deref().unwrap_or("").contains(TOKEN)),
        "{seen:?}"
    );
    let without: Vec<_> = seen.iter().filter(|s| s.authorization.is_none()).collect();
    assert_eq!(without.len(), 1, "one challenge: {seen:?}");
    let mut with: Vec<String> = seen
        .iter()
        .filter(|s| s.authorization.is_some())
        .map(|s| s.target.clone())
        .collect();
    with.sort_unstable();
    let mut expected: Vec<String> = registry_content(true)
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    expected.sort_unstable();
    assert_eq!(with, expected, "{seen:?}");
    // The registry's token went nowhere else.
    assert!(realm_api.seen().iter().all(|s| {
        !s.header("authorization")
            .unwrap_or("")
            .contains(REGISTRY_TOKEN)
    }));

    // The same client asks nothing again.
    let again = compare(&c).await;
    assert_eq!(again, info);
    assert_eq!(registry.seen().len(), seen.len());
    let token_requests = realm_api
        .seen()
        .iter()
        .filter(|s| s.target.starts_with("/auth/v1/token"))
        .count();
    assert_eq!(token_requests, 1);
}

#[tokio::test]
async fn a_realm_on_another_host_gets_no_balena_token() {
    let realm = Canned::start();
    realm.route(
        "/token",
        Answer::json(format!(r#"{{"token":"{REGISTRY_TOKEN}"}}"#)),
    );
    let registry = FakeRegistry::start(
        format!("{}/token", realm.url),
        registry_content(true),
        false,
    )
    .await;
    let api = api(&registry.host);
    let info = compare(&client(&api).build().unwrap()).await;
    assert_eq!(
        info.estimated_download_size,
        Some(delta_download() + web_download())
    );
    let asked = realm.seen();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0].header("authorization"), None);
    // Nothing went to the API's realm.
    assert!(
        api.seen().iter().all(|s| !s.target.starts_with("/auth/")),
        "{:?}",
        api.seen()
    );
}

#[tokio::test]
async fn a_missing_manifest_makes_that_service_unknown() {
    let (_registry, api) = registry_and_api("/auth/v1/token", registry_content(false)).await;
    let info = compare(&client(&api).build().unwrap()).await;
    let web = info.service("web").unwrap();
    assert!(web.download_size_unknown);
    assert_eq!((web.pull_size, web.download_size), (None, None));
    assert_eq!(
        info.service("main").unwrap().download_size,
        Some(delta_download())
    );
    assert_eq!(info.estimated_download_size, None);
    assert!(info.download_size_unknown);
    let json = serde_json::to_string(&info).unwrap();
    assert!(!json.contains("_size\":null"), "{json}");
    // The npm tool's figure is unaffected.
    assert_eq!(info.estimated_total_payload_size, Some(100300));
}

#[tokio::test]
async fn an_oversized_manifest_is_not_read_past_its_cap() {
    let mut content = registry_content(false);
    // Just over the 1 MiB cap, served under the digest the API names.
    let huge = format!(
        r#"{{"layers":[{{"digest":"sha256:w","size":1}}],"pad":"{}"}}"#,
        "x".repeat(1 << 20)
    );
    content.push((
        format!("/v2/v2/web/manifests/{}", digest(&book().web)),
        huge,
    ));
    let (_registry, api) = registry_and_api("/auth/v1/token", content).await;
    let info = compare(&client(&api).build().unwrap()).await;
    assert!(info.service("web").unwrap().download_size_unknown);
    assert_eq!(
        info.service("main").unwrap().download_size,
        Some(delta_download())
    );
}

#[tokio::test]
async fn a_registry_that_never_answers_only_makes_sizes_unknown() {
    let api_server = Canned::start();
    let registry = FakeRegistry::start(
        format!("{}/auth/v1/token", api_server.url),
        Vec::new(),
        true,
    )
    .await;
    api_server
        .route("/v7/release", Answer::json(releases(&registry.host)))
        .route("/v7/delta", Answer::json(deltas(&registry.host)));
    let c = client(&api_server)
        .registry_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let info = compare(&c).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(info.download_size_unknown);
    assert!(
        info.is_produced_by__service_update
            .iter()
            .filter(|s| s.service_name != "api")
            .all(|s| s.download_size_unknown)
    );
    assert_eq!(info.service("api").unwrap().download_size, Some(0));
    assert!(!registry.seen().is_empty());
}

#[tokio::test]
async fn without_the_registry_nothing_is_asked_and_no_key_written() {
    let api_server = Canned::start();
    let registry = FakeRegistry::start(
        format!("{}/auth/v1/token", api_server.url),
        registry_content(true),
        false,
    )
    .await;
    api_server
        .route("/v7/release", Answer::json(releases(&registry.host)))
        .route("/v7/delta", Answer::json(deltas(&registry.host)));
    let c = client(&api_server).registry(false).build().unwrap();
    let info = compare(&c).await;
    let json = serde_json::to_string(&info).unwrap();
    assert!(!json.contains("download_size"), "{json}");
    assert!(!json.contains("pull_size"), "{json}");
    assert!(registry.seen().is_empty());
    assert_eq!(
        api_server.seen().len(),
        2,
        "the release and delta queries only"
    );
}

#[tokio::test]
async fn a_mapped_host_reaches_the_local_registry() {
    let api_server = Canned::start();
    let registry = FakeRegistry::start(
        format!("{}/auth/v1/token", api_server.url),
        registry_content(true),
        false,
    )
    .await;
    let remote = "registry2.balena-cloud.com";
    api_server
        .route("/v7/release", Answer::json(releases(remote)))
        .route("/v7/delta", Answer::json(deltas(remote)))
        .route(
            "/auth/v1/token",
            Answer::json(format!(r#"{{"token":"{REGISTRY_TOKEN}"}}"#)),
        );
    let c = client(&api_server)
        .registry_map([(
            remote.to_owned(),
            format!("http://{}", registry.host).parse().unwrap(),
        )])
        .build()
        .unwrap();
    let info = compare(&c).await;
    assert_eq!(
        info.estimated_download_size,
        Some(delta_download() + web_download())
    );
    // The location in the JSON stays the API's.
    assert!(
        info.service("web")
            .unwrap()
            .produces__image
            .is_stored_at__image_location
            .starts_with(remote)
    );
}

#[tokio::test]
async fn a_silent_registry_never_turns_a_prepare_into_a_timeout() {
    let api_server = Canned::start();
    let registry = FakeRegistry::start(
        format!("{}/auth/v1/token", api_server.url),
        Vec::new(),
        true,
    )
    .await;
    api_server
        .route("/v7/release", Answer::json(releases(&registry.host)))
        .route("/v7/delta", Answer::json(deltas(&registry.host)));
    // The registry's own budget (15 s) is far past the call's deadline.
    let c = client(&api_server).build().unwrap();
    let options = balena_release::PrepareOptions {
        deadline: Some(tokio::time::Instant::now() + Duration::from_millis(700)),
        ..balena_release::PrepareOptions::default()
    };
    let from: ReleaseRef = "1".parse().unwrap();
    let to: ReleaseRef = "2".parse().unwrap();
    let info = c
        .prepare_update(&from, &to, &options, &|_| {})
        .await
        .expect("the update is ready whatever the registry does");
    assert_eq!(info.overall_status, balena_release::Status::Ready);
    assert!(info.download_size_unknown);
}

/// A client of `sim` whose registry host is mapped to the simulator's.
fn sim_client(sim: &balena_sim::Simulator) -> Client {
    Client::builder()
        .api_url(sim.api_url().parse().unwrap())
        .delta_url(sim.delta_url().parse().unwrap())
        .token(Some(SecretString::from(sim.token())))
        .retry_policy(fast_retries())
        .registry_map([(
            "registry2.balena-cloud.com".to_owned(),
            sim.registry_url().parse().unwrap(),
        )])
        .build()
        .unwrap()
}

/// Registry requests the simulator saw whose path contains `part`.
fn registry_requests(sim: &balena_sim::Simulator, part: &str) -> Vec<String> {
    sim.journal()
        .into_iter()
        .filter(|e| e.server == balena_sim::Server::Registry && e.path.contains(part))
        .map(|e| e.path)
        .collect()
}

#[tokio::test]
async fn a_fleet_sums_devices_times_each_transitions_download() {
    let sim = crate::support::start(crate::support::manual_demo());
    let c = sim_client(&sim);
    let fleet: balena_release::FleetRef = format!("{}/kiosk-fleet", balena_sim::demo::USERNAME)
        .parse()
        .unwrap();
    let info = c.get_fleet_update_info(&fleet, None).await.unwrap();
    assert!(!info.transitions.is_empty());
    let mut expected_fleet = 0;
    for t in &info.transitions {
        let each = t
            .update
            .estimated_download_size
            .expect("every size is known");
        assert!(each > 0);
        expected_fleet += t.device_count * each;
    }
    assert_eq!(info.estimated_fleet_download_size, Some(expected_fleet));
    assert!(!info.download_size_unknown);
    // One token request for the whole fleet.
    let tokens = sim
        .journal()
        .iter()
        .filter(|e| e.resource.as_deref() == Some("token"))
        .count();
    assert_eq!(tokens, 1);
}

#[tokio::test]
async fn deltas_that_become_ready_while_waiting_are_read_once() {
    use balena_sim::{Clock, Scenario, demo};
    let sim = crate::support::start(Scenario::demo().with_clock(Clock::scaled(1000.0)));
    let c = sim_client(&sim);
    let options = balena_release::PrepareOptions {
        deadline: Some(tokio::time::Instant::now() + Duration::from_secs(60)),
        ..crate::support::prepare(true)
    };
    let (from, to) = (
        crate::support::id(demo::RELEASE_1),
        crate::support::id(demo::RELEASE_3),
    );
    let info = c
        .prepare_update(&from, &to, &options, &|_| {})
        .await
        .unwrap();
    assert_eq!(info.overall_status, balena_release::Status::Ready);
    let with_delta: Vec<_> = info
        .is_produced_by__service_update
        .iter()
        .filter(|s| s.produces__image.is_produced_by__delta.is_some())
        .collect();
    assert!(!with_delta.is_empty(), "{info:?}");
    for service in &with_delta {
        // The delta, not the pull.
        let (pull, download) = (service.pull_size.unwrap(), service.download_size.unwrap());
        assert!(
            download < pull,
            "{}: {download} of {pull}",
            service.service_name
        );
        assert!(!service.download_size_is_upper_bound);
    }
    assert!(!info.download_size_is_upper_bound);
    let mut delta_fetches = registry_requests(&sim, "/manifests/delta-");
    assert_eq!(delta_fetches.len(), with_delta.len(), "{delta_fetches:?}");
    delta_fetches.sort_unstable();
    delta_fetches.dedup();
    assert_eq!(
        delta_fetches.len(),
        with_delta.len(),
        "each once: {delta_fetches:?}"
    );
}

#[tokio::test]
async fn a_round_with_many_repositories_asks_for_tokens_in_short_batches() {
    // 80 services: 80 source images and 80 changed target images, each in a
    // repository of its own, on the simulator's registry.
    let sim = crate::support::start(balena_sim::Scenario::generated(
        balena_sim::GeneratedOptions {
            services: 80,
            releases: 3,
            devices: 0,
        },
    ));
    let registry: url::Url = sim.registry_url().parse().unwrap();
    let client = Client::builder()
        .api_url(sim.api_url().parse().unwrap())
        .delta_url(sim.delta_url().parse().unwrap())
        .token(Some(sim.token().into()))
        .registry_map([("registry2.balena-cloud.com".to_owned(), registry)])
        .build()
        .unwrap();
    let info = client
        .get_update_info(&crate::support::id(1), &crate::support::id(3))
        .await
        .unwrap();
    assert!(!info.download_size_unknown, "every size is known");
    assert!(info.estimated_download_size.is_some());
    let tokens: Vec<String> = sim
        .journal()
        .iter()
        .filter(|e| e.resource.as_deref() == Some("token"))
        .map(|e| e.query.clone().unwrap_or_default())
        .collect();
    assert!(
        tokens.len() >= 2,
        "one request for all would be too long: {}",
        tokens.len()
    );
    for query in &tokens {
        let scopes = query.matches("scope=").count();
        assert!(scopes <= 100, "{scopes} scopes in one token request");
        assert!(
            query.len() < 8 << 10,
            "a token request of {} bytes",
            query.len()
        );
    }
}

/// A registry whose challenge names `realm_suffix` on the API `api` (set up
/// once the registry's host is known), and that API.
async fn registry_and_api(
    realm_suffix: &str,
    content: Vec<(String, String)>,
) -> (FakeRegistry, Canned) {
    let answer = format!(r#"{{"token":"{REGISTRY_TOKEN}"}}"#);
    registry_and_api_answering(realm_suffix, content, &answer).await
}

/// The same, with the realm answering `answer` (its JSON body).
async fn registry_and_api_answering(
    realm_suffix: &str,
    content: Vec<(String, String)>,
    answer: &str,
) -> (FakeRegistry, Canned) {
    let api = Canned::start();
    let registry = FakeRegistry::start(format!("{}{realm_suffix}", api.url), content, false).await;
    api.route("/v7/release", Answer::json(releases(&registry.host)))
        .route("/v7/delta", Answer::json(deltas(&registry.host)))
        .route("/auth/v1/token", Answer::json(answer.to_owned()));
    (registry, api)
}

fn token_requests(api: &Canned) -> Vec<String> {
    api.seen()
        .into_iter()
        .filter(|s| s.target.starts_with("/auth/v1/token"))
        .map(|s| s.target)
        .collect()
}

#[tokio::test]
async fn a_challenge_cannot_widen_what_the_token_is_asked_for() {
    let (_registry, api) = registry_and_api(
        "/auth/v1/token?scope=repository:*:*&scope=repository:v2/other:pull,push&service=evil",
        registry_content(true),
    )
    .await;
    let info = compare(&client(&api).build().unwrap()).await;
    assert!(!info.download_size_unknown);
    let asked = token_requests(&api);
    assert_eq!(asked.len(), 1, "{asked:?}");
    let query = asked[0].split_once('?').unwrap().1;
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let services: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "service")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(services, ["fake"], "{query}");
    let mut scopes: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.as_str())
        .collect();
    scopes.sort_unstable();
    assert_eq!(
        scopes,
        [
            "repository:v2/api:pull",
            "repository:v2/main:pull",
            "repository:v2/web:pull"
        ],
        "{query}"
    );
    assert!(
        pairs.iter().all(|(k, _)| k == "service" || k == "scope"),
        "{query}"
    );
}

#[tokio::test]
async fn a_manifest_that_does_not_hash_to_its_digest_has_no_size() {
    // web's manifest, served under its digest with every layer size 0.
    let mut content = registry_content(false);
    let forged = manifest(&[("base", 0), ("a", 0), ("w", 0)]);
    content.push((
        format!("/v2/v2/web/manifests/{}", digest(&book().web)),
        forged,
    ));
    let (_registry, api) = registry_and_api("/auth/v1/token", content).await;
    let info = compare(&client(&api).build().unwrap()).await;
    let web = info.service("web").unwrap();
    assert!(web.download_size_unknown, "{web:?}");
    assert_eq!(web.download_size, None);
    assert_eq!(info.estimated_download_size, None);
    assert_eq!(
        info.service("main").unwrap().download_size,
        Some(delta_download())
    );
}

#[tokio::test]
async fn a_refused_token_is_renewed_once_and_the_next_round_asks_again() {
    // Round 1: web's manifest is missing, the rest is read with token 1.
    let (registry, api) = registry_and_api("/auth/v1/token", registry_content(false)).await;
    let c = client(&api).build().unwrap();
    let first = compare(&c).await;
    assert!(first.service("web").unwrap().download_size_unknown);
    assert_eq!(token_requests(&api).len(), 1);
    // The token expires: the registry takes only token 2, which the realm
    // now gives; web's manifest is there.
    *registry.content.lock().unwrap() = registry_content(true);
    *registry.accepted.lock().unwrap() = "registry-token-2".to_owned();
    api.route(
        "/auth/v1/token",
        Answer::json(r#"{"token":"registry-token-2"}"#),
    );
    let second = compare(&c).await;
    // What was unknown was asked again, and a new token was asked for once.
    assert_eq!(
        second.service("web").unwrap().download_size,
        Some(web_download())
    );
    assert_eq!(
        second.estimated_download_size,
        Some(delta_download() + web_download())
    );
    assert_eq!(token_requests(&api).len(), 2);
}

#[tokio::test]
async fn a_failing_first_answer_is_retried_and_never_makes_the_registry_open() {
    let (registry, api) = registry_and_api("/auth/v1/token", registry_content(true)).await;
    *registry.failing.lock().unwrap() = 2;
    let info = compare(&client(&api).build().unwrap()).await;
    assert!(!info.download_size_unknown, "{info:?}");
    // Every manifest was read with a token: the registry was not taken
    // for an open one.
    let seen = registry.seen();
    let read = seen.iter().filter(|s| s.authorization.is_some()).count();
    assert_eq!(read, registry_content(true).len(), "{seen:?}");
}

#[tokio::test]
async fn a_registry_that_fails_after_a_good_round_keeps_what_was_learnt() {
    let (registry, api) = registry_and_api("/auth/v1/token", registry_content(true)).await;
    let c = client(&api)
        .registry_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let first = compare(&c).await;
    assert!(!first.download_size_unknown);
    *registry.failing.lock().unwrap() = u32::MAX;
    let second = compare(&c).await;
    assert_eq!(
        second.estimated_download_size,
        first.estimated_download_size
    );
}

#[tokio::test]
async fn devices_with_deltas_off_and_without_a_release_count_with_their_own_figures() {
    use balena_sim::demo;
    let mut scenario = crate::support::manual_demo();
    // kiosk-cafe (RELEASE_2 → RELEASE_3, whose `main` delta is ready) has
    // deltas off; two new devices run no release.
    for device in &mut scenario.devices {
        if device.id == demo::DEVICE_CAFE {
            device
                .config_variables
                .insert("RESIN_SUPERVISOR_DELTA".into(), "false".into());
        }
    }
    let sim = crate::support::start(scenario.with_devices_without_release(demo::APP_ID, 2));
    let c = sim_client(&sim);
    let fleet: balena_release::FleetRef =
        format!("{}/kiosk-fleet", demo::USERNAME).parse().unwrap();
    let info = c.get_fleet_update_info(&fleet, None).await.unwrap();
    let from_2 = info
        .transitions
        .iter()
        .find(|t| t.update.originates_from__release.id == demo::RELEASE_2 as u64)
        .expect("a transition from RELEASE_2");
    assert_eq!((from_2.device_count, from_2.devices_without_deltas), (1, 1));
    let with = from_2.update.estimated_download_size.unwrap();
    let without = from_2.download_size_without_deltas.unwrap();
    assert!(
        without > with,
        "the pull ({without}) is more than the delta ({with})"
    );
    assert_eq!(from_2.largest_download(), Some(without));
    // kiosk-west has deltas off in the demo itself.
    let from_1 = info
        .transitions
        .iter()
        .find(|t| t.update.originates_from__release.id == demo::RELEASE_1 as u64)
        .expect("a transition from RELEASE_1");
    assert_eq!(from_1.devices_without_deltas, 1);
    let whole = info
        .devices_without_release_download_size
        .expect("the whole release's figure");
    assert_eq!(info.devices_without_release, 2);
    let expected: u64 = info
        .transitions
        .iter()
        .map(|t| {
            let without = t.devices_without_deltas;
            (t.device_count - without) * t.update.estimated_download_size.unwrap()
                + without * t.download_size_without_deltas.unwrap_or(0)
        })
        .sum::<u64>()
        + 2 * whole;
    assert_eq!(info.estimated_fleet_download_size, Some(expected));
    let json = serde_json::to_value(&info).unwrap();
    assert_eq!(json["devices_without_release_download_size"], whole);
    assert_eq!(
        json["transitions"][0]
            .get("devices_without_deltas")
            .is_some(),
        info.transitions[0].devices_without_deltas > 0
    );
}

/// A balena session token (a JWT) and another JWT with the same header, as
/// a realm might issue it.
const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
    eyJpZCI6MzQ1MjEsInVzZXJuYW1lIjoiZ2hfZGVtbyJ9.Hn3v9TqkQm1Zp8XrLw2Yd5Fs7Gb0Jc4K";
const REGISTRY_JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
    eyJhY2Nlc3MiOlt7InR5cGUiOiJyZXBvc2l0b3J5In1dfQ.c2lnbmVkLWJ5LXRoZS1yZWFsbQ";

/// `text` with every character written as a JSON escape.
fn json_escaped(text: &str) -> String {
    text.bytes().map(|b| format!("\\u{b:04x}")).collect()
}

/// `text` in base64 (standard alphabet, padded).
fn base64(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize])
            } else {
                '='
            });
        }
    }
    out
}

#[tokio::test]
async fn a_realm_that_answers_with_the_balena_token_in_any_form_gets_nothing_sent_on() {
    for balena in [TOKEN, JWT] {
        let forms = [
            json_escaped(balena),
            balena.to_ascii_uppercase(),
            balena.to_ascii_lowercase(),
            balena
                .bytes()
                .map(|b| format!("%{b:02X}"))
                .collect::<String>(),
            base64(balena),
        ];
        for form in forms {
            let answer = format!(r#"{{"token":"{form}","expires_in":300}}"#);
            let (registry, api) =
                registry_and_api_answering("/auth/v1/token", registry_content(true), &answer).await;
            let c = client(&api)
                .token(Some(SecretString::from(balena)))
                .build()
                .unwrap();
            let info = compare(&c).await;
            assert!(info.download_size_unknown, "{form}");
            // The registry got its challenge, and never a credential.
            let seen = registry.seen();
            assert!(!seen.is_empty());
            assert!(
                seen.iter().all(|s| s.authorization.is_none()),
                "{form}: {seen:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_realm_token_that_shares_the_jwt_header_with_the_balena_token_is_used() {
    let answer = format!(r#"{{"token":"{REGISTRY_JWT}"}}"#);
    let (registry, api) =
        registry_and_api_answering("/auth/v1/token", registry_content(true), &answer).await;
    *registry.accepted.lock().unwrap() = REGISTRY_JWT.to_owned();
    let c = client(&api)
        .token(Some(SecretString::from(JWT)))
        .build()
        .unwrap();
    let info = compare(&c).await;
    assert!(!info.download_size_unknown, "{info:?}");
    assert_eq!(
        info.estimated_download_size,
        Some(delta_download() + web_download())
    );
    let bearer = format!("Bearer {REGISTRY_JWT}");
    assert!(
        registry
            .seen()
            .iter()
            .any(|s| s.authorization.as_deref() == Some(bearer.as_str()))
    );
}
