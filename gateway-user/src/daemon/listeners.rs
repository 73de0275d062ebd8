//! Binding the transparent and DNS listeners, in the node's or a sandbox's namespace.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use crate::sandbox::netns::{self, NetnsError};

/// The sockets one namespace needs: TCP for the transparent proxy, UDP for DNS, each on
/// `127.0.0.1` and `[::1]`.
#[derive(Debug)]
pub struct ListenerSet {
    /// Transparent listeners.
    pub tcp: Vec<std::net::TcpListener>,
    /// DNS sockets.
    pub udp: Vec<std::net::UdpSocket>,
}

/// Binds the set in the calling thread's namespace. IPv6 loopback is skipped (with a
/// warning) where the namespace has no `::1`: sandboxes there simply cannot connect over IPv6.
pub fn bind_here(proxy_port: u16, dns_port: u16) -> std::io::Result<ListenerSet> {
    let mut set = ListenerSet {
        tcp: Vec::new(),
        udp: Vec::new(),
    };
    let v4 = Ipv4Addr::LOCALHOST.into();
    let v6 = Ipv6Addr::LOCALHOST.into();
    set.tcp.push(bind_tcp(SocketAddr::new(v4, proxy_port))?);
    set.udp.push(bind_udp(SocketAddr::new(v4, dns_port))?);
    match bind_tcp(SocketAddr::new(v6, proxy_port)) {
        Ok(l) => {
            set.tcp.push(l);
            set.udp.push(bind_udp(SocketAddr::new(v6, dns_port))?);
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
            tracing::warn!("listeners: no [::1] in this namespace; IPv6 sandboxes get refused");
        }
        Err(e) => return Err(e),
    }
    Ok(set)
}

/// Binds the set inside the namespace at `path` (on a helper thread).
pub fn bind_in(path: &Path, proxy_port: u16, dns_port: u16) -> Result<ListenerSet, NetnsError> {
    netns::run_in(path, move || bind_here(proxy_port, dns_port))
}

fn bind_tcp(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .map_err(|e| annotate(e, addr, "tcp"))?;
    socket.listen(4096)?;
    Ok(socket.into())
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr).map_err(|e| annotate(e, addr, "udp"))?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

fn annotate(e: std::io::Error, addr: SocketAddr, proto: &str) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("bind {proto} {addr}: {e}"))
}
