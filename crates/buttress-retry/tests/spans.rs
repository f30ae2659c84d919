//! Each retry attempt runs in a `buttress.retry.attempt` span carrying the
//! policy's name and the attempt's number; the policy's events carry the
//! field `name`.

use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use buttress_retry::{RetryLayer, RetryPolicy};
use tower::{Layer, Service, service_fn};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// A subscriber that writes what happens as lines of text.
struct Log {
    lines: Arc<Mutex<Vec<String>>>,
    next: AtomicU64,
}

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

impl Log {
    fn push(&self, line: String) {
        self.lines.lock().unwrap().push(line);
    }
}

impl Subscriber for Log {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let mut fields = Fields(String::new());
        span.record(&mut fields);
        self.push(format!("new {id} {}{}", span.metadata().name(), fields.0));
        Id::from_u64(id)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        self.push(format!("event{}", fields.0));
    }

    fn enter(&self, id: &Id) {
        self.push(format!("enter {}", id.into_u64()));
    }

    fn exit(&self, id: &Id) {
        self.push(format!("exit {}", id.into_u64()));
    }
}

#[test]
fn each_attempt_runs_in_a_span_named_after_the_policy() {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let log = Log {
        lines: Arc::clone(&lines),
        next: AtomicU64::new(0),
    };
    tracing::subscriber::with_default(log, || {
        // No wait between attempts, so no runtime is needed.
        let policy = RetryPolicy::builder()
            .name("spans")
            .base_delay(Duration::ZERO)
            .max_delay(Duration::ZERO)
            .without_budget()
            .build()
            .unwrap();
        let seen = Arc::new(AtomicU64::new(0));
        let l = Arc::clone(&lines);
        let mut svc = RetryLayer::new(policy).layer(service_fn(move |()| {
            let n = seen.fetch_add(1, Ordering::Relaxed) + 1;
            l.lock().unwrap().push(format!("call {n}"));
            std::future::ready(if n == 1 { Err("reset") } else { Ok(n) })
        }));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(svc.poll_ready(&mut cx).is_ready());
        let mut call = std::pin::pin!(svc.call(()));
        assert!(matches!(call.as_mut().poll(&mut cx), Poll::Ready(Ok(2))));
    });

    let lines = lines.lock().unwrap();
    let spans: Vec<_> = lines.iter().filter(|l| l.starts_with("new ")).collect();
    assert_eq!(
        spans,
        [
            "new 1 buttress.retry.attempt name=spans attempt=1",
            "new 2 buttress.retry.attempt name=spans attempt=2"
        ],
        "{lines:#?}"
    );
    // Each call to the inner service is made inside its attempt's span.
    for n in 1..=2 {
        let call = lines
            .iter()
            .position(|l| *l == format!("call {n}"))
            .unwrap();
        let entered = lines[..call]
            .iter()
            .rev()
            .find(|l| l.starts_with("enter ") || l.starts_with("exit "));
        assert_eq!(
            entered.map(String::as_str),
            Some(&*format!("enter {n}")),
            "{lines:#?}"
        );
    }
    let retrying = lines.iter().find(|l| l.contains("retrying")).unwrap();
    assert!(retrying.contains("name=spans"), "{retrying}");
}
