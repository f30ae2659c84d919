//! The state word: a breaker's state and its half-open bookkeeping in one
//! atomic, so that admission is one load (closed) or one compare-and-swap
//! (a probe).

use crate::state::State;

// The state word: state (3 bits) | probe permits left (10) | probe
// successes (10) | probe failures (10) | epoch (31). The epoch changes on
// every transition, so an outcome admitted in one period is never counted
// in another.
const STATE_MASK: u64 = 0b111;
const FIELD_BITS: u32 = 10;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;
pub(super) const PERMITS_SHIFT: u32 = 3;
pub(super) const SUCC_SHIFT: u32 = PERMITS_SHIFT + FIELD_BITS;
pub(super) const FAIL_SHIFT: u32 = SUCC_SHIFT + FIELD_BITS;
const EPOCH_SHIFT: u32 = FAIL_SHIFT + FIELD_BITS;
pub(super) const EPOCH_MASK: u64 = (1 << (64 - EPOCH_SHIFT)) - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Word(pub(super) u64);

impl Word {
    pub(super) fn new(state: State, epoch: u64, permits: u64) -> Self {
        Self(state.bits() | (permits << PERMITS_SHIFT) | ((epoch & EPOCH_MASK) << EPOCH_SHIFT))
    }
    pub(super) fn state(self) -> State {
        State::from_bits(self.0 & STATE_MASK)
    }
    pub(super) fn epoch(self) -> u64 {
        self.0 >> EPOCH_SHIFT
    }
    pub(super) fn permits(self) -> u64 {
        (self.0 >> PERMITS_SHIFT) & FIELD_MASK
    }
    pub(super) fn successes(self) -> u64 {
        (self.0 >> SUCC_SHIFT) & FIELD_MASK
    }
    pub(super) fn failures(self) -> u64 {
        (self.0 >> FAIL_SHIFT) & FIELD_MASK
    }
    pub(super) fn next(self, state: State, permits: u64) -> Self {
        Self::new(state, self.epoch().wrapping_add(1), permits)
    }
}
