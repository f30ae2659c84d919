//! A buttress rejection reaching the retry layer (a breaker or a limit
//! inside it) is never retried before its `retry_after`: not at all when
//! it has none, and not when the wait is too long or passes the deadline.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use buttress_core::BoxError;
use buttress_core::reject::{CircuitOpen, Overloaded, RateLimited, Throttled, rejection};
use buttress_core::telemetry::Name;
use buttress_retry::{DeadlineExceeded, RetryPolicy};
use tokio::time::Instant;
use tower::{Layer, ServiceExt, service_fn};

/// A backend that answers each attempt with the next error of `script`,
/// then `Ok`, and logs when each attempt came.
fn scripted(
    script: Vec<fn() -> BoxError>,
) -> (
    impl tower::Service<(), Response = u32, Error = BoxError, Future = impl Send> + Clone,
    Arc<Mutex<Vec<Instant>>>,
) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = Arc::clone(&log);
    let script = Arc::new(script);
    let svc = service_fn(move |()| {
        let n = {
            let mut l = l.lock().unwrap();
            l.push(Instant::now());
            l.len() - 1
        };
        let script = Arc::clone(&script);
        async move {
            match script.get(n) {
                Some(make) => Err(make()),
                None => Ok(n as u32),
            }
        }
    });
    (svc, log)
}

/// The name of the layer below that rejected.
fn n() -> Name {
    Name::new("below")
}

fn policy() -> buttress_retry::RetryPolicyBuilder {
    RetryPolicy::builder().without_budget().seed(1)
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_is_retried_only_after_its_next_probe() {
    let (backend, log) = scripted(vec![|| {
        Box::new(CircuitOpen::new(n(), Some(Duration::from_millis(1_500))))
    }]);
    let svc = buttress_retry::RetryLayer::new(policy().build().unwrap()).layer(backend);
    assert_eq!(svc.oneshot(()).await.unwrap(), 1);
    let l = log.lock().unwrap();
    assert_eq!(l.len(), 2);
    assert_eq!(
        l[1] - l[0],
        Duration::from_millis(1_500),
        "not before retry_after"
    );
}

#[tokio::test(start_paused = true)]
async fn a_rejection_without_a_wait_is_not_retried() {
    let cases: [fn() -> BoxError; 4] = [
        || Box::new(CircuitOpen::new(n(), None)),
        || Box::new(Overloaded::new(n())),
        || Box::new(Throttled::new(n())),
        || Box::new(DeadlineExceeded::new(n())),
    ];
    for make in cases {
        let (backend, log) = scripted(vec![make, make, make]);
        let svc = buttress_retry::RetryLayer::new(policy().build().unwrap()).layer(backend);
        let err = svc.oneshot(()).await.unwrap_err();
        assert_eq!(err.to_string(), make().to_string(), "the rejection itself");
        assert_eq!(
            rejection(&err).unwrap().name(),
            "below",
            "names the layer below"
        );
        assert_eq!(log.lock().unwrap().len(), 1, "{err}: one attempt");
    }
}

#[tokio::test(start_paused = true)]
async fn a_wait_too_long_or_past_the_deadline_is_not_retried() {
    // Longer than max_retry_after (30 s by default): not cut short, not retried.
    let (backend, log) = scripted(vec![|| {
        Box::new(CircuitOpen::new(n(), Some(Duration::from_secs(60))))
    }]);
    let svc = buttress_retry::RetryLayer::new(policy().build().unwrap()).layer(backend);
    assert!(svc.oneshot(()).await.unwrap_err().is::<CircuitOpen>());
    assert_eq!(log.lock().unwrap().len(), 1);

    // Within max_retry_after, but past the deadline.
    let (backend, log) = scripted(vec![|| {
        Box::new(CircuitOpen::new(n(), Some(Duration::from_secs(2))))
    }]);
    let p = policy().deadline(Duration::from_secs(1)).build().unwrap();
    let svc = buttress_retry::RetryLayer::new(p.clone()).layer(backend);
    assert!(svc.oneshot(()).await.unwrap_err().is::<CircuitOpen>());
    assert_eq!(log.lock().unwrap().len(), 1);
    assert_eq!(p.snapshot().deadline_stops, 1);
}

#[tokio::test(start_paused = true)]
async fn a_rate_limited_call_is_retried_only_after_its_wait() {
    let (backend, log) = scripted(vec![|| {
        Box::new(RateLimited::new(n(), Duration::from_millis(700)))
    }]);
    let svc = buttress_retry::RetryLayer::new(policy().build().unwrap()).layer(backend);
    assert_eq!(svc.oneshot(()).await.unwrap(), 1);
    let l = log.lock().unwrap();
    assert_eq!(l.len(), 2);
    assert_eq!(
        l[1] - l[0],
        Duration::from_millis(700),
        "not before retry_after"
    );
}
