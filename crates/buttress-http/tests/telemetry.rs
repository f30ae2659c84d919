//! The layer's counts reach the metrics recorder under the catalog's
//! names, labelled with the instance's name; its types are Send + Sync.

mod common;

use buttress_core::telemetry::flush;
use buttress_http::{
    CacheHeaders, CacheHeadersLayer, CacheHeadersService, METRICS, ResponseBody,
    future::ResponseFuture,
};
use common::{Chunks, call, get, handler, layered, ok};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

#[tokio::test]
async fn counts_are_published_with_the_instance_name() {
    let h = CacheHeaders::builder()
        .name("http-telemetry-test")
        .build()
        .unwrap();
    assert_eq!(h.name(), "http-telemetry-test");
    let (inner, _) = handler(|_| ok("x", &[("etag", "\"v1\"")]));
    let svc = layered(&h, inner);
    let (parts, _) = call(&svc, get("/", &[("if-none-match", "\"v1\"")])).await;
    assert_eq!(parts.status, http::StatusCode::NOT_MODIFIED);
    let (parts, _) = call(&svc, get("/", &[("if-match", "\"v0\"")])).await;
    assert_eq!(parts.status, http::StatusCode::PRECONDITION_FAILED);
    let (inner, _) = handler(|_| ok("x", &[]));
    let (_, body) = call(&layered(&h, inner), get("/", &[])).await;
    assert_eq!(body.unwrap(), "x");

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, flush);
    let mut seen = Vec::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let labels: Vec<_> = key
            .key()
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        if !labels.contains(&("name".into(), "http-telemetry-test".into())) {
            continue;
        }
        assert!(
            METRICS.iter().any(|m| m.name == key.key().name()),
            "{} is in the catalog",
            key.key().name()
        );
        let outcome = labels
            .iter()
            .find(|(k, _)| k == "outcome")
            .map(|(_, v)| v.clone())
            .unwrap();
        if let DebugValue::Counter(n) = value {
            seen.push((key.key().name().to_owned(), outcome, n));
        }
    }
    seen.sort();
    let want = [
        (
            "buttress_cache_headers_conditional_total",
            "not_modified",
            1,
        ),
        (
            "buttress_cache_headers_conditional_total",
            "precondition_failed",
            1,
        ),
        ("buttress_cache_headers_etags_total", "skipped", 0),
        ("buttress_cache_headers_etags_total", "strong", 1),
        ("buttress_cache_headers_etags_total", "weak", 0),
    ];
    let want: Vec<_> = want
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), *c))
        .collect();
    assert_eq!(seen, want);
}

#[test]
fn services_futures_and_bodies_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<CacheHeaders>();
    send_sync::<CacheHeadersLayer>();
    send_sync::<CacheHeadersService<()>>();
    send_sync::<ResponseBody<Chunks>>();
    send_sync::<ResponseFuture<std::future::Ready<Result<http::Response<Chunks>, ()>>, Chunks>>();
}
