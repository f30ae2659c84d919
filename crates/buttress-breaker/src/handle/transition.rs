//! State transitions: moving the state word from one period to the next
//! under the control lock, growing the open duration, and telling the
//! transition counts, the log and the listener.

use std::sync::atomic::Ordering;
use std::time::Duration;

use buttress_core::sync::lock;

use super::{Inner, Word};
use crate::state::{State, StateTransition, TransitionReason};

impl Inner {
    pub(super) fn trip(&self, from: Word, reason: TransitionReason) {
        self.transition_from(from, State::Open, reason);
    }

    pub(super) fn half_open(&self, from: Word) {
        self.transition_from(from, State::HalfOpen, TransitionReason::OpenDurationElapsed);
    }

    /// Moves from the period `from` (same state and epoch) to `to`, unless
    /// another thread moved first.
    #[cold]
    pub(super) fn transition_from(&self, from: Word, to: State, reason: TransitionReason) {
        self.transition(Some(from), to, reason);
    }

    #[cold]
    pub(super) fn transition_any(&self, to: State, reason: TransitionReason) {
        self.transition(None, to, reason);
    }

    fn transition(&self, from: Option<Word>, to: State, reason: TransitionReason) {
        let event;
        {
            let mut control = lock(&self.control);
            let current = self.word();
            if let Some(from) = from
                && (current.state() != from.state() || current.epoch() != from.epoch())
            {
                return;
            }
            let now = self.now();
            if to == State::HalfOpen && now < self.open_until.load(Ordering::Acquire) {
                return;
            }
            let mut open_for = None;
            match to {
                State::Open => {
                    let d = self.open_duration(control.consecutive_trips);
                    control.consecutive_trips = control.consecutive_trips.saturating_add(1);
                    self.open_until.store(
                        now.saturating_add(buttress_core::time::saturating_nanos(d)),
                        Ordering::Release,
                    );
                    open_for = Some(d);
                }
                State::Closed => {
                    // A close ends the run of consecutive trips.
                    control.consecutive_trips = 0;
                    self.window.reset();
                    self.consecutive.0.store(0, Ordering::Release);
                }
                State::ForcedOpen | State::ForcedClosed => control.consecutive_trips = 0,
                _ => {}
            }
            let permits = if to == State::HalfOpen {
                u64::from(self.config.half_open_probes)
            } else {
                0
            };
            self.state_since.store(now, Ordering::Release);
            // Half-open probes change the word's counters without the lock:
            // swap rather than store, so the epoch still moves exactly once.
            let mut w = current;
            loop {
                let next = w.next(to, permits);
                match self
                    .word
                    .0
                    .compare_exchange(w.0, next.0, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => break,
                    Err(actual) => w = Word(actual),
                }
            }
            // `bits()` is 0 to 4, in the order of `telemetry::STATES`.
            self.transitions[to.bits() as usize].fetch_add(1, Ordering::AcqRel);
            event = (w.state(), open_for, now);
        }
        let (from_state, open_for, now) = event;
        let key = self.key.as_deref();
        match to {
            State::Open | State::ForcedOpen => tracing::warn!(
                name = %self.name, key, from = %from_state, to = %to, ?reason, ?open_for,
                "circuit breaker opened"
            ),
            _ => tracing::info!(
                name = %self.name, key, from = %from_state, to = %to, ?reason,
                "circuit breaker changed state"
            ),
        }
        if let Some(listener) = &self.config.listener {
            listener(&StateTransition {
                name: self.name,
                key: self.key.clone(),
                from: from_state,
                to,
                reason,
                at: self.origin.to_instant(now),
                open_for,
            });
        }
    }

    /// `base · multiplier^trips`, capped, then shortened by up to `jitter`.
    fn open_duration(&self, trips: u32) -> Duration {
        let c = &self.config;
        let exp = i32::try_from(trips).unwrap_or(i32::MAX);
        let grown = c.open_duration.as_secs_f64() * c.open_duration_multiplier.powi(exp);
        let capped = grown.min(c.max_open_duration.as_secs_f64());
        let jittered = capped * (1.0 - c.open_duration_jitter * self.rng.next_f64());
        Duration::try_from_secs_f64(jittered)
            .unwrap_or(c.max_open_duration)
            .max(Duration::from_nanos(1))
    }
}
