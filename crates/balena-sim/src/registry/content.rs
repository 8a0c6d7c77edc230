//! What the simulated registry holds: a manifest (Docker schema 2 or OCI,
//! or a list / index of them) and layer blobs for every scenario image, built
//! once at start, plus the delta images, derived from `success` delta rows
//! whenever they are asked for. Layers a file leaves out are derived the way
//! real builds share them: one base layer per application, a middle layer per
//! service that changes every third distinct build, a top layer per content.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::db::{Db, Value};
use crate::rng;
use crate::sha256::digest_string;
use crate::spec::{
    LayerSpec, ManifestFormat, Scenario, ScenarioError, default_content_hash,
    default_image_location,
};

pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// The registry host named by scenarios without images.
pub(crate) const DEFAULT_REGISTRY_HOST: &str = "registry2.balena-cloud.com";

/// One manifest as served: its bytes, media type and real digest.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Manifest {
    pub media_type: &'static str,
    pub bytes: Arc<[u8]>,
    pub digest: String,
}

impl Manifest {
    fn new(media_type: &'static str, value: &serde_json::Value) -> Manifest {
        // Plain JSON values always serialise.
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        Manifest {
            media_type,
            digest: digest_string(&bytes),
            bytes: bytes.into(),
        }
    }

    /// A manifest given as exact bytes: its media type is the one it names
    /// (Docker schema 2 when it names none the registry knows), and its
    /// layers and config are the blobs it references.
    fn verbatim(text: &str) -> Result<(Manifest, Vec<LayerSpec>, Option<LayerSpec>), String> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("a manifest is not JSON: {e}"))?;
        let media_type = [DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX]
            .into_iter()
            .find(|t| value["mediaType"] == *t)
            .unwrap_or(DOCKER_MANIFEST);
        let blob = |v: &serde_json::Value| -> Option<LayerSpec> {
            Some(LayerSpec {
                digest: v["digest"].as_str()?.to_owned(),
                size: v["size"].as_u64()?,
            })
        };
        let layers = value["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| blob(l).ok_or("a manifest layer lacks its digest or size".to_owned()))
            .collect::<Result<Vec<_>, _>>()?;
        let config = blob(&value["config"]);
        let bytes: Arc<[u8]> = text.as_bytes().into();
        Ok((
            Manifest {
                media_type,
                digest: digest_string(&bytes),
                bytes,
            },
            layers,
            config,
        ))
    }

    /// The platforms (`os/architecture[/variant]`) a list or index names.
    pub fn platforms(&self) -> Vec<String> {
        let value: serde_json::Value = serde_json::from_slice(&self.bytes).unwrap_or_default();
        value["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|entry| {
                let p = &entry["platform"];
                let mut text = format!(
                    "{}/{}",
                    p["os"].as_str().unwrap_or_default(),
                    p["architecture"].as_str().unwrap_or_default()
                );
                if let Some(variant) = p["variant"].as_str() {
                    text.push('/');
                    text.push_str(variant);
                }
                text
            })
            .collect()
    }
}

/// `(host, repository)` of a location `host/repository`; a tag (`repo:tag`)
/// is split off into the third part.
pub(crate) fn split_location(location: &str) -> (&str, &str, Option<&str>) {
    let (host, rest) = location.split_once('/').unwrap_or(("", location));
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    match rest[last_slash..].rfind(':') {
        Some(colon) => {
            let at = last_slash + colon;
            (host, &rest[..at], Some(&rest[at + 1..]))
        }
        None => (host, rest, None),
    }
}

/// A synthetic but well-formed blob digest, derived from a description.
fn synthetic_digest(description: &str) -> String {
    digest_string(format!("balena-sim blob: {description}").as_bytes())
}

fn layer_types(format: ManifestFormat) -> (&'static str, &'static str, &'static str) {
    match format {
        ManifestFormat::Docker => (
            DOCKER_MANIFEST,
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        ),
        ManifestFormat::Oci => (
            OCI_MANIFEST,
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ),
    }
}

/// The config blob of an image: derived from its layers, so equal layers
/// give equal manifests (and equal digests).
fn config_of(layers: &[LayerSpec]) -> LayerSpec {
    let joined: Vec<&str> = layers.iter().map(|l| l.digest.as_str()).collect();
    let key = joined.join(",");
    LayerSpec {
        digest: synthetic_digest(&format!("config of {key}")),
        size: 1200 + rng::mix(key.len() as u64 ^ layers.len() as u64) % 2400,
    }
}

/// The manifest of one image (one platform).
pub(crate) fn image_manifest(format: ManifestFormat, layers: &[LayerSpec]) -> Manifest {
    let (media_type, config_type, layer_type) = layer_types(format);
    let config = config_of(layers);
    let descriptor = |media: &str, blob: &LayerSpec| serde_json::json!({ "mediaType": media, "size": blob.size, "digest": blob.digest });
    let value = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(config_type, &config),
        "layers": layers.iter().map(|l| descriptor(layer_type, l)).collect::<Vec<_>>(),
    });
    Manifest::new(media_type, &value)
}

/// A manifest list (OCI index) with one entry per `(platform, manifest)`.
fn list_manifest(format: ManifestFormat, entries: &[(&str, &Manifest)]) -> Manifest {
    let media_type = match format {
        ManifestFormat::Docker => DOCKER_LIST,
        ManifestFormat::Oci => OCI_INDEX,
    };
    let manifests: Vec<serde_json::Value> = entries
        .iter()
        .map(|(platform, manifest)| {
            let mut parts = platform.split('/');
            let os = parts.next().unwrap_or_default();
            let architecture = parts.next().unwrap_or_default();
            let mut platform = serde_json::json!({ "architecture": architecture, "os": os });
            if let Some(variant) = parts.next() {
                platform["variant"] = variant.into();
            }
            serde_json::json!({
                "mediaType": manifest.media_type,
                "size": manifest.bytes.len(),
                "digest": manifest.digest,
                "platform": platform,
            })
        })
        .collect();
    let value = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": manifests,
    });
    Manifest::new(media_type, &value)
}

/// The derived layers of images whose scenario gives none (see the module
/// doc). Images must be passed in build order.
#[derive(Default)]
pub(crate) struct LayerDeriver {
    /// Per service: its distinct content hashes in order of appearance.
    contents: HashMap<i64, Vec<String>>,
    /// Per (service, generation): the middle layer's size.
    middles: HashMap<(i64, usize), u64>,
}

impl LayerDeriver {
    /// The layers of the next image of `service`; `identity` is equal for
    /// images of equal content (their content hash).
    pub(crate) fn layers(
        &mut self,
        app: i64,
        service: i64,
        identity: &str,
        image_size: Option<u64>,
    ) -> Vec<LayerSpec> {
        let hash = identity;
        let compressed = (image_size.unwrap_or(100_000_000) / 5 * 2).max(3);
        let base = base_layer(app);
        let seen = self.contents.entry(service).or_default();
        let index = match seen.iter().position(|h| h == hash) {
            Some(index) => index,
            None => {
                seen.push(hash.to_owned());
                seen.len() - 1
            }
        };
        let generation = index / 3;
        let middle_size = *self
            .middles
            .entry((service, generation))
            .or_insert((compressed / 10 * 3).max(1));
        let middle = LayerSpec {
            digest: synthetic_digest(&format!("middle layer {generation} of service {service}")),
            size: middle_size,
        };
        let top = LayerSpec {
            digest: synthetic_digest(&format!("top layer of {hash}")),
            size: compressed
                .saturating_sub(base.size + middle.size)
                .max(compressed / 10)
                .max(1),
        };
        vec![base, middle, top]
    }
}

/// The base layer every derived image of application `app` starts with.
pub(crate) fn base_layer(app: i64) -> LayerSpec {
    LayerSpec {
        digest: synthetic_digest(&format!("base layer of application {app}")),
        size: 5_000_000 + rng::mix(app as u64 ^ 0xba5e) % 7_000_000,
    }
}

/// A layer of `size` bytes whose digest is derived from `description`.
pub(crate) fn named_layer(description: &str, size: u64) -> LayerSpec {
    LayerSpec {
        digest: synthetic_digest(description),
        size,
    }
}

/// The manifest of image `id` added while the simulator runs (see
/// [`crate::live`]): the application's base layer and one of its own.
pub(crate) fn live_manifest(id: i64, application: i64, image_size: Option<u64>) -> Manifest {
    let own = (image_size.unwrap_or(100_000_000) / 5 * 2).max(1);
    let layers = [
        base_layer(application),
        named_layer(&format!("image {id} added while running"), own),
    ];
    image_manifest(ManifestFormat::Docker, &layers)
}

/// The layers of the image built for another platform: same sizes, other blobs.
fn platform_variant(layers: &[LayerSpec], platform: &str) -> Vec<LayerSpec> {
    layers
        .iter()
        .map(|l| LayerSpec {
            digest: synthetic_digest(&format!("{} for {platform}", l.digest)),
            size: l.size,
        })
        .collect()
}

/// What the registry knows of one scenario image.
#[derive(Debug, Clone)]
pub(crate) struct ImageEntry {
    /// The digest the API reports (`image.content_hash`).
    pub content_hash: String,
    pub format: ManifestFormat,
    /// The layers of its (first platform's) manifest, base first.
    pub layers: Vec<LayerSpec>,
}

/// Every manifest and blob the registry serves for the scenario's images.
#[derive(Debug, Default)]
pub(crate) struct Content {
    /// (repository, digest) → manifest.
    manifests: HashMap<(String, String), Manifest>,
    /// (repository, digest) → compressed size.
    blobs: HashMap<(String, String), u64>,
    images: HashMap<i64, ImageEntry>,
    /// Layers the scenario gives for delta rows (by row id).
    delta_layers: HashMap<i64, Vec<LayerSpec>>,
    /// Exact manifests the scenario gives for delta rows (by row id), with
    /// their blobs.
    delta_manifests: HashMap<i64, (Manifest, Vec<LayerSpec>)>,
    /// The registry host (the `service` of the token flow).
    pub host: String,
}

impl Content {
    /// Manifests and blobs for every image of `scenario`.
    pub(crate) fn from_scenario(scenario: &Scenario) -> Result<Content, ScenarioError> {
        let service_app: BTreeMap<i64, i64> = scenario
            .services
            .iter()
            .map(|s| (s.id, s.application))
            .collect();
        let mut content = Content::default();
        let mut deriver = LayerDeriver::default();
        for im in &scenario.images {
            let location = im
                .is_stored_at__image_location
                .clone()
                .unwrap_or_else(|| default_image_location(im.id));
            let (host, repo, _) = split_location(&location);
            if content.host.is_empty() {
                content.host = host.to_owned();
            }
            let identity = im
                .content_hash
                .clone()
                .unwrap_or_else(|| default_content_hash(im.id));
            if let Some(text) = &im.manifest {
                let (manifest, layers, config) = Manifest::verbatim(text)
                    .map_err(|e| ScenarioError(format!("image {}: {e}", im.id)))?;
                for blob in layers.iter().chain(&config) {
                    content
                        .blobs
                        .insert((repo.to_owned(), blob.digest.clone()), blob.size);
                }
                let content_hash = im.content_hash.clone().unwrap_or(manifest.digest.clone());
                for key in [manifest.digest.clone(), content_hash.clone()] {
                    content
                        .manifests
                        .insert((repo.to_owned(), key), manifest.clone());
                }
                content.images.insert(
                    im.id,
                    ImageEntry {
                        content_hash,
                        format: im.manifest_format,
                        layers,
                    },
                );
                continue;
            }
            let service = im.is_a_build_of__service;
            let layers = match &im.layers {
                Some(layers) => layers.clone(),
                None => deriver.layers(
                    service_app.get(&service).copied().unwrap_or(0),
                    service,
                    &identity,
                    im.image_size,
                ),
            };
            let top = content.add_image(repo, im.manifest_format, &layers, &im.platforms);
            // A hash the file gives is served as it is; otherwise the
            // manifest's real digest.
            let content_hash = im.content_hash.clone().unwrap_or(top.digest.clone());
            if content_hash != top.digest {
                content
                    .manifests
                    .insert((repo.to_owned(), content_hash.clone()), top);
            }
            content.images.insert(
                im.id,
                ImageEntry {
                    content_hash,
                    format: im.manifest_format,
                    layers,
                },
            );
        }
        for delta in &scenario.deltas {
            if let Some(layers) = &delta.layers {
                content.delta_layers.insert(delta.id, layers.clone());
            }
            if let Some(text) = &delta.manifest {
                let (manifest, layers, config) = Manifest::verbatim(text)
                    .map_err(|e| ScenarioError(format!("delta {}: {e}", delta.id)))?;
                let blobs = layers.into_iter().chain(config).collect();
                content.delta_manifests.insert(delta.id, (manifest, blobs));
            }
        }
        if content.host.is_empty() {
            content.host = DEFAULT_REGISTRY_HOST.to_owned();
        }
        Ok(content)
    }

    /// Stores an image's manifest(s) and blobs; returns the manifest its
    /// content hash names (the list when there are platforms).
    fn add_image(
        &mut self,
        repo: &str,
        format: ManifestFormat,
        layers: &[LayerSpec],
        platforms: &[String],
    ) -> Manifest {
        let mut store = |layers: &[LayerSpec]| {
            let manifest = image_manifest(format, layers);
            let config = config_of(layers);
            for blob in layers.iter().chain([&config]) {
                self.blobs
                    .insert((repo.to_owned(), blob.digest.clone()), blob.size);
            }
            self.manifests
                .insert((repo.to_owned(), manifest.digest.clone()), manifest.clone());
            manifest
        };
        if platforms.is_empty() {
            return store(layers);
        }
        let per_platform: Vec<Manifest> = platforms
            .iter()
            .enumerate()
            .map(|(i, platform)| {
                if i == 0 {
                    store(layers)
                } else {
                    store(&platform_variant(layers, platform))
                }
            })
            .collect();
        let entries: Vec<(&str, &Manifest)> = platforms
            .iter()
            .map(String::as_str)
            .zip(per_platform.iter())
            .collect();
        let list = list_manifest(format, &entries);
        self.manifests
            .insert((repo.to_owned(), list.digest.clone()), list.clone());
        list
    }

    /// The registry's view of a scenario image.
    pub(crate) fn image(&self, id: i64) -> Option<&ImageEntry> {
        self.images.get(&id)
    }

    /// The manifest `reference` (a digest or a delta tag) names in `repo`.
    pub(crate) fn manifest(&self, db: &Db, repo: &str, reference: &str) -> Option<Manifest> {
        if let Some(found) = self.manifests.get(&(repo.to_owned(), reference.to_owned())) {
            return Some(found.clone());
        }
        if let Some(found) = self.live_image(db, repo, reference) {
            return Some(found);
        }
        self.delta_images(db, repo)
            .into_iter()
            .find(|(tag, manifest, _)| tag == reference || manifest.digest == reference)
            .map(|(_, manifest, _)| manifest)
    }

    /// The manifest of an image added while running, found by its row.
    fn live_image(&self, db: &Db, repo: &str, reference: &str) -> Option<Manifest> {
        let (id, _) = db.rows("image").find(|(id, _)| {
            !self.images.contains_key(id)
                && matches!(db.get("image", *id, "content_hash"), Some(Value::Text(h)) if h == reference)
                && matches!(db.get("image", *id, "is_stored_at__image_location"),
                    Some(Value::Text(location)) if split_location(location).1 == repo)
        })?;
        let application = match db.get("image", id, "is_a_build_of__service") {
            Some(Value::Integer(service)) => match db.get("service", *service, "application") {
                Some(Value::Integer(app)) => *app,
                _ => 0,
            },
            _ => 0,
        };
        let size = match db.get("image", id, "image_size") {
            Some(Value::BigInteger(size)) => Some(*size),
            _ => None,
        };
        Some(live_manifest(id, application, size)).filter(|m| m.digest == reference)
    }

    /// The compressed size of blob `digest` in `repo`.
    pub(crate) fn blob(&self, db: &Db, repo: &str, digest: &str) -> Option<u64> {
        if let Some(size) = self.blobs.get(&(repo.to_owned(), digest.to_owned())) {
            return Some(*size);
        }
        self.delta_images(db, repo)
            .into_iter()
            .flat_map(|(_, _, blobs)| blobs)
            .find(|blob| blob.digest == digest)
            .map(|blob| blob.size)
    }

    /// Whether a repository holds anything (an image or a delta image).
    pub(crate) fn has_repository(&self, db: &Db, repo: &str) -> bool {
        self.manifests.keys().any(|(r, _)| r == repo) || !self.delta_images(db, repo).is_empty()
    }

    /// The delta images stored in `repo` by `success` delta rows:
    /// (tag, manifest, every blob it references).
    fn delta_images(&self, db: &Db, repo: &str) -> Vec<(String, Manifest, Vec<LayerSpec>)> {
        let mut found = Vec::new();
        for (id, _) in db.rows("delta") {
            let (Some(Value::Text(status)), Some(Value::Text(location))) = (
                db.get("delta", id, "status"),
                db.get("delta", id, "is_stored_at__location"),
            ) else {
                continue;
            };
            let (_, delta_repo, Some(tag)) = split_location(location) else {
                continue;
            };
            if status != "success" || delta_repo != repo {
                continue;
            }
            if let Some((manifest, blobs)) = self.delta_manifests.get(&id) {
                found.push((tag.to_owned(), manifest.clone(), blobs.clone()));
                continue;
            }
            let size = match db.get("delta", id, "size") {
                Some(Value::BigInteger(size)) => *size,
                _ => 1_000_000,
            };
            let image = |field| match db.get("delta", id, field) {
                Some(Value::Integer(image)) => self.images.get(image),
                _ => None,
            };
            let (source, target) = (image("originates_from__image"), image("produces__image"));
            let format = target.map(|e| e.format).unwrap_or_default();
            let layers = self.delta_layers.get(&id).cloned().unwrap_or_else(|| {
                derived_delta_layers(
                    id,
                    location,
                    size,
                    source.map_or(&[][..], |e| &e.layers),
                    target.map_or(&[][..], |e| &e.layers),
                )
            });
            let manifest = image_manifest(format, &layers);
            let config = config_of(&layers);
            let blobs = layers.into_iter().chain([config]).collect();
            found.push((tag.to_owned(), manifest, blobs));
        }
        found
    }
}

/// A delta image's layers as balena's engine builds them: one per target
/// layer, an empty layer where the source image already has the target's
/// chain up to it, and otherwise a share of 60 % of the row's size (the
/// compressed delta) in proportion to the target layer's size. Without the
/// images' layers, one layer of that size.
fn derived_delta_layers(
    row: i64,
    location: &str,
    size: u64,
    source: &[LayerSpec],
    target: &[LayerSpec],
) -> Vec<LayerSpec> {
    let compressed = (size / 5 * 3).max(1);
    let layer = |index: usize, size: u64| LayerSpec {
        digest: synthetic_digest(&format!("delta {row} at {location}, layer {index}")),
        size,
    };
    if target.is_empty() {
        return vec![layer(0, compressed)];
    }
    let held = source
        .iter()
        .zip(target)
        .take_while(|(s, t)| s.digest == t.digest)
        .count();
    let changed: u64 = target[held..].iter().map(|l| l.size.max(1)).sum();
    target
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if i < held {
                empty_layer()
            } else {
                let share = (u128::from(compressed) * u128::from(t.size.max(1))
                    / u128::from(changed.max(1))) as u64;
                layer(i, share.max(1))
            }
        })
        .collect()
}

/// The empty layer of a delta where nothing changes: a gzipped empty tar.
fn empty_layer() -> LayerSpec {
    LayerSpec {
        digest: "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8c7c22955b46d4".into(),
        size: 32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_split_into_host_repository_and_tag() {
        assert_eq!(
            split_location("registry2.balena-cloud.com/v2/abc"),
            ("registry2.balena-cloud.com", "v2/abc", None)
        );
        assert_eq!(
            split_location("registry2.balena-cloud.com/v2/abc:delta-0123"),
            ("registry2.balena-cloud.com", "v2/abc", Some("delta-0123"))
        );
        assert_eq!(
            split_location("127.0.0.1:5000/v2/abc"),
            ("127.0.0.1:5000", "v2/abc", None)
        );
    }

    #[test]
    fn equal_layers_give_equal_manifests_and_real_digests() {
        let layers = vec![LayerSpec {
            digest: synthetic_digest("x"),
            size: 10,
        }];
        let a = image_manifest(ManifestFormat::Docker, &layers);
        assert_eq!(a, image_manifest(ManifestFormat::Docker, &layers));
        assert_eq!(a.digest, digest_string(&a.bytes));
        let oci = image_manifest(ManifestFormat::Oci, &layers);
        assert_ne!(a.digest, oci.digest);
        assert_eq!(oci.media_type, OCI_MANIFEST);
        let list = list_manifest(ManifestFormat::Oci, &[("linux/arm64/v8", &oci)]);
        assert_eq!(list.platforms(), ["linux/arm64/v8"]);
    }
}
