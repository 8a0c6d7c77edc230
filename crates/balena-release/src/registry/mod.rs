//! Reading image manifests from registries, for exact download sizes:
//! manifests by digest (checked against it) or a delta's tag, the
//! distribution token flow ([`auth`]), retries of transient failures within
//! the registry's budget per round, bounded concurrency and memory, and a
//! bounded cache of what was learnt.
//!
//! The registry is optional: whatever goes wrong (unreachable, slow,
//! refusing, hostile) only makes sizes unknown for this round, logged at
//! `info`; nothing here fails a run, and nothing unknown is remembered: the
//! next round asks again. The balena token goes to a token realm only when
//! it is on the configured API's origin; a registry's token only to that
//! registry. Every request goes through [`crate::http`].

mod auth;
mod cache;
mod manifest;

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::join_all;
use reqwest::StatusCode;
use secrecy::SecretString;
use tokio::time::Instant;
use url::Url;

use crate::download::{Manifest, ManifestRef};
use crate::http::{
    Attempt, Auth, Clients, Get, Http, LargeBodies, Limit, NoAnswerKind, RetryPolicy, Sent,
    is_loopback, no_events, same_origin, shorten,
};
use crate::redact::{redact_secrets, redact_url};
use auth::{Challenge, Token};
use cache::Cache;
use manifest::Parsed;

/// The most repositories named in one token request: with scopes such as
/// `repository:v2/<32 hex>:pull` its URL stays under about 6 KB, below the
/// 8 KB request line that common proxies accept. A round that needs more
/// asks for a token per batch.
const MAX_SCOPES: usize = 100;

/// Manifests fetched at the same time, at most: enough for the manifests of
/// a round of a few dozen services to go out in one wave (one round trip),
/// bounded so that a fleet of hundreds of images does not open hundreds of
/// connections.
const CONCURRENCY: usize = 64;

/// Manifest bodies larger than [`LargeBodies::SMALL`] read at the same
/// time: with the 1 MiB cap, at most 32 MiB in flight beside the small ones.
const LARGE_BODIES: usize = 28;

/// The default time the registry may add to a round.
pub(crate) const DEFAULT_REGISTRY_TIMEOUT: Duration = Duration::from_secs(15);

/// Retries of a registry request: quick, since the round's budget bounds
/// them all.
const RETRY: RetryPolicy = RetryPolicy {
    max_retries: 3,
    initial: Duration::from_millis(250),
    max: Duration::from_secs(2),
    max_retry_after: Duration::from_secs(10),
};

/// How a registry (one scheme, host and port) lets this client in, as
/// learnt from its first answer.
#[derive(Clone)]
enum Access {
    /// No challenge: manifests are read without a token.
    Open,
    /// A distribution token from the challenge's realm.
    Bearer {
        challenge: Challenge,
        token: Option<Token>,
    },
}

/// The registry side of a client.
pub(crate) struct Registry {
    http: Http,
    api: Url,
    token: Option<SecretString>,
    /// Registry host (`host` or `host:port`, lower case) → base URL.
    map: Vec<(String, Url)>,
    allow_insecure_http: bool,
    request_timeout: Duration,
    /// The most time the registry may add to one round.
    pub(crate) budget: Duration,
    /// Manifests read, bounded.
    manifests: Mutex<Cache>,
    /// How each registry origin is accessed.
    access: tokio::sync::Mutex<HashMap<String, Access>>,
    bodies: LargeBodies,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("map", &self.map)
            .finish_non_exhaustive()
    }
}

/// A manifest to fetch.
#[derive(Debug, Clone)]
struct Wanted {
    what: ManifestRef,
    url: Url,
    /// The repository name, for the token scope.
    repository: String,
}

/// `wanted` in batches naming at most [`MAX_SCOPES`] repositories each (all
/// the manifests of one repository in the same batch), in order.
fn scope_batches(wanted: Vec<Wanted>) -> Vec<Vec<Wanted>> {
    let mut batches: Vec<Vec<Wanted>> = Vec::new();
    let mut repositories: Vec<BTreeSet<String>> = Vec::new();
    for w in wanted {
        let at = repositories
            .iter()
            .position(|r| r.contains(&w.repository))
            .or_else(|| repositories.iter().position(|r| r.len() < MAX_SCOPES));
        let at = at.unwrap_or_else(|| {
            batches.push(Vec::new());
            repositories.push(BTreeSet::new());
            batches.len() - 1
        });
        repositories[at].insert(w.repository.clone());
        batches[at].push(w);
    }
    batches
}

/// One answer of a registry or of a token realm.
struct Reply {
    status: StatusCode,
    body: Vec<u8>,
    challenge: Option<String>,
    /// The share of the memory budget the body holds.
    _held: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// The settings of a [`Registry`].
pub(crate) struct Settings {
    pub(crate) clients: Clients,
    pub(crate) api: Url,
    pub(crate) token: Option<SecretString>,
    pub(crate) map: Vec<(String, Url)>,
    pub(crate) allow_insecure_http: bool,
    pub(crate) request_timeout: Duration,
    pub(crate) budget: Duration,
}

impl Registry {
    pub(crate) fn new(settings: Settings) -> Registry {
        Registry {
            http: Http::new(settings.clients, settings.token.clone(), RETRY),
            api: settings.api,
            token: settings.token,
            map: settings
                .map
                .into_iter()
                .map(|(host, url)| (host.to_ascii_lowercase(), url))
                .collect(),
            allow_insecure_http: settings.allow_insecure_http,
            request_timeout: settings.request_timeout,
            budget: settings.budget,
            manifests: Mutex::new(Cache::default()),
            access: tokio::sync::Mutex::new(HashMap::new()),
            bodies: LargeBodies::new(LARGE_BODIES),
        }
    }

    /// A manifest read before; `None` when unknown or not read.
    pub(crate) fn known(&self, what: &ManifestRef) -> Option<Manifest> {
        self.cache().get(what)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        // A poisoned lock holds complete entries; keep using them.
        self.manifests.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The manifest URL and repository of a manifest reference.
    fn locate(&self, what: &ManifestRef) -> Result<Wanted, String> {
        let location = what.location.as_str();
        let (scheme, rest) = if let Some(rest) = auth::strip_prefix_ci(location, "https://") {
            (Some("https"), rest)
        } else if let Some(rest) = auth::strip_prefix_ci(location, "http://") {
            (Some("http"), rest)
        } else {
            (None, location)
        };
        let (host, repository) = rest
            .split_once('/')
            .ok_or("the location names no repository")?;
        let repository = repository.trim_end_matches('/');
        if !valid_repository(repository) {
            return Err("the location's repository is not a valid name".into());
        }
        if !valid_reference(&what.reference) {
            return Err("the digest or tag is not valid".into());
        }
        let mapped = self
            .map
            .iter()
            .find(|(from, _)| from.eq_ignore_ascii_case(host))
            .map(|(_, to)| to.clone());
        let base = match mapped {
            Some(base) => base,
            None => {
                let probe = Url::parse(&format!("http://{host}/"))
                    .map_err(|_| "the location's host is not valid".to_owned())?;
                let scheme = scheme.unwrap_or(if is_loopback(&probe) { "http" } else { "https" });
                Url::parse(&format!("{scheme}://{host}/"))
                    .map_err(|_| "the location's host is not valid".to_owned())?
            }
        };
        if base.scheme() == "http" && !is_loopback(&base) && !self.allow_insecure_http {
            return Err(format!(
                "plain http to `{}` is not allowed (only loopback hosts, unless the client allows insecure http)",
                origin(&base)
            ));
        }
        // A mirror's path prefix (`https://mirror/prefix`) is kept.
        let prefix = base.path().trim_end_matches('/');
        let url = base
            .join(&format!(
                "{prefix}/v2/{repository}/manifests/{}",
                what.reference
            ))
            .map_err(|e| e.to_string())?;
        Ok(Wanted {
            what: what.clone(),
            url,
            repository: repository.to_owned(),
        })
    }

    /// Asks each registry of `refs` for access (its challenge, then one
    /// token for the first batch of repositories), without fetching the
    /// manifests yet, unless they are cached. Gives up at `until`.
    pub(crate) async fn authorize(&self, refs: &[ManifestRef], until: Instant) {
        let groups = self.groups(refs);
        let work = join_all(groups.into_values().map(|wanted| async move {
            if let Some(first) = scope_batches(wanted).first()
                && let Err(reason) = self.access_for(first, false).await
            {
                note_failure(first, &reason);
            }
        }));
        if tokio::time::timeout_at(until, work).await.is_err() {
            tracing::info!("the registry did not answer in time; download sizes are unknown");
        }
    }

    /// Fetches every manifest of `refs` not known yet, at most
    /// [`CONCURRENCY`] at a time. Gives up at `until`: what is missing then
    /// stays unknown for this round.
    pub(crate) async fn fetch(&self, refs: &[ManifestRef], until: Instant) {
        let groups = self.groups(refs);
        let work = join_all(
            groups
                .into_values()
                .map(|wanted| async move { self.fetch_group(wanted).await }),
        );
        if tokio::time::timeout_at(until, work).await.is_err() {
            tracing::info!("the registry did not answer in time; download sizes are unknown");
        }
    }

    /// The manifests of `refs` not known yet, by registry origin; those that
    /// cannot be located are logged.
    fn groups(&self, refs: &[ManifestRef]) -> HashMap<String, Vec<Wanted>> {
        let mut groups: HashMap<String, Vec<Wanted>> = HashMap::new();
        let mut seen = BTreeSet::new();
        for what in refs {
            if !seen.insert(what) || self.cache().contains(what) {
                continue;
            }
            match self.locate(what) {
                Ok(wanted) => groups.entry(origin(&wanted.url)).or_default().push(wanted),
                Err(reason) => tracing::info!(
                    location = %shown(&what.location),
                    "download size unknown: {reason}"
                ),
            }
        }
        groups
    }

    /// The credentials for `wanted` (all of one origin): none for an open
    /// registry, else a token covering their repositories. The first
    /// contact reads the challenge (an answer that is already the manifest
    /// is kept). `renew` asks for a new token even when one covers them.
    async fn access_for(
        &self,
        wanted: &[Wanted],
        renew: bool,
    ) -> Result<Option<SecretString>, String> {
        let Some(first) = wanted.first() else {
            return Ok(None);
        };
        let key = origin(&first.url);
        let mut access = self.access.lock().await;
        let current = match access.get(&key) {
            Some(known) => known.clone(),
            None => {
                let found = self.challenge(first).await?;
                access.insert(key.clone(), found.clone());
                found
            }
        };
        let Access::Bearer { challenge, token } = current else {
            return Ok(None);
        };
        let needed: BTreeSet<String> = wanted.iter().map(|w| w.repository.clone()).collect();
        let now = Instant::now();
        if let Some(token) = token.as_ref().filter(|t| !renew && t.covers(&needed, now)) {
            return Ok(Some(token.secret.clone()));
        }
        let held = token.map(|t| t.repositories).unwrap_or_default();
        let union: BTreeSet<String> = held.union(&needed).cloned().collect();
        // A token for every repository so far, while that stays one short
        // request; past that, a token for this batch alone.
        let asked = if union.len() <= MAX_SCOPES {
            union
        } else {
            needed
        };
        let (secret, lifetime) = self.token_for(&challenge, &asked).await?;
        let token = Token {
            secret: secret.clone(),
            repositories: asked,
            renew_at: lifetime.map(|l| Instant::now() + l),
        };
        access.insert(
            key,
            Access::Bearer {
                challenge,
                token: Some(token),
            },
        );
        Ok(Some(secret))
    }

    /// First contact: the manifest of `first` without credentials. A
    /// successful answer means an open registry (and settles `first`); a
    /// 401 with a Bearer challenge, the token flow. Anything else leaves
    /// the registry's access unknown, to be asked again.
    async fn challenge(&self, first: &Wanted) -> Result<Access, String> {
        let reply = self
            .send(&first.url, Auth::Anonymous, Some(manifest::ACCEPT), false)
            .await?;
        if reply.status == StatusCode::UNAUTHORIZED {
            let header = reply
                .challenge
                .as_deref()
                .ok_or("the registry answered 401 without a challenge")?;
            return match auth::parse_challenge(header, self.allow_insecure_http)? {
                Some(challenge) => Ok(Access::Bearer {
                    challenge,
                    token: None,
                }),
                None => Err(format!(
                    "the registry's challenge is for {}, not a Bearer token",
                    auth::describe(header)
                )),
            };
        }
        if reply.status.is_success() {
            let found = self.judge(first, reply, None).await;
            self.remember(first, found);
            return Ok(Access::Open);
        }
        Err(format!(
            "the registry answered `{}` without credentials",
            reply.status.as_u16()
        ))
    }

    /// Asks the challenge's realm for a token good for `repositories`. The
    /// balena token goes along only when the realm is on the API's origin.
    async fn token_for(
        &self,
        challenge: &Challenge,
        repositories: &BTreeSet<String>,
    ) -> Result<(SecretString, Option<Duration>), String> {
        let url = auth::token_url(challenge, repositories);
        let on_api = same_origin(&challenge.realm, &self.api);
        let credentials = if on_api {
            Auth::Balena
        } else {
            Auth::Anonymous
        };
        tracing::debug!(
            realm = %origin(&challenge.realm),
            repositories = repositories.len(),
            with_balena_token = on_api && self.token.is_some(),
            "registry token request"
        );
        let reply = self.send(&url, credentials, None, true).await?;
        if !reply.status.is_success() {
            return Err(format!(
                "the token realm `{}` answered `{}`: {}",
                origin(&challenge.realm),
                reply.status.as_u16(),
                shorten(&String::from_utf8_lossy(&reply.body))
            ));
        }
        auth::read_token(&reply.body, self.token.as_ref())
    }

    /// Fetches the manifests of one registry origin, a batch of at most
    /// [`MAX_SCOPES`] repositories (one token) after another.
    async fn fetch_group(&self, wanted: Vec<Wanted>) {
        for batch in scope_batches(wanted) {
            self.fetch_batch(batch).await;
        }
    }

    /// Fetches manifests of at most [`MAX_SCOPES`] repositories. A 401 to a
    /// request made with a registry token gets one new token and one retry.
    async fn fetch_batch(&self, wanted: Vec<Wanted>) {
        let token = match self.access_for(&wanted, false).await {
            Ok(token) => token,
            Err(reason) => return note_failure(&wanted, &reason),
        };
        let refused: Vec<Wanted> = futures_util::stream::iter(wanted.clone())
            // The challenge may have read one already.
            .filter(|w| std::future::ready(!self.cache().contains(&w.what)))
            .map(|w| {
                let token = token.clone();
                async move {
                    match self.fetch_one(&w, token.as_ref()).await {
                        Fetched::Refused if token.is_some() => Some(w),
                        _ => None,
                    }
                }
            })
            .buffer_unordered(CONCURRENCY)
            .filter_map(std::future::ready)
            .collect()
            .await;
        if refused.is_empty() {
            return;
        }
        tracing::info!(
            manifests = refused.len(),
            "the registry refused its token; asking for a new one"
        );
        let token = match self.access_for(&wanted, true).await {
            Ok(token) => token,
            Err(reason) => return note_failure(&refused, &reason),
        };
        futures_util::stream::iter(refused)
            .map(|w| {
                let token = token.clone();
                async move {
                    if let Fetched::Refused = self.fetch_one(&w, token.as_ref()).await {
                        tracing::info!(manifest = %redact_url(&w.url), "download size unknown: the registry refused a new token too");
                    }
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<()>>()
            .await;
    }

    /// Reads one manifest and remembers it when known.
    async fn fetch_one(&self, wanted: &Wanted, token: Option<&SecretString>) -> Fetched {
        let auth = token.map_or(Auth::Anonymous, Auth::Bearer);
        let reply = match self
            .send(&wanted.url, auth, Some(manifest::ACCEPT), false)
            .await
        {
            Ok(reply) => reply,
            Err(reason) => {
                tracing::info!(manifest = %redact_url(&wanted.url), "download size unknown: {reason}");
                return Fetched::Unknown;
            }
        };
        if reply.status == StatusCode::UNAUTHORIZED {
            return Fetched::Refused;
        }
        let found = self.judge(wanted, reply, token).await;
        let known = found.is_some();
        self.remember(wanted, found);
        if known {
            Fetched::Known
        } else {
            Fetched::Unknown
        }
    }

    fn remember(&self, wanted: &Wanted, found: Option<Manifest>) {
        if let Some(found) = found {
            self.cache().insert(wanted.what.clone(), found);
        }
    }

    /// The manifest in an answer, checked against the digest it was asked
    /// by; an index of one image platform is followed once (same registry,
    /// same token).
    async fn judge(
        &self,
        wanted: &Wanted,
        reply: Reply,
        token: Option<&SecretString>,
    ) -> Option<Manifest> {
        let shown_url = redact_url(&wanted.url);
        let unknown = |reason: &str| {
            tracing::info!(manifest = %shown_url, "download size unknown: {reason}");
            None
        };
        if !reply.status.is_success() {
            return unknown(&format!(
                "the registry answered `{}`",
                reply.status.as_u16()
            ));
        }
        if let Err(reason) = manifest::verify(&wanted.what.reference, &reply.body) {
            return unknown(&reason);
        }
        let parsed = manifest::parse(&reply.body);
        drop(reply);
        match parsed {
            Ok(Parsed::Image(image)) => Some(Manifest::new(image)),
            Ok(Parsed::One(digest)) => {
                let child = ManifestRef {
                    location: wanted.what.location.clone(),
                    reference: digest,
                };
                let child = self.locate(&child).ok()?;
                let auth = token.map_or(Auth::Anonymous, Auth::Bearer);
                let reply = match self
                    .send(&child.url, auth, Some(manifest::ACCEPT), false)
                    .await
                {
                    Ok(reply) => reply,
                    Err(reason) => return unknown(&reason),
                };
                if !reply.status.is_success() {
                    return unknown("the image of its index cannot be read");
                }
                if let Err(reason) = manifest::verify(&child.what.reference, &reply.body) {
                    return unknown(&reason);
                }
                match manifest::parse(&reply.body) {
                    Ok(Parsed::Image(image)) => Some(Manifest::new(image)),
                    _ => unknown("the image of its index cannot be read"),
                }
            }
            Err(reason) => unknown(&reason),
        }
    }

    /// One GET through [`Http`], capped at [`manifest::MAX_BYTES`], with
    /// transient failures (no answer, 408, 429, 5xx) retried with backoff
    /// and `Retry-After`; the round's deadline bounds them all.
    async fn send(
        &self,
        url: &Url,
        auth: Auth<'_>,
        accept: Option<&'static str>,
        credential: bool,
    ) -> Result<Reply, String> {
        let limit = Limit {
            bytes: manifest::MAX_BYTES,
            truncate: false,
            timeout: Some(self.request_timeout.min(self.budget)),
        };
        let get = Get {
            url,
            limit,
            accept,
            auth,
            budget: Some(&self.bodies),
            credential,
        };
        tracing::debug!(url = %redact_url(url), "registry request");
        self.http
            .retrying("registry", &no_events, || async {
                match self.http.get(get).await {
                    Sent::NoAnswer(failure) => {
                        let message =
                            format!("no answer from `{}`: {}", origin(url), failure.message);
                        match failure.kind {
                            NoAnswerKind::TimedOut | NoAnswerKind::Unreachable => Attempt::Retry {
                                reason: message.clone(),
                                after: None,
                                error: message,
                            },
                            _ => Attempt::Fail(message),
                        }
                    }
                    Sent::TooLarge { limit } => Attempt::Fail(format!(
                        "the answer of `{}` is larger than {limit} bytes",
                        origin(url)
                    )),
                    Sent::Answer {
                        status,
                        body,
                        retry_after,
                        challenge,
                        held,
                        ..
                    } => match status.as_u16() {
                        408 | 429 | 500..=599 => {
                            let message =
                                format!("`{}` answered `{}`", origin(url), status.as_u16());
                            Attempt::Retry {
                                reason: message.clone(),
                                after: retry_after,
                                error: message,
                            }
                        }
                        _ => Attempt::Done(Reply {
                            status,
                            body,
                            challenge,
                            _held: held,
                        }),
                    },
                }
            })
            .await
    }
}

/// How reading one manifest went.
enum Fetched {
    Known,
    Unknown,
    /// 401: the token (if any) was refused.
    Refused,
}

fn note_failure(wanted: &[Wanted], reason: &str) {
    if let Some(first) = wanted.first() {
        tracing::info!(
            registry = %origin(&first.url),
            manifests = wanted.len(),
            "download sizes unknown: {reason}"
        );
    }
}

/// A location or URL fit for logs.
fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    redact_secrets(text, None)
}

/// `scheme://host:port` of a URL (the port always written).
fn origin(url: &Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// A repository name as the distribution spec allows: lower-case
/// components of `a-z0-9._-` separated by `/`.
fn valid_repository(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        })
}

/// A digest (`algorithm:hex`) or a tag.
fn valid_reference(reference: &str) -> bool {
    !reference.is_empty()
        && reference.len() <= 200
        && reference
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:+-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(map: &[(&str, &str)], allow_insecure_http: bool) -> Registry {
        Registry::new(settings(map, allow_insecure_http))
    }

    fn settings(map: &[(&str, &str)], allow_insecure_http: bool) -> Settings {
        Settings {
            clients: Clients {
                proxied: reqwest::Client::new(),
                direct: reqwest::Client::new(),
            },
            api: Url::parse("https://api.balena-cloud.com").unwrap(),
            token: None,
            map: map
                .iter()
                .map(|(h, u)| ((*h).to_owned(), Url::parse(u).unwrap()))
                .collect(),
            allow_insecure_http,
            request_timeout: Duration::from_secs(1),
            budget: Duration::from_secs(1),
        }
    }

    /// The balena token goes to a realm on the API's scheme, host and port
    /// only: the same host and port over http while the API is https gets
    /// no `Authorization`.
    #[tokio::test]
    async fn the_balena_token_goes_only_to_a_realm_on_the_apis_origin() {
        let realm = balena_sim::canned::Canned::start();
        realm.route(
            "/token",
            balena_sim::canned::Answer::json(r#"{"token":"registry-token"}"#),
        );
        let port = Url::parse(&realm.url).unwrap().port().unwrap();
        let challenge = Challenge {
            realm: Url::parse(&format!("{}/token", realm.url)).unwrap(),
            service: Some("registry".into()),
        };
        let repositories: BTreeSet<String> = ["v2/a".to_owned()].into();
        for (api, sent) in [
            (format!("https://127.0.0.1:{port}"), false),
            (format!("http://127.0.0.1:{}", port.wrapping_add(1)), false),
            (format!("http://127.0.0.1:{port}"), true),
        ] {
            realm.reset();
            realm.route(
                "/token",
                balena_sim::canned::Answer::json(r#"{"token":"registry-token"}"#),
            );
            let registry = Registry::new(Settings {
                api: Url::parse(&api).unwrap(),
                token: Some(SecretString::from("balena-token-0123456789")),
                ..settings(&[], false)
            });
            registry.token_for(&challenge, &repositories).await.unwrap();
            let seen = realm.seen();
            assert_eq!(seen.len(), 1, "{api}");
            assert_eq!(
                seen[0].header("authorization"),
                sent.then_some("Bearer balena-token-0123456789"),
                "{api}"
            );
        }
    }

    fn at(location: &str, reference: &str) -> ManifestRef {
        ManifestRef {
            location: location.into(),
            reference: reference.into(),
        }
    }

    #[test]
    fn locations_become_manifest_urls() {
        let r = registry(
            &[("registry2.balena-cloud.com", "http://127.0.0.1:5000")],
            false,
        );
        let url = |l: &str, reference: &str| r.locate(&at(l, reference)).map(|w| w.url.to_string());
        assert_eq!(
            url("registry2.balena-cloud.com/v2/abc", "sha256:12").unwrap(),
            "http://127.0.0.1:5000/v2/v2/abc/manifests/sha256:12"
        );
        assert_eq!(
            url("REGISTRY2.balena-cloud.com/v2/abc", "delta-1").unwrap(),
            "http://127.0.0.1:5000/v2/v2/abc/manifests/delta-1"
        );
        assert_eq!(
            url("registry.example/v2/abc", "sha256:12").unwrap(),
            "https://registry.example/v2/v2/abc/manifests/sha256:12"
        );
        assert_eq!(
            url("127.0.0.1:6000/v2/abc", "sha256:12").unwrap(),
            "http://127.0.0.1:6000/v2/v2/abc/manifests/sha256:12"
        );
        assert_eq!(
            url("https://localhost:6000/v2/abc", "sha256:12").unwrap(),
            "https://localhost:6000/v2/v2/abc/manifests/sha256:12"
        );
        // A mirror under a path keeps it.
        let mirror = registry(
            &[(
                "registry2.balena-cloud.com",
                "http://127.0.0.1:5000/mirror/balena/",
            )],
            false,
        );
        assert_eq!(
            mirror
                .locate(&at("registry2.balena-cloud.com/v2/abc", "sha256:12"))
                .map(|w| w.url.to_string())
                .unwrap(),
            "http://127.0.0.1:5000/mirror/balena/v2/v2/abc/manifests/sha256:12"
        );
        let refused = url("http://registry.example/v2/abc", "sha256:12").unwrap_err();
        assert!(refused.contains("is not allowed"), "{refused}");
        let allowed = registry(&[], true);
        assert!(
            allowed
                .locate(&at("http://registry.example/v2/a", "sha256:1"))
                .is_ok()
        );
        for (location, reference) in [
            ("registry.example", "sha256:12"),
            ("registry.example/v2/../x", "sha256:12"),
            ("registry.example/V2/abc", "sha256:12"),
            ("registry.example/v2/abc?x=1", "sha256:12"),
            ("registry.example/v2/abc", "../x"),
            ("registry.example/v2/abc", "a/b"),
        ] {
            assert!(
                r.locate(&at(location, reference)).is_err(),
                "{location} {reference}"
            );
        }
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(same_origin(
            &u("https://api.x/auth/v1/token"),
            &u("https://API.x:443/")
        ));
        assert!(!same_origin(&u("http://api.x/t"), &u("https://api.x/")));
        assert!(!same_origin(
            &u("https://api.x:8443/t"),
            &u("https://api.x/")
        ));
        assert!(!same_origin(
            &u("https://api.x.evil/t"),
            &u("https://api.x/")
        ));
    }
}
