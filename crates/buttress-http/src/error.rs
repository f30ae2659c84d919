//! Errors: bad configuration is core's [`ConfigError`]; a bad entity tag
//! is [`InvalidETag`]. The layer itself adds no failure: a failed
//! precondition is a `412` response, not an error.

pub use buttress_core::ConfigError;

/// The layer name [`ConfigError`]s of this crate carry.
pub(crate) const LAYER: &str = "cache headers";

pub(crate) fn config_error(field: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::new(LAYER, field, problem)
}

/// An opaque tag holding a character an entity tag cannot (RFC 9110
/// §8.8.3: visible ASCII other than `"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidETag(pub(crate) ());

impl std::fmt::Display for InvalidETag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid entity tag: only visible ASCII other than '\"' is allowed")
    }
}

impl std::error::Error for InvalidETag {}
