//! The cache's builder and validated configuration.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use buttress_core::telemetry::{Name, Registration, register_catalog};

use crate::entry::MAX_WINDOW;
use crate::error::{ConfigError, config_error};
use crate::handle::Cache;
use crate::store::Store;

pub(crate) type Weigher<K, V> = Arc<dyn Fn(&K, &V) -> u32 + Send + Sync>;

/// What an entry costs beyond its key and value, added by the default
/// weigher. Measured on `QuickCacheStore` with `u64` keys and `Arc`
/// values: 72 bytes of the store's slot (the 56-byte `Entry` header and
/// quick_cache's own fields; a slot is 88 bytes), about 12 for its hash
/// index and ghost entries, and about 24 for an `Arc`'s counts and the
/// allocator's rounding of its block, since `size_of::<V>()` counts only
/// the pointer. moka's per-entry bookkeeping is larger.
pub const ENTRY_OVERHEAD_BYTES: u32 = 112;

/// The layer kind the cache registers its name as.
pub(crate) const KIND: &str = "cache";

/// The validated configuration.
pub(crate) struct Config<K, V> {
    /// The effective name (after [`Registration`]).
    pub(crate) name: Name,
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

/// Builds a [`Cache`] handle around a [`Store`]. Every setter documents its
/// default and where it comes from; [`build`](Self::build) validates them.
///
/// ```
/// use std::time::Duration;
/// use buttress_cache::{Cache, store::QuickCacheStore};
///
/// let cache = Cache::<u64, String, _>::builder(QuickCacheStore::new(64 << 20, 10_000))
///     .name("users")
///     .ttl(Duration::from_secs(30))
///     .stale_while_revalidate(Duration::from_secs(10))
///     .stale_if_error(Duration::from_secs(300))
///     .build()
///     .expect("valid configuration");
/// assert_eq!(cache.name(), "users");
/// ```
#[must_use]
pub struct Builder<K, V, St> {
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
    weigher: Option<Weigher<K, V>>,
    seed: Option<u64>,
    _types: PhantomData<fn(K, V)>,
}

impl<K, V, St: fmt::Debug> fmt::Debug for Builder<K, V, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
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
            .field("weigher", &self.weigher.as_ref().map(|_| ".."))
            .field("seed", &self.seed)
            .finish()
    }
}

impl<K, V, St> Builder<K, V, St>
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
            weigher: None,
            seed: None,
            _types: PhantomData,
        }
    }

    /// The cache's name: the `name` label on its metrics, the `name` field
    /// of its `tracing` spans and events, and the name its
    /// [`LoadTimedOut`](crate::LoadTimedOut) carries. Default: the source
    /// location of the [`Cache::builder`] call (`"src/main.rs:12"`,
    /// [`Name::caller`]), stable from run to run. While another cache of
    /// the same name is alive, this one is named `name#2` (then `#3`, …):
    /// [`Cache::name`] gives the name it got.
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

    /// Responses weighing more than this are not cached (counted as
    /// `oversized`). Default: 1 MiB.
    pub fn max_entry_bytes(mut self, bytes: u32) -> Self {
        self.max_entry_bytes = bytes;
        self
    }

    /// How much an entry weighs, in bytes: stores are bounded by the sum.
    /// Default: `size_of::<K>() + size_of::<V>() +`
    /// [`ENTRY_OVERHEAD_BYTES`], which ignores heap data: set a weigher
    /// for values with heap data (`|_, v: &Bytes| v.len() as u32`).
    pub fn weigher(mut self, weigher: impl Fn(&K, &V) -> u32 + Send + Sync + 'static) -> Self {
        self.weigher = Some(Arc::new(weigher));
        self
    }

    /// Seeds the random draws (TTL jitter, XFetch) for repeatable tests.
    /// Default: seeded from the process's hash randomness.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Validates the configuration and builds the handle.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the field when `name` is empty, `ttl`,
    /// `negative_ttl` or `load_timeout` is zero, `ttl_jitter` is outside `[0, 1)`,
    /// `xfetch_beta` is not positive and finite, or `max_entry_bytes` is
    /// zero.
    pub fn build(self) -> Result<Cache<K, V, St>, ConfigError> {
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
        let weigher = self.weigher.unwrap_or_else(|| {
            let fixed = u32::try_from(size_of::<K>() + size_of::<V>())
                .unwrap_or(u32::MAX)
                .saturating_add(ENTRY_OVERHEAD_BYTES);
            Arc::new(move |_: &K, _: &V| fixed)
        });
        register_catalog(crate::METRICS);
        let registration = Registration::new(KIND, self.name);
        let config = Config {
            name: registration.name(),
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
        Ok(Cache::from_parts(self.store, config, registration))
    }
}
