//! Finds the user's token: the CI variable first, then the file `balena login`
//! writes. The token is wrapped as a secret as soon as it is read, and no
//! message here ever contains it.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use secrecy::SecretString;

use crate::env_vars;
use crate::settings::{Environment, plain_io_error};

/// Where the token came from, for messages (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Variable,
    File(PathBuf),
}

impl std::fmt::Display for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Variable => write!(f, "{}", env_vars::TOKEN),
            TokenSource::File(path) => write!(f, "`{}`", path.display()),
        }
    }
}

/// A token read from its source.
pub struct FoundToken {
    pub secret: SecretString,
    pub source: TokenSource,
    /// A warning worth showing, such as a token file others can read.
    pub warning: Option<String>,
}

/// Reads the token from `BALENA_RELEASE_UPDATE_TOKEN` or `<data dir>/token`.
pub fn find(env: &Environment, data_directory: &Path) -> Result<FoundToken, String> {
    if let Some(value) = env.var(env_vars::TOKEN) {
        let value = value.trim();
        if value.is_empty() {
            return Err(format!(
                "{} is blank: set it to a balena API key or unset it",
                env_vars::TOKEN
            ));
        }
        return Ok(FoundToken {
            secret: SecretString::from(value.to_owned()),
            source: TokenSource::Variable,
            warning: None,
        });
    }
    let path = data_directory.join("token");
    let text = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == ErrorKind::NotFound => {
            return Err(format!(
                "not logged in: there is no token at `{}`; run `balena login` or set {}",
                path.display(),
                env_vars::TOKEN
            ));
        }
        Err(err) => {
            return Err(format!(
                "cannot read the token file `{}`: {}: fix its permissions, or set {}",
                path.display(),
                plain_io_error(&err),
                env_vars::TOKEN
            ));
        }
    };
    let Ok(text) = String::from_utf8(text) else {
        return Err(format!(
            "the token file `{}` is not text: run `balena login` again or set {}",
            path.display(),
            env_vars::TOKEN
        ));
    };
    let token = text.trim();
    if token.is_empty() {
        return Err(format!(
            "the token file `{}` is empty: run `balena login` or set {}",
            path.display(),
            env_vars::TOKEN
        ));
    }
    Ok(FoundToken {
        secret: SecretString::from(token.to_owned()),
        warning: permission_warning(&path),
        source: TokenSource::File(path),
    })
}

#[cfg(unix)]
fn permission_warning(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "the token file `{}` can be read by other users (mode {:o}): run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        )
    })
}

#[cfg(not(unix))]
fn permission_warning(_: &Path) -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn env(vars: &[(&str, &str)]) -> Environment {
        Environment {
            home: None,
            current_dir: PathBuf::from("."),
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn variable_wins_over_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("token"), "from-file").unwrap();
        let found = find(&env(&[(env_vars::TOKEN, "from-var\n")]), dir.path()).unwrap();
        assert_eq!(found.secret.expose_secret(), "from-var");
        assert_eq!(found.source, TokenSource::Variable);
    }

    #[test]
    fn file_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("token"), "abc123token\n").unwrap();
        let found = find(&env(&[]), dir.path()).unwrap();
        assert_eq!(found.secret.expose_secret(), "abc123token");
    }

    #[test]
    fn missing_empty_and_unreadable_files_explain_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let err = find(&env(&[]), dir.path()).err().unwrap();
        assert!(
            err.starts_with("not logged in") && err.contains("balena login"),
            "{err}"
        );

        fs::write(dir.path().join("token"), " \n").unwrap();
        let err = find(&env(&[]), dir.path()).err().unwrap();
        assert!(err.contains("is empty"), "{err}");

        fs::write(dir.path().join("token"), [0xff, 0xfe]).unwrap();
        let err = find(&env(&[]), dir.path()).err().unwrap();
        assert!(err.contains("not text"), "{err}");

        fs::remove_file(dir.path().join("token")).unwrap();
        fs::create_dir(dir.path().join("token")).unwrap();
        let err = find(&env(&[]), dir.path()).err().unwrap();
        assert!(err.contains("cannot read the token file"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn readable_by_others_warns() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        fs::write(&path, "abc").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let warning = find(&env(&[]), dir.path()).unwrap().warning.unwrap();
        assert!(warning.contains("chmod 600"), "{warning}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(find(&env(&[]), dir.path()).unwrap().warning.is_none());
    }
}
