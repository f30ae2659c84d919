//! A cached value with its own timestamps.

use std::sync::OnceLock;
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
// Layout, for the hit path: a hit clones the entry out of the store and
// moves it, so its plain data is kept to 56 bytes (an `Entry<Arc<T>>` is
// one 64-byte cache line). A fresh hit reads one bound, `early_from`, an
// `Instant` compared with the clock's reading; the others are `Ticks`.
// The plain data is one `Copy` block placed first (`repr(C)`), so the
// clone writes it in the same wide pieces the move reads, which the CPU
// can forward from store to load without a stall.
#[derive(Clone, Debug)]
#[repr(C)]
pub struct Entry<V> {
    meta: Meta,
    value: V,
}

#[derive(Clone, Copy, Debug)]
struct Meta {
    /// Before it, the entry is fresh and no XFetch draw can succeed.
    early_from: Instant,
    fresh_until: Ticks,
    revalidate_until: Ticks,
    stale_until: Ticks,
    /// The version, with [`NEGATIVE`] set for a negative entry.
    version: u64,
    load_micros: u32,
    weight: u32,
}

/// The bit of [`Meta::version`] that marks a negative entry (versions
/// count writes from 1 and never reach it).
const NEGATIVE: u64 = 1 << 63;

/// An instant as nanoseconds since a fixed origin of tokio's clock (see
/// [`origin`]): 8 bytes, compared with one instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Ticks(u64);

/// How far before the first use of the clock its origin is put, so that
/// every instant a runtime can produce later (paused runtimes start at the
/// real instant they were built) is after it.
const ORIGIN_MARGINS: [Duration; 5] = [
    Duration::from_secs(20 * 365 * 24 * 3600),
    Duration::from_secs(365 * 24 * 3600),
    Duration::from_secs(24 * 3600),
    Duration::from_secs(3600),
    Duration::ZERO,
];

/// The origin of [`Ticks`], fixed on first use (every cache fixes it when
/// it is built, before it reads the clock for a load).
pub(crate) fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(|| {
        // The real clock, not a paused one: a paused clock may already
        // have been advanced far ahead of other runtimes' clocks. Where
        // the platform cannot go that far back (its instants count from
        // boot), the largest margin it can is taken.
        let now = std::time::Instant::now();
        let at = ORIGIN_MARGINS
            .iter()
            .find_map(|m| now.checked_sub(*m))
            .unwrap_or(now);
        Instant::from_std(at)
    })
}

impl Ticks {
    /// `t` as ticks: instants before the origin are 0 (in the past of
    /// every entry, so judged expired, never fresh), instants beyond the
    /// range saturate.
    #[inline]
    pub(crate) fn from_instant(t: Instant) -> Self {
        let d = t.saturating_duration_since(origin());
        Self(
            d.as_secs()
                .saturating_mul(1_000_000_000)
                .saturating_add(u64::from(d.subsec_nanos())),
        )
    }

    /// The instant these ticks stand for.
    pub(crate) fn to_instant(self) -> Instant {
        let o = origin();
        o.checked_add(Duration::from_nanos(self.0))
            .unwrap_or_else(|| later(o, MAX_WINDOW))
    }
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
        let early_from = early_from.min(fresh_until);
        let fresh_until = Ticks::from_instant(fresh_until);
        let revalidate_until = Ticks::from_instant(revalidate_until).max(fresh_until);
        let stale_until = Ticks::from_instant(stale_until).max(revalidate_until);
        let version = (version & !NEGATIVE) | if negative { NEGATIVE } else { 0 };
        Self {
            meta: Meta {
                early_from,
                fresh_until,
                revalidate_until,
                stale_until,
                version,
                load_micros: u32::try_from(load_time.as_micros()).unwrap_or(u32::MAX),
                weight,
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
        self.meta.fresh_until.to_instant()
    }

    /// Until when a stale value is served while a refresh runs.
    pub fn revalidate_until(&self) -> Instant {
        self.meta.revalidate_until.to_instant()
    }

    /// The hard bound: the value is never served from this instant on.
    pub fn stale_until(&self) -> Instant {
        self.meta.stale_until.to_instant()
    }

    /// How long the load that produced the value took (XFetch's δ).
    ///
    /// Kept in microseconds (a faster load reads as zero, which turns
    /// XFetch off for the entry), at most about 71 minutes.
    pub fn load_time(&self) -> Duration {
        Duration::from_micros(u64::from(self.meta.load_micros))
    }

    /// The weight the layer's weigher gave the entry (bytes, by default an
    /// estimate); stores bound their size by it.
    pub fn weight(&self) -> u32 {
        self.meta.weight
    }

    /// A number unique to this write (refreshes compare it to drop a result
    /// when the entry changed meanwhile).
    pub fn version(&self) -> u64 {
        self.meta.version & !NEGATIVE
    }

    /// Whether this is a negative entry (a cached "not found").
    pub fn is_negative(&self) -> bool {
        self.meta.version & NEGATIVE != 0
    }

    /// From this instant on, a fresh hit may start an XFetch early refresh
    /// (before it, the draw could never succeed, so none is made).
    pub fn early_refresh_from(&self) -> Instant {
        self.meta.early_from
    }

    /// Whether the entry may be served at `now` at all.
    #[inline]
    pub fn is_servable(&self, now: Instant) -> bool {
        self.servable_at(Ticks::from_instant(now))
    }

    /// Whether the entry is fresh at `now`.
    #[inline]
    pub fn is_fresh(&self, now: Instant) -> bool {
        self.fresh_at(Ticks::from_instant(now))
    }

    #[inline]
    pub(crate) fn servable_at(&self, now: Ticks) -> bool {
        now < self.meta.stale_until
    }

    #[inline]
    pub(crate) fn fresh_at(&self, now: Ticks) -> bool {
        now < self.meta.fresh_until
    }

    #[inline]
    pub(crate) fn revalidating_at(&self, now: Ticks) -> bool {
        now < self.meta.revalidate_until
    }

    /// Whether `now` is before [`early_refresh_from`](Self::early_refresh_from):
    /// the entry is fresh and needs no XFetch draw (the common hit, judged
    /// without converting `now` to ticks).
    #[inline]
    pub(crate) fn settled_at(&self, now: Instant) -> bool {
        now < self.meta.early_from
    }

    /// Time left until the entry stops being fresh, in seconds.
    pub(crate) fn fresh_secs_left(&self, now: Ticks) -> f64 {
        self.meta.fresh_until.0.saturating_sub(now.0) as f64 / 1e9
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_of_an_arc_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Entry<std::sync::Arc<String>>>(), 64);
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_follow_paused_time_and_round_trip() {
        let t0 = Ticks::from_instant(Instant::now());
        tokio::time::advance(Duration::from_millis(1500)).await;
        let t1 = Ticks::from_instant(Instant::now());
        assert_eq!(t1.0 - t0.0, 1_500_000_000);
        let at = Instant::now() + Duration::from_secs(7);
        assert_eq!(Ticks::from_instant(at).to_instant(), at);
        // Far ahead (a paused clock advanced by years) still converts.
        let far = Instant::now() + MAX_WINDOW;
        assert_eq!(Ticks::from_instant(far).to_instant(), far);
    }

    #[test]
    fn instants_before_the_origin_are_in_everyones_past() {
        let before = origin()
            .checked_sub(Duration::from_secs(1))
            .unwrap_or_else(origin);
        assert_eq!(Ticks::from_instant(before), Ticks(0));
        let e = Entry::fresh_for(1u8, Duration::from_secs(60));
        assert!(e.fresh_at(Ticks::from_instant(Instant::now())));
        assert!(!e.fresh_at(Ticks::from_instant(e.fresh_until())));
    }

    #[test]
    fn bounds_stay_ordered() {
        let now = Instant::now();
        let e = Entry::new(
            (),
            now + Duration::from_secs(10),
            now + Duration::from_secs(5),
            now + Duration::from_secs(1),
            now + Duration::from_secs(20),
            Duration::from_millis(3),
            1,
            1,
            false,
        );
        assert_eq!(e.revalidate_until(), e.fresh_until());
        assert_eq!(e.stale_until(), e.fresh_until());
        assert_eq!(e.early_refresh_from(), e.fresh_until());
        assert_eq!(e.load_time(), Duration::from_millis(3));
        assert_eq!(e.version(), 1);
        assert!(!e.is_negative());
        let n = Entry::new((), now, now, now, now, Duration::MAX, 1, 7, true);
        assert_eq!(n.version(), 7);
        assert!(n.is_negative());
        assert_eq!(n.load_time(), Duration::from_micros(u64::from(u32::MAX)));
    }
}
