//! Composed with tower-http's `CompressionLayer` (this layer outside it,
//! `hash_unbounded` on), each encoding gets its own strong ETag
//! (RFC 9110 §8.8.3: a strong validator changes with the bytes) and
//! `Vary: accept-encoding`, and revalidation works per encoding.

mod common;

use buttress_http::CacheHeaders;
use common::{Chunks, call, field, get, handler, layered, ok};
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::compression::CompressionLayer;

const JSON: &str = r#"{"users":[{"id":1,"name":"ada"},{"id":2,"name":"grace"},{"id":3,"name":"barbara"},{"id":4,"name":"frances"}]}"#;

#[tokio::test]
async fn each_encoding_gets_its_own_tag_and_revalidates_on_its_own() {
    let h = CacheHeaders::builder()
        .hash_unbounded(true)
        .build()
        .unwrap();
    let (inner, _) = handler(|_| ok(JSON, &[("content-type", "application/json")]));
    let svc = ServiceBuilder::new()
        .layer(h.layer())
        .layer(CompressionLayer::new().gzip(true))
        .service(inner);
    let send = |fields: &[(&str, &str)]| {
        let mut b = Request::get("/users");
        for (k, v) in fields {
            b = b.header(*k, *v);
        }
        let svc = svc.clone();
        let request = b.body(()).unwrap();
        async move {
            let response = svc.oneshot(request).await.unwrap();
            let (parts, body) = response.into_parts();
            (parts, body.collect().await.unwrap().to_bytes())
        }
    };

    let (gzip, gzip_body) = send(&[("accept-encoding", "gzip")]).await;
    let (plain, plain_body) = send(&[]).await;
    assert_eq!(gzip.headers[header::CONTENT_ENCODING], "gzip");
    assert_eq!(plain_body, JSON);
    assert_ne!(gzip_body, plain_body);
    let (gzip_tag, plain_tag) = (
        gzip.headers[header::ETAG].clone(),
        plain.headers[header::ETAG].clone(),
    );
    assert_ne!(gzip_tag, plain_tag, "one tag per encoding");
    assert!(
        gzip.headers
            .get_all(header::VARY)
            .iter()
            .any(|v| v.to_str().unwrap().eq_ignore_ascii_case("accept-encoding"))
    );
    // The compressor's output is the same every time, so is the tag.
    let (again, _) = send(&[("accept-encoding", "gzip")]).await;
    assert_eq!(again.headers[header::ETAG], gzip_tag);

    let gzip_tag = gzip_tag.to_str().unwrap().to_owned();
    let (revalidated, body) =
        send(&[("accept-encoding", "gzip"), ("if-none-match", &gzip_tag)]).await;
    assert_eq!(
        (revalidated.status, body.len()),
        (StatusCode::NOT_MODIFIED, 0)
    );
    // The gzip tag does not validate the identity representation.
    let (other, body) = send(&[("if-none-match", &gzip_tag)]).await;
    assert_eq!((other.status, body), (StatusCode::OK, JSON.into()));
}

#[tokio::test]
async fn an_unbounded_body_past_the_cap_is_sent_whole_and_untagged() {
    let h = CacheHeaders::builder()
        .hash_unbounded(true)
        .etag_max_bytes(8)
        .build()
        .unwrap();
    let (inner, _) =
        handler(|_| http::Response::new(Chunks::streamed(&["hello", " wor", "ld", "!"])));
    let (parts, body) = call(&layered(&h, inner), get("/", &[])).await;
    assert_eq!(
        (field(&parts, "etag"), body.unwrap()),
        (None, "hello world!".into())
    );
    assert_eq!(
        (h.snapshot().etags_strong, h.snapshot().etags_skipped),
        (0, 1)
    );
    // Within the cap it is tagged.
    let (inner, _) = handler(|_| http::Response::new(Chunks::streamed(&["hello"])));
    let (parts, _) = call(&layered(&h, inner), get("/", &[])).await;
    assert!(field(&parts, "etag").is_some());
}
