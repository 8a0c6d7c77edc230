//! What a device really downloads, from the registry's manifests, as a
//! balena engine pulls (`distribution/xfer/download.go`): it walks an
//! image's layers from the bottom and skips a layer only while the whole
//! stack up to it (its chain) is already on the device; from the first
//! missing layer up, every layer's compressed blob is fetched, even a blob
//! the device holds inside another image on another chain. Each pulled
//! image also costs its manifest and its config blob. A device holds every
//! chain of every image it keeps, and chains pulled earlier in the same
//! update count as held for later images (in output order), so a new
//! prefix that two services share is fetched once.
//!
//! Chains are keyed by the layers' compressed digests (the engine keys them
//! by the uncompressed DiffIDs of the config blob): a layer recompressed
//! differently under the same content would count as fetched here while a
//! device skips it. Balena's builder pushes each layer once, so a build's
//! layers keep their digests.
//!
//! Pure arithmetic on manifests; they are read by [`crate::registry`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::model::{Change, FleetTransition, ImageInfo, UpdateInfo, UpdateStrategy};

/// One layer of an image manifest: its blob digest and compressed size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layer {
    pub(crate) digest: String,
    pub(crate) size: u64,
}

/// What the figures need of one image manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageManifest {
    /// Base first.
    pub(crate) layers: Vec<Layer>,
    /// The config blob's size (`config.size`).
    pub(crate) config_size: u64,
    /// The manifest's own length in bytes, as served.
    pub(crate) length: u64,
}

impl ImageManifest {
    /// What pulling the image costs besides its layers.
    fn overhead(&self) -> u64 {
        self.length.saturating_add(self.config_size)
    }
}

/// A manifest as shared between the cache and the reports.
pub(crate) type Manifest = Arc<ImageManifest>;

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

/// The chains a device holds. A chain is a bottom-up prefix of an image's
/// layers; each is interned as (the chain below it, its top layer), so
/// chains of any length compare in constant time.
#[derive(Default)]
struct Chains<'a> {
    ids: HashMap<(usize, &'a str), usize>,
    held: HashSet<usize>,
}

impl<'a> Chains<'a> {
    /// The id of each prefix of `layers`, bottom first (0 is no layer).
    fn of(&mut self, layers: &'a [Layer]) -> Vec<usize> {
        let mut below = 0;
        layers
            .iter()
            .map(|layer| {
                let next = self.ids.len() + 1;
                below = *self
                    .ids
                    .entry((below, layer.digest.as_str()))
                    .or_insert(next);
                below
            })
            .collect()
    }

    fn hold(&mut self, layers: &'a [Layer]) {
        let ids = self.of(layers);
        self.held.extend(ids);
    }

    /// How many layers of `layers`, from the bottom, are held as a chain.
    fn held_prefix(&mut self, layers: &'a [Layer]) -> usize {
        let ids = self.of(layers);
        ids.iter().take_while(|id| self.held.contains(id)).count()
    }

    /// Per layer of `layers`, whether its chain is held.
    fn held_at(&mut self, layers: &'a [Layer]) -> Vec<bool> {
        let ids = self.of(layers);
        ids.iter().map(|id| self.held.contains(id)).collect()
    }
}

/// The compressed bytes of `layers` where `fetch` says so, each distinct
/// blob once (the engine shares the transfer of a blob within one pull).
fn blobs<'a>(layers: impl Iterator<Item = &'a Layer>) -> u64 {
    let mut seen: HashSet<&str> = HashSet::new();
    layers
        .filter(|l| seen.insert(l.digest.as_str()))
        .fold(0u64, |sum, l| sum.saturating_add(l.size))
}

/// What is known of one service of the target release.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServiceLayers<'a> {
    /// Same image or same `content_hash` as in the source release.
    pub(crate) unchanged: bool,
    /// The target image's manifest; `None` when unknown.
    pub(crate) target: Option<&'a ImageManifest>,
    /// `Some` when a delta is ready and the service may use it (not
    /// `delete-then-download`): the delta image's manifest, `None` inside
    /// when unknown.
    pub(crate) delta: Option<Option<&'a ImageManifest>>,
    /// A changed service whose delta is being built or still to be asked
    /// for: a device updating now waits for it, so the pull is a bound.
    pub(crate) awaits_delta: bool,
}

/// The figures of one service; `None` when unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ServiceSizes {
    pub(crate) pull: Option<u64>,
    pub(crate) download: Option<u64>,
    /// `download` is the pull of a service that awaits its delta.
    pub(crate) upper_bound: bool,
}

/// The figures of a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sizes {
    pub(crate) services: Vec<ServiceSizes>,
    /// Every byte fetched; `None` when a service's download is unknown.
    pub(crate) estimated: Option<u64>,
}

/// Whether deltas are used: devices with deltas turned off pull every
/// changed image, ready delta or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deltas {
    On,
    Off,
}

/// Computes the pull and download sizes of `services` (in output order),
/// given the manifests of the images the device keeps while it downloads
/// (`None` when one of them is unknown).
pub(crate) fn sizes(
    held: Option<&[&ImageManifest]>,
    services: &[ServiceLayers<'_>],
    deltas: Deltas,
) -> Sizes {
    let mut chains = Chains::default();
    for image in held.into_iter().flatten() {
        chains.hold(&image.layers);
    }
    let mut out = Vec::with_capacity(services.len());
    for service in services {
        if service.unchanged {
            out.push(ServiceSizes {
                pull: Some(0),
                download: Some(0),
                upper_bound: false,
            });
            continue;
        }
        let pull = match (held, service.target) {
            (Some(_), Some(target)) => {
                let skip = chains.held_prefix(&target.layers);
                Some(blobs(target.layers[skip..].iter()).saturating_add(target.overhead()))
            }
            _ => None,
        };
        let delta = match deltas {
            Deltas::On => service.delta,
            Deltas::Off => None,
        };
        let download = match delta {
            None => pull,
            Some(None) => None,
            Some(Some(delta)) => Some(delta_cost(&mut chains, delta, service.target)),
        };
        if let Some(target) = service.target {
            chains.hold(&target.layers);
        }
        out.push(ServiceSizes {
            pull,
            download,
            upper_bound: delta.is_none() && service.awaits_delta && deltas == Deltas::On,
        });
    }
    let estimated = out
        .iter()
        .try_fold(0u64, |sum, s| Some(sum.saturating_add(s.download?)));
    Sizes {
        services: out,
        estimated,
    }
}

/// A ready delta: its manifest, its config blob and its layers, except
/// those at a position whose target chain the device holds (an engine-built
/// delta has one layer per target layer). With another layer count than the
/// target's, or the target unknown, every layer.
fn delta_cost<'a>(
    chains: &mut Chains<'a>,
    delta: &'a ImageManifest,
    target: Option<&'a ImageManifest>,
) -> u64 {
    let layers = match target.filter(|t| t.layers.len() == delta.layers.len()) {
        Some(target) => {
            let held = chains.held_at(&target.layers);
            blobs(
                delta
                    .layers
                    .iter()
                    .zip(held)
                    .filter(|(_, h)| !h)
                    .map(|(l, _)| l),
            )
        }
        None => blobs(delta.layers.iter()),
    };
    layers.saturating_add(delta.overhead())
}

/// One service's manifests as looked up: unchanged, target, ready delta,
/// awaiting a delta.
type Known = (bool, Option<Manifest>, Option<Option<Manifest>>, bool);

/// Writes the download keys of `info` from the manifests `lookup` knows
/// (`None`: unknown); returns the download of a device with deltas off.
pub(crate) fn annotate(
    info: &mut UpdateInfo,
    lookup: impl Fn(&ManifestRef) -> Option<Manifest>,
) -> Option<u64> {
    let image = |image: &ImageInfo| ManifestRef::image(image).and_then(|r| lookup(&r));
    // Kept while the others download: every source image but those a
    // strategy deletes first.
    let kept = info
        .is_produced_by__service_update
        .iter()
        .filter(|s| !UpdateStrategy::drops_old_image(s.update_strategy, false))
        .filter_map(|s| s.originates_from__image.as_ref())
        .chain(
            info.removed_services
                .iter()
                .filter(|r| !UpdateStrategy::drops_old_image(r.update_strategy, true))
                .map(|r| &r.originates_from__image),
        );
    let held: Option<Vec<Manifest>> = kept.map(image).collect();
    let held_refs: Option<Vec<&ImageManifest>> =
        held.as_ref().map(|h| h.iter().map(|m| &**m).collect());
    let known: Vec<Known> = info
        .is_produced_by__service_update
        .iter()
        .map(|s| {
            let unchanged = s.change == Change::Unchanged;
            let target = if unchanged {
                None
            } else {
                image(&s.produces__image)
            };
            let no_delta = !UpdateStrategy::uses_delta(s.update_strategy);
            let delta = s
                .produces__image
                .is_produced_by__delta
                .as_ref()
                .filter(|_| !no_delta)
                .map(|d| {
                    d.is_stored_at__location
                        .as_deref()
                        .and_then(ManifestRef::delta)
                        .and_then(|r| lookup(&r))
                });
            let refused = s
                .delta_failure
                .as_ref()
                .is_some_and(|f| f.http_status.is_some());
            let awaits = s.change == Change::Changed && delta.is_none() && !no_delta && !refused;
            (unchanged, target, delta, awaits)
        })
        .collect();
    let services: Vec<ServiceLayers<'_>> = known
        .iter()
        .map(|(unchanged, target, delta, awaits)| ServiceLayers {
            unchanged: *unchanged,
            target: target.as_deref(),
            delta: delta.as_ref().map(|d| d.as_deref()),
            awaits_delta: *awaits,
        })
        .collect();
    let with_deltas = sizes(held_refs.as_deref(), &services, Deltas::On);
    let without = sizes(held_refs.as_deref(), &services, Deltas::Off);
    for (service, figures) in info
        .is_produced_by__service_update
        .iter_mut()
        .zip(&with_deltas.services)
    {
        service.download_size = figures.download;
        service.pull_size = figures.download.and(figures.pull);
        service.download_size_unknown = figures.download.is_none();
        service.download_size_is_upper_bound = figures.download.is_some() && figures.upper_bound;
    }
    info.estimated_download_size = with_deltas.estimated;
    info.download_size_unknown = with_deltas.estimated.is_none();
    info.download_size_is_upper_bound = info.estimated_download_size.is_some()
        && info
            .is_produced_by__service_update
            .iter()
            .any(|s| s.download_size_is_upper_bound);
    without.estimated
}

/// The fleet's download: per transition, its devices with deltas × its
/// download and those without × their pull figure, plus the devices
/// running no release × the whole target release (`from_nothing`); with
/// the flag set when a figure that counts is unknown. `(None, false)` when
/// the registry was not asked or there is nothing to download.
pub(crate) fn fleet_total(
    transitions: &[FleetTransition],
    without_release: u64,
    from_nothing: Option<u64>,
    registry_asked: bool,
) -> (Option<u64>, bool) {
    if !registry_asked || (transitions.is_empty() && without_release == 0) {
        return (None, false);
    }
    let groups = transitions
        .iter()
        .flat_map(|t| {
            let without = t.devices_without_deltas.min(t.device_count);
            [
                (t.device_count - without, t.update.estimated_download_size),
                (without, t.download_size_without_deltas),
            ]
        })
        .chain([(without_release, from_nothing)])
        .filter(|(devices, _)| *devices > 0);
    let mut total = 0u64;
    for (devices, each) in groups {
        let Some(each) = each else {
            return (None, true);
        };
        total = total.saturating_add(each.saturating_mul(devices));
    }
    (Some(total), false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DeltaFailure, DeltaInfo};

    /// An image of `layers` (digest, size), with a 100-byte manifest and a
    /// 10-byte config blob.
    fn image(layers: &[(&str, u64)]) -> ImageManifest {
        ImageManifest {
            layers: layers
                .iter()
                .map(|(d, s)| Layer {
                    digest: (*d).to_owned(),
                    size: *s,
                })
                .collect(),
            config_size: 10,
            length: 100,
        }
    }

    /// Per pulled image: its manifest and config.
    const OVERHEAD: u64 = 110;

    fn pulling(target: &ImageManifest) -> ServiceLayers<'_> {
        ServiceLayers {
            unchanged: false,
            target: Some(target),
            delta: None,
            awaits_delta: false,
        }
    }

    fn downloads(held: &[&ImageManifest], services: &[ServiceLayers<'_>]) -> Vec<Option<u64>> {
        sizes(Some(held), services, Deltas::On)
            .services
            .iter()
            .map(|s| s.download)
            .collect()
    }

    #[test]
    fn a_held_chain_costs_nothing_and_everything_above_the_first_missing_layer_is_fetched() {
        let source = image(&[("A", 1000), ("B", 200), ("C", 30)]);
        // A shared base.
        let base = image(&[("A", 1000), ("X", 7)]);
        assert_eq!(
            downloads(&[&source], &[pulling(&base)]),
            [Some(7 + OVERHEAD)]
        );
        // A layer in the middle changes: C is fetched again above it.
        let middle = image(&[("A", 1000), ("D", 40), ("C", 30)]);
        assert_eq!(
            downloads(&[&source], &[pulling(&middle)]),
            [Some(40 + 30 + OVERHEAD)]
        );
        // A base bump: everything.
        let bumped = image(&[("A2", 900), ("B", 200), ("C", 30)]);
        assert_eq!(
            downloads(&[&source], &[pulling(&bumped)]),
            [Some(900 + 200 + 30 + OVERHEAD)]
        );
        // A blob held in another image, on another chain, is fetched.
        let other = image(&[("C", 30)]);
        let mixed = image(&[("A", 1000), ("C", 30)]);
        assert_eq!(
            downloads(&[&source, &other], &[pulling(&mixed)]),
            [Some(30 + OVERHEAD)]
        );
        // The same image held: only its manifest and config.
        assert_eq!(downloads(&[&source], &[pulling(&source)]), [Some(OVERHEAD)]);
        // A blob twice in one image is fetched once.
        let twice = image(&[("N", 5), ("N", 5)]);
        assert_eq!(downloads(&[], &[pulling(&twice)]), [Some(5 + OVERHEAD)]);
    }

    #[test]
    fn a_new_prefix_shared_by_two_pulls_is_fetched_once_in_output_order() {
        let x = image(&[("N", 500), ("X1", 3)]);
        let y = image(&[("N", 500), ("Y1", 4)]);
        let z = image(&[("X1", 3)]);
        let out = sizes(
            Some(&[]),
            &[pulling(&x), pulling(&y), pulling(&z)],
            Deltas::On,
        );
        assert_eq!(
            out.services.iter().map(|s| s.download).collect::<Vec<_>>(),
            [Some(503 + OVERHEAD), Some(4 + OVERHEAD), Some(3 + OVERHEAD)]
        );
        assert_eq!(out.estimated, Some(503 + 4 + 3 + 3 * OVERHEAD));
    }

    #[test]
    fn a_ready_delta_skips_the_positions_whose_target_chain_is_held() {
        let source = image(&[("A", 1000), ("B", 200), ("C", 30)]);
        let target = image(&[("A", 1000), ("B2", 210), ("C2", 31)]);
        let delta = image(&[("empty", 32), ("d1", 20), ("d2", 3)]);
        let with_delta = ServiceLayers {
            unchanged: false,
            target: Some(&target),
            delta: Some(Some(&delta)),
            awaits_delta: false,
        };
        let out = sizes(Some(&[&source]), &[with_delta], Deltas::On);
        assert_eq!(
            out.services[0],
            ServiceSizes {
                pull: Some(210 + 31 + OVERHEAD),
                download: Some(20 + 3 + OVERHEAD),
                upper_bound: false,
            }
        );
        // Another layer count: every delta layer.
        let odd = image(&[("d", 50)]);
        let out = sizes(
            Some(&[&source]),
            &[ServiceLayers {
                delta: Some(Some(&odd)),
                ..with_delta
            }],
            Deltas::On,
        );
        assert_eq!(out.services[0].download, Some(50 + OVERHEAD));
        // Deltas off: the pull, ready delta or not.
        let off = sizes(Some(&[&source]), &[with_delta], Deltas::Off);
        assert_eq!(off.services[0].download, Some(210 + 31 + OVERHEAD));
    }

    #[test]
    fn a_pull_awaiting_its_delta_is_an_upper_bound_with_deltas_on_only() {
        let source = image(&[("A", 1000), ("B", 200)]);
        let target = image(&[("A", 1000), ("B2", 210)]);
        let awaiting = ServiceLayers {
            awaits_delta: true,
            ..pulling(&target)
        };
        let on = sizes(Some(&[&source]), &[awaiting], Deltas::On);
        assert!(on.services[0].upper_bound);
        assert_eq!(on.services[0].download, Some(210 + OVERHEAD));
        let off = sizes(Some(&[&source]), &[awaiting], Deltas::Off);
        assert!(!off.services[0].upper_bound);
    }

    #[test]
    fn anything_unknown_makes_the_total_unknown() {
        let api = image(&[("a", 9)]);
        let unknown_target = ServiceLayers {
            target: None,
            ..pulling(&api)
        };
        let out = sizes(Some(&[]), &[pulling(&api), unknown_target], Deltas::On);
        assert_eq!(out.services[0].download, Some(9 + OVERHEAD));
        assert_eq!(out.services[1].download, None);
        assert_eq!(out.estimated, None);
        // An unknown source release: no pull is known, a ready delta still is.
        let delta = image(&[("d", 40)]);
        let with_delta = ServiceLayers {
            delta: Some(Some(&delta)),
            ..pulling(&api)
        };
        let out = sizes(None, &[with_delta], Deltas::On);
        assert_eq!(
            (out.services[0].pull, out.services[0].download),
            (None, Some(40 + OVERHEAD))
        );
        assert_eq!(out.estimated, Some(40 + OVERHEAD));
        let unknown_delta = ServiceLayers {
            delta: Some(None),
            ..pulling(&api)
        };
        assert_eq!(
            sizes(Some(&[]), &[unknown_delta], Deltas::On).estimated,
            None
        );
        // Unchanged costs nothing, known or not.
        let unchanged = ServiceLayers {
            unchanged: true,
            target: None,
            delta: None,
            awaits_delta: false,
        };
        assert_eq!(sizes(None, &[unchanged], Deltas::On).estimated, Some(0));
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

    fn manifests(spec: &[Spec<'_>]) -> HashMap<ManifestRef, Manifest> {
        spec.iter()
            .map(|(location, reference, l)| {
                (
                    ManifestRef {
                        location: (*location).to_owned(),
                        reference: (*reference).to_owned(),
                    },
                    Manifest::new(image(l)),
                )
            })
            .collect()
    }

    /// The reference example with manifests for every image: `worker`
    /// removed, `api` new, `main` changed with a ready delta.
    fn example() -> (UpdateInfo, HashMap<ManifestRef, Manifest>) {
        let mut info = crate::model::tests::reference_example();
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
                &[("base", 500), ("w", 20), ("api", 4000)],
            ),
            (
                &format!("{r}a26ecf6b7844b24f5f104dae96c64a35"),
                &main_hash,
                &[("base", 500), ("m2", 31)],
            ),
            (
                &format!("{r}a26ecf6b7844b24f5f104dae96c64a35"),
                "delta-5668ef65d2c06aa3",
                &[("empty", 32), ("delta", 12)],
            ),
        ]);
        (info, book)
    }

    #[test]
    fn a_report_gets_its_keys_from_the_manifests() {
        let (mut info, book) = example();
        let without_deltas = annotate(&mut info, |r| book.get(r).cloned());
        // api: above the held chain [base, w] (the removed worker's image
        // stays until the downloads are done).
        let api = &info.is_produced_by__service_update[0];
        assert_eq!(
            (api.pull_size, api.download_size),
            (Some(4000 + OVERHEAD), Some(4000 + OVERHEAD))
        );
        let main = &info.is_produced_by__service_update[1];
        assert_eq!(
            (main.pull_size, main.download_size),
            (Some(31 + OVERHEAD), Some(12 + OVERHEAD))
        );
        assert!(!main.download_size_is_upper_bound);
        assert_eq!(info.estimated_download_size, Some(4012 + 2 * OVERHEAD));
        assert_eq!(without_deltas, Some(4031 + 2 * OVERHEAD));
        assert!(!info.download_size_unknown && !info.download_size_is_upper_bound);
        let json = serde_json::to_string(&info).unwrap();
        let after = |a: &str, b: &str| json.find(a).unwrap() < json.find(b).unwrap();
        assert!(after("\"change\":\"new\"", "\"pull_size\":4110"), "{json}");
        assert!(
            after("\"removed_services\"", "\"estimated_download_size\":4232"),
            "{json}"
        );
        for absent in ["download_size_unknown", "upper_bound", "update_strategy"] {
            assert!(!json.contains(absent), "{json}");
        }

        // Without the removed image's manifest, pulls are unknown; the delta
        // is still known, the total is not.
        let mut unknown = crate::model::tests::reference_example();
        annotate(&mut unknown, |r| book.get(r).cloned());
        let api = &unknown.is_produced_by__service_update[0];
        assert_eq!((api.pull_size, api.download_size), (None, None));
        assert!(api.download_size_unknown);
        let main = &unknown.is_produced_by__service_update[1];
        assert_eq!(
            (main.pull_size, main.download_size),
            (None, Some(12 + OVERHEAD))
        );
        assert!(!main.download_size_unknown);
        assert_eq!(unknown.estimated_download_size, None);
        assert!(unknown.download_size_unknown);
        let json = serde_json::to_string(&unknown).unwrap();
        assert!(!json.contains("_size\":null"), "{json}");
        assert_eq!(json.matches("\"download_size_unknown\":true").count(), 2);
    }

    #[test]
    fn strategies_decide_what_is_held_and_whether_a_delta_is_used() {
        // The removed worker labelled kill-then-download: its chain [base,
        // w] is gone before api downloads, so w is fetched again.
        let (mut info, book) = example();
        info.removed_services[0].update_strategy = Some(UpdateStrategy::KillThenDownload);
        annotate(&mut info, |r| book.get(r).cloned());
        let api = &info.is_produced_by__service_update[0];
        assert_eq!(api.download_size, Some(20 + 4000 + OVERHEAD));
        // main delete-then-download: no delta, the old image gone first.
        let (mut info, book) = example();
        info.is_produced_by__service_update[1].update_strategy =
            Some(UpdateStrategy::DeleteThenDownload);
        annotate(&mut info, |r| book.get(r).cloned());
        let main = &info.is_produced_by__service_update[1];
        assert_eq!(main.download_size, Some(31 + OVERHEAD));
        assert!(!main.download_size_is_upper_bound);
        let json = serde_json::to_string(&info).unwrap();
        assert!(
            json.contains("\"update_strategy\":\"delete-then-download\""),
            "{json}"
        );
    }

    #[test]
    fn a_changed_service_without_a_ready_delta_is_an_upper_bound_unless_refused() {
        let (mut info, book) = example();
        info.is_produced_by__service_update[1]
            .produces__image
            .is_produced_by__delta = None;
        annotate(&mut info, |r| book.get(r).cloned());
        let main = &info.is_produced_by__service_update[1];
        assert_eq!(main.download_size, Some(31 + OVERHEAD));
        assert!(main.download_size_is_upper_bound && info.download_size_is_upper_bound);
        let json = serde_json::to_string(&info).unwrap();
        assert_eq!(
            json.matches("\"download_size_is_upper_bound\":true")
                .count(),
            2
        );

        let (mut info, book) = example();
        let main = &mut info.is_produced_by__service_update[1];
        main.produces__image.is_produced_by__delta = None;
        main.delta_failure = Some(DeltaFailure {
            delta_id: None,
            error_message: Some("Malformed url".into()),
            attempts: 1,
            http_status: Some(400),
        });
        annotate(&mut info, |r| book.get(r).cloned());
        assert!(!info.is_produced_by__service_update[1].download_size_is_upper_bound);
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
        annotate(&mut info, |_| Some(Manifest::new(image(&[("x", 1)]))));
        assert!(info.is_produced_by__service_update[1].download_size_unknown);
        assert!(info.download_size_unknown);
    }

    #[test]
    fn the_fleet_multiplies_each_group_by_its_own_figure() {
        let transition = |count, size: Option<u64>, without: u64, pull: Option<u64>| {
            let mut update = crate::model::tests::reference_example();
            update.estimated_download_size = size;
            update.download_size_unknown = size.is_none();
            FleetTransition {
                device_count: count,
                update,
                devices_without_deltas: without,
                download_size_without_deltas: pull,
            }
        };
        let two = [
            transition(3, Some(100), 0, None),
            transition(2, Some(7), 0, None),
        ];
        assert_eq!(fleet_total(&two, 0, None, true), (Some(314), false));
        // One device of the first transition has deltas off: it pulls 900.
        let mixed = [
            transition(3, Some(100), 1, Some(900)),
            transition(2, Some(7), 0, None),
        ];
        assert_eq!(fleet_total(&mixed, 0, None, true), (Some(1114), false));
        // Four devices run no release: 4 × 5000 more.
        assert_eq!(
            fleet_total(&mixed, 4, Some(5000), true),
            (Some(21_114), false)
        );
        assert_eq!(fleet_total(&mixed, 4, None, true), (None, true));
        assert_eq!(
            fleet_total(&[transition(3, Some(100), 1, None)], 0, None, true),
            (None, true)
        );
        assert_eq!(
            fleet_total(
                &[
                    transition(3, Some(100), 0, None),
                    transition(2, None, 0, None)
                ],
                0,
                None,
                true
            ),
            (None, true)
        );
        assert_eq!(fleet_total(&two, 0, None, false), (None, false));
        assert_eq!(fleet_total(&[], 0, None, true), (None, false));
        // Counts at the limit saturate instead of wrapping.
        assert_eq!(
            fleet_total(&[transition(u64::MAX, Some(2), 0, None)], 0, None, true),
            (Some(u64::MAX), false)
        );
    }
}
