//! RFC 9111's rules, one row per rule with its section: storing (§3),
//! freshness (§4.2.1, §4.2.2), age (§4.2.3), reuse (§4.2.4, §5.2.1) and
//! RFC 5861's stale windows.

use std::time::{Duration, UNIX_EPOCH};

use buttress_http::header::{CacheControl, http_date};
use buttress_http::semantics::{Reuse, Semantics, Timing};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

type Fields = &'static [(&'static str, &'static str)];

fn map(fields: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in fields {
        m.append(*k, HeaderValue::from_static(v));
    }
    m
}

const S: fn(u64) -> Duration = Duration::from_secs;

const DATE: &str = "Sun, 09 Sep 2001 01:46:40 GMT";
const IN_AN_HOUR: &str = "Sun, 09 Sep 2001 02:46:40 GMT";
const TEN_DAYS_AGO: &str = "Thu, 30 Aug 2001 01:46:40 GMT";

/// (rule, status, response fields, lifetime in a shared cache, in a private one)
type Row = (
    &'static str,
    u16,
    Vec<(&'static str, &'static str)>,
    Duration,
    Duration,
);

#[test]
fn rfc9111_3_storing_responses() {
    let shared = Semantics::shared();
    let private = Semantics::private();
    // (rule, method, request fields, status, response fields, shared, private)
    let rows: &[(&str, Method, Fields, u16, Fields, bool, bool)] = &[
        (
            "§3 max-age makes it storable",
            Method::GET,
            &[],
            200,
            &[("cache-control", "max-age=60")],
            true,
            true,
        ),
        (
            "§3 heuristically cacheable status (RFC 9110 §15.1)",
            Method::GET,
            &[],
            404,
            &[],
            true,
            true,
        ),
        (
            "§3 not heuristically cacheable, no explicit freshness",
            Method::GET,
            &[],
            302,
            &[],
            false,
            false,
        ),
        (
            "§3 Expires makes it storable",
            Method::GET,
            &[],
            302,
            &[("expires", "Sun, 06 Nov 2094 08:49:37 GMT")],
            true,
            true,
        ),
        (
            "§3 s-maxage: shared caches only",
            Method::GET,
            &[],
            302,
            &[("cache-control", "s-maxage=60")],
            true,
            false,
        ),
        (
            "§3 only GET and HEAD are stored here",
            Method::POST,
            &[],
            200,
            &[("cache-control", "max-age=60")],
            false,
            false,
        ),
        (
            "§5.2.2.5 response no-store",
            Method::GET,
            &[],
            200,
            &[("cache-control", "no-store, max-age=60")],
            false,
            false,
        ),
        (
            "§5.2.1.5 request no-store",
            Method::GET,
            &[("cache-control", "no-store")],
            200,
            &[("cache-control", "max-age=60")],
            false,
            false,
        ),
        (
            "§5.2.2.7 private: not in a shared cache",
            Method::GET,
            &[],
            200,
            &[("cache-control", "private, max-age=60")],
            false,
            true,
        ),
        (
            "§3.5 Authorization: not stored in a shared cache by default",
            Method::GET,
            &[("authorization", "Bearer x")],
            200,
            &[("cache-control", "max-age=60")],
            false,
            true,
        ),
        (
            "§3.5 Authorization with public",
            Method::GET,
            &[("authorization", "Bearer x")],
            200,
            &[("cache-control", "public, max-age=60")],
            true,
            true,
        ),
        (
            "§3.5 Authorization with s-maxage",
            Method::GET,
            &[("authorization", "Bearer x")],
            200,
            &[("cache-control", "s-maxage=60")],
            true,
            // 200 is heuristically cacheable in a private cache.
            true,
        ),
        (
            "§3.5 Authorization with must-revalidate",
            Method::GET,
            &[("authorization", "Bearer x")],
            200,
            &[("cache-control", "must-revalidate, max-age=60")],
            true,
            true,
        ),
        (
            "Set-Cookie: not in a shared cache unless allowed",
            Method::GET,
            &[],
            200,
            &[("cache-control", "max-age=60"), ("set-cookie", "id=1")],
            false,
            true,
        ),
        (
            "§4.1 Vary: * never matches: not stored",
            Method::GET,
            &[],
            200,
            &[("cache-control", "max-age=60"), ("vary", "accept, *")],
            false,
            false,
        ),
        (
            "§3.3 partial content is passed through",
            Method::GET,
            &[],
            206,
            &[
                ("cache-control", "max-age=60"),
                ("content-range", "bytes 0-1/2"),
            ],
            false,
            false,
        ),
        (
            "when in doubt (invalid max-age), not stored",
            Method::GET,
            &[],
            200,
            &[("cache-control", "max-age=soon")],
            false,
            false,
        ),
        (
            "§3 1xx is not final",
            Method::GET,
            &[],
            103,
            &[("cache-control", "max-age=60")],
            false,
            false,
        ),
    ];
    for (rule, method, req, status, resp, want_shared, want_private) in rows {
        let status = StatusCode::from_u16(*status).unwrap();
        assert_eq!(
            shared.storable(method, &map(req), status, &map(resp)),
            *want_shared,
            "{rule} (shared)"
        );
        assert_eq!(
            private.storable(method, &map(req), status, &map(resp)),
            *want_private,
            "{rule} (private)"
        );
    }
    let cookies = Semantics::shared().store_set_cookie(true);
    assert!(cookies.storable(
        &Method::GET,
        &HeaderMap::new(),
        StatusCode::OK,
        &map(&[("cache-control", "max-age=60"), ("set-cookie", "id=1")])
    ));
}

#[test]
fn rfc9111_4_2_1_freshness_lifetime() {
    let received = UNIX_EPOCH + S(1_000_000_000);
    // `received` as an HTTP date, an hour later, ten days earlier.
    let (date, in_an_hour, ten_days_ago) = (DATE, IN_AN_HOUR, TEN_DAYS_AGO);
    assert_eq!(http_date(received), date);
    let rows: Vec<Row> = vec![
        (
            "§4.2.1 s-maxage first, in a shared cache",
            200,
            vec![("cache-control", "max-age=10, s-maxage=20")],
            S(20),
            S(10),
        ),
        (
            "§4.2.1 max-age over Expires",
            200,
            vec![
                ("cache-control", "max-age=10"),
                ("date", date),
                ("expires", in_an_hour),
            ],
            S(10),
            S(10),
        ),
        (
            "§4.2.1 Expires minus Date",
            200,
            vec![("date", date), ("expires", in_an_hour)],
            S(3600),
            S(3600),
        ),
        (
            "§4.2.1 Expires minus the time received, without Date",
            200,
            vec![("expires", in_an_hour)],
            S(3600),
            S(3600),
        ),
        (
            "§5.3 invalid Expires (\"0\") is in the past",
            200,
            vec![("expires", "0"), ("last-modified", ten_days_ago)],
            S(0),
            S(0),
        ),
        (
            "§4.2.1 several Expires lines: stale",
            200,
            vec![("expires", in_an_hour), ("expires", in_an_hour)],
            S(0),
            S(0),
        ),
        (
            "§4.2.2 heuristic: 10 % since Last-Modified",
            200,
            vec![("date", date), ("last-modified", ten_days_ago)],
            S(86_400),
            S(86_400),
        ),
        (
            "§4.2.2 no heuristic for a status not heuristically cacheable",
            302,
            vec![("date", date), ("last-modified", ten_days_ago)],
            S(0),
            S(0),
        ),
        (
            "§4.2.2 public allows the heuristic",
            302,
            vec![("cache-control", "public"), ("last-modified", ten_days_ago)],
            S(86_400),
            S(86_400),
        ),
        (
            "§4.2.1 invalid max-age: stale",
            200,
            vec![("cache-control", "max-age=x"), ("expires", in_an_hour)],
            S(0),
            S(0),
        ),
        (
            "§4.2.1 duplicate max-age: the first",
            200,
            vec![("cache-control", "max-age=5, max-age=50")],
            S(5),
            S(5),
        ),
        ("nothing: zero", 200, vec![], S(0), S(0)),
    ];
    for (rule, status, fields, want_shared, want_private) in rows {
        let status = StatusCode::from_u16(status).unwrap();
        let headers = map(&fields);
        assert_eq!(
            Semantics::shared().freshness_lifetime(status, &headers, received),
            want_shared,
            "{rule} (shared)"
        );
        assert_eq!(
            Semantics::private().freshness_lifetime(status, &headers, received),
            want_private,
            "{rule} (private)"
        );
    }
}

#[test]
fn rfc9111_4_2_3_age() {
    let t = |s| UNIX_EPOCH + S(s);
    let with = |fields: &[(&'static str, &'static str)]| map(fields);
    let date_at_100 = "Thu, 01 Jan 1970 00:01:40 GMT";
    let rows = [
        // (rule, request_time, response_time, fields, resident, current_age)
        (
            "apparent age from Date",
            105,
            110,
            with(&[("date", date_at_100)]),
            0,
            10,
        ),
        (
            "Age plus the round trip when larger",
            105,
            110,
            with(&[("date", date_at_100), ("age", "30")]),
            0,
            35,
        ),
        (
            "a Date in the future counts as zero",
            105,
            110,
            with(&[("date", "Thu, 01 Jan 1970 00:10:00 GMT")]),
            0,
            5,
        ),
        (
            "resident time adds",
            105,
            110,
            with(&[("date", date_at_100)]),
            50,
            60,
        ),
        (
            "an invalid Age is as old as can be",
            105,
            110,
            with(&[("age", "-3")]),
            0,
            (1 << 31) + 5,
        ),
        (
            "§5.1 Age with whitespace",
            110,
            110,
            with(&[("age", " 7 ")]),
            0,
            7,
        ),
    ];
    for (rule, req, resp, headers, resident, want) in rows {
        let timing = Timing::new(t(req), t(resp), &headers);
        assert_eq!(timing.current_age(S(resident)), S(want), "{rule}");
    }
}

#[test]
fn rfc9111_4_2_4_and_5_2_1_reuse() {
    let cc = |s: &str| CacheControl::parse_bytes(s.as_bytes());
    use Reuse::*;
    // (rule, request cc, response cc, lifetime, age, shared, private)
    let rows: &[(&str, &str, &str, u64, u64, Reuse, Reuse)] = &[
        ("§4.2 fresh", "", "max-age=60", 60, 59, Fresh, Fresh),
        (
            "§4.2 stale at the lifetime",
            "",
            "max-age=60",
            60,
            60,
            Revalidate,
            Revalidate,
        ),
        (
            "§5.2.2.4 response no-cache",
            "",
            "no-cache, max-age=60",
            60,
            1,
            Revalidate,
            Revalidate,
        ),
        (
            "§5.2.1.4 request no-cache",
            "no-cache",
            "max-age=60",
            60,
            1,
            Revalidate,
            Revalidate,
        ),
        (
            "§5.2.1.1 request max-age",
            "max-age=10",
            "max-age=60",
            60,
            11,
            Revalidate,
            Revalidate,
        ),
        (
            "§5.2.1.3 min-fresh",
            "min-fresh=20",
            "max-age=60",
            60,
            41,
            Revalidate,
            Revalidate,
        ),
        (
            "§5.2.1.3 min-fresh met",
            "min-fresh=20",
            "max-age=60",
            60,
            40,
            Fresh,
            Fresh,
        ),
        (
            "§5.2.1.2 max-stale without argument",
            "max-stale",
            "max-age=60",
            60,
            600,
            Stale,
            Stale,
        ),
        (
            "§5.2.1.2 max-stale within",
            "max-stale=30",
            "max-age=60",
            60,
            90,
            Stale,
            Stale,
        ),
        (
            "§5.2.1.2 max-stale exceeded",
            "max-stale=30",
            "max-age=60",
            60,
            91,
            Revalidate,
            Revalidate,
        ),
        (
            "§5.2.2.2 must-revalidate beats max-stale",
            "max-stale",
            "max-age=60, must-revalidate",
            60,
            61,
            Revalidate,
            Revalidate,
        ),
        (
            "§5.2.2.8 proxy-revalidate: shared only",
            "max-stale",
            "max-age=60, proxy-revalidate",
            60,
            61,
            Revalidate,
            Stale,
        ),
        (
            "§5.2.2.10 s-maxage forbids stale in shared caches",
            "max-stale",
            "max-age=60, s-maxage=60",
            60,
            61,
            Revalidate,
            Stale,
        ),
        (
            "RFC 5861 §3 within stale-while-revalidate",
            "",
            "max-age=60, stale-while-revalidate=30",
            60,
            90,
            StaleWhileRevalidate,
            StaleWhileRevalidate,
        ),
        (
            "RFC 5861 §3 past it",
            "",
            "max-age=60, stale-while-revalidate=30",
            60,
            91,
            Revalidate,
            Revalidate,
        ),
    ];
    for (rule, req, resp, lifetime, age, shared, private) in rows {
        let (req, resp) = (cc(req), cc(resp));
        assert_eq!(
            Semantics::shared().reuse(&req, &resp, S(*lifetime), S(*age)),
            *shared,
            "{rule} (shared)"
        );
        assert_eq!(
            Semantics::private().reuse(&req, &resp, S(*lifetime), S(*age)),
            *private,
            "{rule} (private)"
        );
    }
}

#[test]
fn rfc5861_4_stale_if_error() {
    let cc = |s: &str| CacheControl::parse_bytes(s.as_bytes());
    let shared = Semantics::shared();
    let rows = [
        (
            "within the response's window",
            "",
            "max-age=60, stale-if-error=100",
            160,
            true,
        ),
        ("past it", "", "max-age=60, stale-if-error=100", 161, false),
        (
            "the request's window",
            "stale-if-error=10",
            "max-age=60",
            70,
            true,
        ),
        (
            "§4.2.4 must-revalidate forbids it",
            "",
            "max-age=60, must-revalidate, stale-if-error=100",
            61,
            false,
        ),
        ("no window", "", "max-age=60", 61, false),
    ];
    for (rule, req, resp, age, want) in rows {
        assert_eq!(
            shared.stale_if_error(&cc(req), &cc(resp), S(60), S(age)),
            want,
            "{rule}"
        );
    }
}

#[test]
fn rfc9111_2_primary_key_is_the_effective_uri_and_nothing_else() {
    use buttress_http::semantics::cache_key;
    let rows: &[(&str, &str, Fields, Option<&str>)] = &[
        (
            "origin-form + Host",
            "/a?b=1",
            &[("host", "example.com")],
            Some("http://example.com/a?b=1"),
        ),
        (
            "RFC 9110 §4.2.3 host case and default port",
            "/a",
            &[("host", "EXAMPLE.com:80")],
            Some("http://example.com/a"),
        ),
        (
            "a non-default port stays",
            "/a",
            &[("host", "example.com:8080")],
            Some("http://example.com:8080/a"),
        ),
        (
            "absolute-form wins over Host",
            "https://Api.Example.com:443/x",
            &[("host", "evil.test")],
            Some("https://api.example.com/x"),
        ),
        (
            "the query is part of the key",
            "/a?b=2",
            &[("host", "example.com")],
            Some("http://example.com/a?b=2"),
        ),
        ("no host: no key", "/a", &[], None),
        (
            "RFC 9112 §3.2 two Host lines: no key",
            "/a",
            &[("host", "a.test"), ("host", "b.test")],
            None,
        ),
        (
            "poisoning: forwarding fields never enter the key",
            "/a",
            &[
                ("host", "example.com"),
                ("x-forwarded-host", "evil.test"),
                ("x-original-url", "/admin"),
                ("x-forwarded-scheme", "https"),
            ],
            Some("http://example.com/a"),
        ),
    ];
    for (rule, uri, fields, want) in rows {
        let uri: http::Uri = uri.parse().unwrap();
        assert_eq!(
            cache_key("http", &uri, &map(fields)).as_deref(),
            *want,
            "{rule}"
        );
    }
}

#[test]
fn rfc9111_4_1_vary_selects_by_normalised_request_fields() {
    use buttress_http::semantics::VaryKey;
    let response = map(&[
        ("vary", "Accept-Encoding, accept-language"),
        ("vary", "ACCEPT-ENCODING"),
    ]);
    let stored = VaryKey::new(
        &response,
        &map(&[("accept-encoding", "gzip, br"), ("accept-language", "en")]),
    )
    .unwrap();
    let rows: &[(&str, Fields, bool)] = &[
        (
            "the same values",
            &[("accept-encoding", "gzip, br"), ("accept-language", "en")],
            true,
        ),
        (
            "RFC 9110 §5.3 lines combined, whitespace normalised",
            &[
                ("accept-encoding", "gzip"),
                ("accept-encoding", "br"),
                ("accept-language", "en"),
            ],
            true,
        ),
        (
            "a different value",
            &[("accept-encoding", "gzip"), ("accept-language", "en")],
            false,
        ),
        ("a field missing", &[("accept-encoding", "gzip, br")], false),
        (
            "unrelated fields do not matter",
            &[
                ("accept-encoding", "gzip,br"),
                ("accept-language", "en"),
                ("cookie", "a=1"),
            ],
            true,
        ),
    ];
    for (rule, request, want) in rows {
        assert_eq!(stored.matches(&map(request)), *want, "{rule}");
    }
    // Absent matches absent.
    let none = VaryKey::new(&map(&[("vary", "origin")]), &HeaderMap::new()).unwrap();
    assert!(
        none.matches(&HeaderMap::new()) && !none.matches(&map(&[("origin", "https://a.test")]))
    );
    // §4.1: Vary: * never matches.
    assert!(VaryKey::new(&map(&[("vary", "accept, *")]), &HeaderMap::new()).is_none());
    assert!(
        VaryKey::new(&HeaderMap::new(), &HeaderMap::new())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn rfc9111_4_3_4_freshening_with_a_304() {
    use buttress_http::semantics::{freshen, freshens};
    let rows: &[(&str, Fields, Fields, bool)] = &[
        (
            "the same strong ETag",
            &[("etag", "\"v1\"")],
            &[("etag", "\"v1\"")],
            true,
        ),
        (
            "a different ETag",
            &[("etag", "\"v1\"")],
            &[("etag", "\"v2\"")],
            false,
        ),
        (
            "a weak ETag in the 304 selects nothing by tag",
            &[("etag", "W/\"v1\"")],
            &[("etag", "W/\"v1\"")],
            false,
        ),
        (
            "the same Last-Modified",
            &[("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT")],
            &[("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT")],
            true,
        ),
        ("no validator on either side", &[], &[], true),
        (
            "a validator only on the stored side",
            &[("etag", "\"v1\"")],
            &[],
            false,
        ),
    ];
    for (rule, stored, not_modified, want) in rows {
        assert_eq!(freshens(&map(stored), &map(not_modified)), *want, "{rule}");
    }
    let mut stored = map(&[
        ("etag", "\"v1\""),
        ("cache-control", "max-age=10"),
        ("content-length", "5"),
        ("content-type", "text/plain"),
    ]);
    freshen(
        &mut stored,
        &map(&[
            ("etag", "\"v1\""),
            ("cache-control", "max-age=60"),
            ("content-length", "0"),
            ("connection", "x-hop"),
            ("x-hop", "1"),
        ]),
    );
    assert_eq!(stored["cache-control"], "max-age=60", "replaced");
    assert_eq!(
        stored["content-length"], "5",
        "Content-Length is not updated"
    );
    assert_eq!(stored["content-type"], "text/plain", "kept");
    assert!(
        !stored.contains_key("x-hop") && !stored.contains_key("connection"),
        "§3.1 hop-by-hop fields are not stored"
    );
}

#[test]
fn rfc9111_4_4_unsafe_methods_invalidate_the_target_and_same_origin_locations() {
    use buttress_http::semantics::invalidated_keys;
    let host: Fields = &[("host", "example.com")];
    let rows: &[(&str, Method, u16, Fields, &[&str])] = &[
        (
            "a successful POST invalidates its target",
            Method::POST,
            200,
            &[],
            &["http://example.com/items"],
        ),
        (
            "Location and Content-Location on the same origin",
            Method::POST,
            201,
            &[
                ("location", "/items/7"),
                ("content-location", "http://example.com/items/7/v1"),
            ],
            &[
                "http://example.com/items",
                "http://example.com/items/7",
                "http://example.com/items/7/v1",
            ],
        ),
        (
            "another origin's Location is not invalidated",
            Method::PUT,
            204,
            &[("location", "http://other.test/items")],
            &["http://example.com/items"],
        ),
        (
            "an error response invalidates nothing",
            Method::DELETE,
            500,
            &[],
            &[],
        ),
        (
            "safe methods invalidate nothing",
            Method::GET,
            200,
            &[],
            &[],
        ),
    ];
    for (rule, method, status, response, want) in rows {
        let uri: http::Uri = "/items".parse().unwrap();
        let got = invalidated_keys(
            "http",
            method,
            &uri,
            &map(host),
            StatusCode::from_u16(*status).unwrap(),
            &map(response),
        );
        assert_eq!(got, *want, "{rule}");
    }
}
