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

    let snapshot: Vec<_> = snapshotter
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
        .collect();
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
