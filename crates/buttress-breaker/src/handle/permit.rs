//! [`Permit`]: one admitted call, until its outcome is recorded.

use std::sync::Arc;

use buttress_core::classify::Outcome;
use buttress_core::time::Instant;

use super::{Admit, Token};

/// Permission for one call outside tower (from
/// [`CircuitBreaker::try_acquire`](crate::CircuitBreaker::try_acquire)). Report its outcome with
/// [`record`](Self::record); dropping it unrecorded counts as a cancelled
/// call (ignored, and a half-open probe's permit goes back).
#[derive(Debug)]
pub struct Permit {
    token: Arc<Token>,
    admit: Admit,
    start: Option<Instant>,
    done: bool,
}

impl Permit {
    pub(crate) fn new(token: Arc<Token>, admit: Admit, start: Option<Instant>) -> Self {
        Self {
            token,
            admit,
            start,
            done: false,
        }
    }

    /// Records the call's outcome.
    #[inline]
    pub fn record(mut self, outcome: Outcome) {
        self.done = true;
        self.token.inner.complete(self.admit, outcome, self.start);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done {
            self.token
                .inner
                .complete(self.admit, Outcome::Ignored, None);
        }
    }
}
