//! What a configuration reload changes while the daemon runs, as one value swapped whole.
//!
//! Every connection loads the [`Live`] once, when it is accepted, and keeps that snapshot to
//! its end, so it sees one consistent set of node rules and configuration-file sessions.
//! It is built from [`LiveConfig`], the part of the configuration a reload may change;
//! restart-only settings stay in [`crate::config::Config`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::LiveConfig;
use crate::net::{Cidr, CidrError};
use crate::policy::{CompiledPolicy, PolicyError};
use crate::session::{BadDigest, Sessions};

/// The live part of the configuration, built (and so checked) before it is swapped in.
#[derive(Debug)]
pub struct Live {
    /// The node's rules (`[policy]`): the base policy of every connection, a session's
    /// policy layered over it.
    pub policy: Arc<CompiledPolicy>,
    /// Internal ranges a sandbox may nevertheless reach (`upstream.allow_internal`).
    pub allow_internal: Vec<Cidr>,
    /// Sessions declared in the configuration file: authenticated, without policy or
    /// credentials.
    pub sessions: Sessions,
    /// The DNS static table (`dns.hosts`).
    pub hosts: HashMap<String, Vec<IpAddr>>,
}

/// Why the live part of a configuration cannot be built; each names its field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LiveError {
    /// A node policy entry (`policy.…`).
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// An `upstream.allow_internal` range.
    #[error("upstream.allow_internal: {0}")]
    AllowInternal(CidrError),
    /// A configured session.
    #[error(transparent)]
    Sessions(#[from] BadDigest),
}

/// The shared, swappable [`Live`]: one atomic store per reload.
pub type LiveStore = Arc<ArcSwap<Live>>;

impl Live {
    /// The running form of `config`, the live part of a configuration (see
    /// [`crate::config::Config::split_live`]); the error names the bad entry.
    pub fn build(config: &LiveConfig) -> Result<Live, LiveError> {
        let allow_internal = config
            .allow_internal
            .iter()
            .map(|c| Cidr::parse(c).map_err(LiveError::AllowInternal))
            .collect::<Result<_, _>>()?;
        Ok(Live {
            policy: Arc::new(config.policy().compile()?),
            allow_internal,
            sessions: Sessions::from_config(&config.sessions)?,
            hosts: config
                .dns_hosts
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }

    /// A store holding `self`.
    pub fn into_store(self) -> LiveStore {
        Arc::new(ArcSwap::from_pointee(self))
    }
}

impl Default for Live {
    /// The built-in defaults: no passthrough, no `tcp_allow`, no internal range, no session.
    fn default() -> Live {
        Live {
            policy: Arc::new(CompiledPolicy::default()),
            allow_internal: Vec::new(),
            sessions: Sessions::default(),
            hosts: HashMap::new(),
        }
    }
}
