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

/// A remote host over plain http is refused without the opt-in and tried
/// with it (`.invalid` never resolves, so nothing leaves the machine).
#[test]
fn the_opt_in_allows_plain_http_to_other_hosts() {
    let world = World::demo();
    let remote = "http://remote.invalid:9";
    let args = pair(demo::RELEASE_1, demo::RELEASE_2);
    let run = |opt_in: &[(&str, &str)], flag: bool| {
        let mut cmd = world.cmd();
        cmd.env("BALENARC_API_URL", remote)
            .env("BALENARC_DELTA_URL", remote)
            .args(&args);
        for (k, v) in opt_in {
            cmd.env(k, v);
        }
        if flag {
            cmd.arg("--allow-http");
        }
        run_checked(&mut cmd)
    };
    let refused = run(&[], false);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(error_line(&refused).contains("--allow-http"));
    let off = run(&[("BALENA_RELEASE_UPDATE_ALLOW_HTTP", "0")], false);
    assert!(
        error_line(&off).contains("--allow-http"),
        "`0` is no opt-in: {}",
        off.stderr
    );
    for tried in [
        run(&[], true),
        run(&[("BALENA_RELEASE_UPDATE_ALLOW_HTTP", "1")], false),
    ] {
        let line = error_line(&tried);
        assert!(
            line.contains("could not get an answer from the API"),
            "{line}"
        );
        assert!(line.contains("remote.invalid"), "{line}");
    }
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

/// What a run does with a settings file that may choose the servers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Choice {
    /// Exit 0, no warning about the file.
    Silent,
    /// Exit 0, a warning naming the file and the host.
    Warned,
    /// Exit 1 before any request, one `ERROR:` naming the file and the opt-in.
    Refused,
}

#[test]
fn a_working_directory_file_choosing_the_servers_is_named_and_refused_under_ci() {
    use Choice::*;
    let world = World::demo();
    let api = world.sim.api_url();
    let delta = world.sim.delta_url();
    let api_host = api
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let delta_host = delta
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let trust = "BALENA_RELEASE_UPDATE_TRUST_CWD_SETTINGS";
    // (file, key, variables, outcome); `key` is set in `file` to the
    // simulator's URL and its variable is unset, so the file decides.
    type Vars<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(&str, &str, Vars, Choice)> = vec![
        ("balenarc.yml", "apiUrl", vec![], Warned),
        ("resinrc.yml", "deltaUrl", vec![], Warned),
        ("balenarc.yml", "apiUrl", vec![("CI", "true")], Refused),
        ("resinrc.yml", "apiUrl", vec![("CI", "true")], Refused),
        ("balenarc.yml", "deltaUrl", vec![("CI", "1")], Refused),
        (
            "balenarc.yml",
            "apiUrl",
            vec![("CI", "true"), (trust, "1")],
            Warned,
        ),
        ("balenarc.yml", "apiUrl", vec![("CI", "false")], Warned),
        ("balenarc.yml", "apiUrl", vec![("CI", "0")], Warned),
        ("balenarc.yml", "apiUrl", vec![("CI", "")], Warned),
        // The home directory's files are the user's own (when the working
        // directory is elsewhere).
        (".balenarc.yml", "apiUrl", vec![("CI", "true")], Silent),
        (".resinrc.yml", "deltaUrl", vec![("CI", "true")], Silent),
    ];
    let elsewhere = tempfile::tempdir().unwrap();
    for (file, key, vars, outcome) in cases {
        let (url, variable, host) = match key {
            "apiUrl" => (&api, "BALENARC_API_URL", &api_host),
            _ => (&delta, "BALENARC_DELTA_URL", &delta_host),
        };
        let path = world.home.path().join(file);
        std::fs::write(&path, format!("{key}: {url}\n")).unwrap();
        let before = world.api_requests() + world.delta_requests();
        let mut cmd = world.cmd();
        cmd.env_remove(variable).env_remove("CI");
        for (name, value) in &vars {
            cmd.env(name, value);
        }
        if file.starts_with('.') {
            cmd.current_dir(elsewhere.path());
        }
        let run = run_checked(cmd.args(pair(demo::RELEASE_1, demo::RELEASE_2)));
        std::fs::remove_file(&path).unwrap();
        let what = format!("{file} {key} {vars:?}");
        let named: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| {
                l.contains("in the working directory") || l.contains("from the working directory")
            })
            .collect();
        match outcome {
            Silent | Warned => {
                assert_eq!(run.code, 0, "{what}: {}", run.stderr);
                assert_eq!(run.json()["produces__release"]["id"], demo::RELEASE_2);
            }
            Refused => {
                assert_eq!(run.code, 1, "{what}: {}", run.stderr);
                assert!(run.stdout.is_empty(), "{what}");
                assert_eq!(
                    world.api_requests() + world.delta_requests(),
                    before,
                    "{what}: a request was sent"
                );
            }
        }
        match outcome {
            Silent => assert!(named.is_empty(), "{what}: {}", run.stderr),
            Warned => {
                assert_eq!(named.len(), 1, "{what}: {}", run.stderr);
                let line = named[0];
                assert!(line.starts_with("warning: "), "{what}: {line}");
                assert!(line.contains(&path.display().to_string()), "{what}: {line}");
                assert!(line.contains(&format!("`{host}`")), "{what}: {line}");
            }
            Refused => {
                let line = error_line(&run);
                assert!(line.contains(&path.display().to_string()), "{what}: {line}");
                assert!(line.contains(&format!("`{host}`")), "{what}: {line}");
                assert!(line.contains(&format!("{trust}=1")), "{what}: {line}");
            }
        }
    }
}

/// With HOME the working directory (a checkout used as HOME in CI), its
/// `.balenarc.yml` is the checkout's: refused under CI, like `balenarc.yml`.
#[test]
fn a_home_that_is_the_working_directory_is_not_trusted_as_home() {
    let world = World::demo();
    std::fs::write(
        world.home.path().join(".balenarc.yml"),
        "apiUrl: https://api.evil.example\n",
    )
    .unwrap();
    let run = run_checked(
        world
            .cmd()
            .env_remove("BALENARC_API_URL")
            .env("CI", "true")
            .args(pair(demo::RELEASE_1, demo::RELEASE_2)),
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let line = error_line(&run);
    assert!(
        line.contains("from the working directory under CI"),
        "{line}"
    );
    assert!(line.contains("api.evil.example"), "{line}");
    assert_eq!(world.api_requests(), 0, "nothing was sent");
}

#[test]
fn a_working_directory_file_that_variables_override_decides_nothing() {
    let world = World::demo();
    std::fs::write(
        world.home.path().join("balenarc.yml"),
        "balenaUrl: evil.example\napiUrl: https://api.evil.example\ndeltaUrl: https://delta.evil.example\n",
    )
    .unwrap();
    let run = run_checked(
        world
            .cmd()
            .env("CI", "true")
            .args(pair(demo::RELEASE_1, demo::RELEASE_2)),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("evil.example"), "{}", run.stderr);
}

/// The user id of this process, as the owner of a file it creates.
#[cfg(unix)]
fn own_ids(dir: &std::path::Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let probe = dir.join("probe");
    std::fs::write(&probe, "").unwrap();
    let meta = std::fs::metadata(&probe).unwrap();
    std::fs::remove_file(&probe).unwrap();
    (meta.uid(), meta.gid())
}

#[cfg(unix)]
#[test]
fn an_unsearchable_directory_on_the_settings_path_is_skipped_and_an_unreadable_file_is_not() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let world = World::demo();
    let base = tempfile::tempdir().unwrap();
    let mode = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    mode(base.path(), 0o755);
    // Permissions do not stop root: as root, run the binary as `nobody`.
    let (uid, gid) = match own_ids(base.path()) {
        (0, _) => (65534, 65534),
        ids => ids,
    };
    let dir = |name: &str| {
        let path = base.path().join(name);
        std::fs::create_dir(&path).unwrap();
        std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
        path
    };
    let (home, work) = (dir("home"), dir("work"));
    // A copy next to the directories, so that `nobody` can run it wherever
    // the build directory is (a checkout under /root is not searchable).
    let binary = base.path().join("balena-release-update");
    std::fs::copy(
        assert_cmd::cargo::cargo_bin!("balena-release-update"),
        &binary,
    )
    .unwrap();
    mode(&binary, 0o755);
    // `cd` needs the working directory searchable, so the shell changes its
    // mode after entering it, as its owner, then runs the binary there.
    let run_in = |cwd_mode: u32, home_mode: u32, verbose: bool| {
        let script = format!(r#"cd "$1" && chmod {cwd_mode:o} . && shift && exec "$@""#);
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("BALENA_RELEASE_UPDATE_TOKEN", CANARY)
            .env("BALENARC_API_URL", world.sim.api_url())
            .env("BALENARC_DELTA_URL", world.sim.delta_url())
            .current_dir(base.path())
            .uid(uid)
            .gid(gid)
            .args(["-c", &script, "sh"])
            .arg(&work)
            .arg(&binary)
            .args(pair(demo::RELEASE_1, demo::RELEASE_2));
        if verbose {
            cmd.arg("-v");
        }
        mode(&home, home_mode);
        let run = run_checked(&mut assert_cmd::Command::from_std(cmd));
        mode(&work, 0o755);
        mode(&home, 0o755);
        run
    };

    for (cwd_mode, home_mode, unsearchable) in [
        (0o000, 0o755, &work),
        (0o644, 0o755, &work),
        (0o755, 0o000, &home),
    ] {
        let quiet = run_in(cwd_mode, home_mode, false);
        assert_eq!(
            quiet.code, 0,
            "{cwd_mode:o} {home_mode:o}: {}",
            quiet.stderr
        );
        assert_eq!(quiet.json()["produces__release"]["id"], demo::RELEASE_2);
        assert!(!quiet.stderr.contains("skipping"), "{}", quiet.stderr);
        let verbose = run_in(cwd_mode, home_mode, true);
        assert_eq!(verbose.code, 0, "{}", verbose.stderr);
        let note = verbose
            .stderr
            .lines()
            .find(|l| l.contains("skipping settings file"))
            .unwrap_or_else(|| panic!("no note at -v:\n{}", verbose.stderr));
        assert!(note.contains(&unsearchable.display().to_string()), "{note}");
        assert!(note.contains("cannot be searched"), "{note}");
    }

    // A file that exists but cannot be read is still an error.
    let file = work.join("balenarc.yml");
    std::fs::write(&file, "apiUrl: http://127.0.0.1:9/\n").unwrap();
    std::os::unix::fs::chown(&file, Some(uid), Some(gid)).unwrap();
    mode(&file, 0o000);
    let run = run_in(0o755, 0o755, false);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let line = error_line(&run);
    assert!(
        line.contains("cannot read settings file")
            && line.contains(&file.display().to_string())
            && line.contains("permission denied")
            && !line.contains("os error"),
        "{line}"
    );
}

#[test]
fn a_malformed_proxy_setting_is_an_error_not_a_direct_connection() {
    let world = World::demo();
    for (variable, value, expected) in [
        ("HTTPS_PROXY", "http://[bad", "HTTPS_PROXY"),
        (
            "https_proxy",
            "socks5://proxy.example:1080",
            "`socks5` is not supported",
        ),
        ("HTTP_PROXY", "http://user:hunter2@", "HTTP_PROXY"),
        ("ALL_PROXY", "ftp://proxy.example", "`ftp` is not supported"),
    ] {
        let run = run_checked(
            world
                .cmd()
                .env(variable, value)
                .args(pair(demo::RELEASE_1, demo::RELEASE_2)),
        );
        assert_eq!(run.code, 1, "{variable}={value}: {}", run.stderr);
        let line = error_line(&run);
        assert!(line.contains(expected), "{variable}={value}: {line}");
        assert!(line.contains("fix or unset it"), "{line}");
        assert!(!line.contains("hunter2"), "{line}");
    }
    assert_eq!(world.api_requests(), 0);
}

#[test]
fn a_token_a_server_writes_with_escapes_or_in_part_is_never_shown() {
    let escaped = |text: &str| -> String { text.bytes().map(|b| format!("\\u{b:04x}")).collect() };
    let half = CANARY.len() / 2;
    let forms = [
        escaped(CANARY),
        format!("{}\\n{}", &CANARY[..half], &CANARY[half..]),
        CANARY.to_ascii_uppercase(),
        CANARY.bytes().map(|b| format!("%{b:02X}")).collect(),
    ];
    for form in forms {
        let body = format!(r#"{{"error":"you sent {form}"}}"#);
        // The `ERROR:` line, shown even with -q.
        let world = World::with(
            Scenario::demo().with_faults(
                Faults::none().with(
                    FaultRule::new(balena_sim::Fault::Error {
                        status: 400,
                        body: Some(body.clone()),
                    })
                    .scope(Scope::Api),
                ),
            ),
        );
        let run = run_checked(
            world
                .cmd()
                .args(pair(demo::RELEASE_1, demo::RELEASE_2))
                .arg("-q"),
        );
        assert_eq!(run.code, 1, "{}", run.stderr);
        // A token on the screen may be split by wrapping: whole lines read
        // back together.
        let joined: String = run.stderr.split_whitespace().collect();
        for i in 0..=CANARY.len() - 16 {
            let part = CANARY[i..i + 16].to_ascii_lowercase();
            assert!(
                !joined.to_ascii_lowercase().contains(&part),
                "{form}:\n{}",
                run.stderr
            );
        }
        assert!(run.stderr.contains("[REDACTED]"), "{form}:\n{}", run.stderr);
        // `delta_failure.error_message` in stdout's JSON, with --prepare.
        let world = World::with(
            Scenario::demo().with_faults(
                Faults::none().with(
                    FaultRule::new(balena_sim::Fault::Error {
                        status: 400,
                        body: Some(body),
                    })
                    .scope(Scope::Delta),
                ),
            ),
        );
        let run = run_checked(
            world
                .cmd()
                .args(pair(demo::RELEASE_2, demo::RELEASE_3))
                .args(["--prepare", "--no-registry"]),
        );
        let stdout = run.stdout.to_ascii_lowercase();
        assert!(stdout.contains("error_message"), "{}", run.stdout);
        for i in 0..=CANARY.len() - 16 {
            let part = CANARY[i..i + 16].to_ascii_lowercase();
            assert!(!stdout.contains(&part), "{form}:\n{}", run.stdout);
        }
    }
}

/// A plain-http registry mirror on another host is refused with the fact
/// that it is unencrypted; the balena token never goes to a registry, so the
/// message does not speak of sending it. `--allow-http` lets it through.
#[test]
fn a_plain_http_mirror_is_refused_for_being_unencrypted_not_for_the_token() {
    let world = World::demo();
    let words = crate::support::pair(demo::RELEASE_1, demo::RELEASE_2, &[]);
    let run = |extra: &[&str]| {
        let mut cmd = world.cmd();
        cmd.env(
            "BALENA_RELEASE_UPDATE_REGISTRY_MAP",
            "registry2.balena-cloud.com=http://mirror.example:5000",
        );
        crate::support::run_checked(cmd.args(&words).args(extra))
    };
    let refused = run(&[]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    let line = error_line(&refused);
    assert!(
        line.contains("registry URL `http://mirror.example:5000/`"),
        "{line}"
    );
    assert!(
        line.contains("--allow-http") && line.contains("read it unencrypted"),
        "{line}"
    );
    assert!(!line.contains("token"), "{line}");
}

/// A host listed twice in the registry map is refused, naming the host.
#[test]
fn a_registry_host_listed_twice_is_refused() {
    let world = World::demo();
    let mut cmd = world.cmd();
    cmd.env(
        "BALENA_RELEASE_UPDATE_REGISTRY_MAP",
        format!(
            "registry2.balena-cloud.com={0},registry2.balena-cloud.com={0}",
            world.sim.registry_url()
        ),
    );
    let run = crate::support::run_checked(cmd.args(crate::support::pair(
        demo::RELEASE_1,
        demo::RELEASE_2,
        &[],
    )));
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        error_line(&run).contains("`registry2.balena-cloud.com` is listed twice"),
        "{}",
        run.stderr
    );
}
