//! The control API: HTTP + JSON on the node (127.0.0.1:3000 by default), behind an admin
//! bearer token. The CLI is a client of it.

pub mod audit;
pub mod auth;
pub mod client;
pub mod env;
mod metrics;
pub mod proxies;
mod server;
pub mod sessions;

pub use server::{OPENAPI, serve_control};
