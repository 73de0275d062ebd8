//! A real `redis-server` for tests: unix socket only (no TCP port), in a temp dir, killed on
//! drop; it can be stopped and started again on the same socket.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running (or stopped) Redis server.
#[derive(Debug)]
pub struct RedisServer {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on `<tempdir>/redis.sock`; fails naming `cargo xtask setup` when
    /// `redis-server` is missing.
    pub fn start() -> std::io::Result<RedisServer> {
        let dir = tempfile::Builder::new().prefix("sluice-redis").tempdir()?;
        let mut server = RedisServer { dir, child: None };
        server.resume()?;
        Ok(server)
    }

    /// The URL clients use.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }

    /// The socket path.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// Kills the server (data is kept in memory only: a restart starts empty unless
    /// `resume` reloads the dump written here on stop).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = self.cli(&["SAVE"]);
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }

    /// Starts the server again on the same socket, reloading the data saved by `stop`.
    pub fn resume(&mut self) -> std::io::Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(self.socket())
            .args([
                "--unixsocketperm",
                "700",
                "--appendonly",
                "no",
                "--save",
                "",
            ])
            .args([
                "--rdbcompression",
                "no",
                "--dbfilename",
                "dump.rdb",
                "--dir",
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                std::io::Error::other(format!(
                    "redis-server: {e}; `cargo xtask setup` installs it"
                ))
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.cli(&["PING"]).is_ok_and(|out| out.trim() == "PONG") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(std::io::Error::other(
            "redis-server did not answer PING in 10 s",
        ))
    }

    /// Runs `redis-cli` against the server; returns its stdout.
    pub fn cli(&self, args: &[&str]) -> std::io::Result<String> {
        let out = Command::new("redis-cli")
            .arg("-s")
            .arg(self.socket())
            .args(args)
            .output()?;
        if !out.status.success() {
            return Err(std::io::Error::other(
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A full, uncompressed snapshot of the keyspace (RDB), for scanning for plaintext.
    pub fn snapshot(&self) -> std::io::Result<Vec<u8>> {
        let path = self.dir.path().join("snapshot.rdb");
        let out = Command::new("redis-cli")
            .arg("-s")
            .arg(self.socket())
            .arg("--rdb")
            .arg(&path)
            .output()?;
        if !out.status.success() {
            return Err(std::io::Error::other(
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        std::fs::read(&path)
    }

    /// The directory the server keeps its files in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
