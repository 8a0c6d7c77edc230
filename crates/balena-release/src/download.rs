//! What a device really downloads, from the layers in the registry's
//! manifests: a device keeps every layer of every image of the release it
//! runs, fetches each missing layer's compressed blob once, and for a
//! service with a ready delta fetches the delta image's layers instead.
//! Pure arithmetic on layer lists; the manifests are read by
//! [`crate::registry`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::model::{Change, FleetTransition, ImageInfo, UpdateInfo};

/// One layer of an image manifest: its blob digest and compressed size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layer {
    pub(crate) digest: String,
    pub(crate) size: u64,
}

/// The layers of a manifest, shared between the cache and the reports.
pub(crate) type Layers = Arc<[Layer]>;

/// A manifest in a registry: the repository location as the API writes it
/// (`registry2.balena-cloud.com/v2/<hash>`, optionally with a scheme) and
/// a digest or tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ManifestRef {
    pub(crate) location: String,
    pub(crate) reference: String,
}

impl ManifestRef {
    /// The manifest a device pulls for an image: `<location>@<content_hash>`;
    /// none without a `content_hash`.
    pub(crate) fn image(image: &ImageInfo) -> Option<ManifestRef> {
        let digest = image.content_hash.as_deref()?.trim();
        if digest.is_empty() || image.is_stored_at__image_location.trim().is_empty() {
            return None;
        }
        Some(ManifestRef {
            location: image.is_stored_at__image_location.trim().to_owned(),
            reference: digest.to_owned(),
        })
    }

    /// The manifest of a delta image from the delta row's location
    /// (`<host>/v2/<hash>:delta-<16 hex>`, or `…@sha256:<digest>`).
    pub(crate) fn delta(location: &str) -> Option<ManifestRef> {
        let location = location.trim();
        if let Some((repository, digest)) = location.rsplit_once('@') {
            return (!digest.is_empty() && !repository.is_empty()).then(|| ManifestRef {
                location: repository.to_owned(),
                reference: digest.to_owned(),
            });
        }
        // The tag follows the last `:` of the last path segment; a `:` in
        // the host part is a port.
        let slash = location.rfind('/')?;
        let colon = slash + location[slash..].find(':')?;
        let (repository, tag) = (&location[..colon], &location[colon + 1..]);
        (!tag.is_empty()).then(|| ManifestRef {
            location: repository.to_owned(),
            reference: tag.to_owned(),
        })
    }
}

/// What is known of one service of the target release.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServiceLayers<'a> {
    /// Same image or same `content_hash` as in the source release.
    pub(crate) unchanged: bool,
    /// The target image's layers; `None` when unknown.
    pub(crate) target: Option<&'a [Layer]>,
    /// `Some` when a delta is ready: the delta image's layers, `None` inside
    /// when they are unknown.
    pub(crate) delta: Option<Option<&'a [Layer]>>,
}

/// The figures of one service; `None` when unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ServiceSizes {
    pub(crate) pull: Option<u64>,
    pub(crate) download: Option<u64>,
}

/// The figures of a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sizes {
    pub(crate) services: Vec<ServiceSizes>,
    /// Every blob fetched, each once; `None` when a service's download is
    /// unknown.
    pub(crate) estimated: Option<u64>,
}

/// Computes the pull and download sizes of `services` (in output order),
/// given the digests of every layer of every image of the source release
/// (`None` when one of its manifests is unknown).
///
/// A layer that several pulling services (no ready delta) need is counted
/// at the first of them; a layer repeated within one image is counted once.
pub(crate) fn sizes(source: Option<&HashSet<&str>>, services: &[ServiceLayers<'_>]) -> Sizes {
    let mut pulled: HashSet<&str> = HashSet::new();
    // Every blob a device fetches, for the transition's total.
    let mut fetched: HashMap<&str, u64> = HashMap::new();
    let mut all_known = true;
    let mut out = Vec::with_capacity(services.len());
    for service in services {
        if service.unchanged {
            out.push(ServiceSizes {
                pull: Some(0),
                download: Some(0),
            });
            continue;
        }
        let pulling = service.delta.is_none();
        let pull = match (source, service.target) {
            (Some(source), Some(layers)) => {
                let mut own: HashSet<&str> = HashSet::new();
                let mut sum = 0u64;
                for layer in layers {
                    let digest = layer.digest.as_str();
                    if source.contains(digest) || !own.insert(digest) {
                        continue;
                    }
                    if pulling && !pulled.insert(digest) {
                        continue;
                    }
                    sum = sum.saturating_add(layer.size);
                    if pulling {
                        fetched.insert(digest, layer.size);
                    }
                }
                Some(sum)
            }
            _ => None,
        };
        let download = match service.delta {
            None => pull,
            Some(None) => None,
            Some(Some(layers)) => {
                let mut own: HashSet<&str> = HashSet::new();
                let mut sum = 0u64;
                for layer in layers {
                    if own.insert(layer.digest.as_str()) {
                        sum = sum.saturating_add(layer.size);
                        fetched.insert(layer.digest.as_str(), layer.size);
                    }
                }
                Some(sum)
            }
        };
        all_known &= download.is_some();
        out.push(ServiceSizes { pull, download });
    }
    let estimated = all_known.then(|| fetched.values().fold(0u64, |a, b| a.saturating_add(*b)));
    Sizes {
        services: out,
        estimated,
    }
}

/// One service's layers as looked up: unchanged, target, ready delta.
type Known = (bool, Option<Layers>, Option<Option<Layers>>);

/// Writes the download keys of `info` from the manifests `lookup` knows
/// (`None`: unknown).
pub(crate) fn annotate(info: &mut UpdateInfo, lookup: impl Fn(&ManifestRef) -> Option<Layers>) {
    let image_layers = |image: &ImageInfo| ManifestRef::image(image).and_then(|r| lookup(&r));
    let source_images = info
        .is_produced_by__service_update
        .iter()
        .filter_map(|s| s.originates_from__image.as_ref())
        .chain(
            info.removed_services
                .iter()
                .map(|r| &r.originates_from__image),
        );
    let source: Option<Vec<Layers>> = source_images.map(image_layers).collect();
    let source_digests: Option<HashSet<&str>> = source.as_ref().map(|images| {
        images
            .iter()
            .flat_map(|layers| layers.iter().map(|l| l.digest.as_str()))
            .collect()
    });
    let known: Vec<Known> = info
        .is_produced_by__service_update
        .iter()
        .map(|s| {
            let unchanged = s.change == Change::Unchanged;
            let target = if unchanged {
                None
            } else {
                image_layers(&s.produces__image)
            };
            let delta = s.produces__image.is_produced_by__delta.as_ref().map(|d| {
                d.is_stored_at__location
                    .as_deref()
                    .and_then(ManifestRef::delta)
                    .and_then(|r| lookup(&r))
            });
            (unchanged, target, delta)
        })
        .collect();
    let services: Vec<ServiceLayers<'_>> = known
        .iter()
        .map(|(unchanged, target, delta)| ServiceLayers {
            unchanged: *unchanged,
            target: target.as_deref(),
            delta: delta.as_ref().map(|d| d.as_deref()),
        })
        .collect();
    let sizes = sizes(source_digests.as_ref(), &services);
    for (service, figures) in info
        .is_produced_by__service_update
        .iter_mut()
        .zip(&sizes.services)
    {
        service.download_size = figures.download;
        service.pull_size = figures.download.and(figures.pull);
        service.download_size_unknown = figures.download.is_none();
    }
    info.estimated_download_size = sizes.estimated;
    info.download_size_unknown = sizes.estimated.is_none();
}

/// The fleet's download: Σ device count × transition download, with the
/// flag set when a transition's is unknown. `(None, false)` when no
/// transition has download figures (the registry was not asked).
pub(crate) fn fleet_total(transitions: &[FleetTransition]) -> (Option<u64>, bool) {
    if transitions.iter().any(|t| t.update.download_size_unknown) {
        return (None, true);
    }
    let mut total = Some(0u64);
    for t in transitions {
        total = match (total, t.update.estimated_download_size) {
            (Some(sum), Some(each)) => {
                Some(sum.saturating_add(each.saturating_mul(t.device_count)))
            }
            _ => None,
        };
    }
    let asked = transitions
        .iter()
        .all(|t| t.update.estimated_download_size.is_some());
    if asked && !transitions.is_empty() {
        (total, false)
    } else {
        (None, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DeltaInfo, FleetTransition};

    fn layers(spec: &[(&str, u64)]) -> Vec<Layer> {
        spec.iter()
            .map(|(d, s)| Layer {
                digest: (*d).to_owned(),
                size: *s,
            })
            .collect()
    }

    fn pulling(target: &[Layer]) -> ServiceLayers<'_> {
        ServiceLayers {
            unchanged: false,
            target: Some(target),
            delta: None,
        }
    }

    #[test]
    fn layers_of_the_source_release_cost_nothing_and_shared_pulls_count_once() {
        // Source release: base (b1, b2) in one service, x in another.
        let source: HashSet<&str> = ["b1", "b2", "x"].into_iter().collect();
        let api = layers(&[("b1", 1000), ("b2", 2000), ("n1", 300), ("s", 50)]);
        let main = layers(&[("b1", 1000), ("s", 50), ("m1", 70), ("m1", 70)]);
        let sizes = sizes(Some(&source), &[pulling(&api), pulling(&main)]);
        // api: n1 + s = 350; main: s already fetched by api, m1 once = 70.
        assert_eq!(
            sizes.services,
            [
                ServiceSizes {
                    pull: Some(350),
                    download: Some(350)
                },
                ServiceSizes {
                    pull: Some(70),
                    download: Some(70)
                },
            ]
        );
        assert_eq!(sizes.estimated, Some(420));
    }

    #[test]
    fn a_ready_delta_replaces_the_pull_and_unchanged_costs_nothing() {
        let source: HashSet<&str> = ["b1"].into_iter().collect();
        let main = layers(&[("b1", 1000), ("m2", 700), ("s", 50)]);
        let delta = layers(&[("d", 40)]);
        let api = layers(&[("s", 50), ("a", 9)]);
        let services = [
            ServiceLayers {
                unchanged: false,
                target: Some(&main),
                delta: Some(Some(&delta)),
            },
            pulling(&api),
            ServiceLayers {
                unchanged: true,
                target: None,
                delta: None,
            },
        ];
        let sizes = sizes(Some(&source), &services);
        // main's pull counts its own missing layers (m2 + s = 750) but it
        // downloads the delta (40); api pulls s itself, as main does not.
        assert_eq!(
            sizes.services,
            [
                ServiceSizes {
                    pull: Some(750),
                    download: Some(40)
                },
                ServiceSizes {
                    pull: Some(59),
                    download: Some(59)
                },
                ServiceSizes {
                    pull: Some(0),
                    download: Some(0)
                },
            ]
        );
        assert_eq!(sizes.estimated, Some(99));
    }

    #[test]
    fn anything_unknown_makes_the_total_unknown() {
        let source: HashSet<&str> = HashSet::new();
        let api = layers(&[("a", 9)]);
        let unknown_target = ServiceLayers {
            unchanged: false,
            target: None,
            delta: None,
        };
        let sizes_1 = sizes(Some(&source), &[pulling(&api), unknown_target]);
        assert_eq!(sizes_1.services[0].download, Some(9));
        assert_eq!(sizes_1.services[1].download, None);
        assert_eq!(sizes_1.estimated, None);
        // An unknown source release: no pull is known, a ready delta still is.
        let delta = layers(&[("d", 40)]);
        let with_delta = ServiceLayers {
            unchanged: false,
            target: Some(&api),
            delta: Some(Some(&delta)),
        };
        let sizes_2 = sizes(None, &[with_delta]);
        assert_eq!(
            sizes_2.services,
            [ServiceSizes {
                pull: None,
                download: Some(40)
            }]
        );
        assert_eq!(sizes_2.estimated, Some(40));
        // A ready delta whose manifest is unknown.
        let unknown_delta = ServiceLayers {
            unchanged: false,
            target: Some(&api),
            delta: Some(None),
        };
        assert_eq!(sizes(Some(&source), &[unknown_delta]).estimated, None);
    }

    #[test]
    fn delta_locations_name_a_repository_and_a_tag() {
        assert_eq!(
            ManifestRef::delta("registry2.balena-cloud.com/v2/a26e:delta-5668ef65d2c06aa3"),
            Some(ManifestRef {
                location: "registry2.balena-cloud.com/v2/a26e".into(),
                reference: "delta-5668ef65d2c06aa3".into(),
            })
        );
        assert_eq!(
            ManifestRef::delta("127.0.0.1:5000/v2/a26e:delta-1"),
            Some(ManifestRef {
                location: "127.0.0.1:5000/v2/a26e".into(),
                reference: "delta-1".into(),
            })
        );
        assert_eq!(
            ManifestRef::delta("127.0.0.1:5000/v2/a26e@sha256:ab"),
            Some(ManifestRef {
                location: "127.0.0.1:5000/v2/a26e".into(),
                reference: "sha256:ab".into(),
            })
        );
        assert_eq!(ManifestRef::delta("127.0.0.1:5000/v2/a26e"), None);
        assert_eq!(ManifestRef::delta("nothing"), None);
    }

    /// (location, reference, layers) of each manifest.
    type Spec<'a> = (&'a str, &'a str, &'a [(&'a str, u64)]);

    fn manifests(spec: &[Spec<'_>]) -> HashMap<ManifestRef, Layers> {
        spec.iter()
            .map(|(location, reference, l)| {
                (
                    ManifestRef {
                        location: (*location).to_owned(),
                        reference: (*reference).to_owned(),
                    },
                    Layers::from(layers(l)),
                )
            })
            .collect()
    }

    #[test]
    fn a_report_gets_its_keys_from_the_manifests() {
        let mut info = crate::model::tests::reference_example();
        // The removed service needs a digest for the source to be known.
        info.removed_services[0].originates_from__image.content_hash = Some("sha256:w".into());
        let hash = |i: usize| {
            info.is_produced_by__service_update[i]
                .produces__image
                .content_hash
                .clone()
                .unwrap()
        };
        let (api_hash, main_hash) = (hash(0), hash(1));
        let main_source = info.is_produced_by__service_update[1]
            .originates_from__image
            .clone()
            .unwrap();
        let r = "registry2.balena-cloud.com/v2/";
        let book = manifests(&[
            (
                &format!("{r}0b4e3c1f7d2a9e8b6c5d4f3a2b1c0d9e"),
                "sha256:w",
                &[("base", 500), ("w", 20)],
            ),
            (
                &main_source.is_stored_at__image_location,
                main_source.content_hash.as_deref().unwrap(),
                &[("base", 500), ("m1", 30)],
            ),
            (
                &format!("{r}5e1757b27c05319375792bd6e959544f"),
                &api_hash,
                &[("base", 500), ("api", 4000)],
            ),
            (
                &format!("{r}a26ecf6b7844b24f5f104dae96c64a35"),
                &main_hash,
                &[("base", 500), ("m2", 31)],
            ),
            (
                &format!("{r}a26ecf6b7844b24f5f104dae96c64a35"),
                "delta-5668ef65d2c06aa3",
                &[("delta", 12)],
            ),
        ]);
        annotate(&mut info, |r| book.get(r).cloned());
        let api = &info.is_produced_by__service_update[0];
        assert_eq!((api.pull_size, api.download_size), (Some(4000), Some(4000)));
        let main = &info.is_produced_by__service_update[1];
        assert_eq!((main.pull_size, main.download_size), (Some(31), Some(12)));
        assert_eq!(info.estimated_download_size, Some(4012));
        assert!(!info.download_size_unknown);
        let json = serde_json::to_string(&info).unwrap();
        let after = |a: &str, b: &str| json.find(a).unwrap() < json.find(b).unwrap();
        assert!(after("\"change\":\"new\"", "\"pull_size\":4000"), "{json}");
        assert!(
            after("\"removed_services\"", "\"estimated_download_size\":4012"),
            "{json}"
        );
        assert!(!json.contains("download_size_unknown"), "{json}");

        // Without the removed image's manifest, pulls are unknown; the delta
        // is still known, the total is not.
        let mut unknown = crate::model::tests::reference_example();
        annotate(&mut unknown, |r| book.get(r).cloned());
        let api = &unknown.is_produced_by__service_update[0];
        assert_eq!((api.pull_size, api.download_size), (None, None));
        assert!(api.download_size_unknown);
        let main = &unknown.is_produced_by__service_update[1];
        assert_eq!((main.pull_size, main.download_size), (None, Some(12)));
        assert!(!main.download_size_unknown);
        assert_eq!(unknown.estimated_download_size, None);
        assert!(unknown.download_size_unknown);
        let json = serde_json::to_string(&unknown).unwrap();
        assert!(!json.contains("_size\":null"), "{json}");
        assert_eq!(json.matches("\"download_size_unknown\":true").count(), 2);
    }

    #[test]
    fn a_ready_delta_without_a_location_is_unknown() {
        let mut info = crate::model::tests::reference_example();
        let delta: &mut DeltaInfo = info.is_produced_by__service_update[1]
            .produces__image
            .is_produced_by__delta
            .as_mut()
            .unwrap();
        delta.is_stored_at__location = None;
        annotate(&mut info, |_| Some(Layers::from(layers(&[("x", 1)]))));
        assert!(info.is_produced_by__service_update[1].download_size_unknown);
        assert!(info.download_size_unknown);
    }

    #[test]
    fn the_fleet_multiplies_by_devices() {
        let transition = |count, size: Option<u64>, unknown| {
            let mut update = crate::model::tests::reference_example();
            update.estimated_download_size = size;
            update.download_size_unknown = unknown;
            FleetTransition {
                device_count: count,
                update,
            }
        };
        assert_eq!(
            fleet_total(&[
                transition(3, Some(100), false),
                transition(2, Some(7), false)
            ]),
            (Some(314), false)
        );
        assert_eq!(
            fleet_total(&[transition(3, Some(100), false), transition(2, None, true)]),
            (None, true)
        );
        assert_eq!(fleet_total(&[transition(3, None, false)]), (None, false));
        assert_eq!(fleet_total(&[]), (None, false));
    }
}
