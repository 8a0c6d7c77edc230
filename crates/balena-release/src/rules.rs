//! The rules that turn two releases and their delta rows into an
//! [`UpdateInfo`]: pairing services by name, judging each service's status,
//! the overall status and the download estimate. Pure functions, no I/O.

use std::collections::{HashMap, HashSet};

use jiff::{SignedDuration, Timestamp};

use crate::model::{
    Change, DeltaFailure, DeltaInfo, ImageInfo, ReleaseSummary, RemovedService, ServiceUpdate,
    Status, UpdateInfo, UpdateStrategy,
};
use crate::wire::{DeltaRow, Release};

/// The delta format this tool asks for and reads.
pub(crate) const DELTA_VERSION: u32 = 3;

/// A `running` delta whose heartbeat is older than this is stale, as in the
/// npm tool's lookup.
pub(crate) const STALE_AFTER: SignedDuration = SignedDuration::from_mins(3);

/// The delta server starts a new build for a pair only once its `running`
/// row has had no heartbeat for this long; asking earlier starts nothing.
pub(crate) const SERVER_STALE_AFTER: SignedDuration = SignedDuration::from_mins(5);

/// Whether the delta server still counts a build of `pair` as running (a
/// `running` row with a heartbeat younger than [`SERVER_STALE_AFTER`]), even
/// when [`judge`] already calls it stale.
pub(crate) fn building_on_server(pair: Pair, rows: &[DeltaRow], now: Timestamp) -> bool {
    rows_of(pair, rows).any(|r| running_since(r, now - SERVER_STALE_AFTER))
}

/// The v3 delta rows of one image pair.
fn rows_of(pair: Pair, rows: &[DeltaRow]) -> impl Iterator<Item = &DeltaRow> {
    rows.iter().filter(move |r| {
        r.version == DELTA_VERSION
            && r.originates_from__image.map(|f| f.__id) == Some(pair.0)
            && r.produces__image.map(|f| f.__id) == Some(pair.1)
    })
}

/// Whether a row is a build still going with a heartbeat after `horizon`.
/// No list of delta statuses is published: besides `running`, any status
/// other than `success` on a row without `end_timestamp` is judged by its
/// heartbeat the same way.
fn running_since(row: &DeltaRow, horizon: Timestamp) -> bool {
    row.status != "success"
        && row.end_timestamp.is_none()
        && row.update_timestamp.is_some_and(|t| t > horizon)
}

/// An image pair (source id, target id) that needs a delta.
pub(crate) type Pair = (u64, u64);

/// What this run asked of the delta server, per image pair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Requests {
    /// How many requests were sent.
    pub(crate) attempts: HashMap<Pair, u32>,
    /// The delta server's refusal of the latest request, if it refused it.
    pub(crate) refused: HashMap<Pair, Refusal>,
}

impl Requests {
    pub(crate) fn attempts(&self, pair: Pair) -> u32 {
        self.attempts.get(&pair).copied().unwrap_or(0)
    }

    /// Notes the answer to the latest request for `pair`.
    pub(crate) fn answered(&mut self, pair: Pair, refusal: Option<Refusal>) {
        match refusal {
            Some(refusal) => self.refused.insert(pair, refusal),
            None => self.refused.remove(&pair),
        };
    }
}

/// A delta request the delta server refused (a 4xx other than 401 and 429):
/// devices fall back to a full pull for that service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: u16,
    pub(crate) message: String,
}

/// One service of the target release, matched with the source release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServicePair {
    pub(crate) name: String,
    pub(crate) source: Option<ImageInfo>,
    pub(crate) target: ImageInfo,
    pub(crate) change: Change,
    /// The target release's strategy label (the supervisor follows the
    /// target's).
    pub(crate) strategy: Option<UpdateStrategy>,
}

impl ServicePair {
    /// The image pair needing a delta, for a changed service that devices
    /// update through one (not `delete-then-download`).
    pub(crate) fn delta_pair(&self) -> Option<Pair> {
        match (&self.source, self.change) {
            (Some(source), Change::Changed) if UpdateStrategy::uses_delta(self.strategy) => {
                Some((source.id, self.target.id))
            }
            _ => None,
        }
    }
}

/// The services of two releases, matched by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pairing {
    pub(crate) source: ReleaseSummary,
    pub(crate) target: ReleaseSummary,
    /// In byte order of the service name.
    pub(crate) services: Vec<ServicePair>,
    pub(crate) removed: Vec<RemovedService>,
}

impl Pairing {
    /// The image pairs that need a delta, in service order.
    pub(crate) fn delta_pairs(&self) -> Vec<Pair> {
        self.services
            .iter()
            .filter_map(ServicePair::delta_pair)
            .collect()
    }

    /// The service whose changed image pair is `pair`.
    pub(crate) fn service_of(&self, pair: Pair) -> Option<&ServicePair> {
        self.services.iter().find(|s| s.delta_pair() == Some(pair))
    }
}

/// How a service differs, given its source image (if any) and target image.
pub(crate) fn classify(source: Option<&ImageInfo>, target: &ImageInfo) -> Change {
    match source {
        None => Change::New,
        Some(s) if s.id == target.id => Change::Unchanged,
        Some(s) if s.content_hash.is_some() && s.content_hash == target.content_hash => {
            Change::Unchanged
        }
        Some(_) => Change::Changed,
    }
}

/// Matches the services of `target` with those of `source` by name. Both
/// releases' images are sorted by name (see [`crate::wire`]).
pub(crate) fn pair(source: &Release, target: &Release) -> Pairing {
    let by_name: HashMap<&str, &ImageInfo> = source
        .images
        .iter()
        .map(|i| (i.service_name.as_str(), &i.info))
        .collect();
    let services = target
        .images
        .iter()
        .map(|t| {
            let source = by_name.get(t.service_name.as_str()).copied();
            ServicePair {
                name: t.service_name.clone(),
                change: classify(source, &t.info),
                source: source.cloned(),
                target: t.info.clone(),
                strategy: target.strategies.get(&t.service_name).copied(),
            }
        })
        .collect();
    let kept: HashSet<&str> = target
        .images
        .iter()
        .map(|t| t.service_name.as_str())
        .collect();
    let removed = source
        .images
        .iter()
        .filter(|s| !kept.contains(s.service_name.as_str()))
        .map(|s| RemovedService {
            service_name: s.service_name.clone(),
            originates_from__image: s.info.clone(),
            update_strategy: source.strategies.get(&s.service_name).copied(),
        })
        .collect();
    Pairing {
        source: source.summary.clone(),
        target: target.summary.clone(),
        services,
        removed,
    }
}

/// What the delta rows of one image pair say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeltaState {
    pub(crate) status: Status,
    pub(crate) ready: Option<DeltaInfo>,
    /// The newest row, when it is a failed build.
    pub(crate) failed: Option<DeltaRow>,
}

/// Whether a row is a finished build that did not succeed: `end_timestamp`
/// set and any status but `success`.
fn is_failure(row: &DeltaRow) -> bool {
    row.status != "success" && row.end_timestamp.is_some()
}

/// Judges one image pair from its delta rows (rows of other pairs and other
/// versions are ignored). A `success` row always wins, even over a newer
/// `running` one; an unfinished row counts only while its heartbeat is
/// younger than [`STALE_AFTER`]; a finished row of another status is a
/// failure.
pub(crate) fn judge(pair: Pair, rows: &[DeltaRow], now: Timestamp) -> DeltaState {
    let mine = || rows_of(pair, rows);
    if let Some(success) = mine()
        .filter(|r| r.status == "success")
        .max_by_key(|r| r.id)
    {
        return DeltaState {
            status: Status::Ready,
            ready: Some(DeltaInfo {
                id: success.id,
                version: success.version,
                is_stored_at__location: success.is_stored_at__location.clone(),
                size: success.size.unwrap_or(0),
                size_unknown: success.size.is_none(),
            }),
            failed: None,
        };
    }
    let fresh = mine().any(|r| running_since(r, now - STALE_AFTER));
    let newest = mine().max_by_key(|r| r.id);
    DeltaState {
        status: if fresh {
            Status::Preparing
        } else {
            Status::Pending
        },
        ready: None,
        failed: if fresh {
            None
        } else {
            newest.filter(|r| is_failure(r)).cloned()
        },
    }
}

/// Builds the report of a pairing from the delta rows read at `now` and the
/// delta requests this run sent.
pub(crate) fn evaluate(
    pairing: &Pairing,
    rows: &[DeltaRow],
    now: Timestamp,
    requests: &Requests,
) -> UpdateInfo {
    let mut payload: u64 = 0;
    let mut payload_size_unknown = false;
    let mut overall = Status::Ready;
    let services = pairing
        .services
        .iter()
        .map(|s| {
            let mut target = s.target.clone();
            let (status, delta_failure) = match s.delta_pair() {
                None => {
                    // New, or pulled whole by its strategy.
                    if s.change != Change::Unchanged {
                        payload = payload.saturating_add(s.target.image_size);
                        payload_size_unknown |= s.target.size_unknown;
                    }
                    (Status::Ready, None)
                }
                Some(pair) => {
                    let state = judge(pair, rows, now);
                    if let Some(delta) = &state.ready {
                        payload = payload.saturating_add(delta.size);
                        payload_size_unknown |= delta.size_unknown;
                    }
                    target.is_produced_by__delta = state.ready;
                    let attempts = requests.attempts(pair);
                    // A refusal answers this run's latest request, so it is
                    // newer than any failed row.
                    let refusal = requests
                        .refused
                        .get(&pair)
                        .filter(|_| state.status == Status::Pending)
                        .map(|r| DeltaFailure {
                            delta_id: None,
                            error_message: Some(format!(
                                "delta server refused the delta ({}): {}",
                                r.status, r.message
                            )),
                            attempts,
                            http_status: Some(r.status),
                        });
                    let failure = refusal.or_else(|| {
                        state.failed.map(|row| DeltaFailure {
                            delta_id: Some(row.id),
                            error_message: row.error_message,
                            attempts,
                            http_status: None,
                        })
                    });
                    (state.status, failure)
                }
            };
            overall = overall.min(status);
            ServiceUpdate {
                service_name: s.name.clone(),
                status,
                originates_from__image: s.source.clone(),
                produces__image: target,
                change: s.change,
                delta_failure,
                pull_size: None,
                download_size: None,
                download_size_unknown: false,
                download_size_is_upper_bound: false,
                update_strategy: s.strategy,
            }
        })
        .collect();
    let ready = overall == Status::Ready;
    UpdateInfo {
        originates_from__release: pairing.source.clone(),
        produces__release: pairing.target.clone(),
        is_produced_by__service_update: services,
        overall_status: overall,
        estimated_total_payload_size: ready.then_some(payload),
        payload_size_unknown: ready && payload_size_unknown,
        removed_services: pairing.removed.clone(),
        estimated_download_size: None,
        download_size_unknown: false,
        download_size_is_upper_bound: false,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::{ForeignKey, ReleaseImage};

    pub(crate) fn image(id: u64, hash: Option<&str>, size: u64) -> ImageInfo {
        ImageInfo {
            id,
            is_stored_at__image_location: format!("registry/{id}"),
            content_hash: hash.map(str::to_owned),
            image_size: size,
            is_produced_by__delta: None,
            size_unknown: false,
        }
    }

    pub(crate) fn release(id: u64, images: &[(&str, ImageInfo)]) -> Release {
        let mut images: Vec<ReleaseImage> = images
            .iter()
            .map(|(name, info)| ReleaseImage {
                service_name: (*name).to_owned(),
                status: "success".into(),
                info: info.clone(),
            })
            .collect();
        images.sort_by(|a, b| a.service_name.as_bytes().cmp(b.service_name.as_bytes()));
        Release {
            summary: ReleaseSummary {
                id,
                commit: format!("{id:040x}"),
            },
            status: "success".into(),
            application: 1,
            images,
            strategies: Default::default(),
        }
    }

    pub(crate) fn delta(id: u64, pair: Pair, status: &str, heartbeat: Timestamp) -> DeltaRow {
        DeltaRow {
            id,
            status: status.into(),
            version: 3,
            is_stored_at__location: (status == "success").then(|| format!("registry/delta-{id}")),
            size: (status == "success").then_some(1000 + id),
            originates_from__image: Some(ForeignKey { __id: pair.0 }),
            produces__image: Some(ForeignKey { __id: pair.1 }),
            update_timestamp: Some(heartbeat),
            error_message: (status == "failed").then(|| format!("build {id} failed")),
            end_timestamp: (status != "running").then_some(heartbeat),
        }
    }

    fn now() -> Timestamp {
        "2026-11-25T19:00:00Z".parse().unwrap()
    }

    /// The report of [`example`] before any delta exists.
    pub(crate) fn example_info() -> UpdateInfo {
        evaluate(&example(), &[], now(), &Requests::default())
    }

    fn example() -> Pairing {
        let source = release(
            1,
            &[
                ("main", image(10, Some("sha256:a"), 300)),
                ("worker", image(11, None, 50)),
                ("same", image(12, Some("sha256:s"), 70)),
                ("rebuilt", image(13, Some("sha256:r"), 80)),
            ],
        );
        let target = release(
            2,
            &[
                ("main", image(20, Some("sha256:b"), 310)),
                ("api", image(21, None, 45)),
                ("same", image(12, Some("sha256:s"), 70)),
                ("rebuilt", image(23, Some("sha256:r"), 80)),
            ],
        );
        pair(&source, &target)
    }

    #[test]
    fn pairing_classifies_and_orders_services() {
        let p = example();
        let got: Vec<(&str, Change)> = p
            .services
            .iter()
            .map(|s| (s.name.as_str(), s.change))
            .collect();
        assert_eq!(
            got,
            [
                ("api", Change::New),
                ("main", Change::Changed),
                ("rebuilt", Change::Unchanged),
                ("same", Change::Unchanged),
            ]
        );
        assert_eq!(p.removed.len(), 1);
        assert_eq!(p.removed[0].service_name, "worker");
        assert_eq!(p.removed[0].originates_from__image.id, 11);
        assert_eq!(p.delta_pairs(), [(10, 20)]);
        assert_eq!(p.service_of((10, 20)).unwrap().name, "main");
    }

    #[test]
    fn null_hashes_never_match() {
        assert_eq!(
            classify(Some(&image(1, None, 1)), &image(2, None, 1)),
            Change::Changed
        );
        assert_eq!(
            classify(Some(&image(1, Some("x"), 1)), &image(2, Some("y"), 1)),
            Change::Changed
        );
    }

    #[test]
    fn service_order_is_byte_order() {
        let source = release(1, &[]);
        let target = release(
            2,
            &[
                ("b", image(1, None, 1)),
                ("B", image(2, None, 1)),
                ("a-b", image(3, None, 1)),
                ("a_b", image(4, None, 1)),
                ("\u{e9}", image(5, None, 1)),
            ],
        );
        let names: Vec<String> = pair(&source, &target)
            .services
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["B", "a-b", "a_b", "b", "\u{e9}"]);
    }

    #[test]
    fn statuses_from_delta_rows() {
        let fresh = now() - SignedDuration::from_secs(10);
        let stale = now() - SignedDuration::from_mins(4);
        let p = (10, 20);
        assert_eq!(judge(p, &[], now()).status, Status::Pending);
        assert_eq!(
            judge(p, &[delta(1, p, "running", fresh)], now()).status,
            Status::Preparing
        );
        assert_eq!(
            judge(p, &[delta(1, p, "running", stale)], now()).status,
            Status::Pending
        );
        let ready = judge(p, &[delta(1, p, "success", stale)], now());
        assert_eq!(ready.status, Status::Ready);
        assert_eq!(ready.ready.unwrap().size, 1001);
        // Rows of other pairs or versions do not count.
        let mut v2 = delta(2, p, "success", fresh);
        v2.version = 2;
        let other = delta(3, (10, 21), "success", fresh);
        assert_eq!(judge(p, &[v2, other], now()).status, Status::Pending);
    }

    #[test]
    fn unlisted_statuses_are_judged_by_end_timestamp_and_heartbeat() {
        let fresh = now() - SignedDuration::from_secs(10);
        let stale = now() - SignedDuration::from_mins(4);
        let p = (10, 20);
        let row = |status: &str, heartbeat, ended: bool| {
            let mut row = delta(1, p, status, heartbeat);
            row.end_timestamp = ended.then_some(heartbeat);
            row.error_message = Some(format!("{status} row"));
            row
        };
        // Unfinished: a build, alive while its heartbeat is.
        let queued = judge(p, &[row("queued", fresh, false)], now());
        assert_eq!((queued.status, queued.failed), (Status::Preparing, None));
        let gone = judge(p, &[row("queued", stale, false)], now());
        assert_eq!((gone.status, gone.failed), (Status::Pending, None));
        assert!(building_on_server(p, &[row("queued", stale, false)], now()));
        // Finished without success: a failure, whatever the status says,
        // `running` included.
        for status in ["error", "cancelled", "running"] {
            let ended = judge(p, &[row(status, fresh, true)], now());
            assert_eq!(ended.status, Status::Pending, "{status}");
            let failed = ended.failed.expect(status);
            assert_eq!(
                failed.error_message.as_deref(),
                Some(&*format!("{status} row"))
            );
            assert!(!building_on_server(p, &[row(status, fresh, true)], now()));
        }
    }

    #[test]
    fn success_wins_over_a_newer_running_row() {
        let p = (10, 20);
        let rows = [
            delta(9, p, "running", now()),
            delta(5, p, "success", now() - SignedDuration::from_hours(5)),
            delta(3, p, "success", now()),
        ];
        let state = judge(p, &rows, now());
        assert_eq!(state.status, Status::Ready);
        assert_eq!(state.ready.unwrap().id, 5);
    }

    #[test]
    fn failures_show_only_when_newest_and_nothing_runs() {
        let p = (10, 20);
        let failed = delta(7, p, "failed", now());
        assert_eq!(
            judge(p, std::slice::from_ref(&failed), now())
                .failed
                .unwrap()
                .id,
            7
        );
        let retried = [failed.clone(), delta(8, p, "running", now())];
        let state = judge(p, &retried, now());
        assert_eq!(state.status, Status::Preparing);
        assert_eq!(state.failed, None);
        let stale_after = [
            failed,
            delta(8, p, "running", now() - SignedDuration::from_hours(1)),
        ];
        assert_eq!(judge(p, &stale_after, now()).failed, None);
    }

    #[test]
    fn evaluate_sets_overall_status_and_payload() {
        let p = example();
        let pending = evaluate(&p, &[], now(), &Requests::default());
        assert_eq!(pending.overall_status, Status::Pending);
        assert_eq!(pending.estimated_total_payload_size, None);
        assert_eq!(pending.service("api").unwrap().status, Status::Ready);
        assert_eq!(pending.service("main").unwrap().status, Status::Pending);
        assert_eq!(pending.service("same").unwrap().status, Status::Ready);

        let preparing = evaluate(
            &p,
            &[delta(1, (10, 20), "running", now())],
            now(),
            &Requests::default(),
        );
        assert_eq!(preparing.overall_status, Status::Preparing);
        assert_eq!(
            preparing
                .service("main")
                .unwrap()
                .produces__image
                .is_produced_by__delta,
            None
        );

        let ready = evaluate(
            &p,
            &[delta(1, (10, 20), "success", now())],
            now(),
            &Requests::default(),
        );
        assert_eq!(ready.overall_status, Status::Ready);
        // api (new) 45 + main (delta) 1001 + unchanged 0.
        assert_eq!(ready.estimated_total_payload_size, Some(45 + 1001));
        let main = ready.service("main").unwrap();
        assert_eq!(
            main.produces__image
                .is_produced_by__delta
                .as_ref()
                .unwrap()
                .id,
            1
        );
        assert_eq!(main.originates_from__image.as_ref().unwrap().id, 10);
        assert!(
            ready
                .service("api")
                .unwrap()
                .originates_from__image
                .is_none()
        );
        assert_eq!(ready.removed_services.len(), 1);
    }

    #[test]
    fn delete_then_download_needs_no_delta_and_counts_the_whole_image() {
        let mut p = example();
        let main = p.services.iter_mut().find(|s| s.name == "main").unwrap();
        main.strategy = Some(UpdateStrategy::DeleteThenDownload);
        assert_eq!(p.delta_pairs(), Vec::<Pair>::new());
        // Even a built delta is not one devices use: the old image, its
        // source, is deleted before the pull.
        let info = evaluate(
            &p,
            &[delta(1, (10, 20), "success", now())],
            now(),
            &Requests::default(),
        );
        assert_eq!(info.overall_status, Status::Ready);
        let main = info.service("main").unwrap();
        assert_eq!(main.status, Status::Ready);
        assert_eq!(main.produces__image.is_produced_by__delta, None);
        assert_eq!(main.download_now(), Some(310));
        // api (new) 45 + main (whole) 310 + unchanged 0.
        assert_eq!(info.estimated_total_payload_size, Some(45 + 310));
        assert_eq!(info.download_now(), 45 + 310);

        // Other strategies keep the delta.
        for strategy in [UpdateStrategy::KillThenDownload, UpdateStrategy::HandOver] {
            let mut p = example();
            p.services
                .iter_mut()
                .find(|s| s.name == "main")
                .unwrap()
                .strategy = Some(strategy);
            assert_eq!(p.delta_pairs(), [(10, 20)], "{strategy:?}");
        }
    }

    #[test]
    fn failures_carry_attempts() {
        let p = example();
        let mut requests = Requests::default();
        requests.attempts.insert((10, 20), 2);
        let failed = [delta(4, (10, 20), "failed", now())];
        let info = evaluate(&p, &failed, now(), &requests);
        let failure = info.service("main").unwrap().delta_failure.clone().unwrap();
        assert_eq!(failure.delta_id, Some(4));
        assert_eq!(failure.http_status, None);
        assert_eq!(failure.attempts, 2);
        assert_eq!(failure.error_message.as_deref(), Some("build 4 failed"));
    }

    #[test]
    fn no_services_is_ready_with_zero_payload() {
        let info = evaluate(
            &pair(&release(1, &[]), &release(2, &[])),
            &[],
            now(),
            &Requests::default(),
        );
        assert_eq!(info.overall_status, Status::Ready);
        assert_eq!(info.estimated_total_payload_size, Some(0));
    }

    #[test]
    fn unknown_sizes_make_the_estimate_a_lower_bound() {
        let mut no_size = image(21, None, 0);
        no_size.size_unknown = true;
        let source = release(1, &[("main", image(10, Some("sha256:a"), 300))]);
        let target = release(
            2,
            &[("main", image(20, Some("sha256:b"), 310)), ("api", no_size)],
        );
        let p = pair(&source, &target);
        let mut built = delta(1, (10, 20), "success", now());
        let info = evaluate(
            &p,
            std::slice::from_ref(&built),
            now(),
            &Requests::default(),
        );
        assert_eq!(info.estimated_total_payload_size, Some(1001));
        assert!(info.payload_size_unknown, "the new image has no size");

        // Only the delta's size is missing.
        let p = pair(
            &source,
            &release(2, &[("main", image(20, Some("sha256:b"), 310))]),
        );
        built.size = None;
        let info = evaluate(&p, &[built.clone()], now(), &Requests::default());
        let delta = info
            .service("main")
            .unwrap()
            .produces__image
            .is_produced_by__delta
            .clone();
        assert!(delta.unwrap().size_unknown);
        assert_eq!(info.estimated_total_payload_size, Some(0));
        assert!(info.payload_size_unknown);

        // Known sizes: no flag; not ready: no estimate, no flag.
        built.size = Some(5);
        let info = evaluate(&p, &[built], now(), &Requests::default());
        assert!(!info.payload_size_unknown);
        assert!(!evaluate(&p, &[], now(), &Requests::default()).payload_size_unknown);
    }

    #[test]
    fn payload_saturates_instead_of_overflowing() {
        let source = release(1, &[]);
        let target = release(
            2,
            &[("a", image(1, None, u64::MAX)), ("b", image(2, None, 5))],
        );
        let info = evaluate(&pair(&source, &target), &[], now(), &Requests::default());
        assert_eq!(info.estimated_total_payload_size, Some(u64::MAX));
    }
}
