//! The live block on a real pseudo-terminal (through util-linux `script`): it ticks every second, says how to stop, and is cleared before the result.
#![cfg(target_os = "linux")]

use balena_sim::{Outcome, Scenario, demo};

use crate::support::{World, main_delta, pair};

/// A word as a shell reads it back.
fn quoted(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// Runs the binary with `words` on an 80×24 pseudo-terminal and returns
/// its exit code and everything the terminal received.
fn on_a_terminal(world: &World, words: &[String]) -> (i32, String) {
    on_a_terminal_for(world, None, words)
}

/// As [`on_a_terminal`], and sends SIGTERM after `seconds` if given.
fn on_a_terminal_for(world: &World, seconds: Option<u32>, words: &[String]) -> (i32, String) {
    let binary = world.std_cmd();
    let stop = seconds.map_or(String::new(), |s| {
        format!("timeout --preserve-status -s TERM {s} ")
    });
    let mut command = format!(
        "stty cols 80 rows 24; exec {stop}{}",
        quoted(&binary.get_program().to_string_lossy())
    );
    for word in words {
        command.push(' ');
        command.push_str(&quoted(word));
    }
    let mut script = std::process::Command::new("script");
    script.env_clear();
    for (key, value) in binary.get_envs() {
        if let Some(value) = value {
            script.env(key, value);
        }
    }
    let output = script
        .env("TERM", "xterm-256color")
        .current_dir(world.home.path())
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("util-linux `script` runs (Debian: bsdutils)");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn the_block_ticks_says_how_to_stop_and_is_cleared_before_the_result() {
    let world = World::with(main_delta(Scenario::demo(), vec![Outcome::stalled()]));
    let (code, screen) = on_a_terminal(
        &world,
        &pair(
            demo::RELEASE_1,
            demo::RELEASE_2,
            &["--timeout", "3s", "--output", "table"],
        ),
    );
    assert_eq!(code, 2, "{}", screen.escape_debug());
    assert!(
        screen.contains("Ctrl+C to stop (the builds go on)"),
        "{}",
        screen.escape_debug()
    );
    // Redrawn each second while nothing else happens.
    for elapsed in ["0:01 elapsed", "0:02 elapsed"] {
        assert!(
            screen.contains(elapsed),
            "no `{elapsed}`: {}",
            screen.escape_debug()
        );
    }
    // The last frame is erased (cursor up, clear to the end) before the
    // result is written.
    let last_frame = screen.rfind("Ctrl+C to stop").unwrap();
    let result = screen
        .find("release 900813 (84d3d8f4c0) to 900835 (b2cf2db7a4): preparing")
        .unwrap_or_else(|| panic!("no result: {}", screen.escape_debug()));
    assert!(last_frame < result, "{}", screen.escape_debug());
    assert!(
        screen[last_frame..result].contains("F\x1b[J"),
        "the block is not cleared: {}",
        screen[last_frame..result].escape_debug()
    );
    // No frame line reaches the last column, where a terminal would wrap.
    for line in screen.split("\r\n") {
        let visible: String = strip_escapes(line);
        assert!(
            visible.chars().count() < 80 || !line.contains("elapsed"),
            "{visible}"
        );
    }
}

/// `text` without its CSI escape sequences (`ESC [ … final byte`).
fn strip_escapes(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A `warning:` line wraps on a terminal at word boundaries, as `ERROR:`
/// lines do, its lines after the first indented under its text.
#[test]
fn warnings_wrap_like_errors() {
    let world = World::demo();
    let key = "a_setting_with_a_rather_long_name_that_nobody_knows";
    std::fs::write(
        world.home.path().join("balenarc.yml"),
        format!("{key}: 1\n"),
    )
    .unwrap();
    let (code, screen) = on_a_terminal(
        &world,
        &pair(demo::RELEASE_1, demo::RELEASE_2, &["--output", "table"]),
    );
    assert_eq!(code, 0, "{}", screen.escape_debug());
    // Without colour sequences (the word `warning` is yellow here).
    let plain = screen.replace("\u{1b}[33m", "").replace("\u{1b}[0m", "");
    let lines: Vec<&str> = plain.lines().map(|l| l.trim_end_matches('\r')).collect();
    let at = lines
        .iter()
        .position(|l| l.contains("warning: ignoring unknown setting"))
        .unwrap_or_else(|| panic!("no warning:\n{}", screen.escape_debug()));
    assert!(lines[at].chars().count() <= 80, "{}", lines[at]);
    assert!(
        lines[at + 1].starts_with("         ") && lines[at + 1].chars().count() <= 80,
        "{}",
        screen.escape_debug()
    );
}

/// `--watch` on a terminal: a one-line status ticks on stderr between the
/// event lines, is erased before each line, and is gone after `stopped`.
#[test]
fn watch_shows_a_ticking_status_between_its_lines() {
    let world = World::demo();
    let fleet = demo::APP_ID.to_string();
    let words: Vec<String> = [
        "--fleet",
        &fleet,
        "--watch",
        "--no-registry",
        "--output",
        "table",
    ]
    .map(str::to_owned)
    .to_vec();
    let (code, screen) = on_a_terminal_for(&world, Some(5), &words);
    assert_eq!(code, 0, "{}", screen.escape_debug());
    let statuses: Vec<String> = screen
        .split("\r\x1b[J")
        .map(|frame| frame.split("\r\n").next().unwrap_or_default().to_owned())
        .filter(|line| line.contains(" watching 1952390: ") || line.contains(" for 1952390: "))
        .collect();
    // Redrawn at least each second: the spinner turns.
    let spinners: std::collections::BTreeSet<char> =
        statuses.iter().filter_map(|l| l.chars().next()).collect();
    assert!(
        spinners.len() >= 3,
        "{spinners:?}: {}",
        screen.escape_debug()
    );
    assert!(
        statuses.iter().any(|l| l.ends_with("; Ctrl+C to stop")),
        "{}",
        screen.escape_debug()
    );
    for line in &statuses {
        assert!(line.chars().count() < 80, "{line}");
    }
    // Each event line (`<time> <event>`, the time 20 characters) starts
    // where the status was erased.
    for event in [" release 900871 (b2cf2db7e8) seen: ", " stopped\r\n"] {
        let at = screen
            .find(event)
            .unwrap_or_else(|| panic!("no `{event}`: {}", screen.escape_debug()));
        let line_start = at.saturating_sub(20);
        assert!(
            screen[..line_start].ends_with("\r\x1b[J"),
            "`{event}` not after an erased status: {}",
            screen[line_start.saturating_sub(100)..at].escape_debug()
        );
    }
    assert!(
        screen.ends_with(" stopped\r\n"),
        "{}",
        screen.escape_debug()
    );
}
