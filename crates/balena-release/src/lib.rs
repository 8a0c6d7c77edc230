//! Compare two balenaCloud releases, find and trigger image deltas, and
//! estimate what a device downloads.
#![deny(clippy::print_stdout, clippy::print_stderr)]
