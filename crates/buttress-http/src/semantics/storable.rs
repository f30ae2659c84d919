//! Storing responses in caches (RFC 9111 §3).

use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_RANGE, EXPIRES, SET_COOKIE, VARY};
use http::{HeaderMap, Method, StatusCode};

use super::Semantics;
use crate::header::CacheControl;
use crate::header::list::members;

/// Status codes that are heuristically cacheable (RFC 9110 §15.1).
pub(crate) fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

impl Semantics {
    /// Whether the response to a request may be stored (RFC 9111 §3),
    /// with this crate's stricter choices where the RFC allows a cache to
    /// decline: only GET and HEAD are stored; partial content (`206` or
    /// `Content-Range`) is passed through, not stored; `Vary: *` (which
    /// never matches, §4.1) is not stored; a `Cache-Control` with an
    /// invalid argument is not stored ("when in doubt, do not store");
    /// a shared cache stores no `Set-Cookie` unless told to.
    #[must_use]
    pub fn storable(
        &self,
        method: &Method,
        request: &HeaderMap,
        status: StatusCode,
        response: &HeaderMap,
    ) -> bool {
        if !(method == Method::GET || method == Method::HEAD) {
            return false;
        }
        // A final status the cache understands; partial content is passed through.
        if status.is_informational()
            || status == StatusCode::PARTIAL_CONTENT
            || response.contains_key(CONTENT_RANGE)
        {
            return false;
        }
        let request_cc = CacheControl::parse(request.get_all(CACHE_CONTROL));
        let cc = CacheControl::parse(response.get_all(CACHE_CONTROL));
        // §5.2.1.5, §5.2.2.5: no-store in the request or the response.
        if request_cc.no_store || cc.no_store || cc.invalid {
            return false;
        }
        if self.shared_mode() {
            // §5.2.2.7: private responses stay out of shared caches.
            if cc.private {
                return false;
            }
            // §3.5: a request with Authorization only where the response allows it.
            if request.contains_key(AUTHORIZATION)
                && !(cc.public || cc.s_maxage.is_some() || cc.must_revalidate)
            {
                return false;
            }
            if response.contains_key(SET_COOKIE) && !self.store_set_cookie {
                return false;
            }
        }
        if response
            .get_all(VARY)
            .iter()
            .any(|v| members(v.as_bytes()).any(|m| m == b"*"))
        {
            return false;
        }
        // §3: something must make it cacheable.
        cc.public
            || (cc.private && !self.shared_mode())
            || response.contains_key(EXPIRES)
            || cc.max_age.is_some()
            || (cc.s_maxage.is_some() && self.shared_mode())
            || heuristically_cacheable(status)
    }
}
