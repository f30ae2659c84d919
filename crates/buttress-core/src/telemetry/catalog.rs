//! The catalog: every metric a buttress crate emits, with its type, unit,
//! labels and meaning. It describes the metrics to the recorder (unit and
//! help text) and is what `docs/observability.md` is checked against.

use std::sync::{Mutex, PoisonError};

pub use metrics::Unit;

/// A metric's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MetricKind {
    /// A running total.
    Counter,
    /// A current value.
    Gauge,
    /// A distribution of samples.
    Histogram,
}

impl MetricKind {
    /// `"counter"`, `"gauge"` or `"histogram"`.
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// One metric in a crate's catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricInfo {
    /// The metric's name, e.g. `buttress_breaker_calls_total`.
    pub name: &'static str,
    /// Its type.
    pub kind: MetricKind,
    /// Its unit.
    pub unit: Unit,
    /// Its labels besides `name` (which every buttress metric carries).
    pub labels: &'static [&'static str],
    /// What it means.
    pub help: &'static str,
}

static CATALOGS: Mutex<Vec<&'static [MetricInfo]>> = Mutex::new(Vec::new());

/// Adds a crate's metrics to the catalog (once per table; layers call it
/// when they are built), so that every publication describes them.
pub fn register_catalog(table: &'static [MetricInfo]) {
    let mut all = CATALOGS.lock().unwrap_or_else(PoisonError::into_inner);
    if !all.iter().any(|t| std::ptr::eq(*t, table)) {
        all.push(table);
    }
}

/// Every metric of every crate whose layers have been built in this
/// process.
#[must_use]
pub fn catalog() -> Vec<&'static MetricInfo> {
    let all = CATALOGS.lock().unwrap_or_else(PoisonError::into_inner);
    all.iter().flat_map(|t| t.iter()).collect()
}
