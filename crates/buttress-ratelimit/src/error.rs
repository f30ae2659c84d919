//! The layer's failures.

use std::error::Error;
use std::fmt;

use buttress_core::telemetry::Name;

pub use buttress_core::reject::RateLimited;

/// A request without a key, failed because the limiter was built with
/// [`OnMissingKey::Reject`](crate::OnMissingKey::Reject). Not a buttress
/// rejection: the request, not the load, is at fault (the umbrella's HTTP
/// mapping answers it as any other error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MissingKey {
    name: Name,
}

impl MissingKey {
    pub(crate) const fn new(name: Name) -> Self {
        Self { name }
    }

    /// The limiter that found no key.
    #[must_use]
    pub const fn name(&self) -> Name {
        self.name
    }
}

impl fmt::Display for MissingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate limit {:?}: the request has no key", self.name)
    }
}

impl Error for MissingKey {}
