//! Sending GETs to the API and the delta server: the Bearer header, retries of
//! transient failures (with `Retry-After`), status classification, server
//! message extraction like balena-request, a same-host redirect policy, and
//! URLs cleaned of credentials before they reach an error message.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, DATE, HeaderValue, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE,
};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::error::{Cause, Error, Server};
use crate::event::Event;
use crate::poll::{Jitter, backoff};
use crate::redact::{
    redact_credential_answer, redact_json, redact_secrets, redact_token, redact_url, short_url,
};

/// How transient failures (connection errors, timeouts, 5xx, 429) are
/// retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (default 4).
    pub max_retries: u32,
    /// The first pause (default 500 ms), doubled each retry.
    pub initial: Duration,
    /// The longest pause (default 8 s).
    pub max: Duration,
    /// The longest `Retry-After` honoured; a 429 asking for more fails at
    /// once (default 120 s).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 4,
            initial: Duration::from_millis(500),
            max: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

/// Receives events; a no-op for calls without a callback.
pub(crate) type Sink<'a> = &'a (dyn Fn(Event) + Send + Sync);

/// A sink that drops everything.
pub(crate) fn no_events(_: Event) {}

/// A successful answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Vec<u8>,
    pub(crate) content_type: Option<String>,
    /// The server's clock (`Date` header), when it sent one.
    pub(crate) date: Option<Timestamp>,
}

/// The outcome of one attempt.
pub(crate) enum Attempt<T, E = Error> {
    Done(T),
    /// Transient: try again after at least `after` (from `Retry-After`);
    /// `error` is returned when no retry is left.
    Retry {
        reason: String,
        after: Option<Duration>,
        error: E,
    },
    Fail(E),
}

/// The raw result of one GET.
pub(crate) enum Sent {
    Answer {
        status: StatusCode,
        body: Vec<u8>,
        content_type: Option<String>,
        date: Option<Timestamp>,
        retry_after: Option<Duration>,
        location: Option<String>,
        /// `WWW-Authenticate`, as sent (a registry's token challenge).
        challenge: Option<String>,
        /// The share of a [`LargeBodies`] budget the body holds; released
        /// when dropped with it.
        held: Option<tokio::sync::OwnedSemaphorePermit>,
    },
    NoAnswer(NoAnswer),
    /// The answer was longer than the limit; reading stopped there.
    TooLarge {
        limit: usize,
    },
}

/// How much of an answer is read, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limit {
    /// The most bytes of body kept, after decompression.
    pub(crate) bytes: usize,
    /// Cut the body there instead of failing ([`Sent::TooLarge`]).
    pub(crate) truncate: bool,
    /// A timeout shorter than the client's, for this request only.
    pub(crate) timeout: Option<Duration>,
}

impl Limit {
    /// API answers: far above the largest query this library sends (a
    /// 100-release fleet answer is a few hundred KiB).
    pub(crate) const API: Limit = Limit {
        bytes: 16 << 20,
        truncate: false,
        timeout: None,
    };
    /// Delta server answers: the status decides; the body is only kept as
    /// the failure message.
    pub(crate) const DELTA: Limit = Limit {
        bytes: 4 << 10,
        truncate: true,
        timeout: None,
    };
}

/// Whose credentials a request carries in `Authorization`.
#[derive(Clone, Copy)]
pub(crate) enum Auth<'a> {
    /// The balena token (API and delta server, a token realm on the API's
    /// own origin).
    Balena,
    /// Another bearer token (a registry's).
    Bearer(&'a SecretString),
    Anonymous,
}

/// One GET: its URL, how much of the answer is read, what it accepts and
/// whose credentials it carries.
#[derive(Clone, Copy)]
pub(crate) struct Get<'a> {
    pub(crate) url: &'a Url,
    pub(crate) limit: Limit,
    pub(crate) accept: Option<&'static str>,
    pub(crate) auth: Auth<'a>,
    /// Shared by the bodies of many requests in flight.
    pub(crate) budget: Option<&'a LargeBodies>,
    /// A successful answer carries a credential (a token realm's): it is
    /// redacted without runs of the token ([`redact_credential_answer`]).
    pub(crate) credential: bool,
}

impl<'a> Get<'a> {
    /// A GET with the balena token, accepting anything.
    pub(crate) fn new(url: &'a Url, limit: Limit) -> Get<'a> {
        Get {
            url,
            limit,
            accept: None,
            auth: Auth::Balena,
            budget: None,
            credential: false,
        }
    }
}

/// A memory budget for answers read at the same time: a body may grow to
/// [`LargeBodies::SMALL`] bytes freely (many small answers go out in one
/// wave); past that it waits for one of a fixed number of slots, each as
/// large as the answer's cap, and keeps it until the body is dropped. A body
/// that holds a slot can always finish, so the wait cannot deadlock.
#[derive(Clone)]
pub(crate) struct LargeBodies {
    slots: std::sync::Arc<tokio::sync::Semaphore>,
}

impl LargeBodies {
    /// The bytes a body may hold without a slot.
    pub(crate) const SMALL: usize = 64 << 10;

    pub(crate) fn new(slots: usize) -> LargeBodies {
        LargeBodies {
            slots: std::sync::Arc::new(tokio::sync::Semaphore::new(slots.max(1))),
        }
    }
}

/// How hard to try one API request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effort {
    /// Retry transient failures as the retry policy says.
    Full,
    /// An optional query with a fallback: one attempt with its own timeout,
    /// only a 429 is retried (the server is busy, not unable).
    Probe { timeout: Duration },
}

/// Reads the body of `response` up to `limit` bytes after decompression;
/// `None` when it is longer and `limit` does not truncate. What a server
/// announces in `Content-Length` is not trusted either way. With a
/// `budget`, a body growing past [`LargeBodies::SMALL`] holds one of its
/// slots, returned with it.
async fn read_capped(
    mut response: reqwest::Response,
    limit: Limit,
    budget: Option<&LargeBodies>,
) -> Result<Option<(Vec<u8>, Option<tokio::sync::OwnedSemaphorePermit>)>, reqwest::Error> {
    let mut body: Vec<u8> = Vec::new();
    let mut held = None;
    while let Some(chunk) = response.chunk().await? {
        if let Some(budget) = budget
            && held.is_none()
            && body.len() + chunk.len() > LargeBodies::SMALL
        {
            // The semaphore is never closed.
            held = budget.slots.clone().acquire_owned().await.ok();
        }
        let room = limit.bytes - body.len();
        let (take, full) = if chunk.len() > room {
            if !limit.truncate {
                return Ok(None);
            }
            (room, true)
        } else {
            (chunk.len(), false)
        };
        // Grow by doubling, but never past the limit: the buffer of an
        // answer cut at its cap stays at the cap, not at twice it.
        let needed = body.len() + take;
        if needed > body.capacity() {
            let target = body.capacity().saturating_mul(2).clamp(needed, limit.bytes);
            body.reserve_exact(target - body.len());
        }
        body.extend_from_slice(&chunk[..take]);
        if full {
            break;
        }
    }
    Ok(Some((body, held)))
}

/// The host (and port, when not the scheme's default) of a URL, for
/// messages.
pub(crate) fn host_of(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => url.as_str().to_owned(),
    }
}

/// A request that got no answer, and why.
pub(crate) struct NoAnswer {
    pub(crate) kind: NoAnswerKind,
    pub(crate) message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoAnswerKind {
    TimedOut,
    Unreachable,
    /// The host name does not resolve: retrying will not help.
    UnknownHost,
    /// The TLS handshake failed (a certificate that is refused, a protocol
    /// the server does not speak): retrying will not help.
    Tls,
    /// Redirects within the host went round in circles.
    RedirectLoop,
}

impl NoAnswer {
    /// What a request to `server` without an answer means: a host name that
    /// does not resolve fails at once, anything else is worth another try.
    pub(crate) fn attempt<T>(self, server: Server, url: &Url) -> Attempt<T> {
        let url = short_url(url);
        let cause = Cause(self.message.clone());
        let error = match self.kind {
            NoAnswerKind::Tls => Error::Tls { server, url, cause },
            _ => Error::Transport { server, url, cause },
        };
        match self.kind {
            NoAnswerKind::UnknownHost | NoAnswerKind::Tls | NoAnswerKind::RedirectLoop => {
                Attempt::Fail(error)
            }
            NoAnswerKind::TimedOut | NoAnswerKind::Unreachable => Attempt::Retry {
                reason: self.message,
                after: None,
                error,
            },
        }
    }
}

/// The HTTP clients: one that honours the system proxy settings for remote
/// hosts, and one that never uses a proxy, for loopback hosts.
pub(crate) struct Clients {
    pub(crate) proxied: reqwest::Client,
    pub(crate) direct: reqwest::Client,
}

impl Clients {
    pub(crate) fn for_url(&self, url: &Url) -> &reqwest::Client {
        if is_loopback(url) {
            &self.direct
        } else {
            &self.proxied
        }
    }
}

pub(crate) struct Http {
    clients: Clients,
    token: Option<SecretString>,
    retry: RetryPolicy,
    jitter: Mutex<Jitter>,
}

impl Http {
    pub(crate) fn new(clients: Clients, token: Option<SecretString>, retry: RetryPolicy) -> Self {
        Http {
            clients,
            token,
            retry,
            jitter: Mutex::new(Jitter::new()),
        }
    }

    pub(crate) fn has_token(&self) -> bool {
        self.token.is_some()
    }

    fn jitter_unit(&self) -> f64 {
        // A poisoned lock only means another thread panicked mid-update of a
        // random state; any state is still fine.
        let mut jitter = self.jitter.lock().unwrap_or_else(|e| e.into_inner());
        jitter.unit()
    }

    /// A random number in `-1.0..=1.0` for poll jitter.
    pub(crate) fn random_unit(&self) -> f64 {
        self.jitter_unit()
    }

    /// Sends one GET with the balena token, reading at most `limit.bytes`
    /// of the answer (counted after decompression).
    pub(crate) async fn send(&self, url: &Url, limit: Limit) -> Sent {
        self.get(Get::new(url, limit)).await
    }

    /// Sends one GET as `get` says: every request of this library is built
    /// here. The answer's text is cleaned of the balena token and of the
    /// bearer token sent.
    pub(crate) async fn get(&self, get: Get<'_>) -> Sent {
        let Get {
            url,
            limit,
            accept,
            auth,
            budget,
            credential,
        } = get;
        let mut request = self.clients.for_url(url).get(url.clone());
        if let Some(timeout) = limit.timeout {
            request = request.timeout(timeout);
        }
        if let Some(accept) = accept {
            request = request.header(ACCEPT, accept);
        }
        let bearer = match auth {
            Auth::Balena => self.token.as_ref(),
            Auth::Bearer(token) => Some(token),
            Auth::Anonymous => None,
        };
        if let Some(token) = bearer {
            // token_kind() accepted only printable ASCII, and a registry's
            // token is checked likewise: always a valid header value.
            if let Ok(mut value) =
                HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
            {
                value.set_sensitive(true);
                request = request.header(AUTHORIZATION, value);
            }
        }
        let other = match auth {
            Auth::Bearer(token) => Some(token.expose_secret()),
            _ => None,
        };
        let started = std::time::Instant::now();
        // One log line per request (`-v`): method, host, port and path
        // (never the query, which may be long), status and time.
        let logged = |outcome: &dyn std::fmt::Display| {
            let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
            tracing::info!(
                "GET {}{port}{} {outcome} in {} ms",
                url.host_str().unwrap_or(""),
                url.path(),
                started.elapsed().as_millis()
            );
        };
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                let failure = transport_failure(e);
                if let Sent::NoAnswer(no_answer) = &failure {
                    logged(&match no_answer.kind {
                        NoAnswerKind::TimedOut => "timed out",
                        NoAnswerKind::Unreachable => "unreachable",
                        NoAnswerKind::UnknownHost => "unknown host",
                        NoAnswerKind::Tls => "TLS handshake failed",
                        NoAnswerKind::RedirectLoop => "redirect loop",
                    });
                }
                return failure;
            }
        };
        let status = response.status();
        logged(&status.as_u16());
        let headers = response.headers();
        let header = |name| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header(CONTENT_TYPE);
        let date = header(DATE).and_then(|d| parse_http_date(&d));
        let retry_after = header(RETRY_AFTER).and_then(|v| parse_retry_after(&v, date));
        let shown = |text: String| {
            String::from_utf8_lossy(&self.redact(text.into_bytes(), other, false)).into_owned()
        };
        let location = header(LOCATION).map(shown);
        // Its realm and service are shown, and sent on to the realm.
        let challenge = header(WWW_AUTHENTICATE).map(|text| {
            let mut text = text;
            for token in [self.token.as_ref().map(|t| t.expose_secret()), other] {
                if let Cow::Owned(redacted) = redact_token(&text, token) {
                    text = redacted;
                }
            }
            text
        });
        let credential = credential && status.is_success();
        match read_capped(response, limit, budget).await {
            Ok(Some((body, held))) => Sent::Answer {
                status,
                body: self.redact(body, other, credential),
                content_type,
                date,
                retry_after,
                location,
                challenge,
                held,
            },
            Ok(None) => Sent::TooLarge { limit: limit.bytes },
            Err(e) => transport_failure(e),
        }
    }

    /// Text from a server, with every secret in it replaced (a server may
    /// echo the request, token included): the balena token and `other`
    /// (the bearer token sent) in every form, runs of their characters too
    /// unless the answer is a `credential`; then, for JSON with escapes,
    /// again in every string after decoding. Bytes that are not UTF-8 are
    /// not JSON either: they are only ever shown, so they are read lossily.
    fn redact(&self, bytes: Vec<u8>, other: Option<&str>, credential: bool) -> Vec<u8> {
        let token = self.token.as_ref().map(|t| t.expose_secret());
        let tokens = [token, other.filter(|o| !o.is_empty())];
        let mut text = String::from_utf8_lossy(&bytes);
        for token in tokens {
            let redacted = if credential {
                redact_credential_answer(&text, token)
            } else {
                redact_secrets(&text, token)
            };
            if let Cow::Owned(redacted) = redacted {
                text = Cow::Owned(redacted);
            }
        }
        for token in tokens {
            if let Some(decoded) = redact_json(&text, token, !credential) {
                text = Cow::Owned(decoded);
            }
        }
        let changed = match text {
            Cow::Borrowed(_) => None,
            Cow::Owned(text) => Some(text.into_bytes()),
        };
        // Unchanged: the same buffer, not a copy.
        changed.unwrap_or(bytes)
    }

    /// Runs `attempt` until it is done, fails, or runs out of retries,
    /// pausing with jittered exponential backoff (never shorter than a
    /// server's `Retry-After`).
    pub(crate) async fn retrying<T, E, F, Fut>(
        &self,
        what: &str,
        events: Sink<'_>,
        mut attempt: F,
    ) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Attempt<T, E>>,
    {
        let mut retries = 0;
        loop {
            match attempt().await {
                Attempt::Done(value) => return Ok(value),
                Attempt::Fail(error) => return Err(error),
                Attempt::Retry {
                    reason,
                    after,
                    error,
                } => {
                    if retries >= self.retry.max_retries {
                        return Err(error);
                    }
                    if after.is_some_and(|a| a > self.retry.max_retry_after) {
                        return Err(error);
                    }
                    let pause = backoff(
                        self.retry.initial,
                        self.retry.max,
                        2.0,
                        0.2,
                        retries,
                        self.jitter_unit(),
                    );
                    let delay = after.map_or(pause, |a| a.max(pause));
                    retries += 1;
                    tracing::debug!(
                        what,
                        retries,
                        delay_ms = delay.as_millis() as u64,
                        %reason,
                        "retrying"
                    );
                    events(Event::Retrying {
                        what: what.to_owned(),
                        attempt: retries,
                        delay,
                        reason,
                    });
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// A GET to the API expecting a JSON answer, retried as `effort` says.
    pub(crate) async fn api_get(
        &self,
        url: &Url,
        what: &str,
        effort: Effort,
        events: Sink<'_>,
    ) -> Result<Answer, Error> {
        let limit = match effort {
            Effort::Full => Limit::API,
            Effort::Probe { timeout } => Limit {
                timeout: Some(timeout),
                ..Limit::API
            },
        };
        self.retrying(what, events, || async {
            match self.api_attempt(url, limit).await {
                Attempt::Retry { error, .. }
                    if effort != Effort::Full
                        && !matches!(error, Error::Api { status: 429, .. }) =>
                {
                    Attempt::Fail(error)
                }
                other => other,
            }
        })
        .await
    }

    async fn api_attempt(&self, url: &Url, limit: Limit) -> Attempt<Answer> {
        let shown = redact_url(url);
        match self.send(url, limit).await {
            Sent::NoAnswer(failure) => failure.attempt(Server::Api, url),
            Sent::TooLarge { limit } => Attempt::Fail(Error::TooLarge {
                server: Server::Api,
                host: host_of(url),
                limit,
            }),
            Sent::Answer {
                status,
                body,
                content_type,
                date,
                retry_after,
                location,
                ..
            } => {
                if status.is_success() {
                    return Attempt::Done(Answer {
                        status,
                        body,
                        content_type,
                        date,
                    });
                }
                let message = server_message(&body, location.as_deref(), status);
                match status.as_u16() {
                    401 => Attempt::Fail(Error::Unauthorized {
                        server: Server::Api,
                        with_token: self.has_token(),
                    }),
                    403 => Attempt::Fail(Error::Forbidden {
                        server: Server::Api,
                        url: shown,
                        message,
                    }),
                    408 | 429 | 500..=599 => Attempt::Retry {
                        reason: format!("`{}` {message}", status.as_u16()),
                        after: retry_after,
                        error: Error::Api {
                            status: status.as_u16(),
                            message,
                            url: shown,
                        },
                    },
                    code => Attempt::Fail(Error::Api {
                        status: code,
                        message,
                        url: shown,
                    }),
                }
            }
        }
    }
}

fn transport_failure(e: reqwest::Error) -> Sent {
    let timed_out = e.is_timeout();
    let is_redirect = e.is_redirect();
    // The request URL is part of the error that carries this message; here
    // only what went wrong: reqwest's summary and the innermost cause.
    let e = e.without_url();
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
    }
    let mut message = e.to_string();
    if let Some(cause) = causes.last()
        && !message.contains(cause.as_str())
    {
        message = format!("{message} ({cause})");
    }
    let innermost = causes
        .last()
        .map(|c| c.to_ascii_lowercase())
        .unwrap_or_default();
    let kind = if timed_out {
        NoAnswerKind::TimedOut
    } else if is_unknown_host(&innermost) {
        NoAnswerKind::UnknownHost
    } else if innermost.contains("certificate") || innermost.contains("handshake") {
        NoAnswerKind::Tls
    } else if is_redirect {
        NoAnswerKind::RedirectLoop
    } else {
        NoAnswerKind::Unreachable
    };
    Sent::NoAnswer(NoAnswer {
        kind,
        message: redact_secrets(&message, None).into_owned(),
    })
}

/// Whether the resolver's own message (the innermost cause) says that a
/// name does not exist, as opposed to "try again later", which a retry can
/// fix. A bare "dns error" from an outer layer says neither.
fn is_unknown_host(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "name or service not known",
        "nodename nor servname provided",
        "no such host is known",
        "no address associated with hostname",
    ]
    .iter()
    .any(|known| message.contains(known))
}

/// The server's error message, found like balena-request does it:
/// `error.text`, else a string `message` or `error`, else a JSON string body,
/// else the raw body (shortened; an HTML page is named by its title).
pub(crate) fn server_message(body: &[u8], location: Option<&str>, status: StatusCode) -> String {
    if status.is_redirection() {
        return match location {
            Some(to) => format!(
                "redirect to `{}` not followed (requests only go to the configured hosts)",
                shorten(to)
            ),
            None => "redirect without a location".to_owned(),
        };
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        let text = value
            .pointer("/error/text")
            .and_then(|v| v.as_str())
            .or_else(|| value.get("message").and_then(|v| v.as_str()))
            .or_else(|| value.get("error").and_then(|v| v.as_str()))
            .or_else(|| value.as_str());
        if let Some(text) = text {
            return shorten(text);
        }
    }
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return status
            .canonical_reason()
            .map_or_else(|| "(empty body)".to_owned(), |r| r.to_owned());
    }
    if trimmed.starts_with('<') {
        let lower = trimmed.to_ascii_lowercase();
        if let (Some(start), Some(end)) = (lower.find("<title>"), lower.find("</title>"))
            && start + 7 <= end
        {
            return format!(
                "an HTML page titled `{}`",
                shorten(&trimmed[start + 7..end])
            );
        }
        return "an HTML page".to_owned();
    }
    shorten(trimmed)
}

/// One line of at most 300 characters, without control characters (a
/// server's text must not move the cursor or recolour the terminal).
pub(crate) fn shorten(text: &str) -> String {
    const MAX: usize = 300;
    let one_line: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if one_line.chars().count() > MAX {
        let cut: String = one_line.chars().take(MAX).collect();
        format!("{cut}…")
    } else {
        one_line
    }
}

/// An HTTP date (`Tue, 25 Nov 2026 19:00:00 GMT`).
pub(crate) fn parse_http_date(value: &str) -> Option<Timestamp> {
    jiff::fmt::rfc2822::parse(value.trim())
        .ok()
        .map(|z| z.timestamp())
}

/// `Retry-After`: seconds, or an HTTP date (relative to the server's `Date`
/// when known, else the local clock).
pub(crate) fn parse_retry_after(value: &str, server_now: Option<Timestamp>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = parse_http_date(value)?;
    let now = server_now.unwrap_or_else(Timestamp::now);
    let wait = at.duration_since(now);
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

/// Whether a URL is on this machine (plain http is allowed there).
/// `localhost` and `*.localhost` (RFC 6761, with or without the root's
/// trailing dot), 127.0.0.0/8, `::1`, the unspecified addresses (which
/// reach this machine) and their IPv4-mapped IPv6 forms.
pub(crate) fn is_loopback(url: &Url) -> bool {
    let local_v4 = |ip: std::net::Ipv4Addr| ip.is_loopback() || ip.is_unspecified();
    match url.host() {
        Some(url::Host::Domain(d)) => {
            let d = d.strip_suffix('.').unwrap_or(d).to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => local_v4(ip),
        Some(url::Host::Ipv6(ip)) => {
            ip.is_loopback() || ip.is_unspecified() || ip.to_ipv4_mapped().is_some_and(local_v4)
        }
        None => false,
    }
}

/// Same scheme, host and port.
pub(crate) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str().map(str::to_ascii_lowercase) == b.host_str().map(str::to_ascii_lowercase)
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Follow redirects only within the same scheme, host and port, at most 5.
pub(crate) fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let same = attempt
            .previous()
            .first()
            .is_some_and(|first| same_origin(first, attempt.url()));
        if attempt.previous().len() > 5 {
            attempt.error("too many redirects")
        } else if same {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_like_balena_request() {
        let s = StatusCode::BAD_REQUEST;
        assert_eq!(
            server_message(br#"{"error":{"text":"bad"}}"#, None, s),
            "bad"
        );
        assert_eq!(
            server_message(br#"{"message":"no","error":"x"}"#, None, s),
            "no"
        );
        assert_eq!(server_message(br#"{"error":"oops"}"#, None, s), "oops");
        assert_eq!(
            server_message(br#""Malformed url: '/v7/x'""#, None, s),
            "Malformed url: '/v7/x'"
        );
        assert_eq!(server_message(b"Unauthorized\n", None, s), "Unauthorized");
        assert_eq!(
            server_message(b"", None, StatusCode::BAD_GATEWAY),
            "Bad Gateway"
        );
        assert_eq!(
            server_message(
                b"<html><head><TITLE>502 Bad Gateway</TITLE></head></html>",
                None,
                s
            ),
            "an HTML page titled `502 Bad Gateway`"
        );
        assert_eq!(server_message(b"<html>x</html>", None, s), "an HTML page");
        assert_eq!(server_message(b"{\"d\":1}", None, s), "{\"d\":1}");
        let long = "x".repeat(400);
        assert_eq!(
            server_message(long.as_bytes(), None, s).chars().count(),
            301
        );
        assert_eq!(
            server_message(b"\x1b[2Jgone\r\nnext\x07", None, s),
            "\u{fffd}[2Jgone next\u{fffd}"
        );
        assert!(
            server_message(b"", Some("https://evil.example/x"), StatusCode::FOUND)
                .contains("`https://evil.example/x` not followed")
        );
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after("7", None), Some(Duration::from_secs(7)));
        let now = parse_http_date("Wed, 25 Nov 2026 19:00:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after("Wed, 25 Nov 2026 19:00:30 GMT", Some(now)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 25 Nov 2026 18:00:00 GMT", Some(now)),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", None), None);
        assert_eq!(parse_retry_after("-3", None), None);
    }

    #[test]
    fn http_dates_parse() {
        assert_eq!(
            parse_http_date("Wed, 25 Nov 2026 19:00:00 GMT"),
            Some("2026-11-25T19:00:00Z".parse().unwrap())
        );
        assert_eq!(parse_http_date("yesterday"), None);
    }

    fn http(retry: RetryPolicy) -> Http {
        let clients = Clients {
            proxied: reqwest::Client::new(),
            direct: reqwest::Client::new(),
        };
        Http::new(clients, None, retry)
    }

    fn transient(after: Option<Duration>) -> Attempt<u32> {
        Attempt::Retry {
            reason: "`429`".into(),
            after,
            error: Error::Api {
                status: 429,
                message: "Too Many Requests".into(),
                url: "u".into(),
            },
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_waited_out_in_full() {
        let http = http(RetryPolicy::default());
        let mut calls = 0;
        let started = tokio::time::Instant::now();
        let value = http
            .retrying("release", &no_events, || {
                calls += 1;
                let n = calls;
                async move {
                    if n == 1 {
                        transient(Some(Duration::from_secs(30)))
                    } else {
                        Attempt::Done(n)
                    }
                }
            })
            .await
            .unwrap();
        assert_eq!(value, 2);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_secs(30), "{waited:?}");
        assert!(waited < Duration::from_secs(31), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_grows_and_stops_after_the_last_retry() {
        let policy = RetryPolicy {
            max_retries: 3,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(3),
            max_retry_after: Duration::from_secs(10),
        };
        let http = http(policy);
        let delays = std::sync::Mutex::new(Vec::new());
        let sink = |e: Event| {
            if let Event::Retrying { delay, .. } = e {
                delays.lock().unwrap().push(delay.as_secs_f64());
            }
        };
        let mut calls = 0;
        let err = http
            .retrying("delta", &sink, || {
                calls += 1;
                async { transient(None) }
            })
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Api { status: 429, .. }));
        assert_eq!(calls, 4);
        let delays = delays.into_inner().unwrap();
        assert_eq!(delays.len(), 3);
        for (d, base) in delays.iter().zip([1.0, 2.0, 3.0]) {
            assert!((base * 0.8..=base * 1.2).contains(d), "{d} vs {base}");
        }
        // A Retry-After beyond the policy fails at once.
        let mut calls = 0;
        http.retrying("x", &no_events, || {
            calls += 1;
            async { transient(Some(Duration::from_secs(60))) }
        })
        .await
        .unwrap_err();
        assert_eq!(calls, 1);
    }

    #[test]
    fn only_names_that_do_not_exist_are_unknown_hosts() {
        for (message, unknown) in [
            ("dns error", false),
            (
                "failed to lookup address information: Name or service not known",
                true,
            ),
            (
                "failed to lookup address information: nodename nor servname provided, or not known",
                true,
            ),
            (
                "failed to lookup address information: Temporary failure in name resolution",
                false,
            ),
            ("Connection refused (os error 111)", false),
        ] {
            assert_eq!(is_unknown_host(message), unknown, "{message}");
        }
    }

    #[test]
    fn loopback_hosts() {
        for (url, expected) in [
            ("http://127.0.0.1:1/", true),
            ("http://127.8.0.1/", true),
            ("http://[::1]:80/", true),
            ("http://LOCALHOST:9/", true),
            ("http://localhost./", true),
            ("http://api.localhost/", true),
            ("http://0.0.0.0:9/", true),
            ("http://[::]:9/", true),
            ("http://[::ffff:127.0.0.1]:9/", true),
            ("http://[::ffff:7f00:2]:9/", true),
            ("http://10.0.0.1/", false),
            ("http://[::ffff:10.0.0.1]/", false),
            ("http://localhost.example/", false),
            ("http://localhostx/", false),
        ] {
            assert_eq!(is_loopback(&Url::parse(url).unwrap()), expected, "{url}");
        }
    }
}
