//! The limiter's builder: settings, and their validation into the
//! limiter's [`Config`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use buttress_core::telemetry::{Name, register_catalog};

use crate::algorithm::Limit;
use crate::error::ConfigError;
use crate::handle::{AdaptiveLimit, Config, LimitChange, Listener, QueueConfig, QueueOrder};

/// The most partitions a limiter can have.
pub const MAX_PARTITIONS: usize = 64;

/// Builds an [`AdaptiveLimit`] around a [`Limit`] algorithm. Every setter
/// documents its default and where it comes from; [`build`](Self::build)
/// validates them all.
///
/// ```
/// use std::time::Duration;
/// use buttress_limit::{AdaptiveLimit, QueueOrder, algorithm::Vegas};
///
/// let limit = AdaptiveLimit::builder(Vegas::builder().build()?)
///     .name("api")
///     .queue(100, Duration::from_millis(50))
///     .queue_order(QueueOrder::Lifo)
///     .partition("interactive", 0.8)
///     .partition("batch", 0.2)
///     .build()?;
/// assert_eq!(limit.limit(), 20);
/// # Ok::<(), buttress_limit::ConfigError>(())
/// ```
pub struct Builder {
    algorithm: Box<dyn Limit>,
    name: Name,
    window: Duration,
    window_samples: u32,
    min_rtt: Duration,
    queue: Option<(u32, Duration)>,
    order: QueueOrder,
    partitions: Vec<(Arc<str>, f64)>,
    listener: Option<Listener>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("algorithm", &self.algorithm)
            .field("name", &self.name)
            .field("window", &self.window)
            .field("window_samples", &self.window_samples)
            .field("min_rtt", &self.min_rtt)
            .field("queue", &self.queue)
            .field("order", &self.order)
            .field("partitions", &self.partitions)
            .field("listener", &self.listener.as_ref().map(|_| ".."))
            .finish()
    }
}

impl AdaptiveLimit {
    /// A [`Builder`] around `algorithm`. The limiter is named after the
    /// line that calls this unless [`name`](Builder::name) is set.
    #[must_use]
    #[track_caller]
    pub fn builder(algorithm: impl Limit + 'static) -> Builder {
        Builder::new(algorithm)
    }
}

impl Builder {
    /// A builder for a limiter driven by `algorithm`, every other setting
    /// at its default. The limiter is named after the line that calls this
    /// unless [`name`](Self::name) is set.
    #[must_use]
    #[track_caller]
    pub fn new(algorithm: impl Limit + 'static) -> Self {
        Self {
            algorithm: Box::new(algorithm),
            name: Name::caller(),
            window: Duration::from_secs(1),
            window_samples: 10,
            min_rtt: Duration::from_micros(100),
            queue: None,
            order: QueueOrder::Fifo,
            partitions: Vec::new(),
            listener: None,
        }
    }

    /// The limiter's name: the `name` label on its metrics, the `name`
    /// field on its tracing events, and the name its [`Overloaded`](crate::Overloaded)
    /// rejections carry. A second live limiter given the same name is
    /// named `name#2` (see [`AdaptiveLimit::name`]). Default: the source
    /// location that called [`AdaptiveLimit::builder`] (`file.rs:line`).
    #[must_use]
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.name = name.into();
        self
    }

    /// The sampling window: the algorithm is fed one aggregated sample per
    /// window. Default: 1 s (Netflix concurrency-limits' `WindowedLimit`,
    /// whose window is `clamp(2 · RTT, 1 s, 1 s)`; Envoy updates every
    /// 100 ms).
    #[must_use]
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// The fewest calls a window needs to be fed to the algorithm; a window
    /// with fewer is discarded, unless the algorithm has pinned its limit
    /// for a measurement ([`Limit::is_pinned`]), which is fed every window
    /// holding a call. Default: 10 (Netflix `WindowedLimit`).
    #[must_use]
    pub fn window_samples(mut self, samples: u32) -> Self {
        self.window_samples = samples;
        self
    }

    /// Calls faster than this are not sampled (their RTT says more about
    /// the caller than the backend: a cache hit, an immediate error).
    /// Default: 100 µs (Netflix `WindowedLimit`).
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

    /// Validates the configuration and builds the limiter.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad setting: an empty name, a
    /// zero window or window sample count, a queue of zero length or zero wait, a partition
    /// share outside `(0, 1]`, shares adding up to more than 1, a duplicate
    /// partition name, more than [`MAX_PARTITIONS`] partitions.
    pub fn build(self) -> Result<AdaptiveLimit, ConfigError> {
        if self.name.as_str().is_empty() {
            return Err(crate::error::config_error("name", "must not be empty"));
        }
        if self.window.is_zero() {
            return Err(crate::error::config_error(
                "window",
                "must be greater than zero",
            ));
        }
        if self.window_samples == 0 {
            return Err(crate::error::config_error(
                "window_samples",
                "must be at least 1",
            ));
        }
        let queue = match self.queue {
            None => None,
            Some((0, _)) => {
                return Err(crate::error::config_error(
                    "queue",
                    "max_len must be at least 1",
                ));
            }
            Some((_, wait)) if wait.is_zero() => {
                return Err(crate::error::config_error(
                    "queue",
                    "max_wait must be greater than zero",
                ));
            }
            Some((max_len, max_wait)) => Some(QueueConfig {
                max_len,
                max_wait,
                order: self.order,
            }),
        };
        if self.partitions.len() > MAX_PARTITIONS {
            return Err(crate::error::config_error(
                "partition",
                format!(
                    "at most {MAX_PARTITIONS} partitions, got {}",
                    self.partitions.len()
                ),
            ));
        }
        let mut total = 0.0;
        for (i, (name, share)) in self.partitions.iter().enumerate() {
            if !(share.is_finite() && *share > 0.0 && *share <= 1.0) {
                return Err(crate::error::config_error(
                    "partition",
                    format!("share of `{name}` must be within (0, 1], got {share}"),
                ));
            }
            if self.partitions[..i].iter().any(|(n, _)| n == name) {
                return Err(crate::error::config_error(
                    "partition",
                    format!("`{name}` is named twice"),
                ));
            }
            total += share;
        }
        if total > 1.0 + 1e-9 {
            return Err(crate::error::config_error(
                "partition",
                format!("shares must add up to at most 1, got {total}"),
            ));
        }
        register_catalog(crate::telemetry::METRICS);
        Ok(AdaptiveLimit::from_config(Config {
            algorithm: self.algorithm,
            name: self.name,
            window: self.window,
            window_samples: self.window_samples,
            min_rtt: self.min_rtt,
            queue,
            partitions: self.partitions,
            listener: self.listener,
        }))
    }
}
