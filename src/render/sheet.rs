//! What the tables say, before any layout: one pure function from a report
//! to headings, sheets of cells and notes. The terminal table (`text`) and
//! the Markdown report (`markdown`) lay out the same view, so they cannot
//! disagree on a figure. Text here is raw (server text unescaped); each
//! layout escapes everything it writes.

use balena_release::{
    Change, FleetTransition, FleetUpdateInfo, ImageInfo, Report, ServiceUpdate, UpdateInfo,
    UpdateStrategy,
};

use super::saving;
use crate::budget;
use crate::wording::{Commits, count, fleet_status, size, transition_status};

/// A column of a sheet: its header, its alignment and how it may give way
/// when the table is too wide (see `text::FIT_STEPS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Col {
    Service,
    Change,
    Status,
    From,
    To,
    Download,
    Estimate,
    Saving,
    Source,
    Target,
    Devices,
    FleetTotal,
}

impl Col {
    pub fn header(self) -> &'static str {
        match self {
            Col::Service => "SERVICE",
            Col::Change => "CHANGE",
            Col::Status => "STATUS",
            Col::From => "FROM",
            Col::To => "TO",
            Col::Download => "DOWNLOAD",
            Col::Estimate => "ESTIMATE",
            Col::Saving => "SAVING",
            Col::Source => "FROM RELEASE",
            Col::Target => "TO",
            Col::Devices => "DEVICES",
            Col::FleetTotal => "FLEET TOTAL",
        }
    }

    /// Sizes and counts are right-aligned, words left-aligned.
    pub fn right_aligned(self) -> bool {
        !matches!(
            self,
            Col::Service | Col::Change | Col::Status | Col::Source | Col::Target
        )
    }
}

/// One cell. When the layout must cut it, `text` loses characters from its
/// end (never its first `keep`), and `mark` (a footnote marker) stays.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cell {
    pub text: String,
    pub keep: usize,
    pub mark: String,
}

impl Cell {
    fn new(text: impl Into<String>) -> Cell {
        let text = text.into();
        Cell {
            keep: text.chars().count(),
            text,
            mark: String::new(),
        }
    }
}

/// A table with its title above and its notes below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sheet {
    pub title: Option<String>,
    pub columns: Vec<Col>,
    pub rows: Vec<Vec<Cell>>,
    /// The totals row, set apart from the others.
    pub total: Vec<Cell>,
    /// Footnotes first (`[1] …`), then sentences about the figures.
    pub notes: Vec<String>,
}

/// Everything one report shows, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// Lines above everything (the fleet and where it stands).
    pub heading: Vec<String>,
    /// The fleet's one-row-per-transition table.
    pub summary: Option<Sheet>,
    /// One sheet per transition; a layout gives them the same widths.
    pub transitions: Vec<Sheet>,
    /// Lines below everything (the fleet-wide figures).
    pub closing: Vec<String>,
}

pub fn view(report: &Report) -> View {
    let commits = Commits::of(report);
    match report {
        Report::Transition(info) => View {
            heading: Vec::new(),
            summary: None,
            transitions: vec![transition_sheet(info, None, &commits)],
            closing: Vec::new(),
        },
        Report::Fleet(fleet) => fleet_view(fleet, &commits),
    }
}

fn fleet_view(fleet: &FleetUpdateInfo, commits: &Commits) -> View {
    let target = &fleet.produces__release;
    let mut heading = vec![format!(
        "fleet {} ({}) to release {} ({}): {}",
        fleet.application.slug,
        fleet.application.id,
        target.id,
        commits.short(&target.commit),
        fleet_status(fleet),
    )];
    heading.push(format!(
        "{}, {} already on {} target, {} without a release",
        count(fleet.transitions.len() as u64, "transition"),
        count(fleet.devices_on_target, "device"),
        if fleet.devices_on_target == 1 {
            "its"
        } else {
            "their"
        },
        fleet.devices_without_release,
    ));

    let figures: Vec<DeviceDownload> = fleet
        .transitions
        .iter()
        .map(|t| DeviceDownload::of(&t.update))
        .collect();
    let mixed = figures.iter().any(|f| f.exact) && figures.iter().any(|f| !f.exact);
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let mut fleet_total = Some(0u64);
    for (transition, figure) in fleet.transitions.iter().zip(&figures) {
        let total = transition_total(transition, figure);
        fleet_total = fleet_total.zip(total).map(|(a, b)| a.saturating_add(b));
        rows.push(summary_row(transition, figure, total, mixed, commits));
        if transition.devices_without_deltas > 0 {
            notes.push(format!(
                "{} from {} with image deltas off pull every changed image: {} each (in FLEET \
                 TOTAL)",
                count(transition.devices_without_deltas, "device"),
                transition.update.originates_from__release.id,
                transition
                    .download_size_without_deltas
                    .map_or_else(|| "unknown".to_owned(), size)
            ));
        }
    }
    let mut devices: u64 = fleet
        .transitions
        .iter()
        .fold(0u64, |sum, t| sum.saturating_add(t.device_count));
    if fleet.devices_without_release > 0 {
        // Devices running no release download the whole target release.
        let each = fleet.devices_without_release_download_size;
        let total = each.map(|b| b.saturating_mul(fleet.devices_without_release));
        fleet_total = fleet_total.zip(total).map(|(a, b)| a.saturating_add(b));
        devices = devices.saturating_add(fleet.devices_without_release);
        let shown = |bytes: Option<u64>| bytes.map_or_else(|| "unknown".to_owned(), size);
        rows.push(vec![
            Cell::new("(none)"),
            Cell::new(target.id.to_string()),
            Cell::new(fleet.devices_without_release.to_string()),
            Cell::new("-"),
            Cell::new(shown(each)),
            Cell::new(shown(total)),
        ]);
    }
    let total = vec![
        Cell::new("total"),
        Cell::default(),
        Cell::new(devices.to_string()),
        Cell::default(),
        Cell::default(),
        Cell::new(fleet_total.map_or_else(|| "unknown".to_owned(), size)),
    ];
    if mixed {
        notes.push(
            "~ by image sizes: the registry could not tell these transitions' download".to_owned(),
        );
    }
    let summary = (!rows.is_empty()).then(|| Sheet {
        title: None,
        columns: vec![
            Col::Source,
            Col::Target,
            Col::Devices,
            Col::Status,
            Col::Download,
            Col::FleetTotal,
        ],
        rows,
        total,
        notes,
    });

    let transitions = fleet
        .transitions
        .iter()
        .map(|t| transition_sheet(&t.update, Some(t.device_count), commits))
        .collect();
    View {
        heading,
        summary,
        transitions,
        closing: fleet_closing(fleet),
    }
}

/// What the devices of a transition download in all: those with deltas
/// the figure shown, those without their pull figure.
fn transition_total(transition: &FleetTransition, figure: &DeviceDownload) -> Option<u64> {
    let without = transition
        .devices_without_deltas
        .min(transition.device_count);
    let with = figure
        .bytes?
        .saturating_mul(transition.device_count - without);
    if without == 0 || !figure.exact {
        return Some(with);
    }
    let pulls = transition
        .download_size_without_deltas?
        .saturating_mul(without);
    Some(with.saturating_add(pulls))
}

fn summary_row(
    transition: &FleetTransition,
    figure: &DeviceDownload,
    total: Option<u64>,
    mixed: bool,
    commits: &Commits,
) -> Vec<Cell> {
    let update = &transition.update;
    let source = &update.originates_from__release;
    let tilde = if mixed && !figure.exact { "~" } else { "" };
    let shown = |bytes: Option<u64>| {
        bytes.map_or_else(|| "unknown".to_owned(), |b| format!("{tilde}{}", size(b)))
    };
    vec![
        // On a narrow terminal the commit may go; the id stays.
        Cell {
            keep: source.id.to_string().len(),
            ..Cell::new(format!("{} ({})", source.id, commits.short(&source.commit)))
        },
        Cell::new(update.produces__release.id.to_string()),
        Cell::new(transition.device_count.to_string()),
        Cell::new(transition_status(update)),
        Cell::new(shown(figure.bytes)),
        Cell::new(shown(total)),
    ]
}

/// What one device updating now downloads for a transition: the registry's
/// exact figure when it told, else the figure from image sizes with the
/// services whose delta is not ready counted in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceDownload {
    pub bytes: Option<u64>,
    /// From the registry's manifests (not from image sizes).
    pub exact: bool,
}

impl DeviceDownload {
    /// The figure `--max-download` checks ([`crate::budget::download`]).
    pub fn of(info: &UpdateInfo) -> DeviceDownload {
        DeviceDownload {
            bytes: match budget::download(info) {
                budget::Download::Known(bytes) => Some(bytes),
                budget::Download::Unknown => None,
            },
            exact: info.estimated_download_size.is_some(),
        }
    }
}

fn fleet_closing(fleet: &FleetUpdateInfo) -> Vec<String> {
    // No transition and no device without a release: nothing to download,
    // and no figure to state that the JSON does not have.
    if fleet.transitions.is_empty() && fleet.devices_without_release == 0 {
        return Vec::new();
    }
    let estimate = match fleet.estimated_fleet_payload_size {
        Some(bytes) => size(bytes),
        // Deltas not ready count in full: they can only make it smaller.
        None => format!(
            "at most {} until every delta is ready",
            size(fleet_download_now(fleet))
        ),
    };
    let registry_asked =
        fleet.estimated_fleet_download_size.is_some() || fleet.download_size_unknown;
    if registry_asked {
        let exact = fleet
            .estimated_fleet_download_size
            .map_or_else(|| "unknown, the registry could not tell".to_owned(), size);
        vec![
            format!("fleet-wide download: {exact} (compressed, from the registry's manifests)"),
            format!("fleet-wide npm-compatible estimate: {estimate}"),
        ]
    } else {
        vec![format!("fleet-wide download: {estimate}")]
    }
}

/// Σ devices × what each downloads now, deltas not ready counted in full.
fn fleet_download_now(fleet: &FleetUpdateInfo) -> u64 {
    fleet.transitions.iter().fold(0u64, |sum, t| {
        sum.saturating_add(t.update.download_now().saturating_mul(t.device_count))
    })
}

fn transition_sheet(info: &UpdateInfo, devices: Option<u64>, commits: &Commits) -> Sheet {
    let devices = devices
        .map(|n| format!(", {}", count(n, "device")))
        .unwrap_or_default();
    let title = format!(
        "release {} ({}) to {} ({}){devices}: {}",
        info.originates_from__release.id,
        commits.short(&info.originates_from__release.commit),
        info.produces__release.id,
        commits.short(&info.produces__release.commit),
        transition_status(info),
    );

    // The registry's exact figure, when it was asked, leads in DOWNLOAD;
    // the npm tool's figure from image sizes moves to ESTIMATE.
    let exact = info.estimated_download_size.is_some() || info.download_size_unknown;
    let mut columns = vec![
        Col::Service,
        Col::Change,
        Col::Status,
        Col::From,
        Col::To,
        Col::Download,
    ];
    if exact {
        columns.push(Col::Estimate);
    }
    columns.push(Col::Saving);

    let mut rows = Vec::new();
    let mut footnotes = Vec::new();
    let mut size_unknown = info.payload_size_unknown;
    for service in &info.is_produced_by__service_update {
        let target = &service.produces__image;
        size_unknown |= target.size_unknown
            || target
                .is_produced_by__delta
                .as_ref()
                .is_some_and(|d| d.size_unknown);
        let download = service.download_now();
        let mut row = vec![
            service_cell(&service.service_name),
            Cell::new(service.change.to_string()),
            status_cell(service, &mut footnotes),
            Cell::new(
                service
                    .originates_from__image
                    .as_ref()
                    .map_or("-".into(), image_size),
            ),
            Cell::new(image_size(target)),
        ];
        if exact {
            row.push(Cell::new(bounded_size(
                service.download_size,
                service.download_size_is_upper_bound,
            )));
        }
        row.push(Cell::new(estimate_cell(service)));
        row.push(Cell::new(
            download.map_or("-".into(), |bytes| saving(bytes, target.image_size)),
        ));
        rows.push(row);
    }
    for removed in &info.removed_services {
        let mut row = vec![
            service_cell(&removed.service_name),
            Cell::new("removed"),
            Cell::new("-"),
            Cell::new(image_size(&removed.originates_from__image)),
            Cell::new("-"),
            Cell::new("-"),
        ];
        if exact {
            row.push(Cell::new("-"));
        }
        row.push(Cell::new("-"));
        rows.push(row);
    }

    let full = info.full_size();
    let payload_now = info.download_now();
    let mut total = vec![
        Cell::new("total"),
        Cell::default(),
        Cell::default(),
        Cell::default(),
        Cell::new(size(full)),
    ];
    if exact {
        total.push(Cell::new(bounded_size(
            info.estimated_download_size,
            info.download_size_is_upper_bound,
        )));
    }
    total.push(Cell::new(size(payload_now)));
    total.push(Cell::new(saving(payload_now, full)));

    let mut notes = footnotes;
    if size_unknown {
        notes.push(
            "some sizes are unknown to the API and count as 0: the download is larger than shown"
                .to_owned(),
        );
    }
    if exact {
        notes.push(match info.estimated_download_size {
            Some(bytes) if info.download_size_is_upper_bound => format!(
                "download per device: at most {} (DOWNLOAD; ≤: a delta not ready yet, counted as \
                 the pull: a device updating now waits for it to be built and downloads it \
                 instead)",
                size(bytes)
            ),
            Some(bytes) => format!(
                "download per device: {} (DOWNLOAD: compressed layers, manifests and configs, \
                 from the registry's manifests)",
                size(bytes)
            ),
            None => {
                "download per device: unknown, the registry could not tell (-v says why)".to_owned()
            }
        });
    }
    let by = if exact {
        "by image sizes (ESTIMATE), "
    } else {
        ""
    };
    notes.push(match info.estimated_total_payload_size {
        Some(bytes) if exact => format!(
            "npm-compatible estimate (ESTIMATE, from image sizes) per device: {} instead of {} \
             in full",
            size(bytes),
            size(full)
        ),
        Some(bytes) => format!(
            "estimated download per device: {} instead of {} in full",
            size(bytes),
            size(full)
        ),
        None => format!(
            "not ready: {by}a device updating now downloads about {} (deltas not ready count in \
             full, in parentheses)",
            size(payload_now)
        ),
    });
    Sheet {
        title: Some(title),
        columns,
        rows,
        total,
        notes,
    }
}

/// Names may be cut to their first 6 characters when space is short.
fn service_cell(name: &str) -> Cell {
    let mut cell = Cell::new(name);
    cell.keep = cell.keep.min(6);
    cell
}

/// The service's status; a failed or refused delta shows as such with the
/// server's reason (cut to fit) and a footnote holding the whole text, and
/// a service pulled whole by its strategy with a footnote saying so.
fn status_cell(service: &ServiceUpdate, footnotes: &mut Vec<String>) -> Cell {
    let name = &service.service_name;
    let Some(failure) = &service.delta_failure else {
        let cell = Cell::new(service.status.to_string());
        if !service.pulled_whole_by_strategy() {
            return cell;
        }
        let note = format!(
            "{name}: labelled {}: devices delete the old image first and download the new one \
             whole, so no delta is asked for",
            UpdateStrategy::DeleteThenDownload.as_str()
        );
        return Cell {
            mark: footnote(footnotes, note),
            ..cell
        };
    };
    let reason = failure
        .error_message
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty());
    let (word, note) = match failure.http_status {
        Some(status) => (
            "refused",
            format!(
                "the delta server refused the delta (HTTP {status}); devices download the whole \
                 image"
            ),
        ),
        None if failure.attempts > 0 => (
            "failed",
            format!(
                "the delta build failed (asked for {})",
                count(u64::from(failure.attempts), "time")
            ),
        ),
        None => ("failed", "the delta build failed".to_owned()),
    };
    let note = match reason {
        Some(reason) => format!("{name}: {note}: {reason}"),
        None => format!("{name}: {note}; the server gave no reason"),
    };
    let text = match reason {
        Some(reason) => format!("{word}: {reason}"),
        None => word.to_owned(),
    };
    Cell {
        text,
        keep: word.len(),
        mark: footnote(footnotes, note),
    }
}

/// Adds `note` as the next numbered footnote; returns the mark that cites it.
fn footnote(footnotes: &mut Vec<String>, note: String) -> String {
    let number = footnotes.len() + 1;
    footnotes.push(format!("[{number}] {note}"));
    format!(" [{number}]")
}

/// The npm-compatible figure: a ready delta, the whole image of a new
/// service or of one pulled whole by its strategy, or the whole image in
/// parentheses while its delta is not ready.
fn estimate_cell(service: &ServiceUpdate) -> String {
    let target = &service.produces__image;
    match (service.download_now(), &target.is_produced_by__delta) {
        (None, _) => format!("({})", image_size(target)),
        (Some(_), Some(delta)) if delta.size_unknown => "unknown".into(),
        (Some(_), None) if service.change != Change::Unchanged => image_size(target),
        (Some(bytes), _) => size(bytes),
    }
}

/// A registry figure, marked `≤` when it is an upper bound.
fn bounded_size(bytes: Option<u64>, upper_bound: bool) -> String {
    match bytes {
        Some(bytes) if upper_bound => format!("≤ {}", size(bytes)),
        Some(bytes) => size(bytes),
        None => "unknown".into(),
    }
}

fn image_size(image: &ImageInfo) -> String {
    if image.size_unknown {
        "unknown".into()
    } else {
        size(image.image_size)
    }
}
