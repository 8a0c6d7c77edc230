//! The OData engine served by [`crate::pine`]: parses pinejs URLs from their raw
//! form and evaluates them against the in-memory [`crate::db::Db`].

mod bind;
mod eval;
mod parser;
mod request;

pub use request::{ApiVersion, PineError, PineRequest};

use serde_json::{Value as Json, json};

use crate::db::{Db, Row};
use parser::{Literal, ParseError};

fn version_segment(version: ApiVersion) -> &'static str {
    match version {
        ApiVersion::V6 => "v6",
        ApiVersion::V7 => "v7",
    }
}

/// Answers one GET. The checks run in pinejs' order: the grammar (400), then
/// whether the resource exists (401), then the translation of names and
/// types (500).
pub(crate) fn answer(db: &Db, request: &PineRequest<'_>) -> Result<Json, PineError> {
    let malformed = || {
        let mut url = format!("/{}/{}", version_segment(request.version), request.path);
        if let Some(query) = request.raw_query {
            url.push('?');
            url.push_str(query);
        }
        PineError::Malformed(url)
    };
    let path = parser::parse_path(request.path);
    let options = parser::parse_query(request.raw_query.unwrap_or_default());
    if matches!(path, Err(ParseError::Malformed)) || matches!(options, Err(ParseError::Malformed)) {
        return Err(malformed());
    }
    let resource_name = match &path {
        Ok(path) => path.resource.as_str(),
        Err(_) => parser::resource_name(request.path),
    };
    let resource = db.model().resource(resource_name).ok_or_else(|| {
        PineError::UnknownResource(format!("`{resource_name}` is not a resource of this API"))
    })?;
    let untranslatable = |error: ParseError| match error {
        ParseError::Malformed => malformed(),
        ParseError::Unsupported(message) => PineError::Untranslatable(message),
    };
    let path = path.map_err(untranslatable)?;
    let options = options.map_err(untranslatable)?;
    let query = bind::bind_query(resource, &options).map_err(PineError::Untranslatable)?;

    let mut rows: Vec<(i64, &Row)> = match &path.key {
        Some(Literal::Integer(id)) => db
            .row(resource.name, *id)
            .map(|row| (*id, row))
            .into_iter()
            .collect(),
        Some(Literal::Text(text)) => {
            return Err(PineError::Untranslatable(format!(
                "the key `'{text}'` of `{}` must be an integer",
                resource.name
            )));
        }
        Some(Literal::Decimal(number)) => {
            return Err(PineError::Untranslatable(format!(
                "the key `{number}` of `{}` must be an integer",
                resource.name
            )));
        }
        Some(_) => {
            return Err(PineError::Untranslatable(format!(
                "the key of `{}` must be an integer",
                resource.name
            )));
        }
        None => match query
            .filter
            .as_ref()
            .and_then(|filter| eval::candidates(db, resource, filter))
        {
            Some(rows) => rows,
            None => db.rows(resource.name).collect(),
        },
    };
    if let Some(filter) = &query.filter {
        rows.retain(|(_, row)| eval::matches(db, filter, row));
    }
    if path.count {
        return Ok(json!({ "d": rows.len() }));
    }
    let rows = eval::page(db, &query, rows);
    let body: Vec<Json> = rows
        .into_iter()
        .map(|(_, row)| eval::serialize(db, &query, row, request.version))
        .collect();
    Ok(json!({ "d": body }))
}

#[cfg(test)]
mod tests;
