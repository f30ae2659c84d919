//! What a response's caching headers say: [`CacheDirectives`] (one
//! `Cache-Control`-style field) and [`CachePolicy`] (the fields a route
//! sets), both validated and rendered once, when built.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use http::header::CACHE_CONTROL;
use http::{HeaderName, HeaderValue};

use crate::error::{ConfigError, config_error};
use crate::header::{CDN_CACHE_CONTROL, MAX_DELTA_SECONDS};

/// The directives of one `Cache-Control` field, or of a targeted field
/// such as `CDN-Cache-Control` (RFC 9213), which shares its syntax.
/// Durations are sent in whole seconds, rounded down.
///
/// ```
/// use std::time::Duration;
/// use buttress_http::CacheDirectives;
///
/// let d = CacheDirectives::new().public().max_age(Duration::from_secs(60)).stale_while_revalidate(Duration::from_secs(30));
/// assert_eq!(d.to_string(), "public, max-age=60, stale-while-revalidate=30");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct CacheDirectives {
    max_age: Option<Duration>,
    s_maxage: Option<Duration>,
    public: bool,
    private: bool,
    no_store: bool,
    no_cache: bool,
    must_revalidate: bool,
    proxy_revalidate: bool,
    no_transform: bool,
    immutable: bool,
    stale_while_revalidate: Option<Duration>,
    stale_if_error: Option<Duration>,
}

impl CacheDirectives {
    /// No directives yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// `max-age` (RFC 9111 §5.2.2.1): fresh for `age` in every cache.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// `s-maxage` (§5.2.2.10): fresh for `age` in shared caches, which
    /// also may not serve it stale.
    pub fn s_maxage(mut self, age: Duration) -> Self {
        self.s_maxage = Some(age);
        self
    }

    /// `public` (§5.2.2.9): any cache may store it, even for a request
    /// with `Authorization`.
    pub fn public(mut self) -> Self {
        self.public = true;
        self
    }

    /// `private` (§5.2.2.7): only the user's own (private) cache may store it.
    pub fn private(mut self) -> Self {
        self.private = true;
        self
    }

    /// `no-store` (§5.2.2.5): no cache may store it.
    pub fn no_store(mut self) -> Self {
        self.no_store = true;
        self
    }

    /// `no-cache` (§5.2.2.4): caches may store it but must revalidate it
    /// before each use.
    pub fn no_cache(mut self) -> Self {
        self.no_cache = true;
        self
    }

    /// `must-revalidate` (§5.2.2.2): once stale, never served without
    /// revalidation.
    pub fn must_revalidate(mut self) -> Self {
        self.must_revalidate = true;
        self
    }

    /// `proxy-revalidate` (§5.2.2.8): `must-revalidate` for shared caches only.
    pub fn proxy_revalidate(mut self) -> Self {
        self.proxy_revalidate = true;
        self
    }

    /// `no-transform` (§5.2.2.6): intermediaries must not transform the content.
    pub fn no_transform(mut self) -> Self {
        self.no_transform = true;
        self
    }

    /// `immutable` (RFC 8246): will not change while fresh, so a client
    /// need not revalidate it on reload. For content-hashed asset names;
    /// needs [`max_age`](Self::max_age).
    pub fn immutable(mut self) -> Self {
        self.immutable = true;
        self
    }

    /// `stale-while-revalidate` (RFC 5861 §3): served stale for up to
    /// `window` while revalidated in the background.
    pub fn stale_while_revalidate(mut self, window: Duration) -> Self {
        self.stale_while_revalidate = Some(window);
        self
    }

    /// `stale-if-error` (RFC 5861 §4): served stale for up to `window`
    /// when revalidation meets an error.
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        self.stale_if_error = Some(window);
        self
    }

    /// Rejects contradictory or out-of-range directives, naming `field`
    /// (the policy setter they were given to).
    fn validate(&self, field: &'static str) -> Result<(), ConfigError> {
        let bad = |problem: String| Err(config_error(field, problem));
        if *self == Self::default() {
            return bad("has no directives".into());
        }
        if self.public && self.private {
            return bad("cannot be both public and private".into());
        }
        if self.private && self.s_maxage.is_some() {
            return bad("sets s-maxage, which only shared caches read, with private, which keeps the response out of them".into());
        }
        if self.no_store {
            let storing = [
                ("max-age", self.max_age.is_some()),
                ("s-maxage", self.s_maxage.is_some()),
                ("public", self.public),
                ("immutable", self.immutable),
                (
                    "stale-while-revalidate",
                    self.stale_while_revalidate.is_some(),
                ),
                ("stale-if-error", self.stale_if_error.is_some()),
            ];
            if let Some((name, _)) = storing.iter().find(|(_, set)| *set) {
                return bad(format!(
                    "sets no-store with {name}, which only a stored response uses"
                ));
            }
        }
        if self.immutable && self.max_age.is_none() {
            return bad(
                "sets immutable without max-age (RFC 8246: immutable holds while fresh)".into(),
            );
        }
        for (name, d) in [
            ("max-age", self.max_age),
            ("s-maxage", self.s_maxage),
            ("stale-while-revalidate", self.stale_while_revalidate),
            ("stale-if-error", self.stale_if_error),
        ] {
            if d.is_some_and(|d| d.as_secs() > MAX_DELTA_SECONDS) {
                return bad(format!("{name} is over 2^31 seconds (RFC 9111 §1.2.2)"));
            }
        }
        Ok(())
    }

    fn header_value(&self) -> HeaderValue {
        // Only tokens, digits, commas and spaces: always a valid value.
        HeaderValue::from_str(&self.to_string()).unwrap_or(HeaderValue::from_static("no-store"))
    }
}

impl std::fmt::Display for CacheDirectives {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut sep = "";
        let mut put = |f: &mut std::fmt::Formatter<'_>, d: &str, v: Option<Duration>| {
            let r = match v {
                Some(v) => write!(f, "{sep}{d}={}", v.as_secs()),
                None => write!(f, "{sep}{d}"),
            };
            sep = ", ";
            r
        };
        let flags = [
            ("public", self.public),
            ("private", self.private),
            ("no-store", self.no_store),
            ("no-cache", self.no_cache),
        ];
        for (d, on) in flags {
            if on {
                put(f, d, None)?;
            }
        }
        for (d, v) in [("max-age", self.max_age), ("s-maxage", self.s_maxage)] {
            if v.is_some() {
                put(f, d, v)?;
            }
        }
        let flags = [
            ("must-revalidate", self.must_revalidate),
            ("proxy-revalidate", self.proxy_revalidate),
            ("no-transform", self.no_transform),
            ("immutable", self.immutable),
        ];
        for (d, on) in flags {
            if on {
                put(f, d, None)?;
            }
        }
        for (d, v) in [
            ("stale-while-revalidate", self.stale_while_revalidate),
            ("stale-if-error", self.stale_if_error),
        ] {
            if v.is_some() {
                put(f, d, v)?;
            }
        }
        Ok(())
    }
}

/// The caching header fields one route (or one kind of response) gets:
/// `Cache-Control`, targeted fields (`CDN-Cache-Control`, or a named
/// target such as `Surrogate-Control`), `Vary`, and `Expires` if asked.
///
/// Built by [`CachePolicy::builder`]; every field value is validated and
/// rendered once there, so applying a policy copies prepared values
/// (cloning a policy is one reference count).
///
/// ```
/// use std::time::Duration;
/// use buttress_http::{CacheDirectives, CachePolicy};
///
/// // Browsers revalidate after a minute; the CDN keeps it for an hour.
/// let policy = CachePolicy::builder()
///     .cache_control(CacheDirectives::new().public().max_age(Duration::from_secs(60)))
///     .cdn_cache_control(CacheDirectives::new().max_age(Duration::from_secs(3600)).stale_if_error(Duration::from_secs(86400)))
///     .vary("Accept-Encoding")
///     .build()?;
/// # let _ = policy;
/// # Ok::<(), buttress_http::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct CachePolicy(pub(crate) Arc<PolicyFields>);

/// The prepared fields of a [`CachePolicy`].
#[derive(Debug)]
pub(crate) struct PolicyFields {
    /// `Cache-Control` and the targeted fields, in that order.
    pub(crate) fields: Vec<(HeaderName, HeaderValue)>,
    /// The `Vary` members, lowercase, and the value they join to.
    pub(crate) vary: Vec<HeaderName>,
    pub(crate) vary_value: Option<HeaderValue>,
    /// `Expires` = now + this (the `Cache-Control` max-age), if asked.
    pub(crate) expires_after: Option<Duration>,
    /// Replace fields the handler set.
    pub(crate) overwrite: bool,
}

impl CachePolicy {
    /// A builder with nothing set.
    pub fn builder() -> CachePolicyBuilder {
        CachePolicyBuilder::default()
    }
}

/// Builds a [`CachePolicy`]; [`build`](Self::build) validates every setting.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct CachePolicyBuilder {
    cache_control: Option<CacheDirectives>,
    cdn_cache_control: Option<CacheDirectives>,
    targeted: Vec<(String, CacheDirectives)>,
    vary: Vec<String>,
    expires: bool,
    overwrite: bool,
}

impl CachePolicyBuilder {
    /// The `Cache-Control` field (RFC 9111 §5.2). Default: none.
    pub fn cache_control(mut self, directives: CacheDirectives) -> Self {
        self.cache_control = Some(directives);
        self
    }

    /// The `CDN-Cache-Control` field (RFC 9213 §2): read by CDNs instead
    /// of `Cache-Control`, so a CDN can keep a response longer (or shorter)
    /// than browsers. Default: none.
    pub fn cdn_cache_control(mut self, directives: CacheDirectives) -> Self {
        self.cdn_cache_control = Some(directives);
        self
    }

    /// Another targeted field (RFC 9213 §2.1), e.g. `Surrogate-Control` or
    /// `Cloudflare-CDN-Cache-Control`; may be called once per field name.
    pub fn targeted(mut self, field: &str, directives: CacheDirectives) -> Self {
        self.targeted.push((field.to_owned(), directives));
        self
    }

    /// Adds `field` to `Vary` (RFC 9110 §12.5.5); `"*"` says the response
    /// varies on more than header fields. Members are merged into a `Vary`
    /// the handler set (a `Vary` is a list every layer adds to), never
    /// duplicated. Default: none.
    pub fn vary(mut self, field: &str) -> Self {
        self.vary.push(field.to_owned());
        self
    }

    /// Also sends `Expires` (RFC 9111 §5.3), `max-age` after the response,
    /// for HTTP/1.0 caches; needs a `Cache-Control` with `max-age`.
    /// Default: off (every current cache reads `max-age`, which wins).
    pub fn expires(mut self, on: bool) -> Self {
        self.expires = on;
        self
    }

    /// Replaces `Cache-Control`, targeted fields and `Expires` that the
    /// handler set. Default: off (a handler's own field wins).
    pub fn overwrite(mut self, on: bool) -> Self {
        self.overwrite = on;
        self
    }

    /// The policy.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the setter at fault: contradictory
    /// directives (public with private, no-store with max-age, immutable
    /// without max-age, s-maxage with private), an out-of-range duration,
    /// a field name that is not one (or is `Cache-Control`, or repeats),
    /// `expires` without a max-age, or a policy that sets nothing.
    pub fn build(self) -> Result<CachePolicy, ConfigError> {
        let mut fields = Vec::new();
        if let Some(d) = &self.cache_control {
            d.validate("cache_control")?;
            fields.push((CACHE_CONTROL, d.header_value()));
        }
        if let Some(d) = &self.cdn_cache_control {
            d.validate("cdn_cache_control")?;
            fields.push((CDN_CACHE_CONTROL.clone(), d.header_value()));
        }
        for (name, d) in &self.targeted {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| config_error("targeted", format!("`{name}` is not a field name")))?;
            if fields.iter().any(|(n, _)| *n == header) {
                return Err(config_error(
                    "targeted",
                    format!("`{name}` is set twice (or is Cache-Control)"),
                ));
            }
            d.validate("targeted")?;
            fields.push((header, d.header_value()));
        }
        let star = self.vary.iter().any(|v| v == "*");
        let mut vary: Vec<HeaderName> = Vec::new();
        for name in self.vary.iter().filter(|_| !star) {
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                config_error("vary", format!("`{name}` is neither a field name nor `*`"))
            })?;
            if !vary.contains(&header) {
                vary.push(header);
            }
        }
        let vary_value = if star {
            Some(HeaderValue::from_static("*"))
        } else if vary.is_empty() {
            None
        } else {
            let mut joined = String::new();
            for (i, h) in vary.iter().enumerate() {
                let _ = write!(joined, "{}{}", if i == 0 { "" } else { ", " }, h.as_str());
            }
            HeaderValue::from_str(&joined).ok()
        };
        let expires_after = match (
            self.expires,
            self.cache_control.as_ref().and_then(|d| d.max_age),
        ) {
            (false, _) => None,
            (true, Some(age)) => Some(age),
            (true, None) => {
                return Err(config_error(
                    "expires",
                    "needs a cache_control with max_age to compute the date from",
                ));
            }
        };
        if fields.is_empty() && vary_value.is_none() {
            return Err(config_error(
                "cache_control",
                "the policy sets no field: give it cache_control, a targeted field or vary",
            ));
        }
        Ok(CachePolicy(Arc::new(PolicyFields {
            fields,
            vary,
            vary_value,
            expires_after,
            overwrite: self.overwrite,
        })))
    }
}
