//! A cached value with its own timestamps.

use std::time::Duration;

use buttress_core::time::Instant;

/// The longest window an entry's instants are pushed out by (100 years):
/// longer TTLs and stale windows are cut to it, so that no instant
/// arithmetic can overflow at request time.
pub(crate) const MAX_WINDOW: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `at + d`, with `d` cut to [`MAX_WINDOW`] (and `at` itself if even that
/// overflows).
pub(crate) fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d.min(MAX_WINDOW)).unwrap_or(at)
}

/// A tag a response declares, for [`Cache::invalidate_tag`](crate::Cache::invalidate_tag).
pub type Tag = std::sync::Arc<str>;

/// One cached value and everything needed to judge it: when it stops being
/// fresh, how long it may still be served stale, how long it took to load.
///
/// The timestamps are absolute instants of tokio's clock
/// ([`buttress_core::time::Instant`]), so every store judges an entry the
/// same way and paused-time tests drive freshness. Stores hold entries by
/// value and a hit clones one: a few instants and the value, so make `V`
/// an `Arc<T>`, `Bytes` or another cheap clone. (Tags live in the cache's
/// tag index, not in the entry, so that cloning one never allocates.)
///
/// The life of an entry, for `now`:
///
/// - `now < fresh_until`: fresh, served as is (XFetch may refresh it early);
/// - `fresh_until <= now < revalidate_until`: stale, served while one
///   background refresh runs (stale-while-revalidate);
/// - `revalidate_until <= now < stale_until`: served only if the backend
///   fails (stale-if-error);
/// - `stale_until <= now`: never served.
// Layout, for the hit path: a store's `get` clones the entry into its
// caller's frame, which moves it again. Cloned field by field, each
// instant is written as an 8-byte and a 4-byte store (and the weight and
// the flag as 4 and 1 bytes) that the 16-byte loads of the move cannot
// forward from: a store-forwarding stall per 16 bytes. So the plain data
// sits in one `Copy` block, first (`repr(C)`), which the clone copies in
// 16-byte pieces at the same offsets the move reads them; the value comes
// last.
#[derive(Clone, Debug)]
#[repr(C)]
pub struct Entry<V> {
    meta: Meta,
    value: V,
}

#[derive(Clone, Copy, Debug)]
struct Meta {
    fresh_until: Instant,
    revalidate_until: Instant,
    stale_until: Instant,
    early_from: Instant,
    load_time: Duration,
    version: u64,
    weight: u32,
    negative: bool,
}

impl<V> Entry<V> {
    /// An entry fresh until `fresh_until`, servable (on error) until
    /// `stale_until`. The bounds are put in order:
    /// `fresh_until <= revalidate_until <= stale_until`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        value: V,
        fresh_until: Instant,
        revalidate_until: Instant,
        stale_until: Instant,
        early_from: Instant,
        load_time: Duration,
        weight: u32,
        version: u64,
        negative: bool,
    ) -> Self {
        let revalidate_until = revalidate_until.max(fresh_until);
        let stale_until = stale_until.max(revalidate_until);
        Self {
            meta: Meta {
                fresh_until,
                revalidate_until,
                stale_until,
                early_from: early_from.min(fresh_until),
                load_time,
                version,
                weight,
                negative,
            },
            value,
        }
    }

    /// A plain entry, fresh for `ttl` from now and never stale: for filling a
    /// store by hand (tests, warming from a snapshot).
    pub fn fresh_for(value: V, ttl: Duration) -> Self {
        let until = later(Instant::now(), ttl);
        Self::new(
            value,
            until,
            until,
            until,
            until,
            Duration::ZERO,
            1,
            0,
            false,
        )
    }

    /// The value.
    pub fn value(&self) -> &V {
        &self.value
    }

    /// The value, moved out.
    pub fn into_value(self) -> V {
        self.value
    }

    /// Until when the value is fresh.
    pub fn fresh_until(&self) -> Instant {
        self.meta.fresh_until
    }

    /// Until when a stale value is served while a refresh runs.
    pub fn revalidate_until(&self) -> Instant {
        self.meta.revalidate_until
    }

    /// The hard bound: the value is never served from this instant on.
    pub fn stale_until(&self) -> Instant {
        self.meta.stale_until
    }

    /// How long the load that produced the value took (XFetch's δ).
    pub fn load_time(&self) -> Duration {
        self.meta.load_time
    }

    /// The weight the layer's weigher gave the entry (bytes, by default an
    /// estimate); stores bound their size by it.
    pub fn weight(&self) -> u32 {
        self.meta.weight
    }

    /// A number unique to this write (refreshes compare it to drop a result
    /// when the entry changed meanwhile).
    pub fn version(&self) -> u64 {
        self.meta.version
    }

    /// Whether this is a negative entry (a cached "not found").
    pub fn is_negative(&self) -> bool {
        self.meta.negative
    }

    /// From this instant on, a fresh hit may start an XFetch early refresh
    /// (before it, the draw could never succeed, so none is made).
    pub fn early_refresh_from(&self) -> Instant {
        self.meta.early_from
    }

    /// Whether the entry may be served at `now` at all.
    #[inline]
    pub fn is_servable(&self, now: Instant) -> bool {
        now < self.meta.stale_until
    }

    /// Whether the entry is fresh at `now`.
    #[inline]
    pub fn is_fresh(&self, now: Instant) -> bool {
        now < self.meta.fresh_until
    }
}
