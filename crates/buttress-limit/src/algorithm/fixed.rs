use super::{Limit, Sample};
use crate::error::{ConfigError, config_error};

/// A static limit that never moves: tower's `ConcurrencyLimit`, with the
/// rest of this crate (shedding, queueing, partitions, telemetry).
///
/// ```
/// use buttress_limit::algorithm::{Fixed, Limit};
/// assert_eq!(Fixed::new(64)?.limit(), 64);
/// assert_eq!(Fixed::new(0).unwrap_err().field(), "limit");
/// # Ok::<(), buttress_limit::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fixed {
    limit: u32,
}

impl Fixed {
    /// A limit of `limit` calls in flight.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `limit` when it is zero: a limiter that
    /// admits nothing.
    pub fn new(limit: u32) -> Result<Self, ConfigError> {
        if limit == 0 {
            return Err(config_error("limit", "must be at least 1"));
        }
        Ok(Self { limit })
    }
}

impl Limit for Fixed {
    fn limit(&self) -> u32 {
        self.limit
    }

    fn update(&mut self, _: &Sample) -> u32 {
        self.limit
    }

    fn name(&self) -> &'static str {
        "fixed"
    }
}
