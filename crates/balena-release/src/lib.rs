//! Compare two balenaCloud releases, find and trigger image deltas, and
//! estimate what a device downloads.
//!
//! A [`Client`] talks to the balena API (pinejs OData, `/v7`) and to the delta
//! server. [`Client::get_update_info`] compares two releases in one round of
//! at most two concurrent requests, whatever the number of services;
//! [`Client::prepare_update`] also asks the delta server for the missing
//! deltas and can wait until they are ready. The result, [`UpdateInfo`],
//! serialises to exactly the JSON of the npm tool `@balena/release-update`,
//! plus a few additive keys.
//!
//! ```no_run
//! use balena_release::{Client, Event, PrepareOptions, ReleaseRef};
//! use secrecy::SecretString;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder()
//!     .token(Some(SecretString::from(std::env::var("BALENA_TOKEN")?)))
//!     .build()?;
//! let from: ReleaseRef = "900813".parse()?;
//! let to: ReleaseRef = "b2cf2db7".parse()?;
//!
//! // Compare only.
//! let info = client.get_update_info(&from, &to).await?;
//! println!("{}", serde_json::to_string_pretty(&info)?);
//!
//! // Build the missing deltas and wait for them, at most ten minutes.
//! let options = PrepareOptions {
//!     wait: true,
//!     deadline: Some(tokio::time::Instant::now() + std::time::Duration::from_secs(600)),
//!     ..PrepareOptions::default()
//! };
//! let report = |event: Event| {
//!     if let Event::Triggered { service_name, .. } = event {
//!         eprintln!("requested the delta of {service_name}");
//!     }
//! };
//! let ready = client.prepare_update(&from, &to, &options, &report).await?;
//! assert_eq!(ready.overall_status, balena_release::Status::Ready);
//! # Ok(())
//! # }
//! ```
//!
//! Rules applied per service of the target release (paired with the source
//! release by service name):
//!
//! - not in the source release: `new`, ready, the whole image is downloaded;
//! - the same image id or the same `content_hash`: `unchanged`, ready, nothing
//!   is downloaded;
//! - otherwise `changed`: ready when a `success` v3 delta exists (its size is
//!   downloaded), preparing while a delta build is running and alive,
//!   pending otherwise.
//!
//! Services are listed in byte order of their names (the npm tool uses ICU
//! collation, which differs for upper case, `_` versus `-` and non-ASCII).
#![deny(clippy::print_stdout, clippy::print_stderr)]
#![warn(missing_docs)]

mod bigint;
mod client;
mod error;
mod event;
mod fleet;
mod http;
mod model;
mod odata;
mod poll;
mod prepare;
mod reference;
mod report;
mod round;
mod token;
mod wire;

pub use client::{
    Client, ClientBuilder, DEFAULT_API_URL, DEFAULT_DELTA_URL, DEFAULT_REQUEST_TIMEOUT,
};
pub use error::{Error, Server, TokenProblem};
pub use event::{Event, TriggerOutcome};
pub use http::RetryPolicy;
pub use model::{
    Change, DeltaFailure, DeltaInfo, FleetSummary, FleetTransition, FleetUpdateInfo, ImageInfo,
    ReleaseSummary, RemovedService, ServiceUpdate, Status, UpdateInfo,
};
pub use poll::PollPolicy;
pub use prepare::PrepareOptions;
pub use reference::{FleetRef, ParseReleaseError, ReleaseRef};
pub use token::{TokenKind, token_kind};
