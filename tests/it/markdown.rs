//! `--output markdown`: the tables' content as GitHub-flavoured Markdown, with server text unable to break out of it.

use std::path::Path;

use balena_sim::{Scenario, demo};

use crate::support::{World, pair, snapshot_filters};

#[test]
fn pair_and_fleet_reports() {
    let _filters = snapshot_filters().bind_to_scope();
    let world = World::demo();
    let out = world.run_words(&pair(
        demo::RELEASE_1,
        demo::RELEASE_3,
        &["--output", "markdown"],
    ));
    assert_eq!(out.code, 0, "{}", out.stderr);
    insta::assert_snapshot!("markdown_pair_r1_r3", out.stdout);
    let out = world.run(&["--fleet", &demo::APP_ID.to_string(), "--output", "markdown"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    insta::assert_snapshot!("markdown_fleet", out.stdout);
}

/// Unescaped `|` outside code: what GitHub splits table cells on.
fn cell_separators(line: &str) -> usize {
    let mut count = 0;
    let mut escaped = false;
    for c in line.chars() {
        match c {
            '\\' if !escaped => escaped = true,
            '|' if !escaped => count += 1,
            _ => escaped = false,
        }
        if c != '\\' {
            escaped = false;
        }
    }
    count
}

#[test]
fn server_text_cannot_inject_markup() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/scenarios/markdown-injection.json"
    );
    let world = World::with(Scenario::from_path(Path::new(path)).expect("the scenario loads"));
    for words in [
        vec!["--from-release", "100", "--to-release", "101"],
        vec!["--fleet", "10"],
    ] {
        let out = world.run(&[words, vec!["--output", "markdown"]].concat());
        assert_eq!(out.code, 0, "{}", out.stderr);
        let text = &out.stdout;
        assert!(!text.contains('<'), "raw HTML in:\n{text}");
        assert!(!text.contains("[x](http"), "a link in:\n{text}");
        assert!(!text.contains(" @team"), "a mention in:\n{text}");
        assert!(!text.contains(" **b**"), "emphasis in:\n{text}");
        // Every row of a table has as many cells as its header.
        let mut expected = None;
        for line in text.lines() {
            if line.starts_with('|') {
                let cells = cell_separators(line);
                assert_eq!(*expected.get_or_insert(cells), cells, "{line}\nin:\n{text}");
            } else {
                expected = None;
            }
            // Nothing from a server starts a line of its own.
            assert!(!line.starts_with("| injected"), "{text}");
        }
        assert!(
            text.contains(
                r"api\|\[x\](http&#58;//e.co) \@&#8203;team \*\*b\*\* www&#46;e.co bob\@&#8203;e.co"
            ),
            "{text}"
        );
        rendered_by_cmark_gfm(text);
        assert!(
            text.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{text}"
        );
    }
}

/// Renders `markdown` as GitHub does (cmark-gfm with its extensions, through
/// `scripts/check-markdown.py`) and fails on a link, raw HTML, a heading
/// that is not the tool's own or a table row of the wrong width.
fn rendered_by_cmark_gfm(markdown: &str) {
    use std::io::Write;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/check-markdown.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (CI installs it with cmarkgfm)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(markdown.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "cmark-gfm (exit {:?}):\n{stderr}\nfor:\n{markdown}",
        out.status.code()
    );
}

/// With `--max-download`, the report says the verdict under its first
/// heading, with the figure and the limit: over (exit 3) or within.
#[test]
fn the_budget_verdict_is_in_the_report() {
    let world = World::demo();
    let fleet = demo::APP_ID.to_string();
    let run = |limit: &str| {
        world.run(&[
            "--fleet",
            &fleet,
            "--output",
            "markdown",
            "--max-download",
            limit,
        ])
    };
    let over = run("100MB");
    assert_eq!(over.code, 3, "{}", over.stderr);
    let lines: Vec<String> = over
        .stdout
        .lines()
        .map(|l| l.replace('\u{a0}', " "))
        .collect();
    assert!(lines[0].starts_with("## fleet "), "{}", over.stdout);
    let verdict = &lines[2];
    assert!(
        verdict.starts_with(
            "**Over the download budget: release 900813 (84d3d8f4c0) to 900871 (b2cf2db7e8), 2 \
             devices: a device updating now downloads 159 MB ("
        ) && verdict.ends_with(" bytes), more than --max-download 100 MB (100000000 bytes)**"),
        "{}",
        over.stdout
    );

    let within = run("2GB");
    assert_eq!(within.code, 0, "{}", within.stderr);
    let text = within.stdout.replace('\u{a0}', " ");
    let verdict = text.lines().nth(2).unwrap_or_default();
    assert!(
        verdict.starts_with(
            "**Within the download budget: a device updating now downloads at most 159 MB ("
        ) && verdict.ends_with(" bytes), within --max-download 2.00 GB (2000000000 bytes)**"),
        "{text}"
    );
    // Without the flag, no verdict.
    let plain = world.run(&["--fleet", &fleet, "--output", "markdown"]);
    assert!(!plain.stdout.contains("budget"), "{}", plain.stdout);

    // A transition alone: under its title.
    let pair = world.run_words(&pair(
        demo::RELEASE_1,
        demo::RELEASE_3,
        &["--output", "markdown", "--max-download", "1GB"],
    ));
    assert_eq!(pair.code, 0, "{}", pair.stderr);
    let lines: Vec<&str> = pair.stdout.lines().collect();
    assert!(lines[0].starts_with("## release 900813"), "{}", pair.stdout);
    assert!(
        lines[2].starts_with("**Within the download budget: "),
        "{}",
        pair.stdout
    );
}

/// A failed delta's cell says `failed [1]`; its footnote alone has the
/// server's text; sizes are held to their units by no-break spaces.
#[test]
fn a_failure_is_told_once_and_sizes_do_not_wrap() {
    use balena_sim::{Clock, Outcome};
    let reason = "the builder ran out of disk space while extracting layer 7 of 9";
    let world = World::with(crate::support::main_delta(
        Scenario::demo().with_clock(Clock::scaled(200.0)),
        vec![Outcome::failed(reason); 3],
    ));
    let wait = world.run_words(&pair(
        demo::RELEASE_1,
        demo::RELEASE_2,
        &["--wait", "--timeout", "60"],
    ));
    assert_eq!(wait.code, 1, "{}", wait.stderr);
    let out = world.run_words(&pair(
        demo::RELEASE_1,
        demo::RELEASE_2,
        &["--output", "markdown"],
    ));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("| main |"))
        .unwrap_or_else(|| panic!("no row for main:\n{}", out.stdout));
    assert!(row.contains("| failed \\[1\\] |"), "{row}");
    assert_eq!(out.stdout.matches(reason).count(), 1, "{}", out.stdout);
    assert!(out.stdout.contains("- \\[1\\] main: "), "{}", out.stdout);
    for unit in ["B", "kB", "MB", "GB"] {
        for digit in '0'..='9' {
            assert!(
                !out.stdout.contains(&format!("{digit} {unit} ")),
                "a size that may wrap:\n{}",
                out.stdout
            );
        }
    }
    assert!(out.stdout.contains("\u{a0}MB"), "{}", out.stdout);
}
