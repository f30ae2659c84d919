//! The read-through cache subjects shared by the `cache` and `runtime`
//! benches, so both measure the same layers over the same stores.

#![allow(dead_code)] // each bench uses a subset

use std::future::Ready;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use buttress_cache::store::{MokaStore, QuickCacheStore};
use buttress_cache::{Cache, CacheLayer};
use tower::{Layer, Service, service_fn};

/// Cached keys in the hit benches.
pub(crate) const KEYS: u64 = 10_000;

pub(crate) type Value = Arc<u64>;

/// The backend every subject wraps: answers `Arc::new(key)` at once.
pub(crate) fn backend()
-> impl Service<u64, Response = Value, Error = io::Error, Future = Ready<io::Result<Value>>>
+ Clone
+ Send
+ Sync
+ 'static {
    service_fn(|k: u64| std::future::ready(Ok::<_, io::Error>(Arc::new(k))))
}

pub(crate) fn quick_cache_layer()
-> impl Service<u64, Response = Value, Error = tower::BoxError> + Clone + Send + 'static {
    let store = QuickCacheStore::builder(64 << 20)
        .estimated_entries(KEYS as usize)
        .build()
        .expect("valid store configuration");
    let cache = Cache::builder(store)
        .ttl(Duration::from_secs(3600))
        .build()
        .expect("valid cache configuration");
    CacheLayer::new(cache, |k: &u64| Some(*k)).layer(backend())
}

pub(crate) fn moka_layer()
-> impl Service<u64, Response = Value, Error = tower::BoxError> + Clone + Send + 'static {
    let store = MokaStore::builder(64 << 20)
        .maintenance_interval(None)
        .build()
        .expect("valid moka store configuration");
    let cache = Cache::builder(store)
        .ttl(Duration::from_secs(3600))
        .build()
        .expect("valid cache configuration");
    CacheLayer::new(cache, |k: &u64| Some(*k)).layer(backend())
}

/// moka with the store's own shape, filled with every key: `expiring`
/// gives each entry a per-entry expiry (an hour), as `MokaStore` does with
/// each entry's stale bound, so that moka reads its clock and checks the
/// expiry on every `get` as it does under the layer.
pub(crate) fn raw_moka(expiring: bool) -> moka::future::Cache<u64, Value> {
    struct AnHour;
    impl moka::Expiry<u64, Value> for AnHour {
        fn expire_after_create(
            &self,
            _: &u64,
            _: &Value,
            _: std::time::Instant,
        ) -> Option<Duration> {
            Some(Duration::from_secs(3600))
        }
    }
    let builder = moka::future::Cache::builder().max_capacity(KEYS * 2);
    let cache = if expiring {
        builder.expire_after(AnHour).build()
    } else {
        builder.build()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        for k in 0..KEYS {
            cache.insert(k, Arc::new(k)).await;
        }
        cache.run_pending_tasks().await;
    });
    cache
}
