//! Proxies from the environment: a remote host goes through `HTTP_PROXY`,
//! a loopback host never does, whatever the other URL is. The proxy
//! variables are read when a client is built, so the checks run in a child
//! process of this test binary that starts with them set.

use std::process::Command;

use balena_release::Client;
use secrecy::SecretString;

use crate::support::*;
use balena_sim::canned::{Answer, Canned, RELEASES};

const REMOTE_API: &str = "http://api.example.invalid";
const TOKEN: &str = "Yq8RaOPtlDTy5qf0bVaiWRrKNGqSvOEN";
const CHILD: &str = "proxy::child_requests_through_the_environment_proxy";

#[test]
fn loopback_hosts_bypass_the_environment_proxy() {
    // The proxy answers for the remote API only, like a forward proxy would.
    let proxy = Canned::start();
    proxy
        .route(&format!("{REMOTE_API}/v7/release"), Answer::json(RELEASES))
        .route(
            &format!("{REMOTE_API}/v7/delta"),
            Answer::json(r#"{"d":[]}"#),
        );
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let output = Command::new(exe)
        .args([CHILD, "--exact", "--ignored", "--test-threads=1"])
        .env("HTTP_PROXY", &proxy.url)
        .env("HTTPS_PROXY", &proxy.url)
        .env("ALL_PROXY", &proxy.url)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("all_proxy")
        .env_remove("REQUEST_METHOD")
        .output()
        .expect("the test binary runs again");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("1 passed"),
        "the child ran no test: {stdout}"
    );
    let seen: Vec<String> = proxy.seen().into_iter().map(|s| s.target).collect();
    assert!(
        !seen.is_empty(),
        "the remote API was not reached through the proxy"
    );
    assert!(
        seen.iter().all(|t| t.starts_with(REMOTE_API)),
        "a loopback request went through the proxy: {seen:?}"
    );
}

fn client(api: &str, delta: &str) -> Client {
    Client::builder()
        .registry(false)
        .api_url(api.parse().unwrap())
        .delta_url(delta.parse().unwrap())
        .token(Some(SecretString::from(TOKEN)))
        .allow_insecure_http(true)
        .retry_policy(fast_retries())
        .build()
        .unwrap()
}

#[tokio::test]
#[ignore = "run by loopback_hosts_bypass_the_environment_proxy with proxy variables set"]
async fn child_requests_through_the_environment_proxy() {
    assert!(
        std::env::var_os("HTTP_PROXY").is_some(),
        "run by loopback_hosts_bypass_the_environment_proxy"
    );
    // A remote API through the proxy, a loopback delta server directly.
    let delta = Canned::start();
    delta.route("/api/v3/delta", Answer::json("{}"));
    let info = client(REMOTE_API, &delta.url)
        .prepare_update(&id(1), &id(2), &prepare(false), &|_| {})
        .await
        .unwrap();
    assert_eq!(info.produces__release.id, 2);
    assert_eq!(delta.seen().len(), 1, "{:?}", delta.seen());

    // A loopback API directly, even with a remote delta server.
    let api = Canned::start();
    api.route("/v7/release", Answer::json(RELEASES))
        .route("/v7/delta", Answer::json(r#"{"d":[]}"#));
    let info = client(&api.url, "https://delta.example.invalid")
        .get_update_info(&id(1), &id(2))
        .await
        .unwrap();
    assert_eq!(info.produces__release.id, 2);
    assert!(!api.seen().is_empty());
}
