//! A model-based property test: random interleavings of reads, backend
//! writes, invalidations and time advances against a reference model.
//!
//! Properties checked on every read:
//! - the value is always for the requested key;
//! - it was written by the backend at most `ttl + stale bounds` ago (never
//!   past `stale_until`);
//! - it is never older than the last invalidation of its key that
//!   returned before the read started.
//!
//! Failed loads are cached (`cache_errors`) for `ERR_TTL`; on every error
//! read: the error is for the requested key, a cached one is never served
//! past its TTL, and never one whose load started before the last
//! invalidation of its key.

mod common;

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use buttress_cache::store::QuickCacheStore;
use buttress_cache::{Cache, CacheLayer, Verdict};
use common::{Answer, Backend};
use proptest::prelude::*;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};

#[derive(Clone, Debug)]
enum Op {
    Get(u64),
    Write,
    Invalidate(u64),
    InvalidateTag(bool),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..6u64).prop_map(Op::Get),
        2 => Just(Op::Write),
        1 => (0..6u64).prop_map(Op::Invalidate),
        1 => any::<bool>().prop_map(Op::InvalidateTag),
        2 => (0..4_000u64).prop_map(Op::Advance),
    ]
}

const TTL: Duration = Duration::from_secs(2);
const SWR: Duration = Duration::from_secs(1);
const SIE: Duration = Duration::from_secs(3);
const ERR_TTL: Duration = Duration::from_millis(1500);

/// A failed load: the key it was for and when it started.
#[derive(Clone, Debug)]
struct Failed(u64, Instant);

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "load of {} failed", self.0)
    }
}

impl std::error::Error for Failed {}

async fn run(ops: Vec<Op>, failing_every: u64) {
    let backend = Backend::new(Duration::from_millis(50));
    let cache = Cache::builder(
        QuickCacheStore::builder(4096)
            .estimated_entries(16)
            .build()
            .unwrap(),
    )
    .ttl(TTL)
    .ttl_jitter(0.1)
    .stale_while_revalidate(SWR)
    .stale_if_error(SIE)
    .seed(3)
    .build()
    .unwrap();
    let svc = CacheLayer::new(cache.clone(), |k: &u64| Some(*k))
        .policy(|a: &Answer| {
            Verdict::cache().tag(if a.0.is_multiple_of(2) { "even" } else { "odd" })
        })
        .cache_errors(|_: &Failed| Some(ERR_TTL))
        .layer(service_fn({
            let backend = backend.clone();
            move |k: u64| {
                let at = Instant::now();
                let call = backend.clone().call(k);
                async move { call.await.map_err(|_| Failed(k, at)) }
            }
        }));
    let mut invalidated_at: HashMap<u64, Instant> = HashMap::new();
    // The backend's data has one version for all keys, bumped by each
    // write; the time each version was superseded; per key, the version
    // current when its last invalidation returned.
    let mut version = 0u64;
    let mut superseded_at: HashMap<u64, tokio::time::Instant> = HashMap::new();
    let mut floor: HashMap<u64, u64> = HashMap::new();
    let max_age = TTL.mul_f64(1.1) + SWR.max(SIE);
    for (i, op) in ops.into_iter().enumerate() {
        backend.set_failing(failing_every != 0 && (i as u64).is_multiple_of(failing_every));
        match op {
            Op::Get(k) => {
                let started = tokio::time::Instant::now();
                let result = tokio::spawn(svc.clone().oneshot(k)).await.unwrap();
                if let Ok((key, v)) = result {
                    assert_eq!(key, k, "a value for another key");
                    assert!(
                        v >= floor.get(&k).copied().unwrap_or(0),
                        "key {k}: version {v} was invalidated"
                    );
                    // A version superseded long ago must not be served: its
                    // load was asked before it was superseded, and an
                    // entry's TTL counts from when the load was asked, so
                    // its stale-until is at most `max_age` after that.
                    if let Some(at) = superseded_at.get(&v) {
                        assert!(
                            started.duration_since(*at) < max_age + Duration::from_millis(1),
                            "key {k}: version {v} served past stale-until"
                        );
                    }
                }
                if let Err(e) = result {
                    let Failed(key, at) = e.downcast_ref::<Failed>().expect("the backend's error");
                    assert_eq!(*key, k, "an error for another key");
                    if *at < started {
                        // Served from the cache: within its TTL (jittered
                        // by at most 10 %) and loaded after the last
                        // invalidation of its key.
                        assert!(
                            started.duration_since(*at)
                                < ERR_TTL.mul_f64(1.1) + Duration::from_millis(1),
                            "key {k}: an error served past its TTL"
                        );
                        assert!(
                            invalidated_at.get(&k).is_none_or(|inv| at >= inv),
                            "key {k}: an invalidated error was served"
                        );
                    }
                }
            }
            Op::Write => {
                superseded_at.insert(version, tokio::time::Instant::now());
                version += 1;
                backend.set_version(version);
            }
            Op::Invalidate(k) => {
                // Versions older than the current one must not come back.
                cache.invalidate(&k).await;
                floor.insert(k, version);
                invalidated_at.insert(k, Instant::now());
            }
            Op::InvalidateTag(even) => {
                cache
                    .invalidate_tag(if even { "even" } else { "odd" })
                    .await;
                for k in (0..6u64).filter(|k| (k % 2 == 0) == even) {
                    floor.insert(k, version);
                }
            }
            Op::Advance(ms) => tokio::time::advance(Duration::from_millis(ms)).await,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn reads_never_cross_keys_outlive_their_bound_or_survive_invalidation(
        ops in prop::collection::vec(op(), 1..120),
        failing_every in prop_oneof![Just(0u64), 2..6u64],
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(run(ops, failing_every));
    }
}
