//! The retry and hedge layers count in their own memory and publish to the
//! recorder in force when telemetry is flushed: layers built before the
//! recorder exists report into it, every series in `METRICS` is emitted
//! with the instance's `name` label, and nothing else is.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use buttress_core::classify::Classification;
use buttress_core::telemetry::{MetricKind, flush};
use buttress_retry::{
    BudgetExhausted, DeadlineExceeded, HedgeDelay, HedgeLayer, HedgePolicy, METRICS, RetryBudget,
    RetryLayer, RetryPolicy,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tower::{Layer, ServiceExt, service_fn};

/// Series values by metric name and labels besides `name`.
type Series = HashMap<(String, Vec<(String, String)>), f64>;

/// Every series published for the instances named in `names`, after a
/// flush into a fresh recorder; and every value of the `name` label seen.
fn published(names: &[&str]) -> (Series, Vec<String>) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, flush);
    let mut series = HashMap::new();
    let mut all_names = Vec::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let name = key
            .labels()
            .find(|l| l.key() == "name")
            .unwrap_or_else(|| panic!("{} has no name label", key.name()))
            .value()
            .to_owned();
        all_names.push(name.clone());
        if !names.contains(&name.as_str()) {
            continue;
        }
        let labels = key
            .labels()
            .filter(|l| l.key() != "name")
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        #[allow(clippy::cast_precision_loss)]
        let value = match value {
            DebugValue::Counter(c) => c as f64,
            DebugValue::Gauge(g) => g.into_inner(),
            DebugValue::Histogram(h) => h.len() as f64,
        };
        series.insert((key.name().to_owned(), labels), value);
    }
    (series, all_names)
}

fn get(series: &Series, metric: &str) -> f64 {
    get_with(series, metric, &[])
}

fn get_with(series: &Series, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let labels: Vec<_> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    *series
        .get(&(metric.to_owned(), labels.clone()))
        .unwrap_or_else(|| panic!("no series {metric} {labels:?}"))
}

/// What one request to the scripted backend does.
#[derive(Clone)]
enum Call {
    /// Fails (retryably) this many times, then answers.
    Flaky(u32, Arc<AtomicU32>),
    /// Fails in a way the classifier calls not retryable.
    Fatal,
    /// Never answers.
    Hang,
    /// Fails retryably after 600 ms.
    SlowFail,
}

fn flaky(failures: u32) -> Call {
    Call::Flaky(failures, Arc::new(AtomicU32::new(0)))
}

#[tokio::test(start_paused = true)]
async fn retry_counts_reach_a_recorder_installed_after_the_build() {
    // Built before any recorder exists. The classifier sees the backend's
    // own error type (`&str`), not a boxed error.
    let policy = RetryPolicy::builder()
        .name("orders")
        .base_delay(Duration::ZERO)
        .max_delay(Duration::ZERO)
        .deadline(Duration::from_secs(1))
        // Exactly four retries: 4 per second over 1 s, no share of requests.
        .budget(
            RetryBudget::builder()
                .percent(0.0)
                .min_per_second(4)
                .ttl(Duration::from_secs(1))
                .build()
                .unwrap(),
        )
        .classifier(|r: &Result<u32, &'static str>| match r {
            Ok(_) => Classification::success(),
            Err("fatal") => Classification::failure(),
            Err(_) => Classification::failure().retryable(true),
        })
        .build()
        .unwrap();
    let svc = RetryLayer::new(policy.clone()).layer(service_fn(|call: Call| async move {
        match call {
            Call::Flaky(failures, seen) => {
                if seen.fetch_add(1, Ordering::Relaxed) < failures {
                    Err("reset")
                } else {
                    Ok(7)
                }
            }
            Call::Fatal => Err("fatal"),
            Call::Hang => std::future::pending().await,
            Call::SlowFail => {
                tokio::time::sleep(const { Duration::from_millis(600) }).await;
                Err("slow")
            }
        }
    }));

    // Cut short by the deadline, then not retried because of it.
    let err = svc.clone().oneshot(Call::Hang).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<DeadlineExceeded>().unwrap().name(),
        "orders"
    );
    assert_eq!(
        svc.clone()
            .oneshot(Call::SlowFail)
            .await
            .unwrap_err()
            .to_string(),
        "slow"
    );
    // First try, after a retry, not retryable, out of attempts (3), and
    // the budget's refusal.
    assert_eq!(svc.clone().oneshot(flaky(0)).await.unwrap(), 7);
    assert_eq!(svc.clone().oneshot(flaky(1)).await.unwrap(), 7);
    assert_eq!(
        svc.clone()
            .oneshot(Call::Fatal)
            .await
            .unwrap_err()
            .to_string(),
        "fatal"
    );
    let err = svc.clone().oneshot(flaky(99)).await.unwrap_err();
    assert_eq!(err.to_string(), "reset", "the last attempt's error");
    let err = svc.clone().oneshot(flaky(99)).await.unwrap_err();
    assert!(err.is::<BudgetExhausted>(), "{err}");

    let (series, _) = published(&["orders"]);
    let outcome = |o| get_with(&series, "buttress_retry_requests_total", &[("outcome", o)]);
    assert_eq!(outcome("succeeded_first_try"), 1.0);
    assert_eq!(outcome("succeeded_after_retry"), 1.0);
    assert_eq!(
        outcome("failed_not_retried"),
        2.0,
        "fatal, and the deadline stop"
    );
    assert_eq!(outcome("failed_after_retry"), 2.0);
    assert_eq!(get(&series, "buttress_retry_attempts_total"), 11.0);
    assert_eq!(get(&series, "buttress_retry_retries_total"), 4.0);
    assert_eq!(get(&series, "buttress_retry_budget_exhausted_total"), 1.0);
    assert_eq!(get(&series, "buttress_retry_deadline_stops_total"), 1.0);
    assert_eq!(get(&series, "buttress_retry_deadline_exceeded_total"), 1.0);
    assert_eq!(get(&series, "buttress_retry_budget_available"), 0.0);

    let stats = policy.snapshot();
    assert_eq!(
        (
            stats.succeeded_first_try,
            stats.succeeded_after_retry,
            stats.failed_not_retried,
            stats.failed_after_retry
        ),
        (1, 1, 2, 2)
    );
    assert_eq!(
        (
            stats.attempts,
            stats.retries,
            stats.budget_exhausted,
            stats.deadline_stops,
            stats.deadline_exceeded
        ),
        (11, 4, 1, 1, 1)
    );

    let emitted: BTreeSet<_> = series.keys().map(|(m, _)| m.as_str()).collect();
    let listed: BTreeSet<_> = METRICS
        .iter()
        .map(|m| m.name)
        .filter(|m| m.starts_with("buttress_retry_"))
        .collect();
    assert_eq!(
        emitted, listed,
        "the retry emits exactly what METRICS lists"
    );
}

#[tokio::test(start_paused = true)]
async fn hedge_counts_reach_a_recorder_installed_after_the_build() {
    let policy = HedgePolicy::builder()
        .name("search")
        .delay(HedgeDelay::Fixed(Duration::from_millis(10)))
        // Exactly one hedge.
        .budget(
            RetryBudget::builder()
                .percent(0.0)
                .min_per_second(1)
                .ttl(Duration::from_secs(1))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    // Request 0 answers at once; 1's first attempt hangs (its hedge
    // answers); 2 fails at once; 3 answers after 100 ms (no budget left to
    // hedge it).
    let svc = HedgeLayer::new(policy.clone()).layer(service_fn(move |req: u32| {
        let attempt = c.fetch_add(1, Ordering::Relaxed);
        async move {
            match (req, attempt) {
                (1, 1) => std::future::pending().await,
                (2, _) => Err("down"),
                (3, _) => {
                    tokio::time::sleep(const { Duration::from_millis(100) }).await;
                    Ok(req)
                }
                _ => Ok(req),
            }
        }
    }));
    for req in 0..4 {
        let res = svc.clone().oneshot(req).await;
        assert_eq!(res.is_ok(), req != 2, "{req}: {res:?}");
    }

    let (series, _) = published(&["search"]);
    let outcome = |o| get_with(&series, "buttress_hedge_requests_total", &[("outcome", o)]);
    assert_eq!(outcome("primary_won"), 2.0);
    assert_eq!(outcome("hedge_won"), 1.0);
    assert_eq!(outcome("all_failed"), 1.0);
    assert_eq!(get(&series, "buttress_hedge_hedges_total"), 1.0);
    assert_eq!(get(&series, "buttress_hedge_budget_exhausted_total"), 1.0);
    assert_eq!(get(&series, "buttress_hedge_delay_seconds"), 0.01);
    assert_eq!(get(&series, "buttress_hedge_budget_available"), 0.0);
    let stats = policy.snapshot();
    assert_eq!(
        (
            stats.primary_won,
            stats.hedge_won,
            stats.all_failed,
            stats.hedges,
            stats.budget_exhausted
        ),
        (2, 1, 1, 1, 1)
    );

    let emitted: BTreeSet<_> = series.keys().map(|(m, _)| m.as_str()).collect();
    let listed: BTreeSet<_> = METRICS
        .iter()
        .map(|m| m.name)
        .filter(|m| m.starts_with("buttress_hedge_"))
        .collect();
    assert_eq!(emitted, listed, "hedging emits exactly what METRICS lists");
}

#[test]
fn metrics_are_named_by_the_rules() {
    for m in METRICS {
        assert!(
            m.name.starts_with("buttress_retry_") || m.name.starts_with("buttress_hedge_"),
            "{}",
            m.name
        );
        assert_eq!(
            m.kind == MetricKind::Counter,
            m.name.ends_with("_total"),
            "{}: counters, and only they, end in _total",
            m.name
        );
        assert!(
            !m.labels.contains(&"name"),
            "{}: `name` is implicit",
            m.name
        );
        assert!(!m.help.is_empty());
    }
}

#[test]
fn unnamed_policies_are_named_after_their_line_and_never_default() {
    let a = RetryPolicy::builder().build().unwrap();
    let b = RetryPolicy::builder().build().unwrap();
    let h = HedgePolicy::builder().build().unwrap();
    for name in [a.name(), b.name(), h.name()] {
        assert!(name.as_str().contains("telemetry.rs:"), "{name}");
    }
    assert_ne!(a.name(), b.name(), "built on different lines");

    // A live duplicate gets a suffix; an empty name is refused.
    let first = RetryPolicy::builder().name("dup").build().unwrap();
    let second = RetryPolicy::builder().name("dup").build().unwrap();
    assert_eq!(
        (first.name().as_str(), second.name().as_str()),
        ("dup", "dup#2")
    );
    let err = RetryPolicy::builder().name("").build().unwrap_err();
    assert!(err.to_string().contains("name"), "{err}");
    let err = HedgePolicy::builder().name("").build().unwrap_err();
    assert!(err.to_string().contains("name"), "{err}");

    let (series, names) = published(&[a.name().as_str(), h.name().as_str()]);
    assert!(names.iter().all(|n| n != "default"), "{names:?}");
    let requests = series
        .keys()
        .filter(|(m, _)| m == "buttress_retry_requests_total")
        .count();
    assert_eq!(requests, 4, "one series per outcome for the unnamed policy");
}
