//! The limiter's configuration: [`AdaptiveLimitBuilder`] and its validation
//! into a [`Config`], which holds everything the limiter needs (name and
//! listener included). `AdaptiveLimit::builder` and
//! [`AdaptiveLimitBuilder::build`] live beside the handle they make.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use buttress_core::telemetry::Name;

use crate::algorithm::Limit;
use crate::change::{LimitChange, Listener};
use crate::error::{ConfigError, config_error};

/// The most partitions a limiter can have.
pub const MAX_PARTITIONS: usize = 64;

/// Which waiting call gets a permit first when one comes free.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum QueueOrder {
    /// The longest-waiting call first: fair.
    Fifo,
    /// The most recent call first: under sustained overload the calls that
    /// get through are the fresh ones, whose callers are still waiting,
    /// while the old ones time out (Facebook's adaptive LIFO).
    Lifo,
}

/// A validated queue configuration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QueueConfig {
    pub(crate) max_len: u32,
    pub(crate) max_wait: Duration,
    pub(crate) order: QueueOrder,
}

/// A validated limiter configuration: everything the limiter needs, the
/// name and the listener included.
pub(crate) struct Config {
    pub(crate) algorithm: Box<dyn Limit>,
    pub(crate) name: Name,
    pub(crate) window: Option<Duration>,
    pub(crate) window_samples: u32,
    pub(crate) min_rtt: Duration,
    pub(crate) queue: Option<QueueConfig>,
    pub(crate) partitions: Vec<(Arc<str>, f64)>,
    pub(crate) listener: Option<Listener>,
}

/// Builds an [`AdaptiveLimit`](crate::AdaptiveLimit) around a [`Limit`]
/// algorithm; reached by
/// [`AdaptiveLimit::builder`](crate::AdaptiveLimit::builder). Every setter
/// documents its default and where it comes from;
/// [`build`](Self::build) validates them all.
///
/// ```
/// use std::time::Duration;
/// use buttress_limit::{AdaptiveLimit, QueueOrder, algorithm::Knee};
///
/// let limit = AdaptiveLimit::builder(Knee::builder().build()?)
///     .name("api")
///     .queue(100, Duration::from_millis(50))
///     .queue_order(QueueOrder::Lifo)
///     .partition("interactive", 0.8)
///     .partition("batch", 0.2)
///     .build()?;
/// assert_eq!(limit.limit(), 20);
/// # Ok::<(), buttress_limit::ConfigError>(())
/// ```
pub struct AdaptiveLimitBuilder {
    algorithm: Box<dyn Limit>,
    name: Name,
    window: Option<Duration>,
    window_samples: u32,
    min_rtt: Duration,
    queue: Option<(u32, Duration)>,
    order: QueueOrder,
    partitions: Vec<(Arc<str>, f64)>,
    listener: Option<Listener>,
    seed: Option<u64>,
}

impl fmt::Debug for AdaptiveLimitBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimitBuilder")
            .field("algorithm", &self.algorithm)
            .field("name", &self.name)
            .field("window", &self.window)
            .field("window_samples", &self.window_samples)
            .field("min_rtt", &self.min_rtt)
            .field("queue", &self.queue)
            .field("order", &self.order)
            .field("partitions", &self.partitions)
            .field("listener", &self.listener.as_ref().map(|_| ".."))
            .field("seed", &self.seed)
            .finish()
    }
}

impl AdaptiveLimitBuilder {
    /// Every setting at its default, named after the caller's line.
    #[track_caller]
    pub(crate) fn new(algorithm: Box<dyn Limit>) -> Self {
        Self {
            algorithm,
            name: Name::caller(),
            window: None,
            window_samples: 10,
            min_rtt: Duration::from_micros(100),
            queue: None,
            order: QueueOrder::Fifo,
            partitions: Vec::new(),
            listener: None,
            seed: None,
        }
    }

    /// The limiter's name: the `name` label on its metrics, the `name`
    /// field on its tracing events, and the name its [`Overloaded`](crate::Overloaded)
    /// rejections carry. A second live limiter given the same name is
    /// named `name#2` (see [`AdaptiveLimit::name`](crate::AdaptiveLimit::name)).
    /// Default: the source location that called
    /// [`AdaptiveLimit::builder`](crate::AdaptiveLimit::builder) (`file.rs:line`).
    #[must_use]
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.name = name.into();
        self
    }

    /// A fixed sampling window: the algorithm is fed one aggregated sample
    /// per `window`, and a window with fewer than
    /// [`window_samples`](Self::window_samples) calls is discarded.
    /// Default: no fixed window; each window lasts 4 times the last
    /// window's RTT, within 10 ms and 1 s, and stays open (up to 1 s) until
    /// it holds `window_samples` calls (the first one, before any RTT, until
    /// it also lasted 4 of its calls' mean RTT). Netflix
    /// concurrency-limits scales its window with the RTT too (`2 · RTT`,
    /// clamped to 1 s); Envoy updates every 100 ms. A fixed window of 1 s
    /// reacts to a capacity change in tens of seconds where the RTT-scaled
    /// one takes a few (see `docs/limit.md`).
    #[must_use]
    pub fn window(mut self, window: Duration) -> Self {
        self.window = Some(window);
        self
    }

    /// The fewest calls a window needs to be fed to the algorithm. A
    /// default (RTT-scaled) window with fewer stays open until it has them,
    /// up to 1 s, and is discarded after that; a fixed
    /// [`window`](Self::window) with fewer is discarded when it ends. While
    /// the algorithm has pinned its limit for a measurement
    /// ([`Limit::is_pinned`]) every window holding a call is fed. Default:
    /// 10 (Netflix `WindowedLimit`).
    #[must_use]
    pub fn window_samples(mut self, samples: u32) -> Self {
        self.window_samples = samples;
        self
    }

    /// Calls faster than this are not sampled (their RTT says more about
    /// the caller than the backend: a cache hit, an immediate error);
    /// zero samples every call. Default: 100 µs (Netflix `WindowedLimit`'s
    /// `minRttThreshold`).
    #[must_use]
    pub fn min_rtt(mut self, threshold: Duration) -> Self {
        self.min_rtt = threshold;
        self
    }

    /// At the limit, wait in a queue of at most `max_len` calls for up to
    /// `max_wait` before failing with [`Overloaded`](crate::Overloaded).
    /// Default: no queue, reject at once (tower's `LoadShed` over
    /// `ConcurrencyLimit` behaves the same; Envoy rejects at once too).
    ///
    /// The wait is a tokio timer. Outside any tokio runtime a call at the
    /// limit is rejected at once instead of queued.
    ///
    /// # Panics
    ///
    /// A call that queues inside a tokio runtime built without its time
    /// driver panics, as any tokio timer does (`#[tokio::main]` and
    /// `Builder::enable_all` enable it).
    #[must_use]
    pub fn queue(mut self, max_len: u32, max_wait: Duration) -> Self {
        self.queue = Some((max_len, max_wait));
        self
    }

    /// Which waiting call a freed permit goes to. Default: [`QueueOrder::Fifo`].
    #[must_use]
    pub fn queue_order(mut self, order: QueueOrder) -> Self {
        self.order = order;
        self
    }

    /// Adds a named partition with a guaranteed `share` of the limit, in
    /// `(0, 1]` (shares add up to at most 1). While the whole limit is in
    /// use, a call in this partition is still admitted if the partition
    /// holds fewer than `max(1, ⌈L · share⌉)` calls, and rejected if it
    /// holds that many or more; below the limit, shares do not apply
    /// (Netflix concurrency-limits' `AbstractPartitionedLimiter`). While the
    /// algorithm pins the limit for a measurement ([`Limit::is_pinned`]),
    /// guarantees do not apply: no call is admitted past the limit. Calls are
    /// put in partitions by the layer's
    /// [`partition_by`](crate::AdaptiveLimitLayer::partition_by) key
    /// extractor. Default: no partitions.
    #[must_use]
    pub fn partition(mut self, name: impl Into<Arc<str>>, share: f64) -> Self {
        self.partitions.push((name.into(), share));
        self
    }

    /// Calls `listener` whenever a window changes the limit. Events are only
    /// built when a listener is set; it runs on the thread whose call closed
    /// the window, after the window's lock is released (it may read the
    /// handle), inside that call's completion: keep it short.
    #[must_use]
    pub fn on_limit_change<F>(mut self, listener: F) -> Self
    where
        F: Fn(&LimitChange) + Send + Sync + 'static,
    {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// Seeds the algorithm's random draws ([`Limit::seed`]: Vegas' probe
    /// jitter, Envoy's re-measurement jitter), so a test or a replay sees
    /// the same limits every run; it overrides a seed given to the
    /// algorithm's own builder. Default: unset, and each algorithm seeds
    /// itself from the process's entropy (a different sequence per process
    /// and per limiter).
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Checks every setting; the first bad one is the error (see
    /// [`build`](Self::build)).
    pub(crate) fn validate(self) -> Result<Config, ConfigError> {
        if self.name.as_str().is_empty() {
            return Err(config_error("name", "must not be empty"));
        }
        if self.window.is_some_and(|w| w.is_zero()) {
            return Err(config_error("window", "must be greater than zero"));
        }
        if self.window_samples == 0 {
            return Err(config_error("window_samples", "must be at least 1"));
        }
        let queue = match self.queue {
            None => None,
            Some((0, _)) => return Err(config_error("queue", "max_len must be at least 1")),
            Some((_, wait)) if wait.is_zero() => {
                return Err(config_error("queue", "max_wait must be greater than zero"));
            }
            Some((max_len, max_wait)) => Some(QueueConfig {
                max_len,
                max_wait,
                order: self.order,
            }),
        };
        check_partitions(&self.partitions)?;
        let mut algorithm = self.algorithm;
        if let Some(seed) = self.seed {
            algorithm.seed(seed);
        }
        Ok(Config {
            algorithm,
            name: self.name,
            window: self.window,
            window_samples: self.window_samples,
            min_rtt: self.min_rtt,
            queue,
            partitions: self.partitions,
            listener: self.listener,
        })
    }
}

/// At most [`MAX_PARTITIONS`], each named once and not empty, each share
/// in `(0, 1]`, the shares adding up to at most 1.
fn check_partitions(partitions: &[(Arc<str>, f64)]) -> Result<(), ConfigError> {
    if partitions.len() > MAX_PARTITIONS {
        return Err(config_error(
            "partition",
            format!(
                "at most {MAX_PARTITIONS} partitions, got {}",
                partitions.len()
            ),
        ));
    }
    let mut total = 0.0;
    for (i, (name, share)) in partitions.iter().enumerate() {
        if name.is_empty() {
            return Err(config_error("partition", "a name must not be empty"));
        }
        if !(share.is_finite() && *share > 0.0 && *share <= 1.0) {
            return Err(config_error(
                "partition",
                format!("share of `{name}` must be within (0, 1], got {share}"),
            ));
        }
        if partitions[..i].iter().any(|(n, _)| n == name) {
            return Err(config_error(
                "partition",
                format!("`{name}` is named twice"),
            ));
        }
        total += share;
    }
    // A little slack for shares such as 0.7 + 0.2 + 0.1 that add up to
    // 1 only in decimal.
    if total > 1.0 + 1e-9 {
        return Err(config_error(
            "partition",
            format!("shares must add up to at most 1, got {total}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithm::Fixed;

    fn builder() -> AdaptiveLimitBuilder {
        AdaptiveLimitBuilder::new(Box::new(Fixed::new(10).unwrap()))
    }

    fn field(b: AdaptiveLimitBuilder) -> (&'static str, String) {
        let err = b.validate().err().expect("rejected");
        (err.field(), err.problem().to_owned())
    }

    #[test]
    fn rejects_every_bad_setting_naming_it() {
        let d = Duration::from_millis(5);
        assert_eq!(field(builder().name("")).0, "name");
        assert_eq!(field(builder().window(Duration::ZERO)).0, "window");
        assert_eq!(field(builder().window_samples(0)).0, "window_samples");
        let (f, problem) = field(builder().queue(0, d));
        assert_eq!(f, "queue");
        assert!(problem.contains("max_len"), "{problem}");
        let (f, problem) = field(builder().queue(1, Duration::ZERO));
        assert_eq!(f, "queue");
        assert!(problem.contains("max_wait"), "{problem}");
        for share in [0.0, -0.5, 1.5, f64::NAN, f64::INFINITY] {
            let (f, problem) = field(builder().partition("a", share));
            assert_eq!(f, "partition", "share {share}");
            assert!(problem.contains("`a`"), "{problem}");
        }
        let (f, problem) = field(builder().partition("a", 0.6).partition("b", 0.5));
        assert_eq!(f, "partition");
        assert!(problem.contains("add up"), "{problem}");
        let (_, problem) = field(builder().partition("a", 0.1).partition("a", 0.1));
        assert!(problem.contains("twice"), "{problem}");
        let (_, problem) = field(builder().partition("", 0.1));
        assert!(problem.contains("empty"), "{problem}");
        let many = (0..=MAX_PARTITIONS).fold(builder(), |b, i| b.partition(i.to_string(), 0.01));
        assert!(field(many).1.contains("at most"));
    }

    #[test]
    fn accepts_shares_that_add_up_to_one() {
        let b = builder()
            .partition("a", 0.7)
            .partition("b", 0.2)
            .partition("c", 0.1);
        assert!(b.validate().is_ok());
        assert!(builder().min_rtt(Duration::ZERO).validate().is_ok());
    }
}
