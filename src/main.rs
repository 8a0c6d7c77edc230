//! `balena-release-update`: the command-line front end of the `balena-release`
//! library. It turns flags and balena CLI settings into a client, runs one
//! describe, prepare or wait, prints the result on stdout and everything else
//! on stderr, and maps the outcome to an exit code.

mod budget;
mod cli;
mod config;
mod env_vars;
mod failure;
mod hints;
mod printer;
mod progress;
mod render;
mod run;
mod signals;
mod watch;
mod wording;

use std::process::ExitCode;

use clap::error::ErrorKind;

use crate::cli::{Args, Typed};
use crate::failure::Failure;
use crate::printer::Printer;

fn main() -> ExitCode {
    let words: Vec<String> = std::env::args_os()
        .map(|w| w.to_string_lossy().into_owned())
        .collect();
    if cli::is_bare_version_request(&words) {
        return Printer::stdout_line(env!("CARGO_PKG_VERSION"));
    }
    // clap reads BALENA_RELEASE_UPDATE_ALLOW_HTTP itself: a value that is not
    // UTF-8 must be named before it does.
    if let Err(err) = balena_session::settings::Environment::from_process().check_unicode() {
        Printer::error(&err.to_string());
        return ExitCode::FAILURE;
    }
    // No arguments at all: the short help, then the usage error (stdout
    // stays empty for scripts).
    if words.len() == 1 {
        use clap::CommandFactory;
        Printer::stderr_text(&format!("{}\n", Args::command().render_help()));
        return run::fail(
            &Failure::Config(
                "nothing to do: give --from-release and --to-release, or --fleet".to_owned(),
            ),
            &Typed::default(),
        );
    }
    let (args, typed) = match cli::parse(std::env::args_os()) {
        Ok(parsed) => parsed,
        Err(err) => return usage_error(err),
    };
    run::main(args, &typed)
}

/// clap's help and version go to stdout with exit 0; a usage mistake becomes
/// one `ERROR:` line (exit 1, as the npm tool does) and a pointer to `--help`.
fn usage_error(err: clap::Error) -> ExitCode {
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => Printer::stdout_outcome(err.print()),
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            ExitCode::FAILURE
        }
        _ => {
            // The first paragraph is the reason (with clap's list of possible
            // values, when it has one), joined into one line; clap's "a
            // similar argument exists" tip becomes the hint.
            let rendered = err.render().to_string();
            let reason = rendered.split("\n\n").next().unwrap_or("invalid arguments");
            let reason = reason.strip_prefix("error: ").unwrap_or(reason);
            let message = reason.lines().map(str::trim).collect::<Vec<_>>().join(" ");
            let tip = rendered
                .lines()
                .map(str::trim)
                .find_map(|line| line.strip_prefix("tip: "))
                .map(str::to_owned);
            run::fail(
                &Failure::Usage {
                    message: format!("{message} (run with --help for usage)"),
                    tip,
                },
                &Typed::default(),
            )
        }
    }
}
