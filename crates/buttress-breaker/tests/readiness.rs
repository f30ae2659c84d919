//! What `poll_ready` may hold and what `call` decides: readiness reserves
//! nothing, so idle services cannot starve the half-open state and a state
//! forced between `poll_ready` and `call` applies to that call; a probe
//! that never completes does not pin the breaker half-open.

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use buttress_breaker::{
    CircuitBreaker, CircuitBreakerBuilder, CircuitBreakerLayer, CircuitOpen, State,
};
use buttress_core::classify::{Classification, Outcome};
use tokio::time::{advance, sleep};
use tower::{Layer, Service, ServiceExt, service_fn};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn no_jitter() -> CircuitBreakerBuilder {
    CircuitBreaker::builder().open_duration_jitter(0.0)
}

fn is_open(err: &BoxError) -> Option<CircuitOpen> {
    err.downcast_ref::<CircuitOpen>().copied()
}

fn trip(breaker: &CircuitBreaker) {
    while breaker.state() != State::Open {
        breaker.try_acquire().unwrap().record(Outcome::Failure);
    }
}

/// A backend that answers `Ok(n)` after `n` milliseconds.
fn sleepy() -> impl Service<
    u64,
    Response = u64,
    Error = &'static str,
    Future = impl Future<Output = Result<u64, &'static str>> + Send,
> + Clone {
    service_fn(|ms: u64| async move {
        sleep(Duration::from_millis(ms)).await;
        Ok::<_, &'static str>(ms)
    })
}

#[tokio::test(start_paused = true)]
async fn idle_services_polled_ready_in_half_open_hold_no_probe() {
    // Services polled ready while half-open reserve no probe permit, so
    // two of them left idle cannot make the breaker reject all other
    // traffic for as long as they idle.
    let breaker = no_jitter()
        .open_duration(Duration::from_secs(1))
        .half_open_probes(2)
        .build()
        .unwrap();
    let svc = CircuitBreakerLayer::new(breaker.clone()).layer(sleepy());
    trip(&breaker);
    advance(Duration::from_secs(1)).await;

    let mut idle_a = svc.clone();
    let mut idle_b = svc.clone();
    for idle in [&mut idle_a, &mut idle_b] {
        assert!(matches!(
            tokio_test::task::spawn(idle.ready()).poll(),
            Poll::Ready(Ok(_))
        ));
    }
    // Hours later, other callers still get the probes and close the breaker.
    advance(Duration::from_secs(3 * 3600)).await;
    for _ in 0..2 {
        assert_eq!(svc.clone().oneshot(5).await.unwrap(), 5);
    }
    assert_eq!(breaker.state(), State::Closed);
    // The idle services' readiness is still good for one call each.
    assert_eq!(idle_a.call(1).await.unwrap(), 1);
    assert_eq!(idle_b.call(2).await.unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn force_open_applies_to_a_call_already_polled_ready() {
    // `force_open()` applies to the next call, even on a service polled
    // ready while closed.
    let breaker = no_jitter().build().unwrap();
    let (mock, mut handle) = tower_test::mock::pair::<u64, u64>();
    let mut svc = CircuitBreakerLayer::new(breaker.clone()).layer(mock);
    handle.allow(1);
    svc.ready().await.unwrap();
    breaker.force_open();
    // (Bounded: a call that reached the backend would wait forever.)
    let err = tokio::time::timeout(Duration::from_secs(1), svc.call(7))
        .await
        .expect("rejected at once")
        .unwrap_err();
    assert_eq!(is_open(&err), Some(CircuitOpen::new(breaker.name(), None)));
    assert!(
        tokio_test::task::spawn(handle.next_request())
            .poll()
            .is_pending(),
        "no request reached the backend"
    );
    assert_eq!(breaker.snapshot().rejected, 1);

    // And the other way: readiness answered while forced open (without
    // polling the backend) still rejects after a reset, since the backend
    // was never polled ready.
    let mut svc = svc;
    svc.ready().await.unwrap();
    breaker.reset();
    assert!(is_open(&svc.call(8).await.unwrap_err()).is_some());
    // The next readiness polls the backend again.
    svc.ready().await.unwrap();
    let call = tokio::spawn(svc.call(9));
    let (req, reply) = handle.next_request().await.unwrap();
    assert_eq!(req, 9);
    reply.send_response(9);
    assert_eq!(call.await.unwrap().unwrap(), 9);
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_never_completes_does_not_hold_half_open() {
    // A half-open probe whose backend hangs must not hold its permit, and
    // the breaker half-open and rejecting everything, forever.
    let breaker = no_jitter()
        .open_duration(Duration::from_secs(10))
        .half_open_probes(1)
        .build()
        .unwrap();
    let (mock, mut handle) = tower_test::mock::pair::<u64, u64>();
    let svc = CircuitBreakerLayer::new(breaker.clone()).layer(mock);
    handle.allow(100);
    trip(&breaker);
    advance(Duration::from_secs(10)).await;

    // The probe reaches the backend, which never answers.
    let hung = tokio::spawn(svc.clone().oneshot(1));
    let (_req, _never_answered) = handle.next_request().await.unwrap();
    assert_eq!(breaker.state(), State::HalfOpen);
    let err = svc.clone().oneshot(2).await.unwrap_err();
    assert_eq!(
        is_open(&err),
        Some(CircuitOpen::new(breaker.name(), None)),
        "probe taken"
    );

    // Past the half-open bound (default 60 s) the breaker re-opens, for
    // the grown open duration of a second consecutive trip.
    advance(Duration::from_secs(60)).await;
    let err = svc.clone().oneshot(3).await.unwrap_err();
    assert_eq!(
        is_open(&err).and_then(|o| o.retry_after()),
        Some(Duration::from_secs(20))
    );
    assert_eq!(breaker.state(), State::Open);
    // After it, a new probe goes through and decides.
    advance(Duration::from_secs(20)).await;
    let probe = tokio::spawn(svc.clone().oneshot(4));
    let (req, reply) = handle.next_request().await.unwrap();
    assert_eq!(req, 4);
    reply.send_response(4);
    assert_eq!(probe.await.unwrap().unwrap(), 4);
    assert_eq!(breaker.state(), State::Closed);
    // The hung call is still pending; its outcome belongs to a past period.
    assert!(!hung.is_finished());
    hung.abort();
}

#[tokio::test(start_paused = true)]
async fn half_open_max_wait_bounds_permits_held_outside_tower_too() {
    let reasons = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&reasons);
    let breaker = no_jitter()
        .open_duration(Duration::from_secs(1))
        .open_duration_multiplier(1.0)
        .half_open_probes(2)
        .half_open_max_wait(Duration::from_secs(5))
        .on_state_change(move |t| log.lock().unwrap().push(t.reason()))
        .build()
        .unwrap();
    trip(&breaker);
    advance(Duration::from_secs(1)).await;
    let held = [
        breaker.try_acquire().unwrap(),
        breaker.try_acquire().unwrap(),
    ];
    advance(Duration::from_secs(5) - Duration::from_millis(1)).await;
    assert_eq!(
        breaker.try_acquire().unwrap_err(),
        CircuitOpen::new(breaker.name(), None)
    );
    advance(Duration::from_millis(1)).await;
    assert_eq!(
        breaker.try_acquire().unwrap_err().retry_after(),
        Some(Duration::from_secs(1))
    );
    // The held permits belong to the past period: recording them changes
    // nothing.
    for permit in held {
        permit.record(Outcome::Success);
    }
    assert_eq!(breaker.state(), State::Open);
    use buttress_breaker::TransitionReason as R;
    assert_eq!(
        *reasons.lock().unwrap(),
        [R::FailureRate, R::OpenDurationElapsed, R::ProbesTimedOut]
    );
}

/// A small xorshift generator, one per task.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_storm_in_half_open_returns_every_probe_permit() {
    const PROBES: u32 = 3;
    const TASKS: u64 = 64;
    // Every call must finish (or be dropped) well within this; it only
    // fires if a call hangs.
    const BOUND: Duration = Duration::from_secs(10);

    // A 1 ns open duration: the next call after the trip finds it elapsed,
    // so the storm starts half-open without waiting on the clock.
    let breaker = no_jitter()
        .open_duration(Duration::from_nanos(1))
        .half_open_probes(PROBES)
        .build()
        .unwrap();
    // The backend yields a few times before answering, so calls are in
    // flight when they are dropped or their task aborted. Every outcome is
    // ignored, so the breaker stays half-open through the storm and each
    // probe permit must come back, whether its call was cancelled or
    // completed.
    let backend = service_fn(|n: u64| async move {
        for _ in 0..n % 5 {
            tokio::task::yield_now().await;
        }
        Ok::<_, &'static str>(n)
    });
    let svc = CircuitBreakerLayer::new(breaker.clone())
        .classifier(|_: &Result<u64, &'static str>| Classification::ignored())
        .layer(backend);
    trip(&breaker);

    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let svc = svc.clone();
            tokio::spawn(async move {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t + 1));
                let (mut probes, mut rejected) = (0_u32, 0_u32);
                for i in 0..300 {
                    let mut svc = svc.clone();
                    let call = async {
                        let svc = svc.ready().await?;
                        svc.call(i).await
                    };
                    match rng.below(3) {
                        // Run to completion.
                        0 => match tokio::time::timeout(BOUND, call).await {
                            Ok(Ok(_)) => probes += 1,
                            Ok(Err(e)) => {
                                assert!(is_open(&e).is_some(), "{e}");
                                rejected += 1;
                            }
                            Err(_) => panic!("a call did not finish within {BOUND:?}"),
                        },
                        // Dropped after a few polls (or before the first).
                        _ => {
                            let polls = rng.below(4);
                            tokio::select! {
                                biased;
                                _ = async {
                                    for _ in 0..polls {
                                        tokio::task::yield_now().await;
                                    }
                                } => {}
                                _ = call => {}
                            }
                        }
                    }
                }
                (probes, rejected)
            })
        })
        .collect();
    // Abort a quarter of the tasks at random moments.
    let mut rng = Rng(42);
    for task in &tasks {
        if rng.below(4) != 0 {
            continue;
        }
        for _ in 0..rng.below(50) {
            tokio::task::yield_now().await;
        }
        task.abort();
    }
    let (mut probes, mut rejected, mut aborted) = (0, 0, 0);
    for task in tasks {
        match tokio::time::timeout(BOUND * 6, task)
            .await
            .expect("the storm ended")
        {
            Ok((p, r)) => (probes, rejected) = (probes + p, rejected + r),
            Err(e) => {
                assert!(e.is_cancelled(), "{e}");
                aborted += 1;
            }
        }
    }
    eprintln!("{probes} probes, {rejected} rejected, {aborted} tasks aborted");
    assert!(probes > 0 && rejected > 0 && aborted > 0);

    // Nothing in flight: every permit is back, and only those.
    assert_eq!(breaker.state(), State::HalfOpen);
    let permits: Vec<_> = (0..PROBES)
        .map(|_| breaker.try_acquire().expect("a probe permit is free"))
        .collect();
    assert!(breaker.try_acquire().is_err(), "more permits than probes");
    // The probes decide as usual: two successes of three close it.
    let mut permits = permits.into_iter();
    permits.next().unwrap().record(Outcome::Success);
    assert_eq!(breaker.state(), State::HalfOpen);
    permits.next().unwrap().record(Outcome::Success);
    assert_eq!(breaker.state(), State::Closed);
}
