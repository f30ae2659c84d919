//! The breaker reports through the `metrics` facade and to its listener.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use buttress_breaker::{CircuitBreaker, State};
use buttress_core::classify::Outcome;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

/// A metric: name, labels, value.
type Metric = (String, Vec<(String, String)>, DebugValue);

fn counter(snapshot: &[Metric], name: &str, outcome: Option<&str>) -> u64 {
    snapshot
        .iter()
        .filter(|(n, labels, _)| {
            n == name
                && labels.iter().any(|(k, v)| k == "breaker" && v == "orders")
                && outcome.is_none_or(|o| labels.iter().any(|(k, v)| k == "outcome" && v == o))
        })
        .map(|(_, _, v)| match v {
            DebugValue::Counter(c) => *c,
            other => panic!("{name} is not a counter: {other:?}"),
        })
        .sum()
}

#[test]
fn counters_gauge_and_listener() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&events);
    let breaker = metrics::with_local_recorder(&recorder, || {
        CircuitBreaker::builder()
            .name("orders")
            .count_window(10)
            .minimum_calls(4)
            .open_duration(Duration::from_secs(60))
            .on_state_change(move |t| {
                log.lock()
                    .unwrap()
                    .push((t.breaker().to_owned(), t.from(), t.to()))
            })
            .build()
            .unwrap()
    });
    for outcome in [
        Outcome::Success,
        Outcome::Ignored,
        Outcome::Failure,
        Outcome::Failure,
        Outcome::Failure,
    ] {
        breaker.try_acquire().unwrap().record(outcome);
    }
    assert_eq!(breaker.state(), State::Open);
    assert!(breaker.try_acquire().is_err());

    let snapshot = metrics_of(&snapshotter);
    let calls = "buttress_breaker_calls_total";
    assert_eq!(counter(&snapshot, calls, Some("success")), 1);
    assert_eq!(counter(&snapshot, calls, Some("ignored")), 1);
    assert_eq!(counter(&snapshot, calls, Some("failure")), 3);
    assert_eq!(counter(&snapshot, calls, Some("rejected")), 1);
    assert_eq!(
        counter(&snapshot, "buttress_breaker_transitions_total", None),
        1
    );
    let state = snapshot
        .iter()
        .find(|(n, _, _)| n == "buttress_breaker_state")
        .map(|(_, _, v)| v);
    assert_eq!(state, Some(&DebugValue::Gauge(1.0.into())), "1 = open");
    assert_eq!(
        *events.lock().unwrap(),
        vec![("orders".to_owned(), State::Closed, State::Open)]
    );
}

fn metrics_of(snapshotter: &metrics_util::debugging::Snapshotter) -> Vec<Metric> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            (key.name().to_owned(), labels, value)
        })
        .collect()
}

/// The value of the series `name` labelled `breaker` (and `outcome`).
#[cfg(feature = "keyed")]
fn value(snapshot: &[Metric], name: &str, breaker: &str, outcome: Option<&str>) -> Option<f64> {
    let has = |labels: &[(String, String)], k: &str, v: &str| {
        labels.iter().any(|(lk, lv)| lk == k && lv == v)
    };
    snapshot
        .iter()
        .find(|(n, labels, _)| {
            n == name
                && has(labels, "breaker", breaker)
                && outcome.is_none_or(|o| has(labels, "outcome", o))
        })
        .map(|(_, _, v)| match v {
            #[allow(clippy::cast_precision_loss)]
            DebugValue::Counter(c) => *c as f64,
            DebugValue::Gauge(g) => g.into_inner(),
            DebugValue::Histogram(_) => panic!("{name} is a histogram"),
        })
}

#[cfg(feature = "keyed")]
#[test]
fn keyed_breakers_keep_the_series_count_bounded() {
    // Regression (#9, 3): every new key registered seven series of its own,
    // never removed on eviction: a million distinct keys under a 1,000-key
    // cap left 7,000,000 series behind.
    use buttress_breaker::KeyedCircuitBreaker;

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let breakers = KeyedCircuitBreaker::new(
            CircuitBreaker::builder()
                .name("upstream")
                .count_window(4)
                .minimum_calls(2),
            100,
        )
        .unwrap();
        for key in 0..100_000_u32 {
            let breaker = breakers.get(&key);
            breaker.try_acquire().unwrap().record(Outcome::Success);
        }
        assert!(breakers.len() <= 100);
        let snapshot = metrics_of(&snapshotter);
        assert!(
            snapshot.len() <= 8,
            "{} series for 100,000 keys under a cap of 100",
            snapshot.len()
        );
        // What the series say: totals over every key, under the set's name.
        let calls = "buttress_breaker_calls_total";
        assert_eq!(
            value(&snapshot, calls, "upstream", Some("success")),
            Some(100_000.0)
        );
        assert_eq!(
            value(&snapshot, "buttress_breaker_keys", "upstream", None),
            Some(breakers.len() as f64)
        );
    });
}

#[cfg(feature = "keyed")]
#[test]
fn keyed_breakers_count_open_keys_and_cap_opt_in_per_key_series() {
    use buttress_breaker::KeyedCircuitBreaker;

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let breakers = KeyedCircuitBreaker::new(
            CircuitBreaker::builder()
                .name("hosts")
                .count_window(4)
                .minimum_calls(2),
            10,
        )
        .unwrap()
        .per_key_metrics(true);
        let open_keys = |s: &[Metric]| value(s, "buttress_breaker_open_keys", "hosts", None);
        let trip = |key: &str| {
            let breaker = breakers.get(&key.to_owned());
            while breaker.state() == State::Closed {
                breaker.try_acquire().unwrap().record(Outcome::Failure);
            }
        };

        // Two keys trip; one is forced open: three open keys.
        trip("a");
        trip("b");
        breakers.get(&"c".to_owned()).force_open();
        let snapshot = metrics_of(&snapshotter);
        assert_eq!(open_keys(&snapshot), Some(3.0));
        assert_eq!(
            value(
                &snapshot,
                "buttress_breaker_transitions_total",
                "hosts",
                None
            ),
            Some(3.0)
        );
        // Per-key series, opted in: named after the key.
        assert_eq!(
            value(&snapshot, "buttress_breaker_state", "hosts/\"c\"", None),
            Some(3.0),
            "3 = forced open"
        );
        assert_eq!(
            value(
                &snapshot,
                "buttress_breaker_calls_total",
                "hosts/\"a\"",
                Some("failure")
            ),
            Some(2.0)
        );
        // (The debugging recorder's snapshots drain its values: from here
        // on, each one reads the change since the last.)
        breakers.get(&"c".to_owned()).reset();
        assert_eq!(open_keys(&metrics_of(&snapshotter)), Some(-1.0));
        let mut open_total = 2.0;

        // Many one-off keys, and one that trips in the full set: an evicted
        // open key leaves the count, and the per-key series stopped at the
        // first 10 breakers created.
        for key in 0..1_000 {
            let breaker = breakers.get(&format!("host-{key}"));
            breaker.try_acquire().unwrap().record(Outcome::Success);
        }
        trip("d");
        for key in 1_000..1_100 {
            breakers.get(&format!("host-{key}"));
        }
        let snapshot = metrics_of(&snapshotter);
        open_total += open_keys(&snapshot).unwrap();
        assert!(breakers.peek(&"d".to_owned()).is_none(), "d was evicted");
        let held_open = ["a", "b", "d"]
            .iter()
            .filter(|k| breakers.peek(&(**k).to_owned()).is_some())
            .count();
        assert_eq!(open_total, held_open as f64);
        assert!(
            snapshot.len() <= 8 + 7 * 10,
            "{} series with per-key series capped at 10 breakers",
            snapshot.len()
        );
        assert_eq!(
            value(
                &snapshot,
                "buttress_breaker_calls_total",
                "hosts",
                Some("success")
            ),
            Some(1_000.0)
        );
    });
}
