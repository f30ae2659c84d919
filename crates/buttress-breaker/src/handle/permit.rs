//! [`Permit`]: one admitted call, until its outcome is recorded.

use std::sync::Arc;

use buttress_core::classify::Outcome;

use super::{Admit, Start, Token};

/// Permission for one call outside tower (from
/// [`CircuitBreaker::try_acquire`](crate::CircuitBreaker::try_acquire)).
/// Report its outcome with [`record`](Self::record); dropping it
/// unrecorded counts as a cancelled call (ignored, and a half-open probe's
/// permit goes back).
#[derive(Debug)]
pub struct Permit {
    token: Arc<Token>,
    /// The admission, packed ([`Admit::pack`]); [`Admit::DONE`] once
    /// recorded. Whole words only: a future holding a permit is moved
    /// with word-sized copies, which a byte-sized field would stall.
    admit: u64,
    start: Start,
}

impl Permit {
    pub(crate) fn new(token: Arc<Token>, admit: Admit, start: Start) -> Self {
        Self {
            token,
            admit: admit.pack(),
            start,
        }
    }

    /// Records the call's outcome.
    #[inline]
    pub fn record(mut self, outcome: Outcome) {
        self.finish(outcome);
    }

    /// Records the call's outcome, leaving nothing for `drop` to record.
    /// The response future records through this, in place: taking the
    /// permit out of the future would copy it.
    #[inline]
    pub(crate) fn finish(&mut self, outcome: Outcome) {
        let admit = std::mem::replace(&mut self.admit, Admit::DONE);
        if admit != Admit::DONE {
            self.token
                .inner
                .complete(Admit::unpack(admit), outcome, self.start);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.admit != Admit::DONE {
            self.token
                .inner
                .complete(Admit::unpack(self.admit), Outcome::Ignored, Start::NONE);
        }
    }
}
