//! The scenario file format: the serde types of a scenario (rows named with
//! the balena model's v7 field names, delta build scripts, clock and faults)
//! and the values derived for fields a file leaves out. Loaders, checks and
//! the built-in scenarios build on these types.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::faults::Faults;
use crate::rng;

/// A scenario file or built-in that cannot be used, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError(pub String);

impl std::fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScenarioError {}

/// A complete simulator set-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default = "default_name")]
    pub name: String,
    /// Bearer tokens accepted by both servers (at least one).
    pub tokens: Vec<String>,
    /// Serve the API as openBalena does: without the `delta` resource, so
    /// `/v7/delta` answers 401 with an empty body.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub openbalena: bool,
    #[serde(default)]
    pub clock: Clock,
    /// Base of the default `created_at` of rows that do not give one.
    #[serde(default = "default_epoch")]
    pub epoch: Timestamp,
    #[serde(default)]
    pub delta: DeltaSettings,
    #[serde(default)]
    pub faults: Faults,
    #[serde(default)]
    pub users: Vec<UserSpec>,
    #[serde(default)]
    pub applications: Vec<ApplicationSpec>,
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
    #[serde(default)]
    pub images: Vec<ImageSpec>,
    #[serde(default)]
    pub releases: Vec<ReleaseSpec>,
    #[serde(default)]
    pub devices: Vec<DeviceSpec>,
    /// Delta rows present at start-up.
    #[serde(default)]
    pub deltas: Vec<DeltaSpec>,
}

fn default_name() -> String {
    "custom".to_owned()
}

fn default_epoch() -> Timestamp {
    Timestamp::from_second(1_761_987_600).unwrap_or(Timestamp::UNIX_EPOCH) // 2025-11-01T09:00:00Z
}

fn default_success() -> String {
    "success".to_owned()
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    pub id: i64,
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// Field names are the balena model's (with `__`), so files read like API rows.
#[allow(non_snake_case)]
#[serde(deny_unknown_fields)]
pub struct ApplicationSpec {
    pub id: i64,
    pub app_name: String,
    /// Default `<app_name in lower case>` prefixed by the first user's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub should_be_running__release: Option<i64>,
    #[serde(default)]
    pub is_public: bool,
    #[serde(default = "yes")]
    pub should_track_latest_release: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// Fleet configuration variables (`application_config_variable` rows),
    /// e.g. `BALENA_SUPERVISOR_DELTA: "0"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config_variables: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub id: i64,
    pub application: i64,
    pub service_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// Field names are the balena model's (with `__`), so files read like API rows.
#[allow(non_snake_case)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    pub id: i64,
    pub is_a_build_of__service: i64,
    #[serde(default = "default_success")]
    pub status: String,
    /// Bytes on disk (`null` allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_size: Option<u64>,
    /// The digest of the image's manifest. Default: the SHA-256 of the
    /// manifest the registry serves when `layers` are given, else a synthetic
    /// `sha256:<64 hex>` derived from the id (the manifest is then served
    /// under it without re-hashing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    /// Default: `registry2.balena-cloud.com/v2/<32 hex derived from the id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_stored_at__image_location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// The layers of the image's manifest, base first. Default: derived (a
    /// base layer per application, a middle layer per service that changes
    /// every third distinct build, a top layer per content).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<LayerSpec>>,
    /// The manifest's schema (`docker`, the default, or `oci`).
    #[serde(default, skip_serializing_if = "ManifestFormat::is_docker")]
    pub manifest_format: ManifestFormat,
    /// When given, `content_hash` names a manifest list (an OCI index for
    /// `oci`) with one entry per platform (`os/architecture[/variant]`); the
    /// first entry is the image itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    /// The manifest's exact bytes (JSON text), served as they are instead of
    /// one built from `layers`; `content_hash` defaults to their SHA-256.
    /// For fixtures pushed to a real registry as well.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
}

/// One layer of an image manifest: a blob digest and its compressed size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerSpec {
    /// `sha256:<64 lowercase hex>`.
    pub digest: String,
    /// Compressed bytes (what a pull transfers).
    pub size: u64,
}

/// The schema of an image manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ManifestFormat {
    /// Docker image manifest, schema 2 (`application/vnd.docker.distribution.manifest.v2+json`).
    #[default]
    Docker,
    /// OCI image manifest (`application/vnd.oci.image.manifest.v1+json`).
    Oci,
}

impl ManifestFormat {
    fn is_docker(&self) -> bool {
        *self == ManifestFormat::Docker
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// Field names are the balena model's (with `__`), so files read like API rows.
#[allow(non_snake_case)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSpec {
    pub id: i64,
    pub belongs_to__application: i64,
    pub commit: String,
    #[serde(default = "default_success")]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_created_by__user: Option<i64>,
    /// Default `0.0.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver: Option<String>,
    #[serde(default = "yes")]
    pub is_final: bool,
    /// Image ids; one `release_image` row each.
    #[serde(default)]
    pub images: Vec<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// The compose document stored with the release (service labels such as
    /// `io.balena.update.strategy`). Default: one entry per service with a
    /// build context and no labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composition: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// Field names are the balena model's (with `__`), so files read like API rows.
#[allow(non_snake_case)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    pub id: i64,
    pub belongs_to__application: i64,
    /// Default `device-<id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
    /// Default: 32 hex digits derived from the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_running__release: Option<i64>,
    /// A pin (a release of the device's application); `null` means the
    /// device follows its application. The API computes the device's
    /// `should_be_running__release` as this pin, else the application's.
    /// Older files name it `should_be_running__release`.
    #[serde(
        default,
        alias = "should_be_running__release",
        skip_serializing_if = "Option::is_none"
    )]
    pub is_pinned_on__release: Option<i64>,
    #[serde(default = "yes")]
    pub is_online: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// Device configuration variables (`device_config_variable` rows); they
    /// win over the fleet's of the same name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config_variables: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// Field names are the balena model's (with `__`), so files read like API rows.
#[allow(non_snake_case)]
#[serde(deny_unknown_fields)]
pub struct DeltaSpec {
    pub id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub originates_from__image: Option<i64>,
    pub produces__image: i64,
    #[serde(default = "default_delta_version")]
    pub version: i64,
    #[serde(default = "default_success")]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Default for a `success` row: `<dest location>:delta-<16 hex>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_stored_at__location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// The layers of the delta image a `success` row stores at its location.
    /// Default: derived from the row (one layer per target layer, the
    /// source's own ones empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<LayerSpec>>,
    /// The delta image's manifest, exact bytes, served as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
}

fn default_delta_version() -> i64 {
    3
}

/// How the delta server builds deltas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeltaSettings {
    /// Build speed in bytes of `max(src, dest image_size)` per simulated second.
    #[serde(default = "default_throughput")]
    pub throughput: u64,
    /// Real milliseconds a request may be held before answering "still building".
    #[serde(default)]
    pub hold_ms: u64,
    /// Status while a delta is building (504, or 502 like some deployments).
    #[serde(default = "default_running_status")]
    pub running_status: u16,
    /// A running row whose `update_timestamp` is older than this is stale and a
    /// new request starts a new row.
    #[serde(default = "default_stale_after")]
    pub stale_after_s: u64,
    /// Per image pair: build duration and scripted attempts.
    #[serde(default)]
    pub pairs: Vec<DeltaPair>,
}

fn default_throughput() -> u64 {
    100_000_000
}
fn default_running_status() -> u16 {
    504
}
fn default_stale_after() -> u64 {
    300
}

impl Default for DeltaSettings {
    fn default() -> DeltaSettings {
        DeltaSettings {
            throughput: default_throughput(),
            hold_ms: 0,
            running_status: default_running_status(),
            stale_after_s: default_stale_after(),
            pairs: Vec::new(),
        }
    }
}

/// Scripted behaviour of one (source image, destination image) pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeltaPair {
    pub src: i64,
    pub dest: i64,
    /// Build duration in simulated ms (overrides the throughput rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Outcome of the 1st, 2nd, … attempt (row); attempts past the list succeed.
    #[serde(default)]
    pub outcomes: Vec<Outcome>,
}

/// The outcome of one delta build attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "lowercase", deny_unknown_fields)]
pub enum Outcome {
    /// `success` after the build time, with `size` bytes (default: derived from the images).
    Success {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_ms: Option<u64>,
    },
    /// `failed` with `error_message` after the build time.
    Failed {
        #[serde(default = "default_error_message")]
        error_message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_ms: Option<u64>,
    },
    /// Stays `running`; its `update_timestamp` stops moving `after_ms` after the start.
    Stalled {
        #[serde(default)]
        after_ms: u64,
    },
}

fn default_error_message() -> String {
    "delta generation failed".to_owned()
}

impl Outcome {
    pub fn success(size: u64) -> Outcome {
        Outcome::Success {
            size: Some(size),
            duration_ms: None,
        }
    }
    pub fn failed(error_message: impl Into<String>) -> Outcome {
        Outcome::Failed {
            error_message: error_message.into(),
            duration_ms: None,
        }
    }
    pub fn stalled() -> Outcome {
        Outcome::Stalled { after_ms: 0 }
    }
    /// Overrides the build time of this attempt (for a stall: when its heartbeat stops).
    pub fn after(self, duration: Duration) -> Outcome {
        let ms = duration.as_millis() as u64;
        match self {
            Outcome::Success { size, .. } => Outcome::Success {
                size,
                duration_ms: Some(ms),
            },
            Outcome::Failed { error_message, .. } => Outcome::Failed {
                error_message,
                duration_ms: Some(ms),
            },
            Outcome::Stalled { .. } => Outcome::Stalled { after_ms: ms },
        }
    }
}

pub(crate) fn plus(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.saturating_add(d).unwrap_or(t)
}

pub(crate) fn default_image_location(id: i64) -> String {
    format!(
        "registry2.balena-cloud.com/v2/{}",
        rng::hex_of(id as u64 ^ 0x1a6e, 32)
    )
}

pub(crate) fn default_content_hash(id: i64) -> String {
    format!("sha256:{}", rng::hex_of(id as u64 ^ 0xc0ffee, 64))
}

/// `<dest location>:delta-<16 hex>`, stable for a row.
pub(crate) fn delta_location(dest_location: &str, row: i64, src: i64, dest: i64) -> String {
    let key = rng::mix(row as u64) ^ rng::mix((src as u64) << 1) ^ (dest as u64);
    format!("{dest_location}:delta-{}", rng::hex_of(key, 16))
}
