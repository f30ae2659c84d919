//! What one decision says.

use std::time::Duration;

use buttress_core::reject::RateLimited;
use buttress_core::telemetry::Name;

use crate::quota::Quota;

/// The verdict on one request: admitted or not, and what the key has left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub(crate) name: Name,
    pub(crate) quota: Quota,
    pub(crate) allowed: bool,
    /// Admitted: the time until the key's whole burst is back (tat − now).
    /// Rejected: the wait until the next request is admitted.
    pub(crate) after_ns: u64,
}

impl Decision {
    pub(crate) fn from_gcra(name: Name, quota: Quota, now: u64, r: Result<u64, u64>) -> Self {
        match r {
            Ok(tat) => Self {
                name,
                quota,
                allowed: true,
                after_ns: tat.saturating_sub(now),
            },
            Err(wait) => Self {
                name,
                quota,
                allowed: false,
                after_ns: wait,
            },
        }
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn allow_all(name: Name, quota: Quota) -> Self {
        Self {
            name,
            quota,
            allowed: true,
            after_ns: 0,
        }
    }

    /// Whether the request is admitted.
    #[must_use]
    pub const fn is_allowed(&self) -> bool {
        self.allowed
    }

    /// The quota the key was judged by.
    #[must_use]
    pub const fn quota(&self) -> Quota {
        self.quota
    }

    /// Rejected: the wait until the key's next request is admitted;
    /// admitted: zero.
    #[must_use]
    pub const fn retry_after(&self) -> Duration {
        if self.allowed {
            Duration::ZERO
        } else {
            Duration::from_nanos(self.after_ns)
        }
    }

    /// How many more requests the key may make right now.
    #[must_use]
    pub fn remaining(&self) -> u32 {
        let tau = self.quota.tau_ns();
        if !self.allowed || self.after_ns > tau {
            return 0;
        }
        let more = (tau - self.after_ns) / self.quota.interval_ns() + 1;
        u32::try_from(more).unwrap_or(u32::MAX)
    }

    /// The time until the key has its whole burst again (zero when
    /// rejected: see [`retry_after`](Self::retry_after)).
    #[must_use]
    pub const fn reset(&self) -> Duration {
        if self.allowed {
            Duration::from_nanos(self.after_ns)
        } else {
            Duration::ZERO
        }
    }

    /// The rejection for this decision.
    #[must_use]
    pub const fn rejection(&self) -> RateLimited {
        RateLimited::new(self.name, self.retry_after())
    }
}
