//! The command line: the npm tool's flags unchanged, plus output, verbosity
//! and fleet options. Parsing turns raw words into validated values, so a bad
//! argument fails before any request is made.

use std::time::Duration;

use balena_release::{FleetRef, ReleaseRef, Target};
use clap::{ArgAction, Parser, ValueEnum, ValueHint};

/// The longest `--timeout` accepted: the npm tool's implicit deadline.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// Examples that run as shown on balena-sim's demo fleet (`scripts/try.sh`);
/// a test runs each of them. Lines that start with the program's name are the
/// commands; a command longer than one line is continued with ` \` so that
/// it can be pasted as it is. Every line fits 80 columns.
macro_rules! examples {
    () => {
        "\
Examples (on balena-sim's demo fleet, in the shell of scripts/try.sh):
  What changes from release 900813 (named by a commit prefix) to
  900835, and is the update ready? (describes only: nothing is
  requested)
    balena-release-update --from-release 84d3d8f \\
      --to-release 900835 --output table

  Request the missing deltas, then wait up to 10 minutes until all
  are ready:
    balena-release-update --from-release 900813 --to-release 900835 \\
      --wait --timeout 10m

  Every transition the fleet's devices will make, each to its own
  target:
    balena-release-update --fleet gh_demo/kiosk-fleet --output table

  In CI: prepare them all, wait, and exit 3 if a device would download
  more than 500 MB:
    balena-release-update --fleet gh_demo/kiosk-fleet --wait \\
      --timeout 30m --max-download 500MB"
    };
}
pub const EXAMPLES: &str = examples!();

/// What follows the examples in `--help` and the man page.
macro_rules! notes {
    () => {
        "\
Settings come from balenarc.yml and BALENARC_* variables as for the
balena CLI; the token from `balena login` (~/.balena/token) or
BALENA_RELEASE_UPDATE_TOKEN. Without --wait a run gives up after 120s
(exit 1) when the servers do not answer."
    };
}
pub const NOTES: &str = notes!();

/// The exit codes, in `--help`, the man page and the README.
macro_rules! exit_codes {
    () => {
        "\
Exit codes:
  0    done (the result is on stdout); --watch stopped by SIGTERM
       or Ctrl-C
  1    error: one ERROR: line on stderr names the cause and the fix
  2    --timeout reached before every delta was ready
  3    over --max-download (the result is still printed; only
       replaces 0)
  130  interrupted with Ctrl-C (SIGINT)
  143  terminated (SIGTERM)
  129  hung up (SIGHUP)
After 2, 3 and the signals the last state read is still printed on
stdout."
    };
}
pub const EXIT_CODES: &str = exit_codes!();

/// Inspect and prepare the update of balenaCloud devices from one release to another.
///
/// Shows which services are new, changed, unchanged or removed, which image
/// deltas exist, are building or are missing, and how much a device
/// downloads. Without --prepare or --wait it only reads: nothing is
/// requested from the delta server.
#[derive(Debug, Parser)]
#[command(
    name = "balena-release-update",
    version,
    disable_version_flag = true,
    allow_negative_numbers = true,
    after_long_help = concat!(examples!(), "\n\n", notes!(), "\n\n", exit_codes!()),
    after_help = "Run with --help for examples and exit codes."
)]
pub struct Args {
    /// The release the devices run now: an id or a commit (6 to 40 hex characters)
    ///
    /// A commit is the full hash or a prefix that names one successful release.
    #[arg(long, value_name = "ID|COMMIT", value_parser = parse_release, value_hint = ValueHint::Other)]
    pub from_release: Option<ReleaseRef>,

    /// The release the devices will run: an id or a commit
    ///
    /// With --fleet: the target of the devices that follow the fleet, instead
    /// of the fleet's own target release (pinned devices keep their pin).
    #[arg(long, value_name = "ID|COMMIT", value_parser = parse_release, value_hint = ValueHint::Other)]
    pub to_release: Option<ReleaseRef>,

    /// Every transition of a fleet's devices (slug or id); alone it only describes
    ///
    /// Each device goes to its own target: its pin, else the fleet's target.
    /// With --prepare or --wait, every transition is prepared.
    #[arg(long, value_name = "SLUG|ID", value_parser = parse_fleet, conflicts_with = "from_release", value_hint = ValueHint::Other)]
    pub fleet: Option<FleetRef>,

    /// Request every missing delta, then show the state (does not wait)
    ///
    /// The delta server builds them; the builds go on without this tool.
    #[arg(long)]
    pub prepare: bool,

    /// Like --prepare, then wait until every delta is ready
    ///
    /// At most --timeout (24h without it); then exit 2 with the last state read.
    #[arg(long)]
    pub wait: bool,

    /// Stop waiting after this long (exit 2): 600, 90s, 10m, 1h30m; implies --wait
    ///
    /// Whole seconds (600) or units, largest first (90s, 10m, 1h30m), at most
    /// 24h.
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout, value_hint = ValueHint::Other)]
    pub timeout: Option<Duration>,

    /// Exit 3 if a device would download more than SIZE: 50MB, 1.5GiB, bytes
    ///
    /// Checked after the run, per transition, for one device updating now: the
    /// exact download from the registry when known, else the image sizes with
    /// every delta that is not ready counted in full; a size not known at all
    /// counts as more. The result is still printed. SIZE is bytes, or a number
    /// and kB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of
    /// 1024).
    // A negative size is read as a value, so that the error says what it is.
    #[arg(long, value_name = "SIZE", value_parser = crate::budget::parse_size, value_hint = ValueHint::Other, allow_hyphen_values = true)]
    pub max_download: Option<u64>,

    /// With --fleet: keep running, and prepare each new release as it appears
    ///
    /// Whenever the fleet gets a new successful release or a new target,
    /// every transition to it is prepared and followed, one line per event
    /// on stdout. An idle check costs one API request. SIGTERM or Ctrl-C end
    /// it with exit 0.
    #[arg(long, requires = "fleet", conflicts_with_all = ["wait", "timeout", "from_release", "to_release", "max_download"])]
    pub watch: bool,

    /// How to print the result on stdout
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = OutputFormat::Json)]
    pub output: OutputFormat,

    /// Print nothing on stderr but errors and their hints
    ///
    /// No progress, no warnings, no hint after a result.
    #[arg(long, short, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Print diagnostic logs on stderr (-vv for more)
    ///
    /// Each request and retry, and the delta server's answers. `-v` alone prints
    /// the version, as the npm tool does.
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,

    /// When to colour stderr: auto, always or never
    ///
    /// auto: on a terminal (not TERM=dumb), unless NO_COLOR is set; with
    /// CLICOLOR_FORCE set (not 0), also when stderr is not a terminal.
    /// always and never override both variables. ERROR is red and bold,
    /// warning yellow, hints dim.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    /// Allow plain http:// to hosts other than loopback (the token travels unencrypted)
    #[arg(long, env = crate::env_vars::ALLOW_HTTP, value_parser = clap::builder::BoolishValueParser::new(), action = ArgAction::SetTrue)]
    pub allow_http: bool,

    /// Send no registry request (no exact download sizes)
    ///
    /// Sizes are then the API's image sizes, not the exact download.
    #[arg(long)]
    pub no_registry: bool,

    /// Print shell completions or the man page on stdout, then exit
    #[arg(
        long,
        value_enum,
        value_name = "WHAT",
        hide_short_help = true,
        long_help = "Print shell completions or the man page on stdout, then exit"
    )]
    pub generate: Option<Generate>,

    /// Print the version (also -v alone, as the npm tool does)
    #[arg(short = 'V', long, action = ArgAction::Version)]
    pub version: Option<bool>,
}

/// What `--generate` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Generate {
    /// Completions for bash
    Bash,
    /// Completions for zsh
    Zsh,
    /// Completions for fish
    Fish,
    /// Completions for elvish
    Elvish,
    /// Completions for PowerShell
    Powershell,
    /// A man page (roff)
    Man,
}

/// Shell completions or the man page, generated from the flag definitions.
/// Completions offer flags and fixed values only (never file names: every
/// value that is not a fixed choice has `ValueHint::Other`).
pub fn generate(what: Generate) -> std::io::Result<Vec<u8>> {
    use clap::CommandFactory;
    use clap_complete::Shell;
    let mut command = Args::command();
    let mut out = Vec::new();
    let shell = match what {
        Generate::Man => return man_page(command),
        Generate::Bash => Shell::Bash,
        Generate::Zsh => Shell::Zsh,
        Generate::Fish => Shell::Fish,
        Generate::Elvish => Shell::Elvish,
        Generate::Powershell => Shell::PowerShell,
    };
    clap_complete::generate(shell, &mut command, "balena-release-update", &mut out);
    Ok(out)
}

/// The man page: clap_mangen's title, name, description and options, with
/// a synopsis that shows each flag's value and the examples, notes and exit
/// codes as preformatted text (not filled, not hyphenated).
fn man_page(command: clap::Command) -> std::io::Result<Vec<u8>> {
    let mut command = command;
    command.build();
    let synopsis = man_synopsis(&command);
    let man = clap_mangen::Man::new(command);
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    // Flags and values are never broken across lines, nor spread out.
    out.extend_from_slice(b".nh\n.ad l\n");
    man.render_name_section(&mut out)?;
    out.extend_from_slice(synopsis.as_bytes());
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    let (heading, examples) = EXAMPLES.split_once('\n').unwrap_or(("", EXAMPLES));
    let heading = heading.trim_end_matches(':');
    let (_, exit_codes) = EXIT_CODES.split_once('\n').unwrap_or(("", EXIT_CODES));
    for (title, intro, text) in [
        (
            "EXAMPLES",
            heading.strip_prefix("Examples ").unwrap_or(""),
            examples,
        ),
        ("ENVIRONMENT", "", NOTES),
        ("EXIT STATUS", "", exit_codes),
    ] {
        out.extend_from_slice(format!(".SH \"{title}\"\n").as_bytes());
        if !intro.is_empty() {
            let intro = intro.trim_start_matches('(').trim_end_matches(')');
            let intro = format!("{}{}.", intro[..1].to_uppercase(), &intro[1..]);
            out.extend_from_slice(format!("{}\n", roff_text(&intro)).as_bytes());
        }
        out.extend_from_slice(roff_preformatted(text).as_bytes());
    }
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// `.SH SYNOPSIS` with every flag and its value:
/// `[--from-release ID|COMMIT] … [-q|--quiet] [-v|--verbose]...`.
fn man_synopsis(command: &clap::Command) -> String {
    let mut words = Vec::new();
    for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
        let mut word = match (arg.get_short(), arg.get_long()) {
            (Some(short), Some(long)) => format!("\\fB\\-{short}\\fR|\\fB\\-\\-{long}\\fR"),
            (None, Some(long)) => format!("\\fB\\-\\-{}\\fR", roff_text(long)),
            (Some(short), None) => format!("\\fB\\-{short}\\fR"),
            (None, None) => continue,
        };
        let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values())
            && !matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::Count);
        if takes_value {
            let value = match arg.get_value_names() {
                Some(names) => names
                    .iter()
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                None => arg.get_id().as_str().to_uppercase(),
            };
            let choices: Vec<String> = arg
                .get_possible_values()
                .iter()
                .filter(|v| !v.is_hide_set())
                .map(|v| v.get_name().to_owned())
                .collect();
            let value = if choices.is_empty() || arg.get_value_names().is_some() {
                value
            } else {
                choices.join("|")
            };
            word.push_str(&format!(" \\fI{}\\fR", roff_text(&value)));
        }
        if matches!(arg.get_action(), ArgAction::Count) {
            word.push_str("...");
        }
        words.push(format!("[{word}]"));
    }
    format!(
        ".SH SYNOPSIS\n\\fB{}\\fR {}\n",
        roff_text(command.get_name()),
        words.join(" ")
    )
}

/// Text for a roff text line: backslashes and hyphen-minus escaped (so that
/// man shows an ASCII `-` that can be copied), no leading control character.
fn roff_text(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// Lines kept as they are (not filled): the page is already set not to
/// hyphenate.
fn roff_preformatted(text: &str) -> String {
    let mut out = String::from(".nf\n");
    for line in text.lines() {
        out.push_str(&roff_text(line));
        out.push('\n');
    }
    out.push_str(".fi\n");
    out
}

/// When stderr gets colour (`--color`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// On a terminal unless NO_COLOR is set, or anywhere with CLICOLOR_FORCE
    Auto,
    /// Always, whatever the variables say
    Always,
    /// Never
    Never,
}

/// The result's format on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// The npm tool's JSON (2-space indent), for scripts
    Json,
    /// Tables for people, fitted to the terminal's width (80 columns
    /// when stdout is not a terminal, or $COLUMNS)
    Table,
    /// The tables as GitHub-flavoured Markdown, for CI job summaries and
    /// pull-request comments
    Markdown,
}

/// What to do, once the flags are combined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Describe,
    Prepare,
    Wait {
        timeout: Option<Duration>,
    },
    /// `--watch`: until stopped (SIGTERM or SIGINT: exit 0).
    Watch,
}

impl Args {
    /// `--timeout` implies `--wait`, which implies `--prepare`.
    pub fn mode(&self) -> Mode {
        if self.watch {
            Mode::Watch
        } else if self.wait || self.timeout.is_some() {
            Mode::Wait {
                timeout: self.timeout,
            }
        } else if self.prepare {
            Mode::Prepare
        } else {
            Mode::Describe
        }
    }

    /// The releases to compare, or the reason the combination is incomplete.
    pub fn target(&self) -> Result<Target, String> {
        match (&self.fleet, &self.from_release, &self.to_release) {
            (Some(fleet), _, to) => Ok(Target::Fleet {
                fleet: fleet.clone(),
                to: to.clone(),
            }),
            (None, Some(from), Some(to)) => Ok(Target::Pair {
                from: from.clone(),
                to: to.clone(),
            }),
            (None, Some(_), None) => {
                Err("must specify a target release too: add --to-release (the \
                 release the devices will run)"
                    .to_owned())
            }
            (None, None, Some(_)) => Err("must specify a source release too: add --from-release \
                 (the release the devices run now), or --fleet for every release a fleet's \
                 devices run"
                .to_owned()),
            (None, None, None) => Err("must specify both a source and a target release: add \
                 --from-release and --to-release, or --fleet"
                .to_owned()),
        }
    }

    /// Combinations that parse but cannot be honoured: `--watch` prints a
    /// stream of lines, which Markdown (one report) cannot be.
    pub fn check_output(&self) -> Result<(), String> {
        if self.watch && self.output == OutputFormat::Markdown {
            return Err(
                "--watch prints one line per event, which cannot be one Markdown \
                 report: use --output table (lines for people) or --output json (JSON lines)"
                    .to_owned(),
            );
        }
        Ok(())
    }
}

/// The words of this run that a suggested next command repeats, exactly as
/// typed (parsing lower-cases commits and slugs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Typed {
    /// `--from-release X --to-release Y`, or `--fleet F [--to-release Y]`.
    pub target: Vec<String>,
    /// `--output`, `--no-registry`, `--allow-http`, `--max-download`, when given.
    pub keep: Vec<String>,
}

/// Parses the process's words, keeping the words of [`Typed`].
pub fn parse(
    words: impl IntoIterator<Item = std::ffi::OsString>,
) -> Result<(Args, Typed), clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    let mut command = Args::command();
    let matches = command.try_get_matches_from_mut(words)?;
    let args = Args::from_arg_matches(&matches).map_err(|err| err.format(&mut command))?;
    let raw = |id: &str| {
        matches
            .get_raw(id)
            .and_then(|mut values| values.next())
            .map(|value| value.to_string_lossy().into_owned())
    };
    let mut typed = Typed::default();
    for (flag, id) in [
        ("--fleet", "fleet"),
        ("--from-release", "from_release"),
        ("--to-release", "to_release"),
    ] {
        if let Some(value) = raw(id) {
            typed.target.extend([flag.to_owned(), value]);
        }
    }
    if args.output != OutputFormat::Json
        && let Some(value) = args.output.to_possible_value()
    {
        typed
            .keep
            .extend(["--output".to_owned(), value.get_name().to_owned()]);
    }
    if args.no_registry {
        typed.keep.push("--no-registry".to_owned());
    }
    if matches.value_source("allow_http") == Some(clap::parser::ValueSource::CommandLine) {
        typed.keep.push("--allow-http".to_owned());
    }
    if let Some(value) = raw("max_download") {
        typed.keep.extend(["--max-download".to_owned(), value]);
    }
    Ok((args, typed))
}

/// `-v` alone prints the version, as the npm tool does; elsewhere it means verbose.
pub fn is_bare_version_request(args: &[String]) -> bool {
    args.len() == 2 && args[1] == "-v"
}

fn parse_release(value: &str) -> Result<ReleaseRef, String> {
    value.parse::<ReleaseRef>().map_err(|err| err.to_string())
}

fn parse_fleet(value: &str) -> Result<FleetRef, String> {
    value.parse::<FleetRef>().map_err(|err| err.to_string())
}

/// Seconds (`90`, compatible with the npm tool) or whole numbers with units,
/// largest first (`90s`, `10m`, `1h30m`, `1m30s`); at least one second, at
/// most a day.
pub fn parse_timeout(value: &str) -> Result<Duration, String> {
    let not_a_duration = || {
        format!(
            "`{value}` is not a duration: use whole seconds (`600`) or units (`90s`, `10m`, \
             `1h30m`)"
        )
    };
    let text = value.trim();
    let mut seconds: u64 = 0;
    let mut rest = text;
    let mut last_scale = u64::MAX;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(not_a_duration());
        }
        let (number, after) = rest.split_at(digits);
        let (scale, after) = match after.chars().next() {
            None if rest.len() == text.len() => (1, after),
            Some('s') => (1, &after[1..]),
            Some('m') => (60, &after[1..]),
            Some('h') => (3600, &after[1..]),
            _ => return Err(not_a_duration()),
        };
        // Each unit once, largest first: `1h30m`, not `30m1h` or `1m1m`.
        if scale >= last_scale {
            return Err(not_a_duration());
        }
        last_scale = scale;
        let too_long = || format!("`{value}` is longer than the maximum of 24h");
        let part = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(scale))
            .ok_or_else(too_long)?;
        seconds = seconds.checked_add(part).ok_or_else(too_long)?;
        rest = after;
    }
    if text.is_empty() {
        return Err(not_a_duration());
    }
    if seconds > MAX_TIMEOUT.as_secs() {
        return Err(format!("`{value}` is longer than the maximum of 24h"));
    }
    if seconds == 0 {
        return Err("the timeout must be at least 1 second".to_owned());
    }
    Ok(Duration::from_secs(seconds))
}

/// A duration the way `--timeout` takes it: `4m`, `1h30m`, `1m30s`, `45s`.
pub fn format_duration(duration: Duration) -> String {
    let total = duration.as_secs();
    let (hours, minutes, seconds) = (total / 3600, total % 3600 / 60, total % 60);
    let mut out = String::new();
    for (value, unit) in [(hours, 'h'), (minutes, 'm'), (seconds, 's')] {
        if value > 0 {
            out.push_str(&format!("{value}{unit}"));
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("balena-release-update").chain(args.iter().copied()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn npm_flags_are_accepted() {
        let args = parse(&["--from-release", "900813", "--to-release", "b2cf2db7"]).unwrap();
        assert_eq!(args.from_release, Some(ReleaseRef::Id(900813)));
        assert_eq!(args.to_release, Some(ReleaseRef::Commit("b2cf2db7".into())));
        assert_eq!(args.mode(), Mode::Describe);
        let args = parse(&["--from-release=1", "--to-release=2", "--prepare"]).unwrap();
        assert_eq!(args.mode(), Mode::Prepare);
        let args = parse(&["--from-release", "1", "--to-release", "2", "--wait"]).unwrap();
        assert_eq!(args.mode(), Mode::Wait { timeout: None });
        let args = parse(&[
            "--from-release",
            "1",
            "--to-release",
            "2",
            "--timeout",
            "120",
        ])
        .unwrap();
        assert_eq!(
            args.mode(),
            Mode::Wait {
                timeout: Some(Duration::from_secs(120))
            }
        );
    }

    #[test]
    fn release_values_are_validated_before_any_request() {
        for bad in [
            "84d3d",
            "zzzzzz-not-a-hash",
            "84d3d8f'x",
            "-5",
            "0",
            "",
            "1.5",
            &"a".repeat(41),
        ] {
            assert!(
                parse(&["--from-release", bad, "--to-release", "2"]).is_err(),
                "{bad:?} accepted"
            );
        }
        assert!(
            parse(&[
                "--from-release",
                "1",
                "--from-release",
                "2",
                "--to-release",
                "3"
            ])
            .is_err()
        );
        assert!(parse(&["--from-release"]).is_err());
        assert!(parse(&["--foo"]).is_err());
    }

    #[test]
    fn watch_needs_a_fleet_and_no_wait() {
        let args = parse(&["--fleet", "org/f", "--watch"]).unwrap();
        assert_eq!(args.mode(), Mode::Watch);
        let args = parse(&["--fleet", "org/f", "--watch", "--prepare"]).unwrap();
        assert_eq!(args.mode(), Mode::Watch);
        for bad in [
            &["--watch"][..],
            &["--watch", "--fleet", "org/f", "--wait"],
            &["--watch", "--fleet", "org/f", "--timeout", "10m"],
            &["--watch", "--fleet", "org/f", "--to-release", "1"],
            &["--watch", "--from-release", "1", "--to-release", "2"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn both_releases_are_needed() {
        let args = parse(&["--from-release", "1"]).unwrap();
        assert!(
            args.target()
                .unwrap_err()
                .contains("a target release too: add --to-release")
        );
        let args = parse(&["--to-release", "1"]).unwrap();
        let message = args.target().unwrap_err();
        assert!(message.contains("add --from-release"), "{message}");
        assert!(!message.contains("--to-release"), "{message}");
        let args = parse(&["--fleet", "o/f", "--watch", "--output", "markdown"]).unwrap();
        assert!(
            args.check_output()
                .unwrap_err()
                .starts_with("--watch prints")
        );
        for output in ["json", "table"] {
            let args = parse(&["--fleet", "o/f", "--watch", "--output", output]).unwrap();
            assert_eq!(args.check_output(), Ok(()));
        }
        let args = parse(&[]).unwrap();
        assert!(args.target().is_err());
        let args = parse(&["--fleet", "org/my-fleet"]).unwrap();
        assert!(matches!(
            args.target().unwrap(),
            Target::Fleet { to: None, .. }
        ));
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("120"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_timeout("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_timeout("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_timeout("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_timeout("86400"), Ok(MAX_TIMEOUT));
        assert_eq!(parse_timeout("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_timeout("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_timeout("23h59m59s"), Ok(Duration::from_secs(86399)));
        for bad in [
            "30m1h",
            "1m1m",
            "1h30",
            "24h1s",
            "1m 30s",
            "0",
            "0m",
            "-5",
            "1.5",
            "abc",
            "",
            "m",
            "2147484",
            "25h",
            "99999999999999999999",
            "5 m",
            "5d",
        ] {
            assert!(parse_timeout(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn durations_print_the_way_they_are_typed() {
        for (seconds, text) in [
            (240, "4m"),
            (5400, "1h30m"),
            (90, "1m30s"),
            (45, "45s"),
            (86400, "24h"),
        ] {
            assert_eq!(format_duration(Duration::from_secs(seconds)), text);
            assert_eq!(parse_timeout(text), Ok(Duration::from_secs(seconds)));
        }
    }

    #[test]
    fn completions_and_man_page_name_every_flag() {
        let man = String::from_utf8(generate(Generate::Man).unwrap()).unwrap();
        let bash = String::from_utf8(generate(Generate::Bash).unwrap()).unwrap();
        for flag in ["from\\-release", "to\\-release", "timeout", "fleet"] {
            assert!(man.contains(flag), "man page lacks {flag}");
        }
        for flag in [
            "--from-release",
            "--to-release",
            "--timeout",
            "--fleet",
            "--output",
        ] {
            assert!(bash.contains(flag), "bash completion lacks {flag}");
        }
    }

    #[test]
    fn the_words_a_hint_repeats_are_kept_as_typed() {
        let words = |a: &[&str]| {
            std::iter::once("balena-release-update")
                .chain(a.iter().copied())
                .map(std::ffi::OsString::from)
                .collect::<Vec<_>>()
        };
        let (args, typed) = super::parse(words(&[
            "--to-release=B2CF2DB7A4",
            "--from-release",
            "900813",
            "--output",
            "table",
            "--max-download",
            "1.5GiB",
            "-v",
            "--no-registry",
        ]))
        .unwrap();
        assert_eq!(
            args.to_release,
            Some(ReleaseRef::Commit("b2cf2db7a4".into()))
        );
        assert_eq!(args.max_download, Some(1_610_612_736));
        assert_eq!(
            typed.target,
            ["--from-release", "900813", "--to-release", "B2CF2DB7A4"]
        );
        assert_eq!(
            typed.keep,
            [
                "--output",
                "table",
                "--no-registry",
                "--max-download",
                "1.5GiB"
            ]
        );
        let (_, typed) =
            super::parse(words(&["--fleet", "MyOrg/Fleet", "--to-release", "7"])).unwrap();
        assert_eq!(
            typed.target,
            ["--fleet", "MyOrg/Fleet", "--to-release", "7"]
        );
        assert!(typed.keep.is_empty(), "{typed:?}");
        assert!(super::parse(words(&["--max-download", "50mb"])).is_err());
    }

    #[test]
    fn bare_dash_v_is_the_version() {
        let words = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(is_bare_version_request(&words(&["x", "-v"])));
        assert!(!is_bare_version_request(&words(&[
            "x", "-v", "--fleet", "f"
        ])));
        let args = parse(&["-vv", "--fleet", "org/f"]).unwrap();
        assert_eq!(args.verbose, 2);
    }
}
