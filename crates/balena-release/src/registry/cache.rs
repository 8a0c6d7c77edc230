//! The manifests a client has read, kept for later rounds (a manifest
//! addressed by digest never changes) within a bound: past
//! [`MAX_LAYERS`] layers in all, the oldest go first, so a long `--watch`
//! over a churning fleet holds what its recent rounds read and no more.

use std::collections::{HashMap, VecDeque};

use crate::download::{Manifest, ManifestRef};

/// Layers held in all: about 120 bytes each, so some 30 MB at most,
/// thousands of real manifests.
const MAX_LAYERS: usize = 250_000;

#[derive(Default)]
pub(super) struct Cache {
    entries: HashMap<ManifestRef, Manifest>,
    /// Oldest first.
    order: VecDeque<ManifestRef>,
    layers: usize,
}

impl Cache {
    pub(super) fn get(&self, what: &ManifestRef) -> Option<Manifest> {
        self.entries.get(what).cloned()
    }

    pub(super) fn contains(&self, what: &ManifestRef) -> bool {
        self.entries.contains_key(what)
    }

    pub(super) fn insert(&mut self, what: ManifestRef, manifest: Manifest) {
        let weight = manifest.layers.len().max(1);
        if let Some(old) = self.entries.insert(what.clone(), manifest) {
            self.layers -= old.layers.len().max(1);
        } else {
            self.order.push_back(what);
        }
        self.layers += weight;
        while self.layers > MAX_LAYERS && self.order.len() > 1 {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(gone) = self.entries.remove(&oldest) {
                self.layers -= gone.layers.len().max(1);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::download::{ImageManifest, Layer};

    fn manifest(layers: usize) -> Manifest {
        Manifest::new(ImageManifest {
            layers: (0..layers)
                .map(|i| Layer {
                    digest: format!("sha256:{i}"),
                    size: 1,
                })
                .collect(),
            config_size: 1,
            length: 1,
        })
    }

    fn at(n: usize) -> ManifestRef {
        ManifestRef {
            location: "r/v2/a".into(),
            reference: format!("sha256:{n}"),
        }
    }

    #[test]
    fn the_oldest_go_past_the_bound() {
        let mut cache = Cache::default();
        let each = MAX_LAYERS / 4;
        for n in 0..6 {
            cache.insert(at(n), manifest(each));
        }
        assert_eq!(cache.len(), 4);
        assert!(!cache.contains(&at(0)) && !cache.contains(&at(1)));
        assert!(cache.contains(&at(5)));
        assert_eq!(cache.layers, 4 * each);
        // The same manifest again replaces, it does not count twice.
        cache.insert(at(5), manifest(each));
        assert_eq!((cache.len(), cache.layers), (4, 4 * each));
    }
}
