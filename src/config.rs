//! This run's configuration: the flags, the balena CLI's settings, the token
//! and the environment's knobs resolved once into one value, so that the rest
//! of the run reads fields instead of the process. A new flag is declared in
//! `cli`, becomes one field here and is used where the run needs it.

use std::io::IsTerminal;
use std::time::Duration;

use balena_release::{
    Client, Error, PollPolicy, PrepareOptions, RetryPolicy, Target, TokenProblem, redact_secrets,
    redact_url,
};
use tokio::time::Instant;
use url::Url;

use crate::cli::{Args, ColorChoice, MAX_TIMEOUT, Mode, OutputFormat, parse_timeout};
use crate::env_vars;
use crate::failure::Failure;
use crate::printer::Printer;
use balena_session::settings::{self, Environment};
use balena_session::token::{self, TokenSource};

/// Everything one run needs, decided before the first request.
pub struct Config {
    /// One transition or a whole fleet.
    pub target: Target,
    /// Describe, prepare or wait.
    pub mode: Mode,
    /// What goes to stdout and stderr, and how.
    pub output: Output,
    pub api_url: Url,
    pub delta_url: Url,
    /// Where the token came from (the token itself is only in `client`).
    pub token_source: TokenSource,
    /// Plain http to hosts other than loopback is allowed.
    pub allow_http: bool,
    /// Exact download sizes from the registry (off with `--no-registry`).
    pub registry: bool,
    /// Pauses between retries of a failed request.
    pub retry: RetryPolicy,
    /// Pauses between polls while waiting.
    pub poll: PollPolicy,
    /// When the run started: the origin of elapsed times and of the deadline.
    pub started: Instant,
    /// When a wait gives up.
    pub deadline: Option<Instant>,
    /// The library client, built from the fields above.
    pub client: Client,
}

/// Where the run's text goes and how much of it there is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    /// The result's format on stdout.
    pub format: OutputFormat,
    /// What stderr shows: quiet, live progress, colour.
    pub printer: Printer,
    /// `-v` count: 0 no logs, 1 info, 2 and more debug.
    pub verbosity: u8,
    /// Logs are coloured.
    pub color_logs: bool,
    /// The minimum gap between plain status lines (10 s; shorter in tests).
    pub status_gap: Duration,
}

impl Output {
    /// `stderr_is_terminal` is the one fact that is not in `env`.
    pub fn resolve(args: &Args, env: &Environment, stderr_is_terminal: bool) -> Output {
        // `Environment::var` treats an empty value as unset.
        let ci = env
            .var(env_vars::CI)
            .is_some_and(|v| v != "false" && v != "0");
        // A terminal that shows escape sequences instead of obeying them.
        let dumb = env.var(env_vars::TERM).is_some_and(|term| term == "dumb");
        let color = match args.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto if env.var(env_vars::NO_COLOR).is_some() => false,
            ColorChoice::Auto if env.var(env_vars::CLICOLOR_FORCE).is_some_and(|v| v != "0") => {
                true
            }
            ColorChoice::Auto => stderr_is_terminal && !dumb,
        };
        Output {
            format: args.output,
            printer: Printer::new(
                args.quiet,
                args.verbose,
                stderr_is_terminal,
                dumb,
                ci,
                color,
            ),
            verbosity: args.verbose,
            color_logs: color,
            status_gap: crate::progress::STATUS_GAP,
        }
    }
}

impl Config {
    /// Resolves the run's configuration and builds its client. Logging starts
    /// and warnings are shown as soon as they are known, so that a warning
    /// still shows when a later step fails.
    pub fn resolve(args: &Args, env: &Environment) -> Result<Config, Failure> {
        let started = Instant::now();
        let mut output = Output::resolve(args, env, std::io::stderr().is_terminal());
        if let Some(gap) = interval_knob(env, env_vars::STATUS_INTERVAL)? {
            output.status_gap = gap;
        }
        init_logging(&output);
        let target = args.target().map_err(Failure::Config)?;
        args.check_output().map_err(Failure::Config)?;
        let mode = args.mode();

        let resolved = settings::resolve(env).map_err(|err| Failure::Config(err.to_string()))?;
        for warning in &resolved.warnings {
            output.printer.warning(warning);
        }
        let settings = resolved.settings;
        let found = token::find(env, &settings.data_directory)
            .map_err(|err| Failure::Config(err.message))?;
        if let Some(warning) = &found.warning {
            output.printer.warning(warning);
        }
        check_proxies(env)?;
        let api_url = parse_url(&settings.api_url, "apiUrl", env_vars::BALENARC_API_URL)?;
        let delta_url = parse_url(
            &settings.delta_url,
            "deltaUrl",
            env_vars::BALENARC_DELTA_URL,
        )?;
        let mut retry = RetryPolicy::default();
        if let Some(initial) = interval_knob(env, env_vars::RETRY_INTERVAL)? {
            retry = RetryPolicy {
                initial,
                max: initial.saturating_mul(16),
                ..retry
            };
        }
        let allow_http = args.allow_http;
        let registry = !args.no_registry;
        let registry_map = registry_map(env)?;
        let client = Client::builder()
            .registry(registry)
            .registry_map(registry_map)
            .retry_policy(retry)
            .api_url(api_url.clone())
            .delta_url(delta_url.clone())
            .token(Some(found.secret))
            .allow_insecure_http(allow_http)
            .user_agent(format!(
                "balena-release-update/{}",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|err| Failure::Config(client_error(&err, &found.source)))?;

        let mut poll = PollPolicy::default();
        if let Some(interval) = interval_knob(env, env_vars::POLL_INTERVAL)? {
            poll = PollPolicy {
                initial: interval,
                max: interval,
                ..poll
            };
        }
        // Without --timeout, a wait still ends after a day, as the npm tool's does.
        let deadline = match mode {
            Mode::Wait { timeout } => Some(started + timeout.unwrap_or(MAX_TIMEOUT)),
            _ => None,
        };
        let config = Config {
            target,
            mode,
            output,
            api_url,
            delta_url,
            token_source: found.source,
            allow_http,
            registry,
            retry,
            poll,
            started,
            deadline,
            client,
        };
        tracing::debug!(
            api = %redact_url(&config.api_url),
            delta = %redact_url(&config.delta_url),
            token_source = %config.token_source,
            allow_http = config.allow_http,
            registry = config.registry,
            retry = ?config.retry,
            "settings resolved"
        );
        Ok(config)
    }

    /// The library's options for a prepare or a wait.
    pub fn prepare_options(&self) -> PrepareOptions {
        PrepareOptions {
            wait: matches!(self.mode, Mode::Wait { .. }),
            deadline: self.deadline,
            poll: self.poll,
            ..PrepareOptions::default()
        }
    }

    /// How long a wait may last, as the user gave it.
    pub fn timeout(&self) -> Duration {
        match self.mode {
            Mode::Wait {
                timeout: Some(timeout),
            } => timeout,
            _ => MAX_TIMEOUT,
        }
    }
}

/// A client that cannot be built, explained with what only the CLI knows:
/// where the token came from, and the flag that allows plain http.
fn client_error(err: &Error, token_source: &TokenSource) -> String {
    match err {
        Error::InvalidToken { problem } => {
            let fix = match problem {
                TokenProblem::Empty => {
                    "log in with `balena login` or set BALENA_RELEASE_UPDATE_TOKEN"
                }
                _ => "log in again with `balena login`",
            };
            format!("{err} (the token from {token_source}): {fix}")
        }
        // A registry mirror gets no balena token: only its traffic is at stake.
        Error::InsecureUrl { what, .. } if what.contains("registry") => format!(
            "{err}, or pass --allow-http (or set {}=1) to read it unencrypted",
            env_vars::ALLOW_HTTP
        ),
        Error::InsecureUrl { .. } => format!(
            "{err}, or pass --allow-http (or set {}=1) to send the token unencrypted",
            env_vars::ALLOW_HTTP
        ),
        _ => err.to_string(),
    }
}

fn parse_url(value: &str, key: &str, variable: &str) -> Result<Url, Failure> {
    Url::parse(value).map_err(|err| {
        Failure::Config(format!(
            "setting `{key}` is not a URL (`{}`: {err}): fix it in balenarc.yml or {variable}",
            redact_secrets(value, None)
        ))
    })
}

/// Refuses a proxy variable the HTTP client would silently ignore (and then
/// connect directly): not a URL, no host, or a scheme it cannot speak.
fn check_proxies(env: &Environment) -> Result<(), Failure> {
    for variable in env_vars::PROXIES {
        let Some(value) = env.var(variable).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        // A bare `host:port` means http, as curl and the HTTP client read it.
        let with_scheme = if value.contains("://") {
            value.to_owned()
        } else {
            format!("http://{value}")
        };
        let problem = match Url::parse(&with_scheme) {
            Err(err) => Some(err.to_string()),
            Ok(url) if !matches!(url.scheme(), "http" | "https") => Some(format!(
                "the scheme `{}` is not supported (use http:// or https://)",
                url.scheme()
            )),
            Ok(url) if url.host_str().is_none_or(str::is_empty) => Some("no host".to_owned()),
            Ok(_) => None,
        };
        if let Some(problem) = problem {
            return Err(Failure::Config(format!(
                "{variable} `{}` is not a usable proxy URL: {problem}; fix or unset it",
                redact_secrets(value, None)
            )));
        }
    }
    Ok(())
}

/// An interval from a hidden test knob (`POLL_INTERVAL`, `RETRY_INTERVAL`,
/// `RUN_LIMIT`).
pub fn interval_knob(env: &Environment, variable: &str) -> Result<Option<Duration>, Failure> {
    env.var(variable)
        .map(|value| {
            parse_interval(value)
                .map_err(|why| Failure::Config(format!("{variable} `{value}` is invalid: {why}")))
        })
        .transpose()
}

/// `250ms` or any `--timeout` form.
fn parse_interval(value: &str) -> Result<Duration, String> {
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

/// The registry host map from its variable: `host=url` pairs separated by
/// commas (parsed by `balena_session::registry_map`).
fn registry_map(env: &Environment) -> Result<Vec<(String, Url)>, Failure> {
    let Some(value) = env.var(env_vars::REGISTRY_MAP) else {
        return Ok(Vec::new());
    };
    balena_session::registry_map(env_vars::REGISTRY_MAP, value, |entry| {
        redact_secrets(entry, None).into_owned()
    })
    .map_err(Failure::Config)
}

fn init_logging(output: &Output) {
    let default = match output.verbosity {
        0 => return,
        1 => "balena_release=info,balena_release_update=info,balena_session=info",
        _ => "balena_release=debug,balena_release_update=debug,balena_session=debug",
    };
    let filter = tracing_subscriber::EnvFilter::new(default);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::printer::log_writer)
        .fmt_fields(crate::printer::log_fields())
        .with_ansi(output.color_logs)
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(words: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("balena-release-update").chain(words.iter().copied()))
            .unwrap()
    }

    fn env(vars: &[(&str, &str)]) -> Environment {
        env_in(std::path::Path::new("/nonexistent"), vars)
    }

    /// `vars`, with `dir` as home and working directory.
    fn env_in(dir: &std::path::Path, vars: &[(&str, &str)]) -> Environment {
        Environment::fake(Some(dir.to_owned()), dir.to_owned(), vars)
    }

    /// A token and loopback servers (never contacted), then `more`.
    fn with_servers<'a>(more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut vars = vec![
            (env_vars::TOKEN, "canaryTOKEN0123456789abcdef"),
            (env_vars::BALENARC_API_URL, "http://127.0.0.1:1/"),
            (env_vars::BALENARC_DELTA_URL, "http://127.0.0.1:2/"),
        ];
        vars.extend_from_slice(more);
        vars
    }

    /// The parsing is `balena_session::registry_map`'s, tested there; here,
    /// that the variable is read and a bad entry is a setting error whose
    /// credentials the CLI's own redaction hides.
    #[test]
    fn the_registry_map_comes_from_its_variable() {
        let map = registry_map(&env(&[(
            env_vars::REGISTRY_MAP,
            "registry2.balena-cloud.com=http://127.0.0.1:5000",
        )]))
        .unwrap_or_else(|_| panic!("the map parses"));
        assert_eq!(map.len(), 1);
        assert_eq!(map[0].1.as_str(), "http://127.0.0.1:5000/");
        assert!(registry_map(&env(&[])).is_ok_and(|m| m.is_empty()));
        let bad = "host=https://u:secret@mirror.example";
        let Err(Failure::Config(message)) = registry_map(&env(&[(env_vars::REGISTRY_MAP, bad)]))
        else {
            panic!("{bad} is refused");
        };
        assert!(message.contains(env_vars::REGISTRY_MAP), "{message}");
        assert!(!message.contains("secret"), "{message}");
        let config = Config::resolve(
            &args(&["--from-release", "1", "--to-release", "2", "--no-registry"]),
            &env(&with_servers(&[])),
        )
        .unwrap_or_else(|_| panic!("the settings resolve"));
        assert!(!config.registry);
    }

    #[test]
    fn userinfo_is_hidden() {
        let hidden = |url| redact_secrets(url, None).into_owned();
        assert_eq!(
            hidden("https://api.example.com/x@y"),
            "https://api.example.com/x@y"
        );
        assert_eq!(
            hidden("https://u:p@api.example.com/"),
            "https://[REDACTED]@api.example.com/"
        );
        assert_eq!(hidden("u:p@host"), "[REDACTED]@host");
    }

    #[test]
    fn printer_settings_come_from_the_environment_given() {
        let pair = ["--from-release", "1", "--to-release", "2"];
        let plain = Output::resolve(&args(&pair), &env(&[]), true);
        assert!(plain.printer.live && plain.printer.color && plain.color_logs);
        let ci = Output::resolve(&args(&pair), &env(&[(env_vars::CI, "true")]), true);
        assert!(!ci.printer.live && ci.printer.color);
        for off in ["false", "0", ""] {
            let output = Output::resolve(&args(&pair), &env(&[(env_vars::CI, off)]), true);
            assert!(output.printer.live, "CI={off:?} is not CI");
        }
        let no_color = Output::resolve(&args(&pair), &env(&[(env_vars::NO_COLOR, "1")]), true);
        assert!(no_color.printer.live && !no_color.printer.color && !no_color.color_logs);
        let piped = Output::resolve(&args(&pair), &env(&[]), false);
        assert!(!piped.printer.live && !piped.printer.color);
        let verbose = Output::resolve(&args(&[&pair[..], &["-v"]].concat()), &env(&[]), true);
        assert!(!verbose.printer.live, "logs replace live progress");
        assert_eq!(verbose.verbosity, 1);
        let quiet = Output::resolve(&args(&[&pair[..], &["-q"]].concat()), &env(&[]), true);
        assert!(quiet.printer.quiet && !quiet.printer.live && !quiet.printer.lines);
        assert!(!plain.printer.lines && ci.printer.lines && piped.printer.lines);
        assert!(!verbose.printer.lines, "-v logs report every change");
        let dumb = Output::resolve(&args(&pair), &env(&[(env_vars::TERM, "dumb")]), true);
        assert!(!dumb.printer.live && dumb.printer.lines);
        assert!(
            !dumb.printer.color && !dumb.color_logs,
            "no bold, no colour"
        );
        let xterm = Output::resolve(&args(&pair), &env(&[(env_vars::TERM, "xterm")]), true);
        assert!(xterm.printer.live && xterm.printer.color);
    }

    /// `--color auto` follows NO_COLOR, then CLICOLOR_FORCE, then the
    /// terminal; `always` and `never` override all of them.
    #[test]
    fn colour_follows_the_flag_then_no_color_then_clicolor_force() {
        let pair = ["--from-release", "1", "--to-release", "2"];
        let color = |flag: &str, vars: &[(&str, &str)], terminal: bool| {
            let words = [&pair[..], &["--color", flag]].concat();
            let output = Output::resolve(&args(&words), &env(vars), terminal);
            assert_eq!(output.printer.color, output.color_logs);
            output.printer.color
        };
        let no_color = (env_vars::NO_COLOR, "1");
        let force = (env_vars::CLICOLOR_FORCE, "1");
        let dumb = (env_vars::TERM, "dumb");
        assert!(color("auto", &[], true));
        assert!(!color("auto", &[], false));
        assert!(!color("auto", &[dumb], true));
        assert!(!color("auto", &[no_color], true));
        assert!(color("auto", &[force], false));
        assert!(!color("auto", &[(env_vars::CLICOLOR_FORCE, "0")], false));
        assert!(!color("auto", &[no_color, force], false), "NO_COLOR wins");
        assert!(color("always", &[no_color], false));
        assert!(!color("never", &[force], true));
        // Colour does not make a pipe live.
        let words = [&pair[..], &["--color", "always"]].concat();
        assert!(
            !Output::resolve(&args(&words), &env(&[]), false)
                .printer
                .live
        );
    }

    #[test]
    fn one_value_holds_the_whole_run() {
        let vars = with_servers(&[
            (env_vars::POLL_INTERVAL, "250ms"),
            (env_vars::RETRY_INTERVAL, "2s"),
        ]);
        let home = tempfile::tempdir().unwrap();
        let config = Config::resolve(
            &args(&["--fleet", "org/f", "--timeout", "90", "--output", "table"]),
            &env_in(home.path(), &vars),
        )
        .unwrap_or_else(|err| panic!("{err}"));
        assert!(matches!(config.target, Target::Fleet { to: None, .. }));
        assert_eq!(
            config.mode,
            Mode::Wait {
                timeout: Some(Duration::from_secs(90))
            }
        );
        assert_eq!(config.output.format, OutputFormat::Table);
        assert_eq!(config.api_url.as_str(), "http://127.0.0.1:1/");
        assert_eq!(config.delta_url.as_str(), "http://127.0.0.1:2/");
        assert_eq!(config.token_source, TokenSource::Variable);
        assert_eq!(config.poll.initial, Duration::from_millis(250));
        assert_eq!(config.poll.max, Duration::from_millis(250));
        assert_eq!(config.retry.initial, Duration::from_secs(2));
        assert_eq!(config.retry.max, Duration::from_secs(32));
        assert_eq!(config.timeout(), Duration::from_secs(90));
        assert_eq!(
            config.deadline,
            Some(config.started + Duration::from_secs(90))
        );
        let options = config.prepare_options();
        assert!(options.wait);
        assert_eq!(options.deadline, config.deadline);
    }

    #[test]
    fn a_bad_knob_names_the_variable() {
        let vars = with_servers(&[(env_vars::POLL_INTERVAL, "0ms")]);
        let home = tempfile::tempdir().unwrap();
        let err = Config::resolve(&args(&["--fleet", "org/f"]), &env_in(home.path(), &vars))
            .err()
            .expect("0ms is refused");
        let message = err.to_string();
        assert!(message.contains(env_vars::POLL_INTERVAL), "{message}");
        assert!(message.contains("200ms"), "{message}");
    }
}
