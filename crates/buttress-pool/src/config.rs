//! [`PoolBuilder`]: the pool's settings, with their defaults and why.

use std::time::Duration;

use buttress_core::telemetry::Name;

/// Default `max_size`: bb8's and HikariCP's default.
pub(crate) const DEFAULT_MAX_SIZE: u32 = 10;
/// Default `checkout_timeout`.
pub(crate) const DEFAULT_CHECKOUT_TIMEOUT: Duration = Duration::from_millis(500);
/// Default waiters allowed per connection of `max_size`.
pub(crate) const DEFAULT_WAITERS_PER_CONNECTION: usize = 10;

/// Builds a pool over a bb8 manager `M`.
///
/// (The handle it builds, `Pool`, lands in the next slice of #15.)
#[derive(Debug)]
#[must_use]
pub struct PoolBuilder<M> {
    pub(crate) manager: M,
    pub(crate) name: Name,
    pub(crate) max_size: u32,
    pub(crate) min_idle: Option<u32>,
    pub(crate) checkout_timeout: Duration,
    pub(crate) max_waiters: Option<usize>,
    pub(crate) test_on_check_out: bool,
}

impl<M> PoolBuilder<M> {
    /// A pool over `manager` (a `bb8::ManageConnection`: bb8-postgres's
    /// `PostgresConnectionManager`, bb8-redis's `RedisConnectionManager`,
    /// or your own), with the defaults below.
    #[track_caller]
    pub fn new(manager: M) -> Self {
        Self {
            manager,
            name: Name::caller(),
            max_size: DEFAULT_MAX_SIZE,
            min_idle: None,
            checkout_timeout: DEFAULT_CHECKOUT_TIMEOUT,
            max_waiters: None,
            test_on_check_out: false,
        }
    }

    /// The pool's name: the `name` label on its metrics and the name in
    /// its rejections. Default: the source line that called
    /// [`new`](Self::new) (`"src/main.rs:12"`), stable from run to run.
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.name = name.into();
        self
    }

    /// The most connections the pool opens. Default: 10 (bb8's and
    /// HikariCP's default). Size it by Little's law (docs/pool.md):
    /// connections ≈ throughput × time each call holds one, plus headroom.
    pub fn max_size(mut self, max_size: u32) -> Self {
        self.max_size = max_size;
        self
    }

    /// Idle connections the pool keeps open ahead of demand. Default:
    /// none (bb8's default): connections open on demand.
    pub fn min_idle(mut self, min_idle: u32) -> Self {
        self.min_idle = Some(min_idle);
        self
    }

    /// The longest a checkout waits for a connection. Default: 500 ms
    /// (bb8's is 30 s).
    ///
    /// A checkout wait is pure queueing: by the time it is long, every
    /// connection is busy and each further waiter only adds latency to a
    /// caller whose own deadline (commonly 1 to 2 s for an HTTP request)
    /// is running. 500 ms leaves most of such a budget for the query and
    /// for a retry elsewhere, while staying two orders of magnitude above
    /// a connect on a LAN (a few milliseconds; measured in docs/pool.md),
    /// so a cold pool's first checkouts, which wait for a connect, do
    /// not fail. When it passes with the pool full the checkout fails
    /// with [`Overloaded`](buttress_core::reject::Overloaded); with the
    /// pool not full (it could not connect) with
    /// [`ConnectFailed`](crate::ConnectFailed).
    pub fn checkout_timeout(mut self, timeout: Duration) -> Self {
        self.checkout_timeout = timeout;
        self
    }

    /// The most callers waiting for a connection at once; the next one is
    /// refused at once with [`Overloaded`](buttress_core::reject::Overloaded).
    /// Default: 10 × `max_size`: a burst of ten rounds of the whole pool
    /// is absorbed, and the last waiter's queue is about ten query times
    /// long; beyond that, queueing only adds latency that a fast 503
    /// spares the caller.
    pub fn max_waiters(mut self, max_waiters: usize) -> Self {
        self.max_waiters = Some(max_waiters);
        self
    }

    /// Whether bb8 checks each connection with a round trip (bb8-postgres:
    /// an empty query; bb8-redis: `PING`) before handing it out. Default:
    /// off (bb8's default is on).
    ///
    /// The check costs a full round trip per checkout, about as much as a
    /// trivial query (measured in docs/pool.md). Without it, the pool still
    /// asks the manager's free, local `has_broken` (tokio-postgres: is the
    /// connection closed?) on checkout and on return, so a connection the
    /// server closed is replaced, not handed out; what the check would
    /// add is catching a connection that died silently (no FIN), whose
    /// first query then fails and which is then discarded.
    pub fn test_on_check_out(mut self, test: bool) -> Self {
        self.test_on_check_out = test;
        self
    }
}

/// A pool's validated settings, as `Pool::config` (next slice)
/// reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolConfig {
    /// The pool's name.
    pub name: Name,
    /// The most connections.
    pub max_size: u32,
    /// Idle connections kept open ahead of demand.
    pub min_idle: Option<u32>,
    /// The longest a checkout waits.
    pub checkout_timeout: Duration,
    /// The most callers waiting at once.
    pub max_waiters: usize,
    /// Whether bb8 checks each connection with a round trip on checkout.
    pub test_on_check_out: bool,
}
