//! `grpc-timeout`, read from arbitrary bytes and written for any duration:
//! no panic, and each answer agrees with gRPC's PROTOCOL-HTTP2.md.

use std::time::Duration;

use buttress_retry::Replay;
use buttress_retry::http::{HttpReplay, grpc_timeout_value, parse_grpc_timeout};
use http::{HeaderValue, Request};
use proptest::prelude::*;

fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..16),
        "[ +-]?[0-9]{0,10}[HMSmunXh ]?[ ]?".prop_map(String::into_bytes),
    ]
}

/// The spec, read plainly: `TimeoutValue` is 1 to 8 ASCII digits, then one
/// `TimeoutUnit`.
fn model(bytes: &[u8]) -> Option<Duration> {
    let (unit, digits) = bytes.split_last()?;
    if !(1..=8).contains(&digits.len()) || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let nanos_per: u128 = match unit {
        b'H' => 3_600_000_000_000,
        b'M' => 60_000_000_000,
        b'S' => 1_000_000_000,
        b'm' => 1_000_000,
        b'u' => 1_000,
        b'n' => 1,
        _ => return None,
    };
    let nanos = u128::from(n) * nanos_per;
    Some(Duration::new(
        (nanos / 1_000_000_000) as u64,
        (nanos % 1_000_000_000) as u32,
    ))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parse_matches_the_spec(bytes in header_bytes()) {
        let Ok(value) = HeaderValue::from_bytes(&bytes) else { return Ok(()) };
        prop_assert_eq!(parse_grpc_timeout(&value), model(&bytes));
        // The retry layer reads it as a deadline only when it parses.
        let req = Request::post("/").header("grpc-timeout", value).body(()).unwrap();
        prop_assert_eq!(HttpReplay::grpc().deadline(&req).is_some(), model(&bytes).is_some());
        prop_assert_eq!(HttpReplay::new().deadline(&req), None);
    }

    /// What we write parses back to at most the time left, never more, and
    /// loses less than one unit of the unit chosen.
    #[test]
    fn written_values_round_trip_rounded_down(secs in 0u64..u64::MAX / 2, nanos in 0u32..1_000_000_000) {
        let left = Duration::new(secs, nanos);
        let value = grpc_timeout_value(left);
        let back = parse_grpc_timeout(&value).expect("well-formed");
        prop_assert!(back <= left, "{value:?}: {back:?} > {left:?}");
        let unit = model(&[b'1', *value.as_bytes().last().unwrap()]).unwrap();
        prop_assert!(left - back < unit || back == Duration::from_secs(99_999_999 * 3600),
            "{value:?} for {left:?}");
    }
}
