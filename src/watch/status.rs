//! `--watch`'s one-line status on a terminal: between two event lines it
//! says, redrawn every second, what the watch is doing (waiting for the
//! next poll, preparing a release, or riding out a fault) and how to stop,
//! so that a quiet watch never looks dead. It is erased before each line
//! the watch writes and drawn again after it.
//!
//! The wording is pure ([`Status::text`], tested with fixed times); the
//! watch feeds it the library's events and redraws it from a ticker.

use balena_release::{Event, Report, Status as DeltaStatus};
use tokio::time::Instant;

use crate::printer::{Printer, printable};
use crate::progress::{clip, clock, rows_taken, spinner, terminal_columns, whole_seconds_up};
use crate::wording::count;

/// What the watch is doing, as the events tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Doing {
    /// Starting: the first poll has not answered yet.
    Starting,
    /// Waiting for a new release; the next poll is due at this instant
    /// once a poll has said when.
    Waiting { next_poll: Option<Instant> },
    /// Preparing a release: its id, transitions ready of all, and the
    /// next read of its state when one is scheduled.
    Preparing {
        release: u64,
        ready: usize,
        transitions: usize,
        next_check: Option<Instant>,
    },
}

/// The status line's state.
pub struct Status {
    fleet: String,
    started: Instant,
    doing: Doing,
    polls: u64,
    /// Since when the servers fail to answer, while they do.
    failing_since: Option<Instant>,
    /// The characters of the line on screen; `None` when nothing is drawn.
    drawn: Option<usize>,
    printer: Printer,
}

impl Status {
    pub fn new(fleet: &str, printer: Printer, started: Instant) -> Status {
        Status {
            fleet: printable(fleet).into_owned(),
            started,
            doing: Doing::Starting,
            polls: 0,
            failing_since: None,
            drawn: None,
            printer,
        }
    }

    /// Takes in an event that happened at `now`.
    pub fn event(&mut self, event: &Event, now: Instant) {
        match event {
            Event::WatchIdle { polls, next_poll } => {
                self.polls = *polls;
                // While a release is prepared, the watch also polls for a
                // newer one: the preparation is what the line is about.
                if !matches!(self.doing, Doing::Preparing { .. }) {
                    self.doing = Doing::Waiting {
                        next_poll: Some(now + *next_poll),
                    };
                }
            }
            Event::WatchReleaseSeen {
                release,
                transitions,
                ..
            } => {
                self.doing = Doing::Preparing {
                    release: release.id,
                    ready: 0,
                    transitions: *transitions,
                    next_check: None,
                };
            }
            Event::Round { report, .. } => {
                if let (
                    Doing::Preparing {
                        ready, next_check, ..
                    },
                    Report::Fleet(fleet),
                ) = (&mut self.doing, &**report)
                {
                    *ready = fleet
                        .transitions
                        .iter()
                        .filter(|t| t.update.overall_status == DeltaStatus::Ready)
                        .count();
                    *next_check = None;
                }
            }
            Event::Sleeping { for_ } => {
                if let Doing::Preparing { next_check, .. } = &mut self.doing {
                    *next_check = Some(now + *for_);
                }
            }
            // A preparation ends: done, superseded by a flap, or left.
            Event::WatchPrepared { .. }
            | Event::WatchFlapping { .. }
            | Event::WatchReleaseFailed { .. } => {
                self.doing = Doing::Waiting { next_poll: None };
            }
            Event::WatchRetrying { .. } => {
                self.failing_since.get_or_insert(now);
            }
            Event::WatchRecovered { .. } => self.failing_since = None,
            _ => {}
        }
    }

    /// The line at `now` for a terminal `columns` wide: what the watch
    /// does, then how to stop when that fits too; cut to fit.
    pub fn text(&self, now: Instant, columns: usize) -> String {
        let spinner = spinner(now.saturating_duration_since(self.started));
        let left = |at: Instant| clock(whole_seconds_up(at.saturating_duration_since(now)));
        let fleet = &self.fleet;
        let doing = if let Some(since) = self.failing_since {
            format!(
                "watching {fleet}: the servers have not answered for {}, trying again",
                clock(now.saturating_duration_since(since))
            )
        } else {
            match &self.doing {
                Doing::Starting => format!("watching {fleet}: reading the fleet"),
                Doing::Waiting { next_poll } => {
                    let mut text = format!("watching {fleet}: waiting for a new release");
                    if self.polls > 0 {
                        text.push_str(&format!(", {}", count(self.polls, "poll")));
                    }
                    if let Some(at) = next_poll {
                        text.push_str(&format!(", next in {}", left(*at)));
                    }
                    text
                }
                Doing::Preparing {
                    release,
                    ready,
                    transitions,
                    next_check,
                } => {
                    let mut text = format!(
                        "preparing {release} for {fleet}: {ready} of {} ready",
                        count(*transitions as u64, "transition")
                    );
                    if let Some(at) = next_check {
                        text.push_str(&format!(", next check in {}", left(*at)));
                    }
                    text
                }
            }
        };
        let whole = format!("{spinner} {doing}; Ctrl+C to stop");
        if whole.chars().count() < columns {
            whole
        } else {
            clip(&format!("{spinner} {doing}"), columns)
        }
    }

    /// Draws the line in place of the one on screen.
    pub fn draw(&mut self) {
        let columns = terminal_columns();
        let line = self.text(Instant::now(), columns);
        let frame = format!("{}{line}", self.erasure(columns));
        self.drawn = Some(line.chars().count());
        self.printer.progress(&frame);
    }

    /// Erases the line, so that the next write starts on a clean line.
    pub fn erase(&mut self) {
        if self.drawn.is_some() {
            let erasure = self.erasure(terminal_columns());
            self.drawn = None;
            self.printer.progress(&erasure);
        }
    }

    /// Back to the start of the line drawn, however many rows it takes
    /// now (a narrowed terminal may have wrapped it), and clear to the
    /// end of the screen.
    fn erasure(&self, columns: usize) -> String {
        match self.drawn {
            None => String::new(),
            Some(width) => match rows_taken(&[width], columns) {
                1 => "\r\x1b[J".to_owned(),
                rows => format!("\r\x1b[{}A\x1b[J", rows - 1),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use balena_release::{ReleaseSummary, WatchReason};

    use super::*;

    fn printer() -> Printer {
        Printer::new(true, 0, false, false, false, false)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn it_says_what_the_watch_waits_for_and_counts_down() {
        let t0 = Instant::now();
        let mut status = Status::new("gh_demo/kiosk-fleet", printer(), t0);
        assert_eq!(
            status.text(t0, 80),
            "- watching gh_demo/kiosk-fleet: reading the fleet; Ctrl+C to stop"
        );
        let idle = Event::WatchIdle {
            polls: 3,
            next_poll: Duration::from_millis(4_500),
        };
        status.event(&idle, t0 + secs(61));
        // The seconds begun: 3.5 s left reads 0:04. The stop hint gives way
        // first, then the line is cut.
        let waiting =
            "| watching gh_demo/kiosk-fleet: waiting for a new release, 3 polls, next in 0:04";
        assert_eq!(
            status.text(t0 + secs(62), 120),
            format!("{waiting}; Ctrl+C to stop")
        );
        assert_eq!(status.text(t0 + secs(62), 90), waiting);
        assert_eq!(
            status.text(t0 + secs(62), 40),
            "| watching gh_demo/kiosk-fleet: waitin…"
        );
        // The servers fail: said until they answer again.
        let retrying = Event::WatchRetrying {
            what: "reading the fleet".into(),
            reason: "status 503".into(),
            pause: secs(1),
        };
        status.event(&retrying, t0 + secs(70));
        status.event(&retrying, t0 + secs(75));
        assert_eq!(
            status.text(t0 + secs(100), 120),
            "- watching gh_demo/kiosk-fleet: the servers have not answered for 0:30, trying \
             again; Ctrl+C to stop"
        );
        status.event(&Event::WatchRecovered { failures: 2 }, t0 + secs(101));
        assert!(
            status
                .text(t0 + secs(101), 120)
                .contains(": waiting for a new release, 3 polls")
        );
    }

    #[test]
    fn a_preparation_shows_the_release_its_transitions_ready_and_the_next_check() {
        let t0 = Instant::now();
        let mut status = Status::new("1952390", printer(), t0);
        let release = ReleaseSummary {
            id: 900871,
            commit: "b2cf2db7e8a1d3c5".into(),
        };
        status.event(
            &Event::WatchReleaseSeen {
                release: release.clone(),
                reason: WatchReason::NewRelease,
                transitions: 2,
                devices: 3,
            },
            t0 + secs(5),
        );
        assert_eq!(
            status.text(t0 + secs(5), 80),
            "\\ preparing 900871 for 1952390: 0 of 2 transitions ready; Ctrl+C to stop"
        );
        // The first transition is ready; a poll for a newer release
        // does not hide the preparation.
        status.event(&crate::progress::tests::fleet_round(2), t0 + secs(6));
        status.event(&Event::Sleeping { for_: secs(3) }, t0 + secs(6));
        status.event(
            &Event::WatchIdle {
                polls: 1,
                next_poll: secs(15),
            },
            t0 + secs(6),
        );
        assert_eq!(
            status.text(t0 + secs(7), 80),
            "/ preparing 900871 for 1952390: 1 of 2 transitions ready, next check in 0:02"
        );
        status.event(
            &Event::WatchPrepared {
                release,
                transitions: 2,
                ready: 2,
                failed: 0,
            },
            t0 + secs(9),
        );
        assert_eq!(
            status.text(t0 + secs(9), 80),
            "\\ watching 1952390: waiting for a new release, 1 poll; Ctrl+C to stop"
        );
    }

    #[test]
    fn the_line_is_erased_over_the_rows_it_takes() {
        let mut status = Status::new("f", printer(), Instant::now());
        assert_eq!(status.erasure(80), "");
        status.drawn = Some(79);
        assert_eq!(status.erasure(80), "\r\x1b[J");
        // The terminal narrowed to 40 columns: the line wrapped on 2 rows.
        assert_eq!(status.erasure(40), "\r\x1b[1A\x1b[J");
    }
}
