//! The one dialer: every TCP connection Sluice opens toward an upstream (intercepted
//! requests, passthrough and `tcp_allow` relays, `CONNECT` tunnels) goes through
//! [`Dialer::dial`], which refuses internal destinations, bounds the connect, turns Nagle
//! off, and goes through the connection's upstream proxy when it has one.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_util::either::Either;

use arc_swap::ArcSwap;

use super::egress::{ConnectTo, Egress, NodeProxies, UpstreamProxy};
use super::tunnel::{self, EgressStream};
use crate::audit::{Side, Sided};
use crate::host::Host;
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
    /// The upstream proxy could not be reached or refused the tunnel; nothing went direct.
    #[error("upstream proxy {label}: {what}; nothing was sent direct")]
    Proxy {
        /// The proxy's label.
        label: String,
        /// What happened, or what it answered.
        what: String,
    },
    /// The connection's egress could not be resolved (a proxy named but not defined).
    #[error("{0}")]
    NoEgress(Arc<str>),
    /// The name a `CONNECT` would carry is internal (the proxy would resolve it itself).
    #[error("policy: {name} is a {what}; internal destinations are refused")]
    InternalName {
        /// The name.
        name: String,
        /// What kind of internal name.
        what: &'static str,
    },
}

impl DialError {
    /// Whether the policy refused the destination (nothing was dialled).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            DialError::Internal { .. } | DialError::InternalName { .. }
        )
    }
}

impl Sided for DialError {
    fn side(&self) -> Side {
        match self {
            DialError::Internal { .. } | DialError::InternalName { .. } => Side::Policy,
            DialError::NoEgress(_) => Side::Gateway,
            _ => Side::Upstream,
        }
    }
}

/// An open upstream connection, and the proxy it goes through (`None`: direct).
#[derive(Debug)]
pub struct Dialed {
    /// The connection.
    pub stream: EgressStream,
    /// The proxy it tunnels through.
    pub via: Option<Arc<UpstreamProxy>>,
}

impl DialError {
    /// The label of the upstream proxy that failed, when one did.
    pub fn proxy_label(&self) -> Option<&str> {
        match self {
            DialError::Proxy { label, .. } => Some(label),
            _ => None,
        }
    }
}

/// Opens upstream TCP connections; cheap to clone.
#[derive(Clone, Debug)]
pub struct Dialer {
    connect_timeout: Duration,
    live: LiveStore,
    /// Swapped whole when the API's proxies change.
    proxies: Arc<ArcSwap<NodeProxies>>,
    proxy_tls: Option<Arc<ClientConfig>>,
    /// Checks the names a `CONNECT` would carry (the sandboxes' resolver).
    resolver: Option<crate::dns::Resolver>,
}

impl Dialer {
    /// A dialer giving each connect `connect_timeout`, refusing internal destinations
    /// except the ranges of `live`'s `allow_internal` (read at each dial).
    pub fn new(connect_timeout: Duration, live: LiveStore) -> Dialer {
        Dialer {
            connect_timeout,
            live,
            proxies: Arc::default(),
            proxy_tls: None,
            resolver: None,
        }
    }

    /// The dialer with the node's upstream proxies, the TLS client configuration
    /// `https://` proxies are verified with, and the resolver a `CONNECT`'s name is checked
    /// with (the one sandboxes' DNS uses).
    pub fn with_proxies(
        self,
        proxies: Arc<NodeProxies>,
        tls: Arc<ClientConfig>,
        resolver: crate::dns::Resolver,
    ) -> Dialer {
        Dialer {
            proxies: Arc::new(ArcSwap::new(proxies)),
            proxy_tls: Some(tls),
            resolver: Some(resolver),
            ..self
        }
    }

    /// The node's upstream proxies, as they are now.
    pub fn proxies(&self) -> Arc<NodeProxies> {
        self.proxies.load_full()
    }

    /// Replaces the node's upstream proxies (every clone of this dialer sees the change).
    pub fn set_proxies(&self, proxies: NodeProxies) {
        self.proxies.store(Arc::new(proxies));
    }

    /// The limit on one connect.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Connects to `dest` (for `name`, the host the sandbox asked for, when known) along
    /// `egress`: directly, with Nagle off (SSE, gRPC and WebSocket frames must leave at
    /// once), or through a tunnel of the egress's proxy unless its `no_proxy` covers `dest`.
    ///
    /// # Security
    /// The address checked is the address dialled, or the one the `CONNECT` names: an
    /// internal destination is refused here, before anything is sent, whatever the caller
    /// checked before. A proxy that fails is an error, never a direct fallback. `name` is
    /// the sandbox's word: it counts (for `no_proxy` host entries and the `CONNECT` target)
    /// only when the resolver maps it to `dest`, so pairing a `no_proxy` name with an
    /// address of its choosing cannot send a sandbox's traffic around the proxy.
    pub async fn dial(
        &self,
        dest: SocketAddr,
        name: Option<&Host>,
        egress: &Egress,
    ) -> Result<Dialed, DialError> {
        check_destination(dest, &self.live.load().allow_internal)?;
        self.check_not_a_proxy(dest)?;
        let egress = self.settle(egress);
        let proxy = match &egress {
            Egress::Refused(why) => return Err(DialError::NoEgress(why.clone())),
            Egress::Plan(_) => return Err(DialError::NoEgress("egress unsettled".into())),
            Egress::Direct => None,
            Egress::Proxy(proxy) => Some(proxy),
        };
        let Some(proxy) = proxy else {
            return self.direct(dest).await;
        };
        let bound = match name {
            Some(name) if !name.is_ip() && self.name_binds(name, dest).await => Some(name),
            _ => None,
        };
        if proxy.bypassed(bound, dest) {
            return self.direct(dest).await;
        }
        let target = match (proxy.connect_to, bound) {
            (ConnectTo::Name, Some(name)) => {
                check_name(name)?;
                format!("{name}:{}", dest.port())
            }
            _ => dest.to_string(),
        };
        let tls = self.proxy_tls.as_ref();
        let tunnel = tunnel::open(proxy, tls, &target, self.connect_timeout).await?;
        Ok(Dialed {
            stream: Either::Right(tunnel),
            via: Some(proxy.clone()),
        })
    }

    /// `egress` as it stands now: a [`Egress::Plan`] resolved against the node's proxies of
    /// this moment, any other as it is.
    pub fn settle(&self, egress: &Egress) -> Egress {
        match egress {
            Egress::Plan(plan) => plan.settle(&self.proxies.load()),
            settled => settled.clone(),
        }
    }

    /// Refuses a destination that is one of the node's upstream proxies (given by address):
    /// a sandbox speaking to the proxy itself would borrow the node's identity there (a
    /// proxy that trusts its clients by address), even where `allow_internal` lets it reach
    /// the proxy's network.
    fn check_not_a_proxy(&self, dest: SocketAddr) -> Result<(), DialError> {
        let proxies = self.proxies.load();
        let is_proxy = proxies
            .all()
            .map(|p| (&p.url.host, p.url.port))
            .chain(proxies.broken_addresses.iter().map(|(h, p)| (h, *p)))
            .any(|(host, port)| host.ip() == Some(dest.ip()) && port == dest.port());
        if is_proxy {
            return Err(DialError::Internal {
                destination: dest,
                what: "upstream proxy of this node".to_owned(),
            });
        }
        Ok(())
    }

    async fn direct(&self, dest: SocketAddr) -> Result<Dialed, DialError> {
        Ok(Dialed {
            stream: Either::Left(self.dial_direct(dest).await?),
            via: None,
        })
    }

    /// Opens (and closes) a tunnel through `proxy` to `target` (`host:port`): what
    /// `sluice proxy test` does. The target is checked like a dial's.
    pub async fn probe(&self, proxy: &UpstreamProxy, target: &str) -> Result<(), DialError> {
        let (host, port) = target
            .rsplit_once(':')
            .and_then(|(h, p)| Some((Host::parse(h).ok()?, p.parse::<u16>().ok()?)))
            .ok_or_else(|| DialError::Proxy {
                label: proxy.label.clone(),
                what: format!("test target {target:?} is not HOST:PORT"),
            })?;
        match host.ip() {
            Some(ip) => {
                check_destination(SocketAddr::new(ip, port), &self.live.load().allow_internal)?
            }
            None => check_name(&host)?,
        }
        let target = format!("{}:{port}", host_authority(&host));
        tunnel::open(
            proxy,
            self.proxy_tls.as_ref(),
            &target,
            self.connect_timeout,
        )
        .await
        .map(drop)
    }

    /// Whether the `CONNECT` may name `name` rather than `dest`: the name resolves (with
    /// the sandboxes' resolver) to `dest` among addresses none of which is internal.
    /// Otherwise the proxy would resolve the name to somewhere else than the address that
    /// was checked (a sandbox may pair any SNI with any allowed address), so the checked
    /// address is named instead.
    async fn name_binds(&self, name: &Host, dest: SocketAddr) -> bool {
        let Some(resolver) = &self.resolver else {
            return false;
        };
        let Ok(addrs) = resolver.lookup(name.as_str()).await else {
            return false;
        };
        let allow = &self.live.load().allow_internal;
        addrs.contains(&dest.ip())
            && addrs
                .iter()
                .all(|ip| check_destination(SocketAddr::new(*ip, dest.port()), allow).is_ok())
    }

    async fn dial_direct(&self, dest: SocketAddr) -> Result<TcpStream, DialError> {
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

/// `host`, IPv6 in brackets.
fn host_authority(host: &Host) -> String {
    match host.ip() {
        Some(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
        _ => host.to_string(),
    }
}

/// Refuses names a proxy would resolve to the proxy's own host or network: `localhost` and
/// names under it.
fn check_name(name: &Host) -> Result<(), DialError> {
    let text = name.as_str();
    if text == "localhost" || text.ends_with(".localhost") {
        return Err(DialError::InternalName {
            name: text.to_owned(),
            what: "loopback name",
        });
    }
    Ok(())
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
        let error = closed
            .dial(dest, None, &Egress::Direct)
            .await
            .map(|d| d.via.is_none())
            .unwrap_err();
        assert!(error.is_refusal(), "{error}");
        let live = Live {
            allow_internal: vec![Cidr::parse("127.0.0.0/8").unwrap()],
            ..Live::default()
        };
        let open = Dialer::new(Duration::from_secs(5), live.into_store());
        let dialed = open.dial(dest, None, &Egress::Direct).await.unwrap();
        assert!(dialed.via.is_none());
        assert!(matches!(dialed.stream, Either::Left(ref tcp) if tcp.nodelay().unwrap()));
    }
}
