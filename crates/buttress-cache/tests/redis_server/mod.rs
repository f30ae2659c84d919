//! A `redis-server` of the test's own, on a free loopback port, without
//! persistence; killed when dropped (or on demand, to prove the fallback
//! path) and restartable on the same port; a 3-master Redis Cluster; and
//! the helpers every Redis test file shares (a cache with fixed timing,
//! a subscribed `Tiered` instance, waits on a store's counts, a load
//! through a Redis that is killed under it).
//!
//! Also compiled into the `redis` bench (`benches/benches/redis.rs`), so
//! it uses nothing but what the bench has too.

#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use buttress_breaker::CircuitBreaker;
use buttress_cache::Cache;
use buttress_cache::store::{QuickCacheStore, RedisStore, RedisStoreSnapshot, Store, Tiered};
use tower::{BoxError, Service, ServiceExt};

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
        let mut server = Self {
            port: free_port(),
            child: None,
        };
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
        let child = spawn_redis(self.port, &[]);
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
        answers_ping(self.port)
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

/// A loopback port nothing listens on (free when this returns).
pub fn free_port() -> u16 {
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
            let child = spawn_redis(
                port,
                &[
                    "--cluster-port",
                    &free_port().to_string(),
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &format!("nodes-{port}.conf"),
                    "--dir",
                    dir.to_str().expect("a UTF-8 path"),
                ],
            );
            children.push(child);
        }
        let cluster = Self {
            ports,
            children,
            dir,
        };
        let deadline = Instant::now() + START_DEADLINE;
        for &port in &cluster.ports {
            while !answers_ping(port) {
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

/// Starts `redis-server` on `port` of the loopback interface, without
/// persistence, with `extra` arguments.
///
/// # Panics
///
/// When `redis-server` is not on `PATH` (with the command to install it).
fn spawn_redis(port: u16, extra: &[&str]) -> Child {
    Command::new("redis-server")
        .args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1"])
        .args(["--save", ""])
        .args(["--appendonly", "no"])
        .args(["--loglevel", "warning"])
        .args(extra)
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
        })
}

fn answers_ping(port: u16) -> bool {
    command(port, "PING").as_deref() == Some("+PONG\r\n")
}

/// The longest a message or a resubscription may take to arrive (a real
/// server, a real reconnect with its jittered backoff, a busy machine).
pub const DELIVERY_DEADLINE: Duration = Duration::from_secs(10);
/// Between two looks while waiting for one (a real wait).
pub const POLL: Duration = Duration::from_millis(5);

/// Waits (really) until `done` holds of the store's counts.
///
/// # Panics
///
/// After [`DELIVERY_DEADLINE`], naming `what` and the counts.
pub async fn until(store: &RedisStore, what: &str, done: impl Fn(&RedisStoreSnapshot) -> bool) {
    let deadline = Instant::now() + DELIVERY_DEADLINE;
    loop {
        let now = store.snapshot();
        if done(&now) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {DELIVERY_DEADLINE:?}: {now:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the invalidation listener on `store` has subscribed (and
/// emptied L1) at least once.
pub async fn subscribed(store: &RedisStore) {
    until(store, "subscribed", |s| s.l1_flushes >= 1).await;
}

/// An instance's store: a 1 MiB `QuickCacheStore` in front of `l2`,
/// subscribed to the other instances' invalidations.
pub fn tiered<V>(l2: &RedisStore) -> Tiered<QuickCacheStore<u64, V>, RedisStore>
where
    V: Clone + Send + Sync + 'static,
{
    Tiered::new(
        QuickCacheStore::builder(1 << 20)
            .build()
            .expect("a valid L1"),
        l2.clone(),
    )
    .subscribe_invalidations()
}

/// A cache on `store` with fixed timing: a 60-s TTL, no jitter, no early
/// refresh.
pub fn cache_on<V, St>(store: St) -> Cache<u64, V, St>
where
    V: Clone + Send + Sync + 'static,
    St: Store<u64, V>,
{
    Cache::builder(store)
        .ttl(Duration::from_secs(60))
        .ttl_jitter(0.0)
        .xfetch_beta(None)
        .build()
        .expect("a valid cache")
}

/// A breaker that opens after 10 calls and probes again within 100 to
/// 400 ms, so that an outage test sees it open and close in a second.
pub fn outage_breaker(name: &str) -> CircuitBreaker {
    CircuitBreaker::builder()
        .name(name.to_string())
        .minimum_calls(10)
        .open_duration(Duration::from_millis(100))
        .max_open_duration(Duration::from_millis(400))
        .build()
        .expect("a valid breaker")
}

/// The store's counts around a Redis outage under load.
#[derive(Debug)]
pub struct Outage {
    /// Just before the kill.
    pub before: RedisStoreSnapshot,
    /// Once the load was over.
    pub during: RedisStoreSnapshot,
}

/// Sends 600 requests over 50 keys from 4 tasks through `svc` (each task
/// waiting `pace` between two), kills `server` after the first 150, and
/// waits for the rest.
///
/// # Panics
///
/// When a request fails, one takes more than ten times the store's
/// `timeout` (generous: a busy machine schedules late; what matters is
/// that none waits on a dead Redis, which is seconds of reconnect
/// backoff), or the store saw no error, timeout or rejection.
pub async fn kill_under_load<S>(
    server: &mut RedisServer,
    store: &RedisStore,
    timeout: Duration,
    svc: S,
    pace: Duration,
) -> Outage
where
    S: Service<u64, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
{
    const REQUESTS: usize = 600;
    const KILL_AFTER: usize = 150;
    const CONCURRENCY: usize = 4;
    let done = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..CONCURRENCY {
        let (svc, done) = (svc.clone(), Arc::clone(&done));
        workers.push(tokio::spawn(async move {
            let (mut failed, mut slowest) = (0, Duration::ZERO);
            for i in 0..REQUESTS / CONCURRENCY {
                let key = ((i * CONCURRENCY + w) % 50) as u64;
                let start = Instant::now();
                if svc.clone().oneshot(key).await.is_err() {
                    failed += 1;
                }
                slowest = slowest.max(start.elapsed());
                done.fetch_add(1, Ordering::SeqCst);
                if !pace.is_zero() {
                    tokio::time::sleep(pace).await;
                }
            }
            (failed, slowest)
        }));
    }
    while done.load(Ordering::SeqCst) < KILL_AFTER {
        tokio::task::yield_now().await;
    }
    let before = store.snapshot();
    server.kill();
    let (mut failed, mut slowest) = (0, Duration::ZERO);
    for w in workers {
        let (f, s) = w.await.expect("a load task panicked");
        failed += f;
        slowest = slowest.max(s);
    }
    let during = store.snapshot();
    assert_eq!(failed, 0, "no request fails because of Redis");
    assert!(slowest <= timeout * 10, "slowest request {slowest:?}");
    assert!(
        during.errors + during.timeouts + during.rejected > 0,
        "the outage was seen: {during:?}"
    );
    Outage { before, during }
}

/// After [`RedisServer::restart`]: sends requests for new keys through
/// `svc`, waiting `poll` between two, until `used` holds of the store's
/// counts; returns the last key sent.
///
/// # Panics
///
/// When a request fails, or after `deadline`.
pub async fn until_used_again<S>(
    store: &RedisStore,
    svc: &S,
    deadline: Duration,
    poll: Duration,
    used: impl Fn(&RedisStoreSnapshot) -> bool,
) -> u64
where
    S: Service<u64, Error = BoxError> + Clone,
    S::Response: std::fmt::Debug,
{
    let until = Instant::now() + deadline;
    let mut key = 1_000;
    loop {
        key += 1;
        svc.clone().oneshot(key).await.expect("a request");
        let now = store.snapshot();
        if used(&now) {
            return key;
        }
        assert!(
            Instant::now() < until,
            "Redis not used again within {deadline:?}: {now:?}"
        );
        tokio::time::sleep(poll).await;
    }
}
