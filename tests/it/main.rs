//! End-to-end tests of the `balena-release-update` binary against the
//! simulator, started in-process for each test. The first line of each
//! module says which tests belong in it.

mod support;

mod bad_input;
mod errors;
mod faults;
mod fleet;
mod help;
mod hostile_servers;
mod hostile_text;
mod live_terminal;
mod markdown;
mod max_download;
mod modes;
mod next_steps;
mod progress;
mod scenario_file;
mod screens;
mod security;
mod signals;
mod stops;
mod tables;
mod watch;
mod write_failures;
