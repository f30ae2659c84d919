//! The layer in an axum `Router`: framework-agnostic in practice, with
//! axum's own body type, per-router and per-route policies.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use buttress_http::{CacheDirectives, CacheHeaders, CachePolicy};
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

#[tokio::test]
async fn an_axum_router_gets_policies_etags_and_304s() {
    let headers = CacheHeaders::builder()
        .policy(
            CachePolicy::builder()
                .cache_control(
                    CacheDirectives::new()
                        .public()
                        .max_age(Duration::from_secs(60)),
                )
                .build()
                .unwrap(),
        )
        .route(
            "/me",
            CachePolicy::builder()
                .cache_control(CacheDirectives::new().private().no_cache())
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let app = Router::new()
        .route("/users", get(|| async { "[\"ada\",\"grace\"]" }))
        .route("/me", get(|| async { "{\"name\":\"ada\"}" }))
        .layer(headers.layer());

    let response = app
        .clone()
        .oneshot(Request::get("/users").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CACHE_CONTROL],
        "public, max-age=60"
    );
    let etag = response.headers()[header::ETAG].clone();
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "[\"ada\",\"grace\"]"
    );

    let again = Request::get("/users")
        .header(header::IF_NONE_MATCH, etag)
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(again).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert!(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty()
    );

    let response = app
        .oneshot(Request::get("/me").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(
        response.headers()[header::CACHE_CONTROL],
        "private, no-cache"
    );
    assert_eq!(headers.snapshot().not_modified, 1);
}
