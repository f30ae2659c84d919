//! Limit algorithms: pure state machines fed one [`Sample`] per sampling
//! window.
//!
//! An algorithm does no I/O and reads no clock: the limiter measures each
//! call's round-trip time, aggregates a window of them (see
//! [`AdaptiveLimitBuilder::window`](crate::AdaptiveLimitBuilder::window)) and calls
//! [`Limit::update`] once per window. That makes every algorithm testable
//! with synthetic sample sequences:
//!
//! ```
//! use std::time::Duration;
//! use buttress_limit::algorithm::{Aimd, Limit, Sample};
//!
//! let mut aimd = Aimd::builder().build().unwrap();
//! assert_eq!(aimd.limit(), 20);
//! // Busy (in flight ≥ half the limit) and fast: +1.
//! let ok = Sample::new(Duration::from_secs(1), Duration::from_millis(10), 20, false);
//! assert_eq!(aimd.update(&ok), 21);
//! // A drop: ×0.9.
//! let drop = Sample::new(Duration::from_secs(2), Duration::from_millis(10), 21, true);
//! assert_eq!(aimd.update(&drop), 20);
//! ```
//!
//! | algorithm | signal | source |
//! |---|---|---|
//! | [`Knee`] | queue share from RTT / no-load RTT, checked by the next window | this crate (the recommended default) |
//! | [`Fixed`] | none: a static limit | tower's `ConcurrencyLimit` |
//! | [`Aimd`] | drops and RTTs over a timeout | Netflix concurrency-limits `AIMDLimit` |
//! | [`Vegas`] | queue estimate from RTT over no-load RTT | Netflix `VegasLimit` (TCP Vegas) |
//! | [`Gradient2`] | short-term RTT over a long-term average | Netflix `Gradient2Limit` |
//! | [`EnvoyGradient`] | RTT over a periodically measured min RTT | Envoy's adaptive concurrency filter |

use std::fmt;
use std::time::Duration;

mod aimd;
mod envoy;
mod fixed;
mod gradient2;
mod knee;
mod vegas;

pub use aimd::{Aimd, AimdBuilder};
pub use envoy::{EnvoyGradient, EnvoyGradientBuilder};
pub use fixed::Fixed;
pub use gradient2::{Gradient2, Gradient2Builder};
pub use knee::{Knee, KneeBuilder};
pub use vegas::{Vegas, VegasBuilder};

/// One sampling window's worth of observations.
///
/// Built by the limiter (or by a test with [`Sample::new`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    at: Duration,
    rtt: Duration,
    in_flight: u32,
    dropped: bool,
    count: u32,
}

impl Sample {
    /// A window that closed `at` (time since the limiter was built), with
    /// the window's aggregated round-trip time `rtt` (the mean of its
    /// successful calls, or the percentile the algorithm asked for), the most calls in flight while it was open, and
    /// whether any call in it was dropped (failed or timed out).
    #[must_use]
    pub const fn new(at: Duration, rtt: Duration, in_flight: u32, dropped: bool) -> Self {
        Self {
            at,
            rtt,
            in_flight,
            dropped,
            count: 1,
        }
    }

    /// The number of calls the window aggregates (default 1).
    #[must_use]
    pub const fn with_count(mut self, count: u32) -> Self {
        self.count = count;
        self
    }

    /// When the window closed, since the limiter was built.
    #[must_use]
    pub const fn at(&self) -> Duration {
        self.at
    }

    /// The window's round-trip time: the mean of its successful calls, or
    /// the percentile the algorithm asked for with
    /// [`Limit::rtt_percentile`]. Zero when the window held only drops.
    #[must_use]
    pub const fn rtt(&self) -> Duration {
        self.rtt
    }

    /// The most calls in flight during the window (each call's in-flight
    /// count is taken when it was admitted, itself included).
    #[must_use]
    pub const fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Whether a call in the window was dropped (its outcome was a
    /// failure).
    #[must_use]
    pub const fn dropped(&self) -> bool {
        self.dropped
    }

    /// How many calls the window aggregates.
    #[must_use]
    pub const fn count(&self) -> u32 {
        self.count
    }
}

/// A concurrency-limit algorithm: fed samples, it answers with a limit.
///
/// Implementations are pure (no clock, no I/O) and are called under the
/// limiter's lock once per sampling window, never on a call's hot path.
pub trait Limit: fmt::Debug + Send {
    /// The limit to enforce now (at least 1).
    fn limit(&self) -> u32;

    /// Feeds one window's sample and returns the new limit.
    fn update(&mut self, sample: &Sample) -> u32;

    /// The algorithm's name, for metrics labels and logs.
    fn name(&self) -> &'static str;

    /// The window RTT this algorithm wants: `Some(p)` for the `p` quantile
    /// of the window's RTTs (`0 < p ≤ 1`; from a histogram with 8 buckets per
    /// power of two, within 6.25 % of the true value), `None` (the
    /// default) for their mean.
    fn rtt_percentile(&self) -> Option<f64> {
        None
    }

    /// Whether the limit is pinned for a measurement that needs the calls
    /// in flight to stay at most [`limit`](Self::limit) (Envoy's min-RTT
    /// measurement). While it is, the limiter admits no call past the limit,
    /// whatever a partition's guaranteed share says, and feeds the
    /// algorithm every window that holds a completed call, however few (the
    /// algorithm aggregates its own measurement). Default: never.
    ///
    /// An algorithm that pins must unpin within a bounded number of
    /// windows even if its measurement cannot complete.
    fn is_pinned(&self) -> bool {
        false
    }

    /// The no-load round-trip time the algorithm compares each window's RTT
    /// against, if it keeps one: [`Vegas`]' no-load RTT, [`EnvoyGradient`]'s
    /// measured min RTT, [`Gradient2`]'s long-term average. The limiter
    /// reads it once per window, after [`update`](Self::update), and
    /// publishes it as the `buttress_limit_min_rtt_seconds` gauge (0 for
    /// `None`). Default: `None` (as for [`Fixed`] and [`Aimd`]).
    fn no_load_rtt(&self) -> Option<Duration> {
        None
    }

    /// Reseeds the algorithm's random draws (its jitter), so runs repeat
    /// exactly. The limiter calls it once, at build, with
    /// [`AdaptiveLimitBuilder::seed`](crate::AdaptiveLimitBuilder::seed)
    /// when that is set. Default: nothing to seed ([`Vegas`] and
    /// [`EnvoyGradient`] draw jitter and implement it).
    fn seed(&mut self, seed: u64) {
        let _ = seed;
    }
}

impl<L: Limit + ?Sized> Limit for Box<L> {
    fn limit(&self) -> u32 {
        (**self).limit()
    }
    fn update(&mut self, sample: &Sample) -> u32 {
        (**self).update(sample)
    }
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn rtt_percentile(&self) -> Option<f64> {
        (**self).rtt_percentile()
    }
    fn is_pinned(&self) -> bool {
        (**self).is_pinned()
    }
    fn no_load_rtt(&self) -> Option<Duration> {
        (**self).no_load_rtt()
    }
    fn seed(&mut self, seed: u64) {
        (**self).seed(seed);
    }
}

/// `⌊x⌋` as a limit, within `1..=u32::MAX`.
pub(crate) fn to_limit(x: f64) -> u32 {
    if x.is_nan() || x < 1.0 {
        1
    } else if x >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        x as u32
    }
}

/// `max(1, ⌊log10 n⌋)`: Netflix's `Log10RootFunction` table for the Vegas
/// thresholds (integer, at least 1).
pub(crate) fn log10_root(n: f64) -> f64 {
    if n < 1.0 {
        1.0
    } else {
        n.log10().floor().max(1.0)
    }
}
