//! Reading image manifests from the registry, for exact download sizes:
//! manifests by digest (or a delta's tag), the distribution token flow from
//! the registry's 401 challenge (one token request for every 100 repositories of
//! a round), bounded concurrency and one fetch per manifest per client.
//!
//! The registry is optional: whatever goes wrong (unreachable, slow,
//! refusing, hostile) only makes sizes unknown, logged at `info`; nothing
//! here fails a run. The balena token goes to a token realm only when it is
//! on the configured API host; a registry's token only to that registry.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::join_all;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::time::Instant;
use url::Url;

use crate::download::{Layer, Layers, ManifestRef};
use crate::http::{Clients, Limit, is_loopback, read_capped, same_origin};
use crate::redact::{REDACTED, redact_secrets, redact_url};

/// The manifest types asked for: single images first, then lists.
const ACCEPT_MANIFESTS: &str = "application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.index.v1+json";

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

/// The default time the registry may add to a round.
pub(crate) const DEFAULT_REGISTRY_TIMEOUT: Duration = Duration::from_secs(15);

/// How a registry (one scheme, host and port) lets this client in.
#[derive(Clone)]
enum Access {
    /// No challenge: manifests are read without a token.
    Open,
    /// A distribution token from `realm`, good for `scopes`.
    Bearer {
        realm: Url,
        service: Option<String>,
        token: Option<SecretString>,
        scopes: BTreeSet<String>,
    },
    /// The registry cannot be used for the rest of this client's life.
    Failed,
}

/// The registry side of a client.
pub(crate) struct Registry {
    clients: Clients,
    api: Url,
    token: Option<SecretString>,
    /// Registry host (`host` or `host:port`, lower case) → base URL.
    map: Vec<(String, Url)>,
    allow_insecure_http: bool,
    request_timeout: Duration,
    /// The most time the registry may add to one round.
    pub(crate) budget: Duration,
    /// Every manifest fetched: its layers, or `None` when unknown.
    manifests: Mutex<HashMap<ManifestRef, Option<Layers>>>,
    /// How each registry origin is accessed.
    access: tokio::sync::Mutex<HashMap<String, Access>>,
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

/// One answer of the registry or of a token realm.
struct Reply {
    status: StatusCode,
    body: String,
    challenge: Option<String>,
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
            clients: settings.clients,
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
            manifests: Mutex::new(HashMap::new()),
            access: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The layers of a manifest fetched before; `None` when unknown or not
    /// fetched.
    pub(crate) fn known(&self, what: &ManifestRef) -> Option<Layers> {
        self.cache().get(what).cloned().flatten()
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<ManifestRef, Option<Layers>>> {
        // A poisoned lock holds complete entries; keep using them.
        self.manifests.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remember(&self, what: &ManifestRef, layers: Option<Layers>) {
        self.cache().insert(what.clone(), layers);
    }

    /// The manifest URL and repository of a manifest reference.
    fn locate(&self, what: &ManifestRef) -> Result<Wanted, String> {
        let location = what.location.as_str();
        let (scheme, rest) = if let Some(rest) = strip_prefix_ci(location, "https://") {
            (Some("https"), rest)
        } else if let Some(rest) = strip_prefix_ci(location, "http://") {
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
        let url = base
            .join(&format!("/v2/{repository}/manifests/{}", what.reference))
            .map_err(|e| e.to_string())?;
        Ok(Wanted {
            what: what.clone(),
            url,
            repository: repository.to_owned(),
        })
    }

    /// Asks each registry of `refs` for access (its challenge, then one
    /// token for every repository), without fetching the manifests yet,
    /// unless they are cached. Gives up at `until`.
    pub(crate) async fn authorize(&self, refs: &[ManifestRef], until: Instant) {
        let groups = self.groups(refs, false);
        // The first batch's token; later batches ask for theirs when fetched.
        let work = join_all(groups.into_values().map(|wanted| async move {
            if let Some(first) = scope_batches(wanted).first() {
                self.access_for(first).await;
            }
        }));
        if tokio::time::timeout_at(until, work).await.is_err() {
            tracing::info!("the registry did not answer in time; download sizes are unknown");
        }
    }

    /// Fetches every manifest of `refs` not fetched before, at most
    /// [`CONCURRENCY`] at a time. Gives up at `until`: what is missing then
    /// stays unknown.
    pub(crate) async fn fetch(&self, refs: &[ManifestRef], until: Instant) {
        let groups = self.groups(refs, true);
        let all: Vec<ManifestRef> = groups
            .values()
            .flat_map(|w| w.iter().map(|w| w.what.clone()))
            .collect();
        let work = join_all(
            groups
                .into_values()
                .map(|wanted| async move { self.fetch_group(wanted).await }),
        );
        if tokio::time::timeout_at(until, work).await.is_err() {
            tracing::info!("the registry did not answer in time; download sizes are unknown");
        }
        let mut cache = self.cache();
        for what in all {
            cache.entry(what).or_insert(None);
        }
    }

    /// The manifests of `refs` not in the cache, by registry origin; those
    /// that cannot be located are noted as unknown (with `record`).
    fn groups(&self, refs: &[ManifestRef], record: bool) -> HashMap<String, Vec<Wanted>> {
        let mut groups: HashMap<String, Vec<Wanted>> = HashMap::new();
        let mut seen = BTreeSet::new();
        for what in refs {
            if !seen.insert(what) || self.cache().contains_key(what) {
                continue;
            }
            match self.locate(what) {
                Ok(wanted) => groups.entry(origin(&wanted.url)).or_default().push(wanted),
                Err(reason) => {
                    if record {
                        tracing::info!(
                            location = %shown(&what.location),
                            "download size unknown: {reason}"
                        );
                        self.remember(what, None);
                    }
                }
            }
        }
        groups
    }

    /// The access to the registry of `wanted` (all of one origin), for all
    /// their repositories: the challenge on first contact (whose answer,
    /// when it is the manifest itself, is kept), then a token when the
    /// registry asks for one and the scopes are not covered yet.
    async fn access_for(&self, wanted: &[Wanted]) -> Access {
        let Some(first) = wanted.first() else {
            return Access::Open;
        };
        let key = origin(&first.url);
        let mut access = self.access.lock().await;
        let current = match access.get(&key) {
            Some(known) => known.clone(),
            None => {
                let found = self.challenge(first).await;
                access.insert(key.clone(), found.clone());
                found
            }
        };
        let Access::Bearer {
            realm,
            service,
            token,
            scopes,
        } = current
        else {
            return current;
        };
        let needed: BTreeSet<String> = wanted
            .iter()
            .map(|w| format!("repository:{}:pull", w.repository))
            .collect();
        if token.is_some() && needed.is_subset(&scopes) {
            return Access::Bearer {
                realm,
                service,
                token,
                scopes,
            };
        }
        let union: BTreeSet<String> = scopes.union(&needed).cloned().collect();
        // A token for every repository so far, while that stays one short
        // request; past that, a token for this batch alone.
        let all = if union.len() <= MAX_SCOPES {
            union
        } else {
            needed
        };
        let updated = match self.token_for(&realm, service.as_deref(), &all).await {
            Ok(token) => Access::Bearer {
                realm,
                service,
                token: Some(token),
                scopes: all,
            },
            Err(reason) => {
                tracing::info!(registry = %key, "download sizes unknown: {reason}");
                Access::Failed
            }
        };
        access.insert(key, updated.clone());
        updated
    }

    /// First contact: the manifest of `first` without credentials. An
    /// answer other than a Bearer challenge settles `first` (known or not).
    async fn challenge(&self, first: &Wanted) -> Access {
        let key = origin(&first.url);
        let reply = match self.get(&first.url, None, Some(ACCEPT_MANIFESTS)).await {
            Ok(reply) => reply,
            Err(reason) => {
                tracing::info!(registry = %key, "download sizes unknown: {reason}");
                return Access::Failed;
            }
        };
        if reply.status == StatusCode::UNAUTHORIZED {
            let Some(header) = reply.challenge.as_deref() else {
                let reason = "the registry answered 401 without a challenge".to_owned();
                tracing::info!(registry = %key, "download sizes unknown: {reason}");
                return Access::Failed;
            };
            return match parse_challenge(header) {
                Some((realm, service)) => match self.realm_url(&realm) {
                    Ok(realm) => Access::Bearer {
                        realm,
                        service,
                        token: None,
                        scopes: BTreeSet::new(),
                    },
                    Err(reason) => {
                        tracing::info!(registry = %key, "download sizes unknown: {reason}");
                        Access::Failed
                    }
                },
                None => {
                    let reason = format!(
                        "the registry's challenge is not a Bearer token challenge: `{}`",
                        crate::http::shorten(&self.clean(header, None))
                    );
                    tracing::info!(registry = %key, "download sizes unknown: {reason}");
                    Access::Failed
                }
            };
        }
        // Answered without credentials: an open registry.
        let layers = self.judge(first, reply, None).await;
        self.remember(&first.what, layers);
        Access::Open
    }

    /// Checks a token realm URL from a challenge.
    fn realm_url(&self, realm: &str) -> Result<Url, String> {
        let url = Url::parse(realm)
            .map_err(|_| format!("the token realm `{}` is not a URL", shown(realm)))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(format!(
                "the token realm `{}` is not usable",
                redact_url(&url)
            ));
        }
        if url.scheme() == "http" && !is_loopback(&url) && !self.allow_insecure_http {
            return Err(format!(
                "the token realm `{}` is plain http (only loopback hosts, unless the client allows insecure http)",
                redact_url(&url)
            ));
        }
        Ok(url)
    }

    /// Asks `realm` for a token good for `scopes`. The balena token goes
    /// along only when the realm is on the API's scheme, host and port.
    async fn token_for(
        &self,
        realm: &Url,
        service: Option<&str>,
        scopes: &BTreeSet<String>,
    ) -> Result<SecretString, String> {
        let mut url = realm.clone();
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            for scope in scopes {
                query.append_pair("scope", scope);
            }
        }
        let on_api = same_origin(realm, &self.api);
        let bearer = if on_api {
            self.token.as_ref().map(|t| t.expose_secret().to_owned())
        } else {
            None
        };
        tracing::debug!(realm = %origin(realm), scopes = scopes.len(), with_balena_token = bearer.is_some(), "registry token request");
        let reply = self.get(&url, bearer.as_deref(), None).await?;
        if !reply.status.is_success() {
            return Err(format!(
                "the token realm `{}` answered `{}`: {}",
                origin(realm),
                reply.status.as_u16(),
                crate::http::shorten(&reply.body)
            ));
        }
        #[derive(Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
        }
        let answer: TokenAnswer = serde_json::from_str(&reply.body)
            .map_err(|e| format!("the token realm's answer is not a token: {e}"))?;
        let token = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty() && !t.contains(REDACTED))
            .ok_or("the token realm's answer has no usable token")?;
        if HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
            return Err("the token realm's token is not a valid header value".into());
        }
        Ok(SecretString::from(token))
    }

    /// Fetches the manifests of one registry origin, a batch of at most
    /// [`MAX_SCOPES`] repositories (one token) after another.
    async fn fetch_group(&self, wanted: Vec<Wanted>) {
        for batch in scope_batches(wanted) {
            self.fetch_batch(batch).await;
        }
    }

    /// Fetches manifests of at most [`MAX_SCOPES`] repositories.
    async fn fetch_batch(&self, wanted: Vec<Wanted>) {
        let access = self.access_for(&wanted).await;
        let token = match &access {
            Access::Failed => {
                for w in &wanted {
                    self.remember(&w.what, None);
                }
                return;
            }
            Access::Open => None,
            Access::Bearer { token, .. } => token.clone(),
        };
        let token = token.as_ref();
        futures_util::stream::iter(wanted)
            // The challenge may have fetched one already.
            .filter(|w| std::future::ready(!self.cache().contains_key(&w.what)))
            .map(|w| async move {
                let bearer = token.map(|t| t.expose_secret());
                let layers = match self.get(&w.url, bearer, Some(ACCEPT_MANIFESTS)).await {
                    Ok(reply) => self.judge(&w, reply, token).await,
                    Err(reason) => {
                        tracing::info!(manifest = %redact_url(&w.url), "download size unknown: {reason}");
                        None
                    }
                };
                self.remember(&w.what, layers);
            })
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<()>>()
            .await;
    }

    /// The layers in a manifest answer; an index of one image platform is
    /// followed once (same registry, same token).
    async fn judge(
        &self,
        wanted: &Wanted,
        reply: Reply,
        token: Option<&SecretString>,
    ) -> Option<Layers> {
        let shown_url = redact_url(&wanted.url);
        if !reply.status.is_success() {
            tracing::info!(
                manifest = %shown_url,
                "download size unknown: the registry answered `{}`",
                reply.status.as_u16()
            );
            return None;
        }
        match parse_manifest(&reply.body) {
            Ok(Parsed::Layers(layers)) => Some(layers),
            Ok(Parsed::One(digest)) => {
                let child = ManifestRef {
                    location: wanted.what.location.clone(),
                    reference: digest,
                };
                let child = self.locate(&child).ok()?;
                let bearer = token.map(|t| t.expose_secret());
                let reply = match self.get(&child.url, bearer, Some(ACCEPT_MANIFESTS)).await {
                    Ok(reply) => reply,
                    Err(reason) => {
                        tracing::info!(manifest = %shown_url, "download size unknown: {reason}");
                        return None;
                    }
                };
                match (reply.status.is_success(), parse_manifest(&reply.body)) {
                    (true, Ok(Parsed::Layers(layers))) => Some(layers),
                    _ => {
                        tracing::info!(manifest = %shown_url, "download size unknown: the image of its index cannot be read");
                        None
                    }
                }
            }
            Err(reason) => {
                tracing::info!(manifest = %shown_url, "download size unknown: {reason}");
                None
            }
        }
    }

    /// One GET, with `bearer` as `Authorization: Bearer` when given, the
    /// answer capped at [`Limit::REGISTRY`] and cleaned of secrets.
    async fn get(
        &self,
        url: &Url,
        bearer: Option<&str>,
        accept: Option<&str>,
    ) -> Result<Reply, String> {
        let shown_url = redact_url(url);
        let mut request = self
            .clients
            .for_url(url)
            .get(url.clone())
            .timeout(self.request_timeout.min(self.budget));
        if let Some(accept) = accept {
            request = request.header(ACCEPT, accept);
        }
        if let Some(bearer) = bearer
            && let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {bearer}"))
        {
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        tracing::debug!(url = %shown_url, "registry request");
        let response = request.send().await.map_err(|e| {
            let e = e.without_url();
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                message = format!("{message}: {s}");
                source = s.source();
            }
            format!(
                "no answer from `{}`: {}",
                origin(url),
                self.clean(&message, bearer)
            )
        })?;
        let status = response.status();
        let challenge = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = match read_capped(response, Limit::REGISTRY).await {
            Ok(Some(body)) => body,
            Ok(None) => {
                return Err(format!(
                    "the answer of `{}` is larger than {} bytes",
                    origin(url),
                    Limit::REGISTRY.bytes
                ));
            }
            Err(e) => {
                return Err(format!(
                    "`{}` broke off its answer: {}",
                    origin(url),
                    e.without_url()
                ));
            }
        };
        let body = String::from_utf8_lossy(&body);
        Ok(Reply {
            status,
            body: self.clean(&body, bearer),
            challenge,
        })
    }

    /// `text` without the balena token nor `bearer` (a registry token).
    fn clean(&self, text: &str, bearer: Option<&str>) -> String {
        let token = self.token.as_ref().map(|t| t.expose_secret());
        let text = redact_secrets(text, token);
        match bearer.filter(|b| !b.is_empty()) {
            Some(bearer) if text.contains(bearer) => text.replace(bearer, REDACTED),
            _ => text.into_owned(),
        }
    }
}

/// A location or URL fit for logs.
fn shown(text: &str) -> Cow<'_, str> {
    redact_secrets(text, None)
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.get(..prefix.len())
        .filter(|p| p.eq_ignore_ascii_case(prefix))
        .map(|_| &text[prefix.len()..])
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

/// The realm and service of a `Bearer` challenge.
fn parse_challenge(header: &str) -> Option<(String, Option<String>)> {
    let rest = strip_prefix_ci(header.trim_start(), "bearer ")?;
    let params = parse_params(rest);
    let realm = params.iter().find(|(k, _)| k == "realm")?.1.clone();
    let service = params
        .iter()
        .find(|(k, _)| k == "service")
        .map(|(_, v)| v.clone());
    Some((realm, service))
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

/// What a manifest answer says.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    Layers(Layers),
    /// An index naming a single image: its digest.
    One(String),
}

fn parse_manifest(body: &str) -> Result<Parsed, String> {
    #[derive(Deserialize)]
    struct WireLayer {
        digest: String,
        size: u64,
    }
    #[derive(Deserialize)]
    struct Platform {
        os: Option<String>,
        architecture: Option<String>,
    }
    #[derive(Deserialize)]
    struct Entry {
        digest: String,
        platform: Option<Platform>,
    }
    #[derive(Deserialize)]
    struct Manifest {
        layers: Option<Vec<WireLayer>>,
        manifests: Option<Vec<Entry>>,
    }
    let manifest: Manifest =
        serde_json::from_str(body).map_err(|e| format!("the manifest cannot be read: {e}"))?;
    if let Some(layers) = manifest.layers {
        if layers.iter().any(|l| l.digest.is_empty()) {
            return Err("the manifest has a layer without a digest".into());
        }
        return Ok(Parsed::Layers(
            layers
                .into_iter()
                .map(|l| Layer {
                    digest: l.digest,
                    size: l.size,
                })
                .collect(),
        ));
    }
    let Some(entries) = manifest.manifests else {
        return Err("the manifest lists no layers (an old schema?)".into());
    };
    // Build attestations are listed with platform unknown/unknown.
    let images: Vec<&Entry> = entries
        .iter()
        .filter(|e| {
            e.platform.as_ref().is_none_or(|p| {
                p.os.as_deref() != Some("unknown") || p.architecture.as_deref() != Some("unknown")
            })
        })
        .collect();
    match images.as_slice() {
        [one] if valid_reference(&one.digest) => Ok(Parsed::One(one.digest.clone())),
        [] | [_] => Err("the manifest index names no usable image".into()),
        _ => Err(format!(
            "the manifest index names {} platforms; which one a device pulls is not known",
            images.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(map: &[(&str, &str)], allow_insecure_http: bool) -> Registry {
        Registry::new(Settings {
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
        })
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
    fn challenges_name_a_realm_and_a_service() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://api.balena-cloud.com/auth/v1/token",service="registry2.balena-cloud.com",scope="repository:v2/abc:pull""#
            ),
            Some((
                "https://api.balena-cloud.com/auth/v1/token".into(),
                Some("registry2.balena-cloud.com".into())
            ))
        );
        assert_eq!(
            parse_challenge(r#"bearer realm=http://127.0.0.1:9/t, service = "a\"b""#),
            Some(("http://127.0.0.1:9/t".into(), Some("a\"b".into())))
        );
        assert_eq!(parse_challenge(r#"Basic realm="x""#), None);
        assert_eq!(parse_challenge("Bearer service=x"), None);
        assert_eq!(parse_challenge("Bearer"), None);
    }

    #[test]
    fn manifests_of_images_lists_and_indexes() {
        let image = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
            "config":{"digest":"sha256:c","size":7},
            "layers":[{"digest":"sha256:a","size":10},{"digest":"sha256:b","size":20}]}"#;
        assert_eq!(
            parse_manifest(image),
            Ok(Parsed::Layers(
                vec![
                    Layer {
                        digest: "sha256:a".into(),
                        size: 10
                    },
                    Layer {
                        digest: "sha256:b".into(),
                        size: 20
                    }
                ]
                .into()
            ))
        );
        let one = r#"{"manifests":[{"digest":"sha256:x","platform":{"os":"linux","architecture":"arm64"}},
            {"digest":"sha256:att","platform":{"os":"unknown","architecture":"unknown"}}]}"#;
        assert_eq!(parse_manifest(one), Ok(Parsed::One("sha256:x".into())));
        let two = r#"{"manifests":[{"digest":"sha256:x","platform":{"os":"linux","architecture":"arm64"}},
            {"digest":"sha256:y","platform":{"os":"linux","architecture":"amd64"}}]}"#;
        assert!(parse_manifest(two).unwrap_err().contains("2 platforms"));
        assert!(parse_manifest(r#"{"schemaVersion":1,"fsLayers":[]}"#).is_err());
        assert!(parse_manifest(r#"{"layers":[{"digest":"sha256:a","size":-1}]}"#).is_err());
        assert!(parse_manifest("<html>").is_err());
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
