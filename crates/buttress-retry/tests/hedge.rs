//! Hedging: the slow primary loses and is dropped; the hedge budget holds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use buttress_retry::{HedgeDelay, HedgeLayer, HedgePolicy, RetryBudget};
use tokio::time::{Instant, sleep};
use tower::{Layer, Service, ServiceExt, service_fn};

/// Sets its flag when dropped: proves a losing attempt was cancelled.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn budget(percent: f64, min: u32) -> RetryBudget {
    RetryBudget::builder()
        .percent(percent)
        .min_per_second(min)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_slow_primary_loses_to_the_hedge_and_is_dropped() {
    let dropped = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU32::new(0));
    let (d, c) = (dropped.clone(), calls.clone());
    let backend = service_fn(move |_: ()| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        let flag = (n == 0).then(|| DropFlag(d.clone()));
        async move {
            let _flag = flag;
            if n == 0 {
                sleep(Duration::from_secs(10)).await;
            } else {
                sleep(Duration::from_millis(5)).await;
            }
            Ok::<_, &'static str>(n)
        }
    });
    let policy = HedgePolicy::builder()
        .delay(HedgeDelay::Fixed(Duration::from_millis(100)))
        .budget(budget(5.0, 10))
        .build()
        .unwrap();
    let start = Instant::now();
    let got = HedgeLayer::new(policy.clone())
        .layer(backend)
        .oneshot(())
        .await
        .unwrap();
    assert_eq!(got, 1, "the hedge answered");
    assert_eq!(start.elapsed(), Duration::from_millis(105));
    assert!(dropped.load(Ordering::SeqCst), "the primary was dropped");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let s = policy.snapshot();
    assert_eq!((s.hedges, s.hedge_won), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_fast_primary_sends_no_hedge() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let backend = service_fn(move |_: ()| {
        c.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, &'static str>(()) }
    });
    let policy = HedgePolicy::builder()
        .delay(HedgeDelay::Fixed(Duration::from_millis(1)))
        .budget(budget(100.0, 100))
        .build()
        .unwrap();
    let svc = HedgeLayer::new(policy.clone()).layer(backend);
    for _ in 0..100 {
        svc.clone().oneshot(()).await.unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 100);
    assert_eq!(policy.snapshot().hedges, 0);
}

#[tokio::test(start_paused = true)]
async fn the_first_success_wins_over_an_earlier_failure() {
    // The primary fails after 150 ms, the hedge (sent at 100 ms) succeeds at 200 ms.
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let backend = service_fn(move |_: ()| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 {
                sleep(Duration::from_millis(150)).await;
                Err("primary failed")
            } else {
                sleep(Duration::from_millis(100)).await;
                Ok(n)
            }
        }
    });
    let policy = HedgePolicy::builder()
        .delay(HedgeDelay::Fixed(Duration::from_millis(100)))
        .budget(budget(5.0, 10))
        .build()
        .unwrap();
    let start = Instant::now();
    let got = HedgeLayer::new(policy).layer(backend).oneshot(()).await;
    assert_eq!(got, Ok(1));
    assert_eq!(start.elapsed(), Duration::from_millis(200));
}

/// 20 000 requests, one in ten slow: the p95 delay is learnt, and hedges
/// stay within 5 % of requests (the budget), where one in ten would
/// otherwise be hedged.
#[tokio::test(start_paused = true)]
async fn extra_load_stays_within_the_hedge_budget() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let backend = service_fn(move |i: u32| {
        c.fetch_add(1, Ordering::Relaxed);
        async move {
            let ms = if i.is_multiple_of(10) {
                500
            } else {
                10 + u64::from(i % 7)
            };
            sleep(Duration::from_millis(ms)).await;
            Ok::<_, &'static str>(i)
        }
    });
    let policy = HedgePolicy::builder().build().unwrap();
    let svc = HedgeLayer::new(policy.clone()).layer(backend);
    let mut tasks = tokio::task::JoinSet::new();
    let requests = 20_000u32;
    for i in 0..requests {
        let mut svc = svc.clone();
        // Hedges of the slow requests should also be slow here (i is the
        // same), so every hedge is pure extra load.
        tasks.spawn(async move { svc.ready().await.unwrap().call(i).await });
        sleep(Duration::from_millis(2)).await;
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
    }
    let delay = policy.snapshot().delay.expect("learnt a delay");
    assert!(
        delay >= Duration::from_millis(15) && delay <= Duration::from_millis(600),
        "{delay:?}"
    );
    let s = policy.snapshot();
    let extra = calls.load(Ordering::Relaxed) - requests;
    assert_eq!(u64::from(extra), s.hedges);
    assert!(s.hedges > 0);
    assert!(
        f64::from(extra) <= f64::from(requests) * 0.05,
        "{extra} hedges for {requests} requests"
    );
    assert!(s.budget_exhausted > 0, "the budget was the limit");
}

#[test]
fn hedge_services_and_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    fn send_sync<T: Send + Sync>(_: &T) {}
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _g = rt.enter();
    let policy = HedgePolicy::builder().build().unwrap();
    send_sync(&policy);
    let mut svc =
        HedgeLayer::new(policy).layer(service_fn(|_: ()| async { Ok::<_, &'static str>(()) }));
    send_sync(&svc);
    let fut = svc.call(());
    send(&fut);
}

#[test]
fn rejects_bad_settings_by_name() {
    let field = |r: Result<HedgePolicy, buttress_retry::ConfigError>| r.unwrap_err().field();
    assert_eq!(
        field(HedgePolicy::builder().max_hedges(0).build()),
        "max_hedges"
    );
    assert_eq!(
        field(HedgePolicy::builder().max_hedges(17).build()),
        "max_hedges"
    );
    assert_eq!(
        field(
            HedgePolicy::builder()
                .delay(HedgeDelay::Percentile(101.0))
                .build()
        ),
        "delay"
    );
    assert_eq!(
        field(
            HedgePolicy::builder()
                .delay(HedgeDelay::Fixed(Duration::ZERO))
                .build()
        ),
        "delay"
    );
    for p in [0.0, -1.0, f64::NAN] {
        assert_eq!(
            field(
                HedgePolicy::builder()
                    .delay(HedgeDelay::Percentile(p))
                    .build()
            ),
            "delay",
            "{p}"
        );
    }
    assert_eq!(
        field(HedgePolicy::builder().min_samples(0).build()),
        "min_samples"
    );
    assert_eq!(field(HedgePolicy::builder().name("").build()), "name");
}
