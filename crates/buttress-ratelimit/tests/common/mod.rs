//! A `redis-server` of the test's own on a free loopback port, without
//! persistence; killed on drop or on demand, restartable on its port.

#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts `redis-server` and waits (really: a process is starting)
    /// until it answers `PING`.
    ///
    /// # Panics
    ///
    /// When `redis-server` is not on `PATH`, or does not answer in 10 s.
    pub fn start() -> Self {
        let mut s = Self {
            port: free_port(),
            child: None,
        };
        s.restart();
        s
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("a valid URL")
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `redis-server` ({e}): install it (`apt-get install redis-server`)"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers_ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING in 10 s"
            );
            std::thread::park_timeout(Duration::from_millis(10));
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

/// A Redis Cluster of three masters on free loopback ports (made with
/// `redis-cli --cluster create`); killed on drop.
pub struct RedisCluster {
    ports: Vec<u16>,
    children: Vec<Child>,
    dir: std::path::PathBuf,
}

impl RedisCluster {
    /// # Panics
    ///
    /// When `redis-server` or `redis-cli` is missing, or the cluster is not
    /// `ok` within 30 s.
    pub fn start() -> Self {
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let dir = std::env::temp_dir().join(format!("buttress-rl-cluster-{}", ports[0]));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let children = ports
            .iter()
            .map(|port| {
                Command::new("redis-server")
                    .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                    .args(["--cluster-enabled", "yes"])
                    .args(["--cluster-port", &free_port().to_string()])
                    .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                    .args(["--dir", dir.to_str().expect("a UTF-8 path")])
                    .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("redis-server on PATH (`apt-get install redis-server`)")
            })
            .collect();
        let cluster = Self {
            ports,
            children,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let wait = |port: u16, cmd: &str, want: &str| {
            while !inline(port, cmd).is_some_and(|r| r.contains(want)) {
                assert!(
                    Instant::now() < deadline,
                    "node {port}: no {want:?} to {cmd}"
                );
                std::thread::park_timeout(Duration::from_millis(20));
            }
        };
        for &p in &cluster.ports {
            wait(p, "PING", "PONG");
        }
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(cluster.ports.iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli (it comes with redis-server)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        for &p in &cluster.ports {
            wait(p, "CLUSTER INFO", "cluster_state:ok");
        }
        cluster
    }

    pub fn clients(&self) -> Vec<redis::Client> {
        self.ports
            .iter()
            .map(|p| redis::Client::open(format!("redis://127.0.0.1:{p}/")).expect("a valid URL"))
            .collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn inline(port: u16, cmd: &str) -> Option<String> {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.write_all(format!("{cmd}\r\n").as_bytes()).ok()?;
    let mut buf = vec![0u8; 8192];
    let n = s.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}
