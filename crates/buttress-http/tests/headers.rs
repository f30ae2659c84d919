//! `CacheHeadersLayer`'s policies: which fields a response gets, and that
//! a handler's own fields are kept (RFC 9111 §5.2, RFC 9213, RFC 9110 §12.5.5).

mod common;

use std::time::{Duration, SystemTime};

use buttress_http::header::parse_http_date;
use buttress_http::{CacheDirectives, CacheHeaders, CachePolicy};
use common::{Fields, call, field, get, handler, layered, ok};
use http::StatusCode;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const YEAR: Duration = Duration::from_secs(31_536_000);

fn cc(d: CacheDirectives) -> CachePolicy {
    CachePolicy::builder().cache_control(d).build().unwrap()
}

#[tokio::test]
async fn routes_closures_and_the_default_choose_the_policy() {
    let handle = CacheHeaders::builder()
        .policy(cc(CacheDirectives::new().public().max_age(MINUTE)))
        .route(
            "/assets",
            cc(CacheDirectives::new().public().max_age(YEAR).immutable()),
        )
        .route("/assets/live", cc(CacheDirectives::new().no_cache()))
        .route("/private", cc(CacheDirectives::new().private().no_store()))
        .policy_fn(|parts| {
            (parts.headers.contains_key("authorization"))
                .then(|| cc(CacheDirectives::new().private().max_age(MINUTE)))
        })
        .etag_max_bytes(0)
        .build()
        .unwrap();
    let (inner, _) = handler(|_| ok("body", &[]));
    let svc = layered(&handle, inner);
    let rows: &[(&str, Fields, &str)] = &[
        ("/", &[], "public, max-age=60"),
        (
            "/assets/app.3f2a.js",
            &[],
            "public, max-age=31536000, immutable",
        ),
        ("/assetsx", &[], "public, max-age=60"),
        ("/assets/live/feed", &[], "no-cache"),
        ("/private", &[], "private, no-store"),
        (
            "/assets/app.js",
            &[("authorization", "Bearer x")],
            "private, max-age=60",
        ),
    ];
    for (path, fields, want) in rows {
        let (parts, body) = call(&svc, get(path, fields)).await;
        assert_eq!(
            field(&parts, "cache-control").as_deref(),
            Some(*want),
            "{path}"
        );
        assert_eq!(body.unwrap(), "body");
    }
}

#[tokio::test]
async fn without_a_policy_no_caching_field_is_set() {
    let handle = CacheHeaders::builder().etag_max_bytes(0).build().unwrap();
    let (inner, _) = handler(|_| ok("body", &[]));
    let (parts, _) = call(&layered(&handle, inner), get("/", &[])).await;
    assert_eq!(parts.headers.len(), 0, "{:?}", parts.headers);
}

#[tokio::test]
async fn a_field_the_handler_set_is_kept_unless_the_policy_overwrites() {
    let policy = |overwrite| {
        CachePolicy::builder()
            .cache_control(CacheDirectives::new().public().max_age(HOUR))
            .cdn_cache_control(CacheDirectives::new().max_age(HOUR))
            .expires(true)
            .overwrite(overwrite)
            .build()
            .unwrap()
    };
    let (inner, _) = handler(|_| {
        ok(
            "x",
            &[
                ("cache-control", "no-store"),
                ("cdn-cache-control", "no-store"),
            ],
        )
    });
    let keep = CacheHeaders::builder()
        .policy(policy(false))
        .build()
        .unwrap();
    let (parts, _) = call(&layered(&keep, inner.clone()), get("/", &[])).await;
    assert_eq!(field(&parts, "cache-control").as_deref(), Some("no-store"));
    assert_eq!(
        field(&parts, "cdn-cache-control").as_deref(),
        Some("no-store")
    );
    // Expires goes only with the policy's own Cache-Control: it would
    // contradict the handler's.
    assert_eq!(field(&parts, "expires"), None);

    let overwrite = CacheHeaders::builder()
        .policy(policy(true))
        .build()
        .unwrap();
    let (parts, _) = call(&layered(&overwrite, inner), get("/", &[])).await;
    assert_eq!(
        field(&parts, "cache-control").as_deref(),
        Some("public, max-age=3600")
    );
    assert_eq!(
        field(&parts, "cdn-cache-control").as_deref(),
        Some("max-age=3600")
    );
    assert!(field(&parts, "expires").is_some());
}

#[tokio::test]
async fn rfc9213_targeted_fields_are_set_beside_cache_control() {
    let policy = CachePolicy::builder()
        .cache_control(
            CacheDirectives::new()
                .public()
                .max_age(MINUTE)
                .must_revalidate(),
        )
        .cdn_cache_control(
            CacheDirectives::new()
                .max_age(Duration::from_secs(86_400))
                .stale_while_revalidate(MINUTE)
                .stale_if_error(HOUR),
        )
        .targeted("Surrogate-Control", CacheDirectives::new().max_age(HOUR))
        .build()
        .unwrap();
    let handle = CacheHeaders::builder().policy(policy).build().unwrap();
    let (inner, _) = handler(|_| ok("x", &[]));
    let (parts, _) = call(&layered(&handle, inner), get("/", &[])).await;
    assert_eq!(
        field(&parts, "cache-control").as_deref(),
        Some("public, max-age=60, must-revalidate")
    );
    assert_eq!(
        field(&parts, "cdn-cache-control").as_deref(),
        Some("max-age=86400, stale-while-revalidate=60, stale-if-error=3600")
    );
    assert_eq!(
        field(&parts, "surrogate-control").as_deref(),
        Some("max-age=3600")
    );
}

#[tokio::test]
async fn rfc9110_12_5_5_vary_members_are_merged_never_duplicated() {
    let policy = CachePolicy::builder()
        .vary("Accept-Encoding")
        .vary("Accept-Language")
        .build()
        .unwrap();
    let handle = CacheHeaders::builder()
        .policy(policy)
        .etag_max_bytes(0)
        .build()
        .unwrap();
    let rows: &[(Fields, &str)] = &[
        (&[], "accept-encoding, accept-language"),
        (
            &[("vary", "Accept-Encoding")],
            "Accept-Encoding, accept-language",
        ),
        (
            &[("vary", "accept-language, ACCEPT-ENCODING")],
            "accept-language, ACCEPT-ENCODING",
        ),
        (
            &[("vary", "Origin")],
            "Origin, accept-encoding, accept-language",
        ),
        (&[("vary", "*")], "*"),
    ];
    for (fields, want) in rows {
        let fields = *fields;
        let (inner, _) = handler(move |_| ok("x", fields));
        let (parts, _) = call(&layered(&handle, inner), get("/", &[])).await;
        assert_eq!(field(&parts, "vary").as_deref(), Some(*want), "{fields:?}");
    }
}

#[tokio::test]
async fn rfc9111_5_3_expires_only_when_asked_and_max_age_after_now() {
    let with = CachePolicy::builder()
        .cache_control(CacheDirectives::new().max_age(HOUR))
        .expires(true)
        .build()
        .unwrap();
    let without = CachePolicy::builder()
        .cache_control(CacheDirectives::new().max_age(HOUR))
        .build()
        .unwrap();
    let (inner, _) = handler(|_| ok("x", &[]));
    let before = SystemTime::now();
    let (parts, _) = call(
        &layered(
            &CacheHeaders::builder().policy(with).build().unwrap(),
            inner.clone(),
        ),
        get("/", &[]),
    )
    .await;
    let expires = parse_http_date(parts.headers["expires"].as_bytes()).unwrap();
    let after = SystemTime::now();
    // HTTP dates have one-second resolution.
    assert!(
        expires + Duration::from_secs(1) >= before + HOUR && expires <= after + HOUR,
        "{expires:?}"
    );
    let (parts, _) = call(
        &layered(
            &CacheHeaders::builder().policy(without).build().unwrap(),
            inner,
        ),
        get("/", &[]),
    )
    .await;
    assert_eq!(field(&parts, "expires"), None);
}

#[tokio::test]
async fn error_responses_get_no_caching_fields() {
    let handle = CacheHeaders::builder()
        .policy(cc(CacheDirectives::new().public().max_age(YEAR)))
        .build()
        .unwrap();
    for status in [
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::NOT_FOUND,
        StatusCode::SERVICE_UNAVAILABLE,
    ] {
        let (inner, _) = handler(move |_| {
            let mut r = ok("oops", &[]);
            *r.status_mut() = status;
            r
        });
        let (parts, _) = call(&layered(&handle, inner), get("/", &[])).await;
        assert_eq!(field(&parts, "cache-control"), None, "{status}");
        assert_eq!(field(&parts, "etag"), None, "{status}");
    }
}

#[test]
fn bad_policies_are_config_errors_naming_the_setter() {
    let b = CachePolicy::builder;
    let d = CacheDirectives::new;
    let rows = [
        (
            "public and private",
            b().cache_control(d().public().private()).build(),
            "cache_control",
        ),
        (
            "no-store with max-age",
            b().cache_control(d().no_store().max_age(MINUTE)).build(),
            "cache_control",
        ),
        (
            "immutable without max-age",
            b().cache_control(d().immutable()).build(),
            "cache_control",
        ),
        (
            "private with s-maxage",
            b().cdn_cache_control(d().private().s_maxage(MINUTE))
                .build(),
            "cdn_cache_control",
        ),
        (
            "over 2^31 s",
            b().cache_control(d().max_age(Duration::from_secs(1 << 32)))
                .build(),
            "cache_control",
        ),
        (
            "empty directives",
            b().cache_control(d()).build(),
            "cache_control",
        ),
        ("nothing set", b().build(), "cache_control"),
        (
            "targeted Cache-Control",
            b().cache_control(d().no_cache())
                .targeted("Cache-Control", d().no_cache())
                .build(),
            "targeted",
        ),
        (
            "targeted bad name",
            b().targeted("Surrogate Control", d().no_cache()).build(),
            "targeted",
        ),
        ("vary bad name", b().vary("Accept Encoding").build(), "vary"),
        (
            "expires without max-age",
            b().cache_control(d().no_cache()).expires(true).build(),
            "expires",
        ),
    ];
    for (what, result, field) in rows {
        let err = result.expect_err(what);
        assert_eq!(err.field(), field, "{what}: {err}");
    }
    let ok_policy = cc(d().no_cache());
    for (what, result) in [
        (
            "relative route",
            CacheHeaders::builder()
                .route("assets", ok_policy.clone())
                .build(),
        ),
        (
            "duplicate route",
            CacheHeaders::builder()
                .route("/a", ok_policy.clone())
                .route("/a", ok_policy.clone())
                .build(),
        ),
    ] {
        assert_eq!(result.expect_err(what).field(), "route", "{what}");
    }
}
