//! Preparing an update: asking the delta server for the missing deltas
//! (concurrently, bounded), re-reading the state, and optionally waiting on
//! an adaptive schedule until everything is ready, re-requesting deltas that
//! fail or go stale, all under one hard deadline.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use futures_util::{StreamExt, TryStreamExt, stream};
use tokio::time::Instant;

use crate::client::Client;
use crate::error::{Error, Server};
use crate::event::{Event, TriggerOutcome};
use crate::http::{Attempt, Sent, Sink, server_message, short_url, shorten};
use crate::model::{DeltaFailure, Status, UpdateInfo};
use crate::poll::PollPolicy;
use crate::reference::ReleaseRef;
use crate::report::{Pair, Refusal, Requests, building_on_server};
use crate::round::{DeltaRead, Tracker, nested_delta_queries};

/// How [`Client::prepare_update`] works.
#[derive(Debug, Clone, PartialEq)]
pub struct PrepareOptions {
    /// Keep polling until the update is ready (otherwise return the state
    /// read right after requesting the deltas).
    pub wait: bool,
    /// A hard deadline for the whole call, in-flight requests included.
    pub deadline: Option<Instant>,
    /// The poll schedule while waiting.
    pub poll: PollPolicy,
    /// How many times one delta is requested before giving up on it while
    /// waiting (default 3; the first request is always sent).
    pub max_attempts_per_delta: u32,
    /// How many delta requests run at the same time (default 8).
    pub trigger_concurrency: usize,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        PrepareOptions {
            wait: false,
            deadline: None,
            poll: PollPolicy::default(),
            max_attempts_per_delta: 3,
            trigger_concurrency: 8,
        }
    }
}

/// Keeps the newest state for the timeout error.
pub(crate) struct LastState<T>(Mutex<Option<T>>);

impl<T: Clone> LastState<T> {
    pub(crate) fn new() -> Self {
        LastState(Mutex::new(None))
    }

    pub(crate) fn set(&self, value: &T) {
        // A poisoned lock holds a complete older value; overwrite it.
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(value.clone());
    }

    pub(crate) fn take(&self) -> Option<T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Runs `work` under an optional deadline; on expiry, `timeout` builds the
/// error (the future is dropped, cancelling every request in it).
pub(crate) async fn with_deadline<T, F>(
    deadline: Option<Instant>,
    work: F,
    timeout: impl FnOnce() -> Error,
) -> Result<T, Error>
where
    F: Future<Output = Result<T, Error>>,
{
    match deadline {
        None => work.await,
        Some(deadline) => match tokio::time::timeout_at(deadline, work).await {
            Ok(result) => result,
            Err(_) => Err(timeout()),
        },
    }
}

/// What to do with a service's delta after a poll while waiting.
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
/// ([`pairs_to_request`]), or which one to give up on because it has
/// already been requested `max_attempts` times.
pub(crate) fn next_step(
    tracker: &Tracker,
    info: &UpdateInfo,
    read: &DeltaRead,
    max_attempts: u32,
) -> NextStep {
    let again = pairs_to_request(tracker, info, read);
    let capped = again
        .iter()
        .find(|pair| tracker.requests.attempts(**pair) >= max_attempts);
    match capped {
        Some(pair) => NextStep::GiveUp(*pair),
        None if again.is_empty() => match only_refusals_left(tracker, info) {
            Some(pair) => NextStep::GiveUp(pair),
            None => NextStep::Wait,
        },
        None => NextStep::Trigger(again),
    }
}

/// A refused pair, when every service not ready yet was refused by the
/// delta server: nothing is left to wait for.
fn only_refusals_left(tracker: &Tracker, info: &UpdateInfo) -> Option<Pair> {
    let mut refused = None;
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
        if !tracker.requests.refused.contains_key(&pair) {
            return None;
        }
        refused.get_or_insert(pair);
    }
    refused
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
        attempts: tracker.requests.attempts(pair),
        message,
        last: Box::new(info.clone()),
    }
}

impl Client {
    /// Asks the delta server for the delta of one image pair. A refusal
    /// (a 4xx other than 401 and 429) concerns this service only and is
    /// returned; anything else that fails ends the run.
    pub(crate) async fn trigger(
        &self,
        service: &str,
        pair: Pair,
        events: Sink<'_>,
    ) -> Result<Option<Refusal>, Error> {
        let mut url = self.inner.delta.clone();
        let path = format!("{}/api/v3/delta", url.path().trim_end_matches('/'));
        url.set_path(&path);
        url.set_query(Some(&format!("src={}&dest={}", pair.0, pair.1)));
        let what = format!("delta request for service `{service}`");
        let (outcome, refusal) = self
            .inner
            .http
            .retrying(&what, events, || async {
                match self.inner.http.send(&url).await {
                    // Readiness comes from the delta rows; a slow answer
                    // only means the build is still going.
                    Sent::TimedOut(_) => Attempt::Done((TriggerOutcome::TimedOut, None)),
                    Sent::Unreachable(message) => Attempt::Retry {
                        reason: message.clone(),
                        after: None,
                        error: Error::Transport {
                            server: Server::Delta,
                            url: short_url(&url),
                            message,
                        },
                    },
                    Sent::UnknownHost(message) => Attempt::Fail(Error::Transport {
                        server: Server::Delta,
                        url: short_url(&url),
                        message,
                    }),
                    Sent::Answer {
                        status,
                        body,
                        retry_after,
                        location,
                        ..
                    } => {
                        let code = status.as_u16();
                        let message = || server_message(&body, location.as_deref(), status);
                        let delta_error = || Error::Delta {
                            service: service.to_owned(),
                            status: Some(code),
                            message: message(),
                        };
                        match code {
                            200..=299 => Attempt::Done((TriggerOutcome::Accepted, None)),
                            // Devices read 502 and 504 as "still building"; a
                            // 503 is an outage: retried first (see below).
                            502 | 504 => Attempt::Done((
                                TriggerOutcome::StillProcessing { status: code },
                                None,
                            )),
                            401 => Attempt::Fail(Error::Unauthorized {
                                server: Server::Delta,
                                with_token: self.inner.http.has_token(),
                            }),
                            429 | 500..=599 => Attempt::Retry {
                                reason: format!("`{code}`"),
                                after: retry_after,
                                error: delta_error(),
                            },
                            // Devices fall back to a full pull for this
                            // service; the others are not concerned.
                            400..=499 => Attempt::Done((
                                TriggerOutcome::Refused { status: code },
                                Some(Refusal {
                                    status: code,
                                    message: message(),
                                }),
                            )),
                            _ => Attempt::Fail(delta_error()),
                        }
                    }
                }
            })
            .await
            .or_else(|error| match error {
                // A 503 is retried like any outage; one that lasts counts as
                // "still processing", as 502 and 504 do: the rows tell the rest.
                Error::Delta {
                    status: Some(503), ..
                } => Ok((TriggerOutcome::StillProcessing { status: 503 }, None)),
                other => Err(other),
            })?;
        events(Event::Triggered {
            service_name: service.to_owned(),
            source_image: pair.0,
            target_image: pair.1,
            outcome,
        });
        Ok(refusal)
    }

    /// Requests the deltas of `jobs` (service name, image pair) with bounded
    /// concurrency, counting attempts and refusals per pair.
    pub(crate) async fn trigger_all(
        &self,
        jobs: Vec<(String, Pair)>,
        requests: &mut Requests,
        concurrency: usize,
        events: Sink<'_>,
    ) -> Result<(), Error> {
        for (_, pair) in &jobs {
            *requests.attempts.entry(*pair).or_insert(0) += 1;
        }
        let answers = stream::iter(jobs.iter().map(|(service, pair)| async move {
            Ok::<_, Error>((*pair, self.trigger(service, *pair, events).await?))
        }))
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<_>>()
        .await?;
        for (pair, refusal) in answers {
            requests.answered(pair, refusal);
        }
        Ok(())
    }

    /// Compares two releases and requests every missing delta.
    ///
    /// Reads the state once; if it is ready, returns it. Otherwise asks the
    /// delta server for the delta of every pending changed service, reads
    /// the state again and returns it — or, with `options.wait`, polls on
    /// `options.poll` until everything is ready, requesting a delta again
    /// when it fails or goes stale (at most `max_attempts_per_delta` times,
    /// then [`Error::DeltaFailed`]). A request the delta server refuses (a
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
        let last = LastState::new();
        with_deadline(
            options.deadline,
            self.prepare_inner(from, to, options, on_event, &last),
            || Error::Timeout {
                last: last.take().map(Box::new),
            },
        )
        .await
    }

    async fn prepare_inner(
        &self,
        from: &ReleaseRef,
        to: &ReleaseRef,
        options: &PrepareOptions,
        events: Sink<'_>,
        last: &LastState<UpdateInfo>,
    ) -> Result<UpdateInfo, Error> {
        let (tracker, read) = self.first_round(from, to, events).await?;
        self.prepare_rounds(tracker, read, options, events, last)
            .await
    }

    /// The delta rows of a later round: by the releases when the tracker
    /// names them and the server takes the one-query lookup, else by the
    /// image pairs.
    async fn poll_deltas<T: Tracked>(
        &self,
        tracker: &T,
        events: Sink<'_>,
    ) -> Result<DeltaRead, Error> {
        let by_release = tracker
            .delta_releases()
            .filter(|_| self.inner.nested_deltas.load(Ordering::Relaxed));
        match by_release {
            Some((from, to)) => {
                let from: Vec<&ReleaseRef> = from.iter().collect();
                self.fetch_deltas(&nested_delta_queries(&from, &to), events)
                    .await
            }
            None => self.read_deltas(&tracker.delta_pairs(), events).await,
        }
    }

    /// The rounds of a prepare call after the first read: request the
    /// deltas, read again, and with `options.wait` repeat on the poll
    /// schedule until the state is ready or a delta is given up on.
    pub(crate) async fn prepare_rounds<T: Tracked>(
        &self,
        mut tracker: T,
        mut read: DeltaRead,
        options: &PrepareOptions,
        events: Sink<'_>,
        last: &LastState<T::Info>,
    ) -> Result<T::Info, Error> {
        // The first request is always sent.
        let max_attempts = options.max_attempts_per_delta.max(1);
        let mut waiting_since = None;
        let mut round = 1;
        loop {
            let info = tracker.evaluate(&read);
            last.set(&info);
            events(T::round_event(Arc::new(info.clone()), round));
            if T::is_ready(&info) || (round > 1 && !options.wait) {
                return Ok(info);
            }
            let jobs = tracker.to_request(&info, &read, max_attempts)?;
            // Without a new request, round 1 is still the latest state.
            if round == 1 && jobs.is_empty() && !options.wait {
                return Ok(info);
            }
            // Right after the first requests, read at once; later, pause.
            let pause_first = round > 1 || jobs.is_empty();
            if !jobs.is_empty() && self.inner.no_delta_resource.load(Ordering::Relaxed) {
                return Err(Error::NoDeltas {
                    api: self.inner.api.to_string(),
                });
            }
            if !jobs.is_empty() {
                self.trigger_all(
                    jobs,
                    tracker.requests_mut(),
                    options.trigger_concurrency,
                    events,
                )
                .await?;
            }
            let since: Instant = *waiting_since.get_or_insert_with(Instant::now);
            if pause_first {
                let pause = options
                    .poll
                    .delay(since.elapsed(), self.inner.http.random_unit());
                events(Event::Sleeping { for_: pause });
                tokio::time::sleep(pause).await;
            }
            read = self.poll_deltas(&tracker, events).await?;
            round += 1;
        }
    }
}

/// What a prepare call tracks across rounds: one transition
/// ([`Tracker`]) or a whole fleet.
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

    fn round_event(info: Arc<Self::Info>, attempt: u32) -> Event;

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

    fn round_event(info: Arc<UpdateInfo>, attempt: u32) -> Event {
        Event::Round { info, attempt }
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

#[cfg(test)]
mod tests {
    use jiff::{SignedDuration, Timestamp};

    use super::*;
    use crate::report::tests::{delta, image, release};
    use crate::report::{evaluate, pair};
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
        assert_eq!(
            next_step(&t, &info, &read(&rows), 3),
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
            "the delta for service `b` could not be prepared (3 request(s)): the delta server \
             reported `build 7 failed`"
        );
        assert!(err.last_state().is_some());
        let err = delta_failed(&t, &evaluate(&t.pairing, &[], now(), &t.requests), (11, 21));
        assert!(
            err.to_string().contains("never started or went stale"),
            "{err}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_cancels_the_work_and_keeps_the_last_state() {
        let last = LastState::new();
        last.set(&7u32);
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let started = Instant::now();
        let result: Result<(), Error> = with_deadline(
            Some(deadline),
            async {
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                Ok(())
            },
            || {
                assert_eq!(last.take(), Some(7));
                Error::Timeout { last: None }
            },
        )
        .await;
        assert!(matches!(result, Err(Error::Timeout { .. })));
        assert_eq!(started.elapsed(), std::time::Duration::from_secs(5));
    }
}
