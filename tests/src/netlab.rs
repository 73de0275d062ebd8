//! A two-namespace network lab: "node" (daemon and sandboxes) and "net" (test hosts).
//!
//! The namespaces are joined by one veth and have no default route, so nothing a test sends
//! can leave the lab even if a redirect fails. Addresses are the constants in
//! [`crate::addrs`]; every lab uses the same ones because each lab has its own namespaces.

use std::ffi::OsStr;
use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sched::{CloneFlags, setns};

use crate::addrs::{self, NET_V4, NET_V6, NODE_V4, NODE_V6, TEST_HOSTS};

/// Veth name inside the node namespace.
pub const NODE_VETH: &str = "sl-node0";
/// Veth name inside the net namespace.
pub const NET_VETH: &str = "sl-net0";

/// Errors from building or using a [`NetLab`].
#[derive(Debug, thiserror::Error)]
pub enum NetLabError {
    /// The name prefix is unusable in a namespace name.
    #[error("netlab: prefix {0:?} must be 1-20 chars of [A-Za-z0-9_-]")]
    BadPrefix(String),
    /// An `ip` command could not be run or failed.
    #[error("netlab: `ip {args}` failed: {detail} (is iproute2 installed and are we root?)")]
    Ip {
        /// The arguments given to `ip`.
        args: String,
        /// Exit status and stderr, or the spawn error.
        detail: String,
    },
    /// The namespace file could not be opened.
    #[error("netlab: open {path}: {source} (does the namespace still exist?)")]
    OpenNetns {
        /// Path of the namespace file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `setns` refused to enter the namespace.
    #[error("netlab: setns into {path}: {source} (needs CAP_SYS_ADMIN)")]
    Setns {
        /// Path of the namespace file.
        path: PathBuf,
        /// The errno.
        source: nix::Error,
    },
    /// A lab check failed: the lab is not isolated as it must be.
    #[error("netlab: isolation check failed: {0}")]
    Isolation(String),
    /// An address outside the test ranges was requested.
    #[error(
        "netlab: {0} is not a test address (use 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32)"
    )]
    NotTestAddress(IpAddr),
    /// A thread could not be started (or died before entering the namespace).
    #[error("netlab: start thread: {0}")]
    Thread(std::io::Error),
    /// Creating a socket inside a namespace failed.
    #[error("netlab: socket in {ns}: {source}")]
    Socket {
        /// The namespace name.
        ns: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A pair of network namespaces joined by a veth; both are deleted on drop.
///
/// Layout: node `sl-node0` has 198.51.100.1/24 and 2001:db8:1::1/64, plus routes to
/// 203.0.113.0/24 and 2001:db8:2::/64 via the net side; net `sl-net0` has 198.51.100.2/24,
/// 2001:db8:1::2/64 and every address in [`addrs::TEST_HOSTS`]. No default route anywhere.
#[must_use = "the namespaces are deleted when this is dropped"]
#[derive(Debug)]
pub struct NetLab {
    node: String,
    net: String,
    created: Vec<String>,
}

impl NetLab {
    /// Creates a fresh lab named `<prefix>-node-<pid>-<n>` / `<prefix>-net-<pid>-<n>` and
    /// verifies it: no default route, and `ip route get` from node to every test host names
    /// the lab's veth. Whatever was created is removed if this fails.
    ///
    /// # Security
    /// Only documentation ranges are configured; the veth never exists in the host namespace.
    pub fn new(name_prefix: &str) -> Result<NetLab, NetLabError> {
        crate::share_temp_files_with_sandboxes();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if name_prefix.is_empty() || name_prefix.len() > 20 || !name_prefix.chars().all(ok) {
            return Err(NetLabError::BadPrefix(name_prefix.to_owned()));
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let mut lab = NetLab {
            node: format!("{name_prefix}-node-{pid}-{n}"),
            net: format!("{name_prefix}-net-{pid}-{n}"),
            created: Vec::new(),
        };
        lab.build()?;
        lab.verify()?;
        Ok(lab)
    }

    /// Name of the node namespace (daemon and sandboxes go here).
    pub fn node_ns(&self) -> &str {
        &self.node
    }

    /// Name of the net namespace (fake upstreams go here).
    pub fn net_ns(&self) -> &str {
        &self.net
    }

    /// `/run/netns/<node>`, for `setns` or `nsenter --net=`.
    pub fn node_ns_path(&self) -> PathBuf {
        netns_path(&self.node)
    }

    /// `/run/netns/<net>`.
    pub fn net_ns_path(&self) -> PathBuf {
        netns_path(&self.net)
    }

    /// A command that runs `program` in the node namespace (`nsenter --net=<path> -- program`).
    ///
    /// Uses `nsenter` rather than `ip netns exec` on purpose: `ip netns exec` remounts `/sys`,
    /// which hides the cgroup2 and bpffs mounts the daemon needs.
    pub fn exec_in_node(&self, program: impl AsRef<OsStr>) -> Command {
        exec_in(&self.node_ns_path(), program.as_ref())
    }

    /// A command that runs `program` in the net namespace.
    pub fn exec_in_net(&self, program: impl AsRef<OsStr>) -> Command {
        exec_in(&self.net_ns_path(), program.as_ref())
    }

    /// Runs `f` on a fresh thread inside the node namespace; see [`in_netns`].
    pub fn in_node<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, NetLabError> {
        in_netns(&self.node_ns_path(), f)
    }

    /// Runs `f` on a fresh thread inside the net namespace; see [`in_netns`].
    pub fn in_net<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, NetLabError> {
        in_netns(&self.net_ns_path(), f)
    }

    /// Starts `f` on a new thread in the node namespace; see [`spawn_in_netns`].
    pub fn spawn_in_node<T: Send + 'static>(
        &self,
        name: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<NetnsThread<T>, NetLabError> {
        spawn_in_netns(&self.node_ns_path(), name, f)
    }

    /// An unconnected TCP socket living in the node namespace, of `target`'s family.
    /// Connect it from any tokio runtime: the socket keeps its namespace.
    pub fn node_tcp_socket(
        &self,
        target: SocketAddr,
    ) -> Result<tokio::net::TcpSocket, NetLabError> {
        let made = self.in_node(|| match target {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        })?;
        made.map_err(|source| NetLabError::Socket {
            ns: self.node.clone(),
            source,
        })
    }

    /// Connects to `target` from the node namespace (as a sandbox would, minus the cgroup).
    pub async fn connect_from_node(
        &self,
        target: SocketAddr,
    ) -> std::io::Result<tokio::net::TcpStream> {
        let socket = self
            .node_tcp_socket(target)
            .map_err(std::io::Error::other)?;
        socket.connect(target).await
    }

    /// Adds one more test-host address on the net side (IPv4 /32 or IPv6 /128) and checks
    /// that the node namespace routes it through the lab veth.
    pub fn add_host(&self, ip: IpAddr) -> Result<(), NetLabError> {
        if !addrs::is_test_address(ip) {
            return Err(NetLabError::NotTestAddress(ip));
        }
        add_addr(&self.net, NET_VETH, ip)?;
        self.check_route(ip)
    }

    /// The device `ip route get <ip>` names in the node namespace.
    pub fn route_dev(&self, ip: IpAddr) -> Result<String, NetLabError> {
        let out = ip_cmd(&["-n", &self.node, "route", "get", &ip.to_string()])?;
        let mut words = out.split_whitespace();
        while let Some(word) = words.next() {
            if word == "dev" {
                return words.next().map(str::to_owned).ok_or_else(|| {
                    NetLabError::Isolation(format!("no device after `dev` in {out:?}"))
                });
            }
        }
        Err(NetLabError::Isolation(format!(
            "route to {ip} names no device: {out:?}"
        )))
    }

    fn build(&mut self) -> Result<(), NetLabError> {
        for ns in [self.node.clone(), self.net.clone()] {
            ip_cmd(&["netns", "add", &ns])?;
            self.created.push(ns);
        }
        let (node, net) = (self.node.as_str(), self.net.as_str());
        ip_cmd(&[
            "-n", node, "link", "add", NODE_VETH, "type", "veth", "peer", "name", NET_VETH,
            "netns", net,
        ])?;
        for (ns, veth, v4, v6) in [
            (node, NODE_VETH, NODE_V4, NODE_V6),
            (net, NET_VETH, NET_V4, NET_V6),
        ] {
            ip_cmd(&["-n", ns, "link", "set", "lo", "up"])?;
            ip_cmd(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", veth])?;
            ip_cmd(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                veth,
                "nodad",
            ])?;
        }
        for host in TEST_HOSTS {
            add_addr(net, NET_VETH, host)?;
        }
        for (ns, veth) in [(node, NODE_VETH), (net, NET_VETH)] {
            ip_cmd(&["-n", ns, "link", "set", veth, "up"])?;
        }
        // The "far" hosts (203.0.113.10, 2001:db8:2::10) sit behind the net side, one hop away.
        for (dst, via) in [
            ("203.0.113.0/24", NET_V4.to_string()),
            ("2001:db8:2::/64", NET_V6.to_string()),
        ] {
            ip_cmd(&[
                "-n", node, "route", "add", dst, "via", &via, "dev", NODE_VETH,
            ])?;
        }
        Ok(())
    }

    fn verify(&self) -> Result<(), NetLabError> {
        for ns in [&self.node, &self.net] {
            for family in ["-4", "-6"] {
                let out = ip_cmd(&["-n", ns, family, "route", "show", "default"])?;
                if !out.trim().is_empty() {
                    return Err(NetLabError::Isolation(format!(
                        "{ns} has a default route: {out}"
                    )));
                }
            }
        }
        for host in TEST_HOSTS
            .into_iter()
            .chain([IpAddr::V4(addrs::BLACKHOLE_V4)])
        {
            self.check_route(host)?;
        }
        Ok(())
    }

    fn check_route(&self, ip: IpAddr) -> Result<(), NetLabError> {
        let dev = self.route_dev(ip)?;
        if dev != NODE_VETH {
            return Err(NetLabError::Isolation(format!(
                "route to {ip} uses {dev}, not {NODE_VETH}"
            )));
        }
        Ok(())
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        for ns in self.created.drain(..) {
            if let Err(err) = ip_cmd(&["netns", "del", &ns]) {
                eprintln!("netlab: cleanup: {err}");
            }
        }
    }
}

/// Runs `f` on a fresh thread that first joins the network namespace at `path`, and returns
/// its result. Sockets created in `f` live in that namespace for good, so a listener bound
/// here can be served from any thread or runtime afterwards. A panic in `f` is re-raised.
pub fn in_netns<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> Result<T, NetLabError> {
    let file = File::open(path).map_err(|source| NetLabError::OpenNetns {
        path: path.to_owned(),
        source,
    })?;
    std::thread::scope(|scope| {
        let worker = scope.spawn(move || {
            setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| NetLabError::Setns {
                path: path.to_owned(),
                source,
            })?;
            Ok(f())
        });
        worker
            .join()
            .unwrap_or_else(|payload| std::panic::resume_unwind(payload))
    })
}

/// Starts `f` on a new named thread inside the network namespace at `path` and returns its
/// handle once the thread is in the namespace (e.g. to run an in-process daemon with its own
/// runtime in the node namespace). Threads `f` spawns inherit the namespace.
pub fn spawn_in_netns<T: Send + 'static>(
    path: &Path,
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<NetnsThread<T>, NetLabError> {
    let file = File::open(path).map_err(|source| NetLabError::OpenNetns {
        path: path.to_owned(),
        source,
    })?;
    let (tx, rx) = std::sync::mpsc::channel();
    let spawn_error = NetLabError::Thread;
    let handle = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let entered = setns(&file, CloneFlags::CLONE_NEWNET);
            drop(file);
            let ok = entered.is_ok();
            let _ = tx.send(entered);
            // Never run `f` outside the namespace.
            ok.then(f)
        })
        .map_err(spawn_error)?;
    match rx.recv() {
        Ok(Ok(())) => Ok(NetnsThread { handle }),
        Ok(Err(source)) => Err(NetLabError::Setns {
            path: path.to_owned(),
            source,
        }),
        Err(_) => Err(spawn_error(std::io::Error::other(
            "thread died before setns",
        ))),
    }
}

/// A thread started by [`spawn_in_netns`].
#[derive(Debug)]
pub struct NetnsThread<T> {
    handle: std::thread::JoinHandle<Option<T>>,
}

impl<T> NetnsThread<T> {
    /// Waits for the thread; `Err` carries its panic payload.
    pub fn join(self) -> std::thread::Result<T> {
        let never_entered =
            || -> Box<dyn std::any::Any + Send> { Box::new("thread never entered the namespace") };
        self.handle
            .join()
            .and_then(|ran| ran.ok_or_else(never_entered))
    }

    /// Whether the thread has finished.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

/// `/run/netns/<name>`.
pub fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

fn exec_in(path: &Path, program: &OsStr) -> Command {
    let mut cmd = Command::new("nsenter");
    let mut net = std::ffi::OsString::from("--net=");
    net.push(path);
    cmd.arg(net).arg("--").arg(program);
    cmd
}

fn add_addr(ns: &str, dev: &str, ip: IpAddr) -> Result<(), NetLabError> {
    if !addrs::is_test_address(ip) {
        return Err(NetLabError::NotTestAddress(ip));
    }
    match ip {
        IpAddr::V4(v4) => ip_cmd(&["-n", ns, "addr", "add", &format!("{v4}/32"), "dev", dev]),
        IpAddr::V6(v6) => ip_cmd(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{v6}/128"),
            "dev",
            dev,
            "nodad",
        ]),
    }
    .map(drop)
}

/// Runs `ip <args>` and returns stdout; a non-zero exit is an error carrying stderr.
fn ip_cmd(args: &[&str]) -> Result<String, NetLabError> {
    let fail = |detail: String| NetLabError::Ip {
        args: args.join(" "),
        detail,
    };
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(fail(format!("{}: {}", out.status, stderr.trim())));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
