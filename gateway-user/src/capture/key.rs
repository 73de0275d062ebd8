//! Converting between socket addresses and the kernel's map formats.

use std::{
    io,
    net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6},
    os::{
        fd::{AsFd, AsRawFd as _},
        unix::fs::MetadataExt as _,
    },
    path::Path,
};

use gateway_common::{ConnKey, ConnRecord};

/// The key the proxy uses on accept: the accepted socket's network namespace cookie, its peer
/// (the sandbox socket) and its local address (the listener), IPv4 as IPv4-mapped.
///
/// # Security
/// The netns cookie keeps two sandboxes in different network namespaces that happen to use
/// the same loopback addresses and ports from colliding.
pub fn conn_key(stream: &impl AsFd, peer: SocketAddr, local: SocketAddr) -> io::Result<ConnKey> {
    Ok(ConnKey {
        netns_cookie: netns_cookie(stream)?,
        client_addr: mapped_octets(peer.ip()),
        proxy_addr: mapped_octets(local.ip()),
        client_port: peer.port(),
        proxy_port: local.port(),
        _pad: 0,
    })
}

/// The key of the DNS client map for a datagram the DNS listener received from `client`
/// on a socket in the network namespace `netns_cookie` (see [`netns_cookie`]).
pub fn dns_client_key(netns_cookie: u64, client: SocketAddr) -> ConnKey {
    ConnKey {
        netns_cookie,
        client_addr: mapped_octets(client.ip()),
        proxy_addr: [0; 16],
        client_port: client.port(),
        proxy_port: 0,
        _pad: 0,
    }
}

/// The cgroup id of a cgroup directory: its inode number.
pub fn cgroup_id(path: &Path) -> io::Result<u64> {
    Ok(std::fs::metadata(path)?.ino())
}

/// The original destination of a redirected connection. IPv4 (family `AF_INET`, or an
/// IPv4-mapped address used through an IPv6 socket) comes back as [`SocketAddr::V4`].
pub fn original_destination(rec: &ConnRecord) -> SocketAddr {
    let v6 = std::net::Ipv6Addr::from(rec.orig_addr);
    // connect4/sendmsg4 always store IPv4 mapped, so `family` needs no separate case.
    match v6.to_ipv4_mapped() {
        Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, rec.orig_port)),
        None => SocketAddr::V6(SocketAddrV6::new(v6, rec.orig_port, 0, 0)),
    }
}

/// The 16-byte form the kernel programs store: IPv4 as `::ffff:a.b.c.d`, IPv6 as is.
pub(crate) fn mapped_octets(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// `SO_NETNS_COOKIE` of a socket: identifies the network namespace it lives in.
pub fn netns_cookie(sock: &impl AsFd) -> io::Result<u64> {
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    let fd = sock.as_fd().as_raw_fd();
    // SAFETY: `fd` is a valid borrowed descriptor for the duration of the call, and
    // `cookie`/`len` point to a writable u64 and its size, as SO_NETNS_COOKIE expects.
    #[expect(
        unsafe_code,
        reason = "getsockopt(SO_NETNS_COOKIE) has no safe wrapper"
    )]
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &raw mut len,
        )
    };
    if rc == 0 {
        Ok(cookie)
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr, TcpListener, TcpStream};

    use super::*;

    fn rec(addr: IpAddr, port: u16, family: u16) -> ConnRecord {
        ConnRecord {
            orig_addr: mapped_octets(addr),
            orig_port: port,
            family,
            ..Default::default()
        }
    }

    #[test]
    fn original_destination_table() {
        let v4: IpAddr = Ipv4Addr::new(198, 51, 100, 7).into();
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        let mapped: IpAddr = "::ffff:198.51.100.7".parse().unwrap();
        for (record, want) in [
            (rec(v4, 80, 2), "198.51.100.7:80"),
            (rec(v6, 443, 10), "[2001:db8::7]:443"),
            (rec(mapped, 80, 10), "198.51.100.7:80"),
            (rec(Ipv6Addr::LOCALHOST.into(), 53, 10), "[::1]:53"),
        ] {
            assert_eq!(
                original_destination(&record),
                want.parse::<SocketAddr>().unwrap()
            );
        }
    }

    #[test]
    fn dns_client_keys_match_what_the_egress_program_writes() {
        // The kernel keys IPv4 senders IPv4-mapped and leaves the listener side zero.
        for (client, addr) in [
            ("127.0.0.1:40000", "::ffff:127.0.0.1"),
            ("[::1]:40001", "::1"),
            ("[::ffff:127.0.0.1]:40002", "::ffff:127.0.0.1"),
        ] {
            let client: SocketAddr = client.parse().unwrap();
            let key = dns_client_key(7, client);
            assert_eq!(key.netns_cookie, 7);
            assert_eq!(
                Ipv6Addr::from(key.client_addr),
                addr.parse::<Ipv6Addr>().unwrap()
            );
            assert_eq!(key.client_port, client.port());
            assert_eq!((key.proxy_addr, key.proxy_port, key._pad), ([0; 16], 0, 0));
        }
    }

    #[test]
    fn key_maps_ipv4_and_reads_the_cookie() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let _client = TcpStream::connect(local).unwrap();
        let (stream, peer) = listener.accept().unwrap();
        let key = conn_key(&stream, peer, local).unwrap();
        assert_ne!(key.netns_cookie, 0);
        assert_eq!(key.client_addr, mapped_octets(peer.ip()));
        assert_eq!(
            Ipv6Addr::from(key.proxy_addr),
            Ipv4Addr::LOCALHOST.to_ipv6_mapped()
        );
        assert_eq!(
            (key.client_port, key.proxy_port),
            (peer.port(), local.port())
        );
    }
}
