//! The `--output table` text for a pair and a fleet, before and after the wait, at 80 and 120 columns, as snapshots.

use balena_sim::{Clock, Fault, FaultRule, Faults, Outcome, Scenario, Scope, demo};

use crate::support::{Run, World, main_delta, pair, snapshot_filters};

/// The table at `columns` (stdout is a pipe here, so only `COLUMNS` says).
fn table_at(world: &World, words: &[String], columns: usize) -> Run {
    let mut cmd = world.cmd();
    cmd.args(words)
        .args(["--output", "table"])
        .env("COLUMNS", columns.to_string());
    crate::support::run_checked(&mut cmd)
}

fn assert_fits(run: &Run, columns: usize) {
    for line in run.stdout.lines() {
        assert!(
            line.chars().count() <= columns,
            "a line wider than {columns} columns:\n{line}\nin:\n{}",
            run.stdout
        );
    }
    assert_notes_cite_shown_columns(run);
}

/// In each table (a block between blank lines), a note names a column only
/// when the table's header shows it.
fn assert_notes_cite_shown_columns(run: &Run) {
    for block in run.stdout.split("\n\n") {
        let Some(header) = block
            .lines()
            .find(|l| l.starts_with("SERVICE ") || l.starts_with("FROM RELEASE "))
        else {
            continue;
        };
        let notes = block
            .lines()
            .skip_while(|l| !l.starts_with("total "))
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ");
        let notes = notes.split_whitespace().collect::<Vec<_>>().join(" ");
        for column in ["ESTIMATE", "SAVING", "FLEET TOTAL", "DOWNLOAD"] {
            if notes.contains(column) {
                assert!(
                    header.contains(column),
                    "a note cites {column}, which the table does not show:\n{block}"
                );
            }
        }
        if notes.contains("in parentheses") {
            let rows = block.lines().filter(|l| l.contains(" (")).count();
            assert!(
                rows > 1,
                "a note cites figures in parentheses, which the table does not show:\n{block}"
            );
        }
    }
}

#[test]
fn pair_with_every_kind_of_change() {
    let _filters = snapshot_filters().bind_to_scope();
    let world = World::demo();
    let words = pair(demo::RELEASE_1, demo::RELEASE_3, &[]);
    for columns in [80, 120] {
        let out = table_at(&world, &words, columns);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_fits(&out, columns);
        insta::assert_snapshot!(format!("pair_r1_r3_describe_{columns}"), out.stdout);
    }
}

#[test]
fn without_a_terminal_or_columns_the_table_is_80_wide() {
    let world = World::demo();
    let out = world.run_words(&pair(
        demo::RELEASE_1,
        demo::RELEASE_3,
        &["--output", "table"],
    ));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_fits(&out, 80);
    assert_eq!(
        out.stdout,
        table_at(&world, &pair(demo::RELEASE_1, demo::RELEASE_3, &[]), 80).stdout
    );
}

#[test]
fn pair_after_the_wait() {
    let _filters = snapshot_filters().bind_to_scope();
    let world = World::with(Scenario::demo().with_clock(Clock::scaled(200.0)));
    let words = pair(
        demo::RELEASE_1,
        demo::RELEASE_2,
        &["--wait", "--timeout", "60"],
    );
    let out = table_at(&world, &words, 80);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_fits(&out, 80);
    insta::assert_snapshot!("pair_r1_r2_ready", out.stdout);
}

/// A failed delta: a short reason in STATUS, the whole of it in a footnote;
/// narrow terminals keep DOWNLOAD and drop the columns that matter least.
#[test]
fn a_failed_delta_shows_its_reason() {
    let _filters = snapshot_filters().bind_to_scope();
    let reason = "the builder ran out of disk space while extracting layer 7 of 9";
    let world = World::with(main_delta(
        Scenario::demo().with_clock(Clock::scaled(200.0)),
        vec![Outcome::failed(reason); 3],
    ));
    // The wait asks for the delta three times, then gives up on it.
    let wait = table_at(
        &world,
        &pair(
            demo::RELEASE_1,
            demo::RELEASE_2,
            &["--wait", "--timeout", "60"],
        ),
        80,
    );
    assert_eq!(wait.code, 1, "{}", wait.stderr);
    assert_fits(&wait, 80);
    let words = pair(demo::RELEASE_1, demo::RELEASE_2, &[]);
    for columns in [120, 80, 40] {
        let out = table_at(&world, &words, columns);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_fits(&out, columns);
        let joined = out.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(joined.contains(reason), "{}", out.stdout);
        assert!(out.stdout.contains("DOWNLOAD"), "{}", out.stdout);
        insta::assert_snapshot!(format!("pair_r1_r2_failed_{columns}"), out.stdout);
    }
}

#[test]
fn fleet() {
    let _filters = snapshot_filters().bind_to_scope();
    let world = World::demo();
    let words = vec!["--fleet".to_owned(), demo::APP_ID.to_string()];
    // 55 and 60: where the summary's last two columns give way.
    for columns in [40, 55, 60, 80, 120] {
        let out = table_at(&world, &words, columns);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_fits(&out, columns);
        insta::assert_snapshot!(format!("fleet_describe_{columns}"), out.stdout);
    }
}

/// A delta the server refused (a 4xx on the request) reads `refused`, not
/// `failed`, in its cell and its footnote, with the server's reason.
#[test]
fn a_refused_delta_says_refused() {
    let world = World::with(
        Scenario::demo().with_faults(
            Faults::none().with(
                FaultRule::new(Fault::Error {
                    status: 400,
                    body: Some("\"Malformed url\"".into()),
                })
                .scope(Scope::Delta),
            ),
        ),
    );
    let out = table_at(
        &world,
        &pair(demo::RELEASE_1, demo::RELEASE_2, &["--prepare"]),
        120,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("main "))
        .unwrap_or_else(|| panic!("no row for main:\n{}", out.stdout));
    assert!(row.contains("refused"), "{row}");
    assert!(!out.stdout.contains("failed"), "{}", out.stdout);
    let joined = out.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        joined.contains("main: the delta server refused the delta (HTTP 400)")
            && joined.contains("Malformed url"),
        "{}",
        out.stdout
    );
}

/// A delta given up on reads `failed` in the fleet's heading, its summary's
/// STATUS and the transition's title; the JSON keeps the npm tool's
/// `pending` and says it through `delta_failure`.
#[test]
fn a_fleet_with_a_delta_given_up_on_reads_failed() {
    let world = World::with(
        Scenario::demo()
            .with_clock(Clock::scaled(200.0))
            .with_delta_outcome(
                demo::IMAGE_R1_MAIN,
                demo::IMAGE_R3_MAIN,
                vec![Outcome::failed("no space left on device"); 3],
            ),
    );
    let fleet = vec!["--fleet".to_owned(), demo::APP_ID.to_string()];
    let mut wait = fleet.clone();
    wait.extend(["--wait", "--timeout", "60"].map(str::to_owned));
    let waited = table_at(&world, &wait, 80);
    assert_eq!(waited.code, 1, "{}", waited.stderr);

    let out = table_at(&world, &fleet, 80);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].ends_with(": failed"), "{}", out.stdout);
    let row = lines
        .iter()
        .find(|l| l.starts_with(&format!("{} (", demo::RELEASE_1)))
        .unwrap_or_else(|| panic!("no summary row:\n{}", out.stdout));
    assert!(row.contains(" failed "), "{row}");
    assert!(
        out.stdout.contains(&format!(
            "release {} (84d3d8f4c0) to {} (b2cf2db7e8), 2 devices: failed",
            demo::RELEASE_1,
            demo::RELEASE_3
        )),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("pending"), "{}", out.stdout);

    let json = world.run_words(&fleet).json();
    assert_eq!(json["overall_status"], "pending");
    assert_eq!(json["transitions"][0]["overall_status"], "pending");
}

/// A changed service the target labels `delete-then-download`: `ready`
/// with a footnote, its whole image in ESTIMATE, and `--wait` neither asks
/// for its delta nor waits for it.
#[test]
fn a_service_pulled_whole_by_its_strategy() {
    let _filters = snapshot_filters().bind_to_scope();
    let world = World::demo();
    world
        .sim
        .set_update_strategy(demo::RELEASE_3, "api", "delete-then-download")
        .unwrap();
    let out = table_at(&world, &pair(demo::RELEASE_2, demo::RELEASE_3, &[]), 80);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_fits(&out, 80);
    insta::assert_snapshot!("pair_r2_r3_delete_then_download_80", out.stdout);

    let wait = world.run_words(&pair(
        demo::RELEASE_2,
        demo::RELEASE_3,
        &["--wait", "--timeout", "30"],
    ));
    assert_eq!(wait.code, 0, "{}", wait.stderr);
    let json = wait.json();
    let api = crate::support::service(&json, "api");
    assert_eq!(api["status"], "ready");
    assert_eq!(api["update_strategy"], "delete-then-download");
    assert!(
        api["produces__image"]
            .get("is_produced_by__delta")
            .is_none()
    );
    assert_eq!(world.delta_requests(), 0);
}
