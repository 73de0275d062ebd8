//! Test support shared by the unit tests and the end-to-end crate (`tests`), which enables it
//! with the `test-support` feature. Nothing here is part of the daemon.

mod redis;

pub use redis::{RedisServer, RedisServerError};
