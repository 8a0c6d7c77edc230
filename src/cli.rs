//! The command line: the npm tool's flags unchanged, plus output, verbosity
//! and fleet options. Parsing turns raw words into validated values, so a bad
//! argument fails before any request is made.

use std::time::Duration;

use balena_release::{FleetRef, ReleaseRef};
use clap::{ArgAction, Parser, ValueEnum};

/// The longest `--timeout` accepted: the npm tool's implicit deadline.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

const EXAMPLES: &str = "\
Examples:
  Compare two releases of a fleet (ids or commit prefixes):
    balena-release-update --from-release 900813 --to-release b2cf2db7

  Trigger the missing deltas and wait up to 10 minutes until all are ready:
    balena-release-update --from-release 900813 --to-release 900835 --wait --timeout 10m

  Every transition a fleet will make to its target release, as a table:
    balena-release-update --fleet myorg/my-fleet --prepare --output table

Settings come from balenarc.yml and BALENARC_* variables as for the balena CLI;
the token from `balena login` (~/.balena/token) or BALENA_RELEASE_UPDATE_TOKEN.
Without --wait a run gives up after 120s (exit 1) when the servers do not answer.
Exit codes: 0 done, 1 error, 2 timeout, 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP (after
any of these, the last state read is still printed on stdout).";

/// Inspect and prepare the update of balenaCloud devices from one release to another.
///
/// Shows which services are new, changed, unchanged or removed, which image
/// deltas exist, are building or are missing, and how much a device downloads.
#[derive(Debug, Parser)]
#[command(
    name = "balena-release-update",
    version,
    disable_version_flag = true,
    allow_negative_numbers = true,
    after_long_help = EXAMPLES,
    after_help = "Run with --help for examples."
)]
pub struct Args {
    /// The release devices run now: a release id or a commit (6 to 40 hex characters)
    #[arg(long, value_name = "ID|COMMIT", value_parser = parse_release)]
    pub from_release: Option<ReleaseRef>,

    /// The release devices will run: a release id or a commit (6 to 40 hex characters)
    #[arg(long, value_name = "ID|COMMIT", value_parser = parse_release)]
    pub to_release: Option<ReleaseRef>,

    /// Prepare every transition of a fleet (slug or id) to its target release, or to --to-release
    #[arg(long, value_name = "SLUG|ID", value_parser = parse_fleet, conflicts_with = "from_release")]
    pub fleet: Option<FleetRef>,

    /// Trigger every missing delta, then show the state after triggering
    #[arg(long)]
    pub prepare: bool,

    /// Like --prepare, then wait until every delta is ready (implies --prepare)
    #[arg(long)]
    pub wait: bool,

    /// Give up waiting after this long: seconds, or with units (90s, 10m, 1h30m); implies --wait
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub timeout: Option<Duration>,

    /// Keep running: prepare every transition of the fleet to each new release (or new target) as it appears, one line per event; SIGTERM or Ctrl-C end it (exit 0)
    #[arg(long, requires = "fleet", conflicts_with_all = ["wait", "timeout", "from_release", "to_release"])]
    pub watch: bool,

    /// How to print the result on stdout
    #[arg(long, value_enum, default_value_t = OutputFormat::Json)]
    pub output: OutputFormat,

    /// Print nothing on stderr but errors
    #[arg(long, short, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Print diagnostic logs on stderr (-vv for more)
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,

    /// Allow plain http:// to hosts other than loopback (the token travels unencrypted)
    #[arg(long, env = crate::env_vars::ALLOW_HTTP, value_parser = clap::builder::BoolishValueParser::new(), action = ArgAction::SetTrue)]
    pub allow_http: bool,

    /// Send no registry request (no exact download sizes)
    #[arg(long)]
    pub no_registry: bool,

    /// Print shell completions or the man page on stdout, then exit
    #[arg(long, value_enum, value_name = "WHAT", hide_short_help = true)]
    pub generate: Option<Generate>,

    /// Print the version (also `-v` alone, as the npm tool does)
    #[arg(short = 'V', long, action = ArgAction::Version)]
    pub version: Option<bool>,
}

/// What `--generate` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Generate {
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
    /// A man page (roff)
    Man,
}

/// Shell completions or the man page, generated from the flag definitions.
pub fn generate(what: Generate) -> std::io::Result<Vec<u8>> {
    use clap::CommandFactory;
    use clap_complete::Shell;
    let mut command = Args::command();
    let mut out = Vec::new();
    let shell = match what {
        Generate::Man => {
            clap_mangen::Man::new(command).render(&mut out)?;
            return Ok(out);
        }
        Generate::Bash => Shell::Bash,
        Generate::Zsh => Shell::Zsh,
        Generate::Fish => Shell::Fish,
        Generate::Elvish => Shell::Elvish,
        Generate::Powershell => Shell::PowerShell,
    };
    clap_complete::generate(shell, &mut command, "balena-release-update", &mut out);
    Ok(out)
}

/// The result's format on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// The npm tool's JSON (2-space indent), for scripts
    Json,
    /// A table for people, sizes in MB
    Table,
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

/// Which releases to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Pair {
        from: ReleaseRef,
        to: ReleaseRef,
    },
    Fleet {
        fleet: FleetRef,
        to: Option<ReleaseRef>,
    },
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
            (Some(fleet), _, to) => Ok(Target::Fleet { fleet: fleet.clone(), to: to.clone() }),
            (None, Some(from), Some(to)) => Ok(Target::Pair { from: from.clone(), to: to.clone() }),
            _ => Err("must specify both a source and a target release: add --from-release and --to-release, \
                 or --fleet"
                .to_owned()),
        }
    }
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
                .contains("both a source and a target")
        );
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
