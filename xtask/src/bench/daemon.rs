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

use super::control::{self, Reply};
use super::env::{Env, Spawned};

/// The explicit proxy session token (a bench-only value; only its SHA-256 is configured).
const TOKEN: &str = "sluice_stk_benchbenchbenchbenchbenchbenchbenchbe";

/// How the daemon is configured for a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    /// Names the run's directory and log (`main`, `rules`, `audit-file` …); unique per start.
    pub name: &'static str,
    /// Non-matching passthrough rules put before the real ones (W10 start-up).
    pub extra_rules: usize,
    /// Audit (and sessions) to this Redis (`redis+unix:///…`) instead of the JSONL file (W8).
    pub redis_url: Option<String>,
}

impl Variant {
    /// The default configuration under `name`: no extra rules, audit to the JSONL file.
    pub fn plain(name: &'static str) -> Variant {
        Variant {
            name,
            extra_rules: 0,
            redis_url: None,
        }
    }
}

/// A running daemon.
#[derive(Debug)]
pub struct Daemon {
    proc: Spawned,
    bin: PathBuf,
    config: PathBuf,
    variant: Variant,
    upstream_ca: PathBuf,
    token: String,
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
        let root = env.dir.path().join(format!("sluice-{}", variant.name));
        let state_dir = root.join("state");
        std::fs::create_dir_all(&root)?;
        let parent_cgroup = mount.join(&name);
        let pin_dir = PathBuf::from("/sys/fs/bpf").join(&name);
        let config = root.join("sluice.toml");
        let paths = Paths {
            state_dir: &state_dir,
            parent_cgroup: &parent_cgroup,
            pin_dir: &pin_dir,
            upstream_ca: &env.ca_file,
        };
        std::fs::write(&config, config_toml(&paths, &variant, &[]))?;
        let mut run = env.lab.exec_in_node(bin);
        run.arg("--config").arg(&config).arg("run");
        let log = env.log(&format!("sluice-{}", variant.name));
        let started = Instant::now();
        let mut proc = Spawned::start("sluice", run, &log)?;
        let token_path = state_dir.join("admin.token");
        let token = loop {
            if let Ok(t) = std::fs::read_to_string(&token_path)
                && env.lab.in_node(|| health_ok(t.trim())).unwrap_or(false)
            {
                break t.trim().to_owned();
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
        };
        Ok(Daemon {
            ready_after: started.elapsed(),
            proc,
            bin: bin.to_owned(),
            config,
            variant,
            upstream_ca: env.ca_file.clone(),
            token,
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

    /// `sluice exec [--session ID] -- program …` with the bench's host names: `program`
    /// runs captured (under `session`'s policy when given).
    pub fn exec(&self, env: &Env, session: Option<&str>, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = env.node(&self.bin);
        cmd.arg("--config").arg(&self.config).arg("exec");
        if let Some(id) = session {
            cmd.args(["--session", id]);
        }
        cmd.arg("--").arg(program);
        cmd
    }

    /// `sluice --config <this daemon's config> <args…>` in the node namespace.
    pub fn cli(&self, env: &Env) -> Command {
        let mut cmd = env.node(&self.bin);
        cmd.arg("--config").arg(&self.config);
        cmd
    }

    /// One call to the control API (from inside the node namespace).
    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> anyhow::Result<Reply> {
        let token = self.token.clone();
        tests::netlab::in_netns(&self.node_ns, move || {
            control::call(&token, method, path, body, Duration::from_secs(10))
        })?
    }

    /// `GET /metrics` (Prometheus text).
    pub fn metrics(&self) -> anyhow::Result<String> {
        let reply = self.api("GET", "/metrics", None)?;
        if reply.status != 200 {
            bail!(
                "bench: GET /metrics answered {}: {}",
                reply.status,
                reply.body
            );
        }
        Ok(reply.body)
    }

    /// Creates a session with `policy` (a `PolicySpec` as JSON); returns its id.
    pub fn create_session(&self, policy: serde_json::Value) -> anyhow::Result<String> {
        let body = serde_json::json!({ "ttl_seconds": 7200, "policy": policy }).to_string();
        let reply = self.api("POST", "/v1/sessions", Some(&body))?;
        if !(200..300).contains(&reply.status) {
            bail!(
                "bench: POST /v1/sessions answered {}: {}",
                reply.status,
                reply.body.chars().take(300).collect::<String>()
            );
        }
        let created: serde_json::Value = serde_json::from_str(&reply.body)?;
        created["session"]["id"]
            .as_str()
            .map(str::to_owned)
            .context("bench: POST /v1/sessions answered without session.id")
    }

    /// Waits (at most `max`) until the daemon is idle: under 4% of a core over 250 ms, so
    /// the previous workload's closing connections do not weigh on the next. Returns how
    /// long it waited and whether it got idle.
    pub fn settle(&self, max: Duration) -> (Duration, bool) {
        let started = Instant::now();
        while started.elapsed() < max {
            let before = super::proc::tree_ticks(self.pid());
            std::thread::sleep(Duration::from_millis(250));
            if super::proc::tree_ticks(self.pid()).saturating_sub(before) <= 1 {
                return (started.elapsed(), true);
            }
        }
        (started.elapsed(), false)
    }

    /// Whether the daemon process still runs (not exited, not a zombie).
    pub fn alive(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).is_ok_and(|s| {
            s.rfind(')')
                .and_then(|i| s.get(i + 2..i + 3))
                .is_some_and(|state| !matches!(state, "Z" | "X"))
        })
    }

    /// Rewrites the configuration file with `extra_passthrough` hosts added (W10 reload);
    /// the daemon reads it on its next reload.
    pub fn write_config(&self, extra_passthrough: &[String]) -> anyhow::Result<()> {
        let paths = Paths {
            state_dir: &self.state_dir,
            parent_cgroup: &self.parent_cgroup,
            pin_dir: &self.pin_dir,
            upstream_ca: &self.upstream_ca,
        };
        let text = config_toml(&paths, &self.variant, extra_passthrough);
        let tmp = self.config.with_extension("toml.new");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &self.config)?;
        Ok(())
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

/// The paths a configuration names.
struct Paths<'a> {
    state_dir: &'a std::path::Path,
    parent_cgroup: &'a std::path::Path,
    pin_dir: &'a std::path::Path,
    upstream_ca: &'a std::path::Path,
}

/// The daemon's configuration. Idle upstream connections close after 5 s, as the peer
/// HAProxy's default `pool-purge-delay` does.
fn config_toml(paths: &Paths<'_>, variant: &Variant, extra_passthrough: &[String]) -> String {
    let mut passthrough: Vec<String> = (0..variant.extra_rules)
        .map(|i| format!("\"r{i}.rules.example\""))
        .chain(extra_passthrough.iter().map(|h| format!("{h:?}")))
        .collect();
    passthrough.push("\"pass.bench.test\"".to_owned());
    let Paths {
        state_dir,
        parent_cgroup,
        pin_dir,
        upstream_ca,
    } = paths;
    let store = match &variant.redis_url {
        // The spool stays in state_dir (the default); the stream key is the default
        // `sluice:audit`.
        Some(url) => format!("[store]\nredis_url = {url:?}\n[audit]\nnode_id = \"bench\"\n"),
        None => String::new(),
    };
    format!(
        "state_dir = {state_dir:?}\n\
         [capture]\nparent_cgroup = {parent_cgroup:?}\npin_dir = {pin_dir:?}\n\
         [dns.hosts]\n\"bench.test\" = [\"203.0.113.10\"]\n\"app.bench.test\" = [\"198.51.100.11\"]\n\
         \"pass.bench.test\" = [\"198.51.100.12\"]\n\
         [upstream]\nextra_roots = [{ca:?}]\npool_idle_timeout_ms = 5000\n\
         [policy]\npassthrough = [{rules}]\ntcp_allow = [\"198.51.100.10/32:5201\"]\n\
         [[sessions]]\nid = \"bench\"\ntoken_sha256 = \"{digest}\"\n{store}",
        ca = upstream_ca,
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
