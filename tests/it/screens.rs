//! What a person sees, stdout then stderr, when a wait ends on its timeout or on Ctrl-C, at 80 and 120 columns, as snapshots.

use balena_sim::{Outcome, Scenario, demo};

use crate::support::{
    World, main_delta, pair, run_checked, snapshot_filters, stop, wait_for_the_wait_loop,
};

/// stdout and stderr as one screen, for a snapshot.
fn screen(code: i32, stdout: &str, stderr: &str) -> String {
    format!("exit code {code}\n--- stdout\n{stdout}--- stderr\n{stderr}")
}

fn stalled_world() -> World {
    World::with(main_delta(Scenario::demo(), vec![Outcome::stalled()]))
}

#[test]
fn a_wait_that_times_out() {
    let _filters = snapshot_filters().bind_to_scope();
    for columns in [80, 120] {
        let world = stalled_world();
        let mut cmd = world.cmd();
        cmd.args(pair(
            demo::RELEASE_1,
            demo::RELEASE_2,
            &["--wait", "--timeout", "1s", "--output", "table"],
        ))
        .env("COLUMNS", columns.to_string());
        let run = run_checked(&mut cmd);
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(run.stdout.lines().all(|l| l.chars().count() <= columns));
        insta::assert_snapshot!(
            format!("timeout_{columns}"),
            screen(run.code, &run.stdout, &run.stderr)
        );
    }
}

#[cfg(unix)]
#[test]
fn a_wait_interrupted_with_ctrl_c() {
    let _filters = snapshot_filters().bind_to_scope();
    for columns in [80, 120] {
        let world = stalled_world();
        let child = world
            .std_cmd()
            .args(pair(
                demo::RELEASE_1,
                demo::RELEASE_2,
                &["--wait", "--output", "table"],
            ))
            .env("COLUMNS", columns.to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_the_wait_loop(&world);
        let (code, stdout, stderr) = stop(child, "INT");
        assert_eq!(code, 130, "{stderr}");
        assert!(stdout.lines().all(|l| l.chars().count() <= columns));
        insta::assert_snapshot!(
            format!("interrupted_{columns}"),
            screen(code, &stdout, &stderr)
        );
    }
}
