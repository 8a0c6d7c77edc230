//! Entry points for the criterion benchmarks (`benches/hot_paths.rs`) into
//! steps of a round that are not public: building the queries, decoding the
//! answers, pairing the services and judging the transition. Thin wrappers
//! over the crate's own functions; hidden from the docs, no stability promise.

use jiff::Timestamp;
use url::Url;

use crate::error::{Error, Server};
use crate::model::UpdateInfo;
use crate::odata::Query;
use crate::reference::ReleaseRef;
use crate::rules::{self, Requests};
use crate::wire::{self, DeltaRow, Release, Source};
use crate::{queries, resolve};

const RELEASES: Source<'static> = Source {
    server: Server::Api,
    what: "release",
};

const DELTAS: Source<'static> = Source {
    server: Server::Api,
    what: "delta",
};

/// Decoded releases with their images.
#[derive(Debug)]
pub struct Releases(Vec<Release>);

/// Decoded delta rows.
#[derive(Debug)]
pub struct Deltas(Vec<DeltaRow>);

/// The services of two releases, matched by name.
#[derive(Debug)]
pub struct Pairing(rules::Pairing);

/// The URLs of a pair's first round: the release queries (both releases
/// with their images) and the delta queries.
pub fn pair_queries(api: &Url, from: &ReleaseRef, to: &ReleaseRef) -> (Vec<Url>, Vec<Url>) {
    (
        urls(queries::release_queries(&[from, to]), api, "release"),
        urls(queries::nested_delta_queries(&[from], to), api, "delta"),
    )
}

/// The URLs of a fleet's first-round release and delta queries, for devices
/// on `sources` moving to `target`.
pub fn fleet_queries(
    api: &Url,
    sources: &[ReleaseRef],
    target: &ReleaseRef,
) -> (Vec<Url>, Vec<Url>) {
    let from: Vec<&ReleaseRef> = sources.iter().collect();
    let mut all = from.clone();
    all.push(target);
    (
        urls(queries::release_queries(&all), api, "release"),
        urls(queries::nested_delta_queries(&from, target), api, "delta"),
    )
}

fn urls(queries: Vec<Query>, api: &Url, resource: &str) -> Vec<Url> {
    queries.iter().map(|q| q.url(api, resource)).collect()
}

/// Decodes an answer to the release query.
pub fn decode_releases(body: &[u8]) -> Result<Releases, Error> {
    wire::releases(body, &RELEASES).map(Releases)
}

/// Decodes an answer to a delta query.
pub fn decode_deltas(body: &[u8]) -> Result<Deltas, Error> {
    wire::deltas(body, &DELTAS).map(Deltas)
}

/// Finds both releases among `releases` and matches their services.
pub fn pair(releases: &Releases, from: &ReleaseRef, to: &ReleaseRef) -> Result<Pairing, Error> {
    let (source, target) = resolve::resolve_both(&releases.0, from, to)?;
    Ok(Pairing(rules::pair(source, target)))
}

/// The report of a pairing from the delta rows read at `now`, with no delta
/// requested by this run.
pub fn evaluate(pairing: &Pairing, deltas: &Deltas, now: Timestamp) -> UpdateInfo {
    rules::evaluate(&pairing.0, &deltas.0, now, &Requests::default())
}
