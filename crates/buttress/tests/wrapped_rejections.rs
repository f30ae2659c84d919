//! A rejection wrapped by another layer keeps its HTTP answer: the
//! breaker's `CircuitOpen` inside retry's `BudgetExhausted` is still a
//! `503` with `Retry-After`, not whatever the application maps an unknown
//! error to.
#![cfg(all(feature = "breaker", feature = "retry", feature = "http"))]

use std::time::Duration;

use buttress::ServiceBuilderExt;
use buttress::breaker::{CircuitBreaker, State, http::error_response};
use buttress::retry::{BudgetExhausted, RetryBudget, RetryPolicy};
use http::StatusCode;
use tower::{ServiceBuilder, ServiceExt, service_fn};

#[tokio::test(start_paused = true)]
async fn a_circuit_open_inside_budget_exhausted_is_a_503_with_retry_after() {
    let breaker = CircuitBreaker::builder()
        .count_window(2)
        .minimum_calls(2)
        .open_duration(Duration::from_secs(10))
        .open_duration_jitter(0.0)
        .build()
        .unwrap();
    // An empty budget: every retryable failure comes back wrapped.
    let budget = RetryBudget::builder()
        .percent(0.0)
        .min_per_second(0)
        .build()
        .unwrap();
    let policy = RetryPolicy::builder().budget(budget).build().unwrap();
    let svc = ServiceBuilder::new()
        .retries(policy)
        .circuit_breaker(breaker.clone())
        .service(service_fn(|_: ()| async {
            Err::<(), _>(std::io::Error::other("backend down"))
        }));
    for _ in 0..2 {
        svc.clone().oneshot(()).await.unwrap_err();
    }
    assert_eq!(breaker.state(), State::Open);

    let err = svc.oneshot(()).await.unwrap_err();
    assert!(err.is::<BudgetExhausted>(), "{err}");
    let res: http::Response<()> = error_response(&err).expect("found through the wrapper");
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "10");
}
