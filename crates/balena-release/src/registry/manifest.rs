//! Reading one manifest answer into what the figures need (layers, config
//! size, the manifest's own length) and checking it against the digest it
//! was asked by. The body is dropped once read.

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::download::{ImageManifest, Layer};

/// The largest manifest read. Real image manifests are a few KB (a layer
/// is about 200 bytes of JSON); 1 MiB is hundreds of times that.
pub(super) const MAX_BYTES: usize = 1 << 20;

/// The most layers an image manifest may list. Engines refuse images of
/// more than about 128 layers; a manifest listing more is not an image a
/// device can run, and its size is unknown.
pub(super) const MAX_LAYERS: usize = 500;

/// The manifest types asked for: single images first, then lists.
pub(super) const ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.index.v1+json";

/// What a manifest answer says.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Parsed {
    Image(ImageManifest),
    /// An index naming a single image: its digest.
    One(String),
}

/// Checks that `body` is the manifest `reference` names when it is a
/// digest: a registry (or anything between) could otherwise serve other
/// sizes under a digest. Tags (a delta's) cannot be checked.
pub(super) fn verify(reference: &str, body: &[u8]) -> Result<(), String> {
    let Some((algorithm, hex)) = reference.split_once(':') else {
        return Ok(());
    };
    if algorithm != "sha256" {
        return Err(format!(
            "the digest's algorithm `{algorithm}` cannot be checked"
        ));
    }
    let actual = Sha256::digest(body);
    let matches = hex.len() == 64
        && hex
            .as_bytes()
            .chunks(2)
            .zip(actual.iter())
            .all(|(pair, byte)| {
                std::str::from_utf8(pair)
                    .ok()
                    .and_then(|p| u8::from_str_radix(p, 16).ok())
                    == Some(*byte)
            });
    if matches {
        Ok(())
    } else {
        Err("the manifest served does not match its digest".into())
    }
}

/// Reads a manifest (an image, or an index of one image platform).
pub(super) fn parse(body: &[u8]) -> Result<Parsed, String> {
    #[derive(Deserialize)]
    struct Blob {
        digest: String,
        size: u64,
    }
    #[derive(Deserialize)]
    struct Platform {
        os: Option<String>,
        architecture: Option<String>,
    }
    #[derive(Deserialize)]
    struct Entry {
        digest: String,
        platform: Option<Platform>,
    }
    #[derive(Deserialize)]
    struct Manifest {
        config: Option<Blob>,
        layers: Option<Vec<Blob>>,
        manifests: Option<Vec<Entry>>,
    }
    let manifest: Manifest =
        serde_json::from_slice(body).map_err(|e| format!("the manifest cannot be read: {e}"))?;
    if let Some(layers) = manifest.layers {
        if layers.len() > MAX_LAYERS {
            return Err(format!(
                "the manifest lists {} layers, more than an engine runs",
                layers.len()
            ));
        }
        if layers.iter().any(|l| l.digest.is_empty()) {
            return Err("the manifest has a layer without a digest".into());
        }
        let config = manifest.config.ok_or("the manifest names no config blob")?;
        return Ok(Parsed::Image(ImageManifest {
            layers: layers
                .into_iter()
                .map(|l| Layer {
                    digest: l.digest,
                    size: l.size,
                })
                .collect(),
            config_size: config.size,
            length: body.len() as u64,
        }));
    }
    let Some(entries) = manifest.manifests else {
        return Err("the manifest lists no layers (an old schema?)".into());
    };
    // Build attestations are listed with platform unknown/unknown.
    let images: Vec<&Entry> = entries
        .iter()
        .filter(|e| {
            e.platform.as_ref().is_none_or(|p| {
                p.os.as_deref() != Some("unknown") || p.architecture.as_deref() != Some("unknown")
            })
        })
        .collect();
    match images.as_slice() {
        [one] if super::valid_reference(&one.digest) => Ok(Parsed::One(one.digest.clone())),
        [] | [_] => Err("the manifest index names no usable image".into()),
        _ => Err(format!(
            "the manifest index names {} platforms; which one a device pulls is not known",
            images.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_of_images_lists_and_indexes() {
        let image = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
            "config":{"digest":"sha256:c","size":7},
            "layers":[{"digest":"sha256:a","size":10},{"digest":"sha256:b","size":20}]}"#;
        assert_eq!(
            parse(image),
            Ok(Parsed::Image(ImageManifest {
                layers: vec![
                    Layer {
                        digest: "sha256:a".into(),
                        size: 10
                    },
                    Layer {
                        digest: "sha256:b".into(),
                        size: 20
                    }
                ],
                config_size: 7,
                length: image.len() as u64,
            }))
        );
        let one = br#"{"manifests":[{"digest":"sha256:x","platform":{"os":"linux","architecture":"arm64"}},
            {"digest":"sha256:att","platform":{"os":"unknown","architecture":"unknown"}}]}"#;
        assert_eq!(parse(one), Ok(Parsed::One("sha256:x".into())));
        let two = br#"{"manifests":[{"digest":"sha256:x","platform":{"os":"linux","architecture":"arm64"}},
            {"digest":"sha256:y","platform":{"os":"linux","architecture":"amd64"}}]}"#;
        assert!(parse(two).unwrap_err().contains("2 platforms"));
        assert!(parse(br#"{"schemaVersion":1,"fsLayers":[]}"#).is_err());
        assert!(parse(br#"{"layers":[{"digest":"sha256:a","size":-1}]}"#).is_err());
        assert!(
            parse(br#"{"layers":[{"digest":"sha256:a","size":1}]}"#).is_err(),
            "no config"
        );
        assert!(parse(b"<html>").is_err());
        let many: Vec<String> = (0..=MAX_LAYERS)
            .map(|i| format!(r#"{{"digest":"sha256:{i}","size":1}}"#))
            .collect();
        let many = format!(
            r#"{{"config":{{"digest":"sha256:c","size":1}},"layers":[{}]}}"#,
            many.join(",")
        );
        assert!(parse(many.as_bytes()).unwrap_err().contains("layers"));
    }

    #[test]
    fn digests_are_checked_and_tags_are_not() {
        let body = b"{}";
        // sha256 of `{}`.
        let digest = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
        assert_eq!(verify(digest, body), Ok(()));
        assert!(verify(digest, b"{ }").is_err());
        assert!(verify("sha256:44136f", body).is_err());
        assert!(verify("sha512:00", body).unwrap_err().contains("sha512"));
        assert_eq!(verify("delta-0123456789abcdef", body), Ok(()));
    }
}
