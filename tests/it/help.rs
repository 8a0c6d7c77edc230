//! `--help`, `-h` and `--version`: exit 0 without a request; the help text as a snapshot.

use crate::support::World;

#[test]
fn version_and_help_exit_zero_without_requests() {
    let world = World::demo();
    for args in [&["-v"][..], &["--version"], &["-h"], &["--help"]] {
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
