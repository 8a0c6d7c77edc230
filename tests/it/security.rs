//! Where the token may go and where it must never appear: not in any
//! output at any verbosity, not to a host other than the configured API and
//! delta server, not over plain http to a remote host without an explicit
//! opt-in; and a token file others can read is pointed out.

use balena_sim::{Clock, FaultRule, Faults, Outcome, Scenario, Scope, demo};

use crate::support::{CANARY, World, error_line, run_checked};
use balena_sim::canned::{Answer, Canned, RELEASES};

fn pair(from: i64, to: i64) -> Vec<String> {
    vec![
        "--from-release".into(),
        from.to_string(),
        "--to-release".into(),
        to.to_string(),
    ]
}

fn with(mut words: Vec<String>, extra: &[&str]) -> Vec<String> {
    words.extend(extra.iter().map(|s| s.to_string()));
    words
}

#[test]
fn the_canary_token_never_appears_at_any_verbosity() {
    // Successful runs of every mode, and runs that fail in different ways.
    let flows: Vec<(Scenario, Vec<String>, i32)> = vec![
        (Scenario::demo(), pair(demo::RELEASE_1, demo::RELEASE_2), 0),
        (
            Scenario::demo().with_clock(Clock::scaled(200.0)),
            with(
                pair(demo::RELEASE_1, demo::RELEASE_2),
                &["--wait", "--output", "table"],
            ),
            0,
        ),
        (
            Scenario::demo(),
            with(pair(demo::RELEASE_2, demo::RELEASE_3), &["--prepare"]),
            0,
        ),
        (
            Scenario::demo().with_clock(Clock::scaled(200.0)),
            vec![
                "--fleet".into(),
                "gh_demo/kiosk-fleet".into(),
                "--wait".into(),
            ],
            0,
        ),
        (Scenario::demo(), pair(999_999, demo::RELEASE_2), 1),
        (
            Scenario::demo()
                .with_clock(Clock::scaled(200.0))
                .with_delta_outcome(
                    demo::IMAGE_R1_MAIN,
                    demo::IMAGE_R2_MAIN,
                    vec![Outcome::failed("no space left"); 3],
                ),
            with(pair(demo::RELEASE_1, demo::RELEASE_2), &["--wait"]),
            1,
        ),
        (
            Scenario::demo()
                .with_faults(Faults::none().with(FaultRule::stall(None).scope(Scope::Delta))),
            with(pair(demo::RELEASE_1, demo::RELEASE_2), &["--timeout", "1"]),
            2,
        ),
    ];
    for (scenario, words, code) in flows {
        for (verbosity, token_in_variable) in [("-v", false), ("-vv", false), ("-vv", true)] {
            // A fresh simulator each time: scripted outcomes are used up.
            let world = World::with(scenario.clone());
            let mut cmd = world.cmd();
            // Even a request for every log line changes nothing.
            cmd.env("RUST_LOG", "trace").args(&words).arg(verbosity);
            if token_in_variable {
                cmd.env("BALENA_RELEASE_UPDATE_TOKEN", CANARY);
            }
            // run_checked fails on the canary in stdout or stderr.
            let run = run_checked(&mut cmd);
            assert_eq!(run.code, code, "{words:?} {verbosity}:\n{}", run.stderr);
            if verbosity == "-vv" {
                assert!(
                    run.stderr.contains("DEBUG"),
                    "{words:?}: no debug logs, so they were not checked"
                );
            }
            assert!(
                world.api_requests() > 0,
                "{words:?}: the token was never used"
            );
        }
    }
}

#[test]
fn credentials_in_a_configured_url_never_reach_the_output() {
    let world = World::demo();
    for verbosity in ["-v", "-vv"] {
        for variable in ["BALENARC_API_URL", "BALENARC_DELTA_URL"] {
            let run = run_checked(
                world
                    .cmd()
                    .env(variable, "https://user:s3cretPassw0rd@api.example.com")
                    .args(pair(demo::RELEASE_1, demo::RELEASE_2))
                    .arg(verbosity),
            );
            assert_eq!(run.code, 1, "{}", run.stderr);
            assert!(
                !run.stderr.contains("s3cretPassw0rd"),
                "{variable} {verbosity}: the password was printed:\n{}",
                run.stderr
            );
            assert!(error_line(&run).contains("use a token"), "{}", run.stderr);
        }
    }
}

#[test]
fn the_token_goes_only_to_the_api_and_delta_hosts() {
    let world = World::demo();
    let api = Canned::start();
    api.route("/v7/release", Answer::json(RELEASES))
        .route("/v7/delta", Answer::json(r#"{"d":[]}"#));
    let delta = Canned::start();
    delta.route("/api/v3/delta", Answer::new(504, "text/plain", "building"));
    let run = run_checked(
        world
            .cmd()
            .env("BALENARC_API_URL", &api.url)
            .env("BALENARC_DELTA_URL", &delta.url)
            .args(["--from-release", "1", "--to-release", "2", "--prepare"]),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let bearer = format!("Bearer {CANARY}");
    for (name, server) in [("API", &api), ("delta", &delta)] {
        let seen = server.seen();
        assert!(!seen.is_empty(), "nothing reached the {name} host");
        for request in &seen {
            let sent = request
                .headers
                .iter()
                .find(|(n, _)| n == "authorization")
                .map(|(_, v)| v.as_str());
            assert_eq!(sent, Some(bearer.as_str()), "{name}: {}", request.target);
        }
    }
}

#[test]
fn a_redirect_to_another_host_is_not_followed() {
    let world = World::demo();
    for status in [301, 302, 307, 308] {
        let elsewhere = Canned::start();
        elsewhere.route("/", Answer::json(RELEASES));
        let port = elsewhere.url.rsplit(':').next().unwrap().to_owned();
        let by_name = format!("http://localhost:{port}/v7/release");

        // The API redirects.
        let api = Canned::start();
        api.route("/v7/", Answer::redirect(status, &by_name));
        let run = run_checked(
            world
                .cmd()
                .env("BALENARC_API_URL", &api.url)
                .env("BALENARC_DELTA_URL", &api.url)
                .args(["--from-release", "1", "--to-release", "2", "-vv"]),
        );
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(error_line(&run).contains("not followed"), "{}", run.stderr);

        // The delta server redirects.
        let api = Canned::start();
        api.route("/v7/release", Answer::json(RELEASES))
            .route("/v7/delta", Answer::json(r#"{"d":[]}"#));
        let delta = Canned::start();
        delta.route(
            "/api/v3/delta",
            Answer::redirect(status, &format!("{}/api/v3/delta", elsewhere.url)),
        );
        let run = run_checked(
            world
                .cmd()
                .env("BALENARC_API_URL", &api.url)
                .env("BALENARC_DELTA_URL", &delta.url)
                .args(["--from-release", "1", "--to-release", "2", "--prepare"]),
        );
        assert_eq!(run.code, 1, "{}", run.stderr);
        let line = error_line(&run);
        assert!(
            line.contains("delta server") && line.contains("not followed"),
            "{}",
            run.stderr
        );
        assert!(
            elsewhere.seen().is_empty(),
            "{status}: a request reached the other host: {:?}",
            elsewhere.seen()
        );
    }
}

#[test]
fn plain_http_to_a_remote_host_needs_an_explicit_opt_in() {
    let world = World::demo();
    for (variable, url) in [
        ("BALENARC_API_URL", "http://api.example.com"),
        ("BALENARC_DELTA_URL", "http://delta.example.com"),
    ] {
        let run = run_checked(
            world
                .cmd()
                .env(variable, url)
                .args(pair(demo::RELEASE_1, demo::RELEASE_2)),
        );
        assert_eq!(run.code, 1, "{}", run.stderr);
        let line = error_line(&run);
        for part in [
            url,
            "https://",
            "--allow-http",
            "BALENA_RELEASE_UPDATE_ALLOW_HTTP=1",
        ] {
            assert!(line.contains(part), "`{part}` missing: {line}");
        }
    }
    assert_eq!(world.api_requests(), 0);
}

/// `0.0.0.0` is not a loopback address, yet on Linux a connection to it
/// reaches the simulator on 127.0.0.1: a remote-looking host for the tool.
#[cfg(target_os = "linux")]
#[test]
fn the_opt_in_allows_plain_http_to_other_hosts() {
    let world = World::demo();
    let remote = |url: String| url.replace("127.0.0.1", "0.0.0.0");
    let api = remote(world.sim.api_url());
    let delta = remote(world.sim.delta_url());
    let args = pair(demo::RELEASE_1, demo::RELEASE_2);

    let refused = run_checked(
        world
            .cmd()
            .env("BALENARC_API_URL", &api)
            .env("BALENARC_DELTA_URL", &delta)
            .args(&args),
    );
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(error_line(&refused).contains("--allow-http"));
    assert_eq!(world.api_requests(), 0);

    let by_flag = run_checked(
        world
            .cmd()
            .env("BALENARC_API_URL", &api)
            .env("BALENARC_DELTA_URL", &delta)
            .args(&args)
            .arg("--allow-http"),
    );
    assert_eq!(by_flag.code, 0, "{}", by_flag.stderr);
    let by_variable = run_checked(
        world
            .cmd()
            .env("BALENARC_API_URL", &api)
            .env("BALENARC_DELTA_URL", &delta)
            .env("BALENA_RELEASE_UPDATE_ALLOW_HTTP", "1")
            .args(&args),
    );
    assert_eq!(by_variable.code, 0, "{}", by_variable.stderr);
    assert_eq!(by_flag.stdout, by_variable.stdout);
    assert!(world.api_requests() > 0);

    let off = run_checked(
        world
            .cmd()
            .env("BALENARC_API_URL", &api)
            .env("BALENARC_DELTA_URL", &delta)
            .env("BALENA_RELEASE_UPDATE_ALLOW_HTTP", "0")
            .args(&args),
    );
    assert_eq!(off.code, 1, "`0` is no opt-in: {}", off.stderr);
}

#[cfg(unix)]
#[test]
fn a_token_file_others_can_read_gets_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let world = World::demo();
    let path = world.data_dir().join("token");
    for (mode, warned) in [
        (0o600, false),
        (0o400, false),
        (0o640, true),
        (0o604, true),
        (0o644, true),
        (0o666, true),
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let run = world.run(&["--from-release", "900813", "--to-release", "900835"]);
        assert_eq!(run.code, 0, "{mode:o}: {}", run.stderr);
        let warning = run.stderr.lines().find(|l| l.starts_with("warning: "));
        assert_eq!(warning.is_some(), warned, "{mode:o}: {}", run.stderr);
        if let Some(line) = warning {
            assert!(
                line.contains(&format!("mode {mode:o}")) && line.contains("chmod 600"),
                "{line}"
            );
        }
    }
}
