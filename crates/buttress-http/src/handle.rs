//! [`CacheHeaders`]: the shared state behind a [`CacheHeadersLayer`]:
//! its configuration, its name and its counters.

use std::fmt;
use std::sync::{Arc, Weak};

use buttress_core::telemetry::{Count, Emit, Name, Publish};

use crate::config::{CacheHeadersBuilder, Config};
use crate::layer::CacheHeadersLayer;
use crate::telemetry::{CONDITIONAL, ETAGS};

/// The caching-headers configuration that every service of its
/// [`CacheHeadersLayer`]s shares, and their counts.
///
/// # Clone
///
/// Clones share one configuration and one set of counters.
#[derive(Clone)]
pub struct CacheHeaders(pub(crate) Arc<Shared>);

pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) counts: Counts,
}

#[derive(Default)]
pub(crate) struct Counts {
    pub(crate) not_modified: Count,
    pub(crate) precondition_failed: Count,
    pub(crate) etags_strong: Count,
    pub(crate) etags_weak: Count,
    pub(crate) etags_skipped: Count,
}

/// What a [`CacheHeaders`] has done since it was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheHeadersSnapshot {
    /// `304 Not Modified` answers, before or after the handler.
    pub not_modified: u64,
    /// `412 Precondition Failed` answers, before or after the handler.
    pub precondition_failed: u64,
    /// Strong ETags computed from a buffered body.
    pub etags_strong: u64,
    /// Weak ETags derived from `Last-Modified` and `Content-Length`.
    pub etags_weak: u64,
    /// Responses that could have had an ETag but were too large or
    /// streamed, and got none.
    pub etags_skipped: u64,
}

impl CacheHeaders {
    /// A builder: no policy, body ETags up to 64 KiB, conditional
    /// requests on.
    #[track_caller]
    pub fn builder() -> CacheHeadersBuilder {
        CacheHeadersBuilder::new()
    }

    pub(crate) fn new(config: Config) -> Self {
        let shared = Arc::new(Shared {
            config,
            counts: Counts::default(),
        });
        let weak: Weak<dyn Publish> = Arc::downgrade(&shared) as _;
        shared.config.registration.attach(weak);
        Self(shared)
    }

    /// The name this instance got.
    #[must_use]
    pub fn name(&self) -> Name {
        self.0.config.registration.name()
    }

    /// A layer applying this configuration.
    #[must_use]
    pub fn layer(&self) -> CacheHeadersLayer {
        CacheHeadersLayer::new(self.clone())
    }

    /// The counts, read now.
    #[must_use]
    pub fn snapshot(&self) -> CacheHeadersSnapshot {
        let c = &self.0.counts;
        CacheHeadersSnapshot {
            not_modified: c.not_modified.get(),
            precondition_failed: c.precondition_failed.get(),
            etags_strong: c.etags_strong.get(),
            etags_weak: c.etags_weak.get(),
            etags_skipped: c.etags_skipped.get(),
        }
    }
}

impl fmt::Debug for CacheHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheHeaders")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

impl Publish for Shared {
    fn publish(&self, out: &mut Emit<'_>) {
        let c = &self.counts;
        out.counter_with(
            CONDITIONAL,
            &[("outcome", "not_modified")],
            c.not_modified.get(),
        );
        out.counter_with(
            CONDITIONAL,
            &[("outcome", "precondition_failed")],
            c.precondition_failed.get(),
        );
        out.counter_with(ETAGS, &[("outcome", "strong")], c.etags_strong.get());
        out.counter_with(ETAGS, &[("outcome", "weak")], c.etags_weak.get());
        out.counter_with(ETAGS, &[("outcome", "skipped")], c.etags_skipped.get());
    }
}
