//! The Node-API addon behind the npm package `balena-release-update`.
//!
//! JavaScript (`npm/balena-release-update/index.cjs`) reads the caller's
//! options (and a balena-sdk `client`'s URL and token), then calls
//! [`call`] with one JSON request; the returned Promise resolves to one JSON
//! string, the report as the command's `--output json` writes it or an
//! error with a stable `code`, which JavaScript turns into a plain object or
//! an `Error`. Pure logic (checking the request, the session, error codes,
//! events) is in [`request`]; this file holds what touches Node.
//!
//! Every call runs on one shared tokio runtime (created on the first call),
//! and calls with the same servers, token and registry settings share one
//! library `Client`, so concurrent calls share its connections. The Promise
//! is settled through a Node-API deferred, which keeps the event loop alive
//! only while the call runs; the event callback is a weak threadsafe
//! function, which never does: once the caller is done, the process exits.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod request;
mod runtime;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;

/// The event callback: one JSON string per library event; weak (it does
/// not keep the event loop alive) and called without an error argument.
type EventCallback = ThreadsafeFunction<String, Unknown<'static>, String, Status, false, true>;

/// Starts one call of the library. `request` is the JSON request (see
/// `request::Request`); `id` names the call for [`abort`]; `on_event`, if
/// given, receives each library event as a JSON string. The Promise
/// resolves to the outcome as a JSON string (see `request::outcome_json`);
/// it rejects only if the call could not be started at all.
#[napi(ts_return_type = "Promise<string>")]
pub fn call<'env>(
    env: &'env Env,
    request: String,
    id: u32,
    on_event: Option<EventCallback>,
) -> Result<Object<'env>> {
    let (deferred, promise) = env.create_deferred::<String, _>()?;
    let events = on_event.map(|callback| {
        move |json: String| {
            callback.call(json, ThreadsafeFunctionCallMode::NonBlocking);
        }
    });
    runtime::start(request, id, events, move |outcome: String| {
        deferred.resolve(move |_| Ok(outcome));
    })
    .map_err(|err| Error::from_reason(err.to_string()))?;
    Ok(promise)
}

/// Aborts the call started with this `id`: it stops at once (requests in
/// flight are dropped) and resolves to an `ABORT_ERR` error. A call that
/// already ended is left alone.
#[napi]
pub fn abort(id: u32) {
    runtime::abort(id);
}
