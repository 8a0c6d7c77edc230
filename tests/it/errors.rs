//! What a failed run prints (`ERROR:`, `caused by:`, `hint:`, exit code); main kinds as snapshots.

use balena_sim::{Fault, FaultRule, Faults, Outcome, Scenario, Scope, demo};

use crate::support::{Run, World, failure_text, main_delta, pair, snapshot_filters, write_token};

fn expect_error(world: &World, args: &[&str], code: i32, expected: &[&str]) {
    let run = world.run(args);
    assert_eq!(run.code, code, "{args:?}:\n{}", run.stderr);
    assert!(
        run.stdout.is_empty(),
        "{args:?} printed a result:\n{}",
        run.stdout
    );
    for part in expected {
        assert!(
            run.stderr.contains(part),
            "{args:?}: `{part}` missing from:\n{}",
            run.stderr
        );
    }
}

#[test]
fn releases_that_cannot_be_compared() {
    let world = World::demo();
    let r2 = demo::RELEASE_2.to_string();
    let failed = demo::FAILED_RELEASE.to_string();
    expect_error(
        &world,
        &["--from-release", &failed, "--to-release", &r2],
        1,
        &[&failed, "failed"],
    );
    let other = demo::OTHER_RELEASE.to_string();
    expect_error(
        &world,
        &["--from-release", &other, "--to-release", &r2],
        1,
        &["same"],
    );
}

#[test]
fn missing_wrong_and_expired_tokens() {
    let world = World::demo();
    let args = ["--from-release", "900813", "--to-release", "900835"];

    std::fs::remove_file(world.data_dir().join("token")).unwrap();
    expect_error(&world, &args, 1, &["not logged in", "balena login"]);
    assert_eq!(world.api_requests(), 0);

    write_token(world.home.path(), "12345");
    expect_error(&world, &args, 1, &["token"]);
    assert_eq!(world.api_requests(), 0);

    // header {"alg":"HS256","typ":"JWT"}, payload {"id":1,"iat":1500000000,"exp":1500003600}
    let expired = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6MSwiaWF0IjoxNTAwMDAwMDAwLCJleHAiOjE1MDAwMDM2MDB9.c2lnbmF0dXJl";
    write_token(world.home.path(), expired);
    expect_error(&world, &args, 1, &["expired", "balena login"]);
    assert_eq!(
        world.api_requests(),
        0,
        "an expired token is refused before any request"
    );
}

#[test]
fn token_variable_wins_over_the_file() {
    let world = World::demo();
    write_token(world.home.path(), "wrongTokenValue0123456789abcdef");
    let run = world
        .cmd()
        .env("BALENA_RELEASE_UPDATE_TOKEN", crate::support::CANARY)
        .args(["--from-release", "900813", "--to-release", "900835"])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

#[test]
fn plain_http_is_refused_for_remote_hosts() {
    let world = World::demo();
    let run = crate::support::run_checked(
        world
            .cmd()
            .env("BALENARC_API_URL", "http://api.example.com")
            .args(["--from-release", "900813", "--to-release", "900835"]),
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("http://") && run.stderr.contains("--allow-http"),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_settings_file() {
    let world = World::demo();
    std::fs::write(world.home.path().join("balenarc.yml"), "apiUrl: [oops").unwrap();
    expect_error(
        &world,
        &["--from-release", "900813", "--to-release", "900835"],
        1,
        &["balenarc.yml", "YAML"],
    );
}

/// A run that fails the way `name` says, shown as a person sees it.
fn snapshot_failure(name: &str, world: &World, words: &[String], code: i32) -> Run {
    let run = world.run_words(words);
    assert_eq!(run.code, code, "{name}:\n{}", run.stderr);
    insta::assert_snapshot!(name, failure_text(&run));
    run
}

#[test]
fn the_main_failure_kinds() {
    let _filters = snapshot_filters().bind_to_scope();
    let world = World::demo();
    let r1 = demo::RELEASE_1;
    let r2 = demo::RELEASE_2;
    let nothing_read = |run: Run| assert!(run.stdout.is_empty(), "{}", run.stdout);
    nothing_read(snapshot_failure(
        "unknown_release",
        &world,
        &pair(999_999, r2, &[]),
        1,
    ));
    let ambiguous = [
        "--from-release".to_owned(),
        r1.to_string(),
        "--to-release".to_owned(),
        demo::AMBIGUOUS_PREFIX.to_owned(),
    ];
    nothing_read(snapshot_failure("ambiguous_commit", &world, &ambiguous, 1));

    write_token(world.home.path(), "wrongTokenValue0123456789abcdef");
    nothing_read(snapshot_failure(
        "token_refused_401",
        &world,
        &pair(r1, r2, &[]),
        1,
    ));

    // A port nobody listens on: bound, then released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let run = crate::support::run_checked(world.cmd().env("BALENARC_API_URL", &url).args(pair(
        r1,
        r2,
        &[],
    )));
    assert_eq!(run.code, 1, "{}", run.stderr);
    insta::assert_snapshot!("api_unreachable", failure_text(&run));
}

#[test]
fn a_delta_server_that_keeps_failing() {
    let _filters = snapshot_filters().bind_to_scope();
    let failing = FaultRule::new(Fault::Error {
        status: 500,
        body: Some("internal error".into()),
    })
    .scope(Scope::Delta);
    let world = World::with(Scenario::demo().with_faults(Faults::none().with(failing)));
    let words = pair(demo::RELEASE_1, demo::RELEASE_2, &["--prepare"]);
    let run = snapshot_failure("delta_server_failing", &world, &words, 1);
    // The state was read before the delta server failed: it is printed.
    assert_eq!(run.json()["overall_status"], "pending", "{}", run.stdout);
}

#[test]
fn a_timeout() {
    let _filters = snapshot_filters().bind_to_scope();
    let stalled = main_delta(Scenario::demo(), vec![Outcome::stalled()]);
    let world = World::with(stalled);
    let words = pair(demo::RELEASE_1, demo::RELEASE_2, &["--timeout", "1"]);
    snapshot_failure("timeout", &world, &words, 2);
}

/// ERROR is red and bold and hints dim when colour is on (`--color always`,
/// or `CLICOLOR_FORCE` off a terminal); NO_COLOR and `--color never` keep
/// them plain.
#[test]
fn colour_on_request_and_never_against_no_color() {
    let world = World::demo();
    let unknown = ["--from-release", "123", "--to-release", "900835"];
    let run = |extra: &[&str], vars: &[(&str, &str)]| {
        let mut cmd = world.cmd();
        cmd.args(unknown).args(extra);
        for (name, value) in vars {
            cmd.env(name, value);
        }
        crate::support::run_checked(&mut cmd)
    };
    let red = "\u{1b}[1;31mERROR\u{1b}[0m: ";
    let always = run(&["--color", "always"], &[]);
    assert_eq!(always.code, 1, "{}", always.stderr);
    assert!(always.stderr.starts_with(red), "{:?}", always.stderr);
    assert!(
        always
            .stderr
            .lines()
            .filter(|l| l.contains("hint: "))
            .all(|l| l.starts_with("\u{1b}[2m") && l.ends_with("\u{1b}[0m")),
        "{:?}",
        always.stderr
    );
    assert!(
        run(&[], &[("CLICOLOR_FORCE", "1")]).stderr.starts_with(red),
        "CLICOLOR_FORCE colours a pipe"
    );
    for plain in [
        run(&[], &[]),
        run(&[], &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]),
        run(&["--color", "never"], &[("CLICOLOR_FORCE", "1")]),
    ] {
        assert!(plain.stderr.starts_with("ERROR: "), "{:?}", plain.stderr);
        assert!(!plain.stderr.contains('\u{1b}'), "{:?}", plain.stderr);
    }
}
