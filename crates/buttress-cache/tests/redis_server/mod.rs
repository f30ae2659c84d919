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

/// How long a fresh cluster may take to report `cluster_state:ok` on
/// every node.
const CLUSTER_DEADLINE: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A Redis Cluster of three masters (no replicas) on free loopback ports,
/// made with `redis-cli --cluster create`; killed when dropped.
pub struct RedisCluster {
    ports: Vec<u16>,
    children: Vec<Child>,
    dir: std::path::PathBuf,
}

impl RedisCluster {
    /// Starts three `redis-server --cluster-enabled yes`, joins them
    /// (`redis-cli --cluster create … --cluster-replicas 0`) and waits
    /// until every node reports `cluster_state:ok`.
    ///
    /// # Panics
    ///
    /// When `redis-server` or `redis-cli` is missing, or the cluster does
    /// not form within [`CLUSTER_DEADLINE`].
    pub fn start() -> Self {
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let dir = std::env::temp_dir().join(format!("buttress-cluster-{}", ports[0]));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let mut children = Vec::new();
        for &port in &ports {
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string()])
                .args(["--cluster-port", &free_port().to_string()])
                .args(["--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args(["--dir", dir.to_str().expect("a UTF-8 path")])
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
            children.push(child);
        }
        let cluster = Self {
            ports,
            children,
            dir,
        };
        let deadline = Instant::now() + START_DEADLINE;
        for &port in &cluster.ports {
            while command(port, "PING").as_deref() != Some("+PONG\r\n") {
                assert!(Instant::now() < deadline, "node {port} did not start");
                std::thread::park_timeout(START_POLL);
            }
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run `redis-cli` ({e}): it comes with redis-server (apt-get install redis-server)")
            });
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + CLUSTER_DEADLINE;
        for &port in &cluster.ports {
            while !command(port, "CLUSTER INFO").is_some_and(|i| i.contains("cluster_state:ok")) {
                assert!(Instant::now() < deadline, "node {port}: cluster not ok");
                std::thread::park_timeout(START_POLL);
            }
        }
        cluster
    }

    /// The nodes' ports.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// A redis-rs client for each node, in order.
    pub fn clients(&self) -> Vec<buttress_cache::redis::Client> {
        self.ports
            .iter()
            .map(|p| {
                buttress_cache::redis::Client::open(format!("redis://127.0.0.1:{p}/"))
                    .expect("a valid URL")
            })
            .collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends one inline command and returns what one read gives back (enough
/// for `PING` and `CLUSTER INFO`), or `None` if the node does not answer.
fn command(port: u16, cmd: &str) -> Option<String> {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.write_all(format!("{cmd}\r\n").as_bytes()).ok()?;
    let mut buf = vec![0u8; 8192];
    let n = s.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}
