//! [`RetryBudgetBuilder`]: a [`RetryBudget`]'s settings, validated once.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use buttress_core::ConfigError;
use buttress_core::time::Origin;

use super::{Inner, MAX_BUDGET_PERCENT, RetryBudget, SLOTS, UNIT};
use crate::error::config_error;

/// Builds a [`RetryBudget`]; [`build`](Self::build) validates.
#[derive(Clone, Debug)]
pub struct RetryBudgetBuilder {
    percent: f64,
    min_per_second: u32,
    ttl: Duration,
}

impl Default for RetryBudgetBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl RetryBudgetBuilder {
    /// Finagle's defaults: 20 %, 10 per second, 10 s.
    #[must_use]
    pub fn new() -> Self {
        Self {
            percent: 20.0,
            min_per_second: 10,
            ttl: Duration::from_secs(10),
        }
    }

    /// The share of requests that may be retried, in percent
    /// (`0.0..=1000.0`; above 100, each request buys more than one retry).
    /// Default: 20, Finagle's `RetryBudget` default (Google SRE suggests 10).
    #[must_use]
    pub fn percent(mut self, percent: f64) -> Self {
        self.percent = percent;
        self
    }

    /// Retries allowed per second whatever the traffic, so a client that
    /// sends little can still retry. Default: 10, Finagle's default.
    #[must_use]
    pub fn min_per_second(mut self, retries: u32) -> Self {
        self.min_per_second = retries;
        self
    }

    /// How long a deposit (and a withdrawal) counts (`1 s..=60 s`).
    /// Default: 10 s, Finagle's default; tower's `TpsBudget` has the same
    /// bounds.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Validates and builds the budget. Its clock starts now (tokio's clock).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `percent` (outside `0.0..=1000.0` or not a
    /// number) or `ttl` (outside 1 s..=60 s).
    pub fn build(self) -> Result<RetryBudget, ConfigError> {
        if !(0.0..=MAX_BUDGET_PERCENT).contains(&self.percent) {
            return Err(config_error(
                "percent",
                format!("must be within 0.0..=1000.0, got {}", self.percent),
            ));
        }
        if self.ttl < Duration::from_secs(1) || self.ttl > Duration::from_secs(60) {
            return Err(config_error(
                "ttl",
                format!("must be within 1s..=60s, got {:?}", self.ttl),
            ));
        }
        let ttl_nanos = buttress_core::time::saturating_nanos(self.ttl);
        // Percent to parts per million of a retry, rounded once: 30 % is
        // exactly 300 000.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let deposit_units = (self.percent * 10_000.0).round() as u128;
        let reserve_units =
            u128::from(self.min_per_second) * u128::from(ttl_nanos) * UNIT / 1_000_000_000;
        Ok(RetryBudget {
            inner: Arc::new(Inner {
                deposits: Default::default(),
                withdrawals: Default::default(),
                epoch: AtomicU64::new(0),
                seq: AtomicU64::new(0),
                origin: Origin::now(),
                slot_nanos: (ttl_nanos / SLOTS).max(1),
                deposit_units,
                reserve_units,
                percent: self.percent,
                min_per_second: self.min_per_second,
                ttl: self.ttl,
            }),
        })
    }
}
