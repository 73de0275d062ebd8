//! A real `redis-server` for tests, on a unix socket in a temp dir only, killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SERVER: &str = "/usr/bin/redis-server";

/// A running (or stopped, restartable) server.
pub struct TestRedis {
    dir: tempfile::TempDir,
    child: Option<Child>,
    durable: bool,
}

impl TestRedis {
    /// Starts a server that keeps nothing across restarts.
    pub fn start() -> TestRedis {
        TestRedis::with_durability(false)
    }

    /// Starts a server that keeps every acknowledged write across a kill and restart
    /// (append-only file, fsync per write), like a production Redis with AOF.
    pub fn start_durable() -> TestRedis {
        TestRedis::with_durability(true)
    }

    /// Fails the test when redis-server is missing.
    fn with_durability(durable: bool) -> TestRedis {
        assert!(
            Path::new(SERVER).exists(),
            "{SERVER} is missing: run `cargo xtask setup` to install it"
        );
        let mut redis = TestRedis {
            dir: tempfile::tempdir().unwrap(),
            child: None,
            durable,
        };
        redis.restart();
        redis
    }

    /// The socket path.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("r.sock")
    }

    /// The URL to connect with.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }

    /// Kills the server (as an outage would), waiting until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }

    /// Freezes the server (SIGSTOP): connections hang instead of failing, the worst case for
    /// a writer. [`TestRedis::resume`] lets it run on, executing what it had received.
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Undoes [`TestRedis::pause`].
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let child = self.child.as_ref().expect("server running");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
        nix::sys::signal::kill(pid, signal).unwrap();
    }

    /// Starts the server again on the same socket (with what it persisted, if durable), and
    /// waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new(SERVER)
            .args(["--port", "0", "--unixsocket"])
            .arg(self.socket())
            .args(["--unixsocketperm", "700", "--save", ""])
            .args(if self.durable {
                ["--appendonly", "yes", "--appendfsync", "always"]
            } else {
                ["--appendonly", "no", "--appendfsync", "everysec"]
            })
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !answers(&self.socket()) {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A fresh async connection (10 s response timeout, for blocking reads).
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        let config =
            redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(10)));
        redis::Client::open(self.url().as_str())
            .unwrap()
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .unwrap()
    }
}

/// Whether the server answers PING (it accepts connections before it has loaded its AOF).
fn answers(socket: &Path) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
