//! One information round against the API: the release query and the delta
//! lookup sent at the same time, the fallback to the lookup by image ids when
//! a server refuses the one-query form, and the cheaper delta-only reads of
//! later rounds. The queries themselves are built in [`crate::queries`].

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::future::try_join_all;
use jiff::Timestamp;

use tokio::time::Instant;

use crate::client::Client;
use crate::download::ManifestRef;
use crate::error::{Cause, Error, Server};
use crate::event::Event;
use crate::http::{Answer, Effort, Sink};
use crate::model::Change;
use crate::odata::Query;
use crate::prepare::Tracker;
use crate::queries::{delta_queries_by_images, nested_delta_queries, release_queries};
use crate::redact::redact_url;
use crate::reference::ReleaseRef;
use crate::resolve::{check_images, resolve_both};
use crate::rules::{self, Pair, Pairing};
use crate::wire::{self, DeltaRow, Release, Source};

/// Delta rows and the time to judge their heartbeats by.
#[derive(Debug, Clone)]
pub(crate) struct DeltaRead {
    pub(crate) rows: Vec<DeltaRow>,
    pub(crate) now: Timestamp,
}

impl DeltaRead {
    fn from_answer(answer: &Answer, rows: Vec<DeltaRow>) -> Self {
        DeltaRead {
            rows,
            now: answer.date.unwrap_or_else(Timestamp::now),
        }
    }

    fn empty() -> Self {
        DeltaRead {
            rows: Vec::new(),
            now: Timestamp::now(),
        }
    }
}

/// The manifests a pairing needs: every image of the source release (a
/// device has all their layers) and the target image of every service that
/// is not unchanged.
pub(crate) fn image_manifests(pairing: &Pairing) -> Vec<ManifestRef> {
    let sources = pairing
        .services
        .iter()
        .filter_map(|s| s.source.as_ref())
        .chain(pairing.removed.iter().map(|r| &r.originates_from__image));
    let targets = pairing
        .services
        .iter()
        .filter(|s| s.change != Change::Unchanged)
        .map(|s| &s.target);
    sources
        .chain(targets)
        .filter_map(ManifestRef::image)
        .collect()
}

/// When the registry gives up in a round: after `budget`, and a little
/// before the call's `deadline`, so that a slow registry never turns a run
/// that would end in time into a timeout.
fn registry_until(budget: Duration, deadline: Option<Instant>) -> Instant {
    let until = Instant::now() + budget;
    match deadline {
        Some(deadline) => until.min(
            deadline
                .checked_sub(REGISTRY_MARGIN)
                .unwrap_or(deadline)
                .max(Instant::now()),
        ),
        None => until,
    }
}

/// How long before a call's deadline the registry gives up.
const REGISTRY_MARGIN: Duration = Duration::from_millis(100);

/// The manifests of the ready deltas among `read`'s rows.
pub(crate) fn delta_manifests(read: &DeltaRead) -> Vec<ManifestRef> {
    read.rows
        .iter()
        .filter(|r| r.status == "success" && r.version == rules::DELTA_VERSION)
        .filter_map(|r| r.is_stored_at__location.as_deref())
        .filter_map(ManifestRef::delta)
        .collect()
}

/// How long an optional query (the one-query delta lookup, the fleet's
/// device counts) may take (never longer than the client's request
/// timeout) before its fallback is used instead.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP status of a failed request, for events.
fn status_of(error: &Error) -> Option<u16> {
    match error {
        Error::Api { status, .. } => Some(*status),
        Error::Unauthorized { .. } => Some(401),
        Error::Forbidden { .. } => Some(403),
        _ => None,
    }
}

impl Client {
    /// GETs an API resource and returns the JSON body, refusing answers that
    /// say they are not JSON.
    pub(crate) async fn api_json(
        &self,
        resource: &str,
        query: &Query,
        what: &str,
        effort: Effort,
        events: Sink<'_>,
    ) -> Result<Answer, Error> {
        let url = query.url(&self.inner.api, resource);
        tracing::debug!(url = %redact_url(&url), what, "api request");
        let answer = self.inner.http.api_get(&url, what, effort, events).await?;
        if let Some(content_type) = &answer.content_type
            && !content_type.to_ascii_lowercase().contains("json")
        {
            return Err(Error::Decode {
                server: Server::Api,
                what: what.to_owned(),
                path: String::new(),
                cause: Cause(format!(
                    "expected JSON but the answer is `{content_type}` (status `{}`)",
                    answer.status.as_u16()
                )),
            });
        }
        Ok(answer)
    }

    /// Fetches and decodes releases; the queries (batches of one lookup)
    /// are sent at the same time and their rows merged.
    pub(crate) async fn fetch_releases(
        &self,
        queries: &[Query],
        events: Sink<'_>,
    ) -> Result<Vec<Release>, Error> {
        let answers = try_join_all(queries.iter().map(|query| async move {
            let answer = self
                .api_json("release", query, "release", Effort::Full, events)
                .await?;
            wire::releases(
                &answer.body,
                &Source {
                    server: Server::Api,
                    what: "release",
                },
            )
        }))
        .await?;
        // A commit prefix may also match a release of another batch.
        let mut seen = HashSet::new();
        Ok(answers
            .into_iter()
            .flatten()
            .filter(|r| seen.insert(r.summary.id))
            .collect())
    }

    /// Fetches and decodes delta rows; the queries (batches of one lookup)
    /// are sent at the same time and their rows merged.
    async fn fetch_deltas(
        &self,
        queries: &[Query],
        effort: Effort,
        events: Sink<'_>,
    ) -> Result<DeltaRead, Error> {
        if self.inner.no_delta_resource.load(Ordering::Relaxed) {
            return Ok(DeltaRead::empty());
        }
        let answers = try_join_all(queries.iter().map(|query| async move {
            let answer = self
                .api_json("delta", query, "delta", effort, events)
                .await?;
            let rows = wire::deltas(
                &answer.body,
                &Source {
                    server: Server::Api,
                    what: "delta",
                },
            )?;
            Ok::<_, Error>(DeltaRead::from_answer(&answer, rows))
        }))
        .await;
        let answers = match answers {
            Err(Error::Api { status: 404, .. }) => {
                tracing::debug!("the API has no `delta` resource: no deltas");
                self.inner.no_delta_resource.store(true, Ordering::Relaxed);
                return Ok(DeltaRead::empty());
            }
            other => other?,
        };
        let mut merged = DeltaRead::empty();
        if let Some(first) = answers.first() {
            merged.now = first.now;
        }
        let mut seen = HashSet::new();
        merged.rows = answers
            .into_iter()
            .flat_map(|a| a.rows)
            .filter(|r| seen.insert(r.id))
            .collect();
        Ok(merged)
    }

    /// Reads the deltas of known image pairs: one request per
    /// [`MAX_IDS`] source or target images, none without pairs.
    pub(crate) async fn read_deltas(
        &self,
        pairs: &[Pair],
        events: Sink<'_>,
    ) -> Result<DeltaRead, Error> {
        self.fetch_deltas(&delta_queries_by_images(pairs), Effort::Full, events)
            .await
    }

    /// Reads deltas with the one-query lookup (`queries` from
    /// [`crate::queries::nested_delta_queries`] or
    /// [`crate::queries::fleet_delta_queries`]), while this server takes it.
    pub(crate) async fn read_deltas_by_release(
        &self,
        queries: &[Query],
        events: Sink<'_>,
    ) -> Result<DeltaRead, Error> {
        self.fetch_deltas(queries, self.probe(), events).await
    }

    /// How an optional query with a fallback is sent: once, with its own
    /// timeout, only a 429 retried.
    pub(crate) fn probe(&self) -> Effort {
        Effort::Probe {
            timeout: PROBE_TIMEOUT.min(self.inner.request_timeout),
        }
    }

    /// Whether the one-query delta lookup is still worth sending.
    pub(crate) fn lookup_by_release(&self) -> bool {
        self.inner.nested_deltas.load(Ordering::Relaxed)
            && !self.inner.no_delta_resource.load(Ordering::Relaxed)
    }

    /// The deltas after a failed one-query lookup: a 429 is the server's
    /// word for "later" and fails the round; any other failure (a 400, 401,
    /// 403, 5xx or timeout: the form this server cannot translate or allow)
    /// switches this client to the lookup by image `pairs` for good.
    pub(crate) async fn fall_back(
        &self,
        error: Error,
        pairs: &[Pair],
        events: Sink<'_>,
    ) -> Result<DeltaRead, Error> {
        if matches!(error, Error::Api { status: 429, .. }) {
            return Err(error);
        }
        tracing::debug!(%error, "one-query delta lookup failed; reading deltas by image");
        self.inner.nested_deltas.store(false, Ordering::Relaxed);
        events(Event::DeltaQueryFallback {
            status: status_of(&error),
        });
        self.read_deltas(pairs, events).await
    }

    /// Sends the release query and, while this server is believed to
    /// support it, the one-query delta lookup (`deltas`, when it has one) at
    /// the same time. A failed release query ends the round at once; the
    /// delta answer is judged by [`Client::first_deltas`] once the releases
    /// are known.
    pub(crate) async fn releases_with_deltas(
        &self,
        releases: &[Query],
        deltas: impl FnOnce() -> Vec<Query>,
        events: Sink<'_>,
    ) -> Result<(Vec<Release>, Option<Result<DeltaRead, Error>>), Error> {
        let deltas = if self.lookup_by_release() {
            deltas()
        } else {
            Vec::new()
        };
        if deltas.is_empty() {
            return Ok((self.fetch_releases(releases, events).await?, None));
        }
        let (releases, deltas) = tokio::try_join!(self.fetch_releases(releases, events), async {
            Ok(self.read_deltas_by_release(&deltas, events).await)
        })?;
        Ok((releases, Some(deltas)))
    }

    /// The delta rows of a first round: the one-query lookup's answer, or
    /// the lookup by image `pairs` when it was not sent or failed
    /// ([`Client::fall_back`]).
    ///
    /// The releases of this round were read with the same token, so a 401
    /// to the lookup by image means that the API has no `delta` resource
    /// (pinejs answers an unknown resource with 401, openBalena has none):
    /// there are no deltas, for the rest of this client's life.
    pub(crate) async fn first_deltas(
        &self,
        nested: Option<Result<DeltaRead, Error>>,
        pairs: &[Pair],
        events: Sink<'_>,
    ) -> Result<DeltaRead, Error> {
        let read = match nested {
            Some(Ok(read)) => return Ok(read),
            Some(Err(error)) => self.fall_back(error, pairs, events).await,
            None => self.read_deltas(pairs, events).await,
        };
        match read {
            Err(Error::Unauthorized {
                server: Server::Api,
                with_token: true,
            }) => {
                tracing::debug!("the API refuses `delta` but not `release`: no delta resource");
                self.inner.no_delta_resource.store(true, Ordering::Relaxed);
                Ok(DeltaRead::empty())
            }
            other => other,
        }
    }

    /// The delta rows of a first round ([`Client::first_deltas`]) while the
    /// registry is asked for access to the `images`' repositories; then, in
    /// one wave, the manifests of the images and of the ready deltas.
    pub(crate) async fn deltas_and_registry(
        &self,
        nested: Option<Result<DeltaRead, Error>>,
        pairs: &[Pair],
        images: &[ManifestRef],
        deadline: Option<Instant>,
        events: Sink<'_>,
    ) -> Result<DeltaRead, Error> {
        let Some(registry) = &self.inner.registry else {
            return self.first_deltas(nested, pairs, events).await;
        };
        let until = registry_until(registry.budget, deadline);
        let (read, ()) = tokio::try_join!(self.first_deltas(nested, pairs, events), async {
            registry.authorize(images, until).await;
            Ok(())
        })?;
        let mut wanted = images.to_vec();
        wanted.extend(delta_manifests(&read));
        registry.fetch(&wanted, until).await;
        Ok(read)
    }

    /// Fetches the manifests of the ready deltas in `read` not fetched
    /// yet (none when the registry is off), at most until `deadline`.
    pub(crate) async fn fetch_delta_manifests(&self, read: &DeltaRead, deadline: Option<Instant>) {
        if let Some(registry) = &self.inner.registry {
            let until = registry_until(registry.budget, deadline);
            registry.fetch(&delta_manifests(read), until).await;
        }
    }

    /// The first round: both releases with their images, and the deltas, in
    /// at most two requests sent at the same time.
    pub(crate) async fn first_round(
        &self,
        from: &ReleaseRef,
        to: &ReleaseRef,
        deadline: Option<Instant>,
        events: Sink<'_>,
    ) -> Result<(Tracker, DeltaRead), Error> {
        let (releases, nested) = self
            .releases_with_deltas(
                &release_queries(&[from, to]),
                || nested_delta_queries(&[from], to),
                events,
            )
            .await?;
        let (source, target) = resolve_both(&releases, from, to)?;
        check_images(source)?;
        check_images(target)?;
        let tracker =
            Tracker::new(rules::pair(source, target)).with_registry(self.inner.registry.clone());
        let images = image_manifests(&tracker.pairing);
        let read = self
            .deltas_and_registry(
                nested,
                &tracker.pairing.delta_pairs(),
                &images,
                deadline,
                events,
            )
            .await?;
        Ok((tracker, read))
    }
}
