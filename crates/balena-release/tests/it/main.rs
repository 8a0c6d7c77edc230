//! Integration tests of the library against the in-process simulator.

mod support;

mod faults;
mod fleet;
mod info;
mod prepare;
mod props;
mod proxy;
mod resilience;
