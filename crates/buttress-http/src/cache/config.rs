//! The [`HttpCache`] builder and its validated configuration.

use std::fmt;
use std::time::Duration;

use buttress_cache::store::Store;
use buttress_core::telemetry::{Name, Registration, register_catalog};
use http::HeaderName;

use super::handle::HttpCache;
use super::stored::Variants;
use super::telemetry::{HTTP_CACHE_METRICS, KIND};
use crate::error::ConfigError;
use crate::semantics::{Mode, Semantics};

/// The layer name [`ConfigError`]s of the HTTP cache carry.
const LAYER: &str = "http cache";

/// The default [`HttpCacheBuilder::max_body_bytes`]: 8 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 8 << 20;

/// The default [`HttpCacheBuilder::max_variants`]: 8.
pub const DEFAULT_MAX_VARIANTS: usize = 8;

/// The default [`HttpCacheBuilder::retain_stale`]: 1 hour.
pub const DEFAULT_RETAIN_STALE: Duration = Duration::from_secs(3600);

/// The validated configuration: everything the handle needs.
pub(crate) struct Config {
    pub(crate) registration: Registration,
    pub(crate) semantics: Semantics,
    pub(crate) scheme: &'static str,
    pub(crate) max_body_bytes: u64,
    pub(crate) max_variants: usize,
    pub(crate) retain_stale: Duration,
    pub(crate) target: Option<HeaderName>,
}

/// Builds an [`HttpCache`], from [`HttpCache::builder`]. Every setter
/// documents its default; [`build`](Self::build) validates them.
#[must_use]
pub struct HttpCacheBuilder<St> {
    store: St,
    name: Name,
    mode: Mode,
    store_set_cookie: bool,
    scheme: &'static str,
    max_body_bytes: u64,
    max_variants: usize,
    retain_stale: Duration,
    target: Option<HeaderName>,
}

impl<St> fmt::Debug for HttpCacheBuilder<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpCacheBuilder")
            .field("name", &self.name)
            .field("mode", &self.mode)
            .field("store_set_cookie", &self.store_set_cookie)
            .field("scheme", &self.scheme)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_variants", &self.max_variants)
            .field("retain_stale", &self.retain_stale)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl<St> HttpCacheBuilder<St>
where
    St: Store<String, Variants>,
{
    #[track_caller]
    pub(crate) fn new(store: St) -> Self {
        Self {
            store,
            name: Name::caller(),
            mode: Mode::Shared,
            store_set_cookie: false,
            scheme: "http",
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_variants: DEFAULT_MAX_VARIANTS,
            retain_stale: DEFAULT_RETAIN_STALE,
            target: None,
        }
    }

    /// The instance name metrics are labelled with (default: the caller's
    /// file and line).
    pub fn name(mut self, name: &str) -> Self {
        self.name = Name::new(name);
        self
    }

    /// A shared cache (the default: a proxy, a gateway, a CDN node serving
    /// many users), which never stores `private` responses, honours
    /// `s-maxage` and `proxy-revalidate`, stores a response to a request
    /// with `Authorization` only when the response allows it (RFC 9111
    /// §3.5), and stores no `Set-Cookie` response unless
    /// [`store_set_cookie`](Self::store_set_cookie) says so.
    pub fn shared(mut self) -> Self {
        self.mode = Mode::Shared;
        self
    }

    /// A private cache (one user's client): stores `private` responses,
    /// ignores `s-maxage`.
    pub fn private(mut self) -> Self {
        self.mode = Mode::Private;
        self
    }

    /// Whether a shared cache stores responses that set a cookie
    /// (default: `false`, so one user's cookie never reaches another).
    pub fn store_set_cookie(mut self, on: bool) -> Self {
        self.store_set_cookie = on;
        self
    }

    /// The scheme of origin-form request targets (`/path`), which make up
    /// the effective URI with `Host` (default: `"http"`). Only `"http"`
    /// and `"https"` are accepted.
    pub fn scheme(mut self, scheme: &'static str) -> Self {
        self.scheme = scheme;
        self
    }

    /// The largest body buffered and stored (default: 8 MiB,
    /// [`DEFAULT_MAX_BODY_BYTES`]); a larger one is streamed through,
    /// never truncated, and not stored. Must not be zero.
    pub fn max_body_bytes(mut self, bytes: u64) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// How many variants (responses with different `Vary`-selected
    /// request fields) are kept per URI (default: 8,
    /// [`DEFAULT_MAX_VARIANTS`]); the oldest stored goes first. Must not
    /// be zero.
    pub fn max_variants(mut self, n: usize) -> Self {
        self.max_variants = n;
        self
    }

    /// How long a response is kept after it turned stale (beyond its
    /// stale-while-revalidate and stale-if-error windows), so it can be
    /// revalidated with a conditional request rather than fetched anew
    /// (default: 1 hour, [`DEFAULT_RETAIN_STALE`]). A store may drop it
    /// sooner to keep its bound.
    pub fn retain_stale(mut self, retain: Duration) -> Self {
        self.retain_stale = retain;
        self
    }

    /// A targeted cache-control field this shared cache honours (RFC
    /// 9213), such as [`CDN_CACHE_CONTROL`](crate::header::CDN_CACHE_CONTROL):
    /// when a response carries a valid one, its directives replace
    /// `Cache-Control`'s for storing and freshness (default: none). Only
    /// a shared cache may honour one.
    pub fn target_field(mut self, field: HeaderName) -> Self {
        self.target = Some(field);
        self
    }

    /// The cache.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: `max_body_bytes` or
    /// `max_variants` zero, a `scheme` other than `http` or `https`, a
    /// `target_field` on a private cache.
    pub fn build(self) -> Result<HttpCache<St>, ConfigError> {
        if self.max_body_bytes == 0 {
            return Err(ConfigError::new(
                LAYER,
                "max_body_bytes",
                "must be at least 1",
            ));
        }
        if self.max_variants == 0 {
            return Err(ConfigError::new(
                LAYER,
                "max_variants",
                "must be at least 1",
            ));
        }
        if !matches!(self.scheme, "http" | "https") {
            return Err(ConfigError::new(
                LAYER,
                "scheme",
                format!("must be \"http\" or \"https\", not {:?}", self.scheme),
            ));
        }
        if self.target.is_some() && self.mode == Mode::Private {
            return Err(ConfigError::new(
                LAYER,
                "target_field",
                "only a shared cache honours targeted cache-control fields (RFC 9213)",
            ));
        }
        register_catalog(HTTP_CACHE_METRICS);
        let semantics = match self.mode {
            Mode::Private => Semantics::private(),
            _ => Semantics::shared().store_set_cookie(self.store_set_cookie),
        };
        let config = Config {
            registration: Registration::new(KIND, self.name),
            semantics,
            scheme: self.scheme,
            max_body_bytes: self.max_body_bytes,
            max_variants: self.max_variants,
            retain_stale: self.retain_stale,
            target: self.target,
        };
        Ok(HttpCache::new(config, self.store))
    }
}
