//! The shared limiter against a real `redis-server` (real time: the script
//! reads the server's clock, so bounds here are tolerant).

mod common;

use std::time::{Duration, Instant};

use buttress_breaker::CircuitBreaker;
use buttress_core::BoxError;
use buttress_ratelimit::{Fallback, Quota, RateLimitLayer, RateLimited, RateLimiter};
use common::{RedisServer, free_port};
use tower::{Layer, ServiceExt, service_fn};

fn breaker(name: &str) -> CircuitBreaker {
    CircuitBreaker::builder()
        .name(name)
        .count_window(4)
        .minimum_calls(2)
        .open_duration(Duration::from_millis(100))
        .max_open_duration(Duration::from_millis(200))
        .build()
        .unwrap()
}

/// 5 per 10 s: one refill every 2 s, far longer than the test's steps.
fn slow() -> Quota {
    Quota::new(5, Duration::from_secs(10)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_one_quota_through_redis() {
    let server = RedisServer::start();
    let instances: Vec<RateLimiter<String>> = (0..4)
        .map(|i| {
            RateLimiter::builder(slow())
                .name(format!("shared-{i}"))
                .redis(server.client(), "rl-test")
                .build()
                .unwrap()
        })
        .collect();
    let mut tasks = Vec::new();
    for limiter in &instances {
        for _ in 0..5 {
            let limiter = limiter.clone();
            tasks.push(tokio::spawn(async move {
                limiter.check(&"acme".to_string()).await.is_allowed()
            }));
        }
    }
    let mut admitted = 0;
    for t in tasks {
        admitted += usize::from(t.await.unwrap());
    }
    // The burst, plus at most one refill if the test ran 2 s slow.
    assert!(
        (5..=6).contains(&admitted),
        "4 instances admitted {admitted} of 20 for a burst of 5"
    );
    let limited = instances[0].check(&"acme".to_string()).await;
    assert!(!limited.is_allowed());
    assert!(
        limited.retry_after() <= Duration::from_secs(2) && limited.retry_after() > Duration::ZERO
    );
    let errors: u64 = instances
        .iter()
        .map(|l| l.snapshot().redis_errors + l.snapshot().fallbacks)
        .sum();
    assert_eq!(errors, 0, "every decision came from Redis");

    // The key is namespaced and expires on its own.
    let mut conn = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg("rl-test:acme")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 10_000, "PTTL {ttl}");

    // After a script flush the next decision reloads the script.
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    let fresh = instances[1].check(&"other".to_string()).await;
    assert!(fresh.is_allowed());
    assert_eq!(
        fresh.remaining(),
        4,
        "a fresh key has its burst of 5 less this one"
    );
    assert!(
        fresh.reset() <= Duration::from_secs(2) && fresh.reset() > Duration::from_millis(1_900)
    );
    assert_eq!(instances[1].snapshot().redis_errors, 0);

    // Through the layer: the decision is the shared one.
    let svc = RateLimitLayer::new(instances[2].clone(), |r: &String| Some(r.clone()))
        .layer(service_fn(|r: String| async move { Ok::<_, BoxError>(r) }));
    let err = svc.clone().oneshot("acme".to_string()).await.unwrap_err();
    assert!(err.is::<RateLimited>());
    assert_eq!(svc.oneshot("fresh".to_string()).await.unwrap(), "fresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_falls_back_to_the_local_share_then_comes_back() {
    let mut server = RedisServer::start();
    let limiter = RateLimiter::<String>::builder(Quota::new(10, Duration::from_secs(100)).unwrap())
        .name("killed")
        .redis(server.client(), "rl-kill")
        .breaker(breaker("killed-redis"))
        .fallback(Fallback::LocalShare { instances: 2 })
        .build()
        .unwrap();
    let key = |s: &str| s.to_string();
    assert!(limiter.check(&key("warm")).await.is_allowed());
    server.kill();
    let started = Instant::now();
    let admitted = {
        let mut n = 0;
        for _ in 0..10 {
            n += usize::from(limiter.check(&key("a")).await.is_allowed());
        }
        n
    };
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "decisions kept coming: {:?}",
        started.elapsed()
    );
    assert_eq!(
        admitted, 5,
        "this instance's share of a burst of 10 with 2 instances"
    );
    let s = limiter.snapshot();
    assert_eq!(s.fallbacks, 10);
    assert!(s.redis_errors >= 1, "{s:?}");

    server.restart();
    // The breaker lets a probe through within its 100-200 ms open time;
    // decisions come from Redis again (the new server is empty).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = limiter.snapshot().fallbacks;
        let d = limiter.check(&key("probe")).await;
        if limiter.snapshot().fallbacks == before {
            assert!(d.is_allowed());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Redis was not used again within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut n = 0;
    for _ in 0..12 {
        n += usize::from(limiter.check(&key("b")).await.is_allowed());
    }
    assert_eq!(n, 10, "exact again: the whole burst from Redis");
}

#[tokio::test]
async fn fail_open_and_fail_closed_when_redis_is_unreachable() {
    let dead = redis::Client::open(format!("redis://127.0.0.1:{}/", free_port())).unwrap();
    let open = RateLimiter::<String>::builder(Quota::per_second(1).unwrap())
        .redis(dead.clone(), "x")
        .fallback(Fallback::FailOpen)
        .build()
        .unwrap();
    let closed = RateLimiter::<String>::builder(Quota::per_second(1).unwrap())
        .redis(dead, "x")
        .fallback(Fallback::FailClosed)
        .build()
        .unwrap();
    for _ in 0..3 {
        assert!(open.check(&"k".to_string()).await.is_allowed());
        let d = closed.check(&"k".to_string()).await;
        assert!(!d.is_allowed());
        assert_eq!(d.retry_after(), Duration::from_secs(1));
    }
    assert_eq!(open.snapshot().fallbacks, 3);
    assert_eq!(closed.snapshot().limited, 3);
}

/// Four instances under concurrent load for 10 s (real time: the quota is
/// enforced on the server's clock) admit no more than rate × time + burst,
/// and not far less.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_instances_under_load_hold_rate_times_time_plus_burst() {
    let server = RedisServer::start();
    let quota = Quota::per_second(50).unwrap().with_burst(10).unwrap();
    let started = Instant::now();
    let window = Duration::from_secs(10);
    let mut tasks = Vec::new();
    for i in 0..4 {
        let limiter = RateLimiter::<&'static str>::builder(quota)
            .name(format!("load-{i}"))
            .redis(server.client(), "rl-load")
            .build()
            .unwrap();
        for _ in 0..4 {
            let limiter = limiter.clone();
            tasks.push(tokio::spawn(async move {
                let (mut admitted, mut fallbacks) = (0u64, 0u64);
                while started.elapsed() < window {
                    admitted += u64::from(limiter.check(&"tenant").await.is_allowed());
                    // Yield a little so 16 loops do not starve the runtime.
                    tokio::task::yield_now().await;
                }
                fallbacks += limiter.snapshot().fallbacks;
                (admitted, fallbacks)
            }));
        }
    }
    let (mut admitted, mut fallbacks) = (0, 0);
    for t in tasks {
        let (a, f) = t.await.unwrap();
        admitted += a;
        fallbacks = fallbacks.max(f);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let bound = (50.0 * elapsed).ceil() as u64 + 10;
    assert_eq!(fallbacks, 0, "every decision came from Redis");
    assert!(
        admitted <= bound,
        "admitted {admitted} > {bound} in {elapsed:.2} s"
    );
    // And the quota was not starved: at least half of rate × time.
    assert!(
        admitted >= 250,
        "admitted only {admitted} in {elapsed:.2} s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_redis_rejected_is_rejected_locally_until_its_wait_passes() {
    let mut server = RedisServer::start();
    let limiter = RateLimiter::<String>::builder(Quota::new(1, Duration::from_secs(60)).unwrap())
        .redis(server.client(), "rl-pre")
        .build()
        .unwrap();
    let key = "far-over".to_string();
    assert!(limiter.check(&key).await.is_allowed());
    let first = limiter.check(&key).await;
    assert!(!first.is_allowed(), "Redis rejects the second");
    server.kill();
    // No round trip: Redis is gone, yet no fallback and no error.
    for _ in 0..3 {
        let d = limiter.check(&key).await;
        assert!(!d.is_allowed());
        assert!(
            d.retry_after() <= first.retry_after() && d.retry_after() > Duration::from_secs(50)
        );
    }
    let s = limiter.snapshot();
    assert_eq!((s.fallbacks, s.redis_errors, s.limited), (0, 0, 4), "{s:?}");
}
