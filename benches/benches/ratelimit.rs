//! The per-key rate limit: the in-process decision against `governor`'s
//! keyed limiter on the same keys, and the layer against tower's
//! `RateLimit` (unkeyed, one quota for the service) and the no-op floor.
//!
//! Build with `cargo bench -p buttress-benches --bench ratelimit --no-run`;
//! run alone (never `--workspace`: the tests' tokio `test-util` feature
//! would route every clock read through the mock clock).
//!
//! Bench ids, all in the group `ratelimit`:
//!
//! - `decide/buttress` and `decide/governor`: one admitted decision on a
//!   key taken in turn from 10,000 keys (quotas too large to bind);
//! - `decide-limited/buttress` and `decide-limited/governor`: one key over
//!   its quota, every decision a rejection;
//! - `layer/floor`, `layer/buttress-keyed`, `layer/buttress-one-key`,
//!   `layer/tower`: `call` + poll of a ready no-op service wrapped in each
//!   (inside a current-thread runtime's context, polled once with a no-op
//!   waker).
//! - `redis/buttress` and `redis/raw-evalsha`: one shared decision through
//!   the limiter, and the same script (`REDIS_SCRIPT`) called by
//!   redis-rs's `Script` on a `ConnectionManager` of its own, on a
//!   `redis-server` the bench starts on a free loopback port (skipped,
//!   with a line saying so, when `redis-server` is not on `PATH`).

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use buttress_ratelimit::{Quota, RateLimitLayer, RateLimiter};
use criterion::{Criterion, criterion_group, criterion_main};
use tower::{Layer, Service, service_fn};

const KEYS: u64 = 10_000;
/// The Redis rows' tolerance argument: the limiter's for a quota of 10^9
/// per second, (10^9 − 1) ns in whole µs.
const TAU_US: u64 = 999_999;

fn poll_once<F: Future>(f: F) -> Option<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

/// `poll_ready` (ready at once for every subject here), then `call` and
/// one poll of its future.
fn drive<S: Service<u64>>(svc: &mut S, req: u64) {
    let _ = poll_once(std::future::poll_fn(|cx| svc.poll_ready(cx)));
    black_box(poll_once(svc.call(req)));
}

fn noop() -> impl Service<u64, Response = u64, Error = Infallible> + Clone {
    service_fn(|r: u64| async move { Ok::<_, Infallible>(r) })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let _ctx = rt.enter();
    let mut g = c.benchmark_group("ratelimit");

    let big = Quota::per_second(1_000_000_000).expect("valid");
    let ours = RateLimiter::<u64>::builder(big)
        .max_keys(2 * KEYS as usize)
        .build()
        .expect("valid");
    let theirs = governor::RateLimiter::keyed(governor::Quota::per_second(
        NonZeroU32::new(1_000_000_000).expect("non-zero"),
    ));
    let mut k = 0u64;
    g.bench_function("decide/buttress", |b| {
        b.iter(|| {
            k = (k + 1) % KEYS;
            black_box(ours.check_local(&k).is_allowed())
        });
    });
    g.bench_function("decide/governor", |b| {
        b.iter(|| {
            k = (k + 1) % KEYS;
            black_box(theirs.check_key(&k).is_ok())
        });
    });

    let tiny = Quota::new(1, Duration::from_secs(3_600)).expect("valid");
    let ours_limited = RateLimiter::<u64>::builder(tiny).build().expect("valid");
    let theirs_limited = governor::RateLimiter::keyed(governor::Quota::per_hour(
        NonZeroU32::new(1).expect("non-zero"),
    ));
    let _ = ours_limited.check_local(&7);
    let _ = theirs_limited.check_key(&7);
    g.bench_function("decide-limited/buttress", |b| {
        b.iter(|| black_box(ours_limited.check_local(&7).is_allowed()));
    });
    g.bench_function("decide-limited/governor", |b| {
        b.iter(|| black_box(theirs_limited.check_key(&7).is_ok()));
    });

    let mut floor = noop();
    g.bench_function("layer/floor", |b| b.iter(|| drive(&mut floor, 1)));
    let mut keyed = RateLimitLayer::new(ours.clone(), |r: &u64| Some(*r % KEYS)).layer(noop());
    g.bench_function("layer/buttress-keyed", |b| {
        b.iter(|| {
            k += 1;
            drive(&mut keyed, k);
        });
    });
    let one = RateLimiter::<()>::builder(big).build().expect("valid");
    let mut one_key = RateLimitLayer::new(one, |_: &u64| Some(())).layer(noop());
    g.bench_function("layer/buttress-one-key", |b| {
        b.iter(|| drive(&mut one_key, 1))
    });
    let mut tower_rl =
        tower::limit::RateLimitLayer::new(u64::MAX, Duration::from_secs(1)).layer(noop());
    g.bench_function("layer/tower", |b| b.iter(|| drive(&mut tower_rl, 1)));
    g.finish();
}

/// A `redis-server` on a free loopback port, killed on drop.
struct Server(std::process::Child, u16);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> Option<Server> {
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .ok()?
        .port();
    let child = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no", "--loglevel", "warning"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let server = Server(child, port);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::park_timeout(Duration::from_millis(10));
    }
    Some(server)
}

fn bench_redis(c: &mut Criterion) {
    let Some(server) = start_redis() else {
        eprintln!("ratelimit: redis-server not on PATH (or not answering): redis rows skipped");
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let url = format!("redis://127.0.0.1:{}/", server.1);
    let client = redis::Client::open(url).expect("a valid URL");
    let quota = Quota::per_second(1_000_000_000).expect("valid");
    let limiter = RateLimiter::<u64>::builder(quota)
        .redis(client.clone(), "bench")
        .timeout(Duration::from_secs(1))
        .build()
        .expect("valid");
    let script = redis::Script::new(buttress_ratelimit::REDIS_SCRIPT);
    let mut conn = rt
        .block_on(redis::aio::ConnectionManager::new(client))
        .expect("a connection");
    // The limiter's own arguments for this quota: a 1 ns interval rounded
    // up to 1 µs, and a tolerance of (10^9 − 1) ns in whole µs.
    let interval_us = 1u64;
    let mut g = c.benchmark_group("ratelimit");
    let mut k = 0u64;
    g.bench_function("redis/buttress", |b| {
        b.iter(|| {
            k = (k + 1) % 1_000;
            black_box(rt.block_on(limiter.check(&k)).is_allowed())
        });
    });
    assert_eq!(
        limiter.snapshot().fallbacks,
        0,
        "every decision came from Redis"
    );
    g.bench_function("redis/raw-evalsha", |b| {
        b.iter(|| {
            k = (k + 1) % 1_000;
            let key = format!("bench:{k}");
            let r: (i64, i64, i64) = rt
                .block_on(
                    script
                        .key(key)
                        .arg(interval_us)
                        .arg(TAU_US)
                        .invoke_async(&mut conn),
                )
                .expect("a reply");
            black_box(r)
        });
    });
    g.finish();
}

criterion_group!(benches, bench, bench_redis);
criterion_main!(benches);
