//! The limiter's layer.

use buttress_core::classify::ErrorsAsFailures;
use tower_layer::Layer;

use crate::handle::AdaptiveLimit;
use crate::service::{AdaptiveLimitService, NoPartition};

/// Wraps services in an [`AdaptiveLimitService`] sharing one
/// [`AdaptiveLimit`].
///
/// ```
/// use buttress_limit::{AdaptiveLimit, AdaptiveLimitLayer, algorithm::Gradient2};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower::BoxError> {
/// let limit = AdaptiveLimit::builder(Gradient2::builder().build()?).name("search").build()?;
/// let svc = ServiceBuilder::new()
///     .layer(AdaptiveLimitLayer::new(limit.clone()))
///     .service(service_fn(|q: &'static str| async move { Ok::<_, std::io::Error>(q.len()) }));
/// assert_eq!(svc.oneshot("rust").await?, 4);
/// assert_eq!(limit.in_flight(), 0);
/// # Ok(())
/// # }
/// ```
///
/// # Clone
///
/// Every service this layer (or a clone of it) builds shares the same
/// limiter: one limit for all of them, as tower's
/// `GlobalConcurrencyLimitLayer` (not `ConcurrencyLimitLayer`, whose limit
/// is per service).
#[derive(Clone, Debug)]
pub struct AdaptiveLimitLayer<C = ErrorsAsFailures, P = NoPartition> {
    limit: AdaptiveLimit,
    classifier: C,
    partitioner: P,
}

impl AdaptiveLimitLayer {
    /// A layer around `limit` that counts `Err` as a drop and `Ok` as a
    /// success ([`ErrorsAsFailures`]).
    #[must_use]
    pub fn new(limit: AdaptiveLimit) -> Self {
        Self {
            limit,
            classifier: ErrorsAsFailures::new(),
            partitioner: NoPartition,
        }
    }
}

impl From<AdaptiveLimit> for AdaptiveLimitLayer {
    fn from(limit: AdaptiveLimit) -> Self {
        Self::new(limit)
    }
}

impl<C, P> AdaptiveLimitLayer<C, P> {
    /// Judges the inner service's results with `classifier`, a
    /// [`Classify`](buttress_core::classify::Classify) over its
    /// `Result<Response, Error>`: a failure feeds the algorithm a drop, a
    /// success its round-trip time, an ignored result nothing. Default:
    /// [`ErrorsAsFailures`].
    #[must_use]
    pub fn classifier<C2>(self, classifier: C2) -> AdaptiveLimitLayer<C2, P> {
        AdaptiveLimitLayer {
            limit: self.limit,
            classifier,
            partitioner: self.partitioner,
        }
    }

    /// Puts each call in the partition its key names (see
    /// [`AdaptiveLimitBuilder::partition`](crate::AdaptiveLimitBuilder::partition)); calls without a
    /// key, or whose key names no partition, have no guaranteed share.
    #[must_use]
    pub fn partition_by<P2>(self, partitioner: P2) -> AdaptiveLimitLayer<C, P2> {
        AdaptiveLimitLayer {
            limit: self.limit,
            classifier: self.classifier,
            partitioner,
        }
    }

    /// The limiter.
    #[must_use]
    pub fn limit(&self) -> &AdaptiveLimit {
        &self.limit
    }
}

impl<S, C: Clone, P: Clone> Layer<S> for AdaptiveLimitLayer<C, P> {
    type Service = AdaptiveLimitService<S, C, P>;

    fn layer(&self, inner: S) -> Self::Service {
        AdaptiveLimitService::new(
            inner,
            self.limit.clone(),
            self.classifier.clone(),
            self.partitioner.clone(),
        )
    }
}
