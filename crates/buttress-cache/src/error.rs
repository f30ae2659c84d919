//! The cache's own errors.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use buttress_core::reject::DeadlineExceeded;
use buttress_core::telemetry::Name;

/// A backend error handed to a coalesced waiter: several callers waited on
/// one load and it failed, so each gets this wrapper around the one shared
/// error. [`inner`](Self::inner) (or `source()`) gives the backend's error
/// for `downcast_ref`. A caller whose load had no waiter gets the
/// backend's error itself.
#[derive(Clone)]
pub struct CoalescedError {
    inner: Arc<dyn Error + Send + Sync>,
}

impl CoalescedError {
    pub(crate) fn new(inner: Arc<dyn Error + Send + Sync>) -> Self {
        Self { inner }
    }

    /// The backend's error.
    #[must_use]
    pub fn inner(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.inner
    }
}

impl fmt::Debug for CoalescedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CoalescedError").field(&self.inner).finish()
    }
}

impl fmt::Display for CoalescedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cache load failed: {}", self.inner)
    }
}

impl Error for CoalescedError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.inner)
    }
}

/// A load did not finish within the cache's
/// [`load_timeout`](crate::CacheBuilder::load_timeout): the backend call (or
/// the store's write of its result) was dropped, the key freed so that
/// the next request asks the backend again, and every caller waiting on
/// that load got this error (or a stale value, under stale-if-error). A
/// caller also gets it when it has itself waited `load_timeout` for a
/// load another caller leads.
///
/// Its [`source`](Error::source) is a
/// [`DeadlineExceeded`](buttress_core::reject::DeadlineExceeded) naming
/// the cache, so [`rejection`](buttress_core::reject::rejection) finds it
/// as a deadline (the shared HTTP and gRPC mappings answer 504 and
/// `DEADLINE_EXCEEDED`), and a retry layer does not send the request
/// again.
///
/// ```
/// # async fn check(err: tower::BoxError) {
/// use buttress_cache::LoadTimedOut;
/// use buttress_core::reject::{RejectionKind, rejection};
///
/// if let Some(timed_out) = err.downcast_ref::<LoadTimedOut>() {
///     eprintln!("{timed_out}; the next request asks the backend again");
///     let r = rejection(&err).unwrap();
///     assert_eq!(r.kind(), RejectionKind::DeadlineExceeded);
///     assert_eq!(r.name(), timed_out.name());
/// }
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct LoadTimedOut {
    deadline: DeadlineExceeded,
    after: Duration,
}

impl LoadTimedOut {
    pub(crate) fn new(cache: Name, after: Duration) -> Self {
        Self {
            deadline: DeadlineExceeded::new(cache),
            after,
        }
    }

    /// The name of the cache whose load timed out.
    #[must_use]
    pub fn name(&self) -> Name {
        self.deadline.name()
    }

    /// The load timeout that ran out.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.after
    }
}

impl fmt::Display for LoadTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cache `{}`: load did not finish within its {:?} load timeout",
            self.name(),
            self.after
        )
    }
}

impl Error for LoadTimedOut {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.deadline)
    }
}

pub use buttress_core::ConfigError;

/// A [`ConfigError`] for this crate's builders.
pub(crate) fn config_error(field: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::new("cache", field, problem)
}
