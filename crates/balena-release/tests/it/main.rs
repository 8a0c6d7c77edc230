//! Integration tests of the library against the in-process simulator.
