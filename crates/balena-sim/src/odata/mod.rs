//! The OData engine behind [`crate::pine`]: parses pinejs URLs from their raw
//! form and evaluates them against the in-memory [`crate::db::Db`].

use crate::db::Db;
use crate::pine::{PineError, PineRequest};

/// Answers one request (work in progress: every resource answers no rows).
pub(crate) fn answer(db: &Db, request: &PineRequest<'_>) -> Result<serde_json::Value, PineError> {
    let name = request.path.split(['(', '/']).next().unwrap_or_default();
    if crate::db::resource_schema(name).is_err() {
        return Err(PineError::NotFound(format!("unknown route `/{name}`")));
    }
    let _ = db;
    Ok(serde_json::json!({ "d": [] }))
}
