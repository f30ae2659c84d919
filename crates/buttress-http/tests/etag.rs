//! ETags the layer computes (RFC 9110 §8.8.3): strong from a buffered
//! body up to the cap, weak or none for larger and streamed bodies.

mod common;

use buttress_http::CacheHeaders;
use common::{BodyFailed, Chunks, Fields, call, field, get, handler, layered, ok, request};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

/// XXH3-128 of "hello world" (checked against the reference
/// implementation): what every instance tags that body with.
const HELLO_WORLD: &str = "\"df8d09e93f874900a99b8775cc15b6c7\"";

fn handle(cap: u64) -> CacheHeaders {
    CacheHeaders::builder().etag_max_bytes(cap).build().unwrap()
}

#[tokio::test]
async fn a_small_body_gets_a_strong_tag_from_its_bytes_and_passes_through() {
    let h = handle(1024);
    // One chunk, and the same bytes in three chunks: one tag.
    for chunks in [&["hello world"][..], &["hello", " ", "world"]] {
        let (inner, _) = handler(move |_| Response::new(Chunks::exact(chunks)));
        let (parts, body) = call(&layered(&h, inner), get("/", &[])).await;
        assert_eq!(field(&parts, "etag").as_deref(), Some(HELLO_WORLD));
        assert_eq!(body.unwrap(), "hello world");
    }
    let (inner, _) = handler(|_| ok("hello world!", &[]));
    let (parts, _) = call(&layered(&h, inner), get("/", &[])).await;
    assert_ne!(field(&parts, "etag").as_deref(), Some(HELLO_WORLD));
    assert_eq!(h.snapshot().etags_strong, 3);
}

#[tokio::test]
async fn bodies_over_the_cap_or_streamed_are_not_buffered() {
    let h = CacheHeaders::builder()
        .etag_max_bytes(10)
        .weak_etags(false)
        .build()
        .unwrap();
    let (inner, _) = handler(|_| ok("hello world", &[]));
    let (parts, body) = call(&layered(&h, inner), get("/", &[])).await;
    assert_eq!(
        (field(&parts, "etag"), body.unwrap()),
        (None, "hello world".into())
    );
    let (inner, _) = handler(|_| Response::new(Chunks::streamed(&["hi"])));
    let (parts, _) = call(&layered(&h, inner), get("/", &[])).await;
    assert_eq!(field(&parts, "etag"), None);
    assert_eq!(
        (h.snapshot().etags_strong, h.snapshot().etags_skipped),
        (0, 2)
    );
    // A cap of 10 still tags a body of 10.
    let (inner, _) = handler(|_| ok("0123456789", &[]));
    let (parts, _) = call(&layered(&h, inner), get("/", &[])).await;
    assert!(field(&parts, "etag").is_some());
}

#[tokio::test]
async fn a_streamed_body_with_last_modified_and_length_gets_a_weak_tag() {
    let h = handle(1024);
    let (inner, _) = handler(|_| {
        let mut r = Response::new(Chunks::streamed(&["hello"]));
        r.headers_mut().insert(
            "last-modified",
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        r.headers_mut()
            .insert("content-length", HeaderValue::from_static("5"));
        r
    });
    let (parts, body) = call(&layered(&h, inner), get("/", &[])).await;
    // 784111777 = 0x2ebc98a1 seconds, 5 bytes.
    assert_eq!(field(&parts, "etag").as_deref(), Some("W/\"2ebc98a1-5\""));
    // Last-Modified passes through.
    assert_eq!(
        field(&parts, "last-modified").as_deref(),
        Some("Sun, 06 Nov 1994 08:49:37 GMT")
    );
    assert_eq!(body.unwrap(), "hello");
    assert_eq!(h.snapshot().etags_weak, 1);
}

#[tokio::test]
async fn only_whole_200_answers_to_get_and_head_without_a_tag_are_tagged() {
    let h = handle(1024);
    let rows: &[(&str, Method, StatusCode, Fields, Option<&str>)] = &[
        (
            "the handler's own tag is kept",
            Method::GET,
            StatusCode::OK,
            &[("etag", "\"mine\"")],
            Some("\"mine\""),
        ),
        (
            "POST answers are not tagged",
            Method::POST,
            StatusCode::OK,
            &[],
            None,
        ),
        (
            "201 is not tagged",
            Method::GET,
            StatusCode::CREATED,
            &[],
            None,
        ),
        (
            "206 partial content is not tagged",
            Method::GET,
            StatusCode::PARTIAL_CONTENT,
            &[("content-range", "bytes 0-10/20")],
            None,
        ),
        (
            "HEAD with the content is tagged as GET",
            Method::HEAD,
            StatusCode::OK,
            &[],
            Some(HELLO_WORLD),
        ),
        // HEAD without content but with the GET's length: not the empty body's tag.
        (
            "HEAD whose length disagrees",
            Method::HEAD,
            StatusCode::OK,
            &[("content-length", "999")],
            None,
        ),
        (
            "a matching Content-Length is fine",
            Method::GET,
            StatusCode::OK,
            &[("content-length", "11")],
            Some(HELLO_WORLD),
        ),
    ];
    for (what, method, status, fields, want) in rows {
        let (status, fields) = (*status, *fields);
        let (inner, _) = handler(move |_| {
            let mut r = ok("hello world", fields);
            *r.status_mut() = status;
            r
        });
        let (parts, _) = call(&layered(&h, inner), request(method.clone(), "/", &[])).await;
        assert_eq!(field(&parts, "etag").as_deref(), *want, "{what}");
    }
}

#[tokio::test]
async fn trailers_survive_buffering_and_a_failing_body_still_fails() {
    let h = handle(1024);
    let (inner, _) = handler(|_| {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        Response::new(Chunks {
            trailers: Some(trailers),
            ..Chunks::exact(&["abc"])
        })
    });
    let response = tower::ServiceExt::oneshot(layered(&h, inner), get("/", &[]))
        .await
        .unwrap();
    let collected = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap();
    assert_eq!(
        collected.trailers().map(|t| t["grpc-status"].clone()),
        Some(HeaderValue::from_static("0"))
    );
    assert_eq!(collected.to_bytes(), "abc");

    let (inner, _) = handler(|_| {
        Response::new(Chunks {
            fail: true,
            ..Chunks::exact(&["abc"])
        })
    });
    let (parts, body) = call(&layered(&h, inner), get("/", &[])).await;
    assert!(matches!(body, Err(BodyFailed)));
    assert_eq!(field(&parts, "etag"), None, "a failed body is not tagged");
}
