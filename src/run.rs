//! One run of the tool: resolve its configuration, execute the requested mode
//! through the library, render the answer on stdout. Every failure leaves
//! through one exit: its error line, causes and hint on stderr.

use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use balena_release::{Event, Report};

use crate::cli::{Args, Mode, OutputFormat, Target};
use crate::config::Config;
use crate::failure::Failure;
use crate::hints;
use crate::printer::Printer;
use crate::progress::Progress;
use crate::render;
use crate::settings::Environment;

pub fn main(args: Args) -> ExitCode {
    if let Some(what) = args.generate {
        return match crate::cli::generate(what) {
            Ok(bytes) => print_text(&String::from_utf8_lossy(&bytes)),
            Err(err) => fail(&Failure::Config(format!("cannot generate {what:?}: {err}"))),
        };
    }
    let env = Environment::from_process();
    let outcome = Config::resolve(&args, &env).and_then(|config| {
        let report = execute(&config)?;
        print_report(&report, config.output.format).map_err(Failure::Write)
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if let Some(report) = failure.last_state() {
                let _ = print_report(&report, args.output);
            }
            fail(&failure)
        }
    }
}

/// Runs the configured mode, showing progress on stderr while it waits.
fn execute(config: &Config) -> Result<Report, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Failure::Runtime)?;
    let options = config.prepare_options();
    let progress = Mutex::new(Progress::new(
        config.output.printer,
        config.started,
        config.deadline,
    ));
    // The newest state read, printed if the user interrupts the wait.
    let last_read: Mutex<Option<Report>> = Mutex::new(None);
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
        let work = async {
            match (&config.target, &config.mode) {
                (Target::Pair { from, to }, Mode::Describe) => client
                    .get_update_info(from, to)
                    .await
                    .map(Report::Transition),
                (Target::Pair { from, to }, _) => client
                    .prepare_update(from, to, &options, &on_event)
                    .await
                    .map(Report::Transition),
                (Target::Fleet { fleet, to }, Mode::Describe) => client
                    .get_fleet_update_info(fleet, to.as_ref())
                    .await
                    .map(Report::Fleet),
                (Target::Fleet { fleet, to }, _) => client
                    .prepare_fleet_update(fleet, to.as_ref(), &options, &on_event)
                    .await
                    .map(Report::Fleet),
            }
        };
        tokio::select! {
            result = work => Some(result),
            _ = tokio::signal::ctrl_c() => None,
        }
    });
    // A DNS lookup runs on a blocking thread that cannot be cancelled: do not
    // let it hold the exit past the deadline.
    runtime.shutdown_timeout(Duration::from_millis(100));
    if let Ok(mut progress) = progress.lock() {
        progress.finish();
    }
    match outcome {
        None => Err(Failure::Interrupted {
            last: last_read.into_inner().ok().flatten().map(Box::new),
        }),
        Some(result) => result.map_err(|error| Failure::from_library(error, config.timeout())),
    }
}

/// The one way out of a failed run (once `main` has printed the last state
/// read, if the failure carries one, so that nothing is lost on stdout):
/// `ERROR: <message>`, a `caused by:` line per cause and an optional `hint:`
/// on stderr, and the failure's exit code.
pub fn fail(failure: &Failure) -> ExitCode {
    Printer::error(&failure.to_string());
    for cause in causes(failure) {
        Printer::detail("caused by", &cause);
    }
    if let Some(hint) = hints::hint(failure) {
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

fn print_report(report: &Report, format: OutputFormat) -> std::io::Result<()> {
    Printer::result(&match format {
        OutputFormat::Json => render::json(report),
        OutputFormat::Table => render::table(report),
    })
}

fn print_text(text: &str) -> ExitCode {
    match Printer::result(text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&Failure::Write(err)),
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
