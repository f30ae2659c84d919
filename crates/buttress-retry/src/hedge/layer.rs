//! [`HedgeLayer`].

use buttress_core::classify::ErrorsAsFailures;
use tower_layer::Layer;

use super::handle::HedgePolicy;
use super::service::HedgeService;
use crate::replay::CloneRequest;

/// Wraps services in a [`HedgeService`] driven by one [`HedgePolicy`].
///
/// # Clone
///
/// Every service this layer (or a clone of it) builds shares the policy's
/// latency histogram, budget and counts: one dependency, one policy.
#[derive(Debug)]
pub struct HedgeLayer<C = ErrorsAsFailures, R = CloneRequest> {
    policy: HedgePolicy<C, R>,
}

impl<C, R> Clone for HedgeLayer<C, R> {
    fn clone(&self) -> Self {
        Self {
            policy: self.policy.clone(),
        }
    }
}

impl<C, R> HedgeLayer<C, R> {
    /// A layer hedging by `policy`.
    #[must_use]
    pub fn new(policy: HedgePolicy<C, R>) -> Self {
        Self { policy }
    }

    /// The policy.
    #[must_use]
    pub fn policy(&self) -> &HedgePolicy<C, R> {
        &self.policy
    }
}

impl<C, R> From<HedgePolicy<C, R>> for HedgeLayer<C, R> {
    fn from(policy: HedgePolicy<C, R>) -> Self {
        Self::new(policy)
    }
}

impl<S, C, R> Layer<S> for HedgeLayer<C, R> {
    type Service = HedgeService<S, C, R>;

    fn layer(&self, inner: S) -> Self::Service {
        HedgeService::new(inner, self.policy.clone())
    }
}
