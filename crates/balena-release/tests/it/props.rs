//! Property tests: the release and fleet argument parsers, and the decoding
//! of API answers (arbitrary bytes and mutations of a valid answer, served
//! over HTTP to a real client). Nothing may panic; every failure must be a
//! typed error with a one-line message. `PROPTEST_CASES` sets the number of
//! cases (see `scripts/fuzz-smoke.sh`).

use balena_release::{Error, FleetRef, ReleaseRef, RetryPolicy, Server};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;

use crate::support::{fast_retries, id};
use balena_sim::canned::{Answer, Canned, DELTAS, RELEASES};

fn runner() -> TestRunner {
    // Config::default() reads PROPTEST_CASES and friends from the environment.
    TestRunner::new(Config {
        failure_persistence: None,
        ..Config::default()
    })
}

fn one_line(message: &str) -> Result<(), TestCaseError> {
    prop_assert!(!message.is_empty());
    prop_assert!(
        !message.chars().any(char::is_control),
        "control character in {message:?}"
    );
    Ok(())
}

/// Strings near the release grammar: digits, hex, and everything else.
fn release_words() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{0,25}",
        "[0-9a-fA-F]{0,45}",
        "[0-9a-fA-Fg-zG-Z' \\-]{0,45}",
        any::<String>(),
    ]
}

#[test]
fn release_references_parse_exactly_the_documented_forms() {
    runner()
        .run(&release_words(), |s| {
            let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            let hex = s.bytes().all(|b| b.is_ascii_hexdigit());
            match s.parse::<ReleaseRef>() {
                Ok(ReleaseRef::Id(n)) => {
                    prop_assert!(digits);
                    prop_assert!(n > 0);
                    prop_assert_eq!(s.parse::<u64>().ok(), Some(n));
                    prop_assert_eq!(
                        ReleaseRef::Id(n).to_string().parse::<ReleaseRef>().ok(),
                        Some(ReleaseRef::Id(n))
                    );
                }
                Ok(ReleaseRef::Commit(c)) => {
                    prop_assert!(!digits && hex);
                    prop_assert!((6..=40).contains(&s.len()));
                    prop_assert_eq!(&c, &s.to_ascii_lowercase());
                    prop_assert_eq!(
                        c.parse::<ReleaseRef>().ok(),
                        Some(ReleaseRef::Commit(c.clone()))
                    );
                }
                Err(e) => {
                    let valid_id = digits && s.parse::<u64>().is_ok_and(|n| n > 0);
                    let valid_commit = !digits && hex && (6..=40).contains(&s.len());
                    prop_assert!(!valid_id && !valid_commit, "{s:?} refused: {e}");
                    let message = e.to_string();
                    one_line(&message)?;
                    prop_assert!(message.starts_with("invalid release `"), "{message}");
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn fleet_references_never_panic_and_explain_refusals() {
    let words = prop_oneof!["[a-zA-Z0-9_/.\\- ]{0,40}", any::<String>()];
    runner()
        .run(&words, |s| {
            match s.parse::<FleetRef>() {
                Ok(FleetRef::Id(n)) => prop_assert!(n > 0 && s.bytes().all(|b| b.is_ascii_digit())),
                Ok(FleetRef::Slug(slug)) => {
                    prop_assert_eq!(&slug, &slug.to_lowercase());
                    prop_assert_eq!(
                        slug.parse::<FleetRef>().ok(),
                        Some(FleetRef::Slug(slug.clone()))
                    );
                }
                Err(e) => one_line(&e.to_string())?,
            }
            Ok(())
        })
        .unwrap();
}

/// Values that stand in for any JSON value (numbers beyond 64 bits and
/// exponents included, as raw text).
fn raw_values() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        Just("18446744073709551616".to_owned()),
        Just("-1".to_owned()),
        Just("1e400".to_owned()),
        Just("1.5".to_owned()),
        Just("\"18446744073709551616\"".to_owned()),
        any::<String>().prop_map(|s| Value::String(s).to_string()),
        "[a-z_]{0,12}".prop_map(|s| Value::String(s).to_string()),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(("[a-z_]{1,8}", inner), 0..4).prop_map(|v| {
                let fields: Vec<String> = v
                    .into_iter()
                    .map(|(k, v)| format!("{}:{v}", Value::String(k)))
                    .collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

/// Every JSON pointer inside `value`, the root included.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                pointers(item, format!("{at}/{i}"), out);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                pointers(item, format!("{at}/{key}"), out);
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the value at a pointer with raw JSON text.
    Replace(prop::sample::Index, String),
    /// Remove the value at a pointer (a key from its object, an item from its array).
    Remove(prop::sample::Index),
    /// Duplicate an item of an array.
    Duplicate(prop::sample::Index),
    /// Cut the text short.
    Truncate(prop::sample::Index),
    /// Send arbitrary bytes instead.
    Bytes(Vec<u8>),
}

fn mutations() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<prop::sample::Index>(), raw_values()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        2 => any::<prop::sample::Index>().prop_map(Mutation::Remove),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Duplicate),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        1 => prop::collection::vec(any::<u8>(), 0..256).prop_map(Mutation::Bytes),
    ]
}

const MARK: &str = "\u{1}raw-value\u{1}";

/// Applies `mutation` to the valid answer `valid`.
fn mutate(valid: &str, mutation: &Mutation) -> Vec<u8> {
    // The valid answers are JSON (checked by the tests that serve them).
    let mut value: Value = serde_json::from_str(valid).expect("a valid answer");
    let mut all = Vec::new();
    pointers(&value, String::new(), &mut all);
    let pick = |i: &prop::sample::Index| all[i.index(all.len())].clone();
    match mutation {
        Mutation::Replace(i, raw) => {
            let at = pick(i);
            if let Some(slot) = value.pointer_mut(&at) {
                *slot = Value::String(MARK.to_owned());
            }
            let marked = Value::String(MARK.to_owned()).to_string();
            value.to_string().replacen(&marked, raw, 1).into_bytes()
        }
        Mutation::Remove(i) | Mutation::Duplicate(i) => {
            let at = pick(i);
            let (parent, last) = at.rsplit_once('/').unwrap_or(("", ""));
            let duplicate = matches!(mutation, Mutation::Duplicate(_));
            match value.pointer_mut(parent) {
                Some(Value::Object(map)) if !duplicate => {
                    map.remove(last);
                }
                Some(Value::Array(items)) => {
                    if let Ok(n) = last.parse::<usize>()
                        && n < items.len()
                    {
                        if duplicate {
                            let copy = items[n].clone();
                            items.insert(n, copy);
                        } else {
                            items.remove(n);
                        }
                    }
                }
                _ => {}
            }
            value.to_string().into_bytes()
        }
        Mutation::Truncate(i) => {
            let text = value.to_string().into_bytes();
            text[..i.index(text.len())].to_vec()
        }
        Mutation::Bytes(bytes) => bytes.clone(),
    }
}

fn client(url: &str) -> balena_release::Client {
    balena_release::Client::builder()
        .registry(false)
        .api_url(url.parse().unwrap())
        .delta_url(url.parse().unwrap())
        .retry_policy(RetryPolicy {
            max_retries: 0,
            ..fast_retries()
        })
        .build()
        .unwrap()
}

/// Serves `valid` mutated for the query under `prefix` (the other query gets
/// its valid answer) and checks the client's outcome.
fn decoding_never_panics(prefix: &'static str, valid: &'static str) {
    for body in [RELEASES, DELTAS] {
        serde_json::from_str::<Value>(body).expect("the canned answers are JSON");
    }
    let server = Canned::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = client(&server.url);
    let content_types = prop_oneof![
        4 => Just("application/json"),
        1 => Just("application/json; charset=utf-8"),
        1 => Just("text/html"),
        1 => Just("text/plain"),
    ];
    runner()
        .run(&(mutations(), content_types), |(mutation, content_type)| {
            let body = mutate(valid, &mutation);
            server.reset();
            server
                .route("/v7/release", Answer::json(RELEASES))
                .route("/v7/delta", Answer::json(DELTAS))
                .route(prefix, Answer::new(200, content_type, body.clone()));
            let result = runtime.block_on(c.get_update_info(&id(1), &id(2)));
            match result {
                Ok(info) => {
                    prop_assert!(content_type.contains("json"));
                    let json = serde_json::to_string(&info).unwrap();
                    prop_assert!(json.contains("\"overall_status\""));
                }
                Err(err) => {
                    one_line(&err.to_string())?;
                    prop_assert!(
                        matches!(
                            err,
                            Error::Decode {
                                server: Server::Api,
                                ..
                            } | Error::ReleaseNotFound { .. }
                                | Error::ReleaseNotSuccessful { .. }
                                | Error::ReleaseAmbiguous { .. }
                                | Error::DifferentApplications { .. }
                                | Error::ImageNotReady { .. }
                        ),
                        "unexpected error for {:?}: {err:?}",
                        String::from_utf8_lossy(&body)
                    );
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn release_answers_of_any_shape_decode_or_fail_cleanly() {
    decoding_never_panics("/v7/release", RELEASES);
}

#[test]
fn delta_answers_of_any_shape_decode_or_fail_cleanly() {
    decoding_never_panics("/v7/delta", DELTAS);
}

#[test]
fn the_canned_answers_are_a_valid_update() {
    let server = Canned::start();
    server
        .route("/v7/release", Answer::json(RELEASES))
        .route("/v7/delta", Answer::json(DELTAS));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let info = runtime
        .block_on(client(&server.url).get_update_info(&id(1), &id(2)))
        .unwrap();
    // main changed with a built delta of 300 bytes; api unchanged.
    assert_eq!(info.estimated_total_payload_size, Some(300));
}
