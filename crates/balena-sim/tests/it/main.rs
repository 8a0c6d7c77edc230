//! Integration tests of the simulator over real loopback HTTP.

mod api;
mod binary;
mod delta;
mod faults;
mod fleet;
mod journal;
mod registry;
mod support;
