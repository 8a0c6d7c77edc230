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
