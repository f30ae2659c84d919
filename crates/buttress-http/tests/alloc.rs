//! The layer's common path allocates nothing of its own: choosing a
//! policy, writing its prepared fields into the handler's header map and
//! evaluating preconditions that hold. Counted with a global allocator as
//! the difference between the layered and the bare handler.
//!
//! It runs without the libtest harness (`harness = false`), in the main
//! thread, so that no other thread allocates while it counts.

use std::alloc::System;
use std::convert::Infallible;
use std::future::Future;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use buttress_http::{CacheDirectives, CacheHeaders, CachePolicy};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, header};
use http_body_util::Full;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower::{Layer, Service, service_fn};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const CALLS: usize = 1_000;

fn drive<S, B>(svc: &mut S, request: Request<()>) -> Response<B>
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible>,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    let mut fut = std::pin::pin!(svc.call(request));
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(r)) => r,
        _ => panic!("the handler is always ready"),
    }
}

/// A handler whose response has room in its header map for the policy's
/// fields (as a framework's response does after its own fields).
fn handler(request: Request<()>) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>> {
    let mut headers = HeaderMap::with_capacity(16);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::ETAG, HeaderValue::from_static("\"v1\""));
    drop(request);
    let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
    *response.headers_mut() = headers;
    std::future::ready(Ok(response))
}

fn request(precondition: bool) -> Request<()> {
    let mut b = Request::get("/api/users/1");
    if precondition {
        b = b.header(header::IF_NONE_MATCH, HeaderValue::from_static("\"v0\""));
    }
    b.body(()).unwrap()
}

/// Allocations made by `CALLS` calls of `svc`.
fn allocations<S, B>(svc: &mut S, precondition: bool) -> usize
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible>,
{
    // Warm up: the first call assigns this thread's counter stripe and
    // shares the prepared values' bytes.
    drop(drive(svc, request(precondition)));
    let region = Region::new(GLOBAL);
    for _ in 0..CALLS {
        let response = drive(svc, request(precondition));
        assert_eq!(response.status(), http::StatusCode::OK);
    }
    let change = region.change();
    change.allocations + change.reallocations
}

fn main() {
    buttress_core::telemetry::set_publish_interval(Duration::ZERO);
    let policy = CachePolicy::builder()
        .cache_control(
            CacheDirectives::new()
                .private()
                .max_age(Duration::from_secs(60)),
        )
        .cdn_cache_control(CacheDirectives::new().max_age(Duration::from_secs(600)))
        .vary("Accept-Encoding")
        .build()
        .unwrap();
    let headers = CacheHeaders::builder()
        .route("/api", policy)
        .build()
        .unwrap();
    for precondition in [false, true] {
        let bare = allocations(&mut service_fn(handler), precondition);
        let mut layered = headers.layer().layer(service_fn(handler));
        let with_layer = allocations(&mut layered, precondition);
        assert_eq!(
            with_layer, bare,
            "the layer allocated (precondition: {precondition}): {with_layer} vs {bare} over {CALLS} calls"
        );
        let response = drive(&mut layered, request(precondition));
        assert_eq!(
            response.headers()[header::CACHE_CONTROL],
            "private, max-age=60"
        );
    }
    println!("alloc: 1 passed, 0 failed");
}
