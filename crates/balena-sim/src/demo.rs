//! The `demo` scenario: a realistic fleet whose ids are published as
//! constants, so tests and docs can name its releases, images and deltas.
//!
//! `kiosk-fleet` has three successful releases and a failed one:
//!
//! | service | RELEASE_1 | RELEASE_2 | RELEASE_3 |
//! | --- | --- | --- | --- |
//! | `main` | IMAGE_R1_MAIN | IMAGE_R2_MAIN (changed) | IMAGE_R3_MAIN (changed) |
//! | `api` | — | IMAGE_R2_API (added) | IMAGE_R3_API (changed) |
//! | `worker` | IMAGE_WORKER | IMAGE_WORKER (same id) | — (removed) |
//! | `proxy` | IMAGE_R1_PROXY | IMAGE_R2_PROXY (same content hash) | IMAGE_R2_PROXY (same id) |

use crate::clock::Clock;
use crate::faults::Faults;
use crate::registry::content::{base_layer, named_layer};
use crate::spec::{
    ApplicationSpec, DeltaSettings, DeltaSpec, DeviceSpec, ImageSpec, ManifestFormat, ReleaseSpec,
    Scenario, ServiceSpec, UserSpec,
};

/// The accepted bearer token.
pub const TOKEN: &str = "demo-token-7Kq2xVb9LmT4pR8s";

pub const USER_ID: i64 = 34521;
pub const USERNAME: &str = "gh_demo";

/// `kiosk-fleet`, the application with the release history.
pub const APP_ID: i64 = 1952390;
/// `sensor-hub`, a second application with one release.
pub const OTHER_APP_ID: i64 = 1952411;

pub const SERVICE_MAIN: i64 = 301001;
pub const SERVICE_API: i64 = 301002;
pub const SERVICE_WORKER: i64 = 301003;
pub const SERVICE_PROXY: i64 = 301004;
pub const OTHER_SERVICE_MAIN: i64 = 301101;

pub const RELEASE_1: i64 = 900813;
pub const RELEASE_2: i64 = 900835;
/// A failed release between RELEASE_2 and RELEASE_3.
pub const FAILED_RELEASE: i64 = 900850;
/// The release `kiosk-fleet` should run.
pub const RELEASE_3: i64 = 900871;
/// The only release of `sensor-hub`.
pub const OTHER_RELEASE: i64 = 900900;

pub const COMMIT_1: &str = "84d3d8f4c0a1e5b27f3d9c6e8a0b4f1d2c7e9a35";
pub const COMMIT_2: &str = "b2cf2db7a4e6c9d18f3b5a7e0c2d4f61";
/// Shares [`COMMIT_1`]'s first six characters, but the release failed.
pub const FAILED_COMMIT: &str = "84d3d8e19b7c2a4f60d5e3b8c1a9f7e2";
/// Shares its first eight characters with [`COMMIT_2`].
pub const COMMIT_3: &str = "b2cf2db7e8a1d3c5f7092b4d6e8f0a13";
pub const OTHER_COMMIT: &str = "5e7a9c1b3d2f4e6a8c0b1d3f5a7c9e2b4d6f8a01";
/// A prefix matching two successful releases (RELEASE_2 and RELEASE_3).
pub const AMBIGUOUS_PREFIX: &str = "b2cf2db7";
/// A prefix matching RELEASE_1 and FAILED_RELEASE; only RELEASE_1 succeeded.
pub const PREFIX_1: &str = "84d3d8";

pub const IMAGE_R1_MAIN: i64 = 1115249;
/// `worker` in RELEASE_1 and RELEASE_2 (the same image id).
pub const IMAGE_WORKER: i64 = 1115250;
pub const IMAGE_R1_PROXY: i64 = 1115251;
pub const IMAGE_R2_MAIN: i64 = 1115290;
/// `proxy` in RELEASE_2 and RELEASE_3: a new image id with IMAGE_R1_PROXY's content hash.
pub const IMAGE_R2_PROXY: i64 = 1115291;
pub const IMAGE_R2_API: i64 = 1115292;
/// The failed build of `main` in FAILED_RELEASE (status `failed`, no size).
pub const IMAGE_FAILED_MAIN: i64 = 1115301;
pub const IMAGE_FAILED_API: i64 = 1115302;
pub const IMAGE_R3_MAIN: i64 = 1115320;
pub const IMAGE_R3_API: i64 = 1115321;
pub const IMAGE_OTHER_MAIN: i64 = 1115400;

pub const SIZE_R1_MAIN: u64 = 310_905_195;
pub const SIZE_WORKER: u64 = 95_436_288;
pub const SIZE_PROXY: u64 = 41_873_408;
pub const SIZE_R2_MAIN: u64 = 312_483_840;
pub const SIZE_R2_API: u64 = 128_974_848;
pub const SIZE_FAILED_API: u64 = 129_105_920;
pub const SIZE_R3_MAIN: u64 = 315_621_376;
pub const SIZE_R3_API: u64 = 131_203_072;
pub const SIZE_OTHER_MAIN: u64 = 182_452_224;

/// A failed delta IMAGE_R1_MAIN → IMAGE_R2_MAIN (a new request starts a new row).
pub const DELTA_R1_R2_MAIN_FAILED: i64 = 5000087;
/// A successful delta IMAGE_R2_MAIN → IMAGE_R3_MAIN: RELEASE_2 → RELEASE_3 has
/// `main` ready and `api` still to build.
pub const DELTA_R2_R3_MAIN: i64 = 5000101;
pub const DELTA_R2_R3_MAIN_SIZE: u64 = 48_234_496;

pub const DEVICE_LOBBY: i64 = 7001;
pub const DEVICE_CAFE: i64 = 7002;
pub const DEVICE_GATE: i64 = 7003;
pub const DEVICE_EAST: i64 = 7004;
pub const DEVICE_WEST: i64 = 7005;
pub const OTHER_DEVICE: i64 = 7101;

/// `demo-pinned` only: runs RELEASE_1, pinned to RELEASE_2 (not the fleet's target).
pub const DEVICE_NORTH: i64 = 7006;
/// `demo-pinned` only: runs RELEASE_3 (the fleet's target), pinned to the older RELEASE_1.
pub const DEVICE_SOUTH: i64 = 7007;
/// `demo-pinned` only: runs RELEASE_1 and is pinned to it.
pub const DEVICE_DOCK: i64 = 7008;
/// `demo-pinned` only: runs RELEASE_3 and is pinned to it.
pub const DEVICE_YARD: i64 = 7009;

/// Delta build speed: the largest demo image (~316 MB) builds in about 1.6 s.
pub const THROUGHPUT: u64 = 200_000_000;

fn t(s: &str) -> Option<jiff::Timestamp> {
    s.parse().ok()
}

fn image(id: i64, service: i64, size: Option<u64>, created: &str) -> ImageSpec {
    ImageSpec {
        id,
        is_a_build_of__service: service,
        status: "success".into(),
        image_size: size,
        content_hash: None,
        is_stored_at__image_location: None,
        created_at: t(created),
        layers: None,
        manifest_format: ManifestFormat::Docker,
        platforms: Vec::new(),
        manifest: Default::default(),
    }
}

fn release(
    id: i64,
    app: i64,
    commit: &str,
    status: &str,
    semver: Option<&str>,
    images: &[i64],
    created: &str,
) -> ReleaseSpec {
    ReleaseSpec {
        id,
        belongs_to__application: app,
        commit: commit.into(),
        status: status.into(),
        is_created_by__user: Some(USER_ID),
        semver: semver.map(str::to_owned),
        is_final: true,
        images: images.to_vec(),
        created_at: t(created),
        composition: Default::default(),
    }
}

fn device(
    id: i64,
    app: i64,
    name: &str,
    running: i64,
    pinned: Option<i64>,
    online: bool,
) -> DeviceSpec {
    DeviceSpec {
        id,
        belongs_to__application: app,
        device_name: Some(name.into()),
        uuid: None,
        is_running__release: Some(running),
        is_pinned_on__release: pinned,
        is_online: online,
        created_at: t("2025-11-04T12:00:00.000Z"),
        config_variables: Default::default(),
    }
}

/// The demo fleet plus four pinned devices (`demo-pinned`): the demo's own
/// devices and their answers are unchanged.
pub(crate) fn pinned_scenario() -> Scenario {
    let mut s = scenario();
    s.name = "demo-pinned".into();
    s.devices.extend([
        device(
            DEVICE_NORTH,
            APP_ID,
            "kiosk-north",
            RELEASE_1,
            Some(RELEASE_2),
            true,
        ),
        device(
            DEVICE_SOUTH,
            APP_ID,
            "kiosk-south",
            RELEASE_3,
            Some(RELEASE_1),
            true,
        ),
        device(
            DEVICE_DOCK,
            APP_ID,
            "kiosk-dock",
            RELEASE_1,
            Some(RELEASE_1),
            true,
        ),
        device(
            DEVICE_YARD,
            APP_ID,
            "kiosk-yard",
            RELEASE_3,
            Some(RELEASE_3),
            false,
        ),
    ]);
    s
}

pub(crate) fn scenario() -> Scenario {
    const R1_AT: &str = "2025-11-03T10:12:44.125Z";
    const R2_AT: &str = "2025-11-10T15:40:02.870Z";
    const FAILED_AT: &str = "2025-11-11T16:52:58.089Z";
    const R3_AT: &str = "2025-11-12T09:05:31.442Z";
    const OTHER_AT: &str = "2025-11-05T08:30:10.500Z";
    let service = |id, application, name: &str| ServiceSpec {
        id,
        application,
        service_name: name.into(),
        created_at: t("2025-11-03T10:12:44.125Z"),
    };
    let mut images = vec![
        image(IMAGE_R1_MAIN, SERVICE_MAIN, Some(SIZE_R1_MAIN), R1_AT),
        image(IMAGE_WORKER, SERVICE_WORKER, Some(SIZE_WORKER), R1_AT),
        image(IMAGE_R1_PROXY, SERVICE_PROXY, Some(SIZE_PROXY), R1_AT),
        image(IMAGE_R2_MAIN, SERVICE_MAIN, Some(SIZE_R2_MAIN), R2_AT),
        image(IMAGE_R2_PROXY, SERVICE_PROXY, Some(SIZE_PROXY), R2_AT),
        image(IMAGE_R2_API, SERVICE_API, Some(SIZE_R2_API), R2_AT),
        image(IMAGE_FAILED_MAIN, SERVICE_MAIN, None, FAILED_AT),
        image(
            IMAGE_FAILED_API,
            SERVICE_API,
            Some(SIZE_FAILED_API),
            FAILED_AT,
        ),
        image(IMAGE_R3_MAIN, SERVICE_MAIN, Some(SIZE_R3_MAIN), R3_AT),
        image(IMAGE_R3_API, SERVICE_API, Some(SIZE_R3_API), R3_AT),
        image(
            IMAGE_OTHER_MAIN,
            OTHER_SERVICE_MAIN,
            Some(SIZE_OTHER_MAIN),
            OTHER_AT,
        ),
    ];
    for im in &mut images {
        match im.id {
            // The same layers, so the same manifest and content hash.
            IMAGE_R1_PROXY | IMAGE_R2_PROXY => {
                im.layers = Some(vec![
                    base_layer(APP_ID),
                    named_layer("proxy: nginx", 9_614_822),
                    named_layer("proxy: configuration", 6_134_550),
                ]);
            }
            IMAGE_FAILED_MAIN => im.status = "failed".into(),
            IMAGE_R2_API | IMAGE_FAILED_API | IMAGE_R3_API => {
                im.manifest_format = ManifestFormat::Oci;
            }
            IMAGE_OTHER_MAIN => {
                // A two-platform OCI index.
                im.manifest_format = ManifestFormat::Oci;
                im.platforms = vec!["linux/amd64".into(), "linux/arm64/v8".into()];
            }
            _ => {}
        }
    }
    let mut scenario = Scenario {
        name: "demo".into(),
        tokens: vec![TOKEN.into()],
        openbalena: false,
        clock: Clock::Real,
        epoch: t("2025-11-01T09:00:00.000Z").unwrap_or(jiff::Timestamp::UNIX_EPOCH),
        delta: DeltaSettings {
            throughput: THROUGHPUT,
            ..DeltaSettings::default()
        },
        faults: Faults::none(),
        users: vec![UserSpec {
            id: USER_ID,
            username: USERNAME.into(),
            created_at: t("2025-10-20T08:00:00.000Z"),
        }],
        applications: vec![
            ApplicationSpec {
                id: APP_ID,
                app_name: "kiosk-fleet".into(),
                slug: Some(format!("{USERNAME}/kiosk-fleet")),
                should_be_running__release: Some(RELEASE_3),
                is_public: false,
                should_track_latest_release: true,
                created_at: t("2025-11-01T09:00:00.000Z"),
                config_variables: Default::default(),
            },
            ApplicationSpec {
                id: OTHER_APP_ID,
                app_name: "sensor-hub".into(),
                slug: Some(format!("{USERNAME}/sensor-hub")),
                should_be_running__release: Some(OTHER_RELEASE),
                is_public: false,
                should_track_latest_release: true,
                created_at: t("2025-11-02T09:00:00.000Z"),
                config_variables: Default::default(),
            },
        ],
        services: vec![
            service(SERVICE_MAIN, APP_ID, "main"),
            service(SERVICE_API, APP_ID, "api"),
            service(SERVICE_WORKER, APP_ID, "worker"),
            service(SERVICE_PROXY, APP_ID, "proxy"),
            service(OTHER_SERVICE_MAIN, OTHER_APP_ID, "main"),
        ],
        images,
        releases: vec![
            release(
                RELEASE_1,
                APP_ID,
                COMMIT_1,
                "success",
                Some("1.0.0"),
                &[IMAGE_R1_MAIN, IMAGE_WORKER, IMAGE_R1_PROXY],
                R1_AT,
            ),
            release(
                RELEASE_2,
                APP_ID,
                COMMIT_2,
                "success",
                Some("1.1.0"),
                &[IMAGE_R2_MAIN, IMAGE_WORKER, IMAGE_R2_PROXY, IMAGE_R2_API],
                R2_AT,
            ),
            release(
                FAILED_RELEASE,
                APP_ID,
                FAILED_COMMIT,
                "failed",
                None,
                &[
                    IMAGE_FAILED_MAIN,
                    IMAGE_FAILED_API,
                    IMAGE_WORKER,
                    IMAGE_R2_PROXY,
                ],
                FAILED_AT,
            ),
            release(
                RELEASE_3,
                APP_ID,
                COMMIT_3,
                "success",
                Some("1.2.0"),
                &[IMAGE_R3_MAIN, IMAGE_R3_API, IMAGE_R2_PROXY],
                R3_AT,
            ),
            release(
                OTHER_RELEASE,
                OTHER_APP_ID,
                OTHER_COMMIT,
                "success",
                Some("0.4.2"),
                &[IMAGE_OTHER_MAIN],
                OTHER_AT,
            ),
        ],
        devices: vec![
            device(DEVICE_LOBBY, APP_ID, "kiosk-lobby", RELEASE_3, None, true),
            device(DEVICE_CAFE, APP_ID, "kiosk-cafe", RELEASE_2, None, true),
            device(DEVICE_GATE, APP_ID, "kiosk-gate", RELEASE_1, None, false),
            device(
                DEVICE_EAST,
                APP_ID,
                "kiosk-east",
                RELEASE_2,
                Some(RELEASE_2),
                true,
            ),
            DeviceSpec {
                // Image deltas turned off on this device: it pulls.
                config_variables: [("BALENA_SUPERVISOR_DELTA".into(), "0".into())].into(),
                ..device(DEVICE_WEST, APP_ID, "kiosk-west", RELEASE_1, None, true)
            },
            device(
                OTHER_DEVICE,
                OTHER_APP_ID,
                "hub-01",
                OTHER_RELEASE,
                None,
                true,
            ),
        ],
        deltas: vec![
            DeltaSpec {
                id: DELTA_R1_R2_MAIN_FAILED,
                originates_from__image: Some(IMAGE_R1_MAIN),
                produces__image: IMAGE_R2_MAIN,
                version: 3,
                status: "failed".into(),
                size: None,
                is_stored_at__location: None,
                error_message: Some(
                    "delta generation failed: source image layers unavailable".into(),
                ),
                created_at: t("2025-11-10T15:44:12.301Z"),
                layers: None,
                manifest: Default::default(),
            },
            DeltaSpec {
                id: DELTA_R2_R3_MAIN,
                originates_from__image: Some(IMAGE_R2_MAIN),
                produces__image: IMAGE_R3_MAIN,
                version: 3,
                status: "success".into(),
                size: Some(DELTA_R2_R3_MAIN_SIZE),
                is_stored_at__location: None,
                error_message: None,
                created_at: t("2025-11-12T09:09:40.018Z"),
                layers: None,
                manifest: Default::default(),
            },
        ],
    };
    // `worker` (removed in RELEASE_3) is labelled `kill-then-download`: a
    // device drops its image before the other services download.
    for r in &mut scenario.releases {
        if r.id == RELEASE_1 || r.id == RELEASE_2 {
            let services: serde_json::Map<String, serde_json::Value> = [
                "main", "api", "worker", "proxy",
            ]
            .into_iter()
            .filter(|name| *name != "api" || r.id == RELEASE_2)
            .map(|name| {
                let mut service =
                    serde_json::json!({ "build": { "context": format!("./{name}") } });
                if name == "worker" {
                    service["labels"] =
                        serde_json::json!({ "io.balena.update.strategy": "kill-then-download" });
                }
                (name.to_owned(), service)
            })
            .collect();
            r.composition = Some(serde_json::json!({ "version": "2.1", "services": services }));
        }
    }
    scenario
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_is_valid_and_its_commits_are_hex_of_builder_or_git_length() {
        let s = scenario();
        s.validate().unwrap();
        for r in &s.releases {
            assert!(r.commit.len() == 32 || r.commit.len() == 40, "{}", r.commit);
            assert!(
                r.commit
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
        }
        let success_with = |prefix: &str| {
            s.releases
                .iter()
                .filter(|r| r.status == "success" && r.commit.starts_with(prefix))
                .count()
        };
        assert_eq!(success_with(AMBIGUOUS_PREFIX), 2);
        assert_eq!(success_with(PREFIX_1), 1);
        assert_eq!(
            s.releases
                .iter()
                .filter(|r| r.commit.starts_with(PREFIX_1))
                .count(),
            2
        );
        for sv in &s.services {
            assert!(
                sv.service_name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            );
        }
        let db = s.build_db().unwrap();
        assert_eq!(db.rows("release_image").count(), 15);
    }
}
