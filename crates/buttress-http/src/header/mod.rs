//! Parsers for the header fields HTTP caching reads and writes:
//! [`CacheControl`] (RFC 9111 §5.2; targeted fields, RFC 9213, through
//! [`CacheControl::parse_targeted`]), HTTP dates (RFC 9110 §5.6.7) and
//! entity tags ([`EntityTag`], [`ETag`]; RFC 9110 §8.8.3). Each works on
//! raw bytes and never panics, whatever a client or an upstream sends.

mod cache_control;
mod date;
mod etag;
pub(crate) mod list;
mod targeted;

pub(crate) use cache_control::delta_seconds as delta_seconds_raw;
pub use cache_control::{CacheControl, MAX_DELTA_SECONDS};

/// A `delta-seconds` field value (such as `Age`), whitespace trimmed.
pub(crate) fn delta_seconds_of(value: &[u8]) -> Option<std::time::Duration> {
    delta_seconds_raw(list::trim_ows(value))
}
pub use date::{http_date, parse_http_date, truncate_to_second};
pub use etag::{ETag, EntityTag};

/// `CDN-Cache-Control` (RFC 9213 §2): targeted cache control for CDNs.
pub static CDN_CACHE_CONTROL: http::HeaderName = http::HeaderName::from_static("cdn-cache-control");
