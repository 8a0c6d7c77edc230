//! Scenarios: the initial state of a simulated balenaCloud (users, fleets,
//! releases, images, devices, deltas), who may call it (tokens), how its clock
//! runs, how delta builds behave and which faults are injected. A scenario is
//! a JSON file (the format is this module's serde types, documented in the
//! crate README), a built-in (`demo`) or generated (`generated:services=…`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::db::{Db, Model, Value};
use crate::faults::Faults;
use crate::rng;

pub use crate::generated::GeneratedOptions;

/// A scenario file or built-in that cannot be used, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError(pub String);

impl std::fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScenarioError {}

fn err<T>(message: impl Into<String>) -> Result<T, ScenarioError> {
    Err(ScenarioError(message.into()))
}

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
    /// Default: a synthetic `sha256:<64 hex>` derived from the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    /// Default: `registry2.balena-cloud.com/v2/<32 hex derived from the id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_stored_at__image_location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
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
    /// A pin; `null` means the device follows its application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub should_be_running__release: Option<i64>,
    #[serde(default = "yes")]
    pub is_online: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
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

const STATUSES: &[&str] = &[
    "running",
    "success",
    "failed",
    "error",
    "cancelled",
    "interrupted",
];

impl Scenario {
    /// The built-in demo fleet (see [`crate::demo`]).
    pub fn demo() -> Scenario {
        crate::demo::scenario()
    }

    /// A built-in by name: `demo`, or `generated:services=N,releases=R,devices=D`.
    pub fn builtin(name: &str) -> Option<Scenario> {
        match name {
            "demo" => Some(Scenario::demo()),
            _ => {
                let spec = name
                    .strip_prefix("generated:")
                    .or((name == "generated").then_some(""))?;
                GeneratedOptions::parse(spec).ok().map(Scenario::generated)
            }
        }
    }

    /// A built-in name, a `generated:` spec or a path to a JSON file.
    pub fn resolve(arg: &str) -> Result<Scenario, ScenarioError> {
        if arg == "demo" {
            return Ok(Scenario::demo());
        }
        if let Some(spec) = arg
            .strip_prefix("generated:")
            .or((arg == "generated").then_some(""))
        {
            return GeneratedOptions::parse(spec).map(Scenario::generated);
        }
        let path = Path::new(arg);
        if !path.exists() {
            return err(format!(
                "scenario `{arg}` is neither a built-in (`demo`, `generated:services=N,releases=R,devices=D`) nor an existing file"
            ));
        }
        Scenario::from_path(path)
    }

    /// A generated fleet for benchmarks (see [`GeneratedOptions`]).
    pub fn generated(options: GeneratedOptions) -> Scenario {
        crate::generated::scenario(&options)
    }

    /// Parses and checks a scenario file's text.
    pub fn from_json(text: &str) -> Result<Scenario, ScenarioError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let scenario: Scenario = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." {
                ScenarioError(format!("invalid scenario: {inner}"))
            } else {
                ScenarioError(format!("invalid scenario at `{path}`: {inner}"))
            }
        })?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Reads and checks a scenario file.
    pub fn from_path(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ScenarioError(format!(
                "cannot read scenario file `{}`: {e}",
                path.display()
            ))
        })?;
        Scenario::from_json(&text).map_err(|e| ScenarioError(format!("{}: {e}", path.display())))
    }

    /// The scenario as JSON (the file format).
    pub fn to_json(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Scripts the successive build attempts of one image pair.
    pub fn with_delta_outcome(mut self, src: i64, dest: i64, outcomes: Vec<Outcome>) -> Scenario {
        self.pair_mut(src, dest).outcomes = outcomes;
        self
    }

    /// Fixes the build duration of one image pair.
    pub fn with_delta_duration(mut self, src: i64, dest: i64, duration: Duration) -> Scenario {
        self.pair_mut(src, dest).duration_ms = Some(duration.as_millis() as u64);
        self
    }

    pub fn with_build_throughput(mut self, bytes_per_sec: u64) -> Scenario {
        self.delta.throughput = bytes_per_sec;
        self
    }

    pub fn with_hold(mut self, hold: Duration) -> Scenario {
        self.delta.hold_ms = hold.as_millis() as u64;
        self
    }

    pub fn with_running_status(mut self, status: u16) -> Scenario {
        self.delta.running_status = status;
        self
    }

    pub fn with_faults(mut self, faults: Faults) -> Scenario {
        self.faults = faults;
        self
    }

    pub fn with_clock(mut self, clock: Clock) -> Scenario {
        self.clock = clock;
        self
    }

    /// Serves the API without the `delta` resource, like openBalena.
    pub fn with_openbalena(mut self) -> Scenario {
        self.openbalena = true;
        self
    }

    /// Adds an accepted token.
    pub fn with_token(mut self, token: impl Into<String>) -> Scenario {
        self.tokens.push(token.into());
        self
    }

    fn pair_mut(&mut self, src: i64, dest: i64) -> &mut DeltaPair {
        let pairs = &mut self.delta.pairs;
        let index = match pairs.iter().position(|p| p.src == src && p.dest == dest) {
            Some(i) => i,
            None => {
                pairs.push(DeltaPair {
                    src,
                    dest,
                    duration_ms: None,
                    outcomes: Vec::new(),
                });
                pairs.len() - 1
            }
        };
        &mut pairs[index]
    }

    /// Checks references, ids and values; every problem names the row.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        if self.tokens.is_empty() {
            return err("`tokens` must list at least one token");
        }
        for token in &self.tokens {
            if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return err(format!(
                    "token `{token}` must be non-empty visible ASCII without spaces"
                ));
            }
        }
        self.clock.validate().map_err(ScenarioError)?;
        self.faults.validate().map_err(ScenarioError)?;
        if self.delta.throughput == 0 {
            return err("`delta.throughput` must be at least 1 byte per second");
        }
        if !(400..=599).contains(&self.delta.running_status) {
            return err(format!(
                "`delta.running_status` must be 400..=599, got `{}`",
                self.delta.running_status
            ));
        }

        let users = unique_ids("user", self.users.iter().map(|u| u.id))?;
        let apps = unique_ids("application", self.applications.iter().map(|a| a.id))?;
        let services = unique_ids("service", self.services.iter().map(|s| s.id))?;
        let images = unique_ids("image", self.images.iter().map(|i| i.id))?;
        let releases = unique_ids("release", self.releases.iter().map(|r| r.id))?;
        unique_ids("device", self.devices.iter().map(|d| d.id))?;
        unique_ids("delta", self.deltas.iter().map(|d| d.id))?;

        let service_app: BTreeMap<i64, i64> = self
            .services
            .iter()
            .map(|s| (s.id, s.application))
            .collect();
        let image_service: BTreeMap<i64, i64> = self
            .images
            .iter()
            .map(|i| (i.id, i.is_a_build_of__service))
            .collect();
        let release_app: BTreeMap<i64, i64> = self
            .releases
            .iter()
            .map(|r| (r.id, r.belongs_to__application))
            .collect();

        for s in &self.services {
            refers("service", s.id, "application", s.application, &apps)?;
            if s.service_name.is_empty() || s.service_name.len() > 63 {
                return err(format!(
                    "service({}): `service_name` must have 1 to 63 characters",
                    s.id
                ));
            }
        }
        for i in &self.images {
            refers(
                "image",
                i.id,
                "is_a_build_of__service",
                i.is_a_build_of__service,
                &services,
            )?;
            status_ok("image", i.id, &i.status)?;
        }
        for r in &self.releases {
            refers(
                "release",
                r.id,
                "belongs_to__application",
                r.belongs_to__application,
                &apps,
            )?;
            if let Some(user) = r.is_created_by__user {
                refers("release", r.id, "is_created_by__user", user, &users)?;
            }
            status_ok("release", r.id, &r.status)?;
            if r.commit.is_empty() || r.commit.len() > 40 {
                return err(format!(
                    "release({}): `commit` must have 1 to 40 characters",
                    r.id
                ));
            }
            let mut seen_services = BTreeSet::new();
            for image in &r.images {
                refers("release", r.id, "images", *image, &images)?;
                let service = image_service[image];
                if service_app[&service] != r.belongs_to__application {
                    return err(format!(
                        "release({}): image `{image}` is a build of a service of another application",
                        r.id
                    ));
                }
                if !seen_services.insert(service) {
                    return err(format!(
                        "release({}): two images of service `{service}`",
                        r.id
                    ));
                }
            }
        }
        for a in &self.applications {
            if let Some(release) = a.should_be_running__release {
                refers(
                    "application",
                    a.id,
                    "should_be_running__release",
                    release,
                    &releases,
                )?;
                if release_app[&release] != a.id {
                    return err(format!(
                        "application({}): release `{release}` belongs to another application",
                        a.id
                    ));
                }
            }
        }
        for d in &self.devices {
            refers(
                "device",
                d.id,
                "belongs_to__application",
                d.belongs_to__application,
                &apps,
            )?;
            for (field, release) in [
                ("is_running__release", d.is_running__release),
                ("should_be_running__release", d.should_be_running__release),
            ] {
                if let Some(release) = release {
                    refers("device", d.id, field, release, &releases)?;
                }
            }
        }
        for d in &self.deltas {
            if let Some(src) = d.originates_from__image {
                refers("delta", d.id, "originates_from__image", src, &images)?;
            }
            refers("delta", d.id, "produces__image", d.produces__image, &images)?;
            status_ok("delta", d.id, &d.status)?;
        }
        for p in &self.delta.pairs {
            refers("delta pair", p.src, "src", p.src, &images)?;
            refers("delta pair", p.src, "dest", p.dest, &images)?;
        }
        Ok(())
    }

    /// The tables this scenario starts with.
    pub(crate) fn build_db(&self) -> Result<Db, ScenarioError> {
        self.validate()?;
        let mut db = Db::with_model(if self.openbalena {
            Model::OpenBalena
        } else {
            Model::BalenaCloud
        });
        let at = |given: Option<Timestamp>, index: usize| {
            given.unwrap_or_else(|| plus(self.epoch, SignedDuration::from_hours(index as i64)))
        };
        let opt_text = |v: &Option<String>| v.clone().map(Value::Text).unwrap_or(Value::Null);
        let opt_id = |v: Option<i64>| v.map(Value::Integer).unwrap_or(Value::Null);
        let opt_big = |v: Option<u64>| v.map(Value::BigInteger).unwrap_or(Value::Null);
        let schema = |e: crate::db::SchemaError| ScenarioError(e.to_string());

        for (i, u) in self.users.iter().enumerate() {
            db.insert(
                "user",
                &[
                    ("id", Value::Integer(u.id)),
                    ("created_at", Value::DateTime(at(u.created_at, i))),
                    ("username", Value::Text(u.username.clone())),
                ],
            )
            .map_err(schema)?;
        }
        let owner = self
            .users
            .first()
            .map(|u| u.username.clone())
            .unwrap_or_else(|| "admin".to_owned());
        for (i, a) in self.applications.iter().enumerate() {
            let slug = a
                .slug
                .clone()
                .unwrap_or_else(|| format!("{owner}/{}", a.app_name.to_lowercase()));
            db.insert(
                "application",
                &[
                    ("id", Value::Integer(a.id)),
                    ("created_at", Value::DateTime(at(a.created_at, i))),
                    ("app_name", Value::Text(a.app_name.clone())),
                    ("slug", Value::Text(slug)),
                    ("is_public", Value::Boolean(a.is_public)),
                    ("is_host", Value::Boolean(false)),
                    (
                        "should_track_latest_release",
                        Value::Boolean(a.should_track_latest_release),
                    ),
                    (
                        "should_be_running__release",
                        opt_id(a.should_be_running__release),
                    ),
                ],
            )
            .map_err(schema)?;
        }
        for (i, s) in self.services.iter().enumerate() {
            db.insert(
                "service",
                &[
                    ("id", Value::Integer(s.id)),
                    ("created_at", Value::DateTime(at(s.created_at, i))),
                    ("application", Value::Integer(s.application)),
                    ("service_name", Value::Text(s.service_name.clone())),
                ],
            )
            .map_err(schema)?;
        }
        let mut image_location = BTreeMap::new();
        for (i, im) in self.images.iter().enumerate() {
            let created = at(im.created_at, i);
            let location = im
                .is_stored_at__image_location
                .clone()
                .unwrap_or_else(|| default_image_location(im.id));
            image_location.insert(im.id, location.clone());
            let done = im.status != "running";
            db.insert(
                "image",
                &[
                    ("id", Value::Integer(im.id)),
                    ("created_at", Value::DateTime(created)),
                    (
                        "content_hash",
                        Value::Text(
                            im.content_hash
                                .clone()
                                .unwrap_or_else(|| default_content_hash(im.id)),
                        ),
                    ),
                    (
                        "project_type",
                        Value::Text("Standard Dockerfile".to_owned()),
                    ),
                    ("status", Value::Text(im.status.clone())),
                    ("is_stored_at__image_location", Value::Text(location)),
                    ("start_timestamp", Value::DateTime(created)),
                    (
                        "end_timestamp",
                        if done {
                            Value::DateTime(plus(created, minutes(3)))
                        } else {
                            Value::Null
                        },
                    ),
                    (
                        "push_timestamp",
                        if done {
                            Value::DateTime(plus(created, minutes(3)))
                        } else {
                            Value::Null
                        },
                    ),
                    ("image_size", opt_big(im.image_size)),
                    (
                        "is_a_build_of__service",
                        Value::Integer(im.is_a_build_of__service),
                    ),
                ],
            )
            .map_err(schema)?;
        }
        let service_name: BTreeMap<i64, &str> = self
            .services
            .iter()
            .map(|s| (s.id, s.service_name.as_str()))
            .collect();
        let image_service: BTreeMap<i64, i64> = self
            .images
            .iter()
            .map(|i| (i.id, i.is_a_build_of__service))
            .collect();
        let mut release_image_id = 0;
        for (i, r) in self.releases.iter().enumerate() {
            let created = at(r.created_at, i);
            let done = r.status != "running";
            let end = if done {
                Value::DateTime(plus(created, minutes(4)))
            } else {
                Value::Null
            };
            let semver = r.semver.clone().unwrap_or_else(|| "0.0.0".to_owned());
            let parts: Vec<i64> = semver
                .split(['.', '-', '+'])
                .take(3)
                .map(|p| p.parse().unwrap_or(0))
                .collect();
            let mut services = serde_json::Map::new();
            for image in &r.images {
                let name = service_name[&image_service[image]];
                services.insert(
                    name.to_owned(),
                    serde_json::json!({ "build": { "context": format!("./{name}") } }),
                );
            }
            db.insert(
                "release",
                &[
                    ("id", Value::Integer(r.id)),
                    ("created_at", Value::DateTime(created)),
                    (
                        "belongs_to__application",
                        Value::Integer(r.belongs_to__application),
                    ),
                    ("is_created_by__user", opt_id(r.is_created_by__user)),
                    ("commit", Value::Text(r.commit.clone())),
                    (
                        "composition",
                        Value::Json(serde_json::json!({ "version": "2.1", "services": services })),
                    ),
                    ("status", Value::Text(r.status.clone())),
                    ("source", Value::Text("cloud".to_owned())),
                    ("is_invalidated", Value::Boolean(false)),
                    ("start_timestamp", Value::DateTime(created)),
                    (
                        "update_timestamp",
                        if done {
                            end.clone()
                        } else {
                            Value::DateTime(created)
                        },
                    ),
                    ("end_timestamp", end.clone()),
                    ("semver", Value::Text(semver.clone())),
                    (
                        "semver_major",
                        Value::Integer(parts.first().copied().unwrap_or(0)),
                    ),
                    (
                        "semver_minor",
                        Value::Integer(parts.get(1).copied().unwrap_or(0)),
                    ),
                    (
                        "semver_patch",
                        Value::Integer(parts.get(2).copied().unwrap_or(0)),
                    ),
                    ("semver_prerelease", Value::Text(String::new())),
                    ("semver_build", Value::Text(String::new())),
                    ("variant", Value::Text(String::new())),
                    (
                        "revision",
                        if r.status == "success" {
                            Value::Integer(0)
                        } else {
                            Value::Null
                        },
                    ),
                    (
                        "raw_version",
                        Value::Text(if r.status == "success" {
                            semver
                        } else {
                            format!("0.0.0-{}", r.id)
                        }),
                    ),
                    ("is_final", Value::Boolean(r.is_final)),
                    (
                        "is_finalized_at__date",
                        if r.is_final && done { end } else { Value::Null },
                    ),
                ],
            )
            .map_err(schema)?;
            for image in &r.images {
                release_image_id += 1;
                db.insert(
                    "release_image",
                    &[
                        ("id", Value::Integer(release_image_id)),
                        ("created_at", Value::DateTime(plus(created, minutes(4)))),
                        ("image", Value::Integer(*image)),
                        ("is_part_of__release", Value::Integer(r.id)),
                    ],
                )
                .map_err(schema)?;
            }
        }
        for (i, d) in self.devices.iter().enumerate() {
            db.insert(
                "device",
                &[
                    ("id", Value::Integer(d.id)),
                    ("created_at", Value::DateTime(at(d.created_at, i))),
                    (
                        "uuid",
                        Value::Text(
                            d.uuid
                                .clone()
                                .unwrap_or_else(|| rng::hex_of(d.id as u64 ^ 0xdec1ce, 32)),
                        ),
                    ),
                    (
                        "device_name",
                        Value::Text(
                            d.device_name
                                .clone()
                                .unwrap_or_else(|| format!("device-{}", d.id)),
                        ),
                    ),
                    (
                        "belongs_to__application",
                        Value::Integer(d.belongs_to__application),
                    ),
                    ("is_running__release", opt_id(d.is_running__release)),
                    (
                        "should_be_running__release",
                        opt_id(d.should_be_running__release),
                    ),
                    ("is_online", Value::Boolean(d.is_online)),
                    (
                        "api_heartbeat_state",
                        Value::Text(if d.is_online { "online" } else { "offline" }.to_owned()),
                    ),
                ],
            )
            .map_err(schema)?;
        }
        for (i, d) in self.deltas.iter().enumerate() {
            let created = at(d.created_at, i);
            let done = d.status != "running";
            let location = match (&d.is_stored_at__location, d.status.as_str()) {
                (Some(l), _) => Value::Text(l.clone()),
                (None, "success") => Value::Text(delta_location(
                    &image_location[&d.produces__image],
                    d.id,
                    d.originates_from__image.unwrap_or(0),
                    d.produces__image,
                )),
                _ => Value::Null,
            };
            let end = plus(created, minutes(2));
            db.insert(
                "delta",
                &[
                    ("id", Value::Integer(d.id)),
                    ("created_at", Value::DateTime(created)),
                    ("originates_from__image", opt_id(d.originates_from__image)),
                    ("produces__image", Value::Integer(d.produces__image)),
                    ("version", Value::Integer(d.version)),
                    ("status", Value::Text(d.status.clone())),
                    ("is_stored_at__location", location),
                    ("size", opt_big(d.size)),
                    ("start_timestamp", Value::DateTime(created)),
                    (
                        "update_timestamp",
                        Value::DateTime(if done { end } else { created }),
                    ),
                    (
                        "end_timestamp",
                        if done {
                            Value::DateTime(end)
                        } else {
                            Value::Null
                        },
                    ),
                    ("error_message", opt_text(&d.error_message)),
                ],
            )
            .map_err(schema)?;
        }
        Ok(db)
    }
}

fn minutes(n: i64) -> SignedDuration {
    SignedDuration::from_mins(n)
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

fn unique_ids(
    resource: &str,
    ids: impl Iterator<Item = i64>,
) -> Result<BTreeSet<i64>, ScenarioError> {
    let mut set = BTreeSet::new();
    for id in ids {
        if id <= 0 {
            return err(format!("{resource}: id `{id}` must be a positive integer"));
        }
        if !set.insert(id) {
            return err(format!("{resource}({id}) is defined twice"));
        }
    }
    Ok(set)
}

fn refers(
    resource: &str,
    id: i64,
    field: &str,
    target: i64,
    known: &BTreeSet<i64>,
) -> Result<(), ScenarioError> {
    if known.contains(&target) {
        Ok(())
    } else {
        err(format!(
            "{resource}({id}): `{field}` refers to `{target}`, which is not defined"
        ))
    }
}

fn status_ok(resource: &str, id: i64, status: &str) -> Result<(), ScenarioError> {
    if STATUSES.contains(&status) {
        Ok(())
    } else {
        err(format!(
            "{resource}({id}): unknown status `{status}` (expected one of {})",
            STATUSES.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"{
        "tokens": ["t0k3n"],
        "users": [{"id": 1, "username": "ana"}],
        "applications": [{"id": 10, "app_name": "Fleet", "should_be_running__release": 100}],
        "services": [{"id": 20, "application": 10, "service_name": "main"}],
        "images": [{"id": 30, "is_a_build_of__service": 20, "image_size": 1000}],
        "releases": [{"id": 100, "belongs_to__application": 10, "commit": "abcdef", "images": [30], "is_created_by__user": 1}],
        "delta": {"pairs": [{"src": 30, "dest": 30, "outcomes": [{"result": "failed", "error_message": "boom"}]}]}
    }"#;

    #[test]
    fn a_small_file_parses_and_builds_rows_with_defaults() {
        let s = Scenario::from_json(SMALL).unwrap();
        assert_eq!(s.delta.pairs[0].outcomes, vec![Outcome::failed("boom")]);
        let db = s.build_db().unwrap();
        assert_eq!(
            db.get("application", 10, "slug"),
            Some(&Value::Text("ana/fleet".into()))
        );
        assert_eq!(
            db.get("release", 100, "status"),
            Some(&Value::Text("success".into()))
        );
        assert_eq!(
            db.get("release_image", 1, "image"),
            Some(&Value::Integer(30))
        );
        assert_eq!(
            db.get("image", 30, "image_size"),
            Some(&Value::BigInteger(1000))
        );
        let Some(Value::Text(hash)) = db.get("image", 30, "content_hash") else {
            panic!("no hash")
        };
        assert!(hash.starts_with("sha256:") && hash.len() == 71);
        // The file format round-trips.
        assert_eq!(Scenario::from_json(&s.to_json()).unwrap(), s);
    }

    #[test]
    fn mistakes_are_reported_with_their_place() {
        let unknown_field = SMALL.replace("\"app_name\"", "\"name\"");
        let e = Scenario::from_json(&unknown_field).unwrap_err().0;
        assert!(e.contains("applications[0]"), "{e}");
        let dangling = SMALL.replace("\"images\": [30]", "\"images\": [31]");
        let e = Scenario::from_json(&dangling).unwrap_err().0;
        assert_eq!(
            e,
            "release(100): `images` refers to `31`, which is not defined"
        );
        let no_token = SMALL.replace("[\"t0k3n\"]", "[]");
        assert!(Scenario::from_json(&no_token).is_err());
        let bad_status = SMALL.replace(
            "\"image_size\": 1000",
            "\"image_size\": 1000, \"status\": \"done\"",
        );
        assert!(
            Scenario::from_json(&bad_status)
                .unwrap_err()
                .0
                .contains("unknown status `done`")
        );
        assert!(Scenario::from_json("[1,").is_err());
    }

    #[test]
    fn builders_script_pairs() {
        let s = Scenario::from_json(SMALL)
            .unwrap()
            .with_delta_outcome(30, 30, vec![Outcome::stalled()])
            .with_delta_duration(30, 30, Duration::from_secs(3));
        assert_eq!(s.delta.pairs.len(), 1);
        assert_eq!(s.delta.pairs[0].duration_ms, Some(3000));
        assert_eq!(
            s.delta.pairs[0].outcomes,
            vec![Outcome::Stalled { after_ms: 0 }]
        );
        assert!(Scenario::builtin("nope").is_none());
        assert!(Scenario::resolve("/does/not/exist.json").is_err());
    }
}
