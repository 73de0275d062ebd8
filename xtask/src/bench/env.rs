//! The bench's world: two network namespaces, a bench CA, the upstreams, and commands that
//! run in the node namespace with the bench's host names.
//!
//! Host names resolve through a private `/etc/hosts` bind-mounted in a mount namespace of
//! each client (so no DNS is in the measured path and the machine's file is untouched):
//!
//! | name | address | served by |
//! |---|---|---|
//! | `bench.test`, `*.bench.test` | 203.0.113.10:443 | nginx (h1 + h2, `/small`, `/big.bin`) |
//! | `app.bench.test` | 198.51.100.11:443 | Rust fake (`/sse` with send stamps, `/upload` sink) |
//! | `pass.bench.test` | 198.51.100.12:443 | nginx, on Sluice's passthrough list |
//! | (none) | 198.51.100.10:5201 | iperf3 server (opaque TCP, Sluice `tcp_allow`) |
//! | `hap.bench.test` | 127.0.0.1:8443/8444 | HAProxy (its certificate from the bench CA) |

use std::ffi::OsStr;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tests::upstream::{self, RunningUpstream};
use tests::{NetLab, TestCa, addrs};

/// Bytes of the large body (W3, W5).
pub const BIG_BYTES: u64 = 100 * 1024 * 1024;
/// Events per SSE stream (W4).
pub const SSE_EVENTS_FULL: usize = 500;
/// Events per SSE stream in `--quick` runs.
pub const SSE_EVENTS_QUICK: usize = 100;
/// Time between two events of one stream.
pub const SSE_INTERVAL: Duration = Duration::from_millis(10);

const HOSTS: &str = "127.0.0.1 localhost hap.bench.test\n\
                     203.0.113.10 bench.test\n\
                     198.51.100.11 app.bench.test\n\
                     198.51.100.12 pass.bench.test\n";

/// The namespaces, files and upstream servers of one bench run; all removed on drop.
#[derive(Debug)]
pub struct Env {
    /// Processes started in the namespaces (dropped first: they keep the namespaces busy).
    _servers: Vec<Spawned>,
    _app: RunningUpstream,
    /// The bench CA in PEM.
    pub ca_file: PathBuf,
    /// `/etc/hosts` as the clients see it.
    pub hosts_file: PathBuf,
    /// The 100 MB file nginx serves as `/big.bin` (and clients upload).
    pub big_file: PathBuf,
    /// The repository's `bench/` directory (configuration templates).
    pub templates: PathBuf,
    /// The node and net namespaces.
    pub lab: NetLab,
    /// Scratch directory of this run, under [`RUNS_DIR`] (world-readable: Squid drops
    /// privileges, and clients in `sluice exec` sandboxes read the CA and the upload file).
    pub dir: tempfile::TempDir,
}

/// Where runs keep their scratch directories: not under `/tmp`, which a `sluice exec`
/// sandbox sees as its own empty one.
const RUNS_DIR: &str = "/var/cache/sluice-bench/runs";

impl Env {
    /// Creates the namespaces, the CA, the files and starts nginx, the SSE/upload fake and
    /// the iperf3 server.
    pub fn start(quick: bool) -> anyhow::Result<Env> {
        std::fs::create_dir_all(RUNS_DIR).with_context(|| format!("bench: create {RUNS_DIR}"))?;
        std::fs::set_permissions(RUNS_DIR, std::fs::Permissions::from_mode(0o755))?;
        let dir = tempfile::Builder::new()
            .prefix("sluice-bench-")
            .tempdir_in(RUNS_DIR)?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let lab = NetLab::new("bench").context("bench: create the network namespaces")?;
        let ca = TestCa::named("Sluice bench CA").context("bench: create the bench CA")?;
        let ca_file = ca.write_pem(dir.path(), "bench-ca.pem")?;
        let hosts_file = dir.path().join("hosts");
        std::fs::write(&hosts_file, HOSTS)?;
        let templates = crate::cmd::workspace_root().join("bench");

        let upstream = ca.issue(&[
            "bench.test",
            "*.bench.test",
            "203.0.113.10",
            "198.51.100.12",
        ])?;
        std::fs::write(dir.path().join("upstream.pem"), upstream.chain_pem())?;
        std::fs::write(dir.path().join("upstream.key"), upstream.key_pem())?;
        let hap = ca.issue(&["hap.bench.test"])?;
        std::fs::write(
            dir.path().join("haproxy.pem"),
            format!("{}{}", hap.chain_pem(), hap.key_pem()),
        )?;
        let www = dir.path().join("www");
        std::fs::create_dir_all(&www)?;
        std::fs::create_dir_all(dir.path().join("nginx-tmp"))?;
        let big_file = www.join("big.bin");
        write_big_file(&big_file, BIG_BYTES)?;

        let mut env = Env {
            _servers: Vec::new(),
            _app: start_app(&lab, &ca, quick)?,
            ca_file,
            hosts_file,
            big_file,
            templates,
            lab,
            dir,
        };
        let conf = env.render("upstream/nginx.conf", "nginx.conf")?;
        let mut nginx = env.lab.exec_in_net("nginx");
        nginx.arg("-c").arg(&conf);
        env._servers
            .push(Spawned::start("nginx", nginx, &env.log("nginx"))?);
        let mut iperf = env.lab.exec_in_net("iperf3");
        iperf.args(["-s", "-B", "198.51.100.10", "-p", "5201"]);
        env._servers
            .push(Spawned::start("iperf3", iperf, &env.log("iperf3"))?);
        for addr in [
            "203.0.113.10:443",
            "198.51.100.12:443",
            "198.51.100.10:5201",
        ] {
            env.wait_port_in_net(addr, Duration::from_secs(10))?;
        }
        Ok(env)
    }

    /// A command that runs `program` in the node namespace, in its own mount namespace
    /// where `/etc/hosts` is the bench's. That namespace is a slave of the machine's, so the
    /// network namespaces the daemon names under `/run/netns` later (a `sluice exec`
    /// sandbox's) are seen in it; a private one would see empty files there.
    pub fn node(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = self.lab.exec_in_node("unshare");
        cmd.args(["--mount", "--propagation", "slave", "--", "sh", "-c"])
            .arg("mount --bind \"$0\" /etc/hosts && exec \"$@\"")
            .arg(&self.hosts_file)
            .arg(program);
        cmd
    }

    /// Copies template `bench/<template>` into the run directory as `name`, with `@DIR@`
    /// (the run directory) and `@CA@` (the bench CA file) filled in.
    pub fn render(&self, template: &str, name: &str) -> anyhow::Result<PathBuf> {
        let path = self.templates.join(template);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("bench: read {}", path.display()))?;
        let text = text
            .replace("@DIR@", &self.dir.path().display().to_string())
            .replace("@CA@", &self.ca_file.display().to_string());
        let out = self.dir.path().join(name);
        std::fs::write(&out, text)?;
        Ok(out)
    }

    /// Where the log of process `name` goes.
    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    /// Waits until `addr` accepts TCP connections from the node namespace.
    pub fn wait_port_in_node(&self, addr: &str, timeout: Duration) -> anyhow::Result<()> {
        let target: SocketAddr = addr.parse()?;
        wait_until(timeout, addr, || {
            self.lab
                .in_node(|| TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok())
                .unwrap_or(false)
        })
    }

    fn wait_port_in_net(&self, addr: &str, timeout: Duration) -> anyhow::Result<()> {
        let target: SocketAddr = addr.parse()?;
        wait_until(timeout, addr, || {
            self.lab
                .in_net(|| TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok())
                .unwrap_or(false)
        })
    }
}

/// Polls `ready` every 20 ms until it is true or `timeout` passes.
pub fn wait_until(
    timeout: Duration,
    what: &str,
    mut ready: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("bench: {what} not ready within {timeout:?}")
}

/// The Rust fake upstream: SSE with send timestamps, and an upload sink.
fn start_app(lab: &NetLab, ca: &TestCa, quick: bool) -> anyhow::Result<RunningUpstream> {
    let events = if quick {
        SSE_EVENTS_QUICK
    } else {
        SSE_EVENTS_FULL
    };
    upstream::https(ca)
        .hostname("app.bench.test")
        .sse("/sse", events, SSE_INTERVAL)
        .sink("/upload")
        .route("/small", "hello from the bench app\n")
        .start(lab, SocketAddr::new(addrs::HOST_B.into(), 443))
        .context("bench: start the SSE/upload upstream")
}

fn write_big_file(path: &Path, len: u64) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let chunk = tests::upstream::pattern(0, 251 * 4096);
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left.min(chunk.len() as u64))?;
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    file.flush()?;
    Ok(())
}

/// A long-running process the bench started; stopped (SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
pub struct Spawned {
    name: String,
    child: Option<Child>,
}

impl Spawned {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn start(name: &str, mut cmd: Command, log: &Path) -> anyhow::Result<Spawned> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("bench: start {name}"))?;
        Ok(Spawned {
            name: name.to_owned(),
            child: Some(child),
        })
    }

    /// The process id (the program itself: `nsenter`, `unshare` and `sh -c exec` exec it).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Stops it: SIGTERM, up to 5 s, then SIGKILL.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        stop_child(&mut child, Duration::from_secs(5));
        eprintln!("bench: stopped {}", self.name);
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.stop();
    }
}

/// SIGTERM `child`, wait up to `grace`, then SIGKILL and reap it.
pub fn stop_child(child: &mut Child, grace: Duration) {
    use nix::sys::signal::{Signal, kill};
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}
