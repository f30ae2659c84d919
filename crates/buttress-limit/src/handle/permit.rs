//! [`Permit`]: one admitted call's hold on the limit.

use std::fmt;
use std::sync::Arc;

use buttress_core::classify::Outcome;

use super::inner::Inner;

/// A per-stripe handle on the shared limiter. A call's permit holds one, so
/// threads clone and drop different reference counts instead of one.
#[repr(align(128))]
pub(crate) struct Token {
    pub(super) inner: Arc<Inner>,
    pub(super) stripe: usize,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token").finish_non_exhaustive()
    }
}

/// Permission for one call, released when recorded or dropped.
///
/// From [`AdaptiveLimit::try_acquire`](crate::AdaptiveLimit::try_acquire)
/// (the layer's futures hold one too). Report its outcome with
/// [`record`](Self::record); dropping it unrecorded releases it as an
/// ignored (cancelled) call.
pub struct Permit {
    // `None` once recorded (an 8-byte store: no flag byte for a later wide
    // load to trip over).
    pub(super) token: Option<Arc<Token>>,
    pub(super) start: u64,
    pub(super) in_flight: u32,
    pub(super) partition: usize,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl Permit {
    /// Records the call's outcome and releases the permit: a success feeds
    /// its round-trip time to the window, a failure counts as a drop, an
    /// ignored call only releases.
    #[inline]
    pub fn record(mut self, outcome: Outcome) {
        self.finish(outcome);
    }

    /// Records the outcome and releases, once.
    #[inline]
    pub(crate) fn finish(&mut self, outcome: Outcome) {
        if let Some(token) = self.token.take() {
            token.inner.complete(
                token.stripe,
                self.start,
                self.in_flight,
                self.partition,
                outcome,
            );
        }
    }
}

impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        self.finish(Outcome::Ignored);
    }
}
