//! What a prepare call tracks across rounds (one transition, or every
//! transition of a fleet) and the pure rules that decide, after each read,
//! which deltas to ask for again and when to give up on one.

use std::sync::Arc;

use crate::download;
use crate::error::Error;
use crate::http::shorten;
use crate::model::{
    DeltaFailure, FleetSummary, FleetTransition, FleetUpdateInfo, ReleaseSummary, Report, Status,
    UpdateInfo,
};
use crate::reference::ReleaseRef;
use crate::registry::Registry;
use crate::round::DeltaRead;
use crate::rules::{self, Pair, Pairing, Requests, building_on_server};

/// What a prepare call tracks across rounds: one transition ([`Tracker`])
/// or every transition of a fleet ([`FleetTracker`]).
pub(crate) trait Tracked {
    /// The state reported after each round.
    type Info: Clone;

    /// Every image pair needing a delta.
    fn delta_pairs(&self) -> Vec<Pair>;

    /// The source releases and the target release, for trackers whose
    /// deltas are cheaper to read by release than by image pair.
    fn delta_releases(&self) -> Option<(Vec<ReleaseRef>, ReleaseRef)> {
        None
    }

    /// The state from the delta rows of a round.
    fn evaluate(&mut self, read: &DeltaRead) -> Self::Info;

    fn is_ready(info: &Self::Info) -> bool;

    /// The state as reported in events and errors.
    fn report(info: &Self::Info) -> Report;

    /// The delta requests to send now (service name, image pair; each pair
    /// once), or the error for a delta requested `max_attempts` times.
    fn to_request(
        &self,
        info: &Self::Info,
        read: &DeltaRead,
        max_attempts: u32,
    ) -> Result<Vec<(String, Pair)>, Error>;

    fn requests_mut(&mut self) -> &mut Requests;
}

/// The state kept across rounds of one transition.
#[derive(Debug, Clone)]
pub(crate) struct Tracker {
    pub(crate) pairing: Pairing,
    /// The delta requests of this run.
    pub(crate) requests: Requests,
    /// The manifests read so far, for the download keys; `None` when the
    /// registry is off (then the keys are not written).
    pub(crate) registry: Option<Arc<Registry>>,
}

impl Tracker {
    pub(crate) fn new(pairing: Pairing) -> Self {
        Tracker {
            pairing,
            requests: Requests::default(),
            registry: None,
        }
    }

    /// Writes the download keys from `registry`'s manifests.
    pub(crate) fn with_registry(mut self, registry: Option<Arc<Registry>>) -> Self {
        self.registry = registry;
        self
    }

    pub(crate) fn evaluate(&self, read: &DeltaRead) -> UpdateInfo {
        self.evaluate_both(read).0
    }

    /// The report, and what a device with deltas off downloads.
    fn evaluate_both(&self, read: &DeltaRead) -> (UpdateInfo, Option<u64>) {
        let mut info = rules::evaluate(&self.pairing, &read.rows, read.now, &self.requests);
        let without_deltas = self
            .registry
            .as_ref()
            .and_then(|registry| download::annotate(&mut info, |r| registry.known(r)));
        (info, without_deltas)
    }
}

/// The state of a fleet update across rounds.
#[derive(Debug, Clone)]
pub(crate) struct FleetTracker {
    application: FleetSummary,
    /// The fleet's target (or the one asked for).
    target: ReleaseSummary,
    /// (device count, transition), in output order; each transition has
    /// its own target.
    transitions: Vec<(u64, Tracker)>,
    devices_on_target: u64,
    devices_without_release: u64,
    /// Per transition, its devices with deltas off.
    without_deltas: Vec<u64>,
    /// From no release to the target, when devices run none.
    from_nothing: Option<Tracker>,
    requests: Requests,
}

impl FleetTracker {
    pub(crate) fn new(
        application: FleetSummary,
        target: ReleaseSummary,
        transitions: Vec<(u64, Tracker)>,
    ) -> Self {
        FleetTracker {
            application,
            target,
            transitions,
            devices_on_target: 0,
            devices_without_release: 0,
            without_deltas: Vec::new(),
            from_nothing: None,
            requests: Requests::default(),
        }
    }

    /// Sets, per transition, how many of its devices have deltas off.
    pub(crate) fn with_devices_without_deltas(mut self, counts: Vec<u64>) -> Self {
        self.without_deltas = counts;
        self
    }

    /// Sets the update of devices that run no release.
    pub(crate) fn with_download_from_nothing(mut self, tracker: Option<Tracker>) -> Self {
        self.from_nothing = tracker;
        self
    }

    /// Sets the devices that are not in a transition: those already on
    /// their target and those without a release.
    pub(crate) fn with_idle_devices(mut self, on_target: u64, without_release: u64) -> Self {
        self.devices_on_target = on_target;
        self.devices_without_release = without_release;
        self
    }

    /// Every image pair needing a delta, without repeats.
    pub(crate) fn delta_pairs(&self) -> Vec<Pair> {
        let mut pairs: Vec<Pair> = self
            .transitions
            .iter()
            .flat_map(|(_, t)| t.pairing.delta_pairs())
            .collect();
        pairs.sort_unstable();
        pairs.dedup();
        pairs
    }

    fn sync_requests(&mut self) {
        for (_, t) in &mut self.transitions {
            t.requests = self.requests.clone();
        }
    }

    fn evaluate(&mut self, read: &DeltaRead) -> FleetUpdateInfo {
        self.sync_requests();
        let transitions: Vec<FleetTransition> = self
            .transitions
            .iter()
            .enumerate()
            .map(|(i, (count, t))| {
                let (update, pull_figure) = t.evaluate_both(read);
                let without = self.without_deltas.get(i).copied().unwrap_or(0).min(*count);
                FleetTransition {
                    device_count: *count,
                    update,
                    devices_without_deltas: without,
                    download_size_without_deltas: pull_figure.filter(|_| without > 0),
                }
            })
            .collect();
        let overall = transitions
            .iter()
            .map(|t| t.update.overall_status)
            .min()
            .unwrap_or(Status::Ready);
        let payload = transitions.iter().fold(0u64, |sum, t| {
            let each = t.update.estimated_total_payload_size.unwrap_or(0);
            sum.saturating_add(each.saturating_mul(t.device_count))
        });
        let payload_size_unknown = transitions.iter().any(|t| t.update.payload_size_unknown);
        let from_nothing = self
            .from_nothing
            .as_ref()
            .map(|t| t.evaluate(read).estimated_download_size);
        let registry_asked = self.transitions.iter().any(|(_, t)| t.registry.is_some());
        let (download, download_size_unknown) = download::fleet_total(
            &transitions,
            self.devices_without_release,
            from_nothing.flatten(),
            registry_asked,
        );
        FleetUpdateInfo {
            application: self.application.clone(),
            produces__release: self.target.clone(),
            transitions,
            overall_status: overall,
            estimated_fleet_payload_size: (overall == Status::Ready).then_some(payload),
            payload_size_unknown: overall == Status::Ready && payload_size_unknown,
            devices_on_target: self.devices_on_target,
            devices_without_release: self.devices_without_release,
            estimated_fleet_download_size: download,
            download_size_unknown,
            devices_without_release_download_size: from_nothing.flatten(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NextStep {
    /// Nothing to request.
    Wait,
    /// Request these pairs (again).
    Trigger(Vec<Pair>),
    /// Give up on this pair.
    GiveUp(Pair),
}

/// The deltas worth requesting now, in any round: every changed service
/// that is pending (failed, stale or never started), except when the delta
/// server still counts a build of the pair as running (a request would
/// start nothing and only use up an attempt) or refused it (a refusal is
/// its final word: devices pull that service in full).
pub(crate) fn pairs_to_request(
    tracker: &Tracker,
    info: &UpdateInfo,
    read: &DeltaRead,
) -> Vec<Pair> {
    tracker
        .pairing
        .delta_pairs()
        .into_iter()
        .filter(|pair| {
            let pending = tracker
                .pairing
                .service_of(*pair)
                .and_then(|s| info.service(&s.name))
                .is_some_and(|s| s.status == Status::Pending);
            pending
                && !tracker.requests.refused.contains_key(pair)
                && !building_on_server(*pair, &read.rows, read.now)
        })
        .collect()
}

/// Decides, from a state read while waiting, which deltas to request again
/// ([`pairs_to_request`]), or, once nothing else is left to wait for, which
/// one to give up on. A delta already requested `max_attempts` times, like
/// one the delta server refused, is final for its service; the others are
/// still requested and waited for.
pub(crate) fn next_step(
    tracker: &Tracker,
    info: &UpdateInfo,
    read: &DeltaRead,
    max_attempts: u32,
) -> NextStep {
    let (capped, again): (Vec<Pair>, Vec<Pair>) = pairs_to_request(tracker, info, read)
        .into_iter()
        .partition(|pair| tracker.requests.attempts(*pair) >= max_attempts);
    if !again.is_empty() {
        return NextStep::Trigger(again);
    }
    match nothing_left_to_wait_for(tracker, info, &capped) {
        Some(pair) => NextStep::GiveUp(pair),
        None => NextStep::Wait,
    }
}

/// The first pair given up on (`capped`, or refused by the delta server),
/// when every service that is not ready has been given up on.
fn nothing_left_to_wait_for(tracker: &Tracker, info: &UpdateInfo, capped: &[Pair]) -> Option<Pair> {
    let mut first = None;
    for service in info
        .is_produced_by__service_update
        .iter()
        .filter(|s| s.status != Status::Ready)
    {
        let pair = tracker
            .pairing
            .services
            .iter()
            .find(|p| p.name == service.service_name)
            .and_then(|p| p.delta_pair())?;
        if !capped.contains(&pair) && !tracker.requests.refused.contains_key(&pair) {
            return None;
        }
        first.get_or_insert(pair);
    }
    first
}

/// The delta requests for `pairs`: each with its service name.
pub(crate) fn jobs(tracker: &Tracker, pairs: &[Pair]) -> Vec<(String, Pair)> {
    pairs
        .iter()
        .filter_map(|p| tracker.pairing.service_of(*p).map(|s| (s.name.clone(), *p)))
        .collect()
}

/// The error for a delta given up on.
pub(crate) fn delta_failed(tracker: &Tracker, info: &UpdateInfo, pair: Pair) -> Error {
    let service = tracker
        .pairing
        .service_of(pair)
        .map(|s| s.name.clone())
        .unwrap_or_default();
    let failure = info.service(&service).and_then(|s| s.delta_failure.clone());
    let message = match failure {
        Some(DeltaFailure {
            http_status: Some(_),
            error_message: Some(m),
            ..
        }) => format!("the {m}"),
        Some(f) => match (f.error_message, f.delta_id) {
            (Some(m), _) if !m.trim().is_empty() => {
                format!("the delta server reported `{}`", shorten(&m))
            }
            (_, Some(id)) => format!("delta `{id}` failed without a message"),
            (_, None) => "the delta failed without a message".to_owned(),
        },
        None => format!(
            "no delta from image `{}` to image `{}` is being built (it never started or went \
             stale)",
            pair.0, pair.1
        ),
    };
    Error::DeltaFailed {
        service,
        from_release: None,
        attempts: tracker.requests.attempts(pair),
        message,
        last: Box::new(Report::Transition(info.clone())),
    }
}

impl Tracked for Tracker {
    type Info = UpdateInfo;

    fn delta_pairs(&self) -> Vec<Pair> {
        self.pairing.delta_pairs()
    }

    fn evaluate(&mut self, read: &DeltaRead) -> UpdateInfo {
        Tracker::evaluate(self, read)
    }

    fn is_ready(info: &UpdateInfo) -> bool {
        info.overall_status == Status::Ready
    }

    fn report(info: &UpdateInfo) -> Report {
        Report::Transition(info.clone())
    }

    fn to_request(
        &self,
        info: &UpdateInfo,
        read: &DeltaRead,
        max_attempts: u32,
    ) -> Result<Vec<(String, Pair)>, Error> {
        match next_step(self, info, read, max_attempts) {
            NextStep::Wait => Ok(Vec::new()),
            NextStep::Trigger(pairs) => Ok(jobs(self, &pairs)),
            NextStep::GiveUp(pair) => Err(delta_failed(self, info, pair)),
        }
    }

    fn requests_mut(&mut self) -> &mut Requests {
        &mut self.requests
    }
}

impl Tracked for FleetTracker {
    type Info = FleetUpdateInfo;

    fn delta_pairs(&self) -> Vec<Pair> {
        FleetTracker::delta_pairs(self)
    }

    /// A fleet has many more image pairs than releases: while every
    /// transition has the same target, reading by release keeps a poll at
    /// one request per 100 source releases. With several targets (pinned
    /// devices), polls read by image pair: one request per 100 source or
    /// target images.
    fn delta_releases(&self) -> Option<(Vec<ReleaseRef>, ReleaseRef)> {
        let (_, first) = self.transitions.first()?;
        let target = first.pairing.target.id;
        if self
            .transitions
            .iter()
            .any(|(_, t)| t.pairing.target.id != target)
        {
            return None;
        }
        let sources = self
            .transitions
            .iter()
            .map(|(_, t)| ReleaseRef::Id(t.pairing.source.id))
            .collect();
        Some((sources, ReleaseRef::Id(target)))
    }

    fn evaluate(&mut self, read: &DeltaRead) -> FleetUpdateInfo {
        FleetTracker::evaluate(self, read)
    }

    fn is_ready(info: &FleetUpdateInfo) -> bool {
        info.overall_status == Status::Ready
    }

    fn report(info: &FleetUpdateInfo) -> Report {
        Report::Fleet(info.clone())
    }

    /// The requests of every transition, each pair once even when several
    /// transitions need it.
    fn to_request(
        &self,
        info: &FleetUpdateInfo,
        read: &DeltaRead,
        max_attempts: u32,
    ) -> Result<Vec<(String, Pair)>, Error> {
        let mut out: Vec<(String, Pair)> = Vec::new();
        // A transition that gave up on a delta ends the wait only when no
        // other transition has a delta to request or to wait for.
        let mut given_up = None;
        let mut waiting = false;
        for ((_, tracker), transition) in self.transitions.iter().zip(&info.transitions) {
            match tracker.to_request(&transition.update, read, max_attempts) {
                Ok(jobs) => {
                    waiting |= jobs.is_empty() && transition.update.overall_status != Status::Ready;
                    for job in jobs {
                        if !out.iter().any(|(_, p)| *p == job.1) {
                            out.push(job);
                        }
                    }
                }
                Err(Error::DeltaFailed {
                    service,
                    attempts,
                    message,
                    ..
                }) => {
                    given_up.get_or_insert_with(|| Error::DeltaFailed {
                        service,
                        from_release: Some(transition.update.originates_from__release.id),
                        attempts,
                        message,
                        last: Box::new(Report::Fleet(info.clone())),
                    });
                }
                Err(other) => return Err(other),
            }
        }
        match given_up {
            Some(error) if out.is_empty() && !waiting => Err(error),
            _ => Ok(out),
        }
    }

    fn requests_mut(&mut self) -> &mut Requests {
        &mut self.requests
    }
}

#[cfg(test)]
mod tests {
    use jiff::{SignedDuration, Timestamp};

    use super::*;
    use crate::rules::tests::{delta, image, release};
    use crate::rules::{evaluate, pair};
    use crate::wire::DeltaRow;

    fn tracker() -> Tracker {
        let source = release(1, &[("a", image(10, None, 1)), ("b", image(11, None, 1))]);
        let target = release(2, &[("a", image(20, None, 1)), ("b", image(21, None, 1))]);
        Tracker::new(pair(&source, &target))
    }

    fn now() -> Timestamp {
        "2026-11-25T19:00:00Z".parse().unwrap()
    }

    fn read(rows: &[DeltaRow]) -> DeltaRead {
        DeltaRead {
            rows: rows.to_vec(),
            now: now(),
        }
    }

    #[test]
    fn pending_services_are_requested_again_until_the_cap() {
        let mut t = tracker();
        let rows = [delta(1, (10, 20), "running", now())];
        let info = evaluate(&t.pairing, &rows, now(), &Requests::default());
        assert_eq!(pairs_to_request(&t, &info, &read(&rows)), [(11, 21)]);
        assert_eq!(
            next_step(&t, &info, &read(&rows), 3),
            NextStep::Trigger(vec![(11, 21)])
        );
        t.requests.attempts.insert((11, 21), 3);
        // Given up on, but `a` is still building: wait for it.
        assert_eq!(next_step(&t, &info, &read(&rows), 3), NextStep::Wait);
        let a_ready = [delta(1, (10, 20), "success", now())];
        let info = evaluate(&t.pairing, &a_ready, now(), &Requests::default());
        assert_eq!(
            next_step(&t, &info, &read(&a_ready), 3),
            NextStep::GiveUp((11, 21))
        );
        let all_running = [
            delta(1, (10, 20), "running", now()),
            delta(2, (11, 21), "running", now()),
        ];
        let info = evaluate(&t.pairing, &all_running, now(), &Requests::default());
        assert_eq!(next_step(&t, &info, &read(&all_running), 3), NextStep::Wait);
    }

    #[test]
    fn a_build_the_server_still_runs_is_not_requested_again() {
        let t = tracker();
        let ready = delta(1, (10, 20), "success", now());
        // Stale for the status (over 3 minutes), still running for the server
        // (under 5): pending, but a request would start nothing.
        let quiet = [
            ready.clone(),
            delta(2, (11, 21), "running", now() - SignedDuration::from_mins(4)),
        ];
        let info = evaluate(&t.pairing, &quiet, now(), &Requests::default());
        assert_eq!(info.service("b").unwrap().status, Status::Pending);
        assert_eq!(next_step(&t, &info, &read(&quiet), 1), NextStep::Wait);
        // Past 5 minutes the server builds again when asked.
        let dropped = [
            ready,
            delta(2, (11, 21), "running", now() - SignedDuration::from_mins(6)),
        ];
        let info = evaluate(&t.pairing, &dropped, now(), &Requests::default());
        assert_eq!(
            next_step(&t, &info, &read(&dropped), 3),
            NextStep::Trigger(vec![(11, 21)])
        );
    }

    #[test]
    fn giving_up_names_the_service_and_the_server_message() {
        let mut t = tracker();
        t.requests.attempts.insert((11, 21), 3);
        let rows = [delta(7, (11, 21), "failed", now())];
        let info = evaluate(&t.pairing, &rows, now(), &t.requests);
        let err = delta_failed(&t, &info, (11, 21));
        assert_eq!(
            err.to_string(),
            "the delta for service `b` could not be prepared (3 requests): the delta server \
             reported `build 7 failed`"
        );
        assert!(err.last_state().is_some());
        let err = delta_failed(&t, &evaluate(&t.pairing, &[], now(), &t.requests), (11, 21));
        assert!(
            err.to_string().contains("never started or went stale"),
            "{err}"
        );
    }

    fn fleet() -> FleetTracker {
        let target = release(
            3,
            &[
                ("main", image(30, Some("h3"), 300)),
                ("db", image(31, Some("d"), 90)),
            ],
        );
        let old = release(
            1,
            &[
                ("main", image(10, Some("h1"), 100)),
                ("db", image(11, Some("d"), 90)),
            ],
        );
        let newer = release(
            2,
            &[
                ("main", image(20, Some("h2"), 200)),
                ("db", image(31, Some("d"), 90)),
            ],
        );
        FleetTracker::new(
            FleetSummary {
                id: 1,
                slug: "org/fleet".into(),
            },
            target.summary.clone(),
            vec![
                (4, Tracker::new(rules::pair(&newer, &target))),
                (2, Tracker::new(rules::pair(&old, &target))),
                (1, Tracker::new(rules::pair(&target, &target))),
            ],
        )
    }

    #[test]
    fn fleet_status_and_payload_sum_over_devices() {
        let mut f = fleet();
        assert_eq!(f.delta_pairs(), [(10, 30), (20, 30)]);
        let read = DeltaRead {
            rows: vec![delta(1, (20, 30), "success", now())],
            now: now(),
        };
        let info = f.evaluate(&read);
        assert_eq!(info.overall_status, Status::Pending);
        assert_eq!(info.estimated_fleet_payload_size, None);
        assert_eq!(info.transitions[0].update.overall_status, Status::Ready);
        assert_eq!(
            info.transitions[2].update.estimated_total_payload_size,
            Some(0)
        );
        let jobs = f.to_request(&info, &read, 3).unwrap();
        assert_eq!(jobs, [("main".to_owned(), (10, 30))]);

        let read = DeltaRead {
            rows: vec![
                delta(1, (20, 30), "success", now()),
                delta(2, (10, 30), "success", now()),
            ],
            now: now(),
        };
        let info = f.evaluate(&read);
        assert_eq!(info.overall_status, Status::Ready);
        // 4 × 1001 + 2 × 1002 + 1 × 0.
        assert_eq!(info.estimated_fleet_payload_size, Some(4 * 1001 + 2 * 1002));
        assert_eq!(info.transition_from(1).unwrap().produces__release.id, 3);
    }

    #[test]
    fn polls_read_by_release_only_while_every_transition_has_one_target() {
        let one_target = fleet();
        let (sources, target) = one_target.delta_releases().unwrap();
        assert_eq!(
            sources,
            [ReleaseRef::Id(2), ReleaseRef::Id(1), ReleaseRef::Id(3)]
        );
        assert_eq!(target, ReleaseRef::Id(3));
        // A device pinned from release 2 to release 1 adds a target.
        let pin = release(
            1,
            &[
                ("main", image(10, Some("h1"), 100)),
                ("db", image(11, Some("d"), 90)),
            ],
        );
        let newer = release(
            2,
            &[
                ("main", image(20, Some("h2"), 200)),
                ("db", image(31, Some("d"), 90)),
            ],
        );
        let mut pinned = fleet();
        pinned
            .transitions
            .push((1, Tracker::new(rules::pair(&newer, &pin))));
        assert_eq!(pinned.delta_releases(), None);
        // `db` has the same content in 2 and 1: no delta.
        assert_eq!(pinned.delta_pairs(), [(10, 30), (20, 10), (20, 30)]);
        let info = pinned.with_idle_devices(5, 2).evaluate(&DeltaRead {
            rows: Vec::new(),
            now: now(),
        });
        assert_eq!(info.produces__release.id, 3, "the fleet's target");
        assert_eq!(info.transitions[3].update.produces__release.id, 1);
        assert_eq!(
            (info.devices_on_target, info.devices_without_release),
            (5, 2)
        );
        assert!(
            FleetTracker::new(
                info.application.clone(),
                info.produces__release.clone(),
                Vec::new()
            )
            .delta_releases()
            .is_none()
        );
    }

    #[test]
    fn fleet_gives_up_after_the_cap_once_nothing_else_is_left() {
        let mut f = fleet();
        f.requests.attempts.insert((10, 30), 3);
        let read = DeltaRead {
            rows: vec![delta(5, (10, 30), "failed", now())],
            now: now(),
        };
        let info = f.evaluate(&read);
        // Another transition still needs its delta: that one is requested,
        // the one given up on is not.
        assert_eq!(
            f.to_request(&info, &read, 3).unwrap(),
            [("main".to_owned(), (20, 30))]
        );
        let building = DeltaRead {
            rows: vec![
                delta(5, (10, 30), "failed", now()),
                delta(6, (20, 30), "running", now()),
            ],
            now: now(),
        };
        let info = f.evaluate(&building);
        assert_eq!(f.to_request(&info, &building, 3).unwrap(), []);
        let read = DeltaRead {
            rows: vec![
                delta(5, (10, 30), "failed", now()),
                delta(6, (20, 30), "success", now()),
            ],
            now: now(),
        };
        let info = f.evaluate(&read);
        let err = f.to_request(&info, &read, 3).unwrap_err();
        match err {
            Error::DeltaFailed {
                from_release: Some(from_release),
                service,
                attempts: 3,
                last,
                ..
            } => {
                assert_eq!(service, "main");
                assert_eq!(from_release, 1);
                assert!(
                    matches!(*last, Report::Fleet(ref f) if f.transitions.len() == 3),
                    "the whole fleet's state"
                );
            }
            other => panic!("{other:?}"),
        }
        // Without the attempts of this run, it is requested again.
        let f = fleet();
        assert_eq!(
            f.to_request(&info, &read, 3).unwrap(),
            [("main".to_owned(), (10, 30))]
        );
    }
}
