//! The fleet view: one transition per release the fleet's devices run now,
//! all read with few requests (application, devices, releases and deltas:
//! four for the first round and one per poll, up to 100 releases), and the
//! download summed over devices.

use std::collections::BTreeMap;

use crate::client::Client;
use crate::download::ManifestRef;
use crate::error::{Error, Server};
use crate::http::Effort;
use crate::http::Sink;
use crate::model::{FleetSummary, FleetUpdateInfo, UpdateInfo};
use crate::prepare::{FleetTracker, Tracker};
use crate::queries::{application_query, device_query, release_queries};
use crate::reference::{FleetRef, ReleaseRef};
use crate::resolve::{check_images, resolve};
use crate::round::{DeltaRead, image_manifests};
use crate::rules;
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

impl Client {
    /// Reads the fleet named by `fleet`.
    async fn fetch_application(
        &self,
        fleet: &FleetRef,
        events: Sink<'_>,
    ) -> Result<Application, Error> {
        let answer = self
            .api_json(
                "application",
                &application_query(fleet),
                "application",
                Effort::Full,
                events,
            )
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

    /// Reads the release each device of fleet `application` runs.
    async fn fetch_device_releases(
        &self,
        application: u64,
        events: Sink<'_>,
    ) -> Result<Vec<Option<u64>>, Error> {
        let answer = self
            .api_json(
                "device",
                &device_query(application),
                "device",
                Effort::Full,
                events,
            )
            .await?;
        wire::device_releases(
            &answer.body,
            &Source {
                server: Server::Api,
                what: "device",
            },
        )
    }

    /// The first round of a fleet: the application, its devices, then the
    /// releases and the deltas at the same time.
    pub(crate) async fn first_fleet_round(
        &self,
        fleet: &FleetRef,
        to: Option<&ReleaseRef>,
        deadline: Option<tokio::time::Instant>,
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
        let (releases, nested) = self
            .releases_with_deltas(
                &release_queries(&refs),
                || (!source_refs.is_empty()).then(|| (source_refs.clone(), target_ref.clone())),
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
                source.map(|s| {
                    let tracker = Tracker::new(rules::pair(s, target))
                        .with_registry(self.inner.registry.clone());
                    (*count, tracker)
                })
            })
            .collect();
        let mut images: Vec<ManifestRef> = transitions
            .iter()
            .flat_map(|(_, t)| image_manifests(&t.pairing))
            .collect();
        images.sort_unstable();
        images.dedup();
        let tracker = FleetTracker::new(
            FleetSummary {
                id: application.id,
                slug: application.slug,
            },
            target.summary.clone(),
            transitions,
        );
        let read = self
            .deltas_and_registry(nested, &tracker.delta_pairs(), &images, deadline, events)
            .await?;
        Ok((tracker, read))
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
    use super::*;

    #[test]
    fn devices_group_by_release_most_first() {
        let devices = [Some(5), Some(3), None, Some(5), Some(9), Some(3), Some(5)];
        assert_eq!(group_devices(&devices), [(5, 3), (3, 2), (9, 1)]);
        assert!(group_devices(&[None, None]).is_empty());
    }
}
