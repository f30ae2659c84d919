//! The builder and the validated configuration.

use std::fmt;
use std::sync::Arc;
#[cfg(feature = "redis")]
use std::time::Duration;

use buttress_core::ConfigError;
use buttress_core::telemetry::Name;

use crate::handle::RateLimiter;
use crate::quota::Quota;

/// What the layer does with a request its key extractor finds no key in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnMissingKey {
    /// Let it through, unlimited (the default: a keyed layer never fails a
    /// request for lack of a key, as `buttress_core::key` documents).
    #[default]
    Bypass,
    /// Fail it with [`MissingKey`](crate::MissingKey).
    Reject,
}

/// What a shared (Redis) limiter decides while Redis cannot: it failed,
/// timed out, or its breaker is open. Every such decision is counted in
/// `buttress_ratelimit_fallbacks_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fallback {
    /// Admit every request.
    FailOpen,
    /// Reject every request (`RateLimited`, retry after one emission
    /// interval).
    FailClosed,
    /// Limit in process at this instance's share of the quota: rate and
    /// burst divided by `instances` (the default, with 1 instance: the
    /// whole quota per instance).
    LocalShare {
        /// How many instances share the quota.
        instances: u32,
    },
}

impl Default for Fallback {
    fn default() -> Self {
        Self::LocalShare { instances: 1 }
    }
}

pub(crate) type QuotaFn<K> = Arc<dyn Fn(&K) -> Quota + Send + Sync>;

#[cfg(feature = "redis")]
pub(crate) enum RedisTarget {
    Node(redis::Client),
    Cluster(Vec<redis::Client>),
}

#[cfg(feature = "redis")]
pub(crate) struct RedisSpec<K> {
    pub(crate) target: RedisTarget,
    pub(crate) namespace: String,
    pub(crate) render: fn(&K) -> String,
}

/// Builds a [`RateLimiter`]: see [`RateLimiter::builder`].
pub struct RateLimitBuilder<K> {
    pub(crate) name: Name,
    pub(crate) quota: Quota,
    pub(crate) plans: Option<QuotaFn<K>>,
    pub(crate) max_keys: usize,
    pub(crate) on_missing_key: OnMissingKey,
    pub(crate) fallback: Fallback,
    #[cfg(feature = "redis")]
    pub(crate) redis: Option<RedisSpec<K>>,
    #[cfg(feature = "redis")]
    pub(crate) timeout: Duration,
    #[cfg(feature = "redis")]
    pub(crate) breaker: Option<buttress_breaker::CircuitBreaker>,
}

impl<K> fmt::Debug for RateLimitBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitBuilder")
            .field("name", &self.name)
            .field("quota", &self.quota)
            .field("plans", &self.plans.is_some())
            .field("max_keys", &self.max_keys)
            .field("on_missing_key", &self.on_missing_key)
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

impl<K> RateLimitBuilder<K> {
    #[track_caller]
    pub(crate) fn new(quota: Quota) -> Self {
        Self {
            name: Name::caller(),
            quota,
            plans: None,
            max_keys: 100_000,
            on_missing_key: OnMissingKey::default(),
            fallback: Fallback::default(),
            #[cfg(feature = "redis")]
            redis: None,
            #[cfg(feature = "redis")]
            timeout: Duration::from_millis(20),
            #[cfg(feature = "redis")]
            breaker: None,
        }
    }

    /// The limiter's name: the `name` label of its metrics and the name
    /// in its rejections. Default: the source line that built it.
    #[must_use]
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.name = name.into();
        self
    }

    /// The quota of each key, by key (plans: free, pro, …); give each
    /// plan its [class](Quota::class) for the metrics. It runs on every
    /// decision, so keep it a lookup. Default: the builder's quota for
    /// every key.
    #[must_use]
    pub fn plans(mut self, quota_of: impl Fn(&K) -> Quota + Send + Sync + 'static) -> Self {
        self.plans = Some(Arc::new(quota_of));
        self
    }

    /// How many keys the in-process store tracks at most (the bound on its
    /// memory under a flood of distinct keys); past it the least useful
    /// keys are evicted. Default: 100,000.
    #[must_use]
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// What to do with a request without a key. Default:
    /// [`OnMissingKey::Bypass`].
    #[must_use]
    pub fn on_missing_key(mut self, on_missing_key: OnMissingKey) -> Self {
        self.on_missing_key = on_missing_key;
        self
    }

    /// What a shared limiter decides while Redis cannot. Default:
    /// [`Fallback::LocalShare`] with 1 instance.
    #[must_use]
    pub fn fallback(mut self, fallback: Fallback) -> Self {
        self.fallback = fallback;
        self
    }

    /// Validates the settings and builds the limiter.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: `name` empty, `max_keys` zero,
    /// `fallback` with zero instances, `timeout` zero, `redis_cluster`
    /// without a node.
    pub fn build(self) -> Result<RateLimiter<K>, ConfigError>
    where
        K: Eq + std::hash::Hash + Clone + Send + Sync + 'static,
    {
        let err = |field, problem: &str| Err(ConfigError::new("rate limit", field, problem));
        if self.name.as_str().is_empty() {
            return err("name", "must not be empty");
        }
        if self.max_keys == 0 {
            return err("max_keys", "must be at least 1");
        }
        #[cfg(feature = "redis")]
        if let Some(RedisSpec {
            target: RedisTarget::Cluster(nodes),
            ..
        }) = &self.redis
            && nodes.is_empty()
        {
            return err("redis_cluster", "needs at least one seed node");
        }
        if self.fallback == (Fallback::LocalShare { instances: 0 }) {
            return err("fallback", "LocalShare needs at least 1 instance");
        }
        #[cfg(feature = "redis")]
        if self.timeout.is_zero() {
            return err("timeout", "must be greater than zero");
        }
        RateLimiter::from_builder(self)
    }
}

#[cfg(feature = "redis")]
impl<K: fmt::Display> RateLimitBuilder<K> {
    /// Shares the quota across instances through the Redis server of
    /// `client`: one script call per decision on the key
    /// `namespace:<key>` (the key rendered with `Display`), which expires
    /// on its own once the key is idle. Without it the limiter is
    /// in-process only.
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    #[must_use]
    pub fn redis(mut self, client: redis::Client, namespace: impl Into<String>) -> Self {
        fn render<K: fmt::Display>(k: &K) -> String {
            k.to_string()
        }
        self.redis = Some(RedisSpec {
            target: RedisTarget::Node(client),
            namespace: namespace.into(),
            render: render::<K>,
        });
        self
    }

    /// [`redis`](Self::redis) on a Redis Cluster reached through the seed
    /// `nodes`: each decision touches one key, so each goes to that key's
    /// node. Keys of one namespace spread over the cluster's slots.
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    #[must_use]
    pub fn redis_cluster(
        mut self,
        nodes: Vec<redis::Client>,
        namespace: impl Into<String>,
    ) -> Self {
        fn render<K: fmt::Display>(k: &K) -> String {
            k.to_string()
        }
        self.redis = Some(RedisSpec {
            target: RedisTarget::Cluster(nodes),
            namespace: namespace.into(),
            render: render::<K>,
        });
        self
    }
}

#[cfg(feature = "redis")]
impl<K> RateLimitBuilder<K> {
    /// The bound on one Redis decision (connecting included); past it the
    /// [fallback](Self::fallback) decides and the breaker counts a
    /// failure. Default: 20 ms (a loopback round trip is 30–40 µs; a
    /// request should not wait on a slow Redis for longer than a
    /// noticeable fraction of its own budget).
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The circuit breaker in front of Redis. Default: a breaker with its
    /// own defaults but open for 1 s at first (up to 30 s), so a Redis that
    /// comes back is used again soon.
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    #[must_use]
    pub fn breaker(mut self, breaker: buttress_breaker::CircuitBreaker) -> Self {
        self.breaker = Some(breaker);
        self
    }
}
