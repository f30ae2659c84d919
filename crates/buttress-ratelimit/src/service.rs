//! The service.

use std::fmt;
use std::hash::Hash;
use std::task::{Context, Poll};

use buttress_core::BoxError;
use buttress_core::key::KeyExtractor;
use tower_service::Service;

use crate::config::OnMissingKey;
use crate::error::MissingKey;
use crate::fields::Fields;
use crate::future::ResponseFuture;
use crate::handle::RateLimiter;

/// The rate-limited service: see [`RateLimitLayer`](crate::RateLimitLayer).
///
/// A request over its key's quota fails with
/// [`RateLimited`](crate::RateLimited) without reaching the inner service.
/// In process the decision is taken in `call`; shared through Redis it is
/// taken by the response future, which then calls the inner service (the
/// service readied by `poll_ready` moves into the future, a clone takes
/// its place: tower's `mem::replace` pattern, so `S: Clone`).
pub struct RateLimit<S, K, X, H> {
    inner: S,
    limiter: RateLimiter<K>,
    extractor: X,
    fields: H,
}

impl<S, K, X, H> RateLimit<S, K, X, H> {
    pub(crate) fn new(inner: S, limiter: RateLimiter<K>, extractor: X, fields: H) -> Self {
        Self {
            inner,
            limiter,
            extractor,
            fields,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the layer's.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The limiter.
    pub fn limiter(&self) -> &RateLimiter<K> {
        &self.limiter
    }
}

impl<S: Clone, K, X: Clone, H: Clone> Clone for RateLimit<S, K, X, H> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            limiter: self.limiter.clone(),
            extractor: self.extractor.clone(),
            fields: self.fields.clone(),
        }
    }
}

impl<S: fmt::Debug, K, X, H> fmt::Debug for RateLimit<S, K, X, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl<S, K, X, H, Req> Service<Req> for RateLimit<S, K, X, H>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    X: KeyExtractor<Req, Key = K>,
    K: Eq + Hash + Clone + Send + Sync + 'static,
    H: Fields<S::Response> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, S, Req, H>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let fields = self.fields.clone();
        let Some(key) = self.extractor.extract(&req) else {
            return match self.limiter.on_missing_key() {
                OnMissingKey::Reject => {
                    ResponseFuture::failed(Box::new(MissingKey::new(self.limiter.name())), fields)
                }
                _ => ResponseFuture::calling(self.inner.call(req), None, fields),
            };
        };
        if !self.limiter.is_shared() {
            let d = self.limiter.check_local(&key);
            return if d.is_allowed() {
                ResponseFuture::calling(self.inner.call(req), Some(d), fields)
            } else {
                ResponseFuture::failed(Box::new(d.rejection()), fields)
            };
        }
        let limiter = self.limiter.clone();
        let decide = Box::pin(async move { limiter.check(&key).await });
        let clone = self.inner.clone();
        let svc = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::deciding(decide, svc, req, fields)
    }
}
