//! What stderr shows while the tool works, so that a run never looks frozen:
//! on a terminal, a live block redrawn in place every second (elapsed time,
//! a countdown to the next check, a spinner, how to stop), fitted to the
//! terminal's width and height; on `TERM=dumb` or without a terminal, plain
//! status lines, paced so that a 24-hour wait in CI neither floods the log
//! nor goes silent. The `-v` log lines of events come from here too.
//!
//! The shaping is pure (`Progress::block`, `Pacer`, `rows_taken`,
//! `retry_text`) and tested with fixed times; `run::execute` drives it from
//! a one-second ticker and the library's events.

use std::fmt::Write as _;
use std::time::Duration;

use std::sync::Arc;

use balena_release::{
    Event, FleetUpdateInfo, PrepareOptions, Report, ServiceUpdate, Status, UpdateInfo,
};
use tokio::time::Instant;

use crate::printer::{Printer, printable};

/// What the run does, named in the block's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Reads the state once (nothing is built on the run's behalf).
    Describe,
    /// Requests the missing deltas.
    Prepare,
    /// Requests them and waits until they are ready.
    Wait,
}

/// The minimum gap between two plain status lines (without a terminal);
/// while nothing changes, the state is repeated every `HEARTBEAT_GAPS`
/// gaps (a minute).
pub const STATUS_GAP: Duration = Duration::from_secs(10);
const HEARTBEAT_GAPS: u32 = 6;

/// The times a frame of the block shows, measured by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moment {
    /// Since the run started.
    pub elapsed: Duration,
    /// Until the deadline, when there is one.
    pub remaining: Option<Duration>,
    /// Until the next check of the server, while sleeping before it.
    pub next_check: Option<Duration>,
    /// Until the retry announced, while pausing before it.
    pub retry_in: Option<Duration>,
}

/// The block of lines redrawn on stderr while preparing and waiting, or the
/// plain status lines that replace it; also the source of `-v` log lines.
pub struct Progress {
    printer: Printer,
    task: Task,
    started: Instant,
    deadline: Option<Instant>,
    /// One row per service (or per fleet transition): name and state.
    services: Vec<(String, String)>,
    /// The state in one line, for plain status lines.
    summary: Option<String>,
    /// The latest trigger or retry, under the header.
    note: String,
    /// Whether `note` announces a retry (which a new state read ends).
    note_is_retry: bool,
    /// The retry announced (what, retry number, reason) and when it is sent.
    retry: Option<(String, u32, String, Instant)>,
    next_check: Option<Instant>,
    /// Something happened that the block shows.
    anything: bool,
    /// The character counts of the lines on screen, and the width they were
    /// drawn at.
    drawn: Vec<usize>,
    pacer: Pacer,
    /// How many times a delta is asked for before it is given up on.
    max_attempts: u32,
    /// The deltas triggered so far (source and target image) and how many
    /// times each.
    triggered: Vec<((u64, u64), u32)>,
    /// The last state read, to name the transitions of triggered deltas.
    last: Option<Arc<Report>>,
}

impl Progress {
    /// `status_gap`: the minimum gap between plain status lines
    /// (`STATUS_GAP` but in tests).
    pub fn new(
        printer: Printer,
        task: Task,
        started: Instant,
        deadline: Option<Instant>,
        status_gap: Duration,
    ) -> Progress {
        Progress {
            printer,
            task,
            started,
            deadline,
            services: Vec::new(),
            summary: None,
            note: String::new(),
            note_is_retry: false,
            retry: None,
            next_check: None,
            anything: false,
            drawn: Vec::new(),
            pacer: Pacer::new(status_gap),
            max_attempts: PrepareOptions::default().max_attempts_per_delta.max(1),
            triggered: Vec::new(),
            last: None,
        }
    }

    /// How often `tick` should run: every second for the live block (the
    /// clock and spinner move), often enough for plain lines to leave on
    /// time, never when nothing is shown.
    pub fn tick_period(&self) -> Option<Duration> {
        if self.printer.live {
            Some(Duration::from_secs(1))
        } else if self.printer.lines {
            Some((self.pacer.gap / 4).clamp(Duration::from_millis(10), Duration::from_secs(1)))
        } else {
            None
        }
    }

    pub fn event(&mut self, event: &Event) {
        let Some(urgent) = self.apply(event) else {
            return;
        };
        if self.printer.live {
            self.redraw();
        } else if self.printer.lines {
            let at = self.started.elapsed();
            if let Some(line) = self.offer_line(at, urgent) {
                self.status_line(at, &line);
            }
        }
    }

    /// Takes in what `event` says; `None` when it changes nothing shown,
    /// else whether it is urgent (a retry, announced at once).
    fn apply(&mut self, event: &Event) -> Option<bool> {
        let mut urgent = false;
        match event {
            Event::Round { report, .. } => {
                self.last = Some(Arc::clone(report));
                match &**report {
                    Report::Transition(info) => self.transition_round(info),
                    Report::Fleet(info) => self.fleet_round(info),
                }
                if self.note_is_retry {
                    self.note.clear();
                    self.note_is_retry = false;
                }
            }
            Event::Triggered {
                service_name,
                source_image,
                target_image,
                outcome,
            } => {
                let pair = (*source_image, *target_image);
                match self.triggered.iter_mut().find(|(p, _)| *p == pair) {
                    Some((_, times)) => *times += 1,
                    None => self.triggered.push((pair, 1)),
                }
                self.note = self.triggered_note(service_name);
                self.note_is_retry = false;
                tracing::info!(
                    service = %service_name,
                    source_image,
                    target_image,
                    answer = %trigger_answer(outcome),
                    "delta triggered"
                );
            }
            Event::Sleeping { for_ } => {
                self.next_check = Some(Instant::now() + *for_);
                tracing::debug!(
                    seconds = %format_args!("{:.3}", for_.as_secs_f64()),
                    "sleeping before the next check"
                );
            }
            Event::Retrying {
                what,
                attempt,
                delay,
                reason,
            } => {
                self.note = retry_text(what, *attempt, *delay, reason);
                self.note_is_retry = true;
                self.retry = Some((
                    what.clone(),
                    *attempt,
                    reason.clone(),
                    Instant::now() + *delay,
                ));
                urgent = true;
                tracing::info!(%what, attempt, delay_ms = delay.as_millis() as u64, %reason, "retrying");
            }
            _ => return None,
        }
        self.anything = true;
        Some(urgent)
    }

    /// The plain status line to send at `at` after an event, if the pace
    /// allows one: the retry just announced, or the state.
    fn offer_line(&mut self, at: Duration, urgent: bool) -> Option<String> {
        let text = if urgent {
            self.note.clone()
        } else {
            self.summary.clone()?
        };
        self.pacer.offer(at, text, urgent)
    }

    /// Called every `tick_period`: moves the live block's clock and
    /// spinner, or sends a plain status line that is due.
    pub fn tick(&mut self) {
        if self.printer.live {
            // Something to say after a second even before the first answer.
            if self.anything || self.started.elapsed() >= Duration::from_secs(1) {
                self.redraw();
            }
        } else if self.printer.lines {
            let at = self.started.elapsed();
            if let Some(line) = self.pacer.tick(at) {
                self.status_line(at, &line);
            }
        }
    }

    fn status_line(&self, at: Duration, text: &str) {
        self.printer
            .progress(&format!("{}\n", status_line(at, text)));
    }

    fn transition_round(&mut self, info: &UpdateInfo) {
        let services = &info.is_produced_by__service_update;
        let mut rows: Vec<&ServiceUpdate> = services.iter().collect();
        // Unfinished services first: they are what the wait is for, and a
        // capped block must not hide them.
        rows.sort_by_key(|service| service.status == Status::Ready);
        self.services = rows
            .iter()
            .map(|service| {
                let state = format!("{:<9} {}", service.change, self.service_state(service));
                (
                    printable(&service.service_name).into_owned(),
                    printable(&state).into_owned(),
                )
            })
            .collect();
        let ready = services
            .iter()
            .filter(|s| s.status == Status::Ready)
            .count();
        let waiting: Vec<String> = rows
            .iter()
            .filter(|s| s.status != Status::Ready)
            .map(|s| format!("{}: {}", printable(&s.service_name), self.service_state(s)))
            .collect();
        self.summary = Some(summary(
            &self.transition_word(info),
            ready,
            services.len(),
            "service",
            &waiting,
        ));
        tracing::info!(status = %info.overall_status, "status read");
    }

    fn fleet_round(&mut self, info: &FleetUpdateInfo) {
        let mut transitions: Vec<_> = info.transitions.iter().collect();
        // Unfinished transitions first: they are what the wait is for.
        transitions.sort_by_key(|t| t.update.overall_status == Status::Ready);
        let name = |update: &UpdateInfo| {
            format!(
                "{} to {}",
                update.originates_from__release.id, update.produces__release.id
            )
        };
        self.services = transitions
            .iter()
            .map(|transition| {
                let update = &transition.update;
                let services = &update.is_produced_by__service_update;
                let ready = services
                    .iter()
                    .filter(|s| s.status == Status::Ready)
                    .count();
                (
                    name(update),
                    format!(
                        "{:<9} {ready} of {} services ready, {}",
                        self.transition_word(update),
                        services.len(),
                        crate::wording::count(transition.device_count, "device")
                    ),
                )
            })
            .collect();
        let ready = transitions
            .iter()
            .filter(|t| t.update.overall_status == Status::Ready)
            .count();
        let waiting: Vec<String> = transitions
            .iter()
            .filter(|t| t.update.overall_status != Status::Ready)
            .map(|t| format!("{}: {}", name(&t.update), self.transition_word(&t.update)))
            .collect();
        let words: Vec<&str> = info
            .transitions
            .iter()
            .filter_map(|t| self.given_up_word(&t.update))
            .collect();
        let word = if words.contains(&"failed") {
            "failed".to_owned()
        } else if let Some(word) = words.first() {
            (*word).to_owned()
        } else {
            info.overall_status.to_string()
        };
        self.summary = Some(summary(
            &word,
            ready,
            transitions.len(),
            "transition",
            &waiting,
        ));
        tracing::info!(
            status = %info.overall_status,
            "fleet status read"
        );
    }

    /// Whether the delta of `service` is given up on: refused, or failed
    /// when no more attempts follow (every attempt made while waiting; a
    /// describe or a prepare asks no more).
    fn given_up(&self, service: &ServiceUpdate) -> bool {
        match &service.delta_failure {
            Some(failure) if service.status == Status::Pending => {
                self.task != Task::Wait
                    || failure.http_status.is_some()
                    || failure.attempts >= self.max_attempts
            }
            _ => false,
        }
    }

    /// `failed` once a delta is given up on after failing, `refused` once
    /// one is refused.
    fn given_up_word(&self, info: &UpdateInfo) -> Option<&'static str> {
        let mut word = None;
        for service in &info.is_produced_by__service_update {
            if !self.given_up(service) {
                continue;
            }
            if service
                .delta_failure
                .as_ref()
                .is_some_and(|f| f.http_status.is_none())
            {
                return Some("failed");
            }
            word = Some("refused");
        }
        word
    }

    /// A transition's state in words: `failed` or `refused` once a delta is
    /// given up on.
    fn transition_word(&self, info: &UpdateInfo) -> String {
        self.given_up_word(info)
            .map_or_else(|| info.overall_status.to_string(), str::to_owned)
    }

    /// `attempt 2 of 3` while waiting (a describe or a prepare asks once).
    fn attempt(&self, attempt: u32) -> String {
        if self.task == Task::Wait {
            format!("attempt {attempt} of {}", self.max_attempts)
        } else {
            format!("attempt {attempt}")
        }
    }

    /// A service's state: its status, with the attempt of a delta asked for
    /// again (`preparing (attempt 2 of 3)`), or a failure with the server's
    /// reason, said once, here (`attempt 1 of 3 failed (reason)`, `failed
    /// after 3 attempts (reason)`).
    fn service_state(&self, service: &ServiceUpdate) -> String {
        let Some(failure) = &service.delta_failure else {
            let times = service
                .originates_from__image
                .as_ref()
                .and_then(|from| {
                    let pair = (from.id, service.produces__image.id);
                    self.triggered.iter().find(|(p, _)| *p == pair)
                })
                .map_or(0, |(_, times)| *times);
            return if times > 1 && service.status != Status::Ready {
                format!("{} ({})", service.status, self.attempt(times))
            } else {
                service.status.to_string()
            };
        };
        let reason: String = failure
            .error_message
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .unwrap_or("no reason given")
            .chars()
            .take(60)
            .collect();
        let reason = printable(&reason);
        if let Some(status) = failure.http_status {
            return format!("refused with HTTP {status} ({reason})");
        }
        if !self.given_up(service) {
            return match failure.attempts {
                0 => format!("failed, asking again ({reason})"),
                n => format!("{} failed ({reason})", self.attempt(n)),
            };
        }
        match failure.attempts {
            0 => format!("failed ({reason})"),
            n => format!(
                "failed after {} ({reason})",
                crate::wording::count(u64::from(n), "attempt")
            ),
        }
    }

    /// `triggered 2 deltas (api, main)`; in a fleet, with the transitions:
    /// `triggered 100 deltas for 900813 to 900871 and 900820 to 900871`.
    fn triggered_note(&self, latest: &str) -> String {
        let deltas = crate::wording::count(self.triggered.len() as u64, "delta");
        let mut names: Vec<String> = Vec::new();
        let mut transitions: Vec<String> = Vec::new();
        let matches = |s: &ServiceUpdate, pair: (u64, u64)| {
            s.originates_from__image.as_ref().map(|i| i.id) == Some(pair.0)
                && s.produces__image.id == pair.1
        };
        match self.last.as_deref() {
            Some(Report::Fleet(fleet)) => {
                for transition in &fleet.transitions {
                    let update = &transition.update;
                    let has = update
                        .is_produced_by__service_update
                        .iter()
                        .any(|s| self.triggered.iter().any(|(pair, _)| matches(s, *pair)));
                    if has {
                        transitions.push(format!(
                            "{} to {}",
                            update.originates_from__release.id, update.produces__release.id
                        ));
                    }
                }
            }
            Some(Report::Transition(info)) => {
                for (pair, _) in &self.triggered {
                    if let Some(s) = info
                        .is_produced_by__service_update
                        .iter()
                        .find(|s| matches(s, *pair))
                    {
                        names.push(printable(&s.service_name).into_owned());
                    }
                }
            }
            None => {}
        }
        if names.is_empty() && transitions.is_empty() {
            names.push(printable(latest).into_owned());
        }
        let (list, prefix) = if transitions.is_empty() {
            (names, " (")
        } else {
            (transitions, " for ")
        };
        let shown = list.len().min(if prefix == " (" { 3 } else { 2 });
        let mut text = format!("triggered {deltas}{prefix}{}", list[..shown].join(", "));
        if list.len() > shown {
            let unit = if prefix == " (" {
                "service"
            } else {
                "transition"
            };
            let more = list.len() - shown;
            let plural = if more == 1 { "" } else { "s" };
            let _ = write!(text, " and {more} more {unit}{plural}");
        }
        if prefix == " (" {
            text.push(')');
        }
        text
    }

    /// Removes the block so the result and errors start on a clean line.
    pub fn finish(&mut self) {
        if !self.drawn.is_empty() {
            let columns = terminal_columns();
            self.printer
                .progress(&format!("\x1b[{}F\x1b[J", rows_taken(&self.drawn, columns)));
            self.drawn.clear();
        }
    }

    fn redraw(&mut self) {
        // Measured at every redraw: the terminal may be resized meanwhile.
        let (columns, rows) = terminal_size::terminal_size_of(std::io::stderr())
            .map_or((80, 24), |(w, h)| (usize::from(w.0), usize::from(h.0)));
        let now = Instant::now();
        let moment = Moment {
            elapsed: now.saturating_duration_since(self.started),
            remaining: self
                .deadline
                .map(|deadline| deadline.saturating_duration_since(now)),
            next_check: self
                .next_check
                .map(|at| at.saturating_duration_since(now))
                .filter(|left| !left.is_zero()),
            retry_in: self
                .retry
                .as_ref()
                .map(|(.., at)| at.saturating_duration_since(now)),
        };
        let mut frame = String::new();
        if !self.drawn.is_empty() {
            // Back to the first line drawn, however many rows the old lines
            // take now (see `rows_taken`), and clear to the end of the screen.
            let _ = write!(frame, "\x1b[{}F\x1b[J", rows_taken(&self.drawn, columns));
        }
        let lines = self.block(columns, rows, moment);
        self.drawn = lines.iter().map(|line| visible_width(line)).collect();
        for line in lines {
            frame.push_str(&line);
            frame.push('\n');
        }
        // One write per frame: no flicker.
        self.printer.progress(&frame);
    }

    /// The lines of the block for a terminal of `columns` x `rows` at
    /// `moment`. Every line is shorter than `columns` and there are fewer
    /// lines than `rows`, so the block can be redrawn in place.
    pub fn block(&self, columns: usize, rows: usize, moment: Moment) -> Vec<String> {
        let verb = match self.task {
            Task::Describe => "reading",
            Task::Prepare => "preparing",
            Task::Wait => "waiting",
        };
        let start = format!(
            "{} {verb} {} elapsed",
            spinner(moment.elapsed),
            clock(moment.elapsed)
        );
        let check = match moment.next_check {
            Some(left) => format!(", next check in {}", clock(whole_seconds_up(left))),
            None if self.task == Task::Wait && !self.services.is_empty() => ", checking".into(),
            None => String::new(),
        };
        let deadline = moment.remaining.map_or_else(String::new, |left| {
            format!(", deadline in {}", clock(whole_seconds_up(left)))
        });
        // On a narrow terminal the next check gives way before the
        // deadline, then the word `elapsed`.
        let short = format!(
            "{} {verb} {}",
            spinner(moment.elapsed),
            clock(moment.elapsed)
        );
        let header = [
            format!("{start}{check}{deadline}"),
            format!("{start}{deadline}"),
            format!("{short}{deadline}"),
        ]
        .into_iter()
        .find(|h| h.chars().count() < columns.max(3))
        .unwrap_or_else(|| clip(&format!("{short}{deadline}"), columns));
        let header = if self.printer.color {
            header.replacen(verb, &format!("\x1b[1m{verb}\x1b[0m"), 1)
        } else {
            header
        };
        let mut lines = vec![header];
        // A block taller than the screen cannot be redrawn in place: one row
        // stays for the cursor.
        let mut room = rows.saturating_sub(1).max(1) - 1;
        let stop = match self.task {
            Task::Describe => "  Ctrl+C to stop",
            Task::Prepare | Task::Wait => "  Ctrl+C to stop (the builds go on)",
        };
        let stop = (room > 0).then(|| clip(stop, columns));
        room -= usize::from(stop.is_some());
        if !self.note.is_empty() && room > 0 {
            // A retry counts down its pause.
            let note = match (&self.retry, moment.retry_in) {
                (Some((what, attempt, reason, _)), Some(left)) if self.note_is_retry => {
                    retry_text(what, *attempt, left, reason)
                }
                _ => self.note.clone(),
            };
            lines.push(clip(&format!("  {note}"), columns));
            room -= 1;
        }
        let room = room.min(12);
        let width = self
            .services
            .iter()
            .map(|(name, _)| name.chars().count())
            .max()
            .unwrap_or(0);
        let shown = if self.services.len() > room {
            room.saturating_sub(1)
        } else {
            self.services.len()
        };
        for (name, state) in &self.services[..shown] {
            lines.push(clip(&format!("  {name:<width$}  {state}"), columns));
        }
        let hidden = self.services.len() - shown;
        if hidden > 0 && room > 0 {
            lines.push(clip(&format!("  … and {hidden} more"), columns));
        }
        lines.extend(stop);
        lines
    }
}

pub fn terminal_columns() -> usize {
    terminal_size::terminal_size_of(std::io::stderr()).map_or(80, |(w, _)| usize::from(w.0))
}

/// The characters of `line` a terminal shows (escape sequences left out).
fn visible_width(line: &str) -> usize {
    let mut width = 0;
    let mut in_escape = false;
    for c in line.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (false, _) => width += 1,
            (true, c) if c.is_ascii_alphabetic() => in_escape = false,
            (true, _) => {}
        }
    }
    width
}

/// How many terminal rows lines of `widths` characters take on a terminal
/// `columns` wide, each ended by a newline.
///
/// Why this is how a redraw finds the top of the old block: every line is
/// drawn shorter than the width of the time, so it takes one row until the
/// terminal narrows. Then a terminal that reflows (tmux, VTE, kitty, iTerm2)
/// wraps each old line over `ceil(width / columns)` rows, and moving up only
/// one row per line would leave the top of the old block behind as a stale
/// line. Saving and restoring the cursor position is no help: the position
/// is a screen row, which moves when the block scrolls the screen or the
/// terminal reflows. A terminal that truncates instead of reflowing keeps one
/// row per line, so on a narrowing this may clear a few rows above the block
/// as well, which loses nothing that matters, unlike a stale line that stays.
pub fn rows_taken(widths: &[usize], columns: usize) -> usize {
    let columns = columns.max(1);
    widths.iter().map(|w| w.div_ceil(columns).max(1)).sum()
}

/// `-\|/`, one step a second: the block is alive even when nothing changes.
pub fn spinner(elapsed: Duration) -> char {
    ['-', '\\', '|', '/'][(elapsed.as_secs() % 4) as usize]
}

/// The delta server's answer to a delta request, in words for `-v`.
fn trigger_answer(outcome: &balena_release::TriggerOutcome) -> String {
    use balena_release::TriggerOutcome;
    match outcome {
        TriggerOutcome::Accepted => "accepted".to_owned(),
        TriggerOutcome::StillProcessing { status } => format!("still building (HTTP {status})"),
        TriggerOutcome::TimedOut => "no answer in time".to_owned(),
        TriggerOutcome::Refused { status } => format!("refused (HTTP {status})"),
        _ => "other".to_owned(),
    }
}

/// The state in one line: `pending: 3 of 6 services ready (main: preparing,
/// web: delta failed, and 1 more)`.
fn summary(status: &str, ready: usize, total: usize, unit: &str, waiting: &[String]) -> String {
    let mut text = format!(
        "{status}: {ready} of {}",
        crate::wording::count(total as u64, unit)
    );
    text.push_str(" ready");
    if !waiting.is_empty() {
        let shown = waiting.len().min(2);
        let _ = write!(text, " ({}", waiting[..shown].join(", "));
        if waiting.len() > shown {
            let _ = write!(text, ", and {} more", waiting.len() - shown);
        }
        text.push(')');
    }
    text
}

/// A plain status line: `0:12 pending: 3 of 5 services ready (…)`. The
/// clock first, so that such lines are easy to tell from the rest (and to
/// leave out of a comparison: they match `^\d+:\d\d(:\d\d)? `).
pub fn status_line(at: Duration, text: &str) -> String {
    format!("{} {text}", clock(at))
}

/// What a retry means for a person: `API unreachable, retrying in 1 s
/// (attempt 2)`. `attempt` is the library's retry number (the first retry
/// is the second attempt).
pub fn retry_text(what: &str, attempt: u32, delay: Duration, reason: &str) -> String {
    let server = if what.starts_with("delta request") {
        "delta server"
    } else {
        "API"
    };
    let problem = if reason.starts_with('`') {
        // An answer with an error status: "`503` Service Unavailable".
        let reason: String = reason.chars().take(48).collect();
        format!("answered {}", printable(&reason))
    } else if reason.to_ascii_lowercase().contains("timed out") {
        "did not answer in time".to_owned()
    } else {
        "unreachable".to_owned()
    };
    let when = if delay.is_zero() {
        "now".to_owned()
    } else {
        format!("in {}", pause(delay))
    };
    format!(
        "{server} {problem}, retrying {when} (attempt {})",
        attempt.saturating_add(1)
    )
}

/// A short pause in words, always in seconds so that a countdown reads in
/// one unit: `0.1 s` (the least shown), `0.3 s`, `1.5 s`, `12 s`.
fn pause(delay: Duration) -> String {
    if delay < Duration::from_secs(1) {
        let tenths = ((delay.as_millis() + 50) / 100).max(1);
        if tenths == 10 {
            "1 s".to_owned()
        } else {
            format!("0.{tenths} s")
        }
    } else if delay < Duration::from_secs(10) {
        let tenths = (delay.as_millis() + 50) / 100;
        if tenths.is_multiple_of(10) {
            format!("{} s", tenths / 10)
        } else {
            format!("{}.{} s", tenths / 10, tenths % 10)
        }
    } else {
        format!("{} s", (delay.as_millis() + 500) / 1000)
    }
}

/// Paces plain status lines: a new state at most once per `gap` after the
/// previous line (a later one waits for the gap to pass, and only the newest
/// is sent); a retry at once unless another was announced within the gap
/// (then not at all: said late, it would be stale, and the error that ends
/// the retries says the rest); the unchanged state again after
/// `HEARTBEAT_GAPS` gaps of silence. Times are the run's elapsed time.
#[derive(Debug)]
pub struct Pacer {
    gap: Duration,
    /// When the last line (of any kind) was sent.
    last_sent: Option<Duration>,
    /// The last state sent.
    said: Option<String>,
    /// A newer state waiting for the gap to pass.
    pending: Option<String>,
    /// When the last retry was announced.
    last_urgent: Option<Duration>,
}

impl Pacer {
    pub fn new(gap: Duration) -> Pacer {
        Pacer {
            gap,
            last_sent: None,
            said: None,
            pending: None,
            last_urgent: None,
        }
    }

    /// `text` is the state at `at`, or with `urgent` a retry; returns the
    /// line to send now, if any.
    pub fn offer(&mut self, at: Duration, text: String, urgent: bool) -> Option<String> {
        if urgent {
            if self.last_urgent.is_some_and(|when| at < when + self.gap) {
                return None;
            }
            self.last_urgent = Some(at);
            self.last_sent = Some(at);
            return Some(text);
        }
        if self.said.as_ref() == Some(&text) {
            // Back to what was said last: nothing new to say.
            self.pending = None;
            return None;
        }
        if self.last_sent.is_none_or(|when| at >= when + self.gap) {
            self.pending = None;
            self.last_sent = Some(at);
            self.said = Some(text.clone());
            Some(text)
        } else {
            self.pending = Some(text);
            None
        }
    }

    /// Returns the line due at `at`: a waiting state once the gap has
    /// passed, or the state again after a minute of silence.
    pub fn tick(&mut self, at: Duration) -> Option<String> {
        let since = self.last_sent?;
        let text = if self.pending.is_some() {
            if at < since + self.gap {
                return None;
            }
            self.pending.take()?
        } else if at >= since + self.gap * HEARTBEAT_GAPS {
            self.said.clone()?
        } else {
            return None;
        };
        self.last_sent = Some(at);
        self.said = Some(text.clone());
        Some(text)
    }
}

/// Progress lines are redrawn by moving the cursor up one row per line, so
/// none may wrap: cut them to fit `columns` (one cell per character, which
/// holds for the ASCII this block is made of).
pub fn clip(line: &str, columns: usize) -> String {
    let width = columns.saturating_sub(1).max(2);
    if line.chars().count() <= width {
        return line.to_owned();
    }
    let mut cut: String = line.chars().take(width - 1).collect();
    cut.push('…');
    cut
}

/// A countdown shows the seconds begun, not those completed: `0:01` until
/// the moment itself, never `0:00` while there is time left.
pub fn whole_seconds_up(left: Duration) -> Duration {
    Duration::from_secs(left.as_secs() + u64::from(left.subsec_nanos() > 0))
}

/// `m:ss`, or `h:mm:ss` from an hour on, for progress lines.
pub fn clock(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if seconds >= 3600 {
        format!(
            "{}:{:02}:{:02}",
            seconds / 3600,
            seconds / 60 % 60,
            seconds % 60
        )
    } else {
        format!("{}:{:02}", seconds / 60, seconds % 60)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use balena_release::{FleetTransition, FleetUpdateInfo, UpdateInfo};

    use super::*;

    #[test]
    fn clock_and_clip() {
        assert_eq!(clock(Duration::from_secs(125)), "2:05");
        assert_eq!(clock(Duration::from_secs(3599)), "59:59");
        assert_eq!(clock(Duration::from_secs(86_398)), "23:59:58");
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
    pub(crate) fn fleet_round(transitions: u64) -> Event {
        let transitions: Vec<_> = (1..=transitions)
            .map(|n| FleetTransition {
                device_count: n * 10,
                update: update(if n == 1 { 1 } else { 4 }, 800 + n),
                devices_without_deltas: Default::default(),
                download_size_without_deltas: Default::default(),
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

    /// Neither live nor lines: the events must not draw on the test's
    /// stderr.
    const SILENT: Printer = Printer {
        quiet: false,
        live: false,
        lines: false,
        color: false,
    };

    fn progress_of(task: Task, events: &[Event]) -> Progress {
        let mut progress = Progress::new(SILENT, task, Instant::now(), None, STATUS_GAP);
        for event in events {
            progress.event(event);
        }
        progress
    }

    fn live_progress(events: &[Event]) -> Progress {
        progress_of(Task::Prepare, events)
    }

    /// 1:35 into the run, 8:25 before the deadline, 0:17 before the next check.
    const MOMENT: Moment = Moment {
        elapsed: Duration::from_secs(95),
        remaining: Some(Duration::from_secs(505)),
        next_check: Some(Duration::from_secs(17)),
        retry_in: None,
    };

    /// The block as a terminal of `columns` x `rows` shows it.
    fn screen(progress: &Progress, columns: usize, rows: usize) -> String {
        screen_at(progress, columns, rows, MOMENT)
    }

    fn screen_at(progress: &Progress, columns: usize, rows: usize, moment: Moment) -> String {
        let lines = progress.block(columns, rows, moment);
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

    #[test]
    fn the_block_ticks_between_checks() {
        let progress = progress_of(Task::Wait, &[round(5)]);
        let at = |elapsed: u64, next: Option<u64>| Moment {
            elapsed: Duration::from_secs(elapsed),
            remaining: None,
            next_check: next.map(Duration::from_secs),
            retry_in: None,
        };
        let first = screen_at(&progress, 80, 24, at(95, Some(17)));
        let second = screen_at(&progress, 80, 24, at(96, Some(16)));
        let header = |screen: &str| screen.lines().next().unwrap().to_owned();
        assert_eq!(header(&first), "/ waiting 1:35 elapsed, next check in 0:17");
        assert_eq!(
            header(&second),
            "- waiting 1:36 elapsed, next check in 0:16"
        );
        let almost = Moment {
            next_check: Some(Duration::from_millis(300)),
            remaining: Some(Duration::from_millis(59_001)),
            ..at(96, None)
        };
        assert_eq!(
            header(&screen_at(&progress, 80, 24, almost)),
            "- waiting 1:36 elapsed, next check in 0:01, deadline in 1:00",
            "a countdown rounds up"
        );
        assert_eq!(
            header(&screen_at(&progress, 80, 24, at(97, None))),
            "\\ waiting 1:37 elapsed, checking"
        );
        assert!(
            first.ends_with("\n  Ctrl+C to stop (the builds go on)"),
            "{first}"
        );
        let describe = progress_of(Task::Describe, &[]);
        assert_eq!(
            screen_at(&describe, 80, 24, at(1, None)),
            "\\ reading 0:01 elapsed\n  Ctrl+C to stop"
        );
    }

    #[test]
    fn the_live_block_at_80_and_120_columns() {
        let retry = Event::Retrying {
            what: "delta".into(),
            attempt: 1,
            delay: Duration::from_millis(1000),
            reason: "error sending request (Connection refused)".into(),
        };
        let progress = progress_of(Task::Wait, &[round(6), retry]);
        insta::assert_snapshot!("live_block_6_services_80x24", screen(&progress, 80, 24));
        // The retry counts down its pause.
        for (left, said) in [
            (Duration::from_millis(400), "retrying in 0.4 s (attempt 2)"),
            (Duration::ZERO, "retrying now (attempt 2)"),
        ] {
            let moment = Moment {
                retry_in: Some(left),
                ..MOMENT
            };
            let text = screen_at(&progress, 80, 24, moment);
            assert!(
                text.contains(&format!("\n  API unreachable, {said}\n")),
                "{text}"
            );
        }
        let progress = progress_of(Task::Wait, &[round(30)]);
        insta::assert_snapshot!("live_block_30_services_120x40", screen(&progress, 120, 40));
        let progress = progress_of(Task::Wait, &[fleet_round(20)]);
        insta::assert_snapshot!(
            "live_block_fleet_20_transitions_120x40",
            screen(&progress, 120, 40)
        );
    }

    #[test]
    fn a_capped_block_lists_unfinished_services_first() {
        // Of 30 services, 15 are ready (every other one); 12 rows, the
        // last of them saying how many more there are.
        let progress = live_progress(&[round(30)]);
        let text = screen(&progress, 120, 40);
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("  service-"))
            .collect();
        assert_eq!(rows.len(), 11, "{text}");
        assert!(
            rows.iter().all(|row| !row.contains(" ready")),
            "a ready service shown before an unfinished one:\n{text}"
        );
        assert!(text.contains("  … and 19 more"), "{text}");
        // Within each group, the order of the release is kept.
        assert!(rows[0].starts_with("  service-01") && rows[1].starts_with("  service-03"));
        // When everything fits, the ready ones follow.
        let small = screen(&live_progress(&[round(4)]), 80, 24);
        let names: Vec<&str> = small
            .lines()
            .filter_map(|l| l.strip_prefix("  service-"))
            .map(|l| &l[..2])
            .collect();
        assert_eq!(names, ["01", "03", "00", "02"], "{small}");
    }

    #[test]
    fn rows_taken_counts_wrapped_lines_at_the_new_width() {
        // Drawn at 80 columns: every line at most 79 characters.
        let drawn = [79, 40, 79, 2];
        assert_eq!(rows_taken(&drawn, 80), 4, "same width: one row each");
        assert_eq!(rows_taken(&drawn, 120), 4, "wider: one row each");
        // Narrowed to 40: a 79-character line wraps over two rows, a
        // 40-character one fills one row exactly.
        assert_eq!(rows_taken(&drawn, 40), 2 + 1 + 2 + 1);
        assert_eq!(rows_taken(&drawn, 20), 4 + 2 + 4 + 1);
        assert_eq!(rows_taken(&[0, 0], 10), 2, "an empty line is a row");
        assert_eq!(rows_taken(&[5], 0), 5, "no width: one character a row");
        assert_eq!(rows_taken(&[], 80), 0);
        // Bold in the header takes no room.
        assert_eq!(visible_width("\x1b[1mwaiting\x1b[0m 1:00"), 12);
    }

    #[test]
    fn retries_read_as_a_person_would_say_them() {
        let second = Duration::from_secs(1);
        assert_eq!(
            retry_text(
                "release",
                1,
                second,
                "error sending request (Connection refused)"
            ),
            "API unreachable, retrying in 1 s (attempt 2)"
        );
        assert_eq!(
            retry_text(
                "device count",
                3,
                Duration::from_millis(4400),
                "`503` Service Unavailable"
            ),
            "API answered `503` Service Unavailable, retrying in 4.4 s (attempt 4)"
        );
        assert_eq!(
            retry_text(
                "delta request for service `main`",
                2,
                Duration::from_secs(17),
                "operation timed out"
            ),
            "delta server did not answer in time, retrying in 17 s (attempt 3)"
        );
        assert_eq!(
            retry_text("delta", 1, Duration::from_millis(20), "`429` \u{1b}[2J"),
            "API answered `429` \\u{1b}[2J, retrying in 0.1 s (attempt 2)"
        );
    }

    /// At 40 columns the deadline stays; the next check and the word
    /// `elapsed` give way.
    #[test]
    fn a_narrow_header_keeps_the_deadline() {
        let progress = progress_of(Task::Wait, &[round(4)]);
        let narrow = screen(&progress, 40, 24);
        assert_eq!(
            narrow.lines().next().unwrap(),
            "/ waiting 1:35, deadline in 8:25"
        );
        let wide = screen(&progress, 80, 24);
        assert_eq!(
            wide.lines().next().unwrap(),
            "/ waiting 1:35 elapsed, next check in 0:17, deadline in 8:25"
        );
    }

    #[test]
    fn pauses_read_in_seconds() {
        let ms = Duration::from_millis;
        assert_eq!(pause(ms(20)), "0.1 s");
        assert_eq!(pause(ms(345)), "0.3 s");
        assert_eq!(pause(ms(960)), "1 s");
        assert_eq!(pause(ms(1_500)), "1.5 s");
        assert_eq!(pause(ms(12_400)), "12 s");
    }

    #[test]
    fn status_lines_are_paced() {
        let gap = Duration::from_secs(10);
        let s = Duration::from_secs;
        let mut pacer = Pacer::new(gap);
        let text = |t: &str| t.to_owned();
        // The first state at once; a change 3 s later waits for the gap.
        assert_eq!(pacer.offer(s(0), text("a"), false), Some(text("a")));
        assert_eq!(pacer.offer(s(3), text("b"), false), None);
        // A newer state replaces the waiting one.
        assert_eq!(pacer.offer(s(8), text("c"), false), None);
        assert_eq!(pacer.tick(s(9)), None);
        assert_eq!(pacer.tick(s(10)), Some(text("c")));
        // The same state again is nothing new.
        assert_eq!(pacer.offer(s(11), text("c"), false), None);
        assert_eq!(pacer.tick(s(15)), None);
        // A retry at once, even within the gap; a second one within the
        // gap after it is dropped, not said late.
        assert_eq!(
            pacer.offer(s(16), text("retry 1"), true),
            Some(text("retry 1"))
        );
        assert_eq!(pacer.offer(s(17), text("retry 2"), true), None);
        assert_eq!(pacer.tick(s(26)), None);
        // Nothing changes: the state (not the retry) again after a minute of
        // silence, and a minute later.
        assert_eq!(pacer.tick(s(75)), None);
        assert_eq!(pacer.tick(s(76)), Some(text("c")));
        assert_eq!(pacer.tick(s(135)), None);
        assert_eq!(pacer.tick(s(136)), Some(text("c")));
        // A retry a gap after the last one is said again.
        assert_eq!(
            pacer.offer(s(137), text("retry 3"), true),
            Some(text("retry 3"))
        );
        // Going back to the last state said drops a waiting change.
        assert_eq!(pacer.offer(s(140), text("d"), false), None);
        assert_eq!(pacer.offer(s(141), text("c"), false), None);
        assert_eq!(pacer.tick(s(150)), None);
    }

    #[test]
    fn at_most_one_status_line_per_gap() {
        // Any sequence of offers and ticks: two lines that are not both
        // retries are at least a gap apart.
        let gap = Duration::from_secs(10);
        let mut pacer = Pacer::new(gap);
        let mut sent: Vec<(u64, bool)> = Vec::new();
        for t in 0..600u64 {
            let at = Duration::from_secs(t);
            let urgent = t % 37 == 5;
            let text = if urgent {
                format!("retry {t}")
            } else {
                format!("state {}", t / 3)
            };
            if pacer.offer(at, text, urgent).is_some() {
                sent.push((t, urgent));
            }
            if pacer.tick(at).is_some() {
                sent.push((t, false));
            }
        }
        assert!(sent.len() > 30, "{sent:?}");
        let plain: Vec<u64> = sent.iter().filter(|(_, u)| !u).map(|(t, _)| *t).collect();
        let urgent: Vec<u64> = sent.iter().filter(|(_, u)| *u).map(|(t, _)| *t).collect();
        for times in [&plain, &urgent] {
            for pair in times.windows(2) {
                assert!(pair[1] - pair[0] >= 10, "{pair:?} in {sent:?}");
            }
        }
        for t in &plain {
            assert!(
                urgent.iter().all(|u| t < u || *t >= u + 10),
                "a state line {t} within the gap after a retry line: {sent:?}"
            );
        }
    }

    /// The plain lines a run shows (on `TERM=dumb` and without a terminal)
    /// for events at the given seconds.
    fn plain_lines(task: Task, timeline: &[(u64, Event)], until: u64) -> String {
        let mut progress = progress_of(task, &[]);
        let mut lines = Vec::new();
        let mut events = timeline.iter().peekable();
        for t in 0..=until {
            let at = Duration::from_secs(t);
            while let Some((_, event)) = events.next_if(|(when, _)| *when == t) {
                if let Some(urgent) = progress.apply(event)
                    && let Some(line) = progress.offer_line(at, urgent)
                {
                    lines.push(status_line(at, &line));
                }
            }
            if let Some(line) = progress.pacer.tick(at) {
                lines.push(status_line(at, &line));
            }
        }
        lines.join("\n")
    }

    #[test]
    fn plain_status_lines() {
        let with_ready = |count: usize, ready: usize| {
            let mut info = update(count, 800);
            for (i, service) in info.is_produced_by__service_update.iter_mut().enumerate() {
                service.status = if i < ready {
                    Status::Ready
                } else {
                    Status::Preparing
                };
            }
            if ready == count {
                info.overall_status = Status::Ready;
            }
            Event::Round {
                report: std::sync::Arc::new(Report::Transition(info)),
                attempt: 1,
            }
        };
        let retry = |attempt| Event::Retrying {
            what: "release".into(),
            attempt,
            delay: Duration::from_secs(2),
            reason: "error sending request (Connection refused)".into(),
        };
        let timeline = [
            (0, with_ready(5, 0)),
            (3, with_ready(5, 1)),
            (4, with_ready(5, 2)),
            (20, retry(1)),
            (22, retry(2)),
            (40, with_ready(5, 4)),
            (200, with_ready(5, 5)),
        ];
        insta::assert_snapshot!("plain_lines_pair", plain_lines(Task::Wait, &timeline, 200));
        let fleet = [(0, fleet_round(5)), (7, fleet_round(2))];
        insta::assert_snapshot!("plain_lines_fleet", plain_lines(Task::Wait, &fleet, 75));
    }

    /// A delta asked for again shows its attempt; one given up on reads
    /// `failed` in the block, the header word and the plain lines, with the
    /// server's reason once; the note counts the deltas triggered and names
    /// their services, or in a fleet their transitions.
    #[test]
    fn failures_read_as_failures_with_their_attempt() {
        let trigger = |source: u64, target: u64, name: &str| Event::Triggered {
            service_name: name.into(),
            source_image: source,
            target_image: target,
            outcome: balena_release::TriggerOutcome::Accepted,
        };
        let with_attempts = |attempts: u32| {
            let mut info = update(4, 800);
            let failure = info.is_produced_by__service_update[3]
                .delta_failure
                .as_mut()
                .unwrap();
            failure.attempts = attempts;
            failure.error_message = Some("delta generation failed: out of disk".into());
            Event::Round {
                report: std::sync::Arc::new(Report::Transition(info)),
                attempt: 1,
            }
        };
        // The first attempt failed: asked again, not yet failed.
        let progress = progress_of(
            Task::Wait,
            &[with_attempts(1), trigger(2003, 1003, "service-03")],
        );
        let shown = screen(&progress, 100, 24);
        assert!(
            shown.contains("  triggered 1 delta (service-03)\n"),
            "{shown}"
        );
        assert!(
            shown.contains(
                "service-03  changed   attempt 1 of 3 failed (delta generation failed: out of \
                 disk)"
            ),
            "{shown}"
        );
        assert_eq!(shown.matches("out of disk").count(), 1, "{shown}");
        assert!(
            progress
                .summary
                .as_deref()
                .unwrap()
                .starts_with("pending: 2 of 4 services ready"),
            "{:?}",
            progress.summary
        );

        // Asked again: the block says which attempt it is on.
        let mut again = update(4, 800);
        again.is_produced_by__service_update[3].delta_failure = None;
        again.is_produced_by__service_update[3].status = Status::Preparing;
        let progress = progress_of(
            Task::Wait,
            &[
                with_attempts(1),
                trigger(2003, 1003, "service-03"),
                trigger(2001, 1001, "service-01"),
                trigger(2003, 1003, "service-03"),
                Event::Round {
                    report: std::sync::Arc::new(Report::Transition(again)),
                    attempt: 2,
                },
            ],
        );
        let shown = screen(&progress, 100, 24);
        assert!(
            shown.contains("  triggered 2 deltas (service-03, service-01)\n"),
            "{shown}"
        );
        assert!(
            shown.contains("service-03  changed   preparing (attempt 2 of 3)"),
            "{shown}"
        );

        // The last attempt failed: given up on.
        let progress = progress_of(Task::Wait, &[with_attempts(3)]);
        let shown = screen(&progress, 100, 24);
        assert!(
            shown.contains(
                "service-03  changed   failed after 3 attempts (delta generation failed: out \
                 of disk)"
            ),
            "{shown}"
        );
        let summary = progress.summary.as_deref().unwrap();
        assert!(
            summary.starts_with(
                "failed: 2 of 4 services ready (service-01: preparing, service-03: failed after \
                 3 attempts (delta generation failed: out of disk))"
            ),
            "{summary}"
        );

        // In a fleet, the note names the transitions of the deltas.
        let progress = progress_of(
            Task::Wait,
            &[
                fleet_round(3),
                trigger(2001, 1001, "service-01"),
                trigger(2003, 1003, "service-03"),
            ],
        );
        let shown = screen(&progress, 100, 24);
        assert!(
            shown.contains("  triggered 2 deltas for 802 to 900, 803 to 900\n"),
            "{shown}"
        );
    }
}
