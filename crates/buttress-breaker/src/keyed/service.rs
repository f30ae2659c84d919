//! The keyed breaker's service.

use std::fmt;
use std::hash::Hash;
use std::task::{Context, Poll};

use buttress_core::BoxError;
use buttress_core::classify::{Classify, ErrorsAsFailures};
use buttress_core::key::KeyExtractor;
use tower_service::Service;

use super::KeyedCircuitBreaker;
use crate::future::ResponseFuture;
use crate::handle::{Admit, Permit};

/// Guards an inner service with a breaker per request key.
///
/// The key is only known in `call`, so `poll_ready` waits for the inner
/// service and a rejected call leaves that readiness unused. A request
/// whose key cannot be extracted passes unguarded and is not counted.
#[derive(Clone)]
pub struct KeyedCircuitBreakerService<S, K, E, C = ErrorsAsFailures> {
    inner: S,
    breakers: KeyedCircuitBreaker<K>,
    extractor: E,
    classifier: C,
}

impl<S, K, E, C> KeyedCircuitBreakerService<S, K, E, C> {
    pub(super) fn new(
        inner: S,
        breakers: KeyedCircuitBreaker<K>,
        extractor: E,
        classifier: C,
    ) -> Self {
        Self {
            inner,
            breakers,
            extractor,
            classifier,
        }
    }

    /// The set of breakers.
    pub fn breakers(&self) -> &KeyedCircuitBreaker<K> {
        &self.breakers
    }

    buttress_core::define_inner_service_accessors!();
}

impl<S, K, E, C, Req> Service<Req> for KeyedCircuitBreakerService<S, K, E, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    K: Eq + Hash + Clone + fmt::Display + Send + Sync + 'static,
    E: KeyExtractor<Req, Key = K>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let Some(key) = self.extractor.extract(&req) else {
            return ResponseFuture::called(self.inner.call(req), None, self.classifier.clone());
        };
        let breaker = self.breakers.get(&key);
        let inner = breaker.inner();
        let permit = match inner.admit() {
            Err(open) => return ResponseFuture::rejected(open, self.classifier.clone()),
            Ok(Admit::Unguarded) => None,
            Ok(admit) => Some(Permit::new(breaker.token(), admit, inner.start())),
        };
        ResponseFuture::called(self.inner.call(req), permit, self.classifier.clone())
    }
}

impl<S: fmt::Debug, K: Eq + Hash + Clone, E, C: fmt::Debug> fmt::Debug
    for KeyedCircuitBreakerService<S, K, E, C>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerService")
            .field("inner", &self.inner)
            .field("breakers", &self.breakers)
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}
