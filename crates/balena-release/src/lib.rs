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
//! The library never prints: what happens meanwhile is reported as
//! [`Event`]s to a callback. The prepare calls take one; the describe calls
//! have `_with_events` variants ([`Client::get_update_info_with_events`],
//! [`Client::get_fleet_update_info_with_events`]) that report retries, so a
//! front end can say at once that a server does not answer.
//!
//! ```
//! use std::time::Duration;
//!
//! use balena_release::{Client, Event, PollPolicy, PrepareOptions, ReleaseRef, Status};
//! use secrecy::SecretString;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A local simulator of balenaCloud stands in for the real API here; its
//! // clock runs 1000 times faster so that delta builds take milliseconds.
//! let sim = balena_sim::Simulator::start(
//!     balena_sim::Scenario::demo().with_clock(balena_sim::Clock::scaled(1000.0)),
//! )?;
//! let client = Client::builder()
//!     .api_url(sim.api_url().parse()?)
//!     .delta_url(sim.delta_url().parse()?)
//!     .token(Some(SecretString::from(sim.token())))
//!     // This simulator serves no registry: no exact download sizes here.
//!     .registry(false)
//!     .build()?;
//! let from: ReleaseRef = "900835".parse()?;
//! let to: ReleaseRef = "b2cf2db7e8".parse()?; // a commit prefix
//!
//! tokio::runtime::Builder::new_current_thread()
//!     .enable_all()
//!     .build()?
//!     .block_on(async {
//!         // Compare only: one round of two concurrent requests.
//!         let info = client.get_update_info(&from, &to).await?;
//!         assert_eq!(info.overall_status, Status::Pending);
//!         assert_eq!(info.removed_services[0].service_name, "worker");
//!
//!         // Build the missing deltas and wait for them, at most a minute.
//!         let options = PrepareOptions {
//!             wait: true,
//!             deadline: Some(tokio::time::Instant::now() + Duration::from_secs(60)),
//!             // Real balenaCloud is polled every 1.5 s at first (the default).
//!             poll: PollPolicy { initial: Duration::from_millis(20), ..PollPolicy::default() },
//!             ..PrepareOptions::default()
//!         };
//!         let on_event = |event: Event| {
//!             if let Event::Triggered { service_name, .. } = event {
//!                 eprintln!("requested the delta of {service_name}");
//!             }
//!         };
//!         let ready = client.prepare_update(&from, &to, &options, &on_event).await?;
//!         assert_eq!(ready.overall_status, Status::Ready);
//!         println!("{}", serde_json::to_string_pretty(&ready)?);
//!         Ok::<_, Box<dyn std::error::Error>>(())
//!     })
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
//! Exact download sizes: unless [`ClientBuilder::registry`] turns it off,
//! the client also reads the images' manifests from the registry (one
//! challenge, one token request and one wave of manifests per round, started
//! as soon as the releases are known) and writes `pull_size` and
//! `download_size` per service and `estimated_download_size` per transition:
//! the compressed layers a device does not have yet. A registry that cannot
//! tell makes those sizes unknown (`download_size_unknown`), never the call
//! fail.
//!
//! Services are listed in byte order of their names (the npm tool uses ICU
//! collation, which differs for upper case, `_` versus `-` and non-ASCII).
#![deny(clippy::print_stdout, clippy::print_stderr)]
#![warn(missing_docs)]

#[doc(hidden)]
pub mod bench_support;
mod bigint;
mod client;
mod delta_server;
mod delta_settings;
mod download;
mod error;
mod event;
mod fleet;
mod http;
mod model;
mod odata;
mod poll;
mod prepare;
mod queries;
mod redact;
mod reference;
mod registry;
mod resolve;
mod round;
mod rules;
mod token;
mod watch;
mod wire;

pub use client::{
    Client, ClientBuilder, DEFAULT_API_URL, DEFAULT_DELTA_URL, DEFAULT_REQUEST_TIMEOUT,
};
pub use error::{Cause, Error, Server, TokenProblem};
pub use event::{Event, TriggerOutcome, WatchReason};
pub use http::RetryPolicy;
pub use model::{
    Change, DeltaFailure, DeltaInfo, FleetSummary, FleetTransition, FleetUpdateInfo, ImageInfo,
    ReleaseSummary, RemovedService, Report, ServiceUpdate, Status, UpdateInfo, UpdateStrategy,
};
pub use poll::PollPolicy;
pub use prepare::PrepareOptions;
pub use redact::{MIN_RUN, REDACTED, SECRET_KEYS, redact_secrets, redact_url};
pub use reference::{FleetRef, ParseReleaseError, ReleaseRef, Target};
pub use token::{TokenKind, token_kind};
pub use watch::WatchOptions;
