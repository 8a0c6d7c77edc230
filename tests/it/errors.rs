//! Failures end with one `ERROR:` line that names the cause and the fix.

use balena_sim::demo;

use crate::support::{World, write_token};

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
    expect_error(
        &world,
        &["--from-release", "999999", "--to-release", &r2],
        1,
        &["999999", "not found"],
    );
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
    let r1 = demo::RELEASE_1.to_string();
    expect_error(
        &world,
        &[
            "--from-release",
            &r1,
            "--to-release",
            demo::AMBIGUOUS_PREFIX,
        ],
        1,
        &["matches 2"],
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

    write_token(world.home.path(), "wrongTokenValue0123456789abcdef");
    expect_error(&world, &args, 1, &["401", "balena login"]);
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
