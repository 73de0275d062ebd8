//! Credentials: the sandbox holds placeholders; the real values are swapped in on the way
//! out, only toward the hosts each credential belongs to, and scrubbed back out of
//! responses.

pub mod body;
mod encode;
mod forms;
pub mod inject;
pub mod misdirected;
mod placeholder;
pub mod scrub;
pub mod secret;
pub mod spec;
pub mod stream;

pub use body::BodyInjector;
pub use inject::{Bound, Injector, Transport};
pub use misdirected::{Misdirected, Reason};
pub use placeholder::NAME_MAX;
pub use scrub::{MIN_BASE64_LEN, MIN_SCRUB_LEN, Scrubber};
pub use secret::Secret;
pub use spec::{CredentialSpec, PLACEHOLDER_PREFIX};
pub use stream::{StreamError, StreamReplacer};

#[cfg(test)]
mod test_support;
