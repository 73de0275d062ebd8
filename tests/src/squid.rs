//! A real Squid (`/usr/sbin/squid`, Debian `squid-openssl`) in the lab's net namespace, for
//! upstream-proxy chaining tests: `squid().basic_auth("alice", "pw").start(&lab, addr)`.
//!
//! Each instance gets its own temp directory (configuration, hosts file, htpasswd, TLS files,
//! logs, pid file), its own service name (so its shared-memory segments never collide), no disk
//! cache and no real DNS: names resolve only through [`SquidBuilder::host`]. Squid drops to the
//! `proxy` user after reading its configuration, so the directory is handed to that user. Drop
//! kills Squid and its helpers and removes every file, also when a test panics.

mod config;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::addrs;
use crate::certs::{CertError, TestCa};
use crate::netlab::{NetLab, NetLabError};
use config::{Paths, Settings, apr1_hash, hand_to_proxy_user, io_err, render_config, write_file};

/// The Squid binary (Debian package `squid-openssl`, which has `https_port`).
pub const SQUID_BIN: &str = "/usr/sbin/squid";
/// Squid's Basic-auth helper for htpasswd files.
pub const NCSA_AUTH: &str = "/usr/lib/squid/basic_ncsa_auth";
/// How long [`SquidBuilder::start`] waits for Squid to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of Squid's log quoted in a startup error.
const LOG_TAIL: usize = 25;

/// Errors from configuring or starting a [`Squid`].
#[derive(Debug, thiserror::Error)]
pub enum SquidError {
    /// The listen address is outside the test ranges.
    #[error(
        "squid: {0} is not a test address (use 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32)"
    )]
    NotTestAddress(IpAddr),
    /// Port 0 was asked for; Squid needs a fixed port.
    #[error("squid: listen address {0} needs a fixed port, not 0")]
    NoPort(SocketAddr),
    /// A user name, password or host name cannot be written into Squid's files.
    #[error("squid: unusable {what} {value:?}: {why}")]
    BadInput {
        /// Which input ("user", "password", "host name").
        what: &'static str,
        /// The value (the password is never shown).
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Entering the net namespace or adding the address failed.
    #[error("squid: {0}")]
    Netns(#[from] NetLabError),
    /// Issuing the proxy's TLS certificate failed.
    #[error("squid: tls certificate: {0}")]
    Certs(#[from] CertError),
    /// Preparing the temp directory or a file in it failed.
    #[error("squid: prepare {what}: {source}")]
    Files {
        /// What was being written.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `openssl passwd` failed while writing the htpasswd file.
    #[error("squid: hash password with `openssl passwd -apr1`: {0}")]
    Htpasswd(String),
    /// The `proxy` user Squid drops to does not exist.
    #[error("squid: user `proxy` not found (is squid-openssl installed? `cargo xtask setup`)")]
    NoProxyUser,
    /// Squid could not be spawned.
    #[error("squid: spawn {SQUID_BIN} via nsenter: {0} (is squid-openssl installed?)")]
    Spawn(std::io::Error),
    /// Squid exited before it listened.
    #[error("squid: exited during startup ({status}); log tail:\n{log}")]
    Exited {
        /// Its exit status.
        status: ExitStatus,
        /// The tail of its stderr / cache.log.
        log: String,
    },
    /// Squid did not accept connections in time.
    #[error("squid: not listening on {addr} after {START_TIMEOUT:?}; log tail:\n{log}")]
    NotListening {
        /// The listen address.
        addr: SocketAddr,
        /// The tail of its stderr / cache.log.
        log: String,
    },
}

/// A Squid builder: plain HTTP proxy, no auth, no names known, until configured.
pub fn squid() -> SquidBuilder {
    SquidBuilder::default()
}

/// Builder for a test Squid; see [`squid()`].
#[must_use = "a builder does nothing until `.start()`"]
#[derive(Clone, Debug, Default)]
pub struct SquidBuilder {
    auth: Option<(String, Password)>,
    tls: Option<(TestCa, Vec<String>)>,
    hosts: Vec<(String, IpAddr)>,
    extra: Vec<String>,
}

/// A test password, kept out of `Debug` output.
#[derive(Clone)]
struct Password(String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl SquidBuilder {
    /// Requires Basic proxy auth (`407` without it) for `user` / `password`, checked by
    /// `basic_ncsa_auth` against an htpasswd file (APR1 hash). The access log names the user.
    ///
    /// # Security
    /// The password reaches `openssl passwd` on stdin, never on a command line.
    pub fn basic_auth(mut self, user: &str, password: &str) -> Self {
        self.auth = Some((user.to_owned(), Password(password.to_owned())));
        self
    }

    /// Listens with `https_port` (clients speak TLS to the proxy) on a leaf that `ca` issues
    /// for `names` (IP addresses become IP SANs). Clients trust it with `--proxy-cacert`.
    pub fn https(mut self, ca: &TestCa, names: &[&str]) -> Self {
        let names = names.iter().map(|n| (*n).to_owned()).collect();
        self.tls = Some((ca.clone(), names));
        self
    }

    /// Makes Squid resolve `name` to `ip` (through its `hosts_file`); no other name resolves.
    pub fn host(mut self, name: &str, ip: IpAddr) -> Self {
        self.hosts.push((name.to_owned(), ip));
        self
    }

    /// Adds a raw `squid.conf` line. Extra lines come before the built-in `http_access`
    /// rules, so an `http_access deny …` here wins.
    pub fn config_line(mut self, line: &str) -> Self {
        self.extra.push(line.to_owned());
        self
    }

    /// Starts Squid in the lab's net namespace on `addr` (a test address; added to the net
    /// side if it is not there yet) and returns once it accepts connections.
    pub fn start(self, lab: &NetLab, addr: SocketAddr) -> Result<Squid, SquidError> {
        self.check(addr)?;
        ensure_host(lab, addr.ip())?;
        crate::share_temp_files_with_sandboxes();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // Alphanumeric: Squid names its /dev/shm segments after it.
        let service = format!("slsquid{}x{n}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix("sl-squid-")
            .tempdir()
            .map_err(io_err("temp dir"))?;
        let paths = Paths::new(dir.path());
        self.write_files(&paths)?;
        let config = render_config(&Settings {
            addr,
            tls: self.tls.is_some(),
            auth: self.auth.is_some(),
            extra: &self.extra,
            paths: &paths,
        });
        write_file(&paths.config, config.as_bytes(), "squid.conf")?;
        hand_to_proxy_user(dir.path())?;
        let stderr = std::fs::File::create(&paths.stderr).map_err(io_err("stderr.log"))?;
        let child = spawn(lab, &service, &paths.config, stderr)?;
        let mut squid = Squid {
            addr,
            tls: self.tls.is_some(),
            service,
            paths,
            child: Some(child),
            _dir: dir,
        };
        squid.wait_listening(lab)?;
        Ok(squid)
    }

    fn check(&self, addr: SocketAddr) -> Result<(), SquidError> {
        if !addrs::is_test_address(addr.ip()) {
            return Err(SquidError::NotTestAddress(addr.ip()));
        }
        if addr.port() == 0 {
            return Err(SquidError::NoPort(addr));
        }
        let bad = |what, value: &str, why| SquidError::BadInput {
            what,
            value: value.to_owned(),
            why,
        };
        if let Some((user, Password(password))) = &self.auth {
            if user.is_empty() || user.contains(|c: char| c == ':' || c.is_whitespace()) {
                return Err(bad(
                    "user",
                    user,
                    "must be non-empty, without ':' or spaces",
                ));
            }
            if password.contains(['\n', '\r']) {
                return Err(bad("password", "<redacted>", "must be one line"));
            }
        }
        for (name, _) in &self.hosts {
            if name.is_empty() || name.contains(|c: char| c == '#' || c.is_whitespace()) {
                return Err(bad(
                    "host name",
                    name,
                    "must be non-empty, without '#' or spaces",
                ));
            }
        }
        Ok(())
    }

    fn write_files(&self, paths: &Paths) -> Result<(), SquidError> {
        let mut hosts = String::from("127.0.0.1 localhost\n::1 localhost\n");
        for (name, ip) in &self.hosts {
            hosts.push_str(&format!("{ip} {name}\n"));
        }
        write_file(&paths.hosts, hosts.as_bytes(), "hosts file")?;
        if let Some((user, password)) = &self.auth {
            let line = format!("{user}:{}\n", apr1_hash(password)?);
            write_file(&paths.htpasswd, line.as_bytes(), "htpasswd")?;
        }
        if let Some((ca, names)) = &self.tls {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let leaf = ca.issue(&names)?;
            write_file(
                &paths.cert,
                leaf.chain_pem().as_bytes(),
                "proxy certificate",
            )?;
            write_file(&paths.key, leaf.key_pem().as_bytes(), "proxy key")?;
        }
        Ok(())
    }
}

/// A running Squid; killed (with its helpers) and its files removed on drop.
#[must_use = "squid is stopped when this is dropped"]
#[derive(Debug)]
pub struct Squid {
    addr: SocketAddr,
    tls: bool,
    service: String,
    paths: Paths,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Squid {
    /// The listen address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy URL: `http://198.51.100.12:3128`, or `https://…` with [`SquidBuilder::https`].
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Access-log lines so far, in Squid's native format
    /// (`time elapsed client TCP_TUNNEL/200 bytes CONNECT api.test:443 alice HIER_DIRECT/ip -`).
    /// Squid writes a line when a transaction ends (for CONNECT: when the tunnel closes),
    /// unbuffered; connections that never sent a request are not logged.
    pub fn access_log(&self) -> Vec<String> {
        std::fs::read_to_string(&self.paths.access_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Polls [`access_log`](Self::access_log) until a line contains `needle`; false on timeout.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.access_log().iter().any(|line| line.contains(needle)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Squid's service name (`-n`), unique per instance; its shared-memory segments are
    /// `/dev/shm/<name>-*.shm`.
    pub fn service_name(&self) -> &str {
        &self.service
    }

    /// Squid's `cache.log` so far (its diagnostics), for failure messages.
    pub fn cache_log(&self) -> String {
        std::fs::read_to_string(&self.paths.cache_log).unwrap_or_default()
    }

    /// Kills Squid and its helpers (SIGKILL to its process group) and waits, so tests can
    /// check "proxy down": connects to [`addr`](Self::addr) are refused afterwards. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                let group = nix::unistd::Pid::from_raw(pid);
                let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // A killed Squid leaves its shared-memory segments (`<service>-cf__*.shm`) behind.
        if let Ok(entries) = std::fs::read_dir("/dev/shm") {
            let prefix = format!("{}-", self.service);
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }

    fn wait_listening(&mut self, lab: &NetLab) -> Result<(), SquidError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = self.addr;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                self.stop();
                let log = self.log_tail();
                return Err(SquidError::Exited { status, log });
            }
            let probe = || std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200));
            if lab.in_net(probe)?.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.stop();
                let log = self.log_tail();
                return Err(SquidError::NotListening { addr, log });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let stderr = std::fs::read_to_string(&self.paths.stderr).unwrap_or_default();
        let text = if stderr.trim().is_empty() {
            self.cache_log()
        } else {
            stderr
        };
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL)..].join("\n")
    }
}

impl Drop for Squid {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Probes `ip` with a bind inside the net namespace and adds it there if it is missing.
fn ensure_host(lab: &NetLab, ip: IpAddr) -> Result<(), SquidError> {
    let probe = move || std::net::TcpListener::bind(SocketAddr::new(ip, 0)).map(drop);
    match lab.in_net(probe)? {
        Err(err) if err.kind() == std::io::ErrorKind::AddrNotAvailable => Ok(lab.add_host(ip)?),
        _ => Ok(()),
    }
}

fn spawn(
    lab: &NetLab,
    service: &str,
    config: &Path,
    stderr: std::fs::File,
) -> Result<Child, SquidError> {
    use std::os::unix::process::CommandExt;
    let mut cmd: Command = lab.exec_in_net(SQUID_BIN);
    // `-N`: foreground, one process; `-d1`: startup errors on stderr before cache.log opens.
    cmd.args(["-N", "-d1", "-n", service, "-f"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        // Its own group, so `stop` also kills the auth helpers it forks.
        .process_group(0);
    cmd.spawn().map_err(SquidError::Spawn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_that_would_break_squid_files_are_refused() {
        let addr = SocketAddr::new(addrs::HOST_C.into(), 3128);
        let cases: &[(SquidBuilder, bool)] = &[
            (squid().basic_auth("alice", "s3cret pw"), true),
            (squid().basic_auth("al:ice", "pw"), false),
            (squid().basic_auth("al ice", "pw"), false),
            (squid().basic_auth("alice", "pw\nbob:x"), false),
            (squid().host("api.test", addrs::HOST_A.into()), true),
            (squid().host("api test", addrs::HOST_A.into()), false),
        ];
        for (builder, ok) in cases {
            assert_eq!(builder.check(addr).is_ok(), *ok, "{builder:?}");
        }
        let outside = SocketAddr::from(([192, 0, 2, 1], 3128));
        assert!(matches!(
            squid().check(outside),
            Err(SquidError::NotTestAddress(_))
        ));
        assert!(matches!(
            squid().check(SocketAddr::new(addrs::HOST_C.into(), 0)),
            Err(SquidError::NoPort(_))
        ));
        assert!(!format!("{:?}", squid().basic_auth("a", "hunter2")).contains("hunter2"));
    }
}
