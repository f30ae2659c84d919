//! The in-process limiter under paused time: exact admission sequences,
//! plans, the bound on keys, the layer's handling of keys and fields.

use std::time::Duration;

use buttress_core::BoxError;
use buttress_core::reject::{RejectionKind, rejection};
use buttress_ratelimit::{MissingKey, OnMissingKey, Quota, RateLimitLayer, RateLimiter};
use proptest::prelude::*;
use tokio::time::advance;
use tower::{Layer, ServiceExt, service_fn};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(start_paused = true)]
async fn rate_and_burst_give_an_exact_admission_sequence() {
    // 10 per second (one every 100 ms), bursts of 3.
    let q = Quota::per_second(10).unwrap().with_burst(3).unwrap();
    let limiter = RateLimiter::<u32>::builder(q).build().unwrap();
    let seq = |n| {
        (0..n)
            .map(|_| limiter.check_local(&1).is_allowed())
            .collect::<Vec<_>>()
    };
    assert_eq!(seq(4), [true, true, true, false], "the burst, then nothing");
    let d = limiter.check_local(&1);
    assert_eq!(d.retry_after(), ms(100), "the wait is one interval");
    advance(ms(99)).await;
    assert!(!limiter.check_local(&1).is_allowed(), "1 ms early is early");
    assert_eq!(limiter.check_local(&1).retry_after(), ms(1));
    advance(ms(1)).await;
    assert_eq!(
        seq(2),
        [true, false],
        "one per interval once the burst is spent"
    );
    advance(ms(250)).await;
    assert_eq!(seq(3), [true, true, false], "250 ms refill two and a half");
    advance(Duration::from_secs(10)).await;
    let d = limiter.check_local(&1);
    assert_eq!(
        d.remaining(),
        2,
        "idle long enough: the whole burst is back"
    );
    assert_eq!(d.reset(), ms(100));
    let s = limiter.snapshot();
    assert_eq!((s.allowed, s.limited), (7, 6));
}

#[tokio::test(start_paused = true)]
async fn plans_give_each_key_its_quota_and_count_by_class() {
    let free = Quota::per_second(1).unwrap().class("free");
    let pro = Quota::per_second(5).unwrap().class("pro");
    let limiter = RateLimiter::builder(free)
        .plans(move |tenant: &&str| {
            if tenant.starts_with("pro-") {
                pro
            } else {
                free
            }
        })
        .build()
        .unwrap();
    let admitted = |k: &'static str| {
        (0..10)
            .filter(|_| limiter.check_local(&k).is_allowed())
            .count()
    };
    assert_eq!(admitted("pro-acme"), 5);
    assert_eq!(admitted("globex"), 1);
    let mut by_class = limiter.snapshot().by_class;
    by_class.sort_unstable();
    assert_eq!(by_class, [("free", 1, 9), ("pro", 5, 5)]);
}

#[test]
fn a_million_distinct_keys_stay_within_max_keys() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let limiter = RateLimiter::<u64>::builder(Quota::per_second(1).unwrap())
            .max_keys(10_000)
            .build()
            .unwrap();
        for k in 0..1_000_000u64 {
            assert!(
                limiter.check_local(&k).is_allowed(),
                "a new key has its burst"
            );
        }
        let s = limiter.snapshot();
        assert!(
            s.keys <= 10_000,
            "tracked {} keys for max_keys 10,000",
            s.keys
        );
        assert!(s.keys >= 5_000, "the map is used: {} keys", s.keys);
        // A key in use survives the flood: it was touched again and again.
        let hot = RateLimiter::<u64>::builder(Quota::per_second(1).unwrap())
            .max_keys(1_000)
            .build()
            .unwrap();
        assert!(hot.check_local(&u64::MAX).is_allowed());
        for k in 0..100_000u64 {
            let _ = hot.check_local(&k);
            if k % 100 == 0 {
                assert!(
                    !hot.check_local(&u64::MAX).is_allowed(),
                    "the hot key is still limited at {k}"
                );
            }
        }
    });
}

/// governor's keyed limiter (DashMap) keeps every key until
/// `retain_recent` is called: a million distinct keys are a million
/// entries. The reason the local store is a bounded map of our own.
#[test]
fn governor_keeps_every_distinct_key() {
    use std::num::NonZeroU32;
    let g = governor::RateLimiter::keyed(governor::Quota::per_second(NonZeroU32::new(1).unwrap()));
    for k in 0..1_000_000u64 {
        let _ = g.check_key(&k);
    }
    assert_eq!(g.len(), 1_000_000);
}

#[tokio::test(start_paused = true)]
async fn the_layer_limits_per_key_and_handles_a_missing_key_as_configured() {
    let inner = service_fn(|req: Option<&'static str>| async move { Ok::<_, BoxError>(req) });
    let q = Quota::per_second(1).unwrap();
    let bypass = RateLimitLayer::new(
        RateLimiter::builder(q).name("bypass").build().unwrap(),
        |r: &Option<&'static str>| *r,
    )
    .layer(inner);
    assert!(bypass.clone().oneshot(Some("a")).await.is_ok());
    let err = bypass.clone().oneshot(Some("a")).await.unwrap_err();
    let r = rejection(&err).expect("a buttress rejection");
    assert_eq!(r.kind(), RejectionKind::RateLimited);
    assert_eq!(r.name().as_str(), "bypass");
    assert_eq!(r.retry_after(), Some(Duration::from_secs(1)));
    for _ in 0..3 {
        assert!(
            bypass.clone().oneshot(None).await.is_ok(),
            "no key: unlimited"
        );
    }
    let reject = RateLimitLayer::new(
        RateLimiter::builder(q)
            .on_missing_key(OnMissingKey::Reject)
            .build()
            .unwrap(),
        |r: &Option<&'static str>| *r,
    )
    .layer(inner);
    let err = reject.oneshot(None).await.unwrap_err();
    assert!(err.is::<MissingKey>());
    assert!(
        rejection(&err).is_none(),
        "a missing key is not a load rejection"
    );
}

#[tokio::test(start_paused = true)]
async fn admitted_responses_carry_the_ratelimit_fields() {
    let inner =
        service_fn(|_req: http::Request<()>| async { Ok::<_, BoxError>(http::Response::new(())) });
    let limiter = RateLimiter::builder(
        Quota::new(6, Duration::from_secs(60))
            .unwrap()
            .class("free"),
    )
    .build()
    .unwrap();
    let key = |r: &http::Request<()>| r.headers().get("x-tenant").cloned();
    let svc = RateLimitLayer::new(limiter.clone(), key)
        .with_headers()
        .layer(inner);
    let req = || {
        http::Request::builder()
            .header("x-tenant", "acme")
            .body(())
            .unwrap()
    };
    let res = svc.clone().oneshot(req()).await.unwrap();
    assert_eq!(res.headers()["ratelimit-policy"], "\"free\";q=6;w=60");
    assert_eq!(res.headers()["ratelimit"], "\"free\";r=5;t=10");
    let plain = RateLimitLayer::new(limiter, key).layer(inner);
    let res = plain.oneshot(req()).await.unwrap();
    assert!(
        res.headers().get("ratelimit").is_none(),
        "off unless asked for"
    );
}

#[test]
fn bad_settings_name_their_field() {
    let q = Quota::per_second(1).unwrap();
    assert_eq!(
        RateLimiter::<u8>::builder(q)
            .max_keys(0)
            .build()
            .unwrap_err()
            .field(),
        "max_keys"
    );
    assert_eq!(
        RateLimiter::<u8>::builder(q)
            .name("")
            .build()
            .unwrap_err()
            .field(),
        "name"
    );
    assert_eq!(
        RateLimiter::<u8>::builder(q)
            .fallback(buttress_ratelimit::Fallback::LocalShare { instances: 0 })
            .build()
            .unwrap_err()
            .field(),
        "fallback"
    );
}

/// A reference model: a bucket of `burst` tokens refilled continuously at
/// one token per interval (in nanoseconds: `level` is the refilled time,
/// capped at `burst` intervals; a request takes one interval).
struct Bucket {
    level: u64,
    cap: u64,
    cost: u64,
}

impl Bucket {
    fn take(&mut self, elapsed: u64) -> bool {
        self.level = (self.level + elapsed).min(self.cap);
        if self.level >= self.cost {
            self.level -= self.cost;
            true
        } else {
            false
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn gcra_agrees_with_a_token_bucket(
        count in 1u32..50,
        burst in 1u32..10,
        gaps in proptest::collection::vec(0u64..400, 1..200),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        rt.block_on(async {
            let q = Quota::per_second(count).unwrap().with_burst(burst).unwrap();
            let limiter = RateLimiter::<u8>::builder(q).build().unwrap();
            let cost = q.interval().as_nanos() as u64;
            let mut model = Bucket { level: cost * u64::from(burst), cap: cost * u64::from(burst), cost };
            for gap in gaps {
                advance(ms(gap)).await;
                let got = limiter.check_local(&0).is_allowed();
                prop_assert_eq!(got, model.take(gap * 1_000_000));
            }
            Ok(())
        })?;
    }
}

#[test]
fn services_and_futures_are_send() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _ctx = rt.enter();
    let limiter = RateLimiter::<String>::builder(Quota::per_second(1).unwrap())
        .build()
        .unwrap();
    send_sync(&limiter);
    let mut svc = RateLimitLayer::new(limiter, |r: &String| Some(r.clone()))
        .layer(service_fn(|r: String| async move { Ok::<_, BoxError>(r) }));
    send_sync(&svc);
    let fut = tower::Service::call(&mut svc, "k".to_string());
    send(&fut);
}
