//! Compiles buttress (all features) together with quick_cache and moka as
//! an application depending on them directly would use them.

pub use buttress;

/// An application's own caches, beside buttress's.
pub fn own_caches() -> (quick_cache::sync::Cache<u64, u64>, moka::future::Cache<u64, u64>) {
    (quick_cache::sync::Cache::new(16), moka::future::Cache::new(16))
}
