//! Freshness (RFC 9111 §4.2), age (§4.2.3) and reuse (§4.2.4, §5.2.1,
//! RFC 5861).

use std::time::{Duration, SystemTime};

use http::header::{AGE, CACHE_CONTROL, DATE, EXPIRES, LAST_MODIFIED};
use http::{HeaderMap, StatusCode};

use super::Semantics;
use super::storable::heuristically_cacheable;
use crate::header::{CacheControl, MAX_DELTA_SECONDS, parse_http_date};

/// What a cache may do with a stored response for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reuse {
    /// Fresh enough for the request: serve it.
    Fresh,
    /// Stale, but the request accepts that much staleness (`max-stale`):
    /// serve it.
    Stale,
    /// Stale within the response's `stale-while-revalidate` window
    /// (RFC 5861 §3): serve it and revalidate in the background.
    StaleWhileRevalidate,
    /// Validate it with the origin first (or fetch anew).
    Revalidate,
}

/// The times of one exchange with the origin, for the age calculation of
/// RFC 9111 §4.2.3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// When the request was sent (`request_time`).
    pub request_time: SystemTime,
    /// When the response was received (`response_time`).
    pub response_time: SystemTime,
    /// The response's `Date` (`date_value`), if valid.
    pub date: Option<SystemTime>,
    /// The response's `Age` (`age_value`): zero when absent, 2^31 seconds
    /// when present but invalid (so the response is judged stale rather
    /// than fresher than it is).
    pub age: Duration,
}

fn one_date(headers: &HeaderMap, name: http::HeaderName) -> Option<SystemTime> {
    let mut all = headers.get_all(name).iter();
    let first = all.next()?;
    if all.next().is_some() {
        return None;
    }
    parse_http_date(first.as_bytes())
}

impl Timing {
    /// The timing of a response received at `response_time` to a request
    /// sent at `request_time`, reading its `Date` and `Age`.
    #[must_use]
    pub fn new(request_time: SystemTime, response_time: SystemTime, response: &HeaderMap) -> Self {
        let age = match response.get(AGE) {
            None => Duration::ZERO,
            Some(v) => crate::header::delta_seconds_of(v.as_bytes())
                .unwrap_or(Duration::from_secs(MAX_DELTA_SECONDS)),
        };
        Self {
            request_time,
            response_time,
            date: one_date(response, DATE),
            age,
        }
    }

    /// `corrected_initial_age` (§4.2.3): how old the response was when it
    /// was received, the larger of what its `Date` says and what its `Age`
    /// plus the round trip says.
    #[must_use]
    pub fn initial_age(&self) -> Duration {
        let apparent = self
            .date
            .and_then(|date| self.response_time.duration_since(date).ok())
            .unwrap_or(Duration::ZERO);
        let delay = self
            .response_time
            .duration_since(self.request_time)
            .unwrap_or(Duration::ZERO);
        apparent.max(self.age.saturating_add(delay))
    }

    /// `current_age` (§4.2.3): the initial age plus the time the response
    /// has been resident in the cache (measured by the caller's clock).
    #[must_use]
    pub fn current_age(&self, resident: Duration) -> Duration {
        self.initial_age().saturating_add(resident)
    }
}

impl Semantics {
    /// `freshness_lifetime` (§4.2.1): `s-maxage` (shared caches), else
    /// `max-age`, else `Expires` minus `Date` (or `received` without a
    /// `Date`), else the heuristic of §4.2.2 — 10 % of the time since
    /// `Last-Modified` — for heuristically cacheable status codes and
    /// `public` responses; zero otherwise. An invalid `Cache-Control`
    /// argument, an invalid `Expires` (such as `0`) or several `Expires`
    /// lines make the response stale (§4.2.1, §5.3).
    #[must_use]
    pub fn freshness_lifetime(
        &self,
        status: StatusCode,
        response: &HeaderMap,
        received: SystemTime,
    ) -> Duration {
        let cc = CacheControl::parse(response.get_all(CACHE_CONTROL));
        if cc.invalid {
            return Duration::ZERO;
        }
        if let (Some(s), true) = (cc.s_maxage, self.shared_mode()) {
            return s;
        }
        if let Some(age) = cc.max_age {
            return age;
        }
        let date = one_date(response, DATE).unwrap_or(received);
        if response.contains_key(EXPIRES) {
            return one_date(response, EXPIRES)
                .and_then(|expires| expires.duration_since(date).ok())
                .unwrap_or(Duration::ZERO);
        }
        if (heuristically_cacheable(status) || cc.public)
            && let Some(modified) = one_date(response, LAST_MODIFIED)
        {
            return date.duration_since(modified).unwrap_or(Duration::ZERO) / 10;
        }
        Duration::ZERO
    }

    /// Whether a stored response with these directives, `lifetime` and
    /// `age` may answer a request with `request` directives without
    /// revalidation (§4.2.4, §5.2.1, RFC 5861 §3).
    #[must_use]
    pub fn reuse(
        &self,
        request: &CacheControl,
        response: &CacheControl,
        lifetime: Duration,
        age: Duration,
    ) -> Reuse {
        // §5.2.2.4 / §5.2.1.4: no-cache, either side.
        if response.no_cache || request.no_cache {
            return Reuse::Revalidate;
        }
        // §5.2.1.1: the request's max-age bounds the age.
        if request.max_age.is_some_and(|max| age > max) {
            return Reuse::Revalidate;
        }
        if age < lifetime {
            // §5.2.1.3: fresh for at least min-fresh more.
            return match request.min_fresh {
                Some(min) if lifetime - age < min => Reuse::Revalidate,
                _ => Reuse::Fresh,
            };
        }
        if self.stale_forbidden(response) {
            return Reuse::Revalidate;
        }
        let staleness = age - lifetime;
        match request.max_stale {
            // §5.2.1.2: any staleness, or up to the argument.
            Some(None) => return Reuse::Stale,
            Some(Some(max)) if staleness <= max => return Reuse::Stale,
            _ => {}
        }
        if response
            .stale_while_revalidate
            .is_some_and(|window| staleness <= window)
        {
            return Reuse::StaleWhileRevalidate;
        }
        Reuse::Revalidate
    }

    /// Whether a stale response may answer when revalidation meets an
    /// error (RFC 5861 §4: within the response's or the request's
    /// `stale-if-error`), unless a directive forbids serving it stale.
    #[must_use]
    pub fn stale_if_error(
        &self,
        request: &CacheControl,
        response: &CacheControl,
        lifetime: Duration,
        age: Duration,
    ) -> bool {
        if self.stale_forbidden(response) || response.no_cache {
            return false;
        }
        let staleness = age.saturating_sub(lifetime);
        let window = request.stale_if_error.or(response.stale_if_error);
        window.is_some_and(|w| staleness <= w)
    }

    /// §4.2.4: `must-revalidate`, and in a shared cache `proxy-revalidate`
    /// and `s-maxage`, forbid serving the response stale.
    fn stale_forbidden(&self, response: &CacheControl) -> bool {
        response.must_revalidate
            || (self.shared_mode() && (response.proxy_revalidate || response.s_maxage.is_some()))
    }
}
