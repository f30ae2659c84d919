//! An axum route whose backend sits behind a circuit breaker: when the
//! backend keeps failing, callers get `503` with `Retry-After` at once
//! instead of waiting on it.
//!
//! ```text
//! cargo run --example axum
//! for i in 1 2 3 4 5; do curl -i '127.0.0.1:3000/?fail'; done   # 502 x5, then the breaker opens
//! curl -i 127.0.0.1:3000/                                         # 503, Retry-After: 10
//! ```

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Router, error_handling::HandleErrorLayer, extract::Request};
use buttress::breaker::CircuitBreaker;
use buttress::http::error_response;
use buttress::{BoxError, ServiceBuilderExt};
use tower::ServiceBuilder;

/// The backend: fails when asked to (`?fail`), answers otherwise.
async fn backend(req: Request) -> Result<&'static str, BoxError> {
    match req.uri().query() {
        Some("fail") => Err("backend unavailable".into()),
        _ => Ok("hello from the backend\n"),
    }
}

/// A buttress rejection becomes its answer (an open breaker: 503 +
/// `Retry-After`); any other error, 502. For routes whose backend answers
/// with `http::Response`, `buttress::http::ErrorResponseLayer` does this
/// without a handler (other errors become 500).
async fn on_error(err: BoxError) -> Response {
    error_response::<axum::body::Body>(&err)
        .map(IntoResponse::into_response)
        .unwrap_or_else(|| (StatusCode::BAD_GATEWAY, err.to_string()).into_response())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let breaker = CircuitBreaker::builder()
        .name("backend")
        .count_window(20)
        .minimum_calls(5)
        .open_duration(Duration::from_secs(10))
        .build()?;
    let route = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(on_error))
        .circuit_breaker(breaker)
        .service_fn(backend);
    let app = Router::new().route_service("/", route);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    axum::serve(listener, app).await?;
    Ok(())
}
