//! The throttle's configuration: [`AdaptiveThrottleBuilder`] and its
//! validation into a [`Config`], which holds everything the throttle needs
//! (name and seed included). `AdaptiveThrottle::builder` and
//! [`AdaptiveThrottleBuilder::build`] live beside the handle they make.

use std::time::Duration;

use buttress_core::telemetry::Name;
use buttress_core::time::saturating_nanos;

use crate::error::{ConfigError, check_range, config_error};

/// The most buckets a throttle's window can have.
pub const MAX_BUCKETS: u32 = 1000;

/// A validated throttle configuration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Config {
    pub(crate) k: f64,
    pub(crate) buckets: u32,
    pub(crate) bucket_nanos: u64,
    pub(crate) name: Name,
    pub(crate) seed: Option<u64>,
}

/// Builds an [`AdaptiveThrottle`](super::AdaptiveThrottle); reached by
/// [`AdaptiveThrottle::builder`](super::AdaptiveThrottle::builder). Every
/// setter documents its default; [`build`](Self::build) validates them all.
#[derive(Clone, Debug)]
pub struct AdaptiveThrottleBuilder {
    k: f64,
    window: Duration,
    buckets: u32,
    name: Name,
    seed: Option<u64>,
}

impl AdaptiveThrottleBuilder {
    /// The book's defaults, named after the caller's line.
    #[track_caller]
    pub(crate) fn new() -> Self {
        Self {
            k: 2.0,
            window: Duration::from_secs(120),
            buckets: 12,
            name: Name::caller(),
            seed: None,
        }
    }

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
    /// location that called
    /// [`AdaptiveThrottle::builder`](super::AdaptiveThrottle::builder)
    /// (`file.rs:line`).
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

    /// Checks every setting; the first bad one is the error (see
    /// [`build`](Self::build)).
    pub(crate) fn validate(self) -> Result<Config, ConfigError> {
        if self.name.as_str().is_empty() {
            return Err(config_error("name", "must not be empty"));
        }
        check_range("k", self.k, 1.0, 1e9, true)?;
        if self.buckets == 0 || self.buckets > MAX_BUCKETS {
            return Err(config_error(
                "window",
                format!(
                    "buckets must be within 1..={MAX_BUCKETS}, got {}",
                    self.buckets
                ),
            ));
        }
        let bucket_nanos = saturating_nanos(self.window) / u64::from(self.buckets);
        if bucket_nanos < 1_000_000 {
            return Err(config_error(
                "window",
                format!(
                    "{:?} is too short for {} buckets of at least 1ms",
                    self.window, self.buckets
                ),
            ));
        }
        Ok(Config {
            k: self.k,
            buckets: self.buckets,
            bucket_nanos,
            name: self.name,
            seed: self.seed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_config() {
        let f = |b: AdaptiveThrottleBuilder| b.validate().unwrap_err().field();
        let b = AdaptiveThrottleBuilder::new;
        assert_eq!(f(b().k(0.5)), "k");
        assert_eq!(f(b().k(f64::NAN)), "k");
        assert_eq!(f(b().k(f64::INFINITY)), "k");
        assert_eq!(f(b().window(Duration::from_secs(1), 0)), "window");
        assert_eq!(
            f(b().window(Duration::from_secs(100), MAX_BUCKETS + 1)),
            "window"
        );
        assert_eq!(f(b().window(Duration::ZERO, 1)), "window");
        assert_eq!(f(b().window(Duration::from_millis(5), 10)), "window");
        assert_eq!(f(b().name("")), "name");
        assert!(
            b().k(1.0)
                .window(Duration::from_millis(10), 10)
                .validate()
                .is_ok()
        );
    }
}
