//! The OData queries this library sends, built as values: the release
//! query (releases with their images), the two delta lookups (through the
//! release link table, or by image ids), and the fleet's application and
//! device queries. Pure: nothing here sends a request.

use crate::odata::{self, Expand, Query};
use crate::reference::{FleetRef, ReleaseRef};
use crate::rules::{DELTA_VERSION, Pair};

/// The release columns read.
const RELEASE_SELECT: &[&str] = &[
    "id",
    "commit",
    "status",
    "belongs_to__application",
    "composition",
];
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
    "end_timestamp",
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

/// The fleet named by `fleet`, with its target release; with `count`, also
/// the number of its devices that run no release yet.
pub(crate) fn application_query(fleet: &FleetRef, count: bool) -> Query {
    let filter = match fleet {
        FleetRef::Id(id) => odata::eq("id", *id),
        FleetRef::Slug(slug) => odata::eq_str("slug", slug),
    };
    let query = Query::new()
        .filter(filter)
        .select(&["id", "slug", "should_be_running__release"]);
    if count {
        query.expand(&[Expand::new(
            "owns__device/$count($filter=is_running__release eq null)",
            &[],
        )])
    } else {
        query
    }
}

/// The columns of a release that an idle poll of the watch reads.
const HEAD_SELECT: &[&str] = &["id", "commit", "created_at"];

/// A fleet's newest successful release, as an expansion of the application
/// (pinejs takes `$filter`, `$orderby` and `$top` inside `$expand`).
const NEWEST_SUCCESSFUL_RELEASE: &str = "owns__release($select=id,commit,created_at;\
     $filter=status eq 'success';$orderby=created_at desc;$top=1)";

/// The fleet named by `fleet` with its target release and its newest
/// successful release: the one request of an idle poll of the watch.
pub(crate) fn watch_query(fleet: &FleetRef) -> Query {
    let filter = match fleet {
        FleetRef::Id(id) => odata::eq("id", *id),
        FleetRef::Slug(slug) => odata::eq_str("slug", slug),
    };
    Query::new()
        .filter(filter)
        .select(&["id", "slug"])
        .expand(&[
            Expand::new("should_be_running__release", HEAD_SELECT),
            Expand::new(NEWEST_SUCCESSFUL_RELEASE, &[]),
        ])
}

/// The device columns read: what each device runs and its pin.
const DEVICE_SELECT: &[&str] = &["is_running__release", "is_pinned_on__release"];

/// `name in ('A','B',…)` for the delta settings' variables.
fn delta_variable_names() -> String {
    let names: Vec<String> = crate::delta_settings::NAMES
        .iter()
        .map(|n| odata::string_literal(n))
        .collect();
    format!("name in ({})", names.join(","))
}

/// The delta settings among fleet `application`'s configuration variables.
pub(crate) fn fleet_variables_query(application: u64) -> Query {
    Query::new()
        .filter(odata::and(&[
            odata::eq("application", application),
            delta_variable_names(),
        ]))
        .select(&["name", "value"])
}

/// The delta settings among the configuration variables of fleet
/// `application`'s devices, with each device's releases: one answer
/// whatever the number of devices, as long as few set them.
pub(crate) fn device_variables_query(application: u64) -> Query {
    Query::new()
        .filter(odata::and(&[
            odata::eq("device/belongs_to__application", application),
            delta_variable_names(),
        ]))
        .select(&["name", "value"])
        .expand(&[Expand::new(
            "device",
            &["id", "is_running__release", "is_pinned_on__release"],
        )])
}

/// Every device of fleet `application`: the release it runs and its pin.
/// Its answer grows with the fleet; [`device_count_query`] and
/// [`pinned_device_query`] do not.
pub(crate) fn device_query(application: u64) -> Query {
    Query::new()
        .filter(odata::eq("belongs_to__application", application))
        .select(DEVICE_SELECT)
}

/// The pinned devices of fleet `application`: the release each runs and
/// its pin.
pub(crate) fn pinned_device_query(application: u64) -> Query {
    Query::new()
        .filter(odata::and(&[
            odata::eq("belongs_to__application", application),
            "is_pinned_on__release ne null".to_owned(),
        ]))
        .select(DEVICE_SELECT)
}

/// Every release of fleet `application` with the number of devices that
/// run it and follow the fleet (no pin): one row per release, whatever the
/// number of devices.
pub(crate) fn device_count_query(application: u64) -> Query {
    Query::new()
        .filter(odata::eq("belongs_to__application", application))
        .select(&["id"])
        .expand(&[Expand::new(
            "is_running_on__device/$count($filter=is_pinned_on__release eq null)",
            &[],
        )])
}

/// Every v3 delta from an image of a `from` release to an image of a
/// `targets` release (a fleet's transitions may have several targets). Rows
/// of other combinations are ignored when judging. One query per
/// [`MAX_IDS`] source releases and [`MAX_IDS`] targets.
pub(crate) fn fleet_delta_queries(from: &[&ReleaseRef], targets: &[&ReleaseRef]) -> Vec<Query> {
    let mut queries = Vec::new();
    for to in in_batches(targets) {
        for sources in in_batches(from) {
            if sources.is_empty() || to.is_empty() {
                continue;
            }
            queries.push(
                Query::new()
                    .select(DELTA_SELECT)
                    .filter(odata::and(&[
                        odata::eq("version", u64::from(DELTA_VERSION)),
                        membership("originates_from__image", &sources),
                        membership("produces__image", &to),
                    ]))
                    .orderby("id desc"),
            );
        }
    }
    queries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(s: &str) -> ReleaseRef {
        ReleaseRef::Commit(s.into())
    }

    #[test]
    fn release_query_for_ids_and_commits() {
        let q = release_query(&[&ReleaseRef::Id(900813), &ReleaseRef::Id(900835)]);
        assert_eq!(
            q.render(),
            "$filter=id in (900813,900835)&$select=id,commit,status,belongs_to__application,composition\
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
             produces__image,update_timestamp,end_timestamp,error_message&$filter=version eq 3 and \
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
    fn the_watch_reads_the_target_and_the_newest_successful_release_at_once() {
        assert_eq!(
            watch_query(&FleetRef::Id(7)).render(),
            "$filter=id eq 7&$select=id,slug\
             &$expand=should_be_running__release($select=id,commit,created_at),\
             owns__release($select=id,commit,created_at;$filter=status eq 'success';\
             $orderby=created_at desc;$top=1)"
        );
    }

    #[test]
    fn fleet_queries() {
        let fleet: FleetRef = "org/kiosks".parse().unwrap();
        assert_eq!(
            application_query(&fleet, false).render(),
            "$filter=slug eq 'org%2Fkiosks'&$select=id,slug,should_be_running__release"
        );
        assert_eq!(
            application_query(&FleetRef::Id(7), true).render(),
            "$filter=id eq 7&$select=id,slug,should_be_running__release\
             &$expand=owns__device/$count($filter=is_running__release eq null)"
        );
        assert_eq!(
            device_count_query(7).render(),
            "$filter=belongs_to__application eq 7&$select=id\
             &$expand=is_running_on__device/$count($filter=is_pinned_on__release eq null)"
        );
        assert_eq!(
            pinned_device_query(7).render(),
            "$filter=belongs_to__application eq 7 and is_pinned_on__release ne null\
             &$select=is_running__release,is_pinned_on__release"
        );
        assert_eq!(
            device_query(7).render(),
            "$filter=belongs_to__application eq 7\
             &$select=is_running__release,is_pinned_on__release"
        );
    }

    #[test]
    fn fleet_delta_queries_cover_every_target() {
        let (one, two, three) = (ReleaseRef::Id(1), ReleaseRef::Id(2), ReleaseRef::Id(3));
        let q = fleet_delta_queries(&[&one, &two], &[&three, &two]);
        assert_eq!(q.len(), 1);
        assert!(
            q[0].render().contains(
                "originates_from__image/release_image/any(ri:ri/is_part_of__release in (1,2)) and \
                 produces__image/release_image/any(ri:ri/is_part_of__release in (3,2))"
            ),
            "{}",
            q[0].render()
        );
        assert!(fleet_delta_queries(&[], &[&three]).is_empty());
        // One target: the same query as a single transition's.
        assert_eq!(
            fleet_delta_queries(&[&one], &[&three])[0].render(),
            nested_delta_query(&[&one], &three).render()
        );
        let many: Vec<ReleaseRef> = (0..150).map(|i| ReleaseRef::Id(1000 + i)).collect();
        let refs: Vec<&ReleaseRef> = many.iter().collect();
        // 150 sources and 150 targets: two batches each.
        assert_eq!(fleet_delta_queries(&refs, &refs).len(), 4);
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
}
