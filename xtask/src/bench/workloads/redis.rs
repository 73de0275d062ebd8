//! The bench's `redis-server` for W8: node namespace, unix socket only (`--port 0`), an
//! append-only file fsynced per write so a restart keeps everything it acknowledged; and
//! counting a run's records in the audit stream.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::bench::env::{Env, Spawned, wait_until};

/// Counts the request records carrying `ARGV[1]` in stream `KEYS[1]` and the entries whose
/// per-node `seq` does not increase; returns both.
const COUNT_LUA: &str = r"
local n, bad, last, start = 0, 0, {}, '-'
while true do
  local batch = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', 2000)
  if #batch == 0 then break end
  for _, e in ipairs(batch) do
    local f, seq, node, rec = e[2], nil, nil, nil
    for i = 1, #f, 2 do
      if f[i] == 'seq' then seq = tonumber(f[i + 1])
      elseif f[i] == 'node' then node = f[i + 1]
      elseif f[i] == 'record' then rec = f[i + 1] end
    end
    if rec and string.find(rec, ARGV[1], 1, true) then n = n + 1 end
    if node and seq then
      if last[node] and seq <= last[node] then bad = bad + 1 end
      last[node] = seq
    end
  end
  start = '(' .. batch[#batch][1]
end
return {n, bad}
";

/// The stream the daemon writes to (the default `<key_prefix>audit`).
const STREAM: &str = "sluice:audit";

/// The bench's `redis-server`: node namespace, unix socket only, AOF fsynced per write.
pub struct Redis {
    dir: PathBuf,
    log: PathBuf,
    server: Mutex<Option<Spawned>>,
    node_ns: PathBuf,
}

impl Redis {
    pub fn start(env: &Env) -> anyhow::Result<Redis> {
        let dir = env.dir.path().join("redis");
        std::fs::create_dir_all(&dir)?;
        let redis = Redis {
            dir,
            log: env.log("redis"),
            server: Mutex::new(None),
            node_ns: env.lab.node_ns_path(),
        };
        redis.up()?;
        Ok(redis)
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }

    /// Starts the server (again) and waits for PING.
    pub fn up(&self) -> anyhow::Result<()> {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.node_ns.display()))
            .args(["--", "redis-server", "--port", "0", "--unixsocket"])
            .arg(self.socket())
            .args(["--unixsocketperm", "700", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
            .arg(&self.dir);
        let server = Spawned::start("redis-server", cmd, &self.log)?;
        if let Ok(mut slot) = self.server.lock() {
            *slot = Some(server);
        }
        wait_until(Duration::from_secs(10), "redis-server", || {
            self.cli(&["PING"]).is_ok_and(|o| o.trim() == "PONG")
        })
    }

    /// The running server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.server
            .lock()
            .ok()
            .and_then(|s| s.as_ref().map(Spawned::pid))
    }

    /// Shuts the server down (SIGTERM: it finishes its AOF and exits).
    pub fn down(&self) {
        let server = self.server.lock().ok().and_then(|mut s| s.take());
        if let Some(mut server) = server {
            server.stop();
        }
    }

    fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new("redis-cli")
            .arg("-s")
            .arg(self.socket())
            .args(args)
            .output()
            .context("redis-cli: not runnable (`cargo xtask setup` installs it)")?;
        if !out.status.success() {
            bail!("redis-cli: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// (request records whose JSON contains `tag`, out-of-order entries) in the stream.
    fn count(&self, tag: &str) -> anyhow::Result<(u64, u64)> {
        let out = self.cli(&["EVAL", COUNT_LUA, "1", STREAM, tag])?;
        let nums: Vec<u64> = out
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        match nums[..] {
            [n, bad] => Ok((n, bad)),
            _ => bail!("redis-cli EVAL: unexpected answer {out:?}"),
        }
    }

    /// Counts until `want` records are there (they arrive in 50 ms batches) or `max` passes.
    pub fn wait_count(&self, tag: &str, want: u64, max: Duration) -> anyhow::Result<(u64, u64)> {
        let started = Instant::now();
        loop {
            let (n, bad) = self.count(tag)?;
            if n >= want || started.elapsed() > max {
                return Ok((n, bad));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.down();
    }
}
