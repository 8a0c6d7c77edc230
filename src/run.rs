//! One run of the tool: settings and token to a client, the requested mode
//! to a library call, the library's answer to stdout and an exit code.

use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use balena_release::{Client, Error, Event, PollPolicy, PrepareOptions, Report, RetryPolicy};
use secrecy::SecretString;
use tokio::time::Instant;

use crate::cli::{Args, MAX_TIMEOUT, Mode, OutputFormat, Target, parse_timeout};
use crate::env_vars;
use crate::printer::Printer;
use crate::render::{self, Progress};
use crate::settings::{self, Environment};
use crate::token;

/// Exit code of a run that hit `--timeout` (its last known state is printed).
const EXIT_TIMEOUT: u8 = 2;

pub fn main(args: Args) -> ExitCode {
    let started = Instant::now();
    if let Some(what) = args.generate {
        return match crate::cli::generate(what)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        {
            Ok(text) => print_text(&text),
            Err(err) => {
                Printer::error(&format!("cannot generate {what:?}: {err}"));
                ExitCode::FAILURE
            }
        };
    }
    let printer = Printer::new(args.quiet, args.verbose);
    init_logging(args.verbose);

    let target = match args.target() {
        Ok(target) => target,
        Err(message) => {
            Printer::error(&message);
            return ExitCode::FAILURE;
        }
    };
    let env = Environment::from_process();
    let client = match build_client(&env, &args, &printer) {
        Ok(client) => client,
        Err(message) => {
            Printer::error(&message);
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            Printer::error(&format!("cannot start the async runtime: {err}"));
            return ExitCode::FAILURE;
        }
    };
    let mode = args.mode();
    let options = match prepare_options(&env, &mode, started) {
        Ok(options) => options,
        Err(message) => {
            Printer::error(&message);
            return ExitCode::FAILURE;
        }
    };
    let progress = Mutex::new(Progress::new(printer, started, options.deadline));
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

    let outcome = runtime.block_on(async {
        let work = async {
            match (&target, &mode) {
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
        None => {
            if let Some(report) = last_read.into_inner().ok().flatten() {
                let _ = print_report(&report, args.output);
            }
            Printer::error("interrupted");
            ExitCode::from(130)
        }
        Some(Ok(report)) => print_report(&report, args.output),
        Some(Err(err)) => report_error(&err, &mode, args.output),
    }
}

/// What to do about an error, in this tool's terms (its flags, variables and
/// the balena CLI), where the library's message cannot say it.
fn hint(err: &Error) -> Option<&'static str> {
    use balena_release::{Server, TokenProblem};
    match err {
        Error::InvalidToken {
            problem: TokenProblem::Empty,
        }
        | Error::Unauthorized {
            server: _,
            with_token: false,
        } => Some("log in with `balena login` or set BALENA_RELEASE_UPDATE_TOKEN"),
        Error::InvalidToken { .. } => Some("log in again with `balena login`"),
        Error::Unauthorized {
            server: Server::Api,
            with_token: true,
        } => Some("log in again with `balena login` or set BALENA_RELEASE_UPDATE_TOKEN"),
        Error::Unauthorized {
            server: Server::Delta,
            with_token: true,
        } => Some("log in again with `balena login`"),
        Error::NoDeltas { .. } => Some("describe the update without --prepare or --wait"),
        _ => None,
    }
}

fn print_report(report: &Report, format: OutputFormat) -> ExitCode {
    print_text(&match format {
        OutputFormat::Json => render::json(report),
        OutputFormat::Table => render::table(report),
    })
}

fn print_text(text: &str) -> ExitCode {
    match Printer::result(text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            Printer::error(&format!("cannot write the result to stdout: {err}"));
            ExitCode::FAILURE
        }
    }
}

/// Prints the error line, its causes and a hint; a timeout or a failed delta
/// still prints the last known state on stdout, so nothing is lost.
fn report_error(err: &Error, mode: &Mode, format: OutputFormat) -> ExitCode {
    if let Some(report) = err.last_state() {
        let _ = print_report(report, format);
    }
    match err {
        Error::Timeout { .. } => {
            let timeout = match mode {
                Mode::Wait { timeout } => timeout.unwrap_or(MAX_TIMEOUT),
                _ => MAX_TIMEOUT,
            };
            Printer::error(&format!(
                "timed out after {}s before every delta was ready",
                timeout.as_secs()
            ));
            Printer::detail(
                "hint",
                "the deltas keep building: run again later, or give a longer --timeout",
            );
        }
        _ => {
            Printer::error(&err.to_string());
            let mut source = std::error::Error::source(err);
            while let Some(cause) = source {
                Printer::detail("caused by", &cause.to_string());
                source = cause.source();
            }
            if let Some(hint) = hint(err) {
                Printer::detail("hint", hint);
            }
        }
    }
    if matches!(err, Error::Timeout { .. }) {
        ExitCode::from(EXIT_TIMEOUT)
    } else {
        ExitCode::FAILURE
    }
}

fn build_client(env: &Environment, args: &Args, printer: &Printer) -> Result<Client, String> {
    let resolved = settings::resolve(env).map_err(|err| err.to_string())?;
    for warning in &resolved.warnings {
        printer.warning(warning);
    }
    let settings = resolved.settings;
    let found = token::find(env, &settings.data_directory)?;
    if let Some(warning) = &found.warning {
        printer.warning(warning);
    }
    let api_url = parse_url(&settings.api_url, "apiUrl", env_vars::BALENARC_API_URL)?;
    let delta_url = parse_url(
        &settings.delta_url,
        "deltaUrl",
        env_vars::BALENARC_DELTA_URL,
    )?;
    tracing::debug!(
        api = %without_userinfo(api_url.as_str()),
        delta = %without_userinfo(delta_url.as_str()),
        token_source = %found.source,
        "settings resolved"
    );
    let mut retry = RetryPolicy::default();
    if let Some(value) = env.var(env_vars::RETRY_INTERVAL) {
        let initial = parse_poll_interval(value)
            .map_err(|why| format!("{} `{value}` is invalid: {why}", env_vars::RETRY_INTERVAL))?;
        retry = RetryPolicy {
            initial,
            max: initial.saturating_mul(16),
            ..retry
        };
    }
    let secret: SecretString = found.secret;
    Client::builder()
        .retry_policy(retry)
        .api_url(api_url)
        .delta_url(delta_url)
        .token(Some(secret))
        .allow_insecure_http(args.allow_http)
        .user_agent(format!(
            "balena-release-update/{}",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
        .map_err(|err| match err {
            Error::InvalidToken { .. } => format!(
                "{err} (the token from {}): {}",
                found.source,
                hint(&err).unwrap_or_default()
            ),
            Error::InsecureUrl { .. } => format!(
                "{err}, or pass --allow-http (or set {}=1) to send the token unencrypted",
                env_vars::ALLOW_HTTP
            ),
            _ => err.to_string(),
        })
}

fn parse_url(value: &str, key: &str, variable: &str) -> Result<url::Url, String> {
    url::Url::parse(value).map_err(|err| {
        format!(
            "setting `{key}` is not a URL (`{}`: {err}): fix it in balenarc.yml or {variable}",
            without_userinfo(value)
        )
    })
}

/// A URL as text with any `user:password@` replaced, for logs and messages.
fn without_userinfo(url: &str) -> std::borrow::Cow<'_, str> {
    let start = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    match url[start..authority_end].rfind('@') {
        Some(at) => format!("{}***@{}", &url[..start], &url[start + at + 1..]).into(),
        None => url.into(),
    }
}

fn prepare_options(
    env: &Environment,
    mode: &Mode,
    started: Instant,
) -> Result<PrepareOptions, String> {
    let mut options = PrepareOptions {
        wait: matches!(mode, Mode::Wait { .. }),
        // Without --timeout, a wait still ends after a day, as the npm tool's does.
        deadline: match mode {
            Mode::Wait { timeout } => Some(started + timeout.unwrap_or(MAX_TIMEOUT)),
            _ => None,
        },
        ..PrepareOptions::default()
    };
    if let Some(value) = env.var(env_vars::POLL_INTERVAL) {
        let interval = parse_poll_interval(value)
            .map_err(|why| format!("{} `{value}` is invalid: {why}", env_vars::POLL_INTERVAL))?;
        options.poll = PollPolicy {
            initial: interval,
            max: interval,
            ..options.poll
        };
    }
    Ok(options)
}

/// `250ms` or any `--timeout` form.
fn parse_poll_interval(value: &str) -> Result<Duration, String> {
    match value.strip_suffix("ms") {
        Some(ms) => ms
            .parse::<u64>()
            .ok()
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis)
            .ok_or_else(|| "use milliseconds such as `200ms` or seconds such as `2s`".to_owned()),
        None => parse_timeout(value),
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => return,
        1 => "balena_release=info,balena_release_update=info",
        _ => "balena_release=debug,balena_release_update=debug",
    };
    let filter = tracing_subscriber::EnvFilter::new(default);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os(env_vars::NO_COLOR).is_none(),
        )
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::without_userinfo;

    #[test]
    fn userinfo_is_hidden() {
        assert_eq!(
            without_userinfo("https://api.example.com/x@y"),
            "https://api.example.com/x@y"
        );
        assert_eq!(
            without_userinfo("https://u:p@api.example.com/"),
            "https://***@api.example.com/"
        );
        assert_eq!(without_userinfo("u:p@host"), "***@host");
        assert_eq!(without_userinfo("https://é:p@[bad"), "https://***@[bad");
    }
}
