//! The [`Client`] and its builder (validated URLs and token, HTTP clients
//! with timeouts and a safe redirect policy), and every public entry point:
//! describe or prepare one transition or a whole fleet, or watch a fleet.
//! The work behind them is in [`crate::round`] (reading the API),
//! [`crate::fleet`] (the fleet's first round), [`crate::prepare`] (later
//! rounds and waiting), [`crate::delta_server`] and [`crate::watch`].

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::error::{Cause, Error};
use crate::event::Event;
use crate::http::{self, Http, RetryPolicy, Sink};
use crate::model::{FleetUpdateInfo, Report, UpdateInfo};
use crate::prepare::{LastState, PrepareOptions, Tracked, with_deadline};
use crate::redact::redact_url;
use crate::reference::{FleetRef, ReleaseRef, Target};
use crate::registry::{DEFAULT_REGISTRY_TIMEOUT, Registry, Settings as RegistrySettings};
use crate::round::DeltaRead;
use crate::token::token_kind;
use crate::watch::WatchOptions;

/// The default API, balenaCloud's.
pub const DEFAULT_API_URL: &str = "https://api.balena-cloud.com";
/// The default delta server, balenaCloud's.
pub const DEFAULT_DELTA_URL: &str = "https://delta.balena-cloud.com";
/// The default per-request timeout, as balena's own clients use.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(59);

/// A client of the balena API and delta server. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) http: Http,
    pub(crate) api: Url,
    pub(crate) delta: Url,
    /// The timeout of each request.
    pub(crate) request_timeout: Duration,
    /// Whether the one-query delta lookup through the release link table
    /// is still worth trying on this server.
    pub(crate) nested_deltas: AtomicBool,
    /// Whether the API still counts a fleet's devices (`$count` in `$expand`).
    pub(crate) count_devices: AtomicBool,
    /// Set when the API answered 404 to `/delta`: it has no deltas at all
    /// (openBalena), so every changed service stays pending.
    pub(crate) no_delta_resource: AtomicBool,
    /// The registry, for exact download sizes; `None` when turned off.
    pub(crate) registry: Option<Arc<Registry>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("api_url", &self.inner.api.as_str())
            .field("delta_url", &self.inner.delta.as_str())
            .field(
                "token",
                &self.inner.http.has_token().then_some("[REDACTED]"),
            )
            .finish()
    }
}

/// Configures a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    api_url: Option<Url>,
    delta_url: Option<Url>,
    token: Option<SecretString>,
    request_timeout: Duration,
    user_agent: String,
    allow_insecure_http: bool,
    retry: RetryPolicy,
    registry: bool,
    registry_map: Vec<(String, Url)>,
    registry_timeout: Duration,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            api_url: None,
            delta_url: None,
            token: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            user_agent: concat!("balena-release/", env!("CARGO_PKG_VERSION")).to_owned(),
            allow_insecure_http: false,
            retry: RetryPolicy::default(),
            registry: true,
            registry_map: Vec::new(),
            registry_timeout: DEFAULT_REGISTRY_TIMEOUT,
        }
    }
}

impl ClientBuilder {
    /// The API base URL (default [`DEFAULT_API_URL`]). Like balena-sdk, any
    /// path in it is ignored: requests go to `/v7/…` at the host root.
    pub fn api_url(mut self, url: Url) -> Self {
        self.api_url = Some(url);
        self
    }

    /// The delta server URL (default [`DEFAULT_DELTA_URL`]); requests go to
    /// `{delta_url}/api/v3/delta`.
    pub fn delta_url(mut self, url: Url) -> Self {
        self.delta_url = Some(url);
        self
    }

    /// The token (a session token from `balena login` or an API key); sent
    /// only as `Authorization: Bearer` to the API and delta hosts. Without
    /// one, only public data can be read.
    pub fn token(mut self, token: Option<SecretString>) -> Self {
        self.token = token;
        self
    }

    /// The timeout of each request, body included (default 59 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The `User-Agent` header.
    pub fn user_agent(mut self, user_agent: String) -> Self {
        self.user_agent = user_agent;
        self
    }

    /// Allow plain `http://` URLs for hosts other than loopback (default
    /// false: the token would travel in clear text).
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// How transient failures are retried.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Whether to read image manifests from the registry for exact download
    /// sizes (default true). Off, no registry or token-realm request is
    /// sent and no download key is written.
    pub fn registry(mut self, enabled: bool) -> Self {
        self.registry = enabled;
        self
    }

    /// Reaches the registry named `host` (`host` or `host:port`, as in
    /// image locations such as `registry2.balena-cloud.com/v2/…`) at `url`
    /// instead, e.g. a local mirror or test registry. Later entries for
    /// the same host win.
    pub fn registry_map(mut self, map: impl IntoIterator<Item = (String, Url)>) -> Self {
        for (host, url) in map {
            self.registry_map
                .retain(|(known, _)| !known.eq_ignore_ascii_case(&host));
            self.registry_map.push((host, url));
        }
        self
    }

    /// The most time the registry may add to a round (default 15 s, and
    /// never more per request than the request timeout); past it, the sizes
    /// not read yet are unknown.
    pub fn registry_timeout(mut self, timeout: Duration) -> Self {
        self.registry_timeout = timeout;
        self
    }

    /// Checks the settings and builds the client. Sends nothing.
    pub fn build(self) -> Result<Client, Error> {
        let api = checked_url(
            self.api_url,
            DEFAULT_API_URL,
            "API URL",
            self.allow_insecure_http,
        )?;
        let delta = checked_url(
            self.delta_url,
            DEFAULT_DELTA_URL,
            "delta URL",
            self.allow_insecure_http,
        )?;
        if let Some(token) = &self.token {
            token_kind(token.expose_secret())?;
        }
        let user_agent = self.user_agent.trim().to_owned();
        if reqwest::header::HeaderValue::from_str(&user_agent).is_err() {
            return Err(Error::Setup {
                cause: Cause(format!(
                    "the user agent `{}` is not a valid header value",
                    user_agent.escape_debug()
                )),
            });
        }
        let client = |direct: bool| {
            let builder = reqwest::Client::builder()
                .timeout(self.request_timeout)
                .user_agent(&user_agent)
                .redirect(http::redirect_policy());
            // A proxy cannot reach a server on this machine, and would see
            // the token in clear text over plain http.
            let builder = if direct { builder.no_proxy() } else { builder };
            builder.build().map_err(|e| Error::Setup {
                cause: Cause(e.to_string()),
            })
        };
        // The system proxies apply to remote hosts only; loopback hosts are
        // always reached directly, whatever the other URL is.
        let clients = http::Clients {
            proxied: client(false)?,
            direct: client(true)?,
        };
        let registry = if self.registry {
            let mut map = Vec::new();
            for (host, url) in self.registry_map {
                let host = host.trim().to_owned();
                if host.is_empty() || host.contains(['/', '@', ' ']) {
                    return Err(Error::Setup {
                        cause: Cause(format!(
                            "`{}` is not a registry host (expected `host` or `host:port`)",
                            host.escape_debug()
                        )),
                    });
                }
                let url = checked_url(Some(url), "", "registry URL", self.allow_insecure_http)?;
                map.push((host, url));
            }
            Some(Arc::new(Registry::new(RegistrySettings {
                clients: http::Clients {
                    proxied: clients.proxied.clone(),
                    direct: clients.direct.clone(),
                },
                api: api.clone(),
                token: self.token.clone(),
                map,
                allow_insecure_http: self.allow_insecure_http,
                request_timeout: self.request_timeout,
                budget: self.registry_timeout,
            })))
        } else {
            None
        };
        Ok(Client {
            inner: Arc::new(Inner {
                http: Http::new(clients, self.token, self.retry),
                api,
                delta,
                request_timeout: self.request_timeout,
                nested_deltas: AtomicBool::new(true),
                count_devices: AtomicBool::new(true),
                no_delta_resource: AtomicBool::new(false),
                registry,
            }),
        })
    }
}

fn checked_url(
    url: Option<Url>,
    default: &str,
    what: &'static str,
    allow_insecure_http: bool,
) -> Result<Url, Error> {
    let url = match url {
        Some(url) => url,
        // The defaults are valid URLs.
        None => Url::parse(default).expect("default URL parses"),
    };
    let invalid = |reason: &str| Error::InvalidUrl {
        what,
        url: redact_url(&url),
        reason: reason.to_owned(),
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("only http:// and https:// URLs are supported"));
    }
    if url.host().is_none() {
        return Err(invalid("the URL has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("a base URL cannot have a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "credentials in the URL are not supported; use a token",
        ));
    }
    if url.scheme() == "http" && !allow_insecure_http && !http::is_loopback(&url) {
        return Err(Error::InsecureUrl {
            what,
            url: redact_url(&url),
        });
    }
    Ok(url)
}

impl Client {
    /// Starts configuring a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The API base URL in use.
    pub fn api_url(&self) -> &Url {
        &self.inner.api
    }

    /// The delta server URL in use.
    pub fn delta_url(&self) -> &Url {
        &self.inner.delta
    }

    /// Whether the API turned out to have no deltas at all (openBalena):
    /// every changed service stays pending and nothing can be prepared.
    /// Known once a call has read deltas; `false` before.
    pub fn has_no_deltas(&self) -> bool {
        self.inner
            .no_delta_resource
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Compares two releases: what each service of `to` needs, whether the
    /// deltas are ready, and what a device downloads. One round of at most
    /// two concurrent API requests; nothing is triggered.
    pub async fn get_update_info(
        &self,
        from: &ReleaseRef,
        to: &ReleaseRef,
    ) -> Result<UpdateInfo, Error> {
        self.get_update_info_with_events(from, to, &http::no_events)
            .await
    }

    /// [`Client::get_update_info`], reporting to `on_event` what happens
    /// before the answer: [`Event::Retrying`] before each pause of a retried
    /// request (so that a front end can say at once that a server is
    /// unreachable, instead of showing nothing until the retries run out) and
    /// [`Event::DeltaQueryFallback`]. No [`Event::Round`] is sent: the one
    /// state read is the return value.
    pub async fn get_update_info_with_events(
        &self,
        from: &ReleaseRef,
        to: &ReleaseRef,
        on_event: &(dyn Fn(Event) + Send + Sync),
    ) -> Result<UpdateInfo, Error> {
        let (tracker, read) = self.first_round(from, to, None, on_event).await?;
        Ok(tracker.evaluate(&read))
    }

    /// Compares two releases and requests every missing delta.
    ///
    /// Reads the state once; if it is ready, returns it. Otherwise asks the
    /// delta server for the delta of every pending changed service, reads
    /// the state again and returns it — or, with `options.wait`, polls on
    /// `options.poll` until everything is ready, requesting a delta again
    /// when it fails or goes stale (at most `max_attempts_per_delta` times;
    /// then it is given up on while the other deltas are still waited for,
    /// and [`Error::DeltaFailed`] ends the call once nothing else is left to
    /// wait for). A request the delta server refuses (a
    /// 4xx other than 401 and 429) is reported on that service's
    /// `delta_failure` and counts as an attempt; the other services go on.
    /// At `options.deadline` every request is cancelled and
    /// [`Error::Timeout`] carries the last state read.
    ///
    /// API requests: two for the first round (as [`Client::get_update_info`]),
    /// then one per round (one per 100 changed services, so that URLs stay
    /// short).
    pub async fn prepare_update(
        &self,
        from: &ReleaseRef,
        to: &ReleaseRef,
        options: &PrepareOptions,
        on_event: &(dyn Fn(Event) + Send + Sync),
    ) -> Result<UpdateInfo, Error> {
        self.prepare_with_deadline(
            self.first_round(from, to, options.deadline, on_event),
            options,
            on_event,
        )
        .await
    }

    /// Compares what a fleet's devices run with what each should run: a
    /// pinned device (`is_pinned_on__release`) goes to its pin, every other
    /// device to the fleet's target release, or to `to` when given. One
    /// transition per distinct (running, target) pair that differ, with
    /// device counts and the download summed over devices; devices already
    /// on their target and devices without a release are only counted.
    ///
    /// Requests: the application (with the count of devices without a
    /// release), then at the same time the count of devices that follow
    /// the fleet per release and the rows of the pinned devices, then at the
    /// same time the releases and their deltas, each in one request per 100
    /// release ids (URLs stay short): five requests for up to 100 distinct
    /// releases (the targets included), one or two more per further 100.
    /// What is read grows with the releases and the pinned devices, not
    /// with the devices that follow the fleet. The count goes by the
    /// release a device runs: an unpinned device moved to another fleet that
    /// still runs one of this fleet's releases is counted here, and one
    /// moved here that still runs another fleet's release is not (reading
    /// every device, below, has neither gap).
    ///
    /// A server that refuses to count (any error status but 429, or an
    /// answer without the count) is read device by device from then on, for
    /// the life of this client: the application, every device's row, the
    /// releases and the deltas (four requests; one or two more on the run
    /// that finds out).
    ///
    /// Devices that run, or are pinned to, a release the token cannot read
    /// (or a pin whose images are not built) are left out of the
    /// transitions and of the totals.
    pub async fn get_fleet_update_info(
        &self,
        fleet: &FleetRef,
        to: Option<&ReleaseRef>,
    ) -> Result<FleetUpdateInfo, Error> {
        self.get_fleet_update_info_with_events(fleet, to, &http::no_events)
            .await
    }

    /// [`Client::get_fleet_update_info`], reporting to `on_event` what
    /// happens before the answer, as [`Client::get_update_info_with_events`]
    /// does.
    pub async fn get_fleet_update_info_with_events(
        &self,
        fleet: &FleetRef,
        to: Option<&ReleaseRef>,
        on_event: &(dyn Fn(Event) + Send + Sync),
    ) -> Result<FleetUpdateInfo, Error> {
        let (mut tracker, read) = self.first_fleet_round(fleet, to, None, on_event).await?;
        Ok(tracker.evaluate(&read))
    }

    /// Like [`Client::prepare_update`] for every transition of a fleet: each
    /// missing delta is requested once per round even when several
    /// transitions need it. At the deadline, [`Error::Timeout`] carries
    /// the last fleet state.
    ///
    /// API requests: the first round as [`Client::get_fleet_update_info`]
    /// (five for up to 100 distinct releases); each later round reads the
    /// deltas by release, one request per 100 source releases, while every
    /// transition has the same target; by image pair when pinned devices
    /// give several targets or the server refuses that form (one request
    /// per 100 source or target images).
    pub async fn prepare_fleet_update(
        &self,
        fleet: &FleetRef,
        to: Option<&ReleaseRef>,
        options: &PrepareOptions,
        on_event: &(dyn Fn(Event) + Send + Sync),
    ) -> Result<FleetUpdateInfo, Error> {
        self.prepare_with_deadline(
            self.first_fleet_round(fleet, to, options.deadline, on_event),
            options,
            on_event,
        )
        .await
    }

    /// The report on `target`, read as by
    /// [`Client::get_update_info_with_events`] and
    /// [`Client::get_fleet_update_info_with_events`], or with `prepare`
    /// prepared as by [`Client::prepare_update`] and
    /// [`Client::prepare_fleet_update`].
    pub async fn report(
        &self,
        target: &Target,
        prepare: Option<&PrepareOptions>,
        on_event: &(dyn Fn(Event) + Send + Sync),
    ) -> Result<Report, Error> {
        match (target, prepare) {
            (Target::Pair { from, to }, None) => self
                .get_update_info_with_events(from, to, on_event)
                .await
                .map(Report::Transition),
            (Target::Pair { from, to }, Some(options)) => self
                .prepare_update(from, to, options, on_event)
                .await
                .map(Report::Transition),
            (Target::Fleet { fleet, to }, None) => self
                .get_fleet_update_info_with_events(fleet, to.as_ref(), on_event)
                .await
                .map(Report::Fleet),
            (Target::Fleet { fleet, to }, Some(options)) => self
                .prepare_fleet_update(fleet, to.as_ref(), options, on_event)
                .await
                .map(Report::Fleet),
        }
    }

    /// Watches a fleet until an error ends it (the future never completes
    /// otherwise: drop it to stop).
    ///
    /// Whenever the fleet gets a new successful release created after its
    /// target, or its target changes, every transition of the devices to
    /// that release is prepared as by [`Client::prepare_fleet_update`] with
    /// `wait`: the devices are read again (pinned devices keep their pin),
    /// the missing deltas are requested, and each delta is reported ready
    /// ([`Event::WatchDeltaReady`]) or, after its last attempt,
    /// failed ([`Event::WatchDeltaFailed`]) and left until the next
    /// release; the other deltas of that release are then followed (read,
    /// not requested again) until each is built or fails. A release seen
    /// while another is being prepared takes over.
    ///
    /// The future is not `Send` (as the prepare calls' are not): run it on
    /// the caller's task, or with `tokio::task::spawn_local`.
    ///
    /// An idle poll is one API request on `options.poll`'s adaptive
    /// schedule, which starts again from its shortest pause after each
    /// change. Faults of the servers (no answer, 5xx, 429, an answer that
    /// cannot be read) are reported once per streak
    /// ([`Event::WatchRetrying`]) and tried again for ever; the watch ends
    /// with [`Error::Unauthorized`] or [`Error::Forbidden`] when the token
    /// stops working, and [`Error::FleetNotFound`] when the fleet is gone.
    pub async fn watch_fleet(
        &self,
        fleet: &FleetRef,
        options: &WatchOptions,
        on_event: &(dyn Fn(Event) + Send + Sync),
    ) -> Result<std::convert::Infallible, Error> {
        self.watch(fleet, options, on_event).await
    }

    /// Runs the rounds of a prepare call after `first` under the deadline;
    /// at the deadline, [`Error::Timeout`] carries the last state read.
    async fn prepare_with_deadline<T: Tracked>(
        &self,
        first: impl Future<Output = Result<(T, DeltaRead), Error>>,
        options: &PrepareOptions,
        events: Sink<'_>,
    ) -> Result<T::Info, Error> {
        let last = LastState::new();
        let work = async {
            let (tracker, read) = first.await?;
            self.prepare_rounds(tracker, read, options, events, &last)
                .await
        };
        with_deadline(options.deadline, work, || Error::Timeout {
            last: last.take().map(Box::new),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::TokenProblem;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn plain_http_only_for_loopback_unless_allowed() {
        let err = Client::builder()
            .api_url(url("http://api.example.com"))
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::InsecureUrl { .. }), "{err}");
        let err = Client::builder()
            .delta_url(url("http://delta.example.com"))
            .build()
            .unwrap_err();
        assert!(
            err.to_string().contains("`http://delta.example.com/`"),
            "{err}"
        );
        Client::builder()
            .api_url(url("http://127.0.0.1:9"))
            .delta_url(url("http://localhost:9"))
            .build()
            .unwrap();
        Client::builder()
            .api_url(url("http://api.example.com"))
            .allow_insecure_http(true)
            .build()
            .unwrap();
    }

    #[test]
    fn odd_urls_are_refused() {
        for bad in [
            "ftp://api.example.com",
            "https://u:p@api.example.com",
            "https://a.example/?x=1",
        ] {
            let err = Client::builder().api_url(url(bad)).build().unwrap_err();
            assert!(matches!(err, Error::InvalidUrl { .. }), "{bad}: {err}");
            assert!(!err.to_string().contains(":p@"), "{err}");
        }
    }

    #[test]
    fn tokens_are_checked_at_build() {
        let err = Client::builder()
            .token(Some(SecretString::from("12345")))
            .build()
            .unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidToken {
                problem: TokenProblem::AllDigits
            }
        ));
        let err = Client::builder()
            .token(Some(SecretString::from("  ")))
            .build()
            .unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidToken {
                problem: TokenProblem::Empty
            }
        ));
        let client = Client::builder()
            .token(Some(SecretString::from("Yq8RaOPtlDTy5qf0bVaiWRrKNGqSvOEN")))
            .build()
            .unwrap();
        let debug = format!("{client:?}");
        assert!(!debug.contains("Yq8Ra"), "{debug}");
        assert!(debug.contains("REDACTED"), "{debug}");
    }
}
