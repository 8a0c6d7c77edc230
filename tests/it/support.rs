//! A simulator plus a throw-away home directory, and a way to run the binary
//! against them with nothing from the developer's own settings leaking in.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use balena_sim::{Scenario, Simulator};
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
            .current_dir(self.home.path());
        cmd
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

    /// API requests the simulator has seen (control requests excluded).
    pub fn api_requests(&self) -> usize {
        self.sim.count(balena_sim::Server::Api, None)
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
        assert!(
            run.stderr
                .lines()
                .filter(|l| l.starts_with("ERROR: "))
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
pub fn error_line(run: &Run) -> &str {
    run.stderr
        .lines()
        .find(|l| l.starts_with("ERROR: "))
        .unwrap_or("")
}

/// A minimal HTTP/1.1 server on loopback giving canned answers by path
/// prefix, recording what it was asked (headers included): for answers the
/// simulator never gives and for checking where headers went.
pub mod canned {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[derive(Debug, Clone)]
    pub struct Answer {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    impl Answer {
        pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Answer {
            Answer {
                status,
                headers: vec![("Content-Type".into(), content_type.into())],
                body: body.into(),
            }
        }

        pub fn json(body: impl Into<Vec<u8>>) -> Answer {
            Answer::new(200, "application/json", body)
        }

        pub fn redirect(status: u16, location: &str) -> Answer {
            Answer {
                status,
                headers: vec![("Location".into(), location.into())],
                body: Vec::new(),
            }
        }
    }

    /// A request as received; header names lower-cased.
    #[derive(Debug, Clone)]
    pub struct Seen {
        pub target: String,
        pub headers: Vec<(String, String)>,
    }

    #[derive(Default)]
    struct State {
        routes: Vec<(String, Answer)>,
        seen: Vec<Seen>,
    }

    /// Runs on its own thread until the test process ends.
    #[derive(Clone)]
    pub struct Canned {
        pub url: String,
        state: Arc<Mutex<State>>,
    }

    impl Canned {
        pub fn start() -> Canned {
            let listener = TcpListener::bind("127.0.0.1:0").expect("loopback has a free port");
            let url = format!(
                "http://{}",
                listener
                    .local_addr()
                    .expect("a bound socket has an address")
            );
            let state = Arc::new(Mutex::new(State::default()));
            let shared = state.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    serve(stream, &shared);
                }
            });
            Canned { url, state }
        }

        /// Answers paths starting with `prefix` (the latest matching route
        /// wins; no match: 404).
        pub fn route(&self, prefix: &str, answer: Answer) -> &Canned {
            self.lock().routes.push((prefix.to_owned(), answer));
            self
        }

        pub fn seen(&self) -> Vec<Seen> {
            self.lock().seen.clone()
        }

        fn lock(&self) -> std::sync::MutexGuard<'_, State> {
            // A panic while holding the lock has already failed the test.
            self.state.lock().unwrap_or_else(|e| e.into_inner())
        }
    }

    fn serve(mut stream: TcpStream, state: &Mutex<State>) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let text = String::from_utf8_lossy(&head);
        let mut lines = text.split("\r\n");
        let target = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .unwrap_or("")
            .to_owned();
        let headers = lines
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let answer = {
            let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
            state.seen.push(Seen {
                target: target.clone(),
                headers,
            });
            state
                .routes
                .iter()
                .rev()
                .find(|(prefix, _)| target.starts_with(prefix.as_str()))
                .map(|(_, a)| a.clone())
                .unwrap_or_else(|| Answer::new(404, "text/plain", "no such route"))
        };
        let mut out = format!("HTTP/1.1 {} Canned\r\n", answer.status).into_bytes();
        for (name, value) in &answer.headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        out.extend_from_slice(
            format!(
                "Content-Length: {}\r\nConnection: close\r\n\r\n",
                answer.body.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(&answer.body);
        let _ = stream.write_all(&out);
        let _ = stream.flush();
    }

    /// A valid answer to the release query: releases 1 and 2 of fleet 7,
    /// `main` changed (images 11 → 21), `api` unchanged (same content hash).
    pub const RELEASES: &str = r#"{"d":[
{"id":1,"commit":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","status":"success","belongs_to__application":{"__id":7},
 "release_image":[
  {"id":1,"image":[{"id":11,"status":"success","content_hash":"sha256:11","image_size":"1000",
    "is_stored_at__image_location":"registry/11","is_a_build_of__service":[{"service_name":"main"}]}]},
  {"id":2,"image":[{"id":12,"status":"success","content_hash":"sha256:same","image_size":"500",
    "is_stored_at__image_location":"registry/12","is_a_build_of__service":[{"service_name":"api"}]}]}]},
{"id":2,"commit":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","status":"success","belongs_to__application":{"__id":7},
 "release_image":[
  {"id":3,"image":[{"id":21,"status":"success","content_hash":"sha256:21","image_size":"2000",
    "is_stored_at__image_location":"registry/21","is_a_build_of__service":[{"service_name":"main"}]}]},
  {"id":4,"image":[{"id":22,"status":"success","content_hash":"sha256:same","image_size":"500",
    "is_stored_at__image_location":"registry/22","is_a_build_of__service":[{"service_name":"api"}]}]}]}
]}"#;
}
