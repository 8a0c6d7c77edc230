//! The live progress block redrawn on stderr while preparing and waiting,
//! fitted to the terminal's width and height; also the source of the `-v`
//! log lines when stderr is not a terminal.

use std::fmt::Write as _;
use std::time::Duration;

use balena_release::{Event, FleetUpdateInfo, Report, Status, UpdateInfo};
use tokio::time::Instant;

use crate::printer::{Printer, printable};

/// The block of lines redrawn on stderr while preparing and waiting; also the
/// source of `-v` log lines when stderr is not a terminal.
pub struct Progress {
    printer: Printer,
    started: Instant,
    deadline: Option<Instant>,
    lines_drawn: usize,
    services: Vec<(String, String)>,
    note: String,
}

impl Progress {
    pub fn new(printer: Printer, started: Instant, deadline: Option<Instant>) -> Progress {
        Progress {
            printer,
            started,
            deadline,
            lines_drawn: 0,
            services: Vec::new(),
            note: String::new(),
        }
    }

    pub fn event(&mut self, event: &Event) {
        match event {
            Event::Round { report, .. } => match &**report {
                Report::Transition(info) => self.transition_round(info),
                Report::Fleet(info) => self.fleet_round(info),
            },
            Event::Triggered {
                service_name,
                source_image,
                target_image,
                outcome,
            } => {
                self.note = format!("triggered the delta for {service_name}");
                tracing::info!(service = %service_name, source_image, target_image, ?outcome, "delta triggered");
            }
            Event::Sleeping { for_ } => {
                self.note = format!("next check in {}", clock(*for_));
                tracing::debug!(
                    seconds = for_.as_secs_f64(),
                    "sleeping before the next check"
                );
            }
            Event::Retrying {
                what,
                attempt,
                delay,
                reason,
            } => {
                self.note = format!("retrying {what} (attempt {attempt}): {reason}");
                tracing::info!(%what, attempt, delay_ms = delay.as_millis() as u64, %reason, "retrying");
            }
            _ => {}
        }
        self.redraw();
    }

    fn transition_round(&mut self, info: &UpdateInfo) {
        self.services = info
            .is_produced_by__service_update
            .iter()
            .map(|service| {
                let mut state = format!("{:<9} {}", service.change, service.status);
                if let Some(failure) = &service.delta_failure {
                    let _ = write!(
                        state,
                        " (delta failed: {})",
                        failure.error_message.as_deref().unwrap_or("no message")
                    );
                }
                (
                    printable(&service.service_name).into_owned(),
                    printable(&state).into_owned(),
                )
            })
            .collect();
        tracing::info!(status = %info.overall_status, "status read");
    }

    fn fleet_round(&mut self, info: &FleetUpdateInfo) {
        let mut transitions: Vec<_> = info.transitions.iter().collect();
        // Unfinished transitions first: they are what the wait is for.
        transitions.sort_by_key(|t| t.update.overall_status == Status::Ready);
        self.services = transitions
            .into_iter()
            .map(|transition| {
                let update = &transition.update;
                let services = &update.is_produced_by__service_update;
                let ready = services
                    .iter()
                    .filter(|s| s.status == Status::Ready)
                    .count();
                (
                    format!(
                        "{} to {}",
                        update.originates_from__release.id, update.produces__release.id
                    ),
                    format!(
                        "{:<9} {ready} of {} services ready, {}",
                        update.overall_status,
                        services.len(),
                        crate::render::count(transition.device_count, "device")
                    ),
                )
            })
            .collect();
        tracing::info!(
            status = %info.overall_status,
            "fleet status read"
        );
    }

    /// Removes the block so the result and errors start on a clean line.
    pub fn finish(&mut self) {
        if self.lines_drawn > 0 {
            self.printer
                .progress(&format!("\x1b[{}F\x1b[J", self.lines_drawn));
            self.lines_drawn = 0;
        }
    }

    fn redraw(&mut self) {
        if !self.printer.live {
            return;
        }
        // Measured at every redraw: the terminal may be resized meanwhile.
        let (columns, rows) = terminal_size::terminal_size_of(std::io::stderr())
            .map_or((80, 24), |(w, h)| (usize::from(w.0), usize::from(h.0)));
        let remaining = self
            .deadline
            .map(|deadline| deadline.saturating_duration_since(Instant::now()));
        let mut block = String::new();
        if self.lines_drawn > 0 {
            let _ = write!(block, "\x1b[{}F\x1b[J", self.lines_drawn);
        }
        let lines = self.block(columns, rows, self.started.elapsed(), remaining);
        self.lines_drawn = lines.len();
        for line in lines {
            block.push_str(&line);
            block.push('\n');
        }
        self.printer.progress(&block);
    }

    /// The lines of the block for a terminal of `columns` x `rows`, `elapsed`
    /// into the run with `remaining` left before the deadline.
    pub fn block(
        &self,
        columns: usize,
        rows: usize,
        elapsed: Duration,
        remaining: Option<Duration>,
    ) -> Vec<String> {
        let deadline = remaining
            .map(|left| format!(", deadline in {}", clock(left)))
            .unwrap_or_default();
        let (bold, reset) = if self.printer.color {
            ("\x1b[1m", "\x1b[0m")
        } else {
            ("", "")
        };
        let header = format!(
            "preparing {} elapsed{deadline}  {}",
            clock(elapsed),
            printable(&self.note)
        );
        let header = clip(&header, columns);
        let mut lines = vec![header.replacen("preparing", &format!("{bold}preparing{reset}"), 1)];
        let width = self
            .services
            .iter()
            .map(|(name, _)| name.chars().count())
            .max()
            .unwrap_or(0);
        // A block taller than the screen cannot be redrawn in place.
        let max_rows = 12.min(rows.saturating_sub(3)).max(1);
        let shown = if self.services.len() > max_rows {
            max_rows - 1
        } else {
            self.services.len()
        };
        for (name, state) in &self.services[..shown] {
            lines.push(clip(&format!("  {name:<width$}  {state}"), columns));
        }
        let hidden = self.services.len() - shown;
        if hidden > 0 {
            lines.push(format!("  … and {hidden} more"));
        }
        lines
    }
}

/// Progress lines are redrawn by moving the cursor up one row per line, so
/// none may wrap: cut them to fit `columns` (one cell per character, which
/// holds for the ASCII this block is made of).
fn clip(line: &str, columns: usize) -> String {
    let width = columns.saturating_sub(1).max(2);
    if line.chars().count() <= width {
        return line.to_owned();
    }
    let mut cut: String = line.chars().take(width - 1).collect();
    cut.push('…');
    cut
}

/// `m:ss` for progress lines.
fn clock(duration: Duration) -> String {
    let seconds = duration.as_secs();
    format!("{}:{:02}", seconds / 60, seconds % 60)
}

#[cfg(test)]
mod tests {
    use balena_release::{FleetTransition, FleetUpdateInfo, UpdateInfo};

    use super::*;

    #[test]
    fn clock_and_clip() {
        assert_eq!(clock(Duration::from_secs(125)), "2:05");
        assert_eq!(clip("short", 80), "short");
        assert_eq!(clip("0123456789", 6), "0123…");
        assert_eq!(clip("0123456789", 0), "0…");
        let long = clip(&"é".repeat(200), 80);
        assert_eq!(long.chars().count(), 79);
        assert!(long.ends_with('…'));
    }

    /// An update of `count` services from release `from`: new, changed
    /// (preparing or pending) and unchanged; one with a failed delta.
    fn update(count: usize, from: u64) -> UpdateInfo {
        let image = |id: usize, size: u64| {
            serde_json::json!({
                "id": id,
                "is_stored_at__image_location": format!("registry/{id}"),
                "content_hash": format!("sha256:{id}"),
                "image_size": size,
            })
        };
        let services: Vec<_> = (0..count)
            .map(|i| {
                let (change, status) = match i % 4 {
                    0 => ("new", "ready"),
                    1 => ("changed", "preparing"),
                    2 => ("unchanged", "ready"),
                    _ => ("changed", "pending"),
                };
                let mut service = serde_json::json!({
                    "service_name": format!("service-{i:02}"),
                    "status": status,
                    "produces__image": image(1000 + i, 10_000_000 * (i as u64 + 1)),
                    "change": change,
                });
                if change != "new" {
                    service["originates_from__image"] = image(2000 + i, 9_000_000);
                }
                if i == 3 {
                    service["delta_failure"] =
                        serde_json::json!({ "error_message": "out of disk", "attempts": 1 });
                }
                service
            })
            .collect();
        let status = if count > 1 { "pending" } else { "ready" };
        serde_json::from_value(serde_json::json!({
            "originates_from__release": { "id": from, "commit": "a".repeat(32) },
            "produces__release": { "id": 900, "commit": "b".repeat(32) },
            "is_produced_by__service_update": services,
            "overall_status": status,
        }))
        .expect("a valid update")
    }

    fn round(count: usize) -> Event {
        Event::Round {
            report: std::sync::Arc::new(Report::Transition(update(count, 800))),
            attempt: 3,
        }
    }

    /// A fleet whose devices run `transitions` releases (801, 802, …); the
    /// first transition is ready.
    fn fleet_round(transitions: u64) -> Event {
        let transitions: Vec<_> = (1..=transitions)
            .map(|n| FleetTransition {
                device_count: n * 10,
                update: update(if n == 1 { 1 } else { 4 }, 800 + n),
            })
            .collect();
        let info: FleetUpdateInfo = serde_json::from_value(serde_json::json!({
            "application": { "id": 7, "slug": "org/fleet" },
            "produces__release": { "id": 900, "commit": "b".repeat(32) },
            "transitions": serde_json::to_value(transitions).unwrap(),
            "overall_status": "pending",
        }))
        .expect("a valid fleet update");
        Event::Round {
            report: std::sync::Arc::new(Report::Fleet(info)),
            attempt: 1,
        }
    }

    fn live_progress(events: &[Event]) -> Progress {
        let printer = Printer {
            quiet: false,
            // Not live: the events must not draw on the test's stderr.
            live: false,
            color: false,
        };
        let mut progress = Progress::new(printer, Instant::now(), None);
        for event in events {
            progress.event(event);
        }
        progress
    }

    /// The block as a terminal of `columns` x `rows` shows it.
    fn screen(progress: &Progress, columns: usize, rows: usize) -> String {
        let lines = progress.block(
            columns,
            rows,
            Duration::from_secs(95),
            Some(Duration::from_secs(505)),
        );
        assert!(
            lines.len() < rows.max(2),
            "{} lines on a screen of {rows}",
            lines.len()
        );
        for line in &lines {
            assert!(line.chars().count() < columns.max(3), "wraps: {line}");
        }
        lines.join("\n")
    }

    #[test]
    fn progress_block_fits_the_terminal() {
        let events = [
            round(5),
            Event::Sleeping {
                for_: Duration::from_secs(3),
            },
        ];
        let progress = live_progress(&events);
        insta::assert_snapshot!("progress_5_services_80x24", screen(&progress, 80, 24));

        let progress = live_progress(&[round(15)]);
        insta::assert_snapshot!("progress_15_services_100x40", screen(&progress, 100, 40));
        insta::assert_snapshot!("progress_15_services_40x8", screen(&progress, 40, 8));
        insta::assert_snapshot!("progress_15_services_30x3", screen(&progress, 30, 3));

        let trigger = Event::Triggered {
            service_name: "service-03".into(),
            source_image: 2003,
            target_image: 1003,
            outcome: balena_release::TriggerOutcome::Accepted,
        };
        let progress = live_progress(&[fleet_round(14), trigger]);
        insta::assert_snapshot!(
            "progress_fleet_14_transitions_80x24",
            screen(&progress, 80, 24)
        );
        insta::assert_snapshot!(
            "progress_fleet_14_transitions_80x10",
            screen(&progress, 80, 10)
        );
    }

    #[test]
    fn server_text_is_shown_escaped() {
        let hostile = "x\u{1b}]0;title\u{202e}\u{85}\u{9b}2J\u{7f}";
        let mut info = update(4, 800);
        info.is_produced_by__service_update[0].service_name = hostile.into();
        if let Some(failure) = &mut info.is_produced_by__service_update[3].delta_failure {
            failure.error_message = Some(hostile.into());
        }
        let events = [
            Event::Round {
                report: std::sync::Arc::new(Report::Transition(info)),
                attempt: 1,
            },
            Event::Retrying {
                what: "release".into(),
                attempt: 1,
                delay: Duration::from_millis(20),
                reason: hostile.into(),
            },
        ];
        let progress = live_progress(&events);
        let text = screen(&progress, 200, 24);
        assert!(
            !text
                .chars()
                .any(|c| c != '\n' && crate::printer::must_escape(c)),
            "{}",
            text.escape_debug()
        );
        assert!(
            text.contains(r"x\u{1b}]0;title\u{202e}\u{85}\u{9b}2J\u{7f}"),
            "{text}"
        );
    }
}
