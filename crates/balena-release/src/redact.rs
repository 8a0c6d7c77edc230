//! Keeping secrets out of everything shown: one function finds them in any
//! text (the token itself, `Bearer`/`Basic` credentials, URL user info and
//! the values of credential query parameters) and replaces them with
//! [`REDACTED`]. Server answers pass through it as they arrive, so a server
//! that echoes the request cannot put the token into a message, a log, the
//! table or the JSON; URLs pass through it before they reach an error.

use std::borrow::Cow;

use url::Url;

/// What a secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Query parameters whose values are credentials.
const SECRET_KEYS: &[&str] = &[
    "apikey",
    "api_key",
    "token",
    "access_token",
    "password",
    "secret",
];

/// Schemes of the `Authorization` header whose value follows them.
const AUTH_SCHEMES: &[&str] = &["bearer ", "basic "];

/// `text` with every secret in it replaced by [`REDACTED`]: `token` where it
/// appears verbatim, the credential after `Bearer `/`Basic `, the user info
/// of a URL (`scheme://user:password@`) and the value of a credential query
/// parameter (`token=`, `apikey=`, …). Borrowed when there is nothing to
/// replace.
pub fn redact_secrets<'a>(text: &'a str, token: Option<&str>) -> Cow<'a, str> {
    let mut out = Cow::Borrowed(text);
    if let Some(token) = token.filter(|t| !t.is_empty())
        && out.contains(token)
    {
        out = Cow::Owned(out.replace(token, REDACTED));
    }
    for (start, end) in secret_spans(&out) {
        let mut owned = out.into_owned();
        owned.replace_range(start..end, REDACTED);
        out = Cow::Owned(owned);
    }
    out
}

/// A URL fit for messages: no user info, no credential query values.
pub fn redact_url(url: &Url) -> String {
    redact_secrets(url.as_str(), None).into_owned()
}

/// A URL fit for a transport error: scheme, host, port and path, without
/// user info or query.
pub(crate) fn short_url(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    redact_url(&url)
}

/// Whether `b` can be part of an `Authorization` credential (RFC 6750's
/// token characters).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)
}

/// Whether `b` can be part of URL user info or a query value.
fn is_credential_byte(b: u8) -> bool {
    is_token_byte(b) || b"%!$*,;:".contains(&b)
}

/// The byte ranges of secrets in `text`, last first (so that replacing one
/// leaves the others' offsets valid), without overlaps.
fn secret_spans(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let lower = text.to_ascii_lowercase();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let run_end = |from: usize, stop: &dyn Fn(u8) -> bool| {
        bytes[from..]
            .iter()
            .position(|&b| stop(b))
            .map_or(bytes.len(), |n| from + n)
    };
    for scheme in AUTH_SCHEMES {
        for (at, _) in lower.match_indices(scheme) {
            let start = at + scheme.len();
            let end = run_end(start, &|b| !is_token_byte(b));
            if end > start && !text[start..].starts_with(REDACTED) {
                spans.push((start, end));
            }
        }
    }
    for (at, _) in lower.match_indices("://") {
        let start = at + 3;
        let end = run_end(start, &|b| {
            b == b'@' || b == b'/' || b == b'?' || b == b'#' || !is_credential_byte(b)
        });
        if bytes.get(end) == Some(&b'@') && end > start {
            spans.push((start, end));
        }
    }
    // `user:password@host` without a scheme (a proxy setting, say).
    for (at, _) in text.match_indices('@') {
        let start = bytes[..at]
            .iter()
            .rposition(|&b| b == b'/' || !is_credential_byte(b))
            .map_or(0, |n| n + 1);
        if text[start..at].contains(':') && !text[start..].starts_with(REDACTED) {
            spans.push((start, at));
        }
    }
    for key in SECRET_KEYS {
        let pattern = format!("{key}=");
        for (at, _) in lower.match_indices(&pattern) {
            let starts_a_parameter = at == 0
                || matches!(
                    bytes[at - 1],
                    b'?' | b'&' | b'#' | b';' | b' ' | b'"' | b'\''
                );
            let start = at + pattern.len();
            let end = run_end(start, &|b| b == b'&' || !is_credential_byte(b));
            if starts_a_parameter && end > start && !text[start..].starts_with(REDACTED) {
                spans.push((start, end));
            }
        }
    }
    spans.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (start, end) in spans {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged.reverse();
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_secret_is_replaced() {
        let token = "s3cr3t.t0ken";
        for (text, expected) in [
            ("plain words", "plain words"),
            (
                "you sent Authorization: Bearer s3cr3t.t0ken",
                "you sent Authorization: Bearer [REDACTED]",
            ),
            (
                "the token s3cr3t.t0ken is bad",
                "the token [REDACTED] is bad",
            ),
            (
                "authorization: bearer eyJhbGc.x-y_z",
                "authorization: bearer [REDACTED]",
            ),
            ("Basic dXNlcjpwdw==, then", "Basic [REDACTED], then"),
            (
                "see https://user:pw@api.example/v7",
                "see https://[REDACTED]@api.example/v7",
            ),
            (
                "https://api.example/v7/x?apikey=k&$select=id&token=t",
                "https://api.example/v7/x?apikey=[REDACTED]&$select=id&token=[REDACTED]",
            ),
            (
                r#"{"error":"token=abc"}"#,
                r#"{"error":"token=[REDACTED]"}"#,
            ),
            ("mytoken=abc stays", "mytoken=abc stays"),
            (
                "proxy user:pw@proxy.example:3128",
                "proxy [REDACTED]@proxy.example:3128",
            ),
            (
                "mail me at someone@example.com",
                "mail me at someone@example.com",
            ),
            (
                "https://api.example/v7/release",
                "https://api.example/v7/release",
            ),
        ] {
            assert_eq!(redact_secrets(text, Some(token)), expected, "{text}");
        }
        assert!(matches!(
            redact_secrets("nothing here", Some(token)),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn json_stays_json() {
        let body = r#"{"error":"you sent Bearer s3cr3t and https://u:p@h/?token=x"}"#;
        let redacted = redact_secrets(body, Some("s3cr3t"));
        let value: serde_json::Value = serde_json::from_str(&redacted).unwrap();
        assert_eq!(
            value["error"],
            "you sent Bearer [REDACTED] and https://[REDACTED]@h/?token=[REDACTED]"
        );
    }

    #[test]
    fn urls_lose_credentials() {
        let url = Url::parse("https://user:pw@api.example/v7/x?apikey=s3cret&$select=id").unwrap();
        assert_eq!(
            redact_url(&url),
            "https://[REDACTED]@api.example/v7/x?apikey=[REDACTED]&$select=id"
        );
    }

    #[test]
    fn transport_errors_show_host_and_path_only() {
        let url = Url::parse("https://u:p@api.example/v7/release?$filter=id%20eq%201#x").unwrap();
        assert_eq!(short_url(&url), "https://[REDACTED]@api.example/v7/release");
    }
}
