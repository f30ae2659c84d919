//! [`Config`]: the builder's settings, checked once and turned into the
//! integers the breaker computes with.

use std::fmt;
use std::time::Duration;

use buttress_core::ConfigError;
use buttress_core::telemetry::Name;

use super::{
    CircuitBreakerBuilder, Listener, MAX_COUNT_WINDOW, MAX_HALF_OPEN_PROBES, MAX_TIME_BUCKETS,
    WindowKind,
};
use crate::error::config_error;

/// A rate threshold in parts per million (thresholds compare in exact
/// integer arithmetic): above zero, at most one.
fn rate(field: &'static str, v: f64) -> Result<u32, ConfigError> {
    if !(v > 0.0 && v <= 1.0) {
        return Err(config_error(
            field,
            format!("must be above 0.0 and at most 1.0, got {v}"),
        ));
    }
    let ppm = (v * 1e6).round() as u32;
    if ppm == 0 {
        return Err(config_error(
            field,
            format!("must be at least 0.000001, got {v}"),
        ));
    }
    Ok(ppm)
}

/// A duration the breaker's nanosecond clock can hold (`u64` nanoseconds,
/// about 584 years): above that, deadlines computed from it would wrap.
fn on_the_clock(field: &'static str, d: Duration) -> Result<u64, ConfigError> {
    if d.is_zero() {
        return Err(config_error(field, "must be greater than zero"));
    }
    u64::try_from(d.as_nanos()).map_err(|_| {
        config_error(
            field,
            format!("({d:?}) must be at most u64::MAX nanoseconds (about 584 years)"),
        )
    })
}

/// The validated, immutable configuration: everything a breaker needs,
/// with the name it asks for (its effective name is claimed when it is
/// built), its listener and its seed. A keyed set clones it for each key's
/// breaker.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) name: Name,
    pub(crate) listener: Option<Listener>,
    pub(crate) seed: Option<u64>,
    pub(crate) failure_ppm: u32,
    pub(crate) slow_ppm: u32,
    pub(crate) window: WindowKind,
    pub(crate) minimum_calls: u32,
    pub(crate) slow_call_nanos: Option<u64>,
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) open_duration: Duration,
    pub(crate) open_duration_multiplier: f64,
    pub(crate) max_open_duration: Duration,
    pub(crate) open_duration_jitter: f64,
    pub(crate) half_open_probes: u32,
    pub(crate) half_open_max_wait_nanos: u64,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("name", &self.name)
            .field("window", &self.window)
            .field("minimum_calls", &self.minimum_calls)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Checks every setting of `b`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad setting.
    pub(crate) fn validate(b: CircuitBreakerBuilder) -> Result<Self, ConfigError> {
        if b.name.as_str().is_empty() {
            return Err(config_error("name", "must not be empty"));
        }
        let failure_ppm = rate("failure_rate_threshold", b.failure_rate_threshold)?;
        let slow_ppm = rate("slow_call_rate_threshold", b.slow_call_rate_threshold)?;
        let minimum_calls = match b.window {
            WindowKind::Count { size } => {
                if size == 0 || size > MAX_COUNT_WINDOW {
                    return Err(config_error(
                        "count_window",
                        format!("must be within 1..={MAX_COUNT_WINDOW} calls, got {size}"),
                    ));
                }
                match b.minimum_calls {
                    Some(m) if m > size => {
                        return Err(config_error(
                            "minimum_calls",
                            format!("({m}) must not exceed the count window ({size} calls)"),
                        ));
                    }
                    Some(m) => m,
                    None => 20.min(size),
                }
            }
            WindowKind::Time { duration, buckets } => {
                if buckets == 0 || buckets > MAX_TIME_BUCKETS {
                    return Err(config_error(
                        "time_window",
                        format!("buckets must be within 1..={MAX_TIME_BUCKETS}, got {buckets}"),
                    ));
                }
                if duration < Duration::from_millis(u64::from(buckets)) {
                    return Err(config_error(
                        "time_window",
                        format!(
                            "duration {duration:?} is too short: each of the {buckets} buckets must span at least 1ms"
                        ),
                    ));
                }
                on_the_clock("time_window", duration)?;
                b.minimum_calls.unwrap_or(20)
            }
        };
        if minimum_calls == 0 {
            return Err(config_error("minimum_calls", "must be at least 1"));
        }
        let slow_call_nanos = b
            .slow_call_duration
            .map(|d| on_the_clock("slow_call_duration", d))
            .transpose()?;
        if b.consecutive_failures == Some(0) {
            return Err(config_error("consecutive_failures", "must be at least 1"));
        }
        on_the_clock("open_duration", b.open_duration)?;
        if !(b.open_duration_multiplier >= 1.0 && b.open_duration_multiplier.is_finite()) {
            return Err(config_error(
                "open_duration_multiplier",
                format!(
                    "must be a finite number >= 1.0, got {}",
                    b.open_duration_multiplier
                ),
            ));
        }
        let max_open_duration = match b.max_open_duration {
            Some(max) if max < b.open_duration => {
                return Err(config_error(
                    "max_open_duration",
                    format!(
                        "({max:?}) must not be below open_duration ({:?})",
                        b.open_duration
                    ),
                ));
            }
            Some(max) => {
                on_the_clock("max_open_duration", max)?;
                max
            }
            None => b.open_duration.max(Duration::from_secs(300)),
        };
        if !(0.0..1.0).contains(&b.open_duration_jitter) {
            return Err(config_error(
                "open_duration_jitter",
                format!("must be within 0.0..1.0, got {}", b.open_duration_jitter),
            ));
        }
        if b.half_open_probes == 0 || b.half_open_probes > MAX_HALF_OPEN_PROBES {
            return Err(config_error(
                "half_open_probes",
                format!(
                    "must be within 1..={MAX_HALF_OPEN_PROBES}, got {}",
                    b.half_open_probes
                ),
            ));
        }
        if b.half_open_max_wait.is_zero() {
            return Err(config_error(
                "half_open_max_wait",
                "must be greater than zero",
            ));
        }
        Ok(Self {
            name: b.name,
            listener: b.listener,
            seed: b.seed,
            failure_ppm,
            slow_ppm,
            window: b.window,
            minimum_calls,
            slow_call_nanos,
            consecutive_failures: b.consecutive_failures,
            open_duration: b.open_duration,
            open_duration_multiplier: b.open_duration_multiplier,
            max_open_duration,
            open_duration_jitter: b.open_duration_jitter,
            half_open_probes: b.half_open_probes,
            // `Duration::MAX` (any wait past the clock) waits forever.
            half_open_max_wait_nanos: buttress_core::time::saturating_nanos(b.half_open_max_wait),
        })
    }

    /// The fewest of `n` calls that make a rate of at least `ppm`
    /// (at least one): `ceil(ppm · n / 10⁶)`, in exact integer arithmetic.
    pub(crate) fn needed(ppm: u32, n: u64) -> u64 {
        (u128::from(ppm) * u128::from(n))
            .div_ceil(1_000_000)
            .max(1)
            .try_into()
            .unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b() -> CircuitBreakerBuilder {
        CircuitBreakerBuilder::new()
    }

    fn field(b: CircuitBreakerBuilder) -> &'static str {
        Config::validate(b).unwrap_err().field()
    }

    #[test]
    fn rejects_bad_ratios_by_name() {
        for bad in [-0.1, 0.0, 1e-9, 1.01, f64::NAN, f64::INFINITY] {
            assert_eq!(
                field(b().failure_rate_threshold(bad)),
                "failure_rate_threshold",
                "{bad}"
            );
            assert_eq!(
                field(b().slow_call_rate_threshold(bad)),
                "slow_call_rate_threshold",
                "{bad}"
            );
        }
        for bad in [-0.1, 1.0, f64::NAN] {
            assert_eq!(
                field(b().open_duration_jitter(bad)),
                "open_duration_jitter",
                "{bad}"
            );
        }
        for bad in [0.5, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(
                field(b().open_duration_multiplier(bad)),
                "open_duration_multiplier",
                "{bad}"
            );
        }
    }

    #[test]
    fn rejects_bad_sizes_by_name() {
        assert_eq!(field(b().count_window(0)), "count_window");
        assert_eq!(field(b().count_window(2_000_000)), "count_window");
        assert_eq!(field(b().time_window(Duration::ZERO, 10)), "time_window");
        assert_eq!(
            field(b().time_window(Duration::from_secs(1), 0)),
            "time_window"
        );
        assert_eq!(
            field(b().time_window(Duration::from_secs(1), 1001)),
            "time_window"
        );
        assert_eq!(field(b().half_open_probes(0)), "half_open_probes");
        assert_eq!(field(b().half_open_probes(1001)), "half_open_probes");
        assert_eq!(
            field(b().count_window(10).minimum_calls(11)),
            "minimum_calls"
        );
        assert_eq!(field(b().minimum_calls(0)), "minimum_calls");
        assert_eq!(
            field(b().time_window(Duration::from_secs(1), 1).minimum_calls(0)),
            "minimum_calls"
        );
        assert_eq!(field(b().consecutive_failures(0)), "consecutive_failures");
        assert_eq!(field(b().name("")), "name");
    }

    #[test]
    fn rejects_zero_and_overflowing_durations_by_name() {
        let past_the_clock = Duration::from_nanos(u64::MAX) + Duration::from_nanos(1);
        assert_eq!(field(b().open_duration(Duration::ZERO)), "open_duration");
        assert_eq!(
            field(
                b().open_duration(past_the_clock)
                    .max_open_duration(past_the_clock)
            ),
            "open_duration"
        );
        assert_eq!(
            field(b().max_open_duration(Duration::MAX)),
            "max_open_duration"
        );
        assert_eq!(
            field(
                b().open_duration(Duration::from_secs(60))
                    .max_open_duration(Duration::from_secs(59))
            ),
            "max_open_duration"
        );
        assert_eq!(
            field(b().slow_call_duration(Duration::ZERO)),
            "slow_call_duration"
        );
        assert_eq!(
            field(b().slow_call_duration(Duration::MAX)),
            "slow_call_duration"
        );
        assert_eq!(field(b().time_window(Duration::MAX, 10)), "time_window");
        assert_eq!(
            field(b().half_open_max_wait(Duration::ZERO)),
            "half_open_max_wait"
        );
        // The longest durations the clock holds are fine, and an endless
        // half-open wait is documented.
        let longest = Duration::from_nanos(u64::MAX);
        assert!(
            Config::validate(
                b().open_duration(longest)
                    .slow_call_duration(longest)
                    .time_window(longest, 10)
                    .half_open_max_wait(Duration::MAX)
            )
            .is_ok()
        );
    }

    #[test]
    fn defaults_build_and_small_windows_cap_minimum_calls() {
        let c = Config::validate(b().count_window(5)).unwrap();
        assert_eq!(c.minimum_calls, 5);
        let c = Config::validate(b()).unwrap();
        assert_eq!(c.minimum_calls, 20);
        assert_eq!(c.failure_ppm, 500_000);
        assert_eq!(c.max_open_duration, Duration::from_secs(300));
        assert!(
            c.name.as_str().contains("validate.rs:"),
            "named after the caller's line: {}",
            c.name
        );
        let c = Config::validate(b().failure_rate_threshold(0.000_001)).unwrap();
        assert_eq!(c.failure_ppm, 1);
    }

    #[test]
    fn needed_is_an_exact_ceiling() {
        assert_eq!(Config::needed(500_000, 100), 50);
        assert_eq!(Config::needed(500_000, 101), 51);
        // 0.1 × 30 is 3.0000000000000004 in floating point; here it is 3.
        assert_eq!(Config::needed(100_000, 30), 3);
        assert_eq!(Config::needed(1, 30), 1);
        assert_eq!(Config::needed(1_000_000, 7), 7);
    }
}
