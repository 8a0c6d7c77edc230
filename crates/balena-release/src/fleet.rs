//! The fleet view: one transition per release the fleet's devices run now,
//! all read with few requests (application, devices, releases and deltas:
//! four for the first round and one per poll, up to 100 releases), and the
//! download summed over devices.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::client::Client;
use crate::error::{Error, Server};
use crate::event::Event;
use crate::http::{Sink, no_events};
use crate::model::{FleetSummary, FleetTransition, FleetUpdateInfo, Status, UpdateInfo};
use crate::odata::{self, Query};
use crate::prepare::{LastState, PrepareOptions, Tracked, with_deadline};
use crate::reference::{FleetRef, ReleaseRef};
use crate::report::{self, Pair, Requests};
use crate::round::{
    DeltaRead, Tracker, check_images, nested_delta_queries, release_queries, resolve,
};
use crate::wire::{self, Application, Source};

/// Groups the devices' current releases: (release id, device count), most
/// devices first, then by release id. Devices without a release are left
/// out.
pub(crate) fn group_devices(releases: &[Option<u64>]) -> Vec<(u64, u64)> {
    let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
    for id in releases.iter().flatten() {
        *counts.entry(*id).or_insert(0) += 1;
    }
    let mut groups: Vec<(u64, u64)> = counts.into_iter().collect();
    groups.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    groups
}

/// The state of a fleet update across rounds.
#[derive(Debug, Clone)]
pub(crate) struct FleetTracker {
    application: FleetSummary,
    target: crate::model::ReleaseSummary,
    /// (device count, transition), in output order.
    transitions: Vec<(u64, Tracker)>,
    requests: Requests,
}

impl FleetTracker {
    /// Every image pair needing a delta, without repeats.
    fn delta_pairs(&self) -> Vec<Pair> {
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
            .map(|(count, t)| FleetTransition {
                device_count: *count,
                update: t.evaluate(read),
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
        FleetUpdateInfo {
            application: self.application.clone(),
            produces__release: self.target.clone(),
            transitions,
            overall_status: overall,
            estimated_fleet_payload_size: (overall == Status::Ready).then_some(payload),
            payload_size_unknown: overall == Status::Ready && payload_size_unknown,
        }
    }
}

impl Client {
    async fn fetch_application(
        &self,
        fleet: &FleetRef,
        events: Sink<'_>,
    ) -> Result<Application, Error> {
        let filter = match fleet {
            FleetRef::Id(id) => odata::eq("id", *id),
            FleetRef::Slug(slug) => odata::eq_str("slug", slug),
        };
        let query =
            Query::new()
                .filter(filter)
                .select(&["id", "slug", "should_be_running__release"]);
        let answer = self
            .api_json("application", &query, "application", events)
            .await?;
        wire::application(
            &answer.body,
            &Source {
                server: Server::Api,
                what: "application",
            },
        )?
        .ok_or_else(|| Error::FleetNotFound {
            fleet: fleet.clone(),
        })
    }

    async fn fetch_device_releases(
        &self,
        application: u64,
        events: Sink<'_>,
    ) -> Result<Vec<Option<u64>>, Error> {
        let query = Query::new()
            .select(&["is_running__release"])
            .filter(odata::eq("belongs_to__application", application));
        let answer = self.api_json("device", &query, "device", events).await?;
        wire::device_releases(
            &answer.body,
            &Source {
                server: Server::Api,
                what: "device",
            },
        )
    }

    async fn first_fleet_round(
        &self,
        fleet: &FleetRef,
        to: Option<&ReleaseRef>,
        events: Sink<'_>,
    ) -> Result<(FleetTracker, DeltaRead), Error> {
        let application = self.fetch_application(fleet, events).await?;
        let target_ref = match (to, application.target) {
            (Some(r), _) => r.clone(),
            (None, Some(id)) => ReleaseRef::Id(id),
            (None, None) => {
                return Err(Error::FleetHasNoTarget {
                    fleet: application.slug,
                });
            }
        };
        let groups = group_devices(&self.fetch_device_releases(application.id, events).await?);
        let source_refs: Vec<ReleaseRef> =
            groups.iter().map(|(id, _)| ReleaseRef::Id(*id)).collect();
        let mut refs: Vec<&ReleaseRef> = source_refs.iter().collect();
        refs.push(&target_ref);
        let sources: Vec<&ReleaseRef> = source_refs.iter().collect();
        let (releases, nested) = self
            .releases_with_deltas(
                &release_queries(&refs),
                || {
                    if sources.is_empty() {
                        Vec::new()
                    } else {
                        nested_delta_queries(&sources, &target_ref)
                    }
                },
                events,
            )
            .await?;
        let target = resolve(&releases, &target_ref, Some(application.id))?;
        if target.application != application.id {
            return Err(Error::ReleaseNotInFleet {
                release: target.summary.id,
                release_application: target.application,
                fleet: application.slug,
            });
        }
        check_images(target)?;
        let transitions: Vec<(u64, Tracker)> = groups
            .iter()
            .filter_map(|(id, count)| {
                // A release that is gone (or unreadable) cannot be compared;
                // its devices are left out of the totals.
                let source = releases.iter().find(|r| r.summary.id == *id);
                if source.is_none() {
                    tracing::warn!(
                        release = id,
                        devices = count,
                        "devices run an unknown release"
                    );
                }
                source.map(|s| (*count, Tracker::new(report::pair(s, target))))
            })
            .collect();
        let tracker = FleetTracker {
            application: FleetSummary {
                id: application.id,
                slug: application.slug,
            },
            target: target.summary.clone(),
            transitions,
            requests: Requests::default(),
        };
        let read = self
            .first_deltas(nested, &tracker.delta_pairs(), events)
            .await?;
        Ok((tracker, read))
    }

    /// Compares every release that a fleet's devices run with the fleet's
    /// target release (or `to`): one transition per release, with device
    /// counts and the download summed over devices.
    ///
    /// Requests: the application, its devices, then at the same time the
    /// releases and their deltas, each in one request per 100 release ids
    /// (URLs stay short): four requests for up to 100 distinct releases
    /// (the target included), one or two more per further 100.
    ///
    /// Devices that run no release yet, or a release the token cannot read,
    /// are left out of the transitions and of the totals.
    pub async fn get_fleet_update_info(
        &self,
        fleet: &FleetRef,
        to: Option<&ReleaseRef>,
    ) -> Result<FleetUpdateInfo, Error> {
        let (mut tracker, read) = self.first_fleet_round(fleet, to, &no_events).await?;
        Ok(tracker.evaluate(&read))
    }

    /// Like [`Client::prepare_update`] for every transition of a fleet: each
    /// missing delta is requested once per round even when several
    /// transitions need it. At the deadline, [`Error::FleetTimeout`] carries
    /// the last state.
    ///
    /// API requests: the first round as [`Client::get_fleet_update_info`]
    /// (four for up to 100 distinct releases); each later round reads the
    /// deltas by release, one request per 100 source releases (by image pair
    /// when the server refuses that form: one request per 100 source or
    /// target images).
    pub async fn prepare_fleet_update(
        &self,
        fleet: &FleetRef,
        to: Option<&ReleaseRef>,
        options: &PrepareOptions,
        on_event: &(dyn Fn(Event) + Send + Sync),
    ) -> Result<FleetUpdateInfo, Error> {
        let last = LastState::new();
        with_deadline(
            options.deadline,
            self.prepare_fleet_inner(fleet, to, options, on_event, &last),
            || Error::FleetTimeout {
                last: last.take().map(Box::new),
            },
        )
        .await
    }

    async fn prepare_fleet_inner(
        &self,
        fleet: &FleetRef,
        to: Option<&ReleaseRef>,
        options: &PrepareOptions,
        events: Sink<'_>,
        last: &LastState<FleetUpdateInfo>,
    ) -> Result<FleetUpdateInfo, Error> {
        let (tracker, read) = self.first_fleet_round(fleet, to, events).await?;
        self.prepare_rounds(tracker, read, options, events, last)
            .await
    }
}

impl Tracked for FleetTracker {
    type Info = FleetUpdateInfo;

    fn delta_pairs(&self) -> Vec<Pair> {
        FleetTracker::delta_pairs(self)
    }

    /// A fleet has many more image pairs than releases: reading by release
    /// keeps a poll at one request per 100 source releases.
    fn delta_releases(&self) -> Option<(Vec<ReleaseRef>, ReleaseRef)> {
        if self.transitions.is_empty() {
            return None;
        }
        let sources = self
            .transitions
            .iter()
            .map(|(_, t)| ReleaseRef::Id(t.pairing.source.id))
            .collect();
        Some((sources, ReleaseRef::Id(self.target.id)))
    }

    fn evaluate(&mut self, read: &DeltaRead) -> FleetUpdateInfo {
        FleetTracker::evaluate(self, read)
    }

    fn is_ready(info: &FleetUpdateInfo) -> bool {
        info.overall_status == Status::Ready
    }

    fn round_event(info: Arc<FleetUpdateInfo>, attempt: u32) -> Event {
        Event::FleetRound { info, attempt }
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
        for ((_, tracker), transition) in self.transitions.iter().zip(&info.transitions) {
            let jobs = tracker
                .to_request(&transition.update, read, max_attempts)
                .map_err(|error| match error {
                    Error::DeltaFailed {
                        service,
                        attempts,
                        message,
                        ..
                    } => Error::FleetDeltaFailed {
                        from_release: transition.update.originates_from__release.id,
                        service,
                        attempts,
                        message,
                        last: Box::new(info.clone()),
                    },
                    other => other,
                })?;
            for job in jobs {
                if !out.iter().any(|(_, p)| *p == job.1) {
                    out.push(job);
                }
            }
        }
        Ok(out)
    }

    fn requests_mut(&mut self) -> &mut Requests {
        &mut self.requests
    }
}

/// The transitions of a fleet state, for callers that handle one at a time.
impl FleetUpdateInfo {
    /// The transition from release `id`, if devices run it.
    pub fn transition_from(&self, id: u64) -> Option<&UpdateInfo> {
        self.transitions
            .iter()
            .map(|t| &t.update)
            .find(|u| u.originates_from__release.id == id)
    }
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::*;
    use crate::report::tests::{delta, image, release};

    #[test]
    fn devices_group_by_release_most_first() {
        let devices = [Some(5), Some(3), None, Some(5), Some(9), Some(3), Some(5)];
        assert_eq!(group_devices(&devices), [(5, 3), (3, 2), (9, 1)]);
        assert!(group_devices(&[None, None]).is_empty());
    }

    fn now() -> Timestamp {
        "2026-11-25T19:00:00Z".parse().unwrap()
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
        FleetTracker {
            application: FleetSummary {
                id: 1,
                slug: "org/fleet".into(),
            },
            target: target.summary.clone(),
            transitions: vec![
                (4, Tracker::new(report::pair(&newer, &target))),
                (2, Tracker::new(report::pair(&old, &target))),
                (1, Tracker::new(report::pair(&target, &target))),
            ],
            requests: Requests::default(),
        }
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
    fn fleet_gives_up_after_the_cap() {
        let mut f = fleet();
        f.requests.attempts.insert((10, 30), 3);
        let read = DeltaRead {
            rows: vec![delta(5, (10, 30), "failed", now())],
            now: now(),
        };
        let info = f.evaluate(&read);
        let err = f.to_request(&info, &read, 3).unwrap_err();
        match err {
            Error::FleetDeltaFailed {
                from_release,
                service,
                attempts: 3,
                last,
                ..
            } => {
                assert_eq!(service, "main");
                assert_eq!(from_release, 1);
                assert_eq!(last.transitions.len(), 3, "the whole fleet's state");
            }
            other => panic!("{other:?}"),
        }
        let f = fleet();
        assert_eq!(
            f.to_request(&info, &read, 3).unwrap(),
            [("main".to_owned(), (20, 30)), ("main".to_owned(), (10, 30))]
        );
    }
}
