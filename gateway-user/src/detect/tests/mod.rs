//! Tests for detection: table tests of the pure parsers, recorded hellos from real
//! clients, and the async loop under a paused clock.

mod build;
mod client_hello;
mod fixtures;
mod http1;
mod peek;
mod prefixed;
