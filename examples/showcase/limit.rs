//! The traffic-spike phase: a backend with a fixed capacity gets twice what
//! it can serve for a few seconds, with and without an adaptive limit in
//! front of it. Without the limit the backend's queue grows and latency
//! explodes for everyone; with it, admitted requests stay fast, the excess
//! is shed at once, and the limit's trajectory shows it finding the
//! backend's capacity.
//!
//! Self-contained (its own backend model and load), so the breaker
//! scenario above is untouched; `main` runs it after the breaker report.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use buttress::BoxError;
use buttress::ServiceBuilderExt;
use buttress::limit::{AdaptiveLimit, Overloaded, algorithm::Vegas};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, interval};
use tower::util::BoxCloneService;
use tower::{Service, ServiceBuilder, ServiceExt};

/// Calls the backend serves at its no-load latency.
const CAPACITY: u32 = 40;
/// The no-load latency.
const BASE: Duration = Duration::from_millis(20);

/// (name, duration, requests per second).
const PHASES: [(&str, Duration, u32); 3] = [
    ("steady", Duration::from_secs(2), 1_000),
    ("spike", Duration::from_secs(4), 4_000),
    ("after", Duration::from_secs(2), 1_000),
];

/// A backend that serves [`CAPACITY`] calls at [`BASE`] and queues the
/// rest: a call that finds `n` calls in service takes `BASE · n / CAPACITY`.
#[derive(Clone, Default)]
struct Backend {
    in_service: Arc<AtomicU32>,
}

impl Service<()> for Backend {
    type Response = ();
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (): ()) -> Self::Future {
        let n = self.in_service.fetch_add(1, Ordering::SeqCst) + 1;
        let latency = BASE.mul_f64(f64::from(n.max(CAPACITY)) / f64::from(CAPACITY));
        let in_service = Arc::clone(&self.in_service);
        Box::pin(async move {
            tokio::time::sleep(latency).await;
            in_service.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        })
    }
}

#[derive(Default)]
struct PhaseStats {
    latencies: Vec<Duration>,
    shed: u64,
}

type Svc = BoxCloneService<(), (), BoxError>;

async fn drive(svc: Svc, stats: Arc<Mutex<Vec<PhaseStats>>>) {
    let start = Instant::now();
    let mut ticks = interval(Duration::from_millis(1));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut requests = JoinSet::new();
    let mut owed = 0.0;
    let mut phase_end = Duration::ZERO;
    for (phase, (_, duration, rate)) in PHASES.iter().enumerate() {
        phase_end += *duration;
        while start.elapsed() < phase_end {
            ticks.tick().await;
            owed += f64::from(*rate) / 1000.0;
            while owed >= 1.0 {
                owed -= 1.0;
                let svc = svc.clone();
                let stats = Arc::clone(&stats);
                requests.spawn(async move {
                    let sent = Instant::now();
                    let result = svc.oneshot(()).await;
                    let mut stats = stats.lock().unwrap_or_else(PoisonError::into_inner);
                    match result {
                        Ok(()) => stats[phase].latencies.push(sent.elapsed()),
                        Err(e) if e.downcast_ref::<Overloaded>().is_some() => {
                            stats[phase].shed += 1
                        }
                        Err(_) => {}
                    }
                });
            }
            while requests.try_join_next().is_some() {}
        }
    }
    requests.join_all().await;
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Runs the spike against both stacks at once and prints what each saw.
pub(crate) async fn traffic_spike() -> Result<(), BoxError> {
    println!(
        "Traffic spike: a backend that serves {CAPACITY} calls at {}ms (beyond that, calls queue) is offered {} req/s, then {} req/s (2× its capacity) for {}s, then {} req/s again.\n",
        BASE.as_millis(),
        PHASES[0].2,
        PHASES[1].2,
        PHASES[1].1.as_secs(),
        PHASES[2].2,
    );
    // A 100 ms window (Envoy's update interval) so the demo adapts within
    // its few seconds; the default is Netflix's 1 s.
    let limit = AdaptiveLimit::builder(Vegas::builder().build()?)
        .name("spike")
        .window(Duration::from_millis(100))
        .build()?;
    let variants: Vec<(&str, Svc)> = vec![
        ("no limit", Svc::new(Backend::default())),
        (
            "adaptive limit (Vegas)",
            Svc::new(
                ServiceBuilder::new()
                    .adaptive_limit(limit.clone())
                    .service(Backend::default()),
            ),
        ),
    ];
    let mut runs = JoinSet::new();
    let mut all_stats = Vec::new();
    for (_, svc) in &variants {
        let stats = Arc::new(Mutex::new(
            (0..PHASES.len())
                .map(|_| PhaseStats::default())
                .collect::<Vec<_>>(),
        ));
        all_stats.push(Arc::clone(&stats));
        runs.spawn(drive(svc.clone(), stats));
    }
    // The limit's trajectory, every 250 ms.
    let total: Duration = PHASES.iter().map(|p| p.1).sum();
    let mut trajectory = Vec::new();
    let sampler = async {
        let start = Instant::now();
        let mut every = interval(Duration::from_millis(250));
        while start.elapsed() < total {
            every.tick().await;
            trajectory.push(limit.limit());
        }
    };
    let ((), ()) = tokio::join!(sampler, async { while runs.join_next().await.is_some() {} });

    println!("| stack | phase | answered | shed | p50 | p99 |");
    println!("|---|---|---:|---:|---:|---:|");
    for ((name, _), stats) in variants.iter().zip(&all_stats) {
        let mut stats = stats.lock().unwrap_or_else(PoisonError::into_inner);
        for (phase, s) in stats.iter_mut().enumerate() {
            s.latencies.sort();
            println!(
                "| {name} | {} | {} | {} | {:.0?} | {:.0?} |",
                PHASES[phase].0,
                s.latencies.len(),
                s.shed,
                percentile(&s.latencies, 0.5),
                percentile(&s.latencies, 0.99),
            );
        }
    }
    let line: Vec<String> = trajectory.iter().map(u32::to_string).collect();
    println!("\nlimit every 250 ms: {}", line.join(" "));
    println!(
        "(the backend's capacity is {CAPACITY}; {} calls shed in all)",
        limit.snapshot().rejected
    );
    Ok(())
}
