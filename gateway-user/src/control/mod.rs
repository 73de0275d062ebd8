//! The control API: HTTP + JSON on the node (127.0.0.1:3000 by default), behind an admin
//! bearer token. The CLI is a client of it.

pub mod audit;
mod audit_stream;
pub mod auth;
pub mod client;
pub mod env;
mod metrics;
mod node_info;
pub mod proxies;
mod server;
pub mod sessions;
mod ui;

pub use server::{OPENAPI, serve_control};
