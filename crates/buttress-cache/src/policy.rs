//! What to cache, for how long, with which tags.

use std::fmt;
use std::time::Duration;

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

    /// Cache it for the cache's TTL ([`Builder::ttl`](crate::Builder::ttl)).
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
    /// TTL ([`Builder::negative_ttl`](crate::Builder::negative_ttl)). A
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
/// are never cached (they are handed to every coalesced waiter, then
/// dropped); to cache a "not found", let the backend answer it as a
/// response (`Ok(None)`, a 404) and return [`Verdict::negative`] for it.
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
