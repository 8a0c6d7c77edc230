//! Preparing an update: the rounds after the first read. Ask the delta
//! server for the missing deltas, read the state again, and optionally wait
//! on an adaptive schedule until everything is ready, all under one hard
//! deadline. What is tracked across rounds, and the rules for what to ask
//! again, are in [`tracking`].

mod tracking;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use crate::client::Client;
use crate::error::Error;
use crate::event::Event;
use crate::http::Sink;
use crate::model::Report;
use crate::poll::PollPolicy;
use crate::queries::nested_delta_queries;
use crate::reference::ReleaseRef;
use crate::round::DeltaRead;

pub(crate) use tracking::{FleetTracker, Tracked, Tracker};

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
    /// How many delta requests run at the same time (default 64: a round's
    /// requests go out in one wave, so the delta server's holds overlap).
    pub trigger_concurrency: usize,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        PrepareOptions {
            wait: false,
            deadline: None,
            poll: PollPolicy::default(),
            max_attempts_per_delta: 3,
            trigger_concurrency: 64,
        }
    }
}

/// Keeps the newest state for the timeout error.
pub(crate) struct LastState(Mutex<Option<Arc<Report>>>);

impl LastState {
    pub(crate) fn new() -> Self {
        LastState(Mutex::new(None))
    }

    pub(crate) fn set(&self, report: &Arc<Report>) {
        // A poisoned lock holds a complete older value; overwrite it.
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(report));
    }

    pub(crate) fn take(&self) -> Option<Report> {
        let report = self.0.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        Some(Arc::unwrap_or_clone(report))
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
impl Client {
    async fn poll_deltas<T: Tracked>(
        &self,
        tracker: &T,
        events: Sink<'_>,
    ) -> Result<DeltaRead, Error> {
        let by_release = tracker
            .delta_releases()
            .filter(|_| self.lookup_by_release());
        let Some((from, to)) = by_release else {
            return self.read_deltas(&tracker.delta_pairs(), events).await;
        };
        let from: Vec<&ReleaseRef> = from.iter().collect();
        let queries = nested_delta_queries(&from, &to);
        match self.read_deltas_by_release(&queries, events).await {
            Err(error) => self.fall_back(error, &tracker.delta_pairs(), events).await,
            read => read,
        }
    }

    /// The rounds of a prepare call after the first read: request the
    /// deltas, read again, and with `options.wait` repeat on the poll
    /// schedule until the state is ready, or until every delta that is not
    /// ready has been given up on.
    pub(crate) async fn prepare_rounds<T: Tracked>(
        &self,
        mut tracker: T,
        mut read: DeltaRead,
        options: &PrepareOptions,
        events: Sink<'_>,
        last: &LastState,
    ) -> Result<T::Info, Error> {
        // The first request is always sent.
        let max_attempts = options.max_attempts_per_delta.max(1);
        let mut waiting_since = None;
        let mut round = 1;
        loop {
            self.fetch_delta_manifests(&read, options.deadline).await;
            let info = tracker.evaluate(&read);
            let report = Arc::new(T::report(&info));
            last.set(&report);
            events(Event::Round {
                report,
                attempt: round,
            });
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
            read = loop {
                match self.poll_deltas(&tracker, events).await {
                    Ok(read) => break read,
                    // A wait outlasts outages: the deadline is its bound.
                    Err(error) if options.wait && error.is_transient() => {
                        let pause = options
                            .poll
                            .delay(since.elapsed(), self.inner.http.random_unit());
                        tracing::debug!(%error, ?pause, "reading the deltas failed; waiting on");
                        events(Event::Retrying {
                            what: "delta query".to_owned(),
                            attempt: round,
                            delay: pause,
                            reason: error.to_string(),
                        });
                        tokio::time::sleep(pause).await;
                    }
                    Err(error) => return Err(error),
                }
            };
            round += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_deadline_cancels_the_work_and_keeps_the_last_state() {
        let last = LastState::new();
        let report = Arc::new(Report::Transition(crate::rules::tests::example_info()));
        last.set(&report);
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let started = Instant::now();
        let result: Result<(), Error> = with_deadline(
            Some(deadline),
            async {
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                Ok(())
            },
            || {
                assert_eq!(last.take().as_ref(), Some(&*report));
                Error::Timeout { last: None }
            },
        )
        .await;
        assert!(matches!(result, Err(Error::Timeout { .. })));
        assert_eq!(started.elapsed(), std::time::Duration::from_secs(5));
    }
}
