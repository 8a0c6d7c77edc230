//! Where the token goes: to the API and delta hosts only, never to another
//! host through a redirect, and never back out of a server's answer into a
//! message or the JSON.

use balena_release::{Error, RetryPolicy, Status};
use balena_sim::canned::{Answer, Canned, DELTAS, RELEASES};
use balena_sim::{Faults, Scope, Simulator, demo};

use crate::support::*;

#[tokio::test]
async fn redirects_to_other_hosts_are_not_followed() {
    let url = canned_server(
        "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.2:9/steal\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
            .to_owned(),
    )
    .await;
    let c = balena_release::Client::builder()
        .registry(false)
        .api_url(url.parse().unwrap())
        .delta_url(url.parse().unwrap())
        .token(Some("Yq8RaOPtlDTy5qf0bVaiWRrKNGqSvOEN".into()))
        .retry_policy(RetryPolicy {
            max_retries: 0,
            ..fast_retries()
        })
        .build()
        .unwrap();
    let err = c
        .get_update_info(&id(demo::RELEASE_1), &id(demo::RELEASE_2))
        .await
        .unwrap_err();
    match &err {
        Error::Api {
            status: 302,
            message,
            ..
        } => {
            assert!(
                message.contains("`http://127.0.0.2:9/steal` not followed"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}

/// A client whose API and delta URLs are `api` and `delta`, with a token.
fn canned_client(api: &str, delta: &str, token: &str) -> balena_release::Client {
    balena_release::Client::builder()
        .registry(false)
        .api_url(api.parse().unwrap())
        .delta_url(delta.parse().unwrap())
        .token(Some(token.into()))
        .retry_policy(RetryPolicy {
            max_retries: 0,
            ..fast_retries()
        })
        .build()
        .unwrap()
}

const TOKEN: &str = "redirectCanaryToken0123456789abc";

#[tokio::test]
async fn the_token_goes_to_the_api_and_delta_hosts_only() {
    let api = Canned::start();
    api.route("/v7/release", Answer::json(RELEASES))
        .route("/v7/delta", Answer::json(r#"{"d":[]}"#));
    let delta = Canned::start();
    delta.route("/api/v3/delta", Answer::new(504, "text/plain", "building"));
    canned_client(&api.url, &delta.url, TOKEN)
        .prepare_update(&id(1), &id(2), &prepare(false), &|_| {})
        .await
        .unwrap();
    let expected = format!("Bearer {TOKEN}");
    for (name, server) in [("API", &api), ("delta", &delta)] {
        let seen = server.seen();
        assert!(!seen.is_empty(), "no request reached the {name} host");
        for request in seen {
            assert_eq!(
                request.header("authorization"),
                Some(expected.as_str()),
                "{name}: {}",
                request.target
            );
        }
    }
}

#[tokio::test]
async fn a_redirect_to_another_host_carries_no_token() {
    for status in [301, 302, 303, 307, 308] {
        // The other host: same address, another port, and by name.
        let elsewhere = Canned::start();
        elsewhere
            .route("/", Answer::json(RELEASES))
            .route("/v7/delta", Answer::json(DELTAS));
        let port = elsewhere.url.rsplit(':').next().unwrap();
        for target in [
            format!("{}/v7/release", elsewhere.url),
            format!("http://localhost:{port}/v7/release"),
        ] {
            let api = Canned::start();
            api.route("/v7/", Answer::redirect(status, &target));
            let err = canned_client(&api.url, &api.url, TOKEN)
                .get_update_info(&id(1), &id(2))
                .await
                .unwrap_err();
            assert!(
                matches!(&err, Error::Api { status: s, .. } if *s == status),
                "{status} to {target}: {err:?}"
            );
            assert!(err.to_string().contains("not followed"), "{err}");
            assert!(!err.to_string().contains(TOKEN));
        }
        // The delta server redirecting elsewhere: the same.
        let api = Canned::start();
        api.route("/v7/release", Answer::json(RELEASES))
            .route("/v7/delta", Answer::json(r#"{"d":[]}"#));
        let delta = Canned::start();
        delta.route(
            "/api/v3/delta",
            Answer::redirect(status, &format!("{}/api/v3/delta", elsewhere.url)),
        );
        let err = canned_client(&api.url, &delta.url, TOKEN)
            .prepare_update(&id(1), &id(2), &prepare(false), &|_| {})
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Delta { status: Some(s), .. } if *s == status),
            "{status}: {err:?}"
        );
        assert!(
            elsewhere.seen().is_empty(),
            "{status}: a request reached the other host: {:?}",
            elsewhere.seen()
        );
    }
}

#[tokio::test]
async fn a_redirect_within_the_api_host_is_followed() {
    let api = Canned::start();
    api.route("/v7/release", Answer::redirect(307, "/moved/v7/release"))
        .route("/moved/v7/release", Answer::json(RELEASES))
        .route("/v7/delta", Answer::json(DELTAS));
    let info = canned_client(&api.url, &api.url, TOKEN)
        .get_update_info(&id(1), &id(2))
        .await
        .unwrap();
    assert_eq!(info.overall_status, Status::Ready);
    assert!(api.seen().iter().any(|s| s.target.starts_with("/moved/")));
}

#[tokio::test]
async fn a_server_that_echoes_the_token_never_gets_it_shown() {
    let echo = |sim: &Simulator| {
        format!(
            "{{\"error\":\"you sent Authorization: Bearer {} (token={})\"}}",
            sim.token(),
            sim.token()
        )
    };
    // The API's error message.
    for status in [400, 403, 404, 409, 422, 500] {
        let probe = start(manual_demo());
        let body = echo(&probe);
        let sim = start(
            manual_demo().with_faults(Faults::none().with(error(status, &body).scope(Scope::Api))),
        );
        let err = client(&sim)
            .get_update_info(&id(demo::RELEASE_1), &id(demo::RELEASE_2))
            .await
            .unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(&sim.token()), "{status}: {shown}");
        assert!(shown.contains("Bearer [REDACTED]"), "{status}: {shown}");
    }
    // A delta server's refusal, which is kept in the JSON.
    let probe = start(manual_demo());
    let body = echo(&probe);
    let sim = start(
        manual_demo().with_faults(Faults::none().with(error(400, &body).scope(Scope::Delta))),
    );
    let info = prepare_2_to_3(&client(&sim), &prepare(false), &|_| {})
        .await
        .unwrap();
    let json = serde_json::to_string(&info).unwrap();
    assert!(!json.contains(&sim.token()), "{json}");
    assert!(json.contains("[REDACTED]"), "{json}");
}

#[tokio::test]
async fn a_redirect_location_with_credentials_is_shown_without_them() {
    let api = Canned::start();
    api.route(
        "/v7/",
        Answer::redirect(302, "https://user:hunter2@elsewhere.example/v7/x?token=abc"),
    );
    let err = canned_client(&api.url, &api.url, "an-api-key")
        .get_update_info(&id(demo::RELEASE_1), &id(demo::RELEASE_2))
        .await
        .unwrap_err();
    let shown = err.to_string();
    assert!(
        !shown.contains("hunter2") && !shown.contains("abc"),
        "{shown}"
    );
    assert!(shown.contains("elsewhere.example"), "{shown}");
}

/// A balena API key and a session token (a JWT).
const API_KEY: &str = "Zq3xK9mWv2LpR7tYb4NcH8dF1sGjA6eU";
const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
    eyJpZCI6MzQ1MjEsInVzZXJuYW1lIjoiZ2hfZGVtbyJ9.Hn3v9TqkQm1Zp8XrLw2Yd5Fs7Gb0Jc4K";

/// The ways a server may write `token` inside a JSON string so that it
/// reads as the token once decoded or shown.
fn hostile_forms(token: &str) -> Vec<String> {
    let escaped = |text: &str| -> String { text.bytes().map(|b| format!("\\u{b:04X}")).collect() };
    let half = token.len() / 2;
    vec![
        escaped(token),
        format!("{}\\n{}", escaped(&token[..half]), escaped(&token[half..])),
        token.to_ascii_uppercase(),
        token.bytes().map(|b| format!("%{b:02x}")).collect(),
        escaped(&token[4..4 + 16]),
    ]
}

/// Whether `text` shows 16 characters of `token` in a row (in any case),
/// also after its JSON escapes are read.
fn shows(text: &str, token: &str) -> bool {
    let decoded = serde_json::from_str::<String>(&format!("\"{}\"", text.replace('"', "'")))
        .unwrap_or_else(|_| text.to_owned());
    let token = token.to_ascii_lowercase();
    [text.to_ascii_lowercase(), decoded.to_ascii_lowercase()]
        .iter()
        .any(|t| (0..=token.len() - 16).any(|i| t.contains(&token[i..i + 16])))
}

#[tokio::test]
async fn a_token_written_with_escapes_or_in_part_is_redacted_after_decoding() {
    for token in [API_KEY, JWT] {
        for form in hostile_forms(token) {
            let body = format!(r#"{{"error":"you sent {form}"}}"#);
            // The API's error message.
            let sim = start(
                manual_demo()
                    .with_token(token)
                    .with_faults(Faults::none().with(error(400, &body).scope(Scope::Api))),
            );
            let c = client_with_token(&sim, Some(token.to_owned()));
            let err = c
                .get_update_info(&id(demo::RELEASE_1), &id(demo::RELEASE_2))
                .await
                .unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(!shows(&shown, token), "{form}: {shown}");
            assert!(shown.contains("[REDACTED]"), "{form}: {shown}");
            // A delta server's refusal, kept in the JSON as `error_message`.
            let sim = start(
                manual_demo()
                    .with_token(token)
                    .with_faults(Faults::none().with(error(400, &body).scope(Scope::Delta))),
            );
            let c = client_with_token(&sim, Some(token.to_owned()));
            let info = prepare_2_to_3(&c, &prepare(false), &|_| {}).await.unwrap();
            let json = serde_json::to_string(&info).unwrap();
            assert!(!shows(&json, token), "{form}: {json}");
            assert!(json.contains("[REDACTED]"), "{form}: {json}");
        }
    }
}
