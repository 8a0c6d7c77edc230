//! How figures read in text: sizes, counts and commit prefixes, shared by
//! the tables, the budget, the live block and the watch lines.

use balena_release::{FleetUpdateInfo, Report, Status, UpdateInfo};

/// A size in decimal units (B, kB, MB, GB, TB; 1 kB = 1000 bytes, as
/// registries and balenaCloud count) with three significant digits:
/// `0 B`, `812 B`, `48.2 MB`, `131 MB`, `1.51 GB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    // Round first, so that 999.96 MB reads 1.00 GB and not 1000 MB.
    while unit + 1 < UNITS.len() && format!("{value:.0}").len() > 3 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes} B");
    }
    let digits = if value >= 99.95 {
        0
    } else if value >= 9.995 {
        1
    } else {
        2
    };
    format!("{value:.digits$} {}", UNITS[unit])
}

/// The word for a transition whose delta was given up on: `failed` when a
/// service still pending (not building again) has a failed delta, else
/// `refused` when the delta server refused one; `None` when none was.
pub fn given_up_word(info: &UpdateInfo) -> Option<&'static str> {
    let failures = info
        .is_produced_by__service_update
        .iter()
        .filter(|s| s.status == Status::Pending)
        .filter_map(|s| s.delta_failure.as_ref());
    let mut word = None;
    for failure in failures {
        if failure.http_status.is_none() {
            return Some("failed");
        }
        word = Some("refused");
    }
    word
}

/// A transition's state in words: `failed` (or `refused`) when a delta was
/// given up on, else its `overall_status` (`ready`, `preparing`,
/// `pending`). The JSON keeps the npm tool's `status` values and says it
/// through `delta_failure`.
pub fn transition_status(info: &UpdateInfo) -> String {
    given_up_word(info).map_or_else(|| info.overall_status.to_string(), str::to_owned)
}

/// A fleet's state in words: `failed` when a delta of any transition
/// failed, `refused` when one was refused, else its `overall_status`.
pub fn fleet_status(fleet: &FleetUpdateInfo) -> String {
    let words: Vec<&str> = fleet
        .transitions
        .iter()
        .filter_map(|t| given_up_word(&t.update))
        .collect();
    if words.contains(&"failed") {
        "failed".to_owned()
    } else if let Some(word) = words.first() {
        (*word).to_owned()
    } else {
        fleet.overall_status.to_string()
    }
}

/// `1 device`, `3 devices`.
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Release commits shortened to one length for a whole output, so that
/// every line (tables, Markdown, the budget's line) shows a commit the same
/// way, and a shown prefix passed back to the tool names the same release.
pub struct Commits {
    length: usize,
}

impl Commits {
    /// The fewest characters shown. A prefix passed back is looked up among
    /// every release the user can read, which no single output knows, so
    /// this is longer than the 7 the dashboard shows: 40 bits, with which
    /// two of ten thousand random commits share a prefix about once in
    /// 20,000 fleets. Commits of one output that share more are shown longer.
    pub const LEAST: usize = 10;

    /// The length that tells apart every commit in `report`.
    pub fn of(report: &Report) -> Commits {
        let updates: Vec<&UpdateInfo> = match report {
            Report::Transition(info) => vec![info],
            Report::Fleet(fleet) => fleet.transitions.iter().map(|t| &t.update).collect(),
        };
        let mut all: Vec<&str> = updates
            .iter()
            .flat_map(|u| {
                [
                    &*u.originates_from__release.commit,
                    &*u.produces__release.commit,
                ]
            })
            .collect();
        if let Report::Fleet(fleet) = report {
            all.push(&fleet.produces__release.commit);
        }
        Commits {
            length: distinguishing_length(&all, Commits::LEAST),
        }
    }

    /// `commit`'s prefix at this length.
    pub fn short(&self, commit: &str) -> String {
        commit.chars().take(self.length).collect()
    }
}

/// The shortest prefix length, at least `least`, at which the different
/// strings of `all` have different prefixes.
fn distinguishing_length(all: &[&str], least: usize) -> usize {
    let mut distinct: Vec<&str> = all.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let shared = distinct
        .windows(2)
        .map(|pair| {
            pair[0]
                .chars()
                .zip(pair[1].chars())
                .take_while(|(a, b)| a == b)
                .count()
        })
        .max()
        .unwrap_or(0);
    least.max(shared + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        for (bytes, shown) in [
            (0, "0 B"),
            (812, "812 B"),
            (999, "999 B"),
            (1_000, "1.00 kB"),
            (48_234_496, "48.2 MB"),
            (131_203_072, "131 MB"),
            (999_960_000, "1.00 GB"),
            (1_507_000_000, "1.51 GB"),
            (2_258_063_500_000, "2.26 TB"),
            (u64::MAX, "18446744 TB"),
        ] {
            assert_eq!(size(bytes), shown, "{bytes}");
        }
    }

    #[test]
    fn commits_are_as_short_as_tells_them_apart() {
        assert_eq!(distinguishing_length(&[], 7), 7);
        assert_eq!(distinguishing_length(&["84d3d8f43e", "b2cf2db7fe"], 7), 7);
        // The same commit twice is one commit.
        assert_eq!(distinguishing_length(&["b2cf2db7fe", "b2cf2db7fe"], 7), 7);
        assert_eq!(
            distinguishing_length(&["b2cf2db7fe", "84d3d8f43e", "b2cf2db4aa"], 7),
            8
        );
        assert_eq!(
            distinguishing_length(&["b2cf2db7fe01", "b2cf2db7fe02"], 7),
            12
        );
        // A commit that is a prefix of another needs one character more
        // than itself, and cannot have it: the whole commit is shown.
        assert_eq!(distinguishing_length(&["abc", "abcdef"], 2), 4);
    }
}
