//! Time helpers driven by tokio's clock.
//!
//! Every buttress layer reads time through [`tokio::time::Instant`], so a
//! test with `#[tokio::test(start_paused = true)]` and
//! [`tokio::time::advance`](https://docs.rs/tokio/latest/tokio/time/fn.advance.html) drives breakers, budgets and caches without a
//! real sleep.

use std::time::Duration;

pub use tokio::time::Instant;

/// A fixed origin that turns instants into `u64` nanoseconds, so a time can
/// live in an atomic.
///
/// Instants before the origin map to 0; durations saturate at `u64::MAX`
/// nanoseconds (about 584 years).
///
/// ```
/// use std::time::Duration;
/// use buttress_core::time::Origin;
///
/// let origin = Origin::now();
/// let later = origin.instant() + Duration::from_millis(1500);
/// assert_eq!(origin.nanos(later), 1_500_000_000);
/// assert_eq!(origin.to_instant(1_500_000_000), later);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    at: Instant,
}

impl Origin {
    /// An origin at the current instant of tokio's clock.
    #[must_use]
    pub fn now() -> Self {
        Self { at: Instant::now() }
    }

    /// An origin at the given instant.
    #[must_use]
    pub const fn at(at: Instant) -> Self {
        Self { at }
    }

    /// The origin's instant.
    #[must_use]
    pub const fn instant(&self) -> Instant {
        self.at
    }

    /// Nanoseconds from the origin to `t` (0 if `t` is earlier).
    #[must_use]
    pub fn nanos(&self, t: Instant) -> u64 {
        saturating_nanos(t.saturating_duration_since(self.at))
    }

    /// Nanoseconds from the origin to now.
    #[must_use]
    pub fn elapsed_nanos(&self) -> u64 {
        self.nanos(Instant::now())
    }

    /// The instant `nanos` after the origin.
    #[must_use]
    pub fn to_instant(&self, nanos: u64) -> Instant {
        self.at + Duration::from_nanos(nanos)
    }
}

/// A duration as `u64` nanoseconds, saturating.
#[must_use]
pub fn saturating_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paused_time_drives_the_origin() {
        let origin = Origin::now();
        assert_eq!(origin.elapsed_nanos(), 0);
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(origin.elapsed_nanos(), 3_000_000_000);
        assert_eq!(
            origin.nanos(origin.instant() - Duration::from_secs(1)),
            0,
            "earlier instants clamp to the origin"
        );
    }
}
