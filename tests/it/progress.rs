//! What stderr shows while a run works without a terminal (CI, a pipe, `TERM=dumb`): paced plain status lines, retries announced at once, nothing with `-q`, logs instead with `-v`.

use balena_sim::{Outcome, Scenario, demo};

use crate::support::{Run, World, main_delta, pair, run_checked, snapshot_filters};

/// The hidden knob that shortens the 10 s gap between status lines.
const STATUS_INTERVAL: &str = "BALENA_RELEASE_UPDATE_STATUS_INTERVAL";

/// The status lines of stderr: `m:ss <text>` (or `h:mm:ss <text>`).
fn status_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| {
            let Some((clock, _)) = line.split_once(' ') else {
                return false;
            };
            let parts: Vec<&str> = clock.split(':').collect();
            parts.len() >= 2
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                && parts[1..].iter().all(|p| p.len() == 2)
        })
        .collect()
}

/// The text of a status line without its clock.
fn text(line: &str) -> &str {
    line.split_once(' ').map_or(line, |(_, text)| text)
}

/// A port nobody listens on: bound, then released.
fn closed_port_url() -> String {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    url
}

#[test]
fn a_wait_without_a_terminal_says_where_it_is() {
    let _filters = snapshot_filters().bind_to_scope();
    // Builds take about 1.6 s: the first state is said at once, the later
    // ones fall within the 10 s gap and the run ends before it passes.
    for term in [None, Some("dumb")] {
        let world = World::demo();
        let mut cmd = world.cmd();
        if let Some(term) = term {
            cmd.env("TERM", term);
        }
        let run = run_checked(cmd.args(pair(
            demo::RELEASE_1,
            demo::RELEASE_2,
            &["--wait", "--timeout", "30"],
        )));
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(run.json()["overall_status"], "ready");
        assert!(!run.stderr.contains('\u{1b}'), "{:?}", run.stderr);
        assert_eq!(status_lines(&run.stderr).len(), 1, "{}", run.stderr);
        insta::assert_snapshot!("no_tty_wait_lines", run.stderr);
    }
}

#[test]
fn status_lines_are_paced_and_repeat_while_nothing_changes() {
    // The main delta never finishes; a gap of 200 ms, so the state is
    // repeated every 1.2 s.
    let world = World::with(main_delta(Scenario::demo(), vec![Outcome::stalled()]));
    let started = std::time::Instant::now();
    let run = run_checked(world.cmd().env(STATUS_INTERVAL, "200ms").args(pair(
        demo::RELEASE_1,
        demo::RELEASE_2,
        &["--wait", "--timeout", "3"],
    )));
    let took = started.elapsed();
    assert_eq!(run.code, 2, "{}", run.stderr);
    let lines = status_lines(&run.stderr);
    // At most one line per gap (and the first at once).
    let most = (took.as_millis() / 200) as usize + 1;
    assert!(
        (2..=most).contains(&lines.len()),
        "{} lines in {took:?}:\n{}",
        lines.len(),
        run.stderr
    );
    assert!(lines[0].starts_with("0:00 pending: "), "{}", run.stderr);
    // Nothing changes once the build is requested: the same state again.
    let repeated = lines.windows(2).any(|w| text(w[0]) == text(w[1]));
    assert!(repeated, "no repeated state:\n{}", run.stderr);
    let last = lines.last().unwrap();
    assert!(last.contains("main: "), "{last}");
    // The status lines come before the error and its hint.
    let error_at = run.stderr.find("ERROR: ").expect("an error line");
    assert!(run.stderr.rfind(last).unwrap() < error_at, "{}", run.stderr);
}

/// A describe of `target` against an API that is not there, with `extra`.
fn unreachable(target: &[String], extra: &[&str]) -> Run {
    let world = World::demo();
    let run = run_checked(
        world
            .cmd()
            .env("BALENARC_API_URL", closed_port_url())
            .env("BALENA_RELEASE_UPDATE_RETRY_INTERVAL", "300ms")
            .args(target)
            .args(extra),
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    run
}

#[test]
fn retries_are_announced_at_once_in_describe() {
    let fleet = ["--fleet".to_owned(), demo::APP_ID.to_string()];
    for target in [pair(demo::RELEASE_1, demo::RELEASE_2, &[]), fleet.to_vec()] {
        let run = unreachable(&target, &[]);
        let lines = status_lines(&run.stderr);
        assert!(
            !lines.is_empty(),
            "{target:?}: nothing said:\n{}",
            run.stderr
        );
        // The first retry is said before its pause: at once.
        assert!(
            lines[0].starts_with("0:00 API unreachable, retrying in ")
                && lines[0].ends_with(" s (attempt 2)"),
            "{target:?}:\n{}",
            run.stderr
        );
        // A later retry within the gap waits; the run ends before.
        assert_eq!(lines.len(), 1, "{target:?}:\n{}", run.stderr);
        assert!(
            run.stderr.lines().last().unwrap().starts_with("  ")
                || run.stderr.lines().last().unwrap().starts_with("ERROR: "),
            "the error comes last:\n{}",
            run.stderr
        );

        let quiet = unreachable(&target, &["-q"]);
        assert!(
            status_lines(&quiet.stderr).is_empty(),
            "-q: {}",
            quiet.stderr
        );
        let verbose = unreachable(&target, &["-v"]);
        assert!(
            status_lines(&verbose.stderr).is_empty(),
            "-v logs instead: {}",
            verbose.stderr
        );
        assert!(
            verbose.stderr.contains("retrying"),
            "-v: {}",
            verbose.stderr
        );
    }
}

#[test]
fn debug_logs_round_their_numbers() {
    let world = World::with(main_delta(Scenario::demo(), vec![Outcome::stalled()]));
    let run = world.run_words(&pair(
        demo::RELEASE_1,
        demo::RELEASE_2,
        &["--wait", "--timeout", "1", "-vv"],
    ));
    assert_eq!(run.code, 2, "{}", run.stderr);
    let sleeping = run
        .stderr
        .lines()
        .find(|l| l.contains("sleeping before the next check"))
        .unwrap_or_else(|| panic!("no sleep logged:\n{}", run.stderr));
    let seconds = sleeping
        .split_whitespace()
        .find_map(|w| w.strip_prefix("seconds="))
        .unwrap_or_else(|| panic!("{sleeping}"));
    let decimals = seconds.split_once('.').map_or(0, |(_, d)| d.len());
    // The pause has a random share (jitter): unrounded, it has nine decimals.
    assert!(decimals <= 3, "{sleeping}");
    assert!(
        seconds.parse::<f64>().is_ok_and(|s| s > 0.0 && s < 1.0),
        "{sleeping}"
    );
}
