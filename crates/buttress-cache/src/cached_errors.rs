//! The errors an [`ErrorPolicy`](crate::policy::ErrorPolicy) chose to cache.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use buttress_core::sync::lock;
use buttress_core::time::Instant;

use crate::policy::MakeError;

/// The most errors cached at once (see
/// [`CacheLayer::cache_errors`](crate::CacheLayer::cache_errors)): when
/// the table is full even after dropping expired errors, a new error is
/// not cached.
pub(crate) const MAX_CACHED_ERRORS: usize = 10_000;

/// A cached error: a maker of copies, and when it stops being served.
struct CachedError {
    make: MakeError,
    until: Instant,
}

/// Key → cached error, with its length mirrored in an atomic so that the
/// miss path of a cache that caches no error (the default) never takes
/// the lock or hashes the key.
pub(crate) struct ErrorTable<K> {
    map: Mutex<HashMap<K, CachedError, foldhash::fast::RandomState>>,
    /// `map.len()`, written under the lock.
    len: AtomicUsize,
}

impl<K> ErrorTable<K> {
    pub(crate) fn new() -> Self {
        Self {
            map: Mutex::new(HashMap::default()),
            len: AtomicUsize::new(0),
        }
    }
}

impl<K: Hash + Eq> ErrorTable<K> {
    fn sync_len(&self, map: &HashMap<K, CachedError, foldhash::fast::RandomState>) {
        self.len.store(map.len(), Ordering::Release);
    }

    /// The maker of the error cached for `key`, if one is and its TTL has
    /// not ended (an ended one is dropped).
    ///
    /// An empty table is seen without the lock. That is enough: an error
    /// is cached before its load's flight ends, and a request that finds
    /// the table empty either joins that flight (and gets the error from
    /// it) or leads a new one after it ended, whose own look here comes
    /// after the insert (through the in-flight map's lock).
    pub(crate) fn get(&self, key: &K) -> Option<MakeError> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut map = lock(&self.map);
        let cached = map.get(key)?;
        if Instant::now() < cached.until {
            return Some(MakeError::clone(&cached.make));
        }
        map.remove(key);
        self.sync_len(&map);
        None
    }

    /// Caches `make` for `key` until `until`; false (and nothing cached)
    /// when the table is full even after dropping expired errors.
    pub(crate) fn insert(&self, key: K, make: MakeError, until: Instant) -> bool {
        let mut map = lock(&self.map);
        if map.len() >= MAX_CACHED_ERRORS && !map.contains_key(&key) {
            let now = Instant::now();
            map.retain(|_, e| now < e.until);
            if map.len() >= MAX_CACHED_ERRORS {
                self.sync_len(&map);
                return false;
            }
        }
        map.insert(key, CachedError { make, until });
        self.sync_len(&map);
        true
    }

    pub(crate) fn remove(&self, key: &K) {
        if self.len.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut map = lock(&self.map);
        map.remove(key);
        self.sync_len(&map);
    }

    pub(crate) fn clear(&self) {
        let mut map = lock(&self.map);
        map.clear();
        self.sync_len(&map);
    }
}
