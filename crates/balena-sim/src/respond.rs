//! The plain answers every route shares: text and JSON bodies, the 404, 405
//! and 401 answers, and the simulated `Date` header.

use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;

pub(crate) fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

pub(crate) fn text(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub(crate) fn json_error(status: StatusCode, message: &str) -> Response {
    json(
        status,
        &serde_json::json!({ "success": false, "error": message }),
    )
}

pub(crate) fn not_found(method: &Method, path: &str) -> Response {
    text(
        StatusCode::NOT_FOUND,
        format!("Not Found: no route for {method} {path}"),
    )
}

pub(crate) fn method_not_allowed(method: &Method, path: &str) -> Response {
    let mut r = text(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("Method Not Allowed: {method} {path} (only GET)"),
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET"));
    r
}

pub(crate) fn unauthorized() -> Response {
    text(StatusCode::UNAUTHORIZED, "Unauthorized".into())
}

pub(crate) fn http_date(now: Timestamp) -> HeaderValue {
    jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&now)
        .ok()
        .and_then(|s| HeaderValue::from_str(&s).ok())
        .unwrap_or_else(|| HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"))
}
