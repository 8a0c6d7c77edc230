//! `--help`, `-h`, `--version` and `-V`: exit 0 without a request; the help
//! text as a snapshot; no arguments and mistyped flags: a usage error that
//! says what to type.

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
