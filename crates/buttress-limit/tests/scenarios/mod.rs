//! A deterministic simulation of an adaptive limit in front of a backend
//! whose capacity, no-load latency and offered load change by phases, under
//! paused tokio time; the `simulation` test holds the defaults to the
//! targets of issue #12 with it.
//!
//! The backend serves up to `capacity` calls at the no-load latency `base`;
//! beyond that, calls queue and latency grows in proportion
//! (`base · n / capacity` for `n` calls in the backend when the call
//! arrives, the latency of a processor-sharing queue). The client offers
//! `rate` calls per second, evenly spaced, through the limit; shed calls
//! fail at once. A phase may ramp the no-load latency linearly to
//! `base_end`.
//!
//! It is a discrete-event simulation: one task, no timers. The backend's
//! futures stay pending until the driver advances tokio's paused clock to
//! their completion time and polls them, so the limiter measures exact
//! round-trip times through its real tower path.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use buttress_core::classify::ErrorsAsFailures;
use buttress_limit::algorithm::{Aimd, EnvoyGradient, Gradient2, Knee, Limit, Vegas};
use buttress_limit::{AdaptiveLimit, AdaptiveLimitLayer, Overloaded};
use tokio::time::Instant;
use tower::{Layer, Service};

pub const MS: Duration = Duration::from_millis(1);

pub fn halves() -> Scenario {
    let base = MS * 100;
    let rate = 2.0 * 40.0 / base.as_secs_f64();
    Scenario {
        name: "halves",
        phases: vec![
            Phase::new(10, 40, base, rate),
            Phase::new(10, 20, base, rate),
            Phase::new(10, 40, base, rate),
        ],
        client_timeout: base * 10,
        jitter: 0.0,
    }
}

pub fn slower() -> Scenario {
    let base = MS * 50;
    let rate = 2.0 * 20.0 / base.as_secs_f64();
    Scenario {
        name: "slower",
        phases: vec![
            Phase::new(10, 20, base, rate),
            Phase::new(10, 20, base * 2, rate),
            Phase::new(10, 20, base, rate),
        ],
        client_timeout: base * 10,
        jitter: 0.0,
    }
}

pub fn burst() -> Scenario {
    let base = MS * 50;
    let rate = 50.0 / base.as_secs_f64();
    Scenario {
        name: "burst",
        phases: vec![
            Phase::new(10, 50, base, 1.5 * rate),
            Phase::new(2, 50, base, 5.0 * rate),
            Phase::new(8, 50, base, 1.5 * rate),
        ],
        client_timeout: base * 10,
        jitter: 0.0,
    }
}

pub fn rising() -> Scenario {
    let base = MS * 60;
    let rate = 2.0 * 30.0 / base.as_secs_f64();
    let mut ramp = Phase::new(20, 30, base, rate);
    ramp.base_end = base * 3;
    Scenario {
        name: "rising",
        phases: vec![Phase::new(5, 30, base, rate), ramp],
        client_timeout: base * 10,
        jitter: 0.0,
    }
}

/// Every algorithm at its defaults, under the limiter's defaults; then,
/// for the record in `docs/limit.md`, one setting changed on each of the
/// others.
pub fn contenders(sc: &Scenario) -> Vec<(&'static str, AdaptiveLimit)> {
    let build = |algorithm: Box<dyn Limit>| {
        AdaptiveLimit::builder(algorithm)
            .seed(7)
            .build()
            .expect("valid limiter")
    };
    let base = sc.phases[0].base;
    vec![
        ("knee", build(Box::new(Knee::builder().build().unwrap()))),
        ("vegas", build(Box::new(Vegas::builder().build().unwrap()))),
        ("aimd", build(Box::new(Aimd::builder().build().unwrap()))),
        (
            "gradient2",
            build(Box::new(Gradient2::builder().build().unwrap())),
        ),
        (
            "envoy",
            build(Box::new(EnvoyGradient::builder().build().unwrap())),
        ),
        (
            "vegas probe_multiplier(1)",
            build(Box::new(
                Vegas::builder().probe_multiplier(1).build().unwrap(),
            )),
        ),
        (
            "aimd timeout(1.5× no-load)",
            build(Box::new(
                Aimd::builder().timeout(base.mul_f64(1.5)).build().unwrap(),
            )),
        ),
        (
            "gradient2 rtt_tolerance(1.0)",
            build(Box::new(
                Gradient2::builder().rtt_tolerance(1.0).build().unwrap(),
            )),
        ),
        (
            "envoy buffer(0.0)",
            build(Box::new(
                EnvoyGradient::builder().buffer(0.0).build().unwrap(),
            )),
        ),
    ]
}

/// The four scenarios, in the order `docs/limit.md` lists them.
pub fn all() -> [Scenario; 4] {
    [halves(), slower(), burst(), rising()]
}

/// One phase of a scenario.
#[derive(Clone, Copy, Debug)]
pub struct Phase {
    pub secs: u32,
    /// Calls the backend serves at the no-load latency.
    pub capacity: u32,
    /// The no-load latency at the phase's start…
    pub base: Duration,
    /// …and at its end (ramped linearly).
    pub base_end: Duration,
    /// Calls offered per second.
    pub rate: f64,
}

impl Phase {
    pub fn new(secs: u32, capacity: u32, base: Duration, rate: f64) -> Self {
        Self {
            secs,
            capacity,
            base,
            base_end: base,
            rate,
        }
    }

    /// The no-load latency `into` the phase.
    fn base_at(&self, into: Duration) -> Duration {
        let f = (into.as_secs_f64() / f64::from(self.secs)).min(1.0);
        Duration::from_secs_f64(
            self.base.as_secs_f64() + f * (self.base_end.as_secs_f64() - self.base.as_secs_f64()),
        )
    }

    /// Calls the backend can answer per second `into` the phase.
    fn capacity_rate(&self, into: Duration) -> f64 {
        f64::from(self.capacity) / self.base_at(into).as_secs_f64()
    }
}

/// A named sequence of phases.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: &'static str,
    pub phases: Vec<Phase>,
    /// A call slower than this failed the client (it gave up).
    pub client_timeout: Duration,
    /// Each call's latency is multiplied by a factor drawn uniformly from
    /// `[1 − jitter, 1 + jitter]`.
    pub jitter: f64,
}

/// What one phase of a run saw.
#[derive(Clone, Debug, Default)]
pub struct PhaseReport {
    /// The time-weighted mean limit over each second of the phase.
    pub limits: Vec<f64>,
    /// Calls answered within the client timeout, over what the backend
    /// could answer in the phase.
    pub goodput: f64,
    /// p99 latency of the calls admitted in the phase, over the phase's
    /// starting no-load latency…
    pub p99: f64,
    /// …and of those admitted after its first 3 seconds.
    pub p99_settled: f64,
    /// Seconds from the phase's start until every later 1-s mean limit is
    /// within ±20 % of the capacity (`None`: never).
    pub converged: Option<u32>,
    /// The lowest 1-s mean limit after the first 3 seconds, over the
    /// capacity.
    pub min_settled: f64,
    /// The share of offered calls shed.
    pub shed: f64,
}

/// What one run saw.
#[derive(Clone, Debug)]
pub struct Report {
    pub limit: String,
    pub scenario: &'static str,
    pub phases: Vec<PhaseReport>,
}

struct Backend {
    in_service: Cell<u32>,
    capacity: Cell<u32>,
    base: Cell<Duration>,
    /// (completion time, call id): the driver's event queue.
    events: RefCell<BinaryHeap<Reverse<(Instant, u64)>>>,
    next_id: Cell<u64>,
    done: RefCell<HashSet<u64>>,
    jitter: f64,
}

/// The backend's future: pending until the driver marks it done.
pub struct Call {
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

impl Backend {
    fn call(self: &Rc<Self>) -> Call {
        let n = self.in_service.get() + 1;
        self.in_service.set(n);
        let c = self.capacity.get();
        let base = self.base.get();
        let latency = if n <= c {
            base
        } else {
            base.mul_f64(f64::from(n) / f64::from(c))
        };
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        // Each call's latency times a uniform factor in [1 − jitter, 1 + jitter]
        // (SplitMix64 of the call id: the same every run).
        let mut z = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let u = (z >> 11) as f64 / (1u64 << 53) as f64;
        let j = self.jitter;
        let latency = latency.mul_f64(1.0 - j + 2.0 * j * u);
        self.events
            .borrow_mut()
            .push(Reverse((Instant::now() + latency, id)));
        Call {
            id,
            backend: Rc::clone(self),
        }
    }
}

thread_local! {
    static BACKEND: RefCell<Option<Rc<Backend>>> = const { RefCell::new(None) };
}

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
    fn call(&mut self, (): ()) -> Call {
        BACKEND.with(|b| b.borrow().as_ref().expect("backend set").call())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// The limit is sampled this often for its 1-s means.
const TICK: Duration = Duration::from_millis(10);

/// Per phase, while the run goes.
#[derive(Default)]
struct Acc {
    latencies: Vec<Duration>,
    settled: Vec<Duration>,
    good: u64,
    offered: u64,
    shed: u64,
    /// Per second: the sum of limit ticks and their count.
    ticks: Vec<(f64, u32)>,
}

/// Runs `limit` through `sc`. Call under a paused current-thread runtime
/// (`#[tokio::test(start_paused = true)]`).
pub async fn run(name: &str, limit: AdaptiveLimit, sc: &Scenario) -> Report {
    let first = sc.phases[0];
    let backend = Rc::new(Backend {
        in_service: Cell::new(0),
        capacity: Cell::new(first.capacity),
        base: Cell::new(first.base),
        events: RefCell::new(BinaryHeap::new()),
        next_id: Cell::new(0),
        done: RefCell::new(HashSet::new()),
        jitter: sc.jitter,
    });
    BACKEND.with(|b| *b.borrow_mut() = Some(Rc::clone(&backend)));

    let mut svc = AdaptiveLimitLayer::new(limit.clone()).layer(Local);
    let mut cx = Context::from_waker(Waker::noop());
    let start = Instant::now();
    let bounds: Vec<Instant> = sc
        .phases
        .iter()
        .scan(start, |t, p| {
            *t += Duration::from_secs(u64::from(p.secs));
            Some(*t)
        })
        .collect();
    let end = *bounds.last().expect("a phase");
    // The phase at `t`, and how far into it.
    let phase_of = |t: Instant| -> (usize, Duration) {
        let i = bounds
            .iter()
            .position(|b| t < *b)
            .unwrap_or(bounds.len() - 1);
        let from = if i == 0 { start } else { bounds[i - 1] };
        (i, t.saturating_duration_since(from))
    };
    let mut acc: Vec<Acc> = sc.phases.iter().map(|_| Acc::default()).collect();
    type Fut = buttress_limit::future::ResponseFuture<Call, ErrorsAsFailures>;
    let mut pending: HashMap<u64, (Pin<Box<Fut>>, Instant)> = HashMap::new();
    let mut next_arrival = start;
    let mut next_tick = start;

    loop {
        let next_done = backend.events.borrow().peek().map(|Reverse((t, _))| *t);
        let t = [Some(next_arrival), next_done, Some(next_tick)]
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
        let (phase, into) = phase_of(t);
        let p = sc.phases[phase];
        backend.capacity.set(p.capacity);
        backend.base.set(p.base_at(into));
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
            let (phase, into) = phase_of(started);
            let a = &mut acc[phase];
            a.latencies.push(latency);
            if into >= Duration::from_secs(3) {
                a.settled.push(latency);
            }
            if latency <= sc.client_timeout {
                a.good += 1;
            }
        } else if next_tick == t {
            let s = into.as_secs() as usize;
            let ticks = &mut acc[phase].ticks;
            if ticks.len() <= s {
                ticks.resize(s + 1, (0.0, 0));
            }
            ticks[s].0 += f64::from(limit.limit());
            ticks[s].1 += 1;
            next_tick += TICK;
        } else {
            acc[phase].offered += 1;
            let id = backend.next_id.get();
            let mut fut = Box::pin(svc.call(()));
            if backend.next_id.get() == id {
                // Not admitted: the backend was never called.
                match fut.as_mut().poll(&mut cx) {
                    Poll::Ready(Err(e)) => assert!(e.downcast_ref::<Overloaded>().is_some()),
                    _ => panic!("a shed call fails at once"),
                }
                acc[phase].shed += 1;
            } else {
                pending.insert(id, (fut, t));
            }
            next_arrival += Duration::from_secs_f64(1.0 / p.rate);
        }
    }
    // Calls still in the backend at the end took at least this long.
    let now = Instant::now();
    for (_, (_, started)) in pending.drain() {
        let (phase, into) = phase_of(started);
        acc[phase].latencies.push(now - started);
        if into >= Duration::from_secs(3) {
            acc[phase].settled.push(now - started);
        }
    }
    BACKEND.with(|b| *b.borrow_mut() = None);

    let phases = sc
        .phases
        .iter()
        .zip(acc)
        .map(|(p, mut a)| {
            a.latencies.sort();
            a.settled.sort();
            let base = p.base.as_secs_f64();
            let limits: Vec<f64> = a
                .ticks
                .iter()
                .map(|(sum, n)| sum / f64::from((*n).max(1)))
                .collect();
            let c = f64::from(p.capacity);
            let within = |l: &f64| (l - c).abs() <= 0.2 * c;
            let converged = match limits.iter().rposition(|l| !within(l)) {
                None => Some(0),
                Some(i) if i + 1 < limits.len() => Some(i as u32 + 1),
                Some(_) => None,
            };
            // What the backend could answer: its capacity rate over the phase.
            let could: f64 = (0..p.secs * 10)
                .map(|i| p.capacity_rate(Duration::from_millis(u64::from(i) * 100 + 50)) * 0.1)
                .sum();
            PhaseReport {
                goodput: a.good as f64 / could,
                p99: percentile(&a.latencies, 0.99).as_secs_f64() / base,
                p99_settled: percentile(&a.settled, 0.99).as_secs_f64() / base,
                converged,
                min_settled: limits.iter().skip(3).fold(f64::INFINITY, |m, l| m.min(*l)) / c,
                shed: a.shed as f64 / a.offered.max(1) as f64,
                limits,
            }
        })
        .collect();
    Report {
        limit: name.to_string(),
        scenario: sc.name,
        phases,
    }
}

/// The reports as a Markdown table, one row per phase.
pub fn table(reports: &[Report]) -> String {
    let mut out = String::from(
        "| scenario | limit | phase | converged (s) | lowest 1-s mean limit after 3 s / C | goodput / capacity | p99 / no-load (after 3 s) | shed |\n|---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in reports {
        for (i, p) in r.phases.iter().enumerate() {
            let converged = p
                .converged
                .map_or_else(|| "never".to_string(), |s| s.to_string());
            out.push_str(&format!(
                "| {} | {} | {} | {} | {:.2} | {:.1} % | {:.2}× ({:.2}×) | {:.0} % |\n",
                r.scenario,
                r.limit,
                i,
                converged,
                p.min_settled,
                p.goodput * 100.0,
                p.p99,
                p.p99_settled,
                p.shed * 100.0,
            ));
        }
    }
    out
}

/// The 1-s mean limits of each phase, one line per report.
pub fn trajectories(reports: &[Report]) -> String {
    let mut out = String::new();
    for r in reports {
        let phases: Vec<String> = r
            .phases
            .iter()
            .map(|p| {
                p.limits
                    .iter()
                    .map(|l| format!("{l:.0}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        out.push_str(&format!(
            "{:<10} {:<28} {}\n",
            r.scenario,
            r.limit,
            phases.join(" | ")
        ));
    }
    out
}
