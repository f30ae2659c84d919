//! `Tiered<L1, L2>` on two in-process stores (the Redis L2 is exercised in
//! `redis_store.rs`): L1 answers at once, an L1 miss promotes L2's entry
//! with its own freshness, writes and deletes reach both tiers, a
//! promotion that raced a write or a delete never leaves the older value
//! in L1, and the layer's coalescing spans both tiers.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use buttress_cache::store::{QuickCacheStore, Store, Tiered};
use buttress_cache::{Cache, CacheLayer, Entry};
use buttress_core::time::Instant;
use common::{Answer, Backend};
use tokio::sync::Notify;
use tokio::time::advance;
use tower::{Layer, ServiceExt};

type Quick = QuickCacheStore<u64, Answer>;

fn quick() -> Quick {
    QuickCacheStore::builder(1 << 20).build().unwrap()
}

/// An L2 whose next `get` reads its entry, then waits for `release`
/// before answering: a remote read whose reply is in flight while other
/// things happen.
#[derive(Clone)]
struct ReadThenPark {
    inner: Quick,
    park: Arc<AtomicBool>,
    parked: Arc<Notify>,
    release: Arc<Notify>,
}

impl ReadThenPark {
    fn new() -> Self {
        Self {
            inner: quick(),
            park: Arc::default(),
            parked: Arc::default(),
            release: Arc::default(),
        }
    }
}

impl Store<u64, Answer> for ReadThenPark {
    async fn get(&self, key: &u64) -> Option<Entry<Answer>> {
        let found = self.inner.get(key).await;
        if self.park.swap(false, Ordering::SeqCst) {
            self.parked.notify_one();
            self.release.notified().await;
        }
        found
    }

    async fn put(&self, key: u64, entry: Entry<Answer>) {
        self.inner.put(key, entry).await;
    }

    async fn delete(&self, key: &u64) {
        self.inner.delete(key).await;
    }

    async fn delete_where(&self, pred: &(dyn Fn(&u64, &Entry<Answer>) -> bool + Send + Sync)) {
        self.inner.delete_where(pred).await;
    }

    fn weighted_size(&self) -> u64 {
        self.inner.weighted_size()
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }
}

fn fresh(value: Answer, secs: u64) -> Entry<Answer> {
    Entry::fresh_for(value, Duration::from_secs(secs))
}

#[tokio::test(start_paused = true)]
async fn an_l1_miss_promotes_l2s_entry_with_l2s_remaining_freshness() {
    let (l1, l2) = (quick(), quick());
    let tiered = Tiered::new(l1.clone(), l2.clone());
    let written = fresh((1, 1), 30);
    l2.put(1, written.clone()).await;
    advance(Duration::from_secs(10)).await;

    assert!(tiered.try_get(&1).is_none(), "L1 cannot answer: ask L2");
    let got = tiered.get(&1).await.unwrap();
    assert_eq!(*got.value(), (1, 1));
    let promoted = l1.try_get(&1).flatten().expect("promoted into L1");
    assert_eq!(promoted.fresh_until(), written.fresh_until());
    assert_eq!(
        promoted.fresh_until() - Instant::now(),
        Duration::from_secs(20)
    );
    // From now on L1 answers, synchronously.
    let hit = tiered.try_get(&1).flatten().unwrap();
    assert_eq!(*hit.value(), (1, 1));
    assert!(tiered.get(&2).await.is_none());
    assert_eq!(tiered.len(), 1, "len is L1's");
}

#[tokio::test(start_paused = true)]
async fn a_stale_l1_entry_gives_way_to_a_fresher_l2_entry() {
    let (l1, l2) = (quick(), quick());
    let tiered = Tiered::new(l1.clone(), l2.clone());
    l1.put(1, fresh((1, 1), 1)).await;
    l1.put(2, fresh((2, 1), 1)).await;
    l2.put(1, fresh((1, 2), 60)).await;
    advance(Duration::from_secs(2)).await;

    assert_eq!(*tiered.get(&1).await.unwrap().value(), (1, 2));
    assert_eq!(*l1.try_get(&1).flatten().unwrap().value(), (1, 2));
    // Nothing fresher in L2: L1's entry, as the layer may still serve it
    // stale.
    assert_eq!(*tiered.get(&2).await.unwrap().value(), (2, 1));
    let many = tiered.get_many(&[1, 2, 3]).await;
    let values: Vec<_> = many
        .iter()
        .map(|e| e.as_ref().map(|e| *e.value()))
        .collect();
    assert_eq!(values, [Some((1, 2)), Some((2, 1)), None]);
}

#[tokio::test(start_paused = true)]
async fn writes_and_deletes_reach_both_tiers() {
    let (l1, l2) = (quick(), quick());
    let tiered = Tiered::new(l1.clone(), l2.clone());
    tiered.put(1, fresh((1, 1), 30)).await;
    tiered
        .put_many(vec![(2, fresh((2, 1), 30)), (3, fresh((3, 1), 30))])
        .await;
    for k in 1..=3 {
        assert!(l1.try_get(&k).flatten().is_some() && l2.try_get(&k).flatten().is_some());
    }
    tiered.delete(&1).await;
    tiered.delete_where(&|k, _| *k == 2).await;
    for k in 1..=2 {
        assert!(l1.try_get(&k).flatten().is_none() && l2.try_get(&k).flatten().is_none());
    }
    assert!(l1.try_get(&3).flatten().is_some());
}

/// A read took L2's old entry; before it could promote it, a write (or a
/// delete) went through both tiers. L1 must not end up with the old
/// entry, which would outlive the write for as long as it stays fresh.
#[tokio::test(start_paused = true)]
async fn a_promotion_that_raced_a_write_or_a_delete_never_keeps_the_old_entry() {
    for delete in [false, true] {
        let l1 = quick();
        let l2 = ReadThenPark::new();
        let tiered = Tiered::new(l1.clone(), l2.clone());
        l2.inner.put(1, fresh((1, 1), 60)).await;

        l2.park.store(true, Ordering::SeqCst);
        let reader = tokio::spawn({
            let tiered = tiered.clone();
            async move { tiered.get(&1).await }
        });
        l2.parked.notified().await; // it holds (1, 1), read from L2
        if delete {
            tiered.delete(&1).await;
        } else {
            tiered.put(1, fresh((1, 2), 60)).await;
        }
        l2.release.notify_one();
        let read = reader.await.unwrap().unwrap();
        assert_eq!(*read.value(), (1, 1), "the read itself raced the write");
        let kept = l1.try_get(&1).flatten().map(|e| *e.value());
        assert_ne!(kept, Some((1, 1)), "delete: {delete}");
        // What L2 holds now is what the next read sees.
        let next = tiered.get(&1).await.map(|e| *e.value());
        assert_eq!(next, (!delete).then_some((1, 2)), "delete: {delete}");
    }
}

#[tokio::test(start_paused = true)]
async fn one_backend_call_across_both_tiers_and_invalidation_drops_both() {
    let (l1, l2) = (quick(), quick());
    let cache = Cache::builder(Tiered::new(l1.clone(), l2.clone()))
        .ttl(Duration::from_secs(30))
        .build()
        .unwrap();
    let backend = Backend::new(Duration::from_millis(100));
    let svc = CacheLayer::new(cache.clone(), |k: &u64| Some(*k)).layer(backend.clone());
    let calls: Vec<_> = (0..10).map(|_| svc.clone().oneshot(4)).collect();
    for answer in futures_util::future::join_all(calls).await {
        assert_eq!(answer.unwrap(), (4, 0));
    }
    assert_eq!(backend.started(), 1);
    assert!(l1.try_get(&4).flatten().is_some() && l2.try_get(&4).flatten().is_some());

    // Another instance (its own L1, the same L2) finds it without a call.
    let other = Cache::builder(Tiered::new(quick(), l2.clone()))
        .ttl(Duration::from_secs(30))
        .build()
        .unwrap();
    let svc2 = CacheLayer::new(other, |k: &u64| Some(*k)).layer(backend.clone());
    assert_eq!(svc2.oneshot(4).await.unwrap(), (4, 0));
    assert_eq!(backend.started(), 1);

    cache.invalidate(&4).await;
    assert!(l1.try_get(&4).flatten().is_none() && l2.try_get(&4).flatten().is_none());
}
