//! The control endpoint under `/__sim/` on both servers (no token, never
//! faulted): read and clear the journal, read counters, change faults and
//! move the simulated clock while a client runs.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use axum::response::Response;

use crate::faults::Faults;
use crate::journal::server_name;
use crate::respond::{json, json_error, method_not_allowed, not_found};
use crate::state::Ctx;

/// Largest control request body accepted (a fault configuration).
const MAX_BODY: usize = 1 << 20;

pub(crate) async fn handle(
    ctx: &Ctx,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: Body,
) -> Response {
    let shared = &ctx.shared;
    let route = path.trim_start_matches("/__sim").trim_end_matches('/');
    match (route, method.as_str()) {
        ("" | "/health", "GET") => json(
            StatusCode::OK,
            &serde_json::json!({
                "ok": true,
                "server": server_name(ctx.kind),
                "now": shared.clock.now().to_string(),
                "routes": [
                    "GET /__sim/health",
                    "GET /__sim/journal",
                    "DELETE /__sim/journal",
                    "POST /__sim/journal/clear",
                    "GET /__sim/counters",
                    "GET /__sim/faults",
                    "PUT /__sim/faults",
                    "DELETE /__sim/faults",
                    "GET /__sim/clock",
                    "POST /__sim/clock/advance?ms=N (or s=N)",
                    "POST /__sim/release?from=ID&changed=a,b",
                ],
            }),
        ),
        ("/journal", "GET") => json(
            StatusCode::OK,
            &serde_json::json!({
                "entries": shared.journal.entries(),
                "counters": shared.journal.counters_json(),
            }),
        ),
        ("/journal", "DELETE") | ("/journal/clear", "POST") => {
            shared.journal.clear();
            json(StatusCode::OK, &serde_json::json!({ "cleared": true }))
        }
        ("/counters", "GET") => json(StatusCode::OK, &shared.journal.counters_json()),
        ("/faults", "GET") => json(
            StatusCode::OK,
            &serde_json::to_value(shared.faults()).unwrap_or_default(),
        ),
        ("/faults", "PUT" | "POST") => {
            let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
                Ok(b) => b,
                Err(e) => {
                    return json_error(
                        StatusCode::BAD_REQUEST,
                        &format!("cannot read the body: {e}"),
                    );
                }
            };
            let faults: Faults = match serde_json::from_slice(&bytes) {
                Ok(f) => f,
                Err(e) => {
                    return json_error(
                        StatusCode::BAD_REQUEST,
                        &format!("invalid fault configuration: {e}"),
                    );
                }
            };
            if let Err(e) = faults.validate() {
                return json_error(StatusCode::BAD_REQUEST, &e);
            }
            shared.set_faults(faults);
            json(
                StatusCode::OK,
                &serde_json::to_value(shared.faults()).unwrap_or_default(),
            )
        }
        ("/faults", "DELETE") => {
            shared.set_faults(Faults::none());
            json(
                StatusCode::OK,
                &serde_json::to_value(shared.faults()).unwrap_or_default(),
            )
        }
        ("/clock", "GET") => json(StatusCode::OK, &shared.clock.describe()),
        ("/clock/advance", "POST") => match parse_advance(query) {
            Ok(by) => {
                shared.clock.advance(by);
                shared.refresh();
                json(StatusCode::OK, &shared.clock.describe())
            }
            Err(e) => json_error(StatusCode::BAD_REQUEST, &e),
        },
        ("/release", "POST") => match parse_new_release(query) {
            Ok((from, changed)) => {
                shared.refresh();
                let now = shared.clock.now();
                let added = crate::live::add_release(
                    &mut crate::state::write(&shared.db),
                    from,
                    &changed,
                    now,
                );
                match added {
                    Ok(id) => json(StatusCode::OK, &serde_json::json!({ "id": id })),
                    Err(e) => json_error(StatusCode::BAD_REQUEST, &e),
                }
            }
            Err(e) => json_error(StatusCode::BAD_REQUEST, &e),
        },
        (
            "" | "/health" | "/journal" | "/journal/clear" | "/counters" | "/faults" | "/clock"
            | "/clock/advance" | "/release",
            _,
        ) => method_not_allowed(method, path),
        _ => not_found(method, path),
    }
}

/// `ms=N` or `s=N` (whole numbers).
fn parse_advance(query: Option<&str>) -> Result<Duration, String> {
    let query = query.unwrap_or("");
    let (key, value) = query.split_once('=').ok_or("expected `?ms=N` or `?s=N`")?;
    let n: u64 = value
        .parse()
        .map_err(|_| format!("`{key}` must be a whole number, got `{value}`"))?;
    match key {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        _ => Err(format!("unknown parameter `{key}`: expected `ms` or `s`")),
    }
}

/// `from=ID` and an optional `changed=a,b` (service names), in any order.
fn parse_new_release(query: Option<&str>) -> Result<(i64, Vec<String>), String> {
    let mut from = None;
    let mut changed = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("from", value)) => {
                from = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| format!("`from` must be a release id, got `{value}`"))?,
                );
            }
            Some(("changed", value)) => {
                changed = value
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            _ => {
                return Err(format!(
                    "unknown parameter `{pair}`: expected `from` or `changed`"
                ));
            }
        }
    }
    let from = from.ok_or("expected `?from=ID` (and optionally `&changed=a,b`)")?;
    Ok((from, changed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_takes_milliseconds_or_seconds() {
        assert_eq!(
            parse_advance(Some("ms=250")),
            Ok(Duration::from_millis(250))
        );
        assert_eq!(parse_advance(Some("s=600")), Ok(Duration::from_secs(600)));
        assert!(parse_advance(Some("m=1")).is_err());
        assert!(parse_advance(Some("s=-1")).is_err());
        assert!(parse_advance(None).is_err());
    }

    #[test]
    fn a_new_release_names_its_source_and_changed_services() {
        assert_eq!(
            parse_new_release(Some("from=900871&changed=main,api")),
            Ok((900871, vec!["main".to_owned(), "api".to_owned()]))
        );
        assert_eq!(parse_new_release(Some("from=7")), Ok((7, Vec::new())));
        assert!(parse_new_release(Some("changed=main")).is_err());
        assert!(parse_new_release(Some("from=x")).is_err());
        assert!(parse_new_release(Some("from=1&x=2")).is_err());
    }
}
