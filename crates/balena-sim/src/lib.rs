//! A local simulator of the balenaCloud API (pinejs OData at `/v7` and `/v6`)
//! and of its delta server, for tests, benchmarks and demos.

pub mod db;
pub mod odata;
pub mod pine;
