//! Keeping secrets out of everything shown or sent on: one function finds
//! them in any text (the token in any of the forms a server may write it,
//! `Bearer`/`Basic` credentials, URL user info and the values of credential
//! query parameters) and replaces them with [`REDACTED`]. Server answers
//! pass through it as they arrive and, when they are JSON with escapes,
//! again after decoding (every decoded string), so a server that echoes the
//! request cannot put the token into a message, a log, the table, the JSON
//! or a request; URLs pass through it before they reach an error.
//!
//! The forms of the token found: as it is, in any case, with any of its
//! characters written as a JSON escape (`\u0041`, `\/`) or percent-encoded
//! (`%41`), split by line breaks, and base64-encoded (standard and URL-safe,
//! at any alignment). In text that is shown or written out, any run of
//! [`MIN_RUN`] or more of its characters (in any case) counts too; not in
//! an answer that carries a credential ([`redact_credential_answer`]): a
//! JWT's header part is common to every JWT, so a registry's token is
//! compared with the balena token for equality only.

use std::borrow::Cow;
use std::collections::HashSet;

use url::Url;

/// What a secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// The shortest run of the token's characters that counts as the token in
/// text that is shown.
pub const MIN_RUN: usize = 16;

/// Query parameters whose values are credentials.
pub const SECRET_KEYS: &[&str] = &[
    "access_token",
    "api-key",
    "api_key",
    "apikey",
    "auth_token",
    "client_secret",
    "id_token",
    "passwd",
    "password",
    "private_token",
    "refresh_token",
    "secret",
    "signature",
    "token",
    "x-amz-credential",
    "x-amz-security-token",
    "x-amz-signature",
];

/// Schemes of the `Authorization` header whose value follows them.
const AUTH_SCHEMES: &[&str] = &["bearer ", "basic "];

/// `text` (shown or written out) with every secret in it replaced by
/// [`REDACTED`]: `token` in every form the module doc lists, runs of
/// [`MIN_RUN`] of its characters included; the credential after
/// `Bearer `/`Basic `, the user info of a URL (`scheme://user:password@`)
/// and the value of a credential query parameter (`token=`, `apikey=`, …,
/// [`SECRET_KEYS`]). Borrowed when there is nothing to replace.
pub fn redact_secrets<'a>(text: &'a str, token: Option<&str>) -> Cow<'a, str> {
    redact(text, token, true)
}

/// An answer that carries a credential (a token realm's): as
/// [`redact_secrets`] but without runs, so that a token that merely shares
/// a part with the balena token (every JWT's header) is kept.
pub(crate) fn redact_credential_answer<'a>(text: &'a str, token: Option<&str>) -> Cow<'a, str> {
    redact(text, token, false)
}

/// `text` without `token` in any form (runs included), and nothing else
/// replaced: for a header whose own syntax looks like a credential (a
/// `WWW-Authenticate: Bearer realm=…` challenge).
pub(crate) fn redact_token<'a>(text: &'a str, token: Option<&str>) -> Cow<'a, str> {
    match token.filter(|t| !t.is_empty()) {
        Some(token) => {
            let spans = token_spans(text, token, true);
            if spans.is_empty() {
                Cow::Borrowed(text)
            } else {
                Cow::Owned(replace_spans(text, spans))
            }
        }
        None => Cow::Borrowed(text),
    }
}

fn redact<'a>(text: &'a str, token: Option<&str>, runs: bool) -> Cow<'a, str> {
    let mut out = Cow::Borrowed(text);
    if let Some(token) = token.filter(|t| !t.is_empty()) {
        let spans = token_spans(&out, token, runs);
        if !spans.is_empty() {
            out = Cow::Owned(replace_spans(&out, spans));
        }
    }
    let spans = secret_spans(&out);
    if !spans.is_empty() {
        out = Cow::Owned(replace_spans(&out, spans));
    }
    out
}

/// A JSON text redacted after decoding: every string in it (keys too)
/// decoded, redacted as [`redact_secrets`] does (without runs when
/// `!runs`), and the whole written again when one changed. `None` when
/// nothing changed or `text` is not JSON. Only a text with a `\` can
/// decode to something else than it reads, so others are not parsed.
pub(crate) fn redact_json(text: &str, token: Option<&str>, runs: bool) -> Option<String> {
    if !text.contains('\\') {
        return None;
    }
    let mut value: serde_json::Value = serde_json::from_str(text).ok()?;
    let mut changed = false;
    redact_value(&mut value, token, runs, &mut changed);
    if changed {
        serde_json::to_string(&value).ok()
    } else {
        None
    }
}

fn redact_value(
    value: &mut serde_json::Value,
    token: Option<&str>,
    runs: bool,
    changed: &mut bool,
) {
    use serde_json::Value;
    match value {
        Value::String(text) => {
            if let Cow::Owned(redacted) = redact(text, token, runs) {
                *text = redacted;
                *changed = true;
            }
        }
        Value::Array(items) => {
            for item in items {
                redact_value(item, token, runs, changed);
            }
        }
        Value::Object(map) => {
            let keys_change = map
                .keys()
                .any(|k| matches!(redact(k, token, runs), Cow::Owned(_)));
            if keys_change {
                *changed = true;
                *map = std::mem::take(map)
                    .into_iter()
                    .map(|(k, v)| (redact(&k, token, runs).into_owned(), v))
                    .collect();
            }
            for item in map.values_mut() {
                redact_value(item, token, runs, changed);
            }
        }
        _ => {}
    }
}

/// `text` with each span (sorted, not overlapping, last first) replaced.
fn replace_spans(text: &str, spans: Vec<(usize, usize)>) -> String {
    let mut owned = text.to_owned();
    for (start, end) in spans {
        owned.replace_range(start..end, REDACTED);
    }
    owned
}

/// Sorts and merges `spans`, then widens each to character boundaries of
/// `text`; last first.
fn merged(text: &str, mut spans: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    spans.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (start, end) in spans {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    for span in &mut merged {
        while !text.is_char_boundary(span.0) {
            span.0 -= 1;
        }
        while !text.is_char_boundary(span.1) {
            span.1 += 1;
        }
    }
    merged.reverse();
    merged
}

/// Where `token` is in `text`, in any of its forms (runs when `runs`).
fn token_spans(text: &str, token: &str, runs: bool) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let wanted = token.as_bytes();
    let mut spans = Vec::new();
    // Written out, in any case, escaped or percent-encoded character by
    // character, split by line breaks.
    let first = wanted[0].to_ascii_lowercase();
    let mut at = 0;
    while at < bytes.len() {
        let b = bytes[at];
        if (b.to_ascii_lowercase() == first || b == b'\\' || b == b'%')
            && let Some(end) = encoded_match(bytes, at, wanted)
        {
            spans.push((at, end));
            at = end;
        } else {
            at += 1;
        }
    }
    // Base64 (case matters there).
    for core in base64_cores(wanted) {
        for (at, _) in text.match_indices(core.as_str()) {
            spans.push((at, at + core.len()));
        }
    }
    if runs {
        spans.extend(run_spans(bytes, wanted));
    }
    merged(text, spans)
}

/// One character at the start of `b`, decoded from a JSON escape (`\uXXXX`
/// below 0x80, `\/`) or a percent escape, or as it is: (byte, length).
fn decode_one(b: &[u8]) -> Option<(u8, usize)> {
    let hex = |digits: &[u8]| -> Option<u32> {
        std::str::from_utf8(digits)
            .ok()
            .filter(|d| d.bytes().all(|c| c.is_ascii_hexdigit()))
            .and_then(|d| u32::from_str_radix(d, 16).ok())
    };
    let escaped = match b {
        [b'\\', b'u' | b'U', rest @ ..] if rest.len() >= 4 => hex(&rest[..4])
            .and_then(|v| u8::try_from(v).ok())
            .filter(u8::is_ascii)
            .map(|c| (c, 6)),
        [b'\\', b'/', ..] => Some((b'/', 2)),
        [b'%', h, l, ..] => hex(&[*h, *l])
            .and_then(|v| u8::try_from(v).ok())
            .map(|c| (c, 3)),
        _ => None,
    };
    escaped.or_else(|| b.first().map(|c| (*c, 1)))
}

/// The length of a line break at the start of `b`: raw, JSON-escaped or
/// percent-encoded.
fn line_break(b: &[u8]) -> usize {
    match b {
        [b'\r' | b'\n', ..] => 1,
        [b'\\', b'r' | b'n', ..] => 2,
        [b'%', b'0', b'a' | b'A' | b'd' | b'D', ..] => 3,
        _ => 0,
    }
}

/// The end of `token` written at `text[at..]` in one of its encoded forms
/// (see [`token_spans`]).
fn encoded_match(text: &[u8], at: usize, token: &[u8]) -> Option<usize> {
    let mut pos = at;
    for (i, want) in token.iter().enumerate() {
        if i > 0 {
            loop {
                let n = line_break(&text[pos..]);
                if n == 0 {
                    break;
                }
                pos += n;
            }
        }
        let (c, len) = decode_one(&text[pos..])?;
        if !c.eq_ignore_ascii_case(want) {
            return None;
        }
        pos += len;
    }
    Some(pos)
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// `bytes` in base64 with `alphabet`, without padding.
fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(char::from(alphabet[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// The parts of the token's base64 encodings that do not depend on what
/// comes before or after it (the token may start at any of the three
/// positions of a 3-byte group), at least 12 characters long.
fn base64_cores(token: &[u8]) -> Vec<String> {
    let mut cores = Vec::new();
    for shift in 0..3usize {
        let mut bytes = vec![0u8; shift];
        bytes.extend_from_slice(token);
        // Whole groups only, and not the first one when it holds padding.
        let whole = bytes.len() / 3 * 4;
        let skip = if shift == 0 { 0 } else { 4 };
        for alphabet in [STANDARD, URL_SAFE] {
            let encoded = base64(&bytes, alphabet);
            if let Some(core) = encoded.get(skip..whole)
                && core.len() >= 12
                && !cores.iter().any(|c: &String| c == core)
            {
                cores.push(core.to_owned());
            }
        }
    }
    cores
}

/// Runs of [`MIN_RUN`] or more of the token's characters in `text`, in any
/// case.
fn run_spans(text: &[u8], token: &[u8]) -> Vec<(usize, usize)> {
    if token.len() < MIN_RUN || text.len() < MIN_RUN {
        return Vec::new();
    }
    let lower: Vec<u8> = token.iter().map(u8::to_ascii_lowercase).collect();
    let windows: HashSet<&[u8]> = lower.windows(MIN_RUN).collect();
    let mut in_token = [false; 256];
    for b in &lower {
        in_token[usize::from(*b)] = true;
        in_token[usize::from(b.to_ascii_uppercase())] = true;
    }
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut window = [0u8; MIN_RUN];
    // How many bytes in a row, up to here, can be part of the token.
    let mut streak = 0;
    for (end, b) in text.iter().enumerate() {
        streak = if in_token[usize::from(*b)] {
            streak + 1
        } else {
            0
        };
        if streak < MIN_RUN {
            continue;
        }
        let start = end + 1 - MIN_RUN;
        for (w, t) in window.iter_mut().zip(&text[start..=end]) {
            *w = t.to_ascii_lowercase();
        }
        if windows.contains(&window[..]) {
            match spans.last_mut() {
                Some(last) if start <= last.1 => last.1 = end + 1,
                _ => spans.push((start, end + 1)),
            }
        }
    }
    spans
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
    merged(text, spans)
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

    /// A balena API key and a JWT session token (header, payload, signature).
    const API_KEY: &str = "Zq3xK9mWv2LpR7tYb4NcH8dF1sGjA6eU";
    const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
        eyJpZCI6MzQ1MjEsInVzZXJuYW1lIjoiZ2hfZGVtbyIsImlhdCI6MTc5NjIyMzg0NX0.\
        Hn3v9TqkQm1Zp8XrLw2Yd5Fs7Gb0Jc4Ke6Va8Ut1Ro";

    fn json_escaped(token: &str) -> String {
        token.bytes().map(|b| format!("\\u{b:04X}")).collect()
    }

    fn percent(token: &str) -> String {
        token.bytes().map(|b| format!("%{b:02x}")).collect()
    }

    /// Every form of `token` a server may write, each in a sentence.
    fn forms(token: &str) -> Vec<(&'static str, String)> {
        let half = token.len() / 2;
        let mixed: String = token
            .bytes()
            .enumerate()
            .map(|(i, b)| {
                if i % 3 == 0 {
                    format!("\\u{b:04x}")
                } else if i % 3 == 1 {
                    format!("%{b:02X}")
                } else {
                    char::from(b).to_string()
                }
            })
            .collect();
        vec![
            ("raw", token.to_owned()),
            ("upper case", token.to_ascii_uppercase()),
            ("lower case", token.to_ascii_lowercase()),
            ("JSON-escaped", json_escaped(token)),
            ("percent-encoded", percent(token)),
            ("escapes mixed", mixed),
            (
                "split by a newline",
                format!("{}\n{}", &token[..half], &token[half..]),
            ),
            (
                "split by an escaped newline",
                format!("{}\\n{}", &token[..half], &token[half..]),
            ),
            ("base64", base64(token.as_bytes(), STANDARD)),
            ("base64 URL-safe", base64(token.as_bytes(), URL_SAFE)),
            (
                "base64 after one byte",
                base64(format!("x{token}").as_bytes(), STANDARD),
            ),
            (
                "base64 after two bytes",
                base64(format!("u:{token}").as_bytes(), URL_SAFE),
            ),
            ("the first half", token[..half].to_owned()),
            ("the second half", token[half..].to_owned()),
            ("sixteen characters", token[3..3 + MIN_RUN].to_owned()),
        ]
    }

    #[test]
    fn every_form_of_an_api_key_or_a_jwt_is_replaced_in_shown_text() {
        for token in [API_KEY, JWT] {
            for (name, form) in forms(token) {
                let text = format!("the server said: {form} (that is all)");
                let shown = redact_secrets(&text, Some(token));
                assert!(shown.contains(REDACTED), "{name} of {token}: {shown}");
                assert!(shown.ends_with(" (that is all)"), "{name}: {shown}");
                assert!(shown.starts_with("the server said: "), "{name}: {shown}");
                // What is left of the token is shorter than a run.
                let left = shown.replace(REDACTED, " ");
                assert!(
                    run_spans(left.as_bytes(), token.as_bytes()).is_empty(),
                    "{name}: {shown}"
                );
            }
            // Fifteen characters are not the token.
            let short = &token[1..MIN_RUN];
            assert_eq!(redact_secrets(short, Some(token)), short);
        }
    }

    #[test]
    fn a_credential_answer_keeps_a_token_that_only_shares_a_run() {
        // Another JWT with the same header as the balena token.
        let other = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzY29wZSI6InB1bGwifQ.c2lnbmF0dXJl";
        let answer = format!(r#"{{"token":"{other}","expires_in":300}}"#);
        assert_eq!(redact_credential_answer(&answer, Some(JWT)), answer);
        // Shown, the shared header is a run of the balena token.
        assert!(redact_secrets(&answer, Some(JWT)).contains(REDACTED));
        // The balena token itself, in any form but a run, is replaced.
        for (name, form) in forms(JWT).into_iter().take(12) {
            let answer = format!(r#"{{"token":"{form}"}}"#);
            assert!(
                redact_credential_answer(&answer, Some(JWT)).contains(REDACTED),
                "{name}: {answer}"
            );
        }
    }

    #[test]
    fn json_is_redacted_again_after_decoding() {
        for token in [API_KEY, JWT] {
            let half = token.len() / 2;
            // Each half escaped on its own: no form of the whole token.
            let body = format!(
                r#"{{"d":[{{"error_message":"{}\u000a{}","n":1}}],"{}":true}}"#,
                json_escaped(&token[..half]),
                json_escaped(&token[half..]),
                json_escaped(&token[2..2 + MIN_RUN]),
            );
            let redacted = redact_json(&body, Some(token), true).expect("it changed");
            let value: serde_json::Value = serde_json::from_str(&redacted).unwrap();
            let message = value["d"][0]["error_message"].as_str().unwrap();
            assert!(!message.contains(&token[..8]), "{message}");
            assert!(message.contains(REDACTED), "{message}");
            assert_eq!(value["d"][0]["n"], 1);
            assert!(value.get(REDACTED).is_some(), "keys too: {redacted}");
            assert!(!redacted.contains(&token[half..half + 8]), "{redacted}");
        }
        // Without escapes, what is read is what is decoded: not parsed.
        assert_eq!(redact_json(r#"{"a":"b"}"#, Some(API_KEY), true), None);
        assert_eq!(redact_json(r#"not json \u0041"#, Some(API_KEY), true), None);
        assert_eq!(redact_json(r#"{"a":"\u0041"}"#, Some(API_KEY), true), None);
    }

    #[test]
    fn the_value_of_every_secret_query_key_is_replaced() {
        for key in SECRET_KEYS {
            for text in [
                format!("https://api.example/v7/x?{key}=v4lue&$select=id"),
                format!("https://api.example/v7/x?$select=id&{key}=v4lue"),
                format!(
                    "https://api.example/v7/x?{}=v4lue#top",
                    key.to_ascii_uppercase()
                ),
                format!(r#"{{"error":"{key}=v4lue"}}"#),
                format!("see /x;{key}=v4lue"),
            ] {
                let shown = redact_secrets(&text, None);
                assert!(!shown.contains("v4lue"), "{key}: {shown}");
                assert!(shown.contains("=[REDACTED]"), "{key}: {shown}");
            }
            // Only a parameter of that name.
            let longer = format!("https://api.example/?my{key}=v4lue");
            assert_eq!(redact_secrets(&longer, None), longer);
        }
    }

    #[test]
    fn base64_is_written_as_everyone_writes_it() {
        assert_eq!(base64(b"", STANDARD), "");
        assert_eq!(base64(b"f", STANDARD), "Zg");
        assert_eq!(base64(b"fo", STANDARD), "Zm8");
        assert_eq!(base64(b"foo", STANDARD), "Zm9v");
        assert_eq!(base64(b"foobar", STANDARD), "Zm9vYmFy");
        assert_eq!(base64(&[0xfb, 0xff], STANDARD), "+/8");
        assert_eq!(base64(&[0xfb, 0xff], URL_SAFE), "-_8");
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
