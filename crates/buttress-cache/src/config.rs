//! The cache's builder and its validated configuration.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use buttress_core::telemetry::{Histogram, Name, Registration, register_catalog};

use crate::entry::MAX_WINDOW;
use crate::error::{ConfigError, config_error};
use crate::store::Store;
use crate::telemetry::{LOAD_SECONDS, METRICS};
use crate::weigh::{Weigh, measure};

pub(crate) type Weigher<K, V> = Arc<dyn Fn(&K, &V) -> u64 + Send + Sync>;

/// What an entry costs beyond its key and value, added by the default
/// weigher. Measured on `QuickCacheStore` with `u64` keys and `Arc`
/// values: 72 bytes of the store's slot beyond the key and the value (the
/// 56-byte `Entry` header and quick_cache's own fields), about 12 for its
/// hash index and ghost entries, and about 8 for the allocator's rounding
/// of the value's heap block (an `Arc`'s counts are its own weight, see
/// [`Weigh`]). moka's per-entry bookkeeping is larger.
pub const ENTRY_OVERHEAD_BYTES: u64 = 92;

/// The layer kind the cache registers its name as.
const KIND: &str = "cache";

/// The validated configuration: everything the handle needs.
pub(crate) struct Config<K, V> {
    /// The effective name (after [`Registration`]).
    pub(crate) name: Name,
    /// The cache's claim on its name; the handle attaches its counters.
    pub(crate) registration: Registration,
    /// `buttress_cache_load_seconds`, recorded once per load.
    pub(crate) load_seconds: Histogram,
    pub(crate) ttl: Duration,
    pub(crate) ttl_jitter: f64,
    pub(crate) negative_ttl: Duration,
    pub(crate) stale_while_revalidate: Duration,
    pub(crate) stale_if_error: Duration,
    pub(crate) xfetch_beta: Option<f64>,
    pub(crate) load_timeout: Duration,
    pub(crate) max_entry_bytes: u32,
    pub(crate) weigher: Weigher<K, V>,
    pub(crate) seed: Option<u64>,
}

/// How entries are weighed.
enum Weighing<K, V> {
    /// The default: through [`Weigh`] where the crate implements it, by
    /// size elsewhere.
    Default,
    /// Through `V`'s [`Weigh`] ([`CacheBuilder::weigh_values`]).
    Values(fn(&V) -> u64),
    /// The user's weigher.
    Custom(Weigher<K, V>),
}

impl<K, V> Weighing<K, V> {
    fn describe(&self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Values(_) => "values' Weigh",
            Self::Custom(_) => "custom",
        }
    }
}

/// Builds a [`Cache`](crate::Cache) handle around a [`Store`], from
/// [`Cache::builder`](crate::Cache::builder). Every setter documents its
/// default and where it comes from; [`build`](Self::build) validates them.
///
/// ```
/// use std::time::Duration;
/// use buttress_cache::{Cache, store::QuickCacheStore};
///
/// let store = QuickCacheStore::builder(64 << 20).estimated_entries(10_000).build()?;
/// let cache = Cache::<u64, String, _>::builder(store)
///     .name("users")
///     .ttl(Duration::from_secs(30))
///     .stale_while_revalidate(Duration::from_secs(10))
///     .stale_if_error(Duration::from_secs(300))
///     .build()?;
/// assert_eq!(cache.name(), "users");
/// # Ok::<(), buttress_cache::ConfigError>(())
/// ```
#[must_use]
pub struct CacheBuilder<K, V, St> {
    store: St,
    name: Name,
    ttl: Duration,
    ttl_jitter: f64,
    negative_ttl: Duration,
    stale_while_revalidate: Duration,
    stale_if_error: Duration,
    xfetch_beta: Option<f64>,
    load_timeout: Duration,
    max_entry_bytes: u32,
    weighing: Weighing<K, V>,
    seed: Option<u64>,
    _types: PhantomData<fn(K, V)>,
}

impl<K, V, St: fmt::Debug> fmt::Debug for CacheBuilder<K, V, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("store", &self.store)
            .field("name", &self.name)
            .field("ttl", &self.ttl)
            .field("ttl_jitter", &self.ttl_jitter)
            .field("negative_ttl", &self.negative_ttl)
            .field("stale_while_revalidate", &self.stale_while_revalidate)
            .field("stale_if_error", &self.stale_if_error)
            .field("xfetch_beta", &self.xfetch_beta)
            .field("load_timeout", &self.load_timeout)
            .field("max_entry_bytes", &self.max_entry_bytes)
            .field("weigher", &self.weighing.describe())
            .field("seed", &self.seed)
            .finish()
    }
}

impl<K, V, St> CacheBuilder<K, V, St>
where
    K: Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    St: Store<K, V>,
{
    #[track_caller]
    pub(crate) fn new(store: St) -> Self {
        Self {
            store,
            name: Name::caller(),
            ttl: Duration::from_secs(60),
            ttl_jitter: 0.1,
            negative_ttl: Duration::from_secs(5),
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            xfetch_beta: Some(1.0),
            load_timeout: Duration::from_secs(30),
            max_entry_bytes: 1 << 20,
            weighing: Weighing::Default,
            seed: None,
            _types: PhantomData,
        }
    }

    /// The cache's name: the `name` label on its metrics, the `name` field
    /// of its `tracing` spans and events, and the name its
    /// [`LoadTimedOut`](crate::LoadTimedOut) carries. Default: the source
    /// location of the [`Cache::builder`](crate::Cache::builder) call
    /// (`"src/main.rs:12"`, [`Name::caller`]), stable from run to run.
    /// While another cache of the same name is alive, this one is named
    /// `name#2` (then `#3`, …): [`Cache::name`](crate::Cache::name) gives
    /// the name it got.
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.name = name.into();
        self
    }

    /// How long a cached response is fresh, before jitter. Default: 60 s
    /// (a common middle ground; set it from how stale your data may be).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Spreads each TTL uniformly over `ttl·(1 ± jitter)`, so keys written
    /// together do not expire together. In `[0, 1)`; default 0.1 (±10 %,
    /// the figure the issue and the usual guidance use). `0` turns it off.
    pub fn ttl_jitter(mut self, jitter: f64) -> Self {
        self.ttl_jitter = jitter;
        self
    }

    /// How long a negative answer ([`Verdict::negative`](crate::Verdict::negative))
    /// is cached, before jitter. Default: 5 s (short, so a record that
    /// appears is seen soon).
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// For how long after its TTL an entry is still served while one
    /// background refresh runs (stale-while-revalidate, RFC 5861; the
    /// refresh follows Caffeine's refresh-after-write: a refresh whose
    /// entry changed meanwhile is dropped, a failed refresh keeps the old
    /// value). Needs a tokio runtime to spawn the refresh on; outside one,
    /// a stale read is a synchronous miss. Default: zero (off).
    pub fn stale_while_revalidate(mut self, window: Duration) -> Self {
        self.stale_while_revalidate = window;
        self
    }

    /// For how long after its TTL an entry is served when the backend call
    /// fails (stale-if-error, RFC 5861), including when an inner circuit
    /// breaker rejects the call. Default: zero (off).
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        self.stale_if_error = window;
        self
    }

    /// Probabilistic early refresh (XFetch, Vattani et al., VLDB 2015): a
    /// fresh hit starts one background refresh when
    /// `now − δ·β·ln(U) ≥ fresh_until`, δ the entry's measured load time,
    /// U uniform in (0, 1]. `β > 1` refreshes earlier. Default: `Some(1.0)`
    /// (the paper's optimum); `None` turns it off. Needs a tokio runtime
    /// (outside one no early refresh happens).
    pub fn xfetch_beta(mut self, beta: Option<f64>) -> Self {
        self.xfetch_beta = beta;
        self
    }

    /// The longest a load may run: the backend call (its readiness and the
    /// call) and the store's write of its result, for a request's load and
    /// for a background refresh alike. A load still running then is
    /// dropped (which cancels the backend call), its key is freed so that
    /// the next request asks the backend again, and the callers waiting
    /// on it get [`LoadTimedOut`](crate::LoadTimedOut) (or the stale value
    /// while stale-if-error allows). No caller waits longer than this for
    /// a load, its own or one it joined.
    ///
    /// Default: 30 s. A background refresh has no caller whose timeout
    /// would end it, so it needs a bound of its own, or a backend call that
    /// never answers holds its key's load forever and every later miss
    /// joins it. 30 s is longer than a read worth caching should ever
    /// take and no shorter than the timeouts callers usually put around
    /// it (Envoy's route timeout defaults to 15 s, nginx's
    /// `proxy_read_timeout` to 60 s), so a caller's own timeout normally
    /// fires first and this one catches the loads nobody else bounds.
    /// Runs on tokio's timer: outside a runtime loads are not bounded,
    /// and a runtime built without its timer (`enable_time`; `#[tokio::main]`
    /// and `enable_all` have it) panics on a miss, as tokio's own timeouts
    /// do. Longer than 100 years is cut to 100 years.
    pub fn load_timeout(mut self, timeout: Duration) -> Self {
        self.load_timeout = timeout;
        self
    }

    /// Responses whose entry weighs more than this (by the
    /// [weigher](Self::weigher)) are returned but not cached (counted as
    /// `oversized`), so one huge response cannot push out a store's worth
    /// of small ones. Default: 1 MiB.
    pub fn max_entry_bytes(mut self, bytes: u32) -> Self {
        self.max_entry_bytes = bytes;
        self
    }

    /// How much an entry weighs, in bytes: stores hold at most their
    /// capacity's worth, and an entry heavier than
    /// [`max_entry_bytes`](Self::max_entry_bytes) is not cached.
    ///
    /// Default: [`ENTRY_OVERHEAD_BYTES`] plus the key's and the value's
    /// weight, each measured through [`Weigh`] when its type is one this
    /// crate implements it for (`Bytes`, `String`, `Vec<u8>`, `Arc<str>`,
    /// `Arc`/`Box`/`Option` of those, integers, `http::Response<Bytes>`
    /// with the `http` feature: see [`Weigh`]), and by its `size_of`
    /// otherwise, which ignores heap data: for a type of your own,
    /// implement [`Weigh`] and call [`weigh_values`](Self::weigh_values),
    /// or set a weigher here.
    pub fn weigher(mut self, weigher: impl Fn(&K, &V) -> u64 + Send + Sync + 'static) -> Self {
        self.weighing = Weighing::Custom(Arc::new(weigher));
        self
    }

    /// Weighs values through their own [`Weigh`] implementation (keys and
    /// the per-entry overhead as by default): for a value type of your
    /// own, which the default weigher cannot see (see [`Weigh`]).
    pub fn weigh_values(mut self) -> Self
    where
        V: Weigh,
    {
        self.weighing = Weighing::Values(|v: &V| v.weight());
        self
    }

    /// Seeds the random draws (TTL jitter, XFetch) for repeatable tests.
    /// Default: seeded from the process's hash randomness.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Checks every setting, then claims the name: the store and the
    /// validated configuration, for [`build`](Self::build).
    pub(crate) fn validate(self) -> Result<(St, Config<K, V>), ConfigError> {
        if self.name.as_str().is_empty() {
            return Err(config_error("name", "must not be empty"));
        }
        for (field, value) in [
            ("ttl", self.ttl),
            ("negative_ttl", self.negative_ttl),
            ("load_timeout", self.load_timeout),
        ] {
            if value.is_zero() {
                return Err(config_error(field, "must be greater than zero"));
            }
        }
        if !(0.0..1.0).contains(&self.ttl_jitter) {
            return Err(config_error(
                "ttl_jitter",
                format!("must be within [0, 1), got {}", self.ttl_jitter),
            ));
        }
        if let Some(beta) = self.xfetch_beta
            && !(beta.is_finite() && beta > 0.0)
        {
            return Err(config_error(
                "xfetch_beta",
                format!("must be positive and finite, got {beta}"),
            ));
        }
        if self.max_entry_bytes == 0 {
            return Err(config_error("max_entry_bytes", "must be at least 1"));
        }
        let weigher = match self.weighing {
            Weighing::Custom(weigher) => weigher,
            Weighing::Values(value) => default_weigher(Some(value)),
            Weighing::Default => default_weigher(None),
        };
        register_catalog(METRICS);
        let registration = Registration::new(KIND, self.name);
        let name = registration.name();
        let config = Config {
            name,
            registration,
            load_seconds: Histogram::new(LOAD_SECONDS, name),
            ttl: self.ttl,
            ttl_jitter: self.ttl_jitter,
            negative_ttl: self.negative_ttl,
            stale_while_revalidate: self.stale_while_revalidate,
            stale_if_error: self.stale_if_error,
            xfetch_beta: self.xfetch_beta,
            load_timeout: self.load_timeout.min(MAX_WINDOW),
            max_entry_bytes: self.max_entry_bytes,
            weigher,
            seed: self.seed,
        };
        Ok((self.store, config))
    }
}

/// The default weigher: [`ENTRY_OVERHEAD_BYTES`], plus the key and the
/// value each measured through [`Weigh`] when its type is one the crate
/// implements it for, else by its size; `value` overrides the value's
/// measure ([`CacheBuilder::weigh_values`]).
fn default_weigher<K: Any, V: Any>(value: Option<fn(&V) -> u64>) -> Weigher<K, V> {
    let key = measure::<K>();
    let measured = measure::<V>();
    let mut fixed = ENTRY_OVERHEAD_BYTES;
    if key.is_none() {
        fixed = fixed.saturating_add(size_of::<K>() as u64);
    }
    if value.is_none() && measured.is_none() {
        fixed = fixed.saturating_add(size_of::<V>() as u64);
    }
    Arc::new(move |k: &K, v: &V| {
        let k = key.map_or(0, |m| m(k));
        let v = match (value, measured) {
            (Some(weigh), _) => weigh(v),
            (None, Some(m)) => m(v),
            (None, None) => 0,
        };
        fixed.saturating_add(k).saturating_add(v)
    })
}
