//! The rate limit's metrics: the catalog, and the counts a limiter keeps.
//!
//! A decision never touches the recorder: it counts in per-thread stripes
//! ([`Count`]), published with every other buttress layer's counts.

use std::sync::OnceLock;

use buttress_core::telemetry::{Count, Emit, MetricInfo, MetricKind, Publish, Unit};

/// The layer kind limiters register their names under.
pub(crate) const KIND: &str = "ratelimit";

const ALLOWED: &str = "buttress_ratelimit_allowed_total";
const LIMITED: &str = "buttress_ratelimit_limited_total";
const REDIS_ERRORS: &str = "buttress_ratelimit_redis_errors_total";
const FALLBACKS: &str = "buttress_ratelimit_fallbacks_total";
const KEYS: &str = "buttress_ratelimit_keys";

/// Every metric a rate limit emits, each labelled `name` with the
/// limiter's name.
pub static METRICS: &[MetricInfo] = &[
    MetricInfo {
        name: ALLOWED,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &["class"],
        help: "Requests admitted, by quota class (the first 16 classes seen; later ones as \"other\").",
    },
    MetricInfo {
        name: LIMITED,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &["class"],
        help: "Requests rejected with RateLimited, by quota class.",
    },
    MetricInfo {
        name: REDIS_ERRORS,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[],
        help: "Redis decisions that failed or timed out (each one also a fallback).",
    },
    MetricInfo {
        name: FALLBACKS,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        labels: &[],
        help: "Decisions taken by the fallback policy because Redis failed, timed out or its breaker was open.",
    },
    MetricInfo {
        name: KEYS,
        kind: MetricKind::Gauge,
        unit: Unit::Count,
        labels: &[],
        help: "Keys the in-process store tracks now (at most max_keys).",
    },
];

const CLASSES: usize = 16;

struct Class {
    name: &'static str,
    allowed: Count,
    limited: Count,
}

/// The counts of one limiter.
pub(crate) struct Counters {
    classes: [OnceLock<Class>; CLASSES],
    other: (Count, Count),
    pub(crate) redis_errors: Count,
    pub(crate) fallbacks: Count,
    pub(crate) keys: Box<dyn Fn() -> usize + Send + Sync>,
}

impl Counters {
    pub(crate) fn new(keys: Box<dyn Fn() -> usize + Send + Sync>) -> Self {
        Self {
            classes: std::array::from_fn(|_| OnceLock::new()),
            other: (Count::new(), Count::new()),
            redis_errors: Count::new(),
            fallbacks: Count::new(),
            keys,
        }
    }

    /// Counts one decision under its class: a lock-free scan of at most
    /// 16 slots, claiming a free one for a class seen for the first time.
    pub(crate) fn decided(&self, class: &'static str, allowed: bool) {
        for slot in &self.classes {
            let c = slot.get_or_init(|| Class {
                name: class,
                allowed: Count::new(),
                limited: Count::new(),
            });
            if std::ptr::eq(c.name, class) || c.name == class {
                return if allowed {
                    c.allowed.incr()
                } else {
                    c.limited.incr()
                };
            }
        }
        if allowed {
            self.other.0.incr();
        } else {
            self.other.1.incr();
        }
    }

    pub(crate) fn totals(&self) -> (u64, u64) {
        let mut t = (self.other.0.get(), self.other.1.get());
        for c in self.classes.iter().filter_map(OnceLock::get) {
            t.0 += c.allowed.get();
            t.1 += c.limited.get();
        }
        t
    }

    /// `(class, allowed, limited)` for every class seen.
    pub(crate) fn by_class(&self) -> Vec<(&'static str, u64, u64)> {
        let mut v: Vec<_> = self
            .classes
            .iter()
            .filter_map(OnceLock::get)
            .map(|c| (c.name, c.allowed.get(), c.limited.get()))
            .collect();
        if self.other.0.get() + self.other.1.get() > 0 {
            v.push(("other", self.other.0.get(), self.other.1.get()));
        }
        v
    }
}

impl Publish for Counters {
    fn publish(&self, out: &mut Emit<'_>) {
        for (class, allowed, limited) in self.by_class() {
            out.counter_with(ALLOWED, &[("class", class)], allowed);
            out.counter_with(LIMITED, &[("class", class)], limited);
        }
        out.counter(REDIS_ERRORS, self.redis_errors.get());
        out.counter(FALLBACKS, self.fallbacks.get());
        #[allow(clippy::cast_precision_loss)]
        out.gauge(KEYS, (self.keys)() as f64);
    }
}
