//! End-to-end tests of the `balena-release-update` binary against the simulator.
