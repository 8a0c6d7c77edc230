//! End-to-end tests of the `balena-release-update` binary against the
//! simulator, started in-process for each test.

mod support;

mod arguments;
mod bad_input;
mod errors;
mod faults;
mod fleet;
mod modes;
mod scenario_file;
mod security;
mod write_failures;
