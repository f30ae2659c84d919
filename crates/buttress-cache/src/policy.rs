//! What to cache, for how long, with which tags.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use buttress_core::BoxError;
use buttress_core::classify::{Classify, Outcome};
use buttress_core::reject::rejection;

use crate::entry::Tag;

/// The policy's verdict on one successful response.
///
/// ```
/// use std::time::Duration;
/// use buttress_cache::Verdict;
///
/// let v = Verdict::cache_for(Duration::from_secs(30)).tag("user:7");
/// assert!(v.is_cacheable());
/// assert!(!Verdict::skip().is_cacheable());
/// ```
#[derive(Clone, PartialEq, Eq)]
#[must_use]
pub struct Verdict {
    pub(crate) kind: Kind,
    pub(crate) ttl: Option<Duration>,
    pub(crate) tags: Vec<Tag>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Skip,
    Cache,
    Negative,
}

impl Verdict {
    /// Do not cache this response.
    pub fn skip() -> Self {
        Self {
            kind: Kind::Skip,
            ttl: None,
            tags: Vec::new(),
        }
    }

    /// Cache it for the cache's TTL ([`CacheBuilder::ttl`](crate::CacheBuilder::ttl)).
    pub fn cache() -> Self {
        Self {
            kind: Kind::Cache,
            ttl: None,
            tags: Vec::new(),
        }
    }

    /// Cache it for `ttl` (jittered like every TTL).
    pub fn cache_for(ttl: Duration) -> Self {
        Self {
            ttl: Some(ttl),
            ..Self::cache()
        }
    }

    /// Cache it as a negative answer ("not found") for the cache's negative
    /// TTL ([`CacheBuilder::negative_ttl`](crate::CacheBuilder::negative_ttl)). A
    /// negative entry has no stale window: it is never served stale, by
    /// stale-while-revalidate or stale-if-error.
    pub fn negative() -> Self {
        Self {
            kind: Kind::Negative,
            ttl: None,
            tags: Vec::new(),
        }
    }

    /// Cache it as a negative answer for `ttl`.
    pub fn negative_for(ttl: Duration) -> Self {
        Self {
            ttl: Some(ttl),
            ..Self::negative()
        }
    }

    /// Attaches a tag: [`Cache::invalidate_tag`](crate::Cache::invalidate_tag)
    /// drops every entry carrying it.
    pub fn tag(mut self, tag: impl Into<Tag>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Whether the response will be cached.
    #[must_use]
    pub fn is_cacheable(&self) -> bool {
        self.kind != Kind::Skip
    }
}

impl fmt::Debug for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verdict")
            .field("kind", &self.kind)
            .field("ttl", &self.ttl)
            .field("tags", &self.tags)
            .finish()
    }
}

/// Decides, per successful response, whether and how it is cached. Errors
/// are judged by the layer's [`ErrorPolicy`] instead (by default none is
/// cached); to cache a "not found" the backend answers as a response
/// (`Ok(None)`, a 404), return [`Verdict::negative`] for it.
///
/// Implemented for closures `Fn(&Response) -> Verdict`:
///
/// ```
/// use buttress_cache::{CachePolicy, Verdict};
///
/// let policy = |found: &Option<String>| match found {
///     Some(_) => Verdict::cache(),
///     None => Verdict::negative(),
/// };
/// assert!(policy.verdict(&None).is_cacheable());
/// ```
pub trait CachePolicy<T> {
    /// The verdict on `response`.
    fn verdict(&self, response: &T) -> Verdict;
}

impl<T, F> CachePolicy<T> for F
where
    F: Fn(&T) -> Verdict,
{
    fn verdict(&self, response: &T) -> Verdict {
        self(response)
    }
}

/// The default policy: every successful response is cached for the
/// cache's TTL, untagged.
#[derive(Clone, Copy, Debug, Default)]
pub struct CacheSuccesses;

impl<T> CachePolicy<T> for CacheSuccesses {
    #[inline]
    fn verdict(&self, _response: &T) -> Verdict {
        Verdict::cache()
    }
}

/// Makes a fresh copy of a cached error, converted the way the backend's
/// own error is (`E: Into<BoxError>`).
pub(crate) type MakeError = Arc<dyn Fn() -> BoxError + Send + Sync>;

/// An [`ErrorPolicy`]'s answer for one error: cache it for a TTL.
///
/// It holds a clone of the error; every request it answers gets its own
/// copy, converted into a [`BoxError`] exactly as the original was, so
/// `downcast_ref::<E>()` works the same on a cached answer as on the
/// backend's.
#[must_use]
pub struct ErrorVerdict {
    pub(crate) ttl: Duration,
    pub(crate) make: MakeError,
}

impl ErrorVerdict {
    /// Cache a clone of `error` for `ttl` (jittered like every TTL; a zero
    /// TTL caches nothing).
    pub fn cache_for<E>(error: &E, ttl: Duration) -> Self
    where
        E: Clone + Into<BoxError> + Send + Sync + 'static,
    {
        let error = error.clone();
        Self {
            ttl,
            make: Arc::new(move || error.clone().into()),
        }
    }

    /// The TTL.
    #[must_use]
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

impl fmt::Debug for ErrorVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorVerdict")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// Decides, per error the backend's `call` returns, whether it is cached
/// (negative caching of chosen errors); see
/// [`CacheLayer::cache_errors`](crate::CacheLayer::cache_errors).
///
/// Implemented for closures `Fn(&E) -> Option<Duration>` (the TTL, or
/// `None` to not cache), which need `E: Clone`; [`CacheNoErrors`], the
/// default, caches none and needs nothing of `E`.
///
/// ```
/// use std::time::Duration;
/// use buttress_cache::ErrorPolicy;
///
/// #[derive(Clone, Debug, PartialEq)]
/// enum DbError { NotFound, Timeout }
/// # impl std::fmt::Display for DbError {
/// #     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{self:?}") }
/// # }
/// # impl std::error::Error for DbError {}
///
/// let policy = |e: &DbError| (*e == DbError::NotFound).then_some(Duration::from_secs(5));
/// assert_eq!(policy.verdict(&DbError::NotFound).unwrap().ttl(), Duration::from_secs(5));
/// assert!(policy.verdict(&DbError::Timeout).is_none());
/// ```
pub trait ErrorPolicy<E> {
    /// The verdict on `error`: `None` means it is not cached.
    fn verdict(&self, error: &E) -> Option<ErrorVerdict>;
}

impl<E, F> ErrorPolicy<E> for F
where
    F: Fn(&E) -> Option<Duration>,
    E: Clone + Into<BoxError> + Send + Sync + 'static,
{
    fn verdict(&self, error: &E) -> Option<ErrorVerdict> {
        let ttl = self(error).filter(|ttl| !ttl.is_zero())?;
        Some(ErrorVerdict::cache_for(error, ttl))
    }
}

/// The default error policy: no error is cached (each is handed to the
/// callers waiting on its load, then dropped).
#[derive(Clone, Copy, Debug, Default)]
pub struct CacheNoErrors;

impl<E> ErrorPolicy<E> for CacheNoErrors {
    #[inline]
    fn verdict(&self, _error: &E) -> Option<ErrorVerdict> {
        None
    }
}

/// A layer's three rules about what its loads' results mean: the
/// [`Classify`] that says whether a result is a success, a failure or
/// ignored, the [`CachePolicy`] for successful responses and the
/// [`ErrorPolicy`] for errors. Cloned into each miss's future.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Rules<P, N, C> {
    pub(crate) policy: P,
    pub(crate) errors: N,
    pub(crate) classifier: C,
}

/// What a load's result means for the cache.
pub(crate) enum Loaded<V> {
    /// A response the classifier calls a success: stored as the
    /// [`CachePolicy`]'s verdict says.
    Value(V),
    /// A response the classifier calls a failure (`failed`: stale-if-error
    /// may answer instead) or ignores: handed to the callers, never stored.
    Passed { value: V, failed: bool },
    /// An error, and the [`ErrorPolicy`]'s verdict when it may be cached
    /// (not for an ignored one). `failed`: the classifier calls it a
    /// failure (stale-if-error may answer instead).
    Error {
        error: BoxError,
        failed: bool,
        cache: Option<ErrorVerdict>,
    },
}

impl<V> Loaded<V> {
    /// An error from the inner service's `poll_ready`: about the service
    /// (overload, an open breaker), not the key, so a failure that is
    /// never cached.
    pub(crate) fn not_ready(error: BoxError) -> Self {
        Self::Error {
            error,
            failed: true,
            cache: None,
        }
    }
}

impl<P, N, C> Rules<P, N, C> {
    /// Sorts the result of the inner service's `call`.
    pub(crate) fn sort<V, E>(&self, result: Result<V, E>) -> Loaded<V>
    where
        C: Classify<V, E>,
        N: ErrorPolicy<E>,
        E: Into<BoxError>,
    {
        let outcome = self.classifier.classify(&result).outcome();
        let failed = outcome == Outcome::Failure;
        match result {
            Ok(value) if outcome == Outcome::Success => Loaded::Value(value),
            Ok(value) => Loaded::Passed { value, failed },
            Err(error) => {
                let cache = if matches!(outcome, Outcome::Success | Outcome::Failure) {
                    self.errors.verdict(&error)
                } else {
                    None
                };
                let error: BoxError = error.into();
                // A buttress rejection (an open breaker, a shed, a passed
                // deadline) is about the moment, not the key: never cached,
                // whatever the error policy says.
                let cache = cache.filter(|_| rejection(&error).is_none());
                Loaded::Error {
                    error,
                    failed,
                    cache,
                }
            }
        }
    }
}
