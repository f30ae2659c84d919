//! `HttpCacheLayer` driven through a real inner service (a `service_fn`
//! counting its calls), with paused tokio time.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use buttress_cache::store::QuickCacheStore;
use buttress_http::{HttpCache, ResponseBody, Variants};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceExt, service_fn};

type Store = QuickCacheStore<String, Variants>;

fn store() -> Store {
    QuickCacheStore::builder(16 << 20).build().unwrap()
}

fn cache() -> HttpCache<Store> {
    HttpCache::builder(store()).name("test").build().unwrap()
}

/// A service answering with what `respond` makes of the request and the
/// call number (from 1), counting its calls.
fn origin<F>(
    calls: Arc<AtomicUsize>,
    respond: F,
) -> impl Service<Request<()>, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static
where
    F: Fn(&Request<()>, usize) -> Response<Full<Bytes>> + Clone + Send + Sync + 'static,
{
    service_fn(move |req: Request<()>| {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        let r = respond(&req, n);
        async move { Ok::<_, Infallible>(r) }
    })
}

fn resp(cc: &str, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_owned())));
    if !cc.is_empty() {
        r.headers_mut()
            .insert(header::CACHE_CONTROL, cc.parse().unwrap());
    }
    r
}

fn get(uri: &str) -> http::request::Builder {
    Request::get(uri).header(header::HOST, "example.com")
}

async fn send<S>(svc: &mut S, req: Request<()>) -> (StatusCode, HeaderMap, Bytes)
where
    S: Service<Request<()>, Response = Response<ResponseBody<Full<Bytes>>>, Error = Infallible>,
{
    let r = svc.ready().await.unwrap().call(req).await.unwrap();
    let (parts, body) = r.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, body)
}

#[tokio::test(start_paused = true)]
async fn a_fresh_response_is_served_from_the_cache_with_its_age_until_it_is_stale() {
    let calls = Arc::new(AtomicUsize::new(0));
    let cache = cache();
    let mut svc = cache.layer().layer_service(origin(calls.clone(), |_, n| {
        resp("max-age=60", &format!("v{n}"))
    }));
    let (_, _, body) = send(&mut svc, get("/a").body(()).unwrap()).await;
    assert_eq!(body, "v1");
    tokio::time::advance(Duration::from_secs(10)).await;
    let (status, headers, body) = send(&mut svc, get("/a").body(()).unwrap()).await;
    assert_eq!((status, body.as_ref()), (StatusCode::OK, &b"v1"[..]));
    assert_eq!(headers[header::AGE], "10");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Another URI is another key.
    let (_, _, body) = send(&mut svc, get("/b").body(()).unwrap()).await;
    assert_eq!(body, "v2");
    tokio::time::advance(Duration::from_secs(51)).await;
    let (_, _, body) = send(&mut svc, get("/a").body(()).unwrap()).await;
    assert_eq!(body, "v3", "stale after max-age: fetched anew");
    let s = cache.snapshot();
    assert_eq!((s.hits, s.misses, s.stored), (1, 3, 3));
}

trait LayerExt<S> {
    fn layer_service(&self, inner: S) -> buttress_http::HttpCacheService<S, Store>;
}

impl<S> LayerExt<S> for buttress_http::HttpCacheLayer<Store> {
    fn layer_service(&self, inner: S) -> buttress_http::HttpCacheService<S, Store> {
        tower::Layer::layer(self, inner)
    }
}

#[tokio::test(start_paused = true)]
async fn vary_selects_a_variant_per_normalised_request_field() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = cache()
        .layer()
        .layer_service(origin(calls.clone(), |req, _| {
            let lang = req
                .headers()
                .get(header::ACCEPT_LANGUAGE)
                .map_or("none".to_owned(), |v| v.to_str().unwrap().to_owned());
            let mut r = resp("max-age=60", &lang);
            r.headers_mut()
                .insert(header::VARY, "accept-language".parse().unwrap());
            r
        }));
    let with = |lang: &str| {
        get("/v")
            .header(header::ACCEPT_LANGUAGE, lang)
            .body(())
            .unwrap()
    };
    assert_eq!(send(&mut svc, with("en, fr")).await.2, "en, fr");
    assert_eq!(send(&mut svc, with("de")).await.2, "de");
    // The same field, whitespace around the comma aside: the first variant.
    assert_eq!(send(&mut svc, with("en,fr")).await.2, "en, fr");
    assert_eq!(send(&mut svc, with("de")).await.2, "de");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_shared_cache_never_serves_a_private_response_to_another_user() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = cache()
        .layer()
        .layer_service(origin(calls.clone(), |req, _| {
            let user = req.headers()["x-user"].to_str().unwrap().to_owned();
            resp("private, max-age=60", &user)
        }));
    let as_user = |u: &str| get("/me").header("x-user", u).body(()).unwrap();
    assert_eq!(send(&mut svc, as_user("alice")).await.2, "alice");
    assert_eq!(send(&mut svc, as_user("bob")).await.2, "bob");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_private_cache_stores_private_responses() {
    let calls = Arc::new(AtomicUsize::new(0));
    let cache = HttpCache::builder(store()).private().build().unwrap();
    let mut svc = cache.layer().layer_service(origin(calls.clone(), |_, n| {
        resp("private, max-age=60", &format!("v{n}"))
    }));
    send(&mut svc, get("/me").body(()).unwrap()).await;
    assert_eq!(send(&mut svc, get("/me").body(()).unwrap()).await.2, "v1");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn authorization_is_stored_only_when_the_response_allows_it() {
    for (cc, stored) in [
        ("max-age=60", false),
        ("public, max-age=60", true),
        ("s-maxage=60", true),
    ] {
        let calls = Arc::new(AtomicUsize::new(0));
        let mut svc = cache()
            .layer()
            .layer_service(origin(calls.clone(), move |_, n| {
                resp(cc, &format!("v{n}"))
            }));
        let auth = || {
            get("/doc")
                .header(header::AUTHORIZATION, "Bearer x")
                .body(())
                .unwrap()
        };
        send(&mut svc, auth()).await;
        send(&mut svc, auth()).await;
        let expected = if stored { 1 } else { 2 };
        assert_eq!(calls.load(Ordering::SeqCst), expected, "{cc}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_stale_response_is_revalidated_and_a_304_serves_the_stored_body() {
    let calls = Arc::new(AtomicUsize::new(0));
    let cache = cache();
    let mut svc = cache.layer().layer_service(origin(calls.clone(), |req, n| {
        if req
            .headers()
            .get(header::IF_NONE_MATCH)
            .is_some_and(|v| v == "\"t1\"")
        {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            r.headers_mut()
                .insert(header::ETAG, "\"t1\"".parse().unwrap());
            r.headers_mut()
                .insert(header::CACHE_CONTROL, "max-age=100".parse().unwrap());
            r.headers_mut()
                .insert("x-seen", n.to_string().parse().unwrap());
            return r;
        }
        let mut r = resp("max-age=1", "body one");
        r.headers_mut()
            .insert(header::ETAG, "\"t1\"".parse().unwrap());
        r
    }));
    send(&mut svc, get("/r").body(()).unwrap()).await;
    tokio::time::advance(Duration::from_secs(5)).await;
    let (status, headers, body) = send(&mut svc, get("/r").body(()).unwrap()).await;
    assert_eq!((status, body.as_ref()), (StatusCode::OK, &b"body one"[..]));
    assert_eq!(
        headers["x-seen"], "2",
        "the 304's fields update the stored ones"
    );
    assert_eq!(headers[header::CACHE_CONTROL], "max-age=100");
    // Freshened: fresh for 100 s more.
    tokio::time::advance(Duration::from_secs(50)).await;
    send(&mut svc, get("/r").body(()).unwrap()).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let s = cache.snapshot();
    assert_eq!((s.revalidate, s.not_modified, s.hits), (1, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn stale_while_revalidate_serves_stale_and_refreshes_in_the_background() {
    let calls = Arc::new(AtomicUsize::new(0));
    let cache = cache();
    let mut svc = cache.layer().layer_service(origin(calls.clone(), |_, n| {
        resp("max-age=1, stale-while-revalidate=60", &format!("v{n}"))
    }));
    send(&mut svc, get("/s").body(()).unwrap()).await;
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(send(&mut svc, get("/s").body(()).unwrap()).await.2, "v1");
    // Let the background revalidation run.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(send(&mut svc, get("/s").body(()).unwrap()).await.2, "v2");
    // Past the window: not served stale.
    tokio::time::advance(Duration::from_secs(100)).await;
    assert_eq!(send(&mut svc, get("/s").body(()).unwrap()).await.2, "v3");
    assert_eq!(cache.snapshot().stale, 1);
}

#[tokio::test(start_paused = true)]
async fn stale_if_error_serves_stale_on_a_503_within_its_window() {
    let calls = Arc::new(AtomicUsize::new(0));
    let cache = cache();
    let mut svc = cache.layer().layer_service(origin(calls.clone(), |_, n| {
        if n == 1 {
            resp("max-age=1, stale-if-error=60", "good")
        } else {
            let mut r = resp("", "down");
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            r
        }
    }));
    send(&mut svc, get("/e").body(()).unwrap()).await;
    tokio::time::advance(Duration::from_secs(30)).await;
    let (status, _, body) = send(&mut svc, get("/e").body(()).unwrap()).await;
    assert_eq!((status, body.as_ref()), (StatusCode::OK, &b"good"[..]));
    tokio::time::advance(Duration::from_secs(60)).await;
    let (status, _, _) = send(&mut svc, get("/e").body(()).unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn a_successful_post_invalidates_the_target_uri() {
    let calls = Arc::new(AtomicUsize::new(0));
    let cache = cache();
    let mut svc = cache.layer().layer_service(origin(calls.clone(), |_, n| {
        resp("max-age=600", &format!("v{n}"))
    }));
    send(&mut svc, get("/item").body(()).unwrap()).await;
    assert_eq!(send(&mut svc, get("/item").body(()).unwrap()).await.2, "v1");
    let post = get("/item").method(Method::POST).body(()).unwrap();
    send(&mut svc, post).await;
    assert_eq!(send(&mut svc, get("/item").body(()).unwrap()).await.2, "v3");
    assert_eq!(cache.snapshot().invalidations, 1);
}

#[tokio::test(start_paused = true)]
async fn a_body_over_the_cap_is_streamed_whole_and_not_stored() {
    let calls = Arc::new(AtomicUsize::new(0));
    let cache = HttpCache::builder(store())
        .max_body_bytes(4)
        .build()
        .unwrap();
    let mut svc = cache.layer().layer_service(origin(calls.clone(), |_, _| {
        resp("max-age=600", "0123456789")
    }));
    for _ in 0..2 {
        assert_eq!(
            send(&mut svc, get("/big").body(()).unwrap()).await.2,
            "0123456789"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(cache.snapshot().too_large, 2);
}

#[tokio::test(start_paused = true)]
async fn only_if_cached_with_nothing_stored_is_a_504_without_calling_upstream() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = cache()
        .layer()
        .layer_service(origin(calls.clone(), |_, _| resp("max-age=600", "x")));
    let req = get("/o")
        .header(header::CACHE_CONTROL, "only-if-cached")
        .body(())
        .unwrap();
    assert_eq!(send(&mut svc, req).await.0, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn no_store_is_never_stored_and_request_max_age_zero_revalidates() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = cache()
        .layer()
        .layer_service(origin(calls.clone(), |req, n| {
            if req.uri().path() == "/ns" {
                resp("no-store, max-age=600", "x")
            } else {
                resp("max-age=600", &format!("v{n}"))
            }
        }));
    send(&mut svc, get("/ns").body(()).unwrap()).await;
    send(&mut svc, get("/ns").body(()).unwrap()).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    send(&mut svc, get("/m").body(()).unwrap()).await;
    let req = get("/m")
        .header(header::CACHE_CONTROL, "max-age=0")
        .body(())
        .unwrap();
    assert_eq!(send(&mut svc, req).await.2, "v4");
}

#[tokio::test(start_paused = true)]
async fn a_targeted_field_replaces_cache_control_in_a_shared_cache() {
    let calls = Arc::new(AtomicUsize::new(0));
    let cache = HttpCache::builder(store())
        .target_field(buttress_http::header::CDN_CACHE_CONTROL.clone())
        .build()
        .unwrap();
    let mut svc = cache.layer().layer_service(origin(calls.clone(), |_, n| {
        let mut r = resp("no-store", &format!("v{n}"));
        r.headers_mut()
            .insert("cdn-cache-control", "max-age=600".parse().unwrap());
        r
    }));
    send(&mut svc, get("/t").body(()).unwrap()).await;
    assert_eq!(send(&mut svc, get("/t").body(()).unwrap()).await.2, "v1");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn bad_configuration_names_the_field() {
    let field = |b: buttress_http::HttpCacheBuilder<Store>| b.build().unwrap_err().field();
    assert_eq!(
        field(HttpCache::builder(store()).max_body_bytes(0)),
        "max_body_bytes"
    );
    assert_eq!(
        field(HttpCache::builder(store()).max_variants(0)),
        "max_variants"
    );
    assert_eq!(field(HttpCache::builder(store()).scheme("ftp")), "scheme");
    assert_eq!(
        field(
            HttpCache::builder(store())
                .private()
                .target_field(buttress_http::header::CDN_CACHE_CONTROL.clone())
        ),
        "target_field"
    );
}

#[tokio::test(start_paused = true)]
async fn a_200_with_last_modified_gets_ten_percent_heuristic_freshness() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = cache().layer().layer_service(origin(calls.clone(), |_, n| {
        let now = std::time::SystemTime::now();
        let mut r = resp("", &format!("v{n}"));
        r.headers_mut()
            .insert(header::DATE, buttress_http::header::http_date(now));
        r.headers_mut().insert(
            header::LAST_MODIFIED,
            buttress_http::header::http_date(now - Duration::from_secs(1000)),
        );
        r
    }));
    send(&mut svc, get("/h").body(()).unwrap()).await;
    // 10 % of 1000 s: fresh for about 100 s.
    tokio::time::advance(Duration::from_secs(90)).await;
    assert_eq!(send(&mut svc, get("/h").body(()).unwrap()).await.2, "v1");
    tokio::time::advance(Duration::from_secs(20)).await;
    assert_eq!(send(&mut svc, get("/h").body(()).unwrap()).await.2, "v2");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// Whatever bytes the request and the response fields hold, the layer
    /// answers (and never panics).
    #[test]
    fn arbitrary_header_bytes_never_panic(
        values in proptest::collection::vec(proptest::collection::vec(0x20u8..0x7f, 0..40), 8),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        rt.block_on(async move {
            let names = [
                header::CACHE_CONTROL, header::VARY, header::DATE, header::EXPIRES,
                header::LAST_MODIFIED, header::ETAG, header::AGE, header::CONTENT_LOCATION,
            ];
            let mut response_headers = HeaderMap::new();
            for (name, v) in names.iter().zip(&values) {
                if let Ok(v) = http::HeaderValue::from_bytes(v) {
                    response_headers.insert(name.clone(), v);
                }
            }
            let calls = Arc::new(AtomicUsize::new(0));
            let rh = response_headers.clone();
            let mut svc = cache().layer().layer_service(origin(calls, move |_, _| {
                let mut r = resp("", "x");
                *r.headers_mut() = rh.clone();
                r
            }));
            for method in [Method::GET, Method::GET, Method::HEAD, Method::POST] {
                let mut req = get("/p").method(method).body(()).unwrap();
                for (name, v) in names.iter().zip(values.iter().rev()) {
                    if let Ok(v) = http::HeaderValue::from_bytes(v) {
                        req.headers_mut().insert(name.clone(), v);
                    }
                }
                let _ = send(&mut svc, req).await;
                tokio::time::advance(Duration::from_secs(30)).await;
            }
        });
    }
}

#[tokio::test(start_paused = true)]
async fn forwarding_fields_never_change_what_another_request_is_served() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = cache()
        .layer()
        .layer_service(origin(calls.clone(), |req, _| {
            let host = req
                .headers()
                .get("x-forwarded-host")
                .map_or("origin".to_owned(), |v| v.to_str().unwrap().to_owned());
            resp("public, max-age=600", &host)
        }));
    // The poisoned response is stored under the real key, for no other one.
    let poisoned = get("/p")
        .header("x-forwarded-host", "evil.example")
        .body(())
        .unwrap();
    send(&mut svc, poisoned).await;
    let other = Request::get("/p")
        .header(header::HOST, "other.example")
        .body(())
        .unwrap();
    assert_eq!(send(&mut svc, other).await.2, "origin");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_shared_cache_stores_set_cookie_only_when_told() {
    for (allow, expected_calls) in [(false, 2), (true, 1)] {
        let calls = Arc::new(AtomicUsize::new(0));
        let cache = HttpCache::builder(store())
            .store_set_cookie(allow)
            .build()
            .unwrap();
        let mut svc = cache.layer().layer_service(origin(calls.clone(), |_, _| {
            let mut r = resp("public, max-age=600", "x");
            r.headers_mut()
                .insert(header::SET_COOKIE, "session=1".parse().unwrap());
            r
        }));
        send(&mut svc, get("/c").body(()).unwrap()).await;
        send(&mut svc, get("/c").body(()).unwrap()).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            expected_calls,
            "allow={allow}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_stored_get_answers_head_without_a_body() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = cache()
        .layer()
        .layer_service(origin(calls.clone(), |_, _| resp("max-age=600", "body")));
    send(&mut svc, get("/g").body(()).unwrap()).await;
    let (status, _, body) = send(&mut svc, get("/g").method(Method::HEAD).body(()).unwrap()).await;
    assert_eq!((status, body.len()), (StatusCode::OK, 0));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn services_and_futures_are_send_and_sync_where_users_need_them() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<HttpCache<Store>>();
    send_sync::<buttress_http::HttpCacheLayer<Store>>();
    send::<buttress_http::future::HttpCacheFuture<Full<Bytes>, Infallible>>();
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_for_one_key_make_one_upstream_request() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let cache = cache();
    let svc = cache
        .layer()
        .layer_service(service_fn(move |_req: Request<()>| {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok::<_, Infallible>(resp("max-age=60", &format!("v{n}")))
            }
        }));
    let (mut a, mut b, mut c) = (svc.clone(), svc.clone(), svc.clone());
    let (ra, rb, rc) = tokio::join!(
        send(&mut a, get("/k").body(()).unwrap()),
        send(&mut b, get("/k").body(()).unwrap()),
        send(&mut c, get("/k").body(()).unwrap()),
    );
    assert_eq!((ra.2, rb.2, rc.2), ("v1".into(), "v1".into(), "v1".into()));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.snapshot().coalesced, 2);
}

#[tokio::test(start_paused = true)]
async fn waiters_for_an_uncacheable_miss_go_upstream_themselves() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let svc = cache()
        .layer()
        .layer_service(service_fn(move |_req: Request<()>| {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok::<_, Infallible>(resp("private", &format!("v{n}")))
            }
        }));
    let (mut a, mut b) = (svc.clone(), svc.clone());
    let (ra, rb) = tokio::join!(
        send(&mut a, get("/u").body(()).unwrap()),
        send(&mut b, get("/u").body(()).unwrap()),
    );
    assert_ne!(ra.2, rb.2, "a private answer is never shared");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
