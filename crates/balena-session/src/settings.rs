//! Where the API, the delta server and the token come from, resolved the way
//! the balena CLI resolves them, so one `balena login` serves both tools.
//!
//! Later sources win: defaults, `~/.resinrc.yml`, `~/.balenarc.yml`,
//! `./resinrc.yml`, `./balenarc.yml`, then `BALENARC_*`/`RESINRC_*`
//! environment variables. Unlike the npm tool, `apiUrl` is honoured, but a
//! file in the working directory that chooses where the token goes is named
//! in a warning, and refused under CI unless trusted explicitly.

use std::path::{Path, PathBuf};

use crate::env_vars;
use crate::files::{FileProblem, describe_kind, describe_size, plain_io_error, read_regular_file};

/// The largest settings file read; a balenarc file holds a few lines.
pub const SETTINGS_FILE_LIMIT: u64 = 1024 * 1024;

/// The most `[` and `{` a settings file may hold: the YAML parser's cost
/// grows with the square of flow nesting, and a balenarc file needs none.
const FLOW_BRACKET_LIMIT: usize = 1000;

/// The settings this tool reads, after every source is merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub balena_url: String,
    pub api_url: String,
    pub delta_url: String,
    pub data_directory: PathBuf,
}

/// What settings resolution reads from the outside world, injectable for tests.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    pub home: Option<PathBuf>,
    pub current_dir: PathBuf,
    pub vars: Vec<(String, String)>,
    /// The tool's own variables whose value is not UTF-8 (left out of `vars`).
    pub not_unicode: Vec<String>,
}

impl Environment {
    /// The real process environment.
    pub fn from_process() -> Environment {
        let mut vars = Vec::new();
        let mut not_unicode = Vec::new();
        for (name, value) in std::env::vars_os() {
            // Every variable the tool reads has an ASCII name.
            let Ok(name) = name.into_string() else {
                continue;
            };
            match value.into_string() {
                Ok(value) => vars.push((name, value)),
                Err(_) if is_tool_variable(&name) => not_unicode.push(name),
                Err(value) => vars.push((name, value.to_string_lossy().into_owned())),
            }
        }
        not_unicode.sort();
        Environment {
            home: std::env::home_dir(),
            current_dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            vars,
            not_unicode,
        }
    }

    /// An environment other than the process's, for tests and for front
    /// ends that hold their own: these variables, this home and working
    /// directory.
    pub fn fake(home: Option<PathBuf>, current_dir: PathBuf, vars: &[(&str, &str)]) -> Environment {
        Environment {
            home,
            current_dir,
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            not_unicode: Vec::new(),
        }
    }

    /// The value of a variable, treating an empty value as unset.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(key, value)| key == name && !value.is_empty())
            .map(|(_, value)| value.as_str())
    }

    /// Fails on the first of the tool's variables whose value is not UTF-8:
    /// silently skipping it would send the token with other settings.
    pub fn check_unicode(&self) -> Result<(), SettingsError> {
        match self.not_unicode.first() {
            None => Ok(()),
            Some(name) => Err(SettingsError(format!(
                "{name} is not valid UTF-8 text: set it to a UTF-8 value or unset it"
            ))),
        }
    }

    /// `CI` set to anything but empty, `0` or `false`.
    pub fn in_ci(&self) -> bool {
        self.var(env_vars::CI)
            .is_some_and(|value| value != "0" && value != "false")
    }
}

/// `BALENARC_*` and `RESINRC_*` (in any case, as they are read) and
/// `BALENA_RELEASE_UPDATE_*`.
fn is_tool_variable(name: &str) -> bool {
    let has_prefix = |prefix: &str| {
        name.get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    };
    has_prefix("BALENARC_") || has_prefix("RESINRC_") || name.starts_with("BALENA_RELEASE_UPDATE_")
}

/// The keys this tool understands, by their balenarc names.
const KEYS: [&str; 4] = ["balenaUrl", "apiUrl", "deltaUrl", "dataDirectory"];

/// Keys the balena CLI uses that this tool has no use for: accepted silently.
const OTHER_BALENA_KEYS: [&str; 8] = [
    "proxy",
    "sharedProxy",
    "cacheTime",
    "tokenRefreshInterval",
    "imageCleanupDelay",
    "apiKeyVariable",
    "dashboardUrl",
    "builderUrl",
];

/// A settings problem: what is wrong, where, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError(pub String);

impl std::fmt::Display for SettingsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SettingsError {}

/// The merged settings, plus warnings worth showing (unknown keys).
#[derive(Debug)]
pub struct Resolved {
    pub settings: Settings,
    pub warnings: Vec<String>,
}

/// Reads every source in precedence order and merges them.
pub fn resolve(env: &Environment) -> Result<Resolved, SettingsError> {
    env.check_unicode()?;
    // Each value with the working-directory file it came from, if it did.
    let mut values: [Option<(String, Option<PathBuf>)>; 4] = Default::default();
    let mut warnings = Vec::new();

    let mut files = Vec::new();
    if let Some(home) = &env.home {
        // HOME inside the checkout (HOME=<checkout>) is the checkout's.
        let home_is_project = is_project_dir(env, home);
        files.push((home.join(".resinrc.yml"), true, home_is_project));
        files.push((home.join(".balenarc.yml"), false, home_is_project));
    }
    files.push((env.current_dir.join("resinrc.yml"), true, true));
    files.push((env.current_dir.join("balenarc.yml"), false, true));

    for (path, legacy, in_cwd) in files {
        let Some(text) = read_optional(&path)? else {
            continue;
        };
        for (key, value) in parse_file(&path, &text, legacy, &mut warnings)? {
            let index = KEYS
                .iter()
                .position(|k| *k == key)
                .expect("parse_file yields known keys");
            values[index] = Some((value, in_cwd.then(|| path.clone())));
        }
    }

    for (prefix, name) in env_var_overrides(env) {
        let index = KEYS
            .iter()
            .position(|k| *k == name)
            .expect("overrides yield known keys");
        values[index] = Some((prefix, None));
    }

    let [balena_url, api_url, delta_url, data_directory] = values;
    let (balena_url, balena_from) =
        balena_url.unwrap_or_else(|| ("balena-cloud.com".to_owned(), None));
    let host = balena_url.trim_end_matches('/');
    let (api_url, api_from) = match api_url {
        Some((url, from)) => (url, from.map(|f| (f, "apiUrl"))),
        None => (
            format!("https://api.{host}"),
            balena_from.clone().map(|f| (f, "balenaUrl")),
        ),
    };
    let (delta_url, delta_from) = match delta_url {
        Some((url, from)) => (url, from.map(|f| (f, "deltaUrl"))),
        None => (
            format!("https://delta.{host}"),
            balena_from.map(|f| (f, "balenaUrl")),
        ),
    };
    let mut chosen_in_cwd: Vec<(PathBuf, &str, Chosen)> =
        [(api_from, &api_url), (delta_from, &delta_url)]
            .into_iter()
            .filter_map(|(from, url)| {
                from.map(|(file, key)| (file, key, Chosen::Host(host_of(url))))
            })
            .collect();
    let data_directory = match data_directory {
        Some((dir, from)) => {
            let dir = expand_home(&dir, env.home.as_deref())?;
            if let Some(file) = from {
                chosen_in_cwd.push((
                    file,
                    "dataDirectory",
                    Chosen::TokenFile(dir.display().to_string()),
                ));
            }
            Some(dir)
        }
        None => None,
    };
    check_cwd_choice(env, &chosen_in_cwd, &mut warnings)?;

    let data_directory = match data_directory {
        Some(dir) => dir,
        None => env
            .home
            .as_ref()
            .map(|home| home.join(".balena"))
            .ok_or_else(|| {
                SettingsError(format!(
                    "cannot find the home directory for the default data directory: set HOME or {}",
                    env_vars::BALENARC_DATA_DIRECTORY
                ))
            })?,
    };
    Ok(Resolved {
        settings: Settings {
            balena_url,
            api_url,
            delta_url,
            data_directory,
        },
        warnings,
    })
}

/// Where a URL sends requests, for messages: `host` or `host:port`.
fn host_of(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => match (parsed.host_str(), parsed.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => "no host".to_owned(),
        },
        Err(_) => "an invalid URL".to_owned(),
    }
}

/// The directories whose settings files are the working directory's (a
/// checkout's, perhaps with the change under test in it): the working
/// directory and its parents up to the nearest one holding `.git`, or the
/// working directory alone outside a repository.
fn project_dirs(env: &Environment) -> Vec<PathBuf> {
    let cwd = canonical(&env.current_dir);
    let dirs: Vec<PathBuf> = cwd.ancestors().map(Path::to_path_buf).collect();
    match dirs.iter().position(|d| d.join(".git").exists()) {
        Some(top) => dirs[..=top].to_vec(),
        None => vec![cwd],
    }
}

/// Whether `dir` is one of [`project_dirs`].
fn is_project_dir(env: &Environment, dir: &Path) -> bool {
    project_dirs(env).contains(&canonical(dir))
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// A working-directory file (perhaps from the change under test) that
/// chooses where the token goes, or which file is the token, is named in a
/// warning; under CI it is refused unless trusted with
/// `BALENA_RELEASE_UPDATE_TRUST_CWD_SETTINGS`. `chosen` lists (file, key,
/// what it makes the tool do) for each value such a file decided.
fn check_cwd_choice(
    env: &Environment,
    chosen: &[(PathBuf, &str, Chosen)],
    warnings: &mut Vec<String>,
) -> Result<(), SettingsError> {
    if chosen.is_empty() {
        return Ok(());
    }
    // Per file: its keys, the hosts the token goes to, the token's directory.
    type Choices<'a> = (&'a Path, Vec<String>, Vec<String>, Vec<String>);
    let mut by_file: Vec<Choices> = Vec::new();
    for (file, key, what) in chosen {
        let at = match by_file.iter().position(|(f, ..)| *f == file.as_path()) {
            Some(at) => at,
            None => {
                by_file.push((file.as_path(), Vec::new(), Vec::new(), Vec::new()));
                by_file.len() - 1
            }
        };
        let (_, keys, hosts, dirs) = &mut by_file[at];
        let (list, value) = match what {
            Chosen::Host(host) => (hosts, host),
            Chosen::TokenFile(dir) => (dirs, dir),
        };
        for (list, item) in [(keys, format!("`{key}`")), (list, format!("`{value}`"))] {
            if !list.contains(&item) {
                list.push(item);
            }
        }
    }
    let effects = |hosts: &[String], dirs: &[String], future: bool| {
        let (sent, read) = if future {
            ("the token will be sent to", "the token will be read from")
        } else {
            ("would send the token to", "would read the token from")
        };
        let mut parts = Vec::new();
        if !hosts.is_empty() {
            parts.push(format!("{sent} {}", hosts.join(" and ")));
        }
        if !dirs.is_empty() {
            parts.push(format!("{read} {}", dirs.join(" and ")));
        }
        parts.join(if future { "; " } else { " and " })
    };
    let trusted = trust_cwd_settings(env)?;
    if env.in_ci() && !trusted {
        let (file, keys, hosts, dirs) = &by_file[0];
        return Err(SettingsError(format!(
            "refusing settings file `{}` from the working directory under CI: it sets {} and {}; set {}=1 to allow it",
            file.display(),
            keys.join(" and "),
            effects(hosts, dirs, false),
            env_vars::TRUST_CWD_SETTINGS
        )));
    }
    for (file, keys, hosts, dirs) in &by_file {
        warnings.push(format!(
            "settings file `{}` in the working directory sets {}: {}",
            file.display(),
            keys.join(" and "),
            effects(hosts, dirs, true)
        ));
    }
    Ok(())
}

/// What a value from a working-directory settings file decides.
enum Chosen {
    /// Where the token is sent (`host` or `host:port`).
    Host(String),
    /// The directory the token file is read from.
    TokenFile(String),
}

/// `BALENA_RELEASE_UPDATE_TRUST_CWD_SETTINGS`: `1`/`true`/`yes`/`on` trust,
/// `0`/`false`/`no`/`off` or unset do not; anything else is a mistake.
fn trust_cwd_settings(env: &Environment) -> Result<bool, SettingsError> {
    let Some(value) = env.var(env_vars::TRUST_CWD_SETTINGS) else {
        return Ok(false);
    };
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(SettingsError(format!(
            "{} must be 1 (trust settings files in the working directory) or 0, not `{}`",
            env_vars::TRUST_CWD_SETTINGS,
            crate::printable(value)
        ))),
    }
}

/// `BALENARC_<NAME>` (or `RESINRC_<NAME>`, prefix in any case) for the keys
/// this tool knows, as (value, key) pairs; `RESINRC_` first so `BALENARC_` wins.
fn env_var_overrides(env: &Environment) -> Vec<(String, &'static str)> {
    let mut found = Vec::new();
    for prefix in ["RESINRC_", "BALENARC_"] {
        for (name, value) in &env.vars {
            // `get` rather than slicing: a variable's name may be any Unicode.
            let (Some(head), Some(rest)) = (name.get(..prefix.len()), name.get(prefix.len()..))
            else {
                continue;
            };
            if value.is_empty() || rest.is_empty() || !head.eq_ignore_ascii_case(prefix) {
                continue;
            }
            let key = camel_case(rest);
            let key = if key == "resinUrl" {
                "balenaUrl".to_owned()
            } else {
                key
            };
            if let Some(known) = KEYS.iter().find(|k| **k == key) {
                found.push((value.clone(), *known));
            }
        }
    }
    found
}

/// `API_URL` → `apiUrl`, as the balena CLI names settings from variables.
fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    for (i, word) in snake.split('_').filter(|w| !w.is_empty()).enumerate() {
        let lower = word.to_ascii_lowercase();
        if i == 0 {
            out.push_str(&lower);
        } else {
            let mut chars = lower.chars();
            if let Some(first) = chars.next() {
                out.push(first.to_ascii_uppercase());
                out.push_str(chars.as_str());
            }
        }
    }
    out
}

fn read_optional(path: &Path) -> Result<Option<String>, SettingsError> {
    let shown = path.display();
    let bytes = match read_regular_file(path, SETTINGS_FILE_LIMIT) {
        Ok(bytes) => bytes,
        Err(FileProblem::Missing) => return Ok(None),
        Err(FileProblem::DirectoryUnreadable(err)) => {
            tracing::info!(
                "skipping settings file `{shown}`: its directory cannot be searched ({})",
                plain_io_error(&err)
            );
            return Ok(None);
        }
        Err(FileProblem::NotRegular(kind)) => {
            return Err(SettingsError(format!(
                "cannot read settings file `{shown}`: it is {}: replace it with a file or remove it",
                describe_kind(kind)
            )));
        }
        Err(FileProblem::TooLarge(limit)) => {
            return Err(SettingsError(format!(
                "settings file `{shown}` is larger than {}: a settings file holds a few `key: value` lines; fix or remove it",
                describe_size(limit)
            )));
        }
        Err(FileProblem::Io(err)) => {
            return Err(SettingsError(format!(
                "cannot read settings file `{shown}`: {}: fix its permissions or remove it",
                plain_io_error(&err)
            )));
        }
    };
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Some(text)),
        Err(_) => Err(SettingsError(format!(
            "settings file `{shown}` is not UTF-8 text: fix or remove it"
        ))),
    }
}

/// The known keys of one balenarc file, as (key, string value).
fn parse_file(
    path: &Path,
    text: &str,
    legacy: bool,
    warnings: &mut Vec<String>,
) -> Result<Vec<(&'static str, String)>, SettingsError> {
    let shown = path.display();
    let brackets = text.bytes().filter(|b| matches!(b, b'[' | b'{')).count();
    if brackets > FLOW_BRACKET_LIMIT {
        return Err(SettingsError(format!(
            "settings file `{shown}` has more than {FLOW_BRACKET_LIMIT} `[` and `{{` (nested YAML): a settings file holds plain `key: value` lines; fix or remove it"
        )));
    }
    let document: yaml_serde::Value = yaml_serde::from_str(text).map_err(|err| {
        SettingsError(format!(
            "settings file `{shown}` is not valid YAML ({}): fix the syntax or remove the file",
            first_line(&err.to_string())
        ))
    })?;
    let mapping = match document {
        yaml_serde::Value::Null => return Ok(Vec::new()),
        yaml_serde::Value::Mapping(mapping) => mapping,
        _ => {
            return Err(SettingsError(format!(
                "settings file `{shown}` must be a YAML mapping such as `apiUrl: https://api.balena-cloud.com`"
            )));
        }
    };
    let mut found = Vec::new();
    for (key, value) in mapping {
        let Some(key) = key.as_str() else {
            return Err(SettingsError(format!(
                "settings file `{shown}` has a key that is not a string: use names such as `apiUrl`"
            )));
        };
        let key = if legacy {
            key.replace("resin", "balena")
        } else {
            key.to_owned()
        };
        let Some(known) = KEYS.iter().find(|k| **k == key) else {
            if !OTHER_BALENA_KEYS.contains(&key.as_str()) {
                let hint = KEYS
                    .iter()
                    .find(|k| k.eq_ignore_ascii_case(&key))
                    .map(|k| format!(" (did you mean `{k}`?)"))
                    .unwrap_or_default();
                warnings.push(format!(
                    "ignoring unknown setting `{key}` in `{shown}`{hint}"
                ));
            }
            continue;
        };
        let value = match value {
            yaml_serde::Value::String(s) if !s.trim().is_empty() => s,
            yaml_serde::Value::Null => continue,
            _ => {
                return Err(SettingsError(format!(
                    "setting `{known}` in `{shown}` must be a non-empty string, for example `{}`",
                    example_for(known)
                )));
            }
        };
        found.push((*known, value));
    }
    Ok(found)
}

fn example_for(key: &str) -> &'static str {
    match key {
        "balenaUrl" => "balenaUrl: balena-cloud.com",
        "apiUrl" => "apiUrl: https://api.balena-cloud.com",
        "deltaUrl" => "deltaUrl: https://delta.balena-cloud.com",
        _ => "dataDirectory: ~/.balena",
    }
}

fn expand_home(dir: &str, home: Option<&Path>) -> Result<PathBuf, SettingsError> {
    match dir.strip_prefix("~/").or(if dir == "~" { Some("") } else { None }) {
        None => Ok(PathBuf::from(dir)),
        Some(rest) => home.map(|home| home.join(rest)).ok_or_else(|| {
            SettingsError(format!(
                "dataDirectory `{dir}` starts with `~` but the home directory is unknown: set HOME or use an absolute path"
            ))
        }),
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn env_in(dir: &Path, vars: &[(&str, &str)]) -> Environment {
        let home = dir.join("home");
        let cwd = dir.join("work");
        fs::create_dir_all(&home).unwrap();
        fs::create_dir_all(&cwd).unwrap();
        Environment::fake(Some(home), cwd, vars)
    }

    #[test]
    fn defaults_follow_balena_url() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_in(dir.path(), &[]);
        let settings = resolve(&env).unwrap().settings;
        assert_eq!(settings.api_url, "https://api.balena-cloud.com");
        assert_eq!(settings.delta_url, "https://delta.balena-cloud.com");
        assert_eq!(settings.data_directory, dir.path().join("home/.balena"));

        fs::write(
            dir.path().join("home/.balenarc.yml"),
            "balenaUrl: balena-staging.com\n",
        )
        .unwrap();
        let settings = resolve(&env).unwrap().settings;
        assert_eq!(settings.api_url, "https://api.balena-staging.com");
        assert_eq!(settings.delta_url, "https://delta.balena-staging.com");
    }

    #[test]
    fn precedence_is_env_then_local_then_home_then_legacy() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_in(dir.path(), &[]);
        fs::write(
            dir.path().join("home/.resinrc.yml"),
            "resinUrl: legacy.example\napiUrl: https://a.legacy\n",
        )
        .unwrap();
        assert_eq!(resolve(&env).unwrap().settings.balena_url, "legacy.example");

        fs::write(
            dir.path().join("home/.balenarc.yml"),
            "apiUrl: https://a.home\ndeltaUrl: https://d.home\n",
        )
        .unwrap();
        let settings = resolve(&env).unwrap().settings;
        assert_eq!(settings.api_url, "https://a.home");
        assert_eq!(settings.balena_url, "legacy.example");

        fs::write(
            dir.path().join("work/resinrc.yml"),
            "deltaUrl: https://d.local-legacy\n",
        )
        .unwrap();
        fs::write(
            dir.path().join("work/balenarc.yml"),
            "apiUrl: https://a.local\n",
        )
        .unwrap();
        let settings = resolve(&env).unwrap().settings;
        assert_eq!(settings.api_url, "https://a.local");
        assert_eq!(settings.delta_url, "https://d.local-legacy");

        let env = Environment {
            vars: vec![
                ("balenarc_api_url".into(), "https://a.env".into()),
                ("RESINRC_DELTA_URL".into(), "https://d.resin-env".into()),
                ("BALENARC_DATA_DIRECTORY".into(), "~/elsewhere".into()),
                ("BALENARC_BALENA_URL".into(), "".into()),
            ],
            ..env
        };
        let settings = resolve(&env).unwrap().settings;
        assert_eq!(settings.api_url, "https://a.env");
        assert_eq!(settings.delta_url, "https://d.resin-env");
        assert_eq!(
            settings.balena_url, "legacy.example",
            "an empty variable is ignored"
        );
        assert_eq!(settings.data_directory, dir.path().join("home/elsewhere"));
    }

    #[test]
    fn balenarc_variable_beats_resinrc_variable() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_in(
            dir.path(),
            &[
                ("BALENARC_API_URL", "https://balena"),
                ("RESINRC_API_URL", "https://resin"),
            ],
        );
        assert_eq!(resolve(&env).unwrap().settings.api_url, "https://balena");
    }

    #[test]
    fn bad_files_name_the_file_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_in(dir.path(), &[]);
        let local = dir.path().join("work/balenarc.yml");
        for (text, expected) in [
            ("apiUrl: [unclosed", "is not valid YAML"),
            ("- a\n- b\n", "must be a YAML mapping"),
            ("just text", "must be a YAML mapping"),
            ("apiUrl: 5\n", "`apiUrl` in"),
            ("apiUrl: {a: 1}\n", "must be a non-empty string"),
            ("deltaUrl: ''\n", "must be a non-empty string"),
            ("1: x\n", "not a string"),
        ] {
            fs::write(&local, text).unwrap();
            let err = resolve(&env).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?} gave {err}");
            assert!(err.contains("balenarc.yml"), "{err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn unknown_keys_warn_with_a_hint_and_balena_cli_keys_are_quiet() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_in(dir.path(), &[]);
        fs::write(
            dir.path().join("work/balenarc.yml"),
            "apiURL: https://x\nproxy: {host: p}\nfoo: 1\n",
        )
        .unwrap();
        let resolved = resolve(&env).unwrap();
        assert_eq!(resolved.warnings.len(), 2, "{:?}", resolved.warnings);
        assert!(resolved.warnings[0].contains("did you mean `apiUrl`"));
        assert!(resolved.warnings[1].contains("`foo`"));
        assert_eq!(resolved.settings.api_url, "https://api.balena-cloud.com");
    }

    #[test]
    fn empty_file_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_in(dir.path(), &[]);
        fs::write(dir.path().join("work/balenarc.yml"), "").unwrap();
        assert!(resolve(&env).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn unreadable_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_in(dir.path(), &[]);
        // A directory where the file should be cannot be read as text, even as root.
        fs::create_dir(dir.path().join("work/balenarc.yml")).unwrap();
        let err = resolve(&env).unwrap_err().to_string();
        assert!(err.contains("cannot read settings file"), "{err}");
        assert!(
            err.contains("it is a directory, not a regular file"),
            "{err}"
        );
    }

    #[test]
    fn unicode_variable_names_are_skipped_not_split() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_in(
            dir.path(),
            &[("ÀÀÀÀÀ", "1"), ("BALENARCé", "x"), ("BALENARC_", "y")],
        );
        assert_eq!(
            resolve(&env).unwrap().settings.api_url,
            "https://api.balena-cloud.com"
        );
    }

    /// How a run treats a settings file that may choose the servers.
    #[derive(Debug, PartialEq)]
    enum Outcome {
        Silent,
        Warned,
        Refused,
    }

    /// HOME inside the checkout (the working directory or a parent of it up
    /// to the one holding `.git`): its files are the checkout's too.
    #[test]
    fn a_home_inside_the_checkout_counts_as_the_working_directory() {
        let dir = tempfile::tempdir().unwrap();
        let checkout = dir.path().join("checkout");
        let cwd = checkout.join("sub");
        fs::create_dir_all(checkout.join(".git")).unwrap();
        fs::create_dir_all(&cwd).unwrap();
        fs::write(
            checkout.join(".balenarc.yml"),
            "apiUrl: https://api.evil.example\n",
        )
        .unwrap();
        let in_ci = Environment::fake(Some(checkout.clone()), cwd.clone(), &[("CI", "true")]);
        let refused = resolve(&in_ci).unwrap_err().to_string();
        assert!(refused.contains("api.evil.example"), "{refused}");
        let resolved =
            resolve(&Environment::fake(Some(checkout.clone()), cwd.clone(), &[])).unwrap();
        assert!(
            resolved
                .warnings
                .iter()
                .any(|w| w.contains("api.evil.example")),
            "{:?}",
            resolved.warnings
        );
        // A home outside the checkout is the user's own: no warning.
        let home = dir.path().join("home");
        fs::create_dir_all(&home).unwrap();
        fs::write(
            home.join(".balenarc.yml"),
            "apiUrl: https://api.own.example\n",
        )
        .unwrap();
        let own = resolve(&Environment::fake(
            Some(home),
            cwd.clone(),
            &[("CI", "true")],
        ))
        .unwrap();
        assert!(own.warnings.is_empty(), "{:?}", own.warnings);
        // Without a repository, only the working directory itself counts.
        fs::remove_dir(checkout.join(".git")).unwrap();
        let outside = resolve(&Environment::fake(Some(checkout), cwd, &[("CI", "true")])).unwrap();
        assert!(outside.warnings.is_empty(), "{:?}", outside.warnings);
    }

    #[test]
    fn a_working_directory_file_choosing_the_servers_is_named_and_refused_under_ci() {
        use Outcome::*;
        let api = "apiUrl: https://api.evil.example:8443/\n";
        let delta = "deltaUrl: https://delta.evil.example\n";
        let trust = env_vars::TRUST_CWD_SETTINGS;
        type Vars<'a> = Vec<(&'a str, &'a str)>;
        let cases: Vec<(&str, &str, Vars, Outcome, &str)> = vec![
            (
                "work/balenarc.yml",
                api,
                vec![],
                Warned,
                "`api.evil.example:8443`",
            ),
            (
                "work/resinrc.yml",
                api,
                vec![],
                Warned,
                "`api.evil.example:8443`",
            ),
            (
                "work/balenarc.yml",
                delta,
                vec![],
                Warned,
                "`delta.evil.example`",
            ),
            (
                "work/balenarc.yml",
                "balenaUrl: evil.example\n",
                vec![],
                Warned,
                "`api.evil.example` and `delta.evil.example`",
            ),
            (
                "work/balenarc.yml",
                api,
                vec![("CI", "true")],
                Refused,
                "`api.evil.example:8443`",
            ),
            (
                "work/resinrc.yml",
                delta,
                vec![("CI", "1")],
                Refused,
                "`delta.evil.example`",
            ),
            (
                "work/balenarc.yml",
                "resinUrl: evil.example\n",
                vec![("CI", "yes")],
                Silent,
                "",
            ),
            (
                "work/resinrc.yml",
                "resinUrl: evil.example\n",
                vec![("CI", "yes")],
                Refused,
                "`api.evil.example`",
            ),
            (
                "work/balenarc.yml",
                api,
                vec![("CI", "true"), (trust, "1")],
                Warned,
                "`api.evil.example:8443`",
            ),
            (
                "work/balenarc.yml",
                api,
                vec![("CI", "true"), (trust, "0")],
                Refused,
                trust,
            ),
            (
                "work/balenarc.yml",
                api,
                vec![("CI", "0")],
                Warned,
                "`api.evil.example:8443`",
            ),
            (
                "work/balenarc.yml",
                api,
                vec![("CI", "false")],
                Warned,
                "`api.evil.example:8443`",
            ),
            (
                "work/balenarc.yml",
                api,
                vec![("CI", "")],
                Warned,
                "`api.evil.example:8443`",
            ),
            // A variable overrides the file: the file decides nothing.
            (
                "work/balenarc.yml",
                api,
                vec![("CI", "true"), ("BALENARC_API_URL", "https://a.env")],
                Silent,
                "",
            ),
            (
                "work/balenarc.yml",
                "balenaUrl: evil.example\n",
                vec![
                    ("CI", "true"),
                    ("BALENARC_API_URL", "https://a.env"),
                    ("BALENARC_DELTA_URL", "https://d.env"),
                ],
                Silent,
                "",
            ),
            // A data directory chosen there chooses which file is the token.
            (
                "work/balenarc.yml",
                "dataDirectory: /tmp/x\nproxy: {host: p}\n",
                vec![("CI", "true")],
                Refused,
                "would read the token from `/tmp/x`",
            ),
            (
                "work/balenarc.yml",
                "dataDirectory: /tmp/x\n",
                vec![],
                Warned,
                "the token will be read from `/tmp/x`",
            ),
            ("home/.balenarc.yml", api, vec![("CI", "true")], Silent, ""),
            ("home/.resinrc.yml", api, vec![("CI", "true")], Silent, ""),
        ];
        for (file, text, vars, outcome, fragment) in cases {
            let dir = tempfile::tempdir().unwrap();
            let env = env_in(dir.path(), &vars);
            let path = dir.path().join(file);
            fs::write(&path, text).unwrap();
            let what = format!("{file} {text:?} {vars:?}");
            match resolve(&env) {
                Ok(resolved) => {
                    let named: Vec<&String> = resolved
                        .warnings
                        .iter()
                        .filter(|w| w.contains("in the working directory"))
                        .collect();
                    match outcome {
                        Silent => assert!(named.is_empty(), "{what}: {named:?}"),
                        Warned => {
                            assert_eq!(named.len(), 1, "{what}: {named:?}");
                            assert!(
                                named[0].contains(&path.display().to_string()),
                                "{what}: {}",
                                named[0]
                            );
                            assert!(named[0].contains(fragment), "{what}: {}", named[0]);
                        }
                        Refused => panic!("{what}: not refused"),
                    }
                }
                Err(err) => {
                    let err = err.to_string();
                    assert_eq!(outcome, Refused, "{what}: {err}");
                    assert!(err.contains(&path.display().to_string()), "{what}: {err}");
                    assert!(err.contains(fragment), "{what}: {err}");
                    assert!(err.contains(&format!("{trust}=1")), "{what}: {err}");
                    assert!(!err.contains('\n'), "{what}: {err}");
                }
            }
        }
    }

    #[test]
    fn the_trust_variable_must_be_a_boolean() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_in(
            dir.path(),
            &[("CI", "true"), (env_vars::TRUST_CWD_SETTINGS, "maybe")],
        );
        fs::write(dir.path().join("work/balenarc.yml"), "apiUrl: https://x\n").unwrap();
        let err = resolve(&env).unwrap_err().to_string();
        assert!(
            err.contains(env_vars::TRUST_CWD_SETTINGS) && err.contains("`maybe`"),
            "{err}"
        );
    }

    #[test]
    fn tool_variables_that_are_not_utf8_are_errors_naming_them() {
        for (name, tool) in [
            ("BALENARC_API_URL", true),
            ("balenarc_delta_url", true),
            ("RESINRC_BALENA_URL", true),
            ("BALENARC_PROXY", true),
            ("BALENA_RELEASE_UPDATE_TOKEN", true),
            ("BALENA_RELEASE_UPDATE_POLL_INTERVAL", true),
            ("balena_release_update_token", false),
            ("BALENARC", false),
            ("HOME", false),
            ("LANG", false),
        ] {
            assert_eq!(is_tool_variable(name), tool, "{name}");
        }
        let dir = tempfile::tempdir().unwrap();
        let env = Environment {
            not_unicode: vec!["BALENARC_API_URL".into()],
            ..env_in(dir.path(), &[])
        };
        let err = resolve(&env).unwrap_err().to_string();
        assert!(err.contains("BALENARC_API_URL is not valid UTF-8"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn only_regular_files_of_bounded_size_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let env = env_in(dir.path(), &[]);
        let local = dir.path().join("work/balenarc.yml");
        let expect_error = |fragment: &str| {
            let err = resolve(&env).unwrap_err().to_string();
            assert!(err.contains(fragment), "{err}");
            assert!(err.contains(&local.display().to_string()), "{err}");
        };

        let made = std::process::Command::new("mkfifo")
            .arg(&local)
            .status()
            .unwrap();
        assert!(made.success());
        expect_error("a FIFO (named pipe), not a regular file");
        fs::remove_file(&local).unwrap();

        std::os::unix::fs::symlink("/dev/zero", &local).unwrap();
        expect_error("a device, not a regular file");
        fs::remove_file(&local).unwrap();

        let listener = std::os::unix::net::UnixListener::bind(&local).unwrap();
        expect_error("a socket, not a regular file");
        drop(listener);
        fs::remove_file(&local).unwrap();

        // A comment up to exactly the limit is fine; one byte more is not.
        let mut text = "# ".to_owned();
        text.push_str(&"x".repeat(SETTINGS_FILE_LIMIT as usize - 3));
        text.push('\n');
        assert_eq!(text.len() as u64, SETTINGS_FILE_LIMIT);
        fs::write(&local, &text).unwrap();
        assert!(resolve(&env).is_ok());
        text.push('\n');
        fs::write(&local, &text).unwrap();
        expect_error("is larger than 1 MiB");

        // A symbolic link to a regular file is read.
        fs::write(dir.path().join("real.yml"), "apiUrl: https://a.link\n").unwrap();
        fs::remove_file(&local).unwrap();
        std::os::unix::fs::symlink(dir.path().join("real.yml"), &local).unwrap();
        assert_eq!(resolve(&env).unwrap().settings.api_url, "https://a.link");
    }

    #[test]
    fn deep_flow_nesting_is_refused_before_parsing() {
        let path = Path::new("/cfg/balenarc.yml");
        let mut warnings = Vec::new();
        for text in [
            format!("apiUrl: {}", "[".repeat(200_000)),
            format!("apiUrl: {}", "{".repeat(1001)),
            format!("a: '{}'", "[".repeat(1001)),
        ] {
            let err = parse_file(path, &text, false, &mut warnings)
                .unwrap_err()
                .to_string();
            assert!(err.contains("more than 1000 `[` and `{`"), "{err}");
        }
        let text = format!("apiUrl: http://[::1]:80/\na: '{}'\n", "[".repeat(998));
        assert!(parse_file(path, &text, false, &mut warnings).is_ok());
    }

    #[test]
    fn camel_case_names() {
        assert_eq!(camel_case("API_URL"), "apiUrl");
        assert_eq!(camel_case("data_directory"), "dataDirectory");
        assert_eq!(camel_case("BALENA_URL"), "balenaUrl");
    }
}

/// Property tests of the balenarc parser: any text gives settings or one
/// clear error, and well-formed files give back exactly what they hold.
/// `PROPTEST_CASES` sets the number of cases (see `scripts/fuzz-smoke.sh`).
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// What one parse gives: the known keys found, or the error.
    type Parsed = Result<Vec<(&'static str, String)>, SettingsError>;

    fn parse(text: &str, legacy: bool) -> (Parsed, Vec<String>) {
        let mut warnings = Vec::new();
        let result = parse_file(Path::new("/cfg/balenarc.yml"), text, legacy, &mut warnings);
        (result, warnings)
    }

    /// Text near YAML: keys, colons, brackets, quotes, indentation.
    fn yamlish() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("apiUrl".to_owned()),
            Just("deltaUrl".to_owned()),
            Just("resinUrl".to_owned()),
            Just("proxy".to_owned()),
            Just(": ".to_owned()),
            Just("\n".to_owned()),
            Just("\n  ".to_owned()),
            Just("- ".to_owned()),
            Just("[".to_owned()),
            Just("]".to_owned()),
            Just("{".to_owned()),
            Just("}".to_owned()),
            Just("'".to_owned()),
            Just("\"".to_owned()),
            Just("&a ".to_owned()),
            Just("*a".to_owned()),
            Just("!!binary ".to_owned()),
            Just("~".to_owned()),
            Just("#".to_owned()),
            "[a-z0-9:/._-]{0,12}",
        ];
        prop_oneof![
            prop::collection::vec(piece, 0..24).prop_map(|p| p.concat()),
            any::<String>(),
        ]
    }

    /// Values a balenarc may hold, including ones YAML would read as
    /// numbers, booleans or null if they were not quoted.
    fn values() -> impl Strategy<Value = String> {
        prop_oneof![
            "https://[a-z]{1,10}\\.[a-z]{2,5}(/[a-z]{0,6})?",
            "[ -~]{1,30}",
            Just("true".to_owned()),
            Just("null".to_owned()),
            Just("0x10".to_owned()),
            Just("~/x".to_owned()),
        ]
        .prop_filter("blank values are refused by design", |v| {
            !v.trim().is_empty()
        })
    }

    fn single_quoted(value: &str) -> String {
        format!("'{}'", value.replace('\'', "''"))
    }

    proptest! {
        #[test]
        fn any_text_gives_settings_or_one_clear_error(text in yamlish(), legacy in any::<bool>()) {
            let (result, warnings) = parse(&text, legacy);
            match result {
                Ok(found) => {
                    for (key, value) in found {
                        prop_assert!(KEYS.contains(&key));
                        prop_assert!(!value.trim().is_empty());
                    }
                }
                Err(SettingsError(message)) => {
                    prop_assert!(!message.contains('\n'), "{message}");
                    prop_assert!(message.contains("/cfg/balenarc.yml"), "{message}");
                    prop_assert!(
                        ["fix", "must be", "use names"].iter().any(|fix| message.contains(fix)),
                        "no fix in {message}"
                    );
                }
            }
            for warning in warnings {
                prop_assert!(warning.starts_with("ignoring unknown setting `"), "{warning}");
            }
        }

        #[test]
        fn well_formed_files_give_back_their_values(
            entries in prop::collection::btree_map(
                prop::sample::select(KEYS.to_vec()),
                values(),
                0..=4,
            ),
            unknown in prop::collection::btree_map("[a-z]{3,8}Zz", values(), 0..3),
        ) {
            let mut text = String::new();
            for (key, value) in &entries {
                text.push_str(&format!("{key}: {}\n", single_quoted(value)));
            }
            for (key, value) in &unknown {
                text.push_str(&format!("{key}: {}\n", single_quoted(value)));
            }
            let (result, warnings) = parse(&text, false);
            let mut found = result.unwrap_or_else(|e| panic!("{text:?}: {e}"));
            found.sort();
            let expected: Vec<(&'static str, String)> =
                entries.iter().map(|(k, v)| (*k, v.clone())).collect();
            prop_assert_eq!(found, expected);
            prop_assert_eq!(warnings.len(), unknown.len());
        }
    }
}
