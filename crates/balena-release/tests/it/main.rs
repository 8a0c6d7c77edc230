//! Integration tests of the library against the in-process simulator.

mod support;

mod api_faults;
mod delta_server;
mod fleet;
mod hostile;
mod info;
mod prepare;
mod props;
mod proxy;
mod registry;
mod secrets;
mod watch;
