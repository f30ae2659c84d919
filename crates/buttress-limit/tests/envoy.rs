//! Envoy's gradient controller through the limiter: its min-RTT measurement
//! pins the limit, and nothing the limiter adds (partitions, a queue, slow
//! calls) may keep that measurement from completing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use buttress_limit::algorithm::EnvoyGradient;
use buttress_limit::{AdaptiveLimit, AdaptiveLimitBuilder, AdaptiveLimitLayer};
use tokio::time::{Instant, sleep};
use tower::{Layer, ServiceExt, service_fn};

/// Envoy's defaults with its 100 ms update interval.
fn envoy() -> AdaptiveLimitBuilder {
    AdaptiveLimit::builder(EnvoyGradient::builder().seed(7).build().unwrap())
        .window(Duration::from_millis(100))
}

#[derive(Debug)]
struct Run {
    limit: u32,
    changes: u64,
    /// The most calls the backend had at once in the first 150 ms, all of
    /// them within the first min-RTT measurement (at least 50 calls at 3 in
    /// flight, in 100 ms windows).
    max_while_first_pinned: u32,
}

/// The partition names a call's index picks; any other index is outside
/// every partition.
const NAMES: [&str; 3] = ["a", "b", "c"];
const NONE: usize = NAMES.len();

/// Builds `builder` and runs `clients` looping clients on it, client `i`
/// sending its calls to partition `NAMES[partitions[i % len]]`, against
/// a backend whose calls take `latency(time since the start)`, for `secs`
/// of paused time.
async fn run(
    builder: AdaptiveLimitBuilder,
    partitions: &[usize],
    clients: usize,
    latency: fn(Duration) -> Duration,
    secs: u64,
) -> Run {
    let changes = Arc::new(AtomicU64::new(0));
    let limit = {
        let changes = changes.clone();
        builder
            .on_limit_change(move |_| {
                changes.fetch_add(1, Ordering::SeqCst);
            })
            .build()
            .unwrap()
    };
    let start = Instant::now();
    let active = Arc::new(AtomicU32::new(0));
    let max_pinned = Arc::new(AtomicU32::new(0));
    let backend = {
        let (active, max_pinned) = (active.clone(), max_pinned.clone());
        service_fn(move |_: usize| {
            let now = active.fetch_add(1, Ordering::SeqCst) + 1;
            if start.elapsed() < Duration::from_millis(150) {
                max_pinned.fetch_max(now, Ordering::SeqCst);
            }
            let active = active.clone();
            let latency = latency(start.elapsed());
            async move {
                sleep(latency).await;
                active.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, std::io::Error>(())
            }
        })
    };
    let svc = AdaptiveLimitLayer::new(limit.clone())
        .partition_by(|p: &usize| NAMES.get(*p).copied())
        .layer(backend);
    let end = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for i in 0..clients {
        let svc = svc.clone();
        let partition = partitions[i % partitions.len()];
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                if svc.clone().oneshot(partition).await.is_err() {
                    // Shed: try again a little later, as a client would.
                    sleep(Duration::from_millis(1)).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(limit.in_flight(), 0);
    assert_eq!(limit.snapshot().queued, 0);
    Run {
        limit: limit.limit(),
        changes: changes.load(Ordering::SeqCst),
        max_while_first_pinned: max_pinned.load(Ordering::SeqCst),
    }
}

/// The limit left its pinned minimum of 3, and the first measurement ran
/// with at most 3 calls in flight.
fn assert_measured_and_moved(r: &Run) {
    assert!(r.changes > 0 && r.limit > 3, "{r:?}");
    assert!(r.max_while_first_pinned <= 3, "{r:?}");
}

#[tokio::test(start_paused = true)]
async fn without_partitions_the_limit_moves() {
    let r = run(envoy(), &[NONE], 40, |_| Duration::from_millis(10), 120).await;
    assert_measured_and_moved(&r);
}

#[tokio::test(start_paused = true)]
async fn two_partitions_do_not_pin_the_limit_forever() {
    let b = envoy().partition("a", 0.5).partition("b", 0.5);
    let r = run(b, &[0, 1], 40, |_| Duration::from_millis(10), 120).await;
    assert_measured_and_moved(&r);
}

#[tokio::test(start_paused = true)]
async fn three_partitions_and_unpartitioned_calls_do_not_pin_the_limit_forever() {
    let b = envoy()
        .partition("a", 0.4)
        .partition("b", 0.3)
        .partition("c", 0.3);
    let r = run(b, &[0, 1, 2, NONE], 40, |_| Duration::from_millis(10), 120).await;
    assert_measured_and_moved(&r);
}

#[tokio::test(start_paused = true)]
async fn partitions_with_a_queue_do_not_pin_the_limit_forever() {
    let b = envoy()
        .partition("a", 0.5)
        .partition("b", 0.5)
        .queue(20, Duration::from_millis(5));
    let r = run(b, &[0, 1], 40, |_| Duration::from_millis(10), 120).await;
    assert_measured_and_moved(&r);
}

#[tokio::test(start_paused = true)]
async fn three_partitions_do_not_pin_the_limit_forever() {
    let b = envoy()
        .partition("a", 0.4)
        .partition("b", 0.3)
        .partition("c", 0.3);
    let r = run(b, &[0, 1, 2], 39, |_| Duration::from_millis(10), 120).await;
    assert_measured_and_moved(&r);
}

#[tokio::test(start_paused = true)]
async fn a_remeasurement_too_slow_to_fill_its_windows_still_completes() {
    // Re-measured 10 s after the first measurement (which ends at 200 ms).
    // Calls take 10 ms until 10 s, then 50 ms: pinned at 3, the
    // re-measurement completes 6 calls per 100 ms window, fewer than the 10
    // a window needs for a limit decision.
    let envoy = EnvoyGradient::builder()
        .seed(7)
        .jitter(0.0)
        .min_rtt_interval(Duration::from_secs(10))
        .build()
        .unwrap();
    let builder = AdaptiveLimit::builder(envoy).window(Duration::from_millis(100));
    let latency =
        |t: Duration| Duration::from_millis(if t < Duration::from_secs(10) { 10 } else { 50 });
    let r = run(builder, &[NONE], 40, latency, 60).await;
    assert_measured_and_moved(&r);
}
