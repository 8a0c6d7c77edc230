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
        "fleet {} ({}) to release {} ({}): {}, {}, {} on target, {} without a release\n",
        printable(&fleet.application.slug),
        fleet.application.id,
        fleet.produces__release.id,
        short_commit(&fleet.produces__release.commit),
        fleet.overall_status,
        count(fleet.transitions.len() as u64, "transition"),
        count(fleet.devices_on_target, "device"),
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
        Some(bytes) => size(bytes),
        None => "not known until every delta is ready".to_owned(),
    };
    if fleet.estimated_fleet_download_size.is_some() || fleet.download_size_unknown {
        let exact = fleet
            .estimated_fleet_download_size
            .map_or_else(|| "unknown".to_owned(), size);
        let _ = writeln!(
            out,
            "\nfleet-wide download: {exact} (compressed, from the registry's manifests)"
        );
        let _ = writeln!(out, "fleet-wide npm-compatible estimate: {payload}");
    } else {
        let _ = writeln!(out, "\nfleet-wide download: {payload}");
    }
    out
}

fn transition_table(info: &UpdateInfo, devices: Option<u64>) -> String {
    let mut out = String::new();
    let devices = devices
        .map(|n| format!(", {}", count(n, "device")))
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

    // The registry's exact figure, when it was asked, leads in DOWNLOAD;
    // the npm tool's figure from image sizes moves to ESTIMATE.
    let exact = registry_asked(info);
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
    let mut exact_cells = vec!["DOWNLOAD".to_owned()];
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
                (Some(bytes), _) => size(bytes),
            },
            download.map_or("-".into(), |bytes| saving(bytes, target.image_size)),
        ]);
        exact_cells.push(exact_size(service.download_size));
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
        exact_cells.push("-".into());
    }
    exact_cells.push(exact_size(info.estimated_download_size));
    rows.push([
        "total".into(),
        String::new(),
        String::new(),
        String::new(),
        size(full),
        size(payload_now),
        saving(payload_now, full),
    ]);
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .zip(exact_cells)
        .map(|(row, exact_cell)| {
            let mut row = row.to_vec();
            if exact {
                row[5] = if row[0] == "SERVICE" {
                    "ESTIMATE".into()
                } else {
                    std::mem::take(&mut row[5])
                };
                row.insert(5, exact_cell);
            }
            row
        })
        .collect();
    out.push_str(&align(&rows));
    if size_unknown || info.payload_size_unknown {
        out.push_str(
            "some sizes are unknown to the API and count as 0: the download is larger than shown\n",
        );
    }
    if exact {
        let _ = match info.estimated_download_size {
            Some(bytes) => writeln!(
                out,
                "download per device: {} (DOWNLOAD: compressed layers a device fetches now, from the registry's manifests)",
                size(bytes)
            ),
            None => writeln!(
                out,
                "download per device: unknown, the registry could not tell (-v says why)"
            ),
        };
    }
    let estimate = if exact {
        "npm-compatible estimate (ESTIMATE, from on-disk image sizes)"
    } else {
        "estimated download"
    };
    match info.estimated_total_payload_size {
        Some(bytes) => {
            let _ = writeln!(
                out,
                "{estimate} per device: {} instead of {} in full",
                size(bytes),
                size(full)
            );
        }
        None => {
            let by = if exact {
                "by image sizes (ESTIMATE), "
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "not ready: {by}a device updating now downloads about {} (deltas not ready count in full, shown in parentheses)",
                size(payload_now)
            );
        }
    }
    out
}

/// Whether the registry was asked for this transition's download.
fn registry_asked(info: &UpdateInfo) -> bool {
    info.estimated_download_size.is_some() || info.download_size_unknown
}

/// An exact size from the registry, or `unknown`.
fn exact_size(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "unknown".into(), size)
}

/// Left-aligned text columns, right-aligned size columns, two spaces apart.
fn align(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (column, (cell, width)) in row.iter().zip(widths.iter().copied()).enumerate() {
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
        size(image.image_size)
    }
}

/// A size in decimal units (B, kB, MB, GB, TB; 1 kB = 1000 bytes, as
/// registries and balenaCloud count) with three significant digits:
/// `0 B`, `812 B`, `48.2 MB`, `131 MB`, `1.51 GB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    // Round first, so that 999.96 MB reads 1.00 GB and not 1000 MB.
    while unit + 1 < UNITS.len() && format!("{value:.0}").len() > 3 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes} B");
    }
    let digits = if value >= 99.95 {
        0
    } else if value >= 9.995 {
        1
    } else {
        2
    };
    format!("{value:.digits$} {}", UNITS[unit])
}

/// `1 device`, `3 devices`.
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
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
        for (bytes, shown) in [
            (0, "0 B"),
            (812, "812 B"),
            (999, "999 B"),
            (1_000, "1.00 kB"),
            (48_234_496, "48.2 MB"),
            (131_203_072, "131 MB"),
            (999_960_000, "1.00 GB"),
            (1_507_000_000, "1.51 GB"),
            (2_258_063_500_000, "2.26 TB"),
            (u64::MAX, "18446744 TB"),
        ] {
            assert_eq!(size(bytes), shown, "{bytes}");
        }
        assert_eq!(saving(484_575, 310_954_877), "99.8%");
        assert_eq!(saving(0, 0), "-");
        assert_eq!(saving(10, 10), "0.0%");
    }

    /// The reference example with the registry's figures.
    const EXACT: &str = r#"{
      "originates_from__release": {"id": 1, "commit": "84d3d8f43eddd81b1699552dd39338f8dbf8b11e"},
      "produces__release": {"id": 2, "commit": "b2cf2db7fece36f10e6a7e815ab169fd30cab05f"},
      "is_produced_by__service_update": [
        {"service_name": "api", "status": "ready",
         "produces__image": {"id": 3, "is_stored_at__image_location": "r/v2/a", "content_hash": "sha256:a", "image_size": 45012345},
         "change": "new", "pull_size": 12000000, "download_size": 12000000},
        {"service_name": "main", "status": "ready",
         "originates_from__image": {"id": 4, "is_stored_at__image_location": "r/v2/m", "content_hash": "sha256:m", "image_size": 310905195},
         "produces__image": {"id": 5, "is_stored_at__image_location": "r/v2/n", "content_hash": "sha256:n", "image_size": 310954877,
           "is_produced_by__delta": {"id": 6, "version": 3, "is_stored_at__location": "r/v2/n:delta-1", "size": 484575}},
         "change": "changed", "pull_size": 900000, "download_size": 200000}
      ],
      "overall_status": "ready",
      "estimated_total_payload_size": 45496920,
      "removed_services": [],
      "estimated_download_size": 12200000
    }"#;

    #[test]
    fn the_exact_download_leads_and_the_estimate_stays_visible() {
        let info: UpdateInfo = serde_json::from_str(EXACT).unwrap();
        let text = transition_table(&info, None);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[1..5],
            [
                "SERVICE  CHANGE   STATUS    FROM       TO  DOWNLOAD  ESTIMATE  SAVING",
                "api      new      ready        -  45.0 MB   12.0 MB   45.0 MB    0.0%",
                "main     changed  ready   311 MB   311 MB    200 kB    485 kB   99.8%",
                "total                              356 MB   12.2 MB   45.5 MB   87.2%",
            ]
        );
        assert!(
            text.contains("download per device: 12.2 MB (DOWNLOAD: compressed"),
            "{text}"
        );
        assert!(
            text.contains(
                "npm-compatible estimate (ESTIMATE, from on-disk image sizes) per device: 45.5 MB"
            ),
            "{text}"
        );

        let mut unknown = info.clone();
        unknown.estimated_download_size = None;
        unknown.download_size_unknown = true;
        unknown.is_produced_by__service_update[0].download_size = None;
        unknown.is_produced_by__service_update[0].download_size_unknown = true;
        let text = transition_table(&unknown, None);
        assert!(text.lines().nth(2).unwrap().contains("unknown"), "{text}");
        assert!(text.contains("download per device: unknown"), "{text}");

        // Without the registry the table is the npm tool's figure alone.
        let mut plain = info;
        plain.estimated_download_size = None;
        for s in &mut plain.is_produced_by__service_update {
            s.download_size = None;
            s.pull_size = None;
        }
        let text = transition_table(&plain, None);
        assert!(
            text.lines().nth(1).unwrap().ends_with("DOWNLOAD  SAVING"),
            "{text}"
        );
        assert!(
            text.contains("estimated download per device: 45.5 MB"),
            "{text}"
        );
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
        let text = align(&rows.map(|r| r.to_vec()));
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
