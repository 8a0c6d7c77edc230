//! The `hint:` line after a result that is not final: what to run next,
//! quoting the user's own target, checked by running the suggested commands
//! against the simulator; none where the API has no deltas; none with `-q`.

use balena_sim::{Outcome, Scenario, demo};

use crate::support::{Run, World, main_delta, pair, service};

/// The one `hint:` line of a run's stderr (not under an `ERROR:`).
fn hint(run: &Run) -> Option<&str> {
    let hints: Vec<&str> = run
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("hint: "))
        .collect();
    assert!(hints.len() <= 1, "more than one hint:\n{}", run.stderr);
    hints.first().copied()
}

/// The command a hint suggests, as words after the program's name.
fn suggested(hint: &str) -> Vec<String> {
    let command = hint
        .split("run: balena-release-update ")
        .nth(1)
        .unwrap_or_else(|| panic!("the hint names no command: {hint}"));
    command.split_whitespace().map(str::to_owned).collect()
}

/// A commit prefix of release 2 as a person might type it (upper case).
fn typed_release_2() -> String {
    demo::COMMIT_2[..10].to_uppercase()
}

#[test]
fn the_suggested_commands_lead_from_describe_to_ready() {
    let world = World::demo();
    let from = typed_release_2();
    let to = demo::RELEASE_3.to_string();
    let describe = world.run(&[
        "--from-release",
        &from,
        "--to-release",
        &to,
        "--output",
        "table",
    ]);
    assert_eq!(describe.code, 0, "{}", describe.stderr);
    let first = hint(&describe).expect("a pending result ends with a hint");
    assert!(
        first.ends_with(&format!(
            "run: balena-release-update --from-release {from} --to-release {to} --output table \
             --prepare"
        )),
        "{first}"
    );
    assert!(first.contains("--wait"), "{first}");
    assert_eq!(world.delta_requests(), 0, "describe requested nothing");

    // As the hint says: --prepare. The deltas are then building.
    let prepare = world.run_words(&suggested(first));
    assert_eq!(prepare.code, 0, "{}", prepare.stderr);
    assert!(prepare.stdout.contains("preparing"), "{}", prepare.stdout);
    assert!(world.delta_requests() > 0);
    let second = hint(&prepare).expect("a preparing result ends with a hint");
    assert!(
        second.ends_with(&format!(
            "run: balena-release-update --from-release {from} --to-release {to} --output table \
             --wait --timeout 10m"
        )),
        "{second}"
    );

    // As the hint says: --wait. Ready, and nothing more to do.
    let wait = world.run_words(&suggested(second));
    assert_eq!(wait.code, 0, "{}", wait.stderr);
    assert!(wait.stdout.contains(": ready"), "{}", wait.stdout);
    assert_eq!(hint(&wait), None, "{}", wait.stderr);
}

#[test]
fn a_failed_delta_names_the_service_the_servers_reason_and_verbose() {
    let world = World::demo();
    let run = world.run_words(&pair(demo::RELEASE_1, demo::RELEASE_2, &[]));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let json = run.json();
    let reason = service(&json, "main")["delta_failure"]["error_message"]
        .as_str()
        .expect("the demo's failed delta has a message")
        .to_owned();
    let hint = hint(&run).expect("a failed delta gets a hint");
    assert!(
        hint.starts_with(&format!("the delta for service `main` failed: {reason};")),
        "{hint}"
    );
    assert!(
        hint.ends_with(&format!(
            "run: balena-release-update --from-release {} --to-release {} --prepare -v",
            demo::RELEASE_1,
            demo::RELEASE_2
        )),
        "{hint}"
    );
}

#[test]
fn a_delta_that_fails_while_preparing_is_named_with_its_reason() {
    let reason = "layer sha256:0a1b is missing from the registry";
    let world = World::with(main_delta(Scenario::demo(), vec![Outcome::failed(reason)]));
    let prepare = world.run_words(&pair(demo::RELEASE_1, demo::RELEASE_2, &["--prepare"]));
    assert_eq!(prepare.code, 0, "{}", prepare.stderr);
    // Describe again until the new build has failed (the demo's older
    // failure has another message).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let run = loop {
        let run = world.run_words(&pair(demo::RELEASE_1, demo::RELEASE_2, &[]));
        let json = run.json();
        if service(&json, "main")["delta_failure"]["error_message"] == reason {
            break run;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the build never failed: {}",
            run.stdout
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let hint = hint(&run).expect("a failed delta gets a hint");
    assert!(
        hint.contains(&format!("service `main` failed: {reason}")),
        "{hint}"
    );
    assert!(hint.ends_with("--prepare -v"), "{hint}");
}

#[test]
fn a_fleet_is_suggested_as_typed() {
    let world = World::demo();
    let fleet = "GH_DEMO/Kiosk-Fleet";
    let run = world.run(&["--fleet", fleet]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["overall_status"], "pending");
    let hint = hint(&run).expect("a pending fleet gets a hint");
    assert!(
        hint.ends_with(&format!(
            "run: balena-release-update --fleet {fleet} --prepare"
        )),
        "{hint}"
    );
    let prepare = world.run_words(&suggested(hint));
    assert_eq!(prepare.code, 0, "{}", prepare.stderr);
    let hint = self::hint(&prepare).expect("a preparing fleet gets a hint");
    assert!(
        hint.ends_with(&format!("--fleet {fleet} --wait --timeout 10m")),
        "{hint}"
    );
}

#[test]
fn without_a_delta_server_no_hint_suggests_prepare() {
    let world = World::with(Scenario::demo().with_openbalena());
    for args in [
        pair(demo::RELEASE_1, demo::RELEASE_2, &[]),
        vec!["--fleet".to_owned(), "gh_demo/kiosk-fleet".to_owned()],
    ] {
        let run = world.run_words(&args);
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        assert_eq!(run.json()["overall_status"], "pending", "{args:?}");
        let hint = hint(&run).expect("a pending result on openBalena says why");
        assert!(hint.contains("no delta server"), "{hint}");
        assert!(!hint.contains("--prepare"), "{hint}");
        assert!(!hint.contains("--wait"), "{hint}");
    }
}

#[test]
fn quiet_drops_the_hint_after_a_result_and_ready_results_have_none() {
    let world = World::demo();
    let quiet = world.run_words(&pair(demo::RELEASE_2, demo::RELEASE_3, &["-q"]));
    assert_eq!(quiet.code, 0, "{}", quiet.stderr);
    assert!(quiet.stderr.is_empty(), "{}", quiet.stderr);
    assert_eq!(quiet.json()["overall_status"], "pending");

    let ready = world.run_words(&pair(
        demo::RELEASE_2,
        demo::RELEASE_3,
        &["--wait", "--timeout", "1m"],
    ));
    assert_eq!(ready.code, 0, "{}", ready.stderr);
    assert_eq!(ready.json()["overall_status"], "ready");
    assert_eq!(hint(&ready), None, "{}", ready.stderr);
}

#[test]
fn a_wait_that_times_out_suggests_the_same_wait_for_longer() {
    let world = World::with(main_delta(Scenario::demo(), vec![Outcome::stalled()]));
    let run = world.run_words(&pair(
        demo::RELEASE_1,
        demo::RELEASE_2,
        &["--timeout", "1", "--output", "table"],
    ));
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stdout.contains("preparing"), "{}", run.stdout);
    let line = crate::support::error_line(&run);
    assert!(
        line.ends_with(&format!(
            "\n  hint: the deltas keep building without this tool; to wait longer, run: \
             balena-release-update --from-release {} --to-release {} --output table --wait \
             --timeout 2s",
            demo::RELEASE_1,
            demo::RELEASE_2
        )),
        "{line}"
    );
    assert_eq!(hint(&run), None, "the hint is under the error only");
}

/// Every release a text names as `<id> (<commit prefix>)`.
fn shown_releases(text: &str) -> Vec<(u64, String)> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut shown: Vec<(u64, String)> = words
        .windows(2)
        .filter_map(|pair| {
            let id = pair[0].parse().ok()?;
            let prefix = pair[1].strip_prefix('(')?;
            let prefix = prefix.trim_end_matches([':', ',']).strip_suffix(')')?;
            prefix
                .chars()
                .all(|c| c.is_ascii_hexdigit())
                .then(|| (id, prefix.to_owned()))
        })
        .collect();
    shown.sort();
    shown.dedup();
    shown
}

#[test]
fn a_commit_as_shown_names_the_same_release_when_passed_back() {
    let world = World::demo();
    let fleet = demo::APP_ID.to_string();
    let table = world.run(&["--fleet", &fleet, "--output", "table"]);
    let budget = world.run(&["--fleet", &fleet, "--max-download", "1"]);
    assert_eq!(budget.code, 3, "{}", budget.stderr);
    // A pair's output knows only its two commits, not the one they share
    // eight characters with.
    let (from, to) = (demo::RELEASE_1.to_string(), demo::RELEASE_3.to_string());
    let pair = world.run(&[
        "--from-release",
        &from,
        "--to-release",
        &to,
        "--output",
        "table",
    ]);
    let shown = shown_releases(&format!(
        "{}\n{}\n{}",
        table.stdout, budget.stderr, pair.stdout
    ));
    // Each release is shown one way in every line; two of the demo's
    // commits share their first eight characters.
    let ids: Vec<u64> = shown.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        ids,
        [demo::RELEASE_1, demo::RELEASE_2, demo::RELEASE_3].map(|r| r as u64),
        "{shown:?}"
    );
    for (id, prefix) in &shown {
        let other = if *id == demo::RELEASE_1 as u64 {
            demo::RELEASE_3
        } else {
            demo::RELEASE_1
        };
        let run = world.run(&["--from-release", &other.to_string(), "--to-release", prefix]);
        assert_eq!(run.code, 0, "{prefix}: {}", run.stderr);
        assert_eq!(run.json()["produces__release"]["id"], *id, "{prefix}");
    }
}
