//! What the clients saw: one sample per request, plus live counters for
//! the progress line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use buttress::BoxError;
use buttress::core::reject::rejection;

use crate::backend::Response;
use crate::variants::Variant;

/// How a request ended, as its caller saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// An answer from the backend.
    Ok,
    /// The backend was called and failed.
    BackendError,
    /// A layer refused at once, without calling the backend.
    Rejected,
}

impl Outcome {
    /// Sorts a result. A layer's fast refusal (an open breaker, a shed
    /// call), however wrapped, is recognised through the shared rejection
    /// vocabulary.
    pub(crate) fn of(result: &Result<Response, BoxError>) -> Self {
        match result {
            Ok(_) => Self::Ok,
            Err(e) if rejection(e).is_some_and(|r| r.is_refusal()) => Self::Rejected,
            Err(_) => Self::BackendError,
        }
    }
}

/// One finished request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    /// The phase it started in.
    pub(crate) phase: usize,
    /// From just before the service was asked until the answer.
    pub(crate) latency: Duration,
    pub(crate) outcome: Outcome,
}

/// Live counts, read by the progress line.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Live {
    pub(crate) started: u64,
    pub(crate) backend_errors: u64,
    pub(crate) rejected: u64,
}

/// Collects a variant's samples; shared by its client tasks.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    started: AtomicU64,
    backend_errors: AtomicU64,
    rejected: AtomicU64,
    finished: AtomicU64,
    peak_in_flight: AtomicU64,
    samples: Mutex<Vec<Sample>>,
}

impl Recorder {
    /// A request is about to be sent.
    pub(crate) fn start(&self) {
        let started = self.started.fetch_add(1, Ordering::Relaxed) + 1;
        let in_flight = started.saturating_sub(self.finished.load(Ordering::Relaxed));
        self.peak_in_flight.fetch_max(in_flight, Ordering::Relaxed);
    }

    /// A request has its answer.
    pub(crate) fn finish(&self, sample: Sample) {
        match sample.outcome {
            Outcome::Ok => {}
            Outcome::BackendError => {
                self.backend_errors.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Rejected => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(sample);
        self.finished.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn live(&self) -> Live {
        let started = self.started.load(Ordering::Relaxed);
        Live {
            started,
            backend_errors: self.backend_errors.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }

    /// The most requests waiting for an answer at once.
    pub(crate) fn peak_in_flight(&self) -> u64 {
        self.peak_in_flight.load(Ordering::Relaxed)
    }

    /// Every finished request so far.
    pub(crate) fn samples(&self) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A variant under load, with what its callers saw.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) variant: Variant,
    pub(crate) recorder: Arc<Recorder>,
}

/// Sums over a set of samples.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Summary {
    pub(crate) requests: u64,
    pub(crate) ok: u64,
    pub(crate) backend_errors: u64,
    pub(crate) rejected: u64,
    /// Time callers spent on calls that reached the backend.
    pub(crate) backend_wait: Duration,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
}

impl Summary {
    pub(crate) fn of<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> Self {
        let mut s = Self::default();
        let mut latencies = Vec::new();
        for sample in samples {
            s.requests += 1;
            match sample.outcome {
                Outcome::Ok => s.ok += 1,
                Outcome::BackendError => s.backend_errors += 1,
                Outcome::Rejected => s.rejected += 1,
            }
            if sample.outcome != Outcome::Rejected {
                s.backend_wait += sample.latency;
            }
            latencies.push(sample.latency);
        }
        latencies.sort_unstable();
        s.p50 = percentile(&latencies, 0.50);
        s.p99 = percentile(&latencies, 0.99);
        s
    }
}

/// Nearest-rank percentile of sorted values (zero when there are none).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
