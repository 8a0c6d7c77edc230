//! Generated scenarios for benchmarks and scale tests: one application whose
//! releases have N services, R releases and D devices spread over them, with
//! the same mix of unchanged, same-content and changed images between
//! consecutive releases every time.

use crate::clock::Clock;
use crate::faults::Faults;
use crate::registry::content::{LayerDeriver, image_manifest};
use crate::rng::SplitMix;
use crate::spec::{
    ApplicationSpec, DeltaSettings, DeviceSpec, ImageSpec, ManifestFormat, ReleaseSpec, Scenario,
    ScenarioError, ServiceSpec, UserSpec,
};

/// The shape of a generated fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneratedOptions {
    pub services: usize,
    pub releases: usize,
    pub devices: usize,
}

impl Default for GeneratedOptions {
    fn default() -> GeneratedOptions {
        GeneratedOptions {
            services: 10,
            releases: 2,
            devices: 0,
        }
    }
}

/// The token of generated scenarios.
pub const TOKEN: &str = "sim-generated-token";
/// The application of generated scenarios.
pub const APP_ID: i64 = 1;

/// A `generated:` spec: `services=N,releases=R,devices=D,pinned_percent=P`
/// (any subset, any order); `pinned_percent` pins that share of the devices
/// (see [`Scenario::with_pinned_percent`]).
pub(crate) fn from_spec(spec: &str) -> Result<Scenario, ScenarioError> {
    let mut pinned = 0u8;
    let mut shape = Vec::new();
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        match part.strip_prefix("pinned_percent=") {
            Some(value) => {
                pinned = value
                    .parse()
                    .ok()
                    .filter(|p| *p <= 100)
                    .ok_or_else(|| {
                        ScenarioError(format!(
                            "generated scenario: `pinned_percent` must be a whole number 0..=100, got `{value}`"
                        ))
                    })?;
            }
            None => shape.push(part),
        }
    }
    let options = GeneratedOptions::parse(&shape.join(","))?;
    Ok(scenario(&options).with_pinned_percent(pinned))
}

impl GeneratedOptions {
    /// Parses `services=50,releases=2,devices=0` (any subset, any order).
    /// The share of pinned devices is not a shape: `Scenario::resolve` reads
    /// `pinned_percent`.
    pub fn parse(spec: &str) -> Result<GeneratedOptions, ScenarioError> {
        let mut options = GeneratedOptions::default();
        for part in spec.split(',').filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(|| {
                ScenarioError(format!(
                    "generated scenario: expected `key=value`, got `{part}`"
                ))
            })?;
            let n: usize = value.parse().map_err(|_| {
                ScenarioError(format!(
                    "generated scenario: `{key}` must be a whole number, got `{value}`"
                ))
            })?;
            match key {
                "services" => options.services = n,
                "releases" => options.releases = n,
                "devices" => options.devices = n,
                _ => {
                    return Err(ScenarioError(format!(
                        "generated scenario: unknown key `{key}` (expected services, releases, devices, pinned_percent)"
                    )));
                }
            }
        }
        if !(1..=2000).contains(&options.services) {
            return Err(ScenarioError(format!(
                "generated scenario: `services` must be 1..=2000, got `{}`",
                options.services
            )));
        }
        if !(1..=10_000).contains(&options.releases) {
            return Err(ScenarioError(format!(
                "generated scenario: `releases` must be 1..=10000, got `{}`",
                options.releases
            )));
        }
        if options.devices > 1_000_000 {
            return Err(ScenarioError(format!(
                "generated scenario: `devices` must be at most 1000000, got `{}`",
                options.devices
            )));
        }
        Ok(options)
    }
}

/// Release `r` (0-based) of service `i`: how its image relates to release `r-1`.
#[derive(Debug, PartialEq, Eq)]
enum Change {
    Same,
    SameContent,
    Changed,
}

fn change(service: usize, release: usize) -> Change {
    match (service + release) % 4 {
        0 => Change::Same,
        1 => Change::SameContent,
        _ => Change::Changed,
    }
}

pub(crate) fn scenario(options: &GeneratedOptions) -> Scenario {
    let mut rng = SplitMix::new(0x5eed_0001);
    let width = options.services.to_string().len().max(2);
    let services: Vec<ServiceSpec> = (0..options.services)
        .map(|i| ServiceSpec {
            id: i as i64 + 1,
            application: APP_ID,
            service_name: format!("svc{:0width$}", i + 1),
            created_at: None,
        })
        .collect();
    let mut images = Vec::new();
    let mut releases = Vec::new();
    // Per service: (image id, content identity, size) in the previous release.
    let mut current: Vec<(i64, String, u64)> = Vec::new();
    let mut layers = LayerDeriver::default();
    for r in 0..options.releases {
        let mut release_images = Vec::with_capacity(options.services);
        for (i, service) in services.iter().enumerate() {
            let next = match (r, current.get(i)) {
                (0, _) | (_, None) => None,
                (_, Some(prev)) => match change(i, r) {
                    Change::Same => Some(prev.clone()),
                    Change::SameContent => Some((images.len() as i64 + 1, prev.1.clone(), prev.2)),
                    Change::Changed => None,
                },
            };
            let (id, hash, size) = next.unwrap_or_else(|| {
                let size = match current.get(i) {
                    Some(prev) => {
                        (prev.2 as f64 * (0.9 + rng.range(0, 200) as f64 / 1000.0)) as u64
                    }
                    None => rng.range(20_000_000, 300_000_000),
                };
                (
                    images.len() as i64 + 1,
                    format!("sha256:{}", rng.hex(64)),
                    size,
                )
            });
            if id == images.len() as i64 + 1 {
                let image_layers = layers.layers(APP_ID, service.id, &hash, Some(size));
                let manifest = image_manifest(ManifestFormat::Docker, &image_layers);
                images.push(ImageSpec {
                    id,
                    is_a_build_of__service: service.id,
                    status: "success".into(),
                    image_size: Some(size),
                    content_hash: Some(manifest.digest),
                    is_stored_at__image_location: None,
                    created_at: None,
                    layers: Some(image_layers),
                    manifest_format: ManifestFormat::Docker,
                    platforms: Vec::new(),
                    manifest: Default::default(),
                });
            }
            release_images.push(id);
            if current.len() <= i {
                current.push((id, hash, size));
            } else {
                current[i] = (id, hash, size);
            }
        }
        releases.push(ReleaseSpec {
            id: r as i64 + 1,
            belongs_to__application: APP_ID,
            commit: rng.hex(40),
            status: "success".into(),
            is_created_by__user: Some(1),
            semver: Some(format!("1.{r}.0")),
            is_final: true,
            images: release_images,
            created_at: None,
            composition: Default::default(),
        });
    }
    let devices = (0..options.devices)
        .map(|d| DeviceSpec {
            id: d as i64 + 1,
            belongs_to__application: APP_ID,
            device_name: Some(format!("node-{:05}", d + 1)),
            uuid: None,
            is_running__release: Some((d % options.releases) as i64 + 1),
            is_pinned_on__release: None,
            is_online: d % 10 != 9,
            created_at: None,
            config_variables: Default::default(),
        })
        .collect();
    Scenario {
        name: format!(
            "generated:services={},releases={},devices={}",
            options.services, options.releases, options.devices
        ),
        tokens: vec![TOKEN.to_owned()],
        openbalena: false,
        clock: Clock::Real,
        epoch: "2025-06-01T00:00:00Z"
            .parse()
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
        delta: DeltaSettings {
            throughput: 200_000_000,
            ..DeltaSettings::default()
        },
        faults: Faults::none(),
        users: vec![UserSpec {
            id: 1,
            username: "bench".into(),
            created_at: None,
        }],
        applications: vec![ApplicationSpec {
            id: APP_ID,
            app_name: "bench-fleet".into(),
            slug: None,
            should_be_running__release: Some(options.releases as i64),
            is_public: false,
            should_track_latest_release: true,
            created_at: None,
            config_variables: Default::default(),
        }],
        services,
        images,
        releases,
        devices,
        deltas: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs_and_refuses_nonsense() {
        assert_eq!(
            GeneratedOptions::parse("services=50,releases=2,devices=0").unwrap(),
            GeneratedOptions {
                services: 50,
                releases: 2,
                devices: 0
            }
        );
        assert_eq!(
            GeneratedOptions::parse("").unwrap(),
            GeneratedOptions::default()
        );
        assert!(GeneratedOptions::parse("services=x").is_err());
        assert!(GeneratedOptions::parse("colour=3").is_err());
        assert!(GeneratedOptions::parse("services=0").is_err());
        assert!(GeneratedOptions::parse("services").is_err());
    }

    #[test]
    fn consecutive_releases_mix_unchanged_same_content_and_changed_images() {
        let s = scenario(&GeneratedOptions {
            services: 8,
            releases: 3,
            devices: 30,
        });
        s.validate().unwrap();
        let (r1, r2) = (&s.releases[0].images, &s.releases[1].images);
        let same = r1.iter().zip(r2).filter(|(a, b)| a == b).count();
        assert_eq!(same, 2);
        let hash = |id: &i64| {
            s.images
                .iter()
                .find(|i| i.id == *id)
                .and_then(|i| i.content_hash.clone())
        };
        let same_content = r1
            .iter()
            .zip(r2)
            .filter(|(a, b)| a != b && hash(a) == hash(b))
            .count();
        assert_eq!(same_content, 2);
        assert_eq!(
            s.devices
                .iter()
                .filter(|d| d.is_running__release == Some(3))
                .count(),
            10
        );
        let names: Vec<_> = s.services.iter().map(|x| x.service_name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        let db = s.build_db().unwrap();
        assert_eq!(db.rows("release_image").count(), 24);
        // Every image carries its layers; its content hash is its manifest's digest.
        for im in &s.images {
            let layers = im.layers.as_ref().unwrap();
            let manifest = image_manifest(ManifestFormat::Docker, layers);
            assert_eq!(im.content_hash.as_deref(), Some(manifest.digest.as_str()));
        }
        assert_eq!(Scenario::from_json(&s.to_json()).unwrap(), s);
    }
}
