//! HTTP dates (RFC 9110 §5.6.7), through `httpdate`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;

use super::list::trim_ows;

/// The time an HTTP-date field value names, in any of the three formats a
/// recipient must accept (IMF-fixdate, RFC 850, asctime; RFC 9110
/// §5.6.7); `None` for anything else. Never panics.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use buttress_http::header::parse_http_date;
///
/// let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
/// assert_eq!(parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT"), Some(t));
/// assert_eq!(parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"), Some(t));
/// assert_eq!(parse_http_date(b"Sun Nov  6 08:49:37 1994"), Some(t));
/// assert_eq!(parse_http_date(b"yesterday"), None);
/// ```
#[must_use]
pub fn parse_http_date(value: &[u8]) -> Option<SystemTime> {
    let s = std::str::from_utf8(trim_ows(value)).ok()?;
    httpdate::parse_http_date(s).ok()
}

/// `t` as an IMF-fixdate field value (`Sun, 06 Nov 1994 08:49:37 GMT`),
/// truncated to the second.
#[must_use]
pub fn http_date(t: SystemTime) -> HeaderValue {
    let s = httpdate::fmt_http_date(t);
    HeaderValue::from_str(&s).unwrap_or(HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"))
}

/// `t` truncated to whole seconds: the resolution HTTP dates carry, so a
/// modification time read from a file compares equal to the date a client
/// echoes back.
#[must_use]
pub fn truncate_to_second(t: SystemTime) -> SystemTime {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9110_5_6_7_formats_and_rejections() {
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        for ok in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            " Sun, 06 Nov 1994 08:49:37 GMT\t",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(parse_http_date(ok.as_bytes()), Some(t), "{ok}");
        }
        for bad in [
            "",
            "0",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:49:37 GMT",
            "\u{ff}",
        ] {
            assert_eq!(parse_http_date(bad.as_bytes()), None, "{bad:?}");
        }
        assert_eq!(parse_http_date(&[0xff, 0xfe]), None);
    }

    #[test]
    fn formatting_round_trips_at_second_resolution() {
        let t = UNIX_EPOCH + Duration::from_millis(784_111_777_900);
        let v = http_date(t);
        assert_eq!(v, "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(parse_http_date(v.as_bytes()), Some(truncate_to_second(t)));
    }
}
