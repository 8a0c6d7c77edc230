//! The `balena-sim` binary: starts the simulator on loopback, prints one JSON
//! line with its URLs and token once it accepts connections, and serves until
//! SIGINT or SIGTERM.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use balena_sim::{Clock, Faults, Scenario, Simulator, StartOptions};

const USAGE: &str = "usage: balena-sim --scenario <demo|demo-pinned|generated:services=N,releases=R,devices=D,pinned_percent=P|FILE.json> \
[--port N] [--delta-port N] [--registry-port N] [--clock real|manual|scaled:FACTOR] [--throughput BYTES_PER_SEC] \
[--hold-ms MS] [--faults JSON|@FILE] [--openbalena] [--threads N] [--dump-scenario]";

#[derive(Debug, Default)]
struct Args {
    scenario: Option<String>,
    port: Option<u16>,
    delta_port: Option<u16>,
    registry_port: Option<u16>,
    clock: Option<Clock>,
    throughput: Option<u64>,
    hold_ms: Option<u64>,
    faults: Option<Faults>,
    threads: Option<usize>,
    help: bool,
    dump: bool,
    openbalena: bool,
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("invalid value for `{flag}`: `{value}`"))
}

fn parse_args(mut raw: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args::default();
    while let Some(arg) = raw.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        if flag == "--help" || flag == "-h" {
            args.help = true;
            continue;
        }
        if flag == "--dump-scenario" {
            args.dump = true;
            continue;
        }
        if flag == "--openbalena" {
            args.openbalena = true;
            continue;
        }
        let known = [
            "--scenario",
            "--port",
            "--delta-port",
            "--registry-port",
            "--clock",
            "--throughput",
            "--hold-ms",
            "--faults",
            "--threads",
        ];
        if !known.contains(&flag.as_str()) {
            return Err(format!("unknown argument `{arg}`"));
        }
        let value = match inline.or_else(|| raw.next()) {
            Some(v) => v,
            None => return Err(format!("`{flag}` needs a value")),
        };
        match flag.as_str() {
            "--scenario" => args.scenario = Some(value),
            "--port" => args.port = Some(number(&flag, &value)?),
            "--delta-port" => args.delta_port = Some(number(&flag, &value)?),
            "--registry-port" => args.registry_port = Some(number(&flag, &value)?),
            "--throughput" => args.throughput = Some(number(&flag, &value)?),
            "--hold-ms" => args.hold_ms = Some(number(&flag, &value)?),
            "--threads" => args.threads = Some(number(&flag, &value)?),
            "--clock" => {
                args.clock = Some(match value.as_str() {
                    "real" => Clock::Real,
                    "manual" => Clock::manual(),
                    other => match other.strip_prefix("scaled:") {
                        Some(f) => Clock::scaled(number(&flag, f)?),
                        None => {
                            return Err(format!(
                                "invalid value for `--clock`: `{value}` (expected real, manual or scaled:FACTOR)"
                            ));
                        }
                    },
                })
            }
            "--faults" => {
                let text = match value.strip_prefix('@') {
                    Some(path) => std::fs::read_to_string(path)
                        .map_err(|e| format!("cannot read fault file `{path}`: {e}"))?,
                    None => value.clone(),
                };
                let faults: Faults = serde_json::from_str(&text)
                    .map_err(|e| format!("invalid value for `--faults`: {e}"))?;
                args.faults = Some(faults);
            }
            _ => return Err(format!("unknown argument `{arg}`")),
        }
    }
    Ok(args)
}

fn run() -> Result<(), String> {
    let args = parse_args(std::env::args().skip(1))?;
    if args.help {
        let _ = writeln!(std::io::stdout(), "{USAGE}");
        return Ok(());
    }
    let name = args
        .scenario
        .ok_or_else(|| "missing `--scenario`".to_owned())?;
    let mut scenario = Scenario::resolve(&name).map_err(|e| e.to_string())?;
    if let Some(clock) = args.clock {
        scenario = scenario.with_clock(clock);
    }
    if let Some(bps) = args.throughput {
        scenario = scenario.with_build_throughput(bps);
    }
    if let Some(ms) = args.hold_ms {
        scenario = scenario.with_hold(Duration::from_millis(ms));
    }
    if let Some(faults) = args.faults {
        scenario = scenario.with_faults(faults);
    }
    if args.openbalena {
        scenario = scenario.with_openbalena();
    }
    scenario.validate().map_err(|e| e.to_string())?;
    if args.dump {
        let _ = writeln!(std::io::stdout(), "{}", scenario.to_json());
        return Ok(());
    }
    let next_port =
        |explicit: Option<u16>, offset: u16, what: &str, flag: &str| match (explicit, args.port) {
            (Some(p), _) => Ok(Some(p)),
            (None, Some(0)) | (None, None) => Ok(None),
            (None, Some(p)) => p
                .checked_add(offset)
                .map(Some)
                .ok_or_else(|| format!("`--port {p}` leaves no port for the {what}; add `{flag}`")),
        };
    let options = StartOptions {
        api_port: args.port,
        delta_port: next_port(args.delta_port, 1, "delta server", "--delta-port")?,
        registry_port: next_port(args.registry_port, 2, "registry", "--registry-port")?,
        worker_threads: args.threads,
    };
    let sim = Simulator::start_with(scenario, options).map_err(|e| format!("cannot start: {e}"))?;
    let line = serde_json::json!({
        "api_url": sim.api_url(),
        "delta_url": sim.delta_url(),
        "token": sim.token(),
        "registry_url": sim.registry_url(),
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write to stdout: {e}"))?;
    drop(out);
    wait_for_signal()?;
    drop(sim);
    Ok(())
}

fn wait_for_signal() -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot wait for signals: {e}"))?;
    runtime.block_on(async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate())
                .map_err(|e| format!("cannot wait for SIGTERM: {e}"))?;
            let mut int = signal(SignalKind::interrupt())
                .map_err(|e| format!("cannot wait for SIGINT: {e}"))?;
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            Ok(())
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c()
                .await
                .map_err(|e| format!("cannot wait for Ctrl-C: {e}"))
        }
    })
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "balena-sim: error: {message}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn flags_parse_with_spaces_or_equals() {
        let a = parse(&["--scenario", "demo", "--port=8080", "--clock", "scaled:60"]).unwrap();
        assert_eq!(a.scenario.as_deref(), Some("demo"));
        assert_eq!(a.port, Some(8080));
        assert_eq!(a.clock, Some(Clock::scaled(60.0)));
        let f = parse(&[
            "--faults",
            r#"{"seed":3,"rules":[{"fault":{"type":"reset"}}]}"#,
        ])
        .unwrap();
        assert_eq!(f.faults.unwrap().seed, 3);
        assert!(parse(&["--openbalena"]).unwrap().openbalena);
        assert!(!a.openbalena);
    }

    #[test]
    fn bad_flags_give_one_clear_message() {
        assert_eq!(parse(&["--nope"]).unwrap_err(), "unknown argument `--nope`");
        assert_eq!(
            parse(&["--port", "x"]).unwrap_err(),
            "invalid value for `--port`: `x`"
        );
        assert_eq!(
            parse(&["--scenario"]).unwrap_err(),
            "`--scenario` needs a value"
        );
        assert!(parse(&["--clock", "fast"]).is_err());
        assert!(parse(&["--faults", "{"]).is_err());
    }
}
