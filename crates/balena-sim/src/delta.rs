//! The delta server's state machine. A request for an image pair finds a
//! ready delta, a build in progress, or starts a new build (a new `delta`
//! row) whose result the scenario scripts. Builds progress as a pure
//! function of the simulated clock: rows are brought up to date whenever
//! state is read, so no background task is needed.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};

use crate::db::{Db, Value};
use crate::rng;
use crate::spec::{DeltaPair, DeltaSettings, Outcome, delta_location, plus};

/// What a delta request gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// A `success` row exists: the delta image reference.
    Ready { name: String },
    /// A build is in progress (`created`: this request started it).
    Building { row: i64, created: bool },
}

/// A request the delta server refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DeltaError {
    BadRequest(String),
    UnknownImage(String),
}

#[derive(Debug, Clone)]
enum Pending {
    Success {
        size: u64,
        location: String,
    },
    Failed {
        message: String,
    },
    /// The heartbeat stops at `freeze_at`; the row stays `running` forever.
    Stalled {
        freeze_at: Timestamp,
    },
}

#[derive(Debug, Clone)]
struct Active {
    row: i64,
    finish: Timestamp,
    pending: Pending,
}

/// Scripts, attempt counters and the builds in progress.
#[derive(Debug)]
pub(crate) struct DeltaEngine {
    throughput: u64,
    stale_after: SignedDuration,
    scripts: HashMap<(i64, i64), DeltaPair>,
    attempts: HashMap<(i64, i64), usize>,
    active: Vec<Active>,
}

impl DeltaEngine {
    pub(crate) fn new(settings: &DeltaSettings) -> DeltaEngine {
        DeltaEngine {
            throughput: settings.throughput.max(1),
            stale_after: SignedDuration::from_secs(settings.stale_after_s as i64),
            scripts: settings
                .pairs
                .iter()
                .map(|p| ((p.src, p.dest), p.clone()))
                .collect(),
            attempts: HashMap::new(),
            active: Vec::new(),
        }
    }

    /// Scripts the builds of one pair from now on (replacing its script;
    /// attempts already made still count).
    pub(crate) fn script(&mut self, pair: DeltaPair) {
        self.scripts.insert((pair.src, pair.dest), pair);
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.active.is_empty()
    }

    /// Brings every build in progress up to `now`.
    pub(crate) fn refresh(&mut self, db: &mut Db, now: Timestamp) {
        self.active.retain(|build| {
            let done = match build.pending {
                Pending::Stalled { freeze_at } => now >= freeze_at,
                _ => now >= build.finish,
            };
            let fields: Vec<(&str, Value)> = match (&build.pending, done) {
                (Pending::Stalled { freeze_at }, _) => {
                    vec![("update_timestamp", Value::DateTime(now.min(*freeze_at)))]
                }
                (_, false) => vec![("update_timestamp", Value::DateTime(now))],
                (Pending::Success { size, location }, true) => vec![
                    ("status", Value::Text("success".into())),
                    ("size", Value::BigInteger(*size)),
                    ("is_stored_at__location", Value::Text(location.clone())),
                    ("update_timestamp", Value::DateTime(build.finish)),
                    ("end_timestamp", Value::DateTime(build.finish)),
                ],
                (Pending::Failed { message }, true) => vec![
                    ("status", Value::Text("failed".into())),
                    ("error_message", Value::Text(message.clone())),
                    ("update_timestamp", Value::DateTime(build.finish)),
                    ("end_timestamp", Value::DateTime(build.finish)),
                ],
            };
            // A row removed from under us (tests may rewrite tables) ends the build.
            db.update("delta", build.row, &fields).is_ok() && !done
        });
    }

    /// Handles `GET /api/v3/delta?src=&dest=` (raw query).
    pub(crate) fn request(
        &mut self,
        db: &mut Db,
        now: Timestamp,
        raw_query: Option<&str>,
    ) -> Result<Answer, DeltaError> {
        let (src, dest) = parse_query(raw_query)?;
        for id in [src, dest] {
            if db.row("image", id).is_none() {
                return Err(DeltaError::UnknownImage(format!("image `{id}` not found")));
            }
        }
        self.refresh(db, now);
        let mut running = None;
        for (id, _) in db.rows("delta") {
            let field = |name| db.get("delta", id, name);
            if field("version") != Some(&Value::Integer(3))
                || field("originates_from__image") != Some(&Value::Integer(src))
                || field("produces__image") != Some(&Value::Integer(dest))
            {
                continue;
            }
            match field("status") {
                Some(Value::Text(s)) if s == "success" => {
                    if let Some(Value::Text(name)) = field("is_stored_at__location") {
                        return Ok(Answer::Ready { name: name.clone() });
                    }
                }
                Some(Value::Text(s)) if s == "running" => {
                    if let Some(Value::DateTime(beat)) = field("update_timestamp")
                        && now.duration_since(*beat) < self.stale_after
                    {
                        running = Some(id);
                    }
                }
                _ => {}
            }
        }
        if let Some(row) = running {
            return Ok(Answer::Building {
                row,
                created: false,
            });
        }
        Ok(Answer::Building {
            row: self.start(db, now, src, dest),
            created: true,
        })
    }

    /// Starts the next scripted attempt for a pair: a new `running` row.
    fn start(&mut self, db: &mut Db, now: Timestamp, src: i64, dest: i64) -> i64 {
        let attempt = self.attempts.entry((src, dest)).or_default();
        let script = self.scripts.get(&(src, dest));
        let outcome = script
            .and_then(|p| p.outcomes.get(*attempt))
            .cloned()
            .unwrap_or(Outcome::Success {
                size: None,
                duration_ms: None,
            });
        *attempt += 1;
        let size_of = |id| match db.get("image", id, "image_size") {
            Some(Value::BigInteger(n)) => Some(*n),
            _ => None,
        };
        let (src_size, dest_size) = (size_of(src), size_of(dest));
        let default_build = {
            let bytes = src_size.unwrap_or(0).max(dest_size.unwrap_or(0));
            let ms = u128::from(bytes) * 1000 / u128::from(self.throughput);
            SignedDuration::from_millis(i64::try_from(ms).unwrap_or(i64::MAX))
        };
        let pair_build = script
            .and_then(|p| p.duration_ms)
            .map(|ms| SignedDuration::from_millis(ms as i64));
        let build_time = |ms: Option<u64>| {
            ms.map(|ms| SignedDuration::from_millis(ms as i64))
                .or(pair_build)
                .unwrap_or(default_build)
        };
        let row = db.max_id("delta") + 1;
        let (finish, pending) = match outcome {
            Outcome::Success { size, duration_ms } => {
                let dest_location = match db.get("image", dest, "is_stored_at__image_location") {
                    Some(Value::Text(l)) => l.clone(),
                    _ => crate::spec::default_image_location(dest),
                };
                let size = size.unwrap_or_else(|| default_size(db, src, dest, dest_size));
                let location = delta_location(&dest_location, row, src, dest);
                (
                    plus(now, build_time(duration_ms)),
                    Pending::Success { size, location },
                )
            }
            Outcome::Failed {
                error_message,
                duration_ms,
            } => (
                plus(now, build_time(duration_ms)),
                Pending::Failed {
                    message: error_message,
                },
            ),
            Outcome::Stalled { after_ms } => {
                let freeze_at = plus(now, SignedDuration::from_millis(after_ms as i64));
                (Timestamp::MAX, Pending::Stalled { freeze_at })
            }
        };
        let inserted = db.insert(
            "delta",
            &[
                ("id", Value::Integer(row)),
                ("created_at", Value::DateTime(now)),
                ("originates_from__image", Value::Integer(src)),
                ("produces__image", Value::Integer(dest)),
                ("version", Value::Integer(3)),
                ("status", Value::Text("running".into())),
                ("start_timestamp", Value::DateTime(now)),
                ("update_timestamp", Value::DateTime(now)),
            ],
        );
        // The id is fresh and every field is in the delta schema.
        debug_assert!(inserted.is_ok(), "{inserted:?}");
        self.active.push(Active {
            row,
            finish,
            pending,
        });
        row
    }
}

/// A plausible delta size: tiny for identical content, else 5–40 % of the target.
fn default_size(db: &Db, src: i64, dest: i64, dest_size: Option<u64>) -> u64 {
    let dest_size = dest_size.unwrap_or(10_000_000);
    if db.get("image", src, "content_hash") == db.get("image", dest, "content_hash") {
        return 4096;
    }
    let percent = 5 + rng::mix((src as u64) << 32 ^ dest as u64) % 36;
    dest_size / 100 * percent
}

fn parse_query(raw: Option<&str>) -> Result<(i64, i64), DeltaError> {
    let bad = |m: String| DeltaError::BadRequest(m);
    let mut src = None;
    let mut dest = None;
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match key {
            "src" => &mut src,
            "dest" => &mut dest,
            _ => return Err(bad(format!("unknown query parameter `{key}`"))),
        };
        if slot.is_some() {
            return Err(bad(format!("query parameter `{key}` given twice")));
        }
        let id = value
            .parse::<i64>()
            .ok()
            .filter(|id| *id > 0 && value.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| bad(format!("`{key}` must be an image id, got `{value}`")))?;
        *slot = Some(id);
    }
    match (src, dest) {
        (Some(s), Some(d)) => Ok((s, d)),
        (None, _) => Err(bad("missing query parameter `src`".into())),
        (_, None) => Err(bad("missing query parameter `dest`".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    fn engine(scenario: &Scenario) -> (DeltaEngine, Db) {
        (
            DeltaEngine::new(&scenario.delta),
            scenario.build_db().unwrap(),
        )
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn status(db: &Db, row: i64) -> String {
        match db.get("delta", row, "status") {
            Some(Value::Text(s)) => s.clone(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn query_parsing_is_strict() {
        assert_eq!(parse_query(Some("src=1&dest=2")), Ok((1, 2)));
        assert!(parse_query(None).is_err());
        assert!(parse_query(Some("src=1")).is_err());
        assert!(parse_query(Some("src=a&dest=2")).is_err());
        assert!(parse_query(Some("src=+1&dest=2")).is_err());
        assert!(parse_query(Some("src=1&dest=2&dest=3")).is_err());
        assert!(parse_query(Some("src=1&dest=2&x=3")).is_err());
    }

    #[test]
    fn a_build_runs_then_succeeds_at_the_time_the_throughput_gives() {
        use crate::demo::*;
        let s = Scenario::demo();
        let (mut e, mut db) = engine(&s);
        let q = format!("src={IMAGE_R2_API}&dest={IMAGE_R3_API}");
        let t0 = at("2026-01-01T00:00:00Z");
        let Answer::Building { row, created: true } = e.request(&mut db, t0, Some(&q)).unwrap()
        else {
            panic!("expected a new build")
        };
        assert_eq!(status(&db, row), "running");
        let t1 = plus(t0, SignedDuration::from_millis(500));
        assert_eq!(
            e.request(&mut db, t1, Some(&q)).unwrap(),
            Answer::Building {
                row,
                created: false
            }
        );
        assert_eq!(
            db.get("delta", row, "update_timestamp"),
            Some(&Value::DateTime(t1))
        );
        // 131 203 072 bytes at 200 MB/s: 656 ms.
        let t2 = plus(t0, SignedDuration::from_millis(700));
        let Answer::Ready { name } = e.request(&mut db, t2, Some(&q)).unwrap() else {
            panic!("not ready")
        };
        assert!(name.contains(":delta-"), "{name}");
        assert_eq!(status(&db, row), "success");
        assert_eq!(
            db.get("delta", row, "end_timestamp"),
            Some(&Value::DateTime(plus(t0, SignedDuration::from_millis(656))))
        );
        assert!(
            matches!(db.get("delta", row, "size"), Some(Value::BigInteger(n)) if *n > 0 && *n < SIZE_R3_API)
        );
    }

    #[test]
    fn scripted_failures_and_stalls_start_new_rows_when_asked_again() {
        use crate::demo::*;
        let s = Scenario::demo().with_delta_outcome(
            IMAGE_R1_MAIN,
            IMAGE_R3_MAIN,
            vec![
                Outcome::failed("no space").after(std::time::Duration::from_secs(1)),
                Outcome::stalled(),
                Outcome::success(77),
            ],
        );
        let (mut e, mut db) = engine(&s);
        let q = format!("src={IMAGE_R1_MAIN}&dest={IMAGE_R3_MAIN}");
        let t0 = at("2026-01-01T00:00:00Z");
        let Answer::Building { row: first, .. } = e.request(&mut db, t0, Some(&q)).unwrap() else {
            panic!()
        };
        e.refresh(&mut db, plus(t0, SignedDuration::from_secs(2)));
        assert_eq!(status(&db, first), "failed");
        assert_eq!(
            db.get("delta", first, "error_message"),
            Some(&Value::Text("no space".into()))
        );
        let t1 = plus(t0, SignedDuration::from_secs(3));
        let Answer::Building {
            row: second,
            created: true,
        } = e.request(&mut db, t1, Some(&q)).unwrap()
        else {
            panic!()
        };
        assert!(second > first);
        // The stalled row never moves again and turns stale after five minutes.
        let t2 = plus(t1, SignedDuration::from_secs(200));
        assert_eq!(
            e.request(&mut db, t2, Some(&q)).unwrap(),
            Answer::Building {
                row: second,
                created: false
            }
        );
        assert_eq!(
            db.get("delta", second, "update_timestamp"),
            Some(&Value::DateTime(t1))
        );
        let t3 = plus(t1, SignedDuration::from_secs(301));
        let Answer::Building {
            row: third,
            created: true,
        } = e.request(&mut db, t3, Some(&q)).unwrap()
        else {
            panic!()
        };
        assert_eq!(status(&db, second), "running");
        e.refresh(&mut db, plus(t3, SignedDuration::from_secs(10)));
        assert_eq!(db.get("delta", third, "size"), Some(&Value::BigInteger(77)));
        assert!(e.is_idle());
    }

    #[test]
    fn existing_success_rows_answer_at_once_and_unknown_images_are_refused() {
        use crate::demo::*;
        let (mut e, mut db) = engine(&Scenario::demo());
        let q = format!("src={IMAGE_R2_MAIN}&dest={IMAGE_R3_MAIN}");
        let Answer::Ready { name } = e
            .request(&mut db, at("2026-01-01T00:00:00Z"), Some(&q))
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(
            db.get("delta", DELTA_R2_R3_MAIN, "is_stored_at__location"),
            Some(&Value::Text(name))
        );
        let missing = e.request(&mut db, at("2026-01-01T00:00:00Z"), Some("src=1&dest=2"));
        assert_eq!(
            missing,
            Err(DeltaError::UnknownImage("image `1` not found".into()))
        );
    }
}
