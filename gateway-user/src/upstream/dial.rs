//! The one dialer: every TCP connection Sluice opens toward an upstream (intercepted
//! requests, passthrough and `tcp_allow` relays, `CONNECT` tunnels) goes through
//! [`Dialer::dial`], which refuses internal destinations, bounds the connect and turns Nagle
//! off. Upstream proxies plug in here.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::audit::{Side, Sided};
use crate::live::LiveStore;
use crate::net::{Cidr, classify_dialled};

/// Why a dial failed (cloneable: it travels through hyper's error chain).
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// The destination is internal to the node or its network.
    #[error("policy: destination {destination} is a {what}; internal destinations are refused")]
    Internal {
        /// The destination.
        destination: SocketAddr,
        /// What kind of internal address.
        what: String,
    },
    /// The destination answered with a reset.
    #[error("upstream: connection to {dest} refused")]
    Refused {
        /// The address dialled.
        dest: SocketAddr,
    },
    /// No answer to the TCP connect in time.
    #[error("upstream: connecting to {dest} timed out after {after:?}")]
    Timeout {
        /// The address dialled.
        dest: SocketAddr,
        /// The limit.
        after: Duration,
    },
    /// Another TCP error.
    #[error("upstream: connecting to {dest} failed: {source}")]
    Failed {
        /// The address dialled.
        dest: SocketAddr,
        /// The OS error.
        source: Arc<io::Error>,
    },
}

impl DialError {
    /// Whether the policy refused the destination (nothing was dialled).
    pub fn is_refusal(&self) -> bool {
        matches!(self, DialError::Internal { .. })
    }
}

impl Sided for DialError {
    fn side(&self) -> Side {
        match self {
            DialError::Internal { .. } => Side::Policy,
            _ => Side::Upstream,
        }
    }
}

/// Opens upstream TCP connections; cheap to clone.
#[derive(Clone, Debug)]
pub struct Dialer {
    connect_timeout: Duration,
    live: LiveStore,
}

impl Dialer {
    /// A dialer giving each connect `connect_timeout`, refusing internal destinations
    /// except the ranges of `live`'s `allow_internal` (read at each dial).
    pub fn new(connect_timeout: Duration, live: LiveStore) -> Dialer {
        Dialer {
            connect_timeout,
            live,
        }
    }

    /// The limit on one connect.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Connects to `dest`, with Nagle off (SSE, gRPC and WebSocket frames must leave at
    /// once).
    ///
    /// # Security
    /// The address checked is the address dialled: an internal destination is refused here
    /// whatever the caller checked before.
    pub async fn dial(&self, dest: SocketAddr) -> Result<TcpStream, DialError> {
        check_destination(dest, &self.live.load().allow_internal)?;
        let after = self.connect_timeout;
        let tcp = tokio::time::timeout(after, TcpStream::connect(dest))
            .await
            .map_err(|_| DialError::Timeout { dest, after })?
            .map_err(|source| match source.kind() {
                io::ErrorKind::ConnectionRefused => DialError::Refused { dest },
                _ => DialError::Failed {
                    dest,
                    source: Arc::new(source),
                },
            })?;
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }
}

/// Refuses destinations internal to the node or its network (including the node's own
/// interface addresses) unless a range of `allow` covers them.
pub fn check_destination(destination: SocketAddr, allow: &[Cidr]) -> Result<(), DialError> {
    match classify_dialled(destination.ip()) {
        Some(what) if !allow.iter().any(|c| c.contains(destination.ip())) => {
            Err(DialError::Internal {
                destination,
                what: what.to_string(),
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::Live;

    #[test]
    fn destination_table() {
        let allow = [Cidr::parse("10.9.0.0/16").unwrap()];
        let cases = [
            ("198.51.100.10:443", true),
            ("[2001:db8::10]:80", true),
            ("127.0.0.1:3000", false),
            ("[::ffff:127.0.0.1]:3000", false),
            ("[::1]:22", false),
            ("169.254.169.254:80", false),
            ("10.1.0.1:80", false),
            ("10.9.3.4:80", true),
            ("[64:ff9b::a09:304]:80", false),
            ("[64:ff9b::c633:640a]:80", false),
            ("198.18.0.5:80", false),
        ];
        for (dest, ok) in cases {
            let dest: SocketAddr = dest.parse().unwrap();
            assert_eq!(check_destination(dest, &allow).is_ok(), ok, "{dest}");
        }
        let msg = check_destination("127.0.0.1:3000".parse().unwrap(), &[])
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("127.0.0.1:3000") && msg.contains("loopback"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn dial_refuses_internal_unless_allowed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dest = listener.local_addr().unwrap();
        let closed = Dialer::new(Duration::from_secs(5), Live::default().into_store());
        let error = closed.dial(dest).await.unwrap_err();
        assert!(error.is_refusal(), "{error}");
        let live = Live {
            allow_internal: vec![Cidr::parse("127.0.0.0/8").unwrap()],
            ..Live::default()
        };
        let open = Dialer::new(Duration::from_secs(5), live.into_store());
        let stream = open.dial(dest).await.unwrap();
        assert!(stream.nodelay().unwrap());
    }
}
