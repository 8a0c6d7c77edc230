//! Turns results into text: the npm tool's JSON for scripts, and for
//! people a table fitted to the terminal or a Markdown report, both laid
//! out from one view of the report (`sheet`). The live progress block is in
//! `progress`.

mod markdown;
mod sheet;
mod text;

use balena_release::Report;

use crate::printer::json_pretty;

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

/// One table per transition (a fleet adds a summary table first), laid out
/// for `columns` characters.
pub fn table(report: &Report, columns: usize) -> String {
    text::render(&sheet::view(report), columns)
}

/// The table's content as GitHub-flavoured Markdown; with `max_download`,
/// the verdict on that budget under the first heading.
pub fn markdown(report: &Report, max_download: Option<u64>) -> String {
    let verdict = max_download.map(|limit| crate::budget::verdict(report, limit));
    markdown::render(&sheet::view(report), verdict.as_deref())
}

/// The share of the full size that is not downloaded; `-` when there is
/// nothing to compare or nothing is saved.
fn saving(download: u64, full: u64) -> String {
    if full == 0 || download >= full {
        return "-".into();
    }
    let saved = full.saturating_sub(download) as f64 / full as f64 * 100.0;
    format!("{saved:.1}%")
}

#[cfg(test)]
mod tests {
    use balena_release::UpdateInfo;

    use super::*;

    #[test]
    fn savings() {
        assert_eq!(saving(484_575, 310_954_877), "99.8%");
        assert_eq!(saving(0, 0), "-");
        assert_eq!(saving(10, 10), "-");
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
        let text = table(&Report::Transition(info.clone()), 120);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[1..5],
            [
                "SERVICE  CHANGE   STATUS    FROM       TO  DOWNLOAD  ESTIMATE  SAVING",
                "api      new      ready        -  45.0 MB   12.0 MB   45.0 MB       -",
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
                "npm-compatible estimate (ESTIMATE, from image sizes) per device: 45.5 MB"
            ),
            "{text}"
        );

        let mut unknown = info.clone();
        unknown.estimated_download_size = None;
        unknown.download_size_unknown = true;
        unknown.is_produced_by__service_update[0].download_size = None;
        unknown.is_produced_by__service_update[0].download_size_unknown = true;
        let text = table(&Report::Transition(unknown), 120);
        assert!(text.lines().nth(2).unwrap().contains("unknown"), "{text}");
        assert!(text.contains("download per device: unknown"), "{text}");

        // Without the registry the table is the npm tool's figure alone.
        let mut plain = info;
        plain.estimated_download_size = None;
        for s in &mut plain.is_produced_by__service_update {
            s.download_size = None;
            s.pull_size = None;
        }
        let text = table(&Report::Transition(plain), 120);
        assert!(
            text.lines().nth(1).unwrap().ends_with("DOWNLOAD  SAVING"),
            "{text}"
        );
        assert!(
            text.contains("estimated download per device: 45.5 MB"),
            "{text}"
        );
    }

    /// A fleet whose devices are all on their target: the heading counts
    /// them in words that agree with the number, and no fleet-wide figure
    /// is made up for transitions there are none of.
    #[test]
    fn a_fleet_with_nothing_to_do() {
        let fleet: balena_release::FleetUpdateInfo = serde_json::from_value(serde_json::json!({
            "application": { "id": 7, "slug": "org/fleet" },
            "produces__release": { "id": 2, "commit": "b2cf2db7fece36f10e6a7e815ab169fd30cab05f" },
            "transitions": [],
            "overall_status": "ready",
            "devices_on_target": 1,
            "devices_without_release": 0,
        }))
        .unwrap();
        let text = table(&Report::Fleet(fleet.clone()), 80);
        assert!(
            text.contains("0 transitions, 1 device already on its target, 0 without a release"),
            "{text}"
        );
        assert!(!text.contains("fleet-wide"), "{text}");
        let json = json(&Report::Fleet(fleet));
        assert!(!json.contains("fleet_download"), "{json}");
    }
}
