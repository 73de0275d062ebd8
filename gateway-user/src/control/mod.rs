//! The control API: HTTP + JSON on the node (127.0.0.1:3000 by default), behind an admin
//! bearer token. The CLI is a client of it.

pub mod auth;
pub mod client;
mod server;
pub mod types;

pub use server::serve_control;
