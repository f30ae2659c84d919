//! The retry variants: the same backend behind buttress's retry layer, with
//! its retry budget and without one. The flaky phase shows what retries
//! buy (callers see far fewer errors); the dead phase shows what the budget
//! prevents (three attempts per request would triple the load on a backend
//! that is already down).

use buttress::BoxError;
use buttress::ServiceBuilderExt;
use buttress::retry::RetryPolicy;
use tower::ServiceBuilder;

use crate::backend::Backend;
use crate::scenario::Timeline;
use crate::variants::{Svc, Variant};

/// The errors' seed: the same as the other variants' backends.
const SEED: u64 = 0x5eed;
/// Attempts per request, the first included (the policy's default).
const ATTEMPTS: u32 = 3;

/// The backend behind a retry layer: 3 attempts, exponential backoff with
/// full jitter (25 ms base, 250 ms cap), and, with `budget`, Finagle's
/// retry budget (20 % of requests plus 10 a second, over 10 s).
pub(crate) fn retry(timeline: &Timeline, budget: bool) -> Result<Variant, BoxError> {
    let builder = RetryPolicy::builder()
        .name(if budget {
            "showcase"
        } else {
            "showcase-unbudgeted"
        })
        .max_attempts(ATTEMPTS);
    let policy = if budget {
        builder.build()?
    } else {
        builder.without_budget().build()?
    };
    let backend = Backend::new(timeline.clone(), SEED);
    let calls = backend.calls();
    let service = ServiceBuilder::new().retries(policy).service(backend);
    Ok(Variant {
        name: if budget { "retry" } else { "retry, no budget" },
        description: if budget {
            format!(
                "{ATTEMPTS} attempts, backoff 25-250ms full jitter, budget 20% of requests + 10/s over 10s"
            )
        } else {
            format!("{ATTEMPTS} attempts, backoff 25-250ms full jitter, no budget")
        },
        service: Svc::new(service),
        backend: calls,
        breaker: None,
    })
}
