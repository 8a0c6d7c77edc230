//! Shared builders: a simulator and a clean home, runs of the binary, arguments, snapshot filters.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use balena_sim::{Outcome, Scenario, Simulator, demo};
use tempfile::TempDir;

/// A canary token: tests assert it never appears in any output.
pub const CANARY: &str = "canaryTOKEN0123456789abcdefCANARY";

pub struct World {
    pub sim: Simulator,
    pub home: TempDir,
}

impl World {
    pub fn demo() -> World {
        World::with(Scenario::demo())
    }

    pub fn with(scenario: Scenario) -> World {
        let sim = Simulator::start(scenario.with_token(CANARY)).expect("the simulator starts");
        let home = tempfile::tempdir().expect("a temporary home");
        std::fs::create_dir_all(home.path().join(".balena")).unwrap();
        write_token(home.path(), CANARY);
        World { sim, home }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.home.path().join(".balena")
    }

    /// The binary with a clean environment pointed at the simulator.
    pub fn cmd(&self) -> Command {
        Command::from_std(self.std_cmd())
    }

    /// The same, as a plain `std::process::Command` (to spawn and signal it).
    pub fn std_cmd(&self) -> std::process::Command {
        let mut cmd =
            std::process::Command::new(assert_cmd::cargo::cargo_bin!("balena-release-update"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("BALENARC_API_URL", self.sim.api_url())
            .env("BALENARC_DELTA_URL", self.sim.delta_url())
            .env("BALENA_RELEASE_UPDATE_POLL_INTERVAL", "50ms")
            .env("BALENA_RELEASE_UPDATE_RETRY_INTERVAL", "20ms")
            // The scenarios' registry is the simulator's own: no request
            // leaves this machine.
            .env(
                "BALENA_RELEASE_UPDATE_REGISTRY_MAP",
                format!("registry2.balena-cloud.com={}", self.sim.registry_url()),
            )
            .current_dir(self.home.path());
        default_stop_signals(&mut cmd);
        cmd
    }
}

/// Starts the binary with SIGINT, SIGTERM and SIGHUP at their default
/// action, as a shell at a terminal does. A test run started in the
/// background (`cargo test &` in a script) inherits SIGINT ignored, which
/// the binary rightly keeps ignored; the tests that send it would then wait
/// for an exit that never comes.
fn default_stop_signals(cmd: &mut std::process::Command) {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec the closure only calls sigaction,
        // which is async-signal-safe, on a zeroed (default) action.
        unsafe {
            cmd.pre_exec(|| {
                let default: libc::sigaction = std::mem::zeroed();
                for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                    if libc::sigaction(signal, &default, std::ptr::null_mut()) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
}

pub fn write_token(home: &Path, token: &str) {
    let path = home.join(".balena/token");
    std::fs::write(&path, token).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// What one run of the binary printed.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|err| panic!("stdout is not JSON ({err}):\n{}", self.stdout))
    }
}

impl World {
    /// Runs the binary with `args` and checks what every run must satisfy:
    /// no token in any output, no panic, and an `ERROR:` line exactly when it fails.
    pub fn run(&self, args: &[&str]) -> Run {
        run_checked(self.cmd().args(args))
    }

    /// `run` with owned words, such as those of [`pair`].
    pub fn run_words(&self, words: &[String]) -> Run {
        run_checked(self.cmd().args(words))
    }

    /// `run_words`, and how long the run took.
    pub fn run_timed(&self, words: &[String]) -> (Run, Duration) {
        let started = Instant::now();
        let run = self.run_words(words);
        (run, started.elapsed())
    }

    /// API requests the simulator has seen (control requests excluded).
    /// OData requests the API has seen (the registry's token requests, which
    /// go to the API host too, are counted apart).
    pub fn api_requests(&self) -> usize {
        self.sim.count(balena_sim::Server::Api, None) - self.token_requests()
    }

    /// Registry token requests to the API host (`/auth/v1/token`).
    pub fn token_requests(&self) -> usize {
        self.sim.count(balena_sim::Server::Api, Some("token"))
    }

    pub fn delta_requests(&self) -> usize {
        self.sim.count(balena_sim::Server::Delta, None)
    }
}

pub fn run_checked(cmd: &mut Command) -> Run {
    let output = cmd.output().expect("the binary runs");
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    for (name, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        assert!(
            !text.contains(CANARY),
            "the token leaked on {name}:\n{text}"
        );
        assert!(!text.contains("panicked"), "panic on {name}:\n{text}");
        assert!(
            !text.contains("RUST_BACKTRACE"),
            "backtrace hint on {name}:\n{text}"
        );
    }
    if run.code == 0 {
        assert!(
            !run.stderr.contains("ERROR:"),
            "exit 0 with an error line:\n{}",
            run.stderr
        );
    } else {
        // In colour (`--color always`), `ERROR` is red and bold.
        assert!(
            run.stderr
                .lines()
                .filter(
                    |l| l.starts_with("ERROR: ") || l.starts_with("\u{1b}[1;31mERROR\u{1b}[0m: ")
                )
                .count()
                == 1,
            "exit {} needs exactly one ERROR line:\n{}",
            run.code,
            run.stderr
        );
    }
    run
}

impl World {
    /// `run` once at each verbosity (none, `-v`, `-vv`), with `setup`
    /// applied to every command; the checks of `run_checked` hold for each.
    pub fn run_verbosities(
        &self,
        args: &[&str],
        setup: impl Fn(&mut Command) -> &mut Command,
    ) -> Vec<Run> {
        [&[][..], &["-v"], &["-vv"]]
            .iter()
            .map(|extra| {
                let mut cmd = self.cmd();
                setup(&mut cmd);
                run_checked(cmd.args(args).args(*extra))
            })
            .collect()
    }
}

/// The `ERROR:` line of a failed run.
/// The `ERROR:` line with the `caused by:` and `hint:` lines under it.
pub fn error_line(run: &Run) -> String {
    let mut lines = run.stderr.lines().skip_while(|l| !l.starts_with("ERROR: "));
    let mut block: Vec<&str> = lines.next().into_iter().collect();
    block.extend(lines.take_while(|l| l.starts_with("  ")));
    block.join("\n")
}

/// The arguments comparing two releases, then `extra`.
pub fn pair(from: i64, to: i64, extra: &[&str]) -> Vec<String> {
    let mut words = vec![
        "--from-release".to_owned(),
        from.to_string(),
        "--to-release".to_owned(),
        to.to_string(),
    ];
    words.extend(extra.iter().map(|s| s.to_string()));
    words
}

/// `scenario` where the delta of the demo's `main` service from release 1 to
/// release 2 ends as `outcomes` say, one per build.
pub fn main_delta(scenario: Scenario, outcomes: Vec<Outcome>) -> Scenario {
    scenario.with_delta_outcome(demo::IMAGE_R1_MAIN, demo::IMAGE_R2_MAIN, outcomes)
}

/// The service called `name` in a result's JSON.
pub fn service<'a>(json: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    json["is_produced_by__service_update"]
        .as_array()
        .expect("a result lists its services")
        .iter()
        .find(|s| s["service_name"] == name)
        .unwrap_or_else(|| panic!("no service `{name}` in {json}"))
}

/// What a failed run shows a person: its exit code and stderr.
pub fn failure_text(run: &Run) -> String {
    format!("exit code {}\n{}", run.code, run.stderr)
}

/// insta settings that hide what changes from run to run or between
/// systems: loopback ports, timestamps, measured durations, OS error numbers,
/// the clock of status lines and retry pauses. Bind them for the snapshots of a test:
/// `let _filters = support::snapshot_filters().bind_to_scope();`
pub fn snapshot_filters() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"(127\.0\.0\.1|localhost):\d+", "$1:[port]");
    settings.add_filter(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)",
        "[time]",
    );
    settings.add_filter(r"\b\d+(\.\d+)?(ms|µs|ns)\b|\b\d+\.\d+s\b", "[duration]");
    settings.add_filter(r"\(os error \d+\)", "(os error [n])");
    // Status lines (without a terminal) start with the elapsed time, and
    // announce retries with their jittered pause.
    settings.add_filter(r"(?m)^\d+:\d\d(:\d\d)? ", "[clock] ");
    settings.add_filter(r"retrying in \d+(\.\d+)? (ms|s) ", "retrying in [pause] ");
    settings
}

/// Waits (at most 10 s) until `ready` holds.
pub fn wait_until(what: &str, ready: impl Fn() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never happened: {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until a `--wait` run has requested its missing deltas and then
/// read the API again: its first state is known and it is in its wait
/// loop. (A fixed pause instead is too short on a busy machine.)
pub fn wait_for_the_wait_loop(world: &World) {
    wait_until("the delta is requested", || world.delta_requests() > 0);
    let read = world.api_requests();
    wait_until("the wait loop reads the API again", || {
        world.api_requests() > read
    });
}

/// Sends `signal` (`TERM`, `HUP`, `INT`) to `child` and collects what it printed.
#[cfg(unix)]
pub fn stop(child: std::process::Child, signal: &str) -> (i32, String, String) {
    send_signal(&child, signal);
    let (code, stdout, stderr) = finish(child, PROCESS_PATIENCE);
    for text in [&stdout, &stderr] {
        assert!(!text.contains(CANARY), "the token leaked:\n{text}");
        assert!(!text.contains("panicked"), "panic:\n{text}");
    }
    (code, stdout, stderr)
}

/// How long a child may take to end once told to; generous, for a busy machine.
pub const PROCESS_PATIENCE: Duration = Duration::from_secs(30);

/// Sends `signal` (`TERM`, `HUP`, `INT`, ...) to `child` with `kill`.
#[cfg(unix)]
pub fn send_signal(child: &std::process::Child, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{signal} failed");
}

/// Waits at most `limit` for `child` to end, reading its piped stdout and
/// stderr to their ends meanwhile (a pipe already taken reads as empty).
/// A child still running then is killed and the test fails with what it
/// printed. Returns the exit code (-1 when a signal ended it), stdout and
/// stderr, each complete: the readers are joined, not sampled.
pub fn finish(mut child: std::process::Child, limit: Duration) -> (i32, String, String) {
    use std::io::Read;
    fn read_all(pipe: Option<impl Read + Send + 'static>) -> std::sync::mpsc::Receiver<String> {
        let (send, receive) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            let _ = send.send(String::from_utf8_lossy(&bytes).into_owned());
        });
        receive
    }
    let stdout = read_all(child.stdout.take());
    let stderr = read_all(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("the child can be waited for") {
            break status;
        }
        if started.elapsed() >= limit {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = stderr
                .recv_timeout(Duration::from_secs(5))
                .unwrap_or_default();
            panic!("the child did not end within {limit:?}; its stderr:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let left = || {
        limit
            .saturating_sub(started.elapsed())
            .max(Duration::from_secs(5))
    };
    let stdout = stdout
        .recv_timeout(left())
        .expect("stdout is read to its end once the child has ended");
    let stderr = stderr
        .recv_timeout(left())
        .expect("stderr is read to its end once the child has ended");
    (status.code().unwrap_or(-1), stdout, stderr)
}
