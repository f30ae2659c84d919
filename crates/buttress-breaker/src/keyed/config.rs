//! The keyed set's builder and its validated configuration.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use buttress_core::ConfigError;

use crate::config::{CircuitBreakerBuilder, Config};

/// The default [idle timeout](KeyedCircuitBreakerBuilder::idle_timeout):
/// 10 minutes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// Builds a [`KeyedCircuitBreaker`](crate::KeyedCircuitBreaker), from
/// [`KeyedCircuitBreaker::builder`](crate::KeyedCircuitBreaker::builder):
/// a template for every key's breaker, the most keys the set holds, and
/// how long an unused key keeps its breaker.
///
/// ```
/// use std::time::Duration;
/// use buttress_breaker::{CircuitBreaker, KeyedCircuitBreaker};
///
/// let hosts = KeyedCircuitBreaker::<String>::builder(CircuitBreaker::builder().name("hosts"), 1_000)
///     .idle_timeout(Duration::from_secs(300))
///     .build()
///     .expect("valid configuration");
/// assert_eq!(hosts.name(), "hosts");
/// ```
pub struct KeyedCircuitBreakerBuilder<K> {
    template: CircuitBreakerBuilder,
    max_keys: usize,
    idle_timeout: Duration,
    per_key_metrics: bool,
    _key: PhantomData<fn(K)>,
}

impl<K> Clone for KeyedCircuitBreakerBuilder<K> {
    fn clone(&self) -> Self {
        Self {
            template: self.template.clone(),
            max_keys: self.max_keys,
            idle_timeout: self.idle_timeout,
            per_key_metrics: self.per_key_metrics,
            _key: PhantomData,
        }
    }
}

impl<K> fmt::Debug for KeyedCircuitBreakerBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerBuilder")
            .field("template", &self.template)
            .field("max_keys", &self.max_keys)
            .field("idle_timeout", &self.idle_timeout)
            .field("per_key_metrics", &self.per_key_metrics)
            .finish()
    }
}

impl<K> KeyedCircuitBreakerBuilder<K> {
    pub(super) fn new(template: CircuitBreakerBuilder, max_keys: usize) -> Self {
        Self {
            template,
            max_keys,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            per_key_metrics: false,
            _key: PhantomData,
        }
    }

    /// How long a key may go unused before its breaker is evicted. A key is
    /// used each time the set hands out its breaker: every request through
    /// a [`KeyedCircuitBreakerLayer`](crate::KeyedCircuitBreakerLayer), and
    /// every [`get`](crate::KeyedCircuitBreaker::get). A key that comes back
    /// after eviction starts with a fresh, closed breaker.
    ///
    /// Idle keys are swept by the calls to the set themselves (no
    /// background task), at most once per eighth of the timeout, each sweep
    /// visiting every key. A key is never evicted before it has been idle
    /// for the timeout, and is evicted by the first call to the set once it
    /// has been idle for about 1.14 times the timeout (the sweep interval,
    /// and a 64th of the timeout by which a busy key's last-use stamp may
    /// lag).
    ///
    /// Default: [`DEFAULT_IDLE_TIMEOUT`], 10 minutes (ours): longer than the
    /// breaker's default longest open duration (300 s), so a breaker is not
    /// forgotten while it waits to probe, and short enough that the keys of
    /// a passing burst do not stay for hours. A breaker left without any
    /// call for that long is forgotten even if it was open: its key's next
    /// call finds a closed one. `Duration::MAX` (or any duration
    /// past `u64::MAX` nanoseconds) turns idle eviction off, leaving only
    /// the [`max_keys`](crate::KeyedCircuitBreaker::builder) cap; each call
    /// then reads no clock.
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Also publishes each key's state, failure rate and slow-call rate
    /// (`buttress_breaker_key_state{name, key}`,
    /// `buttress_breaker_key_failure_rate{name, key}`,
    /// `buttress_breaker_key_slow_call_rate{name, key}`, `key` being the
    /// key's `Display` text). Default: off (see
    /// [Metrics](crate::KeyedCircuitBreaker#metrics)).
    ///
    /// A recorder keeps a series once it has seen it, so to keep the `key`
    /// label bounded only the first `max_keys` distinct keys get series of
    /// their own (a `warn` event says so once when the set turns one
    /// away); later keys report only in the set's totals. A key that was
    /// evicted keeps its series, which read as a fresh closed breaker (what
    /// its next call finds) until it comes back. Turn it on for a small,
    /// known set of keys (configured hosts), not for keys taken from
    /// requests.
    #[must_use]
    pub fn per_key_metrics(mut self, enabled: bool) -> Self {
        self.per_key_metrics = enabled;
        self
    }

    /// Validates the template and the set's settings.
    pub(super) fn validate(self) -> Result<KeyedConfig, ConfigError> {
        if self.max_keys == 0 {
            return Err(config_error("max_keys", "must be at least 1"));
        }
        if self.idle_timeout.is_zero() {
            return Err(config_error("idle_timeout", "must be greater than zero"));
        }
        let breaker = Config::validate(self.template)?;
        Ok(KeyedConfig {
            breaker,
            max_keys: self.max_keys,
            idle_timeout: u64::try_from(self.idle_timeout.as_nanos()).ok(),
            per_key_metrics: self.per_key_metrics,
        })
    }
}

fn config_error(field: &'static str, problem: &'static str) -> ConfigError {
    ConfigError::new("keyed circuit breaker", field, problem)
}

/// A keyed set's validated configuration.
#[derive(Debug)]
pub(super) struct KeyedConfig {
    /// Every key's breaker's.
    pub(super) breaker: Config,
    pub(super) max_keys: usize,
    /// In nanoseconds; `None` when idle keys are kept.
    pub(super) idle_timeout: Option<u64>,
    pub(super) per_key_metrics: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(b: KeyedCircuitBreakerBuilder<String>) -> &'static str {
        b.validate().unwrap_err().field()
    }

    #[test]
    fn rejects_bad_settings_by_name() {
        let b = |max_keys| KeyedCircuitBreakerBuilder::new(CircuitBreakerBuilder::new(), max_keys);
        assert_eq!(field(b(0)), "max_keys");
        assert_eq!(field(b(1).idle_timeout(Duration::ZERO)), "idle_timeout");
        assert_eq!(
            field(KeyedCircuitBreakerBuilder::new(
                CircuitBreakerBuilder::new().count_window(0),
                1
            )),
            "count_window",
            "the template is validated too"
        );
        let c = b(usize::MAX).validate().unwrap();
        assert_eq!(c.idle_timeout, Some(600_000_000_000));
        let c = b(1).idle_timeout(Duration::MAX).validate().unwrap();
        assert_eq!(c.idle_timeout, None, "past the clock: never idle");
    }
}
