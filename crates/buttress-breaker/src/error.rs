//! The breaker's errors: [`CircuitOpen`] at request time, [`ConfigError`] at build time.

/// The breaker's rejection, from the shared vocabulary in
/// [`buttress_core::reject`].
pub use buttress_core::reject::CircuitOpen;

pub use buttress_core::ConfigError;

/// A [`ConfigError`] for this crate's builders.
pub(crate) fn config_error(field: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::new("circuit breaker", field, problem)
}
