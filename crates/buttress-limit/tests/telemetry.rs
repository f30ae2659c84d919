//! What the limit and the throttle publish: every series of [`METRICS`],
//! labelled with the instance's name, with the counts the calls made, into
//! a recorder created after the layers were built.
//!
//! Each test flushes explicitly into a local recorder; no global recorder
//! is installed (the background publisher writes only to that one).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use buttress_core::classify::Classification;
use buttress_core::telemetry::{Name, flush};
use buttress_limit::algorithm::{Fixed, Vegas};
use buttress_limit::throttle::{AdaptiveThrottle, AdaptiveThrottleLayer, Throttled};
use buttress_limit::{AdaptiveLimit, AdaptiveLimitLayer, METRICS, Overloaded};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tokio::time::sleep;
use tower::{Layer, ServiceExt, service_fn};

/// Label keys and values.
type Labels = Vec<(String, String)>;

/// One published series: metric name and its labels besides `name`.
type Series = (String, Labels);

/// Flushes every live layer into a fresh local recorder and returns the
/// series of the instance `name`, checking on the way that each carries
/// exactly the labels, unit and help [`METRICS`] gives it.
fn published(name: Name) -> BTreeMap<Series, f64> {
    let all = flush_all();
    let mut out = BTreeMap::new();
    for (metric, labels, value) in all {
        let Some(instance) = labels.iter().find(|(k, _)| k == "name") else {
            panic!("{metric} has no name label: {labels:?}");
        };
        if instance.1 != name.as_str() {
            continue;
        }
        let extra: Vec<_> = labels.into_iter().filter(|(k, _)| k != "name").collect();
        out.insert((metric, extra), value);
    }
    out
}

/// Every series of every live layer in the process: metric name, labels,
/// value (counters and gauges as `f64`).
fn flush_all() -> Vec<(String, Labels, f64)> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, flush);
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, unit, help, value)| {
            let metric = key.key().name().to_owned();
            if let Some(info) = METRICS.iter().find(|m| m.name == metric) {
                assert_eq!(unit, Some(info.unit), "{metric}'s unit");
                assert_eq!(help.as_deref(), Some(info.help), "{metric}'s help");
                let keys: Vec<_> = key.key().labels().map(|l| l.key().to_owned()).collect();
                let mut expected = vec!["name".to_owned()];
                expected.extend(info.labels.iter().map(|l| (*l).to_owned()));
                assert_eq!(keys, expected, "{metric}'s labels");
            }
            let labels = key
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            let value = match value {
                DebugValue::Counter(c) => c as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(_) => panic!("{metric}: no histogram expected"),
            };
            (metric, labels, value)
        })
        .collect()
}

fn get(series: &BTreeMap<Series, f64>, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let key = (
        metric.to_owned(),
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
    *series
        .get(&key)
        .unwrap_or_else(|| panic!("{metric} {labels:?} not published: {series:#?}"))
}

fn names(series: &BTreeMap<Series, f64>) -> BTreeSet<&str> {
    series.keys().map(|(m, _)| m.as_str()).collect()
}

/// Requests: the partition (or none) and the backend's latency in ms; 0
/// fails at once.
type Req = (Option<&'static str>, u64);

#[tokio::test(start_paused = true)]
async fn a_limiter_built_before_the_recorder_publishes_every_series_into_it() {
    let limit = AdaptiveLimit::builder(Vegas::builder().initial_limit(2).build().unwrap())
        .name("telemetry-limit")
        .window(Duration::from_millis(100))
        .window_samples(1)
        .queue(1, Duration::from_millis(50))
        .partition("batch", 0.5)
        .build()
        .unwrap();
    let backend = service_fn(|(_, ms): Req| async move {
        if ms == 0 {
            return Err("failed");
        }
        sleep(Duration::from_millis(ms)).await;
        Ok(ms)
    });
    let svc = AdaptiveLimitLayer::new(limit.clone())
        .partition_by(|req: &Req| req.0)
        .layer(backend);

    // Two calls take the whole limit; a third (batch) queues; a fourth finds
    // the queue full.
    let a = tokio::spawn(svc.clone().oneshot((Some("batch"), 100)));
    let b = tokio::spawn(svc.clone().oneshot((None, 100)));
    tokio::task::yield_now().await;
    let c = tokio::spawn(svc.clone().oneshot((Some("batch"), 100)));
    tokio::task::yield_now().await;
    let full = svc.clone().oneshot((None, 100)).await.unwrap_err();
    let full = full.downcast_ref::<Overloaded>().unwrap();
    assert_eq!(full.name(), "telemetry-limit");

    let busy = published(limit.name());
    assert_eq!(get(&busy, "buttress_limit_in_flight", &[]), 2.0);
    assert_eq!(get(&busy, "buttress_limit_queue_length", &[]), 1.0);
    assert_eq!(
        get(
            &busy,
            "buttress_limit_partition_in_flight",
            &[("partition", "batch")]
        ),
        1.0
    );
    assert_eq!(
        get(&busy, "buttress_limit_rtt_seconds", &[]),
        0.0,
        "no window fed yet"
    );

    // The queued call waits its 50 ms and is shed; the two in flight
    // complete at 100 ms and close the first window; one more call fails.
    let late = c.await.unwrap().unwrap_err();
    assert_eq!(
        late.downcast_ref::<Overloaded>().unwrap().name(),
        limit.name()
    );
    assert_eq!(a.await.unwrap().unwrap(), 100);
    assert_eq!(b.await.unwrap().unwrap(), 100);
    svc.clone().oneshot((None, 0)).await.unwrap_err();

    let s = published(limit.name());
    let calls = |outcome| get(&s, "buttress_limit_calls_total", &[("outcome", outcome)]);
    assert_eq!(calls("admitted"), 3.0, "a, b and the failed call");
    assert_eq!(calls("rejected"), 2.0, "queue full, and the queue timeout");
    assert_eq!(get(&s, "buttress_limit_failures_total", &[]), 1.0);
    assert_eq!(get(&s, "buttress_limit_queued_total", &[]), 1.0);
    assert_eq!(get(&s, "buttress_limit_queue_timeouts_total", &[]), 1.0);
    assert_eq!(
        get(&s, "buttress_limit_changes_total", &[]),
        0.0,
        "Vegas' first window only sets its no-load RTT"
    );
    assert_eq!(get(&s, "buttress_limit_limit", &[]), 2.0);
    assert_eq!(get(&s, "buttress_limit_in_flight", &[]), 0.0);
    assert_eq!(get(&s, "buttress_limit_queue_length", &[]), 0.0);
    // Both fed calls took 100 ms (paused time, to the millisecond a tokio
    // timer rounds up to).
    let rtt = get(&s, "buttress_limit_rtt_seconds", &[]);
    assert!((0.100..=0.101).contains(&rtt), "{rtt}");
    assert_eq!(get(&s, "buttress_limit_min_rtt_seconds", &[]), rtt);
    let batch = [("partition", "batch")];
    assert_eq!(get(&s, "buttress_limit_partition_in_flight", &batch), 0.0);
    assert_eq!(
        get(&s, "buttress_limit_partition_rejected_total", &batch),
        1.0,
        "the queued batch call"
    );
    assert_eq!(limit.snapshot().rejected, 2);

    let limit_metrics: BTreeSet<_> = METRICS
        .iter()
        .map(|m| m.name)
        .filter(|n| n.starts_with("buttress_limit_"))
        .collect();
    assert_eq!(
        names(&s),
        limit_metrics,
        "exactly the limit's catalogued metrics"
    );
}

#[tokio::test(start_paused = true)]
async fn a_throttle_built_before_the_recorder_publishes_every_series_into_it() {
    let throttle = AdaptiveThrottle::builder()
        .name("telemetry-throttle")
        .seed(11)
        .build()
        .unwrap();
    // The backend answers, but the classifier refuses every answer: nothing
    // is accepted, so the throttle starts shedding.
    let refused = |_: &Result<u32, &'static str>| Classification::failure();
    let svc = AdaptiveThrottleLayer::new(throttle.clone())
        .classifier(refused)
        .layer(service_fn(|n: u32| async move { Ok::<_, &'static str>(n) }));
    let mut shed = 0u32;
    for i in 0..200 {
        if let Err(e) = svc.clone().oneshot(i).await {
            assert_eq!(
                e.downcast_ref::<Throttled>().unwrap().name(),
                "telemetry-throttle"
            );
            shed += 1;
        }
    }
    assert!(shed > 100, "{shed}");

    let s = published(throttle.name());
    let calls = |outcome| get(&s, "buttress_throttle_calls_total", &[("outcome", outcome)]);
    assert_eq!(calls("rejected"), f64::from(shed));
    assert_eq!(calls("sent"), f64::from(200 - shed));
    assert_eq!(throttle.snapshot().rejected, u64::from(shed));
    let p = get(&s, "buttress_throttle_reject_probability", &[]);
    assert_eq!(p, throttle.snapshot().reject_probability);
    assert!((p - 200.0 / 201.0).abs() < 1e-12, "{p}");

    let throttle_metrics: BTreeSet<_> = METRICS
        .iter()
        .map(|m| m.name)
        .filter(|n| n.starts_with("buttress_throttle_"))
        .collect();
    assert_eq!(names(&s), throttle_metrics);
}

#[test]
fn every_catalogued_metric_is_a_limit_or_throttle_metric_with_the_house_names() {
    for m in METRICS {
        assert!(
            m.name.starts_with("buttress_limit_") || m.name.starts_with("buttress_throttle_"),
            "{}",
            m.name
        );
        let counter = m.kind == buttress_core::telemetry::MetricKind::Counter;
        assert_eq!(m.name.ends_with("_total"), counter, "{}", m.name);
        assert!(
            !m.labels.contains(&"name"),
            "`name` is added to every series"
        );
    }
}

#[test]
fn unnamed_layers_are_named_after_the_line_that_built_them_never_default() {
    let a = AdaptiveLimit::builder(Fixed::new(1).unwrap())
        .build()
        .unwrap();
    let b = AdaptiveLimit::builder(Fixed::new(1).unwrap())
        .build()
        .unwrap();
    let t = AdaptiveThrottle::builder().build().unwrap();
    let u = AdaptiveThrottle::builder().build().unwrap();
    for name in [a.name(), b.name(), t.name(), u.name()] {
        assert!(
            name.as_str()
                .starts_with("crates/buttress-limit/tests/telemetry.rs:"),
            "{name}"
        );
    }
    assert_ne!(a.name(), b.name(), "built on different lines");
    assert_ne!(t.name(), u.name(), "built on different lines");

    // A second live instance of a name gets a suffix; a dropped one frees it.
    let first = AdaptiveLimit::builder(Fixed::new(1).unwrap())
        .name("dup")
        .build()
        .unwrap();
    let second = AdaptiveLimit::builder(Fixed::new(1).unwrap())
        .name("dup")
        .build()
        .unwrap();
    assert_eq!(
        (first.name(), second.name()),
        (Name::new("dup"), Name::new("dup#2"))
    );
    drop(first);
    let third = AdaptiveLimit::builder(Fixed::new(1).unwrap())
        .name("dup")
        .build()
        .unwrap();
    assert_eq!(third.name(), "dup");

    let empty = AdaptiveLimit::builder(Fixed::new(1).unwrap())
        .name("")
        .build()
        .unwrap_err();
    assert_eq!(empty.field(), "name");

    let all = flush_all();
    for name in [a.name(), b.name(), t.name(), u.name(), second.name()] {
        assert!(
            all.iter().any(|(_, labels, _)| labels
                .iter()
                .any(|(k, v)| k == "name" && v == name.as_str())),
            "{name} publishes"
        );
    }
    assert!(
        all.iter()
            .all(|(_, labels, _)| labels.iter().all(|(_, v)| v != "default")),
        "no series is named \"default\""
    );
}
