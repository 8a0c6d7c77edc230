//! One run of the tool: resolve its configuration, execute the requested mode
//! through the library, render the answer on stdout. Every failure leaves
//! through one exit: the newest state read (if any) on stdout, its error
//! line, causes and hint on stderr. Describe and `--prepare` end within a
//! bound; Ctrl-C, SIGTERM and SIGHUP stop any mode the same way.

use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use balena_release::{Event, Report};

use crate::budget;
use crate::cli::{Args, Mode, OutputFormat, Typed};
use crate::config::{Config, interval_knob};
use crate::env_vars;
use crate::failure::Failure;
use crate::hints;
use crate::printer::Printer;
use crate::progress::{Progress, Task};
use crate::render;
use crate::signals::stop_signal;
use balena_session::settings::Environment;

pub fn main(args: Args, typed: &Typed) -> ExitCode {
    if let Some(what) = args.generate {
        return match crate::cli::generate(what) {
            Ok(bytes) => print_text(&String::from_utf8_lossy(&bytes)),
            Err(err) => fail(
                &Failure::Config(format!("cannot generate {what:?}: {err}")),
                typed,
            ),
        };
    }
    let env = Environment::from_process();
    let columns = stdout_columns(&env);
    // The newest state read, printed when the run fails after reading it.
    let last_read: Mutex<Option<Report>> = Mutex::new(None);
    let outcome = Config::resolve(&args, &env).and_then(|config| {
        if config.mode == Mode::Watch {
            return crate::watch::run(&config);
        }
        let bound = interval_knob(&env, env_vars::RUN_LIMIT)?.unwrap_or(RUN_LIMIT);
        let report = execute(&config, bound, &last_read)?;
        print_report(&report, config.output.format, columns, args.max_download)
            .map_err(Failure::Write)?;
        let ran = hints::Ran::new(typed, config.mode.clone(), config.client.has_no_deltas());
        after_result(&report, &ran, args.max_download, config.output.printer)
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let read = last_read.into_inner().ok().flatten();
            // A failed write of the result is not retried, and a result over
            // the budget is already printed.
            if !matches!(failure, Failure::Write(_) | Failure::OverBudget { .. })
                && let Some(report) = failure.last_state().or(read.as_ref())
            {
                let _ = print_report(report, args.output, columns, args.max_download);
            }
            fail(&failure, typed)
        }
    }
}

/// What follows a printed result: the check against `--max-download`
/// (a failure whose hint is the next step), else the next step as a `hint:`
/// line on stderr unless `--quiet`.
fn after_result(
    report: &Report,
    ran: &hints::Ran,
    max_download: Option<u64>,
    printer: Printer,
) -> Result<(), Failure> {
    let next_step = hints::next_step(report, ran);
    if let Some(message) = max_download.and_then(|limit| budget::check(report, limit)) {
        return Err(Failure::OverBudget { message, next_step });
    }
    if let Some(hint) = next_step
        && !printer.quiet
    {
        Printer::hint(&hint);
    }
    Ok(())
}

/// How long describe and `--prepare` may take in all (a wait ends at its
/// `--timeout` instead): retries of a slow or failing server end there.
pub const RUN_LIMIT: Duration = Duration::from_secs(120);

/// Runs the configured mode, showing progress on stderr while it waits and
/// keeping the newest state read in `last_read`. Describe and `--prepare`
/// give up after `bound`.
fn execute(
    config: &Config,
    bound: Duration,
    last_read: &Mutex<Option<Report>>,
) -> Result<Report, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Failure::Runtime)?;
    let options = config.prepare_options();
    let task = match config.mode {
        Mode::Describe => Task::Describe,
        Mode::Prepare => Task::Prepare,
        // `--watch` runs in `watch::run`, with its own lines.
        Mode::Wait { .. } | Mode::Watch => Task::Wait,
    };
    let progress = Mutex::new(Progress::new(
        config.output.printer,
        task,
        config.started,
        config.deadline,
        config.output.status_gap,
    ));
    let on_event = |event: Event| {
        let read = match &event {
            Event::Round { report, .. } => Some((**report).clone()),
            _ => None,
        };
        if let (Some(read), Ok(mut last)) = (read, last_read.lock()) {
            *last = Some(read);
        }
        if let Ok(mut progress) = progress.lock() {
            progress.event(&event);
        }
    };

    let client = &config.client;
    let outcome = runtime.block_on(async {
        let prepare = (config.mode != Mode::Describe).then_some(&options);
        let work = client.report(&config.target, prepare, &on_event);
        let bounded = async {
            match config.mode {
                Mode::Wait { .. } | Mode::Watch => Ok(work.await),
                Mode::Describe | Mode::Prepare => {
                    tokio::time::timeout_at(config.started + bound, work).await
                }
            }
        };
        let stopped = async {
            tokio::select! {
                result = bounded => result.map_err(|_| Failure::GaveUp { after: bound }),
                signal = stop_signal() => Err(Failure::Interrupted(signal)),
            }
        };
        let period = progress.lock().ok().and_then(|p| p.tick_period());
        tick_until(stopped, period, || {
            if let Ok(mut progress) = progress.lock() {
                progress.tick();
            }
        })
        .await
    });
    // A DNS lookup runs on a blocking thread that cannot be cancelled: do not
    // let it hold the exit past the deadline.
    runtime.shutdown_timeout(Duration::from_millis(100));
    if let Ok(mut progress) = progress.lock() {
        progress.finish();
    }
    outcome?.map_err(|error| Failure::from_library(error, config.timeout()))
}

/// Runs `work` to its end, calling `tick` every `period` meanwhile (the
/// progress shown moves between the library's events: elapsed time,
/// countdown, spinner, paced status lines); with no period, just `work`.
async fn tick_until<T>(
    work: impl Future<Output = T>,
    period: Option<Duration>,
    mut tick: impl FnMut(),
) -> T {
    let Some(period) = period else {
        return work.await;
    };
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => return done,
            _ = ticker.tick() => tick(),
        }
    }
}

/// The one way out of a failed run (once `main` has printed the last state
/// read, if the failure carries one, so that nothing is lost on stdout):
/// `ERROR: <message>`, a `caused by:` line per cause and an optional `hint:`
/// on stderr, and the failure's exit code.
pub fn fail(failure: &Failure, typed: &Typed) -> ExitCode {
    Printer::error(&failure.to_string());
    for cause in causes(failure) {
        Printer::detail("caused by", &cause);
    }
    if let Some(hint) = hints::hint(failure, typed) {
        Printer::detail("hint", &hint);
    }
    ExitCode::from(failure.exit_code())
}

/// The messages of an error's sources, outermost first.
fn causes(error: &dyn std::error::Error) -> Vec<String> {
    std::iter::successors(error.source(), |cause| cause.source())
        .map(ToString::to_string)
        .collect()
}

/// The result on stdout; Markdown, for CI, says the `--max-download`
/// verdict too.
fn print_report(
    report: &Report,
    format: OutputFormat,
    columns: usize,
    max_download: Option<u64>,
) -> std::io::Result<()> {
    Printer::result(&match format {
        OutputFormat::Json => render::json(report),
        OutputFormat::Table => render::table(report, columns),
        OutputFormat::Markdown => render::markdown(report, max_download),
    })
}

/// The width tables are laid out for: `$COLUMNS` when it is a number, else
/// the terminal's when stdout is one, else 80 (a file, a pipe, a CI log).
fn stdout_columns(env: &Environment) -> usize {
    env.var(env_vars::COLUMNS)
        .and_then(|value| value.trim().parse::<usize>().ok())
        .filter(|&columns| columns > 0)
        .or_else(|| {
            terminal_size::terminal_size_of(std::io::stdout())
                .map(|(width, _)| usize::from(width.0))
        })
        .unwrap_or(80)
}

fn print_text(text: &str) -> ExitCode {
    match Printer::result(text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&Failure::Write(err), &Typed::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::causes;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn every_cause_is_listed_outermost_first() {
        let error = Layer(
            "top",
            Some(Box::new(Layer(
                "middle",
                Some(Box::new(Layer("root", None))),
            ))),
        );
        assert_eq!(causes(&error), ["middle", "root"]);
        assert!(causes(&Layer("alone", None)).is_empty());
    }
}
