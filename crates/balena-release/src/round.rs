//! One information round: the release query (both releases and their images
//! in one expanded GET) and the delta query (every delta of the transition in
//! one GET), sent concurrently; resolving the user's references against the
//! answer; and the cheaper delta-only reads of later rounds.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use futures_util::future::try_join_all;

use jiff::Timestamp;

use crate::client::Client;
use crate::error::{Error, Server};
use crate::event::Event;
use crate::http::{Answer, Sink};
use crate::model::UpdateInfo;
use crate::odata::{self, Expand, Query};
use crate::reference::ReleaseRef;
use crate::report::{self, DELTA_VERSION, Pair, Pairing, Requests};
use crate::wire::{self, DeltaRow, Release, Source};

/// The release columns read.
const RELEASE_SELECT: &[&str] = &["id", "commit", "status", "belongs_to__application"];
/// The image columns read.
const IMAGE_SELECT: &[&str] = &[
    "id",
    "status",
    "content_hash",
    "image_size",
    "is_stored_at__image_location",
];
/// The delta columns read.
const DELTA_SELECT: &[&str] = &[
    "id",
    "status",
    "version",
    "is_stored_at__location",
    "size",
    "originates_from__image",
    "produces__image",
    "update_timestamp",
    "error_message",
];

/// `release_image → image → is_a_build_of__service`, with only the needed
/// columns.
fn release_images() -> Expand {
    Expand::new("release_image", &["id"]).expand(
        Expand::new("image", IMAGE_SELECT)
            .expand(Expand::new("is_a_build_of__service", &["service_name"])),
    )
}

/// The most ids in one query's `in` list. Ids of balenaCloud have up to 8
/// digits, so a list stays under 1 KB and every query well under the 8 KB
/// request line that common proxies accept.
pub(crate) const MAX_IDS: usize = 100;

/// Splits references into groups of at most [`MAX_IDS`] distinct ids, one
/// query each; commit prefixes (few, from the command line) go with the
/// first group.
fn in_batches<'a>(refs: &[&'a ReleaseRef]) -> Vec<Vec<&'a ReleaseRef>> {
    let mut ids: Vec<&ReleaseRef> = Vec::new();
    let mut commits: Vec<&ReleaseRef> = Vec::new();
    for r in refs {
        match r {
            ReleaseRef::Id(_) if !ids.contains(r) => ids.push(r),
            ReleaseRef::Id(_) => {}
            ReleaseRef::Commit(_) => commits.push(r),
        }
    }
    let mut batches: Vec<Vec<&ReleaseRef>> = ids.chunks(MAX_IDS).map(<[_]>::to_vec).collect();
    match batches.first_mut() {
        Some(first) => first.extend(commits),
        None => batches.push(commits),
    }
    batches
}

/// A filter matching every release named by `refs`: ids through one `in`
/// list, commit prefixes through `startswith`, OR-ed together. No status
/// filter, so that a failed release can be reported as such.
fn release_filter(refs: &[&ReleaseRef]) -> String {
    let mut ids: Vec<u64> = Vec::new();
    let mut terms = Vec::new();
    for r in refs {
        match r {
            ReleaseRef::Id(id) if !ids.contains(id) => ids.push(*id),
            ReleaseRef::Id(_) => {}
            ReleaseRef::Commit(prefix) => {
                let term = odata::startswith("commit", prefix);
                if !terms.contains(&term) {
                    terms.push(term);
                }
            }
        }
    }
    if !ids.is_empty() {
        terms.insert(0, odata::in_ids("id", &ids));
    }
    odata::or(&terms)
}

/// The release queries for `refs`: one per [`MAX_IDS`] release ids.
pub(crate) fn release_queries(refs: &[&ReleaseRef]) -> Vec<Query> {
    in_batches(refs).iter().map(|b| release_query(b)).collect()
}

/// The release query for `refs`.
fn release_query(refs: &[&ReleaseRef]) -> Query {
    Query::new()
        .filter(release_filter(refs))
        .select(RELEASE_SELECT)
        .expand(&[release_images()])
}

/// The condition "the image at `nav` is part of a release named by `refs`",
/// through the `release_image` link table.
fn membership(nav: &str, refs: &[&ReleaseRef]) -> String {
    let mut ids = Vec::new();
    let mut terms = Vec::new();
    for r in refs {
        match r {
            ReleaseRef::Id(id) => {
                if !ids.contains(id) {
                    ids.push(*id);
                }
            }
            ReleaseRef::Commit(prefix) => terms.push(odata::any(
                "ri/is_part_of__release",
                "r",
                &odata::startswith("r/commit", prefix),
            )),
        }
    }
    if !ids.is_empty() {
        terms.insert(0, odata::in_ids("ri/is_part_of__release", &ids));
    }
    odata::any(&format!("{nav}/release_image"), "ri", &odata::or(&terms))
}

/// Every v3 delta from an image of a `from` release to an image of the `to`
/// release, without knowing the image ids yet: one query per [`MAX_IDS`]
/// source releases.
pub(crate) fn nested_delta_queries(from: &[&ReleaseRef], to: &ReleaseRef) -> Vec<Query> {
    in_batches(from)
        .iter()
        .map(|b| nested_delta_query(b, to))
        .collect()
}

fn nested_delta_query(from: &[&ReleaseRef], to: &ReleaseRef) -> Query {
    Query::new()
        .select(DELTA_SELECT)
        .filter(odata::and(&[
            odata::eq("version", u64::from(DELTA_VERSION)),
            membership("originates_from__image", from),
            membership("produces__image", &[to]),
        ]))
        .orderby("id desc")
}

/// Every v3 delta between the given image pairs, as two `in` lists per
/// query (rows of other combinations are ignored when judging): one query
/// per group of pairs with at most [`MAX_IDS`] source and [`MAX_IDS`] target
/// images. None without pairs.
pub(crate) fn delta_queries_by_images(pairs: &[Pair]) -> Vec<Query> {
    let mut pairs = pairs.to_vec();
    pairs.sort_unstable();
    pairs.dedup();
    let mut queries = Vec::new();
    let (mut sources, mut targets): (Vec<u64>, Vec<u64>) = (Vec::new(), Vec::new());
    for (source, target) in pairs {
        let fits = |ids: &[u64], id| ids.contains(&id) || ids.len() < MAX_IDS;
        if !fits(&sources, source) || !fits(&targets, target) {
            queries.push(delta_query_by_images(&sources, &targets));
            sources.clear();
            targets.clear();
        }
        if !sources.contains(&source) {
            sources.push(source);
        }
        if !targets.contains(&target) {
            targets.push(target);
        }
    }
    if !sources.is_empty() {
        queries.push(delta_query_by_images(&sources, &targets));
    }
    queries
}

fn delta_query_by_images(sources: &[u64], targets: &[u64]) -> Query {
    let mut sources = sources.to_vec();
    let mut targets = targets.to_vec();
    sources.sort_unstable();
    targets.sort_unstable();
    Query::new()
        .select(DELTA_SELECT)
        .filter(odata::and(&[
            odata::eq("version", u64::from(DELTA_VERSION)),
            odata::in_ids("originates_from__image", &sources),
            odata::in_ids("produces__image", &targets),
        ]))
        .orderby("id desc")
}

/// Finds the release named by `r` among `rows`. For an ambiguous commit
/// prefix, `scope` (the other release's application) narrows the matches.
pub(crate) fn resolve<'a>(
    rows: &'a [Release],
    r: &ReleaseRef,
    scope: Option<u64>,
) -> Result<&'a Release, Error> {
    let matches: Vec<&Release> = match r {
        ReleaseRef::Id(id) => rows.iter().filter(|row| row.summary.id == *id).collect(),
        ReleaseRef::Commit(_) => rows
            .iter()
            .filter(|row| r.matches_commit(&row.summary.commit))
            .collect(),
    };
    let successful: Vec<&Release> = matches
        .iter()
        .copied()
        .filter(|row| row.status == "success")
        .collect();
    match successful.as_slice() {
        [one] => Ok(one),
        [] => match matches.iter().max_by_key(|row| row.summary.id) {
            None => Err(Error::ReleaseNotFound {
                reference: r.clone(),
            }),
            Some(row) => Err(Error::ReleaseNotSuccessful {
                reference: r.clone(),
                id: row.summary.id,
                status: row.status.clone(),
            }),
        },
        many => {
            let scoped: Vec<&Release> = match scope {
                Some(app) => many
                    .iter()
                    .copied()
                    .filter(|row| row.application == app)
                    .collect(),
                None => Vec::new(),
            };
            if let [one] = scoped.as_slice() {
                return Ok(one);
            }
            let shown = if scoped.is_empty() {
                many.to_vec()
            } else {
                scoped
            };
            let mut candidates: Vec<_> = shown.iter().map(|row| row.summary.clone()).collect();
            candidates.sort_by_key(|c| c.id);
            Err(Error::ReleaseAmbiguous {
                reference: r.clone(),
                candidates,
            })
        }
    }
}

/// Resolves both references, scoping an ambiguous commit prefix to the
/// application of the other side when that side is unique.
pub(crate) fn resolve_both<'a>(
    rows: &'a [Release],
    from: &ReleaseRef,
    to: &ReleaseRef,
) -> Result<(&'a Release, &'a Release), Error> {
    let source = resolve(rows, from, None);
    let target = resolve(rows, to, None);
    let (source, target) = match (source, target) {
        (Ok(s), Ok(t)) => (s, t),
        (Err(Error::ReleaseAmbiguous { .. }), Ok(t)) => {
            (resolve(rows, from, Some(t.application))?, t)
        }
        (Ok(s), Err(Error::ReleaseAmbiguous { .. })) => {
            (s, resolve(rows, to, Some(s.application))?)
        }
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    if source.application != target.application {
        return Err(Error::DifferentApplications {
            from: source.summary.id,
            from_application: source.application,
            to: target.summary.id,
            to_application: target.application,
        });
    }
    Ok((source, target))
}

/// Refuses a release with an image that did not build successfully.
pub(crate) fn check_images(release: &Release) -> Result<(), Error> {
    match release.images.iter().find(|i| i.status != "success") {
        None => Ok(()),
        Some(image) => Err(Error::ImageNotReady {
            release: release.summary.id,
            service: image.service_name.clone(),
            image: image.info.id,
            status: image.status.clone(),
        }),
    }
}

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

/// The state kept across rounds of one transition.
#[derive(Debug, Clone)]
pub(crate) struct Tracker {
    pub(crate) pairing: Pairing,
    /// The delta requests of this run.
    pub(crate) requests: Requests,
}

impl Tracker {
    pub(crate) fn new(pairing: Pairing) -> Self {
        Tracker {
            pairing,
            requests: Requests::default(),
        }
    }

    pub(crate) fn evaluate(&self, read: &DeltaRead) -> UpdateInfo {
        report::evaluate(&self.pairing, &read.rows, read.now, &self.requests)
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
                message: format!(
                    "expected JSON but the answer is `{content_type}` (status `{}`)",
                    answer.status.as_u16()
                ),
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
        let tracker = Tracker::new(report::pair(source, target));
        let read = self
            .first_deltas(nested, &tracker.pairing.delta_pairs(), events)
            .await?;
        Ok((tracker, read))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{image, release};

    fn commit(s: &str) -> ReleaseRef {
        ReleaseRef::Commit(s.into())
    }

    #[test]
    fn release_query_for_ids_and_commits() {
        let q = release_query(&[&ReleaseRef::Id(900813), &ReleaseRef::Id(900835)]);
        assert_eq!(
            q.render(),
            "$filter=id in (900813,900835)&$select=id,commit,status,belongs_to__application\
             &$expand=release_image($select=id;$expand=image($select=id,status,content_hash,\
             image_size,is_stored_at__image_location;$expand=is_a_build_of__service(\
             $select=service_name)))"
        );
        let q = release_query(&[&ReleaseRef::Id(900813), &commit("b2cf2db")]);
        assert!(
            q.render()
                .starts_with("$filter=id eq 900813 or startswith(commit,'b2cf2db')&"),
            "{}",
            q.render()
        );
        let same = release_query(&[&ReleaseRef::Id(5), &ReleaseRef::Id(5)]);
        assert!(same.render().starts_with("$filter=id eq 5&"));
    }

    #[test]
    fn nested_delta_query_scopes_through_the_link_table() {
        let q = nested_delta_query(&[&ReleaseRef::Id(900813)], &ReleaseRef::Id(900835));
        assert_eq!(
            q.render(),
            "$select=id,status,version,is_stored_at__location,size,originates_from__image,\
             produces__image,update_timestamp,error_message&$filter=version eq 3 and \
             originates_from__image/release_image/any(ri:ri/is_part_of__release eq 900813) and \
             produces__image/release_image/any(ri:ri/is_part_of__release eq 900835)\
             &$orderby=id desc"
        );
        let q = nested_delta_query(&[&commit("84d3d8")], &ReleaseRef::Id(2));
        assert!(
            q.render().contains(
                "originates_from__image/release_image/any(ri:ri/is_part_of__release/\
                 any(r:startswith(r/commit,'84d3d8')))"
            ),
            "{}",
            q.render()
        );
        let fleet = nested_delta_query(
            &[&ReleaseRef::Id(1), &ReleaseRef::Id(2)],
            &ReleaseRef::Id(3),
        );
        assert!(
            fleet
                .render()
                .contains("any(ri:ri/is_part_of__release in (1,2))")
        );
    }

    #[test]
    fn delta_query_by_images_dedups() {
        assert!(delta_queries_by_images(&[]).is_empty());
        let q = &delta_queries_by_images(&[(3, 4), (1, 4), (3, 5), (1, 4)])[0];
        assert!(
            q.render().contains(
                "version eq 3 and originates_from__image in (1,3) and produces__image in (4,5)"
            ),
            "{}",
            q.render()
        );
    }

    /// The ids in the `in` lists and `eq` terms of a rendered query.
    fn ids_in(query: &str, field: &str) -> Vec<u64> {
        if let Some(start) = query.find(&format!("{field} in (")) {
            let rest = &query[start + field.len() + 5..];
            let list = &rest[..rest.find(')').unwrap()];
            return list.split(',').map(|id| id.parse().unwrap()).collect();
        }
        match query.find(&format!("{field} eq ")) {
            Some(start) => {
                let rest = &query[start + field.len() + 4..];
                let end = rest
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(rest.len());
                vec![rest[..end].parse().unwrap()]
            }
            None => Vec::new(),
        }
    }

    #[test]
    fn long_id_lists_are_split_into_batches() {
        // 8-digit ids, larger than today's balenaCloud ids.
        let ids: Vec<ReleaseRef> = (0..250).map(|i| ReleaseRef::Id(10_000_000 + i)).collect();
        let mut refs: Vec<&ReleaseRef> = ids.iter().collect();
        let prefix = commit("b2cf2db");
        refs.push(&prefix);
        refs.push(&ids[0]);
        let queries: Vec<String> = release_queries(&refs).iter().map(Query::render).collect();
        assert_eq!(queries.len(), 3);
        let mut seen: Vec<u64> = queries.iter().flat_map(|q| ids_in(q, "id")).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..250).map(|i| 10_000_000 + i).collect::<Vec<_>>());
        assert!(queries[0].contains("startswith(commit,'b2cf2db')"));
        assert!(!queries[1].contains("startswith"));
        for q in &queries {
            assert!(ids_in(q, "id").len() <= MAX_IDS);
            assert!(q.len() < 2048, "{} bytes", q.len());
        }

        let sources: Vec<&ReleaseRef> = ids[..150].iter().collect();
        let nested = nested_delta_queries(&sources, &ReleaseRef::Id(3));
        assert_eq!(nested.len(), 2);
        let seen: usize = nested
            .iter()
            .map(|q| ids_in(&q.render(), "ri/is_part_of__release").len())
            .sum();
        // The first list of each query is its share of the sources.
        assert_eq!(seen, 150);

        // Only commits: one query.
        assert_eq!(release_queries(&[&prefix]).len(), 1);
        // Up to MAX_IDS ids: one query.
        let hundred: Vec<&ReleaseRef> = ids[..MAX_IDS].iter().collect();
        assert_eq!(release_queries(&hundred).len(), 1);
    }

    #[test]
    fn long_image_lists_are_split_with_every_pair_in_one_query() {
        let pairs: Vec<Pair> = (0..250)
            .map(|i| (20_000_000 + i, 30_000_000 + i % 3))
            .chain((0..120).map(|i| (40_000_000 + i, 50_000_000 + i)))
            .collect();
        let queries: Vec<String> = delta_queries_by_images(&pairs)
            .iter()
            .map(Query::render)
            .collect();
        for q in &queries {
            assert!(ids_in(q, "originates_from__image").len() <= MAX_IDS, "{q}");
            assert!(ids_in(q, "produces__image").len() <= MAX_IDS, "{q}");
        }
        for pair in &pairs {
            assert!(
                queries
                    .iter()
                    .any(|q| ids_in(q, "originates_from__image").contains(&pair.0)
                        && ids_in(q, "produces__image").contains(&pair.1)),
                "{pair:?} is in no query"
            );
        }
        assert_eq!(queries.len(), 4);
        let few: Vec<Pair> = pairs[..MAX_IDS].to_vec();
        assert_eq!(delta_queries_by_images(&few).len(), 1);
    }

    fn with(mut r: Release, commit: &str, status: &str, app: u64) -> Release {
        r.summary.commit = commit.into();
        r.status = status.into();
        r.application = app;
        r
    }

    fn rows() -> Vec<Release> {
        vec![
            with(release(1, &[]), "84d3d8f4", "success", 1),
            with(release(2, &[]), "b2cf2db7aa", "success", 1),
            with(release(3, &[]), "b2cf2db7bb", "success", 2),
            with(release(4, &[]), "deadbeef", "failed", 1),
            with(release(5, &[]), "deadbeef01", "running", 1),
        ]
    }

    #[test]
    fn resolving_ids_and_prefixes() {
        let rows = rows();
        assert_eq!(
            resolve(&rows, &ReleaseRef::Id(1), None).unwrap().summary.id,
            1
        );
        assert_eq!(
            resolve(&rows, &commit("84d3d8"), None).unwrap().summary.id,
            1
        );
        assert!(matches!(
            resolve(&rows, &ReleaseRef::Id(9), None),
            Err(Error::ReleaseNotFound { .. })
        ));
        assert!(matches!(
            resolve(&rows, &commit("aaaaaa"), None),
            Err(Error::ReleaseNotFound { .. })
        ));
        match resolve(&rows, &ReleaseRef::Id(4), None) {
            Err(Error::ReleaseNotSuccessful { id: 4, status, .. }) => assert_eq!(status, "failed"),
            other => panic!("{other:?}"),
        }
        // Newest match reported when no match succeeded.
        match resolve(&rows, &commit("deadbe"), None) {
            Err(Error::ReleaseNotSuccessful { id: 5, status, .. }) => assert_eq!(status, "running"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ambiguous_prefixes_narrow_to_the_other_side() {
        let rows = rows();
        match resolve(&rows, &commit("b2cf2db7"), None) {
            Err(Error::ReleaseAmbiguous { candidates, .. }) => {
                assert_eq!(candidates.iter().map(|c| c.id).collect::<Vec<_>>(), [2, 3]);
            }
            other => panic!("{other:?}"),
        }
        let (s, t) = resolve_both(&rows, &ReleaseRef::Id(1), &commit("b2cf2db7")).unwrap();
        assert_eq!((s.summary.id, t.summary.id), (1, 2));
        let (s, t) = resolve_both(&rows, &commit("b2cf2db7"), &commit("84d3d8")).unwrap();
        assert_eq!((s.summary.id, t.summary.id), (2, 1));
    }

    #[test]
    fn releases_of_different_fleets_are_refused() {
        let rows = rows();
        match resolve_both(&rows, &ReleaseRef::Id(1), &ReleaseRef::Id(3)) {
            Err(Error::DifferentApplications {
                from_application: 1,
                to_application: 2,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn images_must_have_built() {
        let mut r = release(
            7,
            &[("main", image(70, None, 1)), ("db", image(71, None, 1))],
        );
        assert!(check_images(&r).is_ok());
        r.images[1].status = "failed".into();
        match check_images(&r) {
            Err(Error::ImageNotReady {
                release: 7,
                service,
                image: 70,
                ..
            }) => assert_eq!(service, "main"),
            other => panic!("{other:?}"),
        }
    }
}
