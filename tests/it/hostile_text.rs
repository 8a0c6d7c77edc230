//! Server text with escape sequences, C1, DEL and bidi controls, and URLs with credentials: escaped or redacted in every output.

use std::path::Path;

use balena_sim::Scenario;

use crate::support::{Run, World, error_line, run_checked};

/// A fleet whose slug, release commit, service name and failed delta carry
/// `ESC [2J` (clear screen), an unterminated OSC title, U+202E (right-to-left
/// override), U+0085 (NEL), U+009B (C1 CSI) and DEL; application 11 tracks
/// no release.
fn hostile_world() -> World {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/scenarios/hostile-text.json"
    );
    World::with(Scenario::from_path(Path::new(path)).expect("the scenario loads"))
}

const SERVICE: &str = "api\u{1b}]0;title\u{202e}ppa\u{85}\u{9b}2J\u{7f}";
const COMMIT: &str = "\u{1b}[2J\u{1b}]0;title\u{202e}\u{85}\u{9b}\u{7f}abcdef";
const DELTA_ERROR: &str = "boom\u{1b}[2J\u{1b}]0;title\u{202e}\u{85}\u{9b}\u{7f}";
const SLUG: &str = "ana/fl\u{1b}]0;title\u{202e}eet\u{85}\u{9b}2J\u{7f}";

/// Characters a terminal obeys or hides rather than shows.
fn is_hostile(c: char) -> bool {
    (c.is_control() && c != '\n')
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn assert_shown_safely(what: &str, text: &str) {
    if let Some(c) = text.chars().find(|&c| is_hostile(c)) {
        panic!("{what} shows {c:?} raw:\n{}", text.escape_debug());
    }
}

fn assert_all_shown_safely(what: &str, run: &Run) {
    assert_shown_safely(&format!("{what}: stdout"), &run.stdout);
    assert_shown_safely(&format!("{what}: stderr"), &run.stderr);
}

#[test]
fn json_writes_hostile_characters_as_escapes_and_keeps_the_data() {
    let world = hostile_world();
    let run = world.run(&["--from-release", "100", "--to-release", "101"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_all_shown_safely("describe", &run);
    for escape in [
        r"\u001b[2J",
        r"\u001b]0;title",
        r"\u202e",
        r"\u0085",
        r"\u009b",
        r"\u007f",
    ] {
        assert!(
            run.stdout.contains(escape),
            "no {escape} in:\n{}",
            run.stdout
        );
    }
    // A JSON parser reads exactly what the server sent.
    let json = run.json();
    assert_eq!(json["produces__release"]["commit"], COMMIT);
    let service = crate::support::service(&json, SERVICE);
    assert_eq!(service["delta_failure"]["error_message"], DELTA_ERROR);

    let fleet = world.run(&["--fleet", "10"]);
    assert_eq!(fleet.code, 0, "{}", fleet.stderr);
    assert_all_shown_safely("fleet describe", &fleet);
    let json = fleet.json();
    assert_eq!(json["application"]["slug"], SLUG);
    assert_eq!(json["produces__release"]["commit"], COMMIT);
}

#[test]
fn tables_show_hostile_characters_escaped() {
    let world = hostile_world();
    let pair = world.run(&[
        "--from-release",
        "100",
        "--to-release",
        "101",
        "--output",
        "table",
    ]);
    assert_eq!(pair.code, 0, "{}", pair.stderr);
    assert_all_shown_safely("pair table", &pair);
    assert!(
        pair.stdout
            .contains(r"to 101 (\u{1b}[2J\u{1b}]0;ti): failed"),
        "{}",
        pair.stdout
    );
    assert!(
        pair.stdout
            .contains(r"[1] api\u{1b}]0;title\u{202e}ppa\u{85}\u{9b}2J\u{7f}: the delta"),
        "{}",
        pair.stdout
    );

    let fleet = world.run(&["--fleet", "10", "--output", "table"]);
    assert_eq!(fleet.code, 0, "{}", fleet.stderr);
    assert_all_shown_safely("fleet table", &fleet);
    assert!(
        fleet
            .stdout
            .starts_with(r"fleet ana/fl\u{1b}]0;title\u{202e}eet\u{85}\u{9b}2J\u{7f} (10)"),
        "{}",
        fleet.stdout
    );
}

#[test]
fn error_lines_and_logs_show_hostile_characters_escaped() {
    let world = hostile_world();
    // The slug of a fleet without a target release, on the error line.
    let run = world.run(&["--fleet", "11"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_all_shown_safely("error line", &run);
    assert!(
        error_line(&run).contains(r"fleet `ana/\u{1b}[2Jadrift\u{2066}\u{200f}` has no target"),
        "{}",
        run.stderr
    );

    // The service name in the `service=` field of the trigger's log line,
    // and every other log line.
    for verbosity in ["-v", "-vv"] {
        for target in [
            &["--fleet", "10"][..],
            &["--from-release", "100", "--to-release", "101"],
        ] {
            // A new world each time: a delta already requested is not requested again.
            let world = hostile_world();
            let run = run_checked(world.cmd().args(target).args(["--prepare", verbosity]));
            assert_eq!(run.code, 0, "{}", run.stderr);
            assert_all_shown_safely(&format!("{target:?} --prepare {verbosity}"), &run);
            let triggered = run
                .stderr
                .lines()
                .find(|l| l.contains("delta triggered"))
                .unwrap_or_else(|| panic!("no trigger logged:\n{}", run.stderr));
            assert!(
                triggered.contains(r"service=api\u{1b}]0;title\u{202e}ppa\u{85}\u{9b}2J\u{7f} "),
                "{triggered}"
            );
        }
    }
}

#[test]
fn credentials_in_a_configured_url_never_reach_the_logs() {
    let world = crate::support::World::demo();
    let canary = "urlCANARY0123456789";
    let api = world.sim.api_url();
    let urls = [
        format!("{api}/?token={canary}"),
        format!("{api}/v7?apikey={canary}&x=1"),
        format!("http://user:{canary}@{}", api.trim_start_matches("http://")),
        // Not URLs at all: the message quoting them still hides the secret.
        format!("http://[bad/?token={canary}"),
        format!("http://[bad/?access_token={canary}"),
        format!("http://user:{canary}@[bad/"),
    ];
    for url in &urls {
        for variable in ["BALENARC_API_URL", "BALENARC_DELTA_URL"] {
            let run = run_checked(
                world
                    .cmd()
                    .env(variable, url)
                    .env("RUST_LOG", "trace")
                    .args(["--from-release", "900813", "--to-release", "900835", "-vv"]),
            );
            assert_eq!(run.code, 1, "{variable}={url}: {}", run.stderr);
            for (name, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
                assert!(
                    !text.contains(canary),
                    "{variable}={url}: the secret is on {name}:\n{text}"
                );
            }
            assert!(
                error_line(&run).contains("[REDACTED]") || error_line(&run).contains("***@"),
                "{variable}={url}: {}",
                run.stderr
            );
        }
    }
}
