//! A keyed set evicts a key's breaker once the key has gone unused for the
//! idle timeout, never sooner, and keeps what the evicted breaker counted.
#![cfg(feature = "keyed")]

use std::time::Duration;

use buttress_breaker::{CircuitBreaker, DEFAULT_IDLE_TIMEOUT, KeyedCircuitBreaker, State};
use buttress_core::classify::Outcome;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tokio::time::advance;

fn key(k: &str) -> String {
    k.to_owned()
}

/// The set's `buttress_breaker_calls_total{outcome}`, flushed now.
fn calls(name: &str, outcome: &str) -> Option<u64> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, buttress_core::telemetry::flush);
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find_map(|(k, _, _, v)| {
            let k = k.key();
            let is = |label: &str, value: &str| {
                k.labels().any(|l| l.key() == label && l.value() == value)
            };
            match v {
                DebugValue::Counter(n)
                    if k.name() == "buttress_breaker_calls_total"
                        && is("name", name)
                        && is("outcome", outcome) =>
                {
                    Some(n)
                }
                _ => None,
            }
        })
}

#[tokio::test(start_paused = true)]
async fn keys_idle_for_the_timeout_are_evicted_and_never_sooner() {
    let timeout = Duration::from_secs(600);
    assert_eq!(DEFAULT_IDLE_TIMEOUT, timeout);
    // The default idle timeout: 10 minutes.
    let breakers =
        KeyedCircuitBreaker::<String>::builder(CircuitBreaker::builder().name("idle-keys"), 100)
            .build()
            .unwrap();
    let a = breakers.get(&key("a"));
    let b = breakers.get(&key("b"));
    b.try_acquire().unwrap().record(Outcome::Failure);
    b.force_open();

    // `a` is used again at 5 minutes; `b` is not.
    advance(Duration::from_secs(300)).await;
    breakers.get(&key("a"));
    // Just under the timeout for `b`: a new key's call sweeps, and keeps it.
    advance(Duration::from_secs(299)).await;
    breakers.get(&key("c"));
    assert!(breakers.peek(&key("b")).is_some(), "idle for 599 s only");
    assert_eq!(breakers.snapshot().idle_evictions, 0);

    // Well past it (at 700 s): `b` leaves, `a` (idle 400 s) stays.
    advance(Duration::from_secs(101)).await;
    breakers.get(&key("c"));
    assert!(breakers.peek(&key("b")).is_none(), "idle for 700 s");
    assert!(breakers.peek(&key("a")).is_some(), "idle for 400 s");
    let s = breakers.snapshot();
    assert_eq!(
        (s.keys, s.open_keys, s.idle_evictions, s.cap_evictions),
        (2, 0, 1, 0),
        "{s:?}"
    );
    // What `b` counted stays in the set's totals.
    assert_eq!(calls("idle-keys", "failure"), Some(1));
    // `b` comes back with a fresh breaker, no longer forced open.
    assert_eq!(breakers.get(&key("b")).state(), State::Closed);
    assert_eq!(b.state(), State::ForcedOpen, "the old handle is detached");

    // `a` leaves at most an eighth (the sweep interval) and a 64th (the
    // stamp granularity) of the timeout after its own timeout.
    advance(Duration::from_secs(285)).await;
    breakers.get(&key("c"));
    assert!(breakers.peek(&key("a")).is_none(), "idle for 685 s");
    assert_eq!(breakers.snapshot().idle_evictions, 2);
    drop(a);
}

#[tokio::test(start_paused = true)]
async fn a_key_in_use_is_never_idle_and_idle_eviction_can_be_off() {
    let breakers =
        KeyedCircuitBreaker::<String>::builder(CircuitBreaker::builder().name("busy-keys"), 1_000)
            .idle_timeout(Duration::from_secs(10))
            .build()
            .unwrap();
    // Used every 9 s for an hour, while other keys' calls sweep: never
    // evicted. Each other key is used once and leaves at the first sweep
    // after 10 s idle (18 s: the last two are still there).
    for i in 0..400 {
        breakers.get(&key("busy"));
        advance(Duration::from_secs(9)).await;
        breakers.get(&format!("once-{i}"));
        assert!(breakers.peek(&key("busy")).is_some(), "round {i}");
    }
    let s = breakers.snapshot();
    assert_eq!((s.keys, s.idle_evictions), (3, 398), "{s:?}");

    let kept =
        KeyedCircuitBreaker::<String>::builder(CircuitBreaker::builder().name("kept-keys"), 100)
            .idle_timeout(Duration::MAX)
            .build()
            .unwrap();
    kept.get(&key("old"));
    advance(Duration::from_secs(365 * 24 * 3600)).await;
    kept.get(&key("new"));
    let s = kept.snapshot();
    assert_eq!((s.keys, s.idle_evictions), (2, 0), "no idle eviction");
}
