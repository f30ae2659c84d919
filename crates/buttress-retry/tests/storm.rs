//! Cancellation storms on a two-worker runtime, and backends that hang:
//! every attempt the layers start is dropped with its caller, and every
//! call that is not cancelled ends within its bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use buttress_core::rng::FastRng;
use buttress_retry::{
    DeadlineExceeded, HedgeDelay, HedgeLayer, HedgePolicy, RetryBudget, RetryLayer, RetryPolicy,
};
use tokio::time::{Instant, sleep, timeout};
use tower::{Layer, Service, ServiceExt, service_fn};

/// Counts attempts in progress: up on start, down when dropped, finished or not.
#[derive(Clone, Default)]
struct Live(Arc<AtomicI64>);

struct Attempt(Arc<AtomicI64>);

impl Live {
    fn start(&self) -> Attempt {
        self.0.fetch_add(1, Ordering::SeqCst);
        Attempt(self.0.clone())
    }
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
    /// Waits (briefly, for aborted tasks to be dropped on their worker)
    /// until no attempt is in progress.
    async fn settle(&self) -> i64 {
        for _ in 0..200 {
            if self.now() == 0 {
                return 0;
            }
            sleep(Duration::from_millis(5)).await;
        }
        self.now()
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A request whose primary attempt may hang: the backend counts the
/// attempts it saw of it.
#[derive(Clone)]
struct Req {
    id: u64,
    seen: Arc<AtomicU32>,
}

fn req(id: u64) -> Req {
    Req {
        id,
        seen: Arc::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hedging_storm_drops_every_attempt_with_its_caller() {
    let live = Live::default();
    let l = live.clone();
    // One primary in four hangs; hedges answer in 0–3 ms.
    let backend = service_fn(move |r: Req| {
        let attempt = l.start();
        let first = r.seen.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            let _attempt = attempt;
            if first && r.id.is_multiple_of(4) {
                std::future::pending::<()>().await;
            }
            sleep(Duration::from_millis(r.id % 4)).await;
            Ok::<_, &'static str>(r.id)
        }
    });
    let policy = HedgePolicy::builder()
        .delay(HedgeDelay::Fixed(Duration::from_millis(5)))
        .max_hedges(2)
        .budget(
            RetryBudget::builder()
                .percent(100.0)
                .min_per_second(100_000)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let svc = HedgeLayer::new(policy.clone()).layer(backend);
    let rng = FastRng::seeded(9);
    let mut tasks = tokio::task::JoinSet::new();
    let mut aborts = Vec::new();
    let finished = Arc::new(AtomicU64::new(0));
    for id in 0..3_000u64 {
        let svc = svc.clone();
        let finished = finished.clone();
        let cut = Duration::from_micros(rng.next_u64() % 8_000);
        match id % 3 {
            // Cancelled at a random point by a timeout.
            0 => {
                tasks.spawn(async move {
                    let _ = timeout(cut, svc.oneshot(req(id))).await;
                });
            }
            // Aborted from outside.
            1 => aborts.push((
                tasks.spawn(async move {
                    let _ = svc.oneshot(req(id)).await;
                }),
                cut,
            )),
            // Left to finish: a hung primary is answered by its hedge.
            _ => {
                tasks.spawn(async move {
                    let started = Instant::now();
                    let got = timeout(Duration::from_secs(5), svc.oneshot(req(id)))
                        .await
                        .expect("a call with a live hedge ends");
                    assert_eq!(got, Ok(id), "each call gets its own answer");
                    assert!(started.elapsed() < Duration::from_secs(5));
                    finished.fetch_add(1, Ordering::SeqCst);
                });
            }
        }
    }
    for (handle, cut) in aborts {
        if cut.as_micros() % 2 == 0 {
            tokio::task::yield_now().await;
        }
        handle.abort();
    }
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r {
            assert!(e.is_cancelled(), "a task panicked: {e}");
        }
    }
    assert_eq!(finished.load(Ordering::SeqCst), 1_000);
    assert_eq!(live.settle().await, 0, "attempts left running");
    let s = policy.snapshot();
    assert!(
        s.hedges > 0 && s.hedge_won > 0 && s.hedge_won <= s.hedges,
        "{s:?}"
    );
}

/// Every attempt hangs: the caller's deadline ends the call, and no
/// attempt outlives it.
#[tokio::test(start_paused = true)]
async fn a_hung_backend_is_bounded_by_the_deadline_and_hedges_stop_at_the_cap() {
    let live = Live::default();
    let calls = Arc::new(AtomicU32::new(0));
    let (l, c) = (live.clone(), calls.clone());
    let hung = service_fn(move |_: u32| {
        let attempt = l.start();
        c.fetch_add(1, Ordering::SeqCst);
        async move {
            let _attempt = attempt;
            std::future::pending::<Result<u32, &'static str>>().await
        }
    });
    // Retry: the deadline cuts the hung attempt short.
    let policy = RetryPolicy::builder()
        .deadline(Duration::from_millis(300))
        .build()
        .unwrap();
    let retry = RetryLayer::new(policy).layer(hung.clone());
    let started = Instant::now();
    let err = retry.oneshot(1).await.unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    assert_eq!(live.now(), 0);

    // Hedging: at most 1 + max_hedges attempts, all dropped with the caller.
    calls.store(0, Ordering::SeqCst);
    let hedge = HedgeLayer::new(
        HedgePolicy::builder()
            .delay(HedgeDelay::Fixed(Duration::from_millis(10)))
            .max_hedges(3)
            .budget(
                RetryBudget::builder()
                    .percent(100.0)
                    .min_per_second(1000)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap(),
    )
    .layer(hung);
    let mut hedge = hedge;
    let call = hedge.ready().await.unwrap().call(2);
    assert!(timeout(Duration::from_secs(3600), call).await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(live.now(), 0, "the hung attempts were dropped");
}
