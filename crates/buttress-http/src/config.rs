//! The [`CacheHeaders`] builder and its validated configuration.

use std::fmt;
use std::sync::Arc;

use buttress_core::telemetry::{Name, Registration, register_catalog};
use http::request::Parts;

use crate::error::{ConfigError, config_error};
use crate::handle::CacheHeaders;
use crate::policy::CachePolicy;
use crate::telemetry::{KIND, METRICS};
use crate::validators::{DebugLookup, ValidatorLookup};

/// A policy chosen per request by the user's closure.
pub(crate) type PolicyFn = Arc<dyn Fn(&Parts) -> Option<CachePolicy> + Send + Sync>;

/// The validated configuration: everything the handle needs.
pub(crate) struct Config {
    pub(crate) registration: Registration,
    pub(crate) default_policy: Option<CachePolicy>,
    /// Path prefixes, longest first, so the first match is the most specific.
    pub(crate) routes: Vec<(String, CachePolicy)>,
    pub(crate) policy_fn: Option<PolicyFn>,
    pub(crate) etag_max_bytes: u64,
    pub(crate) weak_etags: bool,
    pub(crate) hash_unbounded: bool,
    pub(crate) conditional: bool,
    pub(crate) lookup: Option<Arc<dyn ValidatorLookup>>,
}

/// Whether `path` is under `prefix` at a segment boundary: `/static`
/// covers `/static` and `/static/app.js`, not `/statics`.
fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'))
}

impl Config {
    /// Whether choosing a policy or looking up validators needs the
    /// request's parts (a closure or a lookup is configured).
    pub(crate) fn needs_parts(&self) -> bool {
        self.policy_fn.is_some() || self.lookup.is_some()
    }

    /// The policy of the most specific route covering `path`, else the
    /// default one.
    pub(crate) fn route_policy(&self, path: &str) -> Option<&CachePolicy> {
        self.routes
            .iter()
            .find(|(prefix, _)| under(path, prefix))
            .map(|(_, p)| p)
            .or(self.default_policy.as_ref())
    }

    /// The closure's policy, else [`route_policy`](Self::route_policy).
    pub(crate) fn policy_for(&self, parts: &Parts) -> Option<CachePolicy> {
        self.policy_fn
            .as_ref()
            .and_then(|f| f(parts))
            .or_else(|| self.route_policy(parts.uri.path()).cloned())
    }
}

/// Builds a [`CacheHeaders`] handle, from [`CacheHeaders::builder`]. Every
/// setter documents its default; [`build`](Self::build) validates them.
///
/// A response's policy is the [`policy_fn`](Self::policy_fn)'s answer if
/// it gives one, else the [`route`](Self::route) with the longest matching
/// path prefix, else the default [`policy`](Self::policy); a request with
/// none gets no caching fields (its ETag and conditional handling still
/// apply).
#[must_use]
pub struct CacheHeadersBuilder {
    name: Name,
    default_policy: Option<CachePolicy>,
    routes: Vec<(String, CachePolicy)>,
    policy_fn: Option<PolicyFn>,
    etag_max_bytes: u64,
    weak_etags: bool,
    hash_unbounded: bool,
    conditional: bool,
    lookup: Option<Arc<dyn ValidatorLookup>>,
}

impl fmt::Debug for CacheHeadersBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheHeadersBuilder")
            .field("name", &self.name)
            .field("default_policy", &self.default_policy)
            .field("routes", &self.routes)
            .field("policy_fn", &self.policy_fn.is_some())
            .field("etag_max_bytes", &self.etag_max_bytes)
            .field("weak_etags", &self.weak_etags)
            .field("hash_unbounded", &self.hash_unbounded)
            .field("conditional", &self.conditional)
            .field("validators", &DebugLookup(&self.lookup))
            .finish()
    }
}

/// The default [`CacheHeadersBuilder::etag_max_bytes`]: 64 KiB.
pub const DEFAULT_ETAG_MAX_BYTES: u64 = 64 << 10;

impl CacheHeadersBuilder {
    #[track_caller]
    pub(crate) fn new() -> Self {
        Self {
            name: Name::caller(),
            default_policy: None,
            routes: Vec::new(),
            policy_fn: None,
            etag_max_bytes: DEFAULT_ETAG_MAX_BYTES,
            weak_etags: true,
            hash_unbounded: false,
            conditional: true,
            lookup: None,
        }
    }

    /// The instance's name: the `name` label on its metrics. Default: the
    /// source location of the [`CacheHeaders::builder`] call
    /// ([`Name::caller`]); a second live instance of the same name is
    /// named `name#2`.
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.name = name.into();
        self
    }

    /// The policy of requests no route or closure covers. Default: none.
    pub fn policy(mut self, policy: CachePolicy) -> Self {
        self.default_policy = Some(policy);
        self
    }

    /// The policy of requests whose path is `prefix` or under it at a
    /// segment boundary (`/static` covers `/static/app.js`, not
    /// `/statics`); the longest matching prefix wins.
    pub fn route(mut self, prefix: &str, policy: CachePolicy) -> Self {
        self.routes.push((prefix.to_owned(), policy));
        self
    }

    /// Chooses a policy per request, before routes and the default
    /// (`None` falls through to them). Default: none.
    pub fn policy_fn<F>(mut self, f: F) -> Self
    where
        F: Fn(&Parts) -> Option<CachePolicy> + Send + Sync + 'static,
    {
        self.policy_fn = Some(Arc::new(f));
        self
    }

    /// The largest body hashed into a strong `ETag`. A `200` answer to a
    /// GET or HEAD without an `ETag` of its own, whose body's size hint
    /// says it is at most this long, is buffered and tagged with its
    /// XXH3-128 hash; a larger or streamed body (no upper size bound) is
    /// never buffered. `0` turns body hashing off. Default: 64 KiB
    /// ([`DEFAULT_ETAG_MAX_BYTES`]: API responses and small documents;
    /// buffering delays the first byte by the body's production time).
    pub fn etag_max_bytes(mut self, bytes: u64) -> Self {
        self.etag_max_bytes = bytes;
        self
    }

    /// For a response not hashed that has `Last-Modified` and
    /// `Content-Length` but no `ETag`, sends a weak `ETag` made of the two
    /// (`W/"<seconds>-<length>"`, as nginx and Apache derive theirs), no
    /// weaker than `Last-Modified` itself. Default: on.
    pub fn weak_etags(mut self, on: bool) -> Self {
        self.weak_etags = on;
        self
    }

    /// Also buffers and hashes bodies whose size hint has no upper bound
    /// (a compression layer's output, a stream), up to
    /// [`etag_max_bytes`](Self::etag_max_bytes): one that ends within the
    /// cap is tagged; one that runs past it is sent on untagged, what was
    /// read first. Put this layer outside tower-http's `CompressionLayer`
    /// with this on, and each encoding gets its own tag. Default: off,
    /// since a slow stream (server-sent events) would be held back until
    /// the cap fills or it ends; turn it on for routes that answer with
    /// whole documents.
    pub fn hash_unbounded(mut self, on: bool) -> Self {
        self.hash_unbounded = on;
        self
    }

    /// Evaluates conditional requests (RFC 9110 §13): `304` and `412`.
    /// Default: on.
    pub fn conditional(mut self, on: bool) -> Self {
        self.conditional = on;
        self
    }

    /// Looks up the target's validators before the handler runs (see
    /// [`ValidatorLookup`]), so failed preconditions are answered without
    /// running it. Default: none (preconditions are evaluated against the
    /// handler's response, for safe methods only).
    pub fn validators(mut self, lookup: impl ValidatorLookup) -> Self {
        self.lookup = Some(Arc::new(lookup));
        self
    }

    /// The handle.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a route prefix that does not start with `/`
    /// or appears twice (field `route`).
    pub fn build(self) -> Result<CacheHeaders, ConfigError> {
        let mut routes = self.routes;
        for (i, (prefix, _)) in routes.iter().enumerate() {
            if !prefix.starts_with('/') {
                return Err(config_error(
                    "route",
                    format!("`{prefix}` does not start with `/`"),
                ));
            }
            if routes[..i].iter().any(|(p, _)| p == prefix) {
                return Err(config_error("route", format!("`{prefix}` is given twice")));
            }
        }
        routes.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        register_catalog(METRICS);
        Ok(CacheHeaders::new(Config {
            registration: Registration::new(KIND, self.name),
            default_policy: self.default_policy,
            routes,
            policy_fn: self.policy_fn,
            etag_max_bytes: self.etag_max_bytes,
            weak_etags: self.weak_etags,
            hash_unbounded: self.hash_unbounded,
            conditional: self.conditional,
            lookup: self.lookup,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::under;

    #[test]
    fn prefixes_match_at_segment_boundaries() {
        assert!(under("/static", "/static"));
        assert!(under("/static/app.js", "/static"));
        assert!(under("/static/app.js", "/static/"));
        assert!(!under("/statics", "/static"));
        assert!(under("/anything", "/"));
    }
}
