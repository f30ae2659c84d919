//! The stacks under comparison. Each variant gets its own backend (same
//! scenario, same seed) and wraps it in its layers; the load and the report
//! see only a boxed service, so a new variant (retry, adaptive limit,
//! cache, or a combination) is one more function here and one more entry
//! in `main`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use buttress::BoxError;
use buttress::ServiceBuilderExt;
use buttress::breaker::{CircuitBreaker, State, TransitionReason};
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

/// The backend behind a circuit breaker tuned for a short demo.
pub(crate) fn circuit_breaker(timeline: &Timeline) -> Result<Variant, BoxError> {
    let transitions = Transitions::default();
    let log = transitions.clone();
    let start = timeline.start_instant();
    let breaker = CircuitBreaker::builder()
        .name("showcase")
        .count_window(50)
        .minimum_calls(10)
        .failure_rate_threshold(0.5)
        .open_duration(Duration::from_millis(500))
        .open_duration_multiplier(2.0)
        .max_open_duration(Duration::from_secs(2))
        .half_open_probes(3)
        .on_state_change(move |t| {
            log.push(Transition {
                at: t.at().saturating_duration_since(start),
                from: t.from(),
                to: t.to(),
                reason: t.reason(),
                open_for: t.open_for(),
            });
        })
        .build()?;
    let backend = Backend::new(timeline.clone(), SEED);
    let calls = backend.calls();
    let service = ServiceBuilder::new()
        .circuit_breaker(breaker.clone())
        .service(backend);
    Ok(Variant {
        name: "circuit breaker",
        description: "count_window 50, minimum_calls 10, failure rate 50%, \
                      open 500ms (x2 per trip, at most 2s), 3 half-open probes"
            .to_owned(),
        service: Svc::new(service),
        backend: calls,
        breaker: Some((breaker, transitions)),
    })
}

/// One breaker state change, timed from the start of the scenario.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Transition {
    pub(crate) at: Duration,
    pub(crate) from: State,
    pub(crate) to: State,
    pub(crate) reason: TransitionReason,
    pub(crate) open_for: Option<Duration>,
}

/// The transitions seen by a breaker's listener, in order.
#[derive(Clone, Debug, Default)]
pub(crate) struct Transitions(Arc<Mutex<Vec<Transition>>>);

impl Transitions {
    fn push(&self, t: Transition) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(t);
    }

    /// All of them so far.
    pub(crate) fn all(&self) -> Vec<Transition> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}
