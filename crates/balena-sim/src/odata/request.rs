//! What one OData GET asks for and how it can fail: the request and error
//! types shared by the engine ([`crate::odata`]) and its facade
//! ([`crate::pine`]).

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

/// Why a request cannot be answered with rows, as pinejs 24 answers it.
#[derive(Debug, Clone, PartialEq)]
pub enum PineError {
    /// 400 with the body `"Malformed url: '<url>'"`: the OData grammar rejects the URL.
    Malformed(String),
    /// 401 with an empty body: the resource is not in the model (pinejs treats
    /// an unknown resource like a forbidden one). The text says which.
    UnknownResource(String),
    /// 500 with an empty body: the URL parses but cannot be translated to a
    /// query (an unknown field or navigation, values of the wrong types, or a
    /// construct the simulator does not implement). The text says why.
    Untranslatable(String),
}

impl PineError {
    /// The HTTP status code of this error.
    pub fn status(&self) -> u16 {
        match self {
            PineError::Malformed(_) => 400,
            PineError::UnknownResource(_) => 401,
            PineError::Untranslatable(_) => 500,
        }
    }

    /// The response body: the message as a JSON string for a malformed URL,
    /// empty otherwise (pinejs sends no message with these two).
    pub fn body(&self) -> String {
        match self {
            PineError::Malformed(url) => {
                serde_json::Value::String(format!("Malformed url: '{url}'")).to_string()
            }
            PineError::UnknownResource(_) | PineError::Untranslatable(_) => String::new(),
        }
    }

    /// Why, in words (the simulator sends it in the `X-Balena-Sim-Reason` header).
    pub fn reason(&self) -> String {
        match self {
            PineError::Malformed(url) => format!("Malformed url: '{url}'"),
            PineError::UnknownResource(reason) | PineError::Untranslatable(reason) => {
                reason.clone()
            }
        }
    }
}
