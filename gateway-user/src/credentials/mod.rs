//! Credentials: the sandbox holds placeholders; the real values are swapped in on the way
//! out, only toward the hosts each credential belongs to.

pub mod secret;
pub mod spec;

pub use secret::Secret;
pub use spec::{CredentialSpec, PLACEHOLDER_PREFIX};
