//! The `RateLimit` and `RateLimit-Policy` response fields of the IETF
//! httpapi draft (draft-ietf-httpapi-ratelimit-headers): the policy (the
//! burst as the quota `q`, over the window `w` in seconds that refills it)
//! and what the key has left (`r`) and when it is whole again (`t`, in
//! seconds, rounded up).
//!
//! ```
//! use buttress_ratelimit::{Quota, RateLimiter};
//!
//! let limiter = RateLimiter::<&str>::builder(Quota::per_second(10).unwrap()).build().unwrap();
//! # let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
//! # rt.block_on(async {
//! let d = limiter.check_local(&"acme");
//! let mut headers = http::HeaderMap::new();
//! buttress_ratelimit::http::insert_fields(&mut headers, &d);
//! assert_eq!(headers["ratelimit-policy"], "\"default\";q=10;w=1");
//! assert_eq!(headers["ratelimit"], "\"default\";r=9;t=1");
//! # });
//! ```

use http::{HeaderMap, HeaderName, HeaderValue, Response};

use crate::decision::Decision;
use crate::fields::Fields;

/// `RateLimit-Policy`.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

fn secs_up(d: std::time::Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Inserts `decision`'s `RateLimit-Policy` and `RateLimit` fields.
pub fn insert_fields(headers: &mut HeaderMap, decision: &Decision) {
    let q = decision.quota();
    // The window that refills a whole burst.
    let window = q.interval() * q.burst();
    let class = q.class_name();
    let policy = format!("\"{class}\";q={};w={}", q.burst(), secs_up(window));
    let reset = if decision.is_allowed() {
        decision.reset()
    } else {
        decision.retry_after()
    };
    let now = format!(
        "\"{class}\";r={};t={}",
        decision.remaining(),
        secs_up(reset)
    );
    if let Ok(v) = HeaderValue::from_str(&policy) {
        headers.insert(RATELIMIT_POLICY, v);
    }
    if let Ok(v) = HeaderValue::from_str(&now) {
        headers.insert(RATELIMIT, v);
    }
}

/// The `RateLimit` / `RateLimit-Policy` fields on every admitted
/// response.
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpFields;

impl<B> Fields<Response<B>> for HttpFields {
    fn stamp(&self, response: &mut Response<B>, decision: &Decision) {
        insert_fields(response.headers_mut(), decision);
    }
}
