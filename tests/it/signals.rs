//! SIGTERM, SIGHUP and Ctrl-C in every mode: the last state read on stdout, one `ERROR:` line and its hint, exit 128 + the signal.
#![cfg(unix)]

use std::process::{Child, Stdio};

use balena_sim::{Clock, FaultRule, Faults, Scenario, Scope, demo};

use crate::support::{World, pair, stop, wait_until};

/// The binary running `words` against `world`, its output captured.
fn spawn(world: &World, words: &[String]) -> Child {
    world
        .std_cmd()
        .args(words)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts")
}

/// The signals, their exit codes and the start of their `ERROR:` lines.
const SIGNALS: [(&str, i32, &str); 3] = [
    ("TERM", 143, "ERROR: terminated (SIGTERM)"),
    ("HUP", 129, "ERROR: hung up (SIGHUP)"),
    ("INT", 130, "ERROR: interrupted"),
];

fn assert_one_error_with_hint(stderr: &str, error: &str) {
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("ERROR: "))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].starts_with(error), "{stderr}");
    assert!(
        stderr.contains("hint: delta builds already requested go on"),
        "{stderr}"
    );
}

#[test]
fn a_signal_during_a_wait_prints_the_last_state() {
    for (signal, code, error) in SIGNALS {
        // A manual clock: the delta builds never finish.
        let world = World::with(Scenario::demo().with_clock(Clock::manual()));
        let child = spawn(&world, &pair(demo::RELEASE_1, demo::RELEASE_2, &["--wait"]));
        // The first state is read before the missing delta is requested.
        wait_until("the delta request", || world.delta_requests() > 0);
        let (exit, stdout, stderr) = stop(child, signal);
        assert_eq!(exit, code, "SIG{signal}: {stderr}");
        assert_one_error_with_hint(&stderr, error);
        let json: serde_json::Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|err| panic!("SIG{signal}: no state on stdout ({err}):\n{stdout}"));
        assert_eq!(json["produces__release"]["id"], demo::RELEASE_2);
        assert_ne!(json["overall_status"], "ready", "{stdout}");
    }
}

#[test]
fn a_signal_during_a_fleet_wait_prints_the_fleet_state() {
    let world = World::with(Scenario::demo().with_clock(Clock::manual()));
    let words = [
        "--fleet".to_owned(),
        demo::APP_ID.to_string(),
        "--wait".to_owned(),
    ];
    let child = spawn(&world, &words);
    wait_until("the delta requests", || world.delta_requests() > 0);
    let (exit, stdout, stderr) = stop(child, "TERM");
    assert_eq!(exit, 143, "{stderr}");
    assert_one_error_with_hint(&stderr, "ERROR: terminated (SIGTERM)");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("the fleet state");
    assert_eq!(json["application"]["id"], demo::APP_ID);
}

#[test]
fn a_signal_during_prepare_prints_the_state_read() {
    for (signal, code, error) in SIGNALS {
        // The delta server never answers: the run is stopped while triggering.
        let world = World::with(
            Scenario::demo()
                .with_faults(Faults::none().with(FaultRule::stall(None).scope(Scope::Delta))),
        );
        let child = spawn(
            &world,
            &pair(
                demo::RELEASE_1,
                demo::RELEASE_2,
                &["--prepare", "--output", "table"],
            ),
        );
        wait_until("the delta request", || world.delta_requests() > 0);
        let (exit, stdout, stderr) = stop(child, signal);
        assert_eq!(exit, code, "SIG{signal}: {stderr}");
        assert_one_error_with_hint(&stderr, error);
        assert!(
            stdout.starts_with("release 900813 (84d3d8f4c0) to 900835 (b2cf2db7a4)"),
            "SIG{signal}: no table of the state read:\n{stdout}"
        );
    }
}

#[test]
fn a_signal_before_any_state_prints_only_the_error() {
    for (signal, code, error) in SIGNALS {
        // The API never answers.
        let world = World::with(
            Scenario::demo()
                .with_faults(Faults::none().with(FaultRule::stall(None).scope(Scope::Api))),
        );
        let child = spawn(&world, &pair(demo::RELEASE_1, demo::RELEASE_2, &[]));
        wait_until("an API request", || world.api_requests() > 0);
        let (exit, stdout, stderr) = stop(child, signal);
        assert_eq!(exit, code, "describe, SIG{signal}: {stderr}");
        assert_one_error_with_hint(&stderr, error);
        assert!(stdout.is_empty(), "describe, SIG{signal}: {stdout}");
    }
}

#[test]
fn a_hangup_ignored_by_the_parent_stays_ignored() {
    // As under `nohup`: SIGHUP is ignored when the binary starts.
    let world = World::with(Scenario::demo().with_clock(Clock::manual()));
    let plain = world.std_cmd();
    let mut nohup = std::process::Command::new("nohup");
    nohup.env_clear().arg(plain.get_program());
    for (name, value) in plain.get_envs() {
        if let Some(value) = value {
            nohup.env(name, value);
        }
    }
    if let Some(dir) = plain.get_current_dir() {
        nohup.current_dir(dir);
    }
    let child = nohup
        .args(pair(demo::RELEASE_1, demo::RELEASE_2, &["--wait"]))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nohup starts the binary");
    wait_until("the delta request", || world.delta_requests() > 0);
    let status = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Still polling after the hangup.
    let polls = world.api_requests();
    wait_until("two more polls", || world.api_requests() >= polls + 2);
    let (exit, stdout, stderr) = stop(child, "TERM");
    assert_eq!(exit, 143, "{stderr}");
    assert_one_error_with_hint(&stderr, "ERROR: terminated (SIGTERM)");
    assert!(stdout.starts_with('{'), "{stdout}");
}
