//! The metric handles a breaker reports to.
//!
//! A breaker of its own registers one set of series under its name. A
//! keyed breaker's per-key breakers share the series of the keyed set, so
//! the number of series does not grow with the number of keys; per-key
//! series are opt-in and capped.

use metrics::{Counter, Gauge};

use crate::state::State;

/// One breaker's (or one keyed set's) counters.
#[derive(Clone)]
pub(crate) struct Series {
    pub(crate) success: Counter,
    pub(crate) failure: Counter,
    pub(crate) ignored: Counter,
    pub(crate) slow: Counter,
    pub(crate) rejected: Counter,
    pub(crate) transitions: Counter,
}

impl Series {
    fn register(name: &str) -> Self {
        let label = name.to_owned();
        let calls = |outcome: &'static str| metrics::counter!("buttress_breaker_calls_total", "breaker" => label.clone(), "outcome" => outcome);
        Self {
            success: calls("success"),
            failure: calls("failure"),
            ignored: calls("ignored"),
            rejected: calls("rejected"),
            slow: metrics::counter!("buttress_breaker_slow_calls_total", "breaker" => label.clone()),
            transitions: metrics::counter!("buttress_breaker_transitions_total", "breaker" => label),
        }
    }
}

/// Everything a breaker reports to.
pub(crate) struct Telemetry {
    /// The breaker's own series, or its keyed set's.
    pub(crate) series: Series,
    /// A keyed breaker's opt-in series of its own.
    pub(crate) own: Option<Box<Series>>,
    /// `buttress_breaker_state` (a no-op handle for a keyed breaker
    /// without series of its own).
    pub(crate) state: Gauge,
    /// A keyed breaker's set-wide gauge of keys whose breaker is not
    /// closed.
    pub(crate) open_keys: Option<Gauge>,
}

impl Telemetry {
    /// A breaker of its own, named `name`.
    pub(crate) fn single(name: &str) -> Self {
        Self {
            series: Series::register(name),
            own: None,
            state: state_gauge(name),
            open_keys: None,
        }
    }

    #[inline]
    pub(crate) fn success(&self) {
        self.series.success.increment(1);
        if let Some(own) = &self.own {
            own.success.increment(1);
        }
    }

    #[inline]
    pub(crate) fn failure(&self) {
        self.series.failure.increment(1);
        if let Some(own) = &self.own {
            own.failure.increment(1);
        }
    }

    #[inline]
    pub(crate) fn ignored(&self) {
        self.series.ignored.increment(1);
        if let Some(own) = &self.own {
            own.ignored.increment(1);
        }
    }

    pub(crate) fn slow(&self) {
        self.series.slow.increment(1);
        if let Some(own) = &self.own {
            own.slow.increment(1);
        }
    }

    pub(crate) fn rejected(&self) {
        self.series.rejected.increment(1);
        if let Some(own) = &self.own {
            own.rejected.increment(1);
        }
    }

    /// Counts a transition into `to`.
    pub(crate) fn transition(&self, to: State) {
        self.series.transitions.increment(1);
        if let Some(own) = &self.own {
            own.transitions.increment(1);
        }
        #[allow(clippy::cast_precision_loss)]
        self.state.set(to.bits() as f64);
    }
}

fn state_gauge(name: &str) -> Gauge {
    metrics::gauge!("buttress_breaker_state", "breaker" => name.to_owned())
}

/// Whether a state counts towards a keyed set's open keys.
pub(crate) fn counts_as_open(state: State) -> bool {
    !matches!(state, State::Closed | State::ForcedClosed)
}

#[cfg(feature = "keyed")]
pub(crate) use keyed::KeyedTelemetry;

#[cfg(feature = "keyed")]
mod keyed {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use metrics::Gauge;

    use super::{Series, Telemetry, state_gauge};

    /// A keyed set's series, shared by its breakers.
    pub(crate) struct KeyedTelemetry {
        name: String,
        series: Series,
        keys: Gauge,
        open_keys: Gauge,
        /// Whether new breakers get series of their own.
        own: AtomicBool,
        /// How many more breakers may register series of their own: each
        /// takes one, so at most `max_keys` ever do.
        own_budget: AtomicUsize,
    }

    impl KeyedTelemetry {
        pub(crate) fn register(name: &str, max_keys: usize) -> Self {
            let label = name.to_owned();
            Self {
                series: Series::register(name),
                keys: metrics::gauge!("buttress_breaker_keys", "breaker" => label.clone()),
                open_keys: metrics::gauge!("buttress_breaker_open_keys", "breaker" => label),
                name: name.to_owned(),
                own: AtomicBool::new(false),
                own_budget: AtomicUsize::new(max_keys),
            }
        }

        /// Turns series of their own on or off for breakers created later.
        pub(crate) fn set_own_series(&self, on: bool) {
            self.own.store(on, Ordering::Release);
        }

        /// The telemetry of a new breaker named `name`, counted as a key.
        pub(crate) fn key_created(&self, name: &str) -> Telemetry {
            self.keys.increment(1.0);
            let own = self.own.load(Ordering::Acquire) && self.take_own_budget();
            Telemetry {
                series: self.series.clone(),
                own: own.then(|| Box::new(Series::register(name))),
                state: if own {
                    state_gauge(name)
                } else {
                    Gauge::noop()
                },
                open_keys: Some(self.open_keys.clone()),
            }
        }

        fn take_own_budget(&self) -> bool {
            let taken = self
                .own_budget
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok();
            if !taken && self.own.swap(false, Ordering::AcqRel) {
                tracing::warn!(
                    breaker = %self.name,
                    "keyed circuit breaker: per-key metric series reached max_keys breakers; \
                     new keys report only in the set's totals"
                );
            }
            taken
        }

        /// Counts an evicted key out.
        pub(crate) fn key_evicted(&self) {
            self.keys.decrement(1.0);
        }
    }
}
