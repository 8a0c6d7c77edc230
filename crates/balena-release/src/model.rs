//! The result types, serialised exactly like the npm tool's JSON (same keys,
//! same order, omitted keys instead of `null`), with this project's additions
//! placed after the reference keys.
// The field names are the balena API's own (`originates_from__release`, …).
#![allow(non_snake_case)]

use serde::{Deserialize, Serialize};

use crate::bigint;

/// For `skip_serializing_if`: additive flags are written only when set.
fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_false(flag: &bool) -> bool {
    !*flag
}

/// The state of a whole update or of one service, from least to most ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// A delta is needed and nobody is building it.
    Pending,
    /// A delta is being built.
    Preparing,
    /// Nothing more needs to be built.
    Ready,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Status::Pending => "pending",
            Status::Preparing => "preparing",
            Status::Ready => "ready",
        })
    }
}

/// How a service differs between the two releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Only in the target release: devices pull the whole image.
    New,
    /// A different image: devices download a delta (or the whole image).
    Changed,
    /// The same image id or the same `content_hash`: devices download nothing.
    Unchanged,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Change::New => "new",
            Change::Changed => "changed",
            Change::Unchanged => "unchanged",
        })
    }
}

/// A release's id and full commit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReleaseSummary {
    /// The release id.
    pub id: u64,
    /// The release's full commit.
    pub commit: String,
}

/// The comparison of two releases: what each target service needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateInfo {
    /// The source release.
    pub originates_from__release: ReleaseSummary,
    /// The target release.
    pub produces__release: ReleaseSummary,
    /// One entry per service of the target release, in byte order of
    /// `service_name`.
    pub is_produced_by__service_update: Vec<ServiceUpdate>,
    /// The least ready service status (`ready` when there is no service).
    pub overall_status: Status,
    /// Bytes a device downloads; only when `overall_status` is `ready`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "bigint::option"
    )]
    pub estimated_total_payload_size: Option<u64>,
    /// `true` when a size counted in `estimated_total_payload_size` is
    /// unknown (the API has none; it counts as 0, so the estimate is too
    /// low); absent otherwise.
    #[serde(default, skip_serializing_if = "is_false")]
    pub payload_size_unknown: bool,
    /// Services of the source release that the target release no longer has.
    #[serde(default)]
    pub removed_services: Vec<RemovedService>,
    /// Compressed bytes a device updating now downloads, from the
    /// registry's manifests: every service's `download_size`, a layer
    /// fetched by several services counted once. Absent when the registry
    /// was not asked or could not tell.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "bigint::option"
    )]
    pub estimated_download_size: Option<u64>,
    /// `true` when the registry was asked but a service's download is
    /// unknown (then `estimated_download_size` is absent); absent otherwise.
    #[serde(default, skip_serializing_if = "is_false")]
    pub download_size_unknown: bool,
    /// `true` when a service's `download_size` is an upper bound (its delta
    /// is not ready); `estimated_download_size` is then one too. Absent
    /// otherwise.
    #[serde(default, skip_serializing_if = "is_false")]
    pub download_size_is_upper_bound: bool,
}

impl UpdateInfo {
    /// The service update named `name`, if the target release has it.
    pub fn service(&self, name: &str) -> Option<&ServiceUpdate> {
        self.is_produced_by__service_update
            .iter()
            .find(|s| s.service_name == name)
    }

    /// What a device updating now downloads, in bytes: every service's
    /// [`ServiceUpdate::download_now`], a changed service without a ready
    /// delta counted as its whole image. Equals
    /// `estimated_total_payload_size` once the update is ready.
    pub fn download_now(&self) -> u64 {
        self.is_produced_by__service_update
            .iter()
            .fold(0u64, |sum, s| {
                sum.saturating_add(s.download_now().unwrap_or(s.produces__image.image_size))
            })
    }

    /// The size of every target image in full, in bytes: what devices would
    /// download without deltas.
    pub fn full_size(&self) -> u64 {
        self.is_produced_by__service_update
            .iter()
            .fold(0u64, |sum, s| {
                sum.saturating_add(s.produces__image.image_size)
            })
    }
}

/// What one service of the target release needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceUpdate {
    /// The service name.
    pub service_name: String,
    /// Whether the service is ready to update.
    pub status: Status,
    /// The service's image in the source release; absent for a new service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub originates_from__image: Option<ImageInfo>,
    /// The service's image in the target release.
    pub produces__image: ImageInfo,
    /// How the service differs between the releases.
    pub change: Change,
    /// The last failed delta build for this service, when it has not
    /// succeeded since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_failure: Option<DeltaFailure>,
    /// Compressed bytes of the target image's layers that no image of the
    /// source release has (a layer that an earlier pulling service already
    /// fetches is not counted again); from the registry's manifests.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "bigint::option"
    )]
    pub pull_size: Option<u64>,
    /// Compressed bytes a device updating now downloads for this service:
    /// 0 when unchanged, the delta image's layers when its delta is ready,
    /// else `pull_size`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "bigint::option"
    )]
    pub download_size: Option<u64>,
    /// `true` when the registry was asked but could not tell (then
    /// `pull_size` and `download_size` are absent); absent otherwise.
    #[serde(default, skip_serializing_if = "is_false")]
    pub download_size_unknown: bool,
    /// `true` when `download_size` is the pull of a changed service whose
    /// delta is not ready yet: a device updating now asks for the delta,
    /// waits while it is built and downloads it instead, pulling only when
    /// that fails. Absent otherwise.
    #[serde(default, skip_serializing_if = "is_false")]
    pub download_size_is_upper_bound: bool,
    /// The service's update strategy (the target release's
    /// `io.balena.update.strategy` label); absent for the default,
    /// `download-then-kill`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_strategy: Option<UpdateStrategy>,
}

/// How the supervisor replaces a service's container, from the
/// `io.balena.update.strategy` label. Only what differs from the default
/// (`download-then-kill`) is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateStrategy {
    /// Stops the old container before downloading; the old image stays
    /// (a delta source) until the downloads are done.
    KillThenDownload,
    /// Deletes the old image before downloading: the new image is pulled
    /// whole, without a delta.
    DeleteThenDownload,
    /// Starts the new container beside the old one; images as the default.
    HandOver,
}

impl UpdateStrategy {
    /// The strategy a label value names; `None` for the default
    /// (`download-then-kill`) and for values the supervisor does not know
    /// (it falls back to the default too).
    pub fn from_label(value: &str) -> Option<UpdateStrategy> {
        match value.trim() {
            "kill-then-download" => Some(UpdateStrategy::KillThenDownload),
            "delete-then-download" => Some(UpdateStrategy::DeleteThenDownload),
            "hand-over" => Some(UpdateStrategy::HandOver),
            _ => None,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateStrategy::KillThenDownload => "kill-then-download",
            UpdateStrategy::DeleteThenDownload => "delete-then-download",
            UpdateStrategy::HandOver => "hand-over",
        }
    }

    /// Whether a device fetches the service through a delta at all: not
    /// under `delete-then-download`, which deletes the old image (the delta's
    /// source) first and pulls the new one whole.
    pub fn uses_delta(strategy: Option<UpdateStrategy>) -> bool {
        strategy != Some(UpdateStrategy::DeleteThenDownload)
    }

    /// Whether the service's old image is gone before the other services
    /// download (for a removed service) or before its own pull.
    pub fn drops_old_image(strategy: Option<UpdateStrategy>, removed: bool) -> bool {
        match strategy {
            Some(UpdateStrategy::DeleteThenDownload) => true,
            Some(UpdateStrategy::KillThenDownload) => removed,
            _ => false,
        }
    }
}

impl ServiceUpdate {
    /// What a device updating now downloads for this service, in bytes:
    /// nothing when unchanged, the delta when one is ready, the whole image
    /// when new or labelled `delete-then-download`; `None` for a changed
    /// service whose delta is not ready (the device would pull the whole
    /// image, or wait for the delta).
    pub fn download_now(&self) -> Option<u64> {
        match (self.change, &self.produces__image.is_produced_by__delta) {
            (Change::Unchanged, _) => Some(0),
            (_, Some(delta)) => Some(delta.size),
            (Change::New, None) => Some(self.produces__image.image_size),
            (Change::Changed, None) if self.pulled_whole_by_strategy() => {
                Some(self.produces__image.image_size)
            }
            (Change::Changed, None) => None,
        }
    }

    /// Whether the service changed and its strategy (`delete-then-download`)
    /// has devices pull the new image whole, without a delta.
    pub fn pulled_whole_by_strategy(&self) -> bool {
        self.change == Change::Changed && !UpdateStrategy::uses_delta(self.update_strategy)
    }
}

/// An image of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// The image id.
    pub id: u64,
    /// The registry location of the image.
    pub is_stored_at__image_location: String,
    /// The image digest (`sha256:…`); `null` when the API has none.
    pub content_hash: Option<String>,
    /// The on-disk image size in bytes (`0` when the API has none).
    #[serde(with = "bigint::zero_if_null")]
    pub image_size: u64,
    /// The ready delta that produces this image; only on the target image of
    /// a service that is ready through a delta.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_produced_by__delta: Option<DeltaInfo>,
    /// `true` when the API has no size for this image (`image_size` then
    /// reads 0); absent otherwise.
    #[serde(default, skip_serializing_if = "is_false")]
    pub size_unknown: bool,
}

/// A ready delta between two images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaInfo {
    /// The delta id.
    pub id: u64,
    /// The delta format version (always 3 here).
    pub version: u32,
    /// Where the delta image is stored.
    pub is_stored_at__location: Option<String>,
    /// The delta size in bytes (`0` when the API has none).
    #[serde(with = "bigint::zero_if_null")]
    pub size: u64,
    /// `true` when the API has no size for this delta (`size` then reads
    /// 0); absent otherwise.
    #[serde(default, skip_serializing_if = "is_false")]
    pub size_unknown: bool,
}

/// A delta build that failed, or a delta request the delta server refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaFailure {
    /// The id of the failed delta row; absent when the delta server refused
    /// the request (then there is no row).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_id: Option<u64>,
    /// The delta server's message, when it left one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// How many times this run asked the delta server for this delta.
    pub attempts: u32,
    /// The delta server's HTTP status when it refused the request (a 4xx;
    /// devices then pull the whole image); absent for a failed build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
}

/// A service of the source release that the target release does not have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedService {
    /// The service name.
    pub service_name: String,
    /// The service's image in the source release.
    pub originates_from__image: ImageInfo,
    /// The service's update strategy in the source release; absent for the
    /// default. `kill-then-download` and `delete-then-download` remove its
    /// image before the other services download.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_strategy: Option<UpdateStrategy>,
}

/// A fleet (balena application).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetSummary {
    /// The application id.
    pub id: u64,
    /// The application slug.
    pub slug: String,
}

/// The update of a whole fleet: one transition per (release a device runs,
/// release it should run) pair that differ. A device's target is its pin,
/// else the fleet's target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetUpdateInfo {
    /// The fleet.
    pub application: FleetSummary,
    /// The fleet's target release (or the one asked for): the target of
    /// every device that is not pinned.
    pub produces__release: ReleaseSummary,
    /// One entry per (source, target) pair, most devices first; each
    /// carries its own target release.
    pub transitions: Vec<FleetTransition>,
    /// The least ready transition status (`ready` when there is none).
    pub overall_status: Status,
    /// Σ device count × transition payload; only when `overall_status` is
    /// `ready`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "bigint::option"
    )]
    pub estimated_fleet_payload_size: Option<u64>,
    /// `true` when a size counted in `estimated_fleet_payload_size` is
    /// unknown; absent otherwise.
    #[serde(default, skip_serializing_if = "is_false")]
    pub payload_size_unknown: bool,
    /// Devices that already run their target release (not in
    /// `transitions`). Always written.
    #[serde(default)]
    pub devices_on_target: u64,
    /// Devices that run no release yet (not in `transitions`). Always
    /// written.
    #[serde(default)]
    pub devices_without_release: u64,
    /// What every device downloads, in compressed bytes: Σ over transitions
    /// of the devices with deltas × `estimated_download_size` and the
    /// devices without × `download_size_without_deltas`, plus the devices
    /// without a release × `devices_without_release_download_size`; absent
    /// when the registry was not asked or a figure is unknown.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "bigint::option"
    )]
    pub estimated_fleet_download_size: Option<u64>,
    /// `true` when the registry was asked but a transition's download is
    /// unknown; absent otherwise.
    #[serde(default, skip_serializing_if = "is_false")]
    pub download_size_unknown: bool,
    /// What one device running no release downloads: the whole target
    /// release, a layer chain shared by several images once. Absent when no
    /// device runs no release, or the registry was not asked or could not
    /// tell.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "bigint::option"
    )]
    pub devices_without_release_download_size: Option<u64>,
}

/// The devices of a fleet that run one release and should run another,
/// and their update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetTransition {
    /// How many devices make this transition.
    pub device_count: u64,
    /// The update from the release they run to their target.
    #[serde(flatten)]
    pub update: UpdateInfo,
    /// How many of these devices do not use image deltas (a configuration
    /// variable `BALENA_SUPERVISOR_DELTA=0`, or a delta version other than
    /// 3, on the device or its fleet); omitted when none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub devices_without_deltas: u64,
    /// What one of them downloads: every changed image pulled, ready delta
    /// or not. Omitted when no device lacks deltas or the registry was not
    /// asked.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "bigint::option"
    )]
    pub download_size_without_deltas: Option<u64>,
}

impl FleetTransition {
    /// The most one device of this transition downloads: with deltas off,
    /// the pull figure; `None` when that figure is unknown.
    pub fn largest_download(&self) -> Option<u64> {
        if self.devices_without_deltas > 0 {
            self.download_size_without_deltas
                .max(self.update.estimated_download_size)
        } else {
            self.update.estimated_download_size
        }
    }
}

/// The result of a run: one transition, or every transition of a fleet.
/// Serialises as the inner value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Report {
    /// From one release to another.
    Transition(UpdateInfo),
    /// Every release a fleet's devices run, to the fleet's target.
    Fleet(FleetUpdateInfo),
}

impl Report {
    /// The least ready status in the report.
    pub fn overall_status(&self) -> Status {
        match self {
            Report::Transition(info) => info.overall_status,
            Report::Fleet(fleet) => fleet.overall_status,
        }
    }

    /// The transition, when the report is about one.
    pub fn transition(&self) -> Option<&UpdateInfo> {
        match self {
            Report::Transition(info) => Some(info),
            Report::Fleet(_) => None,
        }
    }

    /// The fleet, when the report is about one.
    pub fn fleet(&self) -> Option<&FleetUpdateInfo> {
        match self {
            Report::Transition(_) => None,
            Report::Fleet(fleet) => Some(fleet),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The example of the npm tool's output (reference-behaviour.md §2), with
    /// the additive keys of this project appended.
    const REFERENCE: &str = r#"{
  "originates_from__release": {
    "id": 900813,
    "commit": "84d3d8f43eddd81b1699552dd39338f8dbf8b11e"
  },
  "produces__release": {
    "id": 900835,
    "commit": "b2cf2db7fece36f10e6a7e815ab169fd30cab05f"
  },
  "is_produced_by__service_update": [
    {
      "service_name": "api",
      "status": "ready",
      "produces__image": {
        "id": 1115291,
        "is_stored_at__image_location": "registry2.balena-cloud.com/v2/5e1757b27c05319375792bd6e959544f",
        "content_hash": "sha256:ddeb1e0d02086234f4272164c7fdb123eb2a2eb541c5b41989cac156e5063ed5",
        "image_size": 45012345
      },
      "change": "new"
    },
    {
      "service_name": "main",
      "status": "ready",
      "originates_from__image": {
        "id": 1115249,
        "is_stored_at__image_location": "registry2.balena-cloud.com/v2/de1566a552c49836528748804836e2da",
        "content_hash": "sha256:48edfccf7f4fc492a9b757ab2109530edd6efc20053654234876e24d3bf68a0a",
        "image_size": 310905195
      },
      "produces__image": {
        "id": 1115290,
        "is_stored_at__image_location": "registry2.balena-cloud.com/v2/a26ecf6b7844b24f5f104dae96c64a35",
        "content_hash": "sha256:060d49d5d436c4fcc7e5fe55339c06bb8d13b0c1c43a4e5ac1691abb25d0819c",
        "image_size": 310954877,
        "is_produced_by__delta": {
          "id": 1510997,
          "version": 3,
          "is_stored_at__location": "registry2.balena-cloud.com/v2/a26ecf6b7844b24f5f104dae96c64a35:delta-5668ef65d2c06aa3",
          "size": 484575
        }
      },
      "change": "changed"
    }
  ],
  "overall_status": "ready",
  "estimated_total_payload_size": 45496920,
  "removed_services": [
    {
      "service_name": "worker",
      "originates_from__image": {
        "id": 1115250,
        "is_stored_at__image_location": "registry2.balena-cloud.com/v2/0b4e3c1f7d2a9e8b6c5d4f3a2b1c0d9e",
        "content_hash": null,
        "image_size": 0
      }
    }
  ]
}"#;

    fn image(id: u64, location: &str, hash: Option<&str>, size: u64) -> ImageInfo {
        ImageInfo {
            id,
            is_stored_at__image_location: format!("registry2.balena-cloud.com/v2/{location}"),
            content_hash: hash.map(|h| format!("sha256:{h}")),
            image_size: size,
            is_produced_by__delta: None,
            size_unknown: false,
        }
    }

    pub(crate) fn reference_example() -> UpdateInfo {
        let mut main_target = image(
            1115290,
            "a26ecf6b7844b24f5f104dae96c64a35",
            Some("060d49d5d436c4fcc7e5fe55339c06bb8d13b0c1c43a4e5ac1691abb25d0819c"),
            310954877,
        );
        main_target.is_produced_by__delta = Some(DeltaInfo {
            id: 1510997,
            version: 3,
            is_stored_at__location: Some(
                "registry2.balena-cloud.com/v2/a26ecf6b7844b24f5f104dae96c64a35:delta-5668ef65d2c06aa3"
                    .into(),
            ),
            size: 484575,
            size_unknown: false,
        });
        UpdateInfo {
            originates_from__release: ReleaseSummary {
                id: 900813,
                commit: "84d3d8f43eddd81b1699552dd39338f8dbf8b11e".into(),
            },
            produces__release: ReleaseSummary {
                id: 900835,
                commit: "b2cf2db7fece36f10e6a7e815ab169fd30cab05f".into(),
            },
            is_produced_by__service_update: vec![
                ServiceUpdate {
                    service_name: "api".into(),
                    status: Status::Ready,
                    originates_from__image: None,
                    produces__image: image(
                        1115291,
                        "5e1757b27c05319375792bd6e959544f",
                        Some("ddeb1e0d02086234f4272164c7fdb123eb2a2eb541c5b41989cac156e5063ed5"),
                        45012345,
                    ),
                    change: Change::New,
                    delta_failure: None,
                    pull_size: None,
                    download_size: None,
                    download_size_unknown: false,
                    download_size_is_upper_bound: Default::default(),
                    update_strategy: Default::default(),
                },
                ServiceUpdate {
                    service_name: "main".into(),
                    status: Status::Ready,
                    originates_from__image: Some(image(
                        1115249,
                        "de1566a552c49836528748804836e2da",
                        Some("48edfccf7f4fc492a9b757ab2109530edd6efc20053654234876e24d3bf68a0a"),
                        310905195,
                    )),
                    produces__image: main_target,
                    change: Change::Changed,
                    delta_failure: None,
                    pull_size: None,
                    download_size: None,
                    download_size_unknown: false,
                    download_size_is_upper_bound: Default::default(),
                    update_strategy: Default::default(),
                },
            ],
            overall_status: Status::Ready,
            estimated_total_payload_size: Some(45496920),
            payload_size_unknown: false,
            removed_services: vec![RemovedService {
                service_name: "worker".into(),
                originates_from__image: image(1115250, "0b4e3c1f7d2a9e8b6c5d4f3a2b1c0d9e", None, 0),
                update_strategy: Default::default(),
            }],
            estimated_download_size: None,
            download_size_unknown: false,
            download_size_is_upper_bound: Default::default(),
        }
    }

    /// The npm tool's output for the same update, verbatim from
    /// reference-behaviour.md §2 (it has no additive keys).
    const NPM: &str = r#"{
  "originates_from__release": {
    "id": 900813,
    "commit": "84d3d8f43eddd81b1699552dd39338f8dbf8b11e"
  },
  "produces__release": {
    "id": 900835,
    "commit": "b2cf2db7fece36f10e6a7e815ab169fd30cab05f"
  },
  "is_produced_by__service_update": [
    {
      "service_name": "api",
      "status": "ready",
      "produces__image": {
        "id": 1115291,
        "is_stored_at__image_location": "registry2.balena-cloud.com/v2/5e1757b27c05319375792bd6e959544f",
        "content_hash": "sha256:ddeb1e0d02086234f4272164c7fdb123eb2a2eb541c5b41989cac156e5063ed5",
        "image_size": 45012345
      }
    },
    {
      "service_name": "main",
      "status": "ready",
      "originates_from__image": {
        "id": 1115249,
        "is_stored_at__image_location": "registry2.balena-cloud.com/v2/de1566a552c49836528748804836e2da",
        "content_hash": "sha256:48edfccf7f4fc492a9b757ab2109530edd6efc20053654234876e24d3bf68a0a",
        "image_size": 310905195
      },
      "produces__image": {
        "id": 1115290,
        "is_stored_at__image_location": "registry2.balena-cloud.com/v2/a26ecf6b7844b24f5f104dae96c64a35",
        "content_hash": "sha256:060d49d5d436c4fcc7e5fe55339c06bb8d13b0c1c43a4e5ac1691abb25d0819c",
        "image_size": 310954877,
        "is_produced_by__delta": {
          "id": 1510997,
          "version": 3,
          "is_stored_at__location": "registry2.balena-cloud.com/v2/a26ecf6b7844b24f5f104dae96c64a35:delta-5668ef65d2c06aa3",
          "size": 484575
        }
      }
    }
  ],
  "overall_status": "ready",
  "estimated_total_payload_size": 45496920
}"#;

    #[test]
    fn without_the_additive_keys_the_output_is_the_npm_tools() {
        let mut info = reference_example();
        // The npm tool never reports removed services.
        info.removed_services.clear();
        let ours = serde_json::to_string_pretty(&info).unwrap();
        let mut stripped = ours.replace(",\n  \"removed_services\": []", "");
        for change in ["new", "changed", "unchanged"] {
            stripped = stripped.replace(&format!(",\n      \"change\": \"{change}\""), "");
        }
        assert_eq!(stripped, NPM);
    }

    #[test]
    fn reference_example_serialises_byte_for_byte() {
        let json = serde_json::to_string_pretty(&reference_example()).unwrap();
        assert_eq!(json, REFERENCE);
    }

    /// Positions of `"key":` in `json`, in the order of `keys`; panics if one
    /// is missing (test helper).
    fn positions(json: &str, keys: &[&str]) -> Vec<usize> {
        keys.iter()
            .map(|k| {
                json.find(&format!("\"{k}\":"))
                    .unwrap_or_else(|| panic!("no {k}"))
            })
            .collect()
    }

    #[test]
    fn additive_keys_come_after_the_reference_keys() {
        let json = serde_json::to_string(&reference_example()).unwrap();
        let top = positions(
            &json,
            &[
                "originates_from__release",
                "produces__release",
                "is_produced_by__service_update",
                "overall_status",
                "estimated_total_payload_size",
                "removed_services",
            ],
        );
        assert!(top.is_sorted(), "{json}");
        let main = &json[json.find("\"service_name\":\"main\"").unwrap()..];
        let service = positions(
            main,
            &[
                "status",
                "originates_from__image",
                "produces__image",
                "change",
            ],
        );
        assert!(service.is_sorted(), "{main}");
    }

    #[test]
    fn omitted_keys_are_never_null() {
        let mut info = reference_example();
        info.overall_status = Status::Pending;
        info.estimated_total_payload_size = None;
        info.is_produced_by__service_update[1].status = Status::Pending;
        info.is_produced_by__service_update[1]
            .produces__image
            .is_produced_by__delta = None;
        let json = serde_json::to_string_pretty(&info).unwrap();
        assert!(!json.contains("estimated_total_payload_size"));
        assert!(!json.contains("is_produced_by__delta"));
        assert!(!json.contains("delta_failure"));
        // content_hash stays null, like the npm tool prints it.
        assert!(json.contains("\"content_hash\": null"));
    }

    #[test]
    fn a_failure_without_a_message_has_no_message_key() {
        let mut info = reference_example();
        info.is_produced_by__service_update[1].delta_failure = Some(DeltaFailure {
            delta_id: Some(7),
            error_message: None,
            attempts: 1,
            http_status: None,
        });
        let json = serde_json::to_string_pretty(&info).unwrap();
        assert!(json.contains("\"delta_id\": 7"), "{json}");
        assert!(!json.contains("error_message"), "{json}");
        let back: UpdateInfo = serde_json::from_str(&json).unwrap();
        assert_eq!(back, info);
    }

    #[test]
    fn unknown_sizes_are_flagged_after_the_reference_keys() {
        let mut info = reference_example();
        let main = &mut info.is_produced_by__service_update[1];
        main.produces__image.size_unknown = true;
        if let Some(delta) = main.produces__image.is_produced_by__delta.as_mut() {
            delta.size_unknown = true;
        }
        info.payload_size_unknown = true;
        let json = serde_json::to_string_pretty(&info).unwrap();
        // Two images and the delta, then the top level.
        assert_eq!(json.matches("\"size_unknown\": true").count(), 2, "{json}");
        assert_eq!(
            json.matches("\"payload_size_unknown\": true").count(),
            1,
            "{json}"
        );
        let compact = serde_json::to_string(&info).unwrap();
        let top = positions(
            &compact,
            &[
                "estimated_total_payload_size",
                "payload_size_unknown",
                "removed_services",
            ],
        );
        assert!(top.is_sorted(), "{compact}");
        let target = &compact[compact.find("\"id\":1115290").unwrap()..];
        let image = positions(
            target,
            &[
                "image_size",
                "is_produced_by__delta",
                "size",
                "size_unknown",
            ],
        );
        assert!(image.is_sorted(), "{target}");
        let back: UpdateInfo = serde_json::from_str(&json).unwrap();
        assert_eq!(back, info);
        // Known sizes print no flag at all.
        let plain = serde_json::to_string(&reference_example()).unwrap();
        assert!(!plain.contains("size_unknown"), "{plain}");
    }

    #[test]
    fn output_deserialises_back() {
        let info: UpdateInfo = serde_json::from_str(REFERENCE).unwrap();
        assert_eq!(info, reference_example());
        let with_strings = REFERENCE.replace("\"size\": 484575", "\"size\": \"484575\"");
        let info: UpdateInfo = serde_json::from_str(&with_strings).unwrap();
        assert_eq!(info, reference_example());
    }

    #[test]
    fn fleet_transitions_flatten_the_update() {
        let fleet = FleetUpdateInfo {
            application: FleetSummary {
                id: 1,
                slug: "org/fleet".into(),
            },
            produces__release: reference_example().produces__release,
            transitions: vec![FleetTransition {
                device_count: 3,
                update: reference_example(),
                devices_without_deltas: Default::default(),
                download_size_without_deltas: Default::default(),
            }],
            overall_status: Status::Ready,
            estimated_fleet_payload_size: Some(3 * 45496920),
            payload_size_unknown: false,
            devices_on_target: 2,
            devices_without_release: 1,
            estimated_fleet_download_size: None,
            download_size_unknown: false,
            devices_without_release_download_size: Default::default(),
        };
        let json = serde_json::to_string(&fleet).unwrap();
        let transition = &json[json.find("\"transitions\"").unwrap()..];
        let order = positions(
            transition,
            &[
                "device_count",
                "originates_from__release",
                "produces__release",
                "is_produced_by__service_update",
                "overall_status",
                "estimated_total_payload_size",
                "removed_services",
                "estimated_fleet_payload_size",
                "devices_on_target",
                "devices_without_release",
            ],
        );
        assert!(order.is_sorted(), "{json}");
        let back: FleetUpdateInfo = serde_json::from_str(&json).unwrap();
        assert_eq!(back, fleet);
    }
}
