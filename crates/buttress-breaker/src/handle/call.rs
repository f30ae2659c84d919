//! What a call does to the breaker: admission, the readiness a service's
//! `poll_ready` reports, and the recording of its outcome. The closed path
//! here is lock-free: one atomic load to admit, one per-thread `fetch_add`
//! to record; a probe takes its permit with a compare-and-swap. Only a
//! state change (see `transition`) takes the breaker's mutex.

use std::sync::atomic::Ordering;
use std::time::Duration;

use buttress_core::classify::Outcome;

use super::Inner;
use super::word::{FAIL_SHIFT, PERMITS_SHIFT, SUCC_SHIFT, Word};
use crate::config::Config;
use crate::error::CircuitOpen;
use crate::state::{State, TransitionReason};
use crate::window::{Tally, Trip};

/// What admission granted a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Closed: count the outcome in the window if still in this epoch.
    Closed(u64),
    /// Half-open probe: its outcome decides (or its permit goes back).
    Probe(u64),
    /// Forced closed: pass, count nothing.
    Unguarded,
}

impl Admit {
    const KIND: u64 = 3 << 62;
    const PROBE: u64 = 1 << 62;
    const UNGUARDED: u64 = 2 << 62;
    /// What a recorded [`Permit`](super::Permit) holds: nothing left to record.
    pub(crate) const DONE: u64 = 3 << 62;

    /// One word (an epoch has 31 bits), so a permit is three words and
    /// moves as such.
    pub(crate) fn pack(self) -> u64 {
        match self {
            Self::Closed(epoch) => epoch,
            Self::Probe(epoch) => epoch | Self::PROBE,
            Self::Unguarded => Self::UNGUARDED,
        }
    }

    /// The admission `pack` made `bits` from (not [`DONE`](Self::DONE)).
    pub(crate) fn unpack(bits: u64) -> Self {
        match bits & Self::KIND {
            0 => Self::Closed(bits),
            Self::PROBE => Self::Probe(bits & !Self::KIND),
            _ => Self::Unguarded,
        }
    }
}

/// A call's start on the breaker's clock, when slow calls are timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Start(u64);

impl Start {
    /// Not timed.
    pub(crate) const NONE: Self = Self(u64::MAX);
}

impl Inner {
    /// The call's start time, read only when slow calls are tracked.
    #[inline]
    pub(crate) fn start(&self) -> Start {
        if self.config.slow_call_nanos.is_some() {
            Start(self.now())
        } else {
            Start::NONE
        }
    }

    /// Decides whether a call may go ahead.
    #[inline]
    pub(crate) fn admit(&self) -> Result<Admit, CircuitOpen> {
        loop {
            let w = self.word();
            match w.state() {
                State::Closed => return Ok(Admit::Closed(w.epoch())),
                State::ForcedClosed => return Ok(Admit::Unguarded),
                State::ForcedOpen => return Err(self.reject(None)),
                State::Open => {
                    let now = self.now();
                    let until = self.open_until.load(Ordering::Acquire);
                    if now < until {
                        return Err(self.reject(Some(Duration::from_nanos(until - now))));
                    }
                    self.half_open(w);
                }
                State::HalfOpen => {
                    if w.permits() == 0 {
                        if self.half_open_expired(w) {
                            continue;
                        }
                        return Err(self.reject(None));
                    }
                    let taken = Word(w.0 - (1 << PERMITS_SHIFT));
                    if self
                        .word
                        .0
                        .compare_exchange_weak(w.0, taken.0, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        return Ok(Admit::Probe(w.epoch()));
                    }
                }
            }
        }
    }

    /// Whether a call arriving now would be admitted: `Err` with the time
    /// until the next probe (when known) if not. Takes no probe permit and
    /// counts nothing: a service's `poll_ready` asks this, and its `call`
    /// takes the decision with [`admit`](Self::admit), or rejects with
    /// [`reject`](Self::reject) if this said no (one clock read per
    /// rejection, as in `admit`).
    #[inline]
    pub(crate) fn readiness(&self) -> Result<(), Option<Duration>> {
        let w = self.word();
        match w.state() {
            State::Closed | State::ForcedClosed => Ok(()),
            State::ForcedOpen => Err(None),
            State::Open => {
                let now = self.now();
                let until = self.open_until.load(Ordering::Acquire);
                if now >= until {
                    Ok(())
                } else {
                    Err(Some(Duration::from_nanos(until - now)))
                }
            }
            State::HalfOpen => {
                if w.permits() > 0 {
                    return Ok(());
                }
                // No probe is free now. Once expired, the breaker has
                // re-opened: say when its next probe is due.
                if self.half_open_expired(w) {
                    return self.readiness();
                }
                Err(None)
            }
        }
    }

    /// For a half-open period `w` with every probe out: if it has lasted
    /// `half_open_max_wait`, its probes are taken as failed and the breaker
    /// re-opens. Returns whether the period is over.
    #[cold]
    fn half_open_expired(&self, w: Word) -> bool {
        let since = self.state_since.load(Ordering::Acquire);
        if self.now().saturating_sub(since) < self.config.half_open_max_wait_nanos {
            return false;
        }
        self.trip(w, TransitionReason::ProbesTimedOut);
        // Whoever moved first, this period is over.
        true
    }

    /// Counts a rejection and builds its error.
    #[cold]
    pub(crate) fn reject(&self, retry_after: Option<Duration>) -> CircuitOpen {
        self.window.tally(Tally::Rejected);
        CircuitOpen::new(self.name, retry_after)
    }

    /// Counts a call the window does not record: by outcome (`Some(true)`
    /// for a failure, `None` for ignored), and as slow if it was.
    fn tally_call(&self, failure: Option<bool>, slow: bool) {
        self.window.tally(match failure {
            Some(false) => Tally::Success,
            Some(true) => Tally::Failure,
            None => Tally::Ignored,
        });
        if slow {
            self.window.tally(Tally::Slow);
        }
    }

    /// Records a finished (or abandoned) call. A call the window records
    /// is counted by the window alone; every other one in the tally.
    #[inline]
    pub(crate) fn complete(&self, admit: Admit, outcome: Outcome, start: Start) {
        let failure = match outcome {
            Outcome::Success => Some(false),
            Outcome::Failure => Some(true),
            _ => None,
        };
        let slow = match self.config.slow_call_nanos {
            Some(limit) if start != Start::NONE && failure.is_some() => {
                self.now().saturating_sub(start.0) >= limit
            }
            _ => false,
        };
        match (admit, failure) {
            (Admit::Closed(epoch), Some(failure)) => self.complete_closed(epoch, failure, slow),
            (Admit::Probe(epoch), _) => {
                self.tally_call(failure, slow);
                self.complete_probe(epoch, outcome, slow);
            }
            _ => self.tally_call(failure, slow),
        }
    }

    #[inline]
    fn complete_closed(&self, epoch: u64, failure: bool, slow: bool) {
        let w = self.word();
        if w.state() != State::Closed || w.epoch() != epoch {
            // Admitted in an earlier period: not part of this window.
            self.tally_call(Some(failure), slow);
            return;
        }
        if let Some(limit) = self.config.consecutive_failures {
            if failure {
                let n = self.consecutive.0.fetch_add(1, Ordering::AcqRel) + 1;
                if n >= limit {
                    self.tally_call(Some(true), slow);
                    self.trip(w, TransitionReason::ConsecutiveFailures);
                    return;
                }
            } else if self.consecutive.0.load(Ordering::Relaxed) != 0 {
                self.consecutive.0.store(0, Ordering::Relaxed);
            }
        }
        let now = if self.window.needs_clock() {
            self.now()
        } else {
            0
        };
        if let Some(at) = self.window.record(failure, slow, now)
            && let Some(trip) = self.window.should_trip(at, &self.config)
        {
            let reason = match trip {
                Trip::FailureRate => TransitionReason::FailureRate,
                Trip::SlowCallRate => TransitionReason::SlowCallRate,
            };
            self.trip(w, reason);
        }
    }

    fn complete_probe(&self, epoch: u64, outcome: Outcome, slow: bool) {
        let probes = u64::from(self.config.half_open_probes);
        // Failures among the probes that reopen the breaker.
        let reopen_at = Config::needed(self.config.failure_ppm, probes);
        let mut w = self.word();
        loop {
            if w.state() != State::HalfOpen || w.epoch() != epoch {
                return;
            }
            let next = match outcome {
                Outcome::Success if !slow => Word(w.0 + (1 << SUCC_SHIFT)),
                Outcome::Success | Outcome::Failure => Word(w.0 + (1 << FAIL_SHIFT)),
                // Cancelled or ignored: the permit goes back.
                _ => Word(w.0 + (1 << PERMITS_SHIFT)),
            };
            match self.word.0.compare_exchange_weak(
                w.0,
                next.0,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    if next.failures() >= reopen_at {
                        self.trip(next, TransitionReason::ProbesFailed);
                    } else if next.successes() > probes - reopen_at {
                        // The failures can no longer reach the threshold.
                        self.transition_from(
                            next,
                            State::Closed,
                            TransitionReason::ProbesSucceeded,
                        );
                    }
                    return;
                }
                Err(actual) => w = Word(actual),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handle::word;

    #[test]
    fn admissions_pack_into_one_word() {
        let top = word::EPOCH_MASK;
        for admit in [
            Admit::Closed(0),
            Admit::Closed(top),
            Admit::Probe(0),
            Admit::Probe(top),
            Admit::Unguarded,
        ] {
            assert_ne!(admit.pack(), Admit::DONE);
            assert_eq!(Admit::unpack(admit.pack()), admit);
        }
    }
}
