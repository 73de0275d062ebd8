//! Sessions: the identity a sandbox runs under, with its credentials and policy.
//!
//! - [`token`]: session tokens (`sluice_stk_…`, only their SHA-256 is stored) and ids.
//! - [`crypto`]: the master key and AES-256-GCM sealing of credential values.
//! - [`model`], [`validate`]: the stored session, the create request and its validation, the
//!   API view.
//! - [`store`]: the [`SessionStore`] trait; [`EmbeddedStore`] (one node, a JSON file) and
//!   [`RedisStore`] (shared by many nodes, revocations over pub/sub) implement it.
//! - [`proxies`]: upstream proxies created through the API, kept in the store.
//! - [`cache`]: [`SessionCache`], the node-local front the data path authenticates against.
//! - [`static_config`]: sessions declared in the configuration file (token digests only).
//! - [`unusable`]: why a connection's session cannot be used, and which side is to blame.

pub mod cache;
pub mod crypto;
pub mod embedded;
pub mod model;
pub mod proxies;
pub mod redis;
pub mod static_config;
pub mod store;
pub mod token;
pub mod unusable;
pub mod validate;

pub use cache::{AuthError, CacheConfig, SessionCache};
pub use crypto::{CryptoError, KeySource, MASTER_KEY_ENV, MasterKey, Sealed};
pub use embedded::EmbeddedStore;
pub use model::{NewSession, Session, SessionState, SessionView, StoredCredential};
pub use proxies::{ProxyTable, Put, Removed, StoredDefault, StoredProxy};
pub use redis::RedisStore;
pub use static_config::{BadDigest, SessionConfig, Sessions};
pub use store::{RESYNC, SessionStore, StoreError, StoreFuture};
pub use token::{Token, TokenDigest};
pub use unusable::Unusable;
pub use validate::ValidationError;
