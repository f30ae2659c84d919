//! [`RetryLayer`].

use buttress_core::classify::ErrorsAsFailures;
use tower_layer::Layer;

use crate::handle::RetryPolicy;
use crate::replay::CloneRequest;
use crate::service::RetryService;

/// Wraps services in a [`RetryService`] driven by one [`RetryPolicy`].
///
/// ```
/// use buttress_retry::{RetryLayer, RetryPolicy};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), tower::BoxError> {
/// let policy = RetryPolicy::builder().name("users").build()?;
/// let svc = ServiceBuilder::new()
///     .layer(RetryLayer::new(policy.clone()))
///     .service(service_fn(|id: u32| async move { Ok::<_, std::io::Error>(id + 1) }));
/// assert_eq!(svc.oneshot(41).await?, 42);
/// assert_eq!(policy.snapshot().retries, 0);
/// # Ok(())
/// # }
/// ```
///
/// # Clone
///
/// Every service this layer (or a clone of it) builds shares the policy's
/// budget, random source and counts: one dependency, one policy.
#[derive(Debug)]
pub struct RetryLayer<C = ErrorsAsFailures, R = CloneRequest> {
    policy: RetryPolicy<C, R>,
}

impl<C, R> Clone for RetryLayer<C, R> {
    fn clone(&self) -> Self {
        Self {
            policy: self.policy.clone(),
        }
    }
}

impl<C, R> RetryLayer<C, R> {
    /// A layer retrying by `policy`.
    #[must_use]
    pub fn new(policy: RetryPolicy<C, R>) -> Self {
        Self { policy }
    }

    /// The policy.
    #[must_use]
    pub fn policy(&self) -> &RetryPolicy<C, R> {
        &self.policy
    }
}

impl<C, R> From<RetryPolicy<C, R>> for RetryLayer<C, R> {
    fn from(policy: RetryPolicy<C, R>) -> Self {
        Self::new(policy)
    }
}

impl<S, C, R> Layer<S> for RetryLayer<C, R> {
    type Service = RetryService<S, C, R>;

    fn layer(&self, inner: S) -> Self::Service {
        RetryService::new(inner, self.policy.clone())
    }
}
