//! [`LimitChange`]: what the limit-change listener is told.

use std::sync::Arc;

use buttress_core::telemetry::Name;
use buttress_core::time::Instant;

use crate::algorithm::Sample;

/// The listener set with [`on_limit_change`](crate::AdaptiveLimitBuilder::on_limit_change).
pub(crate) type Listener = Arc<dyn Fn(&LimitChange) + Send + Sync>;

/// A change of the limit, passed to the
/// [`on_limit_change`](crate::AdaptiveLimitBuilder::on_limit_change) listener.
#[derive(Clone, Debug)]
pub struct LimitChange {
    pub(crate) name: Name,
    pub(crate) from: u32,
    pub(crate) to: u32,
    pub(crate) at: Instant,
    pub(crate) sample: Sample,
}

impl LimitChange {
    /// The limiter's name (its effective name: see
    /// [`AdaptiveLimit::name`](crate::AdaptiveLimit::name)).
    #[must_use]
    pub fn name(&self) -> Name {
        self.name
    }

    /// The limit before the change.
    #[must_use]
    pub fn from(&self) -> u32 {
        self.from
    }

    /// The limit after the change.
    #[must_use]
    pub fn to(&self) -> u32 {
        self.to
    }

    /// When the window that caused it closed.
    #[must_use]
    pub fn at(&self) -> Instant {
        self.at
    }

    /// The window's sample that the algorithm was fed.
    #[must_use]
    pub fn sample(&self) -> &Sample {
        &self.sample
    }
}
