//! Test support for the kernel capture tests: each test gets its own parent cgroup, pin
//! directory and network namespace (loopback only, no default route), all removed on drop.
//!
//! These tests need root on a real kernel; they never touch the default `/sys/fs/bpf/sluice`
//! or `sluice.sandboxes`, nor the cgroup2 root.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test support"
)]

use std::{
    collections::BTreeMap,
    fs::{self, File, OpenOptions},
    io,
    net::{SocketAddr, TcpListener, TcpStream},
    os::{
        fd::{AsRawFd as _, BorrowedFd},
        unix::process::CommandExt as _,
    },
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use gateway_common::SandboxEntry;
use nix::sched::CloneFlags;
use sluice::capture::{Capture, CaptureConfig, cgroup_id, cgroup2_mount};

/// Unique names per test process and test.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// One test's cgroups, pin directory and network namespace. Dropping it kills what runs in
/// its cgroups and removes everything, even after a failed assertion.
#[derive(Debug)]
pub struct TestEnv {
    /// `sluice-test-<pid>-<n>`: the name of the netns, the parent cgroup and the pin dir.
    pub name: String,
    /// The capture configuration (ports are set by [`TestEnv::config`]).
    pub parent: PathBuf,
    /// The pin directory under `/sys/fs/bpf`.
    pub pin_dir: PathBuf,
    /// Cgroups created outside the parent (for `attach_extra`).
    extras: Vec<PathBuf>,
    /// Whether [`TestEnv::wire`] made the peer namespace `<name>-net`.
    wired: bool,
    netns: File,
}

/// A second network namespace joined to the test namespace by a veth pair: the "wire" a
/// packet that escapes the sandbox would travel on. Addresses from 2001:db8:1::/64 only; no
/// default route on either side.
#[derive(Debug)]
pub struct Wire {
    /// The peer namespace's name (under `/run/netns`).
    pub netns: String,
    /// The veth end inside the peer namespace.
    pub peer_if: String,
    /// The test namespace's address on the veth.
    pub local: std::net::Ipv6Addr,
    /// The peer namespace's address on the veth.
    pub peer: std::net::Ipv6Addr,
}

impl TestEnv {
    /// Create the network namespace (loopback up) and pick the names.
    pub fn new() -> Self {
        let name = format!(
            "sluice-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run("ip", &["netns", "add", &name]);
        run("ip", &["-n", &name, "link", "set", "lo", "up"]);
        let netns = File::open(format!("/run/netns/{name}")).expect("open netns");
        let parent = cgroup2_mount().expect("cgroup2 mount").join(&name);
        let pin_dir = PathBuf::from("/sys/fs/bpf").join(&name);
        Self {
            name,
            parent,
            pin_dir,
            extras: Vec::new(),
            wired: false,
            netns,
        }
    }

    /// Join the test namespace to a new peer namespace with a veth pair (removed on drop).
    pub fn wire(&mut self) -> Wire {
        let netns = format!("{}-net", self.name);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let (local_if, peer_if) = (
            format!("slw{}a{n}", std::process::id() % 10000),
            format!("slw{}b{n}", std::process::id() % 10000),
        );
        run("ip", &["netns", "add", &netns]);
        self.wired = true;
        run(
            "ip",
            &[
                "link", "add", &local_if, "netns", &self.name, "type", "veth", "peer", "name",
                &peer_if, "netns", &netns,
            ],
        );
        let wire = Wire {
            netns,
            peer_if,
            local: "2001:db8:1::1".parse().unwrap(),
            peer: "2001:db8:1::2".parse().unwrap(),
        };
        for (ns, ifname, addr) in [
            (&self.name, &local_if, wire.local),
            (&wire.netns, &wire.peer_if, wire.peer),
        ] {
            run(
                "ip",
                &[
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{addr}/64"),
                    "dev",
                    ifname,
                    "nodad",
                ],
            );
            run("ip", &["-n", ns, "link", "set", ifname, "up"]);
        }
        wire
    }

    /// The capture configuration for this test.
    pub fn config(&self, proxy_port: u16, dns_port: u16) -> CaptureConfig {
        CaptureConfig {
            parent_cgroup: self.parent.clone(),
            pin_dir: self.pin_dir.clone(),
            proxy_port,
            dns_port,
            control_port: None,
            explicit_proxy_port: None,
            conn_cap_per_sandbox: None,
        }
    }

    /// Install the capture for this test.
    pub fn install(&self, proxy_port: u16, dns_port: u16) -> Capture {
        Capture::install(&self.config(proxy_port, dns_port))
            .unwrap_or_else(|e| panic!("install: {e}"))
    }

    /// Run `f` on a thread inside the test network namespace (sockets it creates stay there).
    pub fn in_netns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(&self.netns, CloneFlags::CLONE_NEWNET).expect("setns");
                f()
            })
            .join()
            .expect("netns thread")
        })
    }

    /// A TCP listener on `addr` inside the test netns.
    pub fn listen(&self, addr: &str) -> TcpListener {
        self.in_netns(|| TcpListener::bind(addr).expect("bind"))
    }

    /// A cgroup below the parent (created with its parents).
    pub fn cgroup(&self, rel: &str) -> PathBuf {
        let path = self.parent.join(rel);
        fs::create_dir_all(&path).expect("create cgroup");
        path
    }

    /// A cgroup outside the parent, directly below the cgroup2 mount.
    pub fn extra_cgroup(&mut self) -> PathBuf {
        let path = cgroup2_mount()
            .unwrap()
            .join(format!("{}-extra", self.name));
        fs::create_dir_all(&path).expect("create cgroup");
        self.extras.push(path.clone());
        path
    }

    /// Create a sandbox cgroup below the parent and register it.
    pub fn sandbox(&self, capture: &Capture, rel: &str, sandbox_id: u64) -> PathBuf {
        let path = self.cgroup(rel);
        register(capture, &path, sandbox_id);
        path
    }

    /// Start `python3 -c script` in the test netns; in `cgroup` if given (born there).
    pub fn spawn_python(&self, cgroup: Option<&Path>, script: &str) -> Child {
        let mut cmd = Command::new(python());
        cmd.arg("-c").arg(script);
        self.spawn(cgroup, cmd)
    }

    /// Start `cmd` in the test netns; in `cgroup` if given (born there). Output is piped.
    pub fn spawn(&self, cgroup: Option<&Path>, mut cmd: Command) -> Child {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let procs = cgroup.map(|c| {
            OpenOptions::new()
                .write(true)
                .open(c.join("cgroup.procs"))
                .expect("open cgroup.procs")
        });
        let ns_fd = self.netns.as_raw_fd();
        let procs_fd = procs.as_ref().map(|f| f.as_raw_fd());
        // SAFETY: the closure only makes two syscalls (setns, write) on fds that stay open
        // until `spawn` returns; it allocates nothing.
        #[expect(
            unsafe_code,
            reason = "pre_exec: join the netns and cgroup before exec"
        )]
        unsafe {
            cmd.pre_exec(move || {
                nix::sched::setns(BorrowedFd::borrow_raw(ns_fd), CloneFlags::CLONE_NEWNET)?;
                if let Some(fd) = procs_fd {
                    nix::unistd::write(BorrowedFd::borrow_raw(fd), b"0")?;
                }
                Ok(())
            });
        }
        cmd.spawn().expect("spawn")
    }
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        for cg in self.extras.iter().chain(std::iter::once(&self.parent)) {
            kill_cgroup(cg);
        }
        let cfg = self.config(0, 0);
        if let Err(e) = Capture::uninstall(&cfg) {
            eprintln!("cleanup: uninstall: {e}");
        }
        remove_tree(&self.pin_dir, |p| fs::remove_file(p));
        for cg in self.extras.iter().chain(std::iter::once(&self.parent)) {
            remove_tree(cg, |_| Ok(()));
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        if self.wired {
            let _ = Command::new("ip")
                .args(["netns", "del", &format!("{}-net", self.name)])
                .status();
        }
    }
}

/// Register the cgroup at `path` as sandbox `sandbox_id`.
pub fn register(capture: &Capture, path: &Path, sandbox_id: u64) {
    let id = cgroup_id(path).expect("cgroup id");
    capture
        .register_sandbox(
            id,
            SandboxEntry {
                sandbox_id,
                ..Default::default()
            },
        )
        .expect("register");
}

/// The real python3 executable (not a pyenv shim, so the child's pid is python's own).
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 is needed by the vm tests");
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// Start `python3 -c script args...` in the network namespace `netns` (not in a sandbox),
/// with piped output.
pub fn spawn_python_in(netns: &str, script: &str, args: &[&str]) -> Child {
    Command::new("nsenter")
        .arg(format!("--net=/run/netns/{netns}"))
        .arg(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nsenter")
}

/// Read one line of a child's stdout (without the newline); fails the test at end of output.
pub fn read_line(child: &mut Child) -> String {
    use std::io::Read as _;
    let out = child.stdout.as_mut().expect("piped stdout");
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while out.read(&mut byte).expect("read child stdout") == 1 {
        if byte[0] == b'\n' {
            return String::from_utf8_lossy(&line).into_owned();
        }
        line.push(byte[0]);
    }
    panic!(
        "child ended before a full line: {}",
        String::from_utf8_lossy(&line)
    );
}

/// Wait for a child, failing the test with its stderr if it did not exit successfully.
pub fn finish(child: Child) -> String {
    let Output {
        status,
        stdout,
        stderr,
    } = wait_timeout(child, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    assert!(
        status.success(),
        "child failed: {status}\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&stderr)
    );
    stdout
}

/// Wait for a child at most `limit`, killing it after that.
pub fn wait_timeout(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("wait")
}

/// Accept one connection within `limit`.
pub fn accept_timeout(listener: &TcpListener, limit: Duration) -> (TcpStream, SocketAddr) {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + limit;
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                stream.set_nonblocking(false).unwrap();
                return (stream, peer);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// A free TCP port in the test netns (nothing listens on it afterwards).
pub fn free_port(env: &TestEnv) -> u16 {
    env.listen("127.0.0.1:0").local_addr().unwrap().port()
}

/// `bpftool cgroup show <cgroup>`: attached program name → how many times.
pub fn attached_programs(cgroup: &Path) -> BTreeMap<String, usize> {
    let out = Command::new("bpftool")
        .args(["-j", "cgroup", "show"])
        .arg(cgroup)
        .output()
        .expect("bpftool");
    assert!(
        out.status.success(),
        "bpftool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut counts = BTreeMap::new();
    if text.trim().is_empty() {
        return counts;
    }
    let json: serde_json::Value = serde_json::from_str(&text).expect("bpftool json");
    for prog in json.as_array().into_iter().flatten() {
        let name = prog["name"].as_str().unwrap_or("?").to_owned();
        *counts.entry(name).or_insert(0) += 1;
    }
    counts
}

fn run(cmd: &str, args: &[&str]) {
    let status = Command::new(cmd).args(args).status().expect(cmd);
    assert!(status.success(), "{cmd} {args:?}: {status}");
}

/// Kill every process in a cgroup subtree (`cgroup.kill`, kernel 5.14+).
fn kill_cgroup(cg: &Path) {
    if cg.exists() {
        let _ = fs::write(cg.join("cgroup.kill"), "1");
    }
}

/// Remove a directory tree deepest first, with `remove_leaf` for non-directories; retries
/// briefly while killed processes leave their cgroups.
fn remove_tree(root: &Path, remove_leaf: fn(&Path) -> io::Result<()>) {
    fn walk(dir: &Path, remove_leaf: fn(&Path) -> io::Result<()>) {
        if let Ok(rd) = fs::read_dir(dir) {
            for entry in rd.flatten() {
                let path = entry.path();
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&path, remove_leaf);
                } else {
                    let _ = remove_leaf(&path);
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while fs::remove_dir(dir).is_err() && dir.exists() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
    }
    if root.exists() {
        walk(root, remove_leaf);
    }
}
