//! The distribution token flow: a registry's `Bearer` challenge, the token
//! request to its realm, and the token's lifetime. Only what this run reads
//! is asked for: the realm's scheme, host, port and path (a query in the
//! challenge is dropped), one `service`, and `repository:<name>:pull` for
//! the repositories read; anything else a challenge asks for is noted, never
//! requested. The balena token goes to a realm only on the API's own origin.

use std::collections::BTreeSet;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::time::Instant;
use url::Url;

use crate::http::is_loopback;
use crate::redact::{REDACTED, redact_secrets, redact_url};

/// What a `Bearer` challenge asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Challenge {
    /// Scheme, host, port and path only.
    pub(super) realm: Url,
    pub(super) service: Option<String>,
}

/// A registry token and what it is good for.
#[derive(Clone)]
pub(super) struct Token {
    pub(super) secret: SecretString,
    /// The repositories it may pull.
    pub(super) repositories: BTreeSet<String>,
    /// When to ask for a new one (from `expires_in`); `None`: when refused.
    pub(super) renew_at: Option<Instant>,
}

impl Token {
    /// Whether it may still be used for `repositories`.
    pub(super) fn covers(&self, repositories: &BTreeSet<String>, now: Instant) -> bool {
        self.renew_at.is_none_or(|at| now < at) && repositories.is_subset(&self.repositories)
    }
}

/// Reads a `WWW-Authenticate` header: `Ok(None)` for a scheme other than
/// `Bearer`; an error for a Bearer challenge that cannot be used.
pub(super) fn parse_challenge(
    header: &str,
    allow_insecure_http: bool,
) -> Result<Option<Challenge>, String> {
    let Some(rest) = strip_prefix_ci(header.trim_start(), "bearer ") else {
        return Ok(None);
    };
    let params = parse_params(rest);
    let Some(realm) = params.iter().find(|(k, _)| k == "realm").map(|(_, v)| v) else {
        return Err("the registry's Bearer challenge names no realm".into());
    };
    let service = params
        .iter()
        .find(|(k, _)| k == "service")
        .map(|(_, v)| v.clone());
    let realm = realm_url(realm, allow_insecure_http)?;
    Ok(Some(Challenge { realm, service }))
}

/// Checks a token realm URL from a challenge and drops its query and
/// fragment (a realm must not choose what the token is asked for).
fn realm_url(realm: &str, allow_insecure_http: bool) -> Result<Url, String> {
    let mut url = Url::parse(realm).map_err(|_| {
        format!(
            "the token realm `{}` is not a URL",
            redact_secrets(realm, None)
        )
    })?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(format!(
            "the token realm `{}` is not usable",
            redact_url(&url)
        ));
    }
    if url.scheme() == "http" && !is_loopback(&url) && !allow_insecure_http {
        return Err(format!(
            "the token realm `{}` is plain http (only loopback hosts, unless the client allows insecure http)",
            redact_url(&url)
        ));
    }
    if let Some(query) = url.query().filter(|q| !q.is_empty()) {
        let keys: BTreeSet<String> = url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, _)| k.into_owned())
            .collect();
        tracing::info!(
            realm = %origin_and_path(&url),
            "the registry's challenge asks for more than this run reads ({}); not requested",
            keys.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

fn origin_and_path(url: &Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        crate::http::host_of(url),
        url.path()
    )
}

/// The token request: the realm with one `service` and a pull scope per
/// repository.
pub(super) fn token_url(challenge: &Challenge, repositories: &BTreeSet<String>) -> Url {
    let mut url = challenge.realm.clone();
    {
        let mut query = url.query_pairs_mut();
        if let Some(service) = &challenge.service {
            query.append_pair("service", service);
        }
        for repository in repositories {
            query.append_pair("scope", &format!("repository:{repository}:pull"));
        }
    }
    url
}

/// Reads a realm's answer: the token and how long it lives. A token equal
/// to the balena token (a realm echoing it) is refused: the balena token
/// never goes to a registry.
pub(super) fn read_token(
    body: &[u8],
    balena_token: Option<&SecretString>,
) -> Result<(SecretString, Option<Duration>), String> {
    #[derive(Deserialize)]
    struct Answer {
        token: Option<String>,
        access_token: Option<String>,
        expires_in: Option<f64>,
    }
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|_| "the token realm's answer is not a token".to_owned())?;
    let token = answer
        .token
        .filter(|t| !t.is_empty())
        .or(answer.access_token)
        .filter(|t| !t.is_empty() && !t.contains(REDACTED))
        .ok_or("the token realm's answer has no usable token")?;
    if balena_token.is_some_and(|b| b.expose_secret().trim() == token.trim()) {
        return Err("the token realm answered with the balena token; it is not sent on".into());
    }
    if !token.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err("the token realm's token is not a valid header value".into());
    }
    // A token renewed a little before it expires; none shorter than 10 s.
    let lifetime = answer
        .expires_in
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|s| Duration::from_secs_f64(s.clamp(10.0, 86_400.0) * 0.9));
    Ok((SecretString::from(token), lifetime))
}

/// A challenge that is not a usable Bearer one, for the `-v` log: its
/// scheme and realm (never a token; the realm passes through redaction).
pub(super) fn describe(header: &str) -> String {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let scheme = redact_secrets(scheme, None);
    match parse_params(rest).into_iter().find(|(k, _)| k == "realm") {
        Some((_, realm)) => format!("`{scheme}` (realm `{}`)", redact_secrets(&realm, None)),
        None => format!("`{scheme}`"),
    }
}

pub(super) fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.get(..prefix.len())
        .filter(|p| p.eq_ignore_ascii_case(prefix))
        .map(|_| &text[prefix.len()..])
}

/// `key="value", key=token, …` (keys lower-cased; `\` escapes in quotes).
fn parse_params(text: &str) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ','))
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        if key.is_empty() || chars.next() != Some('=') {
            return params;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ','))
                .collect::<String>()
                .trim()
                .to_owned();
        }
        params.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(header: &str) -> Result<Option<Challenge>, String> {
        parse_challenge(header, false)
    }

    #[test]
    fn challenges_name_a_realm_and_a_service() {
        assert_eq!(
            challenge(
                r#"Bearer realm="https://api.balena-cloud.com/auth/v1/token",service="registry2.balena-cloud.com",scope="repository:v2/abc:pull""#
            ),
            Ok(Some(Challenge {
                realm: Url::parse("https://api.balena-cloud.com/auth/v1/token").unwrap(),
                service: Some("registry2.balena-cloud.com".into()),
            }))
        );
        assert_eq!(
            challenge(r#"bearer realm=http://127.0.0.1:9/t, service = "a\"b""#)
                .unwrap()
                .unwrap()
                .service
                .as_deref(),
            Some("a\"b")
        );
        assert_eq!(challenge(r#"Basic realm="x""#), Ok(None));
        assert!(challenge("Bearer service=x").is_err());
        assert_eq!(challenge("Bearer"), Ok(None));
        assert!(challenge(r#"Bearer realm="http://registry.example/t""#).is_err());
        assert!(challenge(r#"Bearer realm="https://u:p@registry.example/t""#).is_err());
        assert!(challenge(r#"Bearer realm="file:///etc/passwd""#).is_err());
    }

    #[test]
    fn other_challenges_are_described_by_scheme_and_realm() {
        assert_eq!(
            describe(r#"Basic realm="Registry Realm""#),
            "`Basic` (realm `Registry Realm`)"
        );
        assert_eq!(describe("Negotiate"), "`Negotiate`");
    }

    #[test]
    fn a_realm_query_is_dropped_and_only_pull_scopes_are_asked_for() {
        let c = challenge(
            r#"Bearer realm="https://api.x/auth/v1/token?scope=repository:*:*&scope=repository:v2/other:pull,push&service=evil",service="registry.x""#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.realm.as_str(), "https://api.x/auth/v1/token");
        let repositories: BTreeSet<String> = ["v2/b".to_owned(), "v2/a".to_owned()].into();
        let url = token_url(&c, &repositories);
        assert_eq!(
            url.as_str(),
            "https://api.x/auth/v1/token?service=registry.x&scope=repository%3Av2%2Fa%3Apull&scope=repository%3Av2%2Fb%3Apull"
        );
    }

    #[test]
    fn token_answers() {
        let balena = SecretString::from("balena-token-0123456789");
        let (token, lifetime) =
            read_token(br#"{"token":"abc","expires_in":300}"#, Some(&balena)).unwrap();
        assert_eq!(token.expose_secret(), "abc");
        assert_eq!(lifetime, Some(Duration::from_secs(270)));
        let (token, lifetime) = read_token(br#"{"access_token":"xyz"}"#, None).unwrap();
        assert_eq!((token.expose_secret(), lifetime), ("xyz", None));
        // JSON escapes are decoded before the comparison.
        let echoed = br#"{"token":"\u0062alena-token-0123456789"}"#;
        assert!(
            read_token(echoed, Some(&balena))
                .unwrap_err()
                .contains("balena token")
        );
        for bad in [
            &b"{}"[..],
            b"[]",
            b"{\"token\":\"\"}",
            b"{\"token\":\"a b\"}",
            b"<html>",
        ] {
            assert!(
                read_token(bad, Some(&balena)).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn tokens_cover_their_repositories_until_renewal() {
        let now = Instant::now();
        let token = Token {
            secret: SecretString::from("t"),
            repositories: ["a".to_owned(), "b".to_owned()].into(),
            renew_at: Some(now + Duration::from_secs(10)),
        };
        assert!(token.covers(&["a".to_owned()].into(), now));
        assert!(!token.covers(&["c".to_owned()].into(), now));
        assert!(!token.covers(&["a".to_owned()].into(), now + Duration::from_secs(11)));
    }
}
