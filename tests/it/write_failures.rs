//! What happens when output cannot be written: a failed write to stderr is
//! ignored (never a panic), a reader that closed the pipe on stdout is not
//! an error, and any other failure to write the result is exit 1 with a
//! message on stderr when stderr works.

use std::process::Stdio;

use balena_sim::demo;

use crate::support::{CANARY, World, write_token};

fn pair() -> Vec<String> {
    vec![
        "--from-release".into(),
        demo::RELEASE_1.to_string(),
        "--to-release".into(),
        demo::RELEASE_2.to_string(),
    ]
}

/// A file handle on `/dev/full`, where every write fails with "no space".
fn dev_full() -> Stdio {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full exists")
        .into()
}

/// Exit code, stdout and stderr of a run whose stdout is kept.
fn output(mut cmd: std::process::Command) -> (i32, String, String) {
    let out = cmd.output().expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[cfg(target_os = "linux")]
#[test]
fn a_failed_write_to_stderr_never_panics_and_keeps_the_result() {
    let world = World::demo();
    // Runs that write a warning, an error, or nothing to stderr.
    let path = world.data_dir().join("token");
    let cases: Vec<(&str, Vec<&str>, i32)> = vec![
        ("plain", vec![], 0),
        ("a warning", vec![], 0),
        ("an error", vec!["--timeout", "oops"], 1),
    ];
    for (what, extra, code) in cases {
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = if what == "a warning" { 0o644 } else { 0o600 };
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        for stderr in ["/dev/full", "closed pipe"] {
            let mut cmd = world.std_cmd();
            cmd.args(pair()).args(&extra).stdout(Stdio::piped());
            let out = if stderr == "/dev/full" {
                cmd.stderr(dev_full()).output().expect("the binary runs")
            } else {
                cmd.stderr(Stdio::piped());
                let mut child = cmd.spawn().expect("the binary runs");
                drop(child.stderr.take());
                child.wait_with_output().expect("the binary ends")
            };
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                out.status.code(),
                Some(code),
                "{what}, stderr {stderr}: {:?}",
                out.status
            );
            assert!(!stdout.contains(CANARY));
            if code == 0 {
                let json: serde_json::Value = serde_json::from_str(&stdout)
                    .unwrap_or_else(|e| panic!("{what}, stderr {stderr}: {e}: {stdout}"));
                assert_eq!(json["produces__release"]["id"], demo::RELEASE_2);
            }
        }
    }
    write_token(world.home.path(), CANARY);
}

#[cfg(target_os = "linux")]
#[test]
fn a_failed_write_to_stderr_of_logs_never_panics() {
    let world = World::demo();
    for verbosity in ["-v", "-vv"] {
        let mut cmd = world.std_cmd();
        cmd.args(pair()).arg(verbosity).stderr(dev_full());
        let (code, stdout, _) = output(cmd);
        assert_eq!(code, 0, "{verbosity}");
        assert!(
            stdout.contains("produces__release"),
            "{verbosity}: {stdout}"
        );
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_result_that_cannot_be_written_is_an_error_unless_the_reader_left() {
    let world = World::demo();
    // (how stdout is set up, expected exit, fragment of the ERROR line)
    let cases: Vec<(&str, i32, &str)> = vec![
        ("/dev/full", 1, "no space left on device"),
        ("closed", 1, "it is closed"),
        ("pipe closed by the reader", 0, ""),
    ];
    for (stdout, code, fragment) in cases {
        for args in [pair(), vec!["--version".to_owned()]] {
            let mut cmd = world.std_cmd();
            cmd.stderr(Stdio::piped());
            let (status, stderr) = match stdout {
                "/dev/full" => {
                    cmd.args(&args).stdout(dev_full());
                    let (status, _, stderr) = output(cmd);
                    (status, stderr)
                }
                "closed" => {
                    // `>&-`: the binary starts with no stdout at all.
                    let program = cmd.get_program().to_owned();
                    cmd = {
                        let mut sh = std::process::Command::new("/bin/sh");
                        sh.args(["-c", r#"exec "$@" >&-"#, "sh"])
                            .arg(program)
                            .args(&args)
                            .env_clear()
                            .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
                            .current_dir(world.home.path())
                            .stderr(Stdio::piped());
                        sh
                    };
                    let (status, _, stderr) = output(cmd);
                    (status, stderr)
                }
                _ => {
                    cmd.args(&args).stdout(Stdio::piped());
                    let mut child = cmd.spawn().expect("the binary runs");
                    drop(child.stdout.take());
                    let out = child.wait_with_output().expect("the binary ends");
                    (
                        out.status.code().unwrap_or(-1),
                        String::from_utf8_lossy(&out.stderr).into_owned(),
                    )
                }
            };
            let what = format!("{stdout} {args:?}");
            assert_eq!(status, code, "{what}: {stderr}");
            assert!(!stderr.contains("panicked"), "{what}: {stderr}");
            assert!(!stderr.contains("os error"), "{what}: {stderr}");
            let errors: Vec<&str> = stderr
                .lines()
                .filter(|l| l.starts_with("ERROR: "))
                .collect();
            if code == 0 {
                assert!(errors.is_empty(), "{what}: {stderr}");
            } else {
                assert_eq!(errors.len(), 1, "{what}: {stderr}");
                assert!(
                    errors[0].contains("stdout") && errors[0].contains(fragment),
                    "{what}: {}",
                    errors[0]
                );
            }
        }
    }
}
