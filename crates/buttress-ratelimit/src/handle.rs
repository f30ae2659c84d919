//! The limiter's shared state and its handle.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use buttress_core::ConfigError;
use buttress_core::telemetry::{Name, Publish, Registration, register_catalog};
use buttress_core::time::Origin;

use crate::config::{Fallback, OnMissingKey, QuotaFn, RateLimitBuilder};
use crate::decision::Decision;
use crate::local::Local;
use crate::quota::Quota;
use crate::telemetry::{Counters, KIND, METRICS};

/// A per-key GCRA rate limiter: the shared state behind
/// [`RateLimitLayer`](crate::RateLimitLayer).
///
/// # Clone
///
/// Clones share the keys, the counters and the Redis connection: every
/// layer built from one limiter (or its clones) draws on one quota per
/// key.
pub struct RateLimiter<K> {
    shared: Arc<Shared<K>>,
}

impl<K> Clone for RateLimiter<K> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

struct Shared<K> {
    name: Name,
    quota: Quota,
    plans: Option<QuotaFn<K>>,
    local: Arc<Local<K>>,
    on_missing_key: OnMissingKey,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fallback: Fallback,
    #[cfg(feature = "redis")]
    redis: Option<crate::redis::Remote<K>>,
    counters: Arc<Counters>,
    _registration: Registration,
}

/// A limiter's counts since it was built.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimiterSnapshot {
    /// Requests admitted.
    pub allowed: u64,
    /// Requests rejected with `RateLimited`.
    pub limited: u64,
    /// `(class, allowed, limited)` per quota class.
    pub by_class: Vec<(&'static str, u64, u64)>,
    /// Redis decisions that failed or timed out.
    pub redis_errors: u64,
    /// Decisions taken by the fallback policy.
    pub fallbacks: u64,
    /// Keys the in-process store tracks now.
    pub keys: usize,
    /// The most keys it tracks (about `max_keys`).
    pub key_capacity: u64,
}

impl<K> RateLimiter<K> {
    /// A builder whose every key gets `quota` (see
    /// [`plans`](RateLimitBuilder::plans) for a quota per key).
    #[track_caller]
    #[must_use]
    pub fn builder(quota: Quota) -> RateLimitBuilder<K> {
        RateLimitBuilder::new(quota)
    }

    /// The limiter's name.
    #[must_use]
    pub fn name(&self) -> Name {
        self.shared.name
    }

    pub(crate) fn on_missing_key(&self) -> OnMissingKey {
        self.shared.on_missing_key
    }

    /// Whether decisions go to Redis (and so through a future).
    pub(crate) fn is_shared(&self) -> bool {
        #[cfg(feature = "redis")]
        return self.shared.redis.is_some();
        #[cfg(not(feature = "redis"))]
        false
    }
}

impl<K> RateLimiter<K>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
{
    pub(crate) fn from_builder(b: RateLimitBuilder<K>) -> Result<Self, ConfigError> {
        register_catalog(METRICS);
        let registration = Registration::new(KIND, b.name);
        let name = registration.name();
        let local = Arc::new(Local::new(b.max_keys, Origin::now()));
        let keys = {
            let local = Arc::downgrade(&local);
            Box::new(move || local.upgrade().map_or(0, |l| l.len()))
        };
        let counters = Arc::new(Counters::new(keys));
        let weak = Arc::downgrade(&counters);
        registration.attach(weak as std::sync::Weak<dyn Publish>);
        #[cfg(feature = "redis")]
        let redis = match b.redis {
            Some(spec) => Some(crate::redis::Remote::new(
                spec, name, b.timeout, b.breaker, b.max_keys,
            )?),
            None => None,
        };
        Ok(Self {
            shared: Arc::new(Shared {
                name,
                quota: b.quota,
                plans: b.plans,
                local,
                on_missing_key: b.on_missing_key,
                fallback: b.fallback,
                #[cfg(feature = "redis")]
                redis,
                counters,
                _registration: registration,
            }),
        })
    }

    /// The counts since the limiter was built.
    #[must_use]
    pub fn snapshot(&self) -> RateLimiterSnapshot {
        let c = &self.shared.counters;
        let (allowed, limited) = c.totals();
        RateLimiterSnapshot {
            allowed,
            limited,
            by_class: c.by_class(),
            redis_errors: c.redis_errors.get(),
            fallbacks: c.fallbacks.get(),
            keys: self.shared.local.len(),
            key_capacity: self.shared.local.capacity(),
        }
    }

    /// The quota of `key`.
    #[must_use]
    pub fn quota_of(&self, key: &K) -> Quota {
        match &self.shared.plans {
            Some(f) => f(key),
            None => self.shared.quota,
        }
    }

    fn counted(&self, d: Decision) -> Decision {
        self.shared
            .counters
            .decided(d.quota.class_name(), d.allowed);
        d
    }

    /// Decides in process (the in-process store only, whether or not the
    /// limiter is shared through Redis): admits and counts the request
    /// when `key` is within its quota.
    pub fn check_local(&self, key: &K) -> Decision {
        let s = &self.shared;
        let quota = self.quota_of(key);
        let now = s.local.now();
        let r = s.local.check(key, &quota, now);
        self.counted(Decision::from_gcra(s.name, quota, now, r))
    }

    /// Decides for `key` where the limiter decides: in Redis when it is
    /// shared (the fallback while Redis cannot), else in process.
    pub async fn check(&self, key: &K) -> Decision {
        #[cfg(feature = "redis")]
        if let Some(remote) = &self.shared.redis {
            let s = &self.shared;
            let quota = self.quota_of(key);
            return match remote.check(key, &quota, &s.counters).await {
                Some(d) => self.counted(d),
                None => {
                    s.counters.fallbacks.incr();
                    let d = match s.fallback {
                        Fallback::FailOpen => Decision::allow_all(s.name, quota),
                        Fallback::FailClosed => Decision {
                            name: s.name,
                            quota,
                            allowed: false,
                            after_ns: quota.interval_ns(),
                        },
                        Fallback::LocalShare { instances } => {
                            let share = quota.share(instances);
                            let now = remote.fallback.now();
                            let r = remote.fallback.check(key, &share, now);
                            Decision::from_gcra(s.name, share, now, r)
                        }
                    };
                    self.counted(d)
                }
            };
        }
        self.check_local(key)
    }
}

impl<K> fmt::Debug for RateLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("name", &self.shared.name)
            .field("quota", &self.shared.quota)
            .field("shared", &self.is_shared())
            .finish_non_exhaustive()
    }
}
