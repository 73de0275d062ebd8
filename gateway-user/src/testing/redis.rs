//! A real `redis-server` for tests, the one every test that needs Redis starts.
//!
//! It listens on a unix socket in a temp dir of its own (no TCP port: nothing to pick, nothing
//! to collide with), answers PING before [`RedisServer::start`] returns, and is killed and its
//! directory removed on drop. Outages are made with it: [`RedisServer::kill`] (a crash),
//! [`RedisServer::stop`] (a planned stop that keeps the data), [`RedisServer::pause`] (a hung
//! server: connections stay open, nothing answers) and [`RedisServer::restart`] on the same
//! socket, so clients keep their URL.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

/// How long a starting server may take to answer PING before the test fails; a hang guard,
/// not a speed requirement.
const START_GUARD: Duration = Duration::from_secs(30);

/// Why the test server could not be started, signalled or queried.
#[derive(Debug, thiserror::Error)]
pub enum RedisServerError {
    /// `redis-server` (or `redis-cli`) could not be run.
    #[error("test redis: cannot run {program} ({source}); `cargo xtask setup` installs it")]
    Missing {
        /// The program that could not be run.
        program: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The temp dir, the socket or a file in it failed.
    #[error("test redis: {0}")]
    Io(#[from] std::io::Error),
    /// The server did not answer PING within the start guard.
    #[error("test redis: no answer to PING within {0:?} (see the server's log in its dir)")]
    NoAnswer(Duration),
    /// The server exited while starting.
    #[error("test redis: the server exited at start ({0}; see the log in its dir)")]
    Exited(std::process::ExitStatus),
    /// The operation needs a running server and it is killed or stopped.
    #[error("test redis: the server is not running")]
    NotRunning,
    /// The server refused a command or `redis-cli` failed.
    #[error("test redis: `{command}` failed: {reply}")]
    Refused {
        /// The command.
        command: String,
        /// What came back.
        reply: String,
    },
    /// Sending a signal to the server failed.
    #[error("test redis: cannot signal the server: {0}")]
    Signal(#[from] nix::Error),
}

/// A running (or killed, stopped, paused) `redis-server` owned by one test.
#[derive(Debug)]
pub struct RedisServer {
    dir: tempfile::TempDir,
    child: Option<Child>,
    durable: bool,
}

impl RedisServer {
    /// Starts a server that keeps its data in memory: a [`RedisServer::kill`] loses it, a
    /// [`RedisServer::stop`] saves it for the next [`RedisServer::restart`].
    pub fn start() -> Result<RedisServer, RedisServerError> {
        RedisServer::with_durability(false)
    }

    /// Starts a server that keeps every acknowledged write across a kill and restart
    /// (append-only file, fsync per write), like a production Redis with AOF.
    pub fn start_durable() -> Result<RedisServer, RedisServerError> {
        RedisServer::with_durability(true)
    }

    /// The URL clients connect with (`redis+unix://…`).
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }

    /// The socket the server listens on; the same across restarts.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// The server's own directory (dump, append-only file, log); removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server (SIGKILL, as a crash would) and waits until it is gone. Writes a
    /// durable server acknowledged survive; on a plain one, everything since the last
    /// [`RedisServer::stop`] is lost.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }

    /// Stops the server after saving its data, which [`RedisServer::restart`] loads again.
    pub fn stop(&mut self) -> Result<(), RedisServerError> {
        if self.child.is_none() {
            return Err(RedisServerError::NotRunning);
        }
        let saved = self.inline("SAVE", "+OK");
        self.kill();
        saved
    }

    /// Starts the server again on the same socket (killing it first if it runs), with what
    /// it saved or persisted, and waits until it answers PING.
    pub fn restart(&mut self) -> Result<(), RedisServerError> {
        self.kill();
        let log = std::fs::File::create(self.dir().join("redis.log"))?;
        let persistence = if self.durable {
            ["--appendonly", "yes", "--appendfsync", "always"]
        } else {
            ["--appendonly", "no", "--appendfsync", "everysec"]
        };
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(self.socket())
            .args(["--unixsocketperm", "700", "--save", ""])
            .args(persistence)
            .args(["--rdbcompression", "no", "--dbfilename", "dump.rdb"])
            .arg("--dir")
            .arg(self.dir())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| RedisServerError::Missing {
                program: "redis-server",
                source,
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + START_GUARD;
        while self.inline("PING", "+PONG").is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(RedisServerError::Exited(status));
            }
            if Instant::now() > deadline {
                return Err(RedisServerError::NoAnswer(START_GUARD));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing answers, the worst
    /// case for a client. [`RedisServer::resume`] lets it run on, executing what it received.
    pub fn pause(&self) -> Result<(), RedisServerError> {
        self.signal(Signal::SIGSTOP)
    }

    /// Undoes [`RedisServer::pause`].
    pub fn resume(&self) -> Result<(), RedisServerError> {
        self.signal(Signal::SIGCONT)
    }

    /// Runs `redis-cli` against the server and returns its output (raw strings, one reply
    /// element per line).
    pub fn cli(&self, args: &[&str]) -> Result<String, RedisServerError> {
        let out = Command::new("redis-cli")
            .arg("-s")
            .arg(self.socket())
            .args(args)
            .output()
            .map_err(|source| RedisServerError::Missing {
                program: "redis-cli",
                source,
            })?;
        if !out.status.success() {
            return Err(RedisServerError::Refused {
                command: args.join(" "),
                reply: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A full, uncompressed snapshot of the keyspace (RDB), for scanning for plaintext.
    pub fn snapshot(&self) -> Result<Vec<u8>, RedisServerError> {
        let path = self.dir().join("snapshot.rdb");
        let path_arg = path.to_string_lossy().into_owned();
        self.cli(&["--rdb", &path_arg])?;
        Ok(std::fs::read(&path)?)
    }

    /// A fresh async connection whose replies may take 10 s (for blocking reads).
    pub async fn connection(
        &self,
    ) -> Result<::redis::aio::MultiplexedConnection, ::redis::RedisError> {
        let config = ::redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(Duration::from_secs(10)));
        ::redis::Client::open(self.url().as_str())?
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    fn with_durability(durable: bool) -> Result<RedisServer, RedisServerError> {
        let dir = tempfile::Builder::new().prefix("sluice-redis").tempdir()?;
        let mut server = RedisServer {
            dir,
            child: None,
            durable,
        };
        server.restart()?;
        Ok(server)
    }

    fn signal(&self, signal: Signal) -> Result<(), RedisServerError> {
        let child = self.child.as_ref().ok_or(RedisServerError::NotRunning)?;
        let pid = i32::try_from(child.id()).map_err(|_| RedisServerError::NotRunning)?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)?;
        Ok(())
    }

    /// Sends one inline command and checks the simple-string reply starts with `want` (the
    /// server accepts connections before it has loaded its data, but answers only after).
    fn inline(&self, command: &str, want: &str) -> Result<(), RedisServerError> {
        let mut stream = UnixStream::connect(self.socket())?;
        stream.set_read_timeout(Some(START_GUARD))?;
        stream.write_all(format!("{command}\r\n").as_bytes())?;
        let mut reply = Vec::new();
        let mut byte = [0u8; 1];
        while !reply.ends_with(b"\r\n") && stream.read(&mut byte)? == 1 {
            reply.push(byte[0]);
        }
        let reply = String::from_utf8_lossy(&reply);
        if reply.starts_with(want) {
            return Ok(());
        }
        Err(RedisServerError::Refused {
            command: command.to_owned(),
            reply: reply.trim_end().to_owned(),
        })
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
