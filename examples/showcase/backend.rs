//! The in-process backend: a tower `Service` that behaves as the current
//! phase of the scenario says, and counts the calls that reach it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use buttress::core::rng::FastRng;
use tower::Service;

use crate::scenario::Timeline;

/// A request: just an id.
pub(crate) type Request = u64;
/// A response: the id back.
pub(crate) type Response = u64;

/// The backend failed the call (after its latency, like a timeout would).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BackendError;

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("backend failed")
    }
}

impl std::error::Error for BackendError {}

/// Calls that reached a backend, per phase (by the phase they started in).
#[derive(Clone, Debug)]
pub(crate) struct BackendCalls {
    per_phase: Arc<[AtomicU64]>,
}

impl BackendCalls {
    fn new(phases: usize) -> Self {
        Self {
            per_phase: (0..phases).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Calls started in phase `index`.
    pub(crate) fn in_phase(&self, index: usize) -> u64 {
        self.per_phase[index].load(Ordering::Relaxed)
    }

    /// All calls so far.
    pub(crate) fn total(&self) -> u64 {
        self.per_phase
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

/// The backend. Clones share the counters and the random numbers.
#[derive(Clone, Debug)]
pub(crate) struct Backend {
    timeline: Timeline,
    calls: BackendCalls,
    rng: Arc<FastRng>,
}

impl Backend {
    /// A backend following `timeline`. Backends built with the same `seed`
    /// draw the same errors (give or take the order threads draw in).
    pub(crate) fn new(timeline: Timeline, seed: u64) -> Self {
        let phases = timeline.scenario().phases.len();
        Self {
            timeline,
            calls: BackendCalls::new(phases),
            rng: Arc::new(FastRng::seeded(seed)),
        }
    }

    /// Its call counters.
    pub(crate) fn calls(&self) -> BackendCalls {
        self.calls.clone()
    }
}

impl Service<Request> for Backend {
    type Response = Response;
    type Error = BackendError;
    // Boxed: an example, not the hot path of a layer.
    type Future = Pin<Box<dyn Future<Output = Result<Response, BackendError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, id: Request) -> Self::Future {
        let phase = self.timeline.phase_now();
        self.calls.per_phase[phase].fetch_add(1, Ordering::Relaxed);
        let behavior = self.timeline.scenario().phases[phase].behavior;
        let fails = self.rng.next_f64() < behavior.error_rate;
        Box::pin(async move {
            tokio::time::sleep(behavior.latency).await;
            if fails { Err(BackendError) } else { Ok(id) }
        })
    }
}
