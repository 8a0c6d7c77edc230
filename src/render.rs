//! Turns results into text: the npm tool's JSON for scripts and an aligned
//! table for people (the live progress block is in `progress`).

use std::fmt::Write as _;

use balena_release::{Change, FleetUpdateInfo, ImageInfo, Report, UpdateInfo};

use crate::printer::{json_pretty, printable};

/// `JSON.stringify(result, null, 2)` plus a newline, as the npm tool prints.
pub fn json(report: &Report) -> String {
    let text = match report {
        Report::Transition(info) => json_pretty(info),
        Report::Fleet(info) => json_pretty(info),
    };
    // Serialising plain structs with string keys cannot fail.
    let mut text = text.expect("the report serialises to JSON");
    text.push('\n');
    text
}

/// One table per transition, sizes in MB, with a totals row.
pub fn table(report: &Report) -> String {
    match report {
        Report::Transition(info) => transition_table(info, None),
        Report::Fleet(fleet) => fleet_table(fleet),
    }
}

fn fleet_table(fleet: &FleetUpdateInfo) -> String {
    let mut out = format!(
        "fleet {} ({}) to release {} ({}): {}, {} transition(s), {} device(s) on target, {} \
         without a release\n",
        printable(&fleet.application.slug),
        fleet.application.id,
        fleet.produces__release.id,
        short_commit(&fleet.produces__release.commit),
        fleet.overall_status,
        fleet.transitions.len(),
        fleet.devices_on_target,
        fleet.devices_without_release,
    );
    for transition in &fleet.transitions {
        out.push('\n');
        out.push_str(&transition_table(
            &transition.update,
            Some(transition.device_count),
        ));
    }
    let payload = match fleet.estimated_fleet_payload_size {
        Some(bytes) => large_size(bytes),
        None => "not known until every delta is ready".to_owned(),
    };
    let _ = writeln!(out, "\nfleet-wide download: {payload}");
    out
}

fn transition_table(info: &UpdateInfo, devices: Option<u64>) -> String {
    let mut out = String::new();
    let devices = devices
        .map(|n| format!(", {n} device(s)"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "release {} ({}) to {} ({}){devices}: {}",
        info.originates_from__release.id,
        short_commit(&info.originates_from__release.commit),
        info.produces__release.id,
        short_commit(&info.produces__release.commit),
        info.overall_status,
    );

    let mut rows: Vec<[String; 7]> = vec![[
        "SERVICE".into(),
        "CHANGE".into(),
        "STATUS".into(),
        "FROM".into(),
        "TO".into(),
        "DOWNLOAD".into(),
        "SAVING".into(),
    ]];
    let full = info.full_size();
    let payload_now = info.download_now();
    let mut size_unknown = false;
    for service in &info.is_produced_by__service_update {
        let target = &service.produces__image;
        let download = service.download_now();
        let delta_unknown = target
            .is_produced_by__delta
            .as_ref()
            .is_some_and(|d| d.size_unknown);
        // Unknown sizes count as 0 in the totals: say so.
        size_unknown |= target.size_unknown || delta_unknown;
        let mut status = service.status.to_string();
        match &service.delta_failure {
            Some(failure) if failure.http_status.is_some() => status.push_str(" (delta refused)"),
            Some(_) => status.push_str(" (delta failed)"),
            None => {}
        }
        rows.push([
            printable(&service.service_name).into_owned(),
            service.change.to_string(),
            status,
            service
                .originates_from__image
                .as_ref()
                .map_or("-".into(), image_size),
            image_size(target),
            match (download, &target.is_produced_by__delta) {
                (None, _) => format!("({})", image_size(target)),
                (Some(_), Some(delta)) if delta.size_unknown => "unknown".into(),
                (Some(_), None) if service.change == Change::New => image_size(target),
                (Some(bytes), _) => megabytes(bytes),
            },
            download.map_or("-".into(), |bytes| saving(bytes, target.image_size)),
        ]);
    }
    for removed in &info.removed_services {
        rows.push([
            printable(&removed.service_name).into_owned(),
            "removed".into(),
            "-".into(),
            image_size(&removed.originates_from__image),
            "-".into(),
            "-".into(),
            "-".into(),
        ]);
    }
    rows.push([
        "total".into(),
        String::new(),
        String::new(),
        String::new(),
        megabytes(full),
        megabytes(payload_now),
        saving(payload_now, full),
    ]);
    out.push_str(&align(&rows));
    if size_unknown || info.payload_size_unknown {
        out.push_str(
            "some sizes are unknown to the API and count as 0: the download is larger than shown\n",
        );
    }
    match info.estimated_total_payload_size {
        Some(bytes) => {
            let _ = writeln!(
                out,
                "estimated download per device: {} instead of {} in full",
                megabytes(bytes),
                megabytes(full)
            );
        }
        None => {
            let _ = writeln!(
                out,
                "not ready: a device updating now downloads about {} (deltas not ready count in full, shown in parentheses)",
                megabytes(payload_now)
            );
        }
    }
    out
}

/// Left-aligned text columns, right-aligned size columns, two spaces apart.
fn align(rows: &[[String; 7]]) -> String {
    let mut widths = [0usize; 7];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (column, (cell, width)) in row.iter().zip(widths).enumerate() {
            if column > 0 {
                line.push_str("  ");
            }
            if column < 3 {
                let _ = write!(line, "{cell:<width$}");
            } else {
                let _ = write!(line, "{cell:>width$}");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn image_size(image: &ImageInfo) -> String {
    if image.size_unknown {
        "unknown".into()
    } else {
        megabytes(image.image_size)
    }
}

/// Decimal megabytes with one decimal, as registries and balenaCloud show sizes.
pub fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}

/// Fleet-wide totals run into terabytes: the largest decimal unit that keeps
/// the number at or above 1.
fn large_size(bytes: u64) -> String {
    const UNITS: [(&str, f64); 3] = [("TB", 1e12), ("GB", 1e9), ("MB", 1e6)];
    let (unit, scale) = UNITS
        .iter()
        .find(|(_, scale)| bytes as f64 >= *scale)
        .unwrap_or(&UNITS[2]);
    format!("{:.1} {unit}", bytes as f64 / scale)
}

fn saving(download: u64, full: u64) -> String {
    if full == 0 {
        return "-".into();
    }
    let saved = full.saturating_sub(download) as f64 / full as f64 * 100.0;
    format!("{saved:.1}%")
}

fn short_commit(commit: &str) -> String {
    let short: String = commit.chars().take(7).collect();
    printable(&short).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_savings() {
        assert_eq!(megabytes(0), "0.0 MB");
        assert_eq!(megabytes(310_954_877), "311.0 MB");
        assert_eq!(megabytes(u64::MAX), "18446744073709.6 MB");
        assert_eq!(saving(484_575, 310_954_877), "99.8%");
        assert_eq!(large_size(2_258_063_500_000), "2.3 TB");
        assert_eq!(large_size(45_000_000_000), "45.0 GB");
        assert_eq!(large_size(12), "0.0 MB");
        assert_eq!(saving(0, 0), "-");
        assert_eq!(saving(10, 10), "0.0%");
    }

    #[test]
    fn columns_align() {
        let rows = [
            [
                "a".into(),
                "new".into(),
                "ready".into(),
                "-".into(),
                "1.0 MB".into(),
                "1.0 MB".into(),
                "0.0%".into(),
            ],
            [
                "long".into(),
                "changed".into(),
                "pending".into(),
                "10.0 MB".into(),
                "12.0 MB".into(),
                "(12.0 MB)".into(),
                "-".into(),
            ],
        ];
        let text = align(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "a     new      ready          -   1.0 MB     1.0 MB  0.0%"
        );
        assert_eq!(
            lines[1],
            "long  changed  pending  10.0 MB  12.0 MB  (12.0 MB)     -"
        );
    }
}
