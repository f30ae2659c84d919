//! Conditional requests through the layer (RFC 9110 §13): 304 with the
//! fields a 304 must carry (§15.4.5), 412 before the handler where a
//! validator lookup knows the current representation (§13.2.1).

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buttress_http::header::ETag;
use buttress_http::{CacheDirectives, CacheHeaders, CachePolicy, Lookup, Validators};
use common::{call, field, get, handler, layered, ok, request};
use http::{Method, StatusCode};

const MODIFIED: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
const EARLIER: &str = "Sat, 05 Nov 1994 08:49:37 GMT";

fn policy() -> CachePolicy {
    CachePolicy::builder()
        .cache_control(
            CacheDirectives::new()
                .private()
                .max_age(Duration::from_secs(60)),
        )
        .vary("Accept-Encoding")
        .expires(true)
        .build()
        .unwrap()
}

#[tokio::test]
async fn rfc9110_15_4_5_a_304_carries_the_validator_and_caching_fields_only() {
    let h = CacheHeaders::builder().policy(policy()).build().unwrap();
    let (inner, calls) = handler(|_| {
        ok(
            "{\"id\":1}",
            &[
                ("content-type", "application/json"),
                ("content-length", "8"),
                ("last-modified", MODIFIED),
                ("x-request-id", "7"),
            ],
        )
    });
    let svc = layered(&h, inner);
    let (first, body) = call(&svc, get("/users/1", &[])).await;
    assert_eq!(
        (first.status, body.unwrap()),
        (StatusCode::OK, "{\"id\":1}".into())
    );
    let etag = field(&first, "etag").unwrap();

    let (parts, body) = call(&svc, get("/users/1", &[("if-none-match", &etag)])).await;
    assert_eq!(parts.status, StatusCode::NOT_MODIFIED);
    assert_eq!(body.unwrap(), "", "no content");
    assert_eq!(field(&parts, "etag"), Some(etag));
    assert_eq!(
        field(&parts, "cache-control").as_deref(),
        Some("private, max-age=60")
    );
    assert_eq!(field(&parts, "vary").as_deref(), Some("accept-encoding"));
    assert!(field(&parts, "expires").is_some());
    assert_eq!(
        field(&parts, "x-request-id").as_deref(),
        Some("7"),
        "not representation metadata: kept"
    );
    for gone in ["content-type", "content-length", "last-modified"] {
        assert_eq!(field(&parts, gone), None, "{gone}");
    }
    // No lookup: the handler ran both times.
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(h.snapshot().not_modified, 1);
}

#[tokio::test]
async fn rfc9110_13_1_3_if_modified_since_against_the_handlers_last_modified() {
    let h = CacheHeaders::builder()
        .weak_etags(false)
        .etag_max_bytes(0)
        .build()
        .unwrap();
    let (inner, _) = handler(|_| ok("x", &[("last-modified", MODIFIED)]));
    let svc = layered(&h, inner);
    let (parts, _) = call(&svc, get("/", &[("if-modified-since", MODIFIED)])).await;
    assert_eq!(parts.status, StatusCode::NOT_MODIFIED);
    // Without an ETag, Last-Modified stays on the 304 (§15.4.5).
    assert_eq!(field(&parts, "last-modified").as_deref(), Some(MODIFIED));
    let (parts, body) = call(&svc, get("/", &[("if-modified-since", EARLIER)])).await;
    assert_eq!((parts.status, body.unwrap()), (StatusCode::OK, "x".into()));
}

#[tokio::test]
async fn rfc9110_13_1_preconditions_are_ignored_on_error_responses_and_when_off() {
    let h = CacheHeaders::builder().build().unwrap();
    let (inner, _) = handler(|_| {
        let mut r = ok("x", &[("etag", "\"v1\"")]);
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    });
    let (parts, _) = call(
        &layered(&h, inner),
        get("/", &[("if-none-match", "\"v1\"")]),
    )
    .await;
    assert_eq!(parts.status, StatusCode::INTERNAL_SERVER_ERROR);

    let off = CacheHeaders::builder().conditional(false).build().unwrap();
    let (inner, _) = handler(|_| ok("x", &[("etag", "\"v1\"")]));
    let (parts, _) = call(
        &layered(&off, inner),
        get("/", &[("if-none-match", "\"v1\"")]),
    )
    .await;
    assert_eq!(parts.status, StatusCode::OK);
}

#[tokio::test]
async fn rfc9110_13_1_1_if_match_on_get_fails_after_the_handler_without_a_lookup() {
    let h = CacheHeaders::builder().build().unwrap();
    let (inner, _) = handler(|_| ok("x", &[("etag", "\"v2\"")]));
    let (parts, body) = call(&layered(&h, inner), get("/", &[("if-match", "\"v1\"")])).await;
    assert_eq!(
        (parts.status, body.unwrap()),
        (StatusCode::PRECONDITION_FAILED, "".into())
    );
    assert_eq!(h.snapshot().precondition_failed, 1);
}

#[tokio::test]
async fn without_a_lookup_unsafe_methods_are_left_to_the_handler() {
    // The handler has already acted by the time its response is seen: the
    // layer must not answer 412 for a PUT it let through.
    let h = CacheHeaders::builder().build().unwrap();
    let (inner, calls) = handler(|_| ok("stored", &[("etag", "\"v2\"")]));
    let (parts, _) = call(
        &layered(&h, inner),
        request(Method::PUT, "/doc", &[("if-match", "\"v1\"")]),
    )
    .await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A document store: the lookup reads the version the handler writes.
fn versioned() -> (CacheHeaders, Arc<Mutex<Option<u32>>>) {
    let version = Arc::new(Mutex::new(Some(1u32)));
    let read = version.clone();
    let h = CacheHeaders::builder()
        .policy(policy())
        .validators(move |parts: &http::request::Parts| {
            if parts.uri.path() != "/doc" {
                return Lookup::Unknown;
            }
            match *read.lock().unwrap() {
                Some(v) => Lookup::Present(
                    Validators::new().with_etag(ETag::strong(&format!("v{v}")).unwrap()),
                ),
                None => Lookup::Absent,
            }
        })
        .build()
        .unwrap();
    (h, version)
}

#[tokio::test]
async fn rfc9110_13_2_1_optimistic_concurrency_412_before_the_handler_runs() {
    let (h, version) = versioned();
    let write = version.clone();
    let (inner, calls) = handler(move |req| {
        let mut v = write.lock().unwrap();
        if req.method() == Method::PUT {
            *v = Some(v.unwrap_or(0) + 1);
        }
        ok("doc", &[])
    });
    let svc = layered(&h, inner);
    // Two writers read v1; the first PUT wins, the second is refused
    // without running.
    let (parts, _) = call(
        &svc,
        request(Method::PUT, "/doc", &[("if-match", "\"v1\"")]),
    )
    .await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(*version.lock().unwrap(), Some(2));
    let (parts, body) = call(
        &svc,
        request(Method::PUT, "/doc", &[("if-match", "\"v1\"")]),
    )
    .await;
    assert_eq!(
        (parts.status, body.unwrap()),
        (StatusCode::PRECONDITION_FAILED, "".into())
    );
    assert_eq!(
        field(&parts, "cache-control"),
        None,
        "a 412 gets no caching fields"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the refused PUT never reached the handler"
    );
    assert_eq!(*version.lock().unwrap(), Some(2));
    // If-Unmodified-Since is not consulted when If-Match is present
    // (§13.2.2 step 1), and a weak tag never satisfies If-Match.
    let (parts, _) = call(
        &svc,
        request(Method::PUT, "/doc", &[("if-match", "W/\"v2\"")]),
    )
    .await;
    assert_eq!(parts.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(h.snapshot().precondition_failed, 2);
}

#[tokio::test]
async fn rfc9110_13_1_2_create_only_if_absent() {
    let (h, version) = versioned();
    *version.lock().unwrap() = None;
    let (inner, calls) = handler(|_| {
        let mut r = ok("", &[]);
        *r.status_mut() = StatusCode::CREATED;
        r
    });
    let svc = layered(&h, inner);
    let (parts, _) = call(
        &svc,
        request(Method::PUT, "/doc", &[("if-none-match", "*")]),
    )
    .await;
    assert_eq!(parts.status, StatusCode::CREATED);
    *version.lock().unwrap() = Some(1);
    let (parts, _) = call(
        &svc,
        request(Method::PUT, "/doc", &[("if-none-match", "*")]),
    )
    .await;
    assert_eq!(parts.status, StatusCode::PRECONDITION_FAILED);
    // If-Match: * on a missing document fails too.
    *version.lock().unwrap() = None;
    let (parts, _) = call(&svc, request(Method::DELETE, "/doc", &[("if-match", "*")])).await;
    assert_eq!(parts.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_304_from_the_lookup_skips_the_handler_and_carries_the_policy() {
    let (h, _) = versioned();
    let (inner, calls) = handler(|_| ok("doc", &[]));
    let svc = layered(&h, inner);
    let (parts, body) = call(&svc, get("/doc", &[("if-none-match", "W/\"v1\"")])).await;
    assert_eq!(
        (parts.status, body.unwrap()),
        (StatusCode::NOT_MODIFIED, "".into())
    );
    assert_eq!(field(&parts, "etag").as_deref(), Some("\"v1\""));
    assert_eq!(
        field(&parts, "cache-control").as_deref(),
        Some("private, max-age=60")
    );
    assert_eq!(field(&parts, "vary").as_deref(), Some("accept-encoding"));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // Without a precondition the lookup is not consulted and the handler runs.
    let (parts, _) = call(&svc, get("/doc", &[])).await;
    assert_eq!(parts.status, StatusCode::OK);
    // Lookup::Unknown: the handler runs, the response is judged after.
    let (parts, _) = call(&svc, get("/other", &[("if-none-match", "\"nope\"")])).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
