//! The stacks under comparison. Each variant gets its own backend (same
//! scenario, same seed) and wraps it in its layers; the load and the report
//! see only a boxed service, so a new variant (retry, adaptive limit,
//! cache, or a combination) is one more function here and one more entry
//! in `main`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use buttress::BoxError;
use buttress::ServiceBuilderExt;
use buttress::breaker::{CircuitBreaker, StateTransition};
use tower::ServiceBuilder;
use tower::util::BoxCloneService;

use crate::backend::{Backend, BackendCalls, Request, Response};
use crate::scenario::Timeline;

/// Every variant's service, type-erased.
pub(crate) type Svc = BoxCloneService<Request, Response, BoxError>;

/// The errors' seed, the same for every backend.
const SEED: u64 = 0x5eed;

/// One stack driven by the load.
#[derive(Debug)]
pub(crate) struct Variant {
    /// Its column header.
    pub(crate) name: &'static str,
    /// Its configuration, in a line.
    pub(crate) description: String,
    /// The stack, backend included.
    pub(crate) service: Svc,
    /// The calls that reached its backend.
    pub(crate) backend: BackendCalls,
    /// Its breaker, if it has one, and the breaker's transitions.
    pub(crate) breaker: Option<(CircuitBreaker, Transitions)>,
}

/// The backend alone: every request reaches it, however dead it is.
pub(crate) fn unprotected(timeline: &Timeline) -> Variant {
    let backend = Backend::new(timeline.clone(), SEED);
    let calls = backend.calls();
    let service = ServiceBuilder::new()
        .map_err(BoxError::from)
        .service(backend);
    Variant {
        name: "no breaker",
        description: "the backend, called directly".to_owned(),
        service: Svc::new(service),
        backend: calls,
        breaker: None,
    }
}

/// The backend behind a circuit breaker tuned for a short demo: it trips
/// within a few dozen failures, and probes often enough to close again
/// early in the recovering phase.
pub(crate) fn circuit_breaker(timeline: &Timeline) -> Result<Variant, BoxError> {
    const WINDOW: u32 = 50;
    const MINIMUM_CALLS: u32 = 10;
    const FAILURE_RATE: f64 = 0.5;
    const OPEN: Duration = Duration::from_millis(500);
    const MULTIPLIER: f64 = 2.0;
    const MAX_OPEN: Duration = Duration::from_secs(2);
    const PROBES: u32 = 3;

    let transitions = Transitions::default();
    let log = transitions.clone();
    let breaker = CircuitBreaker::builder()
        .name("showcase")
        .count_window(WINDOW)
        .minimum_calls(MINIMUM_CALLS)
        .failure_rate_threshold(FAILURE_RATE)
        .open_duration(OPEN)
        .open_duration_multiplier(MULTIPLIER)
        .max_open_duration(MAX_OPEN)
        .half_open_probes(PROBES)
        .on_state_change(move |t| log.push(t.clone()))
        .build()?;
    let backend = Backend::new(timeline.clone(), SEED);
    let calls = backend.calls();
    let service = ServiceBuilder::new()
        .circuit_breaker(breaker.clone())
        .service(backend);
    Ok(Variant {
        name: "circuit breaker",
        description: format!(
            "count_window {WINDOW}, minimum_calls {MINIMUM_CALLS}, failure rate {:.0}%, \
             open {}ms (x{MULTIPLIER} per trip, at most {}ms), {PROBES} half-open probes",
            FAILURE_RATE * 100.0,
            OPEN.as_millis(),
            MAX_OPEN.as_millis(),
        ),
        service: Svc::new(service),
        backend: calls,
        breaker: Some((breaker, transitions)),
    })
}

/// The state changes a breaker's listener saw, in order.
#[derive(Clone, Debug, Default)]
pub(crate) struct Transitions(Arc<Mutex<Vec<StateTransition>>>);

impl Transitions {
    fn push(&self, t: StateTransition) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(t);
    }

    /// All of them so far.
    pub(crate) fn all(&self) -> Vec<StateTransition> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
