//! The real `sluice` binary, run as a node daemon inside a lab's node namespace.
//!
//! Each daemon gets its own state directory, its own sandbox parent cgroup and its own bpffs
//! pin directory (never the production defaults), and removes all three on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::cgroup::cgroup2_mount;
use crate::netlab::NetLab;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Extra settings for a test daemon.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Extra TOML appended to the generated configuration.
    pub extra_toml: String,
    /// Static DNS answers (`name`, `address`).
    pub dns_hosts: Vec<(String, String)>,
    /// Variables set in the daemon's environment (`SSL_CERT_FILE`…).
    pub daemon_env: Vec<(String, String)>,
    /// A command (and its arguments) that runs the daemon: `sluice run …` is appended.
    pub wrapper: Vec<String>,
}

/// A running daemon (or one that was killed and can be restarted).
#[derive(Debug)]
pub struct Sluice {
    bin: PathBuf,
    node_ns: PathBuf,
    dir: tempfile::TempDir,
    config: PathBuf,
    /// The sandbox parent cgroup of this daemon.
    pub parent_cgroup: PathBuf,
    /// The pin directory of this daemon.
    pub pin_dir: PathBuf,
    child: Option<Child>,
    starts: u32,
    daemon_env: Vec<(String, String)>,
    wrapper: Vec<String>,
}

/// The `sluice` binary under test: `$SLUICE_BIN` (set by `cargo xtask test`), else the
/// workspace's release or debug build.
pub fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("SLUICE_BIN") {
        return PathBuf::from(bin);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target");
    let release = root.join("release/sluice");
    if release.exists() {
        release
    } else {
        root.join("debug/sluice")
    }
}

impl Sluice {
    /// Writes a configuration and starts `sluice run` in the lab's node namespace, returning
    /// once it logs that it is ready.
    pub fn start(lab: &NetLab, options: &Options) -> std::io::Result<Sluice> {
        let mut sluice = Self::prepare(lab, options)?;
        sluice.restart()?;
        Ok(sluice)
    }

    /// Writes a configuration but starts nothing yet ([`Sluice::restart`] starts it): for
    /// tests of a start that must fail, and of the start after it.
    pub fn prepare(lab: &NetLab, options: &Options) -> std::io::Result<Sluice> {
        crate::share_temp_files_with_sandboxes();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("sluice-e2e-{}-{n}", std::process::id());
        let mount = cgroup2_mount().map_err(std::io::Error::other)?;
        let dir = tempfile::Builder::new().prefix(&name).tempdir()?;
        // Sandboxes run as unprivileged ids: they may traverse this directory to the files
        // tests share with them (`public_file`); the daemon's state directory stays hidden.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        let parent_cgroup = mount.join(&name);
        let pin_dir = PathBuf::from("/sys/fs/bpf").join(&name);
        let mut toml = format!(
            "state_dir = {state:?}\n[capture]\nparent_cgroup = {parent:?}\npin_dir = {pin:?}\n",
            state = dir.path().join("state"),
            parent = parent_cgroup,
            pin = pin_dir,
        );
        if !options.dns_hosts.is_empty() {
            toml.push_str("[dns.hosts]\n");
            for (host, addr) in &options.dns_hosts {
                toml.push_str(&format!("{host:?} = [{addr:?}]\n"));
            }
        }
        toml.push_str(&options.extra_toml);
        let config = dir.path().join("sluice.toml");
        std::fs::write(&config, toml)?;
        Ok(Sluice {
            bin: binary(),
            node_ns: lab.node_ns_path(),
            dir,
            config,
            parent_cgroup,
            pin_dir,
            child: None,
            starts: 0,
            daemon_env: options.daemon_env.clone(),
            wrapper: options.wrapper.clone(),
        })
    }

    /// Replaces the command that runs the daemon from the next [`Sluice::restart`] on.
    pub fn set_wrapper(&mut self, wrapper: Vec<String>) {
        self.wrapper = wrapper;
    }

    /// (Re)starts the daemon with the same configuration and waits until it is ready.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.starts += 1;
        let log_path = self.log_path(self.starts);
        let log = std::fs::File::create(&log_path)?;
        let mut run = Command::new("nsenter");
        run.arg(format!("--net={}", self.node_ns.display()))
            .arg("--")
            .args(&self.wrapper)
            .arg(&self.bin)
            .arg("--config")
            .arg(&self.config);
        let child = run
            .arg("run")
            .env("RUST_LOG", "info")
            .envs(self.daemon_env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if text.contains("sluice: ready") {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(std::io::Error::other(format!(
                    "sluice run exited ({status}):\n{text}"
                )));
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::other(format!(
                    "sluice run not ready in 30 s:\n{text}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `sluice --config … <args>` in the node namespace (for CLI calls and `exec`).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.node_ns.display()))
            .arg("--")
            .arg(&self.bin)
            .arg("--config")
            .arg(&self.config);
        cmd
    }

    /// Any program in the daemon's network namespace (e.g. curl to the control API).
    pub fn node_command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.node_ns.display()))
            .arg("--")
            .arg(program);
        cmd
    }

    /// The configuration file the daemon runs with.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// `sluice exec [flags] -- <argv>`.
    pub fn exec(&self, flags: &[&str], argv: &[&str]) -> Command {
        let mut cmd = self.command();
        cmd.arg("exec").args(flags).arg("--").args(argv);
        cmd
    }

    /// Kills the daemon with SIGKILL (no cleanup: the pinned programs stay).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` to the daemon (e.g. SIGHUP: reload the configuration).
    pub fn signal(&self, signal: nix::sys::signal::Signal) -> std::io::Result<()> {
        let child = self
            .child
            .as_ref()
            .ok_or_else(|| std::io::Error::other("the daemon is not running"))?;
        let pid = i32::try_from(child.id()).map_err(std::io::Error::other)?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
            .map_err(std::io::Error::from)
    }

    /// Stops the daemon with SIGTERM and waits (bounded) for it to exit.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).ok()?);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// Every audit record written so far, parsed.
    pub fn audit(&self) -> Vec<serde_json::Value> {
        let text =
            std::fs::read_to_string(self.dir.path().join("state/audit.jsonl")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits (up to 5 s) for an audit record matching `pred` and returns it.
    pub fn wait_audit(
        &self,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(found) = self.audit().into_iter().find(|r| pred(r)) {
                return Some(found);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's log of its `n`th start (1-based).
    pub fn log(&self, n: u32) -> String {
        std::fs::read_to_string(self.log_path(n)).unwrap_or_default()
    }

    /// A field of the daemon's `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`, …).
    pub fn memory_kib(&self, field: &str) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status
            .lines()
            .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// `sluice session create --json ARGS` with the variables `env` set for it (so
    /// `--cred NAME=env:VAR@host` can name a value without putting it on a command line);
    /// returns (session id, token).
    pub fn create_session(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> std::io::Result<(String, String)> {
        let mut cmd = self.command();
        cmd.args(["session", "create", "--json"]).args(args);
        for (name, value) in env {
            cmd.env(name, value);
        }
        let out = cmd.output()?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!("session create: {out:?}")));
        }
        let created: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let field = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
        Ok((field(&created["session"]["id"]), field(&created["token"])))
    }

    /// Writes `bytes` to a file sandboxes can read (outside the state directory, which
    /// `sluice exec` hides) and returns its path.
    pub fn public_file(&self, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.dir.path().join("public");
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        let path = dir.join(name);
        std::fs::write(&path, bytes)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        Ok(path)
    }

    /// `curl -sS --max-time 10 --cacert <Sluice CA> ARGS` in a new sandbox of `session`;
    /// returns stdout followed by stderr, as text.
    pub fn curl_in_session(&self, session: &str, args: &[&str]) -> std::io::Result<String> {
        let ca = self
            .state_dir()
            .join("ca.pem")
            .to_string_lossy()
            .into_owned();
        let mut argv = vec!["curl", "-sS", "--max-time", "10", "--cacert", ca.as_str()];
        argv.extend_from_slice(args);
        let out = self.exec(&["--session", session], &argv).output()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr))
    }

    /// Copies `file` (a test script) where sandboxes can read it, wherever the checkout lives
    /// (a sandbox runs as an unprivileged id), and returns the copy's path as text.
    pub fn share(&self, file: &Path) -> std::io::Result<String> {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "shared".to_owned());
        let bytes = std::fs::read(file)?;
        Ok(self
            .public_file(&name, &bytes)?
            .to_string_lossy()
            .into_owned())
    }

    /// The daemon's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the daemon process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// A counter or gauge from the control API's `GET /metrics` (default control address,
    /// admin token from the state dir), or `None` if it is not there.
    pub fn metric(&self, name: &str) -> Option<u64> {
        self.metrics()?.lines().find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.trim().parse().ok())?
        })
    }

    /// The whole `GET /metrics` text (the daemon's default control address).
    pub fn metrics(&self) -> Option<String> {
        let token = std::fs::read_to_string(self.state_dir().join("admin.token")).ok()?;
        let out = self
            .node_command("curl")
            .args(["-sS", "--max-time", "5", "-H"])
            .arg(format!("Authorization: Bearer {}", token.trim()))
            .arg("http://127.0.0.1:3000/metrics")
            .output()
            .ok()?;
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `https://api.test{path}`-style `url` through this daemon's explicit proxy at `proxy`
    /// (`http://127.0.0.1:PORT`) under session `token`, trusting the daemon's CA: the final
    /// status, or the proxy's answer to CONNECT when there was no final response (407 when
    /// refused).
    pub fn via_explicit_proxy(&self, proxy: &str, token: &str, url: &str) -> String {
        let ca = self.state_dir().join("ca.pem");
        let out = self
            .node_command("curl")
            .args(["-sS", "-o", "/dev/null", "--max-time", "15"])
            .args(["-w", "%{http_code} %{http_connect}", "-x", proxy])
            .args(["--proxy-user", &format!("sluice:{token}")])
            .arg("--cacert")
            .arg(ca)
            .arg(url)
            .output();
        let text = out
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        match text.split_once(' ') {
            Some(("000", connect)) => connect.to_owned(),
            Some((status, _)) => status.to_owned(),
            None => text,
        }
    }

    /// The state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn log_path(&self, n: u32) -> PathBuf {
        self.dir.path().join(format!("sluice-{n}.log"))
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        self.stop();
        let _ = self.command().args(["uninstall", "--force"]).output();
        let _ = std::fs::remove_dir_all(&self.pin_dir);
        self.remove_sandboxes_left_behind();
        let _ = std::fs::remove_dir(&self.parent_cgroup);
    }
}

impl Sluice {
    /// Sandboxes a killed daemon (or a killed `sluice exec`) left: their cgroups (processes
    /// killed) and this daemon's network namespaces (named with [`netns_prefix`]).
    fn remove_sandboxes_left_behind(&self) {
        if let Ok(entries) = std::fs::read_dir(&self.parent_cgroup) {
            for dir in entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            {
                let path = dir.path();
                let _ = std::fs::write(path.join("cgroup.kill"), b"1");
                let deadline = Instant::now() + Duration::from_secs(5);
                while std::fs::remove_dir(&path).is_err() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        let prefix = netns_prefix(&self.parent_cgroup);
        if let Ok(entries) = std::fs::read_dir("/run/netns") {
            for ns in entries.flatten() {
                let name = ns.file_name().to_string_lossy().into_owned();
                if name.starts_with(&prefix) {
                    let _ = Command::new("ip").args(["netns", "delete", &name]).output();
                }
            }
        }
    }
}

/// The prefix the daemon whose sandbox parent is `parent` gives its sandboxes' network
/// namespaces (the same as `sluice::daemon::leftovers::netns_prefix`, checked by a test).
pub fn netns_prefix(parent: &Path) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(parent.as_os_str().as_encoded_bytes());
    let tag: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("sluice-{tag}-sb-")
}

/// The `[listen]` table of a second daemon in the same node namespace: ports and a
/// control address of its own.
pub const SECOND_NODE_LISTEN: &str = "[listen]\ntransparent_port = 15011\ndns_port = 15063\n\
    control = \"127.0.0.1:3001\"\nproxy = \"127.0.0.1:3129\"\n";

/// The `[store]` table of daemons sharing one Redis and one master key, written once (0600)
/// into `dir` (the Redis server's directory, say). `url` is the Redis URL this daemon uses
/// (another user's, say).
pub fn shared_store_toml(dir: &Path, url: &str) -> std::io::Result<String> {
    use base64::Engine;
    use std::os::unix::fs::OpenOptionsExt;
    let key_file = dir.join("master.key");
    let key: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(97).wrapping_add(13));
    match std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&key_file)
    {
        Ok(mut file) => std::io::Write::write_all(
            &mut file,
            base64::engine::general_purpose::STANDARD
                .encode(key)
                .as_bytes(),
        )?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    Ok(format!(
        "[store]\nredis_url = {url:?}\nmaster_key_file = {key_file:?}\n"
    ))
}
