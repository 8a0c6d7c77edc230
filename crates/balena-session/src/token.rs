//! Finds the user's token: the CI variable first, then the file `balena login`
//! writes. The token is wrapped as a secret as soon as it is read, and no
//! message here ever contains it.

use std::fs;
use std::path::{Path, PathBuf};

use secrecy::SecretString;

use crate::env_vars;
use crate::files::{FileProblem, describe_kind, describe_size, plain_io_error, read_regular_file};
use crate::settings::Environment;

/// The largest token file read: a session token is under 1 KiB.
pub const TOKEN_FILE_LIMIT: u64 = 64 * 1024;

/// Byte-order marks an editor may put at the start of a text file.
const BYTE_ORDER_MARKS: [&[u8]; 3] = [b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"];

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

/// Why no token could be read: one line naming the variable or file and
/// the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    /// There is no token at all (no variable, no token file): the user is
    /// not logged in. Otherwise a token source exists but cannot be used.
    pub not_logged_in: bool,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TokenError {}

impl From<String> for TokenError {
    fn from(message: String) -> TokenError {
        TokenError {
            not_logged_in: false,
            message,
        }
    }
}

/// Reads the token from `BALENA_RELEASE_UPDATE_TOKEN` or `<data dir>/token`.
pub fn find(env: &Environment, data_directory: &Path) -> Result<FoundToken, TokenError> {
    env.check_unicode().map_err(|err| err.to_string())?;
    if let Some(value) = env.var(env_vars::TOKEN) {
        let value = value.trim();
        if value.is_empty() {
            return Err(format!(
                "{} is blank: set it to a balena API key or unset it",
                env_vars::TOKEN
            )
            .into());
        }
        return Ok(FoundToken {
            secret: SecretString::from(value.to_owned()),
            source: TokenSource::Variable,
            warning: None,
        });
    }
    let path = data_directory.join("token");
    let shown = path.display();
    let variable = env_vars::TOKEN;
    let text = match read_regular_file(&path, TOKEN_FILE_LIMIT) {
        Ok(bytes) => bytes,
        Err(FileProblem::Missing) => {
            return Err(TokenError {
                not_logged_in: true,
                message: format!(
                    "not logged in: there is no token at `{shown}`; run `balena login` or set {variable}"
                ),
            });
        }
        Err(FileProblem::DirectoryUnreadable(err) | FileProblem::Io(err)) => {
            return Err(format!(
                "cannot read the token file `{shown}`: {}: fix its permissions, or set {variable}",
                plain_io_error(&err)
            )
            .into());
        }
        Err(FileProblem::NotRegular(kind)) => {
            return Err(format!(
                "cannot read the token file `{shown}`: it is {}: run `balena login` again, or set {variable}",
                describe_kind(kind)
            ).into());
        }
        Err(FileProblem::TooLarge(limit)) => {
            return Err(format!(
                "the token file `{shown}` is larger than {}, too large for a token: run `balena login` again, or set {variable}",
                describe_size(limit)
            ).into());
        }
    };
    if BYTE_ORDER_MARKS.iter().any(|mark| text.starts_with(mark)) {
        return Err(format!(
            "the token file `{shown}` starts with a byte-order mark (BOM): save the file without it, or set {variable}"
        ).into());
    }
    let Ok(text) = String::from_utf8(text) else {
        return Err(format!(
            "the token file `{shown}` is not text: run `balena login` again or set {variable}"
        )
        .into());
    };
    let token = text.trim();
    if token.is_empty() {
        return Err(format!(
            "the token file `{shown}` is empty: run `balena login` or set {variable}"
        )
        .into());
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
        Environment::fake(None, PathBuf::from("."), vars)
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
        assert!(find(&env(&[]), dir.path()).err().unwrap().not_logged_in);
        let err = find(&env(&[]), dir.path()).err().unwrap().to_string();
        assert!(
            err.starts_with("not logged in") && err.contains("balena login"),
            "{err}"
        );

        fs::write(dir.path().join("token"), " \n").unwrap();
        assert!(!find(&env(&[]), dir.path()).err().unwrap().not_logged_in);
        let err = find(&env(&[]), dir.path()).err().unwrap().to_string();
        assert!(err.contains("is empty"), "{err}");

        fs::write(dir.path().join("token"), [0x41, 0xff, 0xfe]).unwrap();
        let err = find(&env(&[]), dir.path()).err().unwrap().to_string();
        assert!(err.contains("not text"), "{err}");

        fs::remove_file(dir.path().join("token")).unwrap();
        fs::create_dir(dir.path().join("token")).unwrap();
        let err = find(&env(&[]), dir.path()).err().unwrap().to_string();
        assert!(err.contains("cannot read the token file"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn token_files_that_are_no_token_are_refused_before_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let check = |fragment: &str| {
            let err = find(&env(&[]), dir.path()).err().unwrap().to_string();
            assert!(err.contains(fragment), "{err}");
            assert!(err.contains(env_vars::TOKEN), "{err}");
        };
        for bom in BYTE_ORDER_MARKS {
            fs::write(&path, [bom, b"abc123token\n".as_slice()].concat()).unwrap();
            check("starts with a byte-order mark (BOM): save the file without it");
        }
        fs::write(&path, "a".repeat(TOKEN_FILE_LIMIT as usize + 1)).unwrap();
        check("larger than 64 KiB");
        fs::write(&path, "a".repeat(TOKEN_FILE_LIMIT as usize)).unwrap();
        assert!(find(&env(&[]), dir.path()).is_ok());
        fs::remove_file(&path).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        check("it is a FIFO (named pipe), not a regular file");
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        check("it is a device, not a regular file");
    }

    #[test]
    fn a_token_variable_that_is_not_utf8_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("token"), "from-file").unwrap();
        let env = Environment {
            not_unicode: vec![env_vars::TOKEN.to_owned()],
            ..env(&[])
        };
        let err = find(&env, dir.path()).err().unwrap().to_string();
        assert!(
            err.contains("BALENA_RELEASE_UPDATE_TOKEN is not valid UTF-8"),
            "{err}"
        );
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
