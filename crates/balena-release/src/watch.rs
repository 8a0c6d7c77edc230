//! Watching a fleet: a long-running loop that prepares every transition to
//! a new release as soon as it is built, before anyone pins it. An idle poll
//! is one API request (the fleet's target and its newest successful
//! release, [`crate::queries::watch_query`]) on the adaptive schedule of the
//! waits; a change starts a fleet prepare (devices read again, missing
//! deltas requested, waited for). What a poll means is decided by pure
//! functions ([`WatchState::observe`], [`DeltaLines`]), tested here.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use serde::Deserialize;
use tokio::time::Instant;

use crate::client::Client;
use crate::error::{Cause, Error, Server};
use crate::event::{Event, WatchReason};
use crate::http::{Effort, Sink};
use crate::model::{Change, DeltaFailure, FleetUpdateInfo, ReleaseSummary, Report, Status};
use crate::poll::PollPolicy;
use crate::prepare::PrepareOptions;
use crate::queries::watch_query;
use crate::reference::{FleetRef, ReleaseRef};

/// How [`Client::watch_fleet`] works.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchOptions {
    /// The idle poll schedule, also used between the reads of a prepare.
    /// It starts again from `initial` after every change.
    pub poll: PollPolicy,
    /// How many times one delta is requested before it is reported failed
    /// and left until the next release (default 3).
    pub max_attempts_per_delta: u32,
    /// How many delta requests run at the same time (default 64).
    pub trigger_concurrency: usize,
}

impl Default for WatchOptions {
    fn default() -> Self {
        let prepare = PrepareOptions::default();
        WatchOptions {
            poll: prepare.poll,
            max_attempts_per_delta: prepare.max_attempts_per_delta,
            trigger_concurrency: prepare.trigger_concurrency,
        }
    }
}

/// A release as one idle poll reads it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Head {
    pub(crate) id: u64,
    pub(crate) commit: String,
    pub(crate) created_at: Timestamp,
}

impl Head {
    fn summary(&self) -> ReleaseSummary {
        ReleaseSummary {
            id: self.id,
            commit: self.commit.clone(),
        }
    }

    /// Created later (the id breaks ties).
    fn is_newer_than(&self, other: &Head) -> bool {
        (self.created_at, self.id) > (other.created_at, other.id)
    }
}

/// One idle poll: the fleet's target and its newest successful release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FleetHead {
    pub(crate) target: Option<Head>,
    pub(crate) newest: Option<Head>,
}

impl FleetHead {
    /// The release the watch keeps prepared: the newest successful release
    /// when it was created after the target (so that it is prepared before
    /// anyone pins it or moves the target), else the target.
    pub(crate) fn watched(&self) -> Option<&Head> {
        match (&self.target, &self.newest) {
            (Some(target), Some(newest)) if newest.is_newer_than(target) => Some(newest),
            (Some(target), _) => Some(target),
            (None, newest) => newest.as_ref(),
        }
    }
}

/// What the watch has seen so far: the pure half of the loop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct WatchState {
    /// The watched release and the fleet's target at the last poll.
    seen: Option<(Option<u64>, Option<u64>)>,
}

impl WatchState {
    /// The releases to prepare after a poll, in order, each with why: the
    /// watched release ([`FleetHead::watched`]) when it changed (or on the
    /// first poll), then the fleet's target when it changed and is not the
    /// watched release (a target moved back to an older release is prepared
    /// too). Nothing when the poll shows no change.
    pub(crate) fn observe(&mut self, head: &FleetHead) -> Vec<(Head, WatchReason)> {
        let watched = head.watched();
        let target = head.target.as_ref();
        let now = (watched.map(|h| h.id), target.map(|h| h.id));
        let before = self.seen.replace(now);
        let mut plan = Vec::new();
        match before {
            None => {
                if let Some(watched) = watched {
                    let reason = if Some(watched.id) == now.1 {
                        WatchReason::Target
                    } else {
                        WatchReason::NewRelease
                    };
                    plan.push((watched.clone(), reason));
                }
            }
            Some((watched_before, target_before)) => {
                if let Some(watched) = watched
                    && watched_before != Some(watched.id)
                {
                    let reason = if Some(watched.id) != now.1 {
                        WatchReason::NewRelease
                    } else {
                        WatchReason::Target
                    };
                    plan.push((watched.clone(), reason));
                }
                if let Some(target) = target
                    && target_before != Some(target.id)
                    && !plan.iter().any(|(h, _)| h.id == target.id)
                {
                    plan.push((target.clone(), WatchReason::Target));
                }
            }
        }
        plan
    }
}

/// One poll's answer as the flap check compares it: the ids of the fleet's
/// target and of its newest successful release.
type Answer = (Option<u64>, Option<u64>);

fn answer(head: &FleetHead) -> Answer {
    (
        head.target.as_ref().map(|h| h.id),
        head.newest.as_ref().map(|h| h.id),
    )
}

/// What a poll means for the flap check ([`Flaps::observe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The same answer as the poll before.
    Same,
    /// A different answer, to act on.
    Changed,
    /// The first poll of a flap, with what flaps.
    Flaps(String),
    /// A poll while the answer flaps.
    StillFlapping,
    /// The answer held for [`HOLD`] polls after it flapped, after this
    /// many changes.
    Steady(u64),
}

/// How many of the last polls an answer that comes back is looked for in.
const FLAP_MEMORY: usize = 8;

/// How many polls in a row must show the same answer to end a flap.
const HOLD: usize = 3;

/// Tells a change from a flap: an answer that comes back (it was seen in
/// one of the last [`FLAP_MEMORY`] polls, not the one before), or a newest
/// release that goes back to an older one. A flap lasts until [`HOLD`]
/// polls in a row show the same answer.
#[derive(Debug, Default)]
pub(crate) struct Flaps {
    /// The poll before.
    last: Option<FleetHead>,
    /// The answers of the last polls, oldest first.
    recent: std::collections::VecDeque<Answer>,
    /// Polls in a row with the last answer.
    held: usize,
    /// Changes seen since the flap began, while it lasts.
    flapping: Option<u64>,
}

impl Flaps {
    pub(crate) fn observe(&mut self, head: &FleetHead) -> Verdict {
        let now = answer(head);
        let last = self.last.replace(head.clone());
        let same = self.recent.back() == Some(&now);
        let came_back = !same && self.recent.contains(&now);
        self.recent.push_back(now);
        if self.recent.len() > FLAP_MEMORY {
            self.recent.pop_front();
        }
        if same {
            self.held += 1;
            return match self.flapping {
                Some(changes) if self.held >= HOLD => {
                    self.flapping = None;
                    Verdict::Steady(changes)
                }
                Some(_) => Verdict::StillFlapping,
                None => Verdict::Same,
            };
        }
        self.held = 1;
        if let Some(changes) = &mut self.flapping {
            *changes = changes.saturating_add(1);
            return Verdict::StillFlapping;
        }
        let went_back = match (last.as_ref().and_then(|l| l.newest.as_ref()), &head.newest) {
            (Some(before), Some(after)) if before.is_newer_than(after) => {
                Some((before.id, after.id))
            }
            _ => None,
        };
        if came_back {
            self.flapping = Some(1);
            let seen: Vec<Answer> = self.recent.iter().copied().collect();
            Verdict::Flaps(describe_flap(&seen))
        } else if let Some((before, after)) = went_back {
            self.flapping = Some(1);
            Verdict::Flaps(format!(
                "the fleet's newest successful release (it went back from {before} to {after})"
            ))
        } else {
            Verdict::Changed
        }
    }
}

/// What changes across the answers `seen`: the target, the newest release
/// or both, with the values seen (the last eight changes).
fn describe_flap(seen: &[Answer]) -> String {
    let mut streak: Vec<Answer> = seen.to_vec();
    streak.dedup();
    let show = |values: Vec<Option<u64>>| -> String {
        let skip = values.len().saturating_sub(8);
        let shown: Vec<String> = values[skip..]
            .iter()
            .map(|v| v.map_or_else(|| "none".to_owned(), |id| id.to_string()))
            .collect();
        let more = if skip > 0 { "… → " } else { "" };
        format!("{more}{}", shown.join(" → "))
    };
    let targets: Vec<Option<u64>> = streak.iter().map(|a| a.0).collect();
    let newest: Vec<Option<u64>> = streak.iter().map(|a| a.1).collect();
    let varies = |values: &[Option<u64>]| values.iter().any(|v| *v != values[0]);
    match (varies(&targets), varies(&newest)) {
        (true, false) => format!("the fleet's target release ({})", show(targets)),
        (false, true) => format!("the fleet's newest successful release ({})", show(newest)),
        _ => format!(
            "the fleet's target release ({}) and its newest successful release ({})",
            show(targets),
            show(newest)
        ),
    }
}

/// A delta of one transition: (service, source release, target release).
type DeltaKey = (String, u64, u64);

/// The deltas of one release's preparation reported so far, so that each is
/// reported ready once.
#[derive(Debug, Default)]
pub(crate) struct DeltaLines {
    reported: BTreeSet<DeltaKey>,
    failures: usize,
}

impl DeltaLines {
    /// The deltas ready in `info` that were not reported yet: changed
    /// services whose delta is ready.
    pub(crate) fn newly_ready(&mut self, info: &FleetUpdateInfo) -> Vec<DeltaKey> {
        let mut out = Vec::new();
        for transition in &info.transitions {
            let update = &transition.update;
            for service in &update.is_produced_by__service_update {
                if service.change != Change::Changed || service.status != Status::Ready {
                    continue;
                }
                let key = (
                    service.service_name.clone(),
                    update.originates_from__release.id,
                    update.produces__release.id,
                );
                if self.reported.insert(key.clone()) {
                    out.push(key);
                }
            }
        }
        out
    }

    /// Marks a delta as reported (failed); false when it was already.
    fn failed(&mut self, key: DeltaKey) -> bool {
        let new = self.reported.insert(key);
        self.failures += usize::from(new);
        new
    }

    /// Reports the deltas that became ready, and those given up on (see
    /// [`stopped_deltas`]), each once.
    fn report(
        &mut self,
        info: &FleetUpdateInfo,
        given_up: impl Fn(Option<&DeltaFailure>) -> bool,
        events: Sink<'_>,
    ) {
        for (service_name, from_release, to_release) in self.newly_ready(info) {
            events(Event::WatchDeltaReady {
                service_name,
                from_release,
                to_release,
            });
        }
        for (key, reason) in stopped_deltas(info, &given_up) {
            if self.failed(key.clone()) {
                events(Event::WatchDeltaFailed {
                    service_name: key.0,
                    from_release: key.1,
                    to_release: key.2,
                    reason,
                });
            }
        }
    }
}

/// The changed services of `info` whose delta is not ready and not being
/// built either (pending: failed, refused or stale) and that `given_up`
/// says will not be requested again (it sees the failure, `None` for a
/// stale build), each with why.
fn stopped_deltas(
    info: &FleetUpdateInfo,
    given_up: &dyn Fn(Option<&DeltaFailure>) -> bool,
) -> Vec<(DeltaKey, String)> {
    let mut out = Vec::new();
    for transition in &info.transitions {
        let update = &transition.update;
        for service in &update.is_produced_by__service_update {
            if service.change != Change::Changed || service.status != Status::Pending {
                continue;
            }
            if !given_up(service.delta_failure.as_ref()) {
                continue;
            }
            let reason = match &service.delta_failure {
                Some(failure) => match (&failure.error_message, failure.http_status) {
                    (Some(message), Some(status)) => {
                        format!("the delta server refused it ({status}): {message}")
                    }
                    (None, Some(status)) => format!("the delta server refused it ({status})"),
                    (Some(message), None) if !message.trim().is_empty() => {
                        format!("the delta server reported `{message}`")
                    }
                    _ => "the delta build failed without a message".to_owned(),
                },
                None => "no delta is being built (it failed or went stale)".to_owned(),
            };
            let key = (
                service.service_name.clone(),
                update.originates_from__release.id,
                update.produces__release.id,
            );
            out.push((key, reason));
        }
    }
    out
}

/// Whether an error ends the watch: the token stopped working, or the fleet
/// is gone. Anything else is reported and tried again.
fn ends_the_watch(error: &Error) -> bool {
    matches!(
        error,
        Error::Unauthorized { .. }
            | Error::Forbidden { .. }
            | Error::FleetNotFound { .. }
            | Error::InvalidToken { .. }
            | Error::InsecureUrl { .. }
            | Error::InvalidUrl { .. }
            | Error::Setup { .. }
    )
}

#[derive(Deserialize)]
struct Envelope {
    d: Vec<HeadRow>,
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct HeadRow {
    should_be_running__release: Vec<Head>,
    owns__release: Vec<Head>,
}

/// Decodes the answer to [`watch_query`]; `None` when no fleet matched.
pub(crate) fn decode_head(body: &[u8]) -> Result<Option<FleetHead>, Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let envelope: Envelope = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        Error::Decode {
            server: Server::Api,
            what: "application".to_owned(),
            path,
            cause: Cause(e.into_inner().to_string()),
        }
    })?;
    if envelope.d.len() > 1 {
        return Err(Error::Decode {
            server: Server::Api,
            what: "application".to_owned(),
            path: "d".to_owned(),
            cause: Cause(format!(
                "expected at most one fleet, got {}",
                envelope.d.len()
            )),
        });
    }
    Ok(envelope.d.into_iter().next().map(|row| FleetHead {
        target: row.should_be_running__release.into_iter().next(),
        newest: row.owns__release.into_iter().next(),
    }))
}

/// Counts a streak of failures so that it is reported once, not per retry.
#[derive(Debug, Default)]
struct Streak {
    failures: u32,
}

impl Streak {
    /// Reports the first failure of a streak.
    fn failed(&mut self, what: &str, error: &Error, pause: std::time::Duration, events: Sink<'_>) {
        self.failures += 1;
        tracing::debug!(%error, failures = self.failures, "watch: {what} failed; trying again");
        if self.failures == 1 {
            events(Event::WatchRetrying {
                what: what.to_owned(),
                reason: error.to_string(),
                pause,
            });
        }
    }

    fn succeeded(&mut self, events: Sink<'_>) {
        if self.failures > 0 {
            events(Event::WatchRecovered {
                failures: self.failures,
            });
        }
        self.failures = 0;
    }
}

impl Client {
    /// Reads the fleet's target release and its newest successful release:
    /// one API request.
    pub(crate) async fn fleet_head(
        &self,
        fleet: &FleetRef,
        events: Sink<'_>,
    ) -> Result<FleetHead, Error> {
        let answer = self
            .api_json(
                "application",
                &watch_query(fleet),
                "application",
                Effort::Full,
                events,
            )
            .await?;
        decode_head(&answer.body)?.ok_or_else(|| Error::FleetNotFound {
            fleet: fleet.clone(),
        })
    }

    /// Prepares every transition of the fleet to `release` and waits until
    /// each delta is ready or given up on, reporting each delta once.
    /// Returns `Ok(false)` when the preparation failed in a way worth
    /// trying again (a transient fault before the deltas were requested).
    async fn prepare_release(
        &self,
        fleet: &FleetRef,
        release: &Head,
        reason: WatchReason,
        options: &WatchOptions,
        streak: &mut Streak,
        events: Sink<'_>,
    ) -> Result<bool, Error> {
        let lines = Mutex::new(DeltaLines::default());
        let max_attempts = options.max_attempts_per_delta.max(1);
        let summary = release.summary();
        let forward = |event: Event| {
            if let Event::Round { report, attempt } = &event
                && let Report::Fleet(info) = &**report
            {
                if *attempt == 1 {
                    events(Event::WatchReleaseSeen {
                        release: summary.clone(),
                        reason,
                        transitions: info.transitions.len(),
                        devices: info.transitions.iter().map(|t| t.device_count).sum(),
                    });
                }
                // A delta is given up on once refused, or once failed after
                // its last request.
                if let Ok(mut lines) = lines.lock() {
                    lines.report(
                        info,
                        |f| {
                            f.is_some_and(|f| f.http_status.is_some() || f.attempts >= max_attempts)
                        },
                        events,
                    );
                }
            }
            events(event);
        };
        let prepare = PrepareOptions {
            wait: true,
            deadline: None,
            poll: options.poll,
            max_attempts_per_delta: options.max_attempts_per_delta,
            trigger_concurrency: options.trigger_concurrency,
        };
        let outcome = self
            .prepare_fleet_update(fleet, Some(&ReleaseRef::Id(release.id)), &prepare, &forward)
            .await;
        let mut lines = lines.into_inner().unwrap_or_else(|e| e.into_inner());
        if !matches!(&outcome, Err(error) if error.is_transient()) {
            streak.succeeded(events);
        }
        let (info, failed) = match outcome {
            Ok(info) => (info, lines.failures),
            // Every other delta is ready or given up on too: whatever is
            // not ready is reported failed.
            Err(Error::DeltaFailed { last, .. }) => {
                if let Report::Fleet(info) = *last {
                    lines.report(&info, |_| true, events);
                    (info, lines.failures)
                } else {
                    return Ok(true);
                }
            }
            Err(error) if ends_the_watch(&error) => return Err(error),
            Err(error) if error.is_transient() => {
                let pause = options.poll.initial;
                streak.failed("preparing the release", &error, pause, events);
                return Ok(false);
            }
            Err(error) => {
                events(Event::WatchReleaseFailed {
                    release: release.summary(),
                    reason: error.to_string(),
                });
                return Ok(true);
            }
        };
        events(Event::WatchPrepared {
            release: release.summary(),
            transitions: info.transitions.len(),
            ready: info
                .transitions
                .iter()
                .filter(|t| t.update.overall_status == Status::Ready)
                .count(),
            failed,
        });
        Ok(true)
    }

    /// The loop of [`Client::watch_fleet`].
    pub(crate) async fn watch(
        &self,
        fleet: &FleetRef,
        options: &WatchOptions,
        on_event: &(dyn Fn(Event) + Send + Sync),
    ) -> Result<std::convert::Infallible, Error> {
        let mut poller = Poller::new(self, fleet, options.poll);
        let mut streak = Streak::default();
        let mut plan = poller.next_plan(false, on_event).await?;
        loop {
            let mut superseded = None;
            let mut retry = Vec::new();
            for (release, reason) in plan.drain(..) {
                // A later change (or a flap) takes over from this
                // preparation; the polls meanwhile keep their pace.
                tokio::select! {
                    done = self.prepare_release(fleet, &release, reason, options, &mut streak, on_event) => {
                        if !done? {
                            retry.push((release, reason));
                        }
                    }
                    next = poller.next_plan(true, on_event) => {
                        tracing::debug!(release = release.id, "watch: a newer change takes over");
                        superseded = Some(next?);
                    }
                }
                if superseded.is_some() {
                    break;
                }
            }
            plan = match superseded {
                // A flap dropped the preparation: nothing to prepare until
                // the answer holds.
                Some(next) if next.is_empty() => poller.next_plan(false, on_event).await?,
                Some(next) => next,
                None if !retry.is_empty() => {
                    tokio::time::sleep(poller.pause(false)).await;
                    retry
                }
                None => {
                    poller.prepared();
                    poller.next_plan(false, on_event).await?
                }
            };
        }
    }
}

/// The fleet polls of a watch: their pace, what they saw and whether the
/// answer flaps.
///
/// The pace follows the idle schedule since the watch began and never gets
/// faster: a change, a flap or a preparation taken over by a later change
/// leaves the pause where it was, so that a fleet whose answer changes at
/// every poll costs no more requests than an idle one.
struct Poller<'a> {
    client: &'a Client,
    fleet: &'a FleetRef,
    policy: PollPolicy,
    started: Instant,
    /// The current pause before jitter; it only grows.
    pause: Duration,
    /// What was acted on.
    state: WatchState,
    /// What was acted on before the changes whose preparation has not
    /// finished yet: restored when a flap drops that preparation.
    undo: Option<WatchState>,
    flaps: Flaps,
    polls: u64,
    /// The first poll goes at once.
    first: bool,
}

impl<'a> Poller<'a> {
    fn new(client: &'a Client, fleet: &'a FleetRef, policy: PollPolicy) -> Self {
        Poller {
            client,
            fleet,
            policy,
            started: Instant::now(),
            pause: Duration::ZERO,
            state: WatchState::default(),
            undo: None,
            flaps: Flaps::default(),
            polls: 0,
            first: true,
        }
    }

    /// The pause before the next poll: the idle schedule, never shorter
    /// than the pause before. While a preparation reads the deltas on its
    /// own schedule, the fleet is checked at the longest pause, so that the
    /// two together cost little more than the preparation alone.
    fn pause(&mut self, preparing: bool) -> Duration {
        self.pause = self.pause.max(self.policy.base(self.started.elapsed()));
        let base = if preparing {
            self.pause.max(self.policy.max)
        } else {
            self.pause
        };
        self.policy
            .spread(base, self.client.inner.http.random_unit())
    }

    /// The preparation of the last plan finished.
    fn prepared(&mut self) {
        self.undo = None;
    }

    /// Polls until a poll shows a change; returns what to prepare. While
    /// `preparing`, a flap returns an empty plan (the preparation is
    /// dropped). Faults are reported once per streak and polled through.
    async fn next_plan(
        &mut self,
        preparing: bool,
        events: Sink<'_>,
    ) -> Result<Vec<(Head, WatchReason)>, Error> {
        let mut faults = Streak::default();
        // The pause an idle poll announced, slept before the next one.
        let mut announced: Option<Duration> = None;
        loop {
            if !std::mem::take(&mut self.first) {
                let pause = announced.take().unwrap_or_else(|| self.pause(preparing));
                tokio::time::sleep(pause).await;
            }
            let head = match self
                .client
                .fleet_head(self.fleet, &crate::http::no_events)
                .await
            {
                Ok(head) => head,
                Err(error) if ends_the_watch(&error) => return Err(error),
                Err(error) => {
                    let pause = self.pause(preparing);
                    faults.failed("reading the fleet", &error, pause, events);
                    continue;
                }
            };
            faults.succeeded(events);
            match self.flaps.observe(&head) {
                Verdict::Same | Verdict::StillFlapping => {}
                Verdict::Flaps(what) => {
                    tracing::debug!(%what, "watch: the fleet's answer flaps");
                    events(Event::WatchFlapping { what });
                    if preparing {
                        if let Some(before) = self.undo.take() {
                            self.state = before;
                        }
                        return Ok(Vec::new());
                    }
                }
                verdict @ (Verdict::Changed | Verdict::Steady(_)) => {
                    if let Verdict::Steady(changes) = verdict {
                        tracing::debug!(changes, "watch: the fleet's answer holds again");
                        events(Event::WatchSteady { changes });
                    }
                    let before = self.state.clone();
                    let plan = self.state.observe(&head);
                    if !plan.is_empty() {
                        self.undo.get_or_insert(before);
                        return Ok(plan);
                    }
                }
            }
            self.polls += 1;
            let pause = self.pause(preparing);
            announced = Some(pause);
            events(Event::WatchIdle {
                polls: self.polls,
                next_poll: pause,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(id: u64, hour: i64) -> Head {
        Head {
            id,
            commit: format!("{id:x}0000000"),
            created_at: Timestamp::from_second(1_800_000_000 + hour * 3600).unwrap(),
        }
    }

    fn fleet(target: Option<Head>, newest: Option<Head>) -> FleetHead {
        FleetHead { target, newest }
    }

    fn ids(plan: &[(Head, WatchReason)]) -> Vec<(u64, WatchReason)> {
        plan.iter().map(|(h, r)| (h.id, *r)).collect()
    }

    #[test]
    fn the_first_poll_prepares_the_newest_release_or_the_target() {
        let mut state = WatchState::default();
        let plan = state.observe(&fleet(Some(head(10, 0)), Some(head(12, 2))));
        assert_eq!(ids(&plan), [(12, WatchReason::NewRelease)]);
        let mut state = WatchState::default();
        let plan = state.observe(&fleet(Some(head(10, 0)), Some(head(10, 0))));
        assert_eq!(ids(&plan), [(10, WatchReason::Target)]);
        // A target newer than every successful release (or none at all).
        let mut state = WatchState::default();
        let plan = state.observe(&fleet(Some(head(10, 5)), Some(head(9, 1))));
        assert_eq!(ids(&plan), [(10, WatchReason::Target)]);
        let mut state = WatchState::default();
        assert!(state.observe(&fleet(None, None)).is_empty());
        assert_eq!(
            ids(&state.observe(&fleet(None, Some(head(3, 0))))),
            [(3, WatchReason::NewRelease)]
        );
    }

    #[test]
    fn an_unchanged_poll_does_nothing() {
        let mut state = WatchState::default();
        let poll = fleet(Some(head(10, 0)), Some(head(12, 2)));
        assert_eq!(state.observe(&poll).len(), 1);
        for _ in 0..3 {
            assert!(state.observe(&poll).is_empty());
        }
    }

    #[test]
    fn a_new_release_is_prepared_before_the_target_moves() {
        let mut state = WatchState::default();
        state.observe(&fleet(Some(head(10, 0)), Some(head(10, 0))));
        let plan = state.observe(&fleet(Some(head(10, 0)), Some(head(11, 1))));
        assert_eq!(ids(&plan), [(11, WatchReason::NewRelease)]);
        // The target then moves to it: prepared again (devices may have
        // changed since), as the target.
        let plan = state.observe(&fleet(Some(head(11, 1)), Some(head(11, 1))));
        assert_eq!(ids(&plan), [(11, WatchReason::Target)]);
        assert!(
            state
                .observe(&fleet(Some(head(11, 1)), Some(head(11, 1))))
                .is_empty()
        );
    }

    #[test]
    fn a_target_moved_back_is_prepared_too() {
        let mut state = WatchState::default();
        state.observe(&fleet(Some(head(12, 2)), Some(head(12, 2))));
        // Rolled back to 10 while 12 stays the newest: 12 is still the
        // watched release (prepared already), 10 is prepared as the target.
        let plan = state.observe(&fleet(Some(head(10, 0)), Some(head(12, 2))));
        assert_eq!(ids(&plan), [(10, WatchReason::Target)]);
        // A release older than the target is not watched.
        let plan = state.observe(&fleet(Some(head(10, 0)), Some(head(12, 2))));
        assert!(plan.is_empty());
    }

    #[test]
    fn a_release_created_before_the_target_is_not_newer() {
        let mut state = WatchState::default();
        state.observe(&fleet(Some(head(20, 10)), Some(head(20, 10))));
        // A newest successful release with a higher id but created earlier.
        assert!(
            state
                .observe(&fleet(Some(head(20, 10)), Some(head(21, 9))))
                .is_empty()
        );
    }

    #[test]
    fn a_target_that_comes_back_flaps_until_it_holds() {
        let mut flaps = Flaps::default();
        let a = fleet(Some(head(10, 0)), Some(head(12, 2)));
        let b = fleet(Some(head(11, 1)), Some(head(12, 2)));
        assert_eq!(flaps.observe(&a), Verdict::Changed);
        assert_eq!(flaps.observe(&a), Verdict::Same);
        assert_eq!(flaps.observe(&b), Verdict::Changed);
        let Verdict::Flaps(what) = flaps.observe(&a) else {
            panic!("a came back")
        };
        assert_eq!(what, "the fleet's target release (10 → 11 → 10)");
        // Held for two polls: not yet.
        for poll in [&b, &a, &b, &a, &b, &b] {
            assert_eq!(flaps.observe(poll), Verdict::StillFlapping);
        }
        assert_eq!(flaps.observe(&b), Verdict::Steady(6));
        assert_eq!(flaps.observe(&b), Verdict::Same);
        // `a` comes back within the last polls: another flap.
        let Verdict::Flaps(what) = flaps.observe(&a) else {
            panic!("a came back again")
        };
        assert_eq!(what, "the fleet's target release (10 → 11 → 10 → 11 → 10)");
        for _ in 0..HOLD {
            flaps.observe(&a);
        }
        // Once `b` is out of memory, it is a change again.
        for _ in 0..FLAP_MEMORY {
            flaps.observe(&a);
        }
        assert_eq!(flaps.observe(&b), Verdict::Changed);
        // Two polls each (a fetch of the fleet between the polls, say).
        for poll in [&b, &a] {
            flaps.observe(poll);
        }
        assert!(matches!(flaps.observe(&a), Verdict::StillFlapping));
    }

    #[test]
    fn a_newest_release_that_goes_back_flaps_and_so_do_both() {
        let mut flaps = Flaps::default();
        flaps.observe(&fleet(Some(head(10, 0)), Some(head(12, 2))));
        let Verdict::Flaps(what) = flaps.observe(&fleet(Some(head(10, 0)), Some(head(11, 1))))
        else {
            panic!("the newest release went back")
        };
        assert!(what.contains("went back from 12 to 11"), "{what}");
        let mut flaps = Flaps::default();
        flaps.observe(&fleet(Some(head(10, 0)), Some(head(12, 2))));
        flaps.observe(&fleet(Some(head(11, 1)), Some(head(13, 3))));
        let Verdict::Flaps(what) = flaps.observe(&fleet(Some(head(10, 0)), Some(head(12, 2))))
        else {
            panic!("both came back")
        };
        assert_eq!(
            what,
            "the fleet's target release (10 → 11 → 10) and its newest successful release \
             (12 → 13 → 12)"
        );
        // A long streak shows its last eight answers.
        let streak: Vec<Answer> = (0..20).map(|i| (Some(i % 3), None)).collect();
        assert_eq!(
            describe_flap(&streak),
            "the fleet's target release (… → 0 → 1 → 2 → 0 → 1 → 2 → 0 → 1)"
        );
    }

    #[test]
    fn releases_that_follow_one_another_are_changes_not_flaps() {
        let mut flaps = Flaps::default();
        // A new release at every poll, then the target moving to it.
        for id in 10..40u64 {
            let hour = id as i64;
            assert_eq!(
                flaps.observe(&fleet(Some(head(10, 10)), Some(head(id, hour)))),
                Verdict::Changed,
                "{id}"
            );
        }
        assert_eq!(
            flaps.observe(&fleet(Some(head(39, 39)), Some(head(39, 39)))),
            Verdict::Changed
        );
        // A rollback of the target is a change too.
        assert_eq!(
            flaps.observe(&fleet(Some(head(12, 12)), Some(head(39, 39)))),
            Verdict::Changed
        );
    }

    fn info(services: &[(&str, Change, Status)], from: u64, to: u64) -> FleetUpdateInfo {
        let mut update = crate::rules::tests::example_info();
        update.originates_from__release.id = from;
        update.produces__release.id = to;
        let template = update.is_produced_by__service_update[0].clone();
        update.is_produced_by__service_update = services
            .iter()
            .map(|(name, change, status)| {
                let mut s = template.clone();
                s.service_name = (*name).to_owned();
                s.change = *change;
                s.status = *status;
                s
            })
            .collect();
        FleetUpdateInfo {
            application: crate::model::FleetSummary {
                id: 1,
                slug: "o/f".into(),
            },
            produces__release: update.produces__release.clone(),
            transitions: vec![crate::model::FleetTransition {
                device_count: 2,
                update,
                devices_without_deltas: Default::default(),
                download_size_without_deltas: Default::default(),
            }],
            overall_status: Status::Pending,
            estimated_fleet_payload_size: None,
            payload_size_unknown: false,
            devices_on_target: 0,
            devices_without_release: 0,
            estimated_fleet_download_size: None,
            download_size_unknown: false,
            devices_without_release_download_size: Default::default(),
        }
    }

    #[test]
    fn each_ready_delta_is_reported_once() {
        let mut lines = DeltaLines::default();
        let first = info(
            &[
                ("api", Change::Changed, Status::Preparing),
                ("main", Change::Changed, Status::Ready),
                ("new", Change::New, Status::Ready),
                ("same", Change::Unchanged, Status::Ready),
            ],
            1,
            2,
        );
        assert_eq!(lines.newly_ready(&first), [("main".into(), 1, 2)]);
        assert!(lines.newly_ready(&first).is_empty());
        let later = info(
            &[
                ("api", Change::Changed, Status::Ready),
                ("main", Change::Changed, Status::Ready),
            ],
            1,
            2,
        );
        assert_eq!(lines.newly_ready(&later), [("api".into(), 1, 2)]);
    }

    #[test]
    fn deltas_no_longer_built_are_named_with_the_reason() {
        let mut state = info(
            &[
                ("api", Change::Changed, Status::Preparing),
                ("main", Change::Changed, Status::Pending),
                ("proxy", Change::Changed, Status::Pending),
                ("new", Change::New, Status::Pending),
            ],
            1,
            2,
        );
        let services = &mut state.transitions[0].update.is_produced_by__service_update;
        services[1].delta_failure = Some(crate::model::DeltaFailure {
            delta_id: Some(7),
            error_message: Some("disk full".into()),
            attempts: 1,
            http_status: None,
        });
        services[2].delta_failure = None;
        let stopped = stopped_deltas(&state, &|f| f.is_none_or(|f| f.attempts >= 3));
        assert_eq!(
            stopped.len(),
            1,
            "a failure with attempts left: {stopped:?}"
        );
        assert!(stopped[0].1.contains("stale"), "{}", stopped[0].1);
        let stopped = stopped_deltas(&state, &|_| true);
        assert_eq!(stopped.len(), 2, "{stopped:?}");
        assert_eq!(stopped[0].0, ("main".into(), 1, 2));
        assert!(stopped[0].1.contains("disk full"), "{}", stopped[0].1);
        assert!(stopped[1].1.contains("stale"), "{}", stopped[1].1);
    }

    #[test]
    fn the_poll_answer_is_decoded_strictly() {
        let body = br#"{"d":[{"id":1,"slug":"o/f",
            "should_be_running__release":[{"id":10,"commit":"abc","created_at":"2026-12-02T15:04:05.000Z"}],
            "owns__release":[{"id":12,"commit":"def","created_at":"2026-12-02T16:04:05.000Z"}]}]}"#;
        let head = decode_head(body).unwrap().unwrap();
        assert_eq!(head.watched().unwrap().id, 12);
        let empty = br#"{"d":[{"id":1,"should_be_running__release":[],"owns__release":[]}]}"#;
        assert_eq!(decode_head(empty).unwrap().unwrap(), fleet(None, None));
        assert_eq!(decode_head(br#"{"d":[]}"#).unwrap(), None);
        let err =
            decode_head(br#"{"d":[{"should_be_running__release":[{"id":"x"}]}]}"#).unwrap_err();
        assert!(matches!(err, Error::Decode { .. }), "{err}");
        assert!(!ends_the_watch(&err));
    }
}
