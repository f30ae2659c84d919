//! A `redis-server` of the test's own, on a free loopback port, without
//! persistence; killed when dropped (or on demand, to prove the fallback
//! path) and restartable on the same port.

#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a freshly started server may take to answer `PING`.
const START_DEADLINE: Duration = Duration::from_secs(10);
/// Between two `PING`s while it starts: a real wait, since a real process
/// is starting.
const START_POLL: Duration = Duration::from_millis(10);

/// A running `redis-server` (or, after [`kill`](Self::kill), a port with
/// nothing behind it).
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts `redis-server` on a free loopback port and waits until it
    /// answers.
    ///
    /// # Panics
    ///
    /// When `redis-server` is not on `PATH` (with the command to install
    /// it), or does not answer within [`START_DEADLINE`].
    pub fn start() -> Self {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let mut server = Self { port, child: None };
        server.restart();
        server
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A redis-rs client for the server.
    pub fn client(&self) -> buttress_cache::redis::Client {
        buttress_cache::redis::Client::open(self.url()).expect("a valid URL")
    }

    /// Kills the server (SIGKILL: no goodbye to its clients) and waits for
    /// it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a new, empty server on the same port (after [`kill`](Self::kill)).
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `redis-server` ({e}): the Redis tests need the \
                     redis-server binary on PATH (Debian/Ubuntu: \
                     `apt-get install redis-server`; .ci/run installs it)"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + START_DEADLINE;
        while !self.answers_ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within {START_DEADLINE:?}",
                self.port
            );
            // A real wait, and the only one: an external process is
            // starting, which no paused tokio clock can drive.
            std::thread::park_timeout(START_POLL);
        }
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
