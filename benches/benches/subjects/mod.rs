//! The circuit-breaker subjects, shared by the `breaker` criterion bench and
//! the `allocs` test so both measure exactly the same services.
//!
//! Every subject wraps the same no-op inner service ([`noop`]) and is driven
//! the same way ([`drive`]): `ready()` polled to completion, then `call`, then
//! the response future polled to completion, all with a no-op waker and no
//! runtime. The no-op's future is immediately ready, so nothing ever returns
//! `Pending` except tower-resilience's `tokio::sync::Mutex` when two threads
//! contend for it; [`poll_now`] then yields and polls again.

// Each consumer (bench, test) uses a different subset of these items.
#![allow(dead_code)]

use std::future::{Future, Ready};
use std::io;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tower::{Layer, Service, ServiceExt, service_fn};

/// How long the tripped breakers stay open: far longer than any run.
pub(crate) const LONG_OPEN: Duration = Duration::from_secs(3600);

/// The inner service every subject wraps: answers `Ok(())` at once.
pub(crate) fn noop()
-> impl Service<(), Response = (), Error = io::Error, Future = Ready<io::Result<()>>>
+ Clone
+ Send
+ Sync
+ 'static {
    service_fn(|()| std::future::ready(Ok::<(), io::Error>(())))
}

/// A service that always fails: only used to trip breakers before the
/// open-path benchmarks (it is never called while they are measured).
pub(crate) fn failing()
-> impl Service<(), Response = (), Error = io::Error, Future = Ready<io::Result<()>>>
+ Clone
+ Send
+ Sync
+ 'static {
    service_fn(|()| std::future::ready(Err::<(), io::Error>(io::Error::other("down"))))
}

/// Polls `future` to completion with a no-op waker, yielding the thread
/// between polls if it is ever pending.
#[inline]
pub(crate) fn poll_now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::yield_now();
    }
}

/// One request, the same way for every subject: `ready()`, `call`, poll the
/// response future to completion.
#[inline]
pub(crate) fn drive<S: Service<()>>(svc: &mut S) -> Result<S::Response, S::Error> {
    let svc = poll_now(ServiceExt::ready(svc))?;
    poll_now(svc.call(()))
}

// ---------------------------------------------------------------- buttress

/// buttress's breaker around the no-op, from `builder` (closed).
pub(crate) fn buttress(
    builder: buttress_breaker::CircuitBreakerBuilder,
) -> impl Service<(), Response = (), Error = tower::BoxError> + Clone + Send + 'static {
    let breaker = builder.build().expect("valid breaker configuration");
    buttress_breaker::CircuitBreakerLayer::new(breaker).layer(noop())
}

/// buttress, default configuration: count window of 100, no slow calls.
pub(crate) fn buttress_default()
-> impl Service<(), Response = (), Error = tower::BoxError> + Clone + Send + 'static {
    buttress(buttress_breaker::CircuitBreaker::builder())
}

/// buttress with a 30 s time window in 10 buckets (one clock read per call).
pub(crate) fn buttress_time_window()
-> impl Service<(), Response = (), Error = tower::BoxError> + Clone + Send + 'static {
    buttress(buttress_breaker::CircuitBreaker::builder().time_window(Duration::from_secs(30), 10))
}

/// buttress with slow-call tracking at 1 s (two clock reads per call).
pub(crate) fn buttress_slow_calls()
-> impl Service<(), Response = (), Error = tower::BoxError> + Clone + Send + 'static {
    buttress(buttress_breaker::CircuitBreaker::builder().slow_call_duration(Duration::from_secs(1)))
}

/// buttress tripped open by failures (default thresholds, open for an hour).
pub(crate) fn buttress_tripped()
-> impl Service<(), Response = (), Error = tower::BoxError> + Clone + Send + 'static {
    let breaker = buttress_breaker::CircuitBreaker::builder()
        .open_duration(LONG_OPEN)
        .max_open_duration(LONG_OPEN)
        .build()
        .expect("valid breaker configuration");
    let layer = buttress_breaker::CircuitBreakerLayer::new(breaker.clone());
    let mut down = layer.layer(failing());
    while breaker.state() == buttress_breaker::State::Closed {
        let _ = drive(&mut down);
    }
    assert_eq!(breaker.state(), buttress_breaker::State::Open);
    layer.layer(noop())
}

/// buttress forced open (`force_open`): rejects without reading the clock.
pub(crate) fn buttress_forced_open()
-> impl Service<(), Response = (), Error = tower::BoxError> + Clone + Send + 'static {
    let breaker = buttress_breaker::CircuitBreaker::builder()
        .build()
        .expect("valid breaker configuration");
    breaker.force_open();
    buttress_breaker::CircuitBreakerLayer::new(breaker).layer(noop())
}

// ------------------------------------------------------- tower-resilience

type TrError = tower_resilience_circuitbreaker::CircuitBreakerError<io::Error>;

/// tower-resilience 0.13's breaker around the no-op, every default (closed).
pub(crate) fn tower_resilience()
-> impl Service<(), Response = (), Error = TrError> + Clone + Send + 'static {
    tower_resilience_circuitbreaker::CircuitBreakerLayer::builder()
        .build()
        .expect("valid breaker configuration")
        .layer(noop())
}

/// tower-resilience tripped open by failures (defaults, open for an hour).
pub(crate) fn tower_resilience_tripped()
-> impl Service<(), Response = (), Error = TrError> + Clone + Send + 'static {
    use tower_resilience_circuitbreaker::CircuitState;
    let (layer, handle) = tower_resilience_circuitbreaker::CircuitBreakerLayer::builder()
        .wait_duration_in_open(LONG_OPEN)
        .build_with_handle()
        .expect("valid breaker configuration");
    let mut down = layer.layer(failing());
    while handle.state() == CircuitState::Closed {
        let _ = drive(&mut down);
    }
    assert_eq!(handle.state(), CircuitState::Open);
    layer.layer(noop())
}

// ---------------------------------------------------------------- failsafe

/// failsafe 1.3's default failure policy (`Config::new()`).
pub(crate) type FailsafePolicy = failsafe::failure_policy::OrElse<
    failsafe::failure_policy::SuccessRateOverTimeWindow<failsafe::backoff::EqualJittered>,
    failsafe::failure_policy::ConsecutiveFailures<failsafe::backoff::EqualJittered>,
>;

/// failsafe 1.3's state machine with its defaults (`Config::new().build()`).
pub(crate) type FailsafeBreaker = failsafe::StateMachine<FailsafePolicy, ()>;

/// failsafe is not a tower layer: this adapter makes its futures API one.
/// `call` wraps the inner call's future in `failsafe::futures::CircuitBreaker::call`.
#[derive(Clone)]
pub(crate) struct FailsafeFutures<S> {
    inner: S,
    breaker: FailsafeBreaker,
}

impl<S: Service<()>> Service<()> for FailsafeFutures<S> {
    type Response = S::Response;
    type Error = failsafe::Error<S::Error>;
    type Future = failsafe::futures::ResponseFuture<S::Future, FailsafePolicy, (), failsafe::Any>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(failsafe::Error::Inner)
    }

    #[inline]
    fn call(&mut self, req: ()) -> Self::Future {
        failsafe::futures::CircuitBreaker::call(&self.breaker, self.inner.call(req))
    }
}

/// The same adapter for failsafe's synchronous API: `call` runs the inner
/// call (its future is immediately ready) inside `failsafe::CircuitBreaker::call`.
#[derive(Clone)]
pub(crate) struct FailsafeSync<S> {
    inner: S,
    breaker: FailsafeBreaker,
}

impl<S: Service<()>> Service<()> for FailsafeSync<S> {
    type Response = S::Response;
    type Error = failsafe::Error<S::Error>;
    type Future = Ready<Result<S::Response, Self::Error>>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(failsafe::Error::Inner)
    }

    #[inline]
    fn call(&mut self, req: ()) -> Self::Future {
        let inner = &mut self.inner;
        std::future::ready(failsafe::CircuitBreaker::call(&self.breaker, || {
            poll_now(inner.call(req))
        }))
    }
}

/// failsafe's futures API around the no-op, every default (closed).
pub(crate) fn failsafe_futures()
-> impl Service<(), Response = (), Error = failsafe::Error<io::Error>> + Clone + Send + 'static {
    FailsafeFutures {
        inner: noop(),
        breaker: failsafe::Config::new().build(),
    }
}

/// failsafe's synchronous API around the no-op, every default (closed).
pub(crate) fn failsafe_sync()
-> impl Service<(), Response = (), Error = failsafe::Error<io::Error>> + Clone + Send + 'static {
    FailsafeSync {
        inner: noop(),
        breaker: failsafe::Config::new().build(),
    }
}
