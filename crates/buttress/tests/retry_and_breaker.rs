//! Retry and breaker stacked both ways: a retry never hammers an open
//! breaker, whichever side of it the retry sits.
#![cfg(all(feature = "breaker", feature = "retry"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use buttress::ServiceBuilderExt;
use buttress::breaker::{CircuitBreaker, CircuitOpen, State};
use buttress::core::error::find;
use buttress::retry::RetryPolicy;
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt, service_fn};

fn breaker() -> CircuitBreaker {
    CircuitBreaker::builder()
        .count_window(2)
        .minimum_calls(2)
        .open_duration(Duration::from_secs(10))
        .open_duration_jitter(0.0)
        .half_open_probes(1)
        .build()
        .unwrap()
}

/// A backend that fails while `down` and counts its calls.
fn backend(
    down: &Arc<AtomicBool>,
    calls: &Arc<AtomicU32>,
) -> impl tower::Service<(), Response = u32, Error = std::io::Error, Future = impl Send> + Clone {
    let (down, calls) = (Arc::clone(down), Arc::clone(calls));
    service_fn(move |()| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        let failed = down.load(Ordering::SeqCst);
        async move {
            if failed {
                Err(std::io::Error::other("backend down"))
            } else {
                Ok(n)
            }
        }
    })
}

#[tokio::test(start_paused = true)]
async fn retry_outside_the_breaker_waits_for_the_probe() {
    let (down, calls) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicU32::new(0)));
    let breaker = breaker();
    let policy = RetryPolicy::builder()
        .without_budget()
        .max_attempts(2)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .retries(policy.clone())
        .circuit_breaker(breaker.clone())
        .service(backend(&down, &calls));
    // Failures trip it (a call's retry may meet the breaker still closed
    // or already open).
    while breaker.state() != State::Open {
        svc.clone().oneshot(()).await.unwrap_err();
    }
    let before = calls.load(Ordering::SeqCst);
    down.store(false, Ordering::SeqCst);

    // The breaker rejects with its next probe 10 s away: the retry waits
    // exactly that long, and its retry is the probe that closes it.
    let start = Instant::now();
    assert!(svc.clone().oneshot(()).await.is_ok());
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    assert_eq!(calls.load(Ordering::SeqCst), before + 1, "only the probe");
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_forced_open_breaker_inside_a_retry_is_not_retried() {
    let (down, calls) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU32::new(0)),
    );
    let breaker = breaker();
    breaker.force_open();
    let policy = RetryPolicy::builder().without_budget().build().unwrap();
    let svc = ServiceBuilder::new()
        .retries(policy.clone())
        .circuit_breaker(breaker.clone())
        .service(backend(&down, &calls));
    let err = svc.oneshot(()).await.unwrap_err();
    assert!(find::<CircuitOpen>(&err).is_some(), "{err}");
    assert_eq!(
        policy.snapshot().retries,
        0,
        "no wait is known: not retried"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_breaker_outside_the_retry_rejects_before_any_attempt() {
    let (down, calls) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicU32::new(0)));
    let breaker = breaker();
    let policy = RetryPolicy::builder()
        .without_budget()
        .max_attempts(3)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .circuit_breaker(breaker.clone())
        .retries(policy)
        .service(backend(&down, &calls));
    // Each call the breaker lets through costs up to three attempts.
    while breaker.state() != State::Open {
        svc.clone().oneshot(()).await.unwrap_err();
    }
    let before = calls.load(Ordering::SeqCst);
    for _ in 0..10 {
        let err = svc.clone().oneshot(()).await.unwrap_err();
        assert!(err.is::<CircuitOpen>(), "{err}");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        before,
        "no attempt while open"
    );
}
