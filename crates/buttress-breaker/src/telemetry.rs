//! The breaker's metrics: the catalog, the counts a breaker keeps besides
//! its window, and the publication of a breaker's (or a keyed set's)
//! series.
//!
//! A call never touches the recorder. The calls a closed breaker records
//! are counted by its window (see `window.rs`, "Totals"), at no extra cost;
//! the rest (ignored calls, probes, forced-closed calls, rejections) in the
//! window's per-thread cells too (its [`Tally`]). Totals and current values reach the recorder
//! when [`buttress_core::telemetry`] publishes them: every second in the
//! background, or on [`flush`](buttress_core::telemetry::flush).

use std::sync::atomic::{AtomicU64, Ordering};

use buttress_core::telemetry::{Emit, MetricInfo, MetricKind, Unit};

use crate::state::State;
use crate::window::{Counts, Tally, Window};

/// The layer kind breakers (and keyed sets) register their names under.
pub(crate) const KIND: &str = "breaker";

const CALLS: &str = "buttress_breaker_calls_total";
const SLOW_CALLS: &str = "buttress_breaker_slow_calls_total";
const TRANSITIONS: &str = "buttress_breaker_transitions_total";
const STATE: &str = "buttress_breaker_state";
const FAILURE_RATE: &str = "buttress_breaker_failure_rate";
const SLOW_CALL_RATE: &str = "buttress_breaker_slow_call_rate";
const KEYS: &str = "buttress_breaker_keys";
const OPEN_KEYS: &str = "buttress_breaker_open_keys";
const KEY_STATE: &str = "buttress_breaker_key_state";
const KEY_FAILURE_RATE: &str = "buttress_breaker_key_failure_rate";
const KEY_SLOW_CALL_RATE: &str = "buttress_breaker_key_slow_call_rate";

const fn metric(
    name: &'static str,
    kind: MetricKind,
    labels: &'static [&'static str],
    help: &'static str,
) -> MetricInfo {
    MetricInfo {
        name,
        kind,
        unit: Unit::Count,
        labels,
        help,
    }
}

/// Every metric a breaker emits, each labelled `name` with the breaker's
/// [name](crate::CircuitBreaker::name) (a keyed set's name for a keyed
/// set). A breaker emits the first six; a keyed set emits the three
/// counters (summed over its keys, evicted ones included), `keys` and
/// `open_keys`, and, with `KeyedCircuitBreaker::per_key_metrics`, the
/// three `key_` gauges per key. Rates and states have no unit; they are
/// listed with [`Unit::Count`].
pub static METRICS: &[MetricInfo] = &[
    metric(
        CALLS,
        MetricKind::Counter,
        &["outcome"],
        "Calls by outcome: success, failure or ignored as the classifier judged them, or rejected by the breaker without calling the inner service.",
    ),
    metric(
        SLOW_CALLS,
        MetricKind::Counter,
        &[],
        "Calls that took at least the slow-call duration (0 unless slow_call_duration is set).",
    ),
    metric(
        TRANSITIONS,
        MetricKind::Counter,
        &["to"],
        "State changes, by the state entered: closed, open, half_open, forced_open, forced_closed.",
    ),
    metric(
        STATE,
        MetricKind::Gauge,
        &[],
        "The current state: 0 closed, 1 open, 2 half-open, 3 forced open, 4 forced closed.",
    ),
    metric(
        FAILURE_RATE,
        MetricKind::Gauge,
        &[],
        "Failed calls over calls in the current window, 0 to 1 (0 with no calls, and outside the closed state).",
    ),
    metric(
        SLOW_CALL_RATE,
        MetricKind::Gauge,
        &[],
        "Slow calls over calls in the current window, 0 to 1 (0 with no calls, and outside the closed state).",
    ),
    metric(
        KEYS,
        MetricKind::Gauge,
        &[],
        "Keyed breakers: the keys that have a breaker now (at most max_keys).",
    ),
    metric(
        OPEN_KEYS,
        MetricKind::Gauge,
        &[],
        "Keyed breakers: the keys whose breaker is open, half-open or forced open.",
    ),
    metric(
        KEY_STATE,
        MetricKind::Gauge,
        &["key"],
        "Keyed breakers with per-key metrics: one key's state, encoded as buttress_breaker_state (an evicted key reads 0: its next call finds a fresh breaker).",
    ),
    metric(
        KEY_FAILURE_RATE,
        MetricKind::Gauge,
        &["key"],
        "Keyed breakers with per-key metrics: one key's failure rate, as buttress_breaker_failure_rate.",
    ),
    metric(
        KEY_SLOW_CALL_RATE,
        MetricKind::Gauge,
        &["key"],
        "Keyed breakers with per-key metrics: one key's slow-call rate, as buttress_breaker_slow_call_rate.",
    ),
];

/// A breaker's running totals since it was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) success: u64,
    pub(crate) failure: u64,
    pub(crate) ignored: u64,
    pub(crate) slow: u64,
    pub(crate) rejected: u64,
    /// By the state entered, indexed by the state's gauge value.
    pub(crate) transitions: [u64; STATES.len()],
}

impl Totals {
    /// The totals of a breaker with this window (what it recorded, and
    /// its tally) and these transition counts.
    pub(crate) fn of(window: &Window, transitions: [u64; STATES.len()]) -> Self {
        let recorded = window.totals();
        Self {
            success: recorded.calls.saturating_sub(recorded.failures)
                + window.tallied(Tally::Success),
            failure: recorded.failures + window.tallied(Tally::Failure),
            ignored: window.tallied(Tally::Ignored),
            slow: recorded.slow + window.tallied(Tally::Slow),
            rejected: window.tallied(Tally::Rejected),
            transitions,
        }
    }

    fn fields(&mut self) -> impl Iterator<Item = &mut u64> {
        [
            &mut self.success,
            &mut self.failure,
            &mut self.ignored,
            &mut self.slow,
            &mut self.rejected,
        ]
        .into_iter()
        .chain(self.transitions.iter_mut())
    }

    #[cfg(feature = "keyed")]
    pub(crate) fn add(&mut self, other: &Self) {
        let mut other = *other;
        for (a, b) in self.fields().zip(other.fields()) {
            *a += *b;
        }
    }
}

/// Every state, in gauge order.
pub(crate) const STATES: [State; 5] = [
    State::Closed,
    State::Open,
    State::HalfOpen,
    State::ForcedOpen,
    State::ForcedClosed,
];

/// The highest totals published so far. A total read while calls are in
/// flight may miss one for a moment (see `window.rs`, "Totals"); published
/// counters never go back, so each is published as the highest read yet.
#[derive(Debug, Default)]
pub(crate) struct HighWater {
    marks: [AtomicU64; 5 + STATES.len()],
}

impl HighWater {
    pub(crate) fn raise(&self, mut totals: Totals) -> Totals {
        for (mark, t) in self.marks.iter().zip(totals.fields()) {
            *t = mark.fetch_max(*t, Ordering::AcqRel).max(*t);
        }
        totals
    }
}

/// Whether a state counts towards a keyed set's open keys.
#[cfg(feature = "keyed")]
pub(crate) fn counts_as_open(state: State) -> bool {
    !matches!(state, State::Closed | State::ForcedClosed)
}

#[allow(clippy::cast_precision_loss)]
fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

#[allow(clippy::cast_precision_loss)]
fn code(state: State) -> f64 {
    state.bits() as f64
}

fn counters(out: &mut Emit<'_>, t: &Totals) {
    for (outcome, n) in [
        ("success", t.success),
        ("failure", t.failure),
        ("ignored", t.ignored),
        ("rejected", t.rejected),
    ] {
        out.counter_with(CALLS, &[("outcome", outcome)], n);
    }
    out.counter(SLOW_CALLS, t.slow);
    for (state, n) in STATES.iter().zip(t.transitions) {
        out.counter_with(TRANSITIONS, &[("to", state.as_str())], n);
    }
}

/// A breaker's series: its totals, its state, and the rates over the
/// window it holds now (`window`: empty outside the closed state).
pub(crate) fn publish_breaker(out: &mut Emit<'_>, totals: &Totals, state: State, window: Counts) {
    counters(out, totals);
    out.gauge(STATE, code(state));
    out.gauge(FAILURE_RATE, ratio(window.failures, window.calls));
    out.gauge(SLOW_CALL_RATE, ratio(window.slow, window.calls));
}

/// A keyed set's series.
#[cfg(feature = "keyed")]
pub(crate) fn publish_set(out: &mut Emit<'_>, totals: &Totals, keys: usize, open_keys: usize) {
    counters(out, totals);
    #[allow(clippy::cast_precision_loss)]
    {
        out.gauge(KEYS, keys as f64);
        out.gauge(OPEN_KEYS, open_keys as f64);
    }
}

/// One key's series (per-key metrics): `None` for a key without a breaker
/// now, which reads as a fresh closed one.
#[cfg(feature = "keyed")]
pub(crate) fn publish_key(out: &mut Emit<'_>, key: &str, now: Option<(State, Counts)>) {
    let (state, window) = now.unwrap_or((State::Closed, Counts::default()));
    let labels = [("key", key)];
    out.gauge_with(KEY_STATE, &labels, code(state));
    out.gauge_with(
        KEY_FAILURE_RATE,
        &labels,
        ratio(window.failures, window.calls),
    );
    out.gauge_with(
        KEY_SLOW_CALL_RATE,
        &labels,
        ratio(window.slow, window.calls),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_in_gauge_order_and_the_catalog_is_unique() {
        for (i, s) in STATES.iter().enumerate() {
            assert_eq!(s.bits(), i as u64);
        }
        let mut names: Vec<_> = METRICS.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), METRICS.len());
        assert!(names.iter().all(|n| n.starts_with("buttress_breaker_")));
    }

    #[test]
    fn published_totals_never_go_back() {
        let high = HighWater::default();
        let t = |success| Totals {
            success,
            ..Totals::default()
        };
        assert_eq!(high.raise(t(5)).success, 5);
        assert_eq!(high.raise(t(4)).success, 5, "a total read short");
        assert_eq!(high.raise(t(7)).success, 7);
    }
}
