//! `--watch`: the long-running mode. The library's watch events become one
//! line each on stdout (plain text, or JSON lines with `--output json`);
//! warnings go to stderr. SIGTERM and SIGINT end it with exit 0 and a last
//! `stopped` line; a token that stops working ends it with exit 1. On a
//! terminal, a one-line status ticks on stderr between the lines
//! (`status`).

use std::convert::Infallible;
use std::sync::Mutex;
use std::time::Duration;

use balena_release::{Event, ReleaseSummary, Target, WatchOptions, WatchReason};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::cli::OutputFormat;
use crate::config::Config;
use crate::failure::Failure;
use crate::printer::{Printer, json_line, printable};
use crate::signals::{Signal, stop_signal};
use crate::wording::{Commits, count};

mod status;

use status::Status;

/// Watches the configured fleet until a signal (`Ok`) or an error that
/// ends the watch.
pub fn run(config: &Config) -> Result<(), Failure> {
    let Target::Fleet { fleet, .. } = &config.target else {
        return Err(Failure::Config("--watch needs --fleet".to_owned()));
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Failure::Runtime)?;
    let format = config.output.format;
    let printer = config.output.printer;
    let options = WatchOptions {
        poll: config.poll,
        ..WatchOptions::default()
    };
    // The first failed write of a line ends the watch: its events would
    // be lost, and the preparations it starts go on unseen.
    let unwritten: Mutex<Option<std::io::Error>> = Mutex::new(None);
    let closed = Notify::new();
    let status = printer
        .live
        .then(|| Mutex::new(Status::new(&fleet.to_string(), printer, Instant::now())));
    let on_event = |event: Event| {
        let mut status = status
            .as_ref()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()));
        let line = line(&event, format, &now());
        let warning = line.is_none().then(|| warning(&event)).flatten();
        let writes = line.is_some() || warning.is_some();
        if let Some(status) = &mut status
            && writes
        {
            status.erase();
        }
        if let Some(line) = line {
            if let Err(err) = Printer::stream_line(&line) {
                let mut first = unwritten.lock().unwrap_or_else(|e| e.into_inner());
                if first.is_none() {
                    *first = Some(err);
                    closed.notify_one();
                }
            }
        } else if let Some(warning) = warning {
            printer.warning(&warning);
        }
        if let Some(status) = &mut status {
            status.event(&event, Instant::now());
            // Drawn again at once where a line took its place; other
            // changes show at the next tick.
            if writes {
                status.draw();
            }
        }
    };
    let client = &config.client;
    let outcome = runtime.block_on(async {
        tokio::select! {
            ended = client.watch_fleet(fleet, &options, &on_event) => match ended {
                Err(error) => Err(Failure::Library(error)),
                Ok(never) => match never {},
            },
            signal = stop_signal() => Ok(signal),
            never = tick(status.as_ref()) => match never {},
            () = closed.notified() => Err(Failure::Write(
                unwritten
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                    .unwrap_or_else(|| std::io::Error::other("it failed")),
            )),
            () = reader_gone() => Err(Failure::Write(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "its reader closed it",
            ))),
        }
    });
    runtime.shutdown_timeout(Duration::from_millis(100));
    if let Some(status) = &status {
        status.lock().unwrap_or_else(|e| e.into_inner()).erase();
    }
    match outcome? {
        // SIGHUP keeps the rule of every other mode.
        Signal::Hangup => Err(Failure::Interrupted(Signal::Hangup)),
        _ => {
            let _ = Printer::result(&stopped(format, &now()));
            Ok(())
        }
    }
}

/// Redraws the status line every second, if there is one.
async fn tick(status: Option<&Mutex<Status>>) -> Infallible {
    let Some(status) = status else {
        return std::future::pending().await;
    };
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    loop {
        ticks.tick().await;
        status.lock().unwrap_or_else(|e| e.into_inner()).draw();
    }
}

/// How often a watch that writes nothing checks that stdout is still read.
const READER_CHECK: Duration = Duration::from_millis(500);

/// Returns once stdout's reader is gone (checked every [`READER_CHECK`]).
async fn reader_gone() {
    loop {
        if Printer::stdout_reader_gone() {
            return;
        }
        tokio::time::sleep(READER_CHECK).await;
    }
}

/// The current time in UTC, to the second: `2026-12-02T15:04:05Z`.
fn now() -> String {
    utc(jiff::Timestamp::now())
}

fn utc(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A release as a line names it: `900900 (abc1234def0)`.
fn release(r: &ReleaseSummary) -> String {
    let short: String = r.commit.chars().take(Commits::LEAST).collect();
    format!("{} ({})", r.id, printable(&short))
}

fn release_json(r: &ReleaseSummary) -> Value {
    json!({ "id": r.id, "commit": r.commit })
}

/// The stdout line of an event, if it has one (with its newline).
fn line(event: &Event, format: OutputFormat, at: &str) -> Option<String> {
    let (text, value) = match event {
        Event::WatchReleaseSeen {
            release: r,
            reason,
            transitions,
            devices,
        } => (
            format!(
                "release {} seen: {}, {}",
                release(r),
                count(*transitions as u64, "transition"),
                count(*devices, "device"),
            ),
            json!({
                "event": "release_seen",
                "at": at,
                "release": release_json(r),
                "reason": match reason {
                    WatchReason::NewRelease => "new_release",
                    _ => "target",
                },
                "transitions": transitions,
                "devices": devices,
            }),
        ),
        Event::WatchPrepared {
            release: r,
            transitions,
            ready,
            failed,
        } => {
            let state = if ready == transitions && *failed == 0 {
                format!("{} ready", count(*transitions as u64, "transition"))
            } else {
                format!(
                    "{ready} of {} ready, {} failed",
                    count(*transitions as u64, "transition"),
                    count(*failed as u64, "delta"),
                )
            };
            (
                format!("release {} prepared: {state}", release(r)),
                json!({
                    "event": "prepared",
                    "at": at,
                    "release": release_json(r),
                    "transitions": transitions,
                    "ready": ready,
                    "failed": failed,
                }),
            )
        }
        Event::WatchDeltaReady {
            service_name,
            from_release,
            to_release,
        } => (
            format!(
                "delta ready: {} {from_release}→{to_release}",
                printable(service_name)
            ),
            json!({
                "event": "delta_ready",
                "at": at,
                "service": service_name,
                "from_release": from_release,
                "to_release": to_release,
            }),
        ),
        Event::WatchDeltaFailed {
            service_name,
            from_release,
            to_release,
            reason,
        } => (
            format!(
                "delta failed: {} {from_release}→{to_release}: {}",
                printable(service_name),
                printable(reason)
            ),
            json!({
                "event": "delta_failed",
                "at": at,
                "service": service_name,
                "from_release": from_release,
                "to_release": to_release,
                "reason": reason,
            }),
        ),
        _ => return None,
    };
    Some(match format {
        OutputFormat::Json => format!("{}\n", json_text(&value)),
        OutputFormat::Table | OutputFormat::Markdown => format!("{at} {text}\n"),
    })
}

/// The last line, after SIGTERM or SIGINT.
fn stopped(format: OutputFormat, at: &str) -> String {
    match format {
        OutputFormat::Json => format!("{}\n", json_text(&json!({ "event": "stopped", "at": at }))),
        OutputFormat::Table | OutputFormat::Markdown => format!("{at} stopped\n"),
    }
}

/// The stderr warning of an event, if it has one.
fn warning(event: &Event) -> Option<String> {
    match event {
        Event::WatchRetrying {
            what,
            reason,
            pause,
        } => Some(format!(
            "{what} failed, trying again (first pause {}ms; reported once until it works): \
             {reason}",
            pause.as_millis()
        )),
        Event::WatchRecovered { failures } => Some(format!(
            "the servers answer again after {}",
            count(u64::from(*failures), "failure")
        )),
        Event::WatchFlapping { what } => Some(format!(
            "{what} flaps: nothing is prepared until 3 polls in a row show the same answer, \
             and the polls keep their pace (reported once until it holds)"
        )),
        Event::WatchReleaseFailed { release: r, reason } => Some(format!(
            "release {} cannot be prepared, left until the next release: {reason}",
            release(r)
        )),
        _ => None,
    }
}

/// A JSON-lines record of this mode.
fn json_text(value: &Value) -> String {
    // A `Value` always serialises.
    json_line(value).expect("a JSON value serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::printer::must_escape;

    fn r(id: u64) -> ReleaseSummary {
        ReleaseSummary {
            id,
            commit: "abc1234def".to_owned(),
        }
    }

    #[test]
    fn times_are_utc_to_the_second() {
        let at = |seconds| utc(jiff::Timestamp::from_second(seconds).unwrap());
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_796_223_845), "2026-12-02T15:04:05Z");
    }

    #[test]
    fn plain_lines_name_the_release_and_its_counts() {
        let at = "2026-12-02T15:04:05Z";
        let seen = Event::WatchReleaseSeen {
            release: r(900900),
            reason: WatchReason::NewRelease,
            transitions: 3,
            devices: 57,
        };
        assert_eq!(
            line(&seen, OutputFormat::Table, at).unwrap(),
            "2026-12-02T15:04:05Z release 900900 (abc1234def) seen: 3 transitions, 57 devices\n"
        );
        let prepared = Event::WatchPrepared {
            release: r(900900),
            transitions: 1,
            ready: 1,
            failed: 0,
        };
        assert_eq!(
            line(&prepared, OutputFormat::Table, at).unwrap(),
            "2026-12-02T15:04:05Z release 900900 (abc1234def) prepared: 1 transition ready\n"
        );
        let partly = Event::WatchPrepared {
            release: r(900900),
            transitions: 3,
            ready: 2,
            failed: 1,
        };
        assert!(
            line(&partly, OutputFormat::Table, at)
                .unwrap()
                .ends_with("prepared: 2 of 3 transitions ready, 1 delta failed\n")
        );
        let ready = Event::WatchDeltaReady {
            service_name: "main".into(),
            from_release: 900813,
            to_release: 900900,
        };
        assert_eq!(
            line(&ready, OutputFormat::Table, at).unwrap(),
            "2026-12-02T15:04:05Z delta ready: main 900813→900900\n"
        );
        assert!(
            line(
                &Event::WatchIdle {
                    polls: 1,
                    next_poll: Duration::from_secs(5)
                },
                OutputFormat::Table,
                at
            )
            .is_none()
        );
    }

    #[test]
    fn server_text_cannot_break_a_line() {
        let at = "2026-12-02T15:04:05Z";
        let failed = Event::WatchDeltaFailed {
            service_name: "ma\u{1b}[2Jin".into(),
            from_release: 1,
            to_release: 2,
            reason: "boom\nERROR: fake\u{202e}\u{85}".into(),
        };
        let plain = line(&failed, OutputFormat::Table, at).unwrap();
        assert_eq!(plain.matches('\n').count(), 1, "{plain}");
        assert!(!plain.contains('\u{1b}') && !plain.contains('\u{202e}'));
        let json = line(&failed, OutputFormat::Json, at).unwrap();
        assert_eq!(json.matches('\n').count(), 1, "{json}");
        assert!(!json.chars().any(|c| must_escape(c) && c != '\n'), "{json}");
        let value: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["event"], "delta_failed");
        assert_eq!(value["service"], "ma\u{1b}[2Jin");
        assert_eq!(value["reason"], "boom\nERROR: fake\u{202e}\u{85}");
        assert_eq!(value["from_release"], 1);
    }

    #[test]
    fn json_lines_carry_the_same_facts() {
        let at = "2026-12-02T15:04:05Z";
        let seen = Event::WatchReleaseSeen {
            release: r(900900),
            reason: WatchReason::Target,
            transitions: 3,
            devices: 57,
        };
        let value: Value =
            serde_json::from_str(&line(&seen, OutputFormat::Json, at).unwrap()).unwrap();
        assert_eq!(
            value,
            json!({
                "event": "release_seen", "at": at,
                "release": { "id": 900900, "commit": "abc1234def" },
                "reason": "target", "transitions": 3, "devices": 57,
            })
        );
        let stop: Value = serde_json::from_str(&stopped(OutputFormat::Json, at)).unwrap();
        assert_eq!(stop, json!({ "event": "stopped", "at": at }));
        assert_eq!(
            stopped(OutputFormat::Table, at),
            "2026-12-02T15:04:05Z stopped\n"
        );
    }

    #[test]
    fn faults_and_releases_left_behind_are_warnings() {
        let retry = Event::WatchRetrying {
            what: "reading the fleet".into(),
            reason: "status 503".into(),
            pause: Duration::from_millis(1500),
        };
        assert!(warning(&retry).unwrap().contains("status 503"));
        assert!(line(&retry, OutputFormat::Json, "t").is_none());
        let left = Event::WatchReleaseFailed {
            release: r(5),
            reason: "images not built".into(),
        };
        assert!(
            warning(&left)
                .unwrap()
                .starts_with("release 5 (abc1234def)")
        );
        let flapping = Event::WatchFlapping {
            what: "the fleet's target release (10 → 11 → 10)".into(),
        };
        assert_eq!(
            warning(&flapping).unwrap(),
            "the fleet's target release (10 → 11 → 10) flaps: nothing is prepared until 3 \
             polls in a row show the same answer, and the polls keep their pace (reported \
             once until it holds)"
        );
        assert!(line(&flapping, OutputFormat::Json, "t").is_none());
        assert!(warning(&Event::WatchSteady { changes: 3 }).is_none());
    }
}
