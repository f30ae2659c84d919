//! The retry and hedge layers report through the `metrics` facade.

use std::collections::HashMap;
use std::time::Duration;

use buttress_retry::{HedgeDelay, HedgeLayer, HedgePolicy, RetryBudget, RetryLayer, RetryPolicy};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tower::{Layer, ServiceExt, service_fn};

/// Counter values by name, for one label (a snapshot resets the counters:
/// take one and read it several times).
fn counters(snapshotter: &Snapshotter, label: (&str, &str)) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        if !key
            .labels()
            .any(|l| l.key() == label.0 && l.value() == label.1)
        {
            continue;
        }
        let DebugValue::Counter(c) = value else {
            panic!("{} is not a counter: {value:?}", key.name());
        };
        *out.entry(key.name().to_owned()).or_default() += c;
    }
    out
}

#[tokio::test(start_paused = true)]
async fn retry_counters() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // Reserve for exactly one retry: 1/s over 1 s, no share of requests.
    let policy = metrics::with_local_recorder(&recorder, || {
        RetryPolicy::builder()
            .name("orders")
            .budget(
                RetryBudget::builder()
                    .percent(0.0)
                    .min_per_second(1)
                    .ttl(Duration::from_secs(1))
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    });
    let svc =
        RetryLayer::new(policy.clone()).layer(service_fn(|_: ()| async { Err::<(), _>("down") }));
    // Attempt 1 fails, retry (the one in the budget) fails, the third is refused.
    svc.oneshot(()).await.unwrap_err();
    let c = counters(&snapshotter, ("retry", "orders"));
    assert_eq!(c["buttress_retry_attempts_total"], 2);
    assert_eq!(c["buttress_retry_retries_total"], 1);
    assert_eq!(c["buttress_retry_budget_exhausted_total"], 1);
    assert_eq!(c["buttress_retry_deadline_stops_total"], 0);
    let stats = policy.stats();
    assert_eq!((stats.retries, stats.budget_exhausted), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn hedge_counters() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let policy = metrics::with_local_recorder(&recorder, || {
        HedgePolicy::builder()
            .name("search")
            .delay(HedgeDelay::Fixed(Duration::from_millis(10)))
            .budget(RetryBudget::builder().min_per_second(1).build().unwrap())
            .build()
            .unwrap()
    });
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let c = calls.clone();
    let svc = HedgeLayer::new(policy).layer(service_fn(move |_: ()| {
        let n = c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async move {
            if n == 0 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Ok::<_, &'static str>(n)
        }
    }));
    assert_eq!(svc.oneshot(()).await.unwrap(), 1);
    let c = counters(&snapshotter, ("hedge", "search"));
    assert_eq!(c["buttress_retry_hedge_requests_total"], 1);
    assert_eq!(c["buttress_retry_hedges_fired_total"], 1);
    assert_eq!(c["buttress_retry_hedges_won_total"], 1);
    assert_eq!(c["buttress_retry_hedge_budget_exhausted_total"], 0);
}
