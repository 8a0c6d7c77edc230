//! Bad input of every kind, table-driven: arguments, settings files, token
//! files and malformed server answers. Every case runs at each verbosity
//! (none, `-v`, `-vv`) and must end with the documented exit code and one
//! `ERROR:` line naming the cause and the fix, with no panic, no backtrace
//! and neither the canary token nor the case's own secret anywhere.

use std::ffi::OsString;
use std::path::PathBuf;

use balena_sim::demo;

use crate::support::{CANARY, Run, World, error_line, write_token};
use balena_sim::canned::{Answer, Canned, RELEASES};

/// What a case writes before running.
enum Setup {
    /// A file relative to the home directory (also the working directory).
    File(&'static str, Vec<u8>),
    /// A directory where a file is expected.
    Dir(&'static str),
    /// The token file's content (mode 600).
    Token(Vec<u8>),
    /// No token file.
    NoToken,
    /// An environment variable.
    Env(&'static str, String),
    /// An environment variable whose value may be any bytes.
    EnvOs(&'static str, OsString),
    /// A FIFO (named pipe) relative to the home directory.
    Fifo(&'static str),
    /// A symbolic link relative to the home directory, to this target.
    Symlink(&'static str, &'static str),
    /// The API and delta URLs point at a server answering the release query
    /// with this, and the delta query with `delta`.
    Answers { release: Answer, delta: Answer },
}

struct Case {
    name: &'static str,
    args: Vec<OsString>,
    setup: Vec<Setup>,
    code: i32,
    /// Fragments of the `ERROR:` line (for a run that exits 0: of its
    /// `warning:` line).
    expect: Vec<&'static str>,
    /// A value that must never be printed (besides the canary).
    secret: Option<String>,
    /// Whether the run must fail before sending any request.
    offline: bool,
}

fn case(name: &'static str) -> Case {
    Case {
        name,
        args: pair_args(demo::RELEASE_1, demo::RELEASE_2),
        setup: Vec::new(),
        code: 1,
        expect: Vec::new(),
        secret: None,
        offline: true,
    }
}

fn pair_args(from: i64, to: i64) -> Vec<OsString> {
    [
        "--from-release",
        &from.to_string(),
        "--to-release",
        &to.to_string(),
    ]
    .iter()
    .map(OsString::from)
    .collect()
}

impl Case {
    fn args(mut self, args: &[&str]) -> Case {
        self.args = args.iter().map(OsString::from).collect();
        self
    }
    fn more_args(mut self, args: &[&str]) -> Case {
        self.args.extend(args.iter().map(OsString::from));
        self
    }
    fn os_args(mut self, args: Vec<OsString>) -> Case {
        self.args = args;
        self
    }
    fn with(mut self, setup: Setup) -> Case {
        self.setup.push(setup);
        self
    }
    fn expect(mut self, fragments: &[&'static str]) -> Case {
        self.expect = fragments.to_vec();
        self
    }
    fn code(mut self, code: i32) -> Case {
        self.code = code;
        self
    }
    fn secret(mut self, secret: impl Into<String>) -> Case {
        self.secret = Some(secret.into());
        self
    }
    fn online(mut self) -> Case {
        self.offline = false;
        self
    }
    /// The release query answered with `body` (200, JSON) by a canned server.
    fn answer(self, release: Answer) -> Case {
        self.answers(release, Answer::json(r#"{"d":[]}"#))
    }
    fn answers(self, release: Answer, delta: Answer) -> Case {
        self.args(&["--from-release", "1", "--to-release", "2"])
            .with(Setup::Answers { release, delta })
            .online()
    }
}

fn check(case: &Case) {
    let world = World::demo();
    let home = world.home.path().to_owned();
    let mut env: Vec<(&str, OsString)> = Vec::new();
    let mut server = None;
    for setup in &case.setup {
        match setup {
            Setup::File(path, bytes) => {
                std::fs::write(home.join(path), bytes).unwrap();
            }
            Setup::Dir(path) => {
                let path: PathBuf = home.join(path);
                let _ = std::fs::remove_file(&path);
                std::fs::create_dir_all(path).unwrap();
            }
            Setup::Token(bytes) => {
                let path = world.data_dir().join("token");
                std::fs::write(&path, bytes).unwrap();
                write_mode_600(&path);
            }
            Setup::NoToken => std::fs::remove_file(world.data_dir().join("token")).unwrap(),
            Setup::Env(name, value) => env.push((name, value.into())),
            Setup::EnvOs(name, value) => env.push((name, value.clone())),
            Setup::Fifo(path) => {
                let path = home.join(path);
                let _ = std::fs::remove_file(&path);
                let made = std::process::Command::new("mkfifo")
                    .arg(&path)
                    .status()
                    .unwrap();
                assert!(made.success(), "mkfifo {}", path.display());
            }
            Setup::Symlink(path, target) => {
                let path = home.join(path);
                let _ = std::fs::remove_file(&path);
                #[cfg(unix)]
                std::os::unix::fs::symlink(target, path).unwrap();
                #[cfg(not(unix))]
                panic!("no symbolic link to {target} here");
            }
            Setup::Answers { release, delta } => {
                let canned = Canned::start();
                canned
                    .route("/v7/release", release.clone())
                    .route("/v7/delta", delta.clone());
                env.push(("BALENARC_API_URL", canned.url.clone().into()));
                env.push(("BALENARC_DELTA_URL", canned.url.clone().into()));
                server = Some(canned);
            }
        }
    }
    let runs = {
        let mut out = Vec::new();
        for extra in [&[][..], &["-v"], &["-vv"]] {
            if case.args.is_empty() && extra == ["-v"] {
                continue; // `-v` alone is the version, as in the npm tool
            }
            let mut cmd = world.cmd();
            for (name, value) in &env {
                cmd.env(name, value);
            }
            out.push(crate::support::run_checked(
                cmd.args(&case.args).args(extra.iter()),
            ));
        }
        out
    };
    for (i, run) in runs.iter().enumerate() {
        let what = format!("{} (run {})", case.name, i + 1);
        check_run(case, run, &what);
    }
    if case.offline {
        assert_eq!(
            world.api_requests() + world.delta_requests(),
            0,
            "{}: requests were sent",
            case.name
        );
    }
    if let Some(server) = server {
        assert!(
            !server.seen().is_empty(),
            "{}: the canned server was not asked",
            case.name
        );
    }
}

fn check_run(case: &Case, run: &Run, what: &str) {
    assert_eq!(run.code, case.code, "{what}: exit code\n{}", run.stderr);
    if let Some(secret) = &case.secret {
        assert!(
            !run.stdout.contains(secret.as_str()) && !run.stderr.contains(secret.as_str()),
            "{what}: the secret was printed\n{}",
            run.stderr
        );
    }
    assert!(
        !run.stderr.contains('\u{1b}'),
        "{what}: escape sequence on stderr"
    );
    let line = if case.code == 0 {
        run.stderr
            .lines()
            .find(|l| l.starts_with("warning: "))
            .unwrap_or("")
            .to_owned()
    } else {
        assert!(run.stdout.is_empty(), "{what}: a result on stdout");
        error_line(run)
    };
    for fragment in &case.expect {
        assert!(
            line.contains(fragment),
            "{what}: `{fragment}` missing from the line\n{line}\nstderr:\n{}",
            run.stderr
        );
    }
}

fn write_mode_600(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

fn run_all(cases: Vec<Case>) -> usize {
    let n = cases.len();
    for case in &cases {
        check(case);
    }
    n
}

const FIX_USAGE: &str = "--help";
const RELEASE_FORMS: &str = "6 to 40 hexadecimal digits";

#[test]
fn bad_arguments() {
    let pair = |extra: &[&str]| {
        let mut a = vec!["--from-release", "900813", "--to-release", "900835"];
        a.extend_from_slice(extra);
        a.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let timeout = |value: &str| pair(&["--timeout", value]);
    let long = "g".repeat(100_000);
    let cases = vec![
        case("no arguments")
            .args(&[])
            .expect(&["--from-release and --to-release", "--fleet"]),
        case("only the source")
            .args(&["--from-release", "900813"])
            .expect(&["a target release too", "add --to-release"]),
        case("only the target")
            .args(&["--to-release", "900835"])
            .expect(&["a source release too", "add --from-release", "--fleet"]),
        case("--watch with Markdown")
            .args(&[
                "--fleet",
                "gh_demo/kiosk-fleet",
                "--watch",
                "--output",
                "markdown",
            ])
            .expect(&["--watch prints one line per event", "--output json"]),
        case("missing value")
            .args(&["--from-release"])
            .expect(&["a value is required for '--from-release", FIX_USAGE]),
        case("missing value at the end")
            .args(&["--from-release", "900813", "--to-release"])
            .expect(&["a value is required for '--to-release", FIX_USAGE]),
        case("repeated option")
            .args(&[
                "--from-release",
                "1",
                "--from-release",
                "2",
                "--to-release",
                "3",
            ])
            .expect(&[
                "'--from-release",
                "cannot be used multiple times",
                FIX_USAGE,
            ]),
        case("repeated flag")
            .more_args(&["--wait", "--wait"])
            .expect(&["'--wait' cannot be used multiple times", FIX_USAGE]),
        case("5 hex digits")
            .args(&["--from-release", "84d3d", "--to-release", "900835"])
            .expect(&["`84d3d`", "at least 6 hexadecimal digits", RELEASE_FORMS]),
        case("not hexadecimal")
            .args(&[
                "--from-release",
                "zzzzzz-not-a-hash",
                "--to-release",
                "900835",
            ])
            .expect(&[
                "`zzzzzz-not-a-hash`",
                "neither digits nor hexadecimal",
                RELEASE_FORMS,
            ]),
        case("a quote")
            .args(&["--from-release", "84d3d8f'x", "--to-release", "900835"])
            .expect(&["neither digits nor hexadecimal", RELEASE_FORMS]),
        case("41 hex digits")
            .args(&["--from-release", &"a".repeat(41), "--to-release", "900835"])
            .expect(&["at most 40", RELEASE_FORMS]),
        case("negative id")
            .args(&["--from-release", "-5", "--to-release", "900835"])
            .expect(&["`-5`", "neither digits nor hexadecimal", FIX_USAGE]),
        case("negative id with =")
            .args(&["--from-release=-5", "--to-release", "900835"])
            .expect(&["`-5`", "neither digits nor hexadecimal", RELEASE_FORMS]),
        case("id beyond 64 bits")
            .args(&[
                "--from-release",
                "99999999999999999999999",
                "--to-release",
                "1",
            ])
            .expect(&["the id is too large", RELEASE_FORMS]),
        case("id zero")
            .args(&["--from-release", "0", "--to-release", "900835"])
            .expect(&["release ids start at 1", RELEASE_FORMS]),
        case("empty release")
            .args(&["--from-release", "", "--to-release", "900835"])
            .expect(&["it is empty", RELEASE_FORMS]),
        case("a 100,000-character release")
            .args(&["--from-release", &long, "--to-release", "900835"])
            .expect(&["neither digits nor hexadecimal", RELEASE_FORMS]),
        case("not UTF-8")
            .os_args(vec![
                "--from-release".into(),
                not_utf8(),
                "--to-release".into(),
                "900835".into(),
            ])
            .expect(&["invalid UTF-8", FIX_USAGE]),
        case("timeout 0")
            .os_args(timeout("0").into_iter().map(OsString::from).collect())
            .expect(&["at least 1 second"]),
        case("negative timeout")
            .os_args(timeout("-5").into_iter().map(OsString::from).collect())
            .expect(&["`-5` is not a duration", FIX_USAGE]),
        case("negative timeout with =")
            .os_args(
                pair(&["--timeout=-5"])
                    .into_iter()
                    .map(OsString::from)
                    .collect(),
            )
            .expect(&["`-5` is not a duration", "`600`", "`10m`"]),
        case("fractional timeout")
            .os_args(timeout("1.5").into_iter().map(OsString::from).collect())
            .expect(&["`1.5` is not a duration", "whole seconds"]),
        case("enormous timeout")
            .os_args(
                timeout("99999999999999999999999")
                    .into_iter()
                    .map(OsString::from)
                    .collect(),
            )
            .expect(&["longer than the maximum of 24h"]),
        case("timeout over a day")
            .os_args(timeout("25h").into_iter().map(OsString::from).collect())
            .expect(&["longer than the maximum of 24h"]),
        case("timeout with an unknown unit")
            .os_args(timeout("5d").into_iter().map(OsString::from).collect())
            .expect(&["`5d` is not a duration", "`1h30m`"]),
        case("empty timeout")
            .os_args(timeout("").into_iter().map(OsString::from).collect())
            .expect(&["is not a duration"]),
        case("timeout without a value")
            .more_args(&["--timeout"])
            .expect(&["a value is required for '--timeout", FIX_USAGE]),
        case("fleet with a source release")
            .args(&["--fleet", "gh_demo/kiosk-fleet", "--from-release", "900813"])
            .expect(&["cannot be used with", FIX_USAGE]),
        case("fleet without a slash")
            .args(&["--fleet", "kiosk fleet"])
            .expect(&["invalid fleet", "`myorg/myfleet`"]),
        case("unknown output format")
            .more_args(&["--output", "xml"])
            .expect(&[
                "'xml'",
                "[possible values: json, table, markdown]",
                FIX_USAGE,
            ]),
        case("quiet and verbose")
            .more_args(&["--quiet", "--verbose"])
            .expect(&["'--quiet' cannot be used with", FIX_USAGE]),
        case("unknown option")
            .more_args(&["--foo"])
            .expect(&["unexpected argument '--foo'", FIX_USAGE]),
        case("stray word")
            .more_args(&["extra"])
            .expect(&["unexpected argument 'extra'", FIX_USAGE]),
        case("allow-http not a boolean")
            .with(Setup::Env(
                "BALENA_RELEASE_UPDATE_ALLOW_HTTP",
                "maybe".into(),
            ))
            .expect(&["'maybe'", "--allow-http", FIX_USAGE]),
    ];
    assert!(run_all(cases) >= 30);
}

fn not_utf8() -> OsString {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt;
        OsString::from_vec(vec![0x38, 0x34, 0xff, 0xfe])
    }
    #[cfg(not(unix))]
    {
        OsString::from("84\u{fffd}")
    }
}

const FIX_SETTINGS: &str = "fix";

#[test]
fn bad_settings() {
    let cases = vec![
        case("invalid YAML")
            .with(Setup::File("balenarc.yml", b"apiUrl: [oops".to_vec()))
            .expect(&[
                "balenarc.yml",
                "is not valid YAML",
                "fix the syntax or remove the file",
            ]),
        case("invalid YAML at home")
            .with(Setup::File(".balenarc.yml", b"a: b: c\n".to_vec()))
            .expect(&[".balenarc.yml", "is not valid YAML", FIX_SETTINGS]),
        case("invalid legacy YAML")
            .with(Setup::File(
                "resinrc.yml",
                b"apiUrl: 'unterminated\n".to_vec(),
            ))
            .expect(&["resinrc.yml", "is not valid YAML", FIX_SETTINGS]),
        case("a number for a URL")
            .with(Setup::File("balenarc.yml", b"deltaUrl: 5\n".to_vec()))
            .expect(&[
                "`deltaUrl`",
                "must be a non-empty string",
                "deltaUrl: https://",
            ]),
        case("a list for a URL")
            .with(Setup::File("balenarc.yml", b"balenaUrl: [a, b]\n".to_vec()))
            .expect(&[
                "`balenaUrl`",
                "must be a non-empty string",
                "balenaUrl: balena-cloud.com",
            ]),
        case("a list at the top")
            .with(Setup::File(
                "balenarc.yml",
                b"- apiUrl\n- deltaUrl\n".to_vec(),
            ))
            .expect(&["must be a YAML mapping", "apiUrl: https://"]),
        case("a key that is not a string")
            .with(Setup::File("balenarc.yml", b"1: x\n".to_vec()))
            .expect(&["not a string", "`apiUrl`"]),
        case("unknown key")
            .with(Setup::File(
                "balenarc.yml",
                b"deltaURL: https://delta.example\n".to_vec(),
            ))
            .code(0)
            .online()
            .expect(&[
                "ignoring unknown setting `deltaURL`",
                "did you mean `deltaUrl`?",
            ]),
        case("settings file is a directory")
            .with(Setup::Dir("balenarc.yml"))
            .expect(&[
                "cannot read settings file",
                "it is a directory, not a regular file",
                "remove it",
            ]),
        case("settings file is a FIFO")
            .with(Setup::Fifo("balenarc.yml"))
            .expect(&[
                "balenarc.yml",
                "it is a FIFO (named pipe), not a regular file",
                "remove it",
            ]),
        case("settings file at home is a device")
            .with(Setup::Symlink(".balenarc.yml", "/dev/zero"))
            .expect(&[".balenarc.yml", "it is a device", "remove it"]),
        case("settings file over 1 MiB")
            .with(Setup::File(
                "resinrc.yml",
                format!("# {}\n", "x".repeat(1024 * 1024)).into_bytes(),
            ))
            .expect(&["resinrc.yml", "is larger than 1 MiB", "fix or remove it"]),
        case("deeply nested YAML")
            .with(Setup::File(
                "balenarc.yml",
                format!("apiUrl: {}", "[".repeat(200_000)).into_bytes(),
            ))
            .expect(&[
                "balenarc.yml",
                "more than 1000 `[` and `{`",
                "fix or remove it",
            ]),
        case("API URL variable not UTF-8")
            .with(Setup::EnvOs("BALENARC_API_URL", not_utf8()))
            .expect(&["BALENARC_API_URL is not valid UTF-8", "unset it"]),
        case("legacy delta URL variable not UTF-8, in lower case")
            .with(Setup::EnvOs("resinrc_delta_url", not_utf8()))
            .expect(&["resinrc_delta_url is not valid UTF-8", "unset it"]),
        case("poll interval not UTF-8")
            .with(Setup::EnvOs(
                "BALENA_RELEASE_UPDATE_POLL_INTERVAL",
                not_utf8(),
            ))
            .expect(&["BALENA_RELEASE_UPDATE_POLL_INTERVAL is not valid UTF-8"]),
        case("settings not UTF-8")
            .with(Setup::File(
                "balenarc.yml",
                vec![0x61, 0x3a, 0x20, 0xff, 0xfe, 0x0a],
            ))
            .expect(&["is not UTF-8 text", "fix or remove it"]),
        case("API URL not a URL")
            .with(Setup::Env("BALENARC_API_URL", "not a url".into()))
            .expect(&["setting `apiUrl` is not a URL", "BALENARC_API_URL"]),
        case("API URL not HTTP")
            .with(Setup::Env(
                "BALENARC_API_URL",
                "ftp://api.example.com".into(),
            ))
            .expect(&["invalid API URL", "only http:// and https://"]),
        case("credentials in the API URL")
            .with(Setup::Env(
                "BALENARC_API_URL",
                "https://user:pw@api.example.com".into(),
            ))
            .expect(&["credentials in the URL are not supported", "use a token"]),
        case("a query in the delta URL")
            .with(Setup::Env(
                "BALENARC_DELTA_URL",
                "https://delta.example.com/?x=1".into(),
            ))
            .expect(&["invalid delta URL", "cannot have a query"]),
        case("data directory without a token")
            .with(Setup::Env(
                "BALENARC_DATA_DIRECTORY",
                "/nonexistent/balena".into(),
            ))
            .expect(&["not logged in", "/nonexistent/balena/token", "balena login"]),
    ];
    assert!(run_all(cases) >= 19);
}

/// header `{"alg":"HS256","typ":"JWT"}`, payload `{"id":1,"iat":1500000000,"exp":1500003600}`.
const EXPIRED_JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6MSwiaWF0IjoxNTAwMDAwMDAwLCJleHAiOjE1MDAwMDM2MDB9.c2lnbmF0dXJl";

#[test]
fn bad_tokens() {
    let token = |bytes: &[u8]| Setup::Token(bytes.to_vec());
    let wrong = "wrongTokenValue0123456789abcdef";
    let cases = vec![
        case("no token file").with(Setup::NoToken).expect(&[
            "not logged in",
            "balena login",
            "BALENA_RELEASE_UPDATE_TOKEN",
        ]),
        case("empty token file")
            .with(token(b""))
            .expect(&["is empty", "balena login"]),
        case("blank token file")
            .with(token(b" \n\t\n"))
            .expect(&["is empty", "balena login"]),
        case("numeric token")
            .with(token(b"98765432101234"))
            .secret("98765432101234")
            .expect(&["all-digit", "balena login"]),
        case("expired session token")
            .with(token(EXPIRED_JWT.as_bytes()))
            .secret(EXPIRED_JWT)
            .expect(&["expired", "balena login"]),
        case("session token that is not base64")
            .with(token(b"eyJhbGciOiJIUzI1NiJ9A.eyJpZCI6MX0.c2lnbmF0dXJl"))
            .secret("eyJhbGciOiJIUzI1NiJ9A.eyJpZCI6MX0")
            .expect(&["malformed", "balena login"]),
        case("session token whose payload is not JSON")
            // header {"alg":"HS256"}, payload `hello world`
            .with(token(b"eyJhbGciOiJIUzI1NiJ9.aGVsbG8gd29ybGQ.c2lnbmF0dXJl"))
            .secret("aGVsbG8gd29ybGQ")
            .expect(&["malformed", "balena login"]),
        case("token with a space")
            .with(token(b"abcdefghij klmnopqrstuvwxyz0123"))
            .secret("klmnopqrstuvwxyz0123")
            .expect(&["malformed", "whitespace", "balena login"]),
        case("token with a control character")
            .with(token(b"abcdefghij\x07klmnopqrstuvwxyz0123"))
            .secret("klmnopqrstuvwxyz0123")
            .expect(&["malformed", "control", "balena login"]),
        case("token file not UTF-8")
            .with(token(&[0x41, 0xff, 0xfe, 0x41]))
            .expect(&["is not text", "balena login"]),
        case("token file with a UTF-8 byte-order mark")
            .with(token(format!("\u{feff}{wrong}\n").as_bytes()))
            .secret(wrong)
            .expect(&[
                "starts with a byte-order mark (BOM): save the file without it",
                "BALENA_RELEASE_UPDATE_TOKEN",
            ]),
        case("token file saved as UTF-16")
            .with(token(&[0xff, 0xfe, 0x41, 0x00, 0x42, 0x00]))
            .expect(&["byte-order mark (BOM)", "save the file without it"]),
        case("token file over 64 KiB")
            .with(token("a".repeat(64 * 1024 + 1).as_bytes()))
            .expect(&["larger than 64 KiB", "balena login"]),
        case("token file is a FIFO")
            .with(Setup::Fifo(".balena/token"))
            .expect(&[
                "it is a FIFO (named pipe), not a regular file",
                "balena login",
            ]),
        case("token file is /dev/zero")
            .with(Setup::Symlink(".balena/token", "/dev/zero"))
            .expect(&["it is a device, not a regular file", "balena login"]),
        case("token variable not UTF-8")
            .with(Setup::EnvOs("BALENA_RELEASE_UPDATE_TOKEN", not_utf8()))
            .expect(&["BALENA_RELEASE_UPDATE_TOKEN is not valid UTF-8", "unset it"]),
        case("token file is a directory")
            .with(Setup::Dir(".balena/token"))
            .expect(&["cannot read the token file", "BALENA_RELEASE_UPDATE_TOKEN"]),
        case("token the API refuses")
            .with(token(wrong.as_bytes()))
            .secret(wrong)
            .online()
            .expect(&["401", "balena login"]),
        case("blank token variable")
            .with(Setup::Env("BALENA_RELEASE_UPDATE_TOKEN", "   ".into()))
            .expect(&["BALENA_RELEASE_UPDATE_TOKEN is blank", "unset it"]),
        case("token variable the API refuses")
            .with(Setup::Env("BALENA_RELEASE_UPDATE_TOKEN", wrong.into()))
            .secret(wrong)
            .online()
            .expect(&["401", "BALENA_RELEASE_UPDATE_TOKEN"]),
    ];
    assert!(run_all(cases) >= 12);
}

#[test]
fn a_token_file_with_a_trailing_newline_works() {
    for ending in ["\n", "\r\n", "\n\n"] {
        let world = World::demo();
        write_token(world.home.path(), &format!("{CANARY}{ending}"));
        for run in world.run_verbosities(
            &["--from-release", "900813", "--to-release", "900835"],
            |c| c,
        ) {
            assert_eq!(run.code, 0, "{ending:?}: {}", run.stderr);
            assert_eq!(run.json()["produces__release"]["id"], 900835);
        }
    }
}

fn with_release(edit: impl Fn(&mut serde_json::Value)) -> Answer {
    let mut value: serde_json::Value = serde_json::from_str(RELEASES).unwrap();
    edit(&mut value);
    Answer::json(value.to_string())
}

const FIX_API: &str = "check that the API URL points at a balena API";

#[test]
fn malformed_server_answers() {
    let json = |body: &str| Answer::json(body.to_owned());
    let size = |raw: &str| {
        Answer::json(RELEASES.replacen(
            "\"image_size\":\"1000\"",
            &format!("\"image_size\":{raw}"),
            1,
        ))
    };
    let cases = vec![
        case("no `d`").answer(json(r#"{"rows":[]}"#)).expect(&[
            "release query",
            "missing field `d`",
            FIX_API,
        ]),
        case("`d` not a list")
            .answer(json(r#"{"d":{"id":1}}"#))
            .expect(&["at `d`", "invalid type", FIX_API]),
        case("wrong type for an id")
            .answer(json(r#"{"d":[{"id":"one"}]}"#))
            .expect(&["at `d[0].id`", "invalid type", FIX_API]),
        case("wrong type for a foreign key")
            .answer(with_release(|v| {
                v["d"][0]["belongs_to__application"] = 7.into()
            }))
            .expect(&["belongs_to__application", "invalid type", FIX_API]),
        case("truncated JSON")
            .answer(json(&RELEASES[..RELEASES.len() / 2]))
            .expect(&["ends early", FIX_API]),
        case("HTML page")
            .answer(Answer::new(
                200,
                "text/html",
                "<html><title>Sign in</title></html>",
            ))
            .expect(&["expected JSON", "`text/html`", FIX_API]),
        case("HTML error page")
            .answer(Answer::new(
                404,
                "text/html",
                "<html><head><title>404 Not Found</title></head><body>nginx</body></html>",
            ))
            .expect(&[
                "`404`",
                "an HTML page titled `404 Not Found`",
                "check the API URL",
            ]),
        case("JSON with the wrong content type")
            .answer(Answer::new(200, "text/plain", RELEASES))
            .expect(&["`text/plain`", FIX_API]),
        case("size beyond 64 bits")
            .answer(size("18446744073709551616"))
            .expect(&["image_size", "whole number", FIX_API]),
        case("size beyond 64 bits as a string")
            .answer(size("\"99999999999999999999999\""))
            .expect(&["image_size", "whole number", FIX_API]),
        case("negative size")
            .answer(size("-4"))
            .expect(&["image_size", FIX_API]),
        case("fractional size")
            .answer(size("1.5"))
            .expect(&["image_size", FIX_API]),
        case("empty body")
            .answer(json(""))
            .expect(&["the body is empty", FIX_API]),
        case("duplicate rows for an id")
            .answer(with_release(|v| {
                let first = v["d"][0].clone();
                v["d"].as_array_mut().unwrap().push(first);
            }))
            .expect(&["duplicate row for id `1`", FIX_API]),
        case("two images for one service")
            .answer(with_release(|v| {
                let first = v["d"][0]["release_image"][0].clone();
                v["d"][0]["release_image"]
                    .as_array_mut()
                    .unwrap()
                    .push(first);
            }))
            .expect(&["two images for service `main`", FIX_API]),
        case("trailing data")
            .answer(json(&format!("{RELEASES} {{}}")))
            .expect(&["trailing data", FIX_API]),
        case("escape sequences in an error body")
            .answer(Answer::new(
                404,
                "text/plain",
                "\u{1b}[2J\u{1b}[31mgone\nfor good",
            ))
            .expect(&["`404`", "gone for good"]),
        case("malformed delta answer")
            .answers(Answer::json(RELEASES), json(r#"{"d":[{"id":5}]}"#))
            .expect(&["delta query", "missing field", FIX_API]),
        case("HTML delta answer")
            .answers(
                Answer::json(RELEASES),
                Answer::new(200, "text/html", "<html><title>Portal</title></html>"),
            )
            .expect(&["delta query", "`text/html`", FIX_API]),
    ];
    assert!(run_all(cases) >= 15);
}
