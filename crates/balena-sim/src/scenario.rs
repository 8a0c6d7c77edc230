//! Scenarios: the initial state of a simulated balenaCloud (users, fleets,
//! releases, images, devices, deltas), who may call it (tokens), how its clock
//! runs, how delta builds behave and which faults are injected. A scenario is
//! a JSON file (the format is the serde types of `spec.rs`, documented in the
//! crate README), a built-in (`demo`) or generated (`generated:services=…`).
//! This module loads, resolves and checks them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use crate::clock::Clock;
use crate::faults::Faults;

pub use crate::generated::GeneratedOptions;
pub use crate::spec::{
    ApplicationSpec, DeltaPair, DeltaSettings, DeltaSpec, DeviceSpec, ImageSpec, LayerSpec,
    ManifestFormat, Outcome, ReleaseSpec, Scenario, ScenarioError, ServiceSpec, UserSpec,
};

fn err<T>(message: impl Into<String>) -> Result<T, ScenarioError> {
    Err(ScenarioError(message.into()))
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

    /// The demo fleet with four more devices in `kiosk-fleet`, pinned (see
    /// [`crate::demo::DEVICE_NORTH`] and the next three).
    pub fn demo_pinned() -> Scenario {
        crate::demo::pinned_scenario()
    }

    /// A built-in by name: `demo`, `demo-pinned`, or `generated:services=N,releases=R,devices=D`.
    pub fn builtin(name: &str) -> Option<Scenario> {
        match name {
            "demo" => Some(Scenario::demo()),
            "demo-pinned" => Some(Scenario::demo_pinned()),
            _ => {
                let spec = name
                    .strip_prefix("generated:")
                    .or((name == "generated").then_some(""))?;
                crate::generated::from_spec(spec).ok()
            }
        }
    }

    /// A built-in name, a `generated:` spec or a path to a JSON file.
    pub fn resolve(arg: &str) -> Result<Scenario, ScenarioError> {
        if let Some(builtin) = ["demo", "demo-pinned"]
            .contains(&arg)
            .then(|| Scenario::builtin(arg))
            .flatten()
        {
            return Ok(builtin);
        }
        if let Some(spec) = arg
            .strip_prefix("generated:")
            .or((arg == "generated").then_some(""))
        {
            return crate::generated::from_spec(spec);
        }
        let path = Path::new(arg);
        if !path.exists() {
            return err(format!(
                "scenario `{arg}` is neither a built-in (`demo`, `demo-pinned`, `generated:services=N,releases=R,devices=D,pinned_percent=P`) nor an existing file"
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

    /// Adds `count` devices to application `application` that run no
    /// release and follow the fleet, with ids after the largest.
    pub fn with_devices_without_release(mut self, application: i64, count: usize) -> Scenario {
        let first = self.devices.iter().map(|d| d.id).max().unwrap_or(0) + 1;
        for id in (first..).take(count) {
            self.devices.push(DeviceSpec {
                id,
                belongs_to__application: application,
                device_name: None,
                uuid: None,
                is_running__release: None,
                is_pinned_on__release: None,
                is_online: true,
                created_at: None,
                config_variables: Default::default(),
            });
        }
        self
    }

    /// Serves the API without the `delta` resource, like openBalena.
    pub fn with_openbalena(mut self) -> Scenario {
        self.openbalena = true;
        self
    }

    /// Pins `percent` % of the devices that have no pin yet, spread over the
    /// device list: every other one to the release it runs, the others
    /// to the successful release of its application before that one (to
    /// the release it runs when there is none before). A device that runs no
    /// release is pinned to its application's first successful release.
    pub fn with_pinned_percent(mut self, percent: u8) -> Scenario {
        let percent = usize::from(percent.min(100));
        let n = self.devices.len().max(1);
        // i ↦ i·K mod n is a permutation (K is a prime above any device
        // count), so exactly n·percent/100 devices are picked, spread over
        // the list without lining up with any period of it.
        const K: usize = 1_000_000_007;
        let quota = self.devices.len() * percent / 100;
        let mut successful: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for r in self.releases.iter().filter(|r| r.status == "success") {
            successful
                .entry(r.belongs_to__application)
                .or_default()
                .push(r.id);
        }
        let mut pinned = 0usize;
        for (i, device) in self.devices.iter_mut().enumerate() {
            if i * (K % n) % n >= quota || device.is_pinned_on__release.is_some() {
                continue;
            }
            let Some(releases) = successful.get(&device.belongs_to__application) else {
                continue;
            };
            let running = device.is_running__release;
            let at = running.and_then(|r| releases.iter().position(|x| *x == r));
            device.is_pinned_on__release = match (at, pinned % 2) {
                (Some(at), 1) => Some(releases[at.saturating_sub(1)]),
                (Some(at), _) => Some(releases[at]),
                (None, _) => releases.first().copied(),
            };
            pinned += 1;
        }
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
            layers_ok("image", i.id, i.layers.as_deref())?;
            for platform in &i.platforms {
                let parts: Vec<&str> = platform.split('/').collect();
                if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
                    return err(format!(
                        "image({}): platform `{platform}` must be `os/architecture[/variant]`",
                        i.id
                    ));
                }
            }
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
                ("is_pinned_on__release", d.is_pinned_on__release),
            ] {
                if let Some(release) = release {
                    refers("device", d.id, field, release, &releases)?;
                }
            }
            if let Some(pin) = d.is_pinned_on__release
                && release_app[&pin] != d.belongs_to__application
            {
                return err(format!(
                    "device({}): `is_pinned_on__release` `{pin}` belongs to another application",
                    d.id
                ));
            }
        }
        for d in &self.deltas {
            if let Some(src) = d.originates_from__image {
                refers("delta", d.id, "originates_from__image", src, &images)?;
            }
            refers("delta", d.id, "produces__image", d.produces__image, &images)?;
            status_ok("delta", d.id, &d.status)?;
            layers_ok("delta", d.id, d.layers.as_deref())?;
        }
        for p in &self.delta.pairs {
            refers("delta pair", p.src, "src", p.src, &images)?;
            refers("delta pair", p.src, "dest", p.dest, &images)?;
        }
        Ok(())
    }
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

/// Layer digests are `sha256:<64 lowercase hex>`; a manifest has at least one layer.
fn layers_ok(resource: &str, id: i64, layers: Option<&[LayerSpec]>) -> Result<(), ScenarioError> {
    let Some(layers) = layers else {
        return Ok(());
    };
    if layers.is_empty() {
        return err(format!(
            "{resource}({id}): `layers` must list at least one layer"
        ));
    }
    for layer in layers {
        let hex = layer.digest.strip_prefix("sha256:").unwrap_or_default();
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return err(format!(
                "{resource}({id}): layer digest `{}` must be `sha256:` and 64 lowercase hex digits",
                layer.digest
            ));
        }
    }
    Ok(())
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
    use crate::db::Value;

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
        let bad_layer = SMALL.replace(
            "\"image_size\": 1000",
            "\"image_size\": 1000, \"layers\": [{\"digest\": \"sha256:ABC\", \"size\": 1}]",
        );
        assert!(
            Scenario::from_json(&bad_layer)
                .unwrap_err()
                .0
                .contains("layer digest `sha256:ABC`")
        );
        let bad_platform = SMALL.replace(
            "\"image_size\": 1000",
            "\"image_size\": 1000, \"platforms\": [\"linux\"]",
        );
        assert!(Scenario::from_json(&bad_platform).is_err());
    }

    #[test]
    fn pins_load_under_the_old_and_the_new_name_and_stay_in_their_fleet() {
        let with = |field: &str, release: i64| {
            SMALL.replace(
                "\"delta\":",
                &format!(
                    "\"devices\": [{{\"id\": 5, \"belongs_to__application\": 10, \"{field}\": {release}}}], \"delta\":"
                ),
            )
        };
        for field in ["is_pinned_on__release", "should_be_running__release"] {
            let s = Scenario::from_json(&with(field, 100)).unwrap();
            assert_eq!(s.devices[0].is_pinned_on__release, Some(100), "{field}");
            assert!(s.to_json().contains("\"is_pinned_on__release\": 100"));
        }
        let other_app = with("is_pinned_on__release", 100).replace(
            "\"applications\": [",
            "\"applications\": [{\"id\": 11, \"app_name\": \"Other\"}, ",
        );
        let other_app = other_app.replace(
            "\"belongs_to__application\": 10, \"is_pinned",
            "\"belongs_to__application\": 11, \"is_pinned",
        );
        assert!(
            Scenario::from_json(&other_app)
                .unwrap_err()
                .0
                .contains("belongs to another application")
        );
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
