//! Recognises the two kinds of balena credentials (session JWTs and API keys)
//! and rejects unusable ones before any request, without ever echoing the
//! token itself.

use jiff::Timestamp;

use crate::error::{Error, TokenProblem};

/// What kind of credential a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenKind {
    /// An opaque API key; it never expires on the client side.
    ApiKey,
    /// A user session token (a JWT), as written by `balena login`.
    Session {
        /// The `iat` claim, when present.
        issued_at: Option<Timestamp>,
        /// The `exp` claim, when present.
        expires_at: Option<Timestamp>,
    },
}

/// Classifies `token` and checks that it is usable now.
///
/// Errors ([`Error::InvalidToken`]) for an empty or all-digit token, a token
/// with whitespace inside, a JWT-shaped token that does not decode, and an
/// expired session token. The token text never appears in the error.
///
/// ```
/// use balena_release::{token_kind, TokenKind};
/// assert_eq!(token_kind("Yq8RaOPtlDTy5qf0bVaiWRrKNGqSvOEN").unwrap(), TokenKind::ApiKey);
/// assert!(token_kind("12345").is_err());
/// ```
pub fn token_kind(token: &str) -> Result<TokenKind, Error> {
    token_kind_at(token, Timestamp::now())
}

pub(crate) fn token_kind_at(token: &str, now: Timestamp) -> Result<TokenKind, Error> {
    let problem = |problem| Error::InvalidToken { problem };
    if token.trim().is_empty() {
        return Err(problem(TokenProblem::Empty));
    }
    if token
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || !c.is_ascii())
    {
        return Err(problem(TokenProblem::BadCharacters));
    }
    if token.bytes().all(|b| b.is_ascii_digit()) {
        return Err(problem(TokenProblem::AllDigits));
    }
    let parts: Vec<&str> = token.split('.').collect();
    let jwt_shaped = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(is_base64url_byte));
    if !jwt_shaped {
        return Ok(TokenKind::ApiKey);
    }
    let malformed = |detail: &str| {
        problem(TokenProblem::Malformed {
            detail: detail.to_owned(),
        })
    };
    let header =
        base64url_decode(parts[0]).ok_or_else(|| malformed("its header is not base64url"))?;
    match serde_json::from_slice::<serde_json::Value>(&header) {
        Ok(serde_json::Value::Object(_)) => {}
        _ => return Err(malformed("its header is not a JSON object")),
    }
    let payload =
        base64url_decode(parts[1]).ok_or_else(|| malformed("its claims are not base64url"))?;
    let claims = match serde_json::from_slice::<serde_json::Value>(&payload) {
        Ok(serde_json::Value::Object(claims)) => claims,
        _ => return Err(malformed("its claims are not a JSON object")),
    };
    let time_claim = |name: &str| -> Result<Option<Timestamp>, Error> {
        match claims.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(value) => value
                .as_f64()
                .filter(|s| s.is_finite())
                .and_then(|s| Timestamp::from_second(s.floor() as i64).ok())
                .map(Some)
                .ok_or_else(|| malformed(&format!("its `{name}` claim is not a valid time"))),
        }
    };
    let issued_at = time_claim("iat")?;
    let expires_at = time_claim("exp")?;
    if let Some(at) = expires_at
        && at <= now
    {
        return Err(problem(TokenProblem::Expired { at }));
    }
    Ok(TokenKind::Session {
        issued_at,
        expires_at,
    })
}

fn is_base64url_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Decodes unpadded (or `=`-padded) base64url; `None` on any invalid input.
pub(crate) fn base64url_decode(input: &str) -> Option<Vec<u8>> {
    let input = input.trim_end_matches('=');
    if input.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for b in input.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Encodes base64url without padding (test helper for building JWTs).
    pub(crate) fn b64(data: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }

    pub(crate) fn jwt(claims: &str) -> String {
        format!(
            "{}.{}.c2lnbmF0dXJl",
            b64(br#"{"alg":"HS256","typ":"JWT"}"#),
            b64(claims.as_bytes())
        )
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    fn problem(token: &str) -> TokenProblem {
        match token_kind_at(token, now()) {
            Err(Error::InvalidToken { problem }) => problem,
            other => panic!("expected an invalid token, got {other:?}"),
        }
    }

    #[test]
    fn base64url_round_trips() {
        for data in [&b""[..], b"f", b"fo", b"foo", b"foob", b"\xff\xfe\x00{}"] {
            assert_eq!(base64url_decode(&b64(data)).as_deref(), Some(data));
        }
        assert_eq!(base64url_decode("Zm9v").as_deref(), Some(&b"foo"[..]));
        assert_eq!(base64url_decode("Zm8=").as_deref(), Some(&b"fo"[..]));
        assert_eq!(base64url_decode("Z"), None);
        assert_eq!(base64url_decode("Zm+v"), None);
    }

    #[test]
    fn opaque_strings_are_api_keys() {
        assert_eq!(
            token_kind_at("Yq8RaOPtlDTy5qf0bVaiWRrKNGqSvOEN", now()).unwrap(),
            TokenKind::ApiKey
        );
        assert_eq!(token_kind_at("a.b", now()).unwrap(), TokenKind::ApiKey);
        assert_eq!(token_kind_at("a.b.c.d", now()).unwrap(), TokenKind::ApiKey);
        assert_eq!(token_kind_at("a+b.c.d", now()).unwrap(), TokenKind::ApiKey);
    }

    #[test]
    fn empty_digit_and_spaced_tokens_are_rejected() {
        assert_eq!(problem(""), TokenProblem::Empty);
        assert_eq!(problem(" \n"), TokenProblem::Empty);
        assert_eq!(problem("12345"), TokenProblem::AllDigits);
        assert_eq!(problem("abc def"), TokenProblem::BadCharacters);
        assert_eq!(problem("abc\u{e9}"), TokenProblem::BadCharacters);
    }

    #[test]
    fn session_tokens_carry_their_times() {
        let token = jwt(r#"{"id":1,"iat":1799990000,"exp":1800086400.5}"#);
        assert_eq!(
            token_kind_at(&token, now()).unwrap(),
            TokenKind::Session {
                issued_at: Some(Timestamp::from_second(1_799_990_000).unwrap()),
                expires_at: Some(Timestamp::from_second(1_800_086_400).unwrap()),
            }
        );
        let no_exp = jwt(r#"{"id":1}"#);
        assert_eq!(
            token_kind_at(&no_exp, now()).unwrap(),
            TokenKind::Session {
                issued_at: None,
                expires_at: None
            }
        );
    }

    #[test]
    fn expired_session_tokens_are_rejected_with_the_time() {
        let token = jwt(r#"{"exp":1700000000}"#);
        let p = problem(&token);
        assert_eq!(
            p,
            TokenProblem::Expired {
                at: Timestamp::from_second(1_700_000_000).unwrap()
            }
        );
        let message = Error::InvalidToken { problem: p }.to_string();
        assert_eq!(
            message,
            "the session token expired at `2023-11-14T22:13:20Z`"
        );
    }

    #[test]
    fn undecodable_jwts_are_malformed_and_never_echoed() {
        let bad_header = format!("{}.{}.sig", b64(b"not json"), b64(b"{}"));
        let bad_claims = format!("{}.{}.sig", b64(b"{}"), b64(b"[1]"));
        let bad_exp = jwt(r#"{"exp":"tomorrow"}"#);
        for token in [bad_header, bad_claims, bad_exp, "eyJh.Zm9v.x".to_owned()] {
            let p = problem(&token);
            assert!(matches!(p, TokenProblem::Malformed { .. }), "{p:?}");
            let message = Error::InvalidToken { problem: p }.to_string();
            assert!(message.starts_with("the token is malformed"), "{message}");
            assert!(!message.contains(&token), "{message}");
        }
    }
}
