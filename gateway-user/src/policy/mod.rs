//! Per-session policy: what a session may reach, how fast, and how its bodies are checked.

pub mod spec;

pub use spec::{Enforcement, HostRule, PiiMode, PolicySpec, RateLimit};
