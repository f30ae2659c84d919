//! The HTTP cache: a cached hit through `HttpCacheLayer` (request to
//! response, with its `Age`) next to a raw `QuickCacheStore` lookup of the
//! same stored value (the floor: the store's own `get`, no HTTP work).
//! http-cache-tower, the peer the issue names, is not run here yet (its
//! dependency tree was not added to this workspace); see
//! `docs/http-caching.md`.
//!
//! Run with `cargo bench -p buttress-benches --bench http` (never
//! `--workspace`: the tests' tokio `test-util` feature would route every
//! `tokio::time::Instant::now()` through the mock clock).
//!
//! Bench ids, in the group `http-cache`: `hit/buttress-quick_cache`,
//! `hit/raw-quick_cache`.

use std::convert::Infallible;
use std::hint::black_box;

use buttress_cache::store::{QuickCacheStore, Store};
use buttress_http::{HttpCache, Variants};
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, header};
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt, service_fn};

fn request() -> Request<()> {
    Request::get("/greeting")
        .header(header::HOST, "example.com")
        .body(())
        .expect("a valid request")
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let store = QuickCacheStore::<String, Variants>::builder(64 << 20)
        .build()
        .expect("a store");
    let cache = HttpCache::builder(store)
        .name("bench")
        .build()
        .expect("a cache");
    let mut svc = cache.layer().layer(service_fn(|_req: Request<()>| async {
        let mut r = Response::new(Full::new(Bytes::from_static(&[b'x'; 1024])));
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("public, max-age=3600"),
        );
        Ok::<_, Infallible>(r)
    }));
    rt.block_on(async {
        let r = svc.ready().await.expect("ready").call(request()).await;
        assert!(r.is_ok());
    });
    assert_eq!(cache.snapshot().stored, 1, "the response is stored");
    let mut group = c.benchmark_group("http-cache");
    group.bench_function("hit/buttress-quick_cache", |b| {
        b.iter(|| {
            rt.block_on(async {
                let r = svc.ready().await.expect("ready").call(request()).await;
                black_box(r.is_ok())
            })
        });
    });
    let key = "http://example.com/greeting".to_owned();
    group.bench_function("hit/raw-quick_cache", |b| {
        b.iter(|| black_box(cache.store().try_get(black_box(&key)).flatten().is_some()));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
