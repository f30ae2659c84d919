//! A deterministic simulation of an adaptive limit in front of a backend
//! with a capacity, under paused tokio time, with fixed 1-s windows: the
//! `limit-simulation` example's (the table in `docs/benchmarks.md`). The
//! crate's `simulation` test, which holds the defaults to #12's targets,
//! uses `tests/scenarios/` instead.
//!
//! The backend serves up to `capacity` calls at the no-load latency `base`;
//! beyond that, calls queue and latency grows in proportion
//! (`base · n / capacity` for `n` calls in the backend, the latency of a
//! processor-sharing queue). The client offers `2 × capacity / base` calls
//! per second, evenly spaced (twice what the backend can serve), through
//! the limit; shed calls fail at once. Midway the capacity halves.
//!
//! It is a discrete-event simulation: one task, no timers. The backend's
//! futures stay pending until the driver advances tokio's paused clock to
//! their completion time and polls them, so the limiter measures exact
//! round-trip times through its real tower path.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use buttress_limit::{AdaptiveLimit, AdaptiveLimitLayer, Overloaded};
use tokio::time::Instant;
use tower::{Layer, Service};

/// The simulated run.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    /// Calls the backend serves at the no-load latency.
    pub capacity: u32,
    /// The no-load latency.
    pub base: Duration,
    /// Sampling windows (of 1 s) before the capacity halves, and after.
    pub windows_per_phase: u32,
    /// A call slower than this failed the client (it gave up).
    pub client_timeout: Duration,
    /// The limiter's sampling window.
    pub window: Duration,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            capacity: 50,
            base: Duration::from_millis(50),
            windows_per_phase: 60,
            client_timeout: Duration::from_millis(500),
            window: Duration::from_secs(1),
        }
    }
}

/// What one run saw.
#[derive(Clone, Debug)]
pub struct Report {
    pub name: String,
    /// The limit at the end of each window.
    pub limits: Vec<u32>,
    /// Per phase: p99 latency of admitted calls over the phase's last 10 windows.
    pub p99: [Duration; 2],
    /// Per phase: calls answered within the client timeout per second over
    /// the phase's last 10 windows, as a share of the backend's capacity.
    pub goodput: [f64; 2],
    /// Per phase: the share of offered calls shed.
    pub shed: [f64; 2],
    /// Per phase: the first window from which the limit stays within ±20 %
    /// of the capacity to the end of the phase (windows counted from the
    /// phase's start), if any.
    pub settled_after: [Option<u32>; 2],
    /// Per phase: mean limit over the phase's last 10 windows.
    pub mean_limit: [f64; 2],
    pub scenario: Scenario,
}

impl Report {
    /// The capacity in phase `phase` (0 or 1).
    pub fn capacity(&self, phase: usize) -> u32 {
        if phase == 0 {
            self.scenario.capacity
        } else {
            self.scenario.capacity / 2
        }
    }

    /// The p99 over both phases, in multiples of the no-load latency.
    pub fn p99_ratio(&self) -> f64 {
        self.p99[0].max(self.p99[1]).as_secs_f64() / self.scenario.base.as_secs_f64()
    }

    /// The lowest goodput of both phases.
    pub fn min_goodput(&self) -> f64 {
        self.goodput[0].min(self.goodput[1])
    }

    /// Whether the limit converged within `windows` in both phases.
    pub fn converged_within(&self, windows: u32) -> [bool; 2] {
        [0, 1].map(|p| self.settled_after[p].is_some_and(|w| w <= windows))
    }
}

struct Backend {
    in_service: Cell<u32>,
    capacity: Cell<u32>,
    base: Duration,
    /// (completion time, call id): the driver's event queue.
    events: RefCell<BinaryHeap<Reverse<(Instant, u64)>>>,
    next_id: Cell<u64>,
    done: RefCell<std::collections::HashSet<u64>>,
}

/// The backend's future: pending until the driver marks it done.
struct Call {
    id: u64,
    backend: Rc<Backend>,
}

impl Future for Call {
    type Output = Result<(), std::io::Error>;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        if self.backend.done.borrow_mut().remove(&self.id) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
}

#[derive(Clone)]
struct BackendService(Rc<Backend>);

impl Service<()> for BackendService {
    type Response = ();
    type Error = std::io::Error;
    type Future = Call;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (): ()) -> Call {
        let b = &self.0;
        let n = b.in_service.get() + 1;
        b.in_service.set(n);
        let c = b.capacity.get();
        let latency = if n <= c {
            b.base
        } else {
            b.base.mul_f64(f64::from(n) / f64::from(c))
        };
        let id = b.next_id.get();
        b.next_id.set(id + 1);
        b.events
            .borrow_mut()
            .push(Reverse((Instant::now() + latency, id)));
        Call {
            id,
            backend: Rc::clone(b),
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Runs `limit` through the scenario. Call under a paused current-thread
/// runtime (`#[tokio::test(start_paused = true)]`).
pub async fn run(name: &str, limit: AdaptiveLimit, sc: Scenario) -> Report {
    thread_local! {
        static BACKEND: RefCell<Option<BackendService>> = const { RefCell::new(None) };
    }
    let backend = Rc::new(Backend {
        in_service: Cell::new(0),
        capacity: Cell::new(sc.capacity),
        base: sc.base,
        events: RefCell::new(BinaryHeap::new()),
        next_id: Cell::new(0),
        done: RefCell::new(std::collections::HashSet::new()),
    });
    BACKEND.with(|b| *b.borrow_mut() = Some(BackendService(Rc::clone(&backend))));

    /// A `Send` handle on this thread's backend.
    #[derive(Clone, Copy)]
    struct Local;
    impl Service<()> for Local {
        type Response = ();
        type Error = std::io::Error;
        type Future = Call;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, req: ()) -> Call {
            BACKEND.with(|b| b.borrow_mut().as_mut().expect("backend set").call(req))
        }
    }

    let mut svc = AdaptiveLimitLayer::new(limit.clone()).layer(Local);
    let mut cx = Context::from_waker(Waker::noop());
    let start = Instant::now();
    let interval = sc.base / (2 * sc.capacity);
    let phase_len = sc.window * sc.windows_per_phase;
    let end = start + phase_len * 2;
    let mut next_arrival = start;
    let mut next_window = start + sc.window;
    let mut limits = Vec::new();
    // In-flight response futures by call id, with their start.
    type Fut =
        buttress_limit::future::ResponseFuture<Call, buttress_core::classify::ErrorsAsFailures>;
    let mut pending: std::collections::HashMap<u64, (Pin<Box<Fut>>, Instant)> =
        std::collections::HashMap::new();
    // Per phase, over its last 10 windows: latencies, good answers, offered, shed.
    let mut latencies: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let mut good = [0u64; 2];
    let mut offered = [0u64; 2];
    let mut shed = [0u64; 2];
    let measured = |t: Instant| -> Option<usize> {
        let since = t.duration_since(start);
        let phase = usize::from(since >= phase_len);
        let into = since - phase_len * phase as u32;
        (into >= phase_len.saturating_sub(sc.window * 10)).then_some(phase)
    };
    let mut halved = false;

    loop {
        let next_done = backend.events.borrow().peek().map(|Reverse((t, _))| *t);
        let t = [Some(next_arrival), next_done, Some(next_window)]
            .into_iter()
            .flatten()
            .min()
            .expect("arrivals never stop");
        if t >= end {
            break;
        }
        let now = Instant::now();
        if t > now {
            tokio::time::advance(t - now).await;
        }
        if !halved && t >= start + phase_len {
            backend.capacity.set(sc.capacity / 2);
            halved = true;
        }
        if next_done == Some(t) {
            let Reverse((_, id)) = backend.events.borrow_mut().pop().expect("peeked");
            backend.in_service.set(backend.in_service.get() - 1);
            backend.done.borrow_mut().insert(id);
            let (mut fut, started) = pending.remove(&id).expect("a pending call");
            let Poll::Ready(result) = fut.as_mut().poll(&mut cx) else {
                panic!("a completed backend call is ready");
            };
            result.expect("the backend never fails");
            let latency = t - started;
            if let Some(phase) = measured(started) {
                latencies[phase].push(latency);
                if latency <= sc.client_timeout {
                    good[phase] += 1;
                }
            }
        } else if next_window == t {
            limits.push(limit.limit());
            next_window += sc.window;
        } else {
            let id = backend.next_id.get();
            let phase = measured(t);
            if let Some(p) = phase {
                offered[p] += 1;
            }
            let mut fut = Box::pin(svc.call(()));
            if backend.next_id.get() == id {
                // Not admitted: the backend was never called.
                match fut.as_mut().poll(&mut cx) {
                    Poll::Ready(Err(e)) => assert!(e.downcast_ref::<Overloaded>().is_some()),
                    _ => panic!("a shed call fails at once"),
                }
                if let Some(p) = phase {
                    shed[p] += 1;
                }
            } else {
                pending.insert(id, (fut, t));
            }
            next_arrival += interval;
        }
    }
    // Calls still in the backend at the end took at least this long.
    let now = Instant::now();
    for (_, (_, started)) in pending.drain() {
        if let Some(phase) = measured(started) {
            latencies[phase].push(now - started);
        }
    }
    BACKEND.with(|b| *b.borrow_mut() = None);

    let secs = 10.0 * sc.window.as_secs_f64();
    let mut report = Report {
        name: name.to_string(),
        limits,
        p99: [Duration::ZERO; 2],
        goodput: [0.0; 2],
        shed: [0.0; 2],
        settled_after: [None; 2],
        mean_limit: [0.0; 2],
        scenario: sc,
    };
    for phase in 0..2 {
        latencies[phase].sort();
        report.p99[phase] = percentile(&latencies[phase], 0.99);
        let capacity_per_sec = f64::from(report.capacity(phase)) / sc.base.as_secs_f64();
        report.goodput[phase] = good[phase] as f64 / secs / capacity_per_sec;
        report.shed[phase] = shed[phase] as f64 / offered[phase].max(1) as f64;
        let n = sc.windows_per_phase as usize;
        let windows = &report.limits[phase * n..((phase + 1) * n).min(report.limits.len())];
        let c = f64::from(report.capacity(phase));
        let within = |l: &u32| (f64::from(*l) - c).abs() <= 0.2 * c;
        // The first window after which every window stays within the band.
        let settled = windows
            .iter()
            .rposition(|l| !within(l))
            .map_or(0, |i| i + 1);
        report.settled_after[phase] = (settled < windows.len()).then_some(settled as u32 + 1);
        let tail = &windows[windows.len().saturating_sub(10)..];
        report.mean_limit[phase] =
            tail.iter().map(|l| f64::from(*l)).sum::<f64>() / tail.len().max(1) as f64;
    }
    report
}

/// The table of reports, as Markdown.
pub fn table(reports: &[Report]) -> String {
    let mut out = String::from(
        "| limit | phase | capacity C | converged (windows) | mean limit (last 10) | p99 / no-load | goodput / C | shed |\n|---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in reports {
        for phase in 0..2 {
            let settled =
                r.settled_after[phase].map_or_else(|| "never".to_string(), |w| w.to_string());
            let mean = if r.mean_limit[phase] >= f64::from(u32::MAX) {
                "∞".to_string()
            } else {
                format!("{:.1}", r.mean_limit[phase])
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {:.2}× | {:.0} % | {:.0} % |\n",
                r.name,
                if phase == 0 { "C" } else { "C/2" },
                r.capacity(phase),
                settled,
                mean,
                r.p99[phase].as_secs_f64() / r.scenario.base.as_secs_f64(),
                r.goodput[phase] * 100.0,
                r.shed[phase] * 100.0,
            ));
        }
    }
    out
}

/// The limit after each window, as one line per report.
pub fn trajectories(reports: &[Report]) -> String {
    let mut out = String::new();
    for r in reports {
        let line: Vec<String> = r
            .limits
            .iter()
            .map(|l| {
                if *l == u32::MAX {
                    "∞".to_string()
                } else {
                    l.to_string()
                }
            })
            .collect();
        out.push_str(&format!("{:<28} {}\n", r.name, line.join(" ")));
    }
    out
}

/// The limits compared: every algorithm with its reference defaults, the
/// tuned variants the report discusses, a static limit set 2× too high,
/// and no limit at all.
pub fn contenders(sc: &Scenario) -> Vec<(String, AdaptiveLimit)> {
    use buttress_limit::algorithm::{Aimd, EnvoyGradient, Fixed, Gradient2, Limit, Vegas};
    let build = |algorithm: Box<dyn Limit>| {
        AdaptiveLimit::builder(algorithm)
            .window(sc.window)
            .build()
            .expect("valid limiter")
    };
    let c = sc.capacity;
    vec![
        (
            "none".to_string(),
            build(Box::new(Fixed::new(u32::MAX).unwrap())),
        ),
        (
            format!("fixed {} (2× C)", 2 * c),
            build(Box::new(Fixed::new(2 * c).unwrap())),
        ),
        (
            "aimd (defaults)".to_string(),
            build(Box::new(Aimd::builder().build().expect("valid"))),
        ),
        (
            "aimd (timeout 1.1× no-load)".to_string(),
            build(Box::new(
                Aimd::builder()
                    .timeout(sc.base.mul_f64(1.1))
                    .build()
                    .expect("valid"),
            )),
        ),
        (
            "vegas (defaults)".to_string(),
            build(Box::new(Vegas::builder().seed(7).build().expect("valid"))),
        ),
        (
            "gradient2 (defaults)".to_string(),
            build(Box::new(Gradient2::builder().build().expect("valid"))),
        ),
        (
            "gradient2 (tolerance 1.0)".to_string(),
            build(Box::new(
                Gradient2::builder()
                    .rtt_tolerance(1.0)
                    .build()
                    .expect("valid"),
            )),
        ),
        (
            "envoy (defaults)".to_string(),
            build(Box::new(
                EnvoyGradient::builder().seed(7).build().expect("valid"),
            )),
        ),
        (
            "envoy (buffer 0)".to_string(),
            build(Box::new(
                EnvoyGradient::builder()
                    .buffer(0.0)
                    .seed(7)
                    .build()
                    .expect("valid"),
            )),
        ),
    ]
}
