//! Cancellation storms on a two-worker runtime: calls through clones of one
//! limited service, dropped at random while queued and while in flight (by
//! timeouts, task aborts, and futures dropped after their first poll). Every
//! call that is left alone ends within its bound, the backend never sees
//! more calls than the limit allows, and afterwards no permit, queue slot or
//! partition count is left behind.
//!
//! A multi-threaded runtime cannot pause time: the backend holds each call
//! for a few yields or a sub-millisecond timer, and the timeouts that cancel
//! calls are as short.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use buttress_core::rng::FastRng;
use buttress_limit::algorithm::Fixed;
use buttress_limit::{AdaptiveLimit, AdaptiveLimitLayer, Overloaded, QueueOrder};
use tokio::time::{Instant, sleep, timeout};
use tower::{Layer, Service, ServiceExt, service_fn};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A call's partition is `NAMES[id % 4]`; index 3 is outside every
/// partition.
const NAMES: [&str; 3] = ["interactive", "batch", "background"];
const SHARES: [f64; 3] = [0.5, 0.25, 0.25];

/// The calls the backend is serving now, and the most it ever served at once.
#[derive(Default)]
struct Inside {
    now: AtomicU32,
    peak: AtomicU32,
}

/// Leaves the backend when the call's future is dropped, finished or not.
struct Serving(Arc<Inside>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The calls of a storm: left alone (served or shed) and cancelled.
#[derive(Debug)]
struct Tally {
    served: u64,
    shed: u64,
    cancelled: u64,
    alone: u64,
}

#[derive(Default)]
struct Counts {
    served: AtomicU64,
    shed: AtomicU64,
    cancelled: AtomicU64,
    alone: AtomicU64,
}

/// Clients, each making its calls one after another.
const CLIENTS: u64 = 64;

/// Runs `calls` calls from [`CLIENTS`] clients through clones of one
/// service limited by `limit` (whose partitions have `shares`), cancelling
/// about three in four at random points, and checks what every storm must
/// leave behind.
async fn storm(limit: &AdaptiveLimit, shares: &[f64], calls: u64, seed: u64) {
    let inside = Arc::new(Inside::default());
    let backend = {
        let inside = inside.clone();
        service_fn(move |id: u64| {
            let n = inside.now.fetch_add(1, Ordering::SeqCst) + 1;
            inside.peak.fetch_max(n, Ordering::SeqCst);
            let serving = Serving(inside.clone());
            async move {
                let _serving = serving;
                // Some calls yield a few times, others wait on a timer.
                match id % 3 {
                    0 => {
                        for _ in 0..id % 7 {
                            tokio::task::yield_now().await;
                        }
                    }
                    _ => sleep(Duration::from_micros(100 + id % 400)).await,
                }
                Ok::<_, &'static str>(id)
            }
        })
    };
    let svc = AdaptiveLimitLayer::new(limit.clone())
        .partition_by(|id: &u64| NAMES.get((id / 5 % 4) as usize).copied())
        .layer(backend);
    let rng = Arc::new(FastRng::seeded(seed));
    let tally = Arc::new(Counts::default());
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..CLIENTS {
        let (svc, rng, tally) = (svc.clone(), rng.clone(), tally.clone());
        clients.spawn(async move {
            for n in 0..calls / CLIENTS {
                let id = n * CLIENTS + client;
                let r = rng.next_u64();
                let cut = Duration::from_micros(r % 1_500);
                match r >> 32 & 3 {
                    // Cancelled by a timeout: in the queue, in flight, or
                    // after it ended.
                    0 => {
                        if timeout(cut, svc.clone().oneshot(id)).await.is_err() {
                            tally.cancelled.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    // Its task aborted from outside after a few yields.
                    1 => {
                        let call = tokio::spawn(svc.clone().oneshot(id));
                        for _ in 0..r >> 40 & 7 {
                            tokio::task::yield_now().await;
                        }
                        call.abort();
                        match call.await {
                            Err(e) if e.is_cancelled() => {
                                tally.cancelled.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(e) => panic!("a call panicked: {e}"),
                            Ok(_) => {}
                        }
                    }
                    // Polled once (queued, admitted or shed), then dropped.
                    2 => {
                        let mut svc = svc.clone();
                        let svc = svc.ready().await.expect("the backend is always ready");
                        let mut call = pin!(svc.call(id));
                        tokio::select! {
                            biased;
                            _ = &mut call => {}
                            () = std::future::ready(()) => {
                                tally.cancelled.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                    // Left alone: served or shed, within a bound.
                    _ => {
                        tally.alone.fetch_add(1, Ordering::SeqCst);
                        let started = Instant::now();
                        let result: Result<u64, BoxError> =
                            timeout(Duration::from_secs(10), svc.clone().oneshot(id))
                                .await
                                .expect("a call left alone ends within its bound");
                        assert!(started.elapsed() < Duration::from_secs(10));
                        match result {
                            Ok(got) => {
                                assert_eq!(got, id, "each call gets its own answer");
                                tally.served.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(e) => {
                                assert!(e.downcast_ref::<Overloaded>().is_some(), "{e}");
                                tally.shed.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                }
            }
        });
    }
    while let Some(r) = clients.join_next().await {
        r.expect("no client panicked");
    }
    // Every call's future has been dropped (a finished or aborted task
    // drops its future first): everything they held is back.
    assert_eq!(inside.now.load(Ordering::SeqCst), 0);
    assert_eq!(limit.in_flight(), 0, "permits left behind");
    assert_eq!(limit.snapshot().queued, 0, "queue slots left behind");
    for name in NAMES {
        assert_eq!(
            limit
                .partition_snapshot(name)
                .map(|p| p.in_flight)
                .unwrap_or(0),
            0,
            "{name}"
        );
    }
    let tally = Tally {
        served: tally.served.load(Ordering::SeqCst),
        shed: tally.shed.load(Ordering::SeqCst),
        cancelled: tally.cancelled.load(Ordering::SeqCst),
        alone: tally.alone.load(Ordering::SeqCst),
    };
    assert_eq!(tally.served + tally.shed, tally.alone, "{tally:?}");
    assert!(tally.served > 0 && tally.cancelled > 0, "{tally:?}");
    // At the limit, each partition may still hold its guarantee.
    let l = limit.limit();
    let guarantees: u32 = shares
        .iter()
        .map(|share| (f64::from(l) * share).ceil().max(1.0) as u32)
        .sum();
    let peak = inside.peak.load(Ordering::SeqCst);
    assert!(
        peak <= l + guarantees,
        "{peak} calls at once, limit {l} + guarantees {guarantees}"
    );
}

/// After a storm the limiter admits exactly its limit again.
fn admits_its_whole_limit(limit: &AdaptiveLimit) {
    let permits: Vec<_> = (0..limit.limit())
        .map(|_| limit.try_acquire().expect("a free permit"))
        .collect();
    assert!(limit.try_acquire().is_err());
    drop(permits);
    assert_eq!(limit.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_through_a_bounded_queue_leaves_nothing_behind() {
    for (order, seed) in [(QueueOrder::Fifo, 1), (QueueOrder::Lifo, 2)] {
        let limit = AdaptiveLimit::builder(Fixed::new(8).unwrap())
            .queue(16, Duration::from_millis(2))
            .queue_order(order)
            .build()
            .unwrap();
        storm(&limit, &[], 4_000, seed).await;
        admits_its_whole_limit(&limit);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_through_partitions_and_a_queue_leaves_nothing_behind() {
    for (order, seed) in [(QueueOrder::Fifo, 3), (QueueOrder::Lifo, 4)] {
        let limit = AdaptiveLimit::builder(Fixed::new(8).unwrap())
            .partition(NAMES[0], SHARES[0])
            .partition(NAMES[1], SHARES[1])
            .partition(NAMES[2], SHARES[2])
            .queue(16, Duration::from_millis(2))
            .queue_order(order)
            .build()
            .unwrap();
        storm(&limit, &SHARES, 4_000, seed).await;
        admits_its_whole_limit(&limit);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_through_partitions_without_a_queue_leaves_nothing_behind() {
    let limit = AdaptiveLimit::builder(Fixed::new(8).unwrap())
        .partition(NAMES[0], SHARES[0])
        .partition(NAMES[1], SHARES[1])
        .partition(NAMES[2], SHARES[2])
        .build()
        .unwrap();
    storm(&limit, &SHARES, 4_000, 5).await;
    admits_its_whole_limit(&limit);
}
