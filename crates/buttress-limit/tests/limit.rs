//! Behaviour of the adaptive limit through its tower service and its handle.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buttress_core::classify::{Classification, Outcome};
use buttress_limit::algorithm::{Fixed, Limit, Sample};
use buttress_limit::throttle::{AdaptiveThrottle, AdaptiveThrottleLayer, Throttled};
use buttress_limit::{
    AdaptiveLimit, AdaptiveLimitLayer, AdaptiveLimitService, LimitChange, Overloaded, QueueOrder,
};
use tokio::time::{advance, sleep};
use tower::{Layer, Service, ServiceExt, service_fn};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A backend that sleeps `ms` and answers it; `ms == 0` fails; counts calls.
fn backend(
    calls: Arc<AtomicUsize>,
) -> impl Service<
    u64,
    Response = u64,
    Error = &'static str,
    Future = impl Future<Output = Result<u64, &'static str>> + Send + use<>,
> + Clone
+ Send {
    service_fn(move |ms: u64| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            if ms == 0 {
                return Err("failed");
            }
            sleep(Duration::from_millis(ms)).await;
            Ok(ms)
        }
    })
}

fn overloaded(err: &BoxError) -> Option<Overloaded> {
    err.downcast_ref::<Overloaded>().copied()
}

/// A limit that records every sample it is fed and adds one per window.
#[derive(Debug, Clone, Default)]
struct Recorder {
    limit: u32,
    samples: Arc<Mutex<Vec<Sample>>>,
    percentile: Option<f64>,
}

impl Limit for Recorder {
    fn limit(&self) -> u32 {
        self.limit
    }
    fn update(&mut self, s: &Sample) -> u32 {
        self.samples.lock().unwrap().push(*s);
        self.limit += 1;
        self.limit
    }
    fn name(&self) -> &'static str {
        "recorder"
    }
    fn rtt_percentile(&self) -> Option<f64> {
        self.percentile
    }
}

#[tokio::test(start_paused = true)]
async fn sheds_at_the_limit_without_calling_the_backend() {
    let calls = Arc::new(AtomicUsize::new(0));
    let limit = AdaptiveLimit::builder(Fixed::new(2).unwrap())
        .build()
        .unwrap();
    let mut svc = AdaptiveLimitLayer::new(limit.clone()).layer(backend(calls.clone()));
    let a = tokio::spawn(svc.ready().await.unwrap().call(100));
    let b = tokio::spawn(svc.ready().await.unwrap().call(100));
    // poll_ready holds nothing: readiness alone does not change in-flight.
    svc.ready().await.unwrap();
    assert_eq!(limit.in_flight(), 2);
    let err = svc.call(100).await.unwrap_err();
    let shed = overloaded(&err).expect("Overloaded");
    assert_eq!(shed.name(), limit.name(), "the rejection names the limiter");
    assert!(
        shed.name()
            .as_str()
            .starts_with("crates/buttress-limit/tests/limit.rs:"),
        "an unnamed limiter is named after the line that built it: {}",
        shed.name()
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the shed call never reached the backend"
    );
    assert_eq!(limit.snapshot().rejected, 1);
    assert_eq!(a.await.unwrap().unwrap(), 100);
    assert_eq!(b.await.unwrap().unwrap(), 100);
    assert_eq!(limit.in_flight(), 0);
    // Room again.
    assert_eq!(svc.ready().await.unwrap().call(5).await.unwrap(), 5);
}

#[tokio::test(start_paused = true)]
async fn dropping_in_flight_and_queued_futures_returns_every_permit() {
    let calls = Arc::new(AtomicUsize::new(0));
    let limit = AdaptiveLimit::builder(Fixed::new(10).unwrap())
        .queue(100, Duration::from_secs(10))
        .build()
        .unwrap();
    let svc = AdaptiveLimitLayer::new(limit.clone()).layer(backend(calls));
    let mut futures = Vec::new();
    for _ in 0..50 {
        futures.push(tokio::spawn(svc.clone().oneshot(1_000)));
    }
    tokio::task::yield_now().await;
    advance(Duration::from_millis(10)).await;
    assert_eq!(limit.in_flight(), 10);
    assert_eq!(limit.snapshot().queued, 40);
    for f in &futures {
        f.abort();
    }
    for f in futures {
        assert!(f.await.unwrap_err().is_cancelled(), "aborted while waiting");
    }
    assert_eq!((limit.in_flight(), limit.snapshot().queued), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn queue_waits_then_times_out_fifo() {
    let calls = Arc::new(AtomicUsize::new(0));
    let limit = AdaptiveLimit::builder(Fixed::new(1).unwrap())
        .queue(2, Duration::from_millis(50))
        .build()
        .unwrap();
    let svc = AdaptiveLimitLayer::new(limit.clone()).layer(backend(calls));
    let first = tokio::spawn(svc.clone().oneshot(30));
    tokio::task::yield_now().await;
    // Queued behind `first`, served when it completes at 30 ms.
    let second = tokio::spawn(svc.clone().oneshot(30));
    // Queued too, but its 50 ms wait runs out before the second completes at 60 ms.
    let third = tokio::spawn(svc.clone().oneshot(30));
    let queued_at = tokio::time::Instant::now();
    tokio::task::yield_now().await;
    assert_eq!(limit.snapshot().queued, 2);
    assert_eq!(
        queued_at.elapsed(),
        Duration::ZERO,
        "paused time: queued at once"
    );
    // The queue is full: rejected at once.
    let full = svc.clone().oneshot(30).await.unwrap_err();
    assert!(overloaded(&full).is_some());
    let third_done = tokio::spawn(async move {
        let result = third.await.unwrap();
        (result, tokio::time::Instant::now())
    });
    assert_eq!(first.await.unwrap().unwrap(), 30);
    assert_eq!(second.await.unwrap().unwrap(), 30);
    let (late, shed_at) = third_done.await.unwrap();
    let late = late.unwrap_err();
    assert_eq!(overloaded(&late).unwrap().name(), limit.name());
    // Shed when its 50 ms wait ran out (tokio timers round up to the next
    // millisecond), not when the second call finished at 60 ms.
    let waited = shed_at - queued_at;
    assert!(
        (Duration::from_millis(50)..=Duration::from_millis(51)).contains(&waited),
        "waited {waited:?}"
    );
    assert_eq!((limit.in_flight(), limit.snapshot().queued), (0, 0));
}

/// Rounds of `n` calls of 50 ms, each round after the last, for `secs`:
/// the samples fed to a limiter with the default (RTT-scaled) windows.
async fn rounds_of(n: u32, secs: u64) -> Vec<Sample> {
    const CALL: Duration = Duration::from_millis(50);
    let recorder = Recorder {
        limit: 100,
        ..Recorder::default()
    };
    let samples = recorder.samples.clone();
    let limit = AdaptiveLimit::builder(recorder).build().unwrap();
    for _ in 0..secs * 20 {
        let permits: Vec<_> = (0..n).map(|_| limit.try_acquire().unwrap()).collect();
        advance(CALL).await;
        for p in permits {
            p.record(Outcome::Success);
        }
    }
    samples.lock().unwrap().clone()
}

/// By default a window lasts 4 RTTs (here 200 ms), and one with fewer than
/// `window_samples` calls stays open until it has them, so a small limit is
/// fed too.
#[tokio::test(start_paused = true)]
async fn default_windows_scale_with_the_rtt_and_wait_for_their_calls() {
    let busy = rounds_of(20, 2).await;
    // The first window closes once it holds 10 calls and has lasted 4 of
    // their RTTs: at the fourth round.
    assert_eq!(busy[0].at(), Duration::from_millis(200));
    for w in busy.windows(2) {
        assert_eq!(
            w[1].at() - w[0].at(),
            Duration::from_millis(200),
            "{busy:?}"
        );
    }
    let quiet = rounds_of(2, 3).await;
    assert!(quiet.len() >= 8, "{} windows fed", quiet.len());
    for s in &quiet {
        assert!(s.count() >= 10, "{s:?}");
    }
}

/// A queued call is timed from `call`, not from when it got its permit:
/// the wait the queue absorbed shows in the window's RTT.
#[tokio::test(start_paused = true)]
async fn a_queued_call_is_timed_from_call() {
    const WAIT: Duration = Duration::from_millis(100);
    const WINDOW: Duration = Duration::from_secs(1);
    let recorder = Recorder {
        limit: 1,
        ..Recorder::default()
    };
    let samples = recorder.samples.clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let limit = AdaptiveLimit::builder(recorder)
        .window(WINDOW)
        .window_samples(1)
        .queue(1, WAIT)
        .build()
        .unwrap();
    let svc = AdaptiveLimitLayer::new(limit.clone()).layer(backend(calls));
    let first = tokio::spawn(svc.clone().oneshot(30));
    tokio::task::yield_now().await;
    // Waits 30 ms for `first`, then takes 30 ms: 60 ms from its `call`.
    let second = tokio::spawn(svc.clone().oneshot(30));
    tokio::task::yield_now().await;
    assert_eq!(limit.snapshot().queued, 1);
    assert_eq!(first.await.unwrap().unwrap(), 30);
    assert_eq!(second.await.unwrap().unwrap(), 30);
    advance(WINDOW).await;
    // This call closes the window: the mean of 30, 60 and 30 ms.
    assert_eq!(svc.clone().oneshot(30).await.unwrap(), 30);
    let s = samples.lock().unwrap()[0];
    assert_eq!(s.count(), 3);
    assert_eq!(s.rtt(), Duration::from_millis(40));
}

#[tokio::test(start_paused = true)]
async fn lifo_serves_the_newest_waiter_first() {
    let order = Arc::new(Mutex::new(Vec::new()));
    let log = order.clone();
    let svc = service_fn(move |id: u64| {
        log.lock().unwrap().push(id);
        async move {
            sleep(Duration::from_millis(10)).await;
            Ok::<_, &'static str>(id)
        }
    });
    let limit = AdaptiveLimit::builder(Fixed::new(1).unwrap())
        .queue(10, Duration::from_secs(1))
        .queue_order(QueueOrder::Lifo)
        .build()
        .unwrap();
    let svc = AdaptiveLimitLayer::new(limit.clone()).layer(svc);
    let mut tasks = Vec::new();
    for id in 0..4 {
        tasks.push(tokio::spawn(svc.clone().oneshot(id)));
        tokio::task::yield_now().await;
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 3, 2, 1]);
}

#[tokio::test(start_paused = true)]
async fn partitions_keep_their_share_only_when_the_limit_is_in_use() {
    let limit = AdaptiveLimit::builder(Fixed::new(10).unwrap())
        .partition("interactive", 0.3)
        .partition("batch", 0.7)
        .build()
        .unwrap();
    let svc = service_fn(|(_, ms): (&'static str, u64)| async move {
        sleep(Duration::from_millis(ms)).await;
        Ok::<_, &'static str>(())
    });
    let svc = AdaptiveLimitLayer::new(limit.clone())
        .partition_by(|req: &(&'static str, u64)| Some(req.0))
        .layer(svc);
    // Below the limit, a partition may take more than its share: 10 batch calls.
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(tokio::spawn(svc.clone().oneshot(("batch", 100))));
    }
    tokio::task::yield_now().await;
    assert_eq!(limit.in_flight(), 10);
    assert_eq!(
        limit.partition_snapshot("batch").map(|p| p.in_flight),
        Some(10)
    );
    // The whole limit is in use: batch is over its share (7) and is shed…
    assert!(svc.clone().oneshot(("batch", 1)).await.is_err());
    // …an unpartitioned call too…
    assert!(svc.clone().oneshot(("other", 1)).await.is_err());
    // …but interactive still gets its ⌈10 · 0.3⌉ = 3.
    for _ in 0..3 {
        held.push(tokio::spawn(svc.clone().oneshot(("interactive", 100))));
    }
    tokio::task::yield_now().await;
    assert_eq!(
        limit.partition_snapshot("interactive").map(|p| p.in_flight),
        Some(3)
    );
    assert!(svc.clone().oneshot(("interactive", 1)).await.is_err());
    for h in held {
        h.await.unwrap().unwrap();
    }
    assert_eq!(limit.in_flight(), 0);
    assert_eq!(
        limit.partition_snapshot("interactive").map(|p| p.in_flight),
        Some(0)
    );
}

#[tokio::test(start_paused = true)]
async fn windows_feed_the_mean_rtt_max_in_flight_and_drops() {
    let recorder = Recorder {
        limit: 100,
        ..Recorder::default()
    };
    let samples = recorder.samples.clone();
    let changes = Arc::new(Mutex::new(Vec::<(u32, u32)>::new()));
    let seen = changes.clone();
    let limit = AdaptiveLimit::builder(recorder)
        .name("windows")
        .on_limit_change(move |c: &LimitChange| {
            assert_eq!(c.name(), "windows");
            seen.lock().unwrap().push((c.from(), c.to()));
        })
        .build()
        .unwrap();
    let svc = AdaptiveLimitLayer::new(limit.clone()).layer(backend(Arc::new(AtomicUsize::new(0))));

    // Window 1: 5 concurrent calls of 20 ms and 5 of 40 ms, one failure.
    let mut tasks = Vec::new();
    for i in 0..10 {
        tasks.push(tokio::spawn(svc.clone().oneshot(if i < 5 {
            20
        } else {
            40
        })));
    }
    tasks.push(tokio::spawn(svc.clone().oneshot(0)));
    let mut failed = 0;
    for t in tasks {
        failed += usize::from(t.await.unwrap().is_err());
    }
    assert_eq!(failed, 1, "the call of 0 ms fails");
    assert!(
        samples.lock().unwrap().is_empty(),
        "the window is still open"
    );
    // The first completion after the window's end closes it.
    advance(Duration::from_secs(1)).await;
    svc.clone().oneshot(10).await.unwrap();
    let s = samples.lock().unwrap()[0];
    // The call that closes the window is part of it: (5·20 + 5·40 + 10)/11 ms.
    assert_eq!(
        s.rtt(),
        Duration::from_nanos(310_000_000 / 11),
        "mean of the successes"
    );
    assert_eq!(s.in_flight(), 11, "most in flight, taken at admission");
    assert!(s.dropped());
    assert_eq!(s.count(), 12, "11 successes and a drop");
    assert_eq!(limit.limit(), 101);
    assert_eq!(*changes.lock().unwrap(), vec![(100, 101)]);

    // Window 2: one 10 ms call (above) plus 9 immediate ones: too fast to
    // sample (under 100 µs), so the window has too few samples: discarded.
    let instant = AdaptiveLimitLayer::new(limit.clone())
        .layer(service_fn(|()| async { Ok::<_, &'static str>(()) }));
    for _ in 0..20 {
        instant.clone().oneshot(()).await.unwrap();
    }
    advance(Duration::from_secs(1)).await;
    svc.clone().oneshot(10).await.unwrap();
    assert_eq!(
        samples.lock().unwrap().len(),
        1,
        "a window of 1 sample is discarded"
    );
    assert_eq!(limit.limit(), 101);
}

#[tokio::test(start_paused = true)]
async fn classifier_decides_drops_and_ignores() {
    let recorder = Recorder {
        limit: 100,
        ..Recorder::default()
    };
    let samples = recorder.samples.clone();
    let limit = AdaptiveLimit::builder(recorder)
        .window_samples(1)
        .build()
        .unwrap();
    // 40 ms calls are ignored; everything else succeeds.
    let classify = |r: &Result<u64, &'static str>| match r {
        Ok(40) => Classification::ignored(),
        _ => Classification::success(),
    };
    let svc = AdaptiveLimitLayer::new(limit.clone())
        .classifier(classify)
        .layer(backend(Arc::new(AtomicUsize::new(0))));
    svc.clone().oneshot(40).await.unwrap();
    svc.clone().oneshot(0).await.unwrap_err(); // an error, judged a success: no RTT
    advance(Duration::from_secs(1)).await;
    svc.clone().oneshot(20).await.unwrap();
    let s = samples.lock().unwrap()[0];
    assert!(!s.dropped());
    assert_eq!(
        s.rtt(),
        Duration::from_millis(20),
        "the ignored call fed nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn try_acquire_and_record_outside_tower() {
    let limit = AdaptiveLimit::builder(Fixed::new(2).unwrap())
        .build()
        .unwrap();
    let a = limit.try_acquire().unwrap();
    let b = limit.try_acquire().unwrap();
    assert!(limit.try_acquire().is_err());
    a.record(Outcome::Success);
    drop(b);
    assert_eq!(limit.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn throttle_sheds_locally_once_the_backend_rejects_and_recovers_after_the_window() {
    let throttle = AdaptiveThrottle::builder()
        .window(Duration::from_secs(10), 10)
        .seed(3)
        .build()
        .unwrap();
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let h = healthy.clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let svc = AdaptiveThrottleLayer::new(throttle.clone()).layer(service_fn(move |()| {
        c.fetch_add(1, Ordering::SeqCst);
        let ok = h.load(Ordering::SeqCst);
        async move { if ok { Ok(()) } else { Err("overloaded") } }
    }));
    for _ in 0..100 {
        svc.clone().oneshot(()).await.unwrap();
    }
    let counts = throttle.snapshot();
    assert_eq!(counts.reject_probability, 0.0);
    assert_eq!((counts.requests, counts.accepts), (100, 100));
    assert_eq!((counts.sent, counts.rejected), (100, 0));
    // The backend starts rejecting: once requests exceed 2 × accepts, the
    // client sheds locally, and the backend sees far fewer calls.
    healthy.store(false, Ordering::SeqCst);
    calls.store(0, Ordering::SeqCst);
    let mut throttled = 0;
    for _ in 0..1000 {
        if let Err(e) = svc.clone().oneshot(()).await
            && let Some(t) = e.downcast_ref::<Throttled>()
        {
            assert_eq!(
                t.name(),
                throttle.name(),
                "the rejection names the throttle"
            );
            throttled += 1;
        }
    }
    let counts = throttle.snapshot();
    assert_eq!(throttled, counts.rejected);
    assert_eq!((counts.requests, counts.accepts), (1100, 100));
    let p = counts.reject_probability;
    assert!((p - (1100.0 - 200.0) / 1101.0).abs() < 1e-9);
    // Expected rejections: Σ over n = 100..1100 of max(0, (n − 200)/(n + 1))
    // ≈ 900 − 201 · ln(1101/201) ≈ 558.
    assert!((500..620).contains(&counts.rejected), "{}", counts.rejected);
    assert_eq!(calls.load(Ordering::SeqCst) as u64, 1000 - counts.rejected);
    assert_eq!(counts.sent, 1100 - counts.rejected);
    // After the window, the old counts are gone: nothing is shed.
    advance(Duration::from_secs(11)).await;
    healthy.store(true, Ordering::SeqCst);
    assert_eq!(throttle.snapshot().reject_probability, 0.0);
    svc.clone().oneshot(()).await.unwrap();
}

#[test]
fn services_futures_and_handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<AdaptiveLimit>();
    send_sync::<AdaptiveLimitLayer>();
    send_sync::<AdaptiveThrottle>();
    send_sync::<buttress_limit::Permit>();
    type Svc = AdaptiveLimitService<
        tower::util::ServiceFn<fn(u32) -> std::future::Ready<Result<u32, std::io::Error>>>,
    >;
    send_sync::<Svc>();
    send::<<Svc as Service<u32>>::Future>();
}

#[tokio::test(start_paused = true)]
async fn busy_windows_sample_a_subset_with_the_same_mean() {
    let recorder = Recorder {
        limit: 100,
        ..Recorder::default()
    };
    let samples = recorder.samples.clone();
    let limit = AdaptiveLimit::builder(recorder)
        .window(Duration::from_secs(1))
        .build()
        .unwrap();
    // Three busy windows of 3,000 calls, each taking 200 µs, in a row.
    for _ in 0..3 {
        for _ in 0..3_000 {
            let permit = limit.try_acquire().unwrap();
            advance(Duration::from_micros(200)).await;
            permit.record(Outcome::Success);
        }
        advance(Duration::from_secs(1)).await;
    }
    // The next sampled call closes the last window.
    for _ in 0..4 {
        let permit = limit.try_acquire().unwrap();
        advance(Duration::from_micros(200)).await;
        permit.record(Outcome::Success);
    }
    let samples = samples.lock().unwrap();
    assert_eq!(samples.len(), 3);
    // The first window measures every call; the next ones one in two
    // (3,000 calls is under 4 × 1,024 samples), with the same mean RTT.
    // (A window includes the call that closes it.)
    assert!((3_000..=3_001).contains(&samples[0].count()));
    for s in &samples[1..] {
        assert!((1_400..=1_600).contains(&s.count()), "{}", s.count());
    }
    for s in samples.iter() {
        assert_eq!(s.rtt(), Duration::from_micros(200));
    }
}

/// Two limiters on one thread, one call through each in turn (a server
/// limit around a handler that calls a client limit): each picks its
/// sampled calls from its own admissions, so both keep sampling one call
/// in two in busy windows, however their calls interleave.
#[tokio::test(start_paused = true)]
async fn nested_limiters_each_sample_their_own_calls() {
    let recorder = || Recorder {
        limit: 100,
        ..Recorder::default()
    };
    let (outer, inner) = (recorder(), recorder());
    let (outer_samples, inner_samples) = (outer.samples.clone(), inner.samples.clone());
    let window = Duration::from_secs(1);
    let outer = AdaptiveLimit::builder(outer)
        .name("outer")
        .window(window)
        .build()
        .unwrap();
    let inner = AdaptiveLimit::builder(inner)
        .name("inner")
        .window(window)
        .build()
        .unwrap();
    for _ in 0..3 {
        for _ in 0..3_000 {
            let a = outer.try_acquire().unwrap();
            let b = inner.try_acquire().unwrap();
            advance(Duration::from_micros(200)).await;
            b.record(Outcome::Success);
            a.record(Outcome::Success);
        }
        advance(Duration::from_secs(1)).await;
    }
    for _ in 0..4 {
        let a = outer.try_acquire().unwrap();
        let b = inner.try_acquire().unwrap();
        advance(Duration::from_micros(200)).await;
        b.record(Outcome::Success);
        a.record(Outcome::Success);
    }
    for (name, samples) in [("outer", outer_samples), ("inner", inner_samples)] {
        let samples = samples.lock().unwrap();
        let counts: Vec<u32> = samples.iter().map(Sample::count).collect();
        assert_eq!(counts.len(), 3, "{name}: every busy window fed: {counts:?}");
        for c in &counts[1..] {
            assert!((1_400..=1_600).contains(c), "{name}: {counts:?}");
        }
    }
}

/// The samples a limiter is fed for three busy windows (3,000 calls of
/// 200 µs each, then a few to close the last), each call also passing
/// through `stacked` (inner limiters) and preceded by `noise` other
/// limiters taking and releasing 1 to 3 instant calls each on the same
/// thread. Returns the samples of the limiter and of every stacked one.
async fn busy_windows_through(stacked: usize, noise: usize) -> Vec<Vec<Sample>> {
    const CALL: Duration = Duration::from_micros(200);
    const GAP: Duration = Duration::from_secs(1);
    let mut recorders = Vec::new();
    let limiters: Vec<AdaptiveLimit> = (0..=stacked)
        .map(|i| {
            let r = Recorder {
                limit: 100,
                ..Recorder::default()
            };
            recorders.push(r.samples.clone());
            AdaptiveLimit::builder(r)
                .name(format!("stacked-{i}"))
                .window(GAP)
                .build()
                .unwrap()
        })
        .collect();
    let others: Vec<AdaptiveLimit> = (0..noise)
        .map(|i| {
            AdaptiveLimit::builder(Fixed::new(10).unwrap())
                .name(format!("noise-{i}"))
                .build()
                .unwrap()
        })
        .collect();
    let mut n = 0usize;
    let one_call = async |n: &mut usize| {
        for (i, other) in others.iter().enumerate() {
            for _ in 0..1 + (*n + i) % 3 {
                other.try_acquire().unwrap().record(Outcome::Success);
            }
        }
        *n += 1;
        let permits: Vec<_> = limiters.iter().map(|l| l.try_acquire().unwrap()).collect();
        advance(CALL).await;
        for p in permits.into_iter().rev() {
            p.record(Outcome::Success);
        }
    };
    for _ in 0..3 {
        for _ in 0..3_000 {
            one_call(&mut n).await;
        }
        advance(GAP).await;
    }
    for _ in 0..4 {
        one_call(&mut n).await;
    }
    recorders
        .iter()
        .map(|r| r.lock().unwrap().clone())
        .collect()
}

/// Stacked limiters (three on every call), and a limiter sharing its
/// thread with many others whose calls interleave with its own, are each
/// fed exactly the samples the limiter gets alone: each picks the calls it
/// times from its own admissions.
#[tokio::test(start_paused = true)]
async fn stacked_and_neighbouring_limiters_behave_as_each_alone() {
    let alone = busy_windows_through(0, 0).await.remove(0);
    assert_eq!(alone.len(), 3, "every busy window fed");
    assert!(alone[1].count() < 2_000, "busy windows are subsampled");
    let stacked = busy_windows_through(2, 0).await;
    let crowded = busy_windows_through(0, 16).await;
    let both = busy_windows_through(2, 16).await;
    for (i, samples) in stacked.iter().chain(&crowded).chain(&both).enumerate() {
        assert_eq!(samples, &alone, "limiter {i}");
    }
}

/// Many tasks on a multi-threaded runtime, with a queue: the backend never
/// sees more calls at once than the limit, every call is answered or shed,
/// and every permit comes back.
#[test]
fn threads_never_exceed_the_limit_and_return_every_permit() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let limit = AdaptiveLimit::builder(Fixed::new(8).unwrap())
            .queue(64, Duration::from_secs(60))
            .build()
            .unwrap();
        let now = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (n, p) = (now.clone(), peak.clone());
        let backend = service_fn(move |()| {
            let (n, p) = (n.clone(), p.clone());
            async move {
                let inside = n.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(inside, Ordering::SeqCst);
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                n.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, &'static str>(())
            }
        });
        let svc = AdaptiveLimitLayer::new(limit.clone()).layer(backend);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..2_000 {
            tasks.spawn(svc.clone().oneshot(()));
        }
        let (mut ok, mut shed) = (0, 0);
        while let Some(r) = tasks.join_next().await {
            match r.unwrap() {
                Ok(()) => ok += 1,
                Err(e) => {
                    assert!(overloaded(&e).is_some());
                    shed += 1;
                }
            }
        }
        assert_eq!(ok + shed, 2_000);
        assert!(ok >= 8, "{ok}");
        assert!(
            peak.load(Ordering::SeqCst) <= 8,
            "{}",
            peak.load(Ordering::SeqCst)
        );
        assert_eq!((limit.in_flight(), limit.snapshot().queued), (0, 0));
    });
}

#[test]
fn build_rejects_bad_configuration_by_field() {
    let b = || AdaptiveLimit::builder(Fixed::new(10).unwrap());
    let field = |b: buttress_limit::AdaptiveLimitBuilder| b.build().unwrap_err().field();
    assert_eq!(field(b().window(Duration::ZERO)), "window");
    assert_eq!(field(b().window_samples(0)), "window_samples");
    assert_eq!(field(b().queue(0, Duration::from_secs(1))), "queue");
    assert_eq!(field(b().queue(10, Duration::ZERO)), "queue");
    assert_eq!(field(b().partition("a", 0.0)), "partition");
    assert_eq!(field(b().partition("a", f64::NAN)), "partition");
    assert_eq!(
        field(b().partition("a", 0.6).partition("b", 0.6)),
        "partition"
    );
    assert_eq!(
        field(b().partition("a", 0.2).partition("a", 0.2)),
        "partition"
    );
    let err = b()
        .partition("a", 0.6)
        .partition("b", 0.6)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("add up to at most 1"), "{err}");
    assert!(b().partition("a", 0.5).partition("b", 0.5).build().is_ok());
    // A zero limit admits nothing: rejected, not raised to 1.
    let zero = Fixed::new(0).unwrap_err();
    assert_eq!((zero.field(), zero.layer()), ("limit", "concurrency limit"));
}

#[tokio::test(start_paused = true)]
async fn algorithms_may_ask_for_a_percentile_instead_of_the_mean() {
    let recorder = Recorder {
        limit: 100,
        percentile: Some(0.5),
        ..Recorder::default()
    };
    let samples = recorder.samples.clone();
    let limit = AdaptiveLimit::builder(recorder).build().unwrap();
    let svc = AdaptiveLimitLayer::new(limit.clone()).layer(backend(Arc::new(AtomicUsize::new(0))));
    // Six fast calls and five slow ones: the mean is 50 ms, the median 10 ms.
    let mut tasks = Vec::new();
    for i in 0..11 {
        tasks.push(tokio::spawn(svc.clone().oneshot(if i < 6 {
            10
        } else {
            100
        })));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    advance(Duration::from_secs(1)).await;
    svc.clone().oneshot(10).await.unwrap();
    let rtt = samples.lock().unwrap()[0].rtt().as_secs_f64();
    assert!((rtt - 0.010).abs() <= 0.010 * 0.0625, "p50 {rtt}");
}

#[tokio::test(start_paused = true)]
async fn the_largest_durations_build_and_serve_without_overflowing() {
    use buttress_limit::algorithm::{Aimd, EnvoyGradient};

    // The longest window, sampling threshold and queue wait.
    let limit = AdaptiveLimit::builder(Fixed::new(1).unwrap())
        .window(Duration::MAX)
        .min_rtt(Duration::MAX)
        .queue(1, Duration::MAX)
        .build()
        .unwrap();
    let svc = AdaptiveLimitLayer::new(limit.clone()).layer(backend(Arc::new(AtomicUsize::new(0))));
    let first = tokio::spawn(svc.clone().oneshot(10));
    tokio::task::yield_now().await;
    // Waits (for ever, at most) and is served when the first call is done.
    let queued = tokio::spawn(svc.clone().oneshot(10));
    tokio::task::yield_now().await;
    assert_eq!(limit.snapshot().queued, 1);
    assert_eq!(first.await.unwrap().unwrap(), 10);
    assert_eq!(queued.await.unwrap().unwrap(), 10);
    assert_eq!((limit.in_flight(), limit.snapshot().queued), (0, 0));

    // Envoy re-measuring at the longest interval, AIMD's longest timeout,
    // and a throttle over the longest window, each driven through windows.
    let envoy = EnvoyGradient::builder()
        .min_rtt_interval(Duration::MAX)
        .min_rtt_request_count(1)
        .seed(1)
        .build()
        .unwrap();
    let aimd = Aimd::builder().timeout(Duration::MAX).build().unwrap();
    for algorithm in [Box::new(envoy) as Box<dyn Limit>, Box::new(aimd)] {
        let limit = AdaptiveLimit::builder(algorithm)
            .window(Duration::from_millis(1))
            .window_samples(1)
            .build()
            .unwrap();
        let svc =
            AdaptiveLimitLayer::new(limit.clone()).layer(backend(Arc::new(AtomicUsize::new(0))));
        for _ in 0..5 {
            svc.clone().oneshot(2).await.unwrap();
        }
        assert!(limit.limit() >= 1);
    }
    let throttle = AdaptiveThrottle::builder()
        .window(Duration::MAX, 12)
        .seed(1)
        .build()
        .unwrap();
    let svc =
        AdaptiveThrottleLayer::new(throttle.clone()).layer(backend(Arc::new(AtomicUsize::new(0))));
    svc.clone().oneshot(1).await.unwrap();
    advance(Duration::from_secs(3600)).await;
    let counts = throttle.snapshot();
    assert_eq!((counts.requests, counts.accepts), (1, 1));
}

/// `poll_ready` reserves nothing in the limiter (the permit is taken in
/// `call`): clones that became ready and went idle hold no permit, so the
/// rest get the whole limit for as long as they stay idle, and an idle
/// clone called much later is admitted like any other call.
#[tokio::test(start_paused = true)]
async fn clones_idle_after_poll_ready_hold_no_permit() {
    for queue in [false, true] {
        let builder = AdaptiveLimit::builder(Fixed::new(2).unwrap());
        let limit = if queue {
            builder.queue(4, Duration::from_millis(50))
        } else {
            builder
        }
        .build()
        .unwrap();
        let svc =
            AdaptiveLimitLayer::new(limit.clone()).layer(backend(Arc::new(AtomicUsize::new(0))));
        let mut idle: Vec<_> = (0..10).map(|_| svc.clone()).collect();
        for s in &mut idle {
            s.ready().await.unwrap();
        }
        assert_eq!(limit.in_flight(), 0, "readiness holds no permit");
        for _ in 0..3 {
            let a = tokio::spawn(svc.clone().oneshot(10));
            let b = tokio::spawn(svc.clone().oneshot(10));
            tokio::task::yield_now().await;
            assert_eq!(limit.in_flight(), 2, "the whole limit, idle clones or not");
            assert_eq!(a.await.unwrap().unwrap(), 10);
            assert_eq!(b.await.unwrap().unwrap(), 10);
            advance(Duration::from_secs(60)).await;
        }
        for mut s in idle {
            assert_eq!(s.call(10).await.unwrap(), 10);
        }
        assert_eq!(
            (
                limit.in_flight(),
                limit.snapshot().queued,
                limit.snapshot().rejected
            ),
            (0, 0, 0)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn another_layers_refusal_is_not_a_drop() {
    use buttress_core::reject::CircuitOpen;
    use buttress_core::telemetry::Name;

    let recorder = Recorder {
        limit: 100,
        ..Recorder::default()
    };
    let samples = recorder.samples.clone();
    let limit = AdaptiveLimit::builder(recorder)
        .window_samples(1)
        .build()
        .unwrap();
    // Paused time: the backend's answers take this long.
    const RTT: Duration = Duration::from_millis(20);
    // An open breaker inside the limit refuses some calls at once.
    let svc = AdaptiveLimitLayer::new(limit.clone()).layer(service_fn(|open: bool| async move {
        if open {
            Err::<(), BoxError>(Box::new(CircuitOpen::new(Name::new("inner"), None)))
        } else {
            tokio::time::sleep(RTT).await;
            Ok(())
        }
    }));
    for _ in 0..5 {
        svc.clone().oneshot(true).await.unwrap_err();
    }
    advance(Duration::from_secs(1)).await;
    svc.clone().oneshot(false).await.unwrap();
    let s = samples.lock().unwrap()[0];
    assert!(!s.dropped(), "a refusal by another layer is not a drop");
    assert_eq!(s.count(), 1, "nor a sample");
    assert_eq!(s.rtt(), RTT);
}

/// The limiter's seed reaches its algorithm, and pins Vegas' probe jitter:
/// two Vegas seeded alike re-probe on the same windows.
#[test]
fn the_limiter_seed_reaches_the_algorithm_and_pins_its_jitter() {
    #[derive(Debug, Default)]
    struct Seeded(Arc<Mutex<Option<u64>>>);
    impl Limit for Seeded {
        fn limit(&self) -> u32 {
            1
        }
        fn update(&mut self, _: &Sample) -> u32 {
            1
        }
        fn name(&self) -> &'static str {
            "seeded"
        }
        fn seed(&mut self, seed: u64) {
            *self.0.lock().unwrap() = Some(seed);
        }
    }
    let seen = Arc::new(Mutex::new(None));
    let _limit = AdaptiveLimit::builder(Seeded(seen.clone()))
        .seed(42)
        .build()
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), Some(42));
    let unseeded = Arc::new(Mutex::new(None));
    let _limit = AdaptiveLimit::builder(Seeded(unseeded.clone()))
        .build()
        .unwrap();
    assert_eq!(
        *unseeded.lock().unwrap(),
        None,
        "unset: the algorithm's own"
    );

    // Vegas re-probes its no-load RTT after a jittered number of windows.
    let probes = |seed: u64| {
        let mut v = buttress_limit::algorithm::Vegas::builder()
            .probe_multiplier(1)
            .build()
            .unwrap();
        v.seed(seed);
        (0..200u64)
            .map(|i| {
                let rtt = Duration::from_millis(100 + i);
                v.update(&Sample::new(Duration::ZERO, rtt, 1000, false));
                v.rtt_noload()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(probes(7), probes(7));
    assert_ne!(probes(7), probes(8));
}
