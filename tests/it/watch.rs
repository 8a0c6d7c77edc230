//! `--watch`: a release added to the running simulator (through its control endpoint) is prepared without a restart; SIGTERM and SIGINT end the watch with exit 0; a token that stops working, or a stdout nobody reads any more, ends it with exit 1; a flapping fleet costs no more requests than an idle one.
#![cfg(unix)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Duration;

use balena_sim::{Clock, FaultRule, Faults, Scenario, Scope, demo};

use crate::support::{self, CANARY, World};

/// How long any awaited line may take (the builds run 1000 times faster).
const PATIENCE: Duration = Duration::from_secs(30);

fn fleet() -> String {
    format!("{}/kiosk-fleet", demo::USERNAME)
}

/// The binary watching the demo fleet, its stdout lines in a channel.
fn spawn(world: &World, extra: &[&str]) -> (Child, Receiver<String>) {
    let mut child = world
        .std_cmd()
        .args(["--fleet", &fleet(), "--watch", "--no-registry"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let (send, receive) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if send.send(line).is_err() {
                break;
            }
        }
    });
    (child, receive)
}

/// Reads lines until one satisfies `wanted`; returns every line read.
fn until(lines: &Receiver<String>, wanted: impl Fn(&str) -> bool) -> Vec<String> {
    let mut seen = Vec::new();
    let started = std::time::Instant::now();
    loop {
        let left = PATIENCE.saturating_sub(started.elapsed());
        match lines.recv_timeout(left) {
            Ok(line) => {
                let done = wanted(&line);
                seen.push(line);
                if done {
                    return seen;
                }
            }
            Err(_) => panic!("the awaited line did not come; read so far:\n{seen:#?}"),
        }
    }
}

/// `POST /__sim/release?…` to the simulator's control endpoint; the new
/// release's id.
fn add_release(api_url: &str, query: &str) -> u64 {
    let address = api_url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("the simulator listens");
    write!(
        stream,
        "POST /__sim/release?{query} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let value: serde_json::Value = serde_json::from_str(body.trim()).expect("a JSON body");
    value["id"].as_u64().expect("the new release's id")
}

/// Sends `signal` and collects the exit code, the rest of stdout and stderr.
/// The rest of stdout is read until the reader thread has passed on its
/// last line (the channel closes when the pipe does), not at a fixed moment.
fn stop(child: Child, lines: &Receiver<String>, signal: &str) -> (i32, Vec<String>, String) {
    support::send_signal(&child, signal);
    let (code, _, stderr) = support::finish(child, PATIENCE);
    let mut rest = Vec::new();
    loop {
        match lines.recv_timeout(PATIENCE) {
            Ok(line) => rest.push(line),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => panic!("stdout never closed; read:\n{rest:#?}"),
        }
    }
    for text in rest.iter().chain([&stderr]) {
        assert!(!text.contains(CANARY), "the token leaked:\n{text}");
        assert!(!text.contains("panicked"), "panic:\n{text}");
    }
    (code, rest, stderr)
}

fn fast_world() -> World {
    World::with(Scenario::demo().with_clock(Clock::scaled(1000.0)))
}

#[test]
fn a_release_added_while_watching_is_prepared_then_sigterm_ends_it() {
    let world = fast_world();
    let (child, lines) = spawn(&world, &["--output", "table"]);
    let target = demo::RELEASE_3;
    let first = until(&lines, |l| {
        l.contains(&format!("release {target} (")) && l.contains(" prepared: ")
    });
    assert!(
        first[0].contains(&format!("release {target} (b2cf2db7e8) seen: ")),
        "{first:#?}"
    );
    let new = add_release(&world.sim.api_url(), &format!("from={target}&changed=main"));
    let seen = until(&lines, |l| {
        l.contains(&format!("release {new} (")) && l.contains(" prepared: ")
    });
    let new_seen = seen
        .iter()
        .find(|l| l.contains(&format!("release {new} (")) && l.contains(" seen: "))
        .unwrap_or_else(|| panic!("{seen:#?}"));
    assert!(
        new_seen.contains(" transition") && new_seen.contains(" device"),
        "{new_seen}"
    );
    let ready: Vec<&String> = seen
        .iter()
        .filter(|l| l.contains("delta ready: main ") && l.ends_with(&format!("→{new}")))
        .collect();
    assert!(
        ready
            .iter()
            .any(|l| l.ends_with(&format!("main {target}→{new}"))),
        "{seen:#?}"
    );
    assert!(
        seen.last().unwrap().ends_with(" transitions ready")
            || seen.last().unwrap().ends_with(" transition ready"),
        "{seen:#?}"
    );
    // Every line starts with the time, in UTC to the second.
    for line in first.iter().chain(&seen) {
        let at = line.split(' ').next().unwrap();
        assert!(
            at.len() == 20 && at.ends_with('Z') && at.as_bytes()[10] == b'T',
            "{line}"
        );
    }
    let (code, rest, stderr) = stop(child, &lines, "TERM");
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("ERROR"), "{stderr}");
    assert_eq!(rest.len(), 1, "{rest:#?}");
    assert!(rest[0].ends_with(" stopped"), "{rest:#?}");
}

#[test]
fn json_lines_and_sigint() {
    let world = fast_world();
    let (child, lines) = spawn(&world, &["--output", "json"]);
    let read = until(&lines, |l| l.contains(r#""event":"prepared""#));
    for line in &read {
        let value: serde_json::Value = serde_json::from_str(line).expect("one JSON value per line");
        assert!(
            value["event"].is_string() && value["at"].is_string(),
            "{line}"
        );
    }
    let seen: serde_json::Value = serde_json::from_str(&read[0]).unwrap();
    assert_eq!(seen["event"], "release_seen");
    assert_eq!(seen["release"]["id"], demo::RELEASE_3);
    assert_eq!(seen["reason"], "target");
    let new = add_release(
        &world.sim.api_url(),
        &format!("from={}&changed=main", demo::RELEASE_3),
    );
    let read = until(&lines, |l| {
        l.contains(r#""event":"release_seen""#) && l.contains(&format!(r#""id":{new}"#))
    });
    let seen: serde_json::Value = serde_json::from_str(read.last().unwrap()).unwrap();
    assert_eq!(seen["reason"], "new_release", "{seen}");
    let (code, rest, stderr) = stop(child, &lines, "INT");
    assert_eq!(code, 0, "{stderr}");
    let last: serde_json::Value = serde_json::from_str(rest.last().expect("a last line")).unwrap();
    assert_eq!(last["event"], "stopped");
}

#[test]
fn a_token_that_stops_working_ends_the_watch_with_exit_1() {
    let world = fast_world();
    let (child, lines) = spawn(&world, &["--output", "table"]);
    until(&lines, |l| l.contains(" prepared: "));
    world.sim.set_faults(
        Faults::none().with(
            FaultRule::new(balena_sim::Fault::Error {
                status: 401,
                body: Some("Unauthorized".into()),
            })
            .scope(Scope::Api),
        ),
    );
    let (code, _, stderr) = support::finish(child, PATIENCE);
    assert_eq!(code, 1, "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("ERROR: "))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(!stderr.contains(CANARY));
}

#[test]
fn server_faults_do_not_end_the_watch() {
    let world = fast_world();
    let (mut child, lines) = spawn(&world, &["--output", "table"]);
    until(&lines, |l| l.contains(" prepared: "));
    world.sim.set_faults(
        Faults::none().with(
            FaultRule::new(balena_sim::Fault::Error {
                status: 503,
                body: Some("maintenance".into()),
            })
            .scope(Scope::Api),
        ),
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the watch ended on a 503"
    );
    world.sim.set_faults(Faults::none());
    let new = add_release(
        &world.sim.api_url(),
        &format!("from={}&changed=api", demo::RELEASE_3),
    );
    until(&lines, |l| {
        l.contains(&format!("release {new} (")) && l.contains(" prepared: ")
    });
    let (code, _, stderr) = stop(child, &lines, "TERM");
    assert_eq!(code, 0, "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning: reading the fleet failed"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning per streak:\n{stderr}");
}

/// API and delta-server requests of a watch polling every 50 ms, counted
/// over `window` once it has prepared the fleet's target and (with `flap`)
/// once the target flaps between two releases at every read; with the
/// watch's stderr.
fn requests_of_a_watch(flap: bool, window: Duration) -> (usize, String) {
    let world = fast_world();
    let (child, lines) = spawn(&world, &["--output", "table"]);
    until(&lines, |l| l.contains(" prepared: "));
    if flap {
        world.sim.set_faults(
            Faults::none().with(
                FaultRule::flap(demo::APP_ID, &[demo::RELEASE_2, demo::RELEASE_3])
                    .scope(Scope::Api)
                    .path_prefix("/v7/application"),
            ),
        );
    }
    // Time to see the flap and drop what it started.
    std::thread::sleep(Duration::from_secs(1));
    world.sim.clear_journal();
    std::thread::sleep(window);
    let requests = world.sim.count(balena_sim::Server::Api, None)
        + world.sim.count(balena_sim::Server::Delta, None);
    let (code, _, stderr) = stop(child, &lines, "TERM");
    assert_eq!(code, 0, "{stderr}");
    (requests, stderr)
}

#[test]
fn a_flapping_fleet_costs_no_more_requests_than_an_idle_one_and_is_reported_once() {
    let window = Duration::from_secs(3);
    let (idle, quiet) = requests_of_a_watch(false, window);
    let (flapping, stderr) = requests_of_a_watch(true, window);
    // 3 s at one poll per 50 ms (±20 %) is about 60 requests; a watch that
    // prepared each change at once sent over a hundred a second.
    assert!((20..=80).contains(&idle), "idle: {idle} requests\n{quiet}");
    assert!(
        flapping <= idle + idle / 5 + 5,
        "flapping: {flapping} requests, idle: {idle}\n{stderr}"
    );
    assert!(!quiet.contains("warning:"), "{quiet}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning per streak:\n{stderr}");
    assert!(
        warnings[0].starts_with("warning: the fleet's target release (")
            && warnings[0].contains(&demo::RELEASE_2.to_string())
            && warnings[0].contains(" flaps: "),
        "{stderr}"
    );
}

#[test]
fn a_stdout_nobody_reads_ends_the_watch_with_exit_1() {
    let world = fast_world();
    let mut child = world
        .std_cmd()
        .args([
            "--fleet",
            &fleet(),
            "--watch",
            "--no-registry",
            "--output",
            "json",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
    loop {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "stdout ended");
        if line.contains(r#""event":"prepared""#) {
            break;
        }
    }
    // The reader goes away while the watch is idle: it writes nothing more,
    // and still notices.
    drop(stdout);
    let (code, _, stderr) = support::finish(child, PATIENCE);
    assert_eq!(code, 1, "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("ERROR: "))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("stdout"), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains(CANARY),
        "{stderr}"
    );
}
