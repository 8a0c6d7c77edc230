//! The fleet view: one transition per (release a device runs, release it
//! should run) pair, read with few requests, and the download summed over
//! devices. A device's target is its pin, else the fleet's target (or the
//! release asked for): what the API computes as a device's
//! `should_be_running__release`. The API counts the devices that follow the
//! fleet, so that what the first round reads grows with the releases and
//! the pinned devices, not with the fleet; a server that refuses to count
//! is read device by device for the rest of the process.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;

use crate::client::Client;
use crate::delta_settings::{self, DeviceSetting};
use crate::download::ManifestRef;
use crate::error::{Error, Server};
use crate::http::Effort;
use crate::http::Sink;
use crate::model::{FleetSummary, FleetUpdateInfo, UpdateInfo};
use crate::prepare::{FleetTracker, Tracker};
use crate::queries::{
    application_query, device_count_query, device_query, device_variables_query,
    fleet_delta_queries, fleet_variables_query, pinned_device_query, release_queries,
};
use crate::reference::{FleetRef, ReleaseRef};
use crate::resolve::{check_images, resolve};
use crate::round::{DeltaRead, image_manifests};
use crate::rules;
use crate::wire::{self, Application, Device, Source};

/// A fleet's devices, as counted by the API or read row by row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Devices {
    /// Devices that follow the fleet, per release they run.
    following: BTreeMap<u64, u64>,
    /// Pinned devices that run a release, per (running, pinned) release.
    pinned: BTreeMap<(u64, u64), u64>,
    without_release: u64,
}

impl Devices {
    /// From every device's row.
    pub(crate) fn from_rows(rows: &[Device]) -> Self {
        let mut devices = Devices::default();
        for row in rows {
            match (row.running, row.pinned) {
                (None, _) => devices.without_release = devices.without_release.saturating_add(1),
                (Some(running), None) => add(devices.following.entry(running).or_insert(0), 1),
                (Some(running), Some(pin)) => {
                    add(devices.pinned.entry((running, pin)).or_insert(0), 1);
                }
            }
        }
        devices
    }

    /// From the API's counts: the devices without a release (pinned or
    /// not), the devices that follow the fleet per release they run, and
    /// the pinned devices' rows.
    pub(crate) fn from_counts(
        without_release: u64,
        following: &[(u64, u64)],
        pinned: &[Device],
    ) -> Self {
        let mut devices = Devices {
            without_release,
            ..Devices::default()
        };
        for &(release, count) in following.iter().filter(|(_, n)| *n > 0) {
            add(devices.following.entry(release).or_insert(0), count);
        }
        // A pinned device without a release is in `without_release`.
        for row in pinned {
            if let (Some(running), Some(pin)) = (row.running, row.pinned) {
                add(devices.pinned.entry((running, pin)).or_insert(0), 1);
            }
        }
        devices
    }

    /// Every release a device runs or is pinned to.
    fn releases(&self) -> BTreeSet<u64> {
        self.following
            .keys()
            .copied()
            .chain(self.pinned.keys().flat_map(|(r, p)| [*r, *p]))
            .collect()
    }

    /// The source and target releases of every transition, before the
    /// fleet's target `target` is resolved to an id: what the delta query
    /// of the first round covers.
    fn delta_releases(&self, target: &ReleaseRef) -> (Vec<ReleaseRef>, Vec<ReleaseRef>) {
        let mut sources = BTreeSet::new();
        let mut pins = BTreeSet::new();
        let mut to_target = false;
        for running in self.following.keys() {
            if *target != ReleaseRef::Id(*running) {
                sources.insert(*running);
                to_target = true;
            }
        }
        for (running, pin) in self.pinned.keys().filter(|(r, p)| r != p) {
            sources.insert(*running);
            pins.insert(*pin);
        }
        let mut targets: Vec<ReleaseRef> = Vec::new();
        if to_target {
            targets.push(target.clone());
        }
        for pin in pins.into_iter().map(ReleaseRef::Id) {
            if !targets.contains(&pin) {
                targets.push(pin);
            }
        }
        (sources.into_iter().map(ReleaseRef::Id).collect(), targets)
    }
}

/// Adds device counts without wrapping: a server may report any count.
fn add(total: &mut u64, count: u64) {
    *total = total.saturating_add(count);
}

/// Where a fleet's devices go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grouping {
    /// (device count, running release, target release) with running ≠
    /// target: most devices first, then by running and target id.
    pub(crate) transitions: Vec<(u64, u64, u64)>,
    /// Devices that run their target already.
    pub(crate) on_target: u64,
    /// Devices that run no release.
    pub(crate) without_release: u64,
}

/// Groups devices by (running, target) release: pinned devices go to their
/// pin, the others to `target` (the fleet's target, or the release asked
/// for).
pub(crate) fn group_devices(devices: &Devices, target: u64) -> Grouping {
    let mut pairs: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    let following = devices.following.iter().map(|(r, n)| ((*r, target), *n));
    for (pair, count) in following.chain(devices.pinned.iter().map(|(p, n)| (*p, *n))) {
        add(pairs.entry(pair).or_insert(0), count);
    }
    let mut on_target = 0;
    let mut transitions = Vec::new();
    for ((running, to), count) in pairs {
        if running == to {
            add(&mut on_target, count);
        } else {
            transitions.push((count, running, to));
        }
    }
    transitions.sort_by(|a, b| b.0.cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
    Grouping {
        transitions,
        on_target,
        without_release: devices.without_release,
    }
}

/// Whether an error to a counting query means "this server does not count
/// here" (a status other than 429, or an answer of another shape) rather
/// than a failure of the run.
fn counting_unsupported(error: &Error) -> bool {
    match error {
        Error::Api { status, .. } => *status != 429,
        Error::Transport { server, .. }
        | Error::Unauthorized { server, .. }
        | Error::Forbidden { server, .. }
        | Error::Decode { server, .. } => *server == Server::Api,
        _ => false,
    }
}

const DEVICE_SOURCE: Source<'static> = Source {
    server: Server::Api,
    what: "device",
};

impl Client {
    /// The delta settings of fleet `application` (its own, then its
    /// devices' with their releases): two requests, whatever the number of
    /// devices. A server that cannot tell means balenaCloud's default (deltas
    /// on), noted at `-v`.
    async fn read_delta_settings(
        &self,
        application: u64,
        events: Sink<'_>,
    ) -> (bool, Vec<DeviceSetting>) {
        let source = |what| Source {
            server: Server::Api,
            what,
        };
        let (fleet_query, device_query) = (
            fleet_variables_query(application),
            device_variables_query(application),
        );
        let (fleet, devices) = tokio::join!(
            self.api_json(
                "application_config_variable",
                &fleet_query,
                "fleet configuration",
                self.probe(),
                events,
            ),
            self.api_json(
                "device_config_variable",
                &device_query,
                "device configuration",
                self.probe(),
                events,
            ),
        );
        let fleet = fleet.and_then(|a| wire::variables(&a.body, &source("fleet configuration")));
        let devices =
            devices.and_then(|a| wire::device_variables(&a.body, &source("device configuration")));
        let fleet = fleet.unwrap_or_else(|error| {
            tracing::info!(%error, "the fleet's delta settings are unknown; deltas count as on");
            Vec::new()
        });
        let devices = devices.unwrap_or_else(|error| {
            tracing::info!(%error, "the devices' delta settings are unknown; deltas count as on");
            Vec::new()
        });
        // Per device: its releases (from its first row) and its variables.
        let mut own: BTreeMap<u64, (&wire::DeviceVariable, Vec<delta_settings::Variable>)> =
            BTreeMap::new();
        for v in &devices {
            own.entry(v.device)
                .or_insert((v, Vec::new()))
                .1
                .push(v.variable.clone());
        }
        let settings = own
            .into_values()
            .map(|(device, variables)| DeviceSetting {
                running: device.running,
                pinned: device.pinned,
                deltas_on: delta_settings::deltas_on(&variables, &fleet),
            })
            .collect();
        (delta_settings::deltas_on(&[], &fleet), settings)
    }

    /// Reads the fleet named by `fleet`; with `count`, also the number of
    /// its devices without a release.
    async fn fetch_application(
        &self,
        fleet: &FleetRef,
        count: bool,
        events: Sink<'_>,
    ) -> Result<Application, Error> {
        let answer = self
            .api_json(
                "application",
                &application_query(fleet, count),
                "application",
                if count { self.probe() } else { Effort::Full },
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

    /// Reads device rows.
    async fn fetch_devices(
        &self,
        query: &crate::odata::Query,
        events: Sink<'_>,
    ) -> Result<Vec<Device>, Error> {
        let answer = self
            .api_json("device", query, "device", Effort::Full, events)
            .await?;
        wire::devices(&answer.body, &DEVICE_SOURCE)
    }

    /// Reads the count of the devices that follow fleet `application`, per
    /// release they run.
    async fn fetch_device_counts(
        &self,
        application: u64,
        events: Sink<'_>,
    ) -> Result<Vec<(u64, u64)>, Error> {
        let answer = self
            .api_json(
                "release",
                &device_count_query(application),
                "device count",
                self.probe(),
                events,
            )
            .await?;
        wire::release_device_counts(
            &answer.body,
            &Source {
                server: Server::Api,
                what: "device count",
            },
        )
    }

    /// Stops counting devices on this server when `error` says it does not
    /// count; any other error is returned.
    fn stop_counting(&self, error: Error) -> Result<(), Error> {
        if !counting_unsupported(&error) {
            return Err(error);
        }
        tracing::debug!(%error, "the API does not count devices; reading every device");
        self.inner.count_devices.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// The fleet and its devices. Counting: the application with its
    /// devices without a release, then the counts per release and the
    /// pinned devices at the same time (three requests). Otherwise, or
    /// when the server refuses a count: the application and every device
    /// (two requests more).
    async fn read_devices(
        &self,
        fleet: &FleetRef,
        events: Sink<'_>,
    ) -> Result<(Application, Devices), Error> {
        let mut known = None;
        if self.inner.count_devices.load(Ordering::Relaxed) {
            match self.fetch_application(fleet, true, events).await {
                Ok(application) => match application.without_release {
                    Some(without_release) => {
                        let pinned_query = pinned_device_query(application.id);
                        let (counts, pinned) = tokio::join!(
                            self.fetch_device_counts(application.id, events),
                            self.fetch_devices(&pinned_query, events),
                        );
                        match counts {
                            Ok(counts) => {
                                let devices =
                                    Devices::from_counts(without_release, &counts, &pinned?);
                                return Ok((application, devices));
                            }
                            Err(error) => self.stop_counting(error)?,
                        }
                        known = Some(application);
                    }
                    None => {
                        tracing::debug!("the API ignored the device count; reading every device");
                        self.inner.count_devices.store(false, Ordering::Relaxed);
                        known = Some(application);
                    }
                },
                Err(error) => self.stop_counting(error)?,
            }
        }
        let application = match known {
            Some(application) => application,
            None => self.fetch_application(fleet, false, events).await?,
        };
        let rows = self
            .fetch_devices(&device_query(application.id), events)
            .await?;
        Ok((application, Devices::from_rows(&rows)))
    }

    /// The first round of a fleet: the application and its devices, then
    /// the releases and the deltas at the same time.
    pub(crate) async fn first_fleet_round(
        &self,
        fleet: &FleetRef,
        to: Option<&ReleaseRef>,
        deadline: Option<tokio::time::Instant>,
        events: Sink<'_>,
    ) -> Result<(FleetTracker, DeltaRead), Error> {
        let (application, devices) = self.read_devices(fleet, events).await?;
        let target_ref = match (to, application.target) {
            (Some(r), _) => r.clone(),
            (None, Some(id)) => ReleaseRef::Id(id),
            (None, None) => {
                return Err(Error::FleetHasNoTarget {
                    fleet: application.slug,
                });
            }
        };
        let known: Vec<ReleaseRef> = devices.releases().into_iter().map(ReleaseRef::Id).collect();
        let mut refs: Vec<&ReleaseRef> = known.iter().collect();
        refs.push(&target_ref);
        let (sources, targets) = devices.delta_releases(&target_ref);
        let release_queries = release_queries(&refs);
        let (read, (fleet_deltas_on, device_settings)) = tokio::join!(
            self.releases_with_deltas(
                &release_queries,
                || {
                    let sources: Vec<&ReleaseRef> = sources.iter().collect();
                    let targets: Vec<&ReleaseRef> = targets.iter().collect();
                    fleet_delta_queries(&sources, &targets)
                },
                events,
            ),
            self.read_delta_settings(application.id, events),
        );
        let (releases, nested) = read?;
        let target = resolve(&releases, &target_ref, Some(application.id))?;
        if target.application != application.id {
            return Err(Error::ReleaseNotInFleet {
                release: target.summary.id,
                release_application: target.application,
                fleet: application.slug,
            });
        }
        check_images(target)?;
        let grouping = group_devices(&devices, target.summary.id);
        let find = |id: u64| releases.iter().find(|r| r.summary.id == id);
        let mut without_deltas = Vec::new();
        let transitions: Vec<(u64, Tracker)> = grouping
            .transitions
            .iter()
            .filter_map(|&(count, from, to)| {
                // A release that is gone (or unreadable), or a pin whose
                // images are not built, cannot be compared: its devices
                // are left out of the totals.
                let (Some(source), Some(pin)) = (find(from), find(to)) else {
                    tracing::warn!(
                        from,
                        to,
                        devices = count,
                        "devices run or are pinned to an unknown release"
                    );
                    return None;
                };
                if let Err(error) = check_images(pin) {
                    tracing::warn!(%error, devices = count, "devices are pinned to an unfinished release");
                    return None;
                }
                without_deltas.push(delta_settings::without_deltas(
                    count,
                    from,
                    to,
                    target.summary.id,
                    fleet_deltas_on,
                    &device_settings,
                ));
                Some((
                    count,
                    Tracker::new(rules::pair(source, pin))
                        .with_registry(self.inner.registry.clone()),
                ))
            })
            .collect();
        // Devices running no release download the whole target release.
        let from_nothing = (grouping.without_release > 0).then(|| {
            Tracker::new(rules::pair(&target.without_images(), target))
                .with_registry(self.inner.registry.clone())
        });
        let mut images: Vec<ManifestRef> = transitions
            .iter()
            .map(|(_, t)| t)
            .chain(&from_nothing)
            .flat_map(|t| image_manifests(&t.pairing))
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
        )
        .with_idle_devices(grouping.on_target, grouping.without_release)
        .with_devices_without_deltas(without_deltas)
        .with_download_from_nothing(from_nothing);
        let read = self
            .deltas_and_registry(nested, &tracker.delta_pairs(), &images, deadline, events)
            .await?;
        Ok((tracker, read))
    }
}

/// The transitions of a fleet state, for callers that handle one at a time.
impl FleetUpdateInfo {
    /// The first transition from release `id` (devices pinned to different
    /// releases make several).
    pub fn transition_from(&self, id: u64) -> Option<&UpdateInfo> {
        self.transitions
            .iter()
            .map(|t| &t.update)
            .find(|u| u.originates_from__release.id == id)
    }

    /// The transition from release `from` to release `to`.
    pub fn transition(&self, from: u64, to: u64) -> Option<&UpdateInfo> {
        self.transitions
            .iter()
            .map(|t| &t.update)
            .find(|u| u.originates_from__release.id == from && u.produces__release.id == to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(running: Option<u64>, pinned: Option<u64>) -> Device {
        Device { running, pinned }
    }

    /// Three releases 1 < 2 < 3; the fleet's target is 3.
    fn fleet() -> Vec<Device> {
        vec![
            device(Some(3), None),    // on target
            device(Some(2), None),    // 2 → 3
            device(Some(1), None),    // 1 → 3
            device(Some(1), None),    // 1 → 3
            device(Some(2), Some(2)), // pinned where it is
            device(Some(3), Some(1)), // pinned back to 1
            device(Some(2), Some(1)), // pinned back to 1
            device(None, None),       // no release yet
            device(None, Some(2)),    // pinned, no release yet
        ]
    }

    #[test]
    fn counts_at_the_limit_saturate_instead_of_wrapping() {
        let max = u64::MAX;
        let devices = Devices::from_counts(max, &[(1, max), (1, 5), (3, max)], &[]);
        assert_eq!(devices.following[&1], max);
        let grouping = group_devices(&devices, 3);
        assert_eq!(grouping.transitions, [(max, 1, 3)]);
        assert_eq!(grouping.on_target, max);
        assert_eq!(grouping.without_release, max);
    }

    #[test]
    fn devices_go_to_their_pin_or_the_fleet_target() {
        let g = group_devices(&Devices::from_rows(&fleet()), 3);
        assert_eq!(g.transitions, [(2, 1, 3), (1, 2, 1), (1, 2, 3), (1, 3, 1)]);
        assert_eq!((g.on_target, g.without_release), (2, 2));
        let placed: u64 = g.transitions.iter().map(|t| t.0).sum();
        assert_eq!(
            placed + g.on_target + g.without_release,
            fleet().len() as u64
        );
    }

    #[test]
    fn an_explicit_target_moves_only_unpinned_devices() {
        // To release 2: the device on 2 that follows the fleet is now on
        // target, the device on 3 that follows it goes back to 2, pins stay.
        let g = group_devices(&Devices::from_rows(&fleet()), 2);
        assert_eq!(g.transitions, [(2, 1, 2), (1, 2, 1), (1, 3, 1), (1, 3, 2)]);
        assert_eq!((g.on_target, g.without_release), (2, 2));
        // To release 1: the two devices pinned to 1 go there as before.
        let g = group_devices(&Devices::from_rows(&fleet()), 1);
        assert_eq!(g.transitions, [(2, 2, 1), (2, 3, 1)]);
        assert_eq!(g.on_target, 3);
    }

    #[test]
    fn counted_devices_group_like_rows() {
        let rows = fleet();
        let following = [(1, 2), (2, 1), (3, 1), (4, 0)];
        let pinned: Vec<Device> = rows
            .iter()
            .filter(|d| d.pinned.is_some())
            .copied()
            .collect();
        let without = rows.iter().filter(|d| d.running.is_none()).count() as u64;
        let counted = Devices::from_counts(without, &following, &pinned);
        assert_eq!(counted, Devices::from_rows(&rows));
        assert_eq!(
            counted.releases().into_iter().collect::<Vec<_>>(),
            [1, 2, 3]
        );
    }

    #[test]
    fn a_fleet_on_its_target_has_no_transition() {
        let rows = [
            device(Some(3), None),
            device(Some(3), Some(3)),
            device(None, None),
        ];
        let g = group_devices(&Devices::from_rows(&rows), 3);
        assert!(g.transitions.is_empty());
        assert_eq!((g.on_target, g.without_release), (2, 1));
        assert_eq!(
            Devices::from_rows(&rows).delta_releases(&ReleaseRef::Id(3)),
            (Vec::new(), Vec::new())
        );
    }

    #[test]
    fn the_first_delta_query_covers_every_pair() {
        let devices = Devices::from_rows(&fleet());
        let (sources, targets) = devices.delta_releases(&ReleaseRef::Id(3));
        let ids =
            |refs: &[ReleaseRef]| -> Vec<String> { refs.iter().map(|r| r.to_string()).collect() };
        assert_eq!(ids(&sources), ["1", "2", "3"]);
        assert_eq!(ids(&targets), ["3", "1"]);
        // A target given as a commit prefix is not known yet: every
        // release the unpinned devices run is a source.
        let commit: ReleaseRef = "b2cf2db".parse().unwrap();
        let (sources, targets) = devices.delta_releases(&commit);
        assert_eq!(ids(&sources), ["1", "2", "3"]);
        assert_eq!(targets[0], commit);
    }
}
