//! End-to-end tests of the `balena-release-update` binary against the
//! simulator, started in-process for each test.

mod support;

mod arguments;
mod errors;
mod fleet;
mod modes;
