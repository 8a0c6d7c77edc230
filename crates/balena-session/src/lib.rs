//! The balena CLI's session, found the way `balena-release-update` finds it,
//! for every front end of the `balena-release` library (the command line
//! and the Node.js addon): where the API and the delta server are
//! ([`settings::resolve`]: `~/.balenarc.yml`, `./balenarc.yml`, their
//! legacy `resinrc` names and `BALENARC_*`/`RESINRC_*` variables), and the
//! token ([`token::find`]: `BALENA_RELEASE_UPDATE_TOKEN` or the file
//! `balena login` writes).
//!
//! The safety rules travel with it: only regular files of bounded size are
//! read, without blocking ([`files`]); a settings file in the working
//! directory that chooses where the token goes is named in a warning, and
//! refused when `CI` is set unless trusted explicitly; a token file that
//! other users can read is named in a warning.
//!
//! This crate never prints: warnings are returned as values
//! ([`settings::Resolved::warnings`], [`token::FoundToken::warning`]) for
//! the front end to show its own way; errors are one-line messages that
//! name the file or variable and the fix. A directory that cannot be
//! searched is skipped with a `tracing` log line (shown only when the front
//! end installs a subscriber).
//!
//! ```
//! use balena_session::{settings, token};
//!
//! let env = settings::Environment::fake(
//!     None,
//!     std::env::temp_dir(),
//!     &[
//!         ("BALENARC_API_URL", "https://api.balena-staging.com"),
//!         ("BALENARC_DATA_DIRECTORY", "/nonexistent"),
//!         ("BALENA_RELEASE_UPDATE_TOKEN", "an-api-key"),
//!     ],
//! );
//! let resolved = settings::resolve(&env)?;
//! assert_eq!(resolved.settings.api_url, "https://api.balena-staging.com");
//! let found = token::find(&env, &resolved.settings.data_directory)?;
//! assert_eq!(found.source, token::TokenSource::Variable);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod env_vars;
pub mod files;
pub mod settings;
pub mod token;

use url::Url;

/// The registry host map, as `BALENA_RELEASE_UPDATE_REGISTRY_MAP` writes it:
/// `host=url` pairs separated by commas (`host` or `host:port`, as in image
/// locations; an `http://` or `https://` URL without credentials). Blank
/// entries are skipped; a host listed twice is refused (which entry was
/// meant cannot be known). The error is one line naming the variable
/// (`name`) and the expected form, with the entry passed through `redact`
/// (the front end's redaction of credentials, such as
/// `balena_release::redact_secrets`).
pub fn registry_map(
    name: &str,
    value: &str,
    redact: impl Fn(&str) -> String,
) -> Result<Vec<(String, Url)>, String> {
    let map: Vec<(String, Url)> = value
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let shown = redact(entry);
            let bad = |why: &str| {
                format!(
                    "{name}: `{shown}` {why}; write `host=url` pairs separated by commas, \
                     e.g. `registry2.balena-cloud.com=http://127.0.0.1:5000`"
                )
            };
            let (host, url) = entry.split_once('=').ok_or_else(|| bad("has no `=`"))?;
            let host = host.trim();
            let host_ok = !host.is_empty()
                && !host.contains(['/', '@', ' '])
                && (!host.contains(':') || is_host_port(host));
            if !host_ok {
                return Err(bad("does not start with a registry host"));
            }
            let url = Url::parse(url.trim())
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                .filter(|u| u.username().is_empty() && u.password().is_none())
                .ok_or_else(|| {
                    bad("does not map to an http:// or https:// URL without credentials")
                })?;
            Ok((host.to_owned(), url))
        })
        .collect::<Result<_, String>>()?;
    for (i, (host, _)) in map.iter().enumerate() {
        if map[..i].iter().any(|(h, _)| h.eq_ignore_ascii_case(host)) {
            return Err(format!(
                "{name}: the registry host `{}` is listed twice; keep one `{}=url` entry",
                printable(host),
                printable(host)
            ));
        }
    }
    Ok(map)
}

/// `host:port` with a numeric port.
fn is_host_port(text: &str) -> bool {
    text.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && !host.contains(['/', '@', ' ', ':']) && port.parse::<u16>().is_ok()
    })
}

/// `text` with control characters written as escapes, for values quoted
/// in messages.
fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_listed_twice_is_refused() {
        let error = registry_map(
            env_vars::REGISTRY_MAP,
            "r.example=http://127.0.0.1:1,R.example=http://127.0.0.1:2",
            str::to_owned,
        )
        .unwrap_err();
        assert!(error.contains("`R.example` is listed twice"), "{error}");
        assert!(error.starts_with(env_vars::REGISTRY_MAP), "{error}");
    }

    #[test]
    fn the_registry_map_is_host_url_pairs() {
        let name = env_vars::REGISTRY_MAP;
        let redact = |entry: &str| entry.replace("secret", "[REDACTED]");
        let map = registry_map(
            name,
            " registry2.balena-cloud.com=http://127.0.0.1:5000 , localhost:6000=https://mirror.example/ ,",
            redact,
        )
        .unwrap();
        let map: Vec<(String, String)> = map.into_iter().map(|(h, u)| (h, u.to_string())).collect();
        assert_eq!(
            map,
            [
                (
                    "registry2.balena-cloud.com".to_owned(),
                    "http://127.0.0.1:5000/".to_owned()
                ),
                (
                    "localhost:6000".to_owned(),
                    "https://mirror.example/".to_owned()
                ),
            ]
        );
        assert!(registry_map(name, "", redact).is_ok_and(|m| m.is_empty()));
        for bad in [
            "registry2.balena-cloud.com",
            "=http://127.0.0.1:5000",
            "a/b=http://127.0.0.1:5000",
            "host:port=http://127.0.0.1:5000",
            "host=ftp://127.0.0.1",
            "host=127.0.0.1:5000",
            "host=https://u:secret@mirror.example",
        ] {
            let message = registry_map(name, bad, redact).unwrap_err();
            assert!(message.contains(name), "{message}");
            assert!(message.contains("host=url"), "{message}");
            assert!(!message.contains("secret"), "{message}");
        }
    }

    #[test]
    fn values_in_messages_show_their_control_characters() {
        assert_eq!(printable("a\u{1b}b"), "a\\u{1b}b");
    }
}
