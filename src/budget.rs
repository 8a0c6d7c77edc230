//! `--max-download`: a data budget for the update, checked after the run so
//! that a CI step can stop a rollout that would cost too much. Sizes are read
//! the way people write them (`50MB`, `1.5GiB`, bytes), and each transition's
//! download is the figure one device updating now would make. Pure functions:
//! the run prints the result first and turns an excess into exit 3.

use balena_release::{
    Change, FleetTransition, FleetUpdateInfo, ReleaseSummary, Report, UpdateInfo,
};

use crate::wording::{Commits, count, size};

/// How to write a size, for error messages.
const SIZE_FORMS: &str = "use bytes (`50000000`) or a number and a unit (`50MB`, `1.5GiB`): kB, \
                          MB, GB, TB count in powers of 1000, KiB, MiB, GiB, TiB in powers of \
                          1024";

/// At most this many decimals: a finer fraction is less than a byte.
const MAX_DECIMALS: usize = 15;

/// Parses a `--max-download` value into bytes: plain bytes (`50000000`), or a
/// number (with an optional fraction) and a unit, optionally separated by a
/// space: `kB`/`KB`, `MB`, `GB`, `TB` (powers of 1000) or `KiB`, `MiB`,
/// `GiB`, `TiB` (powers of 1024). A fraction is rounded to the nearest byte.
pub fn parse_size(value: &str) -> Result<u64, String> {
    let text = value.trim();
    if text.is_empty() {
        return Err(format!("the size is empty: {SIZE_FORMS}"));
    }
    if text
        .strip_prefix('-')
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit() || c == '.'))
    {
        return Err(format!(
            "`{}` is negative: a download budget is 0 or more bytes",
            value.escape_debug()
        ));
    }
    let not_a_size = || format!("`{}` is not a size: {SIZE_FORMS}", value.escape_debug());
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(number_end);
    let unit = unit.trim_start();
    let multiplier: u64 = match unit {
        "" | "B" => 1,
        "kB" | "KB" => 1000,
        "MB" => 1000u64.pow(2),
        "GB" => 1000u64.pow(3),
        "TB" => 1000u64.pow(4),
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return Err(not_a_size()),
    };
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (number, ""),
    };
    // Digits on both sides of at most one point, and at least one digit.
    if (whole.is_empty() && fraction.is_empty())
        || fraction.contains('.')
        || (number.contains('.') && (whole.is_empty() || fraction.is_empty()))
    {
        return Err(not_a_size());
    }
    if multiplier == 1 && !fraction.is_empty() {
        return Err(format!(
            "`{}` is not a whole number of bytes: give bytes without a fraction, or a unit \
             (`1.5MB`)",
            value.escape_debug()
        ));
    }
    if fraction.len() > MAX_DECIMALS {
        return Err(format!(
            "`{}` has more than {MAX_DECIMALS} decimals",
            value.escape_debug()
        ));
    }
    let too_large = || {
        format!(
            "`{}` is larger than the largest size this tool counts ({} bytes)",
            value.escape_debug(),
            u64::MAX
        )
    };
    // Exact arithmetic: (whole · 10^d + fraction) · multiplier / 10^d.
    let whole: u128 = if whole.len() > 20 {
        return Err(too_large());
    } else {
        whole.parse().map_err(|_| not_a_size())?
    };
    let scale = 10u128.pow(fraction.len() as u32);
    let fraction: u128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().map_err(|_| not_a_size())?
    };
    let scaled = whole
        .checked_mul(scale)
        .and_then(|w| w.checked_add(fraction))
        .and_then(|n| n.checked_mul(u128::from(multiplier)))
        .ok_or_else(too_large)?;
    let bytes = (scaled + scale / 2) / scale;
    u64::try_from(bytes).map_err(|_| too_large())
}

/// What one device updating now downloads for a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Download {
    /// Bytes.
    Known(u64),
    /// A size the figure depends on is not known.
    Unknown,
}

/// The download one device updating now makes: the registry's exact figure
/// (`estimated_download_size`) when known; else the image sizes from the
/// API, a changed service without a ready delta counted as its whole image
/// ([`UpdateInfo::download_now`]); [`Download::Unknown`] when one of the
/// sizes that figure adds up is not known.
pub fn download(info: &UpdateInfo) -> Download {
    if let Some(exact) = info.estimated_download_size {
        return Download::Known(exact);
    }
    let unknown = info.is_produced_by__service_update.iter().any(|s| {
        match (s.change, &s.produces__image.is_produced_by__delta) {
            (Change::Unchanged, _) => false,
            (_, Some(delta)) => delta.size_unknown,
            (_, None) => s.produces__image.size_unknown,
        }
    });
    if unknown {
        Download::Unknown
    } else {
        Download::Known(info.download_now())
    }
}

/// One group of devices and what each downloads.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Group {
    what: String,
    download: Download,
}

/// The larger of two figures; unknown when either is.
fn larger(a: Download, b: Download) -> Download {
    match (a, b) {
        (Download::Known(a), Download::Known(b)) => Download::Known(a.max(b)),
        _ => Download::Unknown,
    }
}

/// What a device that pulls every image that is not unchanged downloads,
/// from image sizes (without the registry's figures).
fn pull_everything(info: &UpdateInfo) -> Download {
    let pulled = info
        .is_produced_by__service_update
        .iter()
        .filter(|s| s.change != Change::Unchanged);
    let mut total = 0u64;
    for s in pulled {
        if s.produces__image.size_unknown {
            return Download::Unknown;
        }
        total = total.saturating_add(s.produces__image.image_size);
    }
    Download::Known(total)
}

/// The most one device of a transition downloads: with deltas off, it
/// pulls every changed image.
fn largest(transition: &FleetTransition) -> Download {
    let with_deltas = download(&transition.update);
    if transition.devices_without_deltas == 0 {
        return with_deltas;
    }
    let without = match (
        transition.download_size_without_deltas,
        transition.update.estimated_download_size,
    ) {
        (Some(bytes), _) => Download::Known(bytes),
        (None, Some(_)) => Download::Unknown,
        (None, None) => pull_everything(&transition.update),
    };
    larger(with_deltas, without)
}

/// The devices of a fleet that run no release: they download the whole
/// target release (the registry's figure, else the target's image sizes
/// when a transition shows them).
fn without_release(fleet: &FleetUpdateInfo, commits: &Commits) -> Option<Group> {
    if fleet.devices_without_release == 0 {
        return None;
    }
    let target = &fleet.produces__release;
    let download = match fleet.devices_without_release_download_size {
        Some(bytes) => Download::Known(bytes),
        None => fleet
            .transitions
            .iter()
            .find(|t| t.update.produces__release.id == target.id)
            .filter(|_| !fleet.download_size_unknown)
            .map_or(Download::Unknown, |t| {
                let mut whole = t.update.clone();
                for s in &mut whole.is_produced_by__service_update {
                    s.change = Change::New;
                }
                pull_everything(&whole)
            }),
    };
    Some(Group {
        what: format!(
            "no release to {} ({}), {}",
            target.id,
            commits.short(&target.commit),
            count(fleet.devices_without_release, "device")
        ),
        download,
    })
}

/// The message of the `ERROR:` line when a group of devices (a transition,
/// or a fleet's devices running no release) would download more than
/// `limit` bytes per device (or an unknown amount), `None` when all are
/// within it. The figure judged is the largest one device may download:
/// in a transition with devices that have deltas off, theirs. Several
/// groups over the budget give one line: the largest (the first of unknown
/// size when none is known) and how many more.
pub fn check(report: &Report, limit: u64) -> Option<String> {
    let groups = groups(report);
    let mut over: Vec<Group> = groups
        .into_iter()
        .filter(|g| match g.download {
            Download::Known(bytes) => bytes > limit,
            Download::Unknown => true,
        })
        .collect();
    // The largest known first, then the unknown ones, each in report order.
    over.sort_by_key(|g| match g.download {
        Download::Known(bytes) => (0, u64::MAX - bytes),
        Download::Unknown => (1, 0),
    });
    let first = over.first()?;
    let what = &first.what;
    let budget = format!("--max-download {} ({limit} bytes)", size(limit));
    let mut message = match first.download {
        Download::Known(bytes) => format!(
            "over the download budget: {what}: a device updating now downloads {} ({bytes} \
             bytes), more than {budget}",
            size(bytes)
        ),
        Download::Unknown => format!(
            "over the download budget: {what}: the download of a device updating now is not \
             known (an image or delta has no size), which counts as more than {budget}"
        ),
    };
    if over.len() > 1 {
        let more = count(over.len() as u64 - 1, "more transition");
        message.push_str(&format!("; and {more} over the budget"));
    }
    Some(message)
}

/// The groups of devices `--max-download` judges, each with the largest
/// figure one of its devices may download.
fn groups(report: &Report) -> Vec<Group> {
    let commits = Commits::of(report);
    match report {
        Report::Transition(info) => vec![Group {
            what: transition_name(info, None, &commits),
            download: download(info),
        }],
        Report::Fleet(fleet) => fleet
            .transitions
            .iter()
            .map(|t| Group {
                what: transition_name(&t.update, Some(t.device_count), &commits),
                download: largest(t),
            })
            .chain(without_release(fleet, &commits))
            .collect(),
    }
}

/// The verdict on `--max-download` for a report, in one sentence naming
/// the figure and the limit: over (as the `ERROR:` line says it) or within
/// (the largest download of one device updating now).
pub fn verdict(report: &Report, limit: u64) -> String {
    if let Some(over) = check(report, limit) {
        return over;
    }
    let largest = groups(report)
        .iter()
        .filter_map(|g| match g.download {
            Download::Known(bytes) => Some(bytes),
            Download::Unknown => None,
        })
        .max()
        .unwrap_or(0);
    format!(
        "within the download budget: a device updating now downloads at most {} ({largest} \
         bytes), within --max-download {} ({limit} bytes)",
        size(largest),
        size(limit)
    )
}

/// `release 900813 (84d3d8f4c0) to 900835 (b2cf2db7a4)`, and `, 3 devices`
/// in a fleet, as the table's heading names a transition.
fn transition_name(info: &UpdateInfo, devices: Option<u64>, commits: &Commits) -> String {
    let release = |r: &ReleaseSummary| format!("{} ({})", r.id, commits.short(&r.commit));
    let mut name = format!(
        "release {} to {}",
        release(&info.originates_from__release),
        release(&info.produces__release)
    );
    if let Some(devices) = devices {
        name.push_str(&format!(", {}", count(devices, "device")));
    }
    name
}

#[cfg(test)]
mod tests {
    use balena_release::{
        DeltaInfo, FleetSummary, FleetTransition, FleetUpdateInfo, ImageInfo, ServiceUpdate, Status,
    };

    use super::*;

    #[test]
    fn sizes_in_both_unit_systems_and_plain_bytes() {
        for (text, bytes) in [
            ("0", 0),
            ("812", 812),
            ("812B", 812),
            ("50MB", 50_000_000),
            ("50 MB", 50_000_000),
            (" 50MB ", 50_000_000),
            ("1kB", 1000),
            ("1KB", 1000),
            ("2GB", 2_000_000_000),
            ("3TB", 3_000_000_000_000),
            ("1KiB", 1024),
            ("4MiB", 4 << 20),
            ("1.5GiB", 1_610_612_736),
            ("1TiB", 1 << 40),
            ("0.5kB", 500),
            ("1.0005kB", 1001),
            ("1.0004kB", 1000),
            ("18446744073709551615", u64::MAX),
            ("16777215.999999TiB", 18_446_744_073_708_452_104),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text:?}");
        }
    }

    #[test]
    fn anything_else_is_refused_with_the_reason() {
        for (text, reason) in [
            ("", "empty"),
            ("   ", "empty"),
            ("-5MB", "negative"),
            ("-1", "negative"),
            ("-.5MB", "negative"),
            ("--prepare", "not a size"),
            ("50mb", "not a size"),
            ("50 M", "not a size"),
            ("50MBs", "not a size"),
            ("5 0MB", "not a size"),
            ("MB", "not a size"),
            (".5MB", "not a size"),
            ("5.MB", "not a size"),
            ("1.2.3MB", "not a size"),
            ("1e6", "not a size"),
            ("+5MB", "not a size"),
            ("0x10", "not a size"),
            ("1.5", "whole number of bytes"),
            ("18446744073709551616", "larger"),
            ("16777216TiB", "larger"),
            ("999999999999999999999999MB", "larger"),
            ("1.0000000000000001GB", "decimals"),
        ] {
            let error = parse_size(text).expect_err(text);
            assert!(error.contains(reason), "{text:?}: {error}");
        }
        assert!(parse_size("50mb").unwrap_err().contains("KiB, MiB"));
    }

    fn image(id: u64, size: u64) -> ImageInfo {
        ImageInfo {
            id,
            is_stored_at__image_location: format!("registry2.example/v2/{id}"),
            content_hash: None,
            image_size: size,
            is_produced_by__delta: None,
            size_unknown: false,
        }
    }

    fn service(name: &str, change: Change, size: u64, delta: Option<u64>) -> ServiceUpdate {
        let mut target = image(size, size);
        target.is_produced_by__delta = delta.map(|size| DeltaInfo {
            id: 9,
            version: 3,
            is_stored_at__location: None,
            size,
            size_unknown: false,
        });
        ServiceUpdate {
            service_name: name.into(),
            status: if delta.is_some() || change != Change::Changed {
                Status::Ready
            } else {
                Status::Pending
            },
            originates_from__image: (change != Change::New).then(|| image(1, 1)),
            produces__image: target,
            change,
            delta_failure: None,
            pull_size: None,
            download_size: None,
            download_size_unknown: false,
            download_size_is_upper_bound: Default::default(),
            update_strategy: Default::default(),
        }
    }

    fn update(from: u64, to: u64, services: Vec<ServiceUpdate>) -> UpdateInfo {
        UpdateInfo {
            originates_from__release: ReleaseSummary {
                id: from,
                commit: format!("{from:x}aaaaaaaaaaaa"),
            },
            produces__release: ReleaseSummary {
                id: to,
                commit: format!("{to:x}bbbbbbbbbbbb"),
            },
            overall_status: services
                .iter()
                .map(|s| s.status)
                .min()
                .unwrap_or(Status::Ready),
            is_produced_by__service_update: services,
            estimated_total_payload_size: None,
            payload_size_unknown: false,
            removed_services: Vec::new(),
            estimated_download_size: None,
            download_size_unknown: false,
            download_size_is_upper_bound: Default::default(),
        }
    }

    #[test]
    fn the_download_is_the_registrys_figure_else_whole_images_without_a_ready_delta() {
        let mut info = update(
            0x100,
            0x200,
            vec![
                service("api", Change::New, 40, None),
                service("main", Change::Changed, 300, None),
                service("proxy", Change::Unchanged, 50, None),
                service("ui", Change::Changed, 70, Some(5)),
            ],
        );
        assert_eq!(download(&info), Download::Known(40 + 300 + 5));
        info.estimated_download_size = Some(123);
        assert_eq!(download(&info), Download::Known(123));
        info.estimated_download_size = None;
        info.is_produced_by__service_update[2]
            .produces__image
            .size_unknown = true;
        assert_eq!(
            download(&info),
            Download::Known(345),
            "an unchanged service downloads nothing, size or not"
        );
        info.is_produced_by__service_update[1]
            .produces__image
            .size_unknown = true;
        assert_eq!(download(&info), Download::Unknown);
        info.estimated_download_size = Some(7);
        assert_eq!(download(&info), Download::Known(7));
        info.estimated_download_size = None;
        info.is_produced_by__service_update[1]
            .produces__image
            .size_unknown = false;
        if let Some(delta) = info.is_produced_by__service_update[3]
            .produces__image
            .is_produced_by__delta
            .as_mut()
        {
            delta.size_unknown = true;
        }
        assert_eq!(download(&info), Download::Unknown);
    }

    #[test]
    fn commits_are_named_as_the_table_names_them() {
        let mut info = update(1, 2, Vec::new());
        info.originates_from__release.commit = "b2cf2db7e8a1d3".into();
        info.produces__release.commit = "b2cf2db7e8a9f0".into();
        let commits = Commits::of(&Report::Transition(info.clone()));
        assert_eq!(
            transition_name(&info, None, &commits),
            "release 1 (b2cf2db7e8a1) to 2 (b2cf2db7e8a9)"
        );
    }

    #[test]
    fn a_pair_within_the_budget_passes_and_one_above_names_itself_and_the_figure() {
        let info = update(
            900813,
            900835,
            vec![service("main", Change::Changed, 300_000_000, None)],
        );
        let report = Report::Transition(info.clone());
        assert_eq!(check(&report, 300_000_000), None);
        let message = check(&report, 299_999_999).unwrap();
        assert_eq!(
            message,
            "over the download budget: release 900813 (dbecdaaaaa) to 900835 (dbee3bbbbb): a device \
             updating now downloads 300 MB (300000000 bytes), more than --max-download 300 MB \
             (299999999 bytes)"
        );
        let mut unknown = info;
        unknown.is_produced_by__service_update[0]
            .produces__image
            .size_unknown = true;
        let message = check(&Report::Transition(unknown), u64::MAX).unwrap();
        assert!(message.contains("not known"), "{message}");
        assert!(message.contains("release 900813 (dbecdaaaaa)"), "{message}");
    }

    #[test]
    fn in_a_fleet_the_largest_transition_is_named_with_its_devices_and_the_rest_counted() {
        let transition = |from, size, devices| FleetTransition {
            device_count: devices,
            update: update(
                from,
                0x900,
                vec![service("main", Change::Changed, size, None)],
            ),
            devices_without_deltas: Default::default(),
            download_size_without_deltas: Default::default(),
        };
        let mut unknown = transition(0x400, 1, 1);
        unknown.update.is_produced_by__service_update[0]
            .produces__image
            .size_unknown = true;
        let fleet = FleetUpdateInfo {
            application: FleetSummary {
                id: 1,
                slug: "org/fleet".into(),
            },
            produces__release: update(0x900, 0x900, vec![]).produces__release,
            transitions: vec![
                transition(0x100, 10, 5),
                transition(0x200, 80, 3),
                unknown,
                transition(0x300, 120, 1),
            ],
            overall_status: Status::Pending,
            estimated_fleet_payload_size: None,
            payload_size_unknown: false,
            devices_on_target: 0,
            devices_without_release: 0,
            estimated_fleet_download_size: None,
            download_size_unknown: false,
            devices_without_release_download_size: Default::default(),
        };
        let report = Report::Fleet(fleet.clone());
        let message = check(&report, 50).unwrap();
        assert!(
            message.contains("release 768 (300aaaaaaa) to 2304 (900bbbbbbb), 1 device: a device"),
            "{message}"
        );
        assert!(message.contains("downloads 120 B"), "{message}");
        assert!(
            message.ends_with("; and 2 more transitions over the budget"),
            "{message}"
        );
        // Only the one of unknown size is over.
        let message = check(&report, 1000).unwrap();
        assert!(message.contains("release 1024 (400aaaaaaa)"), "{message}");
        assert!(message.contains(", 1 device:"), "{message}");
        assert!(!message.contains("more transition"), "{message}");
        let mut known = fleet;
        known.transitions.remove(2);
        assert_eq!(check(&Report::Fleet(known.clone()), 120), None);
        let message = check(&Report::Fleet(known), 79).unwrap();
        assert!(message.contains(", 1 device:"), "{message}");
        assert!(
            message.ends_with("; and 1 more transition over the budget"),
            "{message}"
        );
    }

    #[test]
    fn devices_with_deltas_off_and_without_a_release_are_judged_by_their_own_figure() {
        let mut with_delta = update(
            0x100,
            0x900,
            vec![service("main", Change::Changed, 300, Some(20))],
        );
        with_delta.estimated_download_size = Some(20);
        let mut transition = FleetTransition {
            device_count: 4,
            update: with_delta,
            devices_without_deltas: 0,
            download_size_without_deltas: None,
        };
        let mut fleet = FleetUpdateInfo {
            application: FleetSummary {
                id: 1,
                slug: "org/fleet".into(),
            },
            produces__release: update(0x900, 0x900, vec![]).produces__release,
            transitions: vec![transition.clone()],
            overall_status: Status::Ready,
            estimated_fleet_payload_size: None,
            payload_size_unknown: false,
            devices_on_target: 0,
            devices_without_release: 0,
            estimated_fleet_download_size: Some(80),
            download_size_unknown: false,
            devices_without_release_download_size: None,
        };
        assert_eq!(check(&Report::Fleet(fleet.clone()), 100), None);
        // One device has deltas off: it pulls 250.
        transition.devices_without_deltas = 1;
        transition.download_size_without_deltas = Some(250);
        fleet.transitions = vec![transition.clone()];
        let message = check(&Report::Fleet(fleet.clone()), 100).unwrap();
        assert!(message.contains("downloads 250 B"), "{message}");
        // Without the registry: the whole changed image.
        transition.update.estimated_download_size = None;
        transition.download_size_without_deltas = None;
        fleet.transitions = vec![transition];
        let message = check(&Report::Fleet(fleet.clone()), 100).unwrap();
        assert!(message.contains("downloads 300 B"), "{message}");
        assert_eq!(check(&Report::Fleet(fleet.clone()), 300), None);
        // Two devices run no release: the whole target release, 5000.
        fleet.devices_without_release = 2;
        fleet.devices_without_release_download_size = Some(5000);
        let message = check(&Report::Fleet(fleet.clone()), 1000).unwrap();
        assert!(
            message.contains(
                "no release to 2304 (900bbbbbbb), 2 devices: a device updating now downloads 5.00 kB"
            ),
            "{message}"
        );
        assert_eq!(check(&Report::Fleet(fleet), 5000), None);
    }
}
