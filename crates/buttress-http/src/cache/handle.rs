//! [`HttpCache`]: the shared state behind an [`HttpCacheLayer`]: its
//! configuration, its store and its counters.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use buttress_cache::store::Store;
use buttress_core::telemetry::{Count, Emit, Name, Publish};

use super::config::{Config, HttpCacheBuilder};
use super::layer::HttpCacheLayer;
use super::stored::Variants;
use super::telemetry::{INVALIDATIONS, LOOKUPS, REVALIDATIONS, STORES};

/// An RFC 9111 HTTP cache: the store and configuration every service of
/// its [`HttpCacheLayer`]s shares, and their counts.
///
/// # Clone
///
/// Clones share one store, one configuration and one set of counters.
pub struct HttpCache<St>(pub(crate) Arc<Shared<St>>);

impl<St> Clone for HttpCache<St> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

pub(crate) struct Shared<St> {
    pub(crate) config: Config,
    pub(crate) store: St,
    pub(crate) counts: Counts,
    /// Keys with a background revalidation running (at most one each).
    pub(crate) revalidating: Mutex<HashSet<String>>,
    /// Keys with a miss in flight: later misses wait for its end.
    pub(crate) loading: Mutex<HashMap<String, tokio::sync::watch::Receiver<()>>>,
}

/// A miss leading the upstream request for its key; dropping it (done,
/// failed or cancelled) wakes the misses waiting on it.
pub(crate) struct Lead<'a, St> {
    shared: &'a Shared<St>,
    key: String,
    _done: tokio::sync::watch::Sender<()>,
}

impl<St> Drop for Lead<'_, St> {
    fn drop(&mut self) {
        self.shared
            .loading
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

/// What a miss does: lead the upstream request, or wait for the one in
/// flight.
pub(crate) enum Join<'a, St> {
    Lead(Lead<'a, St>),
    Wait(tokio::sync::watch::Receiver<()>),
}

impl<St> Shared<St> {
    /// Claims the background revalidation of `key`: `false` when one runs.
    pub(crate) fn claim(&self, key: &str) -> bool {
        self.revalidating
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.to_owned())
    }

    /// Joins the misses for `key` (one upstream request per key at a time).
    pub(crate) fn join(&self, key: &str) -> Join<'_, St> {
        let mut loading = self.loading.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(rx) = loading.get(key) {
            return Join::Wait(rx.clone());
        }
        let (tx, rx) = tokio::sync::watch::channel(());
        loading.insert(key.to_owned(), rx);
        Join::Lead(Lead {
            shared: self,
            key: key.to_owned(),
            _done: tx,
        })
    }

    /// Releases what [`claim`](Self::claim) took.
    pub(crate) fn release(&self, key: &str) {
        self.revalidating
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

#[derive(Default)]
pub(crate) struct Counts {
    pub(crate) hits: Count,
    pub(crate) stale: Count,
    pub(crate) misses: Count,
    pub(crate) revalidate: Count,
    pub(crate) bypassed: Count,
    pub(crate) unsatisfiable: Count,
    pub(crate) not_modified: Count,
    pub(crate) modified: Count,
    pub(crate) revalidation_errors: Count,
    pub(crate) stored: Count,
    pub(crate) uncacheable: Count,
    pub(crate) too_large: Count,
    pub(crate) invalidations: Count,
    pub(crate) coalesced: Count,
}

/// What an [`HttpCache`] has done since it was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpCacheSnapshot {
    /// Requests served a fresh stored response.
    pub hits: u64,
    /// Requests served a stale stored response (`max-stale`,
    /// stale-while-revalidate, stale-if-error).
    pub stale: u64,
    /// Cacheable requests nothing stored matched, forwarded.
    pub misses: u64,
    /// Requests whose stored response was validated upstream before use.
    pub revalidate: u64,
    /// Requests the cache does not serve (methods other than GET and
    /// HEAD, no effective URI), forwarded.
    pub bypassed: u64,
    /// `only-if-cached` requests answered `504`.
    pub unsatisfiable: u64,
    /// Revalidations answered `304` that freshened the stored response.
    pub not_modified: u64,
    /// Revalidations answered with a new response.
    pub modified: u64,
    /// Revalidations that met an error or a 5xx.
    pub revalidation_errors: u64,
    /// Responses stored.
    pub stored: u64,
    /// Responses to cacheable requests that may not be stored.
    pub uncacheable: u64,
    /// Responses over the body cap, streamed through and not stored.
    pub too_large: u64,
    /// Keys invalidated by unsafe requests.
    pub invalidations: u64,
    /// Of the hits, those served after waiting for another request's
    /// miss of the same key (coalesced misses).
    pub coalesced: u64,
}

impl<St> HttpCache<St>
where
    St: Store<String, Variants>,
{
    /// A builder storing into `store`: a shared cache, bodies up to
    /// 8 MiB, 8 variants per URI.
    #[track_caller]
    pub fn builder(store: St) -> HttpCacheBuilder<St> {
        HttpCacheBuilder::new(store)
    }

    pub(crate) fn new(config: Config, store: St) -> Self {
        let shared = Arc::new(Shared {
            config,
            store,
            counts: Counts::default(),
            revalidating: Mutex::new(HashSet::new()),
            loading: Mutex::new(HashMap::new()),
        });
        let weak: Weak<dyn Publish> = Arc::downgrade(&shared) as _;
        shared.config.registration.attach(weak);
        Self(shared)
    }

    /// A layer caching through this cache.
    #[must_use]
    pub fn layer(&self) -> HttpCacheLayer<St> {
        HttpCacheLayer::new(self.clone())
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &St {
        &self.0.store
    }
}

impl<St> HttpCache<St> {
    /// The name this instance got.
    #[must_use]
    pub fn name(&self) -> Name {
        self.0.config.registration.name()
    }

    /// The counts, read now.
    #[must_use]
    pub fn snapshot(&self) -> HttpCacheSnapshot {
        let c = &self.0.counts;
        HttpCacheSnapshot {
            hits: c.hits.get(),
            stale: c.stale.get(),
            misses: c.misses.get(),
            revalidate: c.revalidate.get(),
            bypassed: c.bypassed.get(),
            unsatisfiable: c.unsatisfiable.get(),
            not_modified: c.not_modified.get(),
            modified: c.modified.get(),
            revalidation_errors: c.revalidation_errors.get(),
            stored: c.stored.get(),
            uncacheable: c.uncacheable.get(),
            too_large: c.too_large.get(),
            invalidations: c.invalidations.get(),
            coalesced: c.coalesced.get(),
        }
    }
}

impl<St> fmt::Debug for HttpCache<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpCache")
            .field("name", &self.name())
            .field("mode", &self.0.config.semantics.mode())
            .finish_non_exhaustive()
    }
}

impl<St: Send + Sync> Publish for Shared<St> {
    fn publish(&self, out: &mut Emit<'_>) {
        let c = &self.counts;
        for (outcome, n) in [
            ("hit", &c.hits),
            ("stale", &c.stale),
            ("miss", &c.misses),
            ("revalidate", &c.revalidate),
            ("bypass", &c.bypassed),
            ("unsatisfiable", &c.unsatisfiable),
        ] {
            out.counter_with(LOOKUPS, &[("outcome", outcome)], n.get());
        }
        for (result, n) in [
            ("not_modified", &c.not_modified),
            ("modified", &c.modified),
            ("error", &c.revalidation_errors),
        ] {
            out.counter_with(REVALIDATIONS, &[("result", result)], n.get());
        }
        for (outcome, n) in [
            ("stored", &c.stored),
            ("uncacheable", &c.uncacheable),
            ("too_large", &c.too_large),
        ] {
            out.counter_with(STORES, &[("outcome", outcome)], n.get());
        }
        out.counter(INVALIDATIONS, c.invalidations.get());
    }
}
