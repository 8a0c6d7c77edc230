//! `--max-download`: exit 3 and one `ERROR:` line when a device updating now
//! would download more than the budget (the result still printed), 0 within
//! it; the figure at the boundary, unknown sizes, fleets, and exit codes of
//! other failures kept.

use balena_sim::{Outcome, Scenario, demo};

use crate::support::{Run, World, error_line, main_delta, pair};

/// What the run's result says one device downloads now, from its JSON: the
/// registry's figure, else image sizes with deltas not ready in full.
fn download_now(transition: &serde_json::Value) -> u64 {
    if let Some(exact) = transition["estimated_download_size"].as_u64() {
        return exact;
    }
    transition["is_produced_by__service_update"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let target = &s["produces__image"];
            if s["change"] == "unchanged" {
                0
            } else if let Some(delta) = target.get("is_produced_by__delta") {
                delta["size"].as_u64().unwrap()
            } else {
                target["image_size"].as_u64().unwrap()
            }
        })
        .sum()
}

fn over(run: &Run) -> String {
    assert_eq!(run.code, 3, "{}", run.stderr);
    let line = error_line(run);
    assert!(
        line.starts_with("ERROR: over the download budget: "),
        "{line}"
    );
    line
}

#[test]
fn the_registrys_figure_is_the_boundary_and_the_result_is_printed_first() {
    let world = World::demo();
    let describe = world.run_words(&pair(demo::RELEASE_1, demo::RELEASE_2, &[]));
    let json = describe.json();
    let figure = json["estimated_download_size"]
        .as_u64()
        .expect("the simulator's registry gives the exact figure");

    let at = world.run_words(&pair(
        demo::RELEASE_1,
        demo::RELEASE_2,
        &["--max-download", &figure.to_string()],
    ));
    assert_eq!(at.code, 0, "{}", at.stderr);

    let below = world.run_words(&pair(
        demo::RELEASE_1,
        demo::RELEASE_2,
        &["--max-download", &(figure - 1).to_string()],
    ));
    let line = over(&below);
    assert_eq!(
        below.json(),
        json,
        "the result is printed as without a budget"
    );
    assert!(
        line.contains(&format!(
            "release {} ({}) to {} ({}):",
            demo::RELEASE_1,
            &demo::COMMIT_1[..10],
            demo::RELEASE_2,
            &demo::COMMIT_2[..10]
        )),
        "{line}"
    );
    assert!(line.contains(&format!("({figure} bytes)")), "{line}");
    assert!(!line.contains("more transition"), "{line}");
    // The next step stays, under the error, and also with -q.
    for extra in [&[][..], &["-q"]] {
        let mut words = pair(demo::RELEASE_1, demo::RELEASE_2, &["--max-download", "1kB"]);
        words.extend(extra.iter().map(|w| w.to_string()));
        let run = world.run_words(&words);
        over(&run);
        assert!(
            error_line(&run).contains("\n  hint: the delta for service `main` failed"),
            "{extra:?}: {}",
            run.stderr
        );
    }
}

#[test]
fn without_the_registry_deltas_not_ready_count_in_full() {
    let world = World::demo();
    let json = world
        .run_words(&pair(demo::RELEASE_2, demo::RELEASE_3, &["--no-registry"]))
        .json();
    assert_eq!(json["overall_status"], "pending");
    let figure = download_now(&json);
    // `api` has no delta yet: its whole image counts.
    assert!(figure > demo::SIZE_R3_API, "{figure}");
    let budget = |bytes: u64| {
        world.run_words(&pair(
            demo::RELEASE_2,
            demo::RELEASE_3,
            &["--no-registry", "--max-download", &bytes.to_string()],
        ))
    };
    assert_eq!(budget(figure).code, 0);
    let line = over(&budget(figure - 1));
    assert!(line.contains(&format!("({figure} bytes)")), "{line}");
}

#[test]
fn units_are_read_as_documented() {
    let world = World::demo();
    let figure = world
        .run_words(&pair(demo::RELEASE_1, demo::RELEASE_2, &[]))
        .json()["estimated_download_size"]
        .as_u64()
        .unwrap();
    // The figure is between 1 MB and 1 TB: check both unit systems around it.
    let mb = figure / 1_000_000;
    let mib = figure >> 20;
    for (size, code) in [
        (format!("{}MB", mb + 1), 0),
        (format!("{mb}MB"), 3),
        (format!("{}MiB", mib + 1), 0),
        (format!("{mib}MiB"), 3),
        (format!("{} MB", mb + 1), 0),
        ("1TB".to_owned(), 0),
        ("0".to_owned(), 3),
    ] {
        let run = world.run_words(&pair(
            demo::RELEASE_1,
            demo::RELEASE_2,
            &["--max-download", &size],
        ));
        assert_eq!(run.code, code, "{size}: {}", run.stderr);
    }
}

#[test]
fn an_unknown_size_counts_as_over_and_says_so() {
    let mut scenario = Scenario::demo();
    scenario
        .images
        .iter_mut()
        .find(|i| i.id == demo::IMAGE_R2_API)
        .expect("the demo has `api` in release 2")
        .image_size = None;
    let world = World::with(scenario);
    let run = world.run_words(&pair(
        demo::RELEASE_1,
        demo::RELEASE_2,
        &["--no-registry", "--max-download", "1TB"],
    ));
    let line = over(&run);
    assert!(line.contains("is not known"), "{line}");
    // With the registry's exact figure, the API's missing size does not matter.
    let run = world.run_words(&pair(
        demo::RELEASE_1,
        demo::RELEASE_2,
        &["--max-download", "1TB"],
    ));
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn a_fleet_names_its_largest_transition_with_its_devices_and_counts_the_rest() {
    let world = World::demo();
    let json = world.run(&["--fleet", "gh_demo/kiosk-fleet"]).json();
    let mut figures: Vec<(u64, u64, u64)> = json["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                download_now(t),
                t["originates_from__release"]["id"].as_u64().unwrap(),
                t["device_count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(figures.len() >= 2, "{json}");
    figures.sort();
    let (largest, from, devices) = *figures.last().unwrap();
    let second = figures[figures.len() - 2].0;
    assert!(second < largest, "{figures:?}");

    let fleet = |budget: u64| {
        world.run(&[
            "--fleet",
            "gh_demo/kiosk-fleet",
            "--max-download",
            &budget.to_string(),
        ])
    };
    assert_eq!(fleet(largest).code, 0);
    let one = over(&fleet(second));
    let device_word = if devices == 1 { "device" } else { "devices" };
    assert!(
        one.contains(&format!("release {from} ("))
            && one.contains(&format!("), {devices} {device_word}: ")),
        "{one}"
    );
    assert!(one.contains(&format!("({largest} bytes)")), "{one}");
    assert!(!one.contains("more transition"), "{one}");
    let all = over(&fleet(figures[0].0 - 1));
    let more = figures.len() - 1;
    assert!(
        all.lines().next().unwrap().ends_with(&format!(
            "; and {more} more transition{} over the budget",
            if more == 1 { "" } else { "s" }
        )),
        "{all}"
    );
    assert!(all.contains(&format!("({largest} bytes)")), "{all}");
}

#[test]
fn other_failures_keep_their_exit_codes() {
    // A wait that times out: 2, not 3.
    let world = World::with(main_delta(Scenario::demo(), vec![Outcome::stalled()]));
    let run = world.run_words(&pair(
        demo::RELEASE_1,
        demo::RELEASE_2,
        &["--timeout", "1", "--max-download", "1"],
    ));
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(error_line(&run).contains("timed out"), "{}", run.stderr);

    // An error: 1.
    let world = World::demo();
    let run = world.run(&[
        "--from-release",
        "999999",
        "--to-release",
        "900835",
        "--max-download",
        "1",
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
}

#[test]
fn a_bad_size_is_one_error_line_before_any_request() {
    let world = World::demo();
    for (size, reason) in [
        ("50mb", "is not a size"),
        ("", "empty"),
        ("1.5", "whole number of bytes"),
        ("99999999999999999999999", "larger than"),
        ("-5MB", "negative"),
    ] {
        let mut words = pair(demo::RELEASE_1, demo::RELEASE_2, &[]);
        words.push(format!("--max-download={size}"));
        let run = world.run_words(&words);
        // Given as the next word, too.
        let apart = pair(demo::RELEASE_1, demo::RELEASE_2, &["--max-download", size]);
        let separate = world.run_words(&apart);
        assert_eq!(error_line(&separate), error_line(&run), "{size:?}");
        assert_eq!(run.code, 1, "{size:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{size:?}: {}", run.stdout);
        let line = error_line(&run);
        assert!(line.contains(reason), "{size:?}: {line}");
        assert!(line.contains("--max-download"), "{size:?}: {line}");
    }
    assert_eq!(world.api_requests(), 0);
}

/// Devices running no release download the whole target release: the fleet
/// table has a row for them, the JSON their figure, and the budget judges it.
#[test]
fn devices_without_a_release_are_judged_like_a_transition() {
    let world = World::with(Scenario::demo().with_devices_without_release(demo::APP_ID, 2));
    let fleet = format!("{}/kiosk-fleet", demo::USERNAME);
    let run = world.run(&["--fleet", &fleet]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let json = run.json();
    let whole = json["devices_without_release_download_size"]
        .as_u64()
        .expect("their figure");
    // More than any transition: they hold nothing.
    let largest = json["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(download_now)
        .max()
        .unwrap();
    assert!(whole > largest, "{whole} ≤ {largest}");
    let limit = (largest + whole) / 2;
    let over_budget = world.run(&["--fleet", &fleet, "--max-download", &limit.to_string()]);
    assert_eq!(over_budget.code, 3, "{}", over_budget.stderr);
    let line = over(&over_budget);
    assert!(line.contains("no release to 900871"), "{line}");
    assert!(line.contains("2 devices"), "{line}");
    let table = world.run(&["--fleet", &fleet, "--output", "table"]);
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.starts_with("(none)") && l.contains(" 2 ")),
        "{}",
        table.stdout
    );
}
