//! Stacks on an axum router behind `ErrorResponseLayer`: each rejection,
//! bare or wrapped by another layer, becomes its status code and
//! `Retry-After` with no error handler in the application.
#![cfg(all(
    feature = "breaker",
    feature = "retry",
    feature = "limit",
    feature = "http"
))]

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use buttress::ServiceBuilderExt;
use buttress::breaker::CircuitBreaker;
use buttress::http::ErrorResponseLayer;
use buttress::limit::AdaptiveLimit;
use buttress::limit::algorithm::Fixed;
use buttress::retry::http::HttpReplay;
use buttress::retry::{RetryBudget, RetryPolicy};
use http::{Request, Response, StatusCode};
use tower::{ServiceBuilder, ServiceExt, service_fn};

async fn get(app: &Router) -> Response<Body> {
    let req = Request::get("/").body(Body::empty()).unwrap();
    app.clone().oneshot(req).await.unwrap()
}

fn ok() -> Response<String> {
    Response::new("hello".to_string())
}

#[tokio::test(start_paused = true)]
async fn each_rejection_gets_its_status_through_any_wrapper() {
    // A tripped breaker under a retry whose budget is empty: the rejection
    // arrives wrapped in BudgetExhausted.
    let breaker = CircuitBreaker::builder()
        .count_window(2)
        .minimum_calls(2)
        .open_duration(Duration::from_secs(7))
        .open_duration_jitter(0.0)
        .build()
        .unwrap();
    let empty = RetryBudget::builder()
        .percent(0.0)
        .min_per_second(0)
        .build()
        .unwrap();
    let route = ServiceBuilder::new()
        .layer(ErrorResponseLayer::new())
        .map_request(|req: Request<Body>| req.map(|_| ()))
        .retries(
            RetryPolicy::builder()
                .replay(HttpReplay::new())
                .budget(empty)
                .build()
                .unwrap(),
        )
        .circuit_breaker(breaker)
        .service(service_fn(|_: Request<()>| async {
            Err::<Response<String>, _>(std::io::Error::other("backend down"))
        }));
    let app = Router::new().route_service("/", route);
    // The backend's own failures are not rejections: 500, empty body.
    for _ in 0..2 {
        let res = get(&app).await;
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    let res = get(&app).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "7");

    // The limit sheds: 503 without Retry-After.
    let limit = AdaptiveLimit::builder(Fixed::new(1).unwrap())
        .build()
        .unwrap();
    let route = ServiceBuilder::new()
        .layer(ErrorResponseLayer::new())
        .adaptive_limit(limit.clone())
        .service(service_fn(|_: Request<Body>| async {
            Ok::<_, std::io::Error>(ok())
        }));
    let app = Router::new().route_service("/", route);
    let held = limit.try_acquire().unwrap();
    let res = get(&app).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().get("retry-after").is_none());
    drop(held);
    assert_eq!(get(&app).await.status(), StatusCode::OK);

    // The retry deadline passes: 504.
    let route = ServiceBuilder::new()
        .layer(ErrorResponseLayer::new())
        .map_request(|req: Request<Body>| req.map(|_| ()))
        .retries(
            RetryPolicy::builder()
                .replay(HttpReplay::new())
                .deadline(Duration::from_millis(100))
                .build()
                .unwrap(),
        )
        .service(service_fn(|_: Request<()>| async {
            tokio::time::sleep(const { Duration::from_secs(1) }).await;
            Ok::<_, std::io::Error>(ok())
        }));
    let app = Router::new().route_service("/", route);
    assert_eq!(get(&app).await.status(), StatusCode::GATEWAY_TIMEOUT);
}
