//! How a user names a release (an id or a commit prefix), a fleet (an id or
//! a slug) and what to report on, parsed strictly so that typos fail before
//! any request is sent.

use std::fmt;
use std::str::FromStr;

/// A release, as the user names it.
///
/// Parse one with [`str::parse`]: an all-digit string is an id, a string of
/// 6 to 40 hexadecimal digits is a commit prefix (stored lower-cased).
///
/// ```
/// use balena_release::ReleaseRef;
/// assert_eq!("900813".parse::<ReleaseRef>().unwrap(), ReleaseRef::Id(900813));
/// assert_eq!(
///     "84D3D8F".parse::<ReleaseRef>().unwrap(),
///     ReleaseRef::Commit("84d3d8f".to_owned())
/// );
/// assert!("zzzzzz-not-a-hash".parse::<ReleaseRef>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReleaseRef {
    /// A release id (always greater than zero).
    Id(u64),
    /// A lower-case commit prefix of 6 to 40 hexadecimal digits.
    Commit(String),
}

impl ReleaseRef {
    /// Whether `commit` (a release's full commit) is named by this reference
    /// when it is a commit prefix. Always false for an id.
    pub(crate) fn matches_commit(&self, commit: &str) -> bool {
        match self {
            ReleaseRef::Id(_) => false,
            ReleaseRef::Commit(prefix) => {
                commit.len() >= prefix.len()
                    && commit.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
            }
        }
    }
}

impl fmt::Display for ReleaseRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReleaseRef::Id(id) => write!(f, "{id}"),
            ReleaseRef::Commit(commit) => f.write_str(commit),
        }
    }
}

/// Why a string is not a valid [`ReleaseRef`] or [`FleetRef`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseReleaseError {
    message: String,
}

impl ParseReleaseError {
    fn new(message: String) -> Self {
        ParseReleaseError { message }
    }
}

/// Longest accepted commit prefix: a git SHA-1.
const MAX_COMMIT_LEN: usize = 40;
/// Shortest accepted commit prefix, as in the npm tool.
const MIN_COMMIT_LEN: usize = 6;

impl FromStr for ReleaseRef {
    type Err = ParseReleaseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const FORMS: &str = "a release is either an id (digits only, e.g. `900813`) \
             or a commit prefix of 6 to 40 hexadecimal digits (e.g. `84d3d8f`)";
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return match s.parse::<u64>() {
                Ok(0) => Err(ParseReleaseError::new(format!(
                    "invalid release `{s}`: release ids start at 1; {FORMS}"
                ))),
                Ok(id) => Ok(ReleaseRef::Id(id)),
                Err(_) => Err(ParseReleaseError::new(format!(
                    "invalid release `{s}`: the id is too large; {FORMS}"
                ))),
            };
        }
        let hex = s.bytes().all(|b| b.is_ascii_hexdigit());
        if hex && (MIN_COMMIT_LEN..=MAX_COMMIT_LEN).contains(&s.len()) {
            return Ok(ReleaseRef::Commit(s.to_ascii_lowercase()));
        }
        let why = if s.is_empty() {
            "it is empty".to_owned()
        } else if hex && s.len() < MIN_COMMIT_LEN {
            format!("a commit prefix needs at least {MIN_COMMIT_LEN} hexadecimal digits")
        } else if hex {
            format!("a commit has at most {MAX_COMMIT_LEN} hexadecimal digits")
        } else {
            "it is neither digits nor hexadecimal".to_owned()
        };
        Err(ParseReleaseError::new(format!(
            "invalid release `{}`: {why}; {FORMS}",
            s.escape_debug()
        )))
    }
}

/// A fleet (balena application), as the user names it.
///
/// An all-digit string is an id; anything else of the form `org/name` is a
/// slug (stored lower-cased, as balenaCloud stores slugs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FleetRef {
    /// An application id.
    Id(u64),
    /// An application slug such as `gh_user/myfleet`.
    Slug(String),
}

/// What a report is about: two releases, or every transition of a fleet
/// (see [`crate::Client::report`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// From one release to another.
    Pair {
        /// The release devices run.
        from: ReleaseRef,
        /// The release they go to.
        to: ReleaseRef,
    },
    /// The devices of a fleet, each to its pin or to the fleet's target.
    Fleet {
        /// The fleet.
        fleet: FleetRef,
        /// The release the devices that follow the fleet go to, instead of
        /// its target release.
        to: Option<ReleaseRef>,
    },
}

impl fmt::Display for FleetRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FleetRef::Id(id) => write!(f, "{id}"),
            FleetRef::Slug(slug) => f.write_str(slug),
        }
    }
}

impl FromStr for FleetRef {
    type Err = ParseReleaseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const FORMS: &str =
            "a fleet is either an id (digits only) or a slug such as `myorg/myfleet`";
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return match s.parse::<u64>() {
                Ok(id) if id > 0 => Ok(FleetRef::Id(id)),
                _ => Err(ParseReleaseError::new(format!(
                    "invalid fleet `{s}`: not a valid id; {FORMS}"
                ))),
            };
        }
        let valid_part = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        };
        match s.split_once('/') {
            Some((org, name)) if valid_part(org) && valid_part(name) => {
                Ok(FleetRef::Slug(s.to_ascii_lowercase()))
            }
            _ => Err(ParseReleaseError::new(format!(
                "invalid fleet `{}`: {FORMS}",
                s.escape_debug()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ReleaseRef, String> {
        s.parse::<ReleaseRef>().map_err(|e| e.to_string())
    }

    #[test]
    fn digits_are_ids() {
        assert_eq!(parse("900813"), Ok(ReleaseRef::Id(900813)));
        assert_eq!(parse("0900813"), Ok(ReleaseRef::Id(900813)));
        assert_eq!(parse("18446744073709551615"), Ok(ReleaseRef::Id(u64::MAX)));
    }

    #[test]
    fn zero_and_overflowing_ids_are_rejected() {
        let zero = parse("0").unwrap_err();
        assert!(zero.contains("start at 1"), "{zero}");
        let big = parse("18446744073709551616").unwrap_err();
        assert!(big.contains("too large"), "{big}");
    }

    #[test]
    fn hex_strings_are_lowercased_commits() {
        assert_eq!(parse("84d3d8"), Ok(ReleaseRef::Commit("84d3d8".into())));
        assert_eq!(parse("84D3D8F4"), Ok(ReleaseRef::Commit("84d3d8f4".into())));
        let full = "84d3d8f43eddd81b1699552dd39338f8dbf8b11e";
        assert_eq!(parse(full), Ok(ReleaseRef::Commit(full.into())));
    }

    #[test]
    fn bad_forms_explain_both_forms() {
        for bad in [
            "",
            "84d3d",
            "zzzzzz-not-a-hash",
            "84d3d8f'x",
            "84d3d8f43eddd81b1699552dd39338f8dbf8b11e00",
            "-5",
            " 900813",
            "1.5",
        ] {
            let message = parse(bad).unwrap_err();
            assert!(message.starts_with("invalid release `"), "{message}");
            assert!(message.contains("id (digits only"), "{message}");
            assert!(message.contains("commit prefix of 6 to 40"), "{message}");
        }
        assert!(parse("84d3d").unwrap_err().contains("at least 6"));
        assert!(parse(&"a".repeat(41)).unwrap_err().contains("at most 40"));
    }

    #[test]
    fn display_round_trips() {
        for s in ["900813", "84d3d8f"] {
            assert_eq!(parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn commit_matching_is_a_case_insensitive_prefix_test() {
        let r = ReleaseRef::Commit("84d3d8".into());
        assert!(r.matches_commit("84D3D8f43e"));
        assert!(!r.matches_commit("84d3d"));
        assert!(!r.matches_commit("b2cf2db7"));
        assert!(!ReleaseRef::Id(84).matches_commit("84d3d8"));
    }

    #[test]
    fn fleet_refs() {
        assert_eq!("1234".parse::<FleetRef>(), Ok(FleetRef::Id(1234)));
        assert_eq!(
            "MyOrg/My_Fleet".parse::<FleetRef>(),
            Ok(FleetRef::Slug("myorg/my_fleet".into()))
        );
        for bad in ["", "0", "nofleet", "a/b/c", "a/", "/b", "a b/c"] {
            let err = bad.parse::<FleetRef>().unwrap_err().to_string();
            assert!(err.starts_with("invalid fleet"), "{err}");
        }
    }
}
