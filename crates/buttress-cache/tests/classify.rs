//! The shared classifier (`CacheLayer::classifier`) decides which load
//! results may be cached: successes as the policy says, failures never as
//! values (stale-if-error may answer instead), ignored results never.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use buttress_cache::store::QuickCacheStore;
use buttress_cache::{Cache, CacheLayer};
use buttress_core::classify::Classification;
use tokio::time::advance;
use tower::{BoxError, Layer, Service, ServiceExt};

#[derive(Clone, Debug, PartialEq, Eq)]
enum ApiError {
    /// The key does not exist: a healthy answer.
    Gone,
    /// The call was cancelled on the other side: counts for nothing.
    Cancelled,
    /// The backend is unwell.
    Down,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for ApiError {}

/// An HTTP-like backend: answers a status (or an error) set by the test,
/// counting calls; a call takes a second (paused time).
#[derive(Clone, Default)]
struct Api {
    calls: Arc<AtomicUsize>,
    next: Arc<Mutex<Option<Result<u16, ApiError>>>>,
}

impl Api {
    fn answer(&self, answer: Result<u16, ApiError>) {
        *self.next.lock().unwrap() = Some(answer);
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Service<u64> for Api {
    type Response = u16;
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<u16, ApiError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ApiError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _key: u64) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let answer = self.next.lock().unwrap().clone().unwrap_or(Ok(200));
        Box::pin(async move {
            tokio::time::sleep(const { Duration::from_secs(1) }).await;
            answer
        })
    }
}

/// 5xx and `Down` are failures, 499 and `Cancelled` are ignored, the rest
/// (`Gone` included) are successes.
fn http_like(result: &Result<u16, ApiError>) -> Classification {
    match result {
        Ok(499) | Err(ApiError::Cancelled) => Classification::ignored(),
        Ok(status) if *status >= 500 => Classification::failure(),
        Ok(_) | Err(ApiError::Gone) => Classification::success(),
        Err(ApiError::Down) => Classification::failure(),
    }
}

type Quick = QuickCacheStore<u64, u16>;

fn cache() -> Cache<u64, u16, Quick> {
    Cache::builder(
        QuickCacheStore::builder(1 << 20)
            .estimated_entries(100)
            .build()
            .unwrap(),
    )
    .ttl(Duration::from_secs(10))
    .ttl_jitter(0.0)
    .xfetch_beta(None)
    .stale_if_error(Duration::from_secs(60))
    .build()
    .unwrap()
}

type Svc = tower::util::BoxCloneService<u64, u16, BoxError>;

/// The layer with the HTTP-like classifier, caching `Gone`, `Cancelled`
/// and `Down` errors for 5 s if the classifier lets it.
fn classified(cache: &Cache<u64, u16, Quick>, api: &Api) -> Svc {
    let layer = CacheLayer::new(cache.clone(), |k: &u64| Some(*k))
        .cache_errors(|_: &ApiError| Some(Duration::from_secs(5)))
        .classifier(http_like);
    tower::util::BoxCloneService::new(layer.layer(api.clone()))
}

async fn get(svc: &Svc, k: u64) -> Result<u16, BoxError> {
    svc.clone().oneshot(k).await
}

#[tokio::test(start_paused = true)]
async fn a_response_classified_as_a_failure_is_not_cached_and_stale_answers_for_it() {
    let (api, cache) = (Api::default(), cache());
    let svc = classified(&cache, &api);

    api.answer(Ok(503));
    assert_eq!(
        get(&svc, 1).await.unwrap(),
        503,
        "no stale value: the response"
    );
    assert_eq!(get(&svc, 1).await.unwrap(), 503);
    assert_eq!(api.calls(), 2, "a 503 is not cached");
    assert!(cache.peek(&1).is_none());
    assert_eq!(cache.snapshot().load_failures, 2);

    api.answer(Ok(200));
    assert_eq!(get(&svc, 1).await.unwrap(), 200);
    advance(Duration::from_secs(20)).await; // stale, within stale-if-error
    api.answer(Ok(503));
    assert_eq!(get(&svc, 1).await.unwrap(), 200, "stale-if-error");
    let stats = cache.snapshot();
    assert_eq!((stats.stale_if_error, stats.load_failures), (1, 3));
    assert_eq!(api.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn coalesced_waiters_get_a_failed_response_and_nothing_is_cached() {
    let (api, cache) = (Api::default(), cache());
    let svc = classified(&cache, &api);
    api.answer(Ok(502));
    let (a, b) = tokio::join!(get(&svc, 1), get(&svc, 1));
    assert_eq!((a.unwrap(), b.unwrap()), (502, 502));
    assert_eq!(api.calls(), 1, "one load");
    assert_eq!(cache.snapshot().coalesced_waiters, 1);
    assert!(cache.peek(&1).is_none());
}

#[tokio::test(start_paused = true)]
async fn an_ignored_result_is_never_cached_nor_a_failure() {
    let (api, cache) = (Api::default(), cache());
    let svc = classified(&cache, &api);

    api.answer(Ok(200));
    get(&svc, 1).await.unwrap();
    advance(Duration::from_secs(20)).await;
    api.answer(Ok(499));
    assert_eq!(
        get(&svc, 1).await.unwrap(),
        499,
        "not a failure: no stale answer"
    );
    api.answer(Err(ApiError::Cancelled));
    let err = get(&svc, 2).await.unwrap_err();
    assert_eq!(err.downcast_ref::<ApiError>(), Some(&ApiError::Cancelled));
    get(&svc, 2).await.unwrap_err();
    assert_eq!(api.calls(), 4, "neither is cached");
    let stats = cache.snapshot();
    assert_eq!((stats.load_failures, stats.stale_if_error), (0, 0));
    assert_eq!(stats.errors_served, 0, "an ignored error is not cached");
}

#[tokio::test(start_paused = true)]
async fn errors_are_cached_as_the_error_policy_says_unless_ignored() {
    let (api, cache) = (Api::default(), cache());
    let svc = classified(&cache, &api);

    // A healthy error: cached, and never answered with a stale value.
    api.answer(Ok(200));
    get(&svc, 1).await.unwrap();
    advance(Duration::from_secs(20)).await;
    api.answer(Err(ApiError::Gone));
    for _ in 0..2 {
        let err = get(&svc, 1).await.unwrap_err();
        assert_eq!(err.downcast_ref::<ApiError>(), Some(&ApiError::Gone));
    }
    // A failure: stale-if-error first, cached when no stale value answers.
    api.answer(Err(ApiError::Down));
    for _ in 0..2 {
        let err = get(&svc, 2).await.unwrap_err();
        assert_eq!(err.downcast_ref::<ApiError>(), Some(&ApiError::Down));
    }
    assert_eq!(api.calls(), 3, "both errors cached");
    let stats = cache.snapshot();
    assert_eq!(stats.errors_served, 2);
    assert_eq!(stats.load_failures, 1, "`Gone` is not a failure");
}

#[tokio::test(start_paused = true)]
async fn without_a_classifier_errors_fail_and_responses_are_cached() {
    let (api, cache) = (Api::default(), cache());
    let svc = CacheLayer::new(cache.clone(), |k: &u64| Some(*k)).layer(api.clone());
    api.answer(Ok(503));
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), 503);
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), 503);
    assert_eq!(api.calls(), 1, "every Ok is a success by default");
    api.answer(Err(ApiError::Gone));
    svc.clone().oneshot(2).await.unwrap_err();
    svc.clone().oneshot(2).await.unwrap_err();
    assert_eq!(api.calls(), 3, "no error is cached by default");
    assert_eq!(cache.snapshot().load_failures, 2);
}
