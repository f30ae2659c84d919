//! The header parsers never panic, whatever bytes arrive, and agree with
//! their own output (RFC 9111 §5.2, RFC 9110 §5.6.7, §8.8.3, §13.1).

use std::time::{Duration, UNIX_EPOCH};

use buttress_http::header::{CacheControl, ETag, EntityTag, http_date, parse_http_date};
use buttress_http::{CacheDirectives, Conditions, Validators};
use http::{HeaderMap, HeaderValue, Method, header};
use proptest::prelude::*;

/// Bytes weighted towards the characters the parsers branch on.
fn field_bytes() -> impl Strategy<Value = Vec<u8>> {
    let interesting = prop::sample::select(vec![
        b'"', b'\\', b',', b'=', b' ', b'\t', b'W', b'/', b'*', b'0', b'9', b'a', b'-', 0x80, 0xff,
        0,
    ]);
    prop::collection::vec(prop_oneof![any::<u8>(), interesting], 0..64)
}

proptest! {
    #[test]
    fn rfc9111_5_2_cache_control_never_panics(bytes in field_bytes()) {
        let cc = CacheControl::parse_bytes(&bytes);
        // Every delta-seconds value saturates at 2^31 (RFC 9111 §1.2.2).
        for d in [cc.max_age, cc.s_maxage, cc.min_fresh, cc.stale_while_revalidate, cc.stale_if_error].into_iter().flatten() {
            prop_assert!(d.as_secs() <= 1 << 31);
        }
    }

    #[test]
    fn rfc9213_targeted_fields_never_panic(bytes in field_bytes()) {
        if let Ok(v) = HeaderValue::from_bytes(&bytes) {
            let _ = CacheControl::parse_targeted([&v]);
        }
    }

    #[test]
    fn rfc9110_8_8_3_entity_tags_never_panic(bytes in field_bytes()) {
        if let Some(tag) = EntityTag::parse(&bytes) {
            // A parsed tag equals itself weakly, and strongly unless weak.
            prop_assert!(tag.weak_eq(&tag));
            prop_assert_eq!(tag.strong_eq(&tag), !tag.is_weak());
        }
    }

    #[test]
    fn rfc9110_5_6_7_dates_never_panic(bytes in field_bytes()) {
        let _ = parse_http_date(&bytes);
    }

    #[test]
    fn rfc9110_5_6_7_dates_round_trip(secs in 0u64..253_402_300_799) {
        let t = UNIX_EPOCH + Duration::from_secs(secs);
        prop_assert_eq!(parse_http_date(http_date(t).as_bytes()), Some(t));
    }

    #[test]
    fn rfc9110_13_preconditions_never_panic(
        if_match in field_bytes(),
        if_none_match in field_bytes(),
        since in field_bytes(),
        post in any::<bool>(),
    ) {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            (header::IF_MATCH, &if_match),
            (header::IF_NONE_MATCH, &if_none_match),
            (header::IF_MODIFIED_SINCE, &since),
            (header::IF_UNMODIFIED_SINCE, &since),
        ] {
            if let Ok(v) = HeaderValue::from_bytes(value) {
                headers.append(name, v);
            }
        }
        let current = Validators::new().with_etag(ETag::strong("x").unwrap()).with_last_modified(UNIX_EPOCH);
        let method = if post { Method::POST } else { Method::GET };
        let conditions = Conditions::from_headers(&headers);
        let _ = conditions.evaluate(&method, Some(&current));
        let _ = conditions.evaluate(&method, None);
    }

    #[test]
    fn rendered_directives_parse_back(
        max_age in proptest::option::of(0u64..1 << 31),
        s_maxage in proptest::option::of(0u64..1 << 31),
        swr in proptest::option::of(0u64..1 << 31),
        public in any::<bool>(),
        must_revalidate in any::<bool>(),
    ) {
        let mut d = CacheDirectives::new();
        if let Some(s) = max_age { d = d.max_age(Duration::from_secs(s)); }
        if let Some(s) = s_maxage { d = d.s_maxage(Duration::from_secs(s)); }
        if let Some(s) = swr { d = d.stale_while_revalidate(Duration::from_secs(s)); }
        if public { d = d.public(); }
        if must_revalidate { d = d.must_revalidate(); }
        let cc = CacheControl::parse_bytes(d.to_string().as_bytes());
        // What a policy renders is also a valid RFC 8941 Dictionary, read
        // the same way as a targeted field (RFC 9213 §2.1).
        let targeted = CacheControl::parse_targeted([&HeaderValue::from_str(&d.to_string()).unwrap()]);
        // (No directives render an empty field, which a cache ignores; a
        // policy never renders one.)
        let rendered = d.to_string();
        prop_assert_eq!(targeted.as_ref(), (!rendered.is_empty()).then_some(&cc));
        prop_assert_eq!(cc.max_age, max_age.map(Duration::from_secs));
        prop_assert_eq!(cc.s_maxage, s_maxage.map(Duration::from_secs));
        prop_assert_eq!(cc.stale_while_revalidate, swr.map(Duration::from_secs));
        prop_assert_eq!((cc.public, cc.must_revalidate, cc.invalid, cc.duplicated), (public, must_revalidate, false, false));
    }
}

proptest! {
    #[test]
    fn rfc9111_2_and_4_1_keys_never_panic(host in field_bytes(), vary in field_bytes(), value in field_bytes()) {
        use buttress_http::semantics::{VaryKey, cache_key};
        let mut request = HeaderMap::new();
        let mut response = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(&host) {
            request.insert(header::HOST, v);
        }
        if let Ok(v) = HeaderValue::from_bytes(&vary) {
            response.insert(header::VARY, v);
        }
        if let Ok(v) = HeaderValue::from_bytes(&value) {
            request.insert(header::ACCEPT, v);
        }
        let _ = cache_key("http", &http::Uri::from_static("/a"), &request);
        if let Some(key) = VaryKey::new(&response, &request) {
            prop_assert!(key.matches(&request), "a request matches its own key");
        }
    }
}
