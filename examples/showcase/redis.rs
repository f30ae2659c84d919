//! The Redis phase: two instances of one service, each a `CacheLayer` over
//! `Tiered<QuickCacheStore, RedisStore>` subscribed to the other's
//! invalidations, share one `redis-server` that this phase starts on a
//! free loopback port (and kills half-way). It shows what one instance
//! loads being served to the other from Redis, an update dropping both
//! L1 copies, and requests still answered with Redis gone.
//!
//! Self-contained: `main` calls [`run`] after the cache phase and prints
//! what it returns. With `REDIS_URL` set, it uses that server instead
//! (under a namespace of its own, and without killing it: the outage part
//! is skipped). Without either, the phase is skipped and says so.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buttress::BoxError;
use buttress::cache::store::{QuickCacheStore, RedisStore, RedisStoreSnapshot, Store, Tiered};
use buttress::cache::{Cache, CacheLayer, redis};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{ServiceBuilder, ServiceExt, service_fn};

/// How long the backend takes per call.
const LATENCY: Duration = Duration::from_millis(5);
/// The longest the phase waits for Redis to start, or for a subscription
/// or an invalidation message to arrive.
const DEADLINE: Duration = Duration::from_secs(5);
/// Requests sent with Redis killed, from `WORKERS` clients per instance,
/// over `OUTAGE_KEYS` keys (a few cached in L1, most not).
const OUTAGE_REQUESTS: u64 = 400;
const WORKERS: u64 = 8;
const OUTAGE_KEYS: u64 = 100;

/// A price: the SKU and its price in cents.
type Price = (u64, u64);
type Svc = BoxCloneService<u64, Price, BoxError>;
type Store2 = Tiered<QuickCacheStore<u64, Price>, RedisStore>;

/// `redis-server` on a free loopback port, without persistence; killed
/// when dropped. Or the server `REDIS_URL` names (`child` is `None`),
/// which is never killed.
struct RedisServer {
    port: u16,
    url: String,
    child: Option<Child>,
}

impl RedisServer {
    /// The server `REDIS_URL` names if set, else one started here;
    /// `Ok(None)` when neither is possible (`redis-server` not on `PATH`).
    async fn start() -> Result<Option<Self>, BoxError> {
        if let Ok(url) = std::env::var("REDIS_URL") {
            return Ok(Some(Self {
                port: 0,
                url,
                child: None,
            }));
        }
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let spawned = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let server = Self {
            port,
            url: format!("redis://127.0.0.1:{port}/"),
            child: Some(child),
        };
        let deadline = Instant::now() + DEADLINE;
        while !server.answers_ping() {
            if Instant::now() >= deadline {
                return Err(format!(
                    "redis-server on port {port} did not answer within {DEADLINE:?}"
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(Some(server))
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    fn kill(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether this phase started the server (and may kill it).
    fn ours(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The backend both instances share: a price table, slow to read, that
/// counts its calls.
#[derive(Clone, Default)]
struct Backend {
    prices: Arc<Mutex<HashMap<u64, u64>>>,
    calls: Arc<AtomicU64>,
}

impl Backend {
    fn service(&self) -> Svc {
        let backend = self.clone();
        BoxCloneService::new(service_fn(move |sku: u64| {
            let backend = backend.clone();
            async move {
                backend.calls.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(LATENCY).await;
                let price = *backend
                    .prices
                    .lock()
                    .expect("the price table")
                    .get(&sku)
                    .unwrap_or(&(sku * 100));
                Ok::<_, BoxError>((sku, price))
            }
        }))
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

/// One instance of the service.
struct Instance {
    name: &'static str,
    store: Store2,
    l2: RedisStore,
    cache: Cache<u64, Price, Store2>,
    svc: Svc,
}

impl Instance {
    fn new(name: &'static str, server: &RedisServer, backend: &Backend) -> Result<Self, BoxError> {
        let client = redis::Client::open(server.url.as_str())?;
        // A namespace of this run's own: a shared server (`REDIS_URL`) may
        // hold another run's keys, or anyone's.
        let l2 = RedisStore::builder(client, format!("showcase-prices-{}", std::process::id()))
            .name(format!("showcase-{name}-l2"))
            .build()?;
        let l1 = QuickCacheStore::builder(1 << 20).build()?;
        let store = Tiered::new(l1, l2.clone()).subscribe_invalidations();
        let cache = Cache::builder(store.clone())
            .name(format!("showcase-{name}"))
            .ttl(Duration::from_secs(60))
            .build()?;
        let svc = BoxCloneService::new(
            ServiceBuilder::new()
                .layer(CacheLayer::new(cache.clone(), |sku: &u64| Some(*sku)))
                .service(backend.service()),
        );
        Ok(Self {
            name,
            store,
            l2,
            cache,
            svc,
        })
    }

    fn l1_holds(&self, sku: u64) -> bool {
        Store::<u64, Price>::try_get(self.store.l1(), &sku)
            .flatten()
            .is_some()
    }

    /// Waits (really) until `done` holds of the Redis store's counts.
    async fn until(
        &self,
        what: &str,
        done: impl Fn(&RedisStoreSnapshot) -> bool,
    ) -> Result<(), BoxError> {
        let deadline = Instant::now() + DEADLINE;
        while !done(&self.l2.snapshot()) {
            if Instant::now() >= deadline {
                return Err(
                    format!("instance {}: {what} not within {DEADLINE:?}", self.name).into(),
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// One request, and where its answer came from.
    async fn ask(&self, sku: u64, backend: &Backend) -> Result<(Price, &'static str), BoxError> {
        let (calls, l2_hits) = (backend.calls(), self.l2.snapshot().hits);
        let price = self.svc.clone().oneshot(sku).await?;
        let from = if backend.calls() > calls {
            "the backend"
        } else if self.l2.snapshot().hits > l2_hits {
            "Redis (L2)"
        } else {
            "its L1"
        };
        Ok((price, from))
    }
}

/// Runs the phase and returns its report (or the line saying it was
/// skipped).
pub(crate) async fn run() -> Result<String, BoxError> {
    let Some(mut server) = RedisServer::start().await? else {
        return Ok(
            "Redis phase skipped: `redis-server` is not on PATH and REDIS_URL is not set (install it, \
                   e.g. `apt-get install redis-server`, or set REDIS_URL=redis://host:6379/, to see two \
                   instances share a Redis tier)."
                .to_string(),
        );
    };
    let started = Instant::now();
    let mut out = String::new();
    writeln!(
        out,
        "Redis phase: instances A and B, each a CacheLayer over Tiered<QuickCacheStore, RedisStore>, \
         one backend ({} ms per call), Redis at {}{}\n",
        LATENCY.as_millis(),
        server.url,
        if server.ours() {
            " (started here)"
        } else {
            " (REDIS_URL)"
        }
    )?;
    let backend = Backend::default();
    let a = Instance::new("a", &server, &backend)?;
    let b = Instance::new("b", &server, &backend)?;
    a.until("subscribed", |s| s.l1_flushes >= 1).await?;
    b.until("subscribed", |s| s.l1_flushes >= 1).await?;

    writeln!(
        out,
        "| step | answer (sku, cents) | served from | backend calls so far |"
    )?;
    writeln!(out, "|---|---|---|---:|")?;
    let step = |out: &mut String, what: &str, (price, from): (Price, &str)| {
        writeln!(out, "| {what} | {price:?} | {from} | {} |", backend.calls())
    };
    step(
        &mut out,
        "A asks for sku 7 (a miss: fills A's L1 and Redis)",
        a.ask(7, &backend).await?,
    )?;
    // B hears of A's write before it reads (a later message would only
    // drop what B promotes).
    b.until("A's write heard", |s| s.invalidations_received >= 1)
        .await?;
    step(&mut out, "B asks for sku 7", b.ask(7, &backend).await?)?;
    step(&mut out, "A asks again", a.ask(7, &backend).await?)?;

    // The price changes; A's writer invalidates the key.
    backend
        .prices
        .lock()
        .expect("the price table")
        .insert(7, 650);
    let heard = b.l2.snapshot().invalidations_received;
    a.cache.invalidate(&7).await;
    b.until("A's invalidation heard", |s| {
        s.invalidations_received > heard
    })
    .await?;
    writeln!(
        out,
        "| sku 7's price changes; A invalidates it | — | A's L1 holds it: {}, B's L1 holds it: {} | {} |",
        a.l1_holds(7),
        b.l1_holds(7),
        backend.calls()
    )?;
    let heard = a.l2.snapshot().invalidations_received;
    step(&mut out, "B asks for sku 7", b.ask(7, &backend).await?)?;
    a.until("B's write heard", |s| s.invalidations_received > heard)
        .await?;
    step(&mut out, "A asks for sku 7", a.ask(7, &backend).await?)?;

    if !server.ours() {
        writeln!(
            out,
            "\nThe outage part is skipped: the server REDIS_URL names is not this phase's to kill."
        )?;
        return Ok(out);
    }
    // Redis dies: every request is still answered, from L1 or the backend.
    let calls = backend.calls();
    let (before_a, before_b) = (a.l2.snapshot(), b.l2.snapshot());
    let l1_hits = || a.cache.snapshot().hits + b.cache.snapshot().hits;
    let hits = l1_hits();
    server.kill();
    let killed = Instant::now();
    let failed = Arc::new(AtomicU64::new(0));
    let mut clients = JoinSet::new();
    for instance in [&a, &b] {
        for w in 0..WORKERS {
            let (svc, failed) = (instance.svc.clone(), Arc::clone(&failed));
            clients.spawn(async move {
                for i in 0..OUTAGE_REQUESTS / (2 * WORKERS) {
                    let sku = 7 + (w * 31 + i * 7) % OUTAGE_KEYS;
                    if svc.clone().oneshot(sku).await.is_err() {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    }
    clients.join_all().await;
    let wall = killed.elapsed();
    let troubles = |s: RedisStoreSnapshot, before: RedisStoreSnapshot| {
        format!(
            "{} / {} / {}",
            s.errors - before.errors,
            s.timeouts - before.timeouts,
            s.rejected - before.rejected
        )
    };
    writeln!(
        out,
        "\nRedis killed, then {OUTAGE_REQUESTS} requests over {OUTAGE_KEYS} SKUs from A and B ({WORKERS} clients each) in {:.0} ms: \
         {} failed; {} answered from L1, {} by the backend (the rest waited on another request's load).",
        wall.as_secs_f64() * 1e3,
        failed.load(Ordering::Relaxed),
        l1_hits() - hits,
        backend.calls() - calls,
    )?;
    writeln!(
        out,
        "Redis commands failed / timed out (50 ms) / not sent (breaker open): A {}, B {}. \
         The phase took {:.1} s; its redis-server is gone.",
        troubles(a.l2.snapshot(), before_a),
        troubles(b.l2.snapshot(), before_b),
        started.elapsed().as_secs_f64(),
    )?;
    Ok(out)
}
