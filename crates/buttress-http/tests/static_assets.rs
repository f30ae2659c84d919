//! The static-asset recipe: tower-http's `ServeDir` (with precompressed
//! gzip variants) behind `CacheHeadersLayer`: content-hashed names are
//! `immutable` with a year's max-age (RFC 8246), the rest revalidate
//! (`no-cache`, RFC 9111 §5.2.2.4) against ServeDir's tag per variant;
//! a `304` (the layer's or ServeDir's) carries the policy too.

use std::path::PathBuf;
use std::time::Duration;

use buttress_http::{CacheDirectives, CacheHeaders, CachePolicy};
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::services::ServeDir;

const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// Whether the file name carries a content hash: a dot-separated part of
/// at least 8 hex digits (`app.3f2a91c7.js`).
fn content_hashed(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.split('.')
        .any(|part| part.len() >= 8 && part.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A directory of assets, unique to this test run.
fn assets() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("buttress-http-assets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("app.3f2a91c7.js"),
        "console.log('hello, hashed world');\n".repeat(20),
    )
    .unwrap();
    std::fs::write(
        dir.join("index.html"),
        "<!doctype html><title>hi</title>\n".repeat(20),
    )
    .unwrap();
    // A precompressed variant: ServeDir serves it for Accept-Encoding: gzip.
    // (Its bytes need not be real gzip for the headers under test.)
    std::fs::write(dir.join("index.html.gz"), "not really gzip, but shorter").unwrap();
    dir
}

#[tokio::test]
async fn hashed_assets_are_immutable_and_the_rest_revalidate_per_variant() {
    let dir = assets();
    let immutable = CachePolicy::builder()
        .cache_control(CacheDirectives::new().public().max_age(YEAR).immutable())
        .build()
        .unwrap();
    let revalidate = CachePolicy::builder()
        .cache_control(CacheDirectives::new().public().no_cache())
        .vary("Accept-Encoding")
        .build()
        .unwrap();
    let headers = CacheHeaders::builder()
        .policy(revalidate)
        .policy_fn(move |request| content_hashed(request.uri.path()).then(|| immutable.clone()))
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(headers.layer())
        .service(ServeDir::new(&dir).precompressed_gzip());
    let send = |path: &str, fields: &[(&str, &str)]| {
        let mut b = Request::get(path);
        for (k, v) in fields {
            b = b.header(*k, *v);
        }
        let request = b
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let svc = svc.clone();
        async move {
            let (parts, body) = svc.oneshot(request).await.unwrap().into_parts();
            (parts, body.collect().await.unwrap().to_bytes())
        }
    };

    let (js, body) = send("/app.3f2a91c7.js", &[]).await;
    assert_eq!(js.status, StatusCode::OK);
    assert_eq!(
        js.headers[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    assert!(body.starts_with(b"console.log"));

    let (html, _) = send("/index.html", &[]).await;
    let (gz, gz_body) = send("/index.html", &[("accept-encoding", "gzip")]).await;
    assert_eq!(html.headers[header::CACHE_CONTROL], "public, no-cache");
    assert_eq!(gz.headers[header::CONTENT_ENCODING], "gzip");
    assert_eq!(gz_body, "not really gzip, but shorter");
    assert!(
        gz.headers
            .get_all(header::VARY)
            .iter()
            .any(|v| v.to_str().unwrap().eq_ignore_ascii_case("accept-encoding"))
    );
    // ServeDir tags each file itself (modification time and length); the
    // layer keeps the handler's tag, so each variant has its own.
    let (html_tag, gz_tag) = (
        html.headers[header::ETAG].to_str().unwrap(),
        gz.headers[header::ETAG].to_str().unwrap(),
    );
    assert_ne!(html_tag, gz_tag, "one tag per variant");

    // Revalidation: each variant's tag validates that variant only.
    let (fresh, body) = send("/index.html", &[("if-none-match", html_tag)]).await;
    assert_eq!((fresh.status, body.len()), (StatusCode::NOT_MODIFIED, 0));
    assert_eq!(fresh.headers[header::CACHE_CONTROL], "public, no-cache");
    let (other, _) = send(
        "/index.html",
        &[("accept-encoding", "gzip"), ("if-none-match", html_tag)],
    )
    .await;
    assert_eq!(other.status, StatusCode::OK);

    // A missing file: ServeDir's 404 gets no caching fields.
    let (missing, _) = send("/nope.3f2a91c7.js", &[]).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.headers.get(header::CACHE_CONTROL).is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn content_hashed_names() {
    assert!(content_hashed("/static/app.3f2a91c7.js"));
    assert!(!content_hashed("/static/app.js"));
    assert!(
        !content_hashed("/3f2a91c7/app.js"),
        "only the file name counts"
    );
}
