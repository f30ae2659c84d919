//! Behaviour of the circuit breaker through its tower service and its handle.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use buttress_breaker::{
    CircuitBreaker, CircuitBreakerBuilder, CircuitBreakerLayer, CircuitOpen, State,
    TransitionReason,
};
use buttress_core::classify::{Classification, Outcome};
use tokio::time::{advance, sleep};
use tower::{Layer, Service, ServiceExt, service_fn};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A backend whose answer is chosen per request: `Ok(n)` for `n >= 0`,
/// an error for negative `n`.
fn backend()
-> impl Service<i64, Response = i64, Error = &'static str, Future = impl Future + Send> + Clone {
    service_fn(|n: i64| async move { if n >= 0 { Ok(n) } else { Err("backend failed") } })
}

fn no_jitter() -> CircuitBreakerBuilder {
    CircuitBreaker::builder().open_duration_jitter(0.0)
}

async fn run<S>(svc: &S, n: i64) -> Result<i64, BoxError>
where
    S: Service<i64, Response = i64, Error = BoxError> + Clone,
{
    svc.clone().oneshot(n).await
}

fn is_open(err: &BoxError) -> Option<CircuitOpen> {
    err.downcast_ref::<CircuitOpen>().copied()
}

#[tokio::test(start_paused = true)]
async fn trips_at_the_failure_rate_after_minimum_calls() {
    let breaker = no_jitter()
        .count_window(10)
        .minimum_calls(10)
        .failure_rate_threshold(0.5)
        .build()
        .unwrap();
    let svc = CircuitBreakerLayer::new(breaker.clone()).layer(backend());
    // Nine calls, all failures: below the minimum, no verdict yet.
    for _ in 0..9 {
        assert!(is_open(&run(&svc, -1).await.unwrap_err()).is_none());
    }
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.snapshot().failures, 9);
    // The tenth call completes the minimum: 10/10 failed.
    run(&svc, -1).await.unwrap_err();
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn old_calls_leave_the_count_window() {
    // After 1,000 successes, a burst of failures trips as soon as the
    // window's failure rate crosses the threshold (50 of the last 100
    // calls): old successes leave the window.
    let breaker = no_jitter().count_window(100).build().unwrap();
    let svc = CircuitBreakerLayer::new(breaker.clone()).layer(backend());
    for i in 0..1000 {
        run(&svc, i).await.unwrap();
    }
    assert_eq!(breaker.snapshot().calls, 100);
    assert_eq!(breaker.snapshot().failures, 0);
    for _ in 0..49 {
        run(&svc, -1).await.unwrap_err();
    }
    let s = breaker.snapshot();
    assert_eq!((s.state, s.calls, s.failures), (State::Closed, 100, 49));
    assert!((s.failure_rate() - 0.49).abs() < 1e-9);
    run(&svc, -1).await.unwrap_err();
    assert_eq!(
        breaker.state(),
        State::Open,
        "the 50th failure of 100 trips"
    );
}

#[tokio::test(start_paused = true)]
async fn open_rejects_at_once_without_touching_the_backend() {
    let (mock, mut handle) = tower_test::mock::pair::<i64, i64>();
    let breaker = no_jitter()
        .name("open-rejects-at-once")
        .open_duration(Duration::from_secs(30))
        .build()
        .unwrap();
    assert_eq!(breaker.name(), "open-rejects-at-once");
    let mut svc = CircuitBreakerLayer::new(breaker.clone()).layer(mock);
    breaker.force_open();
    // The backend is not ready (no capacity allowed)...
    handle.allow(0);
    // ...yet the breaker answers ready at once and fails the call itself.
    let ready = tokio_test::task::spawn(svc.ready()).poll();
    assert!(matches!(ready, Poll::Ready(Ok(_))));
    let err = svc.call(1).await.unwrap_err();
    let open = is_open(&err).expect("a CircuitOpen");
    assert_eq!(open, CircuitOpen::new(breaker.name(), None));
    assert_eq!(open.name(), "open-rejects-at-once", "names the breaker");
    assert_eq!(
        err.to_string(),
        "circuit breaker \"open-rejects-at-once\" is open"
    );
    assert!(
        tokio_test::task::spawn(handle.next_request())
            .poll()
            .is_pending(),
        "no request reached the backend"
    );
    assert_eq!(breaker.snapshot().rejected, 1);

    // A tripped (not forced) breaker names the time to the next probe.
    breaker.reset();
    handle.allow(100);
    let calls = tokio::spawn(async move {
        for _ in 0..20 {
            let _ = svc.ready().await.unwrap().call(-1).await;
        }
        svc
    });
    for _ in 0..20 {
        let (_, reply) = handle.next_request().await.unwrap();
        reply.send_error("down");
    }
    let svc = calls.await.unwrap();
    assert_eq!(breaker.state(), State::Open);
    advance(Duration::from_secs(10)).await;
    let err = svc.oneshot(1).await.unwrap_err();
    assert_eq!(
        is_open(&err).unwrap().retry_after(),
        Some(Duration::from_secs(20))
    );
}

async fn trip<S>(svc: &S, breaker: &CircuitBreaker)
where
    S: Service<i64, Response = i64, Error = BoxError> + Clone,
{
    while breaker.state() != State::Open {
        let _ = run(svc, -1).await;
    }
}

#[tokio::test(start_paused = true)]
async fn half_open_probes_decide_and_open_duration_grows() {
    let transitions = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&transitions);
    let breaker = no_jitter()
        .count_window(20)
        .open_duration(Duration::from_secs(10))
        .open_duration_multiplier(2.0)
        .max_open_duration(Duration::from_secs(25))
        .half_open_probes(4)
        .on_state_change(move |t| {
            log.lock()
                .unwrap()
                .push((t.from(), t.to(), t.reason(), t.open_for()));
        })
        .build()
        .unwrap();
    let svc = CircuitBreakerLayer::new(breaker.clone()).layer(backend());
    trip(&svc, &breaker).await;

    // Still open one tick before the open duration ends.
    advance(Duration::from_secs(10) - Duration::from_millis(1)).await;
    assert!(is_open(&run(&svc, 1).await.unwrap_err()).is_some());
    advance(Duration::from_millis(1)).await;
    // Half-open: with 4 probes and a 50 % threshold, 2 failures re-open.
    run(&svc, -1).await.unwrap_err();
    assert_eq!(breaker.state(), State::HalfOpen);
    run(&svc, -2).await.unwrap_err();
    assert_eq!(breaker.state(), State::Open);
    // Second consecutive trip: 20 s.
    let err = run(&svc, 1).await.unwrap_err();
    assert_eq!(
        is_open(&err).unwrap().retry_after(),
        Some(Duration::from_secs(20))
    );
    advance(Duration::from_secs(20)).await;
    run(&svc, -1).await.unwrap_err();
    run(&svc, -1).await.unwrap_err();
    // Third: 40 s, capped at 25 s.
    assert_eq!(
        is_open(&run(&svc, 1).await.unwrap_err())
            .unwrap()
            .retry_after(),
        Some(Duration::from_secs(25))
    );
    advance(Duration::from_secs(25)).await;
    // Probes succeed: once failures can no longer reach 2 of 4 (3
    // successes), the breaker closes.
    run(&svc, 1).await.unwrap();
    run(&svc, 2).await.unwrap();
    assert_eq!(breaker.state(), State::HalfOpen);
    run(&svc, 3).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
    // A close ends the run of trips: the next trip is back to 10 s.
    trip(&svc, &breaker).await;
    assert_eq!(
        is_open(&run(&svc, 1).await.unwrap_err())
            .unwrap()
            .retry_after(),
        Some(Duration::from_secs(10))
    );

    use State::*;
    use TransitionReason as R;
    let s = |secs| Some(Duration::from_secs(secs));
    assert_eq!(
        *transitions.lock().unwrap(),
        vec![
            (Closed, Open, R::FailureRate, s(10)),
            (Open, HalfOpen, R::OpenDurationElapsed, None),
            (HalfOpen, Open, R::ProbesFailed, s(20)),
            (Open, HalfOpen, R::OpenDurationElapsed, None),
            (HalfOpen, Open, R::ProbesFailed, s(25)),
            (Open, HalfOpen, R::OpenDurationElapsed, None),
            (HalfOpen, Closed, R::ProbesSucceeded, None),
            (Closed, Open, R::FailureRate, s(10)),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_a_bounded_number_of_probes_and_dropped_probes_give_back() {
    let breaker = no_jitter()
        .open_duration(Duration::from_secs(1))
        .half_open_probes(2)
        .build()
        .unwrap();
    let slow = service_fn(|n: i64| async move {
        sleep(Duration::from_secs(5)).await;
        Ok::<_, &'static str>(n)
    });
    let svc = CircuitBreakerLayer::new(breaker.clone()).layer(slow);
    // Trip with the handle's permit API, then let the open duration pass.
    while breaker.state() != State::Open {
        breaker.try_acquire().unwrap().record(Outcome::Failure);
    }
    advance(Duration::from_secs(1)).await;

    let mut first = tokio_test::task::spawn(svc.clone().oneshot(1));
    let mut second = tokio_test::task::spawn(svc.clone().oneshot(2));
    assert!(first.poll().is_pending());
    assert!(second.poll().is_pending());
    assert_eq!(breaker.state(), State::HalfOpen);
    // Both probe permits are out: a third call is rejected at once.
    let err = svc.clone().oneshot(3).await.unwrap_err();
    assert!(is_open(&err).is_some());
    // Cancelling a probe gives its permit back.
    drop(first);
    let mut third = tokio_test::task::spawn(svc.clone().oneshot(4));
    assert!(third.poll().is_pending());
    drop(second);
    // A service polled ready holds no permit (its `call` takes one), so the
    // free permit goes to whoever calls first.
    let mut ready = svc.clone();
    assert!(matches!(
        tokio_test::task::spawn(ready.ready()).poll(),
        Poll::Ready(Ok(_))
    ));
    let fourth = tokio::spawn(svc.clone().oneshot(6));
    tokio::task::yield_now().await;
    assert!(is_open(&ready.call(5).await.unwrap_err()).is_some());
    advance(Duration::from_secs(5)).await;
    assert_eq!(third.await.unwrap(), 4);
    assert_eq!(fourth.await.unwrap().unwrap(), 6);
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn slow_calls_trip_and_time_windows_forget() {
    let breaker = no_jitter()
        .time_window(Duration::from_secs(10), 10)
        .minimum_calls(5)
        .slow_call_duration(Duration::from_millis(500))
        .slow_call_rate_threshold(0.6)
        .build()
        .unwrap();
    let svc = CircuitBreakerLayer::new(breaker.clone()).layer(service_fn(|ms: i64| async move {
        sleep(Duration::from_millis(ms.unsigned_abs())).await;
        if ms >= 0 { Ok(ms) } else { Err("failed") }
    }));
    // Five failures, then let them age out of the 10 s window.
    for _ in 0..4 {
        run(&svc, -1).await.unwrap_err();
    }
    assert_eq!(breaker.snapshot().failures, 4);
    advance(Duration::from_secs(11)).await;
    assert_eq!(breaker.snapshot().calls, 0, "old buckets left the window");
    run(&svc, -1).await.unwrap_err();
    assert_eq!(
        breaker.state(),
        State::Closed,
        "4 old failures no longer count"
    );

    // Slow successes: 3 of 5 at >= 500 ms trips on the slow-call rate.
    for ms in [10, 600, 700] {
        run(&svc, ms).await.unwrap();
    }
    assert_eq!(breaker.state(), State::Closed);
    run(&svc, 500).await.unwrap();
    let s = breaker.snapshot();
    assert_eq!(s.state, State::Open, "{s:?}");
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_trip_before_the_window_would() {
    let breaker = no_jitter().consecutive_failures(3).build().unwrap();
    let svc = CircuitBreakerLayer::new(breaker.clone()).layer(backend());
    for _ in 0..50 {
        run(&svc, 1).await.unwrap();
    }
    run(&svc, -1).await.unwrap_err();
    run(&svc, -1).await.unwrap_err();
    run(&svc, 1).await.unwrap(); // a success breaks the run
    run(&svc, -1).await.unwrap_err();
    run(&svc, -1).await.unwrap_err();
    assert_eq!(breaker.state(), State::Closed);
    run(&svc, -1).await.unwrap_err();
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn ignored_outcomes_and_classifiers() {
    let breaker = no_jitter()
        .count_window(10)
        .minimum_calls(2)
        .build()
        .unwrap();
    // A classifier of one's own (a closure), and one that ignores everything.
    let classify = |r: &Result<i64, &'static str>| match r {
        Ok(_) => Classification::success(),
        Err(_) => Classification::failure(),
    };
    let layer = CircuitBreakerLayer::new(breaker.clone()).classifier(classify);
    let svc = layer.layer(backend());
    let ignore_all = CircuitBreakerLayer::new(breaker.clone())
        .classifier(|_: &Result<i64, &'static str>| Classification::ignored())
        .layer(backend());
    for _ in 0..20 {
        ignore_all.clone().oneshot(-1).await.unwrap_err();
    }
    assert_eq!(breaker.snapshot().calls, 0, "ignored calls count nowhere");
    run(&svc, 1).await.unwrap();
    run(&svc, -1).await.unwrap_err();
    assert_eq!(breaker.state(), State::Open, "1 of 2 failed: 50 %");
}

#[tokio::test(start_paused = true)]
async fn http_4xx_are_successes_and_5xx_failures() {
    use buttress_core::http::HttpClassifier;
    use http::{Response, StatusCode};

    let breaker = no_jitter()
        .count_window(10)
        .minimum_calls(10)
        .build()
        .unwrap();
    let svc = CircuitBreakerLayer::new(breaker.clone())
        .classifier(HttpClassifier::new())
        .layer(service_fn(|code: u16| async move {
            Ok::<_, std::io::Error>(
                Response::builder()
                    .status(StatusCode::from_u16(code).unwrap())
                    .body(())
                    .unwrap(),
            )
        }));
    for _ in 0..10 {
        svc.clone().oneshot(404).await.unwrap();
    }
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.snapshot().failures, 0);
    for _ in 0..5 {
        svc.clone().oneshot(503).await.unwrap();
    }
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn calls_admitted_before_a_transition_do_not_count_after_it() {
    let breaker = no_jitter()
        .count_window(4)
        .minimum_calls(4)
        .open_duration(Duration::from_secs(1))
        .half_open_probes(1)
        .build()
        .unwrap();
    // A call admitted while closed that fails only after the breaker has
    // been through open and half-open into closed again.
    let straggler = breaker.try_acquire().unwrap();
    while breaker.state() != State::Open {
        breaker.try_acquire().unwrap().record(Outcome::Failure);
    }
    advance(Duration::from_secs(1)).await;
    breaker.try_acquire().unwrap().record(Outcome::Success);
    assert_eq!(breaker.state(), State::Closed);
    straggler.record(Outcome::Failure);
    assert_eq!(breaker.snapshot().failures, 0);
    assert_eq!(breaker.snapshot().calls, 0);
}

#[tokio::test(start_paused = true)]
async fn forced_states() {
    let breaker = no_jitter()
        .count_window(2)
        .minimum_calls(1)
        .build()
        .unwrap();
    breaker.force_closed();
    for _ in 0..10 {
        breaker.try_acquire().unwrap().record(Outcome::Failure);
    }
    assert_eq!(
        breaker.state(),
        State::ForcedClosed,
        "forced closed never trips"
    );
    breaker.force_open();
    advance(Duration::from_secs(3600)).await;
    assert_eq!(
        breaker.try_acquire().unwrap_err(),
        CircuitOpen::new(breaker.name(), None),
        "forced open never probes"
    );
    breaker.reset();
    let s = breaker.snapshot();
    assert_eq!((s.state, s.calls, s.rejected), (State::Closed, 0, 1));
    advance(Duration::from_secs(2)).await;
    assert_eq!(breaker.snapshot().time_in_state, Duration::from_secs(2));
}

#[test]
fn services_and_futures_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    type Inner = tower::util::BoxCloneSyncService<i64, i64, std::io::Error>;
    assert_send_sync::<CircuitBreaker>();
    assert_send_sync::<CircuitBreakerLayer>();
    assert_send_sync::<buttress_breaker::CircuitBreakerService<Inner>>();
    assert_send_sync::<
        buttress_breaker::future::ResponseFuture<
            Pin<Box<dyn Future<Output = Result<i64, std::io::Error>> + Send + Sync>>,
            buttress_core::classify::ErrorsAsFailures,
        >,
    >();
    assert_send_sync::<buttress_breaker::Permit>();
    assert_send_sync::<CircuitOpen>();
}

#[test]
fn contexts_are_not_needed_for_the_handle() {
    // The handle works outside any runtime (tokio's clock falls back to the
    // system's monotonic clock).
    let breaker = CircuitBreaker::builder().build().unwrap();
    let _ = Context::from_waker(std::task::Waker::noop());
    breaker.try_acquire().unwrap().record(Outcome::Success);
    assert_eq!(breaker.snapshot().calls, 1);
}

#[test]
fn concurrent_recording_loses_nothing() {
    // Threads record into their own stripes; totals must still be exact.
    let breaker = CircuitBreaker::builder()
        .time_window(Duration::from_secs(3600), 4)
        .build()
        .unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..10_000 {
                    breaker.try_acquire().unwrap().record(Outcome::Success);
                }
            });
        }
    });
    assert_eq!(breaker.snapshot().calls, 40_000);

    let breaker = CircuitBreaker::builder()
        .count_window(1000)
        .failure_rate_threshold(1.0)
        .build()
        .unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let breaker = &breaker;
            s.spawn(move || {
                for i in 0..10_000 {
                    let outcome = if (i + t) % 4 == 0 {
                        Outcome::Failure
                    } else {
                        Outcome::Success
                    };
                    breaker.try_acquire().unwrap().record(outcome);
                }
            });
        }
    });
    let s = breaker.snapshot();
    assert_eq!(s.state, State::Closed);
    assert_eq!(s.calls, 1000);
    // A quarter of all calls failed; the last 1,000 are interleaved, so
    // allow for the threads' phase, not for lost updates.
    assert!((150..=350).contains(&s.failures), "{s:?}");
}

#[cfg(feature = "keyed")]
#[tokio::test(start_paused = true)]
async fn keyed_breakers_are_independent_and_capped() {
    use buttress_breaker::{KeyedCircuitBreaker, KeyedCircuitBreakerLayer};

    let breakers = KeyedCircuitBreaker::builder(no_jitter().count_window(4).minimum_calls(4), 8)
        .build()
        .unwrap();
    // Requests are (host, n); n < 0 fails.
    let svc = KeyedCircuitBreakerLayer::new(breakers.clone(), |r: &(&'static str, i64)| {
        (!r.0.is_empty()).then(|| r.0.to_string())
    })
    .layer(service_fn(|(_, n): (&'static str, i64)| async move {
        if n >= 0 { Ok(n) } else { Err("failed") }
    }));
    for _ in 0..4 {
        svc.clone().oneshot(("down.example", -1)).await.unwrap_err();
    }
    let err = svc.clone().oneshot(("down.example", 1)).await.unwrap_err();
    assert!(is_open(&err).is_some(), "the failing host is cut off");
    assert_eq!(svc.clone().oneshot(("up.example", 1)).await.unwrap(), 1);
    // No key: passes unguarded and creates no breaker.
    assert_eq!(
        svc.clone().oneshot(("", -1)).await.unwrap_err().to_string(),
        "failed"
    );
    assert_eq!(breakers.snapshot().keys, 2);
    // The cap holds under many keys.
    for i in 0..100 {
        breakers.get(&format!("host-{i}"));
    }
    let s = breakers.snapshot();
    assert!(s.keys <= 8, "{s:?}");
    assert_eq!(s.cap_evictions, 102 - s.keys as u64, "{s:?}");
    assert_eq!(s.idle_evictions, 0);
    assert_eq!(
        KeyedCircuitBreaker::<String>::builder(CircuitBreaker::builder(), 0)
            .build()
            .unwrap_err()
            .field(),
        "max_keys"
    );
}

#[test]
fn concurrent_pushes_never_trip_below_the_threshold() {
    // With k equal to the window size, a push in flight can overwrite the
    // ring slot being judged with a newer failure; the breaker must still
    // not trip on a window of three-quarters successes.
    for round in 0..20 {
        let breaker = CircuitBreaker::builder()
            .count_window(64)
            .minimum_calls(64)
            .failure_rate_threshold(1.0)
            .build()
            .unwrap();
        std::thread::scope(|s| {
            for t in 0..4 {
                let breaker = &breaker;
                s.spawn(move || {
                    for i in 0..5_000 {
                        let outcome = if (i + t) % 4 == 0 {
                            Outcome::Failure
                        } else {
                            Outcome::Success
                        };
                        if let Ok(p) = breaker.try_acquire() {
                            p.record(outcome);
                        }
                    }
                });
            }
        });
        assert_eq!(breaker.state(), State::Closed, "round {round}");
    }
}

#[tokio::test(start_paused = true)]
async fn another_layers_refusal_is_not_a_failure_but_its_deadline_is() {
    use buttress_core::reject::{DeadlineExceeded, Overloaded};
    use buttress_core::telemetry::Name;

    let breaker = no_jitter()
        .count_window(4)
        .minimum_calls(4)
        .build()
        .unwrap();
    // A limit inside the breaker sheds every call.
    let shedding = service_fn(|()| async {
        Err::<(), BoxError>(Box::new(Overloaded::new(Name::new("inner-limit"))))
    });
    let svc = CircuitBreakerLayer::new(breaker.clone()).layer(shedding);
    for _ in 0..20 {
        svc.clone().oneshot(()).await.unwrap_err();
    }
    assert_eq!(
        breaker.state(),
        State::Closed,
        "a shed is not the dependency failing"
    );
    assert_eq!(breaker.snapshot().failures, 0);
    assert_eq!(breaker.snapshot().calls, 0, "not counted at all");

    // A passed deadline is the dependency being too slow: it counts.
    let late = service_fn(|()| async {
        Err::<(), BoxError>(Box::new(DeadlineExceeded::new(Name::new("inner-retry"))))
    });
    let svc = CircuitBreakerLayer::new(breaker.clone()).layer(late);
    for _ in 0..4 {
        svc.clone().oneshot(()).await.unwrap_err();
    }
    assert_eq!(breaker.state(), State::Open);
}
