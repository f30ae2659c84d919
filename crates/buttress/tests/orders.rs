//! Cache, retry, breaker and limit stacked in every order (all 24; each is
//! correct, `docs/ordering.md` says what each one measures): in each, every
//! rejection keeps its type and its layer's name through the others, maps
//! to its HTTP answer (503 + `Retry-After` for an open breaker, 503 for a
//! shed, 504 for a passed deadline or a cache load timeout), is never
//! retried, never cached, and never counted as the dependency's failure.
#![cfg(all(
    feature = "breaker",
    feature = "cache",
    feature = "retry",
    feature = "limit",
    feature = "http"
))]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use buttress::BoxError;
use buttress::breaker::{CircuitBreaker, CircuitBreakerLayer, State};
use buttress::cache::store::QuickCacheStore;
use buttress::cache::{Cache, CacheLayer};
use buttress::core::reject::{RejectionKind, rejection};
use buttress::http::error_response;
use buttress::limit::algorithm::Fixed;
use buttress::limit::{AdaptiveLimit, AdaptiveLimitLayer};
use buttress::retry::{RetryLayer, RetryPolicy};
use http::StatusCode;
use http::header::RETRY_AFTER;
use tower::util::BoxCloneService;
use tower::{Layer, ServiceExt, service_fn};

type Svc = BoxCloneService<u32, u32, BoxError>;

/// Keys from here on hang forever at the backend.
const HANGS: u32 = 10_000;
/// The breaker stays open this long: longer than the retry's
/// `max_retry_after` (30 s), so the retry does not wait for its probe.
const OPEN_FOR: Duration = Duration::from_secs(60);
/// The retry's deadline for the whole request.
const DEADLINE: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Cache,
    Retry,
    Breaker,
    Limit,
}

/// The backend: fails while `down`, hangs for keys from `HANGS`, and counts
/// the calls it answers or starts.
#[derive(Clone, Default)]
struct Backend {
    down: Arc<AtomicBool>,
    calls: Arc<AtomicU32>,
}

impl Backend {
    fn service(&self) -> Svc {
        let this = self.clone();
        BoxCloneService::new(service_fn(move |k: u32| {
            this.calls.fetch_add(1, Ordering::SeqCst);
            let down = this.down.load(Ordering::SeqCst);
            async move {
                if k >= HANGS {
                    std::future::pending::<()>().await;
                }
                if down {
                    Err::<u32, BoxError>("backend down".into())
                } else {
                    Ok(k * 2)
                }
            }
        }))
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

struct Stack {
    svc: Svc,
    backend: Backend,
    breaker: CircuitBreaker,
    limit: AdaptiveLimit,
    cache: Cache<u32, u32, QuickCacheStore<u32, u32>>,
    retry: RetryPolicy,
}

impl Stack {
    /// The layers in `order`, outermost first, around a fresh backend,
    /// named `<test>-breaker` and so on (tests run at once, and two live
    /// layers never share a name).
    fn new(test: &str, order: [Kind; 4], load_timeout: Duration) -> Self {
        let backend = Backend::default();
        let breaker = CircuitBreaker::builder()
            .name(format!("{test}-breaker"))
            .count_window(4)
            .minimum_calls(4)
            .open_duration(OPEN_FOR)
            .open_duration_jitter(0.0)
            .build()
            .unwrap();
        let limit = AdaptiveLimit::builder(Fixed::new(1).unwrap())
            .name(format!("{test}-limit"))
            .build()
            .unwrap();
        let cache = Cache::builder(
            QuickCacheStore::builder(1 << 20)
                .estimated_entries(1_000)
                .build()
                .unwrap(),
        )
        .name(format!("{test}-cache"))
        .ttl(Duration::from_secs(300))
        .load_timeout(load_timeout)
        .build()
        .unwrap();
        let retry = RetryPolicy::builder()
            .name(format!("{test}-retry"))
            .without_budget()
            .max_attempts(3)
            .deadline(DEADLINE)
            .build()
            .unwrap();
        let mut svc = backend.service();
        for kind in order.iter().rev() {
            svc = match kind {
                Kind::Cache => BoxCloneService::new(
                    CacheLayer::new(cache.clone(), |k: &u32| Some(*k)).layer(svc),
                ),
                Kind::Retry => BoxCloneService::new(RetryLayer::new(retry.clone()).layer(svc)),
                Kind::Breaker => {
                    BoxCloneService::new(CircuitBreakerLayer::new(breaker.clone()).layer(svc))
                }
                Kind::Limit => {
                    BoxCloneService::new(AdaptiveLimitLayer::new(limit.clone()).layer(svc))
                }
            };
        }
        Self {
            svc,
            backend,
            breaker,
            limit,
            cache,
            retry,
        }
    }

    async fn call(&self, k: u32) -> Result<u32, BoxError> {
        self.svc.clone().oneshot(k).await
    }
}

/// Every order of the four layers.
fn orders() -> Vec<[Kind; 4]> {
    let kinds = [Kind::Cache, Kind::Retry, Kind::Breaker, Kind::Limit];
    let mut all = Vec::new();
    for a in 0..4 {
        for b in 0..4 {
            for c in 0..4 {
                for d in 0..4 {
                    let idx = [a, b, c, d];
                    let mut seen = [false; 4];
                    if idx.iter().all(|&i| !std::mem::replace(&mut seen[i], true)) {
                        all.push(idx.map(|i| kinds[i]));
                    }
                }
            }
        }
    }
    assert_eq!(all.len(), 24);
    all
}

/// The HTTP answer to `err`, its `Retry-After` in seconds, and which layer
/// (kind and name) refused.
fn answer(err: &BoxError) -> (StatusCode, Option<u64>, RejectionKind, &'static str) {
    let res = error_response::<()>(err).unwrap_or_else(|| panic!("not a rejection: {err}"));
    let after = res
        .headers()
        .get(RETRY_AFTER)
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let r = rejection(err).unwrap();
    (res.status(), after, r.kind(), r.name().as_str())
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_is_a_503_with_retry_after_in_every_order() {
    for order in orders() {
        let s = Stack::new("open", order, Duration::from_secs(30));
        s.backend.down.store(true, Ordering::SeqCst);
        let mut k = 0;
        while s.breaker.state() != State::Open {
            k += 1;
            assert!(k < 50, "{order:?}: the breaker never opened");
            s.call(k).await.unwrap_err();
        }
        let (calls, retries) = (s.backend.calls(), s.retry.snapshot().retries);
        let err = s.call(1_000).await.unwrap_err();
        let (status, after, kind, name) = answer(&err);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{order:?}");
        assert_eq!(kind, RejectionKind::CircuitOpen, "{order:?}");
        assert_eq!(name, "open-breaker", "{order:?}");
        let after = after.unwrap_or_else(|| panic!("{order:?}: no Retry-After"));
        assert!(
            (1..=OPEN_FOR.as_secs()).contains(&after),
            "{order:?}: {after}"
        );
        assert_eq!(
            s.backend.calls(),
            calls,
            "{order:?}: the backend was not called"
        );
        assert_eq!(
            s.retry.snapshot().retries,
            retries,
            "{order:?}: not retried"
        );

        // Not cached: once the breaker lets calls through, the key loads.
        s.backend.down.store(false, Ordering::SeqCst);
        s.breaker.reset();
        assert_eq!(s.call(1_000).await.unwrap(), 2_000, "{order:?}");
        assert_eq!(s.cache.snapshot().errors_served, 0, "{order:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_shed_is_a_503_never_retried_nor_counted_by_the_breaker_in_every_order() {
    for order in orders() {
        let s = Stack::new("shed", order, Duration::from_secs(30));
        // One call hangs and holds the limit's only permit.
        let held = tokio::spawn(s.svc.clone().oneshot(HANGS));
        while s.limit.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
        let retries = s.retry.snapshot().retries;
        for k in 1..=10 {
            let err = s.call(k).await.unwrap_err();
            let (status, after, kind, name) = answer(&err);
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{order:?}");
            assert_eq!(after, None, "{order:?}: no wait is known");
            assert_eq!(kind, RejectionKind::Overloaded, "{order:?}");
            assert_eq!(name, "shed-limit", "{order:?}");
        }
        assert_eq!(
            s.retry.snapshot().retries,
            retries,
            "{order:?}: not retried"
        );
        assert_eq!(s.breaker.state(), State::Closed, "{order:?}");
        assert_eq!(s.breaker.snapshot().failures, 0, "{order:?}: not a failure");
        assert_eq!(s.backend.calls(), 1, "{order:?}: only the held call");
        held.abort();
        let _ = held.await;

        // Not cached: with the permit free, the key loads.
        assert_eq!(s.call(1).await.unwrap(), 2, "{order:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_passed_deadline_is_a_504_in_every_order() {
    for order in orders() {
        let s = Stack::new("deadline", order, Duration::from_secs(30));
        let start = tokio::time::Instant::now();
        let err = s.call(HANGS).await.unwrap_err();
        let (status, after, kind, name) = answer(&err);
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{order:?}");
        assert_eq!(after, None, "{order:?}");
        assert_eq!(kind, RejectionKind::DeadlineExceeded, "{order:?}");
        assert_eq!(name, "deadline-retry", "{order:?}");
        assert_eq!(start.elapsed(), DEADLINE, "{order:?}");
        assert_eq!(s.limit.in_flight(), 0, "{order:?}: the permit came back");
    }
}

#[tokio::test(start_paused = true)]
async fn a_cache_load_timeout_is_a_504_in_every_order() {
    let load_timeout = DEADLINE / 2;
    for order in orders() {
        let s = Stack::new("load", order, load_timeout);
        let start = tokio::time::Instant::now();
        let err = s.call(HANGS).await.unwrap_err();
        let (status, after, kind, name) = answer(&err);
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{order:?}");
        assert_eq!(after, None, "{order:?}");
        assert_eq!(kind, RejectionKind::DeadlineExceeded, "{order:?}");
        assert_eq!(name, "load-cache", "{order:?}");
        assert_eq!(start.elapsed(), load_timeout, "{order:?}: not retried");
        assert_eq!(s.retry.snapshot().retries, 0, "{order:?}");
        assert_eq!(s.limit.in_flight(), 0, "{order:?}: the permit came back");
    }
}
