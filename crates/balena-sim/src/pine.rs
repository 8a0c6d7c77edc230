//! The pinejs-compatible read API of the simulator: turns a raw `/v7/…` (or
//! `/v6/…`) GET into the JSON body pinejs would answer, or into the error
//! pinejs would give, so clients meet the same strictness as on balenaCloud.

use crate::db::Db;
pub use crate::odata::{ApiVersion, PineError, PineRequest};

/// Answers a GET: the JSON body `{"d":[…]}` (or `{"d": N}` for `$count`).
pub fn get(db: &Db, request: &PineRequest<'_>) -> Result<serde_json::Value, PineError> {
    crate::odata::answer(db, request)
}
