//! The cache's own errors.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// A backend error handed to a coalesced waiter: several callers waited on
/// one load and it failed, so each gets this wrapper around the one shared
/// error. [`inner`](Self::inner) (or `source()`) gives the backend's error
/// for `downcast_ref`. A caller whose load had no waiter gets the
/// backend's error itself.
#[derive(Clone)]
pub struct CoalescedError {
    inner: Arc<dyn Error + Send + Sync>,
}

impl CoalescedError {
    pub(crate) fn new(inner: Arc<dyn Error + Send + Sync>) -> Self {
        Self { inner }
    }

    /// The backend's error.
    #[must_use]
    pub fn inner(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.inner
    }
}

impl fmt::Debug for CoalescedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CoalescedError").field(&self.inner).finish()
    }
}

impl fmt::Display for CoalescedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cache load failed: {}", self.inner)
    }
}

impl Error for CoalescedError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.inner)
    }
}

/// A configuration the cache builder rejected; names the field.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A duration that must be positive was zero.
    ZeroDuration {
        /// The setter's name.
        field: &'static str,
    },
    /// A number outside its range.
    OutOfRange {
        /// The setter's name.
        field: &'static str,
        /// The value given.
        value: f64,
        /// The range it must fall in, in words.
        range: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroDuration { field } => write!(f, "cache: `{field}` must be greater than zero"),
            Self::OutOfRange {
                field,
                value,
                range,
            } => write!(f, "cache: `{field}` = {value} is outside {range}"),
        }
    }
}

impl Error for ConfigError {}
