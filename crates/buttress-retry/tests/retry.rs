//! Behaviour of the retry layer through its tower service, in paused time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use buttress_core::rng::FastRng;
use buttress_retry::{
    BackoffKind, BudgetExhausted, DeadlineExceeded, Jitter, RetryBudget, RetryLayer, RetryPolicy,
    RetryPolicyBuilder,
};
use proptest::prelude::*;
use tokio::time::{Instant, advance};
use tower::{Layer, Service, ServiceExt, service_fn};

/// A backend that records when each attempt starts, takes `latency`, and
/// fails the first `failures` attempts.
#[derive(Clone)]
struct Backend {
    starts: Arc<Mutex<Vec<Instant>>>,
    failures: u32,
    latency: Duration,
}

impl Backend {
    fn failing(failures: u32) -> Self {
        Self {
            starts: Arc::default(),
            failures,
            latency: Duration::ZERO,
        }
    }

    fn slow(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    fn calls(&self) -> usize {
        self.starts.lock().unwrap().len()
    }

    fn gaps(&self) -> Vec<Duration> {
        let s = self.starts.lock().unwrap();
        s.windows(2).map(|w| w[1] - w[0] - self.latency).collect()
    }

    fn service(&self) -> Svc {
        serve(self.clone())
    }
}

type Svc = tower::util::BoxCloneSyncService<u32, u32, &'static str>;

fn serve(me: Backend) -> Svc {
    tower::util::BoxCloneSyncService::new(service_fn(move |n: u32| {
        let me = me.clone();
        async move {
            let attempt = {
                let mut s = me.starts.lock().unwrap();
                s.push(Instant::now());
                s.len() as u32
            };
            if !me.latency.is_zero() {
                tokio::time::sleep(me.latency).await;
            }
            if attempt <= me.failures {
                Err("unavailable")
            } else {
                Ok(n)
            }
        }
    }))
}

fn exact() -> RetryPolicyBuilder {
    RetryPolicy::builder().without_budget().jitter(Jitter::None)
}

#[tokio::test(start_paused = true)]
async fn retries_until_success_with_exponential_backoff() {
    let backend = Backend::failing(3);
    let policy = exact().max_attempts(5).build().unwrap();
    let svc = RetryLayer::new(policy.clone()).layer(backend.service());
    assert_eq!(svc.oneshot(7).await.unwrap(), 7);
    assert_eq!(backend.calls(), 4);
    let ms = |v: &[u64]| {
        v.iter()
            .map(|m| Duration::from_millis(*m))
            .collect::<Vec<_>>()
    };
    assert_eq!(backend.gaps(), ms(&[25, 50, 100]));
    assert_eq!(policy.snapshot().retries, 3);
}

#[tokio::test(start_paused = true)]
async fn gives_up_after_max_attempts_with_the_last_error() {
    let backend = Backend::failing(u32::MAX);
    let svc = RetryLayer::new(exact().max_attempts(3).build().unwrap()).layer(backend.service());
    let err = svc.oneshot(1).await.unwrap_err();
    assert_eq!(err.to_string(), "unavailable");
    assert_eq!(backend.calls(), 3);

    let backend = Backend::failing(u32::MAX);
    let svc = RetryLayer::new(exact().max_attempts(1).build().unwrap()).layer(backend.service());
    svc.oneshot(1).await.unwrap_err();
    assert_eq!(backend.calls(), 1, "max_attempts(1) turns retries off");
}

#[tokio::test(start_paused = true)]
async fn non_retryable_results_are_returned_at_once() {
    let backend = Backend::failing(u32::MAX);
    let policy = exact()
        .classifier(buttress_core::classify::ErrorsAsFailures::new().errors_retryable(false))
        .build()
        .unwrap();
    RetryLayer::new(policy)
        .layer(backend.service())
        .oneshot(1)
        .await
        .unwrap_err();
    assert_eq!(backend.calls(), 1);
}

/// The delays the service actually waited, against the formulas written
/// out here independently, with the same seeded generator.
#[tokio::test(start_paused = true)]
async fn exact_delay_sequences_for_each_jitter() {
    let base = 0.1;
    let cap = 1.0;
    let retries = 6u32;
    type Formula = fn(u32, f64, &mut f64) -> f64;
    let cases: [(Jitter, Formula); 5] = [
        (Jitter::None, |n, _r, _p| {
            (0.1 * 2f64.powi(n as i32)).min(1.0)
        }),
        (Jitter::Full, |n, r, _p| {
            (0.1 * 2f64.powi(n as i32)).min(1.0) * r
        }),
        (Jitter::Equal, |n, r, _p| {
            let t = (0.1 * 2f64.powi(n as i32)).min(1.0);
            t / 2.0 + r * t / 2.0
        }),
        (Jitter::Decorrelated, |_n, r, p| {
            let prev = if *p == 0.0 { 0.1 } else { *p };
            let d = (0.1 + r * (prev * 3.0 - 0.1)).min(1.0);
            *p = d;
            d
        }),
        (Jitter::DecorrelatedV2, |n, r, p| {
            let x = f64::from(n) + r;
            let next = 2f64.powf(x) * (4.0 * x).sqrt().tanh();
            let d = ((next - *p) / 1.4 * 0.1).min(1.0);
            *p = next;
            d
        }),
    ];
    for (jitter, formula) in cases {
        let backend = Backend::failing(u32::MAX);
        let policy = RetryPolicy::builder()
            .without_budget()
            .jitter(jitter)
            .base_delay(Duration::from_secs_f64(base))
            .max_delay(Duration::from_secs_f64(cap))
            .max_attempts(retries + 1)
            .seed(42)
            .build()
            .unwrap();
        RetryLayer::new(policy)
            .layer(backend.service())
            .oneshot(0)
            .await
            .unwrap_err();
        let rng = FastRng::seeded(42);
        let mut prev = 0.0;
        let expected: Vec<f64> = (0..retries)
            .map(|n| {
                let r = if jitter == Jitter::None {
                    0.0
                } else {
                    rng.next_f64()
                };
                formula(n, r, &mut prev)
            })
            .collect();
        let got = backend.gaps();
        assert_eq!(got.len(), retries as usize, "{jitter:?}");
        for (g, e) in got.iter().zip(&expected) {
            // Paused time sleeps whole milliseconds: round up, at most 1 ms.
            let diff = g.as_secs_f64() - e;
            assert!(
                (0.0..=0.001).contains(&diff),
                "{jitter:?}: waited {g:?}, formula {e}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// For any seed: every delay within [0, cap]; full jitter within the
    /// schedule; equal jitter at least half of it; decorrelated at least the base.
    #[test]
    fn delays_stay_in_bounds(seed in any::<u64>(), base_ms in 1u64..500, cap_mult in 1u64..50) {
        let base = Duration::from_millis(base_ms);
        let cap = base * cap_mult as u32;
        let schedule = |n: u32| (base.as_secs_f64() * 2f64.powi(n as i32)).min(cap.as_secs_f64());
        for jitter in [Jitter::Full, Jitter::Equal, Jitter::Decorrelated, Jitter::DecorrelatedV2] {
            let p = RetryPolicy::builder()
                .jitter(jitter)
                .backoff(BackoffKind::Exponential)
                .base_delay(base)
                .max_delay(cap)
                .seed(seed)
                .build()
                .unwrap();
            for (n, d) in p.delays(40).into_iter().enumerate() {
                let n = n as u32;
                prop_assert!(d <= cap, "{jitter:?} {d:?} > cap");
                let t = schedule(n);
                match jitter {
                    Jitter::Full => prop_assert!(d.as_secs_f64() <= t + 1e-9),
                    Jitter::Equal => prop_assert!(d.as_secs_f64() >= t / 2.0 - 1e-9 && d.as_secs_f64() <= t + 1e-9),
                    Jitter::Decorrelated => prop_assert!(d >= base.min(cap)),
                    _ => {}
                }
            }
        }
    }
}

/// 100 % failure for 60 simulated seconds at 50 requests a second: the
/// budget keeps attempts within requests × 1.2 + 10/s × 60 s, where three
/// attempts a request would otherwise triple the load.
#[tokio::test(start_paused = true)]
async fn retry_storm_is_bounded_by_the_budget() {
    let backend = Backend::failing(u32::MAX);
    let policy = RetryPolicy::builder().seed(3).build().unwrap();
    let svc = RetryLayer::new(policy.clone()).layer(backend.service());
    let mut tasks = tokio::task::JoinSet::new();
    let mut requests = 0u64;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        let svc = svc.clone();
        tasks.spawn(async move { svc.oneshot(0).await });
        requests += 1;
        tokio::time::sleep(const { Duration::from_millis(20) }).await;
    }
    let mut exhausted = 0;
    while let Some(r) = tasks.join_next().await {
        let err = r.unwrap().unwrap_err();
        if let Some(e) = err.downcast_ref::<BudgetExhausted>() {
            assert_eq!(e.last_error().to_string(), "unavailable");
            exhausted += 1;
        }
    }
    let attempts = backend.calls() as u64;
    let bound = requests + requests / 5 + 10 * 60;
    assert_eq!(requests, 3000);
    assert!(attempts <= bound, "{attempts} attempts > {bound}");
    assert!(
        attempts > requests + 600,
        "the budget did allow retries: {attempts}"
    );
    assert!(exhausted > 0);
    assert_eq!(policy.snapshot().budget_exhausted, exhausted);

    // Without a budget: every request makes all three attempts.
    let backend = Backend::failing(u32::MAX);
    let unbudgeted = RetryLayer::new(RetryPolicy::builder().without_budget().build().unwrap())
        .layer(backend.service());
    for _ in 0..100 {
        unbudgeted.clone().oneshot(0).await.unwrap_err();
    }
    assert_eq!(backend.calls(), 300);
}

#[tokio::test(start_paused = true)]
async fn budget_exhausted_wraps_the_last_error() {
    let budget = RetryBudget::builder()
        .percent(0.0)
        .min_per_second(0)
        .build()
        .unwrap();
    let backend = Backend::failing(u32::MAX);
    let policy = RetryPolicy::builder().budget(budget).build().unwrap();
    let err = RetryLayer::new(policy.clone())
        .layer(backend.service())
        .oneshot(0)
        .await
        .unwrap_err();
    let e = err
        .downcast_ref::<BudgetExhausted>()
        .expect("BudgetExhausted");
    assert_eq!(e.last_error().to_string(), "unavailable");
    assert_eq!(
        std::error::Error::source(e).unwrap().to_string(),
        "unavailable"
    );
    assert_eq!(backend.calls(), 1);
    assert_eq!(policy.snapshot().budget_exhausted, 1);
}

#[tokio::test(start_paused = true)]
async fn deadline_is_never_overrun() {
    // Each attempt takes 40 ms and fails; 10 ms waits; a 100 ms budget.
    // Attempts at 0 and 50 ms; at 90 ms only 10 ms are left, less than the
    // 40 ms an attempt takes: no third attempt.
    let backend = Backend::failing(u32::MAX).slow(Duration::from_millis(40));
    let policy = exact()
        .backoff(BackoffKind::Constant)
        .base_delay(Duration::from_millis(10))
        .max_attempts(10)
        .deadline(Duration::from_millis(100))
        .build()
        .unwrap();
    let start = Instant::now();
    let svc = RetryLayer::new(policy.clone()).layer(backend.service());
    let err = svc.oneshot(0).await.unwrap_err();
    assert_eq!(err.to_string(), "unavailable");
    assert!(start.elapsed() <= Duration::from_millis(100));
    let starts = backend.starts.lock().unwrap().clone();
    assert_eq!(
        starts.iter().map(|s| *s - start).collect::<Vec<_>>(),
        [Duration::ZERO, Duration::from_millis(50)]
    );
    assert_eq!(policy.snapshot().deadline_stops, 1);
}

/// A request whose caller gives up (drops its future) before the answer
/// still counts its attempt, in no outcome; a service and its clones, dropped
/// after serving, count nothing of their own.
#[tokio::test(start_paused = true)]
async fn a_dropped_request_counts_its_attempt_and_no_outcome() {
    let backend = Backend::failing(0).slow(Duration::from_secs(1));
    let policy = exact().build().unwrap();
    let mut svc = RetryLayer::new(policy.clone()).layer(backend.service());
    let mut copy = svc.clone();
    assert_eq!(copy.ready().await.unwrap().call(1).await.unwrap(), 1);
    let pending = svc.ready().await.unwrap().call(2);
    let abandoned = tokio::time::timeout(Duration::from_millis(10), pending).await;
    assert!(abandoned.is_err(), "the caller gave up first");
    drop((svc, copy));
    let stats = policy.snapshot();
    assert_eq!(backend.calls(), 2);
    assert_eq!(stats.attempts, 2, "both requests' attempts");
    assert_eq!(stats.succeeded_first_try, 1);
    assert_eq!(
        stats.failed_not_retried + stats.failed_after_retry + stats.succeeded_after_retry,
        0,
        "the abandoned request has no outcome"
    );
}

#[tokio::test(start_paused = true)]
async fn deadline_cuts_a_hanging_attempt_short() {
    let backend = Backend::failing(0).slow(Duration::from_secs(3600));
    let policy = exact()
        .name("hanging")
        .deadline(Duration::from_millis(250))
        .build()
        .unwrap();
    let start = Instant::now();
    let err = RetryLayer::new(policy.clone())
        .layer(backend.service())
        .oneshot(0)
        .await
        .unwrap_err();
    let exceeded = err.downcast_ref::<DeadlineExceeded>().unwrap();
    assert_eq!(
        exceeded.name(),
        "hanging",
        "names the retry whose deadline passed"
    );
    assert_eq!(start.elapsed(), Duration::from_millis(250));
    assert_eq!(backend.calls(), 1);
    let stats = policy.snapshot();
    assert_eq!((stats.deadline_exceeded, stats.attempts), (1, 1));
    assert_eq!(
        stats.failed_not_retried + stats.failed_after_retry,
        0,
        "a request cut short is counted as deadline_exceeded only"
    );
}

/// The deadline's timer is built only when the call is first pending, but
/// the deadline counts from `call`: a future first polled late is cut
/// short at the deadline, not a full deadline after its first poll.
#[tokio::test(start_paused = true)]
async fn the_deadline_counts_from_call_not_from_the_first_poll() {
    const DEADLINE: Duration = Duration::from_millis(250);
    const LATE: Duration = Duration::from_millis(200);
    let backend = Backend::failing(0).slow(Duration::from_secs(3600));
    let policy = exact().deadline(DEADLINE).build().unwrap();
    let mut svc = RetryLayer::new(policy).layer(backend.service());
    let start = Instant::now();
    let future = svc.ready().await.unwrap().call(0);
    advance(LATE).await;
    let err = future.await.unwrap_err();
    assert!(err.downcast_ref::<DeadlineExceeded>().is_some(), "{err}");
    assert_eq!(start.elapsed(), DEADLINE);
}

#[tokio::test(start_paused = true)]
async fn no_attempt_starts_after_the_deadline_for_any_latency() {
    for latency_ms in [0u64, 1, 7, 30, 99, 150] {
        for deadline_ms in [1u64, 20, 100, 333] {
            let backend = Backend::failing(u32::MAX).slow(Duration::from_millis(latency_ms));
            let policy = RetryPolicy::builder()
                .without_budget()
                .seed(latency_ms ^ deadline_ms)
                .max_attempts(100)
                .deadline(Duration::from_millis(deadline_ms))
                .build()
                .unwrap();
            let start = Instant::now();
            let _ = RetryLayer::new(policy)
                .layer(backend.service())
                .oneshot(0)
                .await;
            let took = start.elapsed();
            assert!(
                took <= Duration::from_millis(deadline_ms),
                "{latency_ms}/{deadline_ms}: {took:?}"
            );
            for s in backend.starts.lock().unwrap().iter() {
                assert!(*s - start < Duration::from_millis(deadline_ms));
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn works_with_a_mock_service_and_counts_ready() {
    let (mock, mut handle) = tower_test::mock::pair::<u32, u32>();
    let policy = exact().build().unwrap();
    let mut svc = RetryLayer::new(policy).layer(mock);
    handle.allow(2);
    tokio_test::assert_ready_ok!(tokio_test::task::spawn(()).enter(|cx, _| svc.poll_ready(cx)));
    let fut = tokio::spawn(svc.call(5));
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req, 5);
    send.send_error("reset");
    advance(Duration::from_millis(25)).await;
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req, 5);
    send.send_response(50);
    assert_eq!(fut.await.unwrap().unwrap(), 50);
}

#[test]
fn services_and_futures_are_send_and_sync() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _g = rt.enter();
    let backend = Backend::failing(0);
    let mut svc = RetryLayer::new(RetryPolicy::builder().build().unwrap()).layer(backend.service());
    send_sync(&svc);
    let fut = svc.call(1);
    fn send<T: Send>(_: &T) {}
    send(&fut);
    send_sync(&RetryPolicy::builder().build().unwrap());
    send_sync(&RetryBudget::default());
}

#[test]
fn rejects_bad_settings_by_name() {
    let field = |b: RetryPolicyBuilder| b.build().unwrap_err().field();
    let b = RetryPolicy::builder;
    assert_eq!(field(b().max_attempts(0)), "max_attempts");
    assert_eq!(field(b().max_attempts(101)), "max_attempts");
    assert_eq!(
        field(
            b().base_delay(Duration::from_secs(2))
                .max_delay(Duration::from_secs(1))
        ),
        "max_delay"
    );
    assert_eq!(
        field(b().base_delay(Duration::ZERO).jitter(Jitter::Decorrelated)),
        "base_delay"
    );
    assert_eq!(field(b().deadline(Duration::ZERO)), "deadline");
    assert_eq!(
        field(b().max_retry_after(Duration::ZERO)),
        "max_retry_after"
    );
    assert_eq!(
        field(
            b().deadline(Duration::from_secs(1))
                .min_attempt_time(Duration::from_secs(1))
        ),
        "min_attempt_time"
    );
    assert_eq!(
        field(b().budget_per_key(RetryBudget::builder(), 0)),
        "budget_per_key"
    );
    assert_eq!(
        field(b().budget_per_key(RetryBudget::builder().percent(-1.0), 8)),
        "budget_per_key"
    );
}

/// With a budget per key, a dead host spends only its own budget: its
/// retries are 20 % of its own requests, not of everyone's.
#[tokio::test(start_paused = true)]
async fn one_budget_per_key() {
    use buttress_retry::{CloneRequest, KeyedReplay};
    // Requests are (host, n); host "dead" always fails.
    let calls = Arc::new(Mutex::new(Vec::<&'static str>::new()));
    let log = calls.clone();
    let backend = service_fn(move |(host, _n): (&'static str, u32)| {
        log.lock().unwrap().push(host);
        async move { if host == "dead" { Err("down") } else { Ok(()) } }
    });
    let template = RetryBudget::builder().percent(20.0).min_per_second(0);
    let run = |keyed: bool| {
        let backend = backend.clone();
        let calls = calls.clone();
        let template = template.clone();
        async move {
            calls.lock().unwrap().clear();
            let mut b = RetryPolicy::builder()
                .budget(template.clone().build().unwrap())
                .replay(KeyedReplay::new(CloneRequest, |r: &(&'static str, u32)| {
                    Some(r.0)
                }));
            if keyed {
                b = b.budget_per_key(template.clone(), 16);
            }
            let policy = b.build().unwrap();
            let svc = RetryLayer::new(policy.clone()).layer(backend);
            for n in 0..10 {
                svc.clone().oneshot(("ok", n)).await.unwrap();
            }
            for n in 0..10 {
                let _ = svc.clone().oneshot(("dead", n)).await;
            }
            let dead = calls
                .lock()
                .unwrap()
                .iter()
                .filter(|h| **h == "dead")
                .count();
            (dead, policy.snapshot().keyed_budgets)
        }
    };
    // Shared: 20 deposits buy 4 retries for the dead host.
    assert_eq!(run(false).await, (14, 0));
    // Per key: the dead host's 10 deposits buy 2.
    assert_eq!(run(true).await, (12, 2));
}

/// Huge settings saturate instead of overflowing at request time.
#[tokio::test(start_paused = true)]
async fn huge_durations_do_not_panic() {
    let backend = Backend::failing(1);
    let policy = RetryPolicy::builder()
        .without_budget()
        .jitter(Jitter::None)
        .backoff(BackoffKind::Constant)
        .base_delay(Duration::from_millis(1))
        .max_delay(Duration::MAX)
        .deadline(Duration::MAX)
        .build()
        .unwrap();
    let svc = RetryLayer::new(policy).layer(backend.service());
    assert_eq!(svc.oneshot(3).await.unwrap(), 3);
    assert_eq!(backend.calls(), 2);
    let _ = buttress_retry::Deadline::after(Duration::MAX).remaining();
}
