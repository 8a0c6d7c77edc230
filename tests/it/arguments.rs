//! Flags are validated before any request, help and version behave as the npm tool's.

use crate::support::World;

#[test]
fn version_and_help_exit_zero_without_requests() {
    let world = World::demo();
    for args in [&["-v"][..], &["--version"], &["-h"], &["--help"]] {
        let run = world.run(args);
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        assert!(!run.stdout.is_empty(), "{args:?} printed nothing");
    }
    assert_eq!(
        world.run(&["-v"]).stdout,
        format!("{}\n", env!("CARGO_PKG_VERSION"))
    );
    assert!(
        world.run(&["--help"]).stdout.contains("--timeout 10m"),
        "help has examples"
    );
    assert_eq!(world.api_requests(), 0);
}

#[test]
fn bad_arguments_fail_before_any_request() {
    let world = World::demo();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--from-release", "84d3d", "--to-release", "900835"],
            "6 to 40",
        ),
        (
            &[
                "--from-release",
                "zzzzzz-not-a-hash",
                "--to-release",
                "900835",
            ],
            "--from-release",
        ),
        (&["--from-release", "900813"], "both a source and a target"),
        (&[], "both a source and a target"),
        (
            &[
                "--from-release",
                "900813",
                "--to-release",
                "900835",
                "--timeout",
                "0",
            ],
            "at least 1 second",
        ),
        (
            &[
                "--from-release",
                "900813",
                "--to-release",
                "900835",
                "--timeout",
                "1.5",
            ],
            "not a duration",
        ),
        (
            &[
                "--from-release",
                "900813",
                "--to-release",
                "900835",
                "--timeout",
                "2147484",
            ],
            "maximum",
        ),
        (
            &[
                "--from-release",
                "900813",
                "--to-release",
                "900835",
                "--foo",
            ],
            "--foo",
        ),
        (
            &[
                "--from-release",
                "1",
                "--from-release",
                "2",
                "--to-release",
                "3",
            ],
            "multiple times",
        ),
    ];
    for (args, expected) in cases {
        let run = world.run(args);
        assert_eq!(run.code, 1, "{args:?}");
        assert!(run.stdout.is_empty(), "{args:?} printed a result");
        assert!(
            run.stderr.contains(expected),
            "{args:?}: expected `{expected}` in:\n{}",
            run.stderr
        );
    }
    assert_eq!(world.api_requests(), 0, "no request for bad arguments");
}
