//! Where the API, the delta server and the token come from, resolved the way
//! the balena CLI resolves them, so one `balena login` serves both tools.
//!
//! Later sources win: defaults, `~/.resinrc.yml`, `~/.balenarc.yml`,
//! `./resinrc.yml`, `./balenarc.yml`, then `BALENARC_*`/`RESINRC_*`
//! environment variables. Unlike the npm tool, `apiUrl` is honoured.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::env_vars;

/// The settings this tool reads, after every source is merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub balena_url: String,
    pub api_url: String,
    pub delta_url: String,
    pub data_directory: PathBuf,
}

/// What settings resolution reads from the outside world, injectable for tests.
#[derive(Debug, Clone)]
pub struct Environment {
    pub home: Option<PathBuf>,
    pub current_dir: PathBuf,
    pub vars: Vec<(String, String)>,
}

impl Environment {
    /// The real process environment.
    pub fn from_process() -> Environment {
        Environment {
            home: std::env::home_dir(),
            current_dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    /// The value of a variable, treating an empty value as unset.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(key, value)| key == name && !value.is_empty())
            .map(|(_, value)| value.as_str())
    }
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
    let mut values: [Option<String>; 4] = Default::default();
    let mut warnings = Vec::new();

    let mut files = Vec::new();
    if let Some(home) = &env.home {
        files.push((home.join(".resinrc.yml"), true));
        files.push((home.join(".balenarc.yml"), false));
    }
    files.push((env.current_dir.join("resinrc.yml"), true));
    files.push((env.current_dir.join("balenarc.yml"), false));

    for (path, legacy) in files {
        let Some(text) = read_optional(&path)? else {
            continue;
        };
        for (key, value) in parse_file(&path, &text, legacy, &mut warnings)? {
            let index = KEYS
                .iter()
                .position(|k| *k == key)
                .expect("parse_file yields known keys");
            values[index] = Some(value);
        }
    }

    for (prefix, name) in env_var_overrides(env) {
        let index = KEYS
            .iter()
            .position(|k| *k == name)
            .expect("overrides yield known keys");
        values[index] = Some(prefix);
    }

    let [balena_url, api_url, delta_url, data_directory] = values;
    let balena_url = balena_url.unwrap_or_else(|| "balena-cloud.com".to_owned());
    let host = balena_url.trim_end_matches('/');
    let api_url = api_url.unwrap_or_else(|| format!("https://api.{host}"));
    let delta_url = delta_url.unwrap_or_else(|| format!("https://delta.{host}"));
    let data_directory = match data_directory {
        Some(dir) => expand_home(&dir, env.home.as_deref())?,
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
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
        Err(err) if err.kind() == ErrorKind::InvalidData => Err(SettingsError(format!(
            "settings file `{}` is not UTF-8 text: fix or remove it",
            path.display()
        ))),
        Err(err) => Err(SettingsError(format!(
            "cannot read settings file `{}`: {}: fix its permissions or remove it",
            path.display(),
            plain_io_error(&err)
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

/// An I/O error's description without the "(os error N)" suffix.
pub fn plain_io_error(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(at) => text[..at].to_lowercase(),
        None => text.to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_in(dir: &Path, vars: &[(&str, &str)]) -> Environment {
        let home = dir.join("home");
        let cwd = dir.join("work");
        fs::create_dir_all(&home).unwrap();
        fs::create_dir_all(&cwd).unwrap();
        Environment {
            home: Some(home),
            current_dir: cwd,
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
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
