//! Every header the layers parse, fed arbitrary bytes and near-miss values:
//! no panic, and each answer agrees with a plain reading of its spec.
#![cfg(feature = "grpc")]

use std::time::{Duration, SystemTime};

use buttress_core::classify::{Classify, Outcome};
use buttress_core::grpc::{GrpcClassifier, GrpcCode, parse_grpc_status};
use buttress_core::http::{HostKey, HttpClassifier, parse_retry_after};
use buttress_core::key::KeyExtractor;
use http::{HeaderValue, Request, Response};
use proptest::prelude::*;

/// Arbitrary bytes, and strings made of the pieces the formats use.
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..40),
        "[0-9A-Za-z ,:+-]{0,32}".prop_map(String::into_bytes),
        "[ ]?[0-9]{1,25}[ ]?".prop_map(String::into_bytes),
        // A valid HTTP-date with one byte replaced.
        (0u64..400_000_000_000, 0usize..29, any::<u8>()).prop_map(|(secs, at, b)| {
            let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs % 253_402_300_799);
            let mut v = httpdate::fmt_http_date(t).into_bytes();
            v[at] = b;
            v
        }),
    ]
}

fn is_digits(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(u8::is_ascii_digit)
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// `Retry-After`: delta-seconds give exactly that many seconds
    /// (saturating), an HTTP-date gives the time until it (zero when past),
    /// and nothing else gives an answer.
    #[test]
    fn retry_after(bytes in header_bytes()) {
        let Ok(value) = HeaderValue::from_bytes(&bytes) else { return Ok(()) };
        let got = parse_retry_after(&value, now());
        let Ok(text) = value.to_str() else {
            prop_assert_eq!(got, None);
            return Ok(());
        };
        let text = text.trim();
        if is_digits(text.as_bytes()) {
            let want = text.parse::<u64>().unwrap_or(u64::MAX);
            prop_assert_eq!(got, Some(Duration::from_secs(want)));
        } else if let Ok(at) = httpdate::parse_http_date(text) {
            prop_assert_eq!(got, Some(at.duration_since(now()).unwrap_or(Duration::ZERO)));
        } else if let Some(d) = got {
            // Only a date before 1970 (outside httpdate's range) remains.
            prop_assert_eq!(d, Duration::ZERO);
            prop_assert!(text.len() == 29 || text.len() == 24, "{text:?}");
        }
    }

    /// `grpc-status`: `1*DIGIT` naming a code in the spec, else UNKNOWN.
    #[test]
    fn grpc_status(bytes in header_bytes()) {
        let trimmed = bytes.trim_ascii();
        let want = if is_digits(trimmed) {
            let n = trimmed.iter().fold(0u128, |n, d| {
                n.saturating_mul(10).saturating_add(u128::from(d - b'0'))
            });
            if n <= 16 { GrpcCode::from(n as i32) } else { GrpcCode::Unknown }
        } else {
            GrpcCode::Unknown
        };
        prop_assert_eq!(parse_grpc_status(&bytes), want);
    }

    /// `grpc-status` and `grpc-retry-pushback-ms` together, through the
    /// classifier: a delay only from a non-negative integer pushback, a
    /// malformed status never a success.
    #[test]
    fn grpc_classification(status in header_bytes(), pushback in header_bytes(), http_status in 100u16..600) {
        let mut res = Response::builder().status(http_status).body(()).unwrap();
        let status_value = HeaderValue::from_bytes(&status).ok();
        if let Some(v) = &status_value {
            res.headers_mut().insert("grpc-status", v.clone());
        }
        let pushback_value = HeaderValue::from_bytes(&pushback).ok();
        if let Some(v) = &pushback_value {
            res.headers_mut().insert("grpc-retry-pushback-ms", v.clone());
        }
        let verdict = Classify::<_, ()>::classify(&GrpcClassifier::new(), &Ok(res));
        if let Some(v) = &status_value {
            let code = parse_grpc_status(v.as_bytes());
            prop_assert_eq!(verdict.outcome() == Outcome::Success,
                !matches!(code, GrpcCode::Unknown | GrpcCode::DeadlineExceeded
                    | GrpcCode::ResourceExhausted | GrpcCode::Internal
                    | GrpcCode::Unavailable | GrpcCode::DataLoss | GrpcCode::Cancelled));
            if let Some(delay) = verdict.retry_after() {
                let ms = pushback_value.as_ref().and_then(|p| p.to_str().ok())
                    .and_then(|p| p.trim().parse::<u64>().ok());
                prop_assert_eq!(Some(delay), ms.map(Duration::from_millis));
            }
        } else if http_status != 200 {
            // UNAVAILABLE is retryable unless a pushback says stop (A6).
            let unavailable = matches!(http_status, 429 | 502 | 503 | 504);
            let stop = pushback_value.as_ref().is_some_and(|p| {
                p.to_str().ok().and_then(|p| p.trim().parse::<u64>().ok()).is_none()
            });
            prop_assert_eq!(verdict.is_retryable(), unavailable && !stop);
        }
    }

    /// HTTP classification with an arbitrary `Retry-After` and the `Host`
    /// key with an arbitrary `Host`: no panic.
    #[test]
    fn http_classification_and_host(bytes in header_bytes(), status in 100u16..600) {
        let Ok(value) = HeaderValue::from_bytes(&bytes) else { return Ok(()) };
        let res = Response::builder().status(status).header("retry-after", value.clone()).body(()).unwrap();
        let verdict = Classify::<_, ()>::classify(&HttpClassifier::new(), &Ok(res));
        if verdict.retry_after().is_some() {
            prop_assert!(status == 429 || status == 503);
        }
        let req = Request::get("/").header("host", value).body(()).unwrap();
        let _ = HostKey.extract(&req);
    }
}
