//! A breaker counts in its own memory and publishes to the recorder in
//! force when counts are flushed: one built before any recorder exists
//! reports every series, labelled with its name.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buttress_breaker::{CircuitBreaker, CircuitBreakerLayer, METRICS, State};
use buttress_core::classify::Outcome;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tokio::time::advance;
use tower::{Layer, ServiceExt, service_fn};

/// One published series: metric, labels (`name` included), value.
#[derive(Debug)]
struct Series {
    metric: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Series {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Flushes every live layer into a fresh recorder: every series published.
fn flush_all() -> Vec<Series> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, buttress_core::telemetry::flush);
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            #[allow(clippy::cast_precision_loss)]
            let value = match value {
                DebugValue::Counter(c) => c as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(_) => panic!("{} is a histogram", key.name()),
            };
            Series {
                metric: key.name().to_owned(),
                labels: key
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect(),
                value,
            }
        })
        .collect()
}

/// The series of the instance `name`.
fn published(name: &str) -> Vec<Series> {
    flush_all()
        .into_iter()
        .filter(|s| s.label("name") == Some(name))
        .collect()
}

/// The value of `metric` with these labels besides `name` (exactly).
fn value(series: &[Series], metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<_> = series
        .iter()
        .filter(|s| {
            s.metric == metric
                && s.labels.len() == labels.len() + 1
                && labels.iter().all(|(k, v)| s.label(k) == Some(v))
        })
        .collect();
    assert!(found.len() <= 1, "{metric} {labels:?}: {found:?}");
    found.first().map(|s| s.value)
}

fn calls(series: &[Series], outcome: &str) -> Option<f64> {
    value(
        series,
        "buttress_breaker_calls_total",
        &[("outcome", outcome)],
    )
}

fn transitions(series: &[Series], to: &str) -> Option<f64> {
    value(series, "buttress_breaker_transitions_total", &[("to", to)])
}

fn metric_names(series: &[Series]) -> BTreeSet<&str> {
    series.iter().map(|s| s.metric.as_str()).collect()
}

/// A state's value in the state gauges.
#[cfg(feature = "keyed")]
fn code(state: State) -> f64 {
    match state {
        State::Closed => 0.0,
        State::Open => 1.0,
        State::HalfOpen => 2.0,
        State::ForcedOpen => 3.0,
        State::ForcedClosed => 4.0,
        other => panic!("{other}"),
    }
}

fn is_keyed_only(metric: &str) -> bool {
    metric.contains("_key")
}

#[tokio::test(start_paused = true)]
async fn a_breaker_built_before_the_recorder_publishes_every_series() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&events);
    // Built while no recorder exists at all.
    let breaker = CircuitBreaker::builder()
        .name("orders")
        .count_window(10)
        .minimum_calls(4)
        .slow_call_duration(Duration::from_secs(1))
        .open_duration(Duration::from_secs(60))
        .open_duration_jitter(0.0)
        .half_open_probes(2)
        .on_state_change(move |t| {
            log.lock()
                .unwrap()
                .push((t.name(), t.key().is_none(), t.to()))
        })
        .build()
        .unwrap();
    assert_eq!(breaker.name(), "orders");
    let svc = CircuitBreakerLayer::new(breaker.clone()).layer(service_fn(|n: u32| async move {
        Ok::<_, std::io::Error>(n)
    }));

    // Closed: a success through the layer, a slow success, an ignored
    // call, a failure.
    assert_eq!(svc.clone().oneshot(7).await.unwrap(), 7);
    let slow = breaker.try_acquire().unwrap();
    advance(Duration::from_secs(2)).await;
    slow.record(Outcome::Success);
    breaker.try_acquire().unwrap().record(Outcome::Ignored);
    breaker.try_acquire().unwrap().record(Outcome::Failure);

    let s = published("orders");
    let gauge = |m| value(&s, m, &[]);
    assert_eq!(gauge("buttress_breaker_failure_rate"), Some(1.0 / 3.0));
    assert_eq!(gauge("buttress_breaker_slow_call_rate"), Some(1.0 / 3.0));
    assert_eq!(gauge("buttress_breaker_state"), Some(0.0), "0 = closed");

    // The fourth counted call reaches the minimum at 2 of 4 failed: open.
    breaker.try_acquire().unwrap().record(Outcome::Failure);
    assert_eq!(breaker.state(), State::Open);
    assert!(breaker.try_acquire().is_err());
    assert!(svc.clone().oneshot(1).await.is_err());
    assert_eq!(
        value(&published("orders"), "buttress_breaker_state", &[]),
        Some(1.0)
    );

    // Two probes succeed and close it; a failure while forced closed.
    advance(Duration::from_secs(60)).await;
    breaker.try_acquire().unwrap().record(Outcome::Success);
    breaker.try_acquire().unwrap().record(Outcome::Success);
    assert_eq!(breaker.state(), State::Closed);
    breaker.force_closed();
    breaker.try_acquire().unwrap().record(Outcome::Failure);
    breaker.reset();

    let s = published("orders");
    assert_eq!(calls(&s, "success"), Some(4.0), "1 + 1 slow + 2 probes");
    assert_eq!(
        calls(&s, "failure"),
        Some(3.0),
        "2 closed + 1 forced closed"
    );
    assert_eq!(calls(&s, "ignored"), Some(1.0));
    assert_eq!(calls(&s, "rejected"), Some(2.0));
    assert_eq!(
        value(&s, "buttress_breaker_slow_calls_total", &[]),
        Some(1.0)
    );
    assert_eq!(transitions(&s, "open"), Some(1.0));
    assert_eq!(transitions(&s, "half_open"), Some(1.0));
    assert_eq!(transitions(&s, "closed"), Some(2.0), "probes, reset");
    assert_eq!(transitions(&s, "forced_closed"), Some(1.0));
    assert_eq!(transitions(&s, "forced_open"), Some(0.0), "zeros too");
    assert_eq!(value(&s, "buttress_breaker_state", &[]), Some(0.0));
    assert_eq!(value(&s, "buttress_breaker_failure_rate", &[]), Some(0.0));
    assert_eq!(breaker.snapshot().rejected, 2);

    // Every metric of a single breaker, and nothing else.
    let expected: BTreeSet<&str> = METRICS
        .iter()
        .map(|m| m.name)
        .filter(|m| !is_keyed_only(m))
        .collect();
    assert_eq!(metric_names(&s), expected);
    for series in &s {
        let info = METRICS.iter().find(|m| m.name == series.metric).unwrap();
        let mut keys: Vec<_> = series.labels.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        let mut want = vec!["name"];
        want.extend(info.labels);
        want.sort_unstable();
        assert_eq!(keys, want, "{}: labels", series.metric);
    }

    let name = breaker.name();
    assert_eq!(
        *events.lock().unwrap(),
        vec![
            (name, true, State::Open),
            (name, true, State::HalfOpen),
            (name, true, State::Closed),
            (name, true, State::ForcedClosed),
            (name, true, State::Closed),
        ]
    );
}

#[test]
fn unnamed_breakers_are_named_after_their_line_and_live_names_are_unique() {
    let a = CircuitBreaker::builder().build().unwrap();
    let b = CircuitBreaker::builder().build().unwrap();
    assert_ne!(a.name(), b.name());
    for n in [a.name(), b.name()] {
        assert!(n.as_str().contains("tests/telemetry.rs:"), "{n}");
    }

    let first = CircuitBreaker::builder().name("twice").build().unwrap();
    let second = CircuitBreaker::builder().name("twice").build().unwrap();
    assert_eq!(
        (first.name().as_str(), second.name().as_str()),
        ("twice", "twice#2")
    );
    let err = second.try_acquire().map(|_| ()).err();
    assert!(err.is_none());
    second.force_open();
    assert_eq!(second.try_acquire().unwrap_err().name(), "twice#2");

    let all = flush_all();
    for n in [a.name(), b.name(), first.name(), second.name()] {
        assert!(all.iter().any(|s| s.label("name") == Some(n.as_str())));
    }
    assert!(
        all.iter()
            .all(|s| s.labels.iter().all(|(_, v)| v != "default")),
        "no series is named \"default\""
    );

    // A dropped breaker frees its name and publishes nothing more.
    drop(first);
    assert!(published("twice").is_empty());
    let third = CircuitBreaker::builder().name("twice").build().unwrap();
    assert_eq!(third.name(), "twice");
}

#[cfg(feature = "keyed")]
#[test]
fn keyed_sets_publish_totals_over_every_key_in_a_bounded_number_of_series() {
    // New keys register no series of their own: the set's series stay a
    // fixed dozen however many keys come and go.
    use buttress_breaker::KeyedCircuitBreaker;

    let breakers = KeyedCircuitBreaker::builder(
        CircuitBreaker::builder()
            .name("upstream")
            .count_window(4)
            .minimum_calls(2),
        100,
    )
    .build()
    .unwrap();
    for key in 0..100_000_u32 {
        let breaker = breakers.get(&key);
        breaker.try_acquire().unwrap().record(Outcome::Success);
    }
    assert!(breakers.snapshot().keys <= 100);
    let s = published("upstream");
    assert_eq!(
        s.len(),
        12,
        "4 call outcomes, slow, 5 transitions, 2 gauges"
    );
    assert_eq!(
        calls(&s, "success"),
        Some(100_000.0),
        "evicted keys' calls included"
    );
    #[allow(clippy::cast_precision_loss)]
    let held = breakers.snapshot().keys as f64;
    assert_eq!(value(&s, "buttress_breaker_keys", &[]), Some(held));
    assert_eq!(value(&s, "buttress_breaker_open_keys", &[]), Some(0.0));
}

#[cfg(feature = "keyed")]
#[test]
fn keyed_sets_count_open_keys_and_cap_opt_in_per_key_series() {
    use buttress_breaker::KeyedCircuitBreaker;

    let single = CircuitBreaker::builder().name("solo").build().unwrap();
    let breakers = KeyedCircuitBreaker::builder(
        CircuitBreaker::builder()
            .name("hosts")
            .count_window(4)
            .minimum_calls(2),
        10,
    )
    .per_key_metrics(true)
    .build()
    .unwrap();
    let trip = |key: &str| {
        let breaker = breakers.get(&key.to_owned());
        while breaker.state() == State::Closed {
            breaker.try_acquire().unwrap().record(Outcome::Failure);
        }
    };

    // Two keys trip; one is forced open: three open keys.
    trip("a");
    trip("b");
    let c = breakers.get(&"c".to_owned());
    c.force_open();
    assert_eq!((c.name(), c.key()), (breakers.name(), Some("c")));
    assert_eq!(c.try_acquire().unwrap_err().name(), "hosts");
    let s = published("hosts");
    assert_eq!(value(&s, "buttress_breaker_open_keys", &[]), Some(3.0));
    assert_eq!(transitions(&s, "open"), Some(2.0));
    assert_eq!(transitions(&s, "forced_open"), Some(1.0));
    assert_eq!(calls(&s, "failure"), Some(4.0));
    assert_eq!(calls(&s, "rejected"), Some(1.0));
    // Per-key series, labelled with the key's Display text.
    let key_state = |s: &[Series], key| value(s, "buttress_breaker_key_state", &[("key", key)]);
    assert_eq!(key_state(&s, "a"), Some(1.0), "1 = open");
    assert_eq!(key_state(&s, "c"), Some(3.0), "3 = forced open");
    assert_eq!(
        value(&s, "buttress_breaker_key_failure_rate", &[("key", "c")]),
        Some(0.0)
    );
    let solo = published("solo");
    let mut names = metric_names(&s);
    names.extend(metric_names(&solo));
    let all: BTreeSet<&str> = METRICS.iter().map(|m| m.name).collect();
    assert_eq!(names, all, "a breaker and a keyed set emit the catalog");
    c.reset();
    assert_eq!(
        value(&published("hosts"), "buttress_breaker_open_keys", &[]),
        Some(2.0)
    );

    // Many one-off keys: the per-key series stop at ten keys, evicted keys
    // read as the fresh breaker their next call gets, and the set's totals
    // keep every call.
    for key in 0..1_000 {
        let breaker = breakers.get(&format!("host-{key}"));
        breaker.try_acquire().unwrap().record(Outcome::Success);
    }
    let s = published("hosts");
    let keys: BTreeSet<_> = s.iter().filter_map(|s| s.label("key")).collect();
    assert_eq!(keys.len(), 10, "{keys:?}");
    assert!(keys.iter().all(|k| !k.contains('"')), "Display, not Debug");
    for key in keys {
        let now = breakers
            .peek(&key.to_owned())
            .map_or(0.0, |b| code(b.state()));
        assert_eq!(key_state(&s, key), Some(now), "{key}");
    }
    assert_eq!(calls(&s, "success"), Some(1_000.0));
    assert_eq!(calls(&s, "failure"), Some(4.0));
    let held_open = ["a", "b"]
        .iter()
        .filter(|k| breakers.peek(&(**k).to_owned()).is_some())
        .count();
    #[allow(clippy::cast_precision_loss)]
    let held_open = held_open as f64;
    assert_eq!(
        value(&s, "buttress_breaker_open_keys", &[]),
        Some(held_open)
    );
    drop(single);
}

#[cfg(feature = "keyed")]
#[test]
fn an_evicted_open_key_leaves_its_counts_in_the_set_and_reads_closed() {
    use buttress_breaker::KeyedCircuitBreaker;

    let breakers = KeyedCircuitBreaker::builder(
        CircuitBreaker::builder()
            .name("four-slots")
            .count_window(2)
            .minimum_calls(2),
        4,
    )
    .per_key_metrics(true)
    .build()
    .unwrap();
    let x = breakers.get(&"x".to_owned());
    x.try_acquire().unwrap().record(Outcome::Failure);
    x.try_acquire().unwrap().record(Outcome::Failure);
    assert_eq!(x.state(), State::Open);
    // New keys, each used twice (so that the cache takes them for busier
    // than x), take the slots: x is evicted while open.
    let mut gets = 0;
    while breakers.peek(&"x".to_owned()).is_some() {
        assert!(gets < 1_000, "x is never evicted");
        breakers.get(&format!("other-{}", gets / 2));
        gets += 1;
    }

    let s = published("four-slots");
    assert_eq!(calls(&s, "failure"), Some(2.0), "evicted, still counted");
    assert_eq!(transitions(&s, "open"), Some(1.0));
    #[allow(clippy::cast_precision_loss)]
    let held = breakers.snapshot().keys as f64;
    assert_eq!(value(&s, "buttress_breaker_keys", &[]), Some(held));
    assert_eq!(value(&s, "buttress_breaker_open_keys", &[]), Some(0.0));
    let key_state = |key| value(&s, "buttress_breaker_key_state", &[("key", key)]);
    assert_eq!(
        key_state("x"),
        Some(0.0),
        "its next call finds a fresh breaker"
    );
    let keys: BTreeSet<_> = s.iter().filter_map(|s| s.label("key")).collect();
    assert_eq!(keys.len(), 4, "the first four keys only: {keys:?}");

    // The evicted breaker, still held, counts nowhere any more.
    assert!(x.try_acquire().is_err());
    assert_eq!(calls(&published("four-slots"), "rejected"), Some(0.0));
}
