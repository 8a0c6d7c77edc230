//! The pinejs-compatible read API of the simulator: turns a raw `/v7/…` (or
//! `/v6/…`) GET into the JSON body pinejs would answer, or into the error
//! pinejs would give, so clients meet the same strictness as on balenaCloud.

use crate::db::Db;

/// The API version of a request; it only changes how Big Integers are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    V6,
    V7,
}

/// One GET against the OData API.
#[derive(Debug, Clone, Copy)]
pub struct PineRequest<'a> {
    pub version: ApiVersion,
    /// The path after `/v7/` (or `/v6/`), undecoded: `release`, `release(900813)`,
    /// `release/$count`, `release(1)/$count` …
    pub path: &'a str,
    /// The raw, undecoded query string (without `?`), exactly as received, if any.
    pub raw_query: Option<&'a str>,
}

/// Why a request cannot be answered with rows.
#[derive(Debug, Clone, PartialEq)]
pub enum PineError {
    /// 400 with the body `"Malformed url: '<url>'"`: the OData grammar rejects the URL.
    Malformed(String),
    /// 400 for a well-formed query that names an unknown field or navigation,
    /// compares values of the wrong types, and so on.
    BadRequest(String),
    /// 404 for an unknown resource.
    NotFound(String),
}

impl PineError {
    /// The HTTP status code of this error.
    pub fn status(&self) -> u16 {
        match self {
            PineError::Malformed(_) | PineError::BadRequest(_) => 400,
            PineError::NotFound(_) => 404,
        }
    }

    /// The response body: the message as a JSON string, as pinejs sends it.
    pub fn body(&self) -> String {
        let message = match self {
            PineError::Malformed(url) => format!("Malformed url: '{url}'"),
            PineError::BadRequest(message) | PineError::NotFound(message) => message.clone(),
        };
        serde_json::Value::String(message).to_string()
    }
}

/// Answers a GET: the JSON body `{"d":[…]}` (or `{"d": N}` for `$count`).
pub fn get(db: &Db, request: &PineRequest<'_>) -> Result<serde_json::Value, PineError> {
    crate::odata::answer(db, request)
}
