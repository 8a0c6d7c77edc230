//! One information round against the API: the release query and the delta
//! lookup sent at the same time, the fallback to the lookup by image ids when
//! a server refuses the one-query form, and the cheaper delta-only reads of
//! later rounds. The queries themselves are built in [`crate::queries`].

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use futures_util::future::try_join_all;
use jiff::Timestamp;

use crate::client::Client;
use crate::error::{Cause, Error, Server};
use crate::event::Event;
use crate::http::{Answer, Sink};
use crate::odata::Query;
use crate::prepare::Tracker;
use crate::queries::{delta_queries_by_images, nested_delta_queries, release_queries};
use crate::reference::ReleaseRef;
use crate::resolve::{check_images, resolve_both};
use crate::rules::{self, Pair};
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

/// Whether an error to the one-query delta lookup means "this server does
/// not support it here" rather than a real failure.
pub(crate) fn nested_unsupported(error: &Error) -> Option<u16> {
    match error {
        Error::Api { status: 400, .. } => Some(400),
        Error::Unauthorized {
            server: Server::Api,
            ..
        } => Some(401),
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
        events: Sink<'_>,
    ) -> Result<Answer, Error> {
        let url = query.url(&self.inner.api, resource);
        tracing::debug!(%url, what, "api request");
        let answer = self.inner.http.api_get(&url, what, events).await?;
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
            let answer = self.api_json("release", query, "release", events).await?;
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
    pub(crate) async fn fetch_deltas(
        &self,
        queries: &[Query],
        events: Sink<'_>,
    ) -> Result<DeltaRead, Error> {
        if self.inner.no_delta_resource.load(Ordering::Relaxed) {
            return Ok(DeltaRead::empty());
        }
        let answers = try_join_all(queries.iter().map(|query| async move {
            let answer = self.api_json("delta", query, "delta", events).await?;
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
        self.fetch_deltas(&delta_queries_by_images(pairs), events)
            .await
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
        let deltas = if self.inner.nested_deltas.load(Ordering::Relaxed) {
            deltas()
        } else {
            Vec::new()
        };
        if deltas.is_empty() {
            return Ok((self.fetch_releases(releases, events).await?, None));
        }
        let (releases, deltas) = tokio::try_join!(self.fetch_releases(releases, events), async {
            Ok(self.fetch_deltas(&deltas, events).await)
        })?;
        Ok((releases, Some(deltas)))
    }

    /// The delta rows of a first round: the one-query lookup's answer, or
    /// the lookup by image `pairs` when it was not sent or when the server
    /// does not support it (then this client stops trying it).
    pub(crate) async fn first_deltas(
        &self,
        nested: Option<Result<DeltaRead, Error>>,
        pairs: &[Pair],
        events: Sink<'_>,
    ) -> Result<DeltaRead, Error> {
        match nested {
            Some(Ok(read)) => return Ok(read),
            Some(Err(error)) => {
                let Some(status) = nested_unsupported(&error) else {
                    return Err(error);
                };
                tracing::debug!(status, "one-query delta lookup refused; falling back");
                self.inner.nested_deltas.store(false, Ordering::Relaxed);
                events(Event::DeltaQueryFallback { status });
            }
            None => {}
        }
        self.read_deltas(pairs, events).await
    }

    /// The first round: both releases with their images, and the deltas, in
    /// at most two requests sent at the same time.
    pub(crate) async fn first_round(
        &self,
        from: &ReleaseRef,
        to: &ReleaseRef,
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
        let tracker = Tracker::new(rules::pair(source, target));
        let read = self
            .first_deltas(nested, &tracker.pairing.delta_pairs(), events)
            .await?;
        Ok((tracker, read))
    }
}
