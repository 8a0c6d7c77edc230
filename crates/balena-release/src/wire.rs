//! The API's JSON as it arrives (pinejs envelopes, `{"__id": N}` foreign keys,
//! expansions as arrays, Big Integers as strings or numbers) and its strict
//! decoding into the library's own release, image and delta values. Every
//! surprise becomes an [`Error::Decode`] naming the JSON path.
// The field names are the balena API's own.
#![allow(non_snake_case)]

use std::collections::{BTreeMap, HashSet};

use jiff::Timestamp;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::bigint;
use crate::error::{Cause, Error, Server};
use crate::model::{ImageInfo, ReleaseSummary, UpdateStrategy};

#[derive(Deserialize)]
struct Envelope<T> {
    d: Vec<T>,
}

/// An unexpanded foreign key.
#[derive(Debug, Clone, Copy, Deserialize)]
pub(crate) struct ForeignKey {
    pub(crate) __id: u64,
}

#[derive(Debug, Deserialize)]
struct ReleaseRow {
    id: u64,
    commit: String,
    status: String,
    belongs_to__application: ForeignKey,
    release_image: Vec<ReleaseImageRow>,
    /// The compose document; read loosely (see [`strategies`]).
    #[serde(default)]
    composition: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct ReleaseImageRow {
    image: Vec<ImageRow>,
}

#[derive(Debug, Deserialize)]
struct ImageRow {
    id: u64,
    status: String,
    content_hash: Option<String>,
    #[serde(with = "bigint::option")]
    image_size: Option<u64>,
    is_stored_at__image_location: String,
    is_a_build_of__service: Vec<ServiceRow>,
}

#[derive(Debug, Deserialize)]
struct ServiceRow {
    service_name: String,
}

/// A `delta` row.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct DeltaRow {
    pub(crate) id: u64,
    pub(crate) status: String,
    pub(crate) version: u32,
    pub(crate) is_stored_at__location: Option<String>,
    #[serde(with = "bigint::option")]
    pub(crate) size: Option<u64>,
    pub(crate) originates_from__image: Option<ForeignKey>,
    pub(crate) produces__image: Option<ForeignKey>,
    pub(crate) update_timestamp: Option<Timestamp>,
    #[serde(default)]
    pub(crate) end_timestamp: Option<Timestamp>,
    #[serde(default)]
    pub(crate) error_message: Option<String>,
}

impl PartialEq for ForeignKey {
    fn eq(&self, other: &Self) -> bool {
        self.__id == other.__id
    }
}
impl Eq for ForeignKey {}

#[derive(Debug, Deserialize)]
struct ApplicationRow {
    id: u64,
    slug: String,
    should_be_running__release: Option<ForeignKey>,
    /// The count of devices without a release, when the query asked for it
    /// (`owns__device/$count(...)` answers with a number in place of rows).
    #[serde(default, with = "bigint::option")]
    owns__device: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct DeviceRow {
    is_running__release: Option<ForeignKey>,
    #[serde(default)]
    is_pinned_on__release: Option<ForeignKey>,
}

/// A configuration variable, with its device's releases when expanded.
#[derive(Debug, Deserialize)]
struct VariableRow {
    name: String,
    value: String,
    #[serde(default)]
    device: Vec<VariableDeviceRow>,
}

#[derive(Debug, Deserialize)]
struct VariableDeviceRow {
    id: u64,
    is_running__release: Option<ForeignKey>,
    #[serde(default)]
    is_pinned_on__release: Option<ForeignKey>,
}

/// A device's configuration variable and the device's releases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceVariable {
    pub(crate) device: u64,
    pub(crate) running: Option<u64>,
    pub(crate) pinned: Option<u64>,
    pub(crate) variable: (String, String),
}

/// Decodes configuration variables (name, value).
pub(crate) fn variables(body: &[u8], source: &Source<'_>) -> Result<Vec<(String, String)>, Error> {
    let rows: Vec<VariableRow> = envelope(body, source)?;
    Ok(rows.into_iter().map(|r| (r.name, r.value)).collect())
}

/// Decodes device configuration variables with their expanded device.
pub(crate) fn device_variables(
    body: &[u8],
    source: &Source<'_>,
) -> Result<Vec<DeviceVariable>, Error> {
    let rows: Vec<VariableRow> = envelope(body, source)?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let device = r.device.into_iter().next()?;
            Some(DeviceVariable {
                device: device.id,
                running: device.is_running__release.map(|fk| fk.__id),
                pinned: device.is_pinned_on__release.map(|fk| fk.__id),
                variable: (r.name, r.value),
            })
        })
        .collect())
}

/// A release with the count of some of the devices that run it.
#[derive(Debug, Deserialize)]
struct ReleaseCountRow {
    id: u64,
    #[serde(default, with = "bigint::option")]
    is_running_on__device: Option<u64>,
}

/// A release with the images of its services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Release {
    pub(crate) summary: ReleaseSummary,
    pub(crate) status: String,
    pub(crate) application: u64,
    /// Sorted by service name (byte order), one per service.
    pub(crate) images: Vec<ReleaseImage>,
    /// Services whose `io.balena.update.strategy` label is not the default.
    pub(crate) strategies: BTreeMap<String, UpdateStrategy>,
}

impl Release {
    /// The same release without services: where a device running no
    /// release starts from.
    pub(crate) fn without_images(&self) -> Release {
        Release {
            summary: ReleaseSummary {
                id: 0,
                commit: String::new(),
            },
            images: Vec::new(),
            strategies: BTreeMap::new(),
            ..self.clone()
        }
    }
}

/// The image of one service in a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReleaseImage {
    pub(crate) service_name: String,
    pub(crate) status: String,
    pub(crate) info: ImageInfo,
}

/// A fleet's id, slug and target release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Application {
    pub(crate) id: u64,
    pub(crate) slug: String,
    pub(crate) target: Option<u64>,
    /// How many of its devices run no release, when it was counted.
    pub(crate) without_release: Option<u64>,
}

/// One device: the release it runs and the release it is pinned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Device {
    pub(crate) running: Option<u64>,
    pub(crate) pinned: Option<u64>,
}

/// Where a decode error happened.
pub(crate) struct Source<'a> {
    pub(crate) server: Server,
    pub(crate) what: &'a str,
}

impl Source<'_> {
    fn error(&self, path: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Decode {
            server: self.server,
            what: self.what.to_owned(),
            path: path.into(),
            cause: Cause(message.into()),
        }
    }
}

/// Decodes a pinejs envelope `{"d": [...]}` into its rows.
fn envelope<T: DeserializeOwned>(body: &[u8], source: &Source<'_>) -> Result<Vec<T>, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(source.error("", "the body is empty"));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let envelope: Envelope<T> = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if inner.is_eof() {
            format!("the JSON ends early ({inner})")
        } else if inner.is_syntax() {
            format!("the body is not valid JSON ({inner})")
        } else {
            inner.to_string()
        };
        source.error(path, message)
    })?;
    de.end()
        .map_err(|e| source.error("", format!("trailing data after the JSON ({e})")))?;
    Ok(envelope.d)
}

fn check_unique_ids<I: IntoIterator<Item = u64>>(ids: I, source: &Source<'_>) -> Result<(), Error> {
    let mut seen = HashSet::new();
    for (i, id) in ids.into_iter().enumerate() {
        if !seen.insert(id) {
            return Err(source.error(format!("d[{i}].id"), format!("duplicate row for id `{id}`")));
        }
    }
    Ok(())
}

/// Decodes the answer to the release query (releases with expanded images).
pub(crate) fn releases(body: &[u8], source: &Source<'_>) -> Result<Vec<Release>, Error> {
    let rows: Vec<ReleaseRow> = envelope(body, source)?;
    check_unique_ids(rows.iter().map(|r| r.id), source)?;
    rows.into_iter()
        .enumerate()
        .map(|(i, row)| release(i, row, source))
        .collect()
}

fn release(i: usize, row: ReleaseRow, source: &Source<'_>) -> Result<Release, Error> {
    let mut images = Vec::with_capacity(row.release_image.len());
    for (j, link) in row.release_image.into_iter().enumerate() {
        let path = format!("d[{i}].release_image[{j}].image");
        let mut expanded = link.image;
        if expanded.len() != 1 {
            return Err(source.error(
                path,
                format!(
                    "expected exactly one expanded image, got {}",
                    expanded.len()
                ),
            ));
        }
        let image = expanded.remove(0);
        let mut services = image.is_a_build_of__service;
        if services.len() != 1 {
            return Err(source.error(
                format!("{path}[0].is_a_build_of__service"),
                format!(
                    "expected exactly one expanded service, got {}",
                    services.len()
                ),
            ));
        }
        let service_name = services.remove(0).service_name;
        images.push(ReleaseImage {
            service_name,
            status: image.status,
            info: ImageInfo {
                id: image.id,
                is_stored_at__image_location: image.is_stored_at__image_location,
                // An empty digest matches every other empty one: unknown.
                content_hash: image.content_hash.filter(|h| !h.is_empty()),
                image_size: image.image_size.unwrap_or(0),
                is_produced_by__delta: None,
                size_unknown: image.image_size.is_none(),
            },
        });
    }
    images.sort_by(|a, b| a.service_name.as_bytes().cmp(b.service_name.as_bytes()));
    if let Some(pair) = images
        .windows(2)
        .find(|w| w[0].service_name == w[1].service_name)
    {
        return Err(source.error(
            format!("d[{i}].release_image"),
            format!(
                "release `{}` has two images for service `{}`",
                row.id, pair[0].service_name
            ),
        ));
    }
    Ok(Release {
        summary: ReleaseSummary {
            id: row.id,
            commit: row.commit,
        },
        status: row.status,
        application: row.belongs_to__application.__id,
        images,
        strategies: strategies(row.id, row.composition.as_ref()),
    })
}

/// The update strategy labels of a release's composition. A composition
/// that is not the expected shape, or a label value the supervisor does not
/// know, means the default (as on a device), noted at `info` (`-v`).
pub(crate) fn strategies(
    release: u64,
    composition: Option<&serde_json::Value>,
) -> BTreeMap<String, UpdateStrategy> {
    const LABEL: &str = "io.balena.update.strategy";
    let mut found = BTreeMap::new();
    let Some(composition) = composition.filter(|c| !c.is_null()) else {
        return found;
    };
    let Some(services) = composition.get("services").and_then(|s| s.as_object()) else {
        tracing::info!(
            release,
            "the composition lists no services; update strategies are the default"
        );
        return found;
    };
    for (name, service) in services {
        // Labels are a map, or a list of `key=value` in compose files.
        let value = match service.get("labels") {
            Some(serde_json::Value::Object(map)) => map.get(LABEL).and_then(|v| v.as_str()),
            Some(serde_json::Value::Array(list)) => list.iter().find_map(|item| {
                item.as_str()?
                    .split_once('=')
                    .filter(|(key, _)| key.trim() == LABEL)
                    .map(|(_, value)| value)
            }),
            _ => None,
        };
        let Some(value) = value else { continue };
        match UpdateStrategy::from_label(value) {
            Some(strategy) => {
                found.insert(name.clone(), strategy);
            }
            None if value.trim() == "download-then-kill" => {}
            None => tracing::info!(
                release,
                service = %crate::redact::redact_secrets(name, None),
                "unknown update strategy `{}`; the default applies",
                crate::redact::redact_secrets(value, None)
            ),
        }
    }
    found
}

/// Decodes the answer to a delta query.
pub(crate) fn deltas(body: &[u8], source: &Source<'_>) -> Result<Vec<DeltaRow>, Error> {
    let rows: Vec<DeltaRow> = envelope(body, source)?;
    check_unique_ids(rows.iter().map(|r| r.id), source)?;
    Ok(rows)
}

/// Decodes the answer to an application query (0 or 1 row).
pub(crate) fn application(body: &[u8], source: &Source<'_>) -> Result<Option<Application>, Error> {
    let mut rows: Vec<ApplicationRow> = envelope(body, source)?;
    check_unique_ids(rows.iter().map(|r| r.id), source)?;
    if rows.len() > 1 {
        return Err(source.error(
            "d",
            format!("expected at most one fleet, got {}", rows.len()),
        ));
    }
    Ok(rows.pop().map(|row| Application {
        id: row.id,
        slug: row.slug,
        target: row.should_be_running__release.map(|fk| fk.__id),
        without_release: row.owns__device,
    }))
}

/// Decodes the answer to a device query: the release each device runs and
/// its pin (`None` for a device that runs no release yet, or follows its
/// fleet).
pub(crate) fn devices(body: &[u8], source: &Source<'_>) -> Result<Vec<Device>, Error> {
    let rows: Vec<DeviceRow> = envelope(body, source)?;
    Ok(rows
        .into_iter()
        .map(|r| Device {
            running: r.is_running__release.map(|fk| fk.__id),
            pinned: r.is_pinned_on__release.map(|fk| fk.__id),
        })
        .collect())
}

/// Decodes the answer to the device count query: (release id, devices),
/// one per release of the fleet.
pub(crate) fn release_device_counts(
    body: &[u8],
    source: &Source<'_>,
) -> Result<Vec<(u64, u64)>, Error> {
    let rows: Vec<ReleaseCountRow> = envelope(body, source)?;
    check_unique_ids(rows.iter().map(|r| r.id), source)?;
    rows.into_iter()
        .enumerate()
        .map(|(i, row)| match row.is_running_on__device {
            Some(count) => Ok((row.id, count)),
            None => Err(source.error(
                format!("d[{i}].is_running_on__device"),
                "expected a device count, got nothing",
            )),
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const SOURCE: Source<'static> = Source {
        server: Server::Api,
        what: "release",
    };

    pub(crate) const RELEASES: &str = r#"{"d":[
      {"id":900813,"commit":"84d3d8f43eddd81b1699552dd39338f8dbf8b11e","status":"success",
       "belongs_to__application":{"__id":1},
       "release_image":[
         {"id":1,"image":[{"id":1115250,"status":"success","content_hash":null,"image_size":null,
           "is_stored_at__image_location":"registry/w","is_a_build_of__service":[{"service_name":"worker"}]}]},
         {"id":2,"image":[{"id":1115249,"status":"success","content_hash":"sha256:aa","image_size":"310905195",
           "is_stored_at__image_location":"registry/m","is_a_build_of__service":[{"service_name":"main"}]}]}
       ]}
    ]}"#;

    fn decode_error(body: &str) -> (String, String) {
        match releases(body.as_bytes(), &SOURCE) {
            Err(Error::Decode { path, cause, .. }) => (path, cause.message().to_owned()),
            other => panic!("expected a decode error, got {other:?}"),
        }
    }

    #[test]
    fn an_empty_content_hash_is_unknown() {
        let body = RELEASES.replace("\"content_hash\":\"sha256:aa\"", "\"content_hash\":\"\"");
        assert_ne!(body, RELEASES);
        let rs = releases(body.as_bytes(), &SOURCE).unwrap();
        assert!(rs[0].images.iter().all(|i| i.info.content_hash.is_none()));
    }

    #[test]
    fn releases_decode_with_sorted_images() {
        let rs = releases(RELEASES.as_bytes(), &SOURCE).unwrap();
        assert_eq!(rs.len(), 1);
        let r = &rs[0];
        assert_eq!(r.summary.id, 900813);
        assert_eq!(r.application, 1);
        let names: Vec<_> = r.images.iter().map(|i| i.service_name.as_str()).collect();
        assert_eq!(names, ["main", "worker"]);
        assert_eq!(r.images[0].info.image_size, 310905195);
        assert_eq!(r.images[1].info.image_size, 0);
        assert!(r.images[1].info.size_unknown);
        assert!(!r.images[0].info.size_unknown);
        assert_eq!(r.images[1].info.content_hash, None);
    }

    #[test]
    fn bad_answers_name_the_path() {
        let (path, message) = decode_error(r#"{"rows":[]}"#);
        assert_eq!(path, ".");
        assert!(message.contains("missing field `d`"), "{message}");

        let (path, _) = decode_error(&RELEASES.replace(r#""id":900813"#, r#""id":"900813""#));
        assert_eq!(path, "d[0].id");

        let (path, message) = decode_error(&RELEASES.replace("\"310905195\"", "\"-5\""));
        assert_eq!(path, "d[0].release_image[1].image[0].image_size");
        assert!(message.contains("whole number"), "{message}");

        let (path, message) =
            decode_error(&RELEASES.replace("\"310905195\"", "18446744073709551616"));
        assert_eq!(path, "d[0].release_image[1].image[0].image_size");
        assert!(message.contains("whole number"), "{message}");

        let (_, message) = decode_error(&RELEASES[..RELEASES.len() / 2]);
        assert!(message.contains("ends early"), "{message}");

        let (_, message) = decode_error("<html><body>Bad gateway</body></html>");
        assert!(message.contains("not valid JSON"), "{message}");

        let (_, message) = decode_error("  ");
        assert_eq!(message, "the body is empty");

        let (_, message) = decode_error(r#"{"d":[]} x"#);
        assert!(message.contains("trailing"), "{message}");

        let (path, message) = decode_error(r#"{"d":{"id":1}}"#);
        assert_eq!(path, "d");
        assert!(message.contains("invalid type"), "{message}");
    }

    #[test]
    fn shape_errors_in_expansions() {
        let (path, message) = decode_error(&RELEASES.replace(
            r#""image":[{"id":1115250"#,
            r#""image":[],"x":[{"id":1115250"#,
        ));
        assert_eq!(path, "d[0].release_image[0].image");
        assert!(message.contains("got 0"), "{message}");

        let (path, message) = decode_error(&RELEASES.replace(
            r#"[{"service_name":"worker"}]"#,
            r#"[{"service_name":"main"}]"#,
        ));
        assert_eq!(path, "d[0].release_image");
        assert!(
            message.contains("two images for service `main`"),
            "{message}"
        );
    }

    #[test]
    fn duplicate_rows_are_rejected() {
        let inner = &RELEASES.trim()[6..RELEASES.trim().len() - 2];
        let doubled = format!(r#"{{"d":[{inner},{inner}]}}"#);
        let (path, message) = decode_error(&doubled);
        assert_eq!(path, "d[1].id");
        assert_eq!(message, "duplicate row for id `900813`");
    }

    #[test]
    fn delta_rows_decode() {
        let body = r#"{"d":[{"id":5,"status":"success","version":3,"is_stored_at__location":"r:delta-1",
            "size":"484575","originates_from__image":{"__id":1},"produces__image":{"__id":2},
            "update_timestamp":"2025-11-11T16:52:58.089Z","error_message":null},
            {"id":4,"status":"running","version":3,"is_stored_at__location":null,"size":null,
            "originates_from__image":null,"produces__image":{"__id":2},"update_timestamp":null}]}"#;
        let rows = deltas(body.as_bytes(), &SOURCE).unwrap();
        assert_eq!(rows[0].size, Some(484575));
        assert_eq!(rows[0].originates_from__image.map(|f| f.__id), Some(1));
        assert_eq!(
            rows[0].update_timestamp,
            Some("2025-11-11T16:52:58.089Z".parse().unwrap())
        );
        assert_eq!(rows[1].size, None);
        assert_eq!(rows[1].error_message, None);
    }

    #[test]
    fn applications_and_devices_decode() {
        let app = application(
            br#"{"d":[{"id":7,"slug":"org/fleet","should_be_running__release":{"__id":900835}}]}"#,
            &SOURCE,
        )
        .unwrap();
        assert_eq!(
            app,
            Some(Application {
                id: 7,
                slug: "org/fleet".into(),
                target: Some(900835),
                without_release: None,
            })
        );
        let counted = application(
            br#"{"d":[{"id":7,"slug":"o/f","should_be_running__release":null,"owns__device":"3"}]}"#,
            &SOURCE,
        )
        .unwrap()
        .unwrap();
        assert_eq!((counted.target, counted.without_release), (None, Some(3)));
        assert_eq!(application(br#"{"d":[]}"#, &SOURCE).unwrap(), None);
        let rows = devices(
            br#"{"d":[{"is_running__release":{"__id":1},"is_pinned_on__release":{"__id":2}},
                {"is_running__release":null,"is_pinned_on__release":null}]}"#,
            &SOURCE,
        )
        .unwrap();
        assert_eq!(
            rows,
            [
                Device {
                    running: Some(1),
                    pinned: Some(2)
                },
                Device {
                    running: None,
                    pinned: None
                }
            ]
        );
    }

    #[test]
    fn device_counts_decode_as_numbers_or_strings() {
        let counts = release_device_counts(
            br#"{"d":[{"id":1,"is_running_on__device":4},{"id":2,"is_running_on__device":"0"}]}"#,
            &SOURCE,
        )
        .unwrap();
        assert_eq!(counts, [(1, 4), (2, 0)]);
        // Rows instead of a count: the server did not count.
        let err = release_device_counts(
            br#"{"d":[{"id":1,"is_running_on__device":[{"id":5}]}]}"#,
            &SOURCE,
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::Decode { path, .. } if path == "d[0].is_running_on__device"),
            "{err:?}"
        );
        let err = release_device_counts(br#"{"d":[{"id":1}]}"#, &SOURCE).unwrap_err();
        assert!(
            matches!(&err, Error::Decode { cause, .. } if cause.message() == "expected a device count, got nothing"),
            "{err:?}"
        );
    }
}
