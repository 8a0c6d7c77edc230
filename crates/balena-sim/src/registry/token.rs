//! Registry tokens, as the distribution token flow hands them out: the API's
//! `/auth/v1/token` turns a balena token and the requested scopes into a
//! JWT-shaped token; the registry accepts it for the repositories it grants
//! until it expires (simulated time).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};

use crate::sha256;

/// How long a registry token is valid (simulated seconds).
pub(crate) const LIFETIME_S: i64 = 3600;

/// Tokens kept at most; the oldest are forgotten first (clients then ask again).
const MAX_TOKENS: usize = 100_000;

/// What one token allows.
#[derive(Debug, Clone)]
struct Grant {
    repositories: BTreeSet<String>,
    expires: Timestamp,
    issued: u64,
}

/// Issued tokens.
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    inner: Mutex<(u64, HashMap<String, Grant>)>,
}

/// `repository:<name>:<actions>` scopes (several per parameter, space
/// separated) → the repositories granted `pull`.
pub(crate) fn pull_scopes<'a>(scopes: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
    scopes
        .flat_map(|scope| scope.split(' '))
        .filter_map(|scope| {
            let rest = scope.strip_prefix("repository:")?;
            let (name, actions) = rest.rsplit_once(':')?;
            (!name.is_empty() && actions.split(',').any(|a| a == "pull" || a == "*"))
                .then(|| name.to_owned())
        })
        .collect()
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

impl Tokens {
    /// A new token for `repositories`, issued at `now` for `service`.
    pub(crate) fn issue(
        &self,
        service: &str,
        repositories: BTreeSet<String>,
        now: Timestamp,
    ) -> String {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.0 += 1;
        let issued = inner.0;
        let expires = now
            .saturating_add(SignedDuration::from_secs(LIFETIME_S))
            .unwrap_or(now);
        let access: Vec<serde_json::Value> = repositories
            .iter()
            .map(|name| serde_json::json!({ "type": "repository", "name": name, "actions": ["pull"] }))
            .collect();
        let header = base64url(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = serde_json::json!({
            "iss": "balena-sim",
            "aud": service,
            "jti": issued.to_string(),
            "iat": now.as_second(),
            "exp": expires.as_second(),
            "access": access,
        });
        let payload = base64url(claims.to_string().as_bytes());
        let signed = format!("{header}.{payload}");
        let signature = base64url(&sha256::digest(
            format!("balena-sim registry key {signed}").as_bytes(),
        ));
        let token = format!("{signed}.{signature}");
        if inner.1.len() >= MAX_TOKENS
            && let Some(oldest) = inner
                .1
                .iter()
                .min_by_key(|(_, grant)| grant.issued)
                .map(|(token, _)| token.clone())
        {
            inner.1.remove(&oldest);
        }
        inner.1.insert(
            token.clone(),
            Grant {
                repositories,
                expires,
                issued,
            },
        );
        token
    }

    /// Whether `token` is a live token.
    pub(crate) fn valid(&self, token: &str, now: Timestamp) -> bool {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.1.get(token).is_some_and(|grant| now < grant.expires)
    }

    /// Whether `token` is live and grants `pull` on `repository`.
    pub(crate) fn allows(&self, token: &str, repository: &str, now: Timestamp) -> bool {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .1
            .get(token)
            .is_some_and(|grant| now < grant.expires && grant.repositories.contains(repository))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_without_padding() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(b"foob"), "Zm9vYg");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn scopes_grant_pull_only() {
        let granted = pull_scopes(
            [
                "repository:v2/a:pull",
                "repository:v2/b:push,pull repository:v2/c:push",
                "registry:catalog:*",
                "repository::pull",
            ]
            .into_iter(),
        );
        assert_eq!(granted.into_iter().collect::<Vec<_>>(), ["v2/a", "v2/b"]);
    }

    #[test]
    fn tokens_cover_their_repositories_until_they_expire() {
        let tokens = Tokens::default();
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let token = tokens.issue("r", BTreeSet::from(["v2/a".to_owned()]), now);
        assert_eq!(token.split('.').count(), 3);
        assert!(tokens.allows(&token, "v2/a", now));
        assert!(!tokens.allows(&token, "v2/b", now));
        assert!(!tokens.allows("nope", "v2/a", now));
        let later = now
            .saturating_add(SignedDuration::from_secs(LIFETIME_S))
            .unwrap();
        assert!(!tokens.allows(&token, "v2/a", later));
        assert!(tokens.valid(&token, now) && !tokens.valid(&token, later));
    }
}
