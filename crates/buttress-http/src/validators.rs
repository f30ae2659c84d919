//! The validators of a resource's current representation, and the
//! user-supplied lookup that finds them before the handler runs.

use std::fmt;
use std::time::SystemTime;

use http::request::Parts;

use crate::conditional::Current;
use crate::header::ETag;

/// The validators of a representation: its entity tag and its
/// modification time (RFC 9110 §8.8).
///
/// ```
/// use std::time::SystemTime;
/// use buttress_http::{Validators, header::ETag};
///
/// let v = Validators::new().with_etag(ETag::strong("v7")?).with_last_modified(SystemTime::UNIX_EPOCH);
/// assert_eq!(v.etag(), Some(&ETag::strong("v7")?));
/// # Ok::<(), buttress_http::InvalidETag>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Validators {
    etag: Option<ETag>,
    last_modified: Option<SystemTime>,
}

impl Validators {
    /// No validators (a representation that exists but offers neither).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// With the entity tag `etag`.
    #[must_use]
    pub fn with_etag(mut self, etag: ETag) -> Self {
        self.etag = Some(etag);
        self
    }

    /// With the modification time `at` (compared at the second, the
    /// resolution of an HTTP date).
    #[must_use]
    pub fn with_last_modified(mut self, at: SystemTime) -> Self {
        self.last_modified = Some(at);
        self
    }

    /// The entity tag.
    #[must_use]
    pub fn etag(&self) -> Option<&ETag> {
        self.etag.as_ref()
    }

    /// The modification time.
    #[must_use]
    pub fn last_modified(&self) -> Option<SystemTime> {
        self.last_modified
    }

    pub(crate) fn current(&self) -> Current<'_> {
        Current {
            etag: self.etag.as_ref().map(ETag::as_entity_tag),
            last_modified: self.last_modified,
        }
    }
}

/// What a [`ValidatorLookup`] knows about the target resource.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Lookup {
    /// Nothing: the handler runs, and preconditions are evaluated against
    /// its response where the method is safe.
    Unknown,
    /// The resource has no current representation (`If-Match: *` fails,
    /// `If-None-Match: *` holds: create-only-if-absent works).
    Absent,
    /// The current representation's validators.
    Present(Validators),
}

/// Finds the current validators of a request's target before the handler
/// runs, so a failed precondition on an unsafe method is answered `412`
/// without performing it (optimistic concurrency: `PUT` with `If-Match`),
/// and a `304` is answered without running the handler. Called only for
/// requests that carry a precondition field.
///
/// A closure `Fn(&http::request::Parts) -> Lookup` is a lookup. It runs on
/// the request path: keep it to an in-memory read (a version map, a cache).
pub trait ValidatorLookup: Send + Sync + 'static {
    /// The validators of `request`'s target.
    fn lookup(&self, request: &Parts) -> Lookup;
}

impl<F> ValidatorLookup for F
where
    F: Fn(&Parts) -> Lookup + Send + Sync + 'static,
{
    fn lookup(&self, request: &Parts) -> Lookup {
        self(request)
    }
}

pub(crate) struct DebugLookup<'a>(pub(crate) &'a Option<std::sync::Arc<dyn ValidatorLookup>>);

impl fmt::Debug for DebugLookup<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "Some(..)" } else { "None" })
    }
}
