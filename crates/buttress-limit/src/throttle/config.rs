//! The throttle's builder.

use std::time::Duration;

use buttress_core::telemetry::{Name, register_catalog};
use buttress_core::time::saturating_nanos;

use super::handle::{AdaptiveThrottle, Config};
use crate::error::{ConfigError, check_range};

/// The most buckets a throttle's window can have.
pub const MAX_BUCKETS: u32 = 1000;

/// Builds an [`AdaptiveThrottle`]. Every setter documents its default;
/// [`build`](Self::build) validates them all.
#[derive(Clone, Debug)]
pub struct ThrottleBuilder {
    k: f64,
    window: Duration,
    buckets: u32,
    name: Name,
    seed: Option<u64>,
}

impl AdaptiveThrottle {
    /// A [`ThrottleBuilder`] with the book's defaults. The throttle is
    /// named after the line that calls this unless
    /// [`name`](ThrottleBuilder::name) is set.
    #[must_use]
    #[track_caller]
    pub fn builder() -> ThrottleBuilder {
        ThrottleBuilder {
            k: 2.0,
            window: Duration::from_secs(120),
            buckets: 12,
            name: Name::caller(),
            seed: None,
        }
    }
}

impl ThrottleBuilder {
    /// The multiplier `K`, `>= 1.0`: the backend may reject `1 − 1/K` of
    /// the requests before the client sheds any. Default: 2 (SRE book;
    /// 1.1 is its aggressive setting).
    #[must_use]
    pub fn k(mut self, k: f64) -> Self {
        self.k = k;
        self
    }

    /// How far back requests and accepts count, in `buckets` slices (the
    /// oldest slice leaves whole). Default: 2 minutes (SRE book) in 12
    /// slices of 10 s.
    #[must_use]
    pub fn window(mut self, window: Duration, buckets: u32) -> Self {
        self.window = window;
        self.buckets = buckets;
        self
    }

    /// The throttle's name: the `name` label on its metrics and the name
    /// its [`Throttled`](super::Throttled) rejections carry. A second live
    /// throttle given the same name is named `name#2`. Default: the source
    /// location that called [`AdaptiveThrottle::builder`] (`file.rs:line`).
    #[must_use]
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.name = name.into();
        self
    }

    /// Seeds the random draws. Default: seeded from the process's entropy.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Validates and builds.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad setting: an empty name, `k`
    /// below 1 or not finite, zero or too many buckets, a window shorter
    /// than 1 ms per bucket.
    pub fn build(self) -> Result<AdaptiveThrottle, ConfigError> {
        if self.name.as_str().is_empty() {
            return Err(crate::error::config_error("name", "must not be empty"));
        }
        check_range("k", self.k, 1.0, 1e9, true)?;
        if self.buckets == 0 || self.buckets > MAX_BUCKETS {
            return Err(crate::error::config_error(
                "window",
                format!(
                    "buckets must be within 1..={MAX_BUCKETS}, got {}",
                    self.buckets
                ),
            ));
        }
        let bucket_nanos = saturating_nanos(self.window) / u64::from(self.buckets);
        if bucket_nanos < 1_000_000 {
            return Err(crate::error::config_error(
                "window",
                format!(
                    "{:?} is too short for {} buckets of at least 1ms",
                    self.window, self.buckets
                ),
            ));
        }
        register_catalog(crate::telemetry::METRICS);
        Ok(AdaptiveThrottle::from_config(Config {
            k: self.k,
            buckets: self.buckets,
            bucket_nanos,
            name: self.name,
            seed: self.seed,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_config() {
        let f = |b: ThrottleBuilder| b.build().unwrap_err().field();
        assert_eq!(f(AdaptiveThrottle::builder().k(0.5)), "k");
        assert_eq!(f(AdaptiveThrottle::builder().k(f64::NAN)), "k");
        assert_eq!(
            f(AdaptiveThrottle::builder().window(Duration::from_secs(1), 0)),
            "window"
        );
        assert_eq!(
            f(AdaptiveThrottle::builder().window(Duration::from_millis(5), 10)),
            "window"
        );
        assert_eq!(f(AdaptiveThrottle::builder().name("")), "name");
    }
}
