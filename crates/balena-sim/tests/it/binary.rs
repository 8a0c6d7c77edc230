//! The `balena-sim` binary contract.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::support::client;

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_balena-sim"))
}

#[tokio::test]
async fn prints_one_json_line_serves_and_exits_0_on_sigterm() {
    let mut child = binary()
        .args(["--scenario", "demo", "--clock", "manual"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let info: serde_json::Value = serde_json::from_str(&line).unwrap();
    let keys: Vec<_> = info.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, vec!["api_url", "delta_url", "token", "registry_url"]);
    assert_eq!(info["token"], balena_sim::demo::TOKEN);
    assert_ne!(info["api_url"], info["delta_url"]);
    assert_ne!(info["registry_url"], info["api_url"]);
    let r = client()
        .get(format!("{}/v2/", info["registry_url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the registry asks for a token");
    let r = client()
        .get(format!("{}/v7/release", info["api_url"].as_str().unwrap()))
        .bearer_auth(info["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn bad_arguments_and_scenarios_fail_with_one_line() {
    let dir = std::env::temp_dir().join(format!("balena-sim-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let broken = dir.join("broken.json");
    std::fs::write(&broken, r#"{"tokens":["t"],"releases":[{"id":1}]}"#).unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--bogus".into()], "unknown argument `--bogus`"),
        (vec![], "missing `--scenario`"),
        (
            vec!["--scenario".into(), "nowhere.json".into()],
            "neither a built-in",
        ),
        (
            vec!["--scenario".into(), broken.display().to_string()],
            "releases[0]",
        ),
        (
            vec!["--scenario".into(), "generated:services=x".into()],
            "whole number",
        ),
    ];
    for (args, needle) in cases {
        let out = binary().args(&args).output().unwrap();
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
