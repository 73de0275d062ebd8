//! The Sluice daemon under test: the release binary, run as `sluice run` in the node
//! namespace with its own state dir, sandbox parent cgroup and pin dir (never the production
//! defaults), all removed on drop.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::env::{Env, Spawned};

/// The explicit proxy session token (a bench-only value; only its SHA-256 is configured).
const TOKEN: &str = "sluice_stk_benchbenchbenchbenchbenchbenchbenchbe";

/// How the daemon is configured for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    /// Non-matching passthrough rules put before the real ones (W7, W10).
    pub extra_rules: usize,
}

/// A running daemon.
#[derive(Debug)]
pub struct Daemon {
    proc: Spawned,
    bin: PathBuf,
    config: PathBuf,
    state_dir: PathBuf,
    parent_cgroup: PathBuf,
    pin_dir: PathBuf,
    node_ns: PathBuf,
    log: PathBuf,
    /// From spawn to the control API answering `GET /v1/health` with 200.
    pub ready_after: Duration,
}

impl Daemon {
    /// Writes the configuration for `variant`, starts `sluice run` and waits (up to 30 s)
    /// until `/v1/health` answers.
    pub fn start(env: &Env, bin: &std::path::Path, variant: Variant) -> anyhow::Result<Daemon> {
        let name = format!("sluice-bench-{}", std::process::id());
        let mount = tests::cgroup::cgroup2_mount().context("bench: find the cgroup2 mount")?;
        let root = env
            .dir
            .path()
            .join(format!("sluice-{}", variant.extra_rules));
        let state_dir = root.join("state");
        std::fs::create_dir_all(&root)?;
        let parent_cgroup = mount.join(&name);
        let pin_dir = PathBuf::from("/sys/fs/bpf").join(&name);
        let config = root.join("sluice.toml");
        std::fs::write(
            &config,
            config_toml(env, &state_dir, &parent_cgroup, &pin_dir, variant),
        )?;
        let mut run = env.lab.exec_in_node(bin);
        run.arg("--config").arg(&config).arg("run");
        let log = env.log(&format!("sluice-{}", variant.extra_rules));
        let started = Instant::now();
        let mut proc = Spawned::start("sluice", run, &log)?;
        let token_path = state_dir.join("admin.token");
        loop {
            if let Ok(t) = std::fs::read_to_string(&token_path)
                && env.lab.in_node(|| health_ok(t.trim())).unwrap_or(false)
            {
                break;
            }
            if !proc.is_running() {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("bench: sluice run exited:\n{text}");
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!(
                    "bench: sluice not healthy within 30 s; see {}",
                    log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(Daemon {
            ready_after: started.elapsed(),
            proc,
            bin: bin.to_owned(),
            config,
            state_dir,
            parent_cgroup,
            pin_dir,
            node_ns: env.lab.node_ns_path(),
            log,
        })
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// `sluice exec -- program …` with the bench's host names: `program` runs captured.
    pub fn exec(&self, env: &Env, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = env.node(&self.bin);
        cmd.arg("--config")
            .arg(&self.config)
            .args(["exec", "--"])
            .arg(program);
        cmd
    }

    /// The last `n` warning or error lines of the daemon's log (for failed measurements).
    pub fn log_problems(&self, n: usize) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let bad: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect();
        bad[bad.len().saturating_sub(n)..]
            .iter()
            .map(|l| (*l).to_owned())
            .collect()
    }

    /// Sluice's CA, which clients of intercepted connections trust.
    pub fn ca_file(&self) -> PathBuf {
        self.state_dir.join("ca.pem")
    }

    /// The explicit proxy URL with the session token as Basic credentials.
    pub fn proxy_url(&self) -> String {
        format!("http://sluice:{TOKEN}@127.0.0.1:3128")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.proc.stop();
        let _ = Command::new("nsenter")
            .arg(format!("--net={}", self.node_ns.display()))
            .arg("--")
            .arg(&self.bin)
            .arg("--config")
            .arg(&self.config)
            .args(["uninstall", "--force"])
            .output();
        let _ = std::fs::remove_dir_all(&self.pin_dir);
        let _ = std::fs::remove_dir(&self.parent_cgroup);
    }
}

fn config_toml(
    env: &Env,
    state_dir: &std::path::Path,
    parent_cgroup: &std::path::Path,
    pin_dir: &std::path::Path,
    variant: Variant,
) -> String {
    let mut passthrough: Vec<String> = (0..variant.extra_rules)
        .map(|i| format!("\"r{i}.rules.example\""))
        .collect();
    passthrough.push("\"pass.bench.test\"".to_owned());
    format!(
        "state_dir = {state_dir:?}\n\
         [capture]\nparent_cgroup = {parent_cgroup:?}\npin_dir = {pin_dir:?}\n\
         [dns.hosts]\n\"bench.test\" = [\"203.0.113.10\"]\n\"app.bench.test\" = [\"198.51.100.11\"]\n\
         \"pass.bench.test\" = [\"198.51.100.12\"]\n\
         [upstream]\nextra_roots = [{ca:?}]\n\
         [policy]\npassthrough = [{rules}]\ntcp_allow = [\"198.51.100.10/32:5201\"]\n\
         [[sessions]]\nid = \"bench\"\ntoken_sha256 = \"{digest}\"\n",
        ca = env.ca_file,
        rules = passthrough.join(", "),
        digest = tests::upstream::sha256_hex(TOKEN.as_bytes()),
    )
}

/// One `GET /v1/health` on the control API; true on a 200.
fn health_ok(token: &str) -> bool {
    let Ok(mut stream) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], 3000).into(), Duration::from_millis(100))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let request = format!(
        "GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}
