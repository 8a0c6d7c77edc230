//! `--help`, `-h`, `--version` and `-V`: exit 0 without a request; the help
//! text as a snapshot; no arguments and mistyped flags: a usage error that
//! says what to type; the help's examples run on the demo fleet; shell
//! completions and the man page (`--generate`).

use crate::support::World;

#[test]
fn version_and_help_exit_zero_without_requests() {
    let world = World::demo();
    for args in [&["-v"][..], &["-V"], &["--version"], &["-h"], &["--help"]] {
        let run = world.run(args);
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        assert!(!run.stdout.is_empty(), "{args:?} printed nothing");
        assert!(run.stderr.is_empty(), "{args:?}: {}", run.stderr);
    }
    assert_eq!(
        world.run(&["-v"]).stdout,
        format!("{}\n", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(world.api_requests(), 0);
}

#[test]
fn help_text() {
    let world = World::demo();
    insta::assert_snapshot!("long_help", world.run(&["--help"]).stdout);
    insta::assert_snapshot!("short_help", world.run(&["-h"]).stdout);
}

#[test]
fn no_arguments_print_the_short_help_as_a_usage_error() {
    let world = World::demo();
    let run = world.run(&[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    let short_help = world.run(&["-h"]).stdout;
    assert!(run.stderr.starts_with(&short_help), "{}", run.stderr);
    assert!(
        run.stderr
            .ends_with("ERROR: nothing to do: give --from-release and --to-release, or --fleet\n"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_mistyped_flag_gets_the_similar_one_as_a_hint() {
    let world = World::demo();
    let run = world.run(&["--from-relase", "900813", "--to-release", "900835"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("ERROR: unexpected argument '--from-relase'"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("hint: a similar argument exists: '--from-release'"),
        "{}",
        run.stderr
    );
    assert_eq!(world.api_requests(), 0);
}

/// The commands of the `--help` examples: the lines that start with the
/// program's name and the lines they continue onto with ` \`, split into
/// words as a shell would.
fn help_examples(help: &str) -> Vec<Vec<String>> {
    let mut examples = Vec::new();
    let mut lines = help.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(mut rest) = line.strip_prefix("balena-release-update ") else {
            continue;
        };
        let mut words = Vec::new();
        loop {
            let (text, continued) = match rest.strip_suffix(" \\") {
                Some(text) => (text, true),
                None => (rest, false),
            };
            words.extend(text.split_whitespace().map(str::to_owned));
            match lines.next() {
                Some(next) if continued => rest = next,
                _ => break,
            }
        }
        assert!(
            words.iter().all(|w| w != "\\"),
            "a ` \\` that does not end a line: {words:?}"
        );
        examples.push(words);
    }
    examples
}

/// Lines wider than `width` characters.
fn wider_than(text: &str, width: usize) -> Vec<&str> {
    text.lines().filter(|l| l.chars().count() > width).collect()
}

#[test]
fn help_at_80_columns_fits_and_its_examples_paste() {
    let world = World::demo();
    let help = run_checked_with_columns(&world, "80");
    assert_eq!(wider_than(&help, 80), Vec::<&str>::new(), "{help}");
    // Every line of an example is a whole command or a continuation of one:
    // none is cut where the shell would not continue it.
    let mut in_example = false;
    for line in help.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("balena-release-update ") {
            in_example = true;
        } else if in_example {
            assert!(
                line.starts_with("      --"),
                "an example continues on a line that is not its own: {line:?}\n{help}"
            );
        }
        in_example = in_example && trimmed.ends_with(" \\");
    }
    insta::assert_snapshot!("long_help_80", help);
}

fn run_checked_with_columns(world: &World, columns: &str) -> String {
    let run = crate::support::run_checked(world.cmd().env("COLUMNS", columns).arg("--help"));
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.stdout
}

#[test]
fn every_help_example_runs_on_the_demo_fleet() {
    let help = World::demo().run(&["--help"]).stdout;
    let examples = help_examples(&help);
    assert!(examples.len() >= 4, "examples found: {examples:?}\n{help}");
    for words in examples {
        // Each on a fresh demo fleet, as a reader of the help would start.
        let world = World::demo();
        let run = world.run_words(&words);
        assert_eq!(
            run.code,
            0,
            "`{}` failed:\n{}{}",
            words.join(" "),
            run.stdout,
            run.stderr
        );
        assert!(
            !run.stdout.is_empty(),
            "`{}` printed no result",
            words.join(" ")
        );
    }
}

#[test]
fn the_examples_include_a_describe_a_wait_a_fleet_and_a_budget() {
    let help = World::demo().run(&["--help"]).stdout;
    let examples: Vec<String> = help_examples(&help)
        .into_iter()
        .map(|words| words.join(" "))
        .collect();
    let has = |needle: &str| examples.iter().any(|e| e.contains(needle));
    assert!(has("--from-release"), "{examples:?}");
    assert!(has("--wait --timeout"), "{examples:?}");
    assert!(has("--fleet"), "{examples:?}");
    assert!(has("--max-download"), "{examples:?}");
    // Exit codes are documented next to them.
    for code in ["0 ", "1 ", "2 ", "3 ", "130", "143", "129"] {
        assert!(
            help.lines()
                .skip_while(|l| !l.starts_with("Exit codes:"))
                .any(|l| l.trim_start().starts_with(code)),
            "exit code {code} is not documented:\n{help}"
        );
    }
}

fn generate(world: &World, what: &str) -> String {
    let run = world.run(&["--generate", what]);
    assert_eq!(run.code, 0, "--generate {what}: {}", run.stderr);
    assert!(run.stderr.is_empty(), "--generate {what}: {}", run.stderr);
    run.stdout
}

/// Flags whose value is free text: no completion may offer file names there.
const FREE_VALUES: [&str; 5] = [
    "from-release",
    "to-release",
    "fleet",
    "timeout",
    "max-download",
];

#[test]
fn completions_offer_flags_and_fixed_values_but_never_file_names() {
    let world = World::demo();
    let bash = generate(&world, "bash");
    for flag in FREE_VALUES {
        let case = format!("--{flag})");
        let at = bash
            .find(&case)
            .unwrap_or_else(|| panic!("bash has no case for --{flag}:\n{bash}"));
        let body = &bash[at..at + bash[at..].find(";;").unwrap()];
        assert!(
            !body.contains("compgen -f"),
            "bash completes files after --{flag}: {body}"
        );
        assert!(
            !body.contains("filenames"),
            "bash completes files after --{flag}: {body}"
        );
    }
    assert!(bash.contains("--output"), "{bash}");
    assert!(
        bash.contains("json table"),
        "fixed values of --output: {bash}"
    );

    let zsh = generate(&world, "zsh");
    for flag in FREE_VALUES {
        let line = zsh
            .lines()
            .find(|l| l.contains(&format!("'--{flag}=[")) || l.contains(&format!(")--{flag}=[")))
            .unwrap_or_else(|| panic!("zsh has no spec for --{flag}:\n{zsh}"));
        assert!(
            line.trim_end().ends_with(":' \\"),
            "zsh completes something after --{flag}: {line}"
        );
        assert!(
            !line.contains("_files") && !line.contains("_default"),
            "{line}"
        );
    }
    assert!(zsh.contains("json\\:"), "fixed values of --output: {zsh}");

    let fish = generate(&world, "fish");
    for flag in FREE_VALUES {
        let line = fish
            .lines()
            .find(|l| l.contains(&format!(" -l {flag} ")))
            .unwrap_or_else(|| panic!("fish has no line for --{flag}:\n{fish}"));
        assert!(
            line.ends_with(" -r -f"),
            "fish completes files after --{flag}: {line}"
        );
    }
    let output = fish.lines().find(|l| l.contains(" -l output ")).unwrap();
    assert!(output.contains("-a \"json"), "{output}");
}

#[test]
fn the_man_page_shows_every_flag_with_its_value_and_description() {
    let world = World::demo();
    let man = generate(&world, "man");
    let synopsis = section(&man, "SYNOPSIS");
    for (flag, value) in [
        ("from\\-release", "ID|COMMIT"),
        ("to\\-release", "ID|COMMIT"),
        ("fleet", "SLUG|ID"),
        ("timeout", "DURATION"),
        ("max\\-download", "SIZE"),
        ("output", "FORMAT"),
        ("generate", "WHAT"),
    ] {
        let shown = format!("\\fB\\-\\-{flag}\\fR \\fI{value}\\fR");
        assert!(
            synopsis.contains(&shown),
            "synopsis lacks {shown}:\n{synopsis}"
        );
    }
    // Every flag of `--help` has an entry with a description under OPTIONS.
    let options = section(&man, "OPTIONS");
    let entries: Vec<&str> = options.split(".TP\n").skip(1).collect();
    let help = world.run(&["--help"]).stdout;
    let flags: Vec<&str> = help
        .lines()
        .filter_map(|l| {
            l.trim_start()
                .strip_prefix("--")
                .or_else(|| l.trim_start().get(4..)?.strip_prefix("--"))
        })
        .map(|l| l.split([' ', ',']).next().unwrap().trim_end_matches("..."))
        .collect();
    assert!(flags.len() >= 14, "{flags:?}");
    for flag in flags {
        let escaped = flag.replace('-', "\\-");
        let entry = entries
            .iter()
            .find(|e| {
                e.lines()
                    .next()
                    .unwrap_or("")
                    .contains(&format!("\\-\\-{escaped}\\fR"))
            })
            .unwrap_or_else(|| panic!("no entry for --{flag}:\n{options}"));
        let description = entry.lines().nth(1).unwrap_or("");
        assert!(
            description.len() > 10 && !description.starts_with('.'),
            "--{flag} has no description: {entry}"
        );
    }
    // `--generate` is hidden from `-h`, not from the man page.
    assert!(options.contains("completions or the man page"), "{options}");

    // The examples: not filled, not hyphenated, every `-` escaped so that
    // man shows an ASCII hyphen-minus that can be copied.
    let examples = section(&man, "EXAMPLES");
    assert!(man.contains(".nh\n"), "hyphenation stays on");
    assert!(
        examples.contains(".nf\n") && examples.contains(".fi\n"),
        "{examples}"
    );
    assert!(
        examples.contains("balena\\-release\\-update \\-\\-fleet"),
        "{examples}"
    );
    for line in man.lines().filter(|l| !l.starts_with('.')) {
        let unescaped = line
            .match_indices('-')
            .any(|(i, _)| !line[..i].ends_with('\\'));
        assert!(
            !unescaped,
            "a bare `-` renders as a typographic hyphen: {line}"
        );
    }
    assert!(section(&man, "EXIT STATUS").contains("143"), "{man}");
    rendered_by_man(&man, &help);
}

/// The page as `man` shows it at 80 columns (`man` must be installed;
/// Debian: man-db) has
/// the synopsis's values, plain ASCII hyphens (no U+2010 from hyphenation or
/// from an unescaped `-`), the examples of `--help` whole, every line within
/// 80 columns.
fn rendered_by_man(page: &str, help: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("balena-release-update.1");
    std::fs::write(&path, page).unwrap();
    let out = std::process::Command::new("man")
        .arg("-l")
        .arg(&path)
        .env("MANWIDTH", "80")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .env("LANG", "C.UTF-8")
        .output()
        .expect("`man` runs (Debian: man-db); the rendered page must be checked");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains('\u{2010}') && !text.contains('\u{2212}'),
        "{text}"
    );
    assert!(text.contains("[--max-download SIZE]"), "{text}");
    for example in help_examples(&text) {
        assert!(example.len() >= 2, "{example:?}");
    }
    assert!(
        text.lines().any(|l| l.trim()
            == "balena-release-update --fleet gh_demo/kiosk-fleet --output table"),
        "{text}"
    );
    // The examples of `--help`, continued with ` \\` as there, paste whole.
    let shown = help_examples(&text);
    for example in help_examples(help) {
        assert!(shown.contains(&example), "{example:?}:\n{text}");
    }
    // Within 80 columns, as `man` shows it; the page itself as a snapshot
    // (its version line filtered).
    assert_eq!(wider_than(&text, 80), Vec::<&str>::new(), "{text}");
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(env!("CARGO_PKG_VERSION"), "[VERSION]");
    settings.bind(|| insta::assert_snapshot!("man_page_80", text));
}

/// The text of a man page's `.SH NAME` section, up to the next one.
fn section<'a>(man: &'a str, name: &str) -> &'a str {
    let start = man
        .find(&format!(".SH {name}\n"))
        .or_else(|| man.find(&format!(".SH \"{name}\"\n")))
        .unwrap_or_else(|| panic!("no section {name}:\n{man}"));
    let rest = &man[start..];
    let end = rest[4..].find("\n.SH ").map_or(rest.len(), |i| i + 5);
    &rest[..end]
}
